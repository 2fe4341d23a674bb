//! Squashfs images with backhand: one per extension, written as Talos's
//! `mksquashfs <rootfs> <j>.sqsh -all-root -noappend -no-progress -comp zstd -Xcompression-level 18` would
//! (internal/pkg/extensions/compress.go, Talos ≥ v1.8), and reading a subtree out of the release `rootfs.sqsh`.
//!
//! Written images have every inode owned by root (uid/gid 0, one id), every mtime and the superblock time set to
//! the build epoch, directories sorted by name (squashfs requires it; backhand keeps nodes in path order), 128 KiB
//! blocks, zstd level 18 with the level stored as compression options, duplicate data stored once, and 4 KiB end
//! padding. Two things mksquashfs does that backhand does not: hard links become separate inodes (their data is
//! still deduplicated), and extended attributes are never written (backhand cannot write xattrs, issue #32).
//! Talos writes SELinux labels only for files whose OCI layer carried a `SCHILY.xattr.security.selinux` PAX
//! record (it passes `-xattrs-exclude .*` plus one `-p "<path> x security.selinux=<ctx>"` per such file), so for
//! extensions loaded from local directories the result has no xattrs in both tools.

use std::ffi::OsStr;
use std::io::{BufReader, BufWriter, Cursor, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use backhand::compression::{CompressionOptions, Compressor, Zstd};
use backhand::{DEFAULT_BLOCK_SIZE, FilesystemCompressor, FilesystemReader, FilesystemWriter, InnerNode, NodeHeader};

use super::{Entry, EntryKind, FileSource, InitramfsError, Tree, prepare_path};

/// Talos's `-Xcompression-level 18`.
pub const ZSTD_LEVEL: u32 = 18;

fn sq_err(context: impl Into<String>) -> impl FnOnce(backhand::BackhandError) -> InitramfsError {
    let context = context.into();
    move |source| InitramfsError::Squashfs { context, source }
}

/// A minimal squashfs holding only a root directory with `root_mode` and mtime `epoch`.
///
/// backhand can set the root's mode and owner but not its mtime; a writer made with
/// `FilesystemWriter::from_fs_reader` inherits the root inode of the image read, so reading this seed gives a
/// writer whose root has the epoch as its mtime. Metadata blocks are stored uncompressed (header bit 0x8000).
fn seed_image(root_mode: u32, epoch: u32) -> Vec<u8> {
    const SB: u64 = 96;
    const NOT_SET: u64 = u64::MAX;
    let mut inode = Vec::new();
    // Basic directory inode: type, mode, uid index, gid index, mtime, inode number, then block index, nlink,
    // size (3 = empty), offset in block, parent inode (inode count + 1, as mksquashfs writes it).
    inode.extend(1u16.to_le_bytes());
    inode.extend(((root_mode & 0o7777) as u16).to_le_bytes());
    inode.extend([0u8; 4]);
    inode.extend(epoch.to_le_bytes());
    inode.extend(1u32.to_le_bytes());
    inode.extend(0u32.to_le_bytes());
    inode.extend(2u32.to_le_bytes());
    inode.extend(3u16.to_le_bytes());
    inode.extend(0u16.to_le_bytes());
    inode.extend(2u32.to_le_bytes());
    let inode_table = SB;
    let dir_table = inode_table + 2 + inode.len() as u64;
    let id_block = dir_table;
    let id_table = id_block + 2 + 4;
    let bytes_used = id_table + 8;
    let mut out = Vec::with_capacity(bytes_used as usize);
    out.extend(0x7371_7368u32.to_le_bytes());
    out.extend(1u32.to_le_bytes()); // inode count
    out.extend(epoch.to_le_bytes());
    out.extend(DEFAULT_BLOCK_SIZE.to_le_bytes());
    out.extend(0u32.to_le_bytes()); // fragments
    out.extend(6u16.to_le_bytes()); // zstd
    out.extend((DEFAULT_BLOCK_SIZE.ilog2() as u16).to_le_bytes());
    // Flags: inodes uncompressed, no fragments, duplicates removed, no xattrs, ids uncompressed.
    out.extend((0x0001u16 | 0x0010 | 0x0040 | 0x0200 | 0x0800).to_le_bytes());
    out.extend(1u16.to_le_bytes()); // ids
    out.extend(4u16.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out.extend(0u64.to_le_bytes()); // root inode reference: block 0, offset 0
    out.extend(bytes_used.to_le_bytes());
    out.extend(id_table.to_le_bytes());
    out.extend(NOT_SET.to_le_bytes()); // xattr ids
    out.extend(inode_table.to_le_bytes());
    out.extend(dir_table.to_le_bytes());
    out.extend(NOT_SET.to_le_bytes()); // fragments
    out.extend(NOT_SET.to_le_bytes()); // export
    out.extend((0x8000u16 | inode.len() as u16).to_le_bytes());
    out.extend(inode);
    out.extend((0x8000u16 | 4).to_le_bytes());
    out.extend(0u32.to_le_bytes()); // id 0 = root
    out.extend(id_block.to_le_bytes());
    out
}

/// Writes a squashfs image of `entries` (relative paths; missing parents are added with mode 0755) with root
/// directory mode `root_mode` to `out`; returns the image size in bytes.
pub fn write_image(root_mode: u32, entries: &[Entry], epoch: u32, out: &Path) -> Result<u64, InitramfsError> {
    let ctx = format!("cannot write squashfs {}", out.display());
    let seed = FilesystemReader::from_reader(Cursor::new(seed_image(root_mode, epoch))).map_err(sq_err(&ctx))?;
    let mut fs = FilesystemWriter::from_fs_reader(&seed).map_err(sq_err(&ctx))?;
    fs.set_time(epoch);
    fs.set_block_size(DEFAULT_BLOCK_SIZE);
    fs.set_kib_padding(4);
    fs.set_no_duplicate_files(true);
    fs.set_only_root_id();
    fs.set_root_mode((root_mode & 0o7777) as u16);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    let options = CompressionOptions::Zstd(Zstd { compression_level: ZSTD_LEVEL });
    fs.set_compressor(FilesystemCompressor::new(Compressor::Zstd, Some(options)).map_err(sq_err(&ctx))?);
    let mut tree = Tree::new();
    for e in entries {
        tree.insert(e.clone()).map_err(|old| InitramfsError::Squashfs {
            context: format!("{ctx}: {:?} is both a directory and not", old.display_path()),
            source: backhand::BackhandError::DuplicatedFileName,
        })?;
    }
    for e in tree.iter() {
        let path = PathBuf::from(OsStr::from_bytes(&e.path));
        let header = NodeHeader::new((e.mode & 0o7777) as u16, 0, 0, epoch);
        match &e.kind {
            EntryKind::Dir => fs.push_dir(&path, header),
            EntryKind::Symlink { target } => fs.push_symlink(
                PathBuf::from(OsStr::from_bytes(target)),
                &path,
                NodeHeader { permissions: 0o777, ..header },
            ),
            EntryKind::File { source: FileSource::Path(src), .. } => fs.push_file_from_path(src.clone(), &path, header),
            EntryKind::File { source: FileSource::Bytes(b), .. } => fs.push_file(Cursor::new(b.clone()), &path, header),
        }
        .map_err(sq_err(format!("{ctx}: cannot add {:?}", e.display_path())))?;
    }
    let file = std::fs::File::create(out).map_err(InitramfsError::io("create", out))?;
    let mut w = BufWriter::new(file);
    let (_, size) = fs.write(&mut w).map_err(sq_err(&ctx))?;
    w.flush().map_err(InitramfsError::io("write", out))?;
    Ok(size)
}

/// What a squashfs node is, for listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File(u64),
    Symlink(PathBuf),
    Other,
}

/// One node of an image as read back: path without leading `/` (the root is ""), permissions, owner, mtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub path: PathBuf,
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub kind: NodeKind,
}

