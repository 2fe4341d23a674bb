//! System extensions: loading one from a local directory (`manifest.yaml` + `rootfs/`), validating it the way
//! Talos's `pkg/machinery/extensions` does, and writing the `extensions.yaml` that Talos's init reads.
//!
//! Validation follows `Load` and `Validate` (load.go, validate.go, extensions.go) with these differences, each
//! stricter: `metadata.name`, `version`, `author` and `description` are required; the world-writable check
//! really runs (Talos tests `DirEntry.Type().Perm()`, which is always 0, so its check never fires); symlink
//! targets must be non-empty and must not climb above the extension's root. Allowed paths are matched as Talos
//! matches them, by plain string prefix of the absolute path, and only for non-directories. Talos's imager
//! checks contents only when `ExtensionValidateContents` is set (it never is in v1.14); talforge always does.
//! The compatibility constraint is a blang/semver range (`>= v1.12.0`, `>=1.12.0 <1.15.0`, `... || ...`)
//! checked against the target's `major.minor.patch`, pre-release ignored, as Talos does.

use std::cmp::Ordering;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Entry, EntryKind, InitramfsError, Tree};
use crate::spec::units::Version;
use crate::yaml::{Mapping, Node, emit};

/// Paths allowed in extension images (pkg/machinery/extensions/extensions.go `AllowedPaths`, v1.10–v1.14).
pub const ALLOWED_PATHS: &[&str] = &[
    "/etc/cri/conf.d",
    "/usr/lib/firmware",
    "/usr/lib/modules",
    "/usr/lib/ld-linux-x86-64.so.2",
    "/usr/lib/ld-linux-aarch64.so.1",
    "/usr/bin/ldconfig",
    "/etc/ld.so.conf",
    "/etc/ld.so.cache",
    "/usr/bin/nvidia-modprobe",
    "/usr/bin/nvidia-pcc",
    "/usr/bin/nvidia-smi",
    "/usr/bin/nvidia-ctk",
    "/usr/bin/nvidia-cdi-hook",
    "/usr/bin/nvme",
    "/usr/lib/udev/rules.d",
    "/usr/local",
    "/usr/share/glvnd",
    "/usr/share/egl",
    "/etc/vulkan",
];

/// `manifest.yaml` of an extension (metadata.go `Manifest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub version: String,
    pub metadata: Metadata,
}

/// Extension metadata (metadata.go `Metadata`), also written per layer into `extensions.yaml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub name: String,
    pub version: String,
    pub author: String,
    pub description: String,
    /// `compatibility.talos.version` as written; empty means "any".
    pub talos_constraint: String,
    pub extra_info: Option<String>,
}

impl Metadata {
    /// The metadata as go-yaml marshals Talos's `Metadata` struct: fields in declaration order,
    /// `compatibility.talos.version` always present, `extraInfo` omitted when empty.
    pub fn to_node(&self) -> Node {
        let mut constraint = Mapping::new();
        constraint.insert("version", Node::str(&self.talos_constraint));
        let mut talos = Mapping::new();
        talos.insert("talos", Node::map(constraint));
        let mut m = Mapping::new();
        m.insert("name", Node::str(&self.name));
        m.insert("version", Node::str(&self.version));
        m.insert("author", Node::str(&self.author));
        m.insert("description", Node::str(&self.description));
        m.insert("compatibility", Node::map(talos));
        if let Some(x) = self.extra_info.as_deref().filter(|x| !x.is_empty()) {
            m.insert("extraInfo", Node::str(x));
        }
        Node::map(m)
    }
}

/// Renders `extensions.yaml` (config.go `Config`: `layers: [{image, metadata}]`) as Talos's
/// `yaml.NewEncoder(f).Encode(cfg)` writes it (v3 defaults: 4-space indentation, non-compact sequences).
pub fn extensions_yaml<'a>(layers: impl IntoIterator<Item = (&'a str, &'a Metadata)>) -> String {
    let items: Vec<Node> = layers
        .into_iter()
        .map(|(image, meta)| {
            let mut layer = Mapping::new();
            layer.insert("image", Node::str(image));
            layer.insert("metadata", meta.to_node());
            Node::map(layer)
        })
        .collect();
    let mut root = Mapping::new();
    root.insert("layers", Node::seq(items));
    emit::to_string(&Node::map(root))
}

