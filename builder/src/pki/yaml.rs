//! The YAML plumbing shared by the bundle and talosconfig formats.
//!
//! Reading: the text is parsed by serde-saphyr into a small generic tree that
//! keeps the source text of every scalar, so the format code
//! can walk it with a dotted field path and report missing, unknown and wrong
//! fields precisely.
//!
//! Writing: both files are produced by go-yaml's `yaml.Marshal` in Talos
//! (4-space indentation, sequences indented under their key, no line
//! wrapping). [`scalar`] reproduces go-yaml's choice between plain,
//! single-quoted and double-quoted scalars.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::PkiError;

// ------------------------------------------------------------------- reading

/// A parsed YAML value.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Absent value, `~` or `null`.
    Null,
    /// Any scalar, as its string value (for non-string plain scalars such as
    /// `123`, the text as written).
    Scalar(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

/// What serde-saphyr hands us before scalar text is recovered.
enum Raw {
    Null,
    Str(String),
    /// A plain scalar that resolved to a number or boolean: its text is taken
    /// from the source span.
    Typed,
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(String, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Raw, E> {
                Ok(Raw::Typed)
            }
            fn visit_char<E>(self, v: char) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Str(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Raw, E> {
                Ok(Raw::Str(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                Raw::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
                    items.push(item);
                }
                Ok(Raw::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<KeyString>()? {
                    let value = map.next_value::<Spanned<Raw>>()?;
                    entries.push((key.0, value));
                }
                Ok(Raw::Map(entries))
            }
        }
        deserializer.deserialize_any(RawVisitor)
    }
}

/// A mapping key read as a string whatever its YAML type (`1:` is key "1").
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(KeyString)
    }
}

fn to_node(raw: Spanned<Raw>, text: &str) -> Node {
    match raw.value {
        Raw::Null => Node::Null,
        Raw::Str(s) => Node::Scalar(s),
        Raw::Typed => {
            // The value's definition (for an alias, the anchored scalar) as written.
            let span = raw.defined.span();
            let source = span
                .byte_offset()
                .zip(span.byte_len())
                .and_then(|(start, len)| {
                    let start = usize::try_from(start).ok()?;
                    let end = start.checked_add(usize::try_from(len).ok()?)?;
                    text.get(start..end)
                })
                .unwrap_or_default();
            Node::Scalar(source.trim().to_owned())
        }
        Raw::Seq(items) => Node::Seq(items.into_iter().map(|i| to_node(i, text)).collect()),
        Raw::Map(entries) => Node::Map(entries.into_iter().map(|(k, v)| (k, to_node(v, text))).collect()),
    }
}

/// Parses one YAML document into a [`Node`] tree.
pub(crate) fn parse(text: &str) -> Result<Node, PkiError> {
    let raw: Spanned<Raw> = serde_saphyr::from_str(text).map_err(|err| {
        // Location::UNKNOWN has line 0.
        let location = err.location().filter(|l| l.line() > 0);
        // The rendered message repeats the location and adds a source
        // snippet; keep its first line without the "error: line N column M: " prefix.
        let rendered = err.to_string();
        let first = rendered.lines().next().unwrap_or_default();
        let body = first.strip_prefix("error: ").unwrap_or(first);
        let message = match body.split_once(": ") {
            Some((head, rest)) if head.starts_with("line ") => rest,
            _ => body,
        };
        PkiError::Yaml {
            message: message.to_owned(),
            line: location.map(|l| l.line()),
            column: location.map(|l| l.column()),
        }
    })?;
    Ok(to_node(raw, text))
}

/// Describes a node's kind for "found ..." messages.
pub(crate) fn describe(node: &Node) -> &'static str {
    match node {
        Node::Null => "null",
        Node::Scalar(_) => "a scalar",
        Node::Seq(_) => "a sequence",
        Node::Map(_) => "a mapping",
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// A mapping being read field by field under a dotted `path`.
pub(crate) struct MapReader {
    path: String,
    entries: Vec<(String, Node)>,
}

impl MapReader {
    /// Reads `node` (found at `path`) as a mapping whose keys must all be in
    /// `allowed`. `expected` describes the mapping for a "missing" message.
    pub(crate) fn new(node: Node, path: &str, allowed: &[&'static str], expected: &str) -> Result<Self, PkiError> {
        let entries = match node {
            Node::Map(entries) => entries,
            Node::Null => return Err(PkiError::missing(path, expected)),
            other => {
                return Err(PkiError::invalid(path, format!("expected {expected}; found {}", describe(&other))));
            }
        };
        if let Some((key, _)) = entries.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(PkiError::UnknownField { field: join(path, key), expected: allowed.to_vec() });
        }
        Ok(MapReader { path: path.to_owned(), entries })
    }

    pub(crate) fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Removes and returns the value of `key`, treating `null` as absent.
    pub(crate) fn take(&mut self, key: &str) -> Option<Node> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        let (_, value) = self.entries.remove(index);
        match value {
            Node::Null => None,
            _ => Some(value),
        }
    }

    /// A required mapping.
    pub(crate) fn map(&mut self, key: &str, allowed: &[&'static str], expected: &str) -> Result<MapReader, PkiError> {
        let path = self.path(key);
        match self.take(key) {
            Some(node) => MapReader::new(node, &path, allowed, expected),
            None => Err(PkiError::missing(path, expected)),
        }
    }

    /// A required, non-empty string.
    pub(crate) fn string(&mut self, key: &str, expected: &str) -> Result<String, PkiError> {
        let path = self.path(key);
        match self.opt_string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(PkiError::missing(path, expected)),
        }
    }

    /// An optional string (absent, null and `""` are all `None`).
    pub(crate) fn opt_string(&mut self, key: &str) -> Result<Option<String>, PkiError> {
        let path = self.path(key);
        match self.take(key) {
            None => Ok(None),
            Some(Node::Scalar(s)) => Ok(if s.is_empty() { None } else { Some(s) }),
            Some(other) => Err(PkiError::invalid(path, format!("expected a string; found {}", describe(&other)))),
        }
    }

    /// An optional list of strings (absent and null are empty).
    pub(crate) fn string_list(&mut self, key: &str) -> Result<Vec<String>, PkiError> {
        let path = self.path(key);
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Node::Seq(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Node::Scalar(s) => Ok(s),
                    other => Err(PkiError::invalid(
                        format!("{path}[{i}]"),
                        format!("expected a string; found {}", describe(&other)),
                    )),
                })
                .collect(),
            Some(other) => {
                Err(PkiError::invalid(path, format!("expected a list of strings; found {}", describe(&other))))
            }
        }
    }
}

