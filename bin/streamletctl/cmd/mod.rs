//! One module per command; each asks the daemon and prints the answer.

pub mod close;
pub mod events;
pub mod lease;
pub mod monitor;
pub mod open;
pub mod pools;
pub mod quota;
pub mod simulate;
pub mod status;
pub mod streams;
pub mod top;
pub mod workers;

use std::io::Write;

use anyhow::Context;
use serde_json::Value;

/// Prints `value` as pretty JSON when `json`, else `text`.
pub fn print(json: bool, text: impl FnOnce() -> String, value: impl FnOnce() -> Value) -> anyhow::Result<()> {
    let mut out = if json { serde_json::to_string_pretty(&value())? } else { text() };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()).context("writing to stdout")
}
