//! Plain-scalar resolution with go-yaml's rules.
//!
//! Talos reads and writes its YAML with go-yaml, so the same plain text must mean the same thing here: `on`
//! stays a string, `0x1F` is an integer, `""` is null. The emitter uses the same rules in reverse to decide
//! when a string must be quoted.
//!
//! The reference is `internal/libyaml/resolver.go` of go-yaml v4.0.0-rc.6 (what Talos and Image Factory
//! link); where gopkg.in/yaml.v3 v3.0.1 (`resolve.go`) differs, the function comments say so. Go's
//! `strconv.ParseInt`/`ParseUint`/`ParseFloat` and `time.Parse` are reproduced here for exactly the inputs
//! go-yaml hands them.

use std::borrow::Cow;

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

/// How go-yaml's `Marshal` (v4, `WithV3Defaults` + `QuoteLegacy`) must quote a Go string that has no line
/// break, before the emitter's own character analysis has its say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringQuoting {
    /// Plain is fine as far as tag resolution goes.
    None,
    /// A YAML 1.1 boolean (`yes`, `off`, ...), a base-60 number (`1:20`) or the merge key `<<`: the
    /// representer forces single quotes (`representer.go` `stringv`: `needsQuoting` → `SingleQuotedStyle`).
    /// gopkg.in/yaml.v3 used double quotes here, and wrote `<<` plain.
    Single,
    /// The text would resolve to another type (`true`, `12`, `""`, `2001-12-14`, `.inf`): the desolver forces
    /// the quote preference, which for `QuoteLegacy` is double (`desolver.go` `desolveScalar`).
    Double,
}

/// The kind a plain scalar resolves to, without building a [`Value`] (no allocation on the hot path).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str,
    Timestamp,
    Merge,
}

/// Resolves a plain scalar's text.
pub fn resolve_plain(text: &str) -> Resolved {
    match classify(text) {
        Kind::Null => Resolved::Value(Value::Null),
        Kind::Bool(b) => Resolved::Value(Value::Bool(b)),
        Kind::Int(i) => Resolved::Value(Value::Int(i)),
        Kind::UInt(u) => Resolved::Value(Value::UInt(u)),
        Kind::Float(f) => Resolved::Value(Value::Float(f)),
        Kind::Str => Resolved::Value(Value::Str(text.to_owned())),
        Kind::Timestamp => Resolved::Timestamp,
        Kind::Merge => Resolved::Merge,
    }
}

/// True when a plain string would not read back as the same string (so the emitter must quote it):
/// it resolves to another type, or it is one of YAML 1.1's booleans or base-60 numbers that older readers
/// (Kubernetes' go-yaml v2) still take as non-strings, or the merge key `<<`.
pub fn needs_quotes_to_stay_string(text: &str) -> bool {
    string_quoting(text) != StringQuoting::None
}

/// The quoting go-yaml v4's `Marshal` forces on a single-line Go string for tag-resolution reasons.
pub fn string_quoting(text: &str) -> StringQuoting {
    if is_old_bool(text) || is_base60_float(text) || text == "<<" {
        StringQuoting::Single
    } else if classify(text) != Kind::Str {
        StringQuoting::Double
    } else {
        StringQuoting::None
    }
}

/// `resolver.go` `resolve("", in)`: the first byte picks a handler (`resolveTable`), exact words come from
/// `resolveMap`, then timestamps, `ParseInt`, `ParseUint` and `ParseFloat` are tried in that order.
fn classify(text: &str) -> Kind {
    let Some(&first) = text.as_bytes().first() else {
        return Kind::Null; // "" is in resolveMap as null
    };
    // resolveTable: '+' '-' sign, digits, "yYnNtTfFoO~<" (map only), '.' (float or map). Anything else is a
    // string without further ado.
    let hint = match first {
        b'+' | b'-' | b'0'..=b'9' => b'D',
        b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~' | b'<' => b'M',
        b'.' => b'.',
        _ => return Kind::Str,
    };
    if let Some(kind) = lookup_map(text) {
        return kind;
    }
    match hint {
        b'.' => match parse_go_float_dot(text) {
            Some(f) => Kind::Float(f),
            None => Kind::Str,
        },
        b'D' => classify_number(text),
        _ => Kind::Str,
    }
}

