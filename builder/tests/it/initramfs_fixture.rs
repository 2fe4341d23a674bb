//! The fixture release (ci/fixture-release: Debian kernel + busybox in the Talos layout, with the extensions
//! `fixture-storage-net` and `fixture-firmware`) rebuilt with its extensions, checked with squashfs-tools and kmod,
//! and booted in QEMU (TCG). Every test skips with a message when the fixture or a tool is missing.
//!
//! The release is looked for in `$TALFORGE_FIXTURE_RELEASE`, else `out/fixture-release` in the repository (built by `ci/fixture-release`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::initramfs_common::{have, run, sha256_hex};
use talforge_builder::assemble::initramfs::cpio::walk_initramfs;
use talforge_builder::assemble::initramfs::{Entry, Extension, InitramfsArtifact, Metadata, build_initramfs};
use talforge_builder::tool::ToolRunner;

struct Fixture {
    root: PathBuf,
    json: serde_json::Value,
}

impl Fixture {
    fn find() -> Option<Fixture> {
        let root = std::env::var_os("TALFORGE_FIXTURE_RELEASE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../out/fixture-release"));
        let text = match std::fs::read_to_string(root.join("fixture.json")) {
            Ok(t) => t,
            Err(_) => {
                talforge_builder::skip_test!(
                    "SKIP: no fixture release at {} (build it with ci/fixture-release, or set \
                     TALFORGE_FIXTURE_RELEASE)",
                    root.display()
                );
                return None;
            }
        };
        Some(Fixture { root, json: serde_json::from_str(&text).unwrap() })
    }

    fn epoch(&self) -> u64 {
        self.json["sourceDateEpoch"].as_u64().unwrap()
    }

    fn kver(&self) -> String {
        self.json["kernel"]["release"].as_str().unwrap().to_owned()
    }

    fn extension_names(&self) -> Vec<String> {
        self.json["extensions"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect()
    }

    fn extensions(&self) -> Vec<Extension> {
        self.json["extensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Extension::load(&self.root.join(e["path"].as_str().unwrap())).unwrap())
            .collect()
    }

    fn base(&self) -> Vec<u8> {
        std::fs::read(self.root.join("usr/install/amd64/initramfs.xz")).unwrap()
    }

    fn build(&self, work: &Path) -> (InitramfsArtifact, Duration) {
        let t = Instant::now();
        let art = build_initramfs(
            &self.base(),
            &self.extensions(),
            &"v1.14.0".parse().unwrap(),
            self.epoch(),
            &ToolRunner::new(self.epoch()),
            work,
        )
        .unwrap();
        (art, t.elapsed())
    }
}

fn tools(names: &[&str]) -> bool {
    for t in names {
        if !have(t) {
            talforge_builder::skip_test!("SKIP: {t} is not installed (apt-get install squashfs-tools cpio zstd kmod)");
            return false;
        }
    }
    true
}

#[test]
fn fixture_release_rebuild() {
    let Some(fx) = Fixture::find() else { return };
    if !tools(&["unsquashfs", "depmod", "cpio", "zstd"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kver = fx.kver();
    let (art, cold) = fx.build(&dir.path().join("a"));
    let (again, warm) = fx.build(&dir.path().join("b"));
    let t = Instant::now();
    let key = talforge_builder::assemble::initramfs::content_key(
        &fx.base(),
        &fx.extensions(),
        &"v1.14.0".parse().unwrap(),
        fx.epoch(),
        &ToolRunner::new(fx.epoch()),
    )
    .unwrap();
    let keyed = t.elapsed();
    assert_eq!(key, art.content_key);
    eprintln!(
        "fixture rebuild: first {cold:?}, second {warm:?}, content key alone {keyed:?}; {} bytes, sha256 {}",
        art.size, art.sha256
    );
    assert_eq!(art.sha256, again.sha256, "two builds differ");
    let bytes = std::fs::read(&art.path).unwrap();
    let base = fx.base();
    assert!(bytes.starts_with(&base), "the release initramfs must come first, unchanged (no microcode here)");
    assert_eq!(art.layout.microcode_len, 0);

    let segs = walk_initramfs(&bytes, "rebuilt").unwrap();
    let last = segs.last().unwrap();
    assert_eq!(last.offset, base.len() as u64);
    let appended = &last.archives[0];
    let names: Vec<String> = appended.iter().map(|m| m.header.name_lossy()).collect();
    assert_eq!(names[..4], ["0.sqsh", "1.sqsh", "extensions.yaml", "modules.dep.sqsh"]);
    let fw_expected = fx.json["extensions"][1]["firmwareFiles"].as_u64().unwrap() as usize;
    let fw: Vec<&String> = names.iter().filter(|n| n.starts_with("usr/lib/firmware/")).collect();
    assert_eq!(art.firmware.len(), fw_expected, "{:?}", art.firmware);
    assert!(fw.len() >= fw_expected);
    for f in &art.firmware {
        let src = fx.root.join("extensions/fixture-firmware/rootfs").join(f);
        let m = appended.iter().find(|m| &m.header.name_lossy() == f).unwrap();
        if std::fs::symlink_metadata(&src).unwrap().file_type().is_symlink() {
            assert_eq!(m.data, std::fs::read_link(&src).unwrap().as_os_str().as_encoded_bytes());
        } else {
            assert_eq!(m.data, std::fs::read(&src).unwrap(), "{f}");
        }
    }
    let yaml = String::from_utf8(appended[2].data.clone()).unwrap();
    for n in fx.extension_names() {
        assert!(yaml.contains(&format!("name: {n}\n")), "{yaml}");
    }

    // The extension images, as squashfs-tools sees them.
    let img = |i: usize, name: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, &appended[i].data).unwrap();
        p
    };
    let (storage, firmware_img, dep) = (img(0, "0.sqsh"), img(1, "1.sqsh"), img(3, "modules.dep.sqsh"));
    let l0 = run(Command::new("unsquashfs").args(["-l", "-no-xattrs"]).arg(&storage));
    let ext_kos: Vec<String> = l0
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("squashfs-root/usr/lib/modules/{kver}/")))
        .filter(|p| p.ends_with(".ko"))
        .map(str::to_owned)
        .collect();
    assert_eq!(ext_kos, art.modules);
    assert_eq!(art.module_count(), fx.json["extensions"][0]["modules"].as_array().unwrap().len());
    let l1 = run(Command::new("unsquashfs").args(["-l", "-no-xattrs"]).arg(&firmware_img));
    assert!(!l1.contains("firmware"), "firmware must move to the initramfs: {l1}");
    let ld = run(Command::new("unsquashfs").args(["-l", "-no-xattrs"]).arg(&dep));
    for l in ld.lines().filter(|l| l.starts_with("squashfs-root/usr/lib/modules/") && l.matches('/').count() > 4) {
        assert!(l.starts_with(&format!("squashfs-root/usr/lib/modules/{kver}/modules.")), "{l}");
    }
    let stats = run(Command::new("unsquashfs").arg("-s").arg(&dep));
    assert!(stats.contains("Compression zstd\n\tcompression-level 18"), "{stats}");

    // modules.dep equals what depmod makes of base + extension modules, done here with the CLI tools.
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    run(Command::new("sh")
        .arg("-c")
        .arg("zstd -dc \"$0\" | cpio -i --quiet rootfs.sqsh")
        .arg(fx.root.join("usr/install/amd64/initramfs.xz"))
        .current_dir(&x));
    run(Command::new("unsquashfs")
        .args(["-q", "-no-xattrs", "-d"])
        .arg(x.join("r"))
        .arg(x.join("rootfs.sqsh"))
        .arg("usr/lib/modules"));
    run(Command::new("cp")
        .arg("-a")
        .arg(fx.root.join(format!("extensions/fixture-storage-net/rootfs/usr/lib/modules/{kver}/.")))
        .arg(x.join(format!("r/usr/lib/modules/{kver}/"))));
    std::fs::write(x.join("conf"), "search extras built-in\n").unwrap();
    run(Command::new("depmod").arg("-a").arg("-b").arg(x.join("r/usr")).arg("-C").arg(x.join("conf")).arg(&kver));
    for f in ["modules.dep", "modules.alias", "modules.symbols", "modules.dep.bin"] {
        let ours = talforge_builder::assemble::initramfs::squashfs::read_file(
            &dep,
            &PathBuf::from(format!("usr/lib/modules/{kver}/{f}")),
        )
        .unwrap()
        .unwrap();
        let theirs = std::fs::read(x.join(format!("r/usr/lib/modules/{kver}/{f}"))).unwrap();
        assert!(ours == theirs, "{f} differs from depmod's");
    }
    let depfile = std::fs::read_to_string(x.join(format!("r/usr/lib/modules/{kver}/modules.dep"))).unwrap();
    for ko in &art.modules {
        assert!(depfile.lines().any(|l| l.starts_with(&format!("{ko}:"))), "{ko} missing from modules.dep");
    }
    assert_eq!(sha256_hex(&bytes), art.sha256);
}

