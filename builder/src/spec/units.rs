//! Small value types users write in specs: byte sizes, IP prefixes, MAC addresses, versions, endpoints.
//!
//! Each parses from the text users write (`8GiB`, `10.5.0.11/24`, `v1.14.0`) with a message that shows the
//! expected form, and prints back in a canonical form.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

macro_rules! string_serde {
    ($t:ty, $expecting:literal) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$t, E> {
                        s.parse::<$t>().map_err(E::custom)
                    }
                    fn visit_u64<E: de::Error>(self, n: u64) -> Result<$t, E> {
                        self.visit_str(&n.to_string())
                    }
                    fn visit_i64<E: de::Error>(self, n: i64) -> Result<$t, E> {
                        self.visit_str(&n.to_string())
                    }
                }
                d.deserialize_any(V)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

/// A size in bytes, written `8GiB`, `480GB`, `1.92TB`, `512MiB` or a plain number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const KIB: u64 = 1 << 10;
    pub const MIB: u64 = 1 << 20;
    pub const GIB: u64 = 1 << 30;
    pub const TIB: u64 = 1 << 40;

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected a size like 8GiB, 480GB or 1.92TB; found {s:?}");
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim();
        let mult: u64 = match unit {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "MB" => 1000_u64.pow(2),
            "GB" => 1000_u64.pow(3),
            "TB" => 1000_u64.pow(4),
            "PB" => 1000_u64.pow(5),
            "KiB" => Self::KIB,
            "MiB" => Self::MIB,
            "GiB" => Self::GIB,
            "TiB" => Self::TIB,
            "PiB" => 1 << 50,
            _ => return Err(bad()),
        };
        if num.is_empty() {
            return Err(bad());
        }
        // Exact decimal arithmetic: "1.92TB" must be 1_920_000_000_000, not a float rounding of it.
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() || frac.contains('.') {
            return Err(bad());
        }
        let int: u64 = int.parse().map_err(|_| bad())?;
        let mut total = int.checked_mul(mult).ok_or_else(bad)?;
        if !frac.is_empty() {
            let digits = u32::try_from(frac.len()).map_err(|_| bad())?;
            let scale = 10_u64.checked_pow(digits).ok_or_else(bad)?;
            let f: u64 = frac.parse().map_err(|_| bad())?;
            let part = (u128::from(f) * u128::from(mult)) / u128::from(scale);
            if (u128::from(f) * u128::from(mult)) % u128::from(scale) != 0 {
                return Err(format!("{s:?} is not a whole number of bytes"));
            }
            total = total.checked_add(u64::try_from(part).map_err(|_| bad())?).ok_or_else(bad)?;
        }
        Ok(ByteSize(total))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        // Decimal first: a binary multiple is never a whole number of decimal megabytes, but a decimal
        // size (480GB) can be a whole number of KiB.
        for (unit, m) in [("TB", 1000_u64.pow(4)), ("GB", 1000_u64.pow(3)), ("MB", 1000_u64.pow(2))] {
            if b >= m && b.is_multiple_of(m) {
                return write!(f, "{}{unit}", b / m);
            }
        }
        for (unit, m) in [("TiB", Self::TIB), ("GiB", Self::GIB), ("MiB", Self::MIB), ("KiB", Self::KIB)] {
            if b >= m && b.is_multiple_of(m) {
                return write!(f, "{}{unit}", b / m);
            }
        }
        write!(f, "{b}")
    }
}

string_serde!(ByteSize, "a size like 8GiB or 480GB");

/// An IP address with a prefix length: `10.5.0.11/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpCidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpCidr {
    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let other = IpCidr { addr: ip, prefix: self.prefix };
        self.addr.is_ipv4() == ip.is_ipv4() && other.network() == self.network()
    }
}

impl FromStr for IpCidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected an address with prefix length like 10.5.0.11/24; found {s:?}");
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix length {prefix} is larger than {max} in {s:?}"));
        }
        Ok(IpCidr { addr, prefix })
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

string_serde!(IpCidr, "an address with prefix length like 10.5.0.11/24");

/// A MAC address, `52:54:00:12:34:56` (printed lowercase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected a MAC address like 52:54:00:12:34:56; found {s:?}");
        let mut out = [0u8; 6];
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        for (o, p) in out.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

string_serde!(MacAddr, "a MAC address like 52:54:00:12:34:56");

/// A semantic version as Talos and Kubernetes write them: `v1.14.0`, `1.34.1`, `v1.14.0-rc.1`, `v1.14`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Option<String>,
    /// Whether the user wrote the leading `v`.
    pub v_prefix: bool,
    /// Whether the patch number was written (`v1.14` leaves it out).
    pub has_patch: bool,
}

