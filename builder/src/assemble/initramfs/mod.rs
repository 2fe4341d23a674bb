//! Boot-image assembly: system extensions and the initramfs, rebuilt the way Talos's imager rebuilds
//! `initramfs.xz` (pkg/imager/extensions, internal/pkg/extensions, pkg/machinery/extensions), but byte-reproducibly
//! and without root or external archivers.
//!
//! [`build_initramfs`] takes the release `initramfs.xz` bytes and the loaded [`Extension`]s and produces
//! `[uncompressed newc cpio: kernel/x86/microcode/*]` + `base` (unchanged) + `zstd(newc cpio: <j>.sqsh,
//! modules.dep.sqsh, extensions.yaml, usr/lib/firmware/**)`. Every archive member is root-owned with the build
//! epoch as its mtime; squashfs images are written by backhand, the cpio archives by [`cpio`], and zstd runs
//! single-threaded, so the same inputs give the same bytes on any machine, in any timezone, under any umask.

pub mod build;
pub mod cpio;
pub mod extensions;
pub mod squashfs;

use std::path::PathBuf;

pub use build::{ExtensionSummary, InitramfsArtifact, build_initramfs, content_key, content_key_for_digest};
pub use extensions::{Extension, Manifest, Metadata};

use crate::tool::ToolError;

/// Everything that can go wrong loading extensions or building the initramfs.
///
/// Bad input (fix the extension or the release): [`Self::ExtensionLayout`], [`Self::Manifest`],
/// [`Self::Incompatible`], [`Self::ForbiddenPath`], [`Self::WorldWritable`], [`Self::SpecialFile`],
/// [`Self::BadSymlink`], [`Self::Microcode`], [`Self::ModulesKernelMismatch`], [`Self::Conflict`],
/// [`Self::Cpio`], [`Self::BaseRootfs`], [`Self::Squashfs`] (reading), [`Self::UnsupportedTalos`],
/// [`Self::EpochOutOfRange`]. Missing dependency: [`Self::Tool`] with [`ToolError::Missing`]. Environment:
/// [`Self::Io`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitramfsError {
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("extension {}: {message}", .dir.display())]
    ExtensionLayout { dir: PathBuf, message: String },
    #[error("extension {}: manifest.yaml: {message}", .dir.display())]
    Manifest { dir: PathBuf, message: String },
    #[error("extension \"{name}\" {version} supports Talos {constraint}; the image is for {talos}")]
    Incompatible { name: String, version: String, constraint: String, talos: String },
    #[error("extension \"{name}\": path \"{path}\" is not allowed in extensions (allowed: {})", .allowed.join(", "))]
    ForbiddenPath { name: String, path: String, allowed: Vec<&'static str> },
    #[error("extension \"{name}\": {path:?} is world-writable (mode {mode:04o}); expected no write bit for others")]
    WorldWritable { name: String, path: String, mode: u32 },
    #[error("extension \"{name}\": {path:?} is a {kind}; expected only directories, regular files and symlinks")]
    SpecialFile { name: String, path: String, kind: &'static str },
    #[error("extension \"{name}\": symlink {path:?} -> {target:?} {problem}")]
    BadSymlink { name: String, path: String, target: String, problem: &'static str },
    #[error("extension \"{name}\": microcode {path:?} is a {kind}; expected a regular file")]
    Microcode { name: String, path: String, kind: &'static str },
    #[error(
        "extension \"{name}\" has kernel modules for {} under usr/lib/modules; expected {expected} (the kernel's version)",
        if .found.is_empty() { "no kernel version".to_owned() } else { .found.join(", ") }
    )]
    ModulesKernelMismatch { name: String, expected: String, found: Vec<String> },
    #[error("extensions \"{first}\" and \"{second}\" both provide {path:?} in the initramfs, once as a directory")]
    Conflict { path: String, first: String, second: String },
    #[error("{context}: at byte {offset}: {message}")]
    Cpio { context: String, offset: u64, message: String },
    #[error("base initramfs: {message}")]
    BaseRootfs { message: String },
    #[error("{context}: {source}")]
    Squashfs {
        context: String,
        #[source]
        source: backhand::BackhandError,
    },
    #[error("Talos {talos} is not supported here: expected v1.10.0 or later (older releases use /lib/modules and xz)")]
    UnsupportedTalos { talos: String },
    #[error("epoch {epoch} does not fit the 32-bit timestamps of cpio and squashfs; expected at most 4294967295")]
    EpochOutOfRange { epoch: u64 },
    #[error(transparent)]
    Tool(#[from] ToolError),
}

impl InitramfsError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| InitramfsError::Io { action, path, source }
    }

    /// Whether a program talforge needs (here `depmod`) is not installed.
    pub fn is_missing_dependency(&self) -> bool {
        matches!(self, InitramfsError::Tool(ToolError::Missing { .. }))
    }
}

