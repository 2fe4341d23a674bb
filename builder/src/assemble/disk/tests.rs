//! Third-party checks of whole images: the partition table read back by `gptman` and `sgdisk`, the ESP by
//! `fsck.vfat` and mtools, META by the ADV reader, plus reproducibility, sparseness, errors and atomicity.
//! Needs `gdisk`, `dosfstools` and `mtools` installed (the project's CI installs them).

use std::fs::File;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use super::gpt::{EFI_SYSTEM_PARTITION, LINUX_FILESYSTEM_DATA, guid_from_disk};
use super::meta::{META_PARTITION_SIZE, keys, parse_meta_partition};
use super::region::is_zero;
use super::*;
use crate::tool::{Program, ToolRunner};

const EPOCH: u64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC
const MIB: u64 = 1024 * 1024;
const SGDISK: Program = Program::new("sgdisk", "gdisk");
const FSCK_VFAT: Program = Program::new("fsck.vfat", "dosfstools");
const MDIR: Program = Program::new("mdir", "mtools");
const MCOPY: Program = Program::new("mcopy", "mtools");
const LOSETUP: Program = Program::new("losetup", "mount");
const REPRO_OUT_ENV: &str = "TALFORGE_TEST_REPRO_OUT";

fn tools() -> ToolRunner {
    ToolRunner::new(EPOCH)
}

/// Deterministic incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The ESP files of a Talos 1.14 sd-boot image with enrollment keys (stand-in contents), the UKI streamed from
/// `uki` (written here), and two META entries.
fn fixture(uki: &Path, sector_size: SectorSize) -> MetalImageSpec {
    std::fs::write(uki, noise(3 * MIB as usize + 123, 1)).unwrap();
    let mut spec = MetalImageSpec::sd_boot((1, 14), sector_size, EPOCH);
    spec.esp_files = vec![
        EspFile::bytes("EFI/boot/BOOTX64.efi", noise(101_000, 2)),
        EspFile::file("EFI/Linux/Talos-v1.14.0.efi", uki),
        EspFile::bytes(
            "loader/loader.conf",
            "# systemd-boot configuration\n\ntimeout 10\n\nsecure-boot-enroll if-safe\n",
        ),
        EspFile::bytes("loader/keys/auto/PK.auth", noise(1500, 3)),
        EspFile::bytes("loader/keys/auto/KEK.auth", noise(1600, 4)),
        EspFile::bytes("loader/keys/auto/db.auth", noise(1700, 5)),
        EspFile::bytes("loader/random-seed", vec![]),
    ];
    spec.meta_entries = vec![
        (keys::METAL_NETWORK_PLATFORM_CONFIG, b"addresses:\n  - address: 10.0.0.2/24\n".to_vec()),
        (keys::USER_RESERVED_1, b"hello".to_vec()),
    ];
    spec
}

fn file_bytes(file: &EspFile) -> Vec<u8> {
    match &file.source {
        EspSource::Bytes(b) => b.clone(),
        EspSource::File(p) => std::fs::read(p).unwrap(),
    }
}

