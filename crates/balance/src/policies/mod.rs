//! The placement policies a pool can name (`placement = ...`), and
//! [`PolicyKind::build`], which makes one from the pool's settings.
//!
//! Every policy keeps only the ready streamlets of one pool: the daemon adds a
//! streamlet when it becomes ready and removes it when it starts draining,
//! stops or fails, so no policy can choose one that is not ready.
//!
//! Every policy is a [`Bookkeeping`] of those streamlets' loads around a
//! [`Rule`] of its own, which only chooses; a rule that takes the first
//! streamlet of an order is [`Ranked`] by an [`Order`]. A new policy is a
//! file here with its rule and a variant of [`PolicyKind`].

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Placement;

mod bookkeeping;
mod geo;
mod layered;
mod least_connections;
mod p2c;
mod pack;
mod ranked;
mod round_robin;
mod share;
#[cfg(test)]
mod tests;

pub use bookkeeping::{Bookkeeping, Load, Member, Members, Rule};
pub use geo::{Geo, Nearest, REGION_LABEL, UNKNOWN_DISTANCE};
pub use layered::{FewestStreams, Layered};
pub use least_connections::{LeastConnections, LeastShare};
pub use p2c::{PowerOfTwo, TwoChoices};
pub use pack::{Fullest, Pack};
pub use ranked::{Order, Ranked};
pub use round_robin::{Ring, RoundRobin};
pub use share::ByShare;

/// A placement policy, by the name a pool's config gives it
/// (`placement = "least-connections"`): the config reads this type itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    /// `least-connections`: the smallest load share, ties round-robin.
    #[default]
    LeastConnections,
    /// `layered`: N streams on every streamlet before any gets N + 1.
    Layered,
    /// `p2c`: the less loaded of two streamlets chosen at random.
    #[serde(rename = "p2c")]
    PowerOfTwo,
    /// `geo`: load share plus a distance penalty to the stream's region.
    Geo,
    /// `round-robin`: the streamlets in turn.
    RoundRobin,
    /// `pack`: the fullest streamlet with room, so autoscaled pools can shrink.
    Pack,
}

/// What the policies need besides their streamlets. Each policy reads only
/// its own fields.
#[derive(Debug, Clone, Default)]
pub struct PolicyOptions {
    /// `layered`: labels (key, value) that win a tie, for example `forwarded=true`.
    pub prefer: Vec<(String, String)>,
    /// `geo`: distances between regions, in either direction.
    pub distances: HashMap<(String, String), u32>,
    /// `geo`: the score added per unit of distance.
    pub penalty_per_unit: f64,
    /// `p2c`: the seed of its random choices.
    pub seed: u64,
}

impl PolicyKind {
    /// Every policy, in the order of the config documentation.
    pub const ALL: [PolicyKind; 6] =
        [Self::LeastConnections, Self::Layered, Self::PowerOfTwo, Self::Geo, Self::RoundRobin, Self::Pack];

    /// The name used in the config (`least-connections`, `p2c`, ...), the
    /// same as serde's.
    pub fn name(self) -> &'static str {
        match self {
            Self::LeastConnections => "least-connections",
            Self::Layered => "layered",
            Self::PowerOfTwo => "p2c",
            Self::Geo => "geo",
            Self::RoundRobin => "round-robin",
            Self::Pack => "pack",
        }
    }

    /// A new, empty policy of this kind.
    pub fn build(self, options: &PolicyOptions) -> Box<dyn Placement> {
        match self {
            Self::LeastConnections => Box::new(LeastConnections::default()),
            Self::Layered => Box::new(Layered::new(options.prefer.clone())),
            Self::PowerOfTwo => Box::new(PowerOfTwo::new(options.seed)),
            Self::Geo => Box::new(Geo::new(options.distances.clone(), options.penalty_per_unit)),
            Self::RoundRobin => Box::new(RoundRobin::default()),
            Self::Pack => Box::new(Pack::default()),
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A placement name that no policy has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown placement policy {0:?}: write one of {known}", known = PolicyKind::listed())]
pub struct UnknownPolicy(pub String);

impl PolicyKind {
    /// Every policy's name, as an error lists them: "a, b or c".
    pub fn listed() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
        match names.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| UnknownPolicy(s.to_string()))
    }
}
