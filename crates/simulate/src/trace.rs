//! Arrival traces, told apart by their header line:
//!
//! | header | what a row is |
//! | --- | --- |
//! | `minute,arrivals,observed` | arrivals counted in one minute (`1995-07-01T00:00:00,42,1`); `observed = 0` marks a minute nobody counted |
//! | `TIMESTAMP,ContextTokens,GeneratedTokens` | one request to an LLM service (`2023-11-16 18:15:46.6805900,374,44`); it streams for `GeneratedTokens` × a time per token |
//! | `at_ms,duration_ms` | one stream: when it arrives and how long it lasts, in milliseconds |
//!
//! Per-minute rows must come in time order; a minute left out is missing,
//! like one with `observed = 0`. Request rows may come in any order.

use std::path::Path;

use super::clock::{parse_timestamp, MINUTE_MS};

/// The longest trace read: a year of minutes (a per-minute trace is held
/// minute by minute, gaps included).
pub const MAX_SPAN_MINUTES: u64 = 366 * 24 * 60;

/// A trace read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The file it came from, for titles and errors.
    pub name: String,
    pub arrivals: Arrivals,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Arrivals {
    /// Counts per minute from `first_minute` (minutes since 1970) on;
    /// `None` where the minute was not observed.
    PerMinute { first_minute: u64, counts: Vec<Option<u32>> },
    /// One entry per request, in time order.
    Requests(Vec<Request>),
}

/// One request of a request trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// When it arrived, milliseconds since 1970.
    pub at_ms: u64,
    pub length: Length,
}

/// How long a request streams, as the trace gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    Millis(u64),
    /// Tokens generated; the duration is a time per token times this.
    Tokens(u32),
}

/// A trace that cannot be read: the file, and where and why.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{file}: cannot read the trace: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: the trace is empty: it needs a header line and at least one row")]
    Empty { file: String },
    #[error(
        "{file}: line 1: unknown header {header:?}: a trace starts with `minute,arrivals,observed` (counts per \
         minute), `TIMESTAMP,ContextTokens,GeneratedTokens` (LLM requests) or `at_ms,duration_ms` (streams)"
    )]
    UnknownFormat { file: String, header: String },
    #[error("{file}: line {line}: {reason}")]
    Line { file: String, line: usize, reason: String },
}

impl Trace {
    /// Reads and checks a trace file.
    pub fn read(path: &Path) -> Result<Trace, TraceError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TraceError::Read { file: file.clone(), source })?;
        let name = path.file_name().map_or(file.clone(), |n| n.to_string_lossy().into_owned());
        Self::parse(&text, &file).map(|trace| Trace { name, ..trace })
    }

    /// Parses the text of a trace; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Trace, TraceError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
        let Some((_, header)) = lines.next() else { return Err(TraceError::Empty { file: file.to_owned() }) };
        let rows = lines.filter(|(_, l)| !l.trim().is_empty());
        let fail = |line: usize, reason: String| TraceError::Line { file: file.to_owned(), line, reason };
        let arrivals = match header.trim().trim_start_matches('\u{feff}') {
            "minute,arrivals,observed" => per_minute(rows, fail)?,
            "TIMESTAMP,ContextTokens,GeneratedTokens" => requests(rows, fail, llm_row)?,
            "at_ms,duration_ms" => requests(rows, fail, stream_row)?,
            other => return Err(TraceError::UnknownFormat { file: file.to_owned(), header: other.to_owned() }),
        };
        let empty = match &arrivals {
            Arrivals::PerMinute { counts, .. } => counts.is_empty(),
            Arrivals::Requests(requests) => requests.is_empty(),
        };
        if empty {
            return Err(TraceError::Empty { file: file.to_owned() });
        }
        Ok(Trace { name: file.to_owned(), arrivals })
    }

    /// The minutes the trace covers, `[first, end)`: a request trace covers
    /// the whole minutes its requests fall in.
    pub fn span_minutes(&self) -> (u64, u64) {
        match &self.arrivals {
            Arrivals::PerMinute { first_minute, counts } => (*first_minute, first_minute + counts.len() as u64),
            Arrivals::Requests(requests) => {
                let first = requests.first().map_or(0, |r| r.at_ms / MINUTE_MS);
                let last = requests.last().map_or(0, |r| r.at_ms / MINUTE_MS);
                (first, last + 1)
            }
        }
    }

    /// Whether the trace says how long each stream lasts.
    pub fn has_durations(&self) -> bool {
        matches!(self.arrivals, Arrivals::Requests(_))
    }

    /// What kind of trace it is, in a few words.
    pub fn kind(&self) -> &'static str {
        match &self.arrivals {
            Arrivals::PerMinute { .. } => "arrivals per minute",
            Arrivals::Requests(r) if r.first().is_some_and(|r| matches!(r.length, Length::Tokens(_))) => "LLM requests",
            Arrivals::Requests(_) => "streams",
        }
    }
}

