//! The allocator's vocabulary: rates, priorities, keys and time.

use std::fmt;

/// Milliseconds since an epoch the caller chooses (the daemon uses its start).
/// The allocator never reads a clock: every call that needs time takes `now`.
pub type Millis = u64;

/// A tenant's name, as written in `[tenants.NAME]`.
pub type TenantId = String;

/// A pool's name, as written in `[pools.NAME]`.
pub type PoolId = String;

/// An allocation at or above this is no limit: the stream is not paced.
/// (A stream's max is capped here too: many unlimited maxima must not add
/// up to a cap.)
pub const UNLIMITED: u64 = 1 << 60;

/// What a stream or lease asks for, in bytes per second: `min <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Below this the stream is useless: admission reserves it.
    pub min: u64,
    /// The stream never gets more than this (outside a burst).
    pub max: u64,
}

impl Rate {
    /// A rate of exactly `bytes` per second.
    pub fn fixed(bytes: u64) -> Self {
        Rate { min: bytes, max: bytes }
    }
}

/// A stream's priority: higher wins. Its weight in the fair share is
/// `priority + 1`, so priority 0 still gets a share.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u8);

impl Priority {
    /// The weight of a stream of this priority in the water-filling.
    pub fn weight(self) -> u32 {
        u32::from(self.0) + 1
    }
}

/// A stream as the daemon knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamKey(pub u64);

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream {}", self.0)
    }
}

/// A lease handed to a gateway that streams data itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub u64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease {}", self.0)
    }
}

/// Whatever holds a share of the bandwidth: a stream or a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Holder {
    /// A stream admitted with [`Allocator::admit`](super::Allocator::admit).
    Stream(StreamKey),
    /// A lease granted with [`Allocator::lease`](super::Allocator::lease).
    Lease(LeaseId),
}

/// The level whose capacity ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    /// The host's `[capacity] egress`.
    Host,
    /// A pool's `egress`.
    Pool(PoolId),
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Host => f.write_str("host"),
            Level::Pool(p) => write!(f, "pool {p}"),
        }
    }
}
