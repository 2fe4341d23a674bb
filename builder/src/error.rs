//! The builder's one error type, and the class of each error that the binary maps to an exit code.
//!
//! Bad input is reported as a [`Diagnostic`] that names the file, line, column and field path and says what
//! was expected and what was found. Other variants carry the path or value they are about.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::yaml::{FieldPath, Node, Span};

/// What kind of failure an error is; the binary turns it into an exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The user's input is wrong (exit 2).
    BadInput,
    /// The input asks for something talforge does not do (exit 2).
    Unsupported,
    /// A tool or file talforge needs is not installed (exit 3).
    MissingDependency,
    /// Reading or writing files failed (exit 2: the environment must be fixed, not talforge).
    Io,
    /// A check ran and failed (exit 1).
    CheckFailed,
    /// A bug in talforge (exit 70).
    Internal,
}

impl ErrorClass {
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorClass::CheckFailed => 1,
            ErrorClass::BadInput | ErrorClass::Unsupported | ErrorClass::Io => 2,
            ErrorClass::MissingDependency => 3,
            ErrorClass::Internal => 70,
        }
    }
}

/// A located complaint about an input file: `file:line:col: field.path: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub span: Span,
    pub path: FieldPath,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: impl Into<PathBuf>, span: Span, path: FieldPath, message: impl Into<String>) -> Self {
        Diagnostic { file: file.into(), span, path, message: message.into() }
    }

    /// A complaint about the field at `path`, positioned by looking the path up in the file's tree.
    pub fn at_path(file: &Path, root: &Node, path: FieldPath, message: impl Into<String>) -> Self {
        let span = path.span_in(root);
        Diagnostic::new(file, span, path, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.span.is_known() {
            write!(f, ":{}:{}", self.span.line, self.span.col)?;
        }
        if !self.path.is_root() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// Several diagnostics reported together (lint reports every broken file, not only the first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong in the builder library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Input(Box<Diagnostic>),

    #[error("{0}")]
    Inputs(Diagnostics),

    #[error("unsupported: {what}")]
    Unsupported { what: String },

    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: refusing to overwrite an existing file (use --force)", path.display())]
    Exists { path: PathBuf },

    #[error("{0}")]
    Patch(Box<crate::machine_config::PatchError>),

    #[error(transparent)]
    Tool(#[from] crate::tool::ToolError),

    #[error(transparent)]
    Assemble(#[from] AssembleError),

    #[error(transparent)]
    Release(#[from] crate::release::ReleaseError),

    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::machine_config::PatchError> for Error {
    fn from(e: crate::machine_config::PatchError) -> Self {
        Error::Patch(Box::new(e))
    }
}

impl From<Diagnostic> for Error {
    fn from(d: Diagnostic) -> Self {
        Error::Input(Box::new(d))
    }
}

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Input(_) | Error::Inputs(_) | Error::Exists { .. } => ErrorClass::BadInput,
            Error::Unsupported { .. } => ErrorClass::Unsupported,
            Error::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => ErrorClass::BadInput,
            Error::Read { .. } | Error::Write { .. } => ErrorClass::Io,
            Error::Patch(p) if matches!(**p, crate::machine_config::PatchError::Config { .. }) => ErrorClass::Internal,
            Error::Patch(_) => ErrorClass::BadInput,
            Error::Tool(crate::tool::ToolError::Missing { .. }) => ErrorClass::MissingDependency,
            Error::Tool(_) => ErrorClass::Io,
            Error::Assemble(a) => a.class(),
            Error::Release(r) => match r.class() {
                crate::release::ReleaseErrorClass::BadInput => ErrorClass::BadInput,
                crate::release::ReleaseErrorClass::MissingDependency => ErrorClass::MissingDependency,
                crate::release::ReleaseErrorClass::Io => ErrorClass::Io,
            },
            Error::Internal(_) => ErrorClass::Internal,
        }
    }

    pub fn unsupported(what: impl Into<String>) -> Self {
        Error::Unsupported { what: what.into() }
    }
}

/// Errors of the image-assembly modules, one variant per module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    #[error(transparent)]
    Disk(#[from] crate::assemble::disk::DiskError),
    #[error(transparent)]
    Initramfs(#[from] crate::assemble::initramfs::InitramfsError),
    #[error(transparent)]
    Uki(#[from] crate::assemble::uki::UkiError),
    #[error(transparent)]
    SecureBoot(#[from] crate::assemble::uki::SecureBootError),
    #[error(transparent)]
    Iso(#[from] crate::assemble::iso::IsoError),
    #[error(transparent)]
    Pxe(#[from] crate::assemble::pxe::PxeError),
    #[error(transparent)]
    Oci(#[from] crate::assemble::oci::OciError),
    #[error(transparent)]
    Qcow2(#[from] crate::assemble::qcow2::Qcow2Error),
    #[error(transparent)]
    Compress(#[from] crate::assemble::compress::CompressError),
}

impl AssembleError {
    pub fn class(&self) -> ErrorClass {
        use crate::assemble::{compress::CompressError as C, disk::DiskError as D, initramfs::InitramfsError as I};
        use crate::assemble::{iso::IsoError, oci::OciError, pxe::PxeError, qcow2::Qcow2Error, uki::SecureBootError};
        use crate::tool::ToolError;
        let tool = |t: &ToolError| match t {
            ToolError::Missing { .. } => ErrorClass::MissingDependency,
            _ => ErrorClass::Io,
        };
        match self {
            AssembleError::Disk(D::UnsupportedSectorSize { .. }) => ErrorClass::Unsupported,
            AssembleError::Disk(D::Io { .. }) => ErrorClass::Io,
            AssembleError::Disk(_) | AssembleError::Uki(_) => ErrorClass::BadInput,
            AssembleError::Initramfs(I::Tool(t)) => tool(t),
            AssembleError::Initramfs(I::Io { .. }) => ErrorClass::Io,
            AssembleError::Initramfs(_) => ErrorClass::BadInput,
            AssembleError::SecureBoot(SecureBootError::Read { .. } | SecureBootError::Write { .. }) => ErrorClass::Io,
            AssembleError::SecureBoot(SecureBootError::Rng(_)) => ErrorClass::Internal,
            AssembleError::SecureBoot(_) => ErrorClass::BadInput,
            AssembleError::Iso(IsoError::Io { .. }) => ErrorClass::Io,
            AssembleError::Iso(IsoError::Fat(D::Io { .. })) => ErrorClass::Io,
            AssembleError::Iso(_) => ErrorClass::BadInput,
            AssembleError::Pxe(PxeError::Io { .. }) => ErrorClass::Io,
            AssembleError::Pxe(_) => ErrorClass::BadInput,
            AssembleError::Oci(OciError::Io { .. }) => ErrorClass::Io,
            AssembleError::Oci(_) => ErrorClass::BadInput,
            AssembleError::Qcow2(Qcow2Error::Tool(t)) => tool(t),
            AssembleError::Qcow2(_) => ErrorClass::Io,
            AssembleError::Compress(C::UnknownFormat { .. }) => ErrorClass::BadInput,
            AssembleError::Compress(_) => ErrorClass::Io,
        }
    }
}

/// Lets `?` lift any assembly module's error into [`Error`].
macro_rules! assemble_from {
    ($($t:ty),*) => { $( impl From<$t> for Error { fn from(e: $t) -> Self { Error::Assemble(e.into()) } } )* };
}
assemble_from!(
    crate::assemble::disk::DiskError,
    crate::assemble::initramfs::InitramfsError,
    crate::assemble::uki::UkiError,
    crate::assemble::uki::SecureBootError,
    crate::assemble::iso::IsoError,
    crate::assemble::pxe::PxeError,
    crate::assemble::oci::OciError,
    crate::assemble::qcow2::Qcow2Error,
    crate::assemble::compress::CompressError
);

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostic_format() {
        let d = Diagnostic::new(
            "hardware-profiles/dell-r650.yaml",
            Span::new(14, 7),
            FieldPath::root().key("disks").index(1).key("role"),
            "expected one of install, osd, data; found \"osdd\"",
        );
        assert_eq!(
            d.to_string(),
            "hardware-profiles/dell-r650.yaml:14:7: disks[1].role: expected one of install, osd, data; found \"osdd\""
        );
        let e: Error = d.into();
        assert_eq!(e.class().exit_code(), 2);
    }
}