/// The comma-separated fields of a row, exactly `N` of them.
fn fields<const N: usize>(row: &str) -> Result<[&str; N], String> {
    let parts: Vec<&str> = row.split(',').map(str::trim).collect();
    parts
        .try_into()
        .map_err(|parts: Vec<&str>| format!("expected {N} comma-separated fields, found {}: {row:?}", parts.len()))
}

fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{what} {text:?} is not a whole number"))
}

fn per_minute<'a>(
    rows: impl Iterator<Item = (usize, &'a str)>,
    fail: impl Fn(usize, String) -> TraceError,
) -> Result<Arrivals, TraceError> {
    let mut first_minute = None;
    let mut counts: Vec<Option<u32>> = Vec::new();
    for (line, row) in rows {
        let [minute, arrivals, observed] = fields(row).map_err(|r| fail(line, r))?;
        let at = parse_timestamp(minute).map_err(|r| fail(line, r))?;
        if at % MINUTE_MS != 0 {
            return Err(fail(line, format!("{minute:?} is not the start of a minute")));
        }
        let arrivals: u32 = number(arrivals, "arrivals").map_err(|r| fail(line, r))?;
        let observed = match observed {
            "1" => true,
            "0" => false,
            other => return Err(fail(line, format!("observed {other:?} must be 1 (counted) or 0 (not counted)"))),
        };
        let minute_index = at / MINUTE_MS;
        let first = *first_minute.get_or_insert(minute_index);
        let next = first + counts.len() as u64;
        if minute_index < next {
            return Err(fail(
                line,
                format!("{minute} is not after the row before: rows go in time order, one per minute"),
            ));
        }
        if minute_index - first >= MAX_SPAN_MINUTES {
            return Err(fail(line, format!("{minute} is more than a year after the first row")));
        }
        counts.resize((minute_index - first) as usize, None);
        counts.push(observed.then_some(arrivals));
    }
    Ok(Arrivals::PerMinute { first_minute: first_minute.unwrap_or(0), counts })
}

fn llm_row(row: &str) -> Result<Request, String> {
    let [timestamp, context, generated] = fields(row)?;
    let at_ms = parse_timestamp(timestamp)?;
    let _: u32 = number(context, "ContextTokens")?;
    let tokens: u32 = number(generated, "GeneratedTokens")?;
    Ok(Request { at_ms, length: Length::Tokens(tokens) })
}

fn stream_row(row: &str) -> Result<Request, String> {
    let [at, duration] = fields(row)?;
    Ok(Request { at_ms: number(at, "at_ms")?, length: Length::Millis(number(duration, "duration_ms")?) })
}

