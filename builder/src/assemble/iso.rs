//! The UEFI ISO (`<platform>-<arch>.iso`): systemd-boot and the UKI on a FAT32 `efiboot.img` that firmware boots
//! through an El Torito UEFI (platform 0xEF) no-emulation entry, laid out after Talos's sd-boot ISO
//! (`pkg/imager/iso/uefi.go` `CreateUEFI`, `iso.go` `Generate`, talos v1.14.0-rc.1) without xorriso, mtools or
//! mkfs.vfat.
//!
//! What Talos does and what this module does:
//! - `efiboot.img`: FAT32 labelled `EFI`, 10 MiB plus systemd-boot and the UKI each rounded up to a MiB (grown to
//!   the FAT32 minimum of about 33 MiB when that is smaller, where mkfs.vfat would make an undersized FAT32),
//!   holding `EFI/BOOT/BOOTX64.EFI` (`BOOTAA64.EFI` on arm64), `EFI/Linux/Talos-<version>.efi`,
//!   `loader/loader.conf` (`timeout 10`, `secure-boot-enroll off|<mode>`), from Talos 1.14 a read-only 32-byte
//!   zero `loader/random-seed` (talos#14029), and with Secure Boot `EFI/keys/uki-signing-cert.der` and
//!   `loader/keys/auto/{PK,KEK,db}.auth`. Written by the crate's own FAT writer ([`super::disk::fat`]).
//! - The ISO 9660 tree holds the same files (Talos hands xorriso the staging directory) with Rock Ridge names, plus
//!   `/boot.catalog` (xorriso shows it too) and `/efiboot.img` itself: `hadris-iso` 2.5 boots only images that
//!   are files of the tree, so where xorriso appends the FAT image after the ISO as MBR partition 2 (type 0xef,
//!   `-append_partition 2 0xef … --interval:appended_partition_2`), the image here is a file of the ISO (hadris
//!   places root files' data first, so it follows the directories, before the other files) and MBR partition 2
//!   (type 0xef) covers exactly its extent, with partition 1 (type 0x83, `-iso_mbr_part_type`) from 512-byte
//!   sector 64 (`-partition_offset 16`) up to it; the data after the FAT image is in no partition. xorriso's
//!   second superblock for mounting partition 1 on its own (`-partition_offset 16`), its cylinder alignment and
//!   its 300 KiB tail padding are not reproduced. hadris could instead write a GPT (`PartitionScheme::Gpt`) or a
//!   hybrid MBR+GPT with an ESP over the same file; Talos's ISO has a plain MBR, so that is what is written.
//! - El Torito: one catalog entry, the default one, no emulation, platform 0xEF in the validation entry, load
//!   size = the image's 512-byte sectors or 0 when that does not fit 16 bits (what xorriso writes; firmware then
//!   takes the rest of the medium). hadris writes an x86 validation entry and a truncated load size, so both are
//!   patched after it.
//! - Volume ID `TALOS_V1_14_0` (`Talos-<version>` upper-cased, `-`/`.`→`_`, other characters dropped, at most 32;
//!   from Talos 1.8), volume set ID `Talos-<version>`; every date (volume creation/modification, directory
//!   records, Rock Ridge `TF`) is the epoch in UTC, expiration/effective dates unset, as
//!   `-volume_date all_file_dates =<epoch>` and `-volume_date uuid <epoch as YYYYmmddHHMMSS00>` give. hadris 2.5
//!   stamps the clock's time into these, so a pass over the written image rewrites them (the format's own
//!   structures, not hadris internals: volume descriptors, directory records, SUSP areas and their continuation
//!   areas).
//!
//! Large files (the UKI, the FAT image) are streamed from disk (`hadris-iso`'s `unstable-streaming`
//! `FileSource`); the ISO is written into a temp file beside the output and renamed into place.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hadris_iso::boot::EmulationType;
use hadris_iso::boot::options::{BootEntryOptions, BootOptions};
use hadris_iso::read::PathSeparator;
use hadris_iso::rrip::RripOptions;
use hadris_iso::write::options::{BaseIsoLevel, CreationFeatures, IsoFormatOptions};
use hadris_iso::write::{FileSource, InputEntry, InputEntryKind, InputMetadata, InputTree, IsoImageWriter};

