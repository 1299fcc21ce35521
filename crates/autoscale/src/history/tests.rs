use proptest::prelude::*;

use super::codec::{MAGIC, MAX_POOLS, MAX_POOL_NAME};
use super::*;

fn pool(first_minute: u64, arrivals: &[u32]) -> PoolHistory {
    PoolHistory { first_minute, arrivals: arrivals.iter().copied().collect(), mean_duration_ms: 1500.0, durations: 7 }
}

fn file(pools: &[(&str, PoolHistory)]) -> HistoryFile {
    HistoryFile { pools: pools.iter().map(|(n, p)| (n.to_string(), p.clone())).collect() }
}

#[test]
fn push_pads_a_gap_with_zeros_and_ignores_old_minutes() {
    let mut h = PoolHistory::default();
    assert!(h.push(100, 5));
    assert!(h.push(103, 2));
    assert_eq!(h.first_minute, 100);
    assert_eq!(h.arrivals, [5, 0, 0, 2]);
    assert!(!h.push(101, 9));
    assert!(!h.push(50, 9));
    assert_eq!(h.get(101), Some(0));
    assert_eq!(h.get(99), None);
    assert_eq!(h.end_minute(), 104);
}

#[test]
fn mark_missing_pads_with_missing_and_leaves_an_empty_history_alone() {
    let mut empty = PoolHistory::default();
    empty.mark_missing(1000);
    assert!(empty.arrivals.is_empty());

    let mut h = pool(10, &[1, 2]);
    h.mark_missing(15);
    assert_eq!(h.arrivals, [1, 2, MISSING, MISSING, MISSING]);
    assert_eq!(h.observed(), 2);
    h.push(16, 4);
    assert_eq!(h.arrivals, [1, 2, MISSING, MISSING, MISSING, 0, 4]);
}

#[test]
fn history_is_trimmed_to_minutes_kept() {
    let mut h = PoolHistory::default();
    h.push(0, 1);
    h.push(MINUTES_KEPT as u64 + 9, 3);
    assert_eq!(h.arrivals.len(), MINUTES_KEPT);
    assert_eq!(h.first_minute, 10);
    assert_eq!(h.arrivals.back(), Some(&3));

    // A gap of years costs no more than one of five weeks.
    h.mark_missing(u64::from(u32::MAX));
    assert_eq!(h.arrivals.len(), MINUTES_KEPT);
    assert_eq!(h.end_minute(), u64::from(u32::MAX));
    assert_eq!(h.observed(), 0);
}

#[test]
fn from_series_keeps_the_last_minutes() {
    let series: Vec<u32> = (0..MINUTES_KEPT as u32 + 5).collect();
    let h = PoolHistory::from_series(1000, &series);
    assert_eq!(h.first_minute, 1005);
    assert_eq!(h.arrivals.front(), Some(&5));
    assert_eq!(h.end_minute(), 1000 + series.len() as u64);
}

#[test]
fn mean_duration_is_a_running_mean_then_exponentially_weighted() {
    let mut h = PoolHistory::default();
    for d in [1000, 2000, 3000] {
        h.record_duration(d);
    }
    assert_eq!(h.mean_duration_ms, 2000.0);
    h.durations = DURATION_WINDOW * 5;
    h.record_duration(2000 + DURATION_WINDOW * 10);
    assert!((h.mean_duration_ms - 2010.0).abs() < 1e-9, "{}", h.mean_duration_ms);
}

#[test]
fn round_trip() {
    let f = file(&[
        ("a", pool(28_000_000, &[1, 2, MISSING, 0, u32::MAX - 1])),
        ("b-pool_2", pool(0, &[])),
        (&"x".repeat(MAX_POOL_NAME), pool(MINUTES_KEPT as u64, &vec![42; MINUTES_KEPT])),
    ]);
    assert_eq!(decode(&encode(&f)), Ok(f));
    assert_eq!(decode(&encode(&HistoryFile::default())), Ok(HistoryFile::default()));
}

#[test]
fn encode_leaves_out_what_decode_would_refuse() {
    let mut f = file(&[("ok", pool(5, &[1])), ("", pool(5, &[1])), (&"y".repeat(65), pool(5, &[1]))]);
    let mut nan = pool(5, &[1]);
    nan.mean_duration_ms = f64::NAN;
    f.pools.insert("nan".into(), nan);
    let mut long = pool(5, &[]);
    long.arrivals = (0..MINUTES_KEPT as u32 + 3).collect();
    f.pools.insert("long".into(), long);
    let back = decode(&encode(&f)).unwrap();
    assert_eq!(back.pools.keys().collect::<Vec<_>>(), ["long", "ok"]);
    assert_eq!(back.pools["long"].first_minute, 8);
    assert_eq!(back.pools["long"].arrivals.front(), Some(&3));

    let many = HistoryFile { pools: (0..MAX_POOLS + 3).map(|i| (format!("p{i:04}"), pool(0, &[1]))).collect() };
    assert_eq!(decode(&encode(&many)).unwrap().pools.len(), MAX_POOLS);
}

