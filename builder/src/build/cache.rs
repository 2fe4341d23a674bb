//! A content-addressed cache of built pieces (initramfs, UKIs, finished artifacts), keyed by the sha256 of
//! everything that went into them, so an unchanged rebuild links finished files instead of rebuilding them.
//!
//! Entries are written to a temporary folder and renamed into place whole, so a killed build never leaves a
//! half entry; two processes racing on the same key both end with a complete entry.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::release::hex;

/// Builds a cache key from labelled parts (each length-prefixed, so parts cannot run into each other).
#[derive(Debug, Default)]
pub struct Key(Sha256);

impl Key {
    pub fn new(kind: &str) -> Key {
        let mut k = Key(Sha256::new());
        k.part("kind", kind.as_bytes());
        k
    }

    pub fn part(&mut self, label: &str, data: &[u8]) -> &mut Key {
        for piece in [label.as_bytes(), data] {
            self.0.update((piece.len() as u64).to_le_bytes());
            self.0.update(piece);
        }
        self
    }

    pub fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}

#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root` (`$TALFORGE_CACHE/build`).
    pub fn new(root: PathBuf) -> Cache {
        Cache { root }
    }

    fn entry(&self, kind: &str, key: &str) -> PathBuf {
        self.root.join(kind).join(key)
    }

    /// The cached file `name` of entry `key`, if present.
    pub fn get(&self, kind: &str, key: &str, name: &str) -> Option<PathBuf> {
        let p = self.entry(kind, key).join(name);
        p.is_file().then_some(p)
    }

    /// Stores `files` (moved from where they are) as entry `key` and returns the entry folder.
    pub fn put(&self, kind: &str, key: &str, files: &[(&str, &Path)]) -> Result<PathBuf> {
        let dest = self.entry(kind, key);
        if dest.is_dir() {
            return Ok(dest);
        }
        let parent = self.root.join(kind);
        std::fs::create_dir_all(&parent).map_err(|source| Error::Write { path: parent.clone(), source })?;
        let tmp = parent.join(format!(".{key}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|source| Error::Write { path: tmp.clone(), source })?;
        for (name, src) in files {
            let to = tmp.join(name);
            if std::fs::rename(src, &to).is_err() {
                std::fs::copy(src, &to).map_err(|source| Error::Write { path: to.clone(), source })?;
            }
            // Artifacts are world-readable whatever the umask (they hold no secrets).
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644))
                .map_err(|source| Error::Write { path: to.clone(), source })?;
        }
        match std::fs::rename(&tmp, &dest) {
            Ok(()) => Ok(dest),
            // Another process stored the same key first: its entry is as good as ours.
            Err(_) if dest.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(dest)
            }
            Err(source) => Err(Error::Write { path: dest, source }),
        }
    }
}

/// Puts `src` at `dest`: a hard link when both are on one filesystem (cache entries are never modified), a copy
/// otherwise.
pub fn link_or_copy(src: &Path, dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Write { path: parent.to_owned(), source })?;
    }
    let _ = std::fs::remove_file(dest);
    if std::fs::hard_link(src, dest).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dest).map_err(|source| Error::Write { path: dest.to_owned(), source })?;
    Ok(())
}
