//! Writing output files so that a reader never sees half a file and secrets are never world-readable.
//!
//! Each file is written to a temporary name in its final directory with its final mode (0600 for anything
//! holding keys), flushed to disk, and renamed over the final name. A crash leaves at most a stray
//! `.<name>.tmp-*` file, never a truncated file under the final name.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use crate::error::{Error, Result};

/// Mode for files that hold private keys or tokens.
pub const SECRET_MODE: u32 = 0o600;
/// Mode for ordinary outputs.
pub const PUBLIC_MODE: u32 = 0o644;

/// Whether to replace an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    Refuse,
    Replace,
}

/// Writes `contents` to `path` atomically with `mode`, creating parent directories.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32, overwrite: Overwrite) -> Result<()> {
    if overwrite == Overwrite::Refuse && path.exists() {
        return Err(Error::Exists { path: path.to_owned() });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_owned(), source })?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let wr = |source| Error::Write { path: path.to_owned(), source };
    // A unique temporary name: pid plus a counter, created exclusively so two writers never share it.
    for attempt in 0..1000u32 {
        let tmp = dir.join(format!(".{name}.tmp-{}-{attempt}", std::process::id()));
        let mut f = match OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(wr(e)),
        };
        let result = (|| {
            // The umask may have narrowed the mode at creation; set it exactly.
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            f.write_all(contents)?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(wr(e));
        }
        return Ok(());
    }
    Err(Error::Internal(format!("could not create a temporary file next to {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_mode_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/secret.yaml");
        write_atomic(&p, b"key: x\n", SECRET_MODE, Overwrite::Refuse).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"key: x\n");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let e = write_atomic(&p, b"other", SECRET_MODE, Overwrite::Refuse).unwrap_err();
        assert!(e.to_string().contains("refusing to overwrite"), "{e}");
        write_atomic(&p, b"new\n", PUBLIC_MODE, Overwrite::Replace).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new\n");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