fn requests<'a>(
    rows: impl Iterator<Item = (usize, &'a str)>,
    fail: impl Fn(usize, String) -> TraceError,
    row: fn(&str) -> Result<Request, String>,
) -> Result<Arrivals, TraceError> {
    let mut requests = Vec::new();
    let mut first_line = 0;
    for (line, text) in rows {
        let request = row(text).map_err(|r| fail(line, r))?;
        if requests.is_empty() {
            first_line = line;
        }
        requests.push(request);
    }
    // (A stable sort: requests of the same instant keep the file's order.)
    requests.sort_by_key(|r: &Request| r.at_ms);
    if let (Some(first), Some(last)) = (requests.first(), requests.last()) {
        if (last.at_ms - first.at_ms) / MINUTE_MS >= MAX_SPAN_MINUTES {
            return Err(fail(first_line, "the requests span more than a year".into()));
        }
    }
    Ok(Arrivals::Requests(requests))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_error(text: &str) -> (usize, String) {
        match Trace::parse(text, "t.csv") {
            Err(TraceError::Line { file, line, reason }) => {
                assert_eq!(file, "t.csv");
                (line, reason)
            }
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn per_minute_counts_with_missing_minutes() {
        let text = "minute,arrivals,observed\n1995-07-01T00:00:00,42,1\n1995-07-01T00:01:00,61,1\n\
                    1995-07-01T00:02:00,57,0\n1995-07-01T00:04:00,3,1\n";
        let trace = Trace::parse(text, "nasa.csv").unwrap();
        let first = 804_556_800_000 / MINUTE_MS;
        assert_eq!(
            trace.arrivals,
            Arrivals::PerMinute { first_minute: first, counts: vec![Some(42), Some(61), None, None, Some(3)] },
            "observed = 0 and a skipped minute are both missing"
        );
        assert_eq!(trace.span_minutes(), (first, first + 5));
        assert!(!trace.has_durations());
    }

    #[test]
    fn llm_requests_sorted_with_tokens() {
        let text = "TIMESTAMP,ContextTokens,GeneratedTokens\r\n2023-11-16 18:15:50.9951690,396,109\r\n\
                    2023-11-16 18:15:46.6805900,374,44\r\n\r\n";
        let trace = Trace::parse(text, "azure.csv").unwrap();
        let Arrivals::Requests(requests) = &trace.arrivals else { panic!("{trace:?}") };
        assert_eq!(requests[0], Request { at_ms: 1_700_158_546_680, length: Length::Tokens(44) });
        assert_eq!(requests[1], Request { at_ms: 1_700_158_550_995, length: Length::Tokens(109) });
        assert!(trace.has_durations());
        assert_eq!(trace.kind(), "LLM requests");
        assert_eq!(trace.span_minutes(), (1_700_158_546_680 / MINUTE_MS, 1_700_158_546_680 / MINUTE_MS + 1));
    }

    #[test]
    fn stream_rows() {
        let trace = Trace::parse("at_ms,duration_ms\n0,10000\n500,2000\n", "s.csv").unwrap();
        assert_eq!(
            trace.arrivals,
            Arrivals::Requests(vec![
                Request { at_ms: 0, length: Length::Millis(10_000) },
                Request { at_ms: 500, length: Length::Millis(2_000) },
            ])
        );
    }

    #[test]
    fn malformed_rows_name_the_line_and_the_fault() {
        let nasa = "minute,arrivals,observed\n1995-07-01T00:00:00,42,1\n";
        let (line, reason) = line_error(&format!("{nasa}1995-07-01T00:01:00,61\n"));
        assert_eq!(line, 3);
        assert!(reason.contains("expected 3 comma-separated fields, found 2"), "{reason}");
        let (line, reason) = line_error(&format!("{nasa}1995-07-01T00:01:00,lots,1\n"));
        assert_eq!(line, 3);
        assert!(reason.contains("arrivals \"lots\""), "{reason}");
        let (_, reason) = line_error(&format!("{nasa}1995-07-01T00:01:00,-3,1\n"));
        assert!(reason.contains("not a whole number"), "{reason}");
        let (_, reason) = line_error(&format!("{nasa}1995-07-01T00:01:00,3,yes\n"));
        assert!(reason.contains("observed \"yes\""), "{reason}");
        let (_, reason) = line_error(&format!("{nasa}1995-07-01T00:00:00,3,1\n"));
        assert!(reason.contains("time order"), "{reason}");
        let (_, reason) = line_error(&format!("{nasa}1995-07-01T00:01:30,3,1\n"));
        assert!(reason.contains("start of a minute"), "{reason}");
        let (_, reason) = line_error(&format!("{nasa}1995-07-32T00:01:00,3,1\n"));
        assert!(reason.contains("no such date"), "{reason}");
        let (_, reason) = line_error(&format!("{nasa}1997-07-01T00:00:00,3,1\n"));
        assert!(reason.contains("more than a year"), "{reason}");

        let azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
        let (line, reason) = line_error(&format!("{azure}2023-11-16 18:15:46.68,374,4.5\n"));
        assert_eq!(line, 2);
        assert!(reason.contains("GeneratedTokens \"4.5\""), "{reason}");
        let (_, reason) = line_error(&format!("{azure}yesterday,374,44\n"));
        assert!(reason.contains("not a timestamp"), "{reason}");
        let (_, reason) = line_error("at_ms,duration_ms\n1,2,3\n");
        assert!(reason.contains("expected 2"), "{reason}");
    }

    #[test]
    fn unknown_and_empty_traces() {
        let e = Trace::parse("time,count\n1,2\n", "x.csv").unwrap_err();
        assert!(matches!(&e, TraceError::UnknownFormat { header, .. } if header == "time,count"), "{e}");
        assert!(e.to_string().contains("minute,arrivals,observed"), "{e}");
        assert!(matches!(Trace::parse("", "x.csv"), Err(TraceError::Empty { .. })));
        assert!(matches!(Trace::parse("at_ms,duration_ms\n\n", "x.csv"), Err(TraceError::Empty { .. })));
        let e = Trace::read(Path::new("/nonexistent/trace.csv")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/trace.csv: cannot read"), "{e}");
    }
}