// ------------------------------------------------------------------- writing

/// Appends `indent` levels of go-yaml's 4-space indentation.
pub(crate) fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("    ");
    }
}

/// Appends `key: value\n` at `level`.
pub(crate) fn write_field(out: &mut String, level: usize, key: &str, value: &str) {
    indent(out, level);
    out.push_str(&scalar(key));
    out.push_str(": ");
    out.push_str(&scalar(value));
    out.push('\n');
}

/// Appends `key:\n` at `level` (a nested mapping follows).
pub(crate) fn write_key(out: &mut String, level: usize, key: &str) {
    indent(out, level);
    out.push_str(&scalar(key));
    out.push_str(":\n");
}

/// Appends a list the way go-yaml v3 does: `key: []` when empty, otherwise
/// the items one level deeper than the key (`- ` is not counted as
/// indentation).
pub(crate) fn write_list(out: &mut String, level: usize, key: &str, items: &[String]) {
    indent(out, level);
    out.push_str(&scalar(key));
    if items.is_empty() {
        out.push_str(": []\n");
        return;
    }
    out.push_str(":\n");
    for item in items {
        indent(out, level + 1);
        out.push_str("- ");
        out.push_str(&scalar(item));
        out.push('\n');
    }
}

/// A string as Talos 1.14's go-yaml (go.yaml.in/yaml/v4 rc.6, `yaml.Marshal`,
/// i.e. v3-compatible settings) writes it in block context:
///
/// - double-quoted when the plain form would resolve to another type
///   (`true`, `123`, `1.5`, `~`, `""`, dates);
/// - single-quoted for YAML 1.1 booleans (`yes`, `off`...), base-60 numbers
///   (`1:20`) and `<<` (go-yaml v3 double-quoted these);
/// - single-quoted when the string cannot be plain YAML (`*x`, `a: b`, `- x`,
///   leading or trailing space...);
/// - double-quoted with escapes when it holds tabs or characters go-yaml
///   does not print (control characters, anything outside the BMP);
/// - plain otherwise.
///
/// Not reproduced: go-yaml writes strings with line breaks as literal
/// blocks (`|-`); they are double-quoted here (same value, other layout).
pub(crate) fn scalar(s: &str) -> String {
    let special = s.chars().any(|c| !is_printable(c) || matches!(c, '\n' | '\u{2028}' | '\u{2029}'));
    if special || resolves_to_non_string(s) {
        return double_quoted(s);
    }
    if is_yaml11_special(s) || !plain_allowed(s) {
        return single_quoted(s);
    }
    s.to_owned()
}

