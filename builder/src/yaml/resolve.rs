//! Plain-scalar resolution with go-yaml's rules.
//!
//! Talos reads and writes its YAML with go-yaml, so the same plain text must mean the same thing here: `on`
//! stays a string, `0x1F` is an integer, `""` is null. The emitter uses the same rules in reverse to decide
//! when a string must be quoted.

use super::node::Value;

/// What a plain (unquoted, untagged) scalar resolves to.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    Value(Value),
    /// A YAML timestamp (`2001-12-14`, `2001-12-14T21:59:43Z`): go-yaml gives it its own tag. We keep the
    /// text; the emitter must quote such strings.
    Timestamp,
    /// The merge key `<<`.
    Merge,
}

/// Resolves a plain scalar's text.
pub fn resolve_plain(text: &str) -> Resolved {
    match text {
        "true" | "True" | "TRUE" => return Resolved::Value(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Resolved::Value(Value::Bool(false)),
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Value(Value::Null),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Value(Value::Float(f64::NAN)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Value(Value::Float(f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Value(Value::Float(f64::NEG_INFINITY)),
        "<<" => return Resolved::Merge,
        _ => {}
    }
    let first = text.as_bytes()[0];
    match first {
        b'.' => {
            if let Some(f) = parse_go_float(text) {
                return Resolved::Value(Value::Float(f));
            }
        }
        b'0'..=b'9' | b'+' | b'-' => {
            if is_timestamp(text) {
                return Resolved::Timestamp;
            }
            let plain: String = text.chars().filter(|&c| c != '_').collect();
            if let Some(v) = parse_go_int(&plain) {
                return Resolved::Value(v);
            }
            if is_yaml_style_float(&plain) {
                if let Some(f) = parse_go_float(&plain) {
                    return Resolved::Value(Value::Float(f));
                }
            }
        }
        _ => {}
    }
    Resolved::Value(Value::Str(text.to_owned()))
}

/// True when a plain string would not read back as the same string (so the emitter must quote it):
/// it resolves to another type, or it is one of YAML 1.1's booleans or base-60 numbers that older readers
/// (Kubernetes' go-yaml v2) still take as non-strings.
pub fn needs_quotes_to_stay_string(text: &str) -> bool {
    !matches!(resolve_plain(text), Resolved::Value(Value::Str(_))) || is_old_bool(text) || is_base60_float(text)
}

fn is_old_bool(text: &str) -> bool {
    matches!(
        text,
        "y" | "Y" | "yes" | "Yes" | "YES" | "n" | "N" | "no" | "No" | "NO" | "on" | "On" | "ON" | "off" | "Off" | "OFF"
    )
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
fn is_base60_float(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    if i >= b.len() || !b[i].is_ascii_digit() {
        return false;
    }
    i += 1;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while i < b.len() && b[i] == b':' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 2 {
            i += 1;
        }
        let digits = &b[start..i];
        let ok = match digits.len() {
            1 => true,
            2 => digits[0] <= b'5',
            _ => false,
        };
        if !ok {
            return false;
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_style_float(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - s
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint`, then the `0b`/`0o` forms go-yaml adds.
fn parse_go_int(s: &str) -> Option<Value> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let (radix, digits) = if let Some(r) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        (16, r)
    } else if let Some(r) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
        (8, r)
    } else if let Some(r) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
        (2, r)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if magnitude <= i64::MAX as u64 + 1 {
            Some(Value::Int((magnitude as i128).wrapping_neg() as i64))
        } else {
            None
        }
    } else if magnitude <= i64::MAX as u64 {
        Some(Value::Int(magnitude as i64))
    } else {
        Some(Value::UInt(magnitude))
    }
}

fn parse_go_float(s: &str) -> Option<f64> {
    // Rust's f64 parser accepts what the YAML float pattern allows ("1.", ".5", "1e5"), and rejects
    // Go-only hex floats, which go-yaml never reaches through its pattern check anyway.
    s.parse::<f64>().ok().filter(|_| !s.eq_ignore_ascii_case("inf") && !s.eq_ignore_ascii_case("nan"))
}

/// go-yaml tries timestamps only for text that starts with four digits and a dash.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    // date: YYYY-M-D (1 or 2 digit month/day)
    let mut i = 5;
    let num = |i: &mut usize, max: usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - s < max {
            *i += 1;
        }
        *i - s
    };
    if num(&mut i, 2) == 0 || i >= b.len() || b[i] != b'-' {
        return false;
    }
    i += 1;
    if num(&mut i, 2) == 0 {
        return false;
    }
    if i == b.len() {
        return true;
    }
    // time part: [Tt ] H:M:S(.frac)?(Z|±hh:mm)?
    if !matches!(b[i], b'T' | b't' | b' ') {
        return false;
    }
    i += 1;
    for sep in [b':', b':'] {
        if num(&mut i, 2) == 0 || i >= b.len() || b[i] != sep {
            return false;
        }
        i += 1;
    }
    if num(&mut i, 2) == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if num(&mut i, 9) == 0 {
            return false;
        }
    }
    if i == b.len() {
        return true;
    }
    if b[i] == b'Z' {
        return i + 1 == b.len();
    }
    if b[i] == b'+' || b[i] == b'-' {
        i += 1;
        if num(&mut i, 2) == 0 || i >= b.len() || b[i] != b':' {
            return false;
        }
        i += 1;
        return num(&mut i, 2) == 2 && i == b.len();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Resolved {
        resolve_plain(s)
    }

    #[test]
    fn resolves_like_go_yaml() {
        assert_eq!(v("true"), Resolved::Value(Value::Bool(true)));
        assert_eq!(v("on"), Resolved::Value(Value::Str("on".into())));
        assert_eq!(v(""), Resolved::Value(Value::Null));
        assert_eq!(v("~"), Resolved::Value(Value::Null));
        assert_eq!(v("0x1F"), Resolved::Value(Value::Int(31)));
        assert_eq!(v("0o644"), Resolved::Value(Value::Int(420)));
        assert_eq!(v("0644"), Resolved::Value(Value::Int(420)));
        assert_eq!(v("1_000"), Resolved::Value(Value::Int(1000)));
        assert_eq!(v("-12"), Resolved::Value(Value::Int(-12)));
        assert_eq!(v("18446744073709551615"), Resolved::Value(Value::UInt(u64::MAX)));
        assert_eq!(v("1.5"), Resolved::Value(Value::Float(1.5)));
        assert_eq!(v("1e3"), Resolved::Value(Value::Float(1000.0)));
        assert_eq!(v(".5"), Resolved::Value(Value::Float(0.5)));
        assert_eq!(v("1.2.3"), Resolved::Value(Value::Str("1.2.3".into())));
        assert_eq!(v("v1.14.0"), Resolved::Value(Value::Str("v1.14.0".into())));
        assert_eq!(v("10.5.0.11/24"), Resolved::Value(Value::Str("10.5.0.11/24".into())));
        assert_eq!(v("2001-12-14"), Resolved::Timestamp);
        assert_eq!(v("2001-12-14T21:59:43Z"), Resolved::Timestamp);
        assert_eq!(v("2001-12-14x"), Resolved::Value(Value::Str("2001-12-14x".into())));
        assert_eq!(v("<<"), Resolved::Merge);
        assert_eq!(v("-"), Resolved::Value(Value::Str("-".into())));
        assert_eq!(v("+"), Resolved::Value(Value::Str("+".into())));
        assert_eq!(v("0x"), Resolved::Value(Value::Str("0x".into())));
        assert_eq!(v("089"), Resolved::Value(Value::Float(89.0)));
    }

    #[test]
    fn quoting_decisions() {
        for s in ["on", "yes", "N", "true", "null", "", "12", "1.5", "1:20", "2001-12-14", ".inf"] {
            assert!(needs_quotes_to_stay_string(s), "{s:?} must be quoted");
        }
        for s in ["foo", "v1.28.0", "10.5.0.0/24", "1.2.3", "https://base:6443", "ony"] {
            assert!(!needs_quotes_to_stay_string(s), "{s:?} must stay plain");
        }
    }
}