use super::atomic::{ScratchFile, TempOutput};
use super::disk::DiskError;
use super::disk::fat::{EFI_LABEL, EspFile, EspSource, FatGeometry, FatPlan, FatSummary, civil_from_days};
use super::disk::region::Region;

const MIB: u64 = 1024 * 1024;
const BLOCK: u64 = 2048;
/// Name of the FAT image in the ISO tree (and Talos's name for it).
pub const EFIBOOT_NAME: &str = "efiboot.img";
/// Talos's slack on top of systemd-boot and the UKI (`isoSize := 10 * mib`).
const EFIBOOT_SLACK: u64 = 10 * MIB;
/// Epoch bounds ISO 9660 directory dates can hold (years 1970–2155) intersected with FAT's (1980–2107).
const EPOCH_MIN: u64 = 315_532_800;
const EPOCH_MAX: u64 = 4_354_819_199;
/// MBR geometry xorriso uses with `-partition_cyl_align` (64 heads, 32 sectors per track).
const MBR_HEADS: u64 = 64;
const MBR_SECTORS: u64 = 32;

/// What `loader.conf` says about enrolling Secure Boot keys (`secure-boot-enroll`): the cluster file's type.
pub use crate::spec::cluster::EnrollKeys;

/// The Secure Boot extras of a Secure Boot ISO: the UKI signing certificate (DER) and the auto-enrollment
/// databases (signed ESLs), and the enrollment mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoSecureBoot {
    pub enroll: EnrollKeys,
    pub signing_cert_der: PathBuf,
    /// `PK.auth`.
    pub platform_key: PathBuf,
    /// `KEK.auth`.
    pub key_exchange_key: PathBuf,
    /// `db.auth`.
    pub signature_db: PathBuf,
}

/// Everything the ISO is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoSpec {
    /// Talos version, `v1.14.0`: names the UKI (`EFI/Linux/Talos-<version>.efi`) and the volume.
    pub version: String,
    /// `amd64` or `arm64`.
    pub arch: String,
    /// systemd-boot (`systemd-boot.efi` of the release).
    pub sd_boot: PathBuf,
    /// The UKI.
    pub uki: PathBuf,
    /// Secure Boot extras; `None` writes `secure-boot-enroll off` as Talos does for plain ISOs.
    pub secure_boot: Option<IsoSecureBoot>,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: u64,
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoReport {
    /// Bytes of the ISO.
    pub size: u64,
    pub volume_id: String,
    pub volume_set_id: String,
    /// Bytes of `efiboot.img`.
    pub efiboot_size: u64,
    /// 2048-byte block where `efiboot.img` starts (the El Torito load address).
    pub efiboot_block: u32,
    /// The FAT filesystem inside `efiboot.img`.
    pub fat: FatSummary,
    /// Paths of the files on the FAT image (and in the ISO tree), in the order given to the FAT writer.
    pub esp_files: Vec<String>,
}

/// What can go wrong building the ISO.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IsoError {
    #[error("architecture {found:?} is not supported: expected amd64 or arm64")]
    UnsupportedArch { found: String },

    #[error("version {found:?} is not usable in file names: expected letters, digits, '.', '-', '_' or '+'")]
    InvalidVersion { found: String },

    #[error("epoch {epoch} is outside the range the ISO can date: expected 315532800 (1980) to 4354819199 (2107)")]
    EpochOutOfRange { epoch: u64 },

    #[error("efiboot.img: {0}")]
    Fat(#[from] DiskError),

    /// hadris-iso failed without an I/O error on the image (those are [`IsoError::Io`]).
    #[error("hadris-iso could not write ISO image {}", .path.display())]
    Image {
        path: PathBuf,
        #[source]
        source: hadris_iso::write::IsoCreationError,
    },

    #[error("the written image is not laid out as expected: {0}")]
    Layout(String),

    #[error("cannot {action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IsoError {
    let path = path.to_owned();
    move |source| IsoError::Io { action, path, source }
}

/// `Talos-<version>`: the volume set ID and, through [`volume_id`], the volume ID (Talos `iso.Label`; the
/// `Talos-SB-` form exists there but `Generate` never asks for it).
pub fn label(version: &str) -> String {
    format!("Talos-{version}")
}

