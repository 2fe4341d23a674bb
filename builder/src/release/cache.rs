//! The content-addressed download cache, shared by every talforge process of a user.
//!
//! Layout under the cache root (`${TALFORGE_CACHE:-$HOME/.cache/talforge}`):
//!
//! ```text
//! oci/blobs/sha256/<hex>        every blob fetched from a registry: indexes, manifests, layers (as served)
//! oci/trees/sha256/<hex>/       what talforge extracted from the image whose manifest has that digest:
//!                                 imager      usr/install/<arch>/{vmlinuz,initramfs.xz,systemd-boot.efi,systemd-stub.efi}
//!                                 catalogue   image-digests
//!                                 extension   manifest.yaml, rootfs/
//! oci/tmp/                      work files; anything here older than a day is removed
//! ```
//!
//! Everything is written under `oci/tmp/` first and renamed into place, so a final name only ever holds
//! complete, verified content, and two processes fetching the same blob or tree at once both succeed: the
//! second rename of a blob replaces identical bytes; the second rename of a tree fails because the first one
//! won, and its copy is dropped. Blobs are verified against their digest whenever they are read; trees are
//! trusted once renamed into place (delete `oci/trees/` to rebuild them).

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::error::{ReleaseError, Result};
use super::reference::Digest;

/// The cache root and the paths inside it.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Cache {
    /// A cache rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    /// `$TALFORGE_CACHE`, else `$HOME/.cache/talforge`.
    pub fn default_root() -> Result<PathBuf> {
        if let Some(p) = std::env::var_os("TALFORGE_CACHE").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
            Some(h) => Ok(PathBuf::from(h).join(".cache/talforge")),
            None => Err(ReleaseError::InvalidSource {
                message: "expected $TALFORGE_CACHE or $HOME to locate the cache; found neither".into(),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` is (or would be) stored.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("oci/blobs/sha256").join(digest.hex())
    }

    /// Where the tree extracted from the image with manifest `digest` is (or would be) stored.
    pub fn tree_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("oci/trees/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    fn tmp_dir(&self) -> Result<PathBuf> {
        let dir = self.root.join("oci/tmp");
        fs::create_dir_all(&dir).map_err(|e| ReleaseError::write(&dir, e))?;
        Ok(dir)
    }

    fn unique_name(prefix: &str) -> String {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        format!("{prefix}-{}-{n}-{nanos}", std::process::id())
    }

    /// A new temporary file in the cache (same filesystem as the final names), removed on drop unless
    /// committed.
    pub(crate) fn temp_file(&self, prefix: &str) -> Result<(TempPath, File)> {
        let path = self.tmp_dir()?.join(Self::unique_name(prefix));
        let file =
            File::options().write(true).create_new(true).open(&path).map_err(|e| ReleaseError::write(&path, e))?;
        Ok((TempPath { path }, file))
    }

    /// A new temporary directory in the cache, removed on drop unless committed.
    pub(crate) fn temp_dir(&self, prefix: &str) -> Result<TempPath> {
        let path = self.tmp_dir()?.join(Self::unique_name(prefix));
        fs::create_dir(&path).map_err(|e| ReleaseError::write(&path, e))?;
        Ok(TempPath { path })
    }

    /// Moves a verified temporary file to the blob's final name.
    pub(crate) fn commit_blob(&self, mut tmp: TempPath, file: File, digest: &Digest) -> Result<PathBuf> {
        let dest = self.blob_path(digest);
        file.sync_all().map_err(|e| ReleaseError::write(&tmp.path, e))?;
        drop(file);
        create_parent(&dest)?;
        fs::rename(&tmp.path, &dest).map_err(|e| ReleaseError::write(&dest, e))?;
        tmp.path = PathBuf::new();
        Ok(dest)
    }

    /// Stores bytes whose digest is already known to be `digest`.
    pub(crate) fn put_blob(&self, digest: &Digest, data: &[u8]) -> Result<PathBuf> {
        let (tmp, mut file) = self.temp_file("blob")?;
        file.write_all(data).map_err(|e| ReleaseError::write(&tmp.path, e))?;
        self.commit_blob(tmp, file, digest)
    }

    /// Renames a finished temporary directory to `dest`. When another process got there first, its tree is
    /// kept and ours is dropped.
    pub(crate) fn commit_dir(&self, mut tmp: TempPath, dest: &Path) -> Result<()> {
        create_parent(dest)?;
        match fs::rename(&tmp.path, dest) {
            Ok(()) => {
                tmp.path = PathBuf::new();
                Ok(())
            }
            Err(_) if dest.is_dir() => Ok(()), // lost the race; `tmp` is removed on drop
            Err(e) => Err(ReleaseError::write(dest, e)),
        }
    }

    /// Removes work files older than a day that a killed process left behind (best effort).
    pub fn clean_stale_temp(&self) {
        let Ok(rd) = fs::read_dir(self.root.join("oci/tmp")) else { return };
        let day = Duration::from_secs(24 * 3600);
        for e in rd.flatten() {
            let old =
                e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|a| a > day);
            if old {
                let p = e.path();
                let _ = if p.is_dir() { remove_tree(&p) } else { fs::remove_file(&p) };
            }
        }
    }
}

fn create_parent(p: &Path) -> Result<()> {
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).map_err(|e| ReleaseError::write(parent, e))?;
    }
    Ok(())
}

/// Removes a tree that may contain read-only directories (extension trees keep the image's modes).
pub(crate) fn remove_tree(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fn make_writable(p: &Path) {
        if let Ok(m) = fs::symlink_metadata(p)
            && m.is_dir()
        {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    make_writable(&e.path());
                }
            }
        }
    }
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(_) => {
            make_writable(p);
            fs::remove_dir_all(p)
        }
    }
}

/// A temporary file or directory in the cache, removed on drop unless it was committed.
#[derive(Debug)]
pub(crate) struct TempPath {
    pub(crate) path: PathBuf,
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let _ = if self.path.is_dir() { remove_tree(&self.path) } else { fs::remove_file(&self.path) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_and_trees_commit_atomically() {
        let t = tempfile::tempdir().unwrap();
        let c = Cache::new(t.path());
        let d = Digest::of(b"hello");
        let p = c.put_blob(&d, b"hello").unwrap();
        assert_eq!(p, t.path().join("oci/blobs/sha256").join(d.hex()));
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        // the same blob again (another process) replaces identical bytes
        c.put_blob(&d, b"hello").unwrap();

        // two trees raced to one name: the first wins, the second is dropped without an error
        let dest = c.tree_path(&d);
        let a = c.temp_dir("tree").unwrap();
        fs::write(a.path.join("who"), "a").unwrap();
        let b = c.temp_dir("tree").unwrap();
        fs::write(b.path.join("who"), "b").unwrap();
        let b_path = b.path.clone();
        c.commit_dir(a, &dest).unwrap();
        c.commit_dir(b, &dest).unwrap();
        assert_eq!(fs::read_to_string(dest.join("who")).unwrap(), "a");
        assert!(!b_path.exists());
        // nothing left in tmp
        assert_eq!(fs::read_dir(t.path().join("oci/tmp")).unwrap().count(), 0);
    }
}
