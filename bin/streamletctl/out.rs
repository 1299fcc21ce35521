//! Everything `streamletctl` prints goes through here, so that no text a
//! gateway, a streamlet or a client wrote (a tenant, a label, a reason, an
//! error that quotes a request) can drive the operator's terminal or pose as
//! a line of its own (`SECURITY.md`, "Output to terminals and logs").
//! `println!` and `eprintln!` are denied in this binary (clippy's
//! `print_stdout` and `print_stderr`), so nothing goes around it.
//!
//! * [`line()`], [`note`]: one line made here from the daemon's fields; the
//!   whole line is escaped (a `\n` inside it too), and so each field is;
//! * [`error`]: an error's text on stderr, every control character escaped
//!   but backslashes left, since the daemon quotes a request's text with
//!   Rust's escapes already (`pool "a\u{1b}"`);
//! * [`listing`]: text from `streamlet_client::table`, which escapes each
//!   field where it lays it out; its own `\n` stay, and any other control
//!   character is escaped all the same;
//! * [`json`], [`json_line`], [`json_note`]: JSON, with every control
//!   character inside a string as `\u00XX` (JSON's own escaping leaves DEL
//!   and C1 raw).
//!
//! The bytes `open` copies from a stream to stdout are not printed here: they
//! are the stream's data, passed on as they are, as netcat passes them.

use std::io::Write;

use anyhow::Context;
use serde_json::Value;
use streamlet_client::proto::escape::{escape, escape_json, escape_layout, escape_line};

/// One line on stdout, escaped whole.
pub fn line(text: &str) -> anyhow::Result<()> {
    stdout(format!("{}\n", escape(text)).as_bytes())
}

/// A listing from `streamlet_client::table` on stdout, ending in a newline.
pub fn listing(text: &str) -> anyhow::Result<()> {
    let mut text = escape_layout(text).into_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    stdout(text.as_bytes())
}

/// Pretty JSON on stdout.
pub fn json(value: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    stdout(format!("{}\n", escape_json(&text)).as_bytes())
}

/// JSON on one line of stdout (a stream of events, say).
pub fn json_line(value: &Value) -> anyhow::Result<()> {
    stdout(format!("{}\n", escape_json(&value.to_string())).as_bytes())
}

/// One line on stderr, escaped whole; a failure to write it is ignored (there
/// is nowhere left to say so).
pub fn note(text: &str) {
    let _ = std::io::stderr().lock().write_all(format!("{}\n", escape(text)).as_bytes());
}

/// An error's text on one line of stderr.
pub fn error(text: &str) {
    let _ = std::io::stderr().lock().write_all(format!("{}\n", escape_line(text)).as_bytes());
}

/// JSON on one line of stderr.
pub fn json_note(value: &Value) {
    let _ = std::io::stderr().lock().write_all(format!("{}\n", escape_json(&value.to_string())).as_bytes());
}

/// Bytes this program made from its own definitions (a completion script, the
/// manual page), as they are; a reader that stopped early (`| head`) is no
/// error.
pub fn generated(bytes: &[u8]) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

fn stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).context("writing to stdout")
}
