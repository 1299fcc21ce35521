//! A token bucket on a stream's writes: the worker's own pacing, for streams
//! the kernel does not pace (a Unix socket) and for bytes a handler copies.
//!
//! A courtesy of cooperative code, not a boundary: a handler that writes to
//! the descriptor itself is not held by it. TCP streams are paced by the
//! kernel (`SO_MAX_PACING_RATE`, set by the daemon), which the streamlet
//! cannot change.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The bucket holds this much of the rate: the longest burst at line speed.
const BURST: Duration = Duration::from_millis(20);
/// But at least this many bytes, so that small rates still write whole buffers.
const MIN_BURST: f64 = 4096.0;

#[derive(Debug)]
pub(crate) struct Pacer {
    /// Bytes per second; 0: no limit. The daemon changes it (`UpdateRate`).
    rate: Arc<AtomicU64>,
    tokens: f64,
    refilled: Instant,
    wait: Option<Pin<Box<Sleep>>>,
    /// Time spent waiting for tokens, in microseconds.
    pub stalled_us: Arc<AtomicU64>,
}

impl Pacer {
    pub fn new(rate: Arc<AtomicU64>, stalled_us: Arc<AtomicU64>) -> Pacer {
        Pacer { rate, tokens: MIN_BURST, refilled: Instant::now(), wait: None, stalled_us }
    }

    /// How many of `wanted` bytes may be written now; `Pending` (with a wake
    /// set) when none may.
    pub fn poll_allow(&mut self, cx: &mut Context<'_>, wanted: usize) -> Poll<usize> {
        let rate = self.rate.load(Ordering::Relaxed);
        if rate == 0 {
            return Poll::Ready(wanted);
        }
        loop {
            if let Some(wait) = self.wait.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let waited = self.wait.take().map_or(Duration::ZERO, |_| self.refilled.elapsed());
                self.stalled_us.fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
            }
            let now = Instant::now();
            let rate = rate as f64;
            let cap = (rate * BURST.as_secs_f64()).max(MIN_BURST);
            self.tokens = (self.tokens + rate * now.duration_since(self.refilled).as_secs_f64()).min(cap);
            self.refilled = now;
            if self.tokens >= 1.0 {
                return Poll::Ready(wanted.min(self.tokens as usize));
            }
            let short = (1.0 - self.tokens).max(cap / 4.0);
            self.wait = Some(Box::pin(tokio::time::sleep(Duration::from_secs_f64(short / rate))));
        }
    }

    /// `n` bytes were written.
    pub fn spend(&mut self, n: usize) {
        if self.rate.load(Ordering::Relaxed) != 0 {
            self.tokens -= n as f64;
        }
    }
}
