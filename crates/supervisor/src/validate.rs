//! One check of what a request carries, before the core sees any of it.
//!
//! Each request's own fields are checked here, once, against the bounds
//! PROTOCOL.md promises (section 6, and the constants of section 14), and
//! come out as the types the core takes: [`Open`], [`Lease`], [`Drain`],
//! [`Scale`]. Those can be made only here, so the core trusts them and
//! checks nothing of the kind again. What depends on the daemon's state (is
//! the pool configured? does the tenant hold its `max_streams`? is the
//! streamlet running?) is the core's to say.
//!
//! A refusal is an [`Invalid`]: it names the field, the bound, and what to
//! do instead, and goes to the client as `bad_request` with the request's
//! id (the connection stays open).

use std::collections::BTreeMap;
use std::time::Duration;

use streamlet_proto::{
    DrainRequest, ErrorBody, ErrorCode, LeaseRequest, OpenRequest, RateRequest, ScaleRequest, WorkerId,
};

use crate::config::MAX_WORKERS_PER_POOL;

pub use streamlet_proto::{DEFAULT_TENANT, MAX_TENANT_LEN};
/// Labels on one stream, at most.
pub const MAX_LABELS: usize = 32;
/// Bytes in a label's key, at most.
pub const MAX_LABEL_KEY_LEN: usize = 64;
/// Bytes in a label's value, at most.
pub const MAX_LABEL_VALUE_LEN: usize = 1024;
/// The longest an open may wait for room, in milliseconds (ten minutes).
pub const MAX_WAIT_MS: u64 = 600_000;
/// The largest minimum a stream or lease may ask, bytes per second (2^40,
/// about 1 TB/s): sums of minimums stay far from overflowing.
pub const MAX_MIN_RATE: u64 = 1 << 40;
/// The longest a lease may live without a refresh (an hour): a crashed
/// gateway's leases always run out.
pub const MAX_LEASE_TTL_MS: u64 = 3_600_000;
/// The longest drain an operator may ask for (a day).
pub const MAX_DRAIN_MS: u64 = 24 * 3_600_000;

/// Why a request was refused before the core saw it. Each names its field
/// ([`Invalid::field`]) and says what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("tenant is {len} bytes, more than {MAX_TENANT_LEN}: use a shorter name")]
    TenantTooLong { len: usize },
    #[error(
        "tenant contains a NUL byte: tenants become environment variables of exec commands, where NUL cannot go; remove it"
    )]
    TenantNul,
    #[error("labels: {count} of them, more than {MAX_LABELS}: send fewer")]
    TooManyLabels { count: usize },
    #[error("labels: key {key:?}… is {len} bytes, more than {MAX_LABEL_KEY_LEN}: use a shorter key")]
    LabelKeyTooLong { key: String, len: usize },
    #[error("labels: the value of {key:?} is {len} bytes, more than {MAX_LABEL_VALUE_LEN}: send a shorter value")]
    LabelValueTooLong { key: String, len: usize },
    #[error(
        "labels: {key:?} contains a NUL byte: labels become environment variables of exec commands, where NUL cannot go; remove it"
    )]
    LabelNul { key: String },
    #[error("wait_ms {ms} is more than {MAX_WAIT_MS} (ten minutes): wait less, or open again later")]
    WaitTooLong { ms: u64 },
    #[error("rate.min {min} is above rate.max {max}: lower min or raise max")]
    RateMinAboveMax { min: u64, max: u64 },
    #[error("rate.max is 0: give a max above 0 bytes per second, or leave rate out for no limit")]
    RateMaxZero,
    #[error("rate.min {min} is more than {MAX_MIN_RATE} bytes per second (2^40): ask for a smaller min")]
    RateMinTooHigh { min: u64 },
    #[error("ttl_ms is 0: a lease lives 1 to {MAX_LEASE_TTL_MS} ms (an hour) without a refresh")]
    TtlZero,
    #[error("ttl_ms {ms} is more than {MAX_LEASE_TTL_MS} (an hour): ask for less and refresh the lease")]
    TtlTooLong { ms: u64 },
    #[error("timeout_ms {ms} is more than {MAX_DRAIN_MS} (a day): give a shorter timeout, or kill the streamlet")]
    DrainTooLong { ms: u64 },
    #[error("max is 0: a pool needs 1 to {MAX_WORKERS_PER_POOL} streamlets at most")]
    ScaleMaxZero,
    #[error("{field} {value} is more than {MAX_WORKERS_PER_POOL} streamlets: give at most {MAX_WORKERS_PER_POOL}")]
    ScaleTooMany { field: &'static str, value: u32 },
    #[error("min {min} is above max {max}: lower min or raise max")]
    ScaleMinAboveMax { min: u32, max: u32 },
}

