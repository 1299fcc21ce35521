//! The escaping at a log's output: every record a formatter writes passes
//! through [`LogWriter`], so no field of any record, now or added later, can
//! put a control character on the operator's terminal or split the record
//! into two lines.

use std::io::{self, Write};

use super::{escape_bytes_with, escape_json, RECORD};

/// How the records are written, which decides how a control character is
/// escaped inside one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Lines of text: `\x1b`, `\r`, `\u{9b}`, a stray byte as `\xNN`.
    /// Backslashes stay as they are: the formatter's own escapes (a quoted
    /// string field's `\"`) would otherwise be doubled.
    Text,
    /// One JSON object a line: `\u001b`, `\u009b`; the record still decodes
    /// to the same object.
    Json,
}

/// Writes each record it is given with every control character in it
/// escaped, except the `\n` that ends the record.
///
/// A record is what one `write` call carries: a log formatter (such as
/// `tracing_subscriber::fmt`) formats a whole event, then writes it with one
/// `write_all`, and this writer always takes the whole buffer, so that call
/// is one `write`. Make one per record (`|| LogWriter::new(io::stderr(), format)`
/// as the formatter's writer factory).
///
/// ```
/// use std::io::Write;
///
/// use streamlet_proto::escape::{LogFormat, LogWriter};
///
/// let mut out = Vec::new();
/// LogWriter::new(&mut out, LogFormat::Text).write_all(b"WARN ok\r12:00 INFO forged\x1b[2J\n").unwrap();
/// assert_eq!(String::from_utf8(out).unwrap(), "WARN ok\\r12:00 INFO forged\\x1b[2J\n");
/// ```
#[derive(Debug)]
pub struct LogWriter<W> {
    inner: W,
    format: LogFormat,
}

impl<W: Write> LogWriter<W> {
    pub fn new(inner: W, format: LogFormat) -> Self {
        Self { inner, format }
    }
}

impl<W: Write> Write for LogWriter<W> {
    fn write(&mut self, record: &[u8]) -> io::Result<usize> {
        let (body, end) = match record.strip_suffix(b"\n") {
            Some(body) => (body, "\n"),
            None => (record, ""),
        };
        let mut escaped = match self.format {
            LogFormat::Text => escape_bytes_with(body, RECORD).into_owned(),
            // A JSON encoder writes UTF-8; anything else cannot be kept in JSON.
            LogFormat::Json => escape_json(&String::from_utf8_lossy(body)).into_owned(),
        };
        escaped.push_str(end);
        self.inner.write_all(escaped.as_bytes())?;
        Ok(record.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(format: LogFormat, record: &[u8]) -> String {
        let mut out = Vec::new();
        let mut writer = LogWriter::new(&mut out, format);
        assert_eq!(writer.write(record).unwrap(), record.len(), "a record is taken whole");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_text_record_keeps_only_its_final_newline() {
        let record = "2024-01-01T00:00:00Z  WARN streamlet: a\rb\nc\td\x1b[2J\u{9b}31m\x7f \\\"quoted\\\"\n";
        assert_eq!(
            written(LogFormat::Text, record.as_bytes()),
            "2024-01-01T00:00:00Z  WARN streamlet: a\\rb\\nc\\td\\x1b[2J\\u{9b}31m\\x7f \\\"quoted\\\"\n"
        );
        assert_eq!(written(LogFormat::Text, b"no newline\r"), r"no newline\r");
        assert_eq!(written(LogFormat::Text, b"two\n\n"), "two\\n\n");
        assert_eq!(written(LogFormat::Text, b"raw \x9b byte\n"), "raw \\x9b byte\n");
    }

    #[test]
    fn a_json_record_stays_the_same_object_without_raw_controls() {
        let record = format!("{}\n", serde_json::json!({ "message": "a\u{9b}31m\u{7f}\u{85}b\r\x1b" }));
        assert!(record.contains('\u{9b}'), "serde_json leaves C1 raw: {record}");
        let out = written(LogFormat::Json, record.as_bytes());
        assert!(out.ends_with("}\n") && out.matches('\n').count() == 1, "{out}");
        assert!(!out.trim_end().chars().any(char::is_control), "{out}");
        assert!(out.contains(r"a\u009b31m\u007f\u0085b"), "{out}");
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["message"], "a\u{9b}31m\u{7f}\u{85}b\r\x1b");
    }
}
