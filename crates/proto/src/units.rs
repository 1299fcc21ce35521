//! Rates as people write them, in bytes per second on the wire.

/// `"8Mbit"`, `"1Gbit"`, `"512kbit"` (bits, SI), `"1MiB/s"`, `"64KiB/s"`
/// (bytes, binary), `"2MB/s"` (bytes, SI), or a plain number of bytes per
/// second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || {
        format!("{text:?} is not a rate: write a number with bit, kbit, Mbit, Gbit, B/s, KiB/s, MiB/s, GiB/s, kB/s, MB/s or GB/s, like \"8Mbit\" or \"1MiB/s\"")
    };
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().map_err(|_| bad())?;
    let bytes_per_second = match unit.trim() {
        "" | "B/s" => n,
        "bit" => n / 8.0,
        "kbit" => n * 1e3 / 8.0,
        "Mbit" => n * 1e6 / 8.0,
        "Gbit" => n * 1e9 / 8.0,
        "KiB/s" => n * 1024.0,
        "MiB/s" => n * 1024.0 * 1024.0,
        "GiB/s" => n * 1024.0 * 1024.0 * 1024.0,
        "kB/s" => n * 1e3,
        "MB/s" => n * 1e6,
        "GB/s" => n * 1e9,
        _ => return Err(bad()),
    };
    if !bytes_per_second.is_finite() || bytes_per_second < 0.0 || bytes_per_second > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes_per_second.round() as u64)
}

/// A rate for people: `12.5 Mbit/s`.
pub fn format_rate(bytes_per_second: u64) -> String {
    let bits = bytes_per_second as f64 * 8.0;
    let (value, unit) = if bits >= 1e9 {
        (bits / 1e9, "Gbit/s")
    } else if bits >= 1e6 {
        (bits / 1e6, "Mbit/s")
    } else if bits >= 1e3 {
        (bits / 1e3, "kbit/s")
    } else {
        (bits, "bit/s")
    };
    let text = format!("{value:.1}");
    format!("{} {unit}", text.strip_suffix(".0").unwrap_or(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_in_bits_and_bytes() {
        assert_eq!(parse_rate("8Mbit"), Ok(1_000_000));
        assert_eq!(parse_rate("1Gbit"), Ok(125_000_000));
        assert_eq!(parse_rate("1MiB/s"), Ok(1 << 20));
        assert_eq!(parse_rate("2MB/s"), Ok(2_000_000));
        assert_eq!(parse_rate("1.5Mbit"), Ok(187_500));
        assert_eq!(parse_rate("4096"), Ok(4096));
        assert!(parse_rate("8 megabits").unwrap_err().contains("Mbit"));
        assert!(parse_rate("-1Mbit").is_err());
        assert_eq!(format_rate(1_000_000), "8 Mbit/s");
        assert_eq!(format_rate(1_562_500), "12.5 Mbit/s");
        assert_eq!(format_rate(125_000_000), "1 Gbit/s");
    }
}
