//! The metal raw disk image for sd-boot (UEFI) boot: the image a Talos imager writes for `metal` with the
//! `sd-boot` bootloader (secure boot, arm64, or amd64 with `bootloader: sd-boot`), built without root, loop
//! devices or external tools, byte-reproducibly.
//!
//! Layout (talos `cmd/installer/pkg/install/install.go` `getPartitionOptions`, `internal/pkg/partition`,
//! bootloader `sdboot.PrepareBootPartitions`; Talos ≥ 1.8 leaves STATE and EPHEMERAL to first boot): a GPT with
//! the disk GUID derived from `talos-image-disk`, then `EFI` (EFI system partition, FAT32 with the boot assets)
//! and `META` (1 MiB, Talos ADV), each with its GUID derived from its label. GRUB and dual-boot images add BIOS
//! and BOOT partitions and are not built here: callers must reject those bootloaders before calling.
//!
//! The image is written to a temporary file next to the output, sparse (only non-zero blocks are written), and
//! renamed into place once complete, so a failed or killed build never leaves a file under the final name.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::DiskError;
use super::fat::{EFI_LABEL, EspFile, FatGeometry, FatPlan, FatSummary};
use super::gpt::{
    DISK_IMAGE_LABEL, EFI_SYSTEM_PARTITION, GptLayout, GptPartition, Guid, LINUX_FILESYSTEM_DATA, guid_from_label,
};
use super::meta::{META_LABEL, META_PARTITION_SIZE, meta_partition_head};
use super::region::Region;

const MIB: u64 = 1024 * 1024;

/// Talos `MinRAWDiskSize` (pkg/imager/profile/default.go): the size of the `metal` profiles before the boot-size
/// fix-up.
pub const MIN_RAW_DISK_SIZE: u64 = 1246 * MIB;

/// The logical sector size of the image (Talos `diskSectorSize`; `metal-4k` uses 4096).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SectorSize {
    #[default]
    B512,
    B4096,
}

impl SectorSize {
    pub fn bytes(self) -> u32 {
        match self {
            SectorSize::B512 => 512,
            SectorSize::B4096 => 4096,
        }
    }

    pub fn from_bytes(bytes: u32) -> Result<Self, DiskError> {
        match bytes {
            512 => Ok(SectorSize::B512),
            4096 => Ok(SectorSize::B4096),
            found => Err(DiskError::UnsupportedSectorSize { found }),
        }
    }
}

/// Talos quirks `GrubBootSize` (pkg/machinery/imager/quirks/partitions.go): 2000 MiB from Talos 1.11, 1000 MiB
/// before. Versions are `(major, minor)`; any major other than 1 counts as the latest, as an unparsable version
/// does in Talos.
pub fn talos_boot_size(major: u32, minor: u32) -> u64 {
    if major == 1 && minor < 11 { 1000 * MIB } else { 2000 * MIB }
}

/// The EFI partition of an sd-boot (UKI) image, Talos quirks `UKIEFISize`: the old EFI (100 MiB) + BIOS (1 MiB)
/// + BOOT sizes, so 2101 MiB from Talos 1.11 (1.12, 1.13, 1.14 alike) and 1101 MiB before.
pub fn sd_boot_esp_size(major: u32, minor: u32) -> u64 {
    100 * MIB + MIB + talos_boot_size(major, minor)
}

/// The default size of an sd-boot metal image, Talos profile `FillDefaults` for `metal`/`secureboot-metal`/
/// `metal-4k` with the sd-boot bootloader: `MinRAWDiskSize + bootSize − 1000 MiB`, so 2246 MiB from Talos 1.11
/// (golden profiles `secureboot-metal-amd64-1.14.0.yaml`, `metal-arm64-1.1x.0.yaml`: 2355101696 bytes) and
/// 1246 MiB before. (The amd64 default is dual-boot, which adds 1 MiB + bootSize: 4247 MiB.)
pub fn sd_boot_metal_disk_size(major: u32, minor: u32) -> u64 {
    MIN_RAW_DISK_SIZE + talos_boot_size(major, minor) - 1000 * MIB
}

