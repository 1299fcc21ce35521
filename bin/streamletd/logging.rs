//! The daemon's log: to journald with structured fields when stderr is the
//! journal (`$JOURNAL_STREAM` names stderr's device and inode, as systemd
//! sets it), else to stderr as human-readable lines or JSON objects, one
//! record a line. `STREAMLET_LOG` sets the filter.
//!
//! Records carry what others wrote (tenants, reasons, a streamlet's stderr),
//! so the escaping is at the output, where no field can miss it: on stderr
//! each record passes through a [`LogWriter`], which escapes every control
//! character but the record's final newline; to journald every value is
//! escaped as it is sent ([`crate::journald`]). See `SECURITY.md`, "Output to
//! terminals and logs".

use std::io;
use std::path::Path;

use streamlet_proto::escape::{self, LogWriter};
use tracing::Subscriber;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::journald::{self, Journald};

/// How the log is written to stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Sets the log up for the whole process; `default` is the filter without
/// `STREAMLET_LOG`.
pub fn init(default: &str, format: LogFormat) {
    let filter = || EnvFilter::try_from_env("STREAMLET_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    if stderr_is_journal() {
        match Journald::connect(Path::new(journald::SOCKET), "streamletd") {
            Ok(journald) => {
                let _ = tracing_subscriber::registry().with(filter()).with(journald).try_init();
                return;
            }
            Err(e) => eprintln!("streamletd: cannot log to journald ({e}); logging to stderr"),
        }
    }
    let _ = stream_subscriber(format, filter(), io::stderr).try_init();
}

/// The log as lines on the streams `make_writer` opens (one per record).
///
/// No colours in the human format: the writer escapes every control character
/// in a record, the formatter's colour codes as much as a tenant's, and a
/// colour code let through for the formatter could as well come from a field.
/// The level is a word on every line anyway.
fn stream_subscriber<M, W>(format: LogFormat, filter: EnvFilter, make_writer: M) -> Box<dyn Subscriber + Send + Sync>
where
    M: Fn() -> W + Send + Sync + 'static,
    W: io::Write + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Human => Box::new(
            builder
                .with_ansi(false)
                .with_writer(move || LogWriter::new(make_writer(), escape::LogFormat::Text))
                .finish(),
        ),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_writer(move || LogWriter::new(make_writer(), escape::LogFormat::Json))
                .finish(),
        ),
    }
}

/// Whether stderr is the journal's stream: `$JOURNAL_STREAM` is
/// `DEVICE:INODE` of the stream systemd connected, and stderr still is it
/// (not redirected since).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsRawFd;
    let Ok(expected) = std::env::var("JOURNAL_STREAM") else { return false };
    let Ok(stat) = nix::sys::stat::fstat(io::stderr().as_raw_fd()) else { return false };
    journal_stream_matches(&expected, stat.st_dev, stat.st_ino)
}

fn journal_stream_matches(expected: &str, dev: u64, ino: u64) -> bool {
    let mut parts = expected.splitn(2, ':');
    let (Some(d), Some(i)) = (parts.next(), parts.next()) else { return false };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn journal_stream_names_the_device_and_inode_of_stderr() {
        assert!(journal_stream_matches("8:123456", 8, 123456));
        assert!(!journal_stream_matches("8:123456", 8, 123457), "stderr was redirected since");
        assert!(!journal_stream_matches("8", 8, 123456));
        assert!(!journal_stream_matches("x:y", 8, 123456));
    }

    /// A stream in memory that the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const LINE: &str = "ok\r2024-01-01T00:00:00Z  INFO forged\n\x1b[2J\u{9b}31m\x07";

    /// Logs one hostile event in `format`; what was written.
    fn hostile_record(format: LogFormat) -> String {
        let captured = Captured::default();
        let stream = captured.clone();
        let subscriber = stream_subscriber(format, EnvFilter::new("warn"), move || stream.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(pool = "echo\x1b]0;t\x07", reason = %"bye\r\n\u{85}", "streamlet: {LINE}");
        });
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn a_human_record_is_one_line_without_a_control_character() {
        let record = hostile_record(LogFormat::Human);
        assert!(record.ends_with('\n') && record.matches('\n').count() == 1, "{record:?}");
        assert!(!record.trim_end_matches('\n').chars().any(char::is_control), "{record:?}");
        assert!(
            record.contains(r"streamlet: ok\r2024-01-01T00:00:00Z  INFO forged\n\x1b[2J\u{9b}31m\x07"),
            "{record:?}"
        );
        assert!(record.contains(r"reason=bye\r\n\u{85}"), "{record:?}");
        // A string field is quoted by the formatter, with Rust's escapes.
        assert!(record.contains(r#"pool="echo\u{1b}]0;t\u{7}""#), "{record:?}");
    }

    #[test]
    fn a_json_record_is_one_line_without_a_control_character_and_the_same_fields() {
        let record = hostile_record(LogFormat::Json);
        assert!(record.ends_with('\n') && record.matches('\n').count() == 1, "{record:?}");
        assert!(!record.trim_end_matches('\n').chars().any(char::is_control), "{record:?}");
        let object: serde_json::Value = serde_json::from_str(&record).unwrap();
        assert_eq!(object["message"], format!("streamlet: {LINE}"));
        assert_eq!(object["pool"], "echo\x1b]0;t\x07");
        assert_eq!(object["reason"], "bye\r\n\u{85}");
    }
}
