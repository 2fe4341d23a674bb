//! A Talos release read from a plain directory: the kernel, initramfs and systemd-boot binaries, and the
//! extension directories that go into an image.
//!
//! The directory is laid out like Talos's imager image (`usr/install/<arch>/...`, extensions under
//! `extensions/<name>/`). The registry and OCI-layout sources extract images into the cache in this same
//! layout and open the result with [`Release::open_dir`]. Every input is identified by its sha256, which the
//! manifest records and the cache keys on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::{ReleaseError, Result};

/// The release files the builder needs, per architecture.
pub const KERNEL: &str = "vmlinuz";
pub const INITRAMFS: &str = "initramfs.xz";
pub const SD_BOOT: &str = "systemd-boot.efi";
pub const SD_STUB: &str = "systemd-stub.efi";

/// One input file and its digest.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Blob {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
}

impl Blob {
    pub fn read(path: &Path) -> Result<(Blob, Vec<u8>)> {
        let data = std::fs::read(path).map_err(|source| ReleaseError::read(path, source))?;
        Ok((Blob { path: path.to_owned(), size: data.len() as u64, sha256: sha256_hex(&data) }, data))
    }

    /// The blob for a file, hashed as a stream (release files are tens of megabytes).
    pub fn hash_file(path: &Path) -> Result<Blob> {
        let mut f = std::fs::File::open(path).map_err(|source| ReleaseError::read(path, source))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = std::io::Read::read(&mut f, &mut buf).map_err(|source| ReleaseError::read(path, source))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
        Ok(Blob { path: path.to_owned(), size, sha256: hex(&h.finalize()) })
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A release read from a directory.
#[derive(Clone, Debug)]
pub struct Release {
    pub root: PathBuf,
    pub arch: String,
    pub kernel: Blob,
    pub initramfs: Blob,
    pub sd_boot: Blob,
    pub sd_stub: Blob,
    /// Extension directories by name (`extensions/<name>/` holding `manifest.yaml` and `rootfs/`).
    pub extensions: BTreeMap<String, PathBuf>,
    /// The release's own `SOURCE_DATE_EPOCH`, when it declares one (the fixture release's `fixture.json`).
    pub epoch: Option<u64>,
}

impl Release {
    /// Opens a release directory; every missing file is named.
    pub fn open_dir(root: &Path, arch: &str) -> Result<Release> {
        let dir = root.join("usr/install").join(arch);
        let mut missing = Vec::new();
        for f in [KERNEL, INITRAMFS, SD_BOOT, SD_STUB] {
            if !dir.join(f).is_file() {
                missing.push(format!("usr/install/{arch}/{f}"));
            }
        }
        if !missing.is_empty() {
            return Err(ReleaseError::NotARelease { root: root.to_owned(), arch: arch.to_owned(), missing });
        }
        let blob = |f: &str| -> Result<Blob> { Blob::hash_file(&dir.join(f)) };
        let mut extensions = BTreeMap::new();
        let ext_dir = root.join("extensions");
        if ext_dir.is_dir() {
            let rd = std::fs::read_dir(&ext_dir).map_err(|source| ReleaseError::read(&ext_dir, source))?;
            for e in rd.flatten() {
                if e.path().join("manifest.yaml").is_file()
                    && let Some(name) = e.file_name().to_str()
                {
                    extensions.insert(name.to_owned(), e.path());
                }
            }
        }
        let epoch = std::fs::read_to_string(root.join("fixture.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("sourceDateEpoch").and_then(serde_json::Value::as_u64));
        Ok(Release {
            root: root.to_owned(),
            arch: arch.to_owned(),
            kernel: blob(KERNEL)?,
            initramfs: blob(INITRAMFS)?,
            sd_boot: blob(SD_BOOT)?,
            sd_stub: blob(SD_STUB)?,
            extensions,
            epoch,
        })
    }

    /// The extension directory for a reference. A reference [`super::fetch_release`] resolved is found under
    /// the text it was written as; otherwise `<namespace>/<name>` is looked up as `extensions/<name>` in the
    /// release (the release directory is its own catalogue), and a path (`./x`, `/x`) is used as it is.
    pub fn find_extension(&self, reference: &str, base: &Path) -> Option<PathBuf> {
        if let Some(p) = self.extensions.get(reference) {
            return Some(p.clone());
        }
        if reference.starts_with("./") || reference.starts_with("../") || reference.starts_with('/') {
            let p = base.join(reference);
            return p.join("manifest.yaml").is_file().then_some(p);
        }
        let name = reference.rsplit('/').next()?;
        let name = name.split([':', '@']).next()?;
        self.extensions.get(name).cloned()
    }
}
