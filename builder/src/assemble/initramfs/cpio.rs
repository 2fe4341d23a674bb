//! The "newc" cpio format (`070701`, what the kernel's initramfs unpacker and its early microcode loader read):
//! a writer with fixed metadata and a reader that walks an initramfs the way the kernel does.
//!
//! The writer produces what `cpio -H newc --create --reproducible -R +0:+0` would for a sorted listing, minus
//! its sources of variation: members in `LC_ALL=C` byte order of their paths, uid/gid 0, every mtime the build
//! epoch, inode numbers 0, 1, 2… in archive order (GNU's `--renumber-inodes` starts at 0), nlink 2 for directories
//! and 1 otherwise (`--ignore-dirnlink`, part of `--reproducible` since cpio 2.14), device numbers 0
//! (`--ignore-devno`), header+name and data each padded to 4 bytes, and a `TRAILER!!!` member. Byte for byte this
//! is GNU cpio's output for the same listing with every mtime set to the epoch, except that GNU cpio then pads
//! the archive with zeros to its 512-byte block size; the kernel needs only the 4-byte alignment.
//!
//! The reader accepts what the kernel accepts: uncompressed newc archives, zero padding between them, and zstd
//! frames whose content is again newc archives; anything else (xz, gzip, garbage) is reported with its offset.

use std::io::{self, Read, Write};

use super::{Entry, EntryKind, FileSource, InitramfsError};

/// The newc magic.
pub const MAGIC: &[u8; 6] = b"070701";
/// The name of the member that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
const HEADER_LEN: usize = 110;
/// The kernel refuses names longer than PATH_MAX.
const MAX_NAME: u64 = 4096;
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

/// Writes one newc member header plus name and its padding; returns the bytes written.
fn write_header<W: Write>(
    w: &mut W,
    name: &[u8],
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
) -> io::Result<u64> {
    let namesize = name.len() as u32 + 1;
    let mut header = Vec::with_capacity(HEADER_LEN + name.len() + 4);
    // c_magic c_ino c_mode c_uid c_gid c_nlink c_mtime c_filesize c_devmajor c_devminor c_rdevmajor c_rdevminor
    // c_namesize c_check
    header.extend_from_slice(MAGIC);
    for field in [ino, mode, 0, 0, nlink, mtime, filesize, 0, 0, 0, 0, namesize, 0] {
        header.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    header.extend_from_slice(name);
    header.push(0);
    let padding = pad4(header.len() as u64) as usize;
    header.resize(header.len() + padding, 0);
    w.write_all(&header)?;
    Ok(header.len() as u64)
}

/// Writes `entries` (already in the order wanted) as one newc archive with the trailer; returns the archive's
/// length. File members read from disk must still have the length recorded when they were scanned.
pub fn write_archive<'a, W: Write>(
    w: &mut W,
    entries: impl IntoIterator<Item = &'a Entry>,
    mtime: u32,
) -> Result<u64, InitramfsError> {
    let io_err = |e: io::Error| InitramfsError::Io { action: "write", path: "cpio archive".into(), source: e };
    let mut total = 0u64;
    for (ino, entry) in entries.into_iter().enumerate() {
        let ino = u32::try_from(ino).unwrap_or(u32::MAX);
        let mode = entry.type_bits() | (entry.mode & 0o7777);
        match &entry.kind {
            EntryKind::Dir => {
                total += write_header(w, &entry.path, ino, mode, 2, mtime, 0).map_err(io_err)?;
            }
            EntryKind::Symlink { target } => {
                let size = u32::try_from(target.len()).unwrap_or(u32::MAX);
                total += write_header(w, &entry.path, ino, mode, 1, mtime, size).map_err(io_err)?;
                w.write_all(target).map_err(io_err)?;
                let pad = pad4(target.len() as u64);
                w.write_all(&[0; 3][..pad as usize]).map_err(io_err)?;
                total += target.len() as u64 + pad;
            }
            EntryKind::File { source, len } => {
                let size = u32::try_from(*len).map_err(|_| InitramfsError::Cpio {
                    context: format!("member {:?}", entry.display_path()),
                    offset: total,
                    message: format!("expected a file smaller than 4 GiB (newc's limit); found {len} bytes"),
                })?;
                total += write_header(w, &entry.path, ino, mode, 1, mtime, size).map_err(io_err)?;
                let copied = match source {
                    FileSource::Bytes(b) => {
                        w.write_all(b).map_err(io_err)?;
                        b.len() as u64
                    }
                    FileSource::Path(p) => {
                        let f = std::fs::File::open(p).map_err(InitramfsError::io("read", p))?;
                        io::copy(&mut f.take(*len + 1), w).map_err(InitramfsError::io("read", p))?
                    }
                };
                if copied != *len {
                    let path = match source {
                        FileSource::Path(p) => p.clone(),
                        FileSource::Bytes(_) => entry.display_path().into(),
                    };
                    return Err(InitramfsError::Io {
                        action: "archive",
                        path,
                        source: io::Error::other(format!(
                            "the file changed during the build: expected {len} bytes; found {copied}"
                        )),
                    });
                }
                let pad = pad4(*len);
                w.write_all(&[0; 3][..pad as usize]).map_err(io_err)?;
                total += *len + pad;
            }
        }
    }
    total += write_header(w, TRAILER.as_bytes(), 0, 0, 1, 0, 0).map_err(io_err)?;
    Ok(total)
}

