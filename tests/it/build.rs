//! `talforge build` end to end, on the sample cluster (testbed/labs/sample.yaml) and the fixture release
//! (ci/fixture-release): byte-reproducibility across directories, time zones, umasks and CPU counts; independent
//! tools reading every output back; the metal image, the ISO and PXE kernel+initramfs booting under OVMF to the
//! fixture guest's inventory line; Secure Boot enrollment, enforcement and refusal of a changed UKI; builds
//! killed at random moments; `talforge verify`.
//!
//! The fixture release is read from `out/fixture-release` (or `$TALFORGE_FIXTURE_RELEASE`). Without it, or
//! without a Debian tool a test uses, the test says `SKIP:` and what to install, except in CI (`CI` set), where a
//! skip is a failure: CI installs everything.
//!
//! The sample cluster is built once per talforge binary and fixture release, under the target's scratch folder,
//! and shared (read-only) by the tests that only read it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use talforge_builder::tool::{Program, ToolRunner};

use crate::support::repo;

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_CODE_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const QEMU: Program = Program::new("qemu-system-x86_64", "qemu-system-x86");
/// A TCG boot here takes 15-40 s (OVMF, sd-boot's 10 s menu, the kernel); a loaded CI machine is slower.
const BOOT_DEADLINE: Duration = Duration::from_secs(300);

/// The virtio profile's image (metal, ISO, PXE, UKI, installer) and the Secure Boot one.
const PLAIN: &str = "qemu-virtio-uefi";
const SECURE: &str = "qemu-nvme-secureboot-tpm";

// ------------------------------------------------------------------------------------------------- support

/// Skips the calling test with `why`, or fails it in CI.
fn unavailable<T>(why: &str) -> Option<T> {
    talforge_builder::tool::skip_test(&format!("SKIP: {why}"));
    None
}

/// Skips unless every program is installed.
fn need(programs: &[(&'static str, &'static str)]) -> Option<()> {
    let runner = ToolRunner::new(0);
    for (name, package) in programs {
        if runner.find(Program::new(name, package)).is_none() {
            return unavailable(&format!("{name} is not installed (Debian package {package})"));
        }
    }
    Some(())
}

fn need_files(files: &[(&str, &str)]) -> Option<()> {
    for (path, package) in files {
        if !Path::new(path).is_file() {
            return unavailable(&format!("{path} is missing (Debian package {package})"));
        }
    }
    Some(())
}

fn fixture_release() -> Option<PathBuf> {
    let dir =
        std::env::var_os("TALFORGE_FIXTURE_RELEASE").map_or_else(|| repo().join("out/fixture-release"), PathBuf::from);
    if dir.join("fixture.json").is_file() {
        Some(std::fs::canonicalize(&dir).expect("canonical fixture path"))
    } else {
        unavailable(&format!(
            "no fixture release at {} (build it with ci/fixture-release, or set TALFORGE_FIXTURE_RELEASE)",
            dir.display()
        ))
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `cmd`, panicking with its stderr unless it succeeds; returns stdout.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of the sample cluster file in `dir` (as `sample.yaml`) reading the release at `release`.
fn sample_lab(dir: &Path, release: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("testbed/labs/sample.yaml")).expect("sample.yaml");
    let from = "source: { dir: ../../out/fixture-release }";
    assert!(text.contains(from), "testbed/labs/sample.yaml no longer says {from:?}; update this test");
    let text = text.replace(from, &format!("source: {{ dir: {} }}", release.display()));
    std::fs::create_dir_all(dir).expect("mkdir");
    let cluster = dir.join("sample.yaml");
    std::fs::write(&cluster, text).expect("write cluster file");
    cluster
}

/// `talforge build -f CLUSTER -o OUT --catalog REPO ARGS` with its own cache, in a clean environment.
fn build_command(cluster: &Path, out: &Path, cache: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_talforge"));
    c.arg("build").arg("-f").arg(cluster).arg("-o").arg(out).arg("--catalog").arg(repo()).args(args);
    c.env("TALFORGE_CACHE", cache)
        .env("NO_COLOR", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("TALFORGE_LOG")
        .stdin(Stdio::null());
    c
}

/// Every file under `out`'s `images/` and `schematics/` by relative path, with its sha256.
fn artifacts(out: &Path) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for top in ["images", "schematics"] {
        walk(&out.join(top), &mut |p| {
            let rel = p.strip_prefix(out).expect("under out").display().to_string();
            map.insert(rel, sha256_file(p));
        });
    }
    map
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, f);
        } else {
            f(&p);
        }
    }
}

