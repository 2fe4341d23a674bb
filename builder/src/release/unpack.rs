//! Turning image layers into files: picking a few files out of an image (the imager's boot files, the
//! catalogue's `image-digests`) and unpacking a whole image (an extension) into a directory.
//!
//! Layers are applied the way container runtimes do (OCI image spec, "Applying Changesets"): later layers
//! override earlier ones; `.wh.<name>` deletes `<name>` from the layers below; `.wh..wh..opq` hides
//! everything the layers below put in its directory; an entry replaces whatever was at its path (a file
//! replaces a directory and the other way round). A whiteout never hides an entry of its own layer.
//!
//! Picking files reads layers from the top down and stops as soon as every wanted file is settled, so the
//! layers below (the bulk of an imager image: tools, libraries) are never downloaded.
//!
//! Unpacking is defensive, since an image is input: absolute paths, `..` components, device files and FIFOs
//! are refused, nothing is ever written through a symlink (an entry whose parent is a symlink is refused, as
//! is a hard link whose target is), and files are created fresh (`O_EXCL`) after removing what was there.
//! Modes (permission bits, setuid/setgid/sticky) and modification times of files and directories are kept;
//! owners and extended attributes are not (Talos's imager applies its own SELinux labels and squashfs makes
//! everything root's).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use tar::EntryType;

use super::cache::remove_tree;
use super::error::{ReleaseError, Result};
use super::oci::{Decoder, LayerCtx, LayerStream, OpenImage, Store};

/// A tar entry path made relative: `./` and empty components dropped. Absolute paths and `..` are refused.
pub(crate) fn normalize(raw: &Path) -> std::result::Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
            Component::ParentDir => return Err("'..' component"),
        }
    }
    Ok(out)
}

fn entry_path(ctx: &LayerCtx, entry: &tar::Entry<'_, Decoder>) -> Result<PathBuf> {
    let raw = entry.path().map_err(|e| ctx.malformed(e))?.into_owned();
    normalize(&raw).map_err(|reason| ctx.unsafe_entry(raw.display(), reason))
}

fn link_target(ctx: &LayerCtx, entry: &tar::Entry<'_, Decoder>, path: &Path) -> Result<PathBuf> {
    match entry.link_name().map_err(|e| ctx.malformed(e))? {
        Some(l) => Ok(l.into_owned()),
        None => Err(ctx.malformed(format!("link {} has no target", path.display()))),
    }
}

fn kind_name(t: EntryType) -> &'static str {
    match t {
        EntryType::Regular | EntryType::Continuous => "a regular file",
        EntryType::Directory => "a directory",
        EntryType::Symlink => "a symlink",
        EntryType::Link => "a hard link",
        EntryType::Char => "a character device",
        EntryType::Block => "a block device",
        EntryType::Fifo => "a fifo",
        _ => "an unsupported tar entry",
    }
}

enum Whiteout<'a> {
    /// `.wh..wh..opq`: the directory hides what lower layers put in it.
    Opaque,
    /// `.wh.<name>`: `<name>` is deleted.
    Delete(&'a OsStr),
    /// `.wh..wh.<other>`: aufs bookkeeping, ignored.
    Meta,
}

fn whiteout(name: &OsStr) -> Option<Whiteout<'_>> {
    use std::os::unix::ffi::OsStrExt as _;
    let rest = name.as_bytes().strip_prefix(b".wh.")?;
    if rest == b".wh..opq" {
        Some(Whiteout::Opaque)
    } else if rest.starts_with(b".wh.") || rest.is_empty() {
        Some(Whiteout::Meta)
    } else {
        Some(Whiteout::Delete(OsStr::from_bytes(rest)))
    }
}

fn write_entry_file(ctx: &LayerCtx, entry: &mut tar::Entry<'_, Decoder>, dest: &Path) -> Result<()> {
    let mode = entry.header().mode().map_err(|e| ctx.malformed(e))? & 0o7777;
    let mtime = entry.header().mtime().unwrap_or(0);
    let mut f = File::options().write(true).create_new(true).open(dest).map_err(|e| ReleaseError::write(dest, e))?;
    io::copy(entry, &mut f).map_err(|e| ctx.malformed(format!("cannot read {}: {e}", dest.display())))?;
    f.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| ReleaseError::write(dest, e))?;
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime)).map_err(|e| ReleaseError::write(dest, e))?;
    Ok(())
}