/// An extension unpacked in a local directory, with its rootfs scanned and validated.
#[derive(Clone, Debug)]
pub struct Extension {
    pub manifest: Manifest,
    dir: PathBuf,
    manifest_bytes: Vec<u8>,
    constraint: Option<SemverRange>,
    root_mode: u32,
    entries: Vec<Entry>,
}

impl Extension {
    /// Loads the extension in `dir`: exactly `manifest.yaml` and `rootfs/`, a valid `v1alpha1` manifest, and a
    /// rootfs with only allowed paths, no world-writable members, no device/fifo/socket files and sane symlinks.
    pub fn load(dir: &Path) -> Result<Extension, InitramfsError> {
        let layout = |message: String| InitramfsError::ExtensionLayout { dir: dir.to_owned(), message };
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(InitramfsError::io("read", dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(InitramfsError::io("read", dir))?;
        names.sort();
        for n in &names {
            if n != "manifest.yaml" && n != "rootfs" {
                return Err(layout(format!(
                    "unexpected file {:?}; expected only manifest.yaml and rootfs/",
                    n.to_string_lossy()
                )));
            }
        }
        let manifest_path = dir.join("manifest.yaml");
        if !names.iter().any(|n| n == "manifest.yaml") {
            return Err(layout("expected manifest.yaml; found none".into()));
        }
        let manifest_bytes = std::fs::read(&manifest_path).map_err(InitramfsError::io("read", &manifest_path))?;
        let manifest = parse_manifest(&manifest_bytes)
            .map_err(|message| InitramfsError::Manifest { dir: dir.to_owned(), message })?;
        let constraint = match manifest.metadata.talos_constraint.trim() {
            "" => None,
            c => Some(SemverRange::parse(c).map_err(|e| InitramfsError::Manifest {
                dir: dir.to_owned(),
                message: format!("compatibility.talos.version: {e}"),
            })?),
        };
        let rootfs = dir.join("rootfs");
        let meta = std::fs::symlink_metadata(&rootfs)
            .map_err(|_| layout("expected a rootfs/ directory; found none".into()))?;
        if !meta.is_dir() {
            return Err(layout("expected rootfs/ to be a directory; found a file".into()));
        }
        let name = manifest.metadata.name.clone();
        let root_mode = meta.permissions().mode() & 0o7777;
        if root_mode & 0o002 != 0 {
            return Err(InitramfsError::WorldWritable { name, path: "/".into(), mode: root_mode });
        }
        let mut entries = Vec::new();
        scan(&rootfs, &mut Vec::new(), &name, &mut entries)?;
        Ok(Extension { manifest, dir: dir.to_owned(), manifest_bytes, constraint, root_mode, entries })
    }

    /// An extension made in memory rather than loaded (Talos's virtual ones: `modules.dep`, Image Factory's
    /// `schematic`, the embedded machine config): `entries` relative to its root (missing parent directories are
    /// added with mode 0755; a later entry for the same path replaces an earlier one), checked by the same content rules as [`Self::load`] and the same manifest rules
    /// (required fields, a parsable constraint).
    pub fn from_parts(metadata: Metadata, root_mode: u32, entries: Vec<Entry>) -> Result<Extension, InitramfsError> {
        let dir = PathBuf::from(format!("<generated {}>", metadata.name));
        for (field, value) in [
            ("name", &metadata.name),
            ("version", &metadata.version),
            ("author", &metadata.author),
            ("description", &metadata.description),
        ] {
            if value.trim().is_empty() {
                return Err(InitramfsError::Manifest {
                    dir,
                    message: format!("expected a non-empty metadata.{field}; found none"),
                });
            }
        }
        let constraint = match metadata.talos_constraint.trim() {
            "" => None,
            c => Some(SemverRange::parse(c).map_err(|e| InitramfsError::Manifest {
                dir: dir.clone(),
                message: format!("compatibility.talos.version: {e}"),
            })?),
        };
        if root_mode & 0o002 != 0 {
            return Err(InitramfsError::WorldWritable { name: metadata.name, path: "/".into(), mode: root_mode });
        }
        let mut tree = Tree::new();
        for e in entries {
            tree.insert(e).map_err(|old| InitramfsError::ExtensionLayout {
                dir: dir.clone(),
                message: format!("{:?} is given both as a directory and as something else", old.display_path()),
            })?;
        }
        let entries: Vec<Entry> = tree.iter().cloned().collect();
        for e in &entries {
            validate_entry(&metadata.name, e)?;
        }
        Ok(Extension {
            manifest: Manifest { version: "v1alpha1".into(), metadata },
            dir: PathBuf::new(),
            manifest_bytes: Vec::new(),
            constraint,
            root_mode: root_mode & 0o7777,
            entries,
        })
    }

    /// Whether this extension was made with [`Self::from_parts`] rather than loaded from a directory.
    pub fn is_generated(&self) -> bool {
        self.dir.as_os_str().is_empty()
    }

    pub fn name(&self) -> &str {
        &self.manifest.metadata.name
    }

    pub fn version(&self) -> &str {
        &self.manifest.metadata.version
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bytes of `manifest.yaml` as read.
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    /// Permission bits of `rootfs/` (the squashfs root directory).
    pub fn root_mode(&self) -> u32 {
        self.root_mode
    }

    /// The rootfs members (not the root itself), relative paths in byte order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Checks `compatibility.talos.version` against the target Talos version (its `major.minor.patch`).
    pub fn check_compatible(&self, talos: &Version) -> Result<(), InitramfsError> {
        let Some(range) = &self.constraint else { return Ok(()) };
        let core = Semver { major: talos.major, minor: talos.minor, patch: talos.patch, pre: Vec::new() };
        if range.matches(&core) {
            return Ok(());
        }
        Err(InitramfsError::Incompatible {
            name: self.name().to_owned(),
            version: self.version().to_owned(),
            constraint: self.manifest.metadata.talos_constraint.trim().to_owned(),
            talos: talos.tag(),
        })
    }
}

#[derive(Deserialize)]
struct RawManifest {
    version: Option<String>,
    metadata: Option<RawMetadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMetadata {
    name: Option<String>,
    version: Option<String>,
    author: Option<String>,
    description: Option<String>,
    compatibility: Option<RawCompatibility>,
    extra_info: Option<String>,
}

#[derive(Deserialize)]
struct RawCompatibility {
    talos: Option<RawConstraint>,
}

#[derive(Deserialize)]
struct RawConstraint {
    version: Option<String>,
}

/// Parses `manifest.yaml`. Unknown fields are ignored and scalars are taken as written (`version: 1.10` is the
/// string "1.10"), as go-yaml decodes into Talos's string fields.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("expected UTF-8 text; found invalid bytes ({e})"))?;
    let raw: RawManifest = serde_saphyr::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
    let version = raw.version.unwrap_or_default();
    if version != "v1alpha1" {
        return Err(format!("expected version: v1alpha1; found {version:?}"));
    }
    let m = raw.metadata.ok_or("expected a metadata mapping; found none")?;
    let required = |v: Option<String>, field: &str| match v {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(format!("expected a non-empty metadata.{field}; found none")),
    };
    let metadata = Metadata {
        name: required(m.name, "name")?,
        version: required(m.version, "version")?,
        author: required(m.author, "author")?,
        description: required(m.description, "description")?,
        talos_constraint: m.compatibility.and_then(|c| c.talos).and_then(|t| t.version).unwrap_or_default(),
        extra_info: m.extra_info,
    };
    Ok(Manifest { version, metadata })
}

fn file_kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Whether `abs` (an absolute path in the extension) is allowed, by Talos's plain prefix rule.
pub fn path_allowed(abs: &str) -> bool {
    ALLOWED_PATHS.iter().any(|p| abs.starts_with(p))
}

/// Walks `dir` (relative path `rel` inside the rootfs) in byte order of names, validating and collecting.
fn scan(dir: &Path, rel: &mut Vec<u8>, name: &str, out: &mut Vec<Entry>) -> Result<(), InitramfsError> {
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .map_err(InitramfsError::io("read", dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(InitramfsError::io("read", dir))?;
    children.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for child in children {
        let path = dir.join(&child);
        let base = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(child.as_bytes());
        let abs = format!("/{}", String::from_utf8_lossy(rel));
        let meta = std::fs::symlink_metadata(&path).map_err(InitramfsError::io("read", &path))?;
        let ft = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        if !(ft.is_dir() || ft.is_file() || ft.is_symlink()) {
            return Err(InitramfsError::SpecialFile { name: name.into(), path: abs, kind: file_kind(&ft) });
        }
        let entry = if ft.is_dir() {
            Entry::dir(rel.clone(), mode)
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(InitramfsError::io("read", &path))?;
            Entry::symlink(rel.clone(), target.as_os_str().as_bytes().to_vec())
        } else {
            Entry::file(rel.clone(), mode, path.clone(), meta.len())
        };
        validate_entry(name, &entry)?;
        out.push(entry);
        if ft.is_dir() {
            scan(&path, rel, name, out)?;
        }
        rel.truncate(base);
    }
    Ok(())
}

/// Talos's content rules for one member: no world-writable bits (symlinks aside, whose mode means nothing),
/// non-directories only under [`ALLOWED_PATHS`], and sane symlink targets.
fn validate_entry(name: &str, e: &Entry) -> Result<(), InitramfsError> {
    let abs = format!("/{}", e.display_path());
    let is_link = matches!(e.kind, EntryKind::Symlink { .. });
    if !is_link && e.mode & 0o002 != 0 {
        return Err(InitramfsError::WorldWritable { name: name.into(), path: abs, mode: e.mode & 0o7777 });
    }
    if e.kind != EntryKind::Dir && !path_allowed(&abs) {
        return Err(InitramfsError::ForbiddenPath { name: name.into(), path: abs, allowed: ALLOWED_PATHS.to_vec() });
    }
    if let EntryKind::Symlink { target } = &e.kind {
        check_symlink(&e.path, target).map_err(|problem| InitramfsError::BadSymlink {
            name: name.into(),
            path: abs.clone(),
            target: String::from_utf8_lossy(target).into_owned(),
            problem,
        })?;
    }
    Ok(())
}

/// A symlink target must be non-empty and, if relative, stay inside the root when resolved from the link's
/// directory (absolute targets resolve in the final merged root and are fine).
fn check_symlink(link: &[u8], target: &[u8]) -> Result<(), &'static str> {
    if target.is_empty() {
        return Err("has an empty target");
    }
    if target.len() > 4095 {
        return Err("has a target longer than 4095 bytes");
    }
    if target.starts_with(b"/") {
        return Ok(());
    }
    let mut depth = link.split(|&b| b == b'/').count() as i64 - 1;
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return Err("points above the extension's root");
                }
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

/// A semantic version as blang/semver parses it (strict `X.Y.Z[-pre][+build]`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Semver {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<String>,
}

impl Semver {
    fn parse(s: &str) -> Result<Semver, String> {
        let bad = || format!("expected a version like 1.12.0; found {s:?}");
        let s = s.split_once('+').map_or(s, |(v, _)| v);
        let (core, pre) = s.split_once('-').map_or((s, None), |(c, p)| (c, Some(p)));
        let nums: Vec<&str> = core.split('.').collect();
        if nums.len() != 3 {
            return Err(bad());
        }
        let num = |t: &str| -> Result<u64, String> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) || (t.len() > 1 && t.starts_with('0')) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        let pre = match pre {
            None => Vec::new(),
            Some(p) => {
                let ids: Vec<String> = p.split('.').map(str::to_owned).collect();
                if ids.iter().any(|i| i.is_empty() || !i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')) {
                    return Err(bad());
                }
                ids
            }
        };
        Ok(Semver { major: num(nums[0])?, minor: num(nums[1])?, patch: num(nums[2])?, pre })
    }
}

impl Ord for Semver {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch)).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&other.pre) {
                        let o = match (a.parse::<u64>(), b.parse::<u64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            (Err(_), Err(_)) => a.cmp(b),
                        };
                        if o != Ordering::Equal {
                            return o;
                        }
                    }
                    self.pre.len().cmp(&other.pre.len())
                }
            }
        })
    }
}