#[test]
fn fixture_release_boots_in_qemu() {
    let Some(fx) = Fixture::find() else { return };
    if !have("qemu-system-x86_64") {
        talforge_builder::skip_test!("SKIP: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)");
        return;
    }
    if !tools(&["depmod"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A third, generated extension with (fake) microcode, so the kernel also has to take the prepended
    // uncompressed archive in front of the release's zstd one.
    let ucode = Extension::from_parts(
        Metadata {
            name: "fixture-ucode".into(),
            version: "1".into(),
            author: "talforge tests".into(),
            description: "fake microcode".into(),
            talos_constraint: ">= v1.12.0".into(),
            extra_info: None,
        },
        0o755,
        vec![
            Entry::bytes("usr/lib/firmware/amd-ucode/microcode_amd.bin", 0o644, vec![0x44; 64]),
            Entry::bytes("usr/lib/firmware/intel-ucode/06-00-00", 0o644, vec![0x49; 64]),
        ],
    )
    .unwrap();
    let mut exts = fx.extensions();
    exts.push(ucode);
    let art = build_initramfs(
        &fx.base(),
        &exts,
        &"v1.14.0".parse().unwrap(),
        fx.epoch(),
        &ToolRunner::new(fx.epoch()),
        &dir.path().join("w"),
    )
    .unwrap();
    assert!(art.layout.microcode_len > 0);
    let disk = dir.path().join("nvme.raw");
    std::fs::File::create(&disk).unwrap().set_len(64 << 20).unwrap();
    let log = dir.path().join("serial.log");
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35", "-accel", "tcg", "-smp", "2", "-m", "1024"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot", "-serial"])
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(fx.root.join("usr/install/amd64/vmlinuz"))
        .arg("-initrd")
        .arg(&art.path)
        .args(["-append", "console=ttyS0 talforge.poweroff=1"])
        .args(["-netdev", "user,id=n0,restrict=on", "-device", "e1000e,netdev=n0"])
        .arg("-drive")
        .arg(format!("file={},if=none,id=nv0,format=raw", disk.display()))
        .args(["-device", "nvme,drive=nv0,serial=TF-NVME-0001"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let limit = Duration::from_secs(480);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let serial = std::fs::read_to_string(&log).unwrap_or_default();
    eprintln!("qemu: {status:?} after {:?}", start.elapsed());
    for l in serial.lines().filter(|l| l.starts_with("TALFORGE-STAGE") || l.contains("microcode")) {
        eprintln!("  {l}");
    }
    let line = serial
        .lines()
        .find_map(|l| l.strip_prefix("TALFORGE-INVENTORY "))
        .unwrap_or_else(|| panic!("no inventory line (status {status:?}); serial tail:\n{}", tail(&serial, 60)));
    let inv: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let exts: Vec<&str> = inv["extensions"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(exts, ["fixture-storage-net", "fixture-firmware", "fixture-ucode", "modules.dep"], "{line}");
    assert_eq!(inv["modules"]["index"], "layers", "our modules.dep must cover every module: {line}");
    let from_ext: Vec<&str> =
        inv["modules"]["fromExtensions"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    for m in ["e1000e", "nvme", "nvme_core", "ahci", "libahci", "libata"] {
        assert!(from_ext.contains(&m), "{m} not loaded from the extension: {line}");
    }
    assert_eq!(inv["modules"]["failedFromExtensions"].as_array().unwrap().len(), 0, "{line}");
    let fw = fx.json["extensions"][1]["firmwareFiles"].as_u64().unwrap();
    assert_eq!(inv["firmwareFiles"]["count"].as_u64(), Some(fw), "{line}");
    assert!(status.is_some_and(|s| s.success()), "qemu did not power off cleanly: {status:?}");
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
