//! Hostile peers against the real daemon, each asserting the bound it
//! attacks: the daemon's other clients answered within [`PROBE_BOUND`]
//! (support), its memory bounded, nothing served that is not counted.
//!
//! A test binary of its own, and one attack at a time ([`one_at_a_time`]):
//! cargo runs test binaries one after another, so these timing bounds are
//! measured with no other test's daemons competing for the two cores.

#[path = "../e2e/support.rs"]
mod support;

mod peers;

/// Held for the whole of each attack.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}