/// The image folder of `profile` in a build output.
fn image_dir(out: &Path, profile: &str) -> PathBuf {
    let images = out.join("images");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&images)
        .unwrap_or_else(|e| panic!("{}: {e}", images.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix(profile))
                .is_some_and(|rest| rest.len() == 13 && rest.starts_with('-'))
        })
        .collect();
    assert_eq!(found.len(), 1, "one image folder for {profile} under {}: {found:?}", images.display());
    found.pop().expect("one")
}

/// The sample cluster, built once per talforge binary and fixture release (see the module docs).
struct Sample {
    root: PathBuf,
    cluster: PathBuf,
    out: PathBuf,
    cache: PathBuf,
}

fn sample() -> Option<Sample> {
    let release = fixture_release()?;
    let bin = std::fs::metadata(env!("CARGO_BIN_EXE_talforge")).expect("talforge binary");
    let key = sha256_hex(
        format!(
            "{} {:?} {} {}",
            bin.len(),
            bin.modified().ok(),
            sha256_file(&release.join("fixture.json")),
            sha256_file(&repo().join("testbed/labs/sample.yaml"))
        )
        .as_bytes(),
    );
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(scratch).expect("target tmp");
    let lock = File::create(scratch.join("sample-build.lock")).expect("lock file");
    lock.lock().expect("lock");
    let name = format!("sample-build-{}", &key[..16]);
    let root = scratch.join(&name);
    let sample = Sample {
        cluster: root.join("lab/sample.yaml"),
        out: root.join("out"),
        cache: root.join("cache"),
        root: root.clone(),
    };
    if !root.join("done").exists() {
        // Builds of older binaries are of no use any more.
        for e in std::fs::read_dir(scratch).expect("read target tmp").flatten() {
            if e.file_name().to_string_lossy().starts_with("sample-build-") && e.path().is_dir() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        sample_lab(&root.join("lab"), &release);
        let t = Instant::now();
        let out = build_command(&sample.cluster, &sample.out, &sample.cache, &[]).output().expect("run talforge");
        assert!(out.status.success(), "sample build failed:\n{}", String::from_utf8_lossy(&out.stderr));
        eprintln!("sample cluster built in {:.1} s", t.elapsed().as_secs_f64());
        std::fs::write(root.join("done"), "").expect("mark done");
    }
    drop(lock);
    Some(sample)
}

// ------------------------------------------------------------------------------------------------- reproducibility

#[test]
fn builds_in_other_folders_time_zones_umasks_and_cpu_counts_are_identical() {
    let Some(a) = sample() else { return };
    let Some(release) = fixture_release() else { return };
    let Some(()) = need(&[("taskset", "util-linux"), ("sh", "dash")]) else { return };
    let b = tempfile::tempdir().expect("tempdir");
    let cluster = sample_lab(&b.path().join("elsewhere/lab"), &release);
    // The Secure Boot key is an input (made once per cluster): the second build gets the first one's.
    let keys = b.path().join("elsewhere/lab/secureboot");
    std::fs::create_dir_all(&keys).expect("mkdir");
    for name in ["uki-signing-key.pem", "uki-signing-cert.pem"] {
        std::fs::copy(a.root.join("lab/secureboot").join(name), keys.join(name)).expect("copy key");
    }
    let out = b.path().join("elsewhere/out");
    let talforge = build_command(&cluster, &out, &b.path().join("cache"), &[]);
    // umask 077, one CPU, a time zone 12:45 ahead of UTC, another locale.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 077; exec taskset -c 0 \"$@\"", "sh"])
        .arg(talforge.get_program())
        .args(talforge.get_args())
        .env("TZ", "Pacific/Chatham")
        .env("LC_ALL", "C.UTF-8");
    for (k, v) in talforge.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    ok(&mut cmd);

    let (first, second) = (artifacts(&a.out), artifacts(&out));
    assert!(first.len() >= 18, "the sample build has every output of two images: {first:?}");
    let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&first), names(&second), "the two builds made different files");
    let differing: Vec<_> = first.iter().filter(|(k, v)| second.get(*k) != Some(v)).map(|(k, _)| k).collect();
    assert!(differing.is_empty(), "these artifacts differ between the two builds: {differing:?}");
    eprintln!("{} artifacts identical across the two builds", first.len());

    // Artifacts are world-readable whatever the umask.
    for rel in second.keys() {
        let mode = std::fs::metadata(out.join(rel)).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{rel} has mode {mode:o} after a build under umask 077");
    }
    // The manifests agree except for where the cluster file was.
    let manifest = |dir: &Path| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest")).expect("json");
        v.as_object_mut().expect("object").remove("clusterFile").expect("clusterFile recorded");
        v
    };
    assert_eq!(manifest(&a.out), manifest(&out));
}

