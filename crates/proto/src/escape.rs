//! Untrusted text made safe to print on a terminal or write to a log.
//!
//! Tenants, labels, reasons and messages come from gateways, streamlets and
//! their clients. Printed as they are, an ESC or a C1 CSI would drive the
//! operator's terminal (clear it, move the cursor, retitle the window), and a
//! CR or LF would let one line pose as another. Every control character is
//! shown instead as a visible escape that names it:
//!
//! | character | shown as |
//! | --- | --- |
//! | LF, CR, TAB | `\n`, `\r`, `\t` |
//! | any other C0 (U+0000..U+001F), DEL (U+007F) | `\x00`..`\x1f`, `\x7f` |
//! | C1 (U+0080..U+009F) | `\u{80}`..`\u{9f}` |
//! | a byte that is not UTF-8 ([`escape_bytes`]) | `\x80`..`\xff` |
//! | `\` ([`escape`], [`escape_bytes`]) | `\\` |
//!
//! Everything else is printed as it is. `\xNN` is always one byte and
//! `\u{NN}` one character, so a C1 character (two bytes in UTF-8) and a
//! stray byte of the same value never look alike.
//!
//! Four ways in, by what the text is:
//!
//! * [`escape`] and [`escape_bytes`]: one field. Every control character is
//!   escaped, the backslash too, so that two different fields never print
//!   alike and the escaped text maps back to exactly one original;
//! * [`escape_layout`]: text this program laid out in lines and columns from
//!   fields escaped already: its `\n` and `\t` stay, every other control
//!   character is escaped (a safety net), backslashes stay as they are;
//! * [`escape_line`]: one line this program made (a log record, a journal
//!   field): every control character is escaped, backslashes stay as they
//!   are (the escapes of a field escaped already stay single);
//! * [`escape_json`]: JSON text. JSON encoders escape C0 but may leave DEL
//!   and C1 raw; here they become `\u007f`, `\u009b`, which decode to the
//!   same string;
//! * [`LogWriter`]: a log's output, one record per write: every control
//!   character but the record's final `\n` is escaped.
//!
//! ```
//! use streamlet_proto::escape::escape;
//!
//! assert_eq!(escape("acme\x1b[2J\r\u{9b}31m"), r"acme\x1b[2J\r\u{9b}31m");
//! assert_eq!(escape(r"C:\dir"), r"C:\\dir");
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

mod writer;

pub use writer::{LogFormat, LogWriter};

/// What a way in escapes besides the control characters.
#[derive(Debug, Clone, Copy)]
struct Rules {
    /// `\` as `\\`, so that the escaped text maps back to one original.
    backslash: bool,
    /// `\n` and `\t` kept: the text's own line breaks and columns.
    layout: bool,
}

const FIELD: Rules = Rules { backslash: true, layout: false };
const LAYOUT: Rules = Rules { backslash: false, layout: true };
const RECORD: Rules = Rules { backslash: false, layout: false };

/// One field: every control character escaped, and the backslash as `\\`.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_str(text, FIELD)
}

/// One field given as bytes (a line a streamlet wrote): as [`escape`], and
/// each byte that is not part of valid UTF-8 as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> Cow<'_, str> {
    escape_bytes_with(bytes, FIELD)
}

/// Text laid out in lines by this program from escaped fields: keeps `\n`
/// and `\t`, escapes every other control character, leaves backslashes.
pub fn escape_layout(text: &str) -> Cow<'_, str> {
    escape_str(text, LAYOUT)
}

/// One line made by this program, whose fields may be escaped already (a log
/// record, a journal field): every control character escaped, `\n` too;
/// backslashes stay as they are.
pub fn escape_line(text: &str) -> Cow<'_, str> {
    escape_str(text, RECORD)
}

/// JSON text: every control character but `\n` as `\u00XX`. Outside strings
/// an encoder writes no control character but the `\n` of pretty printing, so
/// each one escaped here is inside a string, where `\u00XX` means the same
/// character: the JSON decodes to the same value.
pub fn escape_json(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\n') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() && c != '\n' {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char, rules: Rules) -> bool {
    (c == '\\' && rules.backslash) || (c.is_control() && !(rules.layout && (c == '\n' || c == '\t')))
}

fn escape_str(text: &str, rules: Rules) -> Cow<'_, str> {
    if !text.chars().any(|c| needs_escape(c, rules)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    push_escaped(&mut out, text, rules);
    Cow::Owned(out)
}

fn escape_bytes_with(bytes: &[u8], rules: Rules) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return escape_str(text, rules);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        push_escaped(&mut out, chunk.valid(), rules);
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    Cow::Owned(out)
}