fn sha256_file(path: &Path) -> String {
    use std::io::Read as _;
    let mut f = File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The offset of the first MiB block where two files differ, if they do.
fn first_difference(a: &Path, b: &Path) -> Option<u64> {
    let (fa, fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let len = fa.metadata().unwrap().len();
    if len != fb.metadata().unwrap().len() {
        return Some(0);
    }
    let (mut ba, mut bb) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    let mut at = 0;
    while at < len {
        let n = ba.len().min((len - at) as usize);
        fa.read_exact_at(&mut ba[..n], at).unwrap();
        fb.read_exact_at(&mut bb[..n], at).unwrap();
        if ba[..n] != bb[..n] {
            return Some(at);
        }
        at += n as u64;
    }
    None
}

/// Copies `[offset, offset + len)` of `image` into a new sparse file.
fn extract(image: &Path, offset: u64, len: u64, to: &Path) {
    let src = File::open(image).unwrap();
    let dst = File::create(to).unwrap();
    dst.set_len(len).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut at = 0;
    while at < len {
        let n = buf.len().min((len - at) as usize);
        src.read_exact_at(&mut buf[..n], offset + at).unwrap();
        if !is_zero(&buf[..n]) {
            dst.write_all_at(&buf[..n], at).unwrap();
        }
        at += n as u64;
    }
}

fn partition_range(report: &MetalImageReport, name: &str) -> (u64, u64) {
    let p = report.partitions.iter().find(|p| p.name == name).unwrap();
    let s = u64::from(report.sector_size);
    (p.first_lba * s, p.sectors() * s)
}

/// Text output of a tool that must succeed.
fn run(program: Program, args: &[&str]) -> String {
    let out = tools().run(program, args, None, None).unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

type Row = (String, String, String, String, String);

fn owned(r: (&str, &str, &str, &str, &str)) -> Row {
    (r.0.into(), r.1.into(), r.2.into(), r.3.into(), r.4.into())
}

/// `sgdisk -p`'s partition rows as (number, start, end, code, name); the size column is two words.
fn sgdisk_rows(print: &str) -> Vec<Row> {
    print
        .lines()
        .skip_while(|l| !l.starts_with("Number"))
        .skip(1)
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(w.len(), 7, "{l}");
            owned((w[0], w[1], w[2], w[5], w[6]))
        })
        .collect()
}

#[test]
fn partition_table_reads_back_with_gptman_and_sgdisk() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture(&dir.path().join("uki.efi"), SectorSize::B512);
    let image = dir.path().join("metal-amd64.raw");
    let report = write_metal_image(&image, &spec).unwrap();
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 2246 * MIB);

    // gptman: primary and backup headers and arrays, CRCs checked by the reader.
    let mut f = File::open(&image).unwrap();
    let gpt = gptman::GPT::read_from(&mut f, 512).unwrap();
    assert_eq!(format_guid(&guid_from_disk(&gpt.header.disk_guid)), "d92d45b3-cde9-8760-be9f-a2a71fac8d11");
    assert_eq!((gpt.header.first_usable_lba, gpt.header.last_usable_lba), (2048, 4_599_774));
    assert_eq!((gpt.header.primary_lba, gpt.header.backup_lba, gpt.header.partition_entry_lba), (1, 4_599_807, 2));
    assert_eq!(gpt.header.number_of_partition_entries, 128);
    let used: Vec<_> = gpt
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(i, p)| {
            (
                i,
                p.partition_name.as_str().to_owned(),
                guid_from_disk(&p.partition_type_guid),
                format_guid(&guid_from_disk(&p.unique_partition_guid)),
                p.starting_lba,
                p.ending_lba,
                p.attribute_bits,
            )
        })
        .collect();
    assert_eq!(
        used,
        [
            (1, "EFI".into(), EFI_SYSTEM_PARTITION, "bca5174b-0118-8a6a-af0b-2c6e1585acae".into(), 2048, 4_304_895, 0),
            (
                2,
                "META".into(),
                LINUX_FILESYSTEM_DATA,
                "cf04f137-101e-8ec6-9627-fa3f51cdabb8".into(),
                4_304_896,
                4_306_943,
                0
            ),
        ]
    );
    use std::io::{Seek as _, SeekFrom};
    f.seek(SeekFrom::Start(4_599_807 * 512)).unwrap();
    let backup = gptman::GPTHeader::read_from(&mut f).unwrap();
    assert_eq!((backup.primary_lba, backup.backup_lba, backup.partition_entry_lba), (4_599_807, 1, 4_599_775));
    let primary: Vec<_> = gpt.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(backup.read_partitions(&mut f, 512).unwrap(), primary);

    // Protective MBR: one 0xEE entry from LBA 1 over the whole disk.
    let mut mbr = [0u8; 512];
    f.read_exact_at(&mut mbr, 0).unwrap();
    assert_eq!(&mbr[446..462], &[0, 0, 2, 0, 0xee, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0xff, 0x2f, 0x46, 0]);
    assert_eq!(&mbr[510..], &[0x55, 0xaa]);

    // sgdisk: verification clean, and the table as printed.
    let verify = run(SGDISK, &["-v", image.to_str().unwrap()]);
    assert!(verify.contains("No problems found."), "{verify}");
    assert!(!verify.to_lowercase().contains("problem:"), "{verify}");
    let print = run(SGDISK, &["-p", image.to_str().unwrap()]);
    assert!(print.contains("Disk identifier (GUID): D92D45B3-CDE9-8760-BE9F-A2A71FAC8D11"), "{print}");
    assert!(print.contains("First usable sector is 2048, last usable sector is 4599774"), "{print}");
    assert_eq!(
        sgdisk_rows(&print),
        [("1", "2048", "4304895", "EF00", "EFI"), ("2", "4304896", "4306943", "8300", "META")].map(owned)
    );
    let info = run(SGDISK, &["-i", "2", image.to_str().unwrap()]);
    assert!(info.contains("Partition unique GUID: CF04F137-101E-8EC6-9627-FA3F51CDABB8"), "{info}");

    assert_eq!(report.partitions.len(), 2);
    assert_eq!(report.disk_guid, guid_from_label("talos-image-disk"));
}