/// Prepares `root/rel` for writing without following links: every existing ancestor between `root` and it must
/// be a real directory (else `Err` with the offending path, so nothing is written outside `root` through a
/// symlink), and an existing symlink or file at `root/rel` itself is removed. Missing parents are created.
pub(crate) fn prepare_path(root: &std::path::Path, rel: &std::path::Path) -> Result<PathBuf, InitramfsError> {
    std::fs::create_dir_all(root).map_err(InitramfsError::io("create", root))?;
    let mut cur = root.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, c) in parts.iter().enumerate() {
        cur.push(c);
        let last = i + 1 == parts.len();
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if last => {
                if !m.is_dir() {
                    std::fs::remove_file(&cur).map_err(InitramfsError::io("replace", &cur))?;
                }
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(InitramfsError::BaseRootfs {
                    message: format!(
                        "{} is a symlink or file where a directory is needed; refusing to write through it",
                        cur.strip_prefix(root).unwrap_or(&cur).display()
                    ),
                });
            }
            Err(_) if last => {}
            Err(_) => std::fs::create_dir(&cur).map_err(InitramfsError::io("create", &cur))?,
        }
    }
    Ok(cur)
}

/// What one archive or filesystem member is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    /// A regular file whose bytes are read from `source` when the archive is written.
    File {
        source: FileSource,
        len: u64,
    },
    /// A symbolic link and its target, as bytes.
    Symlink {
        target: Vec<u8>,
    },
}

/// Where a regular file's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileSource {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

/// One member of a tree to be archived: a relative path without leading `/` (bytes, as Linux names are),
/// its permission bits (`0o7777` part of the mode) and what it is. Owner, group and times are not kept: every
/// member is written as root-owned with the build epoch as its mtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: Vec<u8>,
    pub mode: u32,
    pub kind: EntryKind,
}

impl Entry {
    pub fn dir(path: impl Into<Vec<u8>>, mode: u32) -> Self {
        Entry { path: path.into(), mode, kind: EntryKind::Dir }
    }

    pub fn bytes(path: impl Into<Vec<u8>>, mode: u32, data: Vec<u8>) -> Self {
        let len = data.len() as u64;
        Entry { path: path.into(), mode, kind: EntryKind::File { source: FileSource::Bytes(data), len } }
    }

    pub fn file(path: impl Into<Vec<u8>>, mode: u32, source: PathBuf, len: u64) -> Self {
        Entry { path: path.into(), mode, kind: EntryKind::File { source: FileSource::Path(source), len } }
    }

    pub fn symlink(path: impl Into<Vec<u8>>, target: impl Into<Vec<u8>>) -> Self {
        Entry { path: path.into(), mode: 0o777, kind: EntryKind::Symlink { target: target.into() } }
    }

    /// The path for messages (lossy for names that are not UTF-8).
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }

    /// The file type bits of a Linux `st_mode` for this member.
    pub fn type_bits(&self) -> u32 {
        match self.kind {
            EntryKind::Dir => 0o040000,
            EntryKind::File { .. } => 0o100000,
            EntryKind::Symlink { .. } => 0o120000,
        }
    }
}

/// A set of members keyed by path, iterated in `LC_ALL=C` byte order, with every parent directory present.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    entries: std::collections::BTreeMap<Vec<u8>, Entry>,
}

impl Tree {
    pub fn new() -> Self {
        Tree::default()
    }

    /// Adds `entry`, creating missing parent directories with mode 0755. A member already at that path is
    /// replaced (the later one wins, as in an overlay) unless one of the two is a directory and the other not:
    /// that returns the existing entry as the error.
    pub fn insert(&mut self, entry: Entry) -> Result<(), Box<Entry>> {
        let mut end = 0;
        while let Some(i) = entry.path[end..].iter().position(|&b| b == b'/') {
            let parent = entry.path[..end + i].to_vec();
            end += i + 1;
            match self.entries.get(&parent) {
                Some(e) if e.kind == EntryKind::Dir => {}
                Some(e) => return Err(Box::new(e.clone())),
                None => {
                    self.entries.insert(parent.clone(), Entry::dir(parent, 0o755));
                }
            }
        }
        match self.entries.get(&entry.path) {
            Some(old) if (old.kind == EntryKind::Dir) != (entry.kind == EntryKind::Dir) => Err(Box::new(old.clone())),
            _ => {
                self.entries.insert(entry.path.clone(), entry);
                Ok(())
            }
        }
    }

    pub fn get(&self, path: &[u8]) -> Option<&Entry> {
        self.entries.get(path)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Members in byte order of their paths.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }
}
