//! Specs: what the user wrote (the cluster file, hardware profiles, overlays), parsed strictly.
//!
//! Every file is read into a positioned YAML tree first and then decoded into its typed spec, so every
//! error, whether from decoding or from a later check, names the file, line, column and field path.

pub mod catalog;
pub mod cluster;
pub mod overlay;
pub mod profile;
pub mod units;
pub mod version_req;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Diagnostic, Error, Result};
use crate::yaml::{self, FieldPath, Node};

pub use catalog::Catalog;
pub use cluster::{ClusterSpec, NodeSpec, Role};
pub use overlay::OverlaySpec;
pub use profile::HardwareProfileSpec;

/// The one API version talforge files use today.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum ApiVersion {
    #[serde(rename = "talforge.dev/v1alpha1")]
    V1Alpha1,
}

/// A parsed input file: its path as the user should see it, its text and its positioned tree.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    pub root: Node,
}

impl Source {
    /// Parses `text` as one YAML document.
    pub fn parse(path: impl Into<PathBuf>, text: String) -> Result<Source> {
        let path = path.into();
        let root = yaml::parse_document(&text)
            .map_err(|e| Diagnostic::new(&path, e.span, FieldPath::root(), format!("invalid YAML: {}", e.message)))?;
        Ok(Source { path, text, root })
    }

    pub fn read(path: &Path) -> Result<Source> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        Source::parse(path, text)
    }

    /// Decodes the whole file into a typed spec.
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> Result<T> {
        if matches!(self.root.value, yaml::Value::Null) {
            return Err(Diagnostic::new(&self.path, self.root.span, FieldPath::root(), "the file is empty").into());
        }
        yaml::from_node(&self.root).map_err(|e| Diagnostic::new(&self.path, e.span, e.path(), e.message.clone()).into())
    }

    /// A complaint about the field at `path` in this file.
    pub fn diag(&self, path: FieldPath, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at_path(&self.path, &self.root, path, message)
    }
}

/// A machine-config patch as written in a spec: a file path (a leading `@`, as talosctl takes it, is allowed),
/// or the patch itself inline (a mapping is a strategic-merge patch, a list an RFC 6902 patch).
#[derive(Clone, Debug, PartialEq)]
pub enum PatchRef {
    File(PathBuf),
    Inline(Node),
}

impl Serialize for PatchRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            PatchRef::File(p) => s.collect_str(&p.display()),
            PatchRef::Inline(_) => s.serialize_str("<inline>"),
        }
    }
}

impl<'de> Deserialize<'de> for PatchRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let node = Node::deserialize(d)?;
        match node.value {
            yaml::Value::Str(s) => {
                let s = s.strip_prefix('@').unwrap_or(&s).to_owned();
                if s.is_empty() {
                    return Err(serde::de::Error::custom("expected a patch file path; found an empty string"));
                }
                Ok(PatchRef::File(PathBuf::from(s)))
            }
            yaml::Value::Map(_) | yaml::Value::Seq(_) => Ok(PatchRef::Inline(node)),
            _ => Err(serde::de::Error::custom(format!(
                "expected a patch file path, an inline patch mapping or an RFC 6902 list; found {}",
                node.kind_name()
            ))),
        }
    }
}

impl fmt::Display for PatchRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchRef::File(p) => write!(f, "{}", p.display()),
            PatchRef::Inline(_) => f.write_str("<inline patch>"),
        }
    }
}