#[test]
fn esp_passes_fsck_and_mtools_reads_every_file_back() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture(&dir.path().join("uki.efi"), SectorSize::B512);
    let image = dir.path().join("metal-amd64.raw");
    let report = write_metal_image(&image, &spec).unwrap();
    let (offset, len) = partition_range(&report, "EFI");
    assert_eq!((offset, len), (MIB, 2101 * MIB));

    let esp = dir.path().join("esp.img");
    extract(&image, offset, len, &esp);
    let fsck = tools().run(FSCK_VFAT, ["-n", "-v", esp.to_str().unwrap()], None, None).unwrap();
    let text = String::from_utf8_lossy(&fsck.stdout);
    assert!(text.contains("       512 bytes per logical sector"), "{text}");
    assert!(text.contains("      4096 bytes per cluster"), "{text}");
    assert!(text.contains("        32 reserved sectors"), "{text}");
    assert!(text.contains("         2 FATs, 32 bit entries"), "{text}");
    assert!(!text.contains("Leaving filesystem unchanged"), "fsck wanted changes: {text}");
    // fsck counts files, directories and the volume label entry.
    let counted = report.esp.files + report.esp.directories + 1;
    let summary = format!("esp.img: {counted} files, {}/536802 clusters", report.esp.used_clusters);
    assert!(text.contains(&summary), "{text}");

    let at = format!("{}@@{offset}", image.display());
    let listing = run(MDIR, &["-i", &at, "-/", "-b", "::"]);
    let mut listed: Vec<&str> = listing.lines().filter(|l| !l.ends_with('/')).collect();
    listed.sort_unstable();
    let mut want: Vec<String> = spec.esp_files.iter().map(|f| format!("::/{}", f.path)).collect();
    want.sort_unstable();
    assert_eq!(listed, want);
    // Every entry carries the epoch (FAT stores local time; talforge writes UTC).
    let long = run(MDIR, &["-i", &at, "-/", "-a", "::"]);
    let entries: Vec<&str> = long
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with([' ']))
        .filter(|l| !l.starts_with("Directory for ") && !l.starts_with("Total files listed:"))
        .collect();
    // 7 files, 6 directories, and `.` and `..` in each of those directories.
    assert_eq!(entries.len(), 25, "{long}");
    for line in entries {
        assert!(line.contains("2023-11-14  22:13"), "{line}");
    }
    assert!(long.contains("Volume Serial Number is 6553-F100"), "{long}");
    assert!(long.contains(" Volume in drive : is EFI"), "{long}");

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for (i, file) in spec.esp_files.iter().enumerate() {
        let dest = out.join(i.to_string());
        let src = format!("::/{}", file.path);
        run(MCOPY, &["-n", "-i", &at, &src, dest.to_str().unwrap()]);
        assert_eq!(std::fs::read(&dest).unwrap(), file_bytes(file), "{}", file.path);
    }

    // META holds the entries, sorted by tag, in both copies; the syslinux area at the end stays zero.
    let (offset, len) = partition_range(&report, "META");
    assert_eq!(len, META_PARTITION_SIZE);
    let mut meta = vec![0u8; len as usize];
    File::open(&image).unwrap().read_exact_at(&mut meta, offset).unwrap();
    let mut want = spec.meta_entries.clone();
    want.sort();
    assert_eq!(parse_meta_partition(&meta).unwrap(), want);
    assert_eq!(parse_adv(&meta[256 * 1024..512 * 1024]).unwrap(), want);
    assert!(is_zero(&meta[512 * 1024..]));
}

