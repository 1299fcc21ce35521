//! A pool's `autoscale` table.

use std::time::Duration;

use serde::Deserialize;
use streamlet_autoscale::Mode;

use super::units::duration;

/// How a pool grows and shrinks between `workers.min` and `workers.max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Autoscale {
    pub mode: Mode,
    /// How far ahead the forecast looks; raised to cover the measured
    /// spawn-to-ready time.
    pub lead: Duration,
    /// How long a streamlet with no stream is kept before it is retired.
    pub idle_grace: Duration,
    /// The forecast's margin: 0.2 keeps 20% more streamlets than predicted.
    pub headroom: f64,
}

impl Default for Autoscale {
    fn default() -> Self {
        Self { mode: Mode::Reactive, lead: Duration::from_secs(60), idle_grace: Duration::from_secs(30), headroom: 0.2 }
    }
}

/// The longest `lead`: the forecast looks no further than a day ahead.
const MAX_LEAD: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutoscale {
    mode: Option<Mode>,
    lead: Option<String>,
    idle_grace: Option<String>,
    headroom: Option<f64>,
}

pub(super) fn autoscale(raw: Option<RawAutoscale>) -> Result<Autoscale, (&'static str, String)> {
    let defaults = Autoscale::default();
    let Some(raw) = raw else { return Ok(defaults) };
    let mode = raw.mode.unwrap_or(defaults.mode);
    let lead = duration(raw.lead.as_deref(), defaults.lead).map_err(|r| ("autoscale.lead", r))?;
    if lead < Duration::from_secs(1) || lead > MAX_LEAD {
        return Err(("autoscale.lead", format!("{lead:?} is out of range: give 1s to 24h")));
    }
    let idle_grace =
        duration(raw.idle_grace.as_deref(), defaults.idle_grace).map_err(|r| ("autoscale.idle_grace", r))?;
    let headroom = raw.headroom.unwrap_or(defaults.headroom);
    if !(0.0..=10.0).contains(&headroom) {
        return Err(("autoscale.headroom", format!("{headroom} is out of range: give 0 to 10 (0.2 keeps 20% spare)")));
    }
    Ok(Autoscale { mode, lead, idle_grace, headroom })
}
