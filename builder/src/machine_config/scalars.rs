//! Go's behaviour for the scalar types with custom marshalers, and the small Go library routines
//! (`time.ParseDuration`, `Duration.String`, `url.Parse`/`URL.String`, go-yaml's map key order) that decoding,
//! printing and merging them needs.
//!
//! The shape table only names these types; how each one decodes, prints, counts as zero and merges is Go code.
//! Keeping those facts here, one entry per type, lets the normalizer and the merger treat every scalar alike and
//! lets a test prove that no scalar in the table lacks an entry.

use crate::yaml::Value;

/// How a custom scalar is printed after decoding (only normalizations we can reproduce exactly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Norm {
    /// Keep the value as written (texts become strings: go-yaml prints a TextMarshaler's output as `!!str`).
    Text,
    /// Keep the YAML value as it is (the type marshals to a non-string node we do not reformat).
    Raw,
    /// `time.Duration`: parsed with `time.ParseDuration` and printed with `Duration.String()`.
    Duration,
    /// An enum: matched case-insensitively against the table's names and printed with the canonical name.
    Enum,
    /// `strings.TrimSpace` of the text.
    TrimSpace,
    /// `network.PortRange`: `"N-N"` prints as the integer N.
    PortRange,
    /// `url.Parse` + `URL.String()`: only the scheme is lowercased.
    Url,
}

/// How a custom scalar merges when it has no `merge=` rule on its field (Go's default rules by kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScalarMerge {
    /// Integer/string kinds: replaced unless the right side is zero (or the merge goes through a pointer).
    UnlessZero,
    /// `[]byte` kinds: replaced whenever the right side is set.
    UnlessNil,
    /// `struct{*url.URL}`: `url.URL` merged field by field.
    UrlComponents,
    /// `block.Size`: its two pointer halves (`*ByteSize`, `*PercentageSize`) merged separately.
    SizeHalves,
}

