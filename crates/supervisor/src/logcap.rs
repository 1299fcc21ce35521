//! Warnings that peers can cause, counted instead of repeated.
//!
//! A refused request, a refused connection, a streamlet's word about a
//! stream it does not serve: each is worth a line, but a peer can cause
//! hundreds of thousands a second, and every line costs the daemon's thread
//! and the host's disk. So each kind of warning is logged at most
//! [`PER_WINDOW`] times per [`WINDOW`] for each peer (a uid) or streamlet,
//! and what was held back is logged as one line with its count when the
//! window ends (by the daemon's tick, [`LogLimiter::flush`]).

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines of one kind about one source, at most, per window.
pub const PER_WINDOW: u32 = 5;

/// The window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Sources tracked at once; past it, further sources share one count.
const MAX_SOURCES: usize = 4096;

/// Who a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The daemon itself (accept errors and the like).
    Daemon,
    /// A control socket peer, by uid.
    Uid(u32),
    /// A streamlet, by id.
    Worker(u64),
    /// Every source past [`MAX_SOURCES`].
    Others,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Daemon => f.write_str("the daemon"),
            Source::Uid(uid) => write!(f, "uid {uid}"),
            Source::Worker(id) => write!(f, "streamlet {id}"),
            Source::Others => f.write_str("other sources"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    since: Instant,
    logged: u32,
    held_back: u64,
}

/// What to do with one warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Log,
    HoldBack,
}

/// Counts per kind and source, pure: `now` is passed in.
#[derive(Debug, Default)]
pub struct Counts {
    slots: HashMap<(&'static str, Source), Slot>,
}

impl Counts {
    pub fn check(&mut self, kind: &'static str, source: Source, now: Instant) -> Verdict {
        let source = if self.slots.len() >= MAX_SOURCES && !self.slots.contains_key(&(kind, source)) {
            Source::Others
        } else {
            source
        };
        let slot = self.slots.entry((kind, source)).or_insert(Slot { since: now, logged: 0, held_back: 0 });
        if slot.logged < PER_WINDOW {
            slot.logged += 1;
            Verdict::Log
        } else {
            slot.held_back += 1;
            Verdict::HoldBack
        }
    }

    /// The windows that ended: each (kind, source, lines held back) that
    /// held any back. Ended windows are forgotten.
    pub fn ended(&mut self, now: Instant) -> Vec<(&'static str, Source, u64)> {
        let mut summaries = Vec::new();
        self.slots.retain(|(kind, source), slot| {
            if now.duration_since(slot.since) < WINDOW {
                return true;
            }
            if slot.held_back > 0 {
                summaries.push((*kind, *source, slot.held_back));
            }
            false
        });
        summaries
    }
}

/// The limiter: one per process (a process is one daemon).
#[derive(Debug, Default)]
pub struct LogLimiter {
    counts: Mutex<Counts>,
}

/// The process's limiter.
pub fn limiter() -> &'static LogLimiter {
    static LIMITER: std::sync::OnceLock<LogLimiter> = std::sync::OnceLock::new();
    LIMITER.get_or_init(LogLimiter::default)
}

impl LogLimiter {
    fn allowed(&self, kind: &'static str, source: Source) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.check(kind, source, Instant::now()) == Verdict::Log
    }

    /// A warning about the daemon itself.
    pub fn warn(&self, kind: &'static str, message: impl Display) {
        if self.allowed(kind, Source::Daemon) {
            tracing::warn!(kind, "{message}");
        }
    }

    /// A note about the daemon itself, at info.
    pub fn info(&self, kind: &'static str, message: impl Display) {
        if self.allowed(kind, Source::Daemon) {
            tracing::info!(kind, "{message}");
        }
    }

    /// A warning a peer (uid) caused.
    pub fn warn_peer(&self, kind: &'static str, uid: u32, message: impl Display) {
        if self.allowed(kind, Source::Uid(uid)) {
            tracing::warn!(kind, uid, "{message}");
        }
    }

    /// A note a peer (uid) caused, at info.
    pub fn info_peer(&self, kind: &'static str, uid: u32, message: impl Display) {
        if self.allowed(kind, Source::Uid(uid)) {
            tracing::info!(kind, uid, "{message}");
        }
    }

    /// A warning a streamlet caused.
    pub fn warn_worker(&self, kind: &'static str, worker: u64, message: impl Display) {
        if self.allowed(kind, Source::Worker(worker)) {
            tracing::warn!(kind, worker, "{message}");
        }
    }

    /// Logs, once each, what the windows that ended held back. Called by
    /// the daemon's tick.
    pub fn flush(&self) {
        let summaries = self.counts.lock().unwrap_or_else(|p| p.into_inner()).ended(Instant::now());
        for (kind, source, held_back) in summaries {
            tracing::warn!(kind, %source, held_back, "{held_back} more {kind} warnings about {source} in the last {WINDOW:?}, not logged one by one");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_logs_a_few_then_is_counted_and_summed_up_once() {
        let t0 = Instant::now();
        let mut counts = Counts::default();
        let verdicts: Vec<Verdict> = (0..100_000).map(|_| counts.check("refused", Source::Uid(7), t0)).collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Log).count(), PER_WINDOW as usize);
        assert_eq!(counts.check("refused", Source::Uid(8), t0), Verdict::Log, "another peer is its own");
        assert_eq!(counts.check("other", Source::Uid(7), t0), Verdict::Log, "another kind is its own");
        assert!(counts.ended(t0 + WINDOW / 2).is_empty(), "the window is not over");
        let ended = counts.ended(t0 + WINDOW);
        assert_eq!(ended, vec![("refused", Source::Uid(7), 100_000 - u64::from(PER_WINDOW))]);
        assert!(counts.slots.is_empty(), "ended windows are forgotten");
        assert_eq!(counts.check("refused", Source::Uid(7), t0 + WINDOW), Verdict::Log, "a new window");
    }

    #[test]
    fn sources_are_bounded() {
        let t0 = Instant::now();
        let mut counts = Counts::default();
        for worker in 0..100_000u64 {
            counts.check("ended_unknown", Source::Worker(worker), t0);
        }
        assert!(counts.slots.len() <= MAX_SOURCES + 1);
        assert!(counts.slots.contains_key(&("ended_unknown", Source::Others)));
    }
}
