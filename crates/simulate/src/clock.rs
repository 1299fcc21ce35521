//! The simulator's clock: milliseconds since 1970-01-01 in the trace's own
//! time zone (a trace's local times are taken as they are written, so a
//! day's cycle lines up with its labels), and the calendar arithmetic that
//! reads and writes it without a date library.

/// Milliseconds in a minute, the unit of per-minute traces and the history.
pub const MINUTE_MS: u64 = 60_000;
/// Milliseconds in a day.
pub const DAY_MS: u64 = 24 * 60 * MINUTE_MS;
/// The daemon's tick: time-based decisions happen on multiples of it.
pub const TICK_MS: u64 = 50;

/// The first tick at or after `ms`.
pub fn tick_at_or_after(ms: u64) -> u64 {
    ms.div_ceil(TICK_MS).saturating_mul(TICK_MS)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` after 1970-01-01: `(year, month, day)`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `1995-07-01T00:00:00` or `2023-11-16 18:15:46.6805900` (any number of
/// fraction digits, read to the millisecond) as milliseconds since 1970.
pub fn parse_timestamp(text: &str) -> Result<u64, String> {
    let bad = |what: &str| format!("{text:?} is not a timestamp ({what}): write it like 2023-11-16 18:15:46.680");
    let b = text.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad("not YYYY-MM-DD HH:MM:SS"));
    }
    let number = |range: std::ops::Range<usize>| -> Result<u32, String> {
        let digits = &text[range];
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad("a field is not a number"));
        }
        digits.parse().map_err(|_| bad("a field is not a number"))
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if year < 1970 {
        return Err(bad("before 1970"));
    }
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(i64::from(year), month) {
        return Err(bad("no such date"));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(bad("no such time of day"));
    }
    let millis = match &text[19..] {
        "" => 0,
        fraction if fraction.len() > 1 && fraction.starts_with('.') => {
            let digits = &fraction[1..];
            if !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad("the fraction of a second is not a number"));
            }
            let first3: String = digits.chars().chain("000".chars()).take(3).collect();
            first3.parse::<u64>().map_err(|_| bad("the fraction of a second is not a number"))?
        }
        _ => return Err(bad("unexpected text after the seconds")),
    };
    let days = days_from_civil(i64::from(year), month, day) as u64;
    Ok(days * DAY_MS + (u64::from(hour) * 3600 + u64::from(minute) * 60 + u64::from(second)) * 1000 + millis)
}

/// `1995-08-18 06:00`.
pub fn format_minute(ms: u64) -> String {
    let (year, month, day) = civil_from_days((ms / DAY_MS) as i64);
    let in_day = ms % DAY_MS;
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", in_day / 3_600_000, in_day / MINUTE_MS % 60)
}

/// `1995-08-18T06:00:00`, for CSV.
pub fn format_iso(ms: u64) -> String {
    let (year, month, day) = civil_from_days((ms / DAY_MS) as i64);
    let s = ms % DAY_MS / 1000;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `Aug 18`, for the chart's axis.
pub fn format_day(ms: u64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (_, month, day) = civil_from_days((ms / DAY_MS) as i64);
    format!("{} {day}", MONTHS[month as usize - 1])
}

/// `06:00`.
pub fn format_clock(ms: u64) -> String {
    let in_day = ms % DAY_MS;
    format!("{:02}:{:02}", in_day / 3_600_000, in_day / MINUTE_MS % 60)
}

/// Whole milliseconds as a person writes them: `2ms`, `30s`, `5m`, `14d`,
/// or the largest unit that divides them (`1500ms`).
pub fn format_duration(ms: u64) -> String {
    for (unit, size) in [("d", DAY_MS), ("h", 3_600_000), ("m", MINUTE_MS), ("s", 1000)] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A span for people: `47d23h50m`, `2h05m`, `30s`; units that are zero
/// are left out, and what is below a second.
pub fn format_span(ms: u64) -> String {
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [("d", DAY_MS), ("h", 3_600_000), ("m", MINUTE_MS), ("s", 1000)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    if out.is_empty() {
        out = format!("{ms}ms");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1995, 7, 1), 9_312);
        for days in [-1, 0, 59, 60, 365, 9_312, 11_016, 11_017, 19_677, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn timestamps_of_both_traces() {
        assert_eq!(parse_timestamp("1995-07-01T00:00:00"), Ok(804_556_800_000));
        assert_eq!(parse_timestamp("2023-11-16 18:15:46.6805900"), Ok(1_700_158_546_680));
        assert_eq!(parse_timestamp("2023-11-16 18:15:46.5"), Ok(1_700_158_546_500));
        assert_eq!(format_iso(1_700_158_546_680), "2023-11-16T18:15:46");
        assert_eq!(format_minute(804_556_800_000 + 6 * 3_600_000), "1995-07-01 06:00");
        assert_eq!(format_day(804_556_800_000), "Jul 1");
        for bad in [
            "1995-07-01",
            "1995-02-29 00:00:00",
            "1995-13-01 00:00:00",
            "1995-07-01 24:00:00",
            "1960-01-01 00:00:00",
            "1995-07-01 00:00:00.",
            "1995-07-01 00:00:00Z",
            "1995-07-0a 00:00:00",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
        assert!(parse_timestamp("1996-02-29 00:00:00").is_ok(), "a leap day");
    }

    #[test]
    fn durations_and_ticks() {
        assert_eq!(format_duration(2), "2ms");
        assert_eq!(format_duration(1500), "1500ms");
        assert_eq!(format_duration(30_000), "30s");
        assert_eq!(format_duration(14 * DAY_MS), "14d");
        assert_eq!(format_span(69_110 * MINUTE_MS), "47d23h50m");
        assert_eq!(format_span(30_500), "30s");
        assert_eq!(format_span(2), "2ms");
        assert_eq!(tick_at_or_after(40_010), 40_050);
        assert_eq!(tick_at_or_after(40_050), 40_050);
    }
}