#[test]
fn four_k_sectors_pass_sgdisk_fsck_and_mtools() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture(&dir.path().join("uki.efi"), SectorSize::B4096);
    let image = dir.path().join("metal-4k-amd64.raw");
    let report = write_metal_image(&image, &spec).unwrap();
    assert_eq!(report.sector_size, 4096);

    let gpt = gptman::GPT::read_from(&mut File::open(&image).unwrap(), 4096).unwrap();
    assert_eq!(
        (gpt.header.first_usable_lba, gpt.header.last_usable_lba, gpt.header.backup_lba),
        (256, 574_970, 574_975)
    );
    let lbas: Vec<_> = gpt.iter().filter(|(_, p)| p.is_used()).map(|(_, p)| (p.starting_lba, p.ending_lba)).collect();
    assert_eq!(lbas, [(256, 538_111), (538_112, 538_367)]);

    // sgdisk 1.0.9 reads image files as 512-byte-sector disks; a read-only loop device with 4096-byte sectors
    // shows it the image as a 4Kn disk. That needs root and loop devices: CI has both and must run this part.
    match LoopDevice::attach(&image, 4096) {
        Some(dev) => {
            let verify = run(SGDISK, &["-v", &dev.0]);
            assert!(verify.contains("No problems found."), "{verify}");
            let print = run(SGDISK, &["-p", &dev.0]);
            assert!(print.contains("Sector size (logical/physical): 4096/4096 bytes"), "{print}");
            assert!(print.contains("Disk identifier (GUID): D92D45B3-CDE9-8760-BE9F-A2A71FAC8D11"), "{print}");
            assert!(print.contains("First usable sector is 256, last usable sector is 574970"), "{print}");
            assert_eq!(
                sgdisk_rows(&print),
                [("1", "256", "538111", "EF00", "EFI"), ("2", "538112", "538367", "8300", "META")].map(owned)
            );
        }
        None if std::env::var_os("CI").is_some() => panic!("CI must check 4096-byte-sector images with sgdisk"),
        None => eprintln!("note: no loop device (not root?): sgdisk check of the 4096-byte-sector image skipped"),
    }

    let (offset, len) = partition_range(&report, "EFI");
    let esp = dir.path().join("esp.img");
    extract(&image, offset, len, &esp);
    let fsck = run(FSCK_VFAT, &["-n", "-v", esp.to_str().unwrap()]);
    assert!(fsck.contains("      4096 bytes per logical sector"), "{fsck}");
    assert!(fsck.contains("     32768 bytes per cluster"), "{fsck}");
    assert!(!fsck.contains("Leaving filesystem unchanged"), "{fsck}");
    let at = format!("{}@@{offset}", image.display());
    let dest = dir.path().join("uki.back");
    run(MCOPY, &["-n", "-i", &at, "::/EFI/Linux/Talos-v1.14.0.efi", dest.to_str().unwrap()]);
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(dir.path().join("uki.efi")).unwrap());
}

/// A read-only loop device over an image file, detached on drop.
struct LoopDevice(String);

impl LoopDevice {
    fn attach(image: &Path, sector_size: u32) -> Option<Self> {
        let args = ["--find", "--show", "--read-only", "--sector-size", &sector_size.to_string()];
        let out = tools().run(LOSETUP, args.iter().copied().chain([image.to_str()?]), None, None).ok()?;
        let dev = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        dev.starts_with("/dev/loop").then_some(LoopDevice(dev))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = tools().run(LOSETUP, ["--detach", self.0.as_str()], None, None);
    }
}

/// Builds the fixture image in the current directory when run by `builds_are_reproducible` (with its own TZ,
/// umask and directory); does nothing otherwise.
#[test]
#[ignore = "helper run in a child process by builds_are_reproducible"]
fn repro_child() {
    let Some(out) = std::env::var_os(REPRO_OUT_ENV) else { return };
    // A relative source path: resolved against this process's directory.
    let spec = fixture(Path::new("uki.efi"), SectorSize::B512);
    write_metal_image(Path::new(&out), &spec).unwrap();
}

