//! End-to-end tests of the initramfs rebuild against GNU cpio, squashfs-tools, zstd and kmod, with synthetic
//! extensions and a synthetic release initramfs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::initramfs_common::*;
use talforge_builder::assemble::initramfs::cpio::{self, Member, walk_initramfs};
use talforge_builder::assemble::initramfs::{
    Entry, Extension, InitramfsError, Tree, build_initramfs, content_key, squashfs,
};
use talforge_builder::spec::units::Version;
use talforge_builder::tool::ToolRunner;

fn v(s: &str) -> Version {
    s.parse().unwrap()
}

fn names(members: &[Member]) -> Vec<String> {
    members.iter().map(|m| m.header.name_lossy()).collect()
}

#[test]
fn cpio_archives_read_back_with_gnu_cpio() {
    if !have("cpio") {
        talforge_builder::skip_test!("SKIP: cpio is not installed (apt-get install cpio)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut tree = Tree::new();
    tree.insert(Entry::bytes("b/file with space", 0o644, b"spaced".to_vec())).unwrap();
    tree.insert(Entry::bytes("a-c", 0o600, b"dash".to_vec())).unwrap();
    tree.insert(Entry::bytes("a/deep/x.bin", 0o755, vec![7u8; 1001])).unwrap();
    tree.insert(Entry::symlink("a/link", "deep/x.bin")).unwrap();
    tree.insert(Entry::bytes("empty", 0o644, Vec::new())).unwrap();
    let archive = dir.path().join("a.cpio");
    let mut bytes = Vec::new();
    cpio::write_archive(&mut bytes, tree.iter(), EPOCH as u32).unwrap();
    std::fs::write(&archive, &bytes).unwrap();

    let listing = run(Command::new("cpio").args(["-t", "--quiet", "-F"]).arg(&archive));
    let expected = ["a", "a-c", "a/deep", "a/deep/x.bin", "a/link", "b", "b/file with space", "empty"];
    assert_eq!(listing.lines().collect::<Vec<_>>(), expected);

    let verbose =
        run(Command::new("cpio").args(["-tv", "--quiet", "--numeric-uid-gid", "-F"]).arg(&archive).env("TZ", "UTC"));
    let lines: Vec<&str> = verbose.lines().collect();
    assert_eq!(lines.len(), expected.len());
    for (line, name) in lines.iter().zip(expected) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((cols[2], cols[3]), ("0", "0"), "{line}");
        assert!(line.contains("Nov 14  2023"), "mtime is not the epoch: {line}");
        assert!(line.contains(name), "{line}");
    }
    assert!(lines[0].starts_with("drwxr-xr-x   2 "), "{}", lines[0]);
    assert!(lines[1].starts_with("-rw-------   1 "), "{}", lines[1]);
    assert!(lines[4].starts_with("lrwxrwxrwx   1 ") && lines[4].ends_with("a/link -> deep/x.bin"), "{}", lines[4]);

    let out = dir.path().join("x");
    std::fs::create_dir(&out).unwrap();
    run(Command::new("cpio")
        .args(["-i", "-d", "--quiet", "--no-absolute-filenames", "-F"])
        .arg(&archive)
        .current_dir(&out));
    assert_eq!(std::fs::read(out.join("b/file with space")).unwrap(), b"spaced");
    assert_eq!(std::fs::read(out.join("a/deep/x.bin")).unwrap(), vec![7u8; 1001]);
    assert_eq!(std::fs::read_link(out.join("a/link")).unwrap(), Path::new("deep/x.bin"));
    assert_eq!(std::fs::metadata(out.join("a-c")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(out.join("empty")).unwrap(), b"");
}

fn sample_extension(parent: &Path) -> PathBuf {
    extension(
        parent,
        "sample",
        &[
            ("usr/local/bin/tool", b"#!/bin/sh\necho hi\n", 0o755),
            ("usr/local/lib/libx.so.1", &[1u8; 70000], 0o644),
            ("usr/local/share/big", &[3u8; 300_000], 0o644),
            ("etc/cri/conf.d/10-sample.part", b"[plugins]\n", 0o644),
        ],
    )
}

#[test]
fn squashfs_images_read_back_with_squashfs_tools() {
    if !have("unsquashfs") {
        talforge_builder::skip_test!("SKIP: unsquashfs is not installed (apt-get install squashfs-tools)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ext_dir = sample_extension(dir.path());
    std::os::unix::fs::symlink("libx.so.1", ext_dir.join("rootfs/usr/local/lib/libx.so")).unwrap();
    let ext = Extension::load(&ext_dir).unwrap();
    let img = dir.path().join("0.sqsh");
    squashfs::write_image(ext.root_mode(), ext.entries(), EPOCH as u32, &img).unwrap();

    let stats = run(Command::new("unsquashfs").arg("-s").arg(&img).env("TZ", "UTC"));
    assert!(stats.contains("Compression zstd\n\tcompression-level 18\n"), "{stats}");
    assert!(stats.contains("Block size 131072"), "{stats}");
    assert!(stats.contains("Creation or last append time Tue Nov 14 22:13:20 2023"), "{stats}");
    assert!(stats.contains("Number of ids 1"), "{stats}");
    assert!(stats.contains("Number of xattr ids 0"), "{stats}");

    let listing = run(Command::new("unsquashfs").args(["-lln", "-no-xattrs"]).arg(&img).env("TZ", "UTC"));
    let rows: Vec<&str> = listing.lines().filter(|l| l.contains("squashfs-root")).collect();
    let paths: Vec<&str> = rows.iter().map(|r| r.split_whitespace().nth(5).unwrap()).collect();
    assert_eq!(
        paths,
        [
            "squashfs-root",
            "squashfs-root/etc",
            "squashfs-root/etc/cri",
            "squashfs-root/etc/cri/conf.d",
            "squashfs-root/etc/cri/conf.d/10-sample.part",
            "squashfs-root/usr",
            "squashfs-root/usr/local",
            "squashfs-root/usr/local/bin",
            "squashfs-root/usr/local/bin/tool",
            "squashfs-root/usr/local/lib",
            "squashfs-root/usr/local/lib/libx.so",
            "squashfs-root/usr/local/lib/libx.so.1",
            "squashfs-root/usr/local/share",
            "squashfs-root/usr/local/share/big",
        ]
    );
    for r in &rows {
        assert!(r.contains(" 0/0 "), "not root-owned: {r}");
        assert!(r.contains("2023-11-14 22:13"), "mtime is not the epoch: {r}");
    }
    assert!(rows[8].starts_with("-rwxr-xr-x"), "{}", rows[8]);
    assert!(rows[10].ends_with("libx.so -> libx.so.1"), "{}", rows[10]);

    let out = dir.path().join("x");
    run(Command::new("unsquashfs").args(["-no-xattrs", "-q", "-d"]).arg(&out).arg(&img));
    assert_eq!(std::fs::read(out.join("usr/local/share/big")).unwrap(), vec![3u8; 300_000]);
    assert_eq!(std::fs::read(out.join("usr/local/lib/libx.so.1")).unwrap(), vec![1u8; 70000]);

    let img2 = dir.path().join("again.sqsh");
    squashfs::write_image(ext.root_mode(), ext.entries(), EPOCH as u32, &img2).unwrap();
    assert_eq!(std::fs::read(&img).unwrap(), std::fs::read(&img2).unwrap());
}

/// Builds an extension directory for one row of the validation table.
fn bad_case(parent: &Path, case: &str) -> PathBuf {
    let dir = parent.join(case);
    let rootfs = dir.join("rootfs");
    mkdirs(parent, &rootfs);
    let good = manifest("bad", "1.2.3", ">= v1.12.0");
    let mut manifest_text = Some(good.clone());
    match case {
        "wrongfiles" => put(&dir, "a", b"", 0o644),
        "nomanifest" => manifest_text = None,
        "norootfs" => std::fs::remove_dir(&rootfs).unwrap(),
        "rootfsfile" => {
            std::fs::remove_dir(&rootfs).unwrap();
            put(&dir, "rootfs", b"", 0o644);
        }
        "emptymanifest" => manifest_text = Some(String::new()),
        "badversion" => manifest_text = Some(good.replace("v1alpha1", "v1")),
        "noname" => manifest_text = Some(good.replace("  name: bad\n", "")),
        "noauthor" => manifest_text = Some(good.replace("  author: Test Author\n", "  author: \"\"\n")),
        "nodescription" => manifest_text = Some(good.replace("description: |\n    Test extension bad.\n", "x: 1\n")),
        "badyaml" => manifest_text = Some("version: [v1alpha1\n".into()),
        "badconstraint" => manifest_text = Some(good.replace(">= v1.12.0", ">= one")),
        "badpaths" => put(&rootfs, "boot/vmlinuz", b"k", 0o644),
        "usrmerge" => put(&rootfs, "usr/lib64/a.so", b"", 0o644),
        "worldwritable" => put(&rootfs, "usr/local/bin/x", b"", 0o666),
        "worldwritabledir" => {
            put(&rootfs, "usr/local/share/x", b"", 0o644);
            std::fs::set_permissions(rootfs.join("usr/local/share"), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        "fifo" => {
            mkdirs(&rootfs, &rootfs.join("usr/local"));
            run(Command::new("mkfifo").arg(rootfs.join("usr/local/pipe")));
        }
        "socket" => {
            mkdirs(&rootfs, &rootfs.join("usr/local"));
            let _l = std::os::unix::net::UnixListener::bind(rootfs.join("usr/local/sock")).unwrap();
        }
        "escapinglink" => {
            mkdirs(&rootfs, &rootfs.join("usr/local/lib"));
            std::os::unix::fs::symlink("../../../../etc/shadow", rootfs.join("usr/local/lib/escape")).unwrap();
        }
        "linkpath" => {
            mkdirs(&rootfs, &rootfs.join("usr/bin"));
            std::os::unix::fs::symlink("/usr/local/bin/sh", rootfs.join("usr/bin/sh")).unwrap();
        }
        "ucodedir" => put(&rootfs, "usr/lib/firmware/intel-ucode/sub/x", b"", 0o644),
        _ => {}
    }
    if let Some(m) = manifest_text {
        put(&dir, "manifest.yaml", m.as_bytes(), 0o644);
    }
    dir
}

#[test]
fn bad_extensions_are_rejected_with_exact_messages() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().display().to_string();
    let allowed = talforge_builder::assemble::initramfs::extensions::ALLOWED_PATHS.join(", ");
    let table: Vec<(&str, String)> = vec![
        (
            "wrongfiles",
            format!("extension {p}/wrongfiles: unexpected file \"a\"; expected only manifest.yaml and rootfs/"),
        ),
        ("nomanifest", format!("extension {p}/nomanifest: expected manifest.yaml; found none")),
        ("norootfs", format!("extension {p}/norootfs: expected a rootfs/ directory; found none")),
        ("rootfsfile", format!("extension {p}/rootfsfile: expected rootfs/ to be a directory; found a file")),
        (
            "emptymanifest",
            format!("extension {p}/emptymanifest: manifest.yaml: expected version: v1alpha1; found \"\""),
        ),
        ("badversion", format!("extension {p}/badversion: manifest.yaml: expected version: v1alpha1; found \"v1\"")),
        ("noname", format!("extension {p}/noname: manifest.yaml: expected a non-empty metadata.name; found none")),
        (
            "noauthor",
            format!("extension {p}/noauthor: manifest.yaml: expected a non-empty metadata.author; found none"),
        ),
        (
            "nodescription",
            format!(
                "extension {p}/nodescription: manifest.yaml: expected a non-empty metadata.description; found none"
            ),
        ),
        (
            "badconstraint",
            format!(
                "extension {p}/badconstraint: manifest.yaml: compatibility.talos.version: expected a version range \
                 like \">= v1.12.0\"; found \">= one\" (expected a version like 1.12.0; found \"one\")"
            ),
        ),
        (
            "badpaths",
            format!("extension \"bad\": path \"/boot/vmlinuz\" is not allowed in extensions (allowed: {allowed})"),
        ),
        (
            "usrmerge",
            format!("extension \"bad\": path \"/usr/lib64/a.so\" is not allowed in extensions (allowed: {allowed})"),
        ),
        (
            "worldwritable",
            "extension \"bad\": \"/usr/local/bin/x\" is world-writable (mode 0666); expected no write bit for others"
                .into(),
        ),
        (
            "worldwritabledir",
            "extension \"bad\": \"/usr/local/share\" is world-writable (mode 0777); expected no write bit for others"
                .into(),
        ),
        (
            "fifo",
            "extension \"bad\": \"/usr/local/pipe\" is a fifo; expected only directories, regular files and symlinks"
                .into(),
        ),
        (
            "socket",
            "extension \"bad\": \"/usr/local/sock\" is a socket; expected only directories, regular files and symlinks"
                .into(),
        ),
        (
            "escapinglink",
            "extension \"bad\": symlink \"/usr/local/lib/escape\" -> \"../../../../etc/shadow\" points above the \
             extension's root"
                .into(),
        ),
        (
            "linkpath",
            format!("extension \"bad\": path \"/usr/bin/sh\" is not allowed in extensions (allowed: {allowed})"),
        ),
    ];
    for (case, want) in &table {
        let d = bad_case(dir.path(), case);
        let err = Extension::load(&d).expect_err(case);
        assert_eq!(&err.to_string(), want, "case {case}");
    }
    // badyaml: the parser's own message follows the prefix.
    let err = Extension::load(&bad_case(dir.path(), "badyaml")).unwrap_err().to_string();
    assert!(err.starts_with(&format!("extension {p}/badyaml: manifest.yaml: invalid YAML: ")), "{err}");

    // Compatibility is checked against the image's Talos version, at build time.
    let d = extension(dir.path(), "future", &[("usr/local/x", b"", 0o644)]);
    put(&d, "manifest.yaml", manifest("future", "1.2.3", ">= v1.15.0").as_bytes(), 0o644);
    let ext = Extension::load(&d).unwrap();
    let e = ext.check_compatible(&v("v1.14.0")).unwrap_err();
    assert_eq!(e.to_string(), "extension \"future\" 1.2.3 supports Talos >= v1.15.0; the image is for v1.14.0");
    let w = dir.path().join("w");
    let e = build_initramfs(b"", &[ext], &v("v1.14.0"), EPOCH, &ToolRunner::new(EPOCH), &w).unwrap_err();
    assert!(matches!(e, InitramfsError::Incompatible { .. }));

    // Microcode globs match directories too (as filepath.Glob does); Talos then fails reading it, so do we.
    let ucode = Extension::load(&bad_case(dir.path(), "ucodedir")).unwrap();
    let e = build_initramfs(b"", &[ucode], &v("v1.14.0"), EPOCH, &ToolRunner::new(EPOCH), &w).unwrap_err();
    assert_eq!(
        e.to_string(),
        "extension \"bad\": microcode \"/usr/lib/firmware/intel-ucode/sub\" is a directory; expected a regular file"
    );

    // The epoch and the Talos version bound what can be built.
    let ok = Extension::load(&extension(dir.path(), "ok", &[("usr/local/x", b"", 0o644)])).unwrap();
    let e = build_initramfs(b"", std::slice::from_ref(&ok), &v("v1.9.0"), EPOCH, &ToolRunner::new(EPOCH), &w);
    assert_eq!(
        e.unwrap_err().to_string(),
        "Talos v1.9.0 is not supported here: expected v1.10.0 or later (older releases use /lib/modules and xz)"
    );
    let e = build_initramfs(b"", &[ok], &v("v1.14.0"), 1 << 33, &ToolRunner::new(EPOCH), &w);
    assert_eq!(
        e.unwrap_err().to_string(),
        "epoch 8589934592 does not fit the 32-bit timestamps of cpio and squashfs; expected at most 4294967295"
    );
}

/// Two extensions: one with modules, firmware and microcode; one plain.
fn full_extensions(parent: &Path) -> Vec<Extension> {
    let k = format!("usr/lib/modules/{KVER}");
    let a = extension(
        parent,
        "storage",
        &[
            (&format!("{k}/extras/drivers/extra.ko"), b"not elf either", 0o644),
            (&format!("{k}/kernel/net/other.ko"), b"nor this", 0o644),
            ("usr/lib/firmware/vendor/fw.bin", b"firmware-bytes", 0o644),
            ("usr/lib/firmware/intel-ucode/06-55-04", b"INTEL-A", 0o644),
            ("usr/lib/firmware/intel-ucode/06-8f-08", b"INTEL-B", 0o644),
            ("usr/lib/firmware/amd-ucode/microcode_amd_fam19h.bin", b"AMD-19", 0o644),
            ("usr/lib/firmware/amd-ucode/microcode_amd.bin", b"AMD-0", 0o644),
            ("usr/lib/firmware/amd-ucode/README", b"not microcode", 0o644),
            ("usr/local/etc/containers/storage.yaml", b"name: storage\n", 0o644),
        ],
    );
    std::os::unix::fs::symlink("fw.bin", a.join("rootfs/usr/lib/firmware/vendor/fw-alias.bin")).unwrap();
    let b = sample_extension(parent);
    vec![Extension::load(&a).unwrap(), Extension::load(&b).unwrap()]
}

#[test]
fn full_build_layout_and_reproducibility() {
    if !have("depmod") {
        talforge_builder::skip_test!("SKIP: depmod is not installed (apt-get install kmod)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = synthetic_base(dir.path());
    let exts = full_extensions(dir.path());
    let runner = ToolRunner::new(EPOCH);
    let talos = v("v1.14.0");
    let t0 = std::time::Instant::now();
    let art = build_initramfs(&base, &exts, &talos, EPOCH, &runner, &dir.path().join("w1")).unwrap();
    eprintln!("build: {:?}", t0.elapsed());
    let bytes = std::fs::read(&art.path).unwrap();
    assert_eq!(art.size, bytes.len() as u64);
    assert_eq!(art.sha256, sha256_hex(&bytes));
    assert_eq!(art.layout.microcode_len + art.layout.base_len + art.layout.appended_len, art.size);

    // [microcode cpio][base, unchanged][zstd cpio]
    let segs = walk_initramfs(&bytes, "out").unwrap();
    assert_eq!(segs.len(), 3, "{segs:#?}");
    assert!(!segs[0].compressed);
    assert_eq!((segs[0].offset, segs[0].len), (0, art.layout.microcode_len));
    let ucode = &segs[0].archives[0];
    assert_eq!(
        names(ucode),
        [
            "kernel",
            "kernel/x86",
            "kernel/x86/microcode",
            "kernel/x86/microcode/AuthenticAMD.bin",
            "kernel/x86/microcode/GenuineIntel.bin",
            "TRAILER!!!"
        ]
    );
    // Globs are sorted; only microcode_amd*.bin is AMD microcode.
    assert_eq!(ucode[3].data, b"AMD-0AMD-19");
    assert_eq!(ucode[4].data, b"INTEL-AINTEL-B");
    assert_eq!(&bytes[art.layout.microcode_len as usize..][..base.len()], base.as_slice());
    assert!(segs[1].compressed && segs[1].offset == art.layout.microcode_len);
    assert!(segs[2].compressed && segs[2].offset == art.layout.microcode_len + base.len() as u64);
    let appended = &segs[2].archives[0];
    assert_eq!(
        names(appended),
        [
            "0.sqsh",
            "1.sqsh",
            "extensions.yaml",
            "modules.dep.sqsh",
            "usr",
            "usr/lib",
            "usr/lib/firmware",
            "usr/lib/firmware/amd-ucode",
            "usr/lib/firmware/amd-ucode/README",
            "usr/lib/firmware/intel-ucode",
            "usr/lib/firmware/vendor",
            "usr/lib/firmware/vendor/fw-alias.bin",
            "usr/lib/firmware/vendor/fw.bin",
            "TRAILER!!!"
        ]
    );
    assert!(appended.iter().all(|m| m.header.uid == 0 && m.header.gid == 0));
    assert!(appended[..13].iter().all(|m| m.header.mtime == EPOCH as u32));
    let inos: Vec<u32> = appended.iter().map(|m| m.header.ino).collect();
    assert_eq!(inos, (0..13).chain([0]).collect::<Vec<u32>>());
    assert_eq!(appended[11].header.mode, 0o120777);
    assert_eq!(appended[11].data, b"fw.bin");
    assert_eq!(
        art.firmware,
        ["usr/lib/firmware/amd-ucode/README", "usr/lib/firmware/vendor/fw-alias.bin", "usr/lib/firmware/vendor/fw.bin"]
    );
    assert_eq!(art.microcode, ["kernel/x86/microcode/AuthenticAMD.bin", "kernel/x86/microcode/GenuineIntel.bin"]);

    let yaml = String::from_utf8(appended[2].data.clone()).unwrap();
    assert_eq!(yaml, art.extensions_yaml);
    assert_eq!(
        yaml,
        format!(
            "layers:
    - image: 0.sqsh
      metadata:
        name: storage
        version: 1.2.3
        author: Test Author
        description: |
            Test extension storage.
        compatibility:
            talos:
                version: '>= v1.12.0'
    - image: 1.sqsh
      metadata:
        name: sample
        version: 1.2.3
        author: Test Author
        description: |
            Test extension sample.
        compatibility:
            talos:
                version: '>= v1.12.0'
    - image: modules.dep.sqsh
      metadata:
        name: modules.dep
        version: {KVER}
        author: Talos Machinery
        description: Combined modules.dep for all extensions
        compatibility:
            talos:
                version: \"\"
"
        )
    );

    // Firmware left the extension's squashfs; modules stay in it; the virtual layer has the index files.
    let img0 = dir.path().join("0.sqsh");
    std::fs::write(&img0, &appended[0].data).unwrap();
    let listed: Vec<String> = squashfs::list(&img0).unwrap().iter().map(|n| n.path.display().to_string()).collect();
    assert!(!listed.iter().any(|p| p.starts_with("usr/lib/firmware")), "{listed:?}");
    assert!(listed.contains(&format!("usr/lib/modules/{KVER}/extras/drivers/extra.ko")));
    assert!(listed.contains(&"usr/lib".to_owned()));
    let dep_img = dir.path().join("modules.dep.sqsh");
    std::fs::write(&dep_img, &appended[3].data).unwrap();
    let dep_listing: Vec<String> =
        squashfs::list(&dep_img).unwrap().iter().map(|n| n.path.display().to_string()).collect();
    assert!(
        dep_listing.iter().skip(5).all(|p| p.starts_with(&format!("usr/lib/modules/{KVER}/modules."))),
        "{dep_listing:?}"
    );
    let dep =
        squashfs::read_file(&dep_img, &PathBuf::from(format!("usr/lib/modules/{KVER}/modules.dep"))).unwrap().unwrap();
    let dep = String::from_utf8(dep).unwrap();
    let mut keys: Vec<&str> = dep.lines().map(|l| l.split(':').next().unwrap()).collect();
    keys.sort();
    assert_eq!(keys, ["extras/drivers/extra.ko", "kernel/drivers/base.ko", "kernel/net/other.ko"]);
    assert!(dep_listing.contains(&format!("usr/lib/modules/{KVER}/modules.order")));
    assert_eq!(art.kernel_version.as_deref(), Some(KVER));
    assert_eq!(art.modules, ["extras/drivers/extra.ko", "kernel/net/other.ko"]);
    assert_eq!(art.module_count(), 2);
    let summary: Vec<(&str, &str, bool)> =
        art.extensions.iter().map(|s| (s.name.as_str(), s.image.as_str(), s.generated)).collect();
    assert_eq!(
        summary,
        [("storage", "0.sqsh", false), ("sample", "1.sqsh", false), ("modules.dep", "modules.dep.sqsh", true)]
    );

    // Same inputs, same bytes and key; scratch space is cleaned up.
    let t1 = std::time::Instant::now();
    let again = build_initramfs(&base, &exts, &talos, EPOCH, &runner, &dir.path().join("w2")).unwrap();
    eprintln!("rebuild: {:?}", t1.elapsed());
    assert_eq!(again.sha256, art.sha256);
    assert_eq!(again.content_key, art.content_key);
    assert!(!dir.path().join("w1/initramfs-build").exists());
    assert_eq!(content_key(&base, &exts, &talos, EPOCH, &runner).unwrap(), art.content_key);
    // Any input change changes the key.
    assert_ne!(content_key(&base, &exts, &talos, EPOCH + 1, &runner).unwrap(), art.content_key);
    assert_ne!(content_key(&base, &exts, &v("v1.14.1"), EPOCH, &runner).unwrap(), art.content_key);
    assert_ne!(content_key(&base[1..], &exts, &talos, EPOCH, &runner).unwrap(), art.content_key);
    assert_ne!(content_key(&base, &exts[..1], &talos, EPOCH, &runner).unwrap(), art.content_key);
    put(&dir.path().join("sample/rootfs"), "usr/local/bin/tool", b"#!/bin/sh\necho HI\n", 0o755);
    assert_ne!(content_key(&base, &exts, &talos, EPOCH, &runner).unwrap(), art.content_key);
}

#[test]
fn without_extensions_the_base_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let base = b"whatever the release shipped".to_vec();
    let art = build_initramfs(&base, &[], &v("v1.14.0"), EPOCH, &ToolRunner::new(EPOCH), dir.path()).unwrap();
    assert_eq!(std::fs::read(&art.path).unwrap(), base);
    assert!(art.extensions.is_empty() && art.extensions_yaml.is_empty());
}

#[test]
fn extensions_without_modules_or_microcode_need_no_depmod_and_no_prepended_archive() {
    let dir = tempfile::tempdir().unwrap();
    let ext = Extension::load(&sample_extension(dir.path())).unwrap();
    let base = synthetic_base(dir.path());
    let runner = ToolRunner::with_path("/nonexistent", EPOCH);
    let art = build_initramfs(&base, &[ext], &v("v1.13.2"), EPOCH, &runner, &dir.path().join("w")).unwrap();
    let bytes = std::fs::read(&art.path).unwrap();
    assert_eq!(art.layout.microcode_len, 0);
    assert!(bytes.starts_with(&base));
    let segs = walk_initramfs(&bytes, "out").unwrap();
    assert_eq!(names(&segs[1].archives[0]), ["0.sqsh", "extensions.yaml", "TRAILER!!!"]);
    assert!(art.kernel_version.is_none() && art.modules.is_empty());
}

#[test]
fn missing_depmod_is_a_missing_dependency() {
    let dir = tempfile::tempdir().unwrap();
    let exts = full_extensions(dir.path());
    let base = synthetic_base(dir.path());
    let runner = ToolRunner::with_path("/nonexistent", EPOCH);
    let e = build_initramfs(&base, &exts, &v("v1.14.0"), EPOCH, &runner, &dir.path().join("w")).unwrap_err();
    assert!(e.is_missing_dependency(), "{e}");
    assert_eq!(e.to_string(), "depmod is not installed (Debian package kmod)");
}

#[test]
fn malformed_base_initramfs_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let exts = full_extensions(dir.path());
    let base = synthetic_base(dir.path());
    let runner = ToolRunner::new(EPOCH);
    let build = |b: &[u8]| build_initramfs(b, &exts, &v("v1.14.0"), EPOCH, &runner, &dir.path().join("w")).unwrap_err();

    let e = build(&base[..base.len() / 2]).to_string();
    assert!(e.starts_with("base initramfs: at byte 0: corrupt zstd frame"), "{e}");
    let e = build(b"\xfd7zXZ\0rest").to_string();
    assert!(e.starts_with("base initramfs: at byte 0: expected a newc archive or a zstd frame; found xz data"), "{e}");
    let e = build(b"").to_string();
    assert_eq!(e, "base initramfs: expected a rootfs.sqsh member; found none");

    // A newc archive cut inside rootfs.sqsh.
    let plain = zstd::bulk::decompress(&base, 1 << 24).unwrap();
    let e = build(&plain[..plain.len() - 600]).to_string();
    assert!(e.starts_with("base initramfs: at byte ") && e.contains("truncated data of \"rootfs.sqsh\""), "{e}");

    // An archive without rootfs.sqsh.
    let mut other = Vec::new();
    cpio::write_archive(&mut other, &[Entry::bytes("init", 0o755, b"x".to_vec())], 0).unwrap();
    assert_eq!(build(&other).to_string(), "base initramfs: expected a rootfs.sqsh member; found none");

    // rootfs.sqsh that is not a squashfs.
    let mut junk = Vec::new();
    cpio::write_archive(&mut junk, &[Entry::bytes("rootfs.sqsh", 0o644, vec![0x55; 5000])], 0).unwrap();
    let e = build(&zstd::bulk::compress(&junk, 1).unwrap()).to_string();
    assert!(e.starts_with("cannot read squashfs "), "{e}");

    // A rootfs with modules for two kernels, and an extension built for another kernel.
    let two = dir.path().join("two.sqsh");
    let entries = [Entry::dir("usr/lib/modules/a", 0o755), Entry::dir("usr/lib/modules/b", 0o755)];
    squashfs::write_image(0o755, &entries, 0, &two).unwrap();
    let mut arch = Vec::new();
    cpio::write_archive(&mut arch, &[Entry::bytes("rootfs.sqsh", 0o644, std::fs::read(&two).unwrap())], 0).unwrap();
    let e = build(&arch).to_string();
    assert_eq!(
        e,
        "base initramfs: expected exactly one kernel directory under usr/lib/modules in rootfs.sqsh; found [a, b]"
    );
    let other_k = extension(dir.path(), "oldk", &[("usr/lib/modules/5.10.0/x.ko", b"", 0o644)]);
    let e = build_initramfs(&base, &[Extension::load(&other_k).unwrap()], &v("v1.14.0"), EPOCH, &runner, dir.path())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "extension \"oldk\" has kernel modules for 5.10.0 under usr/lib/modules; expected {KVER} (the kernel's version)"
        )
    );
}

#[test]
fn symlinks_in_the_base_rootfs_are_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let k = format!("usr/lib/modules/{KVER}");
    let entries =
        [Entry::dir(k.clone(), 0o755), Entry::symlink(format!("{k}/build"), outside.as_os_str().as_encoded_bytes())];
    let sq = dir.path().join("r.sqsh");
    squashfs::write_image(0o755, &entries, 0, &sq).unwrap();
    let mut arch = Vec::new();
    cpio::write_archive(&mut arch, &[Entry::bytes("rootfs.sqsh", 0o644, std::fs::read(&sq).unwrap())], 0).unwrap();
    let build = |ext: Extension| {
        build_initramfs(&arch, &[ext], &v("v1.14.0"), EPOCH, &ToolRunner::new(EPOCH), &dir.path().join("w"))
    };
    // A loaded extension has the directory itself: it replaces the base's symlink, as an overlay's upper layer
    // would, and nothing is written through the link.
    let ext = extension(dir.path(), "sneaky", &[(&format!("{k}/build/evil.ko"), b"x", 0o644)]);
    let art = build(Extension::load(&ext).unwrap()).unwrap();
    assert_eq!(art.modules, ["build/evil.ko"]);
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    // A base whose usr/lib/modules is a symlink is refused before anything is copied.
    let entries =
        [Entry::dir("usr/lib", 0o755), Entry::symlink("usr/lib/modules", outside.as_os_str().as_encoded_bytes())];
    std::fs::create_dir(outside.join(KVER)).unwrap();
    squashfs::write_image(0o755, &entries, 0, &sq).unwrap();
    let mut arch = Vec::new();
    cpio::write_archive(&mut arch, &[Entry::bytes("rootfs.sqsh", 0o644, std::fs::read(&sq).unwrap())], 0).unwrap();
    let e = build_initramfs(
        &arch,
        &[Extension::load(&ext).unwrap()],
        &v("v1.14.0"),
        EPOCH,
        &ToolRunner::new(EPOCH),
        &dir.path().join("w"),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "base initramfs: expected usr/lib/modules in rootfs.sqsh to be a directory; found a symlink or file"
    );
    assert_eq!(std::fs::read_dir(outside.join(KVER)).unwrap().count(), 0);
}

/// Child half of `reproducible_under_other_tz_and_umask`: builds into $TALFORGE_REPRO_OUT.
#[test]
#[ignore = "run by reproducible_under_other_tz_and_umask"]
fn repro_child() {
    let Some(out) = std::env::var_os("TALFORGE_REPRO_OUT") else { return };
    let src = PathBuf::from(std::env::var_os("TALFORGE_REPRO_SRC").unwrap());
    let exts: Vec<Extension> = ["storage", "sample"].iter().map(|n| Extension::load(&src.join(n)).unwrap()).collect();
    let base = std::fs::read(src.join("base.img")).unwrap();
    let art = build_initramfs(&base, &exts, &v("v1.14.0"), EPOCH, &ToolRunner::new(EPOCH), Path::new(&out)).unwrap();
    println!("SHA {}", art.sha256);
}

#[test]
fn reproducible_under_other_tz_and_umask() {
    if !have("depmod") {
        talforge_builder::skip_test!("SKIP: depmod is not installed (apt-get install kmod)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    full_extensions(&src);
    std::fs::write(src.join("base.img"), synthetic_base(dir.path())).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut shas = Vec::new();
    for (i, (tz, umask)) in [("UTC", "022"), ("Pacific/Chatham", "077"), ("Asia/Kolkata", "002")].iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let script = format!("umask {umask}; exec \"$0\" initramfs::repro_child --exact --ignored --nocapture");
        let stdout = run(Command::new("sh")
            .args(["-c", &script])
            .arg(&exe)
            .env("TZ", tz)
            .env("TALFORGE_REPRO_OUT", &out)
            .env("TALFORGE_REPRO_SRC", &src));
        let sha = stdout.lines().find_map(|l| l.strip_prefix("SHA ")).unwrap_or_else(|| panic!("{stdout}")).to_owned();
        assert_eq!(sha, sha256_hex(&std::fs::read(out.join("initramfs.xz")).unwrap()));
        shas.push(sha);
    }
    assert!(shas.windows(2).all(|w| w[0] == w[1]), "{shas:?}");
}

#[test]
fn cpio_bytes_equal_gnu_cpio_reproducible() {
    if !have("cpio") {
        talforge_builder::skip_test!("SKIP: cpio is not installed (apt-get install cpio)");
        return;
    }
    // The same tree on disk, with the epoch as every mtime, archived by GNU cpio as Talos runs it. No directory
    // has a subdirectory, so the real nlink is 2 as well (cpio < 2.14 records it; --ignore-dirnlink came later).
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("t");
    put(&root, "a/x.bin", &[7u8; 1001], 0o755);
    put(&root, "a-c", b"dash", 0o600);
    put(&root, "b/file with space", b"spaced", 0o644);
    put(&root, "empty", b"", 0o644);
    std::os::unix::fs::symlink("x.bin", root.join("a/link")).unwrap();
    run(Command::new("sh").arg("-c").arg(format!("find . -exec touch -h -d @{EPOCH} {{}} +")).current_dir(&root));
    let mut tree = Tree::new();
    tree.insert(Entry::bytes("a/x.bin", 0o755, vec![7u8; 1001])).unwrap();
    tree.insert(Entry::bytes("a-c", 0o600, b"dash".to_vec())).unwrap();
    tree.insert(Entry::bytes("b/file with space", 0o644, b"spaced".to_vec())).unwrap();
    tree.insert(Entry::bytes("empty", 0o644, Vec::new())).unwrap();
    tree.insert(Entry::symlink("a/link", "x.bin")).unwrap();
    let mut ours = Vec::new();
    cpio::write_archive(&mut ours, tree.iter(), EPOCH as u32).unwrap();
    let listing: String = tree.iter().map(|e| format!("{}\n", e.display_path())).collect();
    let mut child = Command::new("cpio")
        .args(["-H", "newc", "--create", "--reproducible", "--quiet", "-R", "+0:+0"])
        .current_dir(&root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(listing.as_bytes()).unwrap();
    let gnu = child.wait_with_output().unwrap().stdout;
    // GNU cpio pads the archive to its 512-byte block size; everything before is identical.
    assert_eq!(gnu.len() % 512, 0);
    assert!(gnu.len() >= ours.len());
    assert_eq!(String::from_utf8_lossy(&gnu[..ours.len()]), String::from_utf8_lossy(&ours));
    assert!(gnu[ours.len()..].iter().all(|&b| b == 0));
}

/// A small deterministic PRNG for the mutation test.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut XorShift, data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    match rng.below(3) {
        0 => d.truncate(rng.below(d.len())),
        _ => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(d.len());
                d[i] = rng.next() as u8;
            }
        }
    }
    d
}

