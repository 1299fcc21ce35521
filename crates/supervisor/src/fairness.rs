//! How much of the daemon's one thread the listings may take.
//!
//! A listing (`status`, `events`, `streams`, `workers`, `worker`, `quota`)
//! costs the thread time in proportion to what it lists, and a viewer can
//! ask for them as fast as it likes, on as many connections as it may open:
//! a hundred connections each asking for a large listing would keep the
//! thread busy for seconds, and every other client (a gateway's `open`, the
//! operator's `status`) would wait behind them. So listings by peers that
//! are not admins share a budget of thread time: each uid at most
//! [`UID_SHARE`] of every [`WINDOW`], all of them together at most
//! [`SHARE`]. A listing asked for while a share is spent waits (asleep,
//! holding nothing) for the next window; everything else goes on, and
//! admins (root, the daemon's own user, the `admin` role) are not held. The
//! rest of each window is the other requests', so none waits behind
//! listings for much more than [`SHARE`] plus one listing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window over which listings' time is counted.
pub const WINDOW: Duration = Duration::from_millis(100);

/// The thread time listings may take in each window, all uids together.
pub const SHARE: Duration = Duration::from_millis(30);

/// The thread time one uid's listings may take in each window.
pub const UID_SHARE: Duration = Duration::from_millis(15);

/// The time listings took in the current window, in all and per uid.
#[derive(Debug)]
pub struct ListingTime {
    state: Mutex<Shares>,
}

#[derive(Debug)]
struct Shares {
    all: Window,
    uids: HashMap<u32, Window>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    used: Duration,
}

impl Window {
    fn new(now: Instant) -> Self {
        Window { start: now, used: Duration::ZERO }
    }

    /// `None`: within `share` now; else the instant to ask again.
    fn turn(&mut self, now: Instant, share: Duration) -> Option<Instant> {
        if now.duration_since(self.start) >= WINDOW {
            *self = Window::new(now);
        }
        (self.used >= share).then_some(self.start + WINDOW)
    }

    fn spent(&mut self, took: Duration) {
        self.used = self.used.saturating_add(took);
    }
}

impl Shares {
    fn turn(&mut self, uid: u32, now: Instant) -> Option<Instant> {
        if self.uids.len() > 1024 {
            // Forget uids whose window is over (nothing of theirs counts).
            self.uids.retain(|_, w| now.duration_since(w.start) < WINDOW);
        }
        let own = self.uids.entry(uid).or_insert_with(|| Window::new(now)).turn(now, UID_SHARE);
        let all = self.all.turn(now, SHARE);
        own.into_iter().chain(all).max()
    }

    fn spent(&mut self, uid: u32, took: Duration) {
        self.all.spent(took);
        if let Some(w) = self.uids.get_mut(&uid) {
            w.spent(took);
        }
    }
}

impl Default for ListingTime {
    fn default() -> Self {
        Self { state: Mutex::new(Shares { all: Window::new(Instant::now()), uids: HashMap::new() }) }
    }
}

impl ListingTime {
    /// Waits until a listing of `uid`'s may run.
    pub async fn wait_turn(&self, uid: u32) {
        loop {
            let next = self.lock().turn(uid, Instant::now());
            match next {
                None => return,
                Some(at) => tokio::time::sleep_until(at.into()).await,
            }
        }
    }

    /// A listing of `uid`'s ran for `took`.
    pub fn spent(&self, uid: u32, took: Duration) {
        self.lock().spent(uid, took);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shares> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_takes_at_most_its_share_and_all_together_theirs() {
        let t0 = Instant::now();
        let mut shares = Shares { all: Window::new(t0), uids: HashMap::new() };
        let ms = Duration::from_millis;
        assert_eq!(shares.turn(1000, t0), None);
        shares.spent(1000, ms(10));
        assert_eq!(shares.turn(1000, t0 + ms(10)), None, "within its share");
        shares.spent(1000, ms(10));
        assert_eq!(shares.turn(1000, t0 + ms(20)), Some(t0 + WINDOW), "its share is spent");
        assert_eq!(shares.turn(2000, t0 + ms(20)), None, "another uid has its own");
        shares.spent(2000, ms(10));
        assert_eq!(shares.turn(3000, t0 + ms(30)), Some(t0 + WINDOW), "all of them spent theirs");
        assert_eq!(shares.turn(1000, t0 + WINDOW), None, "a new window, new shares");
    }

    #[tokio::test]
    async fn a_listing_past_the_share_waits_for_the_next_window() {
        let time = ListingTime::default();
        time.wait_turn(7).await;
        time.spent(7, SHARE);
        let before = Instant::now();
        time.wait_turn(7).await;
        assert!(before.elapsed() <= WINDOW + Duration::from_millis(50), "{:?}", before.elapsed());
    }
}