/// Everything the engine knows about one custom scalar type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScalarSpec {
    pub norm: Norm,
    pub merge: ScalarMerge,
    /// What go-yaml prints for the zero value (for non-omitempty fields the input left out).
    pub zero: ZeroForm,
    /// Whether `$patch: delete` list-item matching can compare this field (the type is a `fmt.Stringer`).
    pub stringer: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ZeroForm {
    Str(&'static str),
    Int,
    Null,
}

const fn spec(norm: Norm, merge: ScalarMerge, zero: ZeroForm, stringer: bool) -> ScalarSpec {
    ScalarSpec { norm, merge, zero, stringer }
}

/// The entry for a `scalar` type of the table; `None` for a type this file does not know (a test keeps the two
/// in step).
pub(crate) fn scalar_spec(name: &str) -> Option<ScalarSpec> {
    use Norm::*;
    use ScalarMerge::*;
    Some(match name {
        "time.Duration" => spec(Duration, UnlessZero, ZeroForm::Str("0s"), true),
        "block.ByteSize" | "cel.Expression" | "meta.Addr" | "meta.AddrPort" | "meta.Prefix" | "netip.Addr"
        | "netip.AddrPort" | "netip.Prefix" => spec(Text, UnlessZero, ZeroForm::Str(""), true),
        "block.Size" => spec(Text, SizeHalves, ZeroForm::Str(""), false),
        "meta.URL" | "v1alpha1.Endpoint" => spec(Url, UrlComponents, ZeroForm::Str(""), true),
        "nethelpers.HardwareAddr" => spec(Text, UnlessNil, ZeroForm::Str(""), true),
        "v1alpha1.Base64Bytes" => spec(Text, UnlessNil, ZeroForm::Str(""), false),
        "network.PortRange" => spec(PortRange, UnlessZero, ZeroForm::Int, true),
        "runtime.EtcFileMode" | "v1alpha1.FileMode" | "v1alpha1.DiskSize" => spec(Raw, UnlessZero, ZeroForm::Int, true),
        "v1alpha1.InstallDiskSizeMatcher" => spec(TrimSpace, UnlessZero, ZeroForm::Null, false),
        // FailOverMAC also accepts its number and RoutingTable prints unnamed numbers: both are kept as written.
        "nethelpers.FailOverMAC" | "nethelpers.RoutingTable" => {
            spec(Text, UnlessZero, ZeroForm::Str(enum_zero(name)), true)
        }
        n if is_enum(n) => spec(Enum, UnlessZero, ZeroForm::Str(enum_zero(n)), true),
        _ => return None,
    })
}

fn is_enum(name: &str) -> bool {
    matches!(
        name,
        "block.EncryptionProviderType"
            | "block.FilesystemType"
            | "block.VolumeType"
            | "nethelpers.ADLACPActive"
            | "nethelpers.ADSelect"
            | "nethelpers.ARPAllTargets"
            | "nethelpers.ARPValidate"
            | "nethelpers.AutoHostnameKind"
            | "nethelpers.BondMode"
            | "nethelpers.BondXmitHashPolicy"
            | "nethelpers.ClientIdentifier"
            | "nethelpers.DNSProtocol"
            | "nethelpers.DefaultAction"
            | "nethelpers.LACPRate"
            | "nethelpers.PrimaryReselect"
            | "nethelpers.Protocol"
            | "nethelpers.RoutingRuleAction"
            | "nethelpers.VLANProtocol"
            | "nethelpers.WOLMode"
            | "storage.LVMLogicalVolumeType"
            | "storage.MDLevel"
            | "storage.MDMetadata"
    )
}

/// `String()` of the enum's zero value (enumer prints `Type(0)` when 0 has no name).
fn enum_zero(name: &str) -> &'static str {
    match name {
        "block.EncryptionProviderType"
        | "block.FilesystemType"
        | "nethelpers.ARPValidate"
        | "nethelpers.ClientIdentifier"
        | "nethelpers.FailOverMAC" => "none",
        "block.VolumeType" => "partition",
        "nethelpers.ADLACPActive" | "nethelpers.AutoHostnameKind" => "off",
        "nethelpers.ADSelect" => "stable",
        "nethelpers.ARPAllTargets" => "any",
        "nethelpers.BondMode" => "balance-rr",
        "nethelpers.BondXmitHashPolicy" => "layer2",
        "nethelpers.DNSProtocol" => "Do53",
        "nethelpers.DefaultAction" => "accept",
        "nethelpers.LACPRate" => "slow",
        "nethelpers.PrimaryReselect" => "always",
        "nethelpers.Protocol" => "Protocol(0)",
        "nethelpers.RoutingRuleAction" | "nethelpers.RoutingTable" => "unspec",
        "nethelpers.VLANProtocol" => "VLANProtocol(0)",
        "nethelpers.WOLMode" => "WOLMode(0)",
        "storage.LVMLogicalVolumeType" => "linear",
        "storage.MDLevel" => "raid1",
        "storage.MDMetadata" => "1.0",
        _ => "",
    }
}

/// enumer's `XString`: the exact name, else the lower-cased input against the lower-cased names.
pub(crate) fn canonical_enum<'a>(values: &'a [String], text: &str) -> Option<&'a str> {
    values
        .iter()
        .find(|v| *v == text)
        .or_else(|| values.iter().find(|v| v.to_lowercase() == text.to_lowercase()))
        .map(String::as_str)
}

// ---- time.Duration ----------------------------------------------------------------------------------------

const NS_PER: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go's `time.ParseDuration`, in nanoseconds; the error is Go's message.
pub(crate) fn parse_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {orig:?}");
    const LIMIT: u64 = 1 << 63;
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.chars().next()
        && (c == '-' || c == '+')
    {
        neg = c == '-';
        s = &s[1..];
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut d: u64 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // leadingInt
        let mut i = 0;
        let mut v: u64 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            if v > LIMIT / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(b[i] - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
            i += 1;
        }
        let pre = i > 0;
        let mut post = false;
        let (mut f, mut scale) = (0u64, 1f64);
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            let mut overflow = false;
            while i < b.len() && b[i].is_ascii_digit() {
                if !overflow {
                    if f > (LIMIT - 1) / 10 {
                        overflow = true;
                    } else {
                        let y = f * 10 + u64::from(b[i] - b'0');
                        if y > LIMIT {
                            overflow = true;
                        } else {
                            f = y;
                            scale *= 10.0;
                        }
                    }
                }
                i += 1;
            }
            post = i > start;
        }
        if !pre && !post {
            return Err(invalid());
        }
        let rest = &s[i..];
        let unit_len = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let u = &rest[..unit_len];
        let Some(&(_, unit)) = NS_PER.iter().find(|(n, _)| *n == u) else {
            return Err(format!("time: unknown unit {u:?} in duration {orig:?}"));
        };
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            v = v.checked_add((f as f64 * (unit as f64 / scale)) as u64).ok_or_else(invalid)?;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        d = d.checked_add(v).ok_or_else(invalid)?;
        if d > LIMIT {
            return Err(invalid());
        }
        s = &rest[unit_len..];
    }
    if neg {
        return Ok((d as i128).wrapping_neg() as i64);
    }
    if d > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(d as i64)
}

