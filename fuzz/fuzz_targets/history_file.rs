//! The demand history file (`history.bin`) as `streamletd` reads it at
//! start: whatever bytes are in the file, up to the largest history there
//! can be.
//!
//! Each input is decoded twice: as it is, and sealed (its length field and
//! CRC32C made right), so that mutations reach the pools behind the
//! checksum. Checks: a file that decodes has every count and value within
//! its bounds, and encodes again to exactly its bytes; no decode holds heap
//! its input did not pay for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamlet_autoscale::history::codec::{MAX_FILE_BYTES, MAX_FIRST_MINUTE, MAX_POOLS, MAX_POOL_NAME};
use streamlet_autoscale::history::{self, MINUTES_KEPT};
use streamlet_fuzz::heap;

/// Arrivals are 4 bytes in the file and in memory; a pool costs at least 30
/// bytes and takes a B-tree slot of its name and history (80 bytes) in a
/// node of eleven, the first node in the fixed part.
const PER_BYTE: usize = 16;
const FIXED: usize = 4096;

fuzz_target!(|bytes: &[u8]| {
    check(bytes);
    if bytes.len() >= 20 {
        let mut sealed = bytes.to_vec();
        let len = sealed.len() as u32;
        sealed[12..16].copy_from_slice(&len.to_le_bytes());
        let body = sealed.len() - 4;
        let crc = crc32c::crc32c(&sealed[..body]);
        sealed[body..].copy_from_slice(&crc.to_le_bytes());
        check(&sealed);
    }
});

fn check(bytes: &[u8]) {
    let (decoded, peak) = heap::peak_during(|| history::decode(bytes));
    heap::assert_paid_for("a history file", bytes.len(), peak, PER_BYTE, FIXED);
    let Ok(file) = decoded else { return };
    assert!(bytes.len() <= MAX_FILE_BYTES);
    assert!(file.pools.len() <= MAX_POOLS);
    for (name, pool) in &file.pools {
        assert!((1..=MAX_POOL_NAME).contains(&name.len()), "{name:?}");
        assert!(pool.first_minute <= MAX_FIRST_MINUTE);
        assert!(pool.mean_duration_ms.is_finite() && pool.mean_duration_ms >= 0.0);
        assert!(pool.arrivals.len() <= MINUTES_KEPT);
    }
    assert_eq!(history::encode(&file), bytes, "a decoded file encodes to its own bytes");
}