// ------------------------------------------------------------------------------------------------- readers

/// `zstd -d` of an image's `.raw.zst` into `dir`.
fn decompress_metal(image: &Path, name: &str, dir: &Path) -> PathBuf {
    let raw = dir.join(name);
    ok(Command::new("zstd").args(["-d", "-q", "-f"]).arg(image.join(format!("{name}.zst"))).arg("-o").arg(&raw));
    raw
}

/// First and last sector of partition `n` according to `sgdisk -i`.
fn partition_sectors(raw: &Path, n: u32) -> (u64, u64) {
    let info = ok(Command::new("sgdisk").arg("-i").arg(n.to_string()).arg(raw));
    let field = |label: &str| -> u64 {
        let line = info.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} in:\n{info}"));
        line[label.len()..].split_whitespace().next().and_then(|v| v.parse().ok()).expect("sector number")
    };
    (field("First sector:"), field("Last sector:"))
}

/// The ESP of a raw disk image, cut out with `dd`.
fn extract_esp(raw: &Path, dir: &Path) -> PathBuf {
    let (first, last) = partition_sectors(raw, 1);
    let esp = dir.join("esp.img");
    ok(Command::new("dd")
        .arg(format!("if={}", raw.display()))
        .arg(format!("of={}", esp.display()))
        .args(["bs=512", "status=none"])
        .arg(format!("skip={first}"))
        .arg(format!("count={}", last - first + 1)));
    esp
}