/// Talos `iso.VolumeID`: upper-cased, `-`, `.` and `_` → `_`, anything else outside `[A-Z0-9]` dropped, at most
/// 32 characters.
pub fn volume_id(label: &str) -> String {
    label
        .to_uppercase()
        .chars()
        .filter_map(|c| match c {
            'A'..='Z' | '0'..='9' => Some(c),
            '_' | '-' | '.' => Some('_'),
            _ => None,
        })
        .take(32)
        .collect()
}

/// `(major, minor)` of a Talos version (`v1.14.0-rc.1` → `(1, 14)`); `None` when unparsable, which Talos's
/// quirks treat as the latest version.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let v = version.strip_prefix('v').unwrap_or(version);
    let mut parts = v.split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn at_least(version: &str, want: (u64, u64)) -> bool {
    major_minor(version).is_none_or(|v| v >= want)
}

/// The `loader.conf` Talos renders from `loader.conf.tmpl`.
pub fn loader_conf(enroll: EnrollKeys) -> String {
    format!("# systemd-boot configuration\n\ntimeout 10\n\nsecure-boot-enroll {}\n", enroll.as_str())
}

/// The files of the FAT image (and of the ISO tree), in Talos's order.
pub fn esp_files(spec: &IsoSpec) -> Result<Vec<EspFile>, IsoError> {
    let boot = match spec.arch.as_str() {
        "amd64" => "EFI/BOOT/BOOTX64.EFI",
        "arm64" => "EFI/BOOT/BOOTAA64.EFI",
        other => return Err(IsoError::UnsupportedArch { found: other.to_owned() }),
    };
    let version_ok = !spec.version.is_empty()
        && spec.version.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    if !version_ok {
        return Err(IsoError::InvalidVersion { found: spec.version.clone() });
    }
    let enroll = spec.secure_boot.as_ref().map_or(EnrollKeys::Off, |sb| sb.enroll);
    let mut files = vec![
        EspFile::file(boot, &spec.sd_boot),
        EspFile::file(format!("EFI/Linux/Talos-{}.efi", spec.version), &spec.uki),
        EspFile::bytes("loader/loader.conf", loader_conf(enroll)),
    ];
    if at_least(&spec.version, (1, 14)) {
        files.push(EspFile::bytes("loader/random-seed", vec![0u8; 32]).read_only());
    }
    if let Some(sb) = &spec.secure_boot {
        files.push(EspFile::file("EFI/keys/uki-signing-cert.der", &sb.signing_cert_der));
        files.push(EspFile::file("loader/keys/auto/PK.auth", &sb.platform_key));
        files.push(EspFile::file("loader/keys/auto/KEK.auth", &sb.key_exchange_key));
        files.push(EspFile::file("loader/keys/auto/db.auth", &sb.signature_db));
    }
    Ok(files)
}

/// Talos's `efiboot.img` size for systemd-boot and UKI sizes: 10 MiB + each rounded up to a MiB; if FAT32 cannot
/// be made that small (mkfs.fat would make a FAT32 with too few clusters), the smallest whole-MiB size it can.
pub fn efiboot_size(sd_boot_size: u64, uki_size: u64) -> u64 {
    let talos = EFIBOOT_SLACK + sd_boot_size.next_multiple_of(MIB) + uki_size.next_multiple_of(MIB);
    let mut size = talos;
    while FatGeometry::mkfs_like(size, 512).is_err() && size < 64 * MIB {
        size += MIB;
    }
    size
}

