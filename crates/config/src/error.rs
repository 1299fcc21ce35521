//! A configuration's errors: the file, the line, the key, and what to do.
//!
//! Errors found while the TOML is read carry the span the parser saw; those
//! found when the values are checked carry only their key, whose line is
//! looked up in the document afterwards ([`Document::line`]). A key that is missing
//! is placed on the line of the table it belongs in.

use std::fmt;
use std::ops::Range;

use toml_edit::{Item, Table, TableLike, Value};

/// One thing wrong with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key's line (from 1), or the line of the table a missing key
    /// belongs in; `None` when the file has no such place.
    pub line: Option<usize>,
    /// Its dotted path, like `pools.echo.workers.max`; empty for the file.
    pub key: String,
    /// What is wrong and what to write instead.
    pub reason: String,
}

/// A configuration that cannot be used: where, which key, why, and what to
/// do; and, when one pass found several, the others (every missing key is
/// reported at once).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file, or [`EMBEDDED`](super::EMBEDDED).
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub reason: String,
    /// Further problems of the same file, in the order of its lines.
    pub more: Vec<Problem>,
}

impl ConfigError {
    pub(super) fn new(file: &str, key: &str, reason: String) -> Self {
        Self { file: file.to_owned(), line: None, key: key.to_owned(), reason, more: Vec::new() }
    }

    /// Every problem, the first included, in the order of the file.
    pub fn problems(&self) -> Vec<Problem> {
        let first = Problem { line: self.line, key: self.key.clone(), reason: self.reason.clone() };
        std::iter::once(first).chain(self.more.iter().cloned()).collect()
    }

    /// An error of several problems, sorted by line; `None` if there are none.
    pub(super) fn of(file: &str, mut problems: Vec<Problem>) -> Option<Self> {
        problems.sort_by_key(|p| p.line);
        let mut problems = problems.into_iter();
        let first = problems.next()?;
        Some(Self {
            file: file.to_owned(),
            line: first.line,
            key: first.key,
            reason: first.reason,
            more: problems.collect(),
        })
    }

    /// Fills in the line of every problem that has none from `text`.
    pub(super) fn located(mut self, text: &str) -> Self {
        let document = Document::parse(text);
        if self.line.is_none() {
            self.line = document.line(&self.key);
        }
        for problem in &mut self.more {
            if problem.line.is_none() {
                problem.line = document.line(&problem.key);
            }
        }
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems().iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&self.file)?;
            if let Some(line) = problem.line {
                write!(f, ":{line}")?;
            }
            if problem.key.is_empty() {
                write!(f, ": {}", problem.reason)?;
            } else {
                write!(f, ": key `{}`: {}", problem.key, problem.reason)?;
            }
        }
        Ok(())
    }
}

/// The line (from 1) of byte `offset` of `text`.
pub(super) fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// What is wrong at byte `offset` of `text`, which the parser refused
/// without saying why.
pub(super) fn unreadable(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    match text[offset..].chars().next() {
        Some(c) if c.is_control() && c != '\n' && c != '\t' => format!(
            "a control character (U+{:04X}) at column {column}: TOML allows none, not even in a comment; remove it",
            u32::from(c)
        ),
        _ => format!("this is not TOML at column {column}: check the quotes, brackets and commas up to there"),
    }
}

/// A file's text and, if it is TOML, its document, for looking up lines.
pub(super) struct Document<'a> {
    text: &'a str,
    doc: Option<toml_edit::ImDocument<&'a str>>,
}

impl<'a> Document<'a> {
    pub(super) fn parse(text: &'a str) -> Self {
        Self { text, doc: toml_edit::ImDocument::parse(text).ok() }
    }

    /// The line of `key`, or of its nearest enclosing table or array that
    /// is there; `None` if not even the first part of the key is.
    pub(super) fn line(&self, key: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let line = |span: Option<Range<usize>>| span.map(|s| line_at(self.text, s.start));
        let mut node = Node::Table(doc.as_table());
        let mut found = None;
        for (name, indices) in segments(key) {
            let Some((k, item)) = node.table_like().and_then(|t| t.get_key_value(&name)) else { break };
            found = line(k.span()).or(found);
            node = Node::Item(item);
            for index in indices {
                let Some(element) = node.index(index) else { return found };
                found = line(element.span()).or(found);
                node = element;
            }
        }
        found
    }
}

