//! Bounded, sparse writes into the image file. Every writer (GPT, FAT, META) gets a [`Region`]: a window of the
//! image file that it cannot write outside of. The image file starts as a hole (`set_len`), every byte is written
//! at most once, and so a block that would only receive zeros is simply not written: the file stays sparse and
//! nothing reads the hole differently from zeros.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use super::DiskError;

/// The unit of sparseness: blocks of this size (aligned in the file) that are all zero are skipped.
pub(crate) const GRANULE: usize = 4096;

static ZEROS: [u8; GRANULE] = [0; GRANULE];

/// Whether `data` is all zero bytes (a `memcmp` against a zero block, fast even in debug builds).
pub(crate) fn is_zero(data: &[u8]) -> bool {
    data.chunks(GRANULE).all(|c| c == ZEROS.get(..c.len()).unwrap_or_default())
}

/// A window `[start, start + len)` of a fresh image file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region<'f> {
    file: &'f File,
    path: &'f Path,
    start: u64,
    len: u64,
}

impl<'f> Region<'f> {
    pub(crate) fn new(file: &'f File, path: &'f Path, start: u64, len: u64) -> Self {
        Region { file, path, start, len }
    }

    /// Writes `data` at `offset` into the region, skipping the granules of the file that would be all zero.
    pub(crate) fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        let end = offset.checked_add(data.len() as u64).filter(|&e| e <= self.len);
        let Some(_) = end else {
            // Callers plan their writes inside their partition; this only trips on a bug in a planner.
            return Err(DiskError::Io {
                action: "write outside its partition in",
                path: self.path.to_owned(),
                source: std::io::Error::other(format!(
                    "{} bytes at offset {offset} of a {}-byte partition",
                    data.len(),
                    self.len
                )),
            });
        };
        let mut abs = self.start + offset;
        let mut rest = data;
        // A run of non-zero granules is written with one call.
        let mut run: Option<(u64, usize)> = None;
        let mut done = 0usize;
        while !rest.is_empty() {
            let to_boundary = GRANULE - (abs % GRANULE as u64) as usize;
            let take = to_boundary.min(rest.len());
            let (piece, tail) = rest.split_at(take);
            if is_zero(piece) {
                if let Some((at, n)) = run.take() {
                    self.write_run(at, data.get(n..done).unwrap_or_default())?;
                }
            } else if run.is_none() {
                run = Some((abs, done));
            }
            abs += take as u64;
            done += take;
            rest = tail;
        }
        if let Some((at, n)) = run {
            self.write_run(at, data.get(n..done).unwrap_or_default())?;
        }
        Ok(())
    }

    fn write_run(&self, abs: u64, bytes: &[u8]) -> Result<(), DiskError> {
        self.file.write_all_at(bytes, abs).map_err(DiskError::io("write", self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_non_zero_granules_are_written_and_bounds_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.img");
        let file = File::options().read(true).write(true).create_new(true).open(&path).unwrap();
        file.set_len(64 * 1024).unwrap();
        let region = Region::new(&file, &path, 8192, 32 * 1024);
        let mut data = vec![0u8; 20_000];
        data[5000] = 7;
        data[19_999] = 9;
        region.write_at(100, &data).unwrap();
        let mut back = vec![0u8; 64 * 1024];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back[8192 + 100 + 5000], 7);
        assert_eq!(back[8192 + 100 + 19_999], 9);
        assert_eq!(back.iter().filter(|&&b| b != 0).count(), 2);
        let err = region.write_at(32 * 1024 - 1, &[1, 2]).unwrap_err();
        assert!(err.to_string().starts_with("cannot write outside its partition in "), "{err}");
        assert!(is_zero(&[0; 10_000]));
        assert!(!is_zero(&[0, 0, 1]));
    }
}
