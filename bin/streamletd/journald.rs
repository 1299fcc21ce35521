//! The log to journald, in its native protocol: one datagram per event, one
//! `NAME=value` line per field, every value escaped as a stderr record is
//! ([`escape_line`]), so that no control character a tenant, a reason or a
//! streamlet's stderr held reaches the journal. (`journalctl` shows a message
//! holding one as `[blob data]`, hiding it, or with `--all` prints it raw on
//! the terminal.) An escaped value holds no newline, so every field takes the
//! protocol's simple form.
//!
//! The fields are named as the `tracing-journald` crate names them: `MESSAGE`,
//! `PRIORITY` (error 3, warn 4, info 5, debug 6, trace 7), `TARGET`,
//! `CODE_FILE`, `CODE_LINE`, `SYSLOG_IDENTIFIER`, and each of the event's own
//! fields as `F_NAME`. Span fields are not sent: the daemon opens no spans.

use std::fmt::{self, Write as _};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use streamlet_proto::escape::escape_line;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// Where journald listens for the native protocol.
pub const SOCKET: &str = "/run/systemd/journal/socket";

/// The most bytes of one escaped value; a longer one is cut at a character
/// and ends in `...`, so an entry always fits in one datagram.
const MAX_VALUE: usize = 16 * 1024;

/// A `tracing_subscriber` layer that sends each event to journald.
#[derive(Debug)]
pub struct Journald {
    socket: UnixDatagram,
    path: PathBuf,
    identifier: String,
}

impl Journald {
    /// Checks that journald listens at `path` (it discards the empty datagram
    /// sent to find out).
    pub fn connect(path: &Path, identifier: &str) -> io::Result<Self> {
        let socket = UnixDatagram::unbound()?;
        socket.send_to(&[], path)?;
        Ok(Self { socket, path: path.to_owned(), identifier: identifier.to_owned() })
    }

    /// The entry for `event`, in the native protocol.
    fn entry(&self, event: &Event<'_>) -> String {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut entry = String::with_capacity(256);
        put(&mut entry, "PRIORITY", priority(*meta.level()));
        put(&mut entry, "SYSLOG_IDENTIFIER", &self.identifier);
        put(&mut entry, "TARGET", meta.target());
        if let Some(file) = meta.file() {
            put(&mut entry, "CODE_FILE", file);
        }
        if let Some(line) = meta.line() {
            put(&mut entry, "CODE_LINE", &line.to_string());
        }
        if let Some(message) = &fields.message {
            put(&mut entry, "MESSAGE", message);
        }
        for (name, value) in &fields.others {
            put(&mut entry, name, value);
        }
        entry
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Journald {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        // Nowhere to report a failure to log.
        let _ = self.socket.send_to(self.entry(event).as_bytes(), &self.path);
    }
}

fn priority(level: Level) -> &'static str {
    match level {
        Level::ERROR => "3",
        Level::WARN => "4",
        Level::INFO => "5",
        Level::DEBUG => "6",
        Level::TRACE => "7",
    }
}

/// `NAME=value\n`, the value escaped and bounded.
fn put(entry: &mut String, name: &str, value: &str) {
    let escaped = escape_line(value);
    let mut end = escaped.len().min(MAX_VALUE);
    while !escaped.is_char_boundary(end) {
        end -= 1;
    }
    entry.push_str(name);
    entry.push('=');
    entry.push_str(&escaped[..end]);
    if end < escaped.len() {
        entry.push_str("...");
    }
    entry.push('\n');
}

/// The event's fields: `message` apart, the rest named as journald wants.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    others: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.record(field, text);
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = Some(value);
        } else {
            self.others.push((journal_name(field.name()), value));
        }
    }
}

/// `F_` and the name upper-cased, with `.` as `_`, leading `_` dropped and
/// anything but ASCII letters, digits and `_` left out: journald's rules.
fn journal_name(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| if c == '.' { '_' } else { c })
        .skip_while(|&c| c == '_')
        .filter(|&c| c == '_' || c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    format!("F_{name}")
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A journald of our own: a datagram socket in a temporary directory.
    fn journal() -> (tempfile::TempDir, UnixDatagram, Journald) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let layer = Journald::connect(&path, "streamletd").unwrap();
        let mut probe = [0u8; 16];
        assert_eq!(receiver.recv(&mut probe).unwrap(), 0, "the empty datagram of the connect");
        (dir, receiver, layer)
    }

    fn received(receiver: &UnixDatagram) -> String {
        let mut buf = vec![0u8; 64 * 1024];
        let n = receiver.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn an_entry_has_its_fields_escaped_one_line_each() {
        let (_dir, receiver, layer) = journal();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let line = "ok\r2024-01-01 INFO forged\n\x1b[2J\u{9b}31m\x07";
            tracing::warn!(worker = 3, pool = "echo\x1b]0;t\x07", reason = %"bye\r\n", "streamlet: {line}");
        });
        let entry = received(&receiver);
        assert!(!entry.chars().any(|c| c.is_control() && c != '\n'), "{entry:?}");
        let fields: Vec<&str> = entry.lines().collect();
        assert!(entry.ends_with('\n'));
        for expected in [
            "PRIORITY=4",
            "SYSLOG_IDENTIFIER=streamletd",
            r"MESSAGE=streamlet: ok\r2024-01-01 INFO forged\n\x1b[2J\u{9b}31m\x07",
            "F_WORKER=3",
            r"F_POOL=echo\x1b]0;t\x07",
            r"F_REASON=bye\r\n",
        ] {
            assert!(fields.contains(&expected), "{expected} in {fields:#?}");
        }
        assert!(fields.iter().any(|f| f.starts_with("CODE_LINE=")) && fields.iter().any(|f| f.starts_with("TARGET=")));
        assert_eq!(fields.len(), 9, "{fields:#?}");
    }

    #[test]
    fn a_long_value_is_cut_at_a_character() {
        let mut entry = String::new();
        put(&mut entry, "MESSAGE", &"é".repeat(MAX_VALUE));
        assert!(entry.len() <= "MESSAGE=".len() + MAX_VALUE + "...\n".len());
        assert!(entry.ends_with("é...\n"), "{}", &entry[entry.len() - 10..]);
    }

    #[test]
    fn names_follow_journalds_rules() {
        assert_eq!(journal_name("pool"), "F_POOL");
        assert_eq!(journal_name("_log.target"), "F_LOG_TARGET");
        assert_eq!(journal_name("r#type"), "F_RTYPE");
    }
}
