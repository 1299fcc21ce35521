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

/// The longest single wait: a rate raised meanwhile (`UpdateRate`) is seen
/// within this.
const MAX_WAIT: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub(crate) struct Pacer {
    /// Bytes per second; 0: no limit. The daemon changes it (`UpdateRate`).
    rate: Arc<AtomicU64>,
    tokens: f64,
    refilled: Instant,
    /// A wait for tokens, and when it began.
    wait: Option<(Pin<Box<Sleep>>, Instant)>,
    /// Time spent waiting for tokens, in microseconds.
    pub stalled_us: Arc<AtomicU64>,
}

impl Pacer {
    pub fn new(rate: Arc<AtomicU64>, stalled_us: Arc<AtomicU64>) -> Pacer {
        Pacer { rate, tokens: MIN_BURST, refilled: Instant::now(), wait: None, stalled_us }
    }

    /// How many of `wanted` bytes may be written now; `Pending` (with a wake
    /// set) when too few may. It waits for a quarter of the bucket (or all of
    /// `wanted`, if less) rather than trickling out a few bytes at a time.
    pub fn poll_allow(&mut self, cx: &mut Context<'_>, wanted: usize) -> Poll<usize> {
        loop {
            let rate = self.rate.load(Ordering::Relaxed);
            if rate == 0 {
                self.end_wait();
                return Poll::Ready(wanted);
            }
            if let Some((wait, _)) = self.wait.as_mut() {
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.end_wait();
            }
            let now = Instant::now();
            let rate = rate as f64;
            let cap = (rate * BURST.as_secs_f64()).max(MIN_BURST);
            self.tokens = (self.tokens + rate * now.duration_since(self.refilled).as_secs_f64()).min(cap);
            self.refilled = now;
            let enough = (wanted as f64).min(cap / 4.0).max(1.0);
            if self.tokens >= enough {
                return Poll::Ready(wanted.min(self.tokens as usize));
            }
            let wait = Duration::from_secs_f64((enough - self.tokens) / rate).min(MAX_WAIT);
            self.wait = Some((Box::pin(tokio::time::sleep(wait)), now));
        }
    }

    fn end_wait(&mut self) {
        if let Some((_, began)) = self.wait.take() {
            self.stalled_us.fetch_add(began.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
    }

    /// `n` bytes were written.
    pub fn spend(&mut self, n: usize) {
        if self.rate.load(Ordering::Relaxed) != 0 {
            self.tokens -= n as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[tokio::test(start_paused = true)]
    async fn a_raised_rate_is_seen_within_a_wait_and_zero_means_no_limit() {
        let rate = Arc::new(AtomicU64::new(100));
        let stalled = Arc::new(AtomicU64::new(0));
        let mut pacer = Pacer::new(rate.clone(), stalled.clone());
        assert_eq!(pacer.poll_allow(&mut cx(), 4096), Poll::Ready(4096), "the first bucket");
        pacer.spend(4096);
        assert_eq!(pacer.poll_allow(&mut cx(), 4096), Poll::Pending, "100 B/s: empty");
        rate.store(10_000_000, Ordering::Relaxed);
        tokio::time::advance(MAX_WAIT).await;
        assert!(matches!(pacer.poll_allow(&mut cx(), 4096), Poll::Ready(n) if n > 0), "the new rate within one wait");
        rate.store(0, Ordering::Relaxed);
        assert_eq!(pacer.poll_allow(&mut cx(), 1 << 20), Poll::Ready(1 << 20));
        let before = stalled.load(Ordering::Relaxed);
        tokio::time::advance(Duration::from_secs(60)).await;
        rate.store(100, Ordering::Relaxed);
        let _ = pacer.poll_allow(&mut cx(), 10);
        assert!(stalled.load(Ordering::Relaxed) - before < 1_000_000, "time unlimited is no stall");
    }

    #[tokio::test(start_paused = true)]
    async fn writes_come_in_chunks_not_trickles() {
        let rate = Arc::new(AtomicU64::new(20_000_000));
        let mut pacer = Pacer::new(rate, Arc::new(AtomicU64::new(0)));
        let mut calls = 0;
        let mut written = 0usize;
        while written < 2_000_000 {
            match pacer.poll_allow(&mut cx(), 64 * 1024) {
                Poll::Ready(n) => {
                    pacer.spend(n);
                    written += n;
                    calls += 1;
                }
                Poll::Pending => tokio::time::advance(Duration::from_millis(1)).await,
            }
        }
        // 2 MB at 20 MB/s in buckets of 400 KB: a few dozen writes, not thousands.
        assert!(calls < 100, "{calls} writes");
    }
}