/// The smallest disk an sd-boot image for Talos `major.minor` fits on: GPT, EFI and META.
pub fn sd_boot_min_disk_size(major: u32, minor: u32, sector_size: SectorSize) -> u64 {
    GptLayout::required_disk_size(sector_size.bytes(), &[sd_boot_esp_size(major, minor), META_PARTITION_SIZE])
}

/// What to build: a metal sd-boot disk image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetalImageSpec {
    /// Bytes; a multiple of the sector size.
    pub disk_size: u64,
    pub sector_size: SectorSize,
    /// Bytes of the EFI partition; a multiple of the sector size.
    pub esp_size: u64,
    /// The ESP's files; paths are unique (case-insensitively) and relative (`EFI/BOOT/BOOTX64.EFI`).
    pub esp_files: Vec<EspFile>,
    /// META key/value pairs (Talos `customization.metaContents`); none leaves META zeroed, as Talos does.
    pub meta_entries: Vec<(u8, Vec<u8>)>,
    /// `SOURCE_DATE_EPOCH`: every FAT timestamp and the FAT volume ID.
    pub epoch: u64,
}

impl MetalImageSpec {
    /// The Talos defaults for Talos `major.minor` = `talos` (disk and ESP sizes), without files or META entries.
    pub fn sd_boot(talos: (u32, u32), sector_size: SectorSize, epoch: u64) -> Self {
        let (major, minor) = talos;
        MetalImageSpec {
            disk_size: sd_boot_metal_disk_size(major, minor),
            sector_size,
            esp_size: sd_boot_esp_size(major, minor),
            esp_files: vec![],
            meta_entries: vec![],
            epoch,
        }
    }
}

/// The resolved image: partition table, ESP plan and META contents. Pure apart from reading the sizes of ESP
/// source files.
#[derive(Debug)]
pub struct MetalImagePlan {
    gpt: GptLayout,
    esp: GptPartition,
    meta: GptPartition,
    fat: FatPlan,
    meta_head: Option<Vec<u8>>,
    disk_size: u64,
}

impl MetalImagePlan {
    pub fn layout(&self) -> &GptLayout {
        &self.gpt
    }
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetalImageReport {
    pub path: PathBuf,
    pub disk_size: u64,
    /// Bytes the file occupies on disk (`st_blocks × 512`): the image is sparse.
    pub allocated_bytes: u64,
    pub sector_size: u32,
    pub disk_guid: Guid,
    pub partitions: Vec<GptPartition>,
    pub esp: FatSummary,
    pub meta_entries: usize,
}

/// Checks `spec` and resolves the layout; nothing is written.
pub fn plan_metal_image(spec: &MetalImageSpec) -> Result<MetalImagePlan, DiskError> {
    let sector = spec.sector_size.bytes();
    for (what, size) in [("disk", spec.disk_size), ("EFI partition", spec.esp_size)] {
        if !size.is_multiple_of(u64::from(sector)) {
            return Err(DiskError::UnalignedSize { what, size, sector_size: sector });
        }
    }
    FatGeometry::mkfs_like(spec.esp_size, sector)?;
    let need = GptLayout::required_disk_size(sector, &[spec.esp_size, META_PARTITION_SIZE]);
    if spec.disk_size < need {
        return Err(DiskError::DiskTooSmall { disk_size: spec.disk_size, need });
    }
    let mut gpt = GptLayout::new(sector, spec.disk_size, guid_from_label(DISK_IMAGE_LABEL))?;
    let esp = gpt.allocate(EFI_LABEL, EFI_SYSTEM_PARTITION, guid_from_label(EFI_LABEL), spec.esp_size)?;
    let meta = gpt.allocate(META_LABEL, LINUX_FILESYSTEM_DATA, guid_from_label(META_LABEL), META_PARTITION_SIZE)?;
    let meta_head = meta_partition_head(&spec.meta_entries)?;
    let fat = FatPlan::new(spec.esp_size, sector, EFI_LABEL, &spec.esp_files, spec.epoch)?;
    Ok(MetalImagePlan { gpt, esp, meta, fat, meta_head, disk_size: spec.disk_size })
}

/// Builds the image described by `spec` at `out` (replacing any file there only once the new one is complete).
pub fn write_metal_image(out: &Path, spec: &MetalImageSpec) -> Result<MetalImageReport, DiskError> {
    let plan = plan_metal_image(spec)?;
    let tmp = TempImage::create(out)?;
    let (file, path) = (&tmp.file, tmp.path.as_path());
    file.set_len(plan.disk_size).map_err(DiskError::io("size", path))?;

    let sector = u64::from(plan.gpt.sector_size());
    let region = |p: &GptPartition| Region::new(file, path, p.first_lba * sector, p.sectors() * sector);
    plan.gpt.write(&Region::new(file, path, 0, plan.disk_size))?;
    let summary = plan.fat.write(&region(&plan.esp), &spec.esp_files)?;
    if let Some(head) = &plan.meta_head {
        region(&plan.meta).write_at(0, head)?;
    }
    let partitions = plan.gpt.partitions().to_vec();
    tmp.persist(out)?;

    let allocated_bytes = std::fs::metadata(out).map_err(DiskError::io("inspect", out))?.blocks() * 512;
    Ok(MetalImageReport {
        path: out.to_owned(),
        disk_size: plan.disk_size,
        allocated_bytes,
        sector_size: plan.gpt.sector_size(),
        disk_guid: plan.gpt.disk_guid(),
        partitions,
        esp: summary,
        meta_entries: spec.meta_entries.len(),
    })
}

/// A temporary file in the output's directory that is removed unless it is renamed into place.
#[derive(Debug)]
struct TempImage {
    path: PathBuf,
    file: File,
    kept: bool,
}

impl TempImage {
    fn create(out: &Path) -> Result<Self, DiskError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let Some(name) = out.file_name() else {
            let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "expected a file name");
            return Err(DiskError::Io { action: "write", path: out.to_owned(), source });
        };
        let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut attempts = 0;
        loop {
            attempts += 1;
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
            let path = dir.join(tmp_name);
            match OpenOptions::new().read(true).write(true).create_new(true).mode(0o644).open(&path) {
                Ok(file) => {
                    // The mode is 0644 whatever the umask.
                    let perms = std::fs::Permissions::from_mode(0o644);
                    file.set_permissions(perms).map_err(DiskError::io("set permissions of", &path))?;
                    return Ok(TempImage { path, file, kept: false });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 1000 => continue,
                Err(e) => return Err(DiskError::io("create", &path)(e)),
            }
        }
    }

