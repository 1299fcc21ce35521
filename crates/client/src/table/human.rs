//! Durations and byte counts for people.

/// `850ms`, `12s`, `4m12s`, `2h03m`, `3d04h`: the two largest units, truncated.
pub fn duration_ms(ms: u64) -> String {
    const SEC: u64 = 1000;
    const MIN: u64 = 60 * SEC;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    match ms {
        ms if ms < SEC => format!("{ms}ms"),
        ms if ms < MIN => format!("{}s", ms / SEC),
        ms if ms < HOUR => format!("{}m{:02}s", ms / MIN, ms % MIN / SEC),
        ms if ms < DAY => format!("{}h{:02}m", ms / HOUR, ms % HOUR / MIN),
        ms => format!("{}d{:02}h", ms / DAY, ms % DAY / HOUR),
    }
}

/// `512 B`, `1.2 KiB`, `3.0 MiB`, ... up to `EiB`, one decimal past bytes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Milliseconds as seconds, for JSON.
pub fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// What went through a stream that ended, as `ended` can vouch for it: its
/// totals (`12 B in, 12 B out`), or, without the streamlet's report at the
/// end, at least what its last report said.
pub fn end_counts(ended: &streamlet_proto::StreamEnded) -> String {
    let counts = format!("{} in, {} out", bytes(ended.bytes_in), bytes(ended.bytes_out));
    if ended.bytes_exact {
        counts
    } else {
        format!("at least {counts}, by the streamlet's last report")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_two_units() {
        assert_eq!(duration_ms(0), "0ms");
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(12_999), "12s");
        assert_eq!(duration_ms((4 * 60 + 12) * 1000), "4m12s");
        assert_eq!(duration_ms((4 * 60 + 5) * 1000 + 999), "4m05s");
        assert_eq!(duration_ms(((2 * 60 + 3) * 60 + 59) * 1000), "2h03m");
        assert_eq!(duration_ms(((3 * 24 + 4) * 60 * 60 + 1) * 1000), "3d04h");
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(bytes(1229), "1.2 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 + 300 * 1024), "5.3 MiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn seconds_keep_the_milliseconds() {
        assert_eq!(seconds(1500), 1.5);
    }
}