impl PartialOrd for Semver {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A blang/semver `Range`: alternatives (`||`) of conjunctions (space-separated comparisons).
#[derive(Clone, Debug, PartialEq, Eq)]
struct SemverRange(Vec<Vec<(Op, Semver)>>);

impl SemverRange {
    fn parse(text: &str) -> Result<SemverRange, String> {
        let bad = |why: String| format!("expected a version range like \">= v1.12.0\"; found {text:?} ({why})");
        // Talos's `trim`: drop a `v` that precedes a digit.
        let b = text.as_bytes();
        let mut s = String::with_capacity(text.len());
        for (i, c) in text.char_indices() {
            if c == 'v' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                continue;
            }
            s.push(c);
        }
        // blang `splitAndTrim`: split on spaces, except spaces right after an operator character.
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut last = '\0';
        for c in s.chars() {
            if c == ' ' {
                if !matches!(last, '>' | '<' | '=') && !cur.is_empty() {
                    parts.push(std::mem::take(&mut cur));
                }
            } else {
                cur.push(c);
                last = c;
            }
        }
        if !cur.is_empty() {
            parts.push(cur);
        }
        let mut alternatives = vec![Vec::new()];
        for part in parts {
            if part == "||" {
                if alternatives.last().is_some_and(Vec::is_empty) {
                    return Err(bad("\"||\" without a comparison before it".into()));
                }
                alternatives.push(Vec::new());
                continue;
            }
            let split = part.find(|c: char| !matches!(c, '<' | '>' | '=' | '!')).unwrap_or(part.len());
            let (op, ver) = part.split_at(split);
            let op = match op {
                "" | "=" | "==" => Op::Eq,
                "!" | "!=" => Op::Ne,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                "<" => Op::Lt,
                "<=" => Op::Le,
                other => return Err(bad(format!("unknown operator {other:?}"))),
            };
            if ver.contains(['x', 'X', '*']) {
                return Err(bad("wildcard versions are not supported".into()));
            }
            let v = Semver::parse(ver).map_err(bad)?;
            if let Some(last) = alternatives.last_mut() {
                last.push((op, v));
            }
        }
        if alternatives.iter().any(Vec::is_empty) {
            return Err(bad("no comparison".into()));
        }
        Ok(SemverRange(alternatives))
    }