/// `resolveMap`. v4.0.0-rc.6 added `-0`/`-0.0` as negative zero (v3.0.1 resolves `-0` as the integer 0) and
/// the `<` table entry that makes `<<` a merge key (v3.0.1 resolves `<<` as a plain string).
fn lookup_map(text: &str) -> Option<Kind> {
    Some(match text {
        "true" | "True" | "TRUE" => Kind::Bool(true),
        "false" | "False" | "FALSE" => Kind::Bool(false),
        "~" | "null" | "Null" | "NULL" => Kind::Null,
        ".nan" | ".NaN" | ".NAN" => Kind::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Kind::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Kind::Float(f64::NEG_INFINITY),
        "-0" | "-0.0" => Kind::Float(-0.0),
        "<<" => Kind::Merge,
        _ => return None,
    })
}

/// The `'D', 'S'` branch: timestamp, then `ParseInt(plain, 0, 64)`, `ParseUint(plain, 0, 64)` and
/// `yamlStyleFloat` + `ParseFloat(plain, 64)`, where `plain` is the text with every `_` removed.
fn classify_number(text: &str) -> Kind {
    if is_go_timestamp(text.as_bytes()) {
        return Kind::Timestamp;
    }
    let plain: Cow<'_, str> = if text.contains('_') { Cow::Owned(text.replace('_', "")) } else { Cow::Borrowed(text) };
    if let Some(i) = go_parse_int(&plain) {
        return Kind::Int(i);
    }
    if let Some(u) = go_parse_uint(&plain) {
        return Kind::UInt(u);
    }
    if is_yaml_style_float(&plain) {
        // The pattern admits nothing Rust's parser rejects; Go reports overflow (±Inf) as an error, after which
        // go-yaml falls through to "string".
        if let Ok(f) = plain.parse::<f64>()
            && f.is_finite()
        {
            return Kind::Float(f);
        }
    }
    Kind::Str
}

/// YAML 1.1 booleans that go-yaml still quotes on output (`isOldBool`).
pub fn is_old_bool(text: &str) -> bool {
    matches!(
        text,
        "y" | "Y" | "yes" | "Yes" | "YES" | "n" | "N" | "no" | "No" | "NO" | "on" | "On" | "ON" | "off" | "Off" | "OFF"
    )
}

