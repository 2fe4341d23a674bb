//! Errors of the shape registry and the patch engine, each carrying what is needed to point at the user's input:
//! the patch origin, the position in the patch text, the field path in the document and the document's identity.
//!
//! The binary turns them into `file:line:col: path: message` diagnostics, so every variant exposes those parts
//! separately ([`PatchError::origin`], [`PatchError::span`], [`PatchError::field_path`], [`PatchError::document`]);
//! the `Display` text is a complete one-line message for logs and tests.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

use crate::quirks::Contract;
use crate::yaml::{FieldPath, Span};

/// Which document of a config: `v1alpha1`, `KubeletConfig`, `RegistryMirrorConfig/ghcr.io`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DocId {
    /// `""` for the legacy v1alpha1 document.
    pub api_version: String,
    /// `"v1alpha1"` for the legacy document.
    pub kind: String,
    /// `Some` for kinds whose Go type is a `NamedDocument` (even when the name is empty).
    pub name: Option<String>,
}

impl DocId {
    /// The legacy `v1alpha1.Config` document.
    pub fn v1alpha1() -> Self {
        DocId { api_version: String::new(), kind: "v1alpha1".into(), name: None }
    }

    pub fn is_v1alpha1(&self) -> bool {
        self.kind == "v1alpha1" && self.api_version.is_empty()
    }

    /// The key Talos's strategic merge matches documents by: `apiVersion/kind[/name]`.
    pub fn merge_key(&self) -> String {
        match &self.name {
            Some(n) => format!("{}/{}/{}", self.api_version, self.kind, n),
            None => format!("{}/{}", self.api_version, self.kind),
        }
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.kind, n),
            None => f.write_str(&self.kind),
        }
    }
}

/// `KubeletConfig` or `KubeletConfig: clusterDNS[0]`.
fn at(doc: &Option<Box<DocId>>, path: &FieldPath) -> String {
    match (doc.as_deref(), path.is_root()) {
        (Some(d), true) => d.to_string(),
        (Some(d), false) => format!("{d}: {path}"),
        (None, true) => "document".into(),
        (None, false) => path.to_string(),
    }
}

fn newer_hint(newer: &Option<(Contract, Contract)>) -> String {
    match newer {
        Some((first, used)) => format!(" (a Talos {first} document; this config is for the {used} contract)"),
        None => String::new(),
    }
}

/// A document that does not fit its Talos shape.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ShapeError {
    #[error("expected a YAML document (a mapping); found {found}")]
    NotAMapping { span: Span, found: &'static str },
    #[error("missing kind")]
    MissingKind { span: Span },
    #[error("missing apiVersion")]
    MissingApiVersion { span: Span },
    #[error("{kind:?} {version:?}: not registered{}", newer_hint(.newer))]
    NotRegistered { kind: String, version: String, span: Span, newer: Option<(Contract, Contract)> },
    #[error("{}: unknown keys found during decoding", at(.doc, .path))]
    UnknownKey { doc: Option<Box<DocId>>, path: FieldPath, span: Span },
    #[error("{}: expected {expected}; found {found}", at(.doc, .path))]
    Type { doc: Option<Box<DocId>>, path: FieldPath, span: Span, expected: String, found: String },
    #[error("{}: {message}", at(.doc, .path))]
    Invalid { doc: Option<Box<DocId>>, path: FieldPath, span: Span, message: String },
}

impl ShapeError {
    pub fn span(&self) -> Span {
        match self {
            ShapeError::NotAMapping { span, .. }
            | ShapeError::MissingKind { span }
            | ShapeError::MissingApiVersion { span }
            | ShapeError::NotRegistered { span, .. }
            | ShapeError::UnknownKey { span, .. }
            | ShapeError::Type { span, .. }
            | ShapeError::Invalid { span, .. } => *span,
        }
    }

    /// The field path within the document (root for document-level errors).
    pub fn field_path(&self) -> FieldPath {
        match self {
            ShapeError::UnknownKey { path, .. } | ShapeError::Type { path, .. } | ShapeError::Invalid { path, .. } => {
                path.clone()
            }
            _ => FieldPath::root(),
        }
    }

    pub fn document(&self) -> Option<&DocId> {
        match self {
            ShapeError::UnknownKey { doc, .. } | ShapeError::Type { doc, .. } | ShapeError::Invalid { doc, .. } => {
                doc.as_deref()
            }
            _ => None,
        }
    }
}

/// Where a patch came from: a file, a patch written inline in a file (positions are that file's), or a label
/// such as `--config-patch #2`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PatchOrigin {
    File(PathBuf),
    Inline { file: PathBuf, at: Span },
    Label(String),
}