fn build_in_child(cwd: &Path, out: &Path, tz: &str, umask: &str) {
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("sh")
        .args([
            "-c",
            "umask \"$2\" && cd \"$1\" && exec \"$0\" --exact assemble::disk::tests::repro_child --ignored --quiet",
        ])
        .arg(&exe)
        .arg(cwd)
        .arg(umask)
        .env("TZ", tz)
        .env(REPRO_OUT_ENV, out)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "child build in {} failed", cwd.display());
    assert!(out.exists(), "{}", out.display());
}

#[test]
fn builds_are_reproducible() {
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a/deep/er"), root.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (out_a, out_b) = (a.join("metal.raw"), b.join("image-with-another-name.raw"));
    build_in_child(&a, &out_a, "Pacific/Kiritimati", "077");
    build_in_child(&b, &out_b, "America/Los_Angeles", "002");
    let hash = sha256_file(&out_a);
    assert_eq!(hash, sha256_file(&out_b));
    assert_eq!(std::fs::metadata(&out_a).unwrap().mode() & 0o777, 0o644);
    assert_eq!(std::fs::metadata(&out_b).unwrap().mode() & 0o777, 0o644);

    // In this process too, and a one-byte change in one ESP file changes the image. (Hashing 2.2 GiB takes
    // seconds, so these compare bytes with the first image instead, stopping at the first difference.)
    let dir = root.path().join("c");
    std::fs::create_dir(&dir).unwrap();
    let mut spec = fixture(&dir.join("uki.efi"), SectorSize::B512);
    let out = dir.join("same.raw");
    write_metal_image(&out, &spec).unwrap();
    assert_eq!(first_difference(&out, &out_a), None);
    if let EspSource::Bytes(b) = &mut spec.esp_files[2].source {
        b.push(b'\n');
    }
    let changed = dir.join("changed.raw");
    write_metal_image(&changed, &spec).unwrap();
    assert!(first_difference(&changed, &out_a).is_some());
    spec.esp_files[2] = fixture(&dir.join("uki.efi"), SectorSize::B512).esp_files[2].clone();
    spec.epoch += 2;
    write_metal_image(&changed, &spec).unwrap();
    assert!(first_difference(&changed, &out_a).is_some(), "the epoch is part of the image");
}

#[test]
fn images_are_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture(&dir.path().join("uki.efi"), SectorSize::B512);
    let image = dir.path().join("metal.raw");
    let report = write_metal_image(&image, &spec).unwrap();
    let meta = std::fs::metadata(&image).unwrap();
    assert_eq!(report.allocated_bytes, meta.blocks() * 512);
    let content: u64 = spec.esp_files.iter().map(|f| file_bytes(f).len() as u64).sum();
    // File contents (~3.2 MiB) plus a few blocks of GPT, FAT, directories and META; filesystems may allocate in
    // larger extents, hence the slack, but nowhere near the 2246 MiB of the image.
    assert!(report.allocated_bytes >= content, "{} < {content}", report.allocated_bytes);
    assert!(report.allocated_bytes < content + 4 * MIB, "{} allocated", report.allocated_bytes);
    assert_eq!(meta.len(), 2246 * MIB);
}

#[test]
fn empty_meta_stays_zero_and_an_empty_esp_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let spec = MetalImageSpec::sd_boot((1, 12), SectorSize::B512, EPOCH);
    let image = dir.path().join("bare.raw");
    let report = write_metal_image(&image, &spec).unwrap();
    let (offset, len) = partition_range(&report, "META");
    let mut meta = vec![0u8; len as usize];
    File::open(&image).unwrap().read_exact_at(&mut meta, offset).unwrap();
    assert!(is_zero(&meta));
    let (offset, len) = partition_range(&report, "EFI");
    let esp = dir.path().join("esp.img");
    extract(&image, offset, len, &esp);
    let fsck = run(FSCK_VFAT, &["-n", esp.to_str().unwrap()]);
    // fsck counts the volume label entry as a file.
    assert!(fsck.contains("esp.img: 1 files, 1/536802 clusters"), "{fsck}");
}