    /// Flushes the file and renames it to `out`.
    fn persist(mut self, out: &Path) -> Result<(), DiskError> {
        self.file.sync_all().map_err(DiskError::io("flush", &self.path))?;
        std::fs::rename(&self.path, out).map_err(DiskError::io("rename into place", out))?;
        self.kept = true;
        // Make the rename itself durable.
        if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(DiskError::io("flush", dir))?;
        }
        Ok(())
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        if !self.kept {
            // Best effort: the error that got us here is the one worth reporting.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assemble::disk::gpt::format_guid;

    #[test]
    fn talos_sizes_per_version() {
        for minor in [11, 12, 13, 14] {
            assert_eq!(sd_boot_esp_size(1, minor), 2101 * MIB);
            assert_eq!(sd_boot_metal_disk_size(1, minor), 2246 * MIB);
            assert_eq!(sd_boot_metal_disk_size(1, minor), 2_355_101_696); // golden profile bytes
        }
        assert_eq!(sd_boot_esp_size(1, 10), 1101 * MIB);
        assert_eq!(sd_boot_metal_disk_size(1, 10), MIN_RAW_DISK_SIZE);
        assert_eq!(sd_boot_metal_disk_size(2, 0), 2246 * MIB);
        let spec = MetalImageSpec::sd_boot((1, 14), SectorSize::B512, 1_700_000_000);
        assert_eq!((spec.disk_size, spec.esp_size), (2246 * MIB, 2101 * MIB));
    }

    #[test]
    fn layout_for_talos_1_14() {
        let spec = MetalImageSpec::sd_boot((1, 14), SectorSize::B512, 1_700_000_000);
        let plan = plan_metal_image(&spec).unwrap();
        let t = plan.layout();
        assert_eq!(format_guid(&t.disk_guid()), "d92d45b3-cde9-8760-be9f-a2a71fac8d11");
        assert_eq!((t.first_usable_lba(), t.last_usable_lba(), t.last_lba()), (2048, 4_599_774, 4_599_807));
        let parts: Vec<_> = t
            .partitions()
            .iter()
            .map(|p| (p.name.as_str(), format_guid(&p.type_guid), format_guid(&p.part_guid), p.first_lba, p.last_lba))
            .collect();
        assert_eq!(
            parts,
            [
                (
                    "EFI",
                    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b".to_owned(),
                    "bca5174b-0118-8a6a-af0b-2c6e1585acae".to_owned(),
                    2048,
                    4_304_895
                ),
                (
                    "META",
                    "0fc63daf-8483-4772-8e79-3d69d8477de4".to_owned(),
                    "cf04f137-101e-8ec6-9627-fa3f51cdabb8".to_owned(),
                    4_304_896,
                    4_306_943
                ),
            ]
        );
        let spec4k = MetalImageSpec::sd_boot((1, 14), SectorSize::B4096, 1_700_000_000);
        let plan = plan_metal_image(&spec4k).unwrap();
        let lbas: Vec<_> = plan.layout().partitions().iter().map(|p| (p.first_lba, p.last_lba)).collect();
        assert_eq!(lbas, [(256, 538_111), (538_112, 538_367)]);
    }

    #[test]
    fn absurd_inputs_are_errors_not_panics() {
        let base = MetalImageSpec::sd_boot((1, 14), SectorSize::B512, 1_700_000_000);
        let sizes = [0, 512, MIB, u64::from(u32::MAX) * 512, (u64::MAX / 512) * 512, u64::MAX - 511];
        for disk_size in sizes {
            for esp_size in sizes {
                for sector_size in [SectorSize::B512, SectorSize::B4096] {
                    let spec = MetalImageSpec { disk_size, esp_size, sector_size, ..base.clone() };
                    let _ = plan_metal_image(&spec);
                }
            }
        }
        for epoch in [0, u64::MAX, 315_532_799] {
            let spec = MetalImageSpec { epoch, ..base.clone() };
            assert!(matches!(plan_metal_image(&spec), Err(DiskError::EpochOutOfRange { .. })));
        }
        let deep = vec!["d"; 10_000].join("/");
        let spec = MetalImageSpec { esp_files: vec![EspFile::bytes(deep, vec![1])], ..base.clone() };
        let e = plan_metal_image(&spec).unwrap_err();
        assert!(e.to_string().ends_with("it has 10000 components: expected at most 32"), "{e}");
        let spec = MetalImageSpec { meta_entries: vec![(1, vec![0; 300_000])], ..base.clone() };
        assert!(matches!(plan_metal_image(&spec), Err(DiskError::MetaTooLarge { .. })));
        let spec =
            MetalImageSpec { esp_files: vec![EspFile::file("EFI/x", "/nonexistent/talforge/uki")], ..base.clone() };
        assert_eq!(plan_metal_image(&spec).unwrap_err().to_string(), "cannot read /nonexistent/talforge/uki");
    }

    #[test]
    fn too_small_disk_names_the_need() {
        let mut spec = MetalImageSpec::sd_boot((1, 14), SectorSize::B512, 1_700_000_000);
        spec.disk_size = 1000 * MIB;
        let e = plan_metal_image(&spec).unwrap_err();
        assert_eq!(e.to_string(), "disk size 1000 MiB is too small: the partitions need at least 2104 MiB");
        // Exactly the need fits; a sector less does not.
        spec.disk_size = GptLayout::required_disk_size(512, &[spec.esp_size, META_PARTITION_SIZE]);
        assert!(plan_metal_image(&spec).is_ok());
        spec.disk_size -= 512;
        assert!(matches!(plan_metal_image(&spec), Err(DiskError::DiskTooSmall { .. })));
        spec.disk_size = 2246 * MIB + 100;
        let e = plan_metal_image(&spec).unwrap_err();
        assert_eq!(e.to_string(), "disk size 2355101796 bytes is not a multiple of the 512-byte sector size");
        assert_eq!(SectorSize::from_bytes(4096).unwrap(), SectorSize::B4096);
        let e = SectorSize::from_bytes(1024).unwrap_err();
        assert_eq!(e.to_string(), "sector size 1024 is not supported: expected 512 or 4096");
    }
}
