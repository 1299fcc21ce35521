//! A global allocator that keeps the live and peak heap, so that a target
//! can tell how much memory one decode held at once.
//!
//! A decoder that reserves room for what a length prefix announces, before
//! the bytes are there, shows up as a peak out of proportion to its input:
//! [`assert_paid_for`] fails the run. This works without a sanitizer
//! (libFuzzer's `-malloc_limit_mb` needs one to see allocations).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, metered.
#[derive(Debug)]
pub struct Metered;

#[global_allocator]
static GLOBAL: Metered = Metered;

// Per thread: what a decode holds is what its own thread allocated. A
// block freed by another thread than the one that took it counts against
// the one that frees it (hence signed).
thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add_unsigned(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().wrapping_sub_unsigned(bytes)));
}

// SAFETY: every call is forwarded unchanged to the system allocator, which
// upholds GlobalAlloc's contract; the counters only observe sizes.
unsafe impl GlobalAlloc for Metered {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds alloc's contract (a non-zero size).
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for alloc.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block this allocator gave, with its layout.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block this allocator gave, its layout
        // and a valid new size.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        new
    }
}

/// Runs `f`; its result, and the most heap this thread held at once while
/// it ran beyond what was live before (its result included).
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let result = f();
    let peak = PEAK.with(Cell::get);
    (result, usize::try_from(peak - before).unwrap_or(0))
}

/// Fails the run if decoding `input_len` bytes of `what` held more than
/// `per_byte` bytes of heap for each input byte, plus `fixed`.
pub fn assert_paid_for(what: &str, input_len: usize, peak: usize, per_byte: usize, fixed: usize) {
    let allowed = input_len.saturating_mul(per_byte).saturating_add(fixed);
    assert!(
        peak <= allowed,
        "decoding {input_len} bytes of {what} held {peak} bytes of heap at once, more than the {allowed} \
         ({per_byte} per input byte + {fixed}) its input pays for"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_counts_what_was_held_at_once() {
        let ((), peak) = peak_during(|| {
            let big = vec![1u8; 1 << 20];
            drop(std::hint::black_box(big));
            let small = vec![1u8; 1024];
            drop(std::hint::black_box(small));
        });
        assert!((1 << 20..(1 << 20) + 4096).contains(&peak), "{peak}");
    }

    #[test]
    fn a_reservation_the_input_does_not_back_fails() {
        let claimed = 1u32 << 24;
        let (_, peak) = peak_during(|| Vec::<u8>::with_capacity(claimed as usize));
        let held = std::panic::catch_unwind(|| assert_paid_for("a claim", 4, peak, 1024, 4096));
        assert!(held.is_err(), "a 4-byte input held {peak} bytes");
        assert_paid_for("a claim", 1 << 24, peak, 1, 0);
    }
}
