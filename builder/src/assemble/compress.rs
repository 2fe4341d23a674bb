//! Output compression as Talos's imager does it (`pkg/imager/post.go`): `.zst` (`zstd -T0 -18`), `.xz`
//! (`xz -0 -T0`) and `.gz` (`pigz -6 --no-time`), done in-process. The xz and gzip encoders run on one
//! thread, because the multi-threaded xz encoder splits its input by thread count and would make the bytes
//! depend on the machine; zstd runs on up to four threads over pieces whose boundaries depend only on the input
//! (below), so its bytes do not depend on the machine either. Memory stays bounded whatever the image size
//! (1 MiB read chunks, 2 MiB zstd pieces).
//!
//! Framing matches the command-line tools' defaults: zstd frames carry the content size and a checksum, xz
//! streams a CRC64 check, gzip headers have mtime 0 and OS 3 (Unix) and no file name. The output is written
//! beside the destination and renamed into place.
//!
//! A zstd file is written as a sequence of frames (RFC 8878 §3.1: decoders concatenate them): runs of data
//! are compressed by libzstd at level 18, and runs of zeros of at least [`MIN_ZERO_RUN`] (the holes of a sparse
//! raw image, found with `SEEK_DATA`/`SEEK_HOLE` without reading them) become frames of RLE blocks written
//! here. A 2 GiB metal image whose ESP is mostly empty then compresses in well under a second instead of the
//! ~12 s libzstd needs to grind through two gigabytes of zeros at level 18, and the output is only a few KiB
//! larger. The frame boundaries depend only on the bytes, so the output stays deterministic.

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