/// Builds the ISO at `out`.
pub fn build_iso(out: &Path, spec: &IsoSpec) -> Result<IsoReport, IsoError> {
    if !(EPOCH_MIN..=EPOCH_MAX).contains(&spec.epoch) {
        return Err(IsoError::EpochOutOfRange { epoch: spec.epoch });
    }
    let files = esp_files(spec)?;
    let size_of = |p: &Path| std::fs::metadata(p).map(|m| m.len()).map_err(io_err("read", p));
    let efiboot_size = efiboot_size(size_of(&spec.sd_boot)?, size_of(&spec.uki)?);

    // The FAT image, in a scratch file beside the output.
    let efiboot = ScratchFile::create(out, EFIBOOT_NAME).map_err(io_err("create a scratch file beside", out))?;
    efiboot.file().set_len(efiboot_size).map_err(io_err("size", efiboot.path()))?;
    let plan = FatPlan::new(efiboot_size, 512, EFI_LABEL, &files, spec.epoch)?;
    let fat = plan.write(&Region::new(efiboot.file(), efiboot.path(), 0, efiboot_size), &files)?;

    // The ISO tree: the ESP's files again, and the FAT image.
    let tree = iso_tree(&files, efiboot.path(), spec.epoch)?;
    let label = label(&spec.version);
    let volume_id = if at_least(&spec.version, (1, 8)) { volume_id(&label) } else { "CDROM".to_owned() };
    let options = IsoFormatOptions {
        volume_name: volume_id.clone(),
        system_id: None,
        volume_set_id: at_least(&spec.version, (1, 8)).then(|| label.clone()),
        publisher_id: None,
        preparer_id: None,
        application_id: None,
        sector_size: BLOCK as usize,
        path_separator: PathSeparator::ForwardSlash,
        features: CreationFeatures {
            // `-iso-level 3`; hadris 2.5 writes level-3 trees with level-2 names.
            filenames: BaseIsoLevel::Level3 { supports_lowercase: false, supports_rrip: true },
            long_filenames: false,
            joliet: None,
            rock_ridge: Some(RripOptions::default()),
            el_torito: Some(BootOptions {
                write_boot_catalog: true,
                default: BootEntryOptions {
                    // Replaced in the catalog afterwards (hadris truncates sizes over 16 bits).
                    load_size: None,
                    boot_image_path: EFIBOOT_NAME.to_owned(),
                    boot_info_table: false,
                    grub2_boot_info: false,
                    emulation: EmulationType::NoEmulation,
                },
                entries: vec![],
            }),
            hybrid_boot: None,
        },
        strict_charset: false,
    };

    let tmp = TempOutput::create(out).map_err(io_err("create", out))?;
    write_image(tmp.file(), out, tree, options)?;
    let efiboot_block = normalize(tmp.file(), tmp.path(), spec.epoch, efiboot_size)?;
    let size = tmp.file().metadata().map_err(io_err("read", tmp.path()))?.len();
    tmp.commit().map_err(io_err("write", out))?;
    Ok(IsoReport {
        size,
        volume_id,
        volume_set_id: label,
        efiboot_size,
        efiboot_block,
        fat,
        esp_files: files.iter().map(|f| f.path.clone()).collect(),
    })
}

/// Has hadris-iso write the image into `file`; `path` names it in errors (the output, not its temp file).
fn write_image<W: Read + Write + Seek>(
    file: W,
    path: &Path,
    tree: InputTree,
    options: IsoFormatOptions,
) -> Result<(), IsoError> {
    let mut output = KeepIoError { inner: file, last: None };
    match IsoImageWriter::create(&mut output, tree, options) {
        Ok(_) => Ok(()),
        Err(source) => Err(match output.last.take() {
            Some(e) => io_err("write ISO image", path)(e),
            None => IsoError::Image { path: path.to_owned(), source },
        }),
    }
}

/// The image file as hadris-iso sees it, keeping the last I/O error: hadris-iso 2.5 reduces its output's errors
/// to a kind (ENOSPC becomes `Other`), so the OS's error is reported from here.
struct KeepIoError<W> {
    inner: W,
    last: Option<std::io::Error>,
}

impl<W> KeepIoError<W> {
    /// Keeps `e` and hands hadris an error of the same kind (`Interrupted` is retried there, so not kept).
    fn keep<T>(&mut self, r: std::io::Result<T>) -> std::io::Result<T> {
        r.map_err(|e| {
            let kind = e.kind();
            if kind != std::io::ErrorKind::Interrupted {
                self.last = Some(e);
            }
            kind.into()
        })
    }
}

impl<W: Read> Read for KeepIoError<W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let r = self.inner.read(buf);
        self.keep(r)
    }
}

impl<W: Write> Write for KeepIoError<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.keep(r)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.keep(r)
    }
}

impl<W: Seek> Seek for KeepIoError<W> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        let r = self.inner.seek(pos);
        self.keep(r)
    }
}

