//! YAML output that is byte-for-byte what Talos's Go code writes.
//!
//! Talos renders machine configs with go-yaml (`go.yaml.in/yaml/v4` v4.0.0-rc.6, `yaml.Marshal`), and Image
//! Factory's schematic ID is the SHA-256 of the same `Marshal` output, so "equivalent YAML" is not enough:
//! quoting, indentation and line breaks must match exactly. This module re-implements the behaviour of
//! go-yaml's `Marshal` pipeline (representer → desolver → serializer → libyaml-derived emitter) for the
//! values a [`Node`] tree can hold, with the options `Marshal` uses: `WithV3Defaults()` (indent 4,
//! non-compact sequences, unicode output, `QuoteLegacy`) and `WithLineWidth(-1)` (never fold lines).
//!
//! Mappings are written in the order given: callers order struct fields as Go declares them and sort Go maps
//! with [`go_map_key_cmp`]. Empty mappings and sequences come out in flow style (`{}`, `[]`); everything else is
//! block style. There are no anchors, tags or comments. Each place where the code follows a particular piece of
//! go-yaml is marked with the go-yaml function it mirrors (files under `internal/libyaml/` at v4.0.0-rc.6).

use std::cmp::Ordering;
use std::fmt::Write as _;

use super::node::{Mapping, Node, Value};
use super::resolve::{StringQuoting, string_quoting};

/// `Emitter.BestIndent`: `Marshal` uses `WithV3Defaults()`, i.e. `WithIndent(4)`.
const BEST_INDENT: isize = 4;

/// `checkSimpleKey`: longer keys (in bytes) are written as complex keys (`? key` / `: value`).
const MAX_SIMPLE_KEY_BYTES: usize = 128;

/// Renders one document as go-yaml's `Marshal` would: 4-space indentation, no `---`, trailing newline.
pub fn to_string(doc: &Node) -> String {
    let mut out = String::new();
    write_document(&mut out, doc);
    out
}

/// Renders several documents the way Talos's `container.EncodeBytes` joins them: each document is marshalled on
/// its own and `---\n` goes between documents (never before the first one, never after the last).
pub fn to_string_multi(docs: &[Node]) -> String {
    let mut out = String::new();
    for doc in docs {
        // container.go encodeToBuf: `if buf.Len() > 0 { buf.WriteString("---\n") }`
        if !out.is_empty() {
            out.push_str("---\n");
        }
        write_document(&mut out, doc);
    }
    out
}

/// Appends one document to `out` (what [`to_string`] returns), so that many documents can share one buffer.
pub fn write_document(out: &mut String, doc: &Node) {
    let mut emitter = Emitter { out, column: 0, indent: -1, whitespace: true, indention: true, scratch: String::new() };
    // The first document's start is implicit (emitDocumentStart writes nothing); its end is implicit too, so
    // emitDocumentEnd only finishes the last line.
    emitter.node(doc, Parent::Root);
    emitter.write_indent();
}

/// The order go-yaml gives string keys of a Go map (`representer.go` `keyList.Less`): runs of digits compare by
/// numeric value (`a9` < `a10`), two letters compare by code point (`B` < `a`), and where a letter meets a
/// non-letter the non-letter comes first (`a_` < `aB`) unless a digit precedes them, in which case the letter
/// comes first (`1a` < `1_`).
///
/// Returns `Equal` only for equal strings. ASCII is classified exactly as Go's `unicode.IsLetter`/`IsDigit`
/// do; for other characters Rust's `is_alphabetic`/`is_numeric` stand in for Go's Unicode category tables.
/// Digit runs of 19 or more digits overflow Go's int64 and make `Less` non-transitive; Go's output for such
/// keys then depends on its random map iteration order, so no fixed order can match it every time.
pub fn go_map_key_cmp(a: &str, b: &str) -> Ordering {
    if a == b {
        Ordering::Equal
    } else if key_less(a, b) {
        Ordering::Less
    } else if key_less(b, a) {
        Ordering::Greater
    } else {
        // Not reachable for distinct strings; fall back to byte order to stay a total order.
        a.cmp(b)
    }
}