    fn matches(&self, v: &Semver) -> bool {
        self.0.iter().any(|all| {
            all.iter().all(|(op, want)| {
                let o = v.cmp(want);
                match op {
                    Op::Eq => o == Ordering::Equal,
                    Op::Ne => o != Ordering::Equal,
                    Op::Gt => o == Ordering::Greater,
                    Op::Ge => o != Ordering::Less,
                    Op::Lt => o == Ordering::Less,
                    Op::Le => o != Ordering::Greater,
                }
            })
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        })
    }
}

/// Whether `constraint` (a `compatibility.talos.version` value) accepts Talos `talos`; for callers that
/// filter catalog entries before loading them.
pub fn constraint_matches(constraint: &str, talos: &Version) -> Result<bool, String> {
    if constraint.trim().is_empty() {
        return Ok(true);
    }
    let r = SemverRange::parse(constraint.trim())?;
    Ok(r.matches(&Semver { major: talos.major, minor: talos.minor, patch: talos.patch, pre: Vec::new() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn constraints_follow_blang() {
        for (c, talos, want) in [
            (">= v1.12.0", "v1.14.0", true),
            (">= v1.12.0", "v1.11.5", false),
            (">=v1.12.0", "v1.14.0-rc.1", true),
            (">= 1.15.0", "v1.15.0-alpha.0", true),
            (">= v1.12.0 < v1.14.0", "v1.14.0", false),
            (">= v1.12.0 <v1.14.0", "v1.13.9", true),
            ("< v1.10.0 || >= v1.13.0", "v1.14.0", true),
            ("< v1.10.0 || >= v1.15.0", "v1.14.0", false),
            ("1.14.0", "v1.14.0", true),
            ("!=1.14.0", "v1.14.0", false),
            (">= 1.14.0-alpha.1", "v1.14.0", true),
            ("", "v1.0.0", true),
        ] {
            assert_eq!(constraint_matches(c, &v(talos)), Ok(want), "{c} vs {talos}");
        }
        for bad in [">= 1.12", ">= banana", "~1.2.0", ">= 1.x", "|| >= 1.0.0", ">= 01.2.3"] {
            assert!(constraint_matches(bad, &v("v1.14.0")).is_err(), "{bad}");
        }
        assert_eq!(
            constraint_matches(">= 1.12", &v("v1.14.0")).unwrap_err(),
            "expected a version range like \">= v1.12.0\"; found \">= 1.12\" (expected a version like 1.12.0; \
             found \"1.12\")"
        );
    }

    #[test]
    fn semver_order() {
        let p = |s: &str| Semver::parse(s).unwrap();
        assert!(p("1.0.0-alpha") < p("1.0.0-alpha.1"));
        assert!(p("1.0.0-alpha.1") < p("1.0.0-alpha.beta"));
        assert!(p("1.0.0-beta.2") < p("1.0.0-beta.11"));
        assert!(p("1.0.0-rc.1") < p("1.0.0"));
        assert!(p("1.0.0+build") == p("1.0.0"));
    }

    #[test]
    fn symlink_rules() {
        assert_eq!(check_symlink(b"usr/local/lib/a.so", b"a.so.1"), Ok(()));
        assert_eq!(check_symlink(b"usr/local/lib/a.so", b"../../../x"), Ok(()));
        assert_eq!(check_symlink(b"usr/local/lib/a.so", b"../../../../x"), Err("points above the extension's root"));
        assert_eq!(check_symlink(b"usr/local/a", b"/etc/passwd"), Ok(()));
        assert_eq!(check_symlink(b"usr/local/a", b""), Err("has an empty target"));
    }

    #[test]
    fn allowed_paths_are_plain_prefixes() {
        assert!(path_allowed("/usr/local/bin/x"));
        assert!(path_allowed("/usr/lib/firmware/amd/cpu"));
        assert!(path_allowed("/etc/ld.so.conf.d/x.conf"));
        assert!(!path_allowed("/usr/lib64/a.so"));
        assert!(!path_allowed("/boot/vmlinuz"));
        assert!(!path_allowed("/usr/bin/bash"));
    }

    #[test]
    fn generated_extensions_follow_the_same_rules() {
        let meta = |name: &str, c: &str| Metadata {
            name: name.into(),
            version: "abc".into(),
            author: "Image Factory".into(),
            description: "generated".into(),
            talos_constraint: c.into(),
            extra_info: Some("customization: {}\n".into()),
        };
        let ok = vec![Entry::bytes("usr/local/share/schematic/abc", 0o644, Vec::new())];
        let ext = Extension::from_parts(meta("schematic", ">= 1.0.0"), 0o755, ok.clone()).unwrap();
        assert!(ext.is_generated());
        assert!(ext.check_compatible(&v("v1.14.0")).is_ok());
        let e = Extension::from_parts(meta("", ""), 0o755, ok.clone()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "extension <generated >: manifest.yaml: expected a non-empty metadata.name; found none"
        );
        let bad = vec![Entry::bytes("etc/passwd", 0o644, Vec::new())];
        let e = Extension::from_parts(meta("x", ""), 0o755, bad).unwrap_err();
        assert!(e.to_string().starts_with("extension \"x\": path \"/etc/passwd\" is not allowed"), "{e}");
        let e = Extension::from_parts(meta("x", ""), 0o777, ok).unwrap_err();
        assert_eq!(
            e.to_string(),
            "extension \"x\": \"/\" is world-writable (mode 0777); expected no write bit for others"
        );
        let m = meta("schematic", ">= 1.0.0");
        assert!(
            extensions_yaml([("2.sqsh", &m)]).ends_with(
                "                version: '>= 1.0.0'\n        extraInfo: |\n            customization: {}\n"
            )
        );
    }

    #[test]
    fn extensions_yaml_shape() {
        let m = Metadata {
            name: "gvisor".into(),
            version: "20240212.0".into(),
            author: "Sidero Labs".into(),
            description: "This system extension provides gVisor.\nSecond line.".into(),
            talos_constraint: ">= v1.12.0".into(),
            extra_info: None,
        };
        let dep = Metadata {
            name: "modules.dep".into(),
            version: "6.12.48-talos".into(),
            author: "Talos Machinery".into(),
            description: "Combined modules.dep for all extensions".into(),
            talos_constraint: String::new(),
            extra_info: None,
        };
        let y = extensions_yaml([("0.sqsh", &m), ("modules.dep.sqsh", &dep)]);
        assert_eq!(
            y,
            "layers:
    - image: 0.sqsh
      metadata:
        name: gvisor
        version: \"20240212.0\"
        author: Sidero Labs
        description: |-
            This system extension provides gVisor.
            Second line.
        compatibility:
            talos:
                version: '>= v1.12.0'
    - image: modules.dep.sqsh
      metadata:
        name: modules.dep
        version: 6.12.48-talos
        author: Talos Machinery
        description: Combined modules.dep for all extensions
        compatibility:
            talos:
                version: \"\"
"
        );
    }
}