/// Go's `Duration.String()`.
pub(crate) fn format_duration(d: i64) -> String {
    let neg = d < 0;
    let mut u = d.unsigned_abs();
    // Built right to left, as Go does.
    let mut out: Vec<char> = Vec::new();
    let frac = |out: &mut Vec<char>, v: u64, prec: usize| -> u64 {
        let mut v = v;
        let mut print = false;
        for _ in 0..prec {
            let digit = v % 10;
            print = print || digit != 0;
            if print {
                out.push(char::from(b'0' + digit as u8));
            }
            v /= 10;
        }
        if print {
            out.push('.');
        }
        v
    };
    let int = |out: &mut Vec<char>, v: u64| {
        if v == 0 {
            out.push('0');
        } else {
            let mut v = v;
            while v > 0 {
                out.push(char::from(b'0' + (v % 10) as u8));
                v /= 10;
            }
        }
    };
    if u < 1_000_000_000 {
        out.push('s');
        let prec = match u {
            0 => {
                return "0s".to_owned();
            }
            x if x < 1_000 => {
                out.push('n');
                0
            }
            x if x < 1_000_000 => {
                out.push('\u{b5}');
                3
            }
            _ => {
                out.push('m');
                6
            }
        };
        u = frac(&mut out, u, prec);
        int(&mut out, u);
    } else {
        out.push('s');
        u = frac(&mut out, u, 9);
        int(&mut out, u % 60);
        u /= 60;
        if u > 0 {
            out.push('m');
            int(&mut out, u % 60);
            u /= 60;
            if u > 0 {
                out.push('h');
                int(&mut out, u);
            }
        }
    }
    if neg {
        out.push('-');
    }
    out.iter().rev().collect()
}

// ---- net/url ------------------------------------------------------------------------------------------------

/// The fields of Go's `url.URL` that `url.Parse` fills, kept in their escaped (as written) form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GoUrl {
    pub scheme: String,
    pub opaque: String,
    pub user: Option<String>,
    pub host: String,
    pub path: String,
    pub omit_host: bool,
    pub force_query: bool,
    pub raw_query: String,
    pub fragment: String,
}

