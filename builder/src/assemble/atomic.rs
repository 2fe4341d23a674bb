//! Atomic output files: every output is written to a hidden temp file in its destination directory and renamed
//! over the final name only once it is complete and synced, so a killed build never leaves a half-written file
//! under a final name. The final file's mode is set explicitly (0644), independent of the caller's umask.

use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of every output file.
pub(crate) const OUTPUT_MODE: u32 = 0o644;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temp file next to `dest`: removed on drop unless [`TempOutput::commit`] renamed it into place.
#[derive(Debug)]
pub(crate) struct TempOutput {
    tmp: PathBuf,
    dest: PathBuf,
    file: File,
    committed: bool,
}

impl TempOutput {
    /// Creates `.<name>.<pid>-<n>.tmp` beside `dest`, empty, for reading and writing.
    pub(crate) fn create(dest: &Path) -> io::Result<Self> {
        let tmp = scratch_path(dest, "tmp")?;
        let file = File::options().read(true).write(true).create_new(true).open(&tmp)?;
        Ok(TempOutput { tmp, dest: dest.to_owned(), file, committed: false })
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn path(&self) -> &Path {
        &self.tmp
    }

    /// Syncs the file, sets its mode to 0644 and renames it over the destination. Works by path, so a tool that
    /// replaced the temp file (qemu-img recreates its output) is committed correctly too.
    pub(crate) fn commit(mut self) -> io::Result<()> {
        std::fs::set_permissions(&self.tmp, Permissions::from_mode(OUTPUT_MODE))?;
        File::open(&self.tmp)?.sync_all()?;
        std::fs::rename(&self.tmp, &self.dest)?;
        self.committed = true;
        if let Some(dir) = self.dest.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename durable; a directory that cannot be opened for syncing is not an error.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A scratch file next to `near` (same filesystem), removed on drop.
#[derive(Debug)]
pub(crate) struct ScratchFile {
    path: PathBuf,
    file: File,
}

impl ScratchFile {
    pub(crate) fn create(near: &Path, tag: &str) -> io::Result<Self> {
        let path = scratch_path(near, tag)?;
        let file = File::options().read(true).write(true).create_new(true).open(&path)?;
        Ok(ScratchFile { path, file })
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn scratch_path(dest: &Path, tag: &str) -> io::Result<PathBuf> {
    let name =
        dest.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name"))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}-{n}.{tag}", std::process::id()));
    Ok(dest.with_file_name(tmp_name))
}
