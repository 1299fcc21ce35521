//! The quota keys: `[capacity]`, `[tenants.*]`, `[regions.distance]`, and
//! each pool's `egress`, `preempt`, `default_rate`, `labels`, `prefer`.

use std::collections::BTreeMap;

use std::time::Duration;

use serde::Deserialize;
use streamlet_proto::units::parse_rate;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapacity {
    egress: Option<String>,
    burst: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    max_streams: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegions {
    #[serde(default)]
    distance: BTreeMap<String, u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRate {
    min: Option<String>,
    max: Option<String>,
}

pub(super) const MISSING_MAX_STREAMS: &str =
    "is missing: add max_streams = N, the streams and leases the tenant may hold at once (or remove the table for no limit)";
const MISSING_RATE: &str = "is missing: a rate gives both min and max, like { min = \"1Mbit\", max = \"8Mbit\" }";

/// The keys a tenant's table lacks: `(key under the table, why)`.
pub(super) fn missing_in_tenant(raw: &RawTenant) -> Option<(&'static str, &'static str)> {
    raw.max_streams.is_none().then_some(("max_streams", MISSING_MAX_STREAMS))
}

/// The keys a rate lacks: `(key under the pool, why)`.
pub(super) fn missing_in_rate(raw: &RawRate) -> Vec<(&'static str, &'static str)> {
    let mut missing = Vec::new();
    if raw.min.is_none() {
        missing.push(("default_rate.min", MISSING_RATE));
    }
    if raw.max.is_none() {
        missing.push(("default_rate.max", MISSING_RATE));
    }
    missing
}

/// `[capacity] burst` when the file has none.
pub const DEFAULT_BURST: Duration = Duration::from_secs(2);
/// Longer bursts are loans nobody can plan around.
const MAX_BURST: Duration = Duration::from_secs(60);

/// A stream's rate request: at least `min`, at most `max` bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRange {
    pub min: u64,
    pub max: u64,
}

/// The host's share and the tenants' limits.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaConfig {
    /// The host's egress bandwidth to share, bytes per second; `None`: not
    /// limited (streams get their max).
    pub egress: Option<u64>,
    /// How long a stream may burst into capacity others leave unused (and
    /// then waits before the next burst); zero: no bursts.
    pub burst: Duration,
    /// `max_streams` of tenants without an entry of their own.
    pub default_max_streams: Option<u32>,
    pub tenants: BTreeMap<String, u32>,
    /// Symmetric distances between regions, for `geo` placement.
    pub distances: BTreeMap<(String, String), u32>,
}

pub(super) fn rate(key: &'static str, text: &str) -> Result<u64, (&'static str, String)> {
    parse_rate(text).map_err(|r| (key, r.to_string()))
}

pub(super) fn rate_range(raw: Option<RawRate>) -> Result<Option<RateRange>, (&'static str, String)> {
    let Some(raw) = raw else { return Ok(None) };
    let (Some(min_text), Some(max_text)) = (&raw.min, &raw.max) else {
        return Err((if raw.min.is_none() { "default_rate.min" } else { "default_rate.max" }, MISSING_RATE.into()));
    };
    let min = rate("default_rate.min", min_text)?;
    let max = rate("default_rate.max", max_text)?;
    if min > max {
        return Err(("default_rate.min", format!("{min_text} is above max ({max_text}): lower min or raise max")));
    }
    if max == 0 {
        return Err(("default_rate.max", "must be more than 0".into()));
    }
    Ok(Some(RateRange { min, max }))
}

pub(super) fn quota(
    capacity: RawCapacity,
    tenants: BTreeMap<String, RawTenant>,
    regions: RawRegions,
) -> Result<QuotaConfig, (String, String)> {
    let egress = capacity
        .egress
        .map(|e| parse_rate(&e))
        .transpose()
        .map_err(|r| ("capacity.egress".to_owned(), r.to_string()))?;
    let burst = super::units::duration(capacity.burst.as_deref(), DEFAULT_BURST)
        .map_err(|r| ("capacity.burst".to_owned(), r))?;
    if burst > MAX_BURST {
        return Err(("capacity.burst".to_owned(), format!("is at most {}s", MAX_BURST.as_secs())));
    }
    let mut max_streams = BTreeMap::new();
    for (name, tenant) in tenants {
        let limit = tenant.max_streams.ok_or_else(|| {
            (format!("tenants.{}.max_streams", super::error::part(&name)), MISSING_MAX_STREAMS.to_owned())
        })?;
        max_streams.insert(name, limit);
    }
    let default_max_streams = max_streams.remove("default");
    let mut distances = BTreeMap::new();
    for (pair, distance) in regions.distance {
        let key = format!("regions.distance.\"{pair}\"");
        let (a, b) = pair
            .split_once(':')
            .filter(|(a, b)| !a.is_empty() && !b.is_empty() && a != b)
            .ok_or_else(|| (key.clone(), "write two different regions as \"a:b\"".to_owned()))?;
        distances.insert((a.to_owned(), b.to_owned()), distance);
        distances.insert((b.to_owned(), a.to_owned()), distance);
    }
    Ok(QuotaConfig { egress, burst, default_max_streams, tenants: max_streams, distances })
}
