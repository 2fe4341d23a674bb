//! Helpers shared by the integration tests: extension directories, a synthetic release initramfs, external
//! tool runs.
#![allow(dead_code)] // shared by the initramfs test modules; each uses a subset

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use talforge_builder::assemble::initramfs::{Entry, Tree, cpio, squashfs};

pub const EPOCH: u64 = 1_700_000_000;
pub const KVER: &str = "6.1.0-test-amd64";

pub fn manifest(name: &str, version: &str, constraint: &str) -> String {
    format!(
        "version: v1alpha1\nmetadata:\n  name: {name}\n  version: \"{version}\"\n  author: Test Author\n  description: |\n    \
         Test extension {name}.\n  compatibility:\n    talos:\n      version: \"{constraint}\"\n"
    )
}

/// Writes a file with an explicit mode (independent of the umask), creating parents 0755.
pub fn put(root: &Path, rel: &str, data: &[u8], mode: u32) {
    let p = root.join(rel);
    mkdirs(root, p.parent().unwrap());
    std::fs::write(&p, data).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn mkdirs(root: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut d = dir.to_path_buf();
    while d.starts_with(root) {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        if !d.pop() {
            break;
        }
    }
}

/// An extension directory `<parent>/<name>` with `files` (rootfs-relative path, content, mode).
pub fn extension(parent: &Path, name: &str, files: &[(&str, &[u8], u32)]) -> PathBuf {
    let dir = parent.join(name);
    let rootfs = dir.join("rootfs");
    mkdirs(parent, &rootfs);
    put(&dir, "manifest.yaml", manifest(name, "1.2.3", ">= v1.12.0").as_bytes(), 0o644);
    for (rel, data, mode) in files {
        put(&rootfs, rel, data, *mode);
    }
    dir
}

/// A Talos-shaped release initramfs: zstd(newc cpio of `init` + `rootfs.sqsh`), whose rootfs has
/// `usr/lib/modules/<KVER>/kernel/drivers/base.ko` and a `modules.order`.
pub fn synthetic_base(work: &Path) -> Vec<u8> {
    let sq = work.join("base-rootfs.sqsh");
    let k = format!("usr/lib/modules/{KVER}");
    let entries = vec![
        Entry::dir("usr", 0o755),
        Entry::dir("usr/bin", 0o755),
        Entry::bytes("usr/bin/busybox", 0o755, b"#!busybox".to_vec()),
        Entry::dir("usr/lib", 0o755),
        Entry::dir("usr/lib/modules", 0o755),
        Entry::dir(k.clone(), 0o755),
        Entry::dir(format!("{k}/kernel"), 0o755),
        Entry::dir(format!("{k}/kernel/drivers"), 0o755),
        Entry::bytes(format!("{k}/kernel/drivers/base.ko"), 0o644, b"not really elf".to_vec()),
        Entry::bytes(format!("{k}/modules.order"), 0o644, b"kernel/drivers/base.ko\n".to_vec()),
    ];
    squashfs::write_image(0o755, &entries, EPOCH as u32, &sq).unwrap();
    let mut tree = Tree::new();
    tree.insert(Entry::bytes("init", 0o755, b"#!/bin/sh\n".to_vec())).unwrap();
    tree.insert(Entry::bytes("rootfs.sqsh", 0o644, std::fs::read(&sq).unwrap())).unwrap();
    let mut plain = Vec::new();
    cpio::write_archive(&mut plain, tree.iter(), EPOCH as u32).unwrap();
    zstd::bulk::compress(&plain, 3).unwrap()
}

pub fn have(tool: &str) -> bool {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"].iter().any(|d| Path::new(d).join(tool).exists())
}

/// Runs a command, asserting success; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}