/// A name as a part of a dotted key: quoted if it holds a dot.
pub(super) fn part(name: &str) -> String {
    if name.contains('.') {
        format!("\"{name}\"")
    } else {
        name.to_owned()
    }
}

/// A place in the document: a key's item, an array's element, or a table
/// of an array of tables.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a Table),
}

impl<'a> Node<'a> {
    fn table_like(self) -> Option<&'a dyn TableLike> {
        match self {
            Self::Item(item) => item.as_table_like(),
            Self::Value(value) => value.as_inline_table().map(|t| t as &dyn TableLike),
            Self::Table(table) => Some(table),
        }
    }

    fn index(self, index: usize) -> Option<Node<'a>> {
        match self {
            Self::Item(Item::Value(value)) => Self::Value(value).index(index),
            Self::Item(Item::ArrayOfTables(tables)) => tables.get(index).map(Self::Table),
            Self::Value(Value::Array(array)) => array.get(index).map(Self::Value),
            _ => None,
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Self::Item(item) => item.span(),
            Self::Value(value) => value.span(),
            Self::Table(table) => table.span(),
        }
    }
}

/// `a."b.c"[2].d` as `[("a", []), ("b.c", [2]), ("d", [])]`.
fn segments(key: &str) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    let mut name = String::new();
    let mut indices = Vec::new();
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => name.extend(chars.by_ref().take_while(|&c| c != '"')),
            '[' => {
                let digits: String = chars.by_ref().take_while(|&c| c != ']').collect();
                indices.extend(digits.parse::<usize>());
            }
            '.' => out.push((std::mem::take(&mut name), std::mem::take(&mut indices))),
            c => name.push(c),
        }
    }
    out.push((name, indices));
    out
}

/// serde's words for a type or a refusal, in the words of the file.
pub(super) fn plain(message: &str) -> String {
    let message = message.trim().replace('\n', "; ");
    let message = message.as_str();
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (name, expected) = split_expected(rest);
        return match expected {
            Some(known) => {
                let hint = closest(&name, &known).map(|k| format!("did you mean `{k}`? ")).unwrap_or_default();
                format!("unknown key `{name}`: {hint}remove it or write one of {}", list(&known))
            }
            None => format!("unknown key `{name}`: remove it"),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let (name, expected) = split_expected(rest);
        let known = expected.unwrap_or_default();
        let hint = closest(&name, &known).map(|k| format!("did you mean \"{k}\"? ")).unwrap_or_default();
        let quoted: Vec<String> = known.iter().map(|k| format!("\"{k}\"")).collect();
        return format!("unknown value \"{name}\": {hint}write one of {}", quoted.join(", "));
    }
    if let Some(name) = message.strip_prefix("missing field ") {
        return format!("the key {name} is missing here: add it");
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some((found, expected)) = message.strip_prefix(prefix).and_then(|rest| rest.split_once(", expected ")) {
            return format!("found {found}, expected {}", expected_words(expected));
        }
    }
    message.to_owned()
}

/// The name and, if given, the list after "expected" in serde's
/// "`name`, expected one of `a`, `b`" or "`name`, expected `a`".
fn split_expected(rest: &str) -> (String, Option<Vec<String>>) {
    let ticked = |s: &str| s.trim().trim_matches('`').to_owned();
    match rest.split_once(", expected ") {
        Some((name, expected)) => {
            let expected = expected.strip_prefix("one of ").unwrap_or(expected);
            (ticked(name), Some(expected.split(", ").map(ticked).collect()))
        }
        None => (ticked(rest.split(',').next().unwrap_or(rest)), None),
    }
}

fn list(known: &[String]) -> String {
    known.join(", ")
}

/// serde's name of an expected type as the file writes it.
fn expected_words(expected: &str) -> String {
    match expected {
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" => "a whole number from 0 to 4294967295".into(),
        "u64" | "usize" => "a whole number of at least 0".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a string" => "a string in quotes".into(),
        "a sequence" => "a list, like [\"a\", \"b\"]".into(),
        "a map" => "a table, like { key = value }".into(),
        other if other.starts_with("struct ") => "a table, like { key = value }".into(),
        other if other.starts_with("enum ") => "one of the names this key takes, in quotes".into(),
        other => other.to_owned(),
    }
}