#[test]
fn the_metal_image_reads_back_with_sgdisk_fsck_vfat_and_mtools() {
    let Some(()) = need(&[("zstd", "zstd"), ("sgdisk", "gdisk"), ("fsck.vfat", "dosfstools"), ("mdir", "mtools")])
    else {
        return;
    };
    let Some(s) = sample() else { return };
    let image = image_dir(&s.out, PLAIN);
    let work = tempfile::tempdir().expect("tempdir");
    let raw = decompress_metal(&image, "metal-amd64.raw", work.path());

    let verify = ok(Command::new("sgdisk").arg("-v").arg(&raw));
    assert!(verify.contains("No problems found"), "sgdisk -v:\n{verify}");
    let table = ok(Command::new("sgdisk").arg("-p").arg(&raw));
    let names: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("Number"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(names, ["EFI", "META"], "partition table:\n{table}");
    // Type GUIDs: EFI System and Talos's META.
    let efi = ok(Command::new("sgdisk").args(["-i", "1"]).arg(&raw));
    assert!(efi.contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"), "{efi}");

    let esp = extract_esp(&raw, work.path());
    let fsck = ok(Command::new("fsck.vfat").arg("-n").arg(&esp));
    assert!(!fsck.contains("differ") && !fsck.contains("Dirty"), "fsck.vfat -n:\n{fsck}");
    let listing = ok(Command::new("mdir").args(["-b", "-/", "-i"]).arg(&esp).arg("::/"));
    for want in ["::/EFI/boot/BOOTX64.efi", "::/EFI/Linux/Talos-v1.14.0.efi", "::/loader/loader.conf"] {
        assert!(listing.lines().any(|l| l.eq_ignore_ascii_case(want)), "{want} not in the ESP:\n{listing}");
    }
    let conf = ok(Command::new("mtype").arg("-i").arg(&esp).arg("::/loader/loader.conf"));
    assert!(conf.contains("timeout 10"), "loader.conf:\n{conf}");
    // The UKI on the ESP is the one published next to the image.
    let uki = work.path().join("uki.efi");
    ok(Command::new("mcopy").arg("-i").arg(&esp).arg("::/EFI/Linux/Talos-v1.14.0.efi").arg(&uki));
    assert_eq!(sha256_file(&uki), sha256_file(&image.join("metal-amd64-uki.efi")));
}

/// Splits concatenated newc cpio archives (each ends with `TRAILER!!!`, then zero padding).
fn split_cpio(data: &[u8]) -> Vec<&[u8]> {
    let hex = |b: &[u8]| usize::from_str_radix(std::str::from_utf8(b).expect("ascii"), 16).expect("hex field");
    let mut archives = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at + 110 <= data.len() {
        let magic = &data[at..at + 6];
        assert!(magic == b"070701" || magic == b"070702", "no cpio header at {at}: {magic:?}");
        let size = hex(&data[at + 54..at + 62]);
        let namesize = hex(&data[at + 94..at + 102]);
        let name = &data[at + 110..at + 110 + namesize - 1];
        at = (at + 110 + namesize).next_multiple_of(4);
        at = (at + size).next_multiple_of(4);
        if name == b"TRAILER!!!" {
            archives.push(&data[start..at]);
            while at < data.len() && data[at] == 0 {
                at += 1;
            }
            start = at;
        }
    }
    assert_eq!(start, data.len(), "trailing bytes after the last cpio archive");
    archives
}

#[test]
fn the_initramfs_reads_back_with_cpio_and_unsquashfs() {
    let Some(()) = need(&[("zstd", "zstd"), ("cpio", "cpio"), ("unsquashfs", "squashfs-tools")]) else { return };
    let Some(s) = sample() else { return };
    let image = image_dir(&s.out, SECURE);
    let work = tempfile::tempdir().expect("tempdir");
    let out =
        Command::new("zstd").args(["-d", "-c", "-q"]).arg(image.join("initramfs-amd64.xz")).output().expect("zstd");
    assert!(out.status.success(), "zstd -d: {}", String::from_utf8_lossy(&out.stderr));
    let archives = split_cpio(&out.stdout);
    assert!(archives.len() >= 2, "the release's archive and ours: {}", archives.len());
    let mut names = Vec::new();
    for (i, archive) in archives.iter().enumerate() {
        let file = work.path().join(format!("part{i}.cpio"));
        std::fs::write(&file, archive).expect("write");
        let listing = ok(Command::new("cpio").args(["-t", "--quiet", "-F"]).arg(&file));
        names.extend(listing.lines().map(str::to_owned));
        ok(Command::new("cpio")
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames", "-F"])
            .arg(&file)
            .current_dir(work.path()));
    }
    for want in ["init", "rootfs.sqsh", "extensions.yaml"] {
        assert!(names.iter().any(|n| n == want), "{want} not in the initramfs: {names:?}");
    }
    let firmware = names.iter().filter(|n| n.starts_with("usr/lib/firmware/") && !n.ends_with('/')).count();
    assert!(firmware >= 20, "the firmware extension's files go to usr/lib/firmware: {names:?}");
    // One squashfs per extension (`0.sqsh`, `1.sqsh`, as Talos numbers them) and the depmod layer on top.
    let layers: Vec<&String> = names
        .iter()
        .filter(|n| n.strip_suffix(".sqsh").is_some_and(|stem| stem.chars().all(|c| c.is_ascii_digit())))
        .collect();
    assert_eq!(layers.len(), 2, "one squashfs per extension: {names:?}");
    let mut kos = Vec::new();
    for layer in layers {
        let listing = ok(Command::new("unsquashfs").arg("-l").arg(work.path().join(layer)));
        kos.extend(
            listing.lines().filter(|l| l.ends_with(".ko")).map(|l| l.rsplit('/').next().unwrap_or(l).to_owned()),
        );
    }
    let depmod = ok(Command::new("unsquashfs").arg("-l").arg(work.path().join("modules.dep.sqsh")));
    assert!(depmod.lines().any(|l| l.ends_with("/modules.dep")), "modules.dep layer:\n{depmod}");
    for want in ["e1000e.ko", "nvme.ko", "ahci.ko"] {
        assert!(kos.iter().any(|k| k == want), "{want} not in the extension layers: {kos:?}");
    }
}

#[test]
fn the_iso_has_a_uefi_el_torito_entry() {
    let Some(()) = need(&[("xorriso", "xorriso")]) else { return };
    let Some(s) = sample() else { return };
    let iso = image_dir(&s.out, PLAIN).join("metal-amd64.iso");
    let out =
        Command::new("xorriso").arg("-indev").arg(&iso).args(["-report_el_torito", "plain"]).output().expect("xorriso");
    let report = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "xorriso:\n{report}");
    let entry = report.lines().find(|l| l.starts_with("El Torito boot img")).unwrap_or_else(|| panic!("{report}"));
    assert!(entry.split_whitespace().any(|w| w == "UEFI"), "{entry}");
    assert!(report.contains("Volume id    : 'TALOS_V1_14_0'"), "{report}");
}

#[test]
fn secure_boot_binaries_pass_sbverify_with_the_cluster_certificate() {
    let Some(()) = need(&[("sbverify", "sbsigntool"), ("zstd", "zstd"), ("sgdisk", "gdisk"), ("mcopy", "mtools")])
    else {
        return;
    };
    let Some(s) = sample() else { return };
    let cert = s.root.join("lab/secureboot/uki-signing-cert.pem");
    let key = s.root.join("lab/secureboot/uki-signing-key.pem");
    let mode = std::fs::metadata(&key).expect("signing key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the signing key is private");
    let image = image_dir(&s.out, SECURE);
    let work = tempfile::tempdir().expect("tempdir");
    let raw = decompress_metal(&image, "metal-amd64-secureboot.raw", work.path());
    let esp = extract_esp(&raw, work.path());
    let sd_boot = work.path().join("BOOTX64.efi");
    ok(Command::new("mcopy").arg("-i").arg(&esp).arg("::/EFI/boot/BOOTX64.efi").arg(&sd_boot));
    let on_esp = work.path().join("uki.efi");
    ok(Command::new("mcopy").arg("-i").arg(&esp).arg("::/EFI/Linux/Talos-v1.14.0.efi").arg(&on_esp));
    for file in [image.join("metal-amd64-secureboot-uki.efi"), on_esp, sd_boot] {
        let out = ok(Command::new("sbverify").arg("--cert").arg(&cert).arg(&file));
        assert!(out.contains("Signature verification OK"), "{}: {out}", file.display());
    }
    // The plain image's UKI is not signed.
    let plain = image_dir(&s.out, PLAIN).join("metal-amd64-uki.efi");
    let out = Command::new("sbverify").arg("--cert").arg(&cert).arg(&plain).output().expect("sbverify");
    assert!(!out.status.success(), "sbverify accepted the unsigned UKI");
    // The auto-enrollment files sit where sd-boot looks for them.
    let keys = ok(Command::new("mdir").args(["-b", "-i"]).arg(&esp).arg("::/loader/keys/auto"));
    for name in ["PK.auth", "KEK.auth", "db.auth"] {
        assert!(keys.lines().any(|l| l.ends_with(name)), "{name} missing:\n{keys}");
    }
}

#[test]
fn the_installer_image_reads_back_with_skopeo() {
    let Some(()) = need(&[("skopeo", "skopeo")]) else { return };
    let Some(s) = sample() else { return };
    for (profile, file) in [(PLAIN, "installer-amd64.tar"), (SECURE, "installer-amd64-secureboot.tar")] {
        let archive = image_dir(&s.out, profile).join(file);
        let out = ok(Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}", archive.display())));
        let v: serde_json::Value = serde_json::from_str(&out).expect("skopeo prints JSON");
        assert_eq!(v["Architecture"], "amd64", "{out}");
        assert_eq!(v["Os"], "linux", "{out}");
        assert!(v["Layers"].as_array().is_some_and(|l| !l.is_empty()), "{out}");
    }
}

// ------------------------------------------------------------------------------------------------- boots

/// How a boot went.
struct Boot {
    serial: String,
    inventory: Option<serde_json::Value>,
    elapsed: Duration,
}

/// Boots QEMU/TCG under OVMF (`code`, a private copy of `vars`) with `args` until the fixture guest prints its
/// inventory line, `stop` appears on the serial console, or `deadline` passes.
fn boot(work: &Path, code: &str, vars: &Path, args: &[String], stop: Option<&str>, deadline: Duration) -> Boot {
    let serial = work.join(format!("serial-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&serial);
    let secure = code == OVMF_CODE_SECBOOT;
    let qemu = ToolRunner::new(0).find(QEMU).expect("qemu checked by the caller");
    let mut cmd = Command::new(qemu);
    cmd.args(["-machine", if secure { "q35,smm=on" } else { "q35" }])
        .args(["-accel", "tcg", "-m", "1024", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,unit=0,readonly=on,file={code}"))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,unit=1,file={}", vars.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if secure {
        cmd.args(["-global", "driver=cfi.pflash01,property=secure,value=on"]);
    }
    let mut child = cmd.spawn().expect("start qemu");
    let start = Instant::now();
    let mut stop_seen: Option<Instant> = None;
    let text = loop {
        std::thread::sleep(Duration::from_millis(250));
        let text = String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
        let done = text.lines().any(|l| l.contains("TALFORGE-INVENTORY {") && l.trim_end().ends_with('}'));
        if stop_seen.is_none() && stop.is_some_and(|s| text.contains(s)) {
            stop_seen = Some(Instant::now());
        }
        // After the stop text, a few more seconds show whether anything boots anyway.
        let settled = stop_seen.is_some_and(|t| t.elapsed() > Duration::from_secs(8));
        if done || settled || start.elapsed() > deadline || child.try_wait().ok().flatten().is_some() {
            break text;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let elapsed = start.elapsed();
    let inventory = text
        .lines()
        .find_map(|l| l.split_once("TALFORGE-INVENTORY ").map(|(_, json)| json.trim_end()))
        .and_then(|json| serde_json::from_str(json).ok());
    if inventory.is_none() && stop_seen.is_none() {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        eprintln!("qemu stderr: {stderr}");
    }
    Boot { serial: text, inventory, elapsed }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<_> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The guest booted the image's kernel command line with both fixture extensions' modules loaded.
fn assert_booted(b: &Boot, what: &str, cmdline: &str) -> serde_json::Value {
    let inv = b.inventory.clone().unwrap_or_else(|| {
        panic!("{what}: no inventory line in {:?}; serial tail:\n{}", b.elapsed, tail(&b.serial, 50))
    });
    eprintln!("{what}: inventory after {:.1} s", b.elapsed.as_secs_f64());
    assert_eq!(inv["kernel"]["cmdline"].as_str().map(str::trim), Some(cmdline), "{what}: kernel command line");
    let exts: Vec<&str> =
        inv["extensions"].as_array().expect("extensions").iter().filter_map(|e| e["name"].as_str()).collect();
    // The two extensions, then the module index layer the builder makes with depmod (as Talos).
    assert_eq!(exts, ["fixture-firmware", "fixture-storage-net", "modules.dep"], "{what}: extension layers");
    let loaded: Vec<&str> =
        inv["modules"]["fromExtensions"].as_array().expect("modules").iter().filter_map(|m| m.as_str()).collect();
    for m in ["e1000e", "nvme", "ahci"] {
        assert!(loaded.contains(&m), "{what}: module {m} from the extension not loaded: {loaded:?}");
    }
    assert_eq!(inv["modules"]["failedFromExtensions"], serde_json::json!([]), "{what}");
    assert!(inv["firmwareFiles"]["count"].as_u64().is_some_and(|n| n >= 20), "{what}: firmware files");
    assert_eq!(inv["firmware"]["type"], "uefi", "{what}");
    inv
}

fn boot_needs() -> Option<()> {
    need(&[("qemu-system-x86_64", "qemu-system-x86"), ("zstd", "zstd")])?;
    need_files(&[(OVMF_CODE, "ovmf"), (OVMF_VARS, "ovmf")])
}

fn private_vars(work: &Path) -> PathBuf {
    let vars = work.join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars).expect("copy OVMF vars");
    vars
}

fn image_cmdline(image: &Path) -> String {
    std::fs::read_to_string(image.join("cmdline-metal-amd64")).expect("cmdline file").trim().to_owned()
}

#[test]
fn the_metal_image_boots_under_ovmf() {
    let Some(()) = boot_needs() else { return };
    let Some(s) = sample() else { return };
    let image = image_dir(&s.out, PLAIN);
    let work = tempfile::tempdir().expect("tempdir");
    let raw = decompress_metal(&image, "metal-amd64.raw", work.path());
    let vars = private_vars(work.path());
    let args = ["-drive".to_owned(), format!("if=virtio,format=raw,file={}", raw.display())];
    let b = boot(work.path(), OVMF_CODE, &vars, &args, None, BOOT_DEADLINE);
    let inv = assert_booted(&b, "metal", &image_cmdline(&image));
    assert_eq!(inv["firmware"]["secureBoot"], 0);
}

#[test]
fn the_iso_boots_under_ovmf() {
    let Some(()) = boot_needs() else { return };
    let Some(s) = sample() else { return };
    let image = image_dir(&s.out, PLAIN);
    let work = tempfile::tempdir().expect("tempdir");
    let vars = private_vars(work.path());
    let args = ["-cdrom".to_owned(), image.join("metal-amd64.iso").display().to_string()];
    let b = boot(work.path(), OVMF_CODE, &vars, &args, None, BOOT_DEADLINE);
    assert_booted(&b, "iso", &image_cmdline(&image));
}

#[test]
fn the_pxe_kernel_and_initramfs_boot_under_ovmf() {
    let Some(()) = boot_needs() else { return };
    let Some(s) = sample() else { return };
    let image = image_dir(&s.out, PLAIN);
    // boot.ipxe names the same three files.
    let ipxe = std::fs::read_to_string(image.join("boot.ipxe")).expect("boot.ipxe");
    let cmdline = image_cmdline(&image);
    assert!(ipxe.contains(&format!("kernel kernel-amd64 {cmdline}")), "{ipxe}");
    assert!(ipxe.contains("initrd initramfs-amd64.xz"), "{ipxe}");
    let work = tempfile::tempdir().expect("tempdir");
    let vars = private_vars(work.path());
    let args = [
        "-kernel".to_owned(),
        image.join("kernel-amd64").display().to_string(),
        "-initrd".to_owned(),
        image.join("initramfs-amd64.xz").display().to_string(),
        "-append".to_owned(),
        cmdline.clone(),
    ];
    let b = boot(work.path(), OVMF_CODE, &vars, &args, None, BOOT_DEADLINE);
    // OVMF's direct kernel boot appends the name of the initrd it loaded from QEMU (`initrd=initrd`); iPXE
    // would append `initrd=initramfs-amd64.xz` the same way.
    assert_booted(&b, "pxe", &format!("{cmdline} initrd=initrd"));
}

#[test]
fn the_secure_boot_image_enrolls_our_keys_boots_enforcing_and_refuses_a_changed_uki() {
    let Some(()) = boot_needs() else { return };
    let Some(()) = need(&[("sgdisk", "gdisk"), ("mcopy", "mtools")]) else { return };
    let Some(()) = need_files(&[(OVMF_CODE_SECBOOT, "ovmf")]) else { return };
    let Some(s) = sample() else { return };
    let image = image_dir(&s.out, SECURE);
    let work = tempfile::tempdir().expect("tempdir");
    let raw = decompress_metal(&image, "metal-amd64-secureboot.raw", work.path());
    // Debian's empty variable store: Secure Boot in setup mode, so sd-boot enrolls the keys on the ESP and
    // reboots (no -no-reboot here), then the firmware enforces them.
    let vars = private_vars(work.path());
    let disk = ["-drive".to_owned(), format!("if=virtio,format=raw,file={}", raw.display())];
    let b = boot(work.path(), OVMF_CODE_SECBOOT, &vars, &disk, None, BOOT_DEADLINE);
    let inv = assert_booted(&b, "secure boot", &image_cmdline(&image));
    assert_eq!(inv["firmware"]["secureBoot"], 1, "Secure Boot is enforcing after enrollment");
    assert_eq!(inv["firmware"]["setupMode"], 0, "our PK is enrolled");

    // One byte of the UKI's kernel changed on the ESP: the firmware refuses it under the enrolled keys.
    let (first, _) = partition_sectors(&raw, 1);
    let fat = format!("{}@@{}", raw.display(), first * 512);
    let uki = work.path().join("uki.efi");
    ok(Command::new("mcopy").args(["-n", "-i"]).arg(&fat).arg("::/EFI/Linux/Talos-v1.14.0.efi").arg(&uki));
    let mut bytes = std::fs::read(&uki).expect("read uki");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&uki, &bytes).expect("write uki");
    ok(Command::new("mcopy").args(["-o", "-i"]).arg(&fat).arg(&uki).arg("::/EFI/Linux/Talos-v1.14.0.efi"));
    let b = boot(work.path(), OVMF_CODE_SECBOOT, &vars, &disk, Some("Access Denied"), BOOT_DEADLINE);
    assert!(b.inventory.is_none(), "the changed UKI booted");
    assert!(!b.serial.contains("Linux version"), "the kernel of the changed UKI started:\n{}", tail(&b.serial, 30));
    assert!(
        b.serial.contains("Talos-v1.14.0.efi: Access Denied") || b.serial.contains("Security Violation"),
        "expected the firmware to refuse the changed UKI; serial tail:\n{}",
        tail(&b.serial, 30)
    );
    eprintln!("changed UKI refused after {:.1} s", b.elapsed.as_secs_f64());
}

// ------------------------------------------------------------------------------------------------- atomicity

/// A small deterministic generator for kill times (the seed is printed, so a failure can be replayed).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Every file under a final name (no leading dot anywhere in its path) is complete: an artifact equal to the
/// reference build's, or a manifest that parses.
fn check_final_names(out: &Path, reference: &BTreeMap<String, String>, trial: usize) -> usize {
    let mut finals = 0;
    walk(out, &mut |p| {
        let rel = p.strip_prefix(out).expect("under out");
        if rel.components().any(|c| c.as_os_str().to_string_lossy().starts_with('.')) {
            return; // staging folders and temporary files
        }
        finals += 1;
        let rel = rel.display().to_string();
        if rel == "manifest.json" {
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&std::fs::read(p).expect("read"));
            assert!(parsed.is_ok(), "trial {trial}: manifest.json is not complete JSON");
            return;
        }
        let want = reference.get(&rel).unwrap_or_else(|| panic!("trial {trial}: unexpected file {rel}"));
        assert_eq!(&sha256_file(p), want, "trial {trial}: {rel} is partial or wrong");
    });
    finals
}

/// What `--kind metal,uki,pxe` puts in an image folder.
const SUBSET: [&str; 6] = [
    "boot.ipxe",
    "cmdline-metal-amd64",
    "initramfs-amd64.xz",
    "kernel-amd64",
    "metal-amd64-uki.efi",
    "metal-amd64.raw.zst",
];

fn image_files(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(image_dir(out, PLAIN))
        .expect("image folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn builds_killed_at_random_moments_leave_no_partial_file_and_a_rebuild_succeeds() {
    let Some(s) = sample() else { return };
    let Some(release) = fixture_release() else { return };
    let reference = artifacts(&s.out);
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = sample_lab(&dir.path().join("lab"), &release);
    let out = dir.path().join("out");
    let args = ["--profile", PLAIN, "--kind", "metal,uki,pxe"];

    // A whole build first, to know how long one takes.
    let t = Instant::now();
    ok(&mut build_command(&cluster, &out, &dir.path().join("cache-0"), &args));
    let mut full = t.elapsed();
    // That build stays: each killed build must leave it (or its own complete result) in place.

    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
    eprintln!("full build {:.2} s; kill seed {seed}", full.as_secs_f64());
    let mut rng = XorShift(seed);
    // Until 24 builds were killed mid-way (a kill that lands after the build finished does not count).
    const KILLS: usize = 24;
    const MAX_TRIALS: usize = 60;
    let mut trials = 0;
    let mut cache = dir.path().join("cache-0");
    let (mut killed, mut with_files) = (0, 0);
    while killed < KILLS && trials < MAX_TRIALS {
        let trial = trials;
        trials += 1;
        // A cold cache for each trial, so kills land in every stage of a build; the last trial's half-filled
        // cache is then used by the rebuild below.
        let _ = std::fs::remove_dir_all(&cache);
        cache = dir.path().join(format!("cache-{}", trial + 1));
        // Uniform over the build, and every third trial in its last fifth, where files are moved into place.
        let ms = full.as_millis() as u64;
        let delay = Duration::from_millis(if trial % 3 == 2 {
            ms * 4 / 5 + rng.next() % (ms / 5).max(1)
        } else {
            rng.next() % ms.max(1)
        });
        let mut child = build_command(&cluster, &out, &cache, &args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start talforge");
        std::thread::sleep(delay);
        if child.try_wait().expect("wait").is_none() {
            killed += 1;
        } else {
            // Builds got faster than the first one (a less loaded machine): aim earlier from now on.
            full = full.mul_f64(0.8);
        }
        let _ = child.kill(); // SIGKILL: no cleanup runs
        let _ = child.wait();
        if check_final_names(&out, &reference, trial) > 0 {
            with_files += 1;
        }
        // The image folder is whole: the previous build's or the new one, never a mix or nothing.
        assert_eq!(image_files(&out), SUBSET, "trial {trial}: the image folder");
    }
    eprintln!("{trials} trials: {killed} killed mid-build, {with_files} with final files present");
    assert!(killed >= KILLS, "{KILLS} builds must have been killed mid-way (got {killed} in {trials} trials)");

    // A rebuild with the last (possibly half-filled) cache succeeds and gives the reference bytes.
    ok(&mut build_command(&cluster, &out, &cache, &args));
    let finals = check_final_names(&out, &reference, trials);
    assert_eq!(image_files(&out), SUBSET, "after the rebuild");
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .expect("out")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind after a good build: {leftovers:?}");
    assert!(finals >= 8, "{finals}");
}

// ------------------------------------------------------------------------------------------------- verify

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("read_dir").flatten() {
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).expect("copy");
        }
    }
}

fn verify(dir: &Path, cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_talforge"))
        .arg("--catalog")
        .arg(repo())
        .arg("verify")
        .arg(dir)
        .env("TALFORGE_CACHE", cache)
        .env("NO_COLOR", "1")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("run talforge verify")
}

#[test]
fn verify_rebuilds_every_artifact_and_names_a_changed_one() {
    let Some(s) = sample() else { return };
    let work = tempfile::tempdir().expect("tempdir");
    let copy = work.path().join("out");
    copy_tree(&s.out, &copy);
    let out = verify(&copy, &s.cache);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "verify of an untouched build:\n{stderr}");
    assert!(stderr.contains("verified: ") && stderr.contains("artifacts rebuilt byte for byte"), "{stderr}");
    let listed = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with("ok ")).count();
    assert!(listed >= 16, "every artifact is compared:\n{}", String::from_utf8_lossy(&out.stdout));

    // One byte of one kernel changed: exit 1, and the message names the file.
    let image = image_dir(&copy, PLAIN);
    let kernel = image.join("kernel-amd64");
    let mut bytes = std::fs::read(&kernel).expect("kernel");
    bytes[4096] ^= 0xff;
    std::fs::write(&kernel, &bytes).expect("write");
    let out = verify(&copy, &s.cache);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "verify of a changed build:\n{stderr}");
    let rel = kernel.strip_prefix(&copy).expect("under copy").display().to_string();
    assert!(stderr.contains(&format!("difference: {rel}: file on disk is ")), "{stderr}");
}
