//! Output compression as Talos's imager does it (`pkg/imager/post.go`): `.zst` (`zstd -T0 -18`), `.xz`
//! (`xz -0 -T0`) and `.gz` (`pigz -6 --no-time`), done in-process and **single-threaded**, because the
//! multi-threaded zstd and xz encoders split their input by thread count and would make the bytes depend on the
//! machine. The input is streamed in 1 MiB chunks, so memory stays bounded (the encoder's window and tables)
//! whatever the image size; a sparse raw image is read as the zeros it holds.
//!
//! Framing matches the command-line tools' defaults: zstd frames carry the content size and a checksum, xz
//! streams a CRC64 check, gzip headers have mtime 0 and OS 3 (Unix) and no file name. The output is written
//! beside the destination and renamed into place.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::atomic::TempOutput;

/// zstd level Talos uses (`zstd -18`).
pub const ZSTD_LEVEL: i32 = 18;
/// xz preset Talos uses (`xz -0`).
pub const XZ_PRESET: u32 = 0;
/// gzip level Talos uses (`pigz -6`).
pub const GZIP_LEVEL: u32 = 6;

const CHUNK: usize = 1024 * 1024;

/// A compression format for an output file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    Zstd,
    Xz,
    Gzip,
}

impl Compression {
    /// The file name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Zstd => "zst",
            Compression::Xz => "xz",
            Compression::Gzip => "gz",
        }
    }

    /// The format for a Talos `outFormat` (`.zst`, `.xz`, `.gz`; the leading dot is optional).
    pub fn from_extension(ext: &str) -> Result<Self, CompressError> {
        match ext.strip_prefix('.').unwrap_or(ext) {
            "zst" => Ok(Compression::Zstd),
            "xz" => Ok(Compression::Xz),
            "gz" => Ok(Compression::Gzip),
            _ => Err(CompressError::UnknownFormat { found: ext.to_owned() }),
        }
    }

    /// `input` with the extension appended: `metal-amd64.raw` → `metal-amd64.raw.zst`.
    pub fn output_path(self, input: &Path) -> PathBuf {
        let mut name = input.as_os_str().to_owned();
        name.push(".");
        name.push(self.extension());
        PathBuf::from(name)
    }
}

/// What was compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressReport {
    pub input_bytes: u64,
    pub output_bytes: u64,
}

/// What can go wrong compressing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    #[error("unknown compression format {found:?}: expected .zst, .xz or .gz")]
    UnknownFormat { found: String },

    #[error("input {} changed while it was compressed: expected {expected} bytes, read {found}", .path.display())]
    InputChanged { path: PathBuf, expected: u64, found: u64 },

    #[error("cannot {action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CompressError {
    let path = path.to_owned();
    move |source| CompressError::Io { action, path, source }
}

/// Compresses `input` into `output` (written atomically).
pub fn compress_file(input: &Path, output: &Path, compression: Compression) -> Result<CompressReport, CompressError> {
    let source = File::open(input).map_err(io_err("open", input))?;
    let expected = source.metadata().map_err(io_err("read", input))?.len();
    let tmp = TempOutput::create(output).map_err(io_err("create", output))?;
    let sink = BufWriter::with_capacity(CHUNK, tmp.file());
    let read = compress_stream(source, sink, compression, Some(expected)).map_err(|e| match e {
        StreamError::Read(source) => CompressError::Io { action: "read", path: input.to_owned(), source },
        StreamError::Write(source) => CompressError::Io { action: "write", path: output.to_owned(), source },
    })?;
    if read != expected {
        return Err(CompressError::InputChanged { path: input.to_owned(), expected, found: read });
    }
    let output_bytes = tmp.file().metadata().map_err(io_err("read", tmp.path()))?.len();
    tmp.commit().map_err(io_err("write", output))?;
    Ok(CompressReport { input_bytes: read, output_bytes })
}