fn remove_path(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => remove_tree(p).map_err(|e| ReleaseError::write(p, e)),
        Ok(_) => fs::remove_file(p).map_err(|e| ReleaseError::write(p, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ReleaseError::write(p, e)),
    }
}

/// Settled state of one wanted file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Wanted {
    Open,
    Found,
    Gone(String),
}

/// Extracts the files at `wanted` (relative paths) from the image into `dest/<file name>`, reading layers
/// from the top down and fetching only the layers needed. A file that is missing, deleted by a whiteout or
/// not a regular file is an error naming it.
pub(crate) fn extract_files(store: &mut dyn Store, img: &OpenImage, wanted: &[&str], dest: &Path) -> Result<()> {
    let wanted: Vec<PathBuf> = wanted.iter().map(PathBuf::from).collect();
    let out_path = |i: usize| dest.join(wanted[i].file_name().unwrap_or(wanted[i].as_os_str()));
    let mut state = vec![Wanted::Open; wanted.len()];
    for layer in img.layers.iter().rev() {
        if !state.contains(&Wanted::Open) {
            break;
        }
        let blob = store.blob_file(&img.image, &layer.digest, layer.size)?;
        let open: Vec<usize> = (0..wanted.len()).filter(|&i| state[i] == Wanted::Open).collect();
        let mut provided: Vec<Option<std::result::Result<(), &'static str>>> = vec![None; wanted.len()];
        let mut hidden: Vec<Option<String>> = vec![None; wanted.len()];
        let mut links: Vec<(usize, PathBuf)> = Vec::new();
        LayerStream::open(&img.image, layer, &blob)?.for_each(layer.size, |ctx, entry| {
            let p = entry_path(ctx, entry)?;
            let Some(name) = p.file_name() else { return Ok(()) };
            if let Some(w) = whiteout(name) {
                let parent = p.parent().unwrap_or(Path::new(""));
                for &i in &open {
                    match w {
                        Whiteout::Opaque if wanted[i].starts_with(parent) && wanted[i] != parent => {
                            hidden[i] =
                                Some(format!("layer {} hides it (opaque directory /{})", ctx.digest, parent.display()));
                        }
                        Whiteout::Delete(n) if wanted[i].starts_with(parent.join(n)) => {
                            hidden[i] = Some(format!("layer {} deletes it (whiteout)", ctx.digest));
                        }
                        _ => {}
                    }
                }
                return Ok(());
            }
            let ty = entry.header().entry_type();
            for &i in &open {
                if p == wanted[i] {
                    let out = out_path(i);
                    remove_path(&out)?;
                    links.retain(|(j, _)| *j != i);
                    match ty {
                        EntryType::Regular | EntryType::Continuous => {
                            write_entry_file(ctx, entry, &out)?;
                            provided[i] = Some(Ok(()));
                        }
                        EntryType::Link => {
                            let t = link_target(ctx, entry, &p)?;
                            let t = normalize(&t).map_err(|r| {
                                ctx.unsafe_entry(p.display(), format!("hard link target {}: {r}", t.display()))
                            })?;
                            links.push((i, t));
                            provided[i] = Some(Ok(()));
                        }
                        other => provided[i] = Some(Err(kind_name(other))),
                    }
                } else if wanted[i].starts_with(&p) && ty != EntryType::Directory {
                    hidden[i] = Some(format!("layer {} replaces /{} with {}", ctx.digest, p.display(), kind_name(ty)));
                }
            }
            Ok(())
        })?;
        if !links.is_empty() {
            // Hard links point at an earlier entry of the same layer: read the layer again for the targets.
            LayerStream::open(&img.image, layer, &blob)?.for_each(layer.size, |ctx, entry| {
                let p = entry_path(ctx, entry)?;
                let ty = entry.header().entry_type();
                for (i, target) in &links {
                    if &p == target && matches!(ty, EntryType::Regular | EntryType::Continuous) {
                        let out = out_path(*i);
                        remove_path(&out)?;
                        write_entry_file(ctx, entry, &out)?;
                        return Ok(());
                    }
                }
                Ok(())
            })?;
            for (i, target) in &links {
                if !out_path(*i).is_file() {
                    provided[*i] = None;
                    state[*i] = Wanted::Gone(format!(
                        "found a hard link to {}, which is not a regular file of the same layer",
                        target.display()
                    ));
                }
            }
        }
        for &i in &open {
            match (provided[i], hidden[i].take()) {
                (Some(Ok(())), _) => state[i] = Wanted::Found,
                (Some(Err(kind)), _) => state[i] = Wanted::Gone(format!("found {kind}")),
                (None, Some(why)) => state[i] = Wanted::Gone(why),
                (None, None) => {}
            }
        }
    }
    for (i, s) in state.iter().enumerate() {
        let found = match s {
            Wanted::Found => continue,
            Wanted::Open => "found no layer with it".to_owned(),
            Wanted::Gone(why) => why.clone(),
        };
        return Err(ReleaseError::MissingFile {
            reference: img.image.tagged(),
            path: format!("/{}", wanted[i].display()),
            found,
        });
    }
    Ok(())
}