fn key_less(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        key_less_chars(a.as_bytes(), b.as_bytes(), |c: &u8| char::from(*c))
    } else {
        let ar: Vec<char> = a.chars().collect();
        let br: Vec<char> = b.chars().collect();
        key_less_chars(&ar, &br, |c: &char| *c)
    }
}

fn is_go_letter(c: char) -> bool {
    if c.is_ascii() { c.is_ascii_alphabetic() } else { c.is_alphabetic() && !c.is_numeric() }
}

fn is_go_digit(c: char) -> bool {
    if c.is_ascii() { c.is_ascii_digit() } else { c.is_numeric() && !c.is_alphabetic() }
}

/// `keyList.Less` for two strings, over their runes.
fn key_less_chars<T>(ar: &[T], br: &[T], ch: impl Fn(&T) -> char) -> bool {
    let mut digits = false;
    for (i, (ra, rb)) in ar.iter().zip(br).enumerate() {
        let (ca, cb) = (ch(ra), ch(rb));
        if ca == cb {
            digits = is_go_digit(ca);
            continue;
        }
        let al = is_go_letter(ca);
        let bl = is_go_letter(cb);
        if al && bl {
            return ca < cb;
        }
        if al || bl {
            return if digits { al } else { bl };
        }
        // Neither is a letter: compare the digit runs starting here by value (Go's int64, wrapping).
        let (mut an, mut bn) = (0i64, 0i64);
        if ca == '0' || cb == '0' {
            // A zero inside a number that already has a non-zero digit is not a leading zero.
            if ar[..i].iter().rev().map(&ch).take_while(|&c| is_go_digit(c)).any(|c| c != '0') {
                an = 1;
                bn = 1;
            }
        }
        let mut ai = i;
        for c in ar[i..].iter().map(&ch).take_while(|&c| is_go_digit(c)) {
            an = an.wrapping_mul(10).wrapping_add(i64::from(u32::from(c)) - i64::from(u32::from('0')));
            ai += 1;
        }
        let mut bi = i;
        for c in br[i..].iter().map(&ch).take_while(|&c| is_go_digit(c)) {
            bn = bn.wrapping_mul(10).wrapping_add(i64::from(u32::from(c)) - i64::from(u32::from('0')));
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ca < cb;
    }
    ar.len() < br.len()
}

/// Scalar styles the emitter can write (go-yaml's folded style never arises from `Marshal` of plain data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// The state the parent pushed before emitting a node; `increaseIndent` looks at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parent {
    /// Document content (`EMIT_DOCUMENT_END_STATE`, with the indentation still at -1).
    Root,
    /// An item of a block sequence (`EMIT_BLOCK_SEQUENCE_ITEM_STATE`): indent by 2 to skip `- `.
    SeqItem,
    /// A block mapping key or value: align to the next multiple of the indentation.
    Mapping,
}

/// What `analyzeScalar` finds out about a scalar's text (flow-context flags are not needed: flow collections
/// only ever appear empty here).
#[derive(Clone, Copy, Debug)]
struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
    /// Characters in the text (the emitter counts columns in characters).
    chars: usize,
}

/// libyaml's emitter state that matters without comments, anchors, tags or flow content.
struct Emitter<'o> {
    out: &'o mut String,
    /// Current column, in characters.
    column: usize,
    /// Current indentation; -1 before the root node.
    indent: isize,
    /// Was the last character written whitespace?
    whitespace: bool,
    /// Was the last character written indentation (spaces, `-`, `?`, `:` after an indentation)?
    indention: bool,
    /// Reused buffer for number formatting.
    scratch: String,
}