impl GoUrl {
    /// `url.Parse` without its validation; `None` where Go would reject the text (a missing scheme before `:`).
    pub fn parse(raw: &str) -> Option<GoUrl> {
        let mut u = GoUrl::default();
        let (rest, frag) = match raw.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (raw, None),
        };
        if let Some(f) = frag {
            u.fragment = f.to_owned();
        }
        if rest == "*" {
            u.path = "*".into();
            return Some(u);
        }
        let mut rest = rest;
        if let Some(i) = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')) {
            let first = rest.as_bytes()[0];
            if rest.as_bytes()[i] == b':' {
                if i == 0 {
                    return None;
                }
                if first.is_ascii_alphabetic() {
                    u.scheme = rest[..i].to_ascii_lowercase();
                    rest = &rest[i + 1..];
                }
            }
        }
        if rest.ends_with('?') && rest.matches('?').count() == 1 {
            u.force_query = true;
            rest = &rest[..rest.len() - 1];
        } else if let Some((r, q)) = rest.split_once('?') {
            u.raw_query = q.to_owned();
            rest = r;
        }
        if !rest.starts_with('/') {
            if !u.scheme.is_empty() {
                u.opaque = rest.to_owned();
                return Some(u);
            }
        } else if rest.starts_with("//") && (!u.scheme.is_empty() || !rest.starts_with("///")) {
            let authority = &rest[2..];
            let (auth, path) = match authority.find('/') {
                Some(i) => (&authority[..i], &authority[i..]),
                None => (authority, ""),
            };
            match auth.rfind('@') {
                Some(i) => {
                    u.user = Some(auth[..i].to_owned());
                    u.host = auth[i + 1..].to_owned();
                }
                None => u.host = auth.to_owned(),
            }
            u.path = path.to_owned();
            return Some(u);
        } else if !u.scheme.is_empty() {
            u.omit_host = true;
        }
        u.path = rest.to_owned();
        Some(u)
    }

    /// Go's `URL.String()` for texts that need no escaping.
    pub fn to_go_string(&self) -> String {
        let mut buf = String::new();
        if !self.opaque.is_empty() {
            buf.push_str(&self.scheme);
            buf.push(':');
            buf.push_str(&self.opaque);
        } else {
            if !self.scheme.is_empty() {
                buf.push_str(&self.scheme);
                buf.push(':');
            }
            let no_authority = self.host.is_empty() && self.user.is_none();
            if !no_authority || !self.scheme.is_empty() && !self.omit_host {
                if !self.host.is_empty() || !self.path.is_empty() || self.user.is_some() {
                    buf.push_str("//");
                }
                if let Some(user) = &self.user {
                    buf.push_str(user);
                    buf.push('@');
                }
                buf.push_str(&self.host);
            }
            if !self.path.is_empty() && !self.path.starts_with('/') && !self.host.is_empty() {
                buf.push('/');
            }
            if buf.is_empty() {
                // RFC 3986 §4.2: a first path segment holding a colon must not look like a scheme.
                let first = self.path.split('/').next().unwrap_or("");
                if first.contains(':') {
                    buf.push_str("./");
                }
            }
            buf.push_str(&self.path);
        }
        if self.force_query || !self.raw_query.is_empty() {
            buf.push('?');
            buf.push_str(&self.raw_query);
        }
        if !self.fragment.is_empty() {
            buf.push('#');
            buf.push_str(&self.fragment);
        }
        buf
    }

    /// `merge.Merge` of two `url.URL` values: string fields replaced when the right one is set, bools always
    /// assigned, `User` (a pointer to a struct of unexported fields) set when left is nil and an error when both
    /// are set.
    pub fn merge_from(&mut self, right: &GoUrl) -> Result<(), String> {
        let set = |l: &mut String, r: &String| {
            if !r.is_empty() {
                l.clone_from(r);
            }
        };
        set(&mut self.scheme, &right.scheme);
        set(&mut self.opaque, &right.opaque);
        match (&self.user, &right.user) {
            (_, None) => {}
            (None, Some(r)) => self.user = Some(r.clone()),
            (Some(_), Some(_)) => {
                return Err("merge field url.URL.User: merge field url.Userinfo.username: merge not possible, left is not settable".into());
            }
        }
        set(&mut self.host, &right.host);
        set(&mut self.path, &right.path);
        self.omit_host = right.omit_host;
        self.force_query = right.force_query;
        set(&mut self.raw_query, &right.raw_query);
        set(&mut self.fragment, &right.fragment);
        Ok(())
    }
}

// ---- scalar texts -------------------------------------------------------------------------------------------

/// The source text a scalar was parsed from, so a number or boolean decoded into a string keeps the exact text
/// go-yaml would give it (`1.10` stays `1.10`).
#[derive(Clone, Debug)]
pub(crate) struct SourceText<'a> {
    lines: Vec<&'a str>,
}

impl<'a> SourceText<'a> {
    pub fn new(text: &'a str) -> Self {
        SourceText { lines: text.lines().collect() }
    }

    /// The plain scalar token at a position (tags and anchors skipped), if the node there is a plain scalar.
    pub fn plain_token(&self, line: u32, col: u32) -> Option<&'a str> {
        let l = self.lines.get((line as usize).checked_sub(1)?)?;
        let start = l.char_indices().nth((col as usize).checked_sub(1)?).map(|(i, _)| i)?;
        let mut s = &l[start..];
        loop {
            if s.starts_with('!') || s.starts_with('&') {
                let end = s.find(char::is_whitespace)?;
                s = s[end..].trim_start();
            } else {
                break;
            }
        }
        let first = s.chars().next()?;
        if matches!(first, '\'' | '"' | '|' | '>' | '*' | '[' | '{') {
            return None;
        }
        let end = s.find(|c: char| c.is_whitespace() || matches!(c, ',' | ']' | '}')).unwrap_or(s.len());
        Some(&s[..end])
    }

    /// The text go-yaml keeps for a non-string scalar (`n.Value`), when it can be recovered exactly.
    pub fn scalar_text(&self, value: &Value, line: u32, col: u32) -> Option<String> {
        let tok = self.plain_token(line, col)?;
        let same = match (crate::yaml::resolve::resolve_plain(tok), value) {
            (crate::yaml::resolve::Resolved::Value(Value::Float(a)), Value::Float(b)) => {
                a == *b || (a.is_nan() && b.is_nan())
            }
            (crate::yaml::resolve::Resolved::Value(v), w) => v == *w,
            _ => false,
        };
        same.then(|| tok.to_owned())
    }
}