/// One member header as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub ino: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    pub filesize: u32,
    pub name: Vec<u8>,
}

impl Header {
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    pub fn is_trailer(&self) -> bool {
        self.name == TRAILER.as_bytes()
    }
}

/// A member read back with its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub header: Header,
    pub data: Vec<u8>,
}

/// A streaming newc reader over any byte source (a slice, a zstd decoder), tracking its offset for messages.
#[derive(Debug)]
pub struct NewcReader<R> {
    r: R,
    pos: u64,
    context: String,
}

impl<R: Read> NewcReader<R> {
    pub fn new(r: R, context: impl Into<String>) -> Self {
        NewcReader { r, pos: 0, context: context.into() }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    fn err(&self, message: impl Into<String>) -> InitramfsError {
        InitramfsError::Cpio { context: self.context.clone(), offset: self.pos, message: message.into() }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` if the source ended before the first byte.
    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<bool, InitramfsError> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => {
                    self.pos += got as u64;
                    return Err(self.err(format!("truncated {what}: expected {} more bytes", buf.len() - got)));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.pos += got as u64;
                    return Err(self.err(format!("cannot read {what}: {e}")));
                }
            }
        }
        self.pos += got as u64;
        Ok(true)
    }

    /// The next member header, skipping the zero padding the kernel allows between archives; `None` at the end
    /// of the source. The member's data must be consumed with [`Self::read_data`] or [`Self::skip_data`].
    pub fn next_header(&mut self) -> Result<Option<Header>, InitramfsError> {
        let mut first = [0u8; 1];
        loop {
            if !self.fill(&mut first, "archive")? {
                return Ok(None);
            }
            if first[0] != 0 {
                break;
            }
        }
        if !(self.pos - 1).is_multiple_of(4) {
            self.pos -= 1;
            return Err(self.err("expected a member header on a 4-byte boundary after zero padding"));
        }
        let mut raw = [0u8; HEADER_LEN];
        raw[0] = first[0];
        let start = self.pos - 1;
        if !self.fill(&mut raw[1..], "member header")? {
            return Err(self.err("truncated member header"));
        }
        if &raw[..6] != MAGIC {
            self.pos = start;
            return Err(
                self.err(format!("expected newc magic \"070701\"; found {:?}", String::from_utf8_lossy(&raw[..6])))
            );
        }
        let mut fields = [0u32; 13];
        for (i, f) in fields.iter_mut().enumerate() {
            let text = &raw[6 + i * 8..14 + i * 8];
            let parsed = std::str::from_utf8(text).ok().and_then(|t| u32::from_str_radix(t, 16).ok());
            *f = parsed.ok_or_else(|| InitramfsError::Cpio {
                context: self.context.clone(),
                offset: start + 6 + (i as u64) * 8,
                message: format!("expected 8 hex digits; found {:?}", String::from_utf8_lossy(text)),
            })?;
        }
        let [ino, mode, uid, gid, nlink, mtime, filesize, _, _, _, _, namesize, _] = fields;
        if namesize == 0 || u64::from(namesize) > MAX_NAME {
            return Err(self.err(format!("expected a name size between 1 and {MAX_NAME}; found {namesize}")));
        }
        let padded = namesize as u64 + pad4(HEADER_LEN as u64 + namesize as u64);
        let mut name = vec![0u8; padded as usize];
        if !self.fill(&mut name, "member name")? {
            return Err(self.err("truncated member name"));
        }
        name.truncate(namesize as usize);
        if name.pop() != Some(0) {
            return Err(self.err("expected the member name to end with a NUL byte"));
        }
        Ok(Some(Header { ino, mode, uid, gid, nlink, mtime, filesize, name }))
    }

    /// Copies the current member's data (and skips its padding) into `out`.
    pub fn read_data<W: Write>(&mut self, h: &Header, out: &mut W) -> Result<(), InitramfsError> {
        let want = u64::from(h.filesize);
        let copied = io::copy(&mut (&mut self.r).take(want), out)
            .map_err(|e| self.err(format!("cannot read the data of {:?}: {e}", h.name_lossy())))?;
        self.pos += copied;
        if copied != want {
            return Err(
                self.err(format!("truncated data of {:?}: expected {want} bytes; found {copied}", h.name_lossy()))
            );
        }
        let mut pad = [0u8; 3];
        let n = pad4(want) as usize;
        if n > 0 && !self.fill(&mut pad[..n], "padding")? {
            return Err(self.err("truncated padding"));
        }
        Ok(())
    }

    pub fn skip_data(&mut self, h: &Header) -> Result<(), InitramfsError> {
        self.read_data(h, &mut io::sink())
    }

    /// Reads members up to and including the trailer (or the end of the source).
    pub fn read_archive(&mut self) -> Result<Vec<Member>, InitramfsError> {
        let mut out = Vec::new();
        while let Some(header) = self.next_header()? {
            let mut data = Vec::new();
            self.read_data(&header, &mut data)?;
            let done = header.is_trailer();
            out.push(Member { header, data });
            if done {
                break;
            }
        }
        Ok(out)
    }
}

/// One part of an initramfs as the kernel sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Offset of the part in the initramfs.
    pub offset: u64,
    /// Its length there (compressed length for zstd).
    pub len: u64,
    pub compressed: bool,
    /// The archives it holds, each a list of members ending with the trailer.
    pub archives: Vec<Vec<Member>>,
}

/// Splits `data` into its parts the way the kernel's `unpack_to_rootfs` does: uncompressed newc archives,
/// zero padding between parts, and zstd frames (each decompressed and read as newc archives).
pub fn walk_initramfs(data: &[u8], context: &str) -> Result<Vec<Segment>, InitramfsError> {
    let mut segments = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        if data[pos] == 0 {
            pos += 1;
            continue;
        }
        let rest = &data[pos..];
        if rest.starts_with(MAGIC) {
            let mut r = NewcReader::new(rest, context.to_owned());
            // Only one archive: a compressed part may follow the trailer.
            let members = r.read_archive().map_err(|e| shift(e, pos as u64))?;
            if !members.last().is_some_and(|m| m.header.is_trailer()) {
                return Err(InitramfsError::Cpio {
                    context: context.to_owned(),
                    offset: pos as u64 + r.pos,
                    message: "expected a TRAILER!!! member before the end of the data".into(),
                });
            }
            let len = r.pos;
            segments.push(Segment { offset: pos as u64, len, compressed: false, archives: vec![members] });
            pos += len as usize;
        } else if rest.starts_with(&ZSTD_MAGIC) {
            let frame_len = zstd::zstd_safe::find_frame_compressed_size(rest).map_err(|code| InitramfsError::Cpio {
                context: context.to_owned(),
                offset: pos as u64,
                message: format!("corrupt zstd frame: {}", zstd::zstd_safe::get_error_name(code)),
            })?;
            let frame = &rest[..frame_len];
            let mut plain = Vec::new();
            zstd::stream::read::Decoder::new(frame).and_then(|mut d| d.read_to_end(&mut plain)).map_err(|e| {
                InitramfsError::Cpio {
                    context: context.to_owned(),
                    offset: pos as u64,
                    message: format!("cannot decompress the zstd frame: {e}"),
                }
            })?;
            let inner = format!("{context} (zstd frame at byte {pos})");
            let mut r = NewcReader::new(plain.as_slice(), inner);
            let mut archives = Vec::new();
            loop {
                let members = r.read_archive()?;
                if members.is_empty() {
                    break;
                }
                archives.push(members);
            }
            segments.push(Segment { offset: pos as u64, len: frame_len as u64, compressed: true, archives });
            pos += frame_len;
        } else {
            return Err(InitramfsError::Cpio {
                context: context.to_owned(),
                offset: pos as u64,
                message: format!(
                    "expected a newc archive (\"070701\"), a zstd frame or zero padding; found {}",
                    describe_magic(rest)
                ),
            });
        }
    }
    Ok(segments)
}

fn shift(e: InitramfsError, by: u64) -> InitramfsError {
    match e {
        InitramfsError::Cpio { context, offset, message } => {
            InitramfsError::Cpio { context, offset: offset + by, message }
        }
        other => other,
    }
}

/// Names a compression format from its magic bytes, for messages.
pub fn describe_magic(data: &[u8]) -> String {
    let hex: Vec<String> = data.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let name = if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        "xz data (Talos before v1.8)"
    } else if data.starts_with(&[0x1f, 0x8b]) {
        "gzip data"
    } else if data.starts_with(&[0x5d, 0, 0]) {
        "lzma data"
    } else {
        "unknown data"
    };
    format!("{name} (bytes {})", hex.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        vec![
            Entry::dir("a", 0o755),
            Entry::bytes("a/b", 0o644, b"hello".to_vec()),
            Entry::symlink("a/c", "b"),
            Entry::bytes("d", 0o600, Vec::new()),
        ]
    }

    #[test]
    fn round_trip_and_layout() {
        let mut out = Vec::new();
        let n = write_archive(&mut out, &sample(), 1_700_000_000).unwrap();
        assert_eq!(n, out.len() as u64);
        assert_eq!(out.len() % 4, 0);
        let members = NewcReader::new(out.as_slice(), "t").read_archive().unwrap();
        let names: Vec<String> = members.iter().map(|m| m.header.name_lossy()).collect();
        assert_eq!(names, ["a", "a/b", "a/c", "d", "TRAILER!!!"]);
        assert_eq!(members[0].header.mode, 0o40755);
        assert_eq!(members[0].header.nlink, 2);
        assert_eq!(members[1].data, b"hello");
        assert_eq!(members[1].header.mode, 0o100644);
        assert_eq!(members[2].header.mode, 0o120777);
        assert_eq!(members[2].data, b"b");
        assert_eq!(members[3].header.mode, 0o100600);
        let inos: Vec<u32> = members.iter().map(|m| m.header.ino).collect();
        assert_eq!(inos, [0, 1, 2, 3, 0]);
        assert!(members[..4].iter().all(|m| m.header.mtime == 1_700_000_000 && m.header.uid == 0));
        // The first header as cpio -o would write it for a directory named "a".
        let expected = concat!(
            "070701", "00000000", "000041ED", "00000000", "00000000", "00000002", "6553F100", "00000000", "00000000",
            "00000000", "00000000", "00000000", "00000002", "00000000", "a\0"
        );
        assert_eq!(&out[..HEADER_LEN + 2], expected.as_bytes());
    }

    #[test]
    fn malformed_archives_are_errors() {
        let mut good = Vec::new();
        write_archive(&mut good, &sample(), 0).unwrap();
        for cut in [1, 50, 110, 115, 120, 200, good.len() - 1] {
            let e = NewcReader::new(&good[..cut], "t").read_archive().unwrap_err();
            assert!(e.to_string().contains("truncated"), "{cut}: {e}");
        }
        let mut bad = good.clone();
        bad[0] = b'1';
        let e = NewcReader::new(bad.as_slice(), "t").read_archive().unwrap_err();
        assert_eq!(e.to_string(), "t: at byte 0: expected newc magic \"070701\"; found \"170701\"");
        let mut bad = good.clone();
        bad[20] = b'x';
        let e = NewcReader::new(bad.as_slice(), "t").read_archive().unwrap_err();
        assert_eq!(e.to_string(), "t: at byte 14: expected 8 hex digits; found \"000041xD\"");
        let e = walk_initramfs(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2], "base").unwrap_err();
        assert_eq!(
            e.to_string(),
            "base: at byte 0: expected a newc archive (\"070701\"), a zstd frame or zero padding; found xz data \
             (Talos before v1.8) (bytes fd 37 7a 58 5a 00)"
        );
        let e = walk_initramfs(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0], "base").unwrap_err();
        assert!(e.to_string().starts_with("base: at byte 0: corrupt zstd frame"), "{e}");
    }

    #[test]
    fn walks_concatenated_parts() {
        let mut plain = Vec::new();
        write_archive(&mut plain, &sample()[..1], 0).unwrap();
        let mut inner = Vec::new();
        write_archive(&mut inner, &sample()[1..2], 0).unwrap();
        let mut data = plain.clone();
        data.extend_from_slice(&[0; 8]);
        data.extend(zstd::bulk::compress(&inner, 3).unwrap());
        data.extend(zstd::bulk::compress(&inner, 3).unwrap());
        let segs = walk_initramfs(&data, "t").unwrap();
        assert_eq!(segs.len(), 3);
        assert!(!segs[0].compressed && segs[1].compressed && segs[2].compressed);
        assert_eq!(segs[0].len, plain.len() as u64);
        assert_eq!(segs[1].offset, plain.len() as u64 + 8);
        assert_eq!(segs[2].archives[0][0].data, b"hello");
    }
}
