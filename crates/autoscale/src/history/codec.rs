//! The history file: every pool's [`PoolHistory`], little-endian.
//!
//! ```text
//! offset  bytes  field
//!      0      8  magic "STLTHIST"
//!      8      2  version (1)
//!     10      2  pool count (at most MAX_POOLS)
//!     12      4  file length in bytes, this header and the checksum included
//!     16         per pool, in name order, each name once:
//!             1    name length (1 to MAX_POOL_NAME)
//!             n    name, UTF-8
//!             8    first minute (at most MAX_FIRST_MINUTE)
//!             8    mean stream duration, ms (f64 bits; finite, not negative)
//!             8    streams the mean is over
//!             4    minute count m (at most MINUTES_KEPT)
//!             4*m  arrivals per minute (u32::MAX: missing)
//! length-4    4  CRC32C of every byte before it
//! ```
//!
//! A file is at most [`MAX_FILE_BYTES`] (about 52 MB at 256 pools of five
//! weeks; a pool of five weeks is 197 KiB), so a reader reads at most that
//! many bytes. [`decode`] checks the magic, the version, the length and the
//! checksum before it reads a pool, checks every count against its bound
//! before it allocates, and never panics.

use std::collections::BTreeMap;

use super::{HistoryFile, PoolHistory, MINUTES_KEPT};

/// The first bytes of a history file.
pub const MAGIC: [u8; 8] = *b"STLTHIST";
/// The version [`encode`] writes and [`decode`] reads.
pub const VERSION: u16 = 1;
/// Pools in a file, at most.
pub const MAX_POOLS: usize = 256;
/// Bytes of a pool name, at most (the config allows 64 characters).
pub const MAX_POOL_NAME: usize = 64;
/// The largest first minute: the minute of `u64::MAX` milliseconds.
pub const MAX_FIRST_MINUTE: u64 = u64::MAX / 60_000;

const HEADER: usize = 16;
const CHECKSUM: usize = 4;
const POOL_FIXED: usize = 1 + 8 + 8 + 8 + 4;
/// The largest file [`encode`] writes and [`decode`] accepts.
pub const MAX_FILE_BYTES: usize = HEADER + MAX_POOLS * (POOL_FIXED + MAX_POOL_NAME + 4 * MINUTES_KEPT) + CHECKSUM;

/// What is wrong with a history file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistoryError {
    #[error("history file of {len} bytes, more than the {max} allowed")]
    TooLarge { len: usize, max: usize },
    #[error("bad magic: not a history file")]
    BadMagic,
    #[error("unsupported history file version {0} (this build reads {VERSION})")]
    UnsupportedVersion(u16),
    #[error("truncated at byte {at}: {what} does not fit")]
    Truncated { at: usize, what: &'static str },
    #[error("{extra} bytes after the end the header gives ({len} bytes)")]
    TrailingBytes { len: usize, extra: usize },
    #[error("checksum mismatch: the file says {stored:#010x}, its content gives {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
    #[error("{count} pools, more than the {MAX_POOLS} allowed")]
    TooManyPools { count: usize },
    #[error("pool name at byte {at} is {len} bytes: empty or longer than {MAX_POOL_NAME}")]
    PoolNameLength { at: usize, len: usize },
    #[error("pool name at byte {at} is not UTF-8")]
    PoolNameNotUtf8 { at: usize },
    #[error("pool {pool:?} out of name order or twice")]
    PoolOutOfOrder { pool: String },
    #[error("pool {pool:?}: {count} minutes, more than the {MINUTES_KEPT} kept")]
    TooManyMinutes { pool: String, count: usize },
    #[error("pool {pool:?}: first minute {minute} is out of range")]
    FirstMinute { pool: String, minute: u64 },
    #[error("pool {pool:?}: mean stream duration {value} ms is not a duration")]
    BadDuration { pool: String, value: f64 },
}

/// Whether `decode` would accept this pool (the name and the numbers; a
/// longer history is cut to its last `MINUTES_KEPT` minutes).
fn encodable(name: &str, pool: &PoolHistory) -> bool {
    (1..=MAX_POOL_NAME).contains(&name.len())
        && pool.first_minute <= MAX_FIRST_MINUTE
        && pool.mean_duration_ms.is_finite()
        && pool.mean_duration_ms >= 0.0
}

