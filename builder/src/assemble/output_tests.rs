//! End-to-end checks of the outputs with the standard tools: xorriso, mtools and fsck.vfat on the ISO, skopeo on
//! the installer archive, qemu-img on qcow2, the zstd/xz/gzip CLIs on compressed files, byte-reproducibility
//! across time, time zone and umask, and boot tests of the ISO under QEMU (TCG) + OVMF with the fixture release's
//! kernel. A test whose tool is missing says so and passes (the `SKIP:` line names the Debian package).

use std::io::{Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use super::compress::{Compression, compress_file};
use super::iso::{IsoSpec, build_iso};
use super::oci::{BaseImage, BaseLayer, InstallerArtifacts, InstallerSpec, MEDIA_TYPE_LAYER_GZIP, write_installer};
use super::pxe::{PxeSpec, write_pxe};
use super::qcow2::{TALOS_QCOW2_OPTIONS, convert_to_qcow2, image_info};
use crate::tool::{Program, ToolRunner};

const EPOCH: u64 = 1_700_000_000;
const XORRISO: Program = Program::new("xorriso", "xorriso");
const SKOPEO: Program = Program::new("skopeo", "skopeo");
const QEMU_IMG: Program = Program::new("qemu-img", "qemu-utils");
const MTOOLS_MDIR: Program = Program::new("mdir", "mtools");
const MTYPE: Program = Program::new("mtype", "mtools");
const MATTRIB: Program = Program::new("mattrib", "mtools");
const FSCK_VFAT: Program = Program::new("fsck.vfat", "dosfstools");
const ZSTD: Program = Program::new("zstd", "zstd");
const XZ: Program = Program::new("xz", "xz-utils");
const GZIP: Program = Program::new("gzip", "gzip");
const QEMU: Program = Program::new("qemu-system-x86_64", "qemu-system-x86");
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const SD_BOOT_HOST: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
const HELPER_ENV: &str = "TALFORGE_OUTPUTS_REPRO_DIR";

fn runner() -> ToolRunner {
    ToolRunner::new(EPOCH)
}

/// Whether all `programs` are installed; prints a SKIP line naming the first missing one otherwise.
fn have(test: &str, programs: &[Program]) -> bool {
    let r = runner();
    for p in programs {
        if r.find(*p).is_none() {
            crate::skip_test!("SKIP: {test}: {} is not installed (Debian package {})", p.name, p.package);
            return false;
        }
    }
    true
}

fn run(p: Program, args: &[&str]) -> String {
    let out = runner().run(p, args, None, None).unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    s
}

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Test inputs in `dir`: systemd-boot (the host's when installed), a 3 MiB "UKI", kernel, initramfs, and a
/// 48 MiB sparse raw image with data in a few places.
struct Inputs {
    sd_boot: PathBuf,
    uki: PathBuf,
    kernel: PathBuf,
    initramfs: PathBuf,
    raw: PathBuf,
}

fn inputs(dir: &Path) -> Inputs {
    std::fs::create_dir_all(dir).unwrap();
    let i = Inputs {
        sd_boot: dir.join("systemd-boot.efi"),
        uki: dir.join("uki.efi"),
        kernel: dir.join("vmlinuz"),
        initramfs: dir.join("initramfs.xz"),
        raw: dir.join("disk.raw"),
    };
    if i.sd_boot.exists() {
        return i;
    }
    match std::fs::read(SD_BOOT_HOST) {
        Ok(b) => std::fs::write(&i.sd_boot, b).unwrap(),
        Err(_) => std::fs::write(&i.sd_boot, noise(140_000, 1)).unwrap(),
    }
    std::fs::write(&i.uki, noise(3 * 1024 * 1024 + 17, 2)).unwrap();
    std::fs::write(&i.kernel, noise(900_000, 3)).unwrap();
    std::fs::write(&i.initramfs, noise(700_000, 4)).unwrap();
    let f = std::fs::File::create(&i.raw).unwrap();
    f.set_len(48 << 20).unwrap();
    for (at, seed) in [(0u64, 5u64), (1 << 20, 6), (33 << 20, 7), ((48 << 20) - 4096, 8)] {
        f.write_all_at(&noise(70_000.min(((48 << 20) - at) as usize), seed), at).unwrap();
    }
    i
}

fn iso_spec(i: &Inputs) -> IsoSpec {
    IsoSpec {
        version: "v1.14.0".into(),
        arch: "amd64".into(),
        sd_boot: i.sd_boot.clone(),
        uki: i.uki.clone(),
        secure_boot: None,
        epoch: EPOCH,
    }
}

fn installer_spec(i: &Inputs) -> InstallerSpec {
    InstallerSpec {
        arch: "amd64".into(),
        version: "v1.14.0".into(),
        secure_boot: false,
        artifacts: InstallerArtifacts::SdBoot { systemd_boot: i.sd_boot.clone(), uki: i.uki.clone() },
        ref_name: "v1.14.0".into(),
        base: None,
        epoch: EPOCH,
    }
}

/// Builds every output of `i` into `out`; returns file name → sha256.
fn build_all(i: &Inputs, out: &Path) -> Vec<(String, String)> {
    std::fs::create_dir_all(out).unwrap();
    build_iso(&out.join("metal-amd64.iso"), &iso_spec(i)).unwrap();
    write_installer(&out.join("installer-amd64.tar"), &installer_spec(i)).unwrap();
    write_pxe(
        out,
        &PxeSpec {
            arch: "amd64".into(),
            platform: "metal".into(),
            kernel: i.kernel.clone(),
            initramfs: i.initramfs.clone(),
            cmdline: "talos.platform=metal console=tty0".into(),
            base_url: None,
        },
    )
    .unwrap();
    for c in [Compression::Zstd, Compression::Xz, Compression::Gzip] {
        compress_file(&i.raw, &out.join(format!("metal-amd64.raw.{}", c.extension())), c).unwrap();
    }
    if runner().find(QEMU_IMG).is_some() {
        convert_to_qcow2(&runner(), &i.raw, &out.join("metal-amd64.qcow2"), TALOS_QCOW2_OPTIONS).unwrap();
    }
    let mut names: Vec<String> =
        std::fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names.into_iter().map(|n| (n.clone(), sha256_file(&out.join(&n)))).collect()
}

/// Run by [`outputs_are_reproducible`] in a child process with another TZ and umask; a no-op otherwise.
#[test]
fn repro_helper() {
    let Some(dir) = std::env::var_os(HELPER_ENV) else { return };
    let dir = PathBuf::from(dir);
    build_all(&inputs(&dir.join("in")), &dir.join("b"));
}

#[test]
fn outputs_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(&dir.path().join("in"));
    let a = build_all(&i, &dir.path().join("a"));
    // A later second, another time zone, a restrictive umask, another process.
    std::thread::sleep(Duration::from_millis(1100));
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("sh")
        .args(["-c", "umask 077; exec \"$@\"", "sh"])
        .arg(&exe)
        .args(["--exact", "assemble::output_tests::repro_helper", "--test-threads=1", "--quiet"])
        .env(HELPER_ENV, dir.path())
        .env("TZ", "Pacific/Chatham")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let b: Vec<(String, String)> =
        a.iter().map(|(n, _)| (n.clone(), sha256_file(&dir.path().join("b").join(n)))).collect();
    assert_eq!(a, b);
    let expected = [
        "boot.ipxe",
        "cmdline-metal-amd64",
        "initramfs-amd64.xz",
        "installer-amd64.tar",
        "kernel-amd64",
        "metal-amd64.iso",
        "metal-amd64.raw.gz",
        "metal-amd64.raw.xz",
        "metal-amd64.raw.zst",
    ];
    for name in expected {
        assert!(a.iter().any(|(n, _)| n == name), "{name} missing from {a:?}");
    }
    // Modes do not follow the umask.
    use std::os::unix::fs::PermissionsExt as _;
    for (name, _) in &b {
        let mode = std::fs::metadata(dir.path().join("b").join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{name}");
    }
    eprintln!("reproducible outputs: {a:#?}");
}

#[test]
fn iso_passes_xorriso_mtools_and_fsck() {
    if !have("iso checks", &[XORRISO, MTOOLS_MDIR, FSCK_VFAT]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(&dir.path().join("in"));
    let iso = dir.path().join("metal-amd64.iso");
    let report = build_iso(&iso, &iso_spec(&i)).unwrap();
    let isos = iso.to_str().unwrap();

    let el_torito = run(XORRISO, &["-indev", isos, "-report_el_torito", "plain"]);
    let img_line = el_torito.lines().find(|l| l.starts_with("El Torito boot img :")).unwrap_or_default();
    let fields: Vec<&str> = img_line.split_whitespace().collect();
    assert_eq!(fields.get(5..12), Some(["1", "UEFI", "y", "none", "0x0000", "0x00", "0"].as_slice()), "{el_torito}");
    assert_eq!(fields.last().copied(), Some(report.efiboot_block.to_string().as_str()), "{el_torito}");
    assert!(el_torito.contains("El Torito img path :   1  /efiboot.img"), "{el_torito}");
    assert_eq!(el_torito.matches("El Torito boot img :").count(), 1, "{el_torito}");

    let system_area = run(XORRISO, &["-indev", isos, "-report_system_area", "plain"]);
    let esp_sector = u64::from(report.efiboot_block) * 4;
    let part = |n: u32, kind: &str, start: u64, blocks: u64| {
        format!("MBR partition      :   {n}   0x00  {kind} {start:>12} {blocks:>12}")
    };
    assert!(system_area.contains(&part(1, "0x83", 64, esp_sector - 64)), "{system_area}");
    assert!(system_area.contains(&part(2, "0xef", esp_sector, report.efiboot_size / 512)), "{system_area}");

    let pvd = run(XORRISO, &["-indev", isos, "-pvd_info"]);
    for want in [
        "Volume Id    : TALOS_V1_14_0",
        "Volume Set Id: Talos-v1.14.0",
        "Creation Time: 2023111422132000",
        "Modif. Time  : 2023111422132000",
        "Expir. Time  : 0000000000000000",
        "Eff. Time    : 0000000000000000",
    ] {
        assert!(pvd.contains(want), "{want:?} not in {pvd}");
    }

    let listing = run(XORRISO, &["-indev", isos, "-find", "/", "-exec", "lsdl"]);
    for path in [
        "'/EFI/BOOT/BOOTX64.EFI'",
        "'/EFI/Linux/Talos-v1.14.0.efi'",
        "'/loader/loader.conf'",
        "'/loader/random-seed'",
        "'/efiboot.img'",
        "'/boot.catalog'",
    ] {
        assert!(listing.contains(path), "{path} not in {listing}");
    }
    // Every entry: root-owned, dated by the epoch (2023-11-14 22:13:20 UTC).
    for line in listing.lines().filter(|l| l.starts_with(['d', '-', 'e']) && l.contains(" '/")) {
        assert!(line.contains(" 0        0 ") && line.contains("Nov 14  2023"), "{line}");
    }
    assert!(listing.lines().any(|l| l.starts_with("-r--r--r--") && l.ends_with("'/loader/random-seed'")), "{listing}");

    // The ISO tree's UKI is the input UKI.
    let extracted = dir.path().join("uki-from-iso");
    run(
        XORRISO,
        &["-osirrox", "on", "-indev", isos, "-extract", "/EFI/Linux/Talos-v1.14.0.efi", extracted.to_str().unwrap()],
    );
    assert_eq!(std::fs::read(&extracted).unwrap(), std::fs::read(&i.uki).unwrap());

    // The FAT image inside: fsck-clean, the files, the read-only seed, the UKI bytes.
    let fat = dir.path().join("efiboot.img");
    let mut img = vec![0u8; report.efiboot_size as usize];
    std::fs::File::open(&iso).unwrap().read_exact_at(&mut img, u64::from(report.efiboot_block) * 2048).unwrap();
    std::fs::write(&fat, &img).unwrap();
    let fats = fat.to_str().unwrap();
    let fsck = run(FSCK_VFAT, &["-n", fats]);
    assert!(fsck.contains(&format!("{} files", report.esp_files.len() + 5)), "{fsck}");
    let mdir = run(MTOOLS_MDIR, &["-i", fats, "-/", "-b", "::"]);
    for path in
        ["::/EFI/BOOT/BOOTX64.EFI", "::/EFI/Linux/Talos-v1.14.0.efi", "::/loader/loader.conf", "::/loader/random-seed"]
    {
        assert!(mdir.lines().any(|l| l.trim() == path), "{path} not in {mdir}");
    }
    assert_eq!(
        run(MTYPE, &["-i", fats, "::/loader/loader.conf"]),
        super::iso::loader_conf(super::iso::EnrollKeys::Off)
    );
    assert!(run(MATTRIB, &["-i", fats, "::/loader/random-seed"]).starts_with("  A    R "));
    let fat_uki = dir.path().join("uki-from-fat");
    runner()
        .run(
            Program::new("mcopy", "mtools"),
            ["-i", fats, "::/EFI/Linux/Talos-v1.14.0.efi", fat_uki.to_str().unwrap()],
            None,
            None,
        )
        .unwrap();
    assert_eq!(std::fs::read(&fat_uki).unwrap(), std::fs::read(&i.uki).unwrap());
    eprintln!("iso report: {report:#?}");
}

#[test]
fn secure_boot_iso_carries_keys() {
    if !have("secure boot iso", &[MTOOLS_MDIR]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(&dir.path().join("in"));
    let key = |name: &str, seed| {
        let p = dir.path().join(name);
        std::fs::write(&p, noise(1500, seed)).unwrap();
        p
    };
    let spec = IsoSpec {
        secure_boot: Some(super::iso::IsoSecureBoot {
            enroll: super::iso::EnrollKeys::IfSafe,
            signing_cert_der: key("uki.der", 11),
            platform_key: key("PK.auth", 12),
            key_exchange_key: key("KEK.auth", 13),
            signature_db: key("db.auth", 14),
        }),
        ..iso_spec(&i)
    };
    let iso = dir.path().join("sb.iso");
    let report = build_iso(&iso, &spec).unwrap();
    assert_eq!(
        report.esp_files,
        [
            "EFI/BOOT/BOOTX64.EFI",
            "EFI/Linux/Talos-v1.14.0.efi",
            "loader/loader.conf",
            "loader/random-seed",
            "EFI/keys/uki-signing-cert.der",
            "loader/keys/auto/PK.auth",
            "loader/keys/auto/KEK.auth",
            "loader/keys/auto/db.auth",
        ]
    );
    let fat = dir.path().join("efiboot.img");
    let mut img = vec![0u8; report.efiboot_size as usize];
    std::fs::File::open(&iso).unwrap().read_exact_at(&mut img, u64::from(report.efiboot_block) * 2048).unwrap();
    std::fs::write(&fat, &img).unwrap();
    let conf = run(MTYPE, &["-i", fat.to_str().unwrap(), "::/loader/loader.conf"]);
    assert!(conf.ends_with("\nsecure-boot-enroll if-safe\n"), "{conf}");
    let mdir = run(MTOOLS_MDIR, &["-i", fat.to_str().unwrap(), "-/", "-b", "::"]);
    assert!(
        mdir.contains("::/loader/keys/auto/db.auth") && mdir.contains("::/EFI/keys/uki-signing-cert.der"),
        "{mdir}"
    );
    // Talos 1.13 has no random seed.
    let old = IsoSpec { version: "v1.13.9".into(), ..iso_spec(&i) };
    let report = build_iso(&dir.path().join("old.iso"), &old).unwrap();
    assert!(!report.esp_files.iter().any(|f| f == "loader/random-seed"));
    assert_eq!(report.volume_id, "TALOS_V1_13_9");
}

#[test]
fn installer_archive_reads_with_skopeo() {
    if !have("installer archive", &[SKOPEO]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(&dir.path().join("in"));
    let tar_path = dir.path().join("installer-amd64.tar");
    let report = write_installer(&tar_path, &installer_spec(&i)).unwrap();
    assert_eq!(report.artifact_paths, ["usr/install/amd64/systemd-boot.efi", "usr/install/amd64/vmlinuz.efi"]);
    let archive = format!("oci-archive:{}", tar_path.display());
    let inspect: serde_json::Value = serde_json::from_str(&run(SKOPEO, &["inspect", &archive])).unwrap();
    assert_eq!(inspect["Digest"], report.manifest.digest.as_str());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Created"], "2023-11-14T22:13:20Z");
    assert_eq!(inspect["Layers"], serde_json::json!([report.artifacts_layer.digest]));
    // By name, through the ref.name annotation.
    let named: serde_json::Value =
        serde_json::from_str(&run(SKOPEO, &["inspect", &format!("{archive}:v1.14.0")])).unwrap();
    assert_eq!(named["Digest"], report.manifest.digest.as_str());
    let config: serde_json::Value = serde_json::from_str(&run(SKOPEO, &["inspect", "--config", &archive])).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!([report.artifacts_diff_id]));

    // skopeo copy verifies every blob digest; the layer holds the boot assets.
    let copy = dir.path().join("copy");
    run(SKOPEO, &["--insecure-policy", "copy", "--quiet", &archive, &format!("dir:{}", copy.display())]);
    let layer = copy.join(report.artifacts_layer.digest.trim_start_matches("sha256:"));
    let mut entries = tar::Archive::new(flate2::read::GzDecoder::new(std::fs::File::open(&layer).unwrap()));
    let mut seen = Vec::new();
    for e in entries.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let h = e.header().clone();
        assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap(), h.mode().unwrap()), (0, 0, EPOCH, 0o644));
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        let want = if path.ends_with("systemd-boot.efi") { &i.sd_boot } else { &i.uki };
        assert_eq!(body, std::fs::read(want).unwrap(), "{path}");
        seen.push(path);
    }
    assert_eq!(seen, report.artifact_paths);

    // The outer tar: name-sorted, root-owned, epoch mtimes.
    let mut outer = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
    let names: Vec<String> = outer
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            assert_eq!((e.header().uid().unwrap(), e.header().mtime().unwrap()), (0, EPOCH));
            e.path().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.first().map(String::as_str), Some("blobs/"));
    assert_eq!(names.last().map(String::as_str), Some("oci-layout"));
}

