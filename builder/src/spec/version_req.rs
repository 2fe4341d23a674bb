//! Version requirements such as `>= 1.12`, `< 1.14` or `>= 1.12, < 1.14`, for overlays and extensions.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::units::Version;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
}

/// A conjunction of comparisons against `major.minor[.patch]` (pre-release suffixes are ignored, as Talos's
/// quirks ignore them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionReq {
    pub clauses: Vec<(Op, (u64, u64, u64))>,
    text: String,
}

impl VersionReq {
    pub fn matches(&self, v: &Version) -> bool {
        let have = (v.major, v.minor, v.patch);
        self.clauses.iter().all(|(op, want)| match op {
            Op::Ge => have >= *want,
            Op::Gt => have > *want,
            Op::Le => have <= *want,
            Op::Lt => have < *want,
            Op::Eq => have == *want,
        })
    }
}

impl FromStr for VersionReq {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected a version requirement like \">= 1.12\" or \">= 1.12, < 1.14\"; found {s:?}");
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let (op, rest) = if let Some(r) = part.strip_prefix(">=") {
                (Op::Ge, r)
            } else if let Some(r) = part.strip_prefix("<=") {
                (Op::Le, r)
            } else if let Some(r) = part.strip_prefix('>') {
                (Op::Gt, r)
            } else if let Some(r) = part.strip_prefix('<') {
                (Op::Lt, r)
            } else if let Some(r) = part.strip_prefix('=') {
                (Op::Eq, r)
            } else {
                return Err(bad());
            };
            let v: Version = rest.trim().parse().map_err(|_| bad())?;
            clauses.push((op, (v.major, v.minor, v.patch)));
        }
        if clauses.is_empty() {
            return Err(bad());
        }
        Ok(VersionReq { clauses, text: s.trim().to_owned() })
    }
}

impl fmt::Display for VersionReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for VersionReq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for VersionReq {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements() {
        let r: VersionReq = ">= 1.12, < 1.14".parse().unwrap();
        assert!(r.matches(&"v1.13.9".parse().unwrap()));
        assert!(r.matches(&"v1.12.0-alpha.1".parse().unwrap()));
        assert!(!r.matches(&"v1.14.0".parse().unwrap()));
        assert!(!r.matches(&"v1.11.5".parse().unwrap()));
        assert!("~1.2".parse::<VersionReq>().is_err());
        assert!("".parse::<VersionReq>().is_err());
    }
}