#[test]
fn mutated_inputs_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let ext = Extension::load(&sample_extension(dir.path())).unwrap();
    let base = synthetic_base(dir.path());
    let runner = ToolRunner::with_path("/nonexistent", EPOCH);
    let art = build_initramfs(&base, &[ext], &v("v1.14.0"), EPOCH, &runner, &dir.path().join("w")).unwrap();
    let good = std::fs::read(&art.path).unwrap();
    let segs = walk_initramfs(&good, "good").unwrap();
    let sqsh = segs.last().unwrap().archives[0][0].data.clone();
    let plain = zstd::bulk::decompress(&base, 1 << 24).unwrap();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let img = dir.path().join("m.sqsh");
    let (mut ok, mut err) = (0, 0);
    for _ in 0..300 {
        match walk_initramfs(&mutate(&mut rng, &good), "m") {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
        let _ = walk_initramfs(&mutate(&mut rng, &plain), "m");
        let _ = cpio::NewcReader::new(mutate(&mut rng, &plain).as_slice(), "m").read_archive();
        std::fs::write(&img, mutate(&mut rng, &sqsh)).unwrap();
        let _ = squashfs::list(&img);
        let _ = squashfs::extract_subtree(&img, Path::new("usr"), &dir.path().join("x"));
        let _ = std::fs::remove_dir_all(dir.path().join("x"));
    }
    eprintln!("mutated initramfs: {ok} read, {err} rejected");
    assert!(err > 0);
}