/// The file for `file`. Pools [`decode`] would refuse (an empty or too long
/// name, a first minute or a mean duration out of range) are left out, as
/// are pools past the first [`MAX_POOLS`]; a pool with more than
/// [`MINUTES_KEPT`] minutes keeps its last ones.
pub fn encode(file: &HistoryFile) -> Vec<u8> {
    let pools: Vec<_> = file.pools.iter().filter(|(n, p)| encodable(n, p)).take(MAX_POOLS).collect();
    let mut out = Vec::with_capacity(HEADER + pools.len() * POOL_FIXED + CHECKSUM);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(pools.len() as u16).to_le_bytes());
    out.extend_from_slice(&[0; 4]); // the length, once known
    for (name, pool) in pools {
        let skip = pool.arrivals.len().saturating_sub(MINUTES_KEPT);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(pool.first_minute + skip as u64).to_le_bytes());
        out.extend_from_slice(&pool.mean_duration_ms.to_bits().to_le_bytes());
        out.extend_from_slice(&pool.durations.to_le_bytes());
        out.extend_from_slice(&((pool.arrivals.len() - skip) as u32).to_le_bytes());
        for n in pool.arrivals.iter().skip(skip) {
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    let len = (out.len() + CHECKSUM) as u32;
    out[12..16].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Reads a history file. Never panics, whatever `bytes` are.
pub fn decode(bytes: &[u8]) -> Result<HistoryFile, HistoryError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(HistoryError::TooLarge { len: bytes.len(), max: MAX_FILE_BYTES });
    }
    let mut r = Reader { bytes, at: 0 };
    if r.take(MAGIC.len(), "the magic").map_err(|_| HistoryError::BadMagic)? != MAGIC {
        return Err(HistoryError::BadMagic);
    }
    let version = r.u16("the version")?;
    if version != VERSION {
        return Err(HistoryError::UnsupportedVersion(version));
    }
    let count = usize::from(r.u16("the pool count")?);
    let len = r.u32("the file length")? as usize;
    if count > MAX_POOLS {
        return Err(HistoryError::TooManyPools { count });
    }
    if len < HEADER + CHECKSUM || len > bytes.len() {
        return Err(HistoryError::Truncated { at: bytes.len(), what: "the length the header gives" });
    }
    if len < bytes.len() {
        return Err(HistoryError::TrailingBytes { len, extra: bytes.len() - len });
    }
    let (content, stored) = bytes.split_at(len - CHECKSUM);
    let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
    let computed = crc32c::crc32c(content);
    if stored != computed {
        return Err(HistoryError::ChecksumMismatch { stored, computed });
    }
    let mut r = Reader { bytes: content, at: HEADER };
    let mut pools = BTreeMap::new();
    for _ in 0..count {
        let (name, pool) = read_pool(&mut r)?;
        if pools.last_key_value().is_some_and(|(last, _)| *last >= name) {
            return Err(HistoryError::PoolOutOfOrder { pool: name });
        }
        pools.insert(name, pool);
    }
    if r.at != content.len() {
        return Err(HistoryError::TrailingBytes { len: r.at + CHECKSUM, extra: content.len() - r.at });
    }
    Ok(HistoryFile { pools })
}

fn read_pool(r: &mut Reader<'_>) -> Result<(String, PoolHistory), HistoryError> {
    let at = r.at;
    let len = usize::from(r.take(1, "a pool name length")?[0]);
    if !(1..=MAX_POOL_NAME).contains(&len) {
        return Err(HistoryError::PoolNameLength { at, len });
    }
    let name = r.take(len, "a pool name")?;
    let name = String::from_utf8(name.to_vec()).map_err(|_| HistoryError::PoolNameNotUtf8 { at: at + 1 })?;
    let first_minute = r.u64("a first minute")?;
    if first_minute > MAX_FIRST_MINUTE {
        return Err(HistoryError::FirstMinute { pool: name, minute: first_minute });
    }
    let mean_duration_ms = f64::from_bits(r.u64("a mean duration")?);
    if !mean_duration_ms.is_finite() || mean_duration_ms < 0.0 {
        return Err(HistoryError::BadDuration { pool: name, value: mean_duration_ms });
    }
    let durations = r.u64("a duration count")?;
    let minutes = r.u32("a minute count")? as usize;
    if minutes > MINUTES_KEPT {
        return Err(HistoryError::TooManyMinutes { pool: name, count: minutes });
    }
    let arrivals = r.take(4 * minutes, "the arrivals")?;
    let arrivals = arrivals.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((name, PoolHistory { first_minute, arrivals, mean_duration_ms, durations }))
}

/// Reads forward through bytes, every read bounded.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HistoryError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(HistoryError::Truncated { at: self.bytes.len(), what })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, HistoryError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, HistoryError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, HistoryError> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
}
