//! Text shared by the renderings: escaping for XML and HTML (guest output may hold any character) and the
//! formats of durations and sizes.

/// Characters that XML 1.0 forbids (C0 controls other than tab, line feed and carriage return; U+FFFE and
/// U+FFFF) or that HTML calls control characters (DEL and the C1 range): all replaced by U+FFFD.
fn is_forbidden(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{fffe}' | '\u{ffff}'
    )
}

/// Where escaped text goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Context {
    /// Element content.
    Text,
    /// A double- or single-quoted attribute value: line breaks and tabs become character references, which
    /// keeps them through XML attribute-value normalization.
    Attribute,
}

/// `s` escaped for XML 1.0 (`&apos;` for the apostrophe).
pub(super) fn xml(s: &str, context: Context) -> String {
    escape(s, context, "&apos;")
}

/// `s` escaped for HTML5 (`&#39;` for the apostrophe, which HTML4 lacks as a named reference).
pub(super) fn html(s: &str) -> String {
    escape(s, Context::Text, "&#39;")
}

/// `s` escaped for an HTML5 attribute value.
pub(super) fn html_attr(s: &str) -> String {
    escape(s, Context::Attribute, "&#39;")
}

fn escape(s: &str, context: Context, apos: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str(apos),
            '\n' if context == Context::Attribute => out.push_str("&#10;"),
            '\r' if context == Context::Attribute => out.push_str("&#13;"),
            '\t' if context == Context::Attribute => out.push_str("&#9;"),
            c if is_forbidden(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A relative artifact path as an `href`: bytes outside the URL path's unreserved set are percent-encoded,
/// so a `:` cannot make a scheme (`javascript:`), `#` and `?` stay part of the name, and a leading `/` gets
/// a `.` so that the link stays inside the report folder. Not HTML-escaped: the result has no markup
/// characters.
pub(super) fn href(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 2);
    if path.starts_with('/') {
        out.push('.');
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Milliseconds as seconds with three decimals, without unit: `12.345`. Integer arithmetic, so exact.
pub(super) fn seconds3(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Milliseconds as a short duration for people: `120 s`, `1.5 s`, `0.012 s`.
pub(super) fn seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        return format!("{} s", ms / 1000);
    }
    let s = seconds3(ms);
    format!("{} s", s.trim_end_matches('0'))
}

/// A byte count for people: `512 B`, `12.3 KiB`, `4.0 MiB`.
pub(super) fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_replaces_forbidden_characters_and_keeps_line_breaks_in_attributes() {
        let s = "a<b>&\"c'\u{1b}[31m\u{0}\u{7f}\u{85}\u{fffe}\tx\ny\rz é…";
        assert_eq!(
            xml(s, Context::Text),
            "a&lt;b&gt;&amp;&quot;c&apos;\u{fffd}[31m\u{fffd}\u{fffd}\u{fffd}\u{fffd}\tx\ny\rz é…"
        );
        assert_eq!(
            xml(s, Context::Attribute),
            "a&lt;b&gt;&amp;&quot;c&apos;\u{fffd}[31m\u{fffd}\u{fffd}\u{fffd}\u{fffd}&#9;x&#10;y&#13;z é…"
        );
        assert_eq!(html("it's <b>"), "it&#39;s &lt;b&gt;");
    }

    #[test]
    fn hrefs_stay_relative_and_plain() {
        assert_eq!(href("nodes/cp-1/serial.log"), "nodes/cp-1/serial.log");
        assert_eq!(href("javascript:alert(1)"), "javascript%3Aalert%281%29");
        assert_eq!(href("//evil.example/x"), ".//evil.example/x");
        assert_eq!(href("a b#c?.log\"<"), "a%20b%23c%3F.log%22%3C");
        assert_eq!(href("é"), "%C3%A9");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(seconds3(0), "0.000");
        assert_eq!(seconds3(12_345), "12.345");
        assert_eq!(seconds(120_000), "120 s");
        assert_eq!(seconds(1_500), "1.5 s");
        assert_eq!(seconds(12), "0.012 s");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(12_600), "12.3 KiB");
        assert_eq!(size(4 * 1024 * 1024), "4.0 MiB");
    }
}