/// `isBase60Float`: `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
pub fn is_base60_float(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    i += 1;
    while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        // `[0-5]?[0-9]`: one digit, or two digits whose first is 0-5. A third digit can never follow (only
        // ':' or '.' or the end may), so reading greedily loses no match.
        let d1 = b.get(i).copied().filter(u8::is_ascii_digit);
        let d2 = b.get(i + 1).copied().filter(u8::is_ascii_digit);
        match (d1, d2) {
            (Some(a), Some(_)) if a <= b'5' => i += 2,
            (Some(_), Some(_)) => return false,
            (Some(_), None) => i += 1,
            (None, _) => return false,
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// `yamlStyleFloat`: `^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$`
fn is_yaml_style_float(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let s = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - s
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseUint(s, 0, 64)` for text without underscores: base prefixes `0x`/`0o`/`0b` (any case,
/// only when at least one more byte follows), a leading `0` meaning octal, and no sign.
fn go_parse_uint(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let (radix, digits): (u32, &[u8]) = match b {
        [] => return None,
        [b'0', p, rest @ ..] if !rest.is_empty() && matches!(p, b'x' | b'X') => (16, rest),
        [b'0', p, rest @ ..] if !rest.is_empty() && matches!(p, b'o' | b'O') => (8, rest),
        [b'0', p, rest @ ..] if !rest.is_empty() && matches!(p, b'b' | b'B') => (2, rest),
        [b'0', rest @ ..] => (8, rest),
        _ => (10, b),
    };
    let mut n: u64 = 0;
    for &c in digits {
        let d = char::from(c).to_digit(radix)?;
        n = n.checked_mul(u64::from(radix))?.checked_add(u64::from(d))?;
    }
    Some(n)
}

/// Go's `strconv.ParseInt(s, 0, 64)` for text without underscores: an optional sign, then `ParseUint`, then
/// the int64 range check.
fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, s.get(1..)?),
        b'+' => (false, s.get(1..)?),
        _ => (false, s),
    };
    let magnitude = go_parse_uint(body)?;
    if neg {
        // -(2^63) is the most negative value.
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's `strconv.ParseFloat(in, 64)` for text that starts with `.` (go-yaml's `'.'` branch passes the raw
/// text, underscores included): `.` digits, an optional exponent, underscores only between digits.
fn parse_go_float_dot(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    if b.first() != Some(&b'.') {
        return None;
    }
    let mut i = 1;
    let mut saw_digit = false;
    let mut underscores = false;
    while let Some(&c) = b.get(i) {
        match c {
            b'0'..=b'9' => saw_digit = true,
            b'_' => underscores = true,
            _ => break,
        }
        i += 1;
    }
    if !saw_digit {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        while let Some(&c) = b.get(i) {
            match c {
                b'0'..=b'9' => {}
                b'_' => underscores = true,
                _ => break,
            }
            i += 1;
        }
    }
    if i != b.len() || (underscores && !go_underscore_ok(b)) {
        return None;
    }
    let f = if underscores { text.replace('_', "").parse::<f64>().ok()? } else { text.parse::<f64>().ok()? };
    // Overflow is an error in Go (ErrRange), so the text stays a string.
    f.is_finite().then_some(f)
}

/// `strconv.underscoreOK` for decimal text without a base prefix: every `_` sits between two digits.
fn go_underscore_ok(b: &[u8]) -> bool {
    // saw: b'^' start, b'0' digit, b'_' underscore, b'!' anything else
    let mut saw = b'^';
    let body = match b.first() {
        Some(b'-' | b'+') => b.get(1..).unwrap_or_default(),
        _ => b,
    };
    for &c in body {
        if c.is_ascii_digit() {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// go-yaml's `parseTimestamp`: four digits and `-`, then Go's `time.Parse` with each of
/// `2006-1-2T15:4:5.999999999Z07:00`, `2006-1-2t15:4:5.999999999Z07:00`, `2006-1-2 15:4:5.999999999` and
/// `2006-1-2`. `time.Parse` is strict about ranges (month 1-12, the day must exist in that month and year,
/// hour < 24, minute and second < 60), requires the zone (`Z` or `±hh:mm`) after `T`/`t`, forbids it after a
/// space (where one or more spaces are accepted), and takes any number of fraction digits after `.` or `,`.
fn is_go_timestamp(s: &[u8]) -> bool {
    let year_digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if year_digits != 4 || s.get(4) != Some(&b'-') {
        return false;
    }
    let year = s.iter().take(4).fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'));
    let mut i = 5;
    let Some(month) = go_getnum(s, &mut i) else {
        return false;
    };
    if !(1..=12).contains(&month) || s.get(i) != Some(&b'-') {
        return false;
    }
    i += 1;
    let Some(day) = go_getnum(s, &mut i) else {
        return false;
    };
    let rest_ok = match s.get(i) {
        None => true,
        Some(b'T' | b't') => go_time_part(s, i + 1, true),
        Some(b' ') => {
            let mut j = i;
            while s.get(j) == Some(&b' ') {
                j += 1;
            }
            go_time_part(s, j, false)
        }
        Some(_) => false,
    };
    rest_ok && day >= 1 && day <= days_in_month(month, year)
}

/// `15:4:5.999999999` plus, when `zone`, `Z07:00`; the whole rest of `s` must be consumed.
fn go_time_part(s: &[u8], mut i: usize, zone: bool) -> bool {
    let mut fields = [0u32; 3];
    for (n, field) in fields.iter_mut().enumerate() {
        if n > 0 {
            if s.get(i) != Some(&b':') {
                return false;
            }
            i += 1;
        }
        match go_getnum(s, &mut i) {
            Some(v) => *field = v,
            None => return false,
        }
    }
    let [hour, minute, second] = fields;
    if hour >= 24 || minute >= 60 || second >= 60 {
        return false;
    }
    // Optional fraction: '.' or ',' followed by at least one digit, then all the digits there are.
    if matches!(s.get(i), Some(b'.' | b',')) && s.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    if zone {
        if s.get(i) == Some(&b'Z') {
            i += 1;
        } else {
            let Some(tz) = s.get(i..i + 6) else {
                return false;
            };
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit()).then(|| u32::from(a - b'0') * 10 + u32::from(b - b'0'))
            };
            let ok = matches!(tz, [b'+' | b'-', h1, h2, b':', m1, m2]
                if two(*h1, *h2).is_some_and(|h| h <= 24) && two(*m1, *m2).is_some_and(|m| m <= 60));
            if !ok {
                return false;
            }
            i += 6;
        }
    }
    i == s.len()
}

/// Go's `getnum(s, false)`: one digit, or two when a second digit follows.
fn go_getnum(s: &[u8], i: &mut usize) -> Option<u32> {
    let d1 = s.get(*i).copied().filter(u8::is_ascii_digit)?;
    *i += 1;
    let mut n = u32::from(d1 - b'0');
    if let Some(d2) = s.get(*i).copied().filter(u8::is_ascii_digit) {
        *i += 1;
        n = n * 10 + u32::from(d2 - b'0');
    }
    Some(n)
}

fn days_in_month(month: u32, year: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Resolved {
        resolve_plain(s)
    }

    fn is_str(s: &str) -> bool {
        v(s) == Resolved::Value(Value::Str(s.into()))
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
    fn negative_zero_is_a_float_in_v4() {
        // resolver.go v4.0.0-rc.6: {negativeZero, floatTag, []string{"-0", "-0.0"}}
        match v("-0") {
            Resolved::Value(Value::Float(f)) => assert!(f == 0.0 && f.is_sign_negative()),
            other => panic!("-0 resolved to {other:?}"),
        }
        assert_eq!(v("+0"), Resolved::Value(Value::Int(0)));
        assert_eq!(v("0"), Resolved::Value(Value::Int(0)));
        assert_eq!(v("00"), Resolved::Value(Value::Int(0)));
    }

    #[test]
    fn integers_follow_strconv_base_zero() {
        assert_eq!(v("0b101"), Resolved::Value(Value::Int(5)));
        assert_eq!(v("0B101"), Resolved::Value(Value::Int(5)));
        assert_eq!(v("-0b101"), Resolved::Value(Value::Int(-5)));
        assert_eq!(v("0O17"), Resolved::Value(Value::Int(15)));
        assert_eq!(v("0X_ff"), Resolved::Value(Value::Int(255)));
        assert_eq!(v("-_1"), Resolved::Value(Value::Int(-1)));
        assert_eq!(v("-9223372036854775808"), Resolved::Value(Value::Int(i64::MIN)));
        assert_eq!(v("-0x8000000000000000"), Resolved::Value(Value::Int(i64::MIN)));
        assert_eq!(v("9223372036854775808"), Resolved::Value(Value::UInt(1 << 63)));
        // ParseUint takes no sign: past int64 a '+' number can only be a float.
        assert_eq!(v("+18446744073709551615"), Resolved::Value(Value::Float(18446744073709551615.0)));
        assert_eq!(v("-9223372036854775809"), Resolved::Value(Value::Float(-9223372036854775809.0)));
        assert_eq!(v("99999999999999999999"), Resolved::Value(Value::Float(1e20)));
        assert!(is_str("0x10000000000000000"));
        assert!(is_str("0b2"));
        assert!(is_str("0x+5"));
        assert!(is_str("0b+1")); // v3.0.1's extra 0b fallback resolved this to 1
        assert_eq!(v("1_"), Resolved::Value(Value::Int(1))); // underscores are stripped anywhere
        assert!(is_str("_1"));
    }

    #[test]
    fn floats_follow_strconv() {
        assert_eq!(v("1."), Resolved::Value(Value::Float(1.0)));
        assert_eq!(v("+.5"), Resolved::Value(Value::Float(0.5)));
        assert_eq!(v("1_000.5"), Resolved::Value(Value::Float(1000.5)));
        assert_eq!(v(".5_5"), Resolved::Value(Value::Float(0.55)));
        assert_eq!(v(".5e1_0"), Resolved::Value(Value::Float(0.5e10)));
        assert_eq!(v("1e-400"), Resolved::Value(Value::Float(0.0)));
        assert_eq!(v(".Inf"), Resolved::Value(Value::Float(f64::INFINITY)));
        // Overflow is ErrRange in Go: the text stays a string.
        assert!(is_str("1e999"));
        assert!(is_str(".5e999"));
        assert!(is_str("._5"));
        assert!(is_str(".5_"));
        assert!(is_str("."));
        assert!(is_str(".e5"));
        assert!(is_str(".inF"));
        assert!(is_str("1e"));
        assert!(is_str("0x1p-2"));
        assert!(is_str("inf"));
        assert!(is_str("nan"));
    }

    #[test]
    fn timestamps_follow_time_parse() {
        for s in [
            "2001-12-14",
            "2001-1-2",
            "2001-12-14t21:59:43.10-05:00",
            "2001-12-14T21:59:43Z",
            "2001-12-14T1:2:3Z",
            "2001-12-14T21:59:43,5+01:00",
            "2001-12-14T21:59:43.1234567890123Z",
            "2001-12-14 21:59:43.10",
            "2001-12-14   21:59:43",
            "2000-02-29",
            "2001-12-14T23:59:59+24:60",
        ] {
            assert_eq!(v(s), Resolved::Timestamp, "{s}");
        }
        for s in [
            "2001-12-14T21:59:43",  // T needs a zone
            "2001-12-14 21:59:43Z", // space form has no zone
            "2001-02-29",           // not a leap year
            "2001-04-31",
            "2001-13-01",
            "2001-00-10",
            "2001-12-00",
            "2001-12-14T24:00:00Z",
            "2001-12-14T23:60:00Z",
            "2001-12-14T23:59:60Z",
            "2001-12-14T21:59:43+25:00",
            "2001-12-14T21:59:43+0100",
            "2001-12-14T21:59:43.Z",
            "2001-12-14 ",
            "2001-12-14x",
            "20011-12-14",
            "2001-123-1",
        ] {
            assert!(is_str(s), "{s} should stay a string");
        }
    }

    #[test]
    fn quoting_decisions() {
        for s in ["on", "yes", "N", "true", "null", "", "12", "1.5", "1:20", "2001-12-14", ".inf", "<<", "-0"] {
            assert!(needs_quotes_to_stay_string(s), "{s:?} must be quoted");
        }
        for s in ["foo", "v1.28.0", "10.5.0.0/24", "1.2.3", "https://base:6443", "ony", "2001-02-30", "1e999"] {
            assert!(!needs_quotes_to_stay_string(s), "{s:?} must stay plain");
        }
        assert_eq!(string_quoting("off"), StringQuoting::Single);
        assert_eq!(string_quoting("1:1"), StringQuoting::Single);
        assert_eq!(string_quoting("<<"), StringQuoting::Single);
        assert_eq!(string_quoting("true"), StringQuoting::Double);
        assert_eq!(string_quoting("2015-02-24T18:19:39Z"), StringQuoting::Double);
        assert_eq!(string_quoting("hello"), StringQuoting::None);
    }

    #[test]
    fn base60() {
        for s in ["1:20", "-1:20", "+190:20:30.15", "1_0:5:59", "1:5.", "0:0"] {
            assert!(is_base60_float(s), "{s}");
        }
        for s in ["1:60", "1:123", ":1", "1:", "a:1", "1:2:", "1::2", "1:2.3.4", ""] {
            assert!(!is_base60_float(s), "{s}");
        }
    }
}