#[test]
fn crowded_directories_and_long_names_pass_fsck() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = MetalImageSpec::sd_boot((1, 14), SectorSize::B512, EPOCH);
    spec.disk_size = 80 * MIB;
    spec.esp_size = 64 * MIB; // 512-byte clusters: the directory below spans ~150 of them
    spec.esp_files = (0..1500).map(|i| EspFile::bytes(format!("EFI/Linux/Talos-v1.14.{i}.efi"), noise(i, 9))).collect();
    let long = format!("{}.conf", "long-name-".repeat(24));
    spec.esp_files.push(EspFile::bytes(format!("loader/{long}"), b"long\n".to_vec()));
    spec.esp_files.push(EspFile::bytes("loader/ünïcode-名前.txt", b"unicode\n".to_vec()));
    let image = dir.path().join("crowded.raw");
    let report = write_metal_image(&image, &spec).unwrap();
    let (offset, len) = partition_range(&report, "EFI");
    let esp = dir.path().join("esp.img");
    extract(&image, offset, len, &esp);
    let fsck = run(FSCK_VFAT, &["-n", esp.to_str().unwrap()]);
    let summary = format!("esp.img: {} files, {}/129022 clusters", 1502 + 3 + 1, report.esp.used_clusters);
    assert!(fsck.contains(&summary), "{fsck}");
    assert!(!fsck.contains("Leaving filesystem unchanged"), "{fsck}");

    let at = format!("{}@@{offset}", image.display());
    let listing = run(MDIR, &["-i", &at, "-/", "-b", "::/EFI/Linux"]);
    assert_eq!(listing.lines().filter(|l| l.ends_with(".efi")).count(), 1500, "{listing}");
    for i in [0, 9, 10, 999, 1499] {
        let dest = dir.path().join(format!("back-{i}"));
        run(MCOPY, &["-n", "-i", &at, &format!("::/EFI/Linux/Talos-v1.14.{i}.efi"), dest.to_str().unwrap()]);
        assert_eq!(std::fs::read(&dest).unwrap(), noise(i, 9), "file {i}");
    }
    let dest = dir.path().join("back-long");
    run(MCOPY, &["-n", "-i", &at, &format!("::/loader/{long}"), dest.to_str().unwrap()]);
    assert_eq!(std::fs::read(&dest).unwrap(), b"long\n");
}

#[test]
fn errors_are_exact_and_leave_no_file_behind() {
    let dir = tempfile::tempdir().unwrap();
    let listing = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    };
    let uki = dir.path().join("uki.efi");
    let out = dir.path().join("metal.raw");

    let mut spec = fixture(&uki, SectorSize::B512);
    spec.disk_size = 1000 * MIB;
    let e = write_metal_image(&out, &spec).unwrap_err();
    assert_eq!(e.to_string(), "disk size 1000 MiB is too small: the partitions need at least 2104 MiB");

    let mut spec = fixture(&uki, SectorSize::B512);
    spec.esp_size = 64 * MIB;
    spec.disk_size = 100 * MIB;
    spec.esp_files.push(EspFile::bytes("EFI/Linux/huge.efi", vec![1; 70 * MIB as usize]));
    let e = write_metal_image(&out, &spec).unwrap_err();
    assert_eq!(
        e.to_string(),
        "esp contents do not fit: they need 149722 clusters of 512 bytes (74861 KiB), the 64 MiB EFI partition \
         has 129022 clusters (64511 KiB)"
    );
    assert_eq!(listing(dir.path()), std::slice::from_ref(&uki));

    // A failure half-way through writing (the UKI source is a directory) keeps an earlier image intact and
    // leaves no temporary file.
    std::fs::write(&out, b"previous image").unwrap();
    let mut spec = fixture(&uki, SectorSize::B512);
    let not_a_file = dir.path().join("not-a-file");
    std::fs::create_dir(&not_a_file).unwrap();
    spec.esp_files.push(EspFile::file("EFI/Linux/broken.efi", &not_a_file));
    let e = write_metal_image(&out, &spec).unwrap_err();
    assert_eq!(e.to_string(), format!("cannot read {}", not_a_file.display()));
    assert_eq!(std::fs::read(&out).unwrap(), b"previous image");
    assert_eq!(listing(dir.path()), [out.clone(), not_a_file.clone(), uki.clone()]);

    // The same with no earlier image: nothing under the final name.
    std::fs::remove_file(&out).unwrap();
    assert!(write_metal_image(&out, &spec).is_err());
    assert_eq!(listing(dir.path()), [not_a_file, uki]);
}