/// go-yaml's idea of a printable character: LF, ASCII 0x20-0x7E, and
/// U+00A0-U+FFFD minus surrogates and the BOM. Tab, NEL and anything outside
/// the basic multilingual plane (emoji) are not, and force double quotes.
fn is_printable(c: char) -> bool {
    matches!(c, '\u{0A}' | '\u{20}'..='\u{7E}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}') && c != '\u{FEFF}'
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0B}' => out.push_str("\\v"),
            '\u{0C}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1B}' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if is_printable(c) => out.push(c),
            c if u32::from(c) <= 0xFF => out.push_str(&format!("\\x{:02X}", u32::from(c))),
            c if u32::from(c) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08X}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// go-yaml's emitter rules for a plain scalar in block context.
fn plain_allowed(s: &str) -> bool {
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if first == b' ' || bytes.last() == Some(&b' ') {
        return false;
    }
    // Whitespace (or the end) after position i.
    let blank_after = |i: usize| matches!(bytes.get(i + 1), None | Some(b' ' | b'\t' | b'\n' | b'\r'));
    match first {
        b'#' | b',' | b'[' | b']' | b'{' | b'}' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\'' | b'"' | b'%' | b'@'
        | b'`' => return false,
        b'?' | b':' | b'-' if blank_after(0) => return false,
        _ => {}
    }
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            b':' if blank_after(i) => return false,
            b'#' if bytes[i - 1] == b' ' => return false,
            _ => {}
        }
    }
    true
}

/// Strings go-yaml's representer quotes (single quotes) for YAML 1.1
/// parsers although YAML 1.2 reads them as strings.
fn is_yaml11_special(s: &str) -> bool {
    const OLD_BOOLS: &[&str] =
        &["y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO", "off", "Off", "OFF"];
    OLD_BOOLS.contains(&s) || s == "<<" || is_base60_float(s)
}

/// Whether go-yaml's resolver reads the plain scalar `s` as something other
/// than a string (null, bool, int, float, timestamp).
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", ".inf", ".Inf", ".INF",
        "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    match s.as_bytes().first() {
        // Go's ParseFloat on the text as is: no underscores.
        Some(b'.') => is_float(s),
        Some(b'0'..=b'9' | b'+' | b'-') => {
            let plain = s.replace('_', "");
            is_timestamp(s) || is_int(&plain) || is_float(&plain)
        }
        _ => false,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)` or `ParseUint(s, 0, 64)` succeeding.
fn is_int(s: &str) -> bool {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return false;
    }
    match u128::from_str_radix(body, radix) {
        Ok(v) if negative => v <= 1u128 << 63,
        Ok(v) => v <= u128::from(u64::MAX),
        Err(_) => false,
    }
}

/// go-yaml's float pattern `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
/// and a finite value (Go's `ParseFloat` rejects overflow).
fn is_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int_digits = i - int_start;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if int_digits == 0 && i == frac_start {
            return false;
        }
    } else if int_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len() && s.parse::<f64>().is_ok_and(f64::is_finite)
}

