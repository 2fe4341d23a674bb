//! A content-addressed cache of built pieces (initramfs, UKIs, finished artifacts), keyed by the sha256 of
//! everything that went into them, so an unchanged rebuild links finished files instead of rebuilding them.
//!
//! Entries are written to a temporary folder and renamed into place whole, so a killed build never leaves a
//! half entry; two processes racing on the same key both end with a complete entry.
//!
//! Output folders get hard links to entries, so a user who changes an output in place (boots a qcow2 image,
//! `qemu-img resize`s it, edits a file) changes the entry too. Each entry therefore records the size and mtime
//! of its files (`.stamp`); an entry whose files no longer match is dropped and rebuilt instead of being handed
//! out changed. The stamp also holds each file's sha256, taken when it was stored, so a warm build's manifest
//! need not read the files again.

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

    /// The cached file `name` of entry `key`, if present and unchanged since it was stored.
    pub fn get(&self, kind: &str, key: &str, name: &str) -> Option<Cached> {
        let entry = self.entry(kind, key);
        let p = entry.join(name);
        if !p.is_file() {
            return None;
        }
        let recorded = std::fs::read_to_string(entry.join(STAMP)).unwrap_or_default();
        let found = stamp_line(name, &p).ok().and_then(|now| {
            recorded.lines().find_map(|l| {
                let sha = l.strip_prefix(now.as_str())?.strip_prefix(' ')?;
                (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| sha.to_owned())
            })
        });
        if let Some(sha256) = found {
            let size = std::fs::metadata(&p).map(|m| m.len()).ok()?;
            return Some(Cached { path: p, size, sha256 });
        }
        // Changed in place through a hard link (or stored by an older talforge): drop it, whole.
        tracing::warn!(entry = %entry.display(), "cache entry changed since it was stored; rebuilding it");
        let trash = entry.with_file_name(format!(".{key}.stale-{}", std::process::id()));
        if std::fs::rename(&entry, &trash).is_ok() {
            let _ = std::fs::remove_dir_all(&trash);
        }
        None
    }

    /// Stores one file as entry `key` (see [`Cache::put`]) and returns it as cached.
    pub fn put_file(&self, kind: &str, key: &str, name: &str, src: &Path) -> Result<Cached> {
        let entry = self.put(kind, key, &[(name, src)])?;
        self.get(kind, key, name)
            .ok_or_else(|| Error::Internal(format!("cache entry {} vanished after it was stored", entry.display())))
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
        let mut stamp = String::new();
        for (name, _) in files {
            let path = tmp.join(name);
            let line = stamp_line(name, &path).map_err(|source| Error::Read { path: path.clone(), source })?;
            let (_, sha256) = crate::build::manifest::file_digest(&path)?;
            stamp.push_str(&format!("{line} {sha256}\n"));
        }
        std::fs::write(tmp.join(STAMP), stamp).map_err(|source| Error::Write { path: tmp.join(STAMP), source })?;
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

/// A file of a cache entry, with what its stamp says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

/// The file in each entry recording its files' sizes and mtimes.
const STAMP: &str = ".stamp";

/// `name size mtime-seconds mtime-nanoseconds` of an entry file.
fn stamp_line(name: &str, path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path)?;
    Ok(format!("{name} {} {} {}", m.len(), m.mtime(), m.mtime_nsec()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_changed_through_a_hard_link_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let made = dir.path().join("made");
        std::fs::write(&made, b"disk image").unwrap();
        let entry = cache.put("artifacts", "k1", &[("disk.raw", made.as_path())]).unwrap();
        let out = dir.path().join("out/disk.raw");
        link_or_copy(&entry.join("disk.raw"), &out).unwrap();
        let hit = cache.get("artifacts", "k1", "disk.raw").unwrap();
        assert_eq!(hit.path, entry.join("disk.raw"));
        assert_eq!((hit.size, hit.sha256.as_str()), (10, crate::release::hex(&Sha256::digest(b"disk image")).as_str()));
        // Linking the same entry again does not count as a change.
        link_or_copy(&entry.join("disk.raw"), &dir.path().join("out2")).unwrap();
        assert!(cache.get("artifacts", "k1", "disk.raw").is_some());
        // The user writes into the output (QEMU booting a qcow2 does): the entry is not handed out again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&out)
            .and_then(|mut f| {
                use std::io::Write as _;
                f.write_all(b"DISK")
            })
            .unwrap();
        assert_eq!(cache.get("artifacts", "k1", "disk.raw"), None);
        assert!(!entry.exists(), "the changed entry is removed");
        // The output the user changed is left alone.
        assert_eq!(std::fs::read(&out).unwrap(), b"DISK image");
    }
}