impl Version {
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version { major, minor, patch, pre: None, v_prefix: true, has_patch: true }
    }

    /// `major.minor` as a comparable pair.
    pub fn minor_pair(&self) -> (u64, u64) {
        (self.major, self.minor)
    }

    /// Printed with a leading `v`, as Talos image tags are: `v1.14.0`, `v1.14.0-rc.1`.
    pub fn tag(&self) -> String {
        let mut s = format!("v{}.{}.{}", self.major, self.minor, self.patch);
        if let Some(p) = &self.pre {
            s.push('-');
            s.push_str(p);
        }
        s
    }

    /// Printed without the `v`: `1.34.1`.
    pub fn plain(&self) -> String {
        self.tag()[1..].to_owned()
    }
}

impl FromStr for Version {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected a version like v1.14.0 or 1.34.1; found {s:?}");
        let (v_prefix, body) = match s.strip_prefix('v') {
            Some(b) => (true, b),
            None => (false, s),
        };
        let (core, pre) = match body.split_once('-') {
            Some((c, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') => {
                (c, Some(p.to_owned()))
            }
            Some(_) => return Err(bad()),
            None => (body, None),
        };
        let nums: Vec<&str> = core.split('.').collect();
        if !(2..=3).contains(&nums.len()) || nums.iter().any(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(bad());
        }
        let p = |i: usize| nums.get(i).map_or(Ok(0), |n| n.parse::<u64>().map_err(|_| bad()));
        Ok(Version { major: p(0)?, minor: p(1)?, patch: p(2)?, pre, v_prefix, has_patch: nums.len() == 3 })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v_prefix {
            f.write_str("v")?;
        }
        write!(f, "{}.{}", self.major, self.minor)?;
        if self.has_patch {
            write!(f, ".{}", self.patch)?;
        }
        if let Some(p) = &self.pre {
            write!(f, "-{p}")?;
        }
        Ok(())
    }
}

string_serde!(Version, "a version like v1.14.0");

/// The Kubernetes API endpoint: `https://<host>:<port>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.host_for_url(), self.port)
    }

    fn host_for_url(&self) -> String {
        if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() }
    }

    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected an endpoint like https://10.5.0.10:6443; found {s:?}");
        let rest = s.strip_prefix("https://").ok_or_else(bad)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, p) = r.split_once(']').ok_or_else(bad)?;
            (h.to_owned(), p.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(bad());
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad())?,
            None => 6443,
        };
        Ok(Endpoint { host, port })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

string_serde!(Endpoint, "an endpoint like https://10.5.0.10:6443");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!("8GiB".parse::<ByteSize>().unwrap().0, 8 << 30);
        assert_eq!("480GB".parse::<ByteSize>().unwrap().0, 480_000_000_000);
        assert_eq!("1.92TB".parse::<ByteSize>().unwrap().0, 1_920_000_000_000);
        assert_eq!("512 MiB".parse::<ByteSize>().unwrap().0, 512 << 20);
        assert_eq!("4096".parse::<ByteSize>().unwrap().0, 4096);
        assert!("8gb".parse::<ByteSize>().is_err());
        assert!("GiB".parse::<ByteSize>().is_err());
        assert!("1.5".parse::<ByteSize>().is_err());
        assert!("99999999999999TiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(8 << 30).to_string(), "8GiB");
        assert_eq!(ByteSize(480_000_000_000).to_string(), "480GB");
    }

    #[test]
    fn cidrs() {
        let c: IpCidr = "10.5.0.11/24".parse().unwrap();
        assert_eq!(c.network().to_string(), "10.5.0.0");
        assert!(c.contains("10.5.0.200".parse().unwrap()));
        assert!(!c.contains("10.5.1.1".parse().unwrap()));
        assert!("10.5.0.11/33".parse::<IpCidr>().is_err());
        assert!("10.5.0.11".parse::<IpCidr>().is_err());
        let v6: IpCidr = "fd00::5/64".parse().unwrap();
        assert!(v6.contains("fd00::ffff".parse().unwrap()));
    }

    #[test]
    fn versions() {
        let v: Version = "v1.14.0-rc.1".parse().unwrap();
        assert_eq!((v.major, v.minor, v.patch, v.pre.as_deref()), (1, 14, 0, Some("rc.1")));
        assert_eq!(v.to_string(), "v1.14.0-rc.1");
        let k: Version = "1.34.1".parse().unwrap();
        assert_eq!(k.tag(), "v1.34.1");
        assert_eq!(k.to_string(), "1.34.1");
        let short: Version = "v1.14".parse().unwrap();
        assert_eq!(short.to_string(), "v1.14");
        assert!("1".parse::<Version>().is_err());
        assert!("v1.x.0".parse::<Version>().is_err());
    }

    #[test]
    fn endpoints_and_macs() {
        let e: Endpoint = "https://10.5.0.10:6443".parse().unwrap();
        assert_eq!(e.ip().unwrap().to_string(), "10.5.0.10");
        assert_eq!("https://base".parse::<Endpoint>().unwrap().url(), "https://base:6443");
        assert!("http://x:1".parse::<Endpoint>().is_err());
        assert_eq!("52:54:00:AB:cd:01".parse::<MacAddr>().unwrap().to_string(), "52:54:00:ab:cd:01");
        assert!("52:54:00:ab:cd".parse::<MacAddr>().is_err());
    }
}