impl Invalid {
    /// The request field that is out of bounds, as PROTOCOL.md names it.
    pub fn field(&self) -> &'static str {
        match self {
            Invalid::TenantTooLong { .. } | Invalid::TenantNul => "tenant",
            Invalid::TooManyLabels { .. }
            | Invalid::LabelKeyTooLong { .. }
            | Invalid::LabelValueTooLong { .. }
            | Invalid::LabelNul { .. } => "labels",
            Invalid::WaitTooLong { .. } => "wait_ms",
            Invalid::RateMinAboveMax { .. } | Invalid::RateMinTooHigh { .. } => "rate.min",
            Invalid::RateMaxZero => "rate.max",
            Invalid::TtlZero | Invalid::TtlTooLong { .. } => "ttl_ms",
            Invalid::DrainTooLong { .. } => "timeout_ms",
            Invalid::ScaleMaxZero => "max",
            Invalid::ScaleMinAboveMax { .. } => "min",
            Invalid::ScaleTooMany { field, .. } => field,
        }
    }
}

impl From<Invalid> for ErrorBody {
    fn from(invalid: Invalid) -> ErrorBody {
        ErrorBody::new(ErrorCode::BadRequest, invalid.to_string())
    }
}

/// Bytes per second: at least `min`, at most `max` (where `min <= max`,
/// `min <= 2^40`; a `max` of 2^60 or more is no limit to the core).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateRange {
    pub min: u64,
    pub max: u64,
    _checked: (),
}

impl RateRange {
    /// A stream's rate: also `max` above 0 (the protocol reads a paced rate
    /// of 0 as no limit, so a stream allowed nothing cannot be paced).
    fn for_stream(rate: RateRequest) -> Result<RateRange, Invalid> {
        if rate.max == 0 {
            return Err(Invalid::RateMaxZero);
        }
        RateRange::for_lease(rate)
    }

    /// A lease's rate (a lease with `max` 0 holds a tenant slot and no
    /// bandwidth; its gateway paces itself, so 0 means nothing to send).
    fn for_lease(rate: RateRequest) -> Result<RateRange, Invalid> {
        if rate.min > rate.max {
            return Err(Invalid::RateMinAboveMax { min: rate.min, max: rate.max });
        }
        if rate.min > MAX_MIN_RATE {
            return Err(Invalid::RateMinTooHigh { min: rate.min });
        }
        Ok(RateRange { min: rate.min, max: rate.max, _checked: () })
    }
}

/// A checked `open`: the tenant named (or `default`), the priority (or 0),
/// the wait (`None` for none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub pool: String,
    pub tenant: String,
    pub labels: BTreeMap<String, String>,
    pub region: Option<String>,
    pub priority: u8,
    /// `None`: the pool's `default_rate`, if it has one.
    pub rate: Option<RateRange>,
    pub wait: Option<Duration>,
    _checked: (),
}

/// Checks an `open`'s fields, in the order PROTOCOL.md lists them.
pub fn open(request: OpenRequest) -> Result<Open, Invalid> {
    let tenant = tenant(request.tenant)?;
    // They become environment variables of `exec` commands, where a NUL
    // cannot go.
    if tenant.contains('\0') {
        return Err(Invalid::TenantNul);
    }
    labels(&request.labels)?;
    let rate = request.rate.map(RateRange::for_stream).transpose()?;
    let wait = match request.wait_ms {
        Some(ms) if ms > MAX_WAIT_MS => return Err(Invalid::WaitTooLong { ms }),
        Some(0) | None => None,
        Some(ms) => Some(Duration::from_millis(ms)),
    };
    Ok(Open {
        pool: request.pool,
        tenant,
        labels: request.labels,
        region: request.region,
        priority: request.priority.unwrap_or(0),
        rate,
        wait,
        _checked: (),
    })
}