impl PatchOrigin {
    /// Where the patch itself starts, when it is part of a larger file.
    fn position(&self) -> Span {
        match self {
            PatchOrigin::Inline { at, .. } => *at,
            _ => Span::UNKNOWN,
        }
    }
}

impl fmt::Display for PatchOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatchOrigin::File(p) | PatchOrigin::Inline { file: p, .. } => write!(f, "{}", p.display()),
            PatchOrigin::Label(l) => f.write_str(l),
        }
    }
}

/// `origin:line:col`: the error's position, else where an inline patch starts, else just the origin.
fn loc(origin: &PatchOrigin, span: Span) -> String {
    let span = if span.is_known() { span } else { origin.position() };
    if span.is_known() { format!("{origin}:{span}") } else { origin.to_string() }
}

/// A patch that could not be loaded or applied.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PatchError {
    /// The patch is neither a strategic merge patch nor a JSON patch; `message` is the error Talos would report.
    #[error("{}: {message}", loc(.origin, *.span))]
    Load { origin: PatchOrigin, span: Span, message: String },
    /// A patch document does not fit its shape (or its kind is not registered in the contract).
    #[error("{}: {source}", loc(.origin, .source.span()))]
    Shape { origin: PatchOrigin, source: Box<ShapeError> },
    /// A `$patch: delete` directive is malformed.
    #[error("{}: error processing patch delete statements: {message}", loc(.origin, *.span))]
    DeleteDirective { origin: PatchOrigin, span: Span, message: String },
    /// A `$patch: delete` names something the config does not have.
    #[error("{}: {message}", loc(.origin, *.span))]
    Delete { origin: PatchOrigin, span: Span, doc: Box<DocId>, path: FieldPath, message: String },
    /// Two values cannot be merged (e.g. different types inside free-form YAML).
    #[error("{}: {}: {message}", loc(.origin, *.span), at(&Some(.doc.clone()), .path))]
    Merge { origin: PatchOrigin, span: Span, doc: Box<DocId>, path: FieldPath, message: String },
    /// A JSON patch on a config with more than one document.
    #[error("{}: JSON6902 patches are not supported for multi-document machine configuration", loc(.origin, Span::UNKNOWN))]
    JsonMultiDoc { origin: PatchOrigin, documents: usize },
    /// An RFC 6902 operation failed; `message` is the json-patch library's text.
    #[error("{}: failure applying rfc6902 patches to talos machine config: {message}", loc(.origin, Span::UNKNOWN))]
    JsonPatch { origin: PatchOrigin, op: String, path: String, message: String },
    /// The config handed to the engine does not fit its shape (a generator bug, not the user's patch).
    #[error("config document {index}: {source}")]
    Config { index: usize, source: Box<ShapeError> },
    /// The result breaks a container rule (duplicate documents).
    #[error("{}: {message}", loc(.origin, Span::UNKNOWN))]
    Container { origin: PatchOrigin, message: String },
}

impl PatchError {
    /// The patch this error is about (`None` for errors in the config itself).
    pub fn origin(&self) -> Option<&PatchOrigin> {
        match self {
            PatchError::Load { origin, .. }
            | PatchError::Shape { origin, .. }
            | PatchError::DeleteDirective { origin, .. }
            | PatchError::Delete { origin, .. }
            | PatchError::Merge { origin, .. }
            | PatchError::JsonMultiDoc { origin, .. }
            | PatchError::JsonPatch { origin, .. }
            | PatchError::Container { origin, .. } => Some(origin),
            PatchError::Config { .. } => None,
        }
    }

    /// The position in the patch text, when the problem is in the patch (`Span::UNKNOWN` otherwise).
    pub fn span(&self) -> Span {
        match self {
            PatchError::Load { span, .. }
            | PatchError::DeleteDirective { span, .. }
            | PatchError::Delete { span, .. }
            | PatchError::Merge { span, .. } => *span,
            PatchError::Shape { source, .. } => source.span(),
            _ => Span::UNKNOWN,
        }
    }

    /// The field path within the affected document.
    pub fn field_path(&self) -> FieldPath {
        match self {
            PatchError::Delete { path, .. } | PatchError::Merge { path, .. } => path.clone(),
            PatchError::Shape { source, .. } | PatchError::Config { source, .. } => source.field_path(),
            _ => FieldPath::root(),
        }
    }

    /// The affected document, when known.
    pub fn document(&self) -> Option<&DocId> {
        match self {
            PatchError::Delete { doc, .. } | PatchError::Merge { doc, .. } => Some(&**doc),
            PatchError::Shape { source, .. } | PatchError::Config { source, .. } => source.document(),
            _ => None,
        }
    }
}
