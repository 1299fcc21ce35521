//! The runs minute by minute: a CSV for programs, an SVG chart for people.
//!
//! The chart draws, against the trace's own clock, the streamlets the
//! demand needed (grey area), what the forecast asked for (dashed), and
//! each policy's streamlets alive. Long runs are cut into about
//! [`POINTS`] buckets, each drawn at its largest value, so a one-minute
//! spike still shows in a fortnight. When every run held the pool at
//! `workers.max` ([`pinned`](super::pinned)), the chart says so under its
//! conditions.

use std::fmt::Write;

use super::clock::{format_clock, format_day, format_iso, DAY_MS, MINUTE_MS};
use super::{pinned, Minute, Outcome, Policy};

/// Points per line, at most.
pub const POINTS: usize = 1500;

/// `time,arrivals,streams,needed,forecast`, then `live_`, `cold_waits_`
/// and `rejected_<policy>` for each run: a row per minute. The demand columns are the same for every policy; `forecast` is
/// the predictive run's if there is one.
pub fn csv(outcomes: &[Outcome]) -> String {
    let mut out = String::from("time,arrivals,streams,needed,forecast");
    for o in outcomes {
        let _ = write!(out, ",live_{0},cold_waits_{0},rejected_{0}", o.policy);
    }
    out.push('\n');
    let Some(first) = outcomes.first() else { return out };
    let forecast = forecaster(outcomes);
    for (i, m) in first.minutes.iter().enumerate() {
        let f = forecast.minutes.get(i).and_then(|m| m.forecast).map_or(String::new(), |f| f.to_string());
        let _ = write!(out, "{},{},{},{},{f}", format_iso(m.at_ms), m.arrivals, m.streams, m.needed);
        for o in outcomes {
            let m = o.minutes.get(i).copied().unwrap_or_default();
            let _ = write!(out, ",{},{},{}", m.live, m.cold_waits, m.rejected);
        }
        out.push('\n');
    }
    out
}

fn forecaster(outcomes: &[Outcome]) -> &Outcome {
    outcomes.iter().find(|o| o.policy == Policy::Predictive).unwrap_or(&outcomes[0])
}

const WIDTH: f64 = 1280.0;
const HEIGHT: f64 = 640.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = WIDTH - 28.0;
const BOTTOM: f64 = HEIGHT - 56.0;
/// Width of a character of the 12 px legend, near enough.
const CHAR: f64 = 6.6;

fn colour(policy: Policy) -> &'static str {
    match policy {
        Policy::Reactive => "#e66101",
        Policy::Lookahead => "#0571b0",
        Policy::Predictive => "#1a9641",
    }
}