/// A checked `lease`: the tenant named (or `default`), the priority (or 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub pool: String,
    pub tenant: String,
    pub priority: u8,
    pub rate: RateRange,
    /// 1 to [`MAX_LEASE_TTL_MS`].
    pub ttl_ms: u64,
    _checked: (),
}

/// Checks a `lease`'s fields.
pub fn lease(request: LeaseRequest) -> Result<Lease, Invalid> {
    let tenant = tenant(request.tenant)?;
    let rate = RateRange::for_lease(request.rate)?;
    match request.ttl_ms {
        0 => return Err(Invalid::TtlZero),
        ms if ms > MAX_LEASE_TTL_MS => return Err(Invalid::TtlTooLong { ms }),
        _ => {}
    }
    Ok(Lease {
        pool: request.pool,
        tenant,
        priority: request.priority.unwrap_or(0),
        rate,
        ttl_ms: request.ttl_ms,
        _checked: (),
    })
}

/// A checked `drain`: `timeout` is `None` for the daemon's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    pub worker: WorkerId,
    pub timeout: Option<Duration>,
    _checked: (),
}

/// Checks a `drain`'s timeout.
pub fn drain(request: DrainRequest) -> Result<Drain, Invalid> {
    let timeout = match request.timeout_ms {
        Some(ms) if ms > MAX_DRAIN_MS => return Err(Invalid::DrainTooLong { ms }),
        Some(ms) => Some(Duration::from_millis(ms)),
        None => None,
    };
    Ok(Drain { worker: request.worker, timeout, _checked: () })
}

/// A checked `scale`: each bound given is possible on its own, and `min` is
/// not above `max` when both are given. (Whether one given alone fits the
/// pool's other bound is the core's to say: it knows that bound.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    pub pool: String,
    pub min: Option<u32>,
    pub max: Option<u32>,
    _checked: (),
}

/// Checks a `scale`'s bounds.
pub fn scale(request: ScaleRequest) -> Result<Scale, Invalid> {
    match request.max {
        Some(0) => return Err(Invalid::ScaleMaxZero),
        Some(max) if max > MAX_WORKERS_PER_POOL => return Err(Invalid::ScaleTooMany { field: "max", value: max }),
        _ => {}
    }
    match (request.min, request.max) {
        (Some(min), _) if min > MAX_WORKERS_PER_POOL => return Err(Invalid::ScaleTooMany { field: "min", value: min }),
        (Some(min), Some(max)) if min > max => return Err(Invalid::ScaleMinAboveMax { min, max }),
        _ => {}
    }
    Ok(Scale { pool: request.pool, min: request.min, max: request.max, _checked: () })
}

/// How many lines a page of a listing holds: `limit`, at least 1 (a page of
/// none would never move on), at most `most`, `most` when absent.
pub fn page_limit(limit: Option<u32>, most: u32) -> usize {
    limit.unwrap_or(most).clamp(1, most) as usize
}

/// A tenant's name: `default` when none is given; at most
/// [`MAX_TENANT_LEN`] bytes.
fn tenant(name: Option<String>) -> Result<String, Invalid> {
    let name = name.unwrap_or_else(|| DEFAULT_TENANT.to_owned());
    if name.len() > MAX_TENANT_LEN {
        return Err(Invalid::TenantTooLong { len: name.len() });
    }
    Ok(name)
}

/// At most [`MAX_LABELS`] labels, keys and values within their lengths,
/// no NUL anywhere.
fn labels(labels: &BTreeMap<String, String>) -> Result<(), Invalid> {
    if labels.len() > MAX_LABELS {
        return Err(Invalid::TooManyLabels { count: labels.len() });
    }
    // (A long key is shown cut to the length it may have.)
    let shown = |key: &str| key.chars().take(MAX_LABEL_KEY_LEN).collect::<String>();
    for (key, value) in labels {
        if key.len() > MAX_LABEL_KEY_LEN {
            return Err(Invalid::LabelKeyTooLong { key: shown(key), len: key.len() });
        }
        if value.len() > MAX_LABEL_VALUE_LEN {
            return Err(Invalid::LabelValueTooLong { key: key.clone(), len: value.len() });
        }
        if key.contains('\0') || value.contains('\0') {
            return Err(Invalid::LabelNul { key: shown(key) });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
