//! GUID partition tables written the way Talos writes them for disk images, so that a talforge image has the
//! partition table a Talos imager would produce: 128 entries, partitions allocated one after the other on 1 MiB
//! boundaries, the header's first usable LBA rounded up to that boundary, a protective MBR covering the disk,
//! and the disk and partition GUIDs derived from labels (Talos `makefs.GUIDFromLabel`).
//!
//! Facts from talos `cmd/installer/pkg/install/install.go` (`getPartitionOptions`, `diskImageLabel`),
//! `pkg/makefs/makefs.go` (`GUIDFromLabel`) and go-blockdevice v2 `partitioning/gpt/gpt.go` (`init`,
//! `allocatableRanges`, `AllocatePartition`, `Write`, `writePMBR`). The table is written by this module rather
//! than the `gpt` crate: that crate computes the first usable LBA itself (34, not Talos's 2048) and draws random
//! v4 GUIDs where Talos's are label-derived.

use sha2::{Digest as _, Sha256};

use super::DiskError;
use super::image::SectorSize;
use super::region::Region;

/// A GUID in RFC 4122 byte order: the order in which it is printed (`bca5174b-0118-…` is `[0xbc, 0xa5, …]`).
/// GPT stores the first three fields little-endian; see [`guid_to_disk`].
pub type Guid = [u8; 16];

/// `C12A7328-F81F-11D2-BA4B-00A0C93EC93B`: EFI system partition.
pub const EFI_SYSTEM_PARTITION: Guid =
    [0xc1, 0x2a, 0x73, 0x28, 0xf8, 0x1f, 0x11, 0xd2, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b];
/// `0FC63DAF-8483-4772-8E79-3D69D8477DE4`: Linux filesystem data (Talos META, BOOT, STATE, EPHEMERAL).
pub const LINUX_FILESYSTEM_DATA: Guid =
    [0x0f, 0xc6, 0x3d, 0xaf, 0x84, 0x83, 0x47, 0x72, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4];
/// `21686148-6449-6E6F-744E-656564454649`: BIOS boot partition (GRUB images; not written by talforge yet).
pub const BIOS_BOOT_PARTITION: Guid =
    [0x21, 0x68, 0x61, 0x48, 0x64, 0x49, 0x6e, 0x6f, 0x74, 0x4e, 0x65, 0x65, 0x64, 0x45, 0x46, 0x49];

/// The label Talos derives a disk image's disk GUID from.
pub const DISK_IMAGE_LABEL: &str = "talos-image-disk";

/// Entries in each partition entry array (go-blockdevice `NumEntries`).
pub const PARTITION_ENTRIES: u32 = 128;
/// Bytes per partition entry.
pub const ENTRY_SIZE: u32 = 128;
/// Partitions start on multiples of this (go-blockdevice: `max(ioSize, 2048*512)`, and a file's I/O size is its
/// sector size).
pub const ALIGNMENT: u64 = 1024 * 1024;

const HEADER_SIZE: u32 = 92;
const NAME_UNITS: usize = 36;

/// Talos `GUIDFromLabel`: a version-8 UUID made of the first 16 bytes of SHA-256(16 zero bytes ‖ label), i.e.
/// google/uuid `NewHash(sha256, uuid.Nil, label, 8)`.
pub fn guid_from_label(label: &str) -> Guid {
    let mut hash = Sha256::new();
    hash.update([0u8; 16]);
    hash.update(label.as_bytes());
    let digest = hash.finalize();
    let mut guid = [0u8; 16];
    for (g, d) in guid.iter_mut().zip(digest.iter()) {
        *g = *d;
    }
    guid[6] = (guid[6] & 0x0f) | 0x80; // version 8
    guid[8] = (guid[8] & 0x3f) | 0x80; // RFC 4122 variant
    guid
}

/// `bca5174b-0118-8a6a-af0b-2c6e1585acae`.
pub fn format_guid(guid: &Guid) -> String {
    let hex: String = guid.iter().map(|b| format!("{b:02x}")).collect();
    let (a, rest) = hex.split_at(8);
    let (b, rest) = rest.split_at(4);
    let (c, rest) = rest.split_at(4);
    let (d, e) = rest.split_at(4);
    format!("{a}-{b}-{c}-{d}-{e}")
}