/// Rewrites the length and the checksum after an edit.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(bytes.len() - 4);
    let len = (bytes.len() + 4) as u32;
    bytes[12..16].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn decode_says_what_is_wrong() {
    let good = encode(&file(&[("a", pool(3, &[1, 2])), ("b", pool(3, &[]))]));
    let with = |at: usize, value: &[u8]| {
        let mut b = good.clone();
        b[at..at + value.len()].copy_from_slice(value);
        b
    };
    assert_eq!(decode(b"STLT"), Err(HistoryError::BadMagic));
    assert_eq!(decode(&with(0, b"X")), Err(HistoryError::BadMagic));
    assert_eq!(decode(&with(8, &[2, 0])), Err(HistoryError::UnsupportedVersion(2)));
    assert_eq!(decode(&with(10, &[1, 1])), Err(HistoryError::TooManyPools { count: 257 }));
    let at = good.len() - 3;
    assert!(matches!(decode(&good[..at]), Err(HistoryError::Truncated { at: a, .. }) if a == at));
    assert!(matches!(decode(&good[..11]), Err(HistoryError::Truncated { at: 11, .. })));
    let mut longer = good.clone();
    longer.push(0);
    assert_eq!(decode(&longer), Err(HistoryError::TrailingBytes { len: good.len(), extra: 1 }));
    let last = good.len() - 5;
    assert!(matches!(decode(&with(last, &[good[last] ^ 1])), Err(HistoryError::ChecksumMismatch { .. })));

    // Content that passes the checksum but breaks a bound.
    assert_eq!(decode(&reseal(with(16, &[0]))), Err(HistoryError::PoolNameLength { at: 16, len: 0 }));
    assert_eq!(decode(&reseal(with(16, &[65]))), Err(HistoryError::PoolNameLength { at: 16, len: 65 }));
    assert_eq!(decode(&reseal(with(17, &[0xff]))), Err(HistoryError::PoolNameNotUtf8 { at: 17 }));
    assert_eq!(decode(&reseal(with(17, b"c"))), Err(HistoryError::PoolOutOfOrder { pool: "b".into() }));
    let minutes = 16 + 2 + 24;
    let err = decode(&reseal(with(minutes, &(MINUTES_KEPT as u32 + 1).to_le_bytes())));
    assert_eq!(err, Err(HistoryError::TooManyMinutes { pool: "a".into(), count: MINUTES_KEPT + 1 }));
    let err = decode(&reseal(with(minutes, &1000u32.to_le_bytes())));
    assert!(matches!(err, Err(HistoryError::Truncated { .. })), "{err:?}");
    let err = decode(&reseal(with(18, &u64::MAX.to_le_bytes())));
    assert!(matches!(err, Err(HistoryError::FirstMinute { .. })), "{err:?}");
    let err = decode(&reseal(with(26, &(-1.0f64).to_bits().to_le_bytes())));
    assert!(matches!(err, Err(HistoryError::BadDuration { .. })), "{err:?}");
    let err = decode(&reseal(with(10, &[1, 0])));
    assert!(matches!(err, Err(HistoryError::TrailingBytes { .. })), "{err:?}");
}

#[test]
fn errors_read_well() {
    let e = HistoryError::UnsupportedVersion(7);
    assert_eq!(e.to_string(), "unsupported history file version 7 (this build reads 1)");
    let e = HistoryError::Truncated { at: 42, what: "the arrivals" };
    assert_eq!(e.to_string(), "truncated at byte 42: the arrivals does not fit");
    let e = HistoryError::PoolNameLength { at: 16, len: 65 };
    assert_eq!(e.to_string(), "pool name at byte 16 is 65 bytes: empty or longer than 64");
}

fn any_pool() -> impl Strategy<Value = PoolHistory> {
    let arrivals = prop::collection::vec(prop_oneof![0u32..500, Just(MISSING)], 0..300);
    (0u64..40_000_000, arrivals, 0.0f64..1e7, any::<u64>()).prop_map(|(first_minute, a, mean, durations)| PoolHistory {
        first_minute,
        arrivals: a.into(),
        mean_duration_ms: mean,
        durations,
    })
}

fn any_file() -> impl Strategy<Value = HistoryFile> {
    prop::collection::btree_map("[a-z0-9_-]{1,64}", any_pool(), 0..5).prop_map(|pools| HistoryFile { pools })
}

proptest! {
    #[test]
    fn any_file_round_trips(f in any_file()) {
        prop_assert_eq!(decode(&encode(&f)), Ok(f));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = decode(&bytes);
        let mut framed = MAGIC.to_vec();
        framed.extend_from_slice(&bytes);
        let _ = decode(&framed);
        let _ = decode(&reseal_checked(framed));
    }

    #[test]
    fn damaged_files_are_refused(f in any_file(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let good = encode(&f);
        let truncated = &good[..cut.index(good.len())];
        prop_assert!(decode(truncated).is_err());
        let mut flipped = good.clone();
        let at = flip.index(good.len());
        flipped[at] ^= 1 << bit;
        // One flipped bit is always caught: by the magic, the version, the
        // length or (CRC32C detects every one-bit error) the checksum.
        prop_assert!(decode(&flipped).is_err());
        let _ = decode(&reseal_checked(flipped));
    }
}

/// `reseal` for any bytes: a checksum over random content, so decoding gets
/// past the checksum into the pools.
fn reseal_checked(bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() < 20 {
        return bytes;
    }
    reseal(bytes)
}
