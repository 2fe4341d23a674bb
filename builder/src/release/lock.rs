//! `talforge.lock`: the digest of every image a release was built from, next to the cluster file.
//!
//! ```yaml
//! # talforge.lock: ...
//! apiVersion: talforge.dev/v1alpha1
//! catalog:
//!     digest: sha256:…
//!     image: ghcr.io/siderolabs/extensions:v1.14.0
//! extensions:
//!     ghcr.io/example/ext:1.0:
//!         digest: sha256:…
//!         image: ghcr.io/example/ext:1.0
//!     siderolabs/gvisor:
//!         digest: sha256:…
//!         image: ghcr.io/siderolabs/gvisor:20231214.0
//! imager:
//!     digest: sha256:…
//!     image: ghcr.io/siderolabs/imager:v1.14.0
//! kind: ReleaseLock
//! talos: v1.14.0
//! ```
//!
//! `image` is the reference pulled (registry host included, no digest) and `digest` what it resolved to: an
//! index digest for multi-platform images, so one lock serves every architecture. Extensions are keyed by the
//! reference as the cluster file writes it. The file is written with the project's go-yaml-compatible
//! emitter, every mapping's keys sorted, so the same pins always give the same bytes; it is read strictly
//! (unknown or missing fields, bad digests and duplicate keys are errors with line and column).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::error::{ReleaseError, Result};
use super::reference::Digest;
use crate::yaml::emit::{go_map_key_cmp, to_string};
use crate::yaml::{FieldPath, Mapping, Node, from_node, parse_document};

pub const API_VERSION: &str = "talforge.dev/v1alpha1";
pub const KIND: &str = "ReleaseLock";
/// The file name, next to the cluster file.
pub const FILE_NAME: &str = "talforge.lock";

const HEADER: &str = "# talforge.lock: digests of the Talos release images (written by talforge; commit it)\n";

/// One pinned image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The reference pulled, without digest: `ghcr.io/siderolabs/imager:v1.14.0`.
    pub image: String,
    pub digest: Digest,
}