/// Parses `8-4-4-4-12` hex (either case).
pub fn parse_guid(text: &str) -> Option<Guid> {
    let hex: Vec<u8> = text.bytes().filter(|&c| c != b'-').collect();
    let groups: Vec<usize> = text.split('-').map(str::len).collect();
    if groups != [8, 4, 4, 4, 12] || hex.len() != 32 {
        return None;
    }
    let mut guid = [0u8; 16];
    for (g, pair) in guid.iter_mut().zip(hex.chunks(2)) {
        let s = std::str::from_utf8(pair).ok()?;
        *g = u8::from_str_radix(s, 16).ok()?;
    }
    Some(guid)
}

/// GPT's on-disk ("mixed-endian") encoding: the first three fields little-endian, the rest as is.
pub fn guid_to_disk(guid: &Guid) -> [u8; 16] {
    let g = guid;
    [g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]]
}

/// The inverse of [`guid_to_disk`] (the swap is its own inverse).
pub fn guid_from_disk(bytes: &[u8; 16]) -> Guid {
    guid_to_disk(bytes)
}

/// CRC-32 (IEEE 802.3, reflected), as GPT uses for headers and entry arrays.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// One partition of a [`GptLayout`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptPartition {
    /// The GPT partition name; Talos uses the label (`EFI`, `META`).
    pub name: String,
    pub type_guid: Guid,
    pub part_guid: Guid,
    pub first_lba: u64,
    /// Inclusive.
    pub last_lba: u64,
    pub attributes: u64,
}

impl GptPartition {
    /// Size in sectors.
    pub fn sectors(&self) -> u64 {
        self.last_lba - self.first_lba + 1
    }
}

/// A partition table for a disk of a given size: geometry plus partitions in table order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptLayout {
    sector_size: u32,
    last_lba: u64,
    disk_guid: Guid,
    partitions: Vec<GptPartition>,
}

impl GptLayout {
    /// An empty table for a disk of `disk_size` bytes (rounded down to whole sectors, as go-blockdevice does).
    pub fn new(sector_size: u32, disk_size: u64, disk_guid: Guid) -> Result<Self, DiskError> {
        SectorSize::from_bytes(sector_size)?;
        let sectors = disk_size / u64::from(sector_size);
        let layout = GptLayout { sector_size, last_lba: sectors.saturating_sub(1), disk_guid, partitions: vec![] };
        // Room for the MBR, both headers and arrays, and one aligned usable sector.
        let need = layout.min_sectors_for_end(layout.first_usable_lba());
        if sectors < need {
            return Err(DiskError::DiskTooSmall { disk_size, need: need * u64::from(sector_size) });
        }
        Ok(layout)
    }

    /// The smallest disk, in bytes, on which partitions of `sizes` bytes allocated in order fit.
    pub fn required_disk_size(sector_size: u32, sizes: &[u64]) -> u64 {
        let probe =
            GptLayout { sector_size: sector_size.max(512), last_lba: 0, disk_guid: [0; 16], partitions: vec![] };
        let sector = u64::from(probe.sector_size);
        let mut end = probe.first_usable_lba();
        for size in sizes {
            end = align_up(end, probe.alignment_sectors()).saturating_add(size / sector);
        }
        probe.min_sectors_for_end(end).saturating_mul(sector)
    }

    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    pub fn disk_guid(&self) -> Guid {
        self.disk_guid
    }

    pub fn partitions(&self) -> &[GptPartition] {
        &self.partitions
    }

    /// The last sector of the disk, where the backup header lives.
    pub fn last_lba(&self) -> u64 {
        self.last_lba
    }

    /// Sectors taken by one partition entry array (32 for 512-byte sectors, 4 for 4096).
    pub fn entry_array_sectors(&self) -> u64 {
        u64::from(PARTITION_ENTRIES * ENTRY_SIZE).div_ceil(u64::from(self.sector_size))
    }

    /// Partition boundaries in sectors (2048 for 512-byte sectors, 256 for 4096).
    pub fn alignment_sectors(&self) -> u64 {
        (ALIGNMENT / u64::from(self.sector_size)).max(1)
    }