/// A directory of the ISO tree under construction.
#[derive(Default)]
struct Dir {
    dirs: BTreeMap<String, Dir>,
    files: BTreeMap<String, (InputEntryKind, u32)>,
}

fn iso_tree(files: &[EspFile], efiboot: &Path, epoch: u64) -> Result<InputTree, IsoError> {
    let mut root = Dir::default();
    for f in files {
        let kind = match &f.source {
            EspSource::Bytes(b) => InputEntryKind::File(b.clone()),
            EspSource::File(p) => InputEntryKind::Source(FileSource::from_path(p).map_err(io_err("read", p))?),
        };
        let mode = if f.read_only { 0o444 } else { 0o644 };
        let mut parts: Vec<&str> = f.path.split('/').collect();
        let name = parts.pop().unwrap_or_default();
        let mut dir = &mut root;
        for p in parts {
            dir = dir.dirs.entry(p.to_owned()).or_default();
        }
        dir.files.insert(name.to_owned(), (kind, mode));
    }
    let efiboot_source = FileSource::from_path(efiboot).map_err(io_err("read", efiboot))?;
    let mut entries = entries_of(root, epoch);
    entries.push(entry(EFIBOOT_NAME.to_owned(), InputEntryKind::Source(efiboot_source), 0o644, epoch));
    Ok(InputTree { path_separator: PathSeparator::ForwardSlash, entries })
}

fn entries_of(dir: Dir, epoch: u64) -> Vec<InputEntry> {
    let mut out = Vec::new();
    for (name, (kind, mode)) in dir.files {
        out.push(entry(name, kind, mode, epoch));
    }
    for (name, sub) in dir.dirs {
        out.push(entry(name, InputEntryKind::Directory(entries_of(sub, epoch)), 0o755, epoch));
    }
    out
}

fn entry(name: String, kind: InputEntryKind, mode: u32, epoch: u64) -> InputEntry {
    let t = Some(epoch as i64);
    InputEntry {
        name: Arc::new(name),
        kind,
        metadata: InputMetadata { mode: Some(mode), uid: Some(0), gid: Some(0), created: t, modified: t, accessed: t },
    }
}

/// `(year, month, day, hour, minute, second)` of `epoch` in UTC.
fn utc(epoch: u64) -> (u64, u64, u64, u64, u64, u64) {
    let (y, m, d) = civil_from_days(epoch / 86_400);
    let s = epoch % 86_400;
    (y, m, d, s / 3600, s % 3600 / 60, s % 60)
}

/// ISO 9660 directory-record date (9.1.5): years since 1900, month, day, hour, minute, second, GMT offset 0.
fn dir_date(epoch: u64) -> [u8; 7] {
    let (y, mo, d, h, mi, s) = utc(epoch);
    [(y - 1900) as u8, mo as u8, d as u8, h as u8, mi as u8, s as u8, 0]
}

/// ISO 9660 volume-descriptor date (8.4.26.1): `YYYYMMDDHHMMSScc` in digits, GMT offset 0.
fn dec_date(epoch: u64) -> [u8; 17] {
    let (y, mo, d, h, mi, s) = utc(epoch);
    let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00");
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(text.as_bytes());
    out
}