#[test]
fn firmware_from_several_extensions_merges_later_wins() {
    let dir = tempfile::tempdir().unwrap();
    let a = extension(
        dir.path(),
        "fw-a",
        &[("usr/lib/firmware/same.bin", b"from a, longer", 0o644), ("usr/lib/firmware/a.bin", b"a", 0o644)],
    );
    let b = extension(dir.path(), "fw-b", &[("usr/lib/firmware/same.bin", b"from b", 0o600)]);
    let exts = [Extension::load(&a).unwrap(), Extension::load(&b).unwrap()];
    let base = synthetic_base(dir.path());
    let runner = ToolRunner::with_path("/nonexistent", EPOCH);
    let art = build_initramfs(&base, &exts, &v("v1.14.0"), EPOCH, &runner, &dir.path().join("w")).unwrap();
    let bytes = std::fs::read(&art.path).unwrap();
    let segs = walk_initramfs(&bytes, "out").unwrap();
    let members = &segs.last().unwrap().archives[0];
    let same = members.iter().find(|m| m.header.name == b"usr/lib/firmware/same.bin").unwrap();
    assert_eq!((same.data.as_slice(), same.header.mode), (b"from b".as_slice(), 0o100600));
    assert_eq!(art.firmware, ["usr/lib/firmware/a.bin", "usr/lib/firmware/same.bin"]);

    let c = extension(dir.path(), "fw-c", &[("usr/lib/firmware/a.bin/inner", b"x", 0o644)]);
    let exts = [Extension::load(&a).unwrap(), Extension::load(&c).unwrap()];
    let e = build_initramfs(&base, &exts, &v("v1.14.0"), EPOCH, &runner, &dir.path().join("w")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "extensions \"fw-a\" and \"fw-c\" both provide \"/usr/lib/firmware/a.bin\" in the initramfs, once as a directory"
    );
}