    /// After the primary array, rounded up to the alignment (go-blockdevice writes this rounded value into the
    /// header: 2048 for 512-byte sectors).
    pub fn first_usable_lba(&self) -> u64 {
        (2 + self.entry_array_sectors()).next_multiple_of(self.alignment_sectors())
    }

    /// The sector before the backup array.
    pub fn last_usable_lba(&self) -> u64 {
        self.backup_array_lba().saturating_sub(1)
    }

    pub fn backup_array_lba(&self) -> u64 {
        self.last_lba.saturating_sub(self.entry_array_sectors())
    }

    /// The disk size (in sectors) at which a partition ending just before `end_lba` still fits: go-blockdevice
    /// rounds the end of the free range down to the alignment, and the backup array and header follow.
    fn min_sectors_for_end(&self, end_lba: u64) -> u64 {
        align_up(end_lba, self.alignment_sectors()).saturating_add(self.entry_array_sectors() + 2)
    }

    /// Allocates the next partition after the last one, on the next alignment boundary (what go-blockdevice's
    /// best-fit allocation does for partitions added in order to an empty table).
    pub fn allocate(
        &mut self,
        name: &str,
        type_guid: Guid,
        part_guid: Guid,
        size: u64,
    ) -> Result<GptPartition, DiskError> {
        let units = name.encode_utf16().count();
        if units > NAME_UNITS {
            return Err(DiskError::PartitionNameTooLong { name: name.to_owned(), units });
        }
        let sector = u64::from(self.sector_size);
        if size == 0 || !size.is_multiple_of(sector) {
            return Err(DiskError::UnalignedSize { what: "partition", size, sector_size: self.sector_size });
        }
        let low = self.partitions.last().map_or(self.first_usable_lba(), |p| p.last_lba + 1);
        let first = align_up(low, self.alignment_sectors());
        let end = first.saturating_add(size / sector);
        // go-blockdevice: the free range ends at the last usable LBA rounded down to the alignment.
        let high = self.last_usable_lba() / self.alignment_sectors() * self.alignment_sectors();
        if end > high {
            let disk_size = (self.last_lba + 1) * sector;
            let need = self.min_sectors_for_end(end).saturating_mul(sector);
            return Err(DiskError::DiskTooSmall { disk_size, need });
        }
        let partition = GptPartition {
            name: name.to_owned(),
            type_guid,
            part_guid,
            first_lba: first,
            last_lba: end - 1,
            attributes: 0,
        };
        self.partitions.push(partition.clone());
        Ok(partition)
    }

    /// The 128-entry array, as written both after the primary header and before the backup header.
    pub fn entry_array(&self) -> Vec<u8> {
        let mut array = vec![0u8; (PARTITION_ENTRIES * ENTRY_SIZE) as usize];
        for (p, entry) in self.partitions.iter().zip(array.chunks_exact_mut(ENTRY_SIZE as usize)) {
            put(entry, 0, &guid_to_disk(&p.type_guid));
            put(entry, 16, &guid_to_disk(&p.part_guid));
            put(entry, 32, &p.first_lba.to_le_bytes());
            put(entry, 40, &p.last_lba.to_le_bytes());
            put(entry, 48, &p.attributes.to_le_bytes());
            let name: Vec<u8> = p.name.encode_utf16().take(NAME_UNITS).flat_map(u16::to_le_bytes).collect();
            put(entry, 56, &name);
        }
        array
    }

    /// A header sector: the primary one (LBA 1) or the backup one (last LBA).
    pub fn header(&self, backup: bool, entry_array_crc: u32) -> Vec<u8> {
        let (my_lba, alternate_lba, array_lba) =
            if backup { (self.last_lba, 1, self.backup_array_lba()) } else { (1, self.last_lba, 2) };
        let mut h = vec![0u8; self.sector_size as usize];
        put(&mut h, 0, b"EFI PART");
        put(&mut h, 8, &0x0001_0000u32.to_le_bytes());
        put(&mut h, 12, &HEADER_SIZE.to_le_bytes());
        put(&mut h, 24, &my_lba.to_le_bytes());
        put(&mut h, 32, &alternate_lba.to_le_bytes());
        put(&mut h, 40, &self.first_usable_lba().to_le_bytes());
        put(&mut h, 48, &self.last_usable_lba().to_le_bytes());
        put(&mut h, 56, &guid_to_disk(&self.disk_guid));
        put(&mut h, 72, &array_lba.to_le_bytes());
        put(&mut h, 80, &PARTITION_ENTRIES.to_le_bytes());
        put(&mut h, 84, &ENTRY_SIZE.to_le_bytes());
        put(&mut h, 88, &entry_array_crc.to_le_bytes());
        let crc = crc32(h.get(..HEADER_SIZE as usize).unwrap_or_default());
        put(&mut h, 16, &crc.to_le_bytes());
        h
    }

