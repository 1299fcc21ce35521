//! The NASA trace: arrivals per minute, missing where the log has no
//! coverage.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Arrivals per minute from `first_minute` (minutes since 1970-01-01T00:00
/// of the trace's local clock), `None` where not observed.
pub struct Trace {
    pub first_minute: u64,
    pub arrivals: Vec<Option<f64>>,
}

impl Trace {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut first_minute = None;
        let mut arrivals = Vec::new();
        for (i, line) in text.lines().enumerate().skip(1) {
            let mut cols = line.split(',');
            let (Some(when), Some(n), Some(observed)) = (cols.next(), cols.next(), cols.next()) else {
                bail!("{}:{}: expected minute,arrivals,observed", path.display(), i + 1);
            };
            let minute = minute_of(when).with_context(|| format!("{}:{}", path.display(), i + 1))?;
            let first = *first_minute.get_or_insert(minute);
            if minute != first + arrivals.len() as u64 {
                bail!("{}:{}: minute {when} is not the one after the previous row", path.display(), i + 1);
            }
            let n: f64 = n.parse().with_context(|| format!("{}:{}: arrivals", path.display(), i + 1))?;
            arrivals.push((observed.trim() != "0").then_some(n));
        }
        Ok(Self { first_minute: first_minute.context("empty trace")?, arrivals })
    }

    /// The series as the history stores it.
    pub fn as_history(&self, range: std::ops::Range<usize>) -> Vec<u32> {
        self.arrivals[range].iter().map(|y| y.map_or(streamlet_autoscale::history::MISSING, |y| y as u32)).collect()
    }
}

/// `YYYY-MM-DDTHH:MM:SS` as minutes since 1970-01-01T00:00 (no time zone).
fn minute_of(s: &str) -> Result<u64> {
    let num = |r: std::ops::Range<usize>| -> Result<i64> { Ok(s.get(r).context("short timestamp")?.parse()?) };
    let (y, m, d, hh, mm) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?);
    Ok((days_from_civil(y, m, d) * 1440 + hh * 60 + mm) as u64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_days() {
        assert_eq!(super::days_from_civil(1970, 1, 1), 0);
        assert_eq!(super::days_from_civil(1995, 7, 1), 9312);
        assert_eq!(super::minute_of("1970-01-02T01:02:00").unwrap(), 1440 + 62);
    }
}