/// Unpacks every layer of the image, bottom to top, into `dest` (an empty directory).
pub(crate) fn unpack_image(store: &mut dyn Store, img: &OpenImage, dest: &Path) -> Result<()> {
    let mut dirs: BTreeMap<PathBuf, (u32, u64)> = BTreeMap::new();
    for layer in &img.layers {
        let blob = store.blob_file(&img.image, &layer.digest, layer.size)?;
        let mut seen = Seen::default();
        LayerStream::open(&img.image, layer, &blob)?
            .for_each(layer.size, |ctx, entry| apply_entry(ctx, entry, dest, &mut seen, &mut dirs))?;
    }
    // Directory modes last (a read-only directory would refuse its children), children before parents.
    for (rel, (mode, mtime)) in dirs.iter().rev() {
        let p = dest.join(rel);
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            let f = File::open(&p).map_err(|e| ReleaseError::write(&p, e))?;
            f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(*mtime))
                .map_err(|e| ReleaseError::write(&p, e))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(|e| ReleaseError::write(&p, e))?;
        }
    }
    Ok(())
}

/// The paths the current layer wrote, and their ancestors (whiteouts never hide these).
#[derive(Default)]
struct Seen {
    written: HashSet<PathBuf>,
    ancestors: HashSet<PathBuf>,
}

impl Seen {
    fn add(&mut self, p: &Path) {
        self.written.insert(p.to_owned());
        let mut a = p.parent();
        while let Some(x) = a.filter(|x| !x.as_os_str().is_empty()) {
            if !self.ancestors.insert(x.to_owned()) {
                break;
            }
            a = x.parent();
        }
    }

    fn keeps(&self, p: &Path) -> bool {
        self.written.contains(p) || self.ancestors.contains(p)
    }
}

/// Walks `rel`'s components under `dest`; each must be a real directory (never a symlink). Missing ones are
/// created when `create`, else `Ok(false)` says the path does not exist.
fn check_dirs(ctx: &LayerCtx, dest: &Path, rel: &Path, entry: &Path, create: bool) -> Result<bool> {
    let mut cur = dest.to_owned();
    let mut sofar = PathBuf::new();
    for c in rel.components() {
        cur.push(c);
        sofar.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ctx.unsafe_entry(entry.display(), format!("goes through the symlink {}", sofar.display())));
            }
            Ok(_) => {
                return Err(ctx.unsafe_entry(entry.display(), format!("{} is not a directory", sofar.display())));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Ok(false);
                }
                fs::create_dir(&cur).map_err(|e| ReleaseError::write(&cur, e))?;
            }
            Err(e) => return Err(ReleaseError::read(&cur, e)),
        }
    }
    Ok(true)
}

/// Removes everything under `rel` that the current layer did not write.
fn make_opaque(dest: &Path, rel: &Path, seen: &Seen) -> Result<()> {
    let dir = dest.join(rel);
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ReleaseError::read(&dir, e)),
    };
    for e in rd {
        let e = e.map_err(|e| ReleaseError::read(&dir, e))?;
        let child = rel.join(e.file_name());
        if !seen.keeps(&child) {
            remove_path(&e.path())?;
        } else if fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_dir()) {
            make_opaque(dest, &child, seen)?;
        }
    }
    Ok(())
}