impl Emitter<'_> {
    fn node(&mut self, node: &Node, parent: Parent) {
        match &node.value {
            Value::Null => self.scalar("null", Style::Plain, parent, None, false),
            Value::Bool(b) => self.scalar(if *b { "true" } else { "false" }, Style::Plain, parent, None, false),
            Value::Int(i) => self.number(parent, |s| write!(s, "{i}")),
            Value::UInt(u) => self.number(parent, |s| write!(s, "{u}")),
            Value::Float(f) => self.number(parent, |s| {
                push_go_float(s, *f);
                Ok(())
            }),
            Value::Str(s) => self.scalar(s, requested_string_style(s), parent, None, false),
            Value::Seq(items) if items.is_empty() => self.empty_flow("[", "]"),
            Value::Seq(items) => self.sequence(items, parent),
            Value::Map(m) if m.is_empty() => self.empty_flow("{", "}"),
            Value::Map(m) => self.mapping(m, parent),
        }
    }

    /// Ints, uints and floats (`intv`, `uintv`, `floatv`): plain, tag elided by the desolver.
    fn number(&mut self, parent: Parent, format: impl FnOnce(&mut String) -> std::fmt::Result) {
        let mut text = std::mem::take(&mut self.scratch);
        text.clear();
        // Writing into a String cannot fail.
        let _ = format(&mut text);
        self.scalar(&text, Style::Plain, parent, None, false);
        self.scratch = text;
    }

    /// `emitFlowSequenceItem`/`emitFlowMappingKey` for an empty collection (`checkEmptySequence`/
    /// `checkEmptyMapping` switch empty block collections to flow style).
    fn empty_flow(&mut self, open: &str, close: &str) {
        self.write_indicator(open, true, true, false);
        self.write_indicator(close, false, false, false);
    }

    /// `emitBlockSequenceItem`.
    fn sequence(&mut self, items: &[Node], parent: Parent) {
        let saved = self.indent;
        // increaseIndentCompact(false, false, compact_seq): Marshal uses WithCompactSeqIndent(false).
        self.indent = self.increased_indent(false, parent);
        for item in items {
            self.write_indent();
            self.write_indicator("-", true, false, true);
            self.node(item, Parent::SeqItem);
        }
        self.indent = saved;
    }

    /// `emitBlockMappingKey` / `emitBlockMappingValue`.
    fn mapping(&mut self, map: &Mapping, parent: Parent) {
        let saved = self.indent;
        self.indent = self.increased_indent(false, parent);
        for (key, value) in map.iter() {
            let key = key.name.as_str();
            self.write_indent();
            let analysis = analyze(key);
            let style = requested_string_style(key);
            // checkSimpleKey: a scalar key is simple unless it spans lines or exceeds 128 bytes.
            if !analysis.multiline && key.len() <= MAX_SIMPLE_KEY_BYTES {
                self.scalar(key, style, Parent::Mapping, Some(analysis), true);
                self.write_indicator(":", false, false, false);
            } else {
                self.write_indicator("?", true, false, true);
                self.scalar(key, style, Parent::Mapping, Some(analysis), false);
                self.write_indent();
                self.write_indicator(":", true, false, true);
            }
            self.node(value, Parent::Mapping);
        }
        self.indent = saved;
    }

    /// `emitScalar`: choose the style, indent, write.
    fn scalar(&mut self, text: &str, requested: Style, parent: Parent, analysis: Option<Analysis>, simple_key: bool) {
        let analysis = analysis.unwrap_or_else(|| analyze(text));
        let style = select_style(requested, &analysis, text.is_empty(), simple_key);
        let saved = self.indent;
        self.indent = self.increased_indent(true, parent);
        match style {
            Style::Plain => self.write_plain(text, &analysis),
            Style::Single => self.write_single_quoted(text, &analysis),
            Style::Double => self.write_double_quoted(text),
            Style::Literal => self.write_literal(text),
        }
        self.indent = saved;
    }

    /// `increaseIndentCompact(flow, false, false)`: the first indentation inside a sequence item skips `- `;
    /// everything else aligns to the next multiple of the indentation.
    fn increased_indent(&self, flow: bool, parent: Parent) -> isize {
        if self.indent < 0 {
            if flow { BEST_INDENT } else { 0 }
        } else if parent == Parent::SeqItem {
            self.indent + 2
        } else {
            BEST_INDENT * ((self.indent + BEST_INDENT) / BEST_INDENT)
        }
    }

    /// `putLineBreak`.
    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
        self.indention = true;
    }

    /// `writeIndent`: start a new line unless already at a fresh indentation point, then pad with spaces.
    fn write_indent(&mut self) {
        let indent = usize::try_from(self.indent).unwrap_or(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        const SPACES: &str = "                                                                ";
        while self.column < indent {
            let pad = (indent - self.column).min(SPACES.len());
            self.out.push_str(SPACES.get(..pad).unwrap_or_default());
            self.column += pad;
        }
        self.whitespace = true;
    }

    /// `writeIndicator` (indicators are ASCII).
    fn write_indicator(&mut self, indicator: &str, need_whitespace: bool, is_whitespace: bool, is_indention: bool) {
        if need_whitespace && !self.whitespace {
            self.out.push(' ');
            self.column += 1;
        }
        self.out.push_str(indicator);
        self.column += indicator.len();
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    /// `writeLineBreak`: `\n` becomes a line break; the other break characters (which only a quoted or literal
    /// scalar can hold) are copied and merely reset the column.
    fn write_line_break(&mut self, c: char) {
        if c == '\n' {
            self.put_break();
        } else {
            self.out.push(c);
            self.column = 0;
            self.indention = true;
        }
    }

    /// `writePlainScalar`. Plain style is only chosen for text without line breaks, and with an unlimited
    /// line width nothing is ever folded, so the text goes out as it is.
    fn write_plain(&mut self, text: &str, analysis: &Analysis) {
        if !text.is_empty() && !self.whitespace {
            self.out.push(' ');
            self.column += 1;
        }
        self.out.push_str(text);
        self.column += analysis.chars;
        if !text.is_empty() {
            self.whitespace = false;
        }
        self.indention = false;
    }

    /// `writeSingleQuotedScalar`: `'` is doubled; line breaks (only LS/PS can get here) are copied, and the
    /// next line is indented.
    fn write_single_quoted(&mut self, text: &str, analysis: &Analysis) {
        self.write_indicator("'", true, false, false);
        if analysis.multiline {
            let mut breaks = false;
            for c in text.chars() {
                if c == ' ' {
                    self.out.push(' ');
                    self.column += 1;
                } else if is_line_break(c) {
                    if !breaks && c == '\n' {
                        self.put_break();
                    }
                    self.write_line_break(c);
                    breaks = true;
                } else {
                    if breaks {
                        self.write_indent();
                    }
                    if c == '\'' {
                        self.out.push('\'');
                        self.column += 1;
                    }
                    self.out.push(c);
                    self.column += 1;
                    self.indention = false;
                    breaks = false;
                }
            }
        } else {
            let mut rest = text;
            while let Some(at) = rest.find('\'') {
                let (head, tail) = rest.split_at(at + 1);
                self.out.push_str(head);
                self.out.push('\'');
                rest = tail;
            }
            self.out.push_str(rest);
            self.column += analysis.chars + text.matches('\'').count();
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    /// `writeDoubleQuotedScalar`: escape everything that is not printable, line breaks, `"` and `\`. A text
    /// that starts with a byte order mark has every character escaped: go-yaml's `isBOM(value, i)` ignores `i`
    /// and looks at the start of the value.
    fn write_double_quoted(&mut self, text: &str) {
        self.write_indicator("\"", true, false, false);
        let escape_all = text.starts_with('\u{FEFF}');
        let mut run_start = 0;
        for (i, c) in text.char_indices() {
            if escape_all || !is_printable(c) || is_line_break(c) || c == '"' || c == '\\' {
                if let Some(run) = text.get(run_start..i) {
                    self.out.push_str(run);
                }
                self.push_escape(c);
                run_start = i + c.len_utf8();
            } else {
                self.column += 1;
            }
        }
        if let Some(run) = text.get(run_start..) {
            self.out.push_str(run);
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn push_escape(&mut self, c: char) {
        let short = match c {
            '\0' => Some('0'),
            '\u{07}' => Some('a'),
            '\u{08}' => Some('b'),
            '\t' => Some('t'),
            '\n' => Some('n'),
            '\u{0B}' => Some('v'),
            '\u{0C}' => Some('f'),
            '\r' => Some('r'),
            '\u{1B}' => Some('e'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            '\u{85}' => Some('N'),
            '\u{A0}' => Some('_'),
            '\u{2028}' => Some('L'),
            '\u{2029}' => Some('P'),
            _ => None,
        };
        self.out.push('\\');
        if let Some(e) = short {
            self.out.push(e);
            self.column += 2;
            return;
        }
        let v = u32::from(c);
        let (prefix, digits) = if v <= 0xFF {
            ('x', 2)
        } else if v <= 0xFFFF {
            ('u', 4)
        } else {
            ('U', 8)
        };
        self.out.push(prefix);
        for k in (0..digits).rev() {
            let nibble = (v >> (k * 4)) & 0xF;
            self.out.push(char::from_digit(nibble, 16).map_or('0', |d| d.to_ascii_uppercase()));
        }
        self.column += 2 + digits;
    }

    /// `writeLiteralScalar` with `writeBlockScalarHints`: `|`, an indentation indicator when the text starts with
    /// a space, the chomping indicator (`-` without a final line break, `+` with two or more or when the text is
    /// only a break), then the lines at the scalar's indentation.
    fn write_literal(&mut self, text: &str) {
        self.write_indicator("|", true, false, false);
        if text.starts_with(' ') {
            // '0' + BestIndent
            self.write_indicator("4", false, false, false);
        }
        let mut tail = text.chars().rev();
        let chomp = match tail.next() {
            None => Some("-"),
            Some(last) if !is_line_break(last) => Some("-"),
            Some(_) => match tail.next() {
                None => Some("+"),
                Some(prev) if is_line_break(prev) => Some("+"),
                Some(_) => None,
            },
        };
        if let Some(chomp) = chomp {
            self.write_indicator(chomp, false, false, false);
        }
        // processLineCommentLinebreak(true): no comment, so just the line break.
        self.put_break();
        self.whitespace = true;
        let mut breaks = true;
        let mut rest = text;
        while !rest.is_empty() {
            let line_end = rest.find(is_line_break).unwrap_or(rest.len());
            let (line, after) = rest.split_at(line_end);
            if !line.is_empty() {
                if breaks {
                    self.write_indent();
                }
                self.out.push_str(line);
                self.column += line.chars().count();
                self.indention = false;
                breaks = false;
            }
            let mut after_chars = after.chars();
            if let Some(brk) = after_chars.next() {
                self.write_line_break(brk);
                breaks = true;
            }
            rest = after_chars.as_str();
        }
    }
}

/// The style the representer and desolver ask for a Go string (`representer.go` `stringv`, `desolver.go`
/// `desolveScalar`, `serializer.go` `node`).
fn requested_string_style(s: &str) -> Style {
    if s.contains('\n') {
        if should_use_literal_style(s) { Style::Literal } else { Style::Double }
    } else {
        match string_quoting(s) {
            StringQuoting::None => Style::Plain,
            StringQuoting::Single => Style::Single,
            StringQuoting::Double => Style::Double,
        }
    }
}

/// `node.go` `shouldUseLiteralStyle`: at least two bytes and something other than white space.
fn should_use_literal_style(s: &str) -> bool {
    s.len() >= 2 && s.chars().any(|c| !c.is_whitespace())
}

/// `selectScalarStyle` at flow level 0, with implicit tags and `QuoteLegacy` (the emitter's required quote style
/// is then single).
fn select_style(requested: Style, a: &Analysis, empty: bool, simple_key: bool) -> Style {
    let mut style = requested;
    if simple_key && a.multiline {
        style = Style::Double;
    }
    if style == Style::Plain && (!a.block_plain_allowed || (empty && simple_key)) {
        style = Style::Single;
    }
    if style == Style::Single && !a.single_quoted_allowed {
        style = Style::Double;
    }
    if style == Style::Literal && (!a.block_allowed || simple_key) {
        style = Style::Double;
    }
    style
}

/// `analyzeScalar`, restricted to what block context needs.
fn analyze(value: &str) -> Analysis {
    if value.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
            chars: 0,
        };
    }
    let bytes = value.as_bytes();
    let mut block_indicators = value.starts_with("---") || value.starts_with("...");
    let mut line_breaks = false;
    let mut special_characters = false;
    let mut tab_characters = false;
    let mut leading_space = false;
    let mut leading_break = false;
    let mut trailing_space = false;
    let mut trailing_break = false;
    let mut break_space = false;
    let mut space_break = false;
    let mut previous_space = false;
    let mut previous_break = false;
    let mut preceded_by_whitespace = true;
    let mut chars = 0;

    let mut i = 0;
    while let Some(c) = value.get(i..).and_then(|rest| rest.chars().next()) {
        if i > 0 && is_ordinary(bytes.get(i).copied().unwrap_or(0)) {
            // Fast path over printable ASCII that none of the checks below care about after the first character:
            // each such byte only clears the "previous space/break" and "preceded by whitespace" state.
            let run = bytes.get(i..).unwrap_or_default().iter().take_while(|&&b| is_ordinary(b)).count();
            i += run;
            chars += run;
            previous_space = false;
            previous_break = false;
            preceded_by_whitespace = false;
            continue;
        }
        chars += 1;
        let next = i + c.len_utf8();
        let followed_by_whitespace = bytes.get(next).is_none_or(|&b| b == b' ' || b == b'\t');
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"' | '%' | '@' | '`' => {
                    block_indicators = true;
                }
                '?' | ':' | '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }

        if c == '\t' {
            tab_characters = true;
        } else if !is_printable(c) {
            special_characters = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if next == value.len() {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if is_line_break(c) {
            line_breaks = true;
            if i == 0 {
                leading_break = true;
            }
            if next == value.len() {
                trailing_break = true;
            }
            if previous_space {
                space_break = true;
            }
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = is_blank_or_zero(c);
        i = next;
    }

    let no_plain = leading_space
        || leading_break
        || trailing_space
        || trailing_break
        || break_space
        || space_break
        || tab_characters
        || special_characters
        || line_breaks
        || block_indicators;
    Analysis {
        multiline: line_breaks,
        block_plain_allowed: !no_plain,
        single_quoted_allowed: !(break_space || space_break || tab_characters || special_characters),
        block_allowed: !(trailing_space || space_break || special_characters),
        chars,
    }
}

/// Printable ASCII that `analyzeScalar` treats like a letter anywhere but in first position: everything from
/// `!` to `~` except `:` and `#` (the flow-only indicators do not matter in block context).
fn is_ordinary(b: u8) -> bool {
    (b'!'..=b'~').contains(&b) && b != b':' && b != b'#'
}

/// `isPrintable` (with unicode output on): LF, printable ASCII, U+00A0..U+D7FF, U+E000..U+FFFD except the BOM.
/// Everything beyond the Basic Multilingual Plane (emoji included) counts as not printable and is escaped.
fn is_printable(c: char) -> bool {
    matches!(c, '\n' | ' '..='~' | '\u{A0}'..='\u{D7FF}') || (('\u{E000}'..='\u{FFFD}').contains(&c) && c != '\u{FEFF}')
}

/// `isLineBreak`: CR, LF, NEL, LS, PS.
fn is_line_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// `isBlankOrZero`: space, tab, a line break or NUL.
fn is_blank_or_zero(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\0') || is_line_break(c)
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)` with go-yaml's `.inf`/`-.inf`/`.nan` (`representer.go` `floatv`):
/// the shortest digits that read back exactly, in exponent form when the exponent is below -4 or at least 6
/// (`1e+06`, `1.5e-07`, two exponent digits at least).
fn push_go_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str(".nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { ".inf" } else { "-.inf" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    if f == 0.0 {
        out.push('0');
        return;
    }
    let (digits, exp) = go_shortest_digits(f.abs());
    let nd = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    let digit = |j: i64| usize::try_from(j).ok().and_then(|j| digits.get(j)).map_or('0', |&d| char::from(d));
    if !(-4..6).contains(&exp) {
        out.push(digit(0));
        if nd > 1 {
            out.push('.');
            (1..nd).for_each(|j| out.push(digit(j)));
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let abs = exp.unsigned_abs();
        if abs < 10 {
            out.push('0');
        }
        let _ = write!(out, "{abs}");
    } else {
        let dp = exp + 1;
        if dp > 0 {
            (0..dp).for_each(|j| out.push(digit(j)));
        } else {
            out.push('0');
        }
        let frac = (nd - dp).max(0);
        if frac > 0 {
            out.push('.');
            (0..frac).for_each(|k| out.push(digit(dp + k)));
        }
    }
}

/// Splits Rust's `{:e}` text ("d[.ddd]e[-]x") into its digits and decimal exponent.
fn sci_digits(sci: &str) -> (Vec<u8>, i64) {
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let digits = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    (digits, exp.parse().unwrap_or(0))
}

/// The shortest decimal digits that read back as `x` (finite, positive) and the exponent of the first digit,
/// as Go's `ryuFtoaShortest` picks them. Rust's `{:e}` finds the same shortest length, but when the value lies
/// exactly halfway between two shortest candidates Rust takes the upper one while Go rounds half to even
/// (`0.16005325317382812`, not `...813`), so exact ties are re-decided here.
fn go_shortest_digits(x: f64) -> (Vec<u8>, i64) {
    let (mut digits, exp) = sci_digits(&format!("{x:e}"));
    let Some(&last) = digits.last() else {
        return (digits, exp);
    };
    if (last - b'0').is_multiple_of(2) {
        // Any tie Rust resolved to an even digit is resolved the same way by Go.
        return (digits, exp);
    }
    // Every f64 has a finite decimal expansion of at most 767 significant digits: this prints it exactly.
    let (mut exact, exact_exp) = sci_digits(&format!("{x:.800e}"));
    while exact.len() > 1 && exact.last() == Some(&b'0') {
        exact.pop();
    }
    let nd = digits.len();
    if exact_exp != exp || exact.len() != nd + 1 || exact.last() != Some(&b'5') {
        return (digits, exp);
    }
    // A tie between `floor` and `floor + 1` in the last place: Go keeps the even one.
    let mut even = exact;
    even.pop();
    match even.last_mut() {
        Some(d) if (*d - b'0') % 2 == 1 && *d < b'9' => *d += 1,
        Some(d) if (*d - b'0').is_multiple_of(2) => {}
        _ => return (digits, exp),
    }
    let shift = exp - i64::try_from(nd).unwrap_or(0) + 1;
    let candidate = format!("{}e{shift}", String::from_utf8_lossy(&even));
    if candidate.parse::<f64>() == Ok(x) {
        digits = even;
    }
    (digits, exp)
}

#[cfg(test)]
mod tests;