/// Zero runs at least this long get their own RLE frame; shorter ones stay inside the data frames.
pub const MIN_ZERO_RUN: u64 = 1024 * 1024;
/// Granularity of zero detection inside allocated extents.
const PROBE: usize = 64 * 1024;
/// Data pieces are compressed as independent frames of this size (bounds memory: a level-18 context for a
/// 2 MiB input needs ~20 MiB).
pub const SEGMENT: u64 = 2 * 1024 * 1024;
/// At most this many pieces are compressed at once.
const MAX_THREADS: usize = 4;
/// zstd's largest block (RFC 8878 `Block_Maximum_Size` with a 128 KiB window).
const ZSTD_BLOCK: u64 = 128 * 1024;

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
    let result = match compression {
        Compression::Zstd => compress_zstd_sparse(&source, expected, sink),
        _ => compress_stream(&source, sink, compression, Some(expected)),
    };
    let read = result.map_err(|e| match e {
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

/// A stretch of the input: zeros, or bytes to compress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    start: u64,
    len: u64,
    zero: bool,
}

/// Splits `file` (of `size` bytes) into data and zero runs. Holes are found with `SEEK_DATA`/`SEEK_HOLE`;
/// allocated extents are read and probed for zero blocks. Zero runs shorter than [`MIN_ZERO_RUN`] are folded
/// into the data around them, and neighbouring runs of one kind are merged.
fn runs(file: &File, size: u64) -> io::Result<Vec<Run>> {
    use rustix::fs::SeekFrom as S;
    let mut raw: Vec<Run> = Vec::new();
    let push = |raw: &mut Vec<Run>, start: u64, len: u64, zero: bool| {
        if len == 0 {
            return;
        }
        match raw.last_mut() {
            Some(last) if last.zero == zero && last.start + last.len == start => last.len += len,
            _ => raw.push(Run { start, len, zero }),
        }
    };
    let mut pos = 0u64;
    let mut buf = vec![0u8; PROBE];
    while pos < size {
        // Where the next data starts (ENXIO: only a hole remains; EINVAL etc.: no hole support, all data).
        let data = match rustix::fs::seek(file, S::Data(pos)) {
            Ok(d) => d.min(size),
            Err(rustix::io::Errno::NXIO) => size,
            Err(_) => pos,
        };
        push(&mut raw, pos, data - pos, true);
        if data >= size {
            break;
        }
        let hole = match rustix::fs::seek(file, S::Hole(data)) {
            Ok(h) => h.min(size),
            Err(_) => size,
        };
        let mut at = data;
        while at < hole {
            let n = (hole - at).min(PROBE as u64) as usize;
            let chunk = buf.get_mut(..n).unwrap_or_default();
            std::os::unix::fs::FileExt::read_exact_at(file, chunk, at)?;
            push(&mut raw, at, n as u64, chunk.iter().all(|b| *b == 0));
            at += n as u64;
        }
        pos = hole;
    }
    // Short zero runs go back into the data.
    let mut out: Vec<Run> = Vec::new();
    for r in raw {
        let zero = r.zero && r.len >= MIN_ZERO_RUN;
        match out.last_mut() {
            Some(last) if last.zero == zero => last.len += r.len,
            _ => out.push(Run { zero, ..r }),
        }
    }
    Ok(out)
}

/// A zstd frame that decodes to `len` zero bytes: a 128 KiB window, the content size, RLE blocks and no checksum.
fn zero_frame<W: Write>(out: &mut W, len: u64) -> io::Result<()> {
    // Magic, Frame_Header_Descriptor (8-byte content size, not single-segment, no checksum, no dictionary),
    // Window_Descriptor (exponent 7: 2^17 bytes), Frame_Content_Size.
    out.write_all(&[0x28, 0xb5, 0x2f, 0xfd, 0b1100_0000, 7 << 3])?;
    out.write_all(&len.to_le_bytes())?;
    let mut left = len;
    loop {
        let n = left.min(ZSTD_BLOCK);
        left -= n;
        // Block_Header: Last_Block bit, Block_Type 1 (RLE), Block_Size = bytes to regenerate; then the byte.
        let header = u32::from(left == 0) | (1 << 1) | ((n as u32) << 3);
        out.write_all(&header.to_le_bytes()[..3])?;
        out.write_all(&[0])?;
        if left == 0 {
            return Ok(());
        }
    }
}

/// Compresses a file as zstd frames: long zero runs as RLE frames, data runs cut into [`SEGMENT`]-sized pieces,
/// each its own libzstd frame (module docs). Pieces are compressed on up to [`MAX_THREADS`] threads; where the
/// cuts fall depends only on the input, so the bytes do not depend on the thread count.
fn compress_zstd_sparse<W: Write>(file: &File, size: u64, mut output: W) -> Result<u64, StreamError> {
    let mut pieces: Vec<Run> = Vec::new();
    for run in runs(file, size).map_err(StreamError::Read)? {
        if run.zero {
            pieces.push(run);
            continue;
        }
        let mut at = run.start;
        while at < run.start + run.len {
            let len = (run.start + run.len - at).min(SEGMENT);
            pieces.push(Run { start: at, len, zero: false });
            at += len;
        }
    }
    if pieces.is_empty() {
        // An empty input is still a valid zstd file: one empty frame, as `zstd` writes it.
        pieces.push(Run { start: 0, len: 0, zero: false });
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_THREADS);
    let mut total = 0u64;
    let mut i = 0;
    while i < pieces.len() {
        if let Some(r) = pieces.get(i).filter(|r| r.zero) {
            zero_frame(&mut output, r.len).map_err(StreamError::Write)?;
            total += r.len;
            i += 1;
            continue;
        }
        // The next few data pieces, compressed side by side and written in order.
        let batch: Vec<Run> = pieces[i..].iter().take_while(|r| !r.zero).take(threads).copied().collect();
        i += batch.len();
        let frames: Vec<Result<Vec<u8>, StreamError>> = std::thread::scope(|s| {
            let handles: Vec<_> = batch.iter().map(|r| s.spawn(move || compress_piece(file, *r))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(StreamError::Write(io::Error::other("a compression thread panicked"))))
                })
                .collect()
        });
        for (r, frame) in batch.iter().zip(frames) {
            output.write_all(&frame?).map_err(StreamError::Write)?;
            total += r.len;
        }
    }
    output.flush().map_err(StreamError::Write)?;
    Ok(total)
}

