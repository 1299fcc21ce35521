//! Rates as people write them, in bytes per second on the wire.

use std::fmt;

/// How the accepted forms are put to someone who wrote another.
pub const RATE_FORMS: &str = "write a number and a unit: bits per second like 8Mbit, 8Mbps or \"8 Mbit/s\" \
     (prefixes k, M, G, T), bytes per second like 125kB/s, 1MB/s or 1MiB/s (kB, MB, GB, TB, KiB, MiB, GiB, TiB), \
     or a plain number of bytes per second";

/// Text that is not a rate: what it was, why not, and the forms that are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a rate: {problem}; {RATE_FORMS}")]
pub struct RateError {
    pub text: String,
    pub problem: RateProblem,
}

/// Why a text is not a rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateProblem {
    /// It does not start with a number (a negative one included).
    NoNumber,
    /// The unit is none of the known ones.
    UnknownUnit(String),
    /// An amount without a time, like `1MB`: a size, not a rate.
    NotPerSecond(String),
    /// More than 2^64 bytes per second.
    TooLarge,
}

impl fmt::Display for RateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoNumber => f.write_str("it does not start with a number of at least 0"),
            Self::UnknownUnit(unit) => write!(f, "{unit:?} is not a unit of rate"),
            Self::NotPerSecond(unit) => write!(f, "{unit:?} is an amount, not a rate: add /s, like \"1{unit}/s\""),
            Self::TooLarge => f.write_str("it is more than 2^64 bytes per second"),
        }
    }
}

/// Bits per second: `"8Mbit"`, `"8Mbps"`, `"8 Mbit/s"`, `"8Mb/s"`,
/// `"512kbit"` (SI prefixes k, M, G, T; lower case m, g, t too, as tc
/// writes them). Bytes per second: `"125kB/s"`, `"1MB/s"`, `"1MBps"` (SI),
/// `"1MiB/s"`, `"64KiB/s"` (binary), `"4096B/s"`, or a plain number. A
/// lower-case `b` is a bit and an upper-case `B` a byte, as everywhere; an
/// amount without a time (`"1MB"`, `"1Mb"`) is refused, except the word
/// `bit`, which has always meant bits per second here.
pub fn parse_rate(text: &str) -> Result<u64, RateError> {
    let error = |problem| RateError { text: text.to_owned(), problem };
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().map_err(|_| error(RateProblem::NoNumber))?;
    let unit = unit.trim_start();
    let per_byte = rate_unit(unit).map_err(error)?;
    let bytes_per_second = n * per_byte;
    if !bytes_per_second.is_finite() || bytes_per_second >= u64::MAX as f64 {
        return Err(error(RateProblem::TooLarge));
    }
    Ok(bytes_per_second.round() as u64)
}