/// The chart of `outcomes` (runs of the same workload), titled.
pub fn svg(title: &str, subtitle: &str, outcomes: &[Outcome]) -> String {
    let minutes: &[Minute] = outcomes.first().map_or(&[], |o| &o.minutes);
    let bucket = minutes.len().div_ceil(POINTS).max(1);
    let most = |values: &dyn Fn(&Minute) -> Option<u32>, of: &[Minute]| -> Vec<Option<u32>> {
        of.chunks(bucket).map(|c| c.iter().filter_map(values).max()).collect()
    };
    let needed = most(&|m| Some(m.needed), minutes);
    let forecast = outcomes.first().map_or(Vec::new(), |_| most(&|m| m.forecast, &forecaster(outcomes).minutes));
    let lives: Vec<Vec<Option<u32>>> = outcomes.iter().map(|o| most(&|m| Some(m.live), &o.minutes)).collect();

    // The header: title, the conditions wrapped, the legend in rows.
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##);
    let _ = writeln!(
        out,
        r##"<text x="{LEFT}" y="30" font-size="18" font-weight="600" fill="#222">{}</text>"##,
        escape(title)
    );
    let mut line_y = 30.0;
    let note = pinned(outcomes).map(|p| format!("Note: {p}."));
    let lines = wrap(subtitle, ((RIGHT - LEFT) / 7.0) as usize);
    let note_lines = note.as_deref().map_or(Vec::new(), |n| wrap(n, ((RIGHT - LEFT) / 7.0) as usize));
    for line in lines.iter().chain(&note_lines) {
        line_y += 18.0;
        let _ = writeln!(out, r##"<text x="{LEFT}" y="{line_y}" font-size="13" fill="#555">{}</text>"##, escape(line));
    }
    let mut entries: Vec<(String, &str, &str)> = vec![("demand: streamlets needed".into(), "#8c8c8c", "")];
    if forecast.iter().any(Option::is_some) {
        entries.push(("forecast".into(), "#7b3294", r#" stroke-dasharray="5 3""#));
    }
    for o in outcomes {
        let t = &o.totals;
        let label = format!(
            "{}: {} cold waits, {} rejected, {}",
            o.policy,
            t.cold_waits,
            t.rejected,
            format_streamlet_time(t.worker_seconds)
        );
        entries.push((label, colour(o.policy), ""));
    }
    line_y += 26.0;
    let mut lx = LEFT;
    for (label, stroke, dash) in entries {
        let width = 28.0 + CHAR * label.chars().count() as f64;
        if lx > LEFT && lx + width > RIGHT {
            lx = LEFT;
            line_y += 20.0;
        }
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{0}" x2="{1}" y2="{0}" stroke="{stroke}" stroke-width="2.5"{dash}/>"#,
            line_y - 4.0,
            lx + 22.0
        );
        let _ = writeln!(out, r##"<text x="{}" y="{line_y}" fill="#222">{}</text>"##, lx + 28.0, escape(&label));
        lx += width + 24.0;
    }
    let top = line_y + 20.0;

    // Scales.
    let highest = needed.iter().chain(&forecast).chain(lives.iter().flatten()).flatten().copied().max().unwrap_or(1);
    let (y_step, y_max) = y_scale(highest);
    let start = minutes.first().map_or(0, |m| m.at_ms);
    let end = minutes.last().map_or(MINUTE_MS, |m| m.at_ms + MINUTE_MS);
    let x = |at: f64| LEFT + (at - start as f64) / (end - start) as f64 * (RIGHT - LEFT);
    let y = |v: u32| BOTTOM - f64::from(v) / f64::from(y_max) * (BOTTOM - top);
    // A bucket is drawn at its middle.
    let bucket_x = |i: usize| x(start as f64 + (i as f64 + 0.5) * (bucket as u64 * MINUTE_MS) as f64);

    // Grid and axes.
    let _ = writeln!(out, r##"<g stroke="#e3e3e3" stroke-width="1">"##);
    for v in (0..=y_max).step_by(y_step as usize) {
        let _ = writeln!(out, r#"<line x1="{LEFT}" y1="{0:.1}" x2="{RIGHT}" y2="{0:.1}"/>"#, y(v));
    }
    let ticks = x_ticks(start, end);
    for &t in &ticks {
        let _ = writeln!(out, r#"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{BOTTOM}"/>"#, x(t as f64));
    }
    out.push_str("</g>\n");
    let _ =
        writeln!(out, r##"<path d="M{LEFT} {top} V{BOTTOM} H{RIGHT}" fill="none" stroke="#444" stroke-width="1"/>"##);
    let _ = writeln!(out, r##"<g fill="#444" text-anchor="end">"##);
    for v in (0..=y_max).step_by(y_step as usize) {
        let _ = writeln!(out, r#"<text x="{}" y="{:.1}">{v}</text>"#, LEFT - 8.0, y(v) + 4.0);
    }
    out.push_str("</g>\n");
    let _ = writeln!(out, r##"<g fill="#444" text-anchor="middle">"##);
    for &t in &ticks {
        let label = if t % DAY_MS == 0 { format_day(t) } else { format_clock(t) };
        let _ = writeln!(out, r#"<text x="{:.1}" y="{}">{label}</text>"#, x(t as f64), BOTTOM + 18.0);
    }
    let _ =
        writeln!(out, r#"<text x="{:.1}" y="{}">time (the trace's clock)</text>"#, (LEFT + RIGHT) / 2.0, HEIGHT - 12.0);
    out.push_str("</g>\n");
    let _ = writeln!(
        out,
        r##"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle" fill="#444">streamlets</text>"##,
        (top + BOTTOM) / 2.0
    );

    // The demand as an area, then the lines.
    let points = |values: &[Option<u32>]| -> Vec<String> {
        values.iter().enumerate().filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", bucket_x(i), y(v)))).collect()
    };
    let demand = points(&needed);
    if let (Some(first), Some(last)) = (demand.first(), demand.last()) {
        let (fx, _) = first.split_once(',').unwrap_or_default();
        let (lx, _) = last.split_once(',').unwrap_or_default();
        let _ = writeln!(
            out,
            r##"<polygon points="{fx},{BOTTOM} {} {lx},{BOTTOM}" fill="#d9d9d9" fill-opacity="0.7" stroke="none"/>"##,
            demand.join(" ")
        );
        let _ = writeln!(
            out,
            r##"<polyline points="{}" fill="none" stroke="#8c8c8c" stroke-width="1"/>"##,
            demand.join(" ")
        );
    }
    let forecast_points = points(&forecast);
    if !forecast_points.is_empty() {
        let _ = writeln!(
            out,
            r##"<polyline points="{}" fill="none" stroke="#7b3294" stroke-width="1.2" stroke-dasharray="5 3"/>"##,
            forecast_points.join(" ")
        );
    }
    for (o, live) in outcomes.iter().zip(&lives) {
        let _ = writeln!(
            out,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.4" stroke-opacity="0.85" stroke-linejoin="round"/>"#,
            points(live).join(" "),
            colour(o.policy)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Streamlets alive integrated over time, in the unit that keeps the
/// number readable: `45 streamlet-seconds`, `30 streamlet-minutes`,
/// `1.5 streamlet-hours`, `1234 streamlet-hours`; three significant digits
/// at most, and never rounded to nothing.
pub fn format_streamlet_time(seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    let (value, unit) = if seconds < 90.0 {
        (seconds, "second")
    } else if seconds < 90.0 * 60.0 {
        (seconds / 60.0, "minute")
    } else {
        (seconds / 3600.0, "hour")
    };
    let text = if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
    let plural = if text == "1" { "" } else { "s" };
    format!("{text} streamlet-{unit}{plural}")
}

/// `text` in lines of at most `width` characters, broken at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ') {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

/// A step of 1, 2 or 5 times a power of ten giving about six gridlines,
/// and the axis's top: a multiple of it with room above the highest line.
fn y_scale(top: u32) -> (u32, u32) {
    let top = top.max(1);
    let mut step = 1u32;
    'find: for magnitude in [1u32, 10, 100, 1000, 10_000, 100_000] {
        for m in [1, 2, 5] {
            step = m * magnitude;
            if top.div_ceil(step) <= 6 {
                break 'find;
            }
        }
    }
    let max = (top + top / 20 + 1).div_ceil(step) * step;
    (step, max)
}

/// Tick instants over `[start, end)` at a round spacing, at most about 10.
fn x_ticks(start: u64, end: u64) -> Vec<u64> {
    const STEPS: [u64; 15] = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10_080, 40_320];
    let span = end.saturating_sub(start).max(1);
    let step = STEPS.iter().map(|m| m * MINUTE_MS).find(|s| span / s <= 10).unwrap_or(40_320 * MINUTE_MS);
    let first = start.div_ceil(step) * step;
    (0..).map(|i| first + i * step).take_while(|t| *t <= end).collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_round() {
        assert_eq!(y_scale(0), (1, 2));
        assert_eq!(y_scale(5), (1, 6));
        assert_eq!(y_scale(47), (10, 50));
        assert_eq!(y_scale(100), (20, 120));
        let day = 1_700_000_000_000 / DAY_MS * DAY_MS;
        assert!((7..=8).contains(&x_ticks(day, day + 14 * DAY_MS).len()), "every other day");
        let hour = x_ticks(day + 5 * MINUTE_MS, day + 65 * MINUTE_MS);
        assert_eq!(hour.first(), Some(&(day + 10 * MINUTE_MS)));
        assert!(hour.len() <= 11);
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(wrap("one two three four", 9), ["one two", "three", "four"]);
    }

    /// The issue's 1,800 streamlet-seconds, once drawn as "0 streamlet-hours".
    #[test]
    fn streamlet_time_keeps_its_size_readable() {
        assert_eq!(format_streamlet_time(1800.0), "30 streamlet-minutes");
        assert_eq!(format_streamlet_time(120.0), "2 streamlet-minutes");
        assert_eq!(format_streamlet_time(60.0), "60 streamlet-seconds");
        assert_eq!(format_streamlet_time(1.0), "1 streamlet-second");
        assert_eq!(format_streamlet_time(0.25), "0.25 streamlet-seconds");
        assert_eq!(format_streamlet_time(0.0), "0 streamlet-seconds");
        assert_eq!(format_streamlet_time(5400.0), "1.5 streamlet-hours");
        assert_eq!(format_streamlet_time(3600.0 * 12.34), "12.3 streamlet-hours");
        assert_eq!(format_streamlet_time(3600.0 * 1234.4), "1234 streamlet-hours");
        assert_eq!(format_streamlet_time(3600.0), "60 streamlet-minutes");
    }
}