fn open(image: &Path) -> Result<FilesystemReader<'static>, InitramfsError> {
    let f = std::fs::File::open(image).map_err(InitramfsError::io("read", image))?;
    FilesystemReader::from_reader(BufReader::new(f))
        .map_err(sq_err(format!("cannot read squashfs {}", image.display())))
}

/// Runs `f`, turning a panic inside backhand (a malformed image it does not guard against) into an error.
fn guarded<T>(image: &Path, f: impl FnOnce() -> Result<T, InitramfsError>) -> Result<T, InitramfsError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(InitramfsError::BaseRootfs {
            message: format!("squashfs {} is malformed (reader panicked)", image.display()),
        })
    })
}

/// Lists every node of `image` in path order.
pub fn list(image: &Path) -> Result<Vec<Listed>, InitramfsError> {
    guarded(image, || {
        let fs = open(image)?;
        Ok(fs
            .files()
            .map(|n| Listed {
                path: n.fullpath.strip_prefix("/").unwrap_or(&n.fullpath).to_owned(),
                mode: n.header.permissions,
                uid: n.header.uid,
                gid: n.header.gid,
                mtime: n.header.mtime,
                kind: match &n.inner {
                    InnerNode::Dir(_) => NodeKind::Dir,
                    InnerNode::File(f) => NodeKind::File(f.file_len() as u64),
                    InnerNode::Symlink(s) => NodeKind::Symlink(s.link.clone()),
                    _ => NodeKind::Other,
                },
            })
            .collect())
    })
}