/// The pins of one release.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    /// The Talos version the pins were made for (informational; pins are matched by `image`).
    pub talos: String,
    pub imager: Option<Pin>,
    pub catalog: Option<Pin>,
    /// Extension pins by the reference as written in the cluster file.
    pub extensions: BTreeMap<String, Pin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LockDoc {
    api_version: String,
    kind: String,
    talos: String,
    #[serde(default)]
    imager: Option<PinDoc>,
    #[serde(default)]
    catalog: Option<PinDoc>,
    #[serde(default)]
    extensions: BTreeMap<String, PinDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PinDoc {
    image: String,
    digest: String,
}

impl Lock {
    pub fn new(talos: impl Into<String>) -> Lock {
        Lock { talos: talos.into(), ..Lock::default() }
    }

    /// Whether the lock pins nothing.
    pub fn is_empty(&self) -> bool {
        self.imager.is_none() && self.catalog.is_none() && self.extensions.is_empty()
    }

    /// Reads `path`; `Ok(None)` when there is no such file.
    pub fn read(path: &Path) -> Result<Option<Lock>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Lock::parse(&text, path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ReleaseError::read(path, e)),
        }
    }

    /// Parses lock text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Lock> {
        let err = |span: crate::yaml::Span, message: String| ReleaseError::LockParse {
            path: path.to_owned(),
            line: span.line,
            col: span.col,
            message,
        };
        let root = parse_document(text).map_err(|e| err(e.span, e.message))?;
        let doc: LockDoc = from_node(&root).map_err(|e| err(e.span, e.to_string()))?;
        let at = |p: FieldPath, m: String| {
            let span = p.span_in(&root);
            err(span, format!("{p}: {m}"))
        };
        if doc.api_version != API_VERSION {
            return Err(at(
                FieldPath::root().key("apiVersion"),
                format!("expected {API_VERSION}; found {:?}", doc.api_version),
            ));
        }
        if doc.kind != KIND {
            return Err(at(FieldPath::root().key("kind"), format!("expected {KIND}; found {:?}", doc.kind)));
        }
        let pin = |p: FieldPath, d: PinDoc| -> Result<Pin> {
            let digest = Digest::parse(&d.digest).map_err(|m| at(p.key("digest"), m))?;
            if d.image.is_empty() || d.image.contains('@') {
                return Err(at(p.key("image"), format!("expected host/repository:tag; found {:?}", d.image)));
            }
            Ok(Pin { image: d.image, digest })
        };
        let imager = doc.imager.map(|d| pin(FieldPath::root().key("imager"), d)).transpose()?;
        let catalog = doc.catalog.map(|d| pin(FieldPath::root().key("catalog"), d)).transpose()?;
        let mut extensions = BTreeMap::new();
        for (k, d) in doc.extensions {
            let p = pin(FieldPath::root().key("extensions").key(k.clone()), d)?;
            extensions.insert(k, p);
        }
        Ok(Lock { talos: doc.talos, imager, catalog, extensions })
    }

    /// The lock as YAML: a comment line, then the document with every mapping's keys sorted.
    pub fn to_yaml(&self) -> String {
        fn pin(p: &Pin) -> Node {
            let mut m = Mapping::new();
            m.insert("image", Node::str(&p.image));
            m.insert("digest", Node::str(p.digest.as_str()));
            m.sort_by(go_map_key_cmp);
            Node::map(m)
        }
        let mut m = Mapping::new();
        m.insert("apiVersion", Node::str(API_VERSION));
        m.insert("kind", Node::str(KIND));
        m.insert("talos", Node::str(&self.talos));
        if let Some(p) = &self.imager {
            m.insert("imager", pin(p));
        }
        if let Some(p) = &self.catalog {
            m.insert("catalog", pin(p));
        }
        if !self.extensions.is_empty() {
            let mut e = Mapping::new();
            for (k, p) in &self.extensions {
                e.insert(k.clone(), pin(p));
            }
            e.sort_by(go_map_key_cmp);
            m.insert("extensions", Node::map(e));
        }
        m.sort_by(go_map_key_cmp);
        format!("{HEADER}{}", to_string(&Node::map(m)))
    }

    /// Writes the lock to `path` atomically (a temporary file in the same directory, then a rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| FILE_NAME.into());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let res = std::fs::write(&tmp, self.to_yaml()).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(ReleaseError::write(path, e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:5ab365f2b98ab885b1d9a6ebb2e2b06d0a7887d2c173a2b7d3f9e0e4f2f4f1cb";
    const B: &str = "sha256:6f9e2d0c8a9d18b9a54c3d0f7c6b3a2f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b";

    fn sample() -> Lock {
        let pin = |i: &str, d: &str| Pin { image: i.into(), digest: Digest::parse(d).unwrap() };
        let mut l = Lock::new("v1.14.0");
        l.imager = Some(pin("ghcr.io/siderolabs/imager:v1.14.0", A));
        l.catalog = Some(pin("ghcr.io/siderolabs/extensions:v1.14.0", B));
        l.extensions.insert("siderolabs/gvisor".into(), pin("ghcr.io/siderolabs/gvisor:20231214.0", A));
        l.extensions.insert("ghcr.io/example/ext:1.0".into(), pin("ghcr.io/example/ext:1.0", B));
        l
    }

    #[test]
    fn round_trip_is_byte_stable() {
        let l = sample();
        let text = l.to_yaml();
        assert_eq!(
            text,
            format!(
                "{HEADER}apiVersion: talforge.dev/v1alpha1\ncatalog:\n    digest: {B}\n    image: ghcr.io/siderolabs/extensions:v1.14.0\n\
                 extensions:\n    ghcr.io/example/ext:1.0:\n        digest: {B}\n        image: ghcr.io/example/ext:1.0\n\
                 \x20   siderolabs/gvisor:\n        digest: {A}\n        image: ghcr.io/siderolabs/gvisor:20231214.0\n\
                 imager:\n    digest: {A}\n    image: ghcr.io/siderolabs/imager:v1.14.0\nkind: ReleaseLock\ntalos: v1.14.0\n"
            )
        );
        let back = Lock::parse(&text, Path::new("talforge.lock")).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.to_yaml(), text);

        let t = tempfile::tempdir().unwrap();
        let p = t.path().join(FILE_NAME);
        assert_eq!(Lock::read(&p).unwrap(), None);
        l.write(&p).unwrap();
        assert_eq!(Lock::read(&p).unwrap(), Some(l));
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn strict_parsing() {
        let p = Path::new("talforge.lock");
        let good = sample().to_yaml();
        let cases = [
            (
                good.replace("kind: ReleaseLock\n", "kind: ReleaseLock\nextra: 1\n"),
                ":17:1: extra:",
                "unknown field \"extra\"",
            ),
            (
                good.replace("    image: ghcr.io/siderolabs/imager", "    imgae: ghcr.io/siderolabs/imager"),
                ":15:5",
                "imager.imgae: unknown field \"imgae\"",
            ),
            (
                good.replace(
                    &format!("    digest: {A}\n    image: ghcr.io/siderolabs/imager"),
                    "    digest: sha256:abc\n    image: ghcr.io/siderolabs/imager",
                ),
                ":14:13",
                "imager.digest: expected 64 lowercase hex digits",
            ),
            (
                good.replace("kind: ReleaseLock", "kind: Cluster"),
                ":16:7",
                "kind: expected ReleaseLock; found \"Cluster\"",
            ),
            (good.replace("talos: v1.14.0\n", ""), "talforge.lock", "talos: required field is missing"),
            (format!("{good}talos: again\n"), ":18:1", "duplicate key \"talos\""),
            ("[".to_owned(), "talforge.lock:", ""),
        ];
        for (text, at, msg) in cases {
            let e = Lock::parse(&text, p).unwrap_err();
            let s = e.to_string();
            assert!(s.starts_with("talforge.lock") && s.contains(at) && s.contains(msg), "{s}");
            assert_eq!(e.class(), super::super::ReleaseErrorClass::BadInput);
        }
    }
}