fn apply_entry(
    ctx: &LayerCtx,
    entry: &mut tar::Entry<'_, Decoder>,
    dest: &Path,
    seen: &mut Seen,
    dirs: &mut BTreeMap<PathBuf, (u32, u64)>,
) -> Result<()> {
    let p = entry_path(ctx, entry)?;
    let ty = entry.header().entry_type();
    let Some(name) = p.file_name() else {
        return Ok(()); // the root directory itself
    };
    let parent = p.parent().unwrap_or(Path::new("")).to_owned();
    if let Some(w) = whiteout(name) {
        if !check_dirs(ctx, dest, &parent, &p, false)? {
            return Ok(());
        }
        match w {
            Whiteout::Opaque => make_opaque(dest, &parent, seen)?,
            Whiteout::Delete(n) => {
                let target = parent.join(n);
                if !seen.keeps(&target) {
                    remove_path(&dest.join(&target))?;
                }
            }
            Whiteout::Meta => {}
        }
        return Ok(());
    }
    match ty {
        EntryType::Char | EntryType::Block => return Err(ctx.unsafe_entry(p.display(), "device files are not allowed")),
        EntryType::Fifo => return Err(ctx.unsafe_entry(p.display(), "fifos are not allowed")),
        EntryType::XGlobalHeader => return Ok(()),
        EntryType::Regular | EntryType::Continuous | EntryType::Directory | EntryType::Symlink | EntryType::Link => {}
        other => {
            return Err(
                ctx.unsafe_entry(p.display(), format!("unsupported tar entry type {:?}", other.as_byte() as char))
            );
        }
    }
    check_dirs(ctx, dest, &parent, &p, true)?;
    let full = dest.join(&p);
    let existing = fs::symlink_metadata(&full).ok();
    match ty {
        EntryType::Directory => {
            if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                remove_path(&full)?;
                fs::create_dir(&full).map_err(|e| ReleaseError::write(&full, e))?;
            }
            let mode = entry.header().mode().map_err(|e| ctx.malformed(e))? & 0o7777;
            dirs.insert(p.clone(), (mode, entry.header().mtime().unwrap_or(0)));
        }
        EntryType::Regular | EntryType::Continuous => {
            remove_path(&full)?;
            write_entry_file(ctx, entry, &full)?;
        }
        EntryType::Symlink => {
            let target = link_target(ctx, entry, &p)?;
            remove_path(&full)?;
            std::os::unix::fs::symlink(&target, &full).map_err(|e| ReleaseError::write(&full, e))?;
        }
        _ => {
            // Hard link: the target must be a file or symlink already in the tree, reached without symlinks.
            let raw = link_target(ctx, entry, &p)?;
            let target = normalize(&raw)
                .map_err(|r| ctx.unsafe_entry(p.display(), format!("hard link target {}: {r}", raw.display())))?;
            let tparent = target.parent().unwrap_or(Path::new(""));
            let tfull = dest.join(&target);
            let ok =
                check_dirs(ctx, dest, tparent, &p, false)? && fs::symlink_metadata(&tfull).is_ok_and(|m| !m.is_dir());
            if !ok {
                return Err(ctx.unsafe_entry(
                    p.display(),
                    format!("hard link target {} is not a file in the image", target.display()),
                ));
            }
            if target != p {
                remove_path(&full)?;
                fs::hard_link(&tfull, &full).map_err(|e| ReleaseError::write(&full, e))?;
            }
        }
    }
    seen.add(&p);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(Path::new("./usr//install/./amd64/")).unwrap(), PathBuf::from("usr/install/amd64"));
        assert_eq!(normalize(Path::new("./")).unwrap(), PathBuf::new());
        assert_eq!(normalize(Path::new("/etc/passwd")).unwrap_err(), "absolute path");
        assert_eq!(normalize(Path::new("a/../../b")).unwrap_err(), "'..' component");
    }

    #[test]
    fn whiteout_names() {
        assert!(matches!(whiteout(OsStr::new(".wh..wh..opq")), Some(Whiteout::Opaque)));
        assert!(matches!(whiteout(OsStr::new(".wh..wh.plnk")), Some(Whiteout::Meta)));
        assert!(matches!(whiteout(OsStr::new(".wh.vmlinuz")), Some(Whiteout::Delete(n)) if n == "vmlinuz"));
        assert!(whiteout(OsStr::new("vmlinuz")).is_none());
        use std::os::unix::ffi::OsStrExt as _;
        let raw = OsStr::from_bytes(b".wh.\xff");
        assert!(matches!(whiteout(raw), Some(Whiteout::Delete(n)) if n.as_bytes() == b"\xff"));
    }
}