/// A scalar's text when the source is not available: what `strconv` would print for the value.
pub(crate) fn fallback_text(value: &Value) -> Option<String> {
    Some(match value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Float(f) => {
            if f.is_nan() {
                ".nan".into()
            } else if f.is_infinite() {
                if *f > 0.0 { ".inf".into() } else { "-.inf".into() }
            } else {
                format!("{f}")
            }
        }
        Value::Null | Value::Seq(_) | Value::Map(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_scalar_has_a_behaviour() {
        use crate::machine_config::shapes::{Shapes, TypeDef};
        for t in Shapes::get().types() {
            if let TypeDef::Scalar { name, values } = t {
                let spec = scalar_spec(name).unwrap_or_else(|| panic!("{name} has no ScalarSpec"));
                if spec.norm == Norm::Enum {
                    let values = values.as_ref().unwrap_or_else(|| panic!("{name} lists no enum values"));
                    if let ZeroForm::Str(z) = spec.zero
                        && !z.ends_with("(0)")
                    {
                        assert!(values.iter().any(|v| v == z), "{name}: zero {z:?} is not one of its names");
                    }
                }
            }
        }
    }

    #[test]
    fn durations_parse_and_print_like_go() {
        for (input, ns, printed) in [
            ("168h", 168 * 3_600_000_000_000i64, "168h0m0s"),
            ("0", 0, "0s"),
            ("1.5s", 1_500_000_000, "1.5s"),
            ("90m", 5_400_000_000_000, "1h30m0s"),
            ("1h2m3s4ms", 3_723_004_000_000, "1h2m3.004s"),
            ("-2us", -2_000, "-2µs"),
            ("300ms", 300_000_000, "300ms"),
            ("1ns", 1, "1ns"),
            (".5m", 30_000_000_000, "30s"),
        ] {
            assert_eq!(parse_duration(input), Ok(ns), "{input}");
            assert_eq!(format_duration(ns), printed, "{input}");
        }
        assert_eq!(parse_duration("5"), Err("time: missing unit in duration \"5\"".into()));
        assert_eq!(parse_duration("1x"), Err("time: unknown unit \"x\" in duration \"1x\"".into()));
        assert_eq!(parse_duration(""), Err("time: invalid duration \"\"".into()));
        assert_eq!(parse_duration("h"), Err("time: invalid duration \"h\"".into()));
    }

    #[test]
    fn map_keys_sort_naturally() {
        let mut keys = vec!["enforce", "audit-version", "audit", "node.kubernetes.io/x", "node-role.kubernetes.io/y"];
        keys.sort_by(|a, b| crate::yaml::emit::go_map_key_cmp(a, b));
        assert_eq!(keys, ["audit", "audit-version", "enforce", "node-role.kubernetes.io/y", "node.kubernetes.io/x"]);
        let mut keys = vec!["a10", "a9", "a1b", "a1", "b", "A", "a_", "ab"];
        keys.sort_by(|a, b| crate::yaml::emit::go_map_key_cmp(a, b));
        assert_eq!(keys, ["A", "a_", "a1", "a1b", "a9", "a10", "ab", "b"]);
    }

    #[test]
    fn urls_merge_field_by_field() {
        let mut l = GoUrl::parse("https://discovery.talos.dev/").unwrap();
        l.merge_from(&GoUrl::parse("https://my.disco:3000").unwrap()).unwrap();
        assert_eq!(l.to_go_string(), "https://my.disco:3000/");
        assert_eq!(GoUrl::parse("HTTPS://Base:6443").unwrap().to_go_string(), "https://Base:6443");
        assert_eq!(GoUrl::parse("https://u@h/p?q#f").unwrap().to_go_string(), "https://u@h/p?q#f");
        assert_eq!(GoUrl::parse("mailto:x@y").unwrap().to_go_string(), "mailto:x@y");
        assert!(GoUrl::parse(":x").is_none());
    }
}