#[test]
fn installer_with_base_layer() {
    if !have("installer with base", &[SKOPEO]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(&dir.path().join("in"));
    // A stand-in base layer: /bin/installer.
    let mut raw_tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o755);
    h.set_cksum();
    raw_tar.append_data(&mut h, "bin/installer", &b"#!/x\n"[..]).unwrap();
    let raw_tar = raw_tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw_tar).unwrap();
    let blob = gz.finish().unwrap();
    let digest =
        |b: &[u8]| format!("sha256:{}", Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect::<String>());
    let blob_path = dir.path().join("base.tar.gz");
    std::fs::write(&blob_path, &blob).unwrap();
    let base = BaseImage {
        layers: vec![BaseLayer {
            blob: blob_path.clone(),
            media_type: MEDIA_TYPE_LAYER_GZIP.into(),
            digest: digest(&blob),
            diff_id: digest(&raw_tar),
        }],
        config: Some(serde_json::json!({"Entrypoint": ["/bin/installer"], "Env": ["VERSION=v1.14.0"]})),
    };
    let spec = InstallerSpec { base: Some(base.clone()), ..installer_spec(&i) };
    let tar_path = dir.path().join("installer.tar");
    let report = write_installer(&tar_path, &spec).unwrap();
    assert_eq!(report.layers, 2);
    let archive = format!("oci-archive:{}", tar_path.display());
    let inspect: serde_json::Value = serde_json::from_str(&run(SKOPEO, &["inspect", &archive])).unwrap();
    assert_eq!(inspect["Layers"], serde_json::json!([digest(&blob), report.artifacts_layer.digest]));
    let config: serde_json::Value = serde_json::from_str(&run(SKOPEO, &["inspect", "--config", &archive])).unwrap();
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/bin/installer"]));
    run(
        SKOPEO,
        &["--insecure-policy", "copy", "--quiet", &archive, &format!("dir:{}", dir.path().join("c").display())],
    );

    // A blob that does not match its digest is refused and leaves nothing behind.
    let mut bad = base;
    bad.layers[0].digest = digest(b"something else");
    let out = dir.path().join("bad.tar");
    let e = write_installer(&out, &InstallerSpec { base: Some(bad), ..installer_spec(&i) }).unwrap_err();
    assert!(e.to_string().contains("has digest sha256:"), "{e}");
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Layout rules: GRUB-era versions take kernel + initramfs.
    let old = InstallerSpec { version: "v1.9.5".into(), ..installer_spec(&i) };
    assert_eq!(
        write_installer(&out, &old).unwrap_err().to_string(),
        "talos v1.9.5 installs a kernel and an initramfs: found systemd-boot and a uki"
    );
    let old = InstallerSpec {
        artifacts: InstallerArtifacts::Grub { kernel: i.kernel.clone(), initramfs: i.initramfs.clone() },
        ..old
    };
    assert_eq!(
        write_installer(&out, &old).unwrap().artifact_paths,
        ["usr/install/amd64/initramfs.xz", "usr/install/amd64/vmlinuz"]
    );
    let sb_old = InstallerSpec { version: "v1.9.5".into(), secure_boot: true, ..installer_spec(&i) };
    assert_eq!(
        write_installer(&out, &sb_old).unwrap().artifact_paths,
        ["usr/install/amd64/systemd-boot.efi", "usr/install/amd64/vmlinuz.efi.signed"]
    );
}