/// One data piece as a zstd frame (level 18, content size, checksum), like `zstd -18` would write it alone.
fn compress_piece(file: &File, r: Run) -> Result<Vec<u8>, StreamError> {
    let mut data = vec![0u8; r.len as usize];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut data, r.start).map_err(StreamError::Read)?;
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut enc = zstd::stream::write::Encoder::new(&mut out, ZSTD_LEVEL).map_err(StreamError::Write)?;
    enc.include_checksum(true).map_err(StreamError::Write)?;
    enc.include_contentsize(true).map_err(StreamError::Write)?;
    enc.set_pledged_src_size(Some(r.len)).map_err(StreamError::Write)?;
    enc.write_all(&data).map_err(StreamError::Write)?;
    enc.finish().map_err(StreamError::Write)?;
    Ok(out)
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
    fn sparse_images_become_rle_frames_that_the_cli_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("disk.raw");
        // data | 3 MiB hole | 2 MiB written zeros | data | 5 KiB of zeros (too short for a frame) | data | hole
        let f = File::create(&input).unwrap();
        let size = 16 * CHUNK as u64 + 4096;
        f.set_len(size).unwrap();
        let data = sample();
        use std::os::unix::fs::FileExt as _;
        f.write_all_at(&data[..CHUNK], 0).unwrap();
        f.write_all_at(&vec![0u8; 2 * CHUNK], 4 * CHUNK as u64).unwrap();
        f.write_all_at(&data[..CHUNK], 6 * CHUNK as u64).unwrap();
        f.write_all_at(&data[..CHUNK - 5000], 7 * CHUNK as u64 + 5000).unwrap();
        drop(f);
        let file = File::open(&input).unwrap();
        let r = runs(&file, size).unwrap();
        assert_eq!(
            r,
            [
                Run { start: 0, len: CHUNK as u64, zero: false },
                Run { start: CHUNK as u64, len: 5 * CHUNK as u64, zero: true },
                Run { start: 6 * CHUNK as u64, len: 2 * CHUNK as u64, zero: false },
                Run { start: 8 * CHUNK as u64, len: size - 8 * CHUNK as u64, zero: true },
            ]
        );
        let out = dir.path().join("disk.raw.zst");
        let report = compress_file(&input, &out, Compression::Zstd).unwrap();
        assert_eq!(report.input_bytes, size);
        assert!(report.output_bytes < 2 * CHUNK as u64, "{report:?}");
        let first = std::fs::read(&out).unwrap();
        compress_file(&input, &out, Compression::Zstd).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), first, "output differs between runs");
        let mut back = Vec::new();
        zstd::stream::read::Decoder::new(&first[..]).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == std::fs::read(&input).unwrap(), "libzstd does not round-trip");
        // The zstd command-line tool (an independent decoder) checks every frame and gives the same bytes.
        if let Ok(o) = std::process::Command::new("zstd").args(["-t", "-q"]).arg(&out).output() {
            assert!(o.status.success(), "zstd -t: {}", String::from_utf8_lossy(&o.stderr));
            let o = std::process::Command::new("zstd").args(["-d", "-c", "-q"]).arg(&out).output().unwrap();
            assert!(o.stdout == std::fs::read(&input).unwrap(), "zstd -d gives other bytes");
        } else {
            crate::skip_test!("SKIP: zstd CLI missing (Debian package zstd); libzstd round trip checked only");
        }
        // An empty file is one data frame.
        std::fs::write(&input, b"").unwrap();
        compress_file(&input, &out, Compression::Zstd).unwrap();
        let mut back = Vec::new();
        zstd::stream::read::Decoder::new(&std::fs::read(&out).unwrap()[..]).unwrap().read_to_end(&mut back).unwrap();
        assert!(back.is_empty());
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
