//! What can go wrong getting a release, and which class each failure belongs to.
//!
//! Every message is lowercase, names the image reference (and digest) or file it is about, and says what was
//! expected and what was found. The builder folds [`ReleaseError`] into its own error with `#[from]` and maps
//! [`ReleaseError::class`] onto its exit codes: bad input is exit 2, a missing dependency (something only a
//! run with network access can provide) is exit 3, I/O is the environment's fault (exit 2 in the builder).

use std::path::PathBuf;
use std::time::Duration;

/// The class of a [`ReleaseError`]; the builder maps it to an exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseErrorClass {
    /// The user's input (cluster file, lock, release directory, image contents) is wrong: exit 2.
    BadInput,
    /// Something only a run with network access can provide is missing (offline mode): exit 3.
    MissingDependency,
    /// Reading, writing or talking to a registry failed: exit 2.
    Io,
}

/// Everything that can go wrong getting a release's inputs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// Bad input: a reference that is not a valid image reference, extension name or path.
    #[error("invalid reference {reference:?}: {message}")]
    InvalidReference { reference: String, message: String },

    /// Bad input: the release source in the cluster file (or on the command line) is not usable.
    #[error("invalid release source: {message}")]
    InvalidSource { message: String },

    /// Bad input: a release directory lacks some of the boot files.
    #[error("{}: not a talos release for {arch}: missing {}", root.display(), missing.join(", "))]
    NotARelease { root: PathBuf, arch: String, missing: Vec<String> },

    /// Bad input: an extension is not where its reference says.
    #[error("extension {reference}: not found in {place}")]
    ExtensionNotFound { reference: String, place: String },

    /// Bad input: an extension image or directory is not shaped like a Talos extension.
    #[error("extension {reference}: {message}")]
    BadExtension { reference: String, message: String },

    /// Bad input: an image (tag) is not in the registry or the OCI layout.
    #[error("{reference}: not found in {place}")]
    ImageNotFound { reference: String, place: String },

    /// Bad input: an image index has no manifest for the wanted platform.
    #[error("{reference}: expected an image for linux/{arch}; found {}", if available.is_empty() { "no platforms".to_owned() } else { available.join(", ") })]
    NoPlatform { reference: String, arch: String, available: Vec<String> },

    /// Bad input: a manifest, index or layer is malformed or of a kind talforge does not read.
    #[error("{reference} ({digest}): {message}")]
    BadImage { reference: String, digest: String, message: String },

    /// Bad input: the image does not hold a file the release needs.
    #[error("{reference}: expected {path} in the image; {found}")]
    MissingFile { reference: String, path: String, found: String },

    /// Bad input: a layer entry would write outside the target, or is a device file.
    #[error("{reference} (layer {layer}): unsafe entry {path:?}: {reason}")]
    UnsafeEntry { reference: String, layer: String, path: String, reason: String },

    /// I/O: the content served (or cached) for a digest does not hash to it.
    #[error("{reference}: expected content with digest {expected}; found {found}{}", from.as_ref().map(|p| format!(" (in {})", p.display())).unwrap_or_default())]
    DigestMismatch { reference: String, expected: String, found: String, from: Option<PathBuf> },

    /// Bad input: `talforge.lock` cannot be read as a lock file.
    #[error("{}{}: {message}", path.display(), if *line > 0 { format!(":{line}:{col}") } else { String::new() })]
    LockParse { path: PathBuf, line: u32, col: u32, message: String },

    /// Bad input: the registry (or layout) now serves a different digest than `talforge.lock` pins.
    #[error(
        "{reference}: talforge.lock pins {locked}; the source now serves {found} (re-run with --update-lock to \
         accept it)"
    )]
    LockMismatch { reference: String, locked: String, found: String },

    /// Missing dependency: offline, and the lock does not pin a reference.
    #[error("offline: {reference} is not pinned in {}; run once without --offline", lock.display())]
    OfflineNotLocked { reference: String, lock: PathBuf },

    /// Missing dependency: offline, and a pinned blob is not in the cache.
    #[error("offline: {reference} ({digest}) is not in the cache at {}; run once without --offline", path.display())]
    OfflineNotCached { reference: String, digest: String, path: PathBuf },

    /// I/O: the registry answered with an error or could not be reached.
    #[error("{reference}: registry error: {message}")]
    Registry { reference: String, message: String },

    /// I/O: the registry did not answer in time.
    #[error("{reference}: registry did not answer within {}s", after.as_secs_f64())]
    Timeout { reference: String, after: Duration },

    /// I/O: reading a file failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// I/O: writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ReleaseError {
    /// The class of this error (bad input, missing dependency or I/O).
    pub fn class(&self) -> ReleaseErrorClass {
        use ReleaseError::*;
        match self {
            InvalidReference { .. }
            | InvalidSource { .. }
            | NotARelease { .. }
            | ExtensionNotFound { .. }
            | BadExtension { .. }
            | ImageNotFound { .. }
            | NoPlatform { .. }
            | BadImage { .. }
            | MissingFile { .. }
            | UnsafeEntry { .. }
            | LockParse { .. }
            | LockMismatch { .. } => ReleaseErrorClass::BadInput,
            OfflineNotLocked { .. } | OfflineNotCached { .. } => ReleaseErrorClass::MissingDependency,
            Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => ReleaseErrorClass::BadInput,
            DigestMismatch { .. } | Registry { .. } | Timeout { .. } | Read { .. } | Write { .. } => {
                ReleaseErrorClass::Io
            }
        }
    }

    pub(crate) fn read(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReleaseError::Read { path: path.into(), source }
    }

    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReleaseError::Write { path: path.into(), source }
    }
}

pub type Result<T, E = ReleaseError> = std::result::Result<T, E>;
