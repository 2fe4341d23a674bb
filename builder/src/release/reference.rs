//! Image references (`host/repo:tag@sha256:…`) and content digests, parsed strictly.
//!
//! talforge only deals with fully qualified references: the registry host is always written (there is no
//! implicit `docker.io`), and a reference names a tag, a digest or both. A host is recognised the way Docker
//! does it: the first path component contains a `.` or a `:`, or is `localhost`. Only `sha256` digests are
//! accepted; they are what every registry talforge pulls from uses.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A `sha256:<64 lowercase hex>` content digest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<64 lowercase hex digits>`; other algorithms are refused.
    pub fn parse(s: &str) -> Result<Digest, String> {
        let Some((algo, hex)) = s.split_once(':') else {
            return Err(format!("expected a digest like sha256:<64 hex digits>; found {s:?}"));
        };
        if algo != "sha256" {
            return Err(format!("expected a sha256 digest; found algorithm {algo:?}"));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!("expected 64 lowercase hex digits after sha256:; found {hex:?}"));
        }
        Ok(Digest(s.to_owned()))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(data))
    }

    /// The digest a finished hasher computed.
    pub fn from_hasher(h: Sha256) -> Digest {
        Digest(format!("sha256:{}", super::dir::hex(&h.finalize())))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fully qualified image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// `ghcr.io`, `127.0.0.1:5000`, `localhost`.
    pub registry: String,
    /// The repository path inside the registry: `siderolabs/imager`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

/// Whether the first component of a reference is a registry host (Docker's rule).
pub fn looks_like_host(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost"
}

fn valid_path_component(c: &str) -> bool {
    // distribution's grammar: [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    if !b.iter().all(|&x| x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')) {
        return false;
    }
    // no "..", "._", "___" and the like: separators other than runs of '-' and "__" stand alone
    !c.contains("..")
        && !c.contains("___")
        && !c.contains("._")
        && !c.contains("_.")
        && !c.contains(".-")
        && !c.contains("-.")
}

/// Whether `t` is a valid tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

fn valid_host(h: &str) -> bool {
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || h.starts_with('[') => (n, Some(p)),
        _ => (h, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if name.starts_with('[') && name.ends_with(']') {
        return name[1..name.len() - 1].parse::<std::net::Ipv6Addr>().is_ok();
    }
    !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl ImageRef {
    /// Parses `host[:port]/path[:tag][@sha256:…]`. The host must be written and a tag or digest given.
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(Digest::parse(d)?)),
            None => (s, None),
        };
        let (host, path) = rest.split_once('/').ok_or_else(|| "expected host/repository[:tag]".to_owned())?;
        if !looks_like_host(host) {
            return Err(format!(
                "expected a registry host (with a '.' or ':', or localhost) as the first component; found {host:?}"
            ));
        }
        if !valid_host(host) {
            return Err(format!("invalid registry host {host:?}"));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, Some(t.to_owned())),
            _ => (path, None),
        };
        if !repository.split('/').all(valid_path_component) {
            return Err(format!(
                "invalid repository {repository:?}: components are lowercase letters, digits and . _ - separators"
            ));
        }
        if let Some(t) = &tag
            && !valid_tag(t)
        {
            return Err(format!("invalid tag {t:?}"));
        }
        if tag.is_none() && digest.is_none() {
            return Err("expected a tag or a digest (:tag or @sha256:…); talforge never assumes :latest".to_owned());
        }
        Ok(ImageRef { registry: host.to_owned(), repository: repository.to_owned(), tag, digest })
    }

    /// `host/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The last path component of the repository (`imager`, `gvisor`).
    pub fn basename(&self) -> &str {
        self.repository.rsplit('/').next().unwrap_or(&self.repository)
    }

    /// The reference without its digest (`host/repo:tag`), or with it if there is no tag.
    pub fn tagged(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}:{t}", self.name()),
            None => self.to_string(),
        }
    }

    /// The reference without its digest: `host/repo:tag`, or `host/repo` when there is no tag.
    pub fn without_digest(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}:{t}", self.name()),
            None => self.name(),
        }
    }

    /// The same image pinned to `digest`.
    pub fn at(&self, digest: &Digest) -> ImageRef {
        ImageRef { digest: Some(digest.clone()), ..self.clone() }
    }

    /// The oci-client reference for this image, by digest when `digest` is given, else by tag.
    pub(crate) fn to_oci(&self, digest: Option<&Digest>) -> oci_client::Reference {
        match (digest.or(self.digest.as_ref()), &self.tag) {
            (Some(d), _) => {
                oci_client::Reference::with_digest(self.registry.clone(), self.repository.clone(), d.to_string())
            }
            (None, Some(t)) => {
                oci_client::Reference::with_tag(self.registry.clone(), self.repository.clone(), t.clone())
            }
            (None, None) => {
                oci_client::Reference::with_tag(self.registry.clone(), self.repository.clone(), "latest".into())
            }
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:5ab365f2b98ab885b1d9a6ebb2e2b06d0a7887d2c173a2b7d3f9e0e4f2f4f1cb";

    #[test]
    fn parse_references() {
        let r = ImageRef::parse("ghcr.io/siderolabs/imager:v1.14.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("ghcr.io", "siderolabs/imager", Some("v1.14.0"))
        );
        assert_eq!(r.to_string(), "ghcr.io/siderolabs/imager:v1.14.0");
        let r = ImageRef::parse(&format!("127.0.0.1:5000/siderolabs/gvisor:20231214.0@{D}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.digest.as_ref().unwrap().as_str(), D);
        assert_eq!(r.tagged(), "127.0.0.1:5000/siderolabs/gvisor:20231214.0");
        assert_eq!(r.basename(), "gvisor");
        let r = ImageRef::parse(&format!("localhost/x@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.tagged(), format!("localhost/x@{D}"));
        let r = ImageRef::parse("[::1]:5000/a/b:c").unwrap();
        assert_eq!(r.registry, "[::1]:5000");

        for bad in [
            "siderolabs/gvisor",
            "siderolabs/gvisor:1",
            "ghcr.io/siderolabs/imager",
            "ghcr.io/Siderolabs/imager:v1",
            "ghcr.io/siderolabs/imager:-x",
            "ghcr.io/siderolabs//imager:v1",
            "ghcr.io/siderolabs/imager@sha256:abc",
            "ghcr.io/siderolabs/imager@sha512:abc",
            "ghcr.io:99999999/x:y",
            "ghcr.io",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
        assert!(
            ImageRef::parse("siderolabs/gvisor:1").unwrap_err().contains("expected a registry host"),
            "the message says what is missing"
        );
    }

    #[test]
    fn digests() {
        let d = Digest::of(b"");
        assert_eq!(d.as_str(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(d.hex().len(), 64);
        assert!(Digest::parse("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855").is_err());
    }
}