/// go-yaml's `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`.
fn is_base60_float(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    if frac.is_some_and(|f| !f.chars().all(|c| c.is_ascii_digit() || c == '_')) {
        return false;
    }
    let mut parts = main.split(':');
    let Some(head) = parts.next() else {
        return false;
    };
    if !head.starts_with(|c: char| c.is_ascii_digit()) || !head.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return false;
    }
    let mut sexagesimal = 0;
    for part in parts {
        let ok = match part.as_bytes() {
            [d] => d.is_ascii_digit(),
            [a, b] => (b'0'..=b'5').contains(a) && b.is_ascii_digit(),
            _ => false,
        };
        if !ok {
            return false;
        }
        sexagesimal += 1;
    }
    sexagesimal > 0
}

/// go-yaml's timestamp forms (`2006-1-2`, `2006-1-2T15:4:5.999999999Z07:00`,
/// lowercase `t`, or a space and no zone), parsed as Go's `time.Parse` would.
fn is_timestamp(s: &str) -> bool {
    fn number(s: &str, min_len: usize, max_len: usize) -> Option<(u32, &str)> {
        let len = s.bytes().take_while(u8::is_ascii_digit).count();
        if len < min_len || len > max_len {
            return None;
        }
        let value = s[..len].parse().ok()?;
        Some((value, &s[len..]))
    }
    let date = || -> Option<(u32, u32, u32, &str)> {
        let (year, rest) = number(s, 4, 4)?;
        let rest = rest.strip_prefix('-')?;
        let (month, rest) = number(rest, 1, 2)?;
        let rest = rest.strip_prefix('-')?;
        let (day, rest) = number(rest, 1, 2)?;
        Some((year, month, day, rest))
    };
    let Some((year, month, day, rest)) = date() else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days_in_month {
        return false;
    }
    if rest.is_empty() {
        return true;
    }
    let (with_zone, rest) = if let Some(r) = rest.strip_prefix(['T', 't']) {
        (true, r)
    } else if let Some(r) = rest.strip_prefix(' ') {
        (false, r)
    } else {
        return false;
    };
    let time = || -> Option<&str> {
        let (hour, r) = number(rest, 1, 2)?;
        let r = r.strip_prefix(':')?;
        let (minute, r) = number(r, 1, 2)?;
        let r = r.strip_prefix(':')?;
        let (second, r) = number(r, 1, 2)?;
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let r = match r.strip_prefix('.') {
            Some(frac) => {
                let n = frac.bytes().take_while(u8::is_ascii_digit).count();
                if n == 0 {
                    return None;
                }
                &frac[n..]
            }
            None => r,
        };
        Some(r)
    };
    let Some(zone) = time() else {
        return false;
    };
    if zone.is_empty() {
        return true;
    }
    if !with_zone {
        return false;
    }
    if zone == "Z" {
        return true;
    }
    let Some(offset) = zone.strip_prefix(['+', '-']) else {
        return false;
    };
    matches!(offset.as_bytes(), [h1, h2, b':', m1, m2]
        if h1.is_ascii_digit() && h2.is_ascii_digit() && m1.is_ascii_digit() && m2.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_quoted_like_go_yaml() {
        let cases = [
            // plain
            ("10.5.0.10", "10.5.0.10"),
            ("fd00::1", "fd00::1"),
            ("::1", "::1"),
            ("my-cluster", "my-cluster"),
            ("https://10.5.0.2:6443", "https://10.5.0.2:6443"),
            ("inn7ol.u4ehnti8qyls9ymo", "inn7ol.u4ehnti8qyls9ymo"),
            ("pofHbABZq7VXuObsdLdy/bHmz6hlMHZ3p8+6WKrv1ic=", "pofHbABZq7VXuObsdLdy/bHmz6hlMHZ3p8+6WKrv1ic="),
            ("a#b", "a#b"),
            ("-a", "-a"),
            ("2024-my-cluster", "2024-my-cluster"),
            ("1e999", "1e999"),
            ("0x", "0x"),
            ("089x", "089x"),
            ("café", "café"),
            // resolve to other types: double-quoted
            ("", "\"\""),
            ("true", "\"true\""),
            ("True", "\"True\""),
            ("-0", "\"-0\""),
            ("+.5", "\"+.5\""),
            ("null", "\"null\""),
            ("~", "\"~\""),
            ("123", "\"123\""),
            ("0123", "\"0123\""),
            ("089", "\"089\""),
            ("0x1F", "\"0x1F\""),
            ("1.5", "\"1.5\""),
            (".5", "\".5\""),
            ("1e5", "\"1e5\""),
            ("-1", "\"-1\""),
            ("1_000", "\"1_000\""),
            ("123456.7890123456789012", "\"123456.7890123456789012\""),
            ("1:20", "'1:20'"),
            ("._5", "._5"),
            (".5_5", ".5_5"),
            ("1_0.5", "\"1_0.5\""),
            ("2024-01-02", "\"2024-01-02\""),
            ("2024-1-2T03:04:05Z", "\"2024-1-2T03:04:05Z\""),
            (".inf", "\".inf\""),
            // YAML 1.1 leftovers: single-quoted by go.yaml.in/yaml/v4
            ("yes", "'yes'"),
            ("on", "'on'"),
            ("N", "'N'"),
            ("<<", "'<<'"),
            // strings that cannot be plain: single-quoted
            ("*x", "'*x'"),
            ("&x", "'&x'"),
            ("- x", "'- x'"),
            ("-", "'-'"),
            ("a: b", "'a: b'"),
            ("a:", "'a:'"),
            ("a #b", "'a #b'"),
            (" lead", "' lead'"),
            ("trail ", "'trail '"),
            ("it's: x", "'it''s: x'"),
            ("---x", "'---x'"),
            ("[a]", "'[a]'"),
            ("@x", "'@x'"),
            // characters single quotes cannot hold: double-quoted with escapes
            ("a\tb", "\"a\\tb\""),
            ("a\nb", "\"a\\nb\""),
            ("\u{1}", "\"\\x01\""),
            ("a\u{85}b", "\"a\\Nb\""),
            ("a\u{2028}b", "\"a\\Lb\""),
            ("nbsp\u{A0}x", "nbsp\u{A0}x"),
            ("smile\u{1F600}", "\"smile\\U0001F600\""),
        ];
        for (input, want) in cases {
            assert_eq!(scalar(input), want, "input {input:?}");
        }
    }

    #[test]
    fn lists_follow_go_yaml_v3_layout() {
        let mut out = String::new();
        write_list(&mut out, 2, "endpoints", &["10.5.0.10".to_owned(), "true".to_owned()]);
        write_list(&mut out, 2, "nodes", &[]);
        assert_eq!(out, "        endpoints:\n            - 10.5.0.10\n            - \"true\"\n        nodes: []\n");
    }

    #[test]
    fn parser_keeps_scalar_text_and_locations() {
        let root =
            parse("a: 0123\nb: '0123'\nc: yes\nd:\n  - 1.50\ne: &x 7\nf: *x\n").unwrap_or_else(|e| panic!("{e}"));
        let Node::Map(entries) = root else { panic!("not a map") };
        let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let scalar_of = |k: &str| match get(k) {
            Some(Node::Scalar(s)) => s,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(scalar_of("a"), "0123");
        assert_eq!(scalar_of("b"), "0123");
        assert_eq!(scalar_of("c"), "yes");
        assert_eq!(scalar_of("e"), "7");
        assert_eq!(scalar_of("f"), "7");
        let d = get("d").unwrap_or_else(|| panic!("no d"));
        match d {
            Node::Seq(items) => assert!(matches!(&items[0], Node::Scalar(s) if s == "1.50")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        match parse("a: [\n") {
            Err(PkiError::Yaml { line, column, message }) => {
                assert_eq!((line, column), (Some(1), Some(4)));
                assert!(message.contains("unclosed bracket"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match parse("a: 1\na: 2\n") {
            Err(PkiError::Yaml { line, message, .. }) => {
                assert_eq!(line, Some(2));
                assert!(message.contains("duplicate mapping key"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
