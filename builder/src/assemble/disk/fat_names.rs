//! Names on the ESP: checking the paths the caller asked for, arranging them into a sorted directory tree, and
//! the short (8.3) and long (VFAT) names FAT stores for each entry.
//!
//! A name that is already a valid upper-case 8.3 name (`EFI`, `BOOTX64.EFI`) is stored as such; anything else
//! gets a long name plus a short one: its upper-cased form when that is lossless (`boot` → `BOOT`), else a basis
//! with a numeric tail (`loader.conf` → `LOADER~1.CON`), unique within its directory. FAT compares names
//! case-insensitively, so two paths that differ only in case are refused rather than merged.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::DiskError;
use super::fat::{DIR_ENTRY, EspFile};

/// UTF-16 code units per long-name entry.
const LFN_UNITS: usize = 13;
const ATTR_LFN: u8 = 0x0f;
const MAX_DEPTH: usize = 32;

/// The ESP's directory tree, names sorted (byte order).
#[derive(Debug, Default)]
pub(super) struct TreeDir {
    pub(super) children: BTreeMap<String, TreeNode>,
    /// Upper-cased names, for FAT's case-insensitive collisions.
    folded: BTreeMap<String, String>,
}

#[derive(Debug)]
pub(super) enum TreeNode {
    Dir(TreeDir),
    /// Index into the file list, size.
    File(usize, u64),
}

pub(super) fn lfn_count(name: &str) -> u64 {
    (name.encode_utf16().count() as u64).div_ceil(LFN_UNITS as u64)
}

/// Characters allowed in a short (8.3) name besides upper-case letters and digits.
pub(super) fn sfn_char(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || "$%'-_@~`!(){}^#&".contains(c)
}

/// The short names handed out in one directory.
#[derive(Debug, Default)]
pub(super) struct ShortNames {
    taken: HashSet<[u8; 11]>,
    /// Per numeric-tail basis, the next tail to try (so that many similar names stay linear).
    next_tail: HashMap<[u8; 11], u32>,
}

impl ShortNames {
    /// The short name for `name` and whether a long name is needed: the name itself if it is a valid upper-case
    /// 8.3 name; its upper-cased form if that is lossless (`boot` → `BOOT`); else a basis with a numeric tail
    /// (`loader.conf` → `LOADER~1.CON`). `None` only when a million tails of one basis are taken.
    pub(super) fn assign(&mut self, name: &str) -> Option<([u8; 11], bool)> {
        let stripped = name.trim_start_matches('.');
        let mut lossy = stripped.len() != name.len();
        let (base, ext) = match stripped.rfind('.') {
            Some(i) => (stripped.get(..i).unwrap_or_default(), stripped.get(i + 1..).unwrap_or_default()),
            None => (stripped, ""),
        };
        let mut map = |part: &str| -> Vec<u8> {
            part.chars()
                .filter_map(|c| {
                    if c == ' ' || c == '.' {
                        lossy = true;
                        return None;
                    }
                    let u = c.to_ascii_uppercase();
                    if sfn_char(u) {
                        Some(u as u8)
                    } else {
                        lossy = true;
                        Some(b'_')
                    }
                })
                .collect()
        };
        let mut base = map(base);
        let ext = map(ext);
        if base.is_empty() {
            base.push(b'_');
            lossy = true;
        }
        let compose = |base: &[u8], tail: &[u8]| {
            let mut sfn = [b' '; 11];
            for (o, b) in sfn.iter_mut().zip(base.iter().chain(tail).take(8)) {
                *o = *b;
            }
            for (o, b) in sfn.iter_mut().skip(8).zip(ext.iter().take(3)) {
                *o = *b;
            }
            sfn
        };
        if !lossy && base.len() <= 8 && ext.len() <= 3 {
            let sfn = compose(&base, b"");
            if self.taken.insert(sfn) {
                let exact = name.bytes().all(|b| !b.is_ascii_lowercase());
                return Some((sfn, !exact));
            }
        }
        let basis = compose(&base, b"");
        let start = self.next_tail.get(&basis).copied().unwrap_or(1);
        for n in start..1_000_000 {
            let tail = format!("~{n}");
            let keep = 8 - tail.len();
            let sfn = compose(base.get(..keep.min(base.len())).unwrap_or_default(), tail.as_bytes());
            if self.taken.insert(sfn) {
                self.next_tail.insert(basis, n + 1);
                return Some((sfn, true));
            }
        }
        None
    }
}