/// "Not specified" volume-descriptor date: sixteen `0` digits and offset 0.
const DEC_UNSET: [u8; 17] = *b"0000000000000000\0";

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Rewrites every date in the image to the epoch, fixes the El Torito catalog (UEFI platform, load size) and
/// writes the MBR partition table. Returns the FAT image's 2048-byte block.
fn normalize(file: &File, path: &Path, epoch: u64, efiboot_size: u64) -> Result<u32, IsoError> {
    let read = |buf: &mut [u8], at: u64| file.read_exact_at(buf, at).map_err(io_err("read", path));
    let write = |buf: &[u8], at: u64| file.write_all_at(buf, at).map_err(io_err("write", path));
    let dir_stamp = dir_date(epoch);
    let dec_stamp = dec_date(epoch);

    let mut roots = Vec::new();
    let mut catalog = None;
    let mut sector = 16u64;
    loop {
        let mut vd = vec![0u8; BLOCK as usize];
        read(&mut vd, sector * BLOCK)?;
        if vd.get(1..6) != Some(b"CD001".as_slice()) {
            return Err(IsoError::Layout(format!("expected a volume descriptor (CD001) at block {sector}")));
        }
        match vd[0] {
            255 => break,
            0 => catalog = Some(le32(&vd, 71)),
            1 | 2 => {
                vd[813..830].copy_from_slice(&dec_stamp);
                vd[830..847].copy_from_slice(&dec_stamp);
                vd[847..864].copy_from_slice(&DEC_UNSET);
                vd[864..881].copy_from_slice(&DEC_UNSET);
                vd[156 + 18..156 + 25].copy_from_slice(&dir_stamp);
                roots.push((le32(&vd, 156 + 2), le32(&vd, 156 + 10)));
                write(&vd, sector * BLOCK)?;
            }
            _ => {}
        }
        sector += 1;
        if sector > 64 {
            return Err(IsoError::Layout("expected a volume descriptor set terminator before block 64".into()));
        }
    }

    // Directories: every record's date, every Rock Ridge TF timestamp (inline and in continuation areas).
    let mut seen = BTreeSet::new();
    let mut pending = roots;
    let mut continuations = Vec::new();
    while let Some((extent, size)) = pending.pop() {
        if !seen.insert(extent) {
            continue;
        }
        let mut buf = vec![0u8; size as usize];
        read(&mut buf, u64::from(extent) * BLOCK)?;
        let mut pos = 0usize;
        while pos < buf.len() {
            let len = usize::from(buf[pos]);
            if len == 0 {
                pos = (pos / BLOCK as usize + 1) * BLOCK as usize;
                continue;
            }
            if len < 34 || pos + len > buf.len() {
                return Err(IsoError::Layout(format!(
                    "directory at block {extent}: expected a record of 34 to {} bytes at offset {pos}, found {len}",
                    buf.len() - pos
                )));
            }
            let rec = &mut buf[pos..pos + len];
            rec[18..25].copy_from_slice(&dir_stamp);
            let name_len = usize::from(rec[32]);
            let is_dir = rec[25] & 0x02 != 0;
            let special = name_len == 1 && rec[33] <= 1;
            let su_start = 33 + name_len + usize::from(name_len % 2 == 0);
            if su_start < len {
                patch_susp(&mut rec[su_start..], &dir_stamp, &dec_stamp, &mut continuations);
            }
            if is_dir && !special {
                pending.push((le32(rec, 2), le32(rec, 10)));
            }
            pos += len;
        }
        write(&buf, u64::from(extent) * BLOCK)?;
    }
    let mut ce_seen = BTreeSet::new();
    while let Some((block, offset, len)) = continuations.pop() {
        if !ce_seen.insert((block, offset)) {
            continue;
        }
        let at = u64::from(block) * BLOCK + u64::from(offset);
        let mut area = vec![0u8; len as usize];
        read(&mut area, at)?;
        patch_susp(&mut area, &dir_stamp, &dec_stamp, &mut continuations);
        write(&area, at)?;
    }

    // El Torito: the validation entry names UEFI (0xEF), the default entry's load size follows xorriso.
    let catalog = catalog.ok_or_else(|| IsoError::Layout("expected an El Torito boot record".into()))?;
    let mut cat = [0u8; 64];
    read(&mut cat, u64::from(catalog) * BLOCK)?;
    if cat[0] != 1 || cat[30..32] != [0x55, 0xaa] || cat[32] != 0x88 || cat[33] != 0 {
        return Err(IsoError::Layout(format!(
            "expected a validation entry and a bootable no-emulation default entry at block {catalog}"
        )));
    }
    cat[1] = 0xef;
    cat[28..30].copy_from_slice(&[0, 0]);
    let sum = cat[..32].chunks(2).fold(0u16, |acc, w| acc.wrapping_add(u16::from_le_bytes([w[0], w[1]])));
    cat[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
    let sectors = efiboot_size.div_ceil(512);
    let load = u16::try_from(sectors).unwrap_or(0);
    cat[38..40].copy_from_slice(&load.to_le_bytes());
    write(&cat, u64::from(catalog) * BLOCK)?;
    let efiboot_block = le32(&cat, 40);

    // MBR: partition 1 (0x83) from sector 64 up to the FAT image, partition 2 (0xef) the FAT image.
    let total = file.metadata().map_err(io_err("read", path))?.len();
    let esp_start = u64::from(efiboot_block) * (BLOCK / 512);
    if esp_start <= 64 || (esp_start + sectors) * 512 > total {
        return Err(IsoError::Layout(format!(
            "expected efiboot.img between sector 64 and the end of the {total}-byte image, found it at sector \
             {esp_start}"
        )));
    }
    let mut mbr = [0u8; 512];
    mbr[446..462].copy_from_slice(&mbr_entry(0x83, 64, esp_start - 64));
    mbr[462..478].copy_from_slice(&mbr_entry(0xef, esp_start, sectors));
    mbr[510..512].copy_from_slice(&[0x55, 0xaa]);
    write(&mbr, 0)?;
    Ok(efiboot_block)
}

/// Patches the `TF` timestamps of a SUSP area and collects its `CE` continuation areas.
fn patch_susp(area: &mut [u8], short: &[u8; 7], long: &[u8; 17], continuations: &mut Vec<(u32, u32, u32)>) {
    let mut p = 0usize;
    while p + 4 <= area.len() {
        let len = usize::from(area[p + 2]);
        if len < 4 || p + len > area.len() {
            break;
        }
        match &area[p..p + 2] {
            b"TF" if len > 4 => {
                let flags = area[p + 4];
                let size = if flags & 0x80 != 0 { 17 } else { 7 };
                let mut q = p + 5;
                for bit in 0..7 {
                    if flags & (1 << bit) != 0 {
                        if q + size <= p + len {
                            let stamp: &[u8] = if size == 17 { long } else { short };
                            area[q..q + size].copy_from_slice(stamp);
                        }
                        q += size;
                    }
                }
            }
            b"CE" if len >= 28 => continuations.push((le32(area, p + 4), le32(area, p + 12), le32(area, p + 20))),
            b"ST" => break,
            _ => {}
        }
        p += len;
    }
}

/// An MBR partition entry with CHS in xorriso's 64-head, 32-sector geometry (clamped at cylinder 1023).
fn mbr_entry(kind: u8, start: u64, sectors: u64) -> [u8; 16] {
    let chs = |lba: u64| {
        let cyl = lba / (MBR_HEADS * MBR_SECTORS);
        let (c, h, s) =
            if cyl > 1023 { (1023, 63, 32) } else { (cyl, lba / MBR_SECTORS % MBR_HEADS, lba % MBR_SECTORS + 1) };
        [h as u8, (s as u8) | (((c >> 8) as u8) << 6), c as u8]
    };
    let mut e = [0u8; 16];
    e[1..4].copy_from_slice(&chs(start));
    e[4] = kind;
    e[5..8].copy_from_slice(&chs((start + sectors).saturating_sub(1)));
    e[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    e[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_ids() {
        assert_eq!(volume_id(&label("v1.14.0")), "TALOS_V1_14_0");
        assert_eq!(volume_id(&label("v1.14.0-rc.1")), "TALOS_V1_14_0_RC_1");
        assert_eq!(volume_id("Talos-v1.14.0-beta.1+some-very-long-suffix"), "TALOS_V1_14_0_BETA_1SOME_VERY_LO");
        assert_eq!(major_minor("v1.14.0-rc.1"), Some((1, 14)));
        assert_eq!(major_minor("latest"), None);
        assert!(at_least("latest", (1, 14)) && !at_least("v1.13.9", (1, 14)));
    }

    #[test]
    fn loader_conf_is_talos_template() {
        assert_eq!(
            loader_conf(EnrollKeys::Off),
            "# systemd-boot configuration\n\ntimeout 10\n\nsecure-boot-enroll off\n"
        );
    }

    #[test]
    fn dates_and_mbr_geometry() {
        // 2023-11-14 22:13:20 UTC.
        assert_eq!(dir_date(1_700_000_000), [123, 11, 14, 22, 13, 20, 0]);
        assert_eq!(&dec_date(1_700_000_000), b"2023111422132000\0");
        // xorriso's entries for partitions at 64 (1984 sectors) and 2048 (81920 sectors).
        assert_eq!(mbr_entry(0x83, 64, 1984), [0, 2, 1, 0, 0x83, 63, 32, 0, 64, 0, 0, 0, 0xc0, 7, 0, 0]);
        assert_eq!(mbr_entry(0xef, 2048, 81920), [0, 0, 1, 1, 0xef, 63, 32, 40, 0, 8, 0, 0, 0, 0x40, 1, 0]);
    }

    #[test]
    fn bad_specs_are_refused() {
        let spec = IsoSpec {
            version: "v1.14.0".into(),
            arch: "amd64".into(),
            sd_boot: "/nonexistent/sd-boot".into(),
            uki: "/nonexistent/uki".into(),
            secure_boot: None,
            epoch: 1_700_000_000,
        };
        let out = Path::new("/nonexistent/x.iso");
        let err = |spec: IsoSpec| build_iso(out, &spec).unwrap_err().to_string();
        assert_eq!(
            err(IsoSpec { arch: "riscv64".into(), ..spec.clone() }),
            "architecture \"riscv64\" is not supported: expected amd64 or arm64"
        );
        assert_eq!(
            err(IsoSpec { version: "v1/2".into(), ..spec.clone() }),
            "version \"v1/2\" is not usable in file names: expected letters, digits, '.', '-', '_' or '+'"
        );
        assert!(err(IsoSpec { epoch: 0, ..spec.clone() }).starts_with("epoch 0 is outside the range"));
        assert_eq!(err(spec), "cannot read /nonexistent/sd-boot");
        let arm = esp_files(&IsoSpec {
            arch: "arm64".into(),
            version: "v1.12.3".into(),
            sd_boot: "a".into(),
            uki: "b".into(),
            secure_boot: None,
            epoch: 0,
        })
        .unwrap();
        let paths: Vec<&str> = arm.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["EFI/BOOT/BOOTAA64.EFI", "EFI/Linux/Talos-v1.12.3.efi", "loader/loader.conf"]);
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<IsoError>();
        check::<super::super::oci::OciError>();
        check::<super::super::pxe::PxeError>();
        check::<super::super::compress::CompressError>();
        check::<super::super::qcow2::Qcow2Error>();
    }

    #[test]
    fn full_disk_names_the_iso_and_the_os_error() {
        // /dev/full: writes fail with ENOSPC, reads return zeros.
        let full = File::options().read(true).write(true).open("/dev/full").unwrap();
        let out = Path::new("/srv/out/metal-amd64.iso");
        let tree = InputTree {
            path_separator: PathSeparator::ForwardSlash,
            entries: vec![entry("A".into(), InputEntryKind::File(vec![0xa5; 4096]), 0o644, 1_700_000_000)],
        };
        let options = IsoFormatOptions {
            volume_name: "FULL".into(),
            system_id: None,
            volume_set_id: None,
            publisher_id: None,
            preparer_id: None,
            application_id: None,
            sector_size: BLOCK as usize,
            path_separator: PathSeparator::ForwardSlash,
            features: CreationFeatures::default(),
            strict_charset: false,
        };
        let err = write_image(&full, out, tree, options).unwrap_err();
        // As the binary prints it (`{:#}`): the error and its sources.
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        assert_eq!(text, "cannot write ISO image /srv/out/metal-amd64.iso: No space left on device (os error 28)");
        assert!(matches!(&err, IsoError::Io { source, .. } if source.raw_os_error() == Some(28)), "{err:?}");
        let class = crate::error::AssembleError::from(err).class();
        assert_eq!(class, crate::ErrorClass::Io);
    }

    #[test]
    fn efiboot_sizes() {
        // Talos's rule when FAT32 fits: 10 MiB + 1 MiB + 120 MiB.
        assert_eq!(efiboot_size(120_000, 120 * MIB - 5), 131 * MIB);
        // Tiny inputs: the smallest FAT32 (mkfs.fat would go below 65525 clusters).
        let small = efiboot_size(1, 1);
        assert!(FatGeometry::mkfs_like(small, 512).is_ok());
        assert!(FatGeometry::mkfs_like(small - MIB, 512).is_err());
        assert_eq!(small, 33 * MIB);
    }
}