#[test]
fn qcow2_matches_raw_and_is_deterministic() {
    if !have("qcow2", &[QEMU_IMG]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(&dir.path().join("in"));
    let (a, b) = (dir.path().join("a.qcow2"), dir.path().join("b.qcow2"));
    let report = convert_to_qcow2(&runner(), &i.raw, &a, TALOS_QCOW2_OPTIONS).unwrap();
    assert_eq!((report.virtual_size, report.cluster_size), (48 << 20, 8192));
    let info = image_info(&runner(), &a).unwrap();
    assert_eq!(info.format, "qcow2");
    run(QEMU_IMG, &["compare", "-f", "raw", "-F", "qcow2", i.raw.to_str().unwrap(), a.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(1100));
    convert_to_qcow2(&runner(), &i.raw, &b, TALOS_QCOW2_OPTIONS).unwrap();
    assert_eq!(sha256_file(&a), sha256_file(&b));
    eprintln!("qcow2: {report:?}");
}

#[test]
fn compressed_files_decompress_with_the_clis() {
    if !have("compression", &[ZSTD, XZ, GZIP]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let i = inputs(&dir.path().join("in"));
    for (c, tool) in [(Compression::Zstd, ZSTD), (Compression::Xz, XZ), (Compression::Gzip, GZIP)] {
        let out = dir.path().join(format!("disk.raw.{}", c.extension()));
        compress_file(&i.raw, &out, c).unwrap();
        let outs = out.to_str().unwrap();
        run(tool, &["-t", outs]);
        let back = runner().run(tool, ["-dc", outs], None, None).unwrap().stdout;
        assert!(back == std::fs::read(&i.raw).unwrap(), "{c:?} does not round-trip through {}", tool.name);
    }
    // zstd -l: one frame, checksum present (XXH64), content size recorded.
    let list = run(ZSTD, &["-lv", dir.path().join("disk.raw.zst").to_str().unwrap()]);
    assert!(list.contains("Check: XXH64") && list.contains("50331648 B"), "{list}");
    let xz = run(XZ, &["-lvv", dir.path().join("disk.raw.xz").to_str().unwrap()]);
    assert!(xz.contains("CRC64"), "{xz}");
}

// ---------------------------------------------------------------------------------------------- boot tests

/// The fixture release (ci/fixture-release): `usr/install/amd64/{vmlinuz, initramfs.xz, systemd-stub.efi,
/// systemd-boot.efi}`.
fn fixture_release() -> Result<PathBuf, PathBuf> {
    let dir = std::env::var_os("TALFORGE_FIXTURE_RELEASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../out/fixture-release"));
    let install = dir.join("usr/install/amd64");
    let complete =
        ["vmlinuz", "initramfs.xz", "systemd-stub.efi", "systemd-boot.efi"].iter().all(|f| install.join(f).is_file());
    if complete { Ok(install) } else { Err(dir) }
}

/// The UKI of the fixture release, from the project's UKI builder (`build_uki`, the /work/scratch/uki crate):
/// systemd-stub + `.osrel`, `.cmdline`, `.uname`, `.linux`, `.initrd`, laid out as Talos lays them out. No
/// `.profile` sections: the fixture's systemd-stub (Debian 252) predates them.
fn fixture_uki(install: &Path, dir: &Path, cmdline: &str) -> PathBuf {
    let read = |f: &str| std::fs::read(install.join(f)).unwrap();
    let (stub, kernel, initrd) = (read("systemd-stub.efi"), read("vmlinuz"), read("initramfs.xz"));
    let uname = crate::assemble::uki::kernel_release(&kernel);
    let image = crate::assemble::uki::build_uki(&crate::assemble::uki::UkiInputs {
        stub: &stub,
        kernel: &kernel,
        initrd: &initrd,
        cmdline,
        os_release: "NAME=\"Talos\"\nID=talos\nVERSION_ID=v1.14.0\nPRETTY_NAME=\"Talos (v1.14.0)\"\n",
        uname: uname.as_deref(),
        profiles: None,
        epoch: EPOCH,
        ..Default::default()
    })
    .unwrap();
    let path = dir.join("uki.efi");
    std::fs::write(&path, image).unwrap();
    path
}

/// Boots `drive` (QEMU `-drive` options) under OVMF with TCG; returns the serial log once `marker` shows up, or
/// panics with the log after `limit`.
fn boot_until(dir: &Path, drive: &str, marker: &str, limit: Duration) -> String {
    let vars = dir.join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();
    let log = dir.join("serial.log");
    let mut child = Command::new(runner().find(QEMU).unwrap())
        .args(["-accel", "tcg", "-machine", "q35", "-m", "1024", "-smp", "1", "-display", "none", "-no-reboot"])
        .args(["-drive", &format!("if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}")])
        .args(["-drive", &format!("if=pflash,format=raw,unit=1,file={}", vars.display())])
        .args(["-drive", drive])
        .args(["-serial", &format!("file:{}", log.display()), "-monitor", "none", "-net", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let text = loop {
        std::thread::sleep(Duration::from_millis(500));
        let text = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
        if text.contains(marker) {
            break Ok(text);
        }
        if start.elapsed() > limit || child.try_wait().unwrap().is_some() {
            break Err(text);
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    match text {
        Ok(t) => {
            eprintln!("booted to {marker:?} in {:.1} s", start.elapsed().as_secs_f64());
            t
        }
        Err(t) => {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            panic!("{marker:?} not seen within {limit:?}; qemu stderr: {stderr}\nserial log:\n{t}")
        }
    }
}

fn boot_test(name: &str, as_disk: bool) {
    if !have(name, &[QEMU]) {
        return;
    }
    if !Path::new(OVMF_CODE).is_file() || !Path::new(OVMF_VARS).is_file() {
        crate::skip_test!("SKIP: {name}: {OVMF_CODE} is missing (Debian package ovmf)");
        return;
    }
    let install = match fixture_release() {
        Ok(install) => install,
        Err(dir) => {
            crate::skip_test!(
                "SKIP: {name}: no fixture release at {} (build it with ci/fixture-release or set \
                 TALFORGE_FIXTURE_RELEASE)",
                dir.display()
            );
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let uki = fixture_uki(&install, dir.path(), "console=ttyS0 talos.platform=metal");
    let iso = dir.path().join("metal-amd64.iso");
    let spec = IsoSpec {
        version: "v1.14.0".into(),
        arch: "amd64".into(),
        sd_boot: install.join("systemd-boot.efi"),
        uki,
        secure_boot: None,
        epoch: EPOCH,
    };
    build_iso(&iso, &spec).unwrap();
    let drive = if as_disk {
        format!("file={},format=raw,if=virtio,readonly=on", iso.display())
    } else {
        format!("file={},format=raw,media=cdrom,if=ide,readonly=on", iso.display())
    };
    // sd-boot waits `timeout 10` seconds on its menu before the kernel starts.
    let log = boot_until(dir.path(), &drive, "TALFORGE-STAGE kernel-booted", Duration::from_secs(75));
    // The kernel ran with the UKI's command line, so systemd-boot started the UKI from the FAT image.
    assert!(log.contains("Command line: console=ttyS0 talos.platform=metal"), "{log}");
    if std::env::var_os("TALFORGE_SHOW_SERIAL").is_some() {
        eprintln!("{log}");
    }
}

#[test]
fn iso_boots_under_ovmf_as_cdrom() {
    boot_test("iso boot (cdrom)", false);
}

#[test]
fn iso_boots_under_ovmf_as_disk() {
    boot_test("iso boot (usb-style disk)", true);
}
