//! Durations and sizes as operators write them.

use std::time::Duration;

/// `"250ms"`, `"5s"`, `"2m"`, `"1h"`; `default` when absent.
pub fn duration(text: Option<&str>, default: Duration) -> Result<Duration, String> {
    let Some(text) = text else { return Ok(default) };
    let bad = || format!("{text:?} is not a duration: write a whole number with ms, s, m or h, like \"5s\"");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => n,
        "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => return Err(bad()),
    };
    Ok(Duration::from_millis(ms))
}

/// `"64MiB"`, `"1GiB"`, `"512KiB"`, `"4096"` (bytes).
pub fn bytes(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a size: write a whole number of bytes, KiB, MiB or GiB, like \"64MiB\"");
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

/// CPU in cores: `"0.5"` or `0.5`.
pub fn cores(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number of cores, like \"0.5\""))?;
    if !(value > 0.0 && value <= 1024.0) {
        return Err(format!("{text:?} cores: must be more than 0 and at most 1024"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_cores() {
        assert_eq!(bytes("64MiB"), Ok(64 << 20));
        assert_eq!(bytes("4096"), Ok(4096));
        assert_eq!(bytes("1GiB"), Ok(1 << 30));
        assert!(bytes("64MB").unwrap_err().contains("MiB"));
        assert!(bytes("lots").is_err());
        assert_eq!(cores("0.5"), Ok(0.5));
        assert!(cores("0").is_err());
        assert!(cores("-1").is_err());
        assert_eq!(duration(Some("250ms"), Duration::ZERO), Ok(Duration::from_millis(250)));
    }
}