/// A failure on one side of [`compress_stream`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("cannot read the input")]
    Read(#[source] io::Error),
    #[error("cannot write the compressed output")]
    Write(#[source] io::Error),
}

/// Compresses everything `input` yields into `output`, returning the number of bytes read. `size`, when known,
/// is recorded in the zstd frame header (as `zstd` does for files).
pub fn compress_stream<R: Read, W: Write>(
    input: R,
    output: W,
    compression: Compression,
    size: Option<u64>,
) -> Result<u64, StreamError> {
    match compression {
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(output, ZSTD_LEVEL).map_err(StreamError::Write)?;
            enc.include_checksum(true).map_err(StreamError::Write)?;
            enc.include_contentsize(size.is_some()).map_err(StreamError::Write)?;
            enc.set_pledged_src_size(size).map_err(StreamError::Write)?;
            let n = pump(input, &mut enc)?;
            enc.finish().and_then(|mut w| w.flush()).map_err(StreamError::Write)?;
            Ok(n)
        }
        Compression::Xz => {
            let mut enc = liblzma::write::XzEncoder::new(output, XZ_PRESET);
            let n = pump(input, &mut enc)?;
            enc.finish().and_then(|mut w| w.flush()).map_err(StreamError::Write)?;
            Ok(n)
        }
        Compression::Gzip => {
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(3)
                .write(output, flate2::Compression::new(GZIP_LEVEL));
            let n = pump(input, &mut enc)?;
            enc.finish().and_then(|mut w| w.flush()).map_err(StreamError::Write)?;
            Ok(n)
        }
    }
}

fn pump<R: Read, W: Write>(mut input: R, output: &mut W) -> Result<u64, StreamError> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Read(e)),
        };
        output.write_all(buf.get(..n).unwrap_or_default()).map_err(StreamError::Write)?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut data = vec![0u8; 3 * CHUNK + 12_345];
        for (i, b) in data.iter_mut().enumerate().step_by(7) {
            *b = (i * 31 % 251) as u8;
        }
        data
    }

    #[test]
    fn round_trips_in_process_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("disk.raw");
        let data = sample();
        std::fs::write(&input, &data).unwrap();
        for c in [Compression::Zstd, Compression::Xz, Compression::Gzip] {
            let out = c.output_path(&input);
            let report = compress_file(&input, &out, c).unwrap();
            assert_eq!(report.input_bytes, data.len() as u64);
            let first = std::fs::read(&out).unwrap();
            assert_eq!(report.output_bytes, first.len() as u64);
            compress_file(&input, &out, c).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), first, "{c:?} output differs between runs");
            let mut back = Vec::new();
            match c {
                Compression::Zstd => {
                    zstd::stream::read::Decoder::new(&first[..]).unwrap().read_to_end(&mut back).unwrap();
                }
                Compression::Xz => {
                    liblzma::read::XzDecoder::new(&first[..]).read_to_end(&mut back).unwrap();
                }
                Compression::Gzip => {
                    flate2::read::GzDecoder::new(&first[..]).read_to_end(&mut back).unwrap();
                    // No timestamp, OS = Unix.
                    assert_eq!(&first[4..8], &[0, 0, 0, 0]);
                    assert_eq!(first[9], 3);
                }
            }
            assert_eq!(back, data, "{c:?} does not round-trip");
        }
        // Only the outputs are left: no temp files.
        let mut names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["disk.raw", "disk.raw.gz", "disk.raw.xz", "disk.raw.zst"]);
    }

    #[test]
    fn formats_and_errors() {
        assert_eq!(Compression::from_extension(".zst").unwrap(), Compression::Zstd);
        assert_eq!(Compression::from_extension("xz").unwrap(), Compression::Xz);
        assert_eq!(
            Compression::from_extension(".bz2").unwrap_err().to_string(),
            "unknown compression format \".bz2\": expected .zst, .xz or .gz"
        );
        assert_eq!(Compression::Gzip.output_path(Path::new("/o/a.raw")), Path::new("/o/a.raw.gz"));
        let dir = tempfile::tempdir().unwrap();
        let e = compress_file(&dir.path().join("missing"), &dir.path().join("x.zst"), Compression::Zstd).unwrap_err();
        assert!(e.to_string().starts_with("cannot open "), "{e}");
    }
}