/// Bytes per second in one of `unit`.
fn rate_unit(unit: &str) -> Result<f64, RateProblem> {
    if unit.is_empty() {
        return Ok(1.0);
    }
    let unknown = || RateProblem::UnknownUnit(unit.to_owned());
    let (amount, per_second) = if let Some(amount) = unit.strip_suffix("/s").or_else(|| unit.strip_suffix("/sec")) {
        (amount, true)
    } else if let Some(amount) = unit.strip_suffix("ps").filter(|a| a.ends_with(['b', 'B'])) {
        (amount, true)
    } else {
        (unit, false)
    };
    let words = [("bits", 1.0 / 8.0, true), ("bit", 1.0 / 8.0, true), ("bytes", 1.0, false), ("byte", 1.0, false)];
    let (prefix, per_unit, spelled_bit) = words
        .iter()
        .find_map(|&(word, size, bit)| {
            let cut = amount.len().checked_sub(word.len())?;
            amount.get(cut..).filter(|w| w.eq_ignore_ascii_case(word)).map(|_| (&amount[..cut], size, bit))
        })
        .or_else(|| amount.strip_suffix('b').map(|p| (p, 1.0 / 8.0, false)))
        .or_else(|| amount.strip_suffix('B').map(|p| (p, 1.0, false)))
        .ok_or_else(unknown)?;
    let scale = match prefix {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" | "m" => 1e6,
        "G" | "g" => 1e9,
        "T" | "t" => 1e12,
        "Ki" | "ki" => 1024.0,
        "Mi" | "mi" => 1024.0 * 1024.0,
        "Gi" | "gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" | "ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(unknown()),
    };
    if !per_second && !spelled_bit {
        return Err(RateProblem::NotPerSecond(unit.to_owned()));
    }
    Ok(scale * per_unit)
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
        assert_eq!(format_rate(1_000_000), "8 Mbit/s");
        assert_eq!(format_rate(1_562_500), "12.5 Mbit/s");
        assert_eq!(format_rate(125_000_000), "1 Gbit/s");
    }

    /// One megabit per second in every common spelling, and the same rate
    /// in bytes.
    #[test]
    fn the_common_spellings_of_a_megabit_per_second() {
        for text in [
            "1Mbps",
            "1 Mbps",
            "1Mbit",
            "1 Mbit/s",
            "1Mbit/s",
            "1Mb/s",
            "1mbit",
            "1mbps",
            "1 Mbits/s",
            "1000kbit",
            "1000 kbps",
            "1000Kbps",
            "125kB/s",
            "125 kB/s",
            "125KB/s",
            "125kBps",
            "0.125MB/s",
            "125000",
            "125000B/s",
            "125000 bytes/s",
            "125000Bps",
            " 1Mbps ",
        ] {
            assert_eq!(parse_rate(text), Ok(125_000), "{text:?}");
        }
        assert_eq!(parse_rate("1MB/s"), Ok(1_000_000));
        assert_eq!(parse_rate("1MBps"), Ok(1_000_000));
        assert_eq!(parse_rate("1 MiB/s"), Ok(1 << 20));
        assert_eq!(parse_rate("64KiB/s"), Ok(64 << 10));
        assert_eq!(parse_rate("1GiB/s"), Ok(1 << 30));
        assert_eq!(parse_rate("10Gbps"), Ok(1_250_000_000));
        assert_eq!(parse_rate("1Tbit/s"), Ok(125_000_000_000));
        assert_eq!(parse_rate("8bit"), Ok(1));
        assert_eq!(parse_rate("8 bps"), Ok(1));
        assert_eq!(parse_rate("0"), Ok(0));
    }

    #[test]
    fn what_is_not_a_rate_says_why_and_what_is() {
        let problem = |text: &str| parse_rate(text).unwrap_err().problem;
        assert_eq!(problem("fast"), RateProblem::NoNumber);
        assert_eq!(problem("-1Mbit"), RateProblem::NoNumber);
        assert_eq!(problem(""), RateProblem::NoNumber);
        assert_eq!(problem("8 megabits"), RateProblem::UnknownUnit("megabits".into()));
        assert_eq!(problem("1Xbps"), RateProblem::UnknownUnit("Xbps".into()));
        assert_eq!(problem("1Mbitps"), RateProblem::UnknownUnit("Mbitps".into()));
        assert_eq!(problem("1MB"), RateProblem::NotPerSecond("MB".into()), "a size");
        assert_eq!(problem("1Mb"), RateProblem::NotPerSecond("Mb".into()));
        assert_eq!(problem("1MiB"), RateProblem::NotPerSecond("MiB".into()));
        assert_eq!(problem("99999999999TB/s"), RateProblem::TooLarge);
        let message = parse_rate("1MB").unwrap_err().to_string();
        assert!(message.starts_with("\"1MB\" is not a rate: \"MB\" is an amount"), "{message}");
        assert!(message.contains("\"1MB/s\""), "{message}");
        for form in ["8Mbps", "8 Mbit/s", "125kB/s", "1MiB/s", "plain number of bytes"] {
            assert!(message.contains(form), "the accepted forms are named: {message}");
        }
    }
}