    /// The protective MBR (go-blockdevice `writePMBR` on a zeroed sector 0): one 0xEE entry from LBA 1 covering
    /// the disk (capped at 2^32-1 sectors), CHS 0/2/0 to ff/ff/ff, not bootable.
    pub fn protective_mbr(&self) -> [u8; 512] {
        let mut mbr = [0u8; 512];
        let entry: [u8; 8] = [0x00, 0x00, 0x02, 0x00, 0xee, 0xff, 0xff, 0xff];
        put(&mut mbr, 446, &entry);
        put(&mut mbr, 454, &1u32.to_le_bytes());
        put(&mut mbr, 458, &u32::try_from(self.last_lba).unwrap_or(u32::MAX).to_le_bytes());
        put(&mut mbr, 510, &[0x55, 0xaa]);
        mbr
    }

    /// Writes the protective MBR, both headers and both entry arrays into `disk` (the whole image file).
    pub(crate) fn write(&self, disk: &Region<'_>) -> Result<(), DiskError> {
        let sector = u64::from(self.sector_size);
        let array = self.entry_array();
        let crc = crc32(&array);
        disk.write_at(0, &self.protective_mbr())?;
        disk.write_at(sector, &self.header(false, crc))?;
        disk.write_at(2 * sector, &array)?;
        disk.write_at(self.backup_array_lba() * sector, &array)?;
        disk.write_at(self.last_lba * sector, &self.header(true, crc))?;
        Ok(())
    }
}

/// `value` rounded up to a multiple of `align` (saturating: an absurd size then fails the fit check instead).
fn align_up(value: u64, align: u64) -> u64 {
    value.checked_next_multiple_of(align).unwrap_or(u64::MAX)
}