fn sfn_checksum(sfn: &[u8; 11]) -> u8 {
    sfn.iter().fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// The long-name entries for `name`, last part first, as they precede the short entry.
pub(super) fn lfn_entries(name: &str, sfn: &[u8; 11]) -> Vec<u8> {
    let units: Vec<u16> = name.encode_utf16().collect();
    let parts: Vec<&[u16]> = units.chunks(LFN_UNITS).collect();
    let checksum = sfn_checksum(sfn);
    let mut out = Vec::with_capacity(parts.len() * DIR_ENTRY);
    for (i, part) in parts.iter().enumerate().rev() {
        let mut slots = [0xffffu16; LFN_UNITS];
        for (s, u) in slots.iter_mut().zip(part.iter()) {
            *s = *u;
        }
        if let Some(s) = slots.get_mut(part.len()) {
            *s = 0; // terminator when the part is short
        }
        let mut e = [0u8; DIR_ENTRY];
        e[0] = (i as u8 + 1) | if i + 1 == parts.len() { 0x40 } else { 0 };
        e[11] = ATTR_LFN;
        e[13] = checksum;
        let bytes: Vec<u8> = slots.iter().flat_map(|u| u.to_le_bytes()).collect();
        e[1..11].copy_from_slice(bytes.get(0..10).unwrap_or(&[0; 10]));
        e[14..26].copy_from_slice(bytes.get(10..22).unwrap_or(&[0; 12]));
        e[28..32].copy_from_slice(bytes.get(22..26).unwrap_or(&[0; 4]));
        out.extend_from_slice(&e);
    }
    out
}

/// Checks every path and arranges the files into a tree.
pub(super) fn build_tree(files: &[EspFile]) -> Result<TreeDir, DiskError> {
    let mut root = TreeDir::default();
    for (index, file) in files.iter().enumerate() {
        let invalid = |reason: String| DiskError::InvalidEspPath { path: file.path.clone(), reason };
        let parts = split_path(&file.path).map_err(invalid)?;
        let size = file.len()?;
        if size > u64::from(u32::MAX) {
            return Err(DiskError::EspFileTooLarge { path: file.path.clone(), size });
        }
        let Some((leaf, dirs)) = parts.split_last() else {
            return Err(invalid("expected a relative path like EFI/BOOT/BOOTX64.EFI".into()));
        };
        let mut dir = &mut root;
        for (depth, part) in dirs.iter().enumerate() {
            claim(dir, part).map_err(invalid)?;
            let node = dir.children.entry((*part).to_owned()).or_insert_with(|| TreeNode::Dir(TreeDir::default()));
            dir = match node {
                TreeNode::Dir(d) => d,
                TreeNode::File(..) => {
                    let prefix = parts.get(..=depth).unwrap_or_default().join("/");
                    return Err(invalid(format!("{prefix} is also given as a file")));
                }
            };
        }
        claim(dir, leaf).map_err(invalid)?;
        match dir.children.get(*leaf) {
            Some(TreeNode::Dir(_)) => return Err(invalid("it is also a directory of another file".into())),
            Some(TreeNode::File(..)) => return Err(invalid("it is given twice".into())),
            None => {}
        }
        dir.children.insert((*leaf).to_owned(), TreeNode::File(index, size));
    }
    Ok(root)
}

/// Records `name` in `dir`, refusing a different name that FAT would not tell apart (case-insensitive).
fn claim(dir: &mut TreeDir, name: &str) -> Result<(), String> {
    let folded = name.to_uppercase();
    match dir.folded.get(&folded) {
        Some(other) if other != name => {
            Err(format!("{name:?} and {other:?} differ only in case, which FAT does not tell apart"))
        }
        Some(_) => Ok(()),
        None => {
            dir.folded.insert(folded, name.to_owned());
            Ok(())
        }
    }
}

/// Splits `EFI/BOOT/BOOTX64.EFI` into checked components.
fn split_path(path: &str) -> Result<Vec<&str>, String> {
    if path.is_empty() || path.starts_with('/') {
        return Err("expected a relative path like EFI/BOOT/BOOTX64.EFI".into());
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() > MAX_DEPTH {
        return Err(format!("it has {} components: expected at most {MAX_DEPTH}", parts.len()));
    }
    for part in &parts {
        if part.is_empty() {
            return Err("it has an empty component (expected no `//` and no trailing `/`)".into());
        }
        if *part == "." || *part == ".." {
            return Err(format!("component {part:?} is not allowed"));
        }
        if let Some(c) = part.chars().find(|&c| c < ' ' || c == '\u{7f}' || "\"*:<>?\\|".contains(c)) {
            return Err(format!("component {part:?} contains {c:?}, which FAT does not allow in names"));
        }
        if part.ends_with('.') || part.ends_with(' ') {
            return Err(format!("component {part:?} ends with a dot or a space, which FAT drops"));
        }
        let units = part.encode_utf16().count();
        if units > 255 {
            return Err(format!("component is {units} UTF-16 code units long: FAT allows at most 255"));
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        let sfn = |n: &str| ShortNames::default().assign(n).map(|(s, l)| (String::from_utf8_lossy(&s).into_owned(), l));
        assert_eq!(sfn("BOOTX64.EFI"), Some(("BOOTX64 EFI".into(), false)));
        assert_eq!(sfn("EFI"), Some(("EFI        ".into(), false)));
        assert_eq!(sfn("boot"), Some(("BOOT       ".into(), true)));
        assert_eq!(sfn("BOOTX64.efi"), Some(("BOOTX64 EFI".into(), true)));
        assert_eq!(sfn("loader.conf"), Some(("LOADER~1CON".into(), true)));
        assert_eq!(sfn("Talos-v1.14.0.efi"), Some(("TALOS-~1EFI".into(), true)));
        assert_eq!(sfn(".hidden"), Some(("HIDDEN~1   ".into(), true)));
        assert_eq!(sfn("é"), Some(("_~1        ".into(), true)));
        // In one directory: collisions get the next tail, and exact names keep theirs.
        let mut dir = ShortNames::default();
        let names: Vec<[u8; 11]> = ["A~1.CON", "a.conf", "a.config", "boot", "BOOT", "x"]
            .iter()
            .flat_map(|n| dir.assign(n).map(|(s, _)| s))
            .collect();
        assert_eq!(
            names,
            [*b"A~1     CON", *b"A~2     CON", *b"A~3     CON", *b"BOOT       ", *b"BOOT~1     ", *b"X          "]
        );
        let mut many = ShortNames::default();
        for i in 0..10_000 {
            assert!(many.assign(&format!("kernel-module-{i:05}.ko")).is_some());
        }
        assert_eq!(many.assign("kernel-module-x.ko").map(|(s, _)| s), Some(*b"KE~10001KO "));
        // Checksum of a known short name (FAT spec algorithm).
        assert_eq!(sfn_checksum(b"BOOTX64 EFI"), {
            let mut sum = 0u8;
            for &b in b"BOOTX64 EFI" {
                sum = (if sum & 1 == 1 { 0x80 } else { 0 }) + (sum >> 1);
                sum = sum.wrapping_add(b);
            }
            sum
        });
    }

    #[test]
    fn long_name_entries() {
        let e = lfn_entries("Talos-v1.14.0.efi", b"TALOS-~1EFI");
        assert_eq!(e.len(), 64);
        assert_eq!(e[0], 0x42); // last part first
        assert_eq!(e[32], 0x01);
        assert_eq!(e[11], ATTR_LFN);
        // Second part ".efi", a terminator, then 0xffff padding.
        assert_eq!(&e[1..11], &[b'.', 0, b'e', 0, b'f', 0, b'i', 0, 0, 0]);
        assert_eq!(&e[14..16], &[0xff, 0xff]);
        assert_eq!(&e[33..43], &[b'T', 0, b'a', 0, b'l', 0, b'o', 0, b's', 0]);
    }
}
