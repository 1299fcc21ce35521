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

use serde_json::Value;

use crate::out;

/// Prints `value` as pretty JSON when `json`, else the listing `text` (made
/// by `streamlet_client::table`, which escapes its fields).
pub fn print(json: bool, text: impl FnOnce() -> String, value: impl FnOnce() -> Value) -> anyhow::Result<()> {
    if json {
        out::json(&value())
    } else {
        out::listing(&text())
    }
}

/// Prints `value` as pretty JSON when `json`, else the one line `text`, made
/// here from the daemon's fields and escaped whole.
pub fn say(json: bool, text: impl FnOnce() -> String, value: impl FnOnce() -> Value) -> anyhow::Result<()> {
    if json {
        out::json(&value())
    } else {
        out::line(&text())
    }
}