/// Copies `bytes` into `buf` at `at`; the caller's offsets are constants inside fixed-size buffers.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn guid_from_label_matches_talos_values() {
        // Verified against Talos images (shared/notes/talos-image-and-config-facts.md §1.2).
        for (label, want) in [
            ("EFI", "bca5174b-0118-8a6a-af0b-2c6e1585acae"),
            ("BIOS", "a2a02ff5-d88d-8e6e-9c95-26b9b6c80bc3"),
            ("BOOT", "24c73076-4092-85dd-9d98-686a2dbf6d81"),
            ("META", "cf04f137-101e-8ec6-9627-fa3f51cdabb8"),
            (DISK_IMAGE_LABEL, "d92d45b3-cde9-8760-be9f-a2a71fac8d11"),
        ] {
            assert_eq!(format_guid(&guid_from_label(label)), want, "{label}");
            assert_eq!(parse_guid(want), Some(guid_from_label(label)));
        }
    }

    #[test]
    fn guids_are_mixed_endian_on_disk() {
        let efi = guid_from_label("EFI");
        assert_eq!(
            guid_to_disk(&efi),
            [0x4b, 0x17, 0xa5, 0xbc, 0x18, 0x01, 0x6a, 0x8a, 0xaf, 0x0b, 0x2c, 0x6e, 0x15, 0x85, 0xac, 0xae]
        );
        assert_eq!(guid_from_disk(&guid_to_disk(&efi)), efi);
        assert_eq!(format_guid(&EFI_SYSTEM_PARTITION), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(format_guid(&LINUX_FILESYSTEM_DATA), "0fc63daf-8483-4772-8e79-3d69d8477de4");
        assert_eq!(format_guid(&BIOS_BOOT_PARTITION), "21686148-6449-6e6f-744e-656564454649");
        assert_eq!(parse_guid("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"), Some(EFI_SYSTEM_PARTITION));
        assert_eq!(parse_guid("c12a7328f81f-11d2-ba4b-00a0c93ec93b"), None);
        assert_eq!(parse_guid("zz2a7328-f81f-11d2-ba4b-00a0c93ec93b"), None);
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn allocation_matches_go_blockdevice_golden_table() {
        // go-blockdevice partitioning/gpt/testdata/allocate.gdisk: a 6 GiB disk, partitions of 1 GiB, 100 MiB,
        // 2.5 GiB and 1 GiB allocated in order.
        let mut t = GptLayout::new(512, 6 * 1024 * MIB, [1; 16]).unwrap();
        assert_eq!((t.first_usable_lba(), t.last_usable_lba()), (2048, 12_582_878));
        let mut got = vec![];
        for size in [1024 * MIB, 100 * MIB, 2560 * MIB, 1024 * MIB] {
            let p = t.allocate("p", EFI_SYSTEM_PARTITION, [2; 16], size).unwrap();
            got.push((p.first_lba, p.last_lba));
        }
        assert_eq!(got, [(2048, 2_099_199), (2_099_200, 2_303_999), (2_304_000, 7_546_879), (7_546_880, 9_644_031)]);
    }

    #[test]
    fn four_k_sector_geometry() {
        let t = GptLayout::new(4096, 2246 * MIB, [0; 16]).unwrap();
        assert_eq!(t.entry_array_sectors(), 4);
        assert_eq!(t.alignment_sectors(), 256);
        assert_eq!(t.first_usable_lba(), 256);
        assert_eq!(t.last_lba(), 2246 * 256 - 1);
        assert_eq!(t.last_usable_lba(), 2246 * 256 - 6);
    }

    #[test]
    fn headers_and_mbr() {
        let mut t = GptLayout::new(512, 64 * MIB, guid_from_label(DISK_IMAGE_LABEL)).unwrap();
        t.allocate("EFI", EFI_SYSTEM_PARTITION, guid_from_label("EFI"), 32 * MIB).unwrap();
        let array = t.entry_array();
        assert_eq!(&array[56..62], &[b'E', 0, b'F', 0, b'I', 0]);
        let crc = crc32(&array);
        let h = t.header(false, crc);
        assert_eq!(&h[..8], b"EFI PART");
        let mut zeroed = h[..92].to_vec();
        zeroed[16..20].fill(0);
        assert_eq!(u32::from_le_bytes(h[16..20].try_into().unwrap()), crc32(&zeroed));
        let b = t.header(true, crc);
        assert_eq!(u64::from_le_bytes(b[24..32].try_into().unwrap()), t.last_lba());
        assert_eq!(u64::from_le_bytes(b[72..80].try_into().unwrap()), t.last_lba() - 32);
        let mbr = t.protective_mbr();
        assert_eq!(&mbr[446..462], &[0, 0, 2, 0, 0xee, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0xff, 0xff, 0x01, 0]);
        assert_eq!(&mbr[510..], &[0x55, 0xaa]);
    }

    #[test]
    fn too_small_and_bad_input() {
        let mut t = GptLayout::new(512, 10 * MIB, [0; 16]).unwrap();
        let e = t.allocate("EFI", EFI_SYSTEM_PARTITION, [0; 16], 9 * MIB).unwrap_err();
        assert_eq!(e.to_string(), "disk size 10 MiB is too small: the partitions need at least 11 MiB");
        let e = t.allocate("EFI", EFI_SYSTEM_PARTITION, [0; 16], 1000).unwrap_err();
        assert_eq!(e.to_string(), "partition size 1000 bytes is not a multiple of the 512-byte sector size");
        let e = t.allocate(&"x".repeat(37), EFI_SYSTEM_PARTITION, [0; 16], MIB).unwrap_err();
        assert!(e.to_string().ends_with("is 37 UTF-16 code units long: GPT allows at most 36"), "{e}");
        assert!(matches!(GptLayout::new(1000, MIB, [0; 16]), Err(DiskError::UnsupportedSectorSize { found: 1000 })));
        let e = GptLayout::new(512, 1000, [0; 16]).unwrap_err();
        assert_eq!(e.to_string(), "disk size 1000 bytes is too small: the partitions need at least 2 MiB");
    }
}