/// The known name `name` is most likely a typo of: at most two edits away
/// (one for short names), and nearer than any other.
fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    let limit = if name.chars().count() <= 4 { 1 } else { 2 };
    known
        .iter()
        .map(|k| (edits(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance, by characters.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_without_words_says_what_is_at_the_place() {
        assert_eq!(
            unreadable("# a\nb\u{1}c", 5),
            "a control character (U+0001) at column 2: TOML allows none, not even in a comment; remove it"
        );
        assert!(unreadable("x = [1,", 7).contains("column 8"));
        assert!(!unreadable("", 99).is_empty());
    }

    const TEXT: &str = "[daemon]\nshutdown_timeout = \"5s\"\n\n[pools.echo]\nhandler = { kind = \"echo\" }\n\nupstream_allow = [\"a\",\n  \"b\"]\n[pools.echo.workers]\nmax = 2\n\n[regions.distance]\n\"eu:us\" = 3\n";

    fn locate(text: &str, key: &str) -> Option<usize> {
        Document::parse(text).line(key)
    }

    #[test]
    fn keys_are_found_on_their_own_line() {
        assert_eq!(locate(TEXT, "daemon.shutdown_timeout"), Some(2));
        assert_eq!(locate(TEXT, "pools.echo"), Some(4));
        assert_eq!(locate(TEXT, "pools.echo.handler.kind"), Some(5));
        assert_eq!(locate(TEXT, "pools.echo.upstream_allow[1]"), Some(8));
        assert_eq!(locate(TEXT, "pools.echo.workers.max"), Some(10));
        assert_eq!(locate(TEXT, "regions.distance.\"eu:us\""), Some(13));
    }

    #[test]
    fn a_missing_key_is_placed_at_its_table() {
        assert_eq!(locate(TEXT, "pools.echo.streams_per_worker"), Some(4));
        assert_eq!(locate(TEXT, "pools.echo.handler.command"), Some(5));
        assert_eq!(locate(TEXT, "pools.echo.upstream_allow[7]"), Some(7));
        assert_eq!(locate(TEXT, "pools.echo.workers.min"), Some(9));
        assert_eq!(locate(TEXT, "metrics.listen"), None, "no such table");
        assert_eq!(locate("[pools.echo\n", "pools"), None, "not TOML");
    }

    #[test]
    fn serde_words_become_the_files_words() {
        let unknown = plain("unknown field `placment`, expected one of `handler`, `placement`, `limits`");
        assert_eq!(
            unknown,
            "unknown key `placment`: did you mean `placement`? remove it or write one of handler, placement, limits"
        );
        let unknown = plain("unknown field `colour`, expected one of `handler`, `placement`");
        assert!(!unknown.contains("did you mean") && unknown.contains("remove it"), "{unknown}");
        let variant = plain("unknown variant `pak`, expected one of `least-connections`, `pack`");
        assert_eq!(
            variant,
            "unknown value \"pak\": did you mean \"pack\"? write one of \"least-connections\", \"pack\""
        );
        assert_eq!(
            plain("invalid type: string \"8\", expected u32"),
            "found string \"8\", expected a whole number from 0 to 4294967295"
        );
        assert_eq!(plain("invalid type: integer `1`, expected a boolean"), "found integer `1`, expected true or false");
        assert_eq!(plain("missing field `kind`"), "the key `kind` is missing here: add it");
        assert_eq!(plain("invalid table header\nexpected `.`, `]`\n"), "invalid table header; expected `.`, `]`");
    }

    #[test]
    fn several_problems_print_a_line_each_in_file_order() {
        let e = ConfigError::of(
            "a.toml",
            vec![
                Problem { line: Some(9), key: "pools.b.handler".into(), reason: "missing".into() },
                Problem { line: Some(2), key: "pools.a.handler".into(), reason: "missing".into() },
            ],
        )
        .unwrap();
        assert_eq!((e.line, e.key.as_str()), (Some(2), "pools.a.handler"));
        assert_eq!(e.to_string(), "a.toml:2: key `pools.a.handler`: missing\na.toml:9: key `pools.b.handler`: missing");
        let e = ConfigError::new("b.toml", "", "cannot read the file".into());
        assert_eq!(e.to_string(), "b.toml: cannot read the file");
    }
}
