//! A pool's `handler`: `"echo"`, or a table naming its `kind` with the
//! options it takes:
//!
//! ```toml
//! handler = "echo"
//! handler = { kind = "exec", command = ["/usr/bin/wc", "-c"], direct = false }
//! handler = { kind = "relay", upstream = "tcp://127.0.0.1:9000" }
//! ```

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::Deserialize;

/// What to write for a handler whose options are required.
pub(super) const EXEC_EXAMPLE: &str = r#"handler = { kind = "exec", command = ["/usr/bin/wc", "-c"] }"#;
pub(super) const RELAY_EXAMPLE: &str = r#"handler = { kind = "relay", upstream = "tcp://127.0.0.1:9000" }"#;

/// Why a key of the handler is missing, and what to write.
pub(super) fn missing_handler() -> String {
    format!("is missing: say what the pool's streams run: add handler = \"echo\", {EXEC_EXAMPLE} or {RELAY_EXAMPLE}")
}
pub(super) const MISSING_COMMAND: &str = "is missing: the exec handler runs a command per stream: add command = [\"/usr/bin/wc\", \"-c\"] (an absolute path, then its arguments) to the handler's table";
pub(super) const MISSING_UPSTREAM: &str = "is missing: the relay handler joins each stream to an upstream: add upstream = \"tcp://IP:PORT\" or \"unix:/absolute/path\" to the handler's table";

/// The handler as written. A required option may be missing here: every
/// missing key of the file is reported at once, later.
#[derive(Debug)]
pub(super) enum RawHandler {
    Echo,
    Exec { command: Option<Vec<String>>, direct: bool },
    Relay { upstream: Option<String> },
}

/// The table form.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum Table {
    Echo {},
    Exec {
        command: Option<Vec<String>>,
        #[serde(default)]
        direct: bool,
    },
    Relay {
        upstream: Option<String>,
    },
}

impl<'de> Deserialize<'de> for RawHandler {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(HandlerVisitor)
    }
}

struct HandlerVisitor;

impl<'de> Visitor<'de> for HandlerVisitor {
    type Value = RawHandler;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a handler: "echo", or a table like { kind = "exec", command = [...] }"#)
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<RawHandler, E> {
        short_form(name).map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawHandler, A::Error> {
        let table = Table::deserialize(de::value::MapAccessDeserializer::new(map)).map_err(|e: A::Error| {
            if e.to_string().contains("missing field `kind`") {
                de::Error::custom(format!(
                    "the handler's table has no kind: write handler = \"echo\", {EXEC_EXAMPLE} or {RELAY_EXAMPLE}"
                ))
            } else {
                e
            }
        })?;
        Ok(match table {
            Table::Echo {} => RawHandler::Echo,
            Table::Exec { command, direct } => RawHandler::Exec { command, direct },
            Table::Relay { upstream } => RawHandler::Relay { upstream },
        })
    }
}

/// `handler = "NAME"`: only for a handler without required options.
fn short_form(name: &str) -> Result<RawHandler, String> {
    match name {
        "echo" => Ok(RawHandler::Echo),
        "exec" => Err(format!("\"exec\" needs the command to run, so it is written as a table: {EXEC_EXAMPLE}")),
        "relay" => Err(format!("\"relay\" needs its upstream, so it is written as a table: {RELAY_EXAMPLE}")),
        other => {
            Err(format!("{other:?} is not a handler: write handler = \"echo\", {EXEC_EXAMPLE} or {RELAY_EXAMPLE}"))
        }
    }
}