/// Reads the content of the regular file at `path` (relative, no leading `/`) in `image`.
pub fn read_file(image: &Path, path: &Path) -> Result<Option<Vec<u8>>, InitramfsError> {
    guarded(image, || {
        let fs = open(image)?;
        let want = Path::new("/").join(path);
        for n in fs.files() {
            if n.fullpath == want
                && let InnerNode::File(f) = &n.inner
            {
                let mut out = Vec::new();
                let mut r = fs.file(f).reader_checked().map_err(sq_err(format!("cannot read {}", want.display())))?;
                std::io::copy(&mut r, &mut out).map_err(InitramfsError::io("read", &want))?;
                return Ok(Some(out));
            }
        }
        Ok(None)
    })
}

/// Copies the subtree `prefix` (relative, e.g. `usr/lib/modules`) of `image` into `dest` (which receives the same
/// relative paths); returns how many nodes were extracted. Names that would leave `dest` are rejected.
pub fn extract_subtree(image: &Path, prefix: &Path, dest: &Path) -> Result<usize, InitramfsError> {
    guarded(image, || {
        let fs = open(image)?;
        let root = Path::new("/").join(prefix);
        let mut count = 0;
        for n in fs.files() {
            let Ok(rel) = n.fullpath.strip_prefix("/") else { continue };
            if !n.fullpath.starts_with(&root) {
                continue;
            }
            if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                return Err(InitramfsError::BaseRootfs {
                    message: format!("rootfs.sqsh has an unsafe path {:?}", n.fullpath.display()),
                });
            }
            let out = prepare_path(dest, rel)?;
            match &n.inner {
                InnerNode::Dir(_) => {
                    if !out.is_dir() {
                        std::fs::create_dir(&out).map_err(InitramfsError::io("create", &out))?;
                    }
                }
                InnerNode::File(f) => {
                    let mut r = fs.file(f).reader_checked().map_err(sq_err(format!(
                        "cannot read {} in {}",
                        n.fullpath.display(),
                        image.display()
                    )))?;
                    let mut w = std::fs::File::create(&out).map_err(InitramfsError::io("create", &out))?;
                    std::io::copy(&mut r, &mut w).map_err(InitramfsError::io("write", &out))?;
                }
                InnerNode::Symlink(s) => {
                    std::os::unix::fs::symlink(&s.link, &out).map_err(InitramfsError::io("create", &out))?;
                }
                _ => continue,
            }
            count += 1;
        }
        Ok(count)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::write(&src, b"from disk").unwrap();
        let entries = vec![
            Entry::dir("usr", 0o755),
            Entry::dir("usr/local", 0o755),
            Entry::bytes("usr/local/a", 0o644, b"alpha".to_vec()),
            Entry::file("usr/local/b", 0o755, src, 9),
            Entry::symlink("usr/local/c", "a"),
        ];
        let img = dir.path().join("x.sqsh");
        let size = write_image(0o755, &entries, 1_700_000_000, &img).unwrap();
        assert_eq!(size, std::fs::metadata(&img).unwrap().len());
        assert_eq!(size % 4096, 0);
        let l = list(&img).unwrap();
        let paths: Vec<_> = l.iter().map(|n| n.path.display().to_string()).collect();
        assert_eq!(paths, ["", "usr", "usr/local", "usr/local/a", "usr/local/b", "usr/local/c"]);
        assert!(l.iter().all(|n| n.uid == 0 && n.gid == 0), "{l:#?}");
        assert!(l.iter().all(|n| n.mtime == 1_700_000_000), "{l:#?}");
        assert_eq!(l[4].mode, 0o755);
        assert_eq!(l[5].kind, NodeKind::Symlink("a".into()));
        assert_eq!(read_file(&img, Path::new("usr/local/b")).unwrap().unwrap(), b"from disk");
        let out = dir.path().join("out");
        assert_eq!(extract_subtree(&img, Path::new("usr/local"), &out).unwrap(), 4);
        assert_eq!(std::fs::read(out.join("usr/local/a")).unwrap(), b"alpha");
        assert_eq!(std::fs::read_link(out.join("usr/local/c")).unwrap(), Path::new("a"));
        let img2 = dir.path().join("y.sqsh");
        write_image(0o755, &entries, 1_700_000_000, &img2).unwrap();
        assert_eq!(std::fs::read(&img).unwrap(), std::fs::read(&img2).unwrap());
    }

    #[test]
    fn garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("bad.sqsh");
        let mut data = b"hsqs".to_vec();
        data.resize(200, 0xff);
        std::fs::write(&img, &data).unwrap();
        assert!(list(&img).is_err());
        std::fs::write(&img, b"nope").unwrap();
        assert!(list(&img).is_err());
    }
}
