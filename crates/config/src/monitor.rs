//! The crash-isolation keys of a pool: `on_worker_exit`, `heartbeat_timeout`
//! and `restart = {...}`.

use std::time::Duration;

use serde::Deserialize;

use super::units::duration;
use crate::restart::RestartPolicy;

/// What becomes of a dead streamlet's streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnWorkerExit {
    /// Each ends with `worker_died`, its gateway told.
    #[default]
    Close,
    /// Each is placed again on a healthy streamlet; its client stays connected.
    Migrate,
}

impl OnWorkerExit {
    pub fn as_str(self) -> &'static str {
        match self {
            OnWorkerExit::Close => "close",
            OnWorkerExit::Migrate => "migrate",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRestart {
    initial: Option<String>,
    max: Option<String>,
    multiplier: Option<f64>,
    jitter: Option<f64>,
    intensity: Option<u32>,
    period: Option<String>,
    cooldown: Option<String>,
    healthy_after: Option<String>,
}

/// `heartbeat_timeout` when the pool has none.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// Shorter timeouts would take a busy streamlet for a hung one.
const MIN_HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(100);

/// The pool's `heartbeat_timeout`: at least 100 ms.
pub(super) fn heartbeat_timeout(text: Option<&str>) -> Result<Duration, (&'static str, String)> {
    let timeout = duration(text, DEFAULT_HEARTBEAT_TIMEOUT).map_err(|r| ("heartbeat_timeout", r))?;
    if timeout < MIN_HEARTBEAT_TIMEOUT {
        return Err(("heartbeat_timeout", format!("is at least {}ms", MIN_HEARTBEAT_TIMEOUT.as_millis())));
    }
    Ok(timeout)
}

/// The pool's `restart = {...}`, over the defaults.
pub(super) fn restart(raw: Option<RawRestart>) -> Result<RestartPolicy, (&'static str, String)> {
    let d = RestartPolicy::default();
    let Some(raw) = raw else { return Ok(d) };
    let policy = RestartPolicy {
        initial: duration(raw.initial.as_deref(), d.initial).map_err(|r| ("restart.initial", r))?,
        max: duration(raw.max.as_deref(), d.max).map_err(|r| ("restart.max", r))?,
        multiplier: raw.multiplier.unwrap_or(d.multiplier),
        jitter: raw.jitter.unwrap_or(d.jitter),
        intensity: raw.intensity.unwrap_or(d.intensity),
        period: duration(raw.period.as_deref(), d.period).map_err(|r| ("restart.period", r))?,
        cooldown: duration(raw.cooldown.as_deref(), d.cooldown).map_err(|r| ("restart.cooldown", r))?,
        healthy_after: duration(raw.healthy_after.as_deref(), d.healthy_after)
            .map_err(|r| ("restart.healthy_after", r))?,
    };
    if policy.initial > policy.max {
        return Err(("restart.initial", format!("is more than restart.max ({:?})", policy.max)));
    }
    if !(1.0..=100.0).contains(&policy.multiplier) {
        return Err(("restart.multiplier", "must be from 1.0 to 100.0".into()));
    }
    if !(0.0..=1.0).contains(&policy.jitter) {
        return Err(("restart.jitter", "must be from 0.0 to 1.0 (a fraction of the delay)".into()));
    }
    if policy.intensity == 0 {
        return Err(("restart.intensity", "must be at least 1: with 0, one crash would degrade the pool".into()));
    }
    if policy.period.is_zero() {
        return Err(("restart.period", "must be more than 0".into()));
    }
    Ok(policy)
}