fn push_escaped(out: &mut String, text: &str, rules: Rules) {
    for c in text.chars() {
        if !needs_escape(c, rules) {
            out.push(c);
            continue;
        }
        match c {
            '\\' => out.push_str(r"\\"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The inverse of `escape_bytes`, to show that escaping loses nothing.
    fn unescape(text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(at) = rest.find('\\') {
            out.extend_from_slice(&rest.as_bytes()[..at]);
            let tail = &rest[at + 1..];
            let (bytes, used): (Vec<u8>, usize) = match tail.as_bytes()[0] {
                b'\\' => (vec![b'\\'], 1),
                b'n' => (vec![b'\n'], 1),
                b'r' => (vec![b'\r'], 1),
                b't' => (vec![b'\t'], 1),
                b'x' => (vec![u8::from_str_radix(&tail[1..3], 16).unwrap()], 3),
                b'u' => {
                    let close = tail.find('}').unwrap();
                    let c = char::from_u32(u32::from_str_radix(&tail[2..close], 16).unwrap()).unwrap();
                    (c.to_string().into_bytes(), close + 1)
                }
                other => panic!("not an escape: \\{}", other as char),
            };
            out.extend_from_slice(&bytes);
            rest = &tail[used..];
        }
        out.extend_from_slice(rest.as_bytes());
        out
    }

    fn controls(text: &str) -> Vec<char> {
        text.chars().filter(|c| c.is_control()).collect()
    }

    #[test]
    fn every_c0_character_and_del_become_visible() {
        for code in (0u32..0x20).chain([0x7f]) {
            let c = char::from_u32(code).unwrap();
            let escaped = escape(&format!("a{c}b")).into_owned();
            let expected = match c {
                '\n' => r"a\nb".to_owned(),
                '\r' => r"a\rb".to_owned(),
                '\t' => r"a\tb".to_owned(),
                c => format!("a\\x{:02x}b", c as u32),
            };
            assert_eq!(escaped, expected, "U+{code:04X}");
        }
        assert_eq!(escape("\x1b[2J\x07"), r"\x1b[2J\x07");
    }

    #[test]
    fn every_c1_character_becomes_visible() {
        for code in 0x80u32..0xa0 {
            let c = char::from_u32(code).unwrap();
            assert_eq!(escape(&c.to_string()), format!("\\u{{{code:x}}}"), "U+{code:04X}");
        }
        // Just past C1: a no-break space and Latin-1 letters are text.
        assert_eq!(escape("\u{a0}é\u{ff}"), "\u{a0}é\u{ff}");
    }

    #[test]
    fn a_line_break_inside_a_field_stays_on_the_line() {
        let forged = "acme\r\n12:00:00.000  stream_opened      stream 1 tenant=admin";
        let escaped = escape(forged);
        assert_eq!(escaped.lines().count(), 1);
        assert!(escaped.starts_with(r"acme\r\n12:00:00.000"), "{escaped}");
    }

    #[test]
    fn text_around_the_escapes_keeps_its_characters() {
        assert_eq!(escape("día\x1b]0;日本\x07ü"), r"día\x1b]0;日本\x07ü");
        assert_eq!(escape("plain tenant-1"), "plain tenant-1");
        assert!(matches!(escape("plain tenant-1"), Cow::Borrowed(_)), "clean text is not copied");
    }

    #[test]
    fn the_backslash_is_escaped_so_no_two_fields_print_alike() {
        assert_eq!(escape(r"\x1b"), r"\\x1b");
        assert_ne!(escape("\x1b"), escape(r"\x1b"));
        assert_eq!(escape_bytes(br"a\b"), r"a\\b");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_shown_one_by_one() {
        // A raw 8-bit CSI, a lone continuation byte, a sequence cut short.
        assert_eq!(escape_bytes(b"ok\x9b31m\x80\xe6\x97"), r"ok\x9b31m\x80\xe6\x97");
        assert_eq!(escape_bytes(b"\xff\x1b\xc2\x9b"), r"\xff\x1b\u{9b}", "C2 9B is U+009B, a character");
        assert_eq!(escape_bytes("日本\r".as_bytes()), r"日本\r");
        assert_eq!(escape_bytes(b"caf\xc3\xa9 \xc3"), r"café \xc3");
    }

    #[test]
    fn layout_keeps_its_lines_and_columns_and_escapes_the_rest() {
        assert_eq!(escape_layout("a\tb\nc\r\x1b\u{9b}\x7f\n"), "a\tb\nc\\r\\x1b\\u{9b}\\x7f\n");
        assert_eq!(escape_layout(r"already \x1b escaped"), r"already \x1b escaped");
        assert_eq!(escape_line("a\tb\nc\r\x1b\u{9b} \\x07"), r"a\tb\nc\r\x1b\u{9b} \x07");
    }

    #[test]
    fn json_keeps_its_meaning_and_loses_its_controls() {
        let hostile: String = (0u32..0xa0).filter_map(char::from_u32).collect();
        for text in [serde_json::json!({ "t": hostile }).to_string(), {
            serde_json::to_string_pretty(&serde_json::json!({ "t": [hostile.clone()] })).unwrap()
        }] {
            let escaped = escape_json(&text);
            assert_eq!(controls(&escaped).iter().filter(|&&c| c != '\n').count(), 0, "{escaped}");
            let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
            let original: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back, original);
        }
        // The JSON string "\\" + U+009B: a backslash (escaped), then the C1 character.
        assert_eq!(escape_json("\"\\\\\u{9b}\""), r#""\\\u009b""#);
    }

    proptest! {
        #[test]
        fn escaped_bytes_have_no_control_and_map_back(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let escaped = escape_bytes(&bytes);
            prop_assert!(controls(&escaped).is_empty(), "{escaped}");
            prop_assert_eq!(unescape(&escaped), bytes);
        }

        #[test]
        fn escaped_text_has_no_control_and_maps_back(chars in proptest::collection::vec(prop_oneof![
            any::<char>(),
            (0u32..0xa0).prop_filter_map("a char", char::from_u32),
            Just('\\'),
        ], 0..64)) {
            let text: String = chars.into_iter().collect();
            let escaped = escape(&text);
            prop_assert!(controls(&escaped).is_empty(), "{escaped}");
            prop_assert_eq!(unescape(&escaped), text.into_bytes());
        }
    }
}
