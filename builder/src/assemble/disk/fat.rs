//! The FAT32 EFI system partition, written in place inside the image file without mkfs.vfat, mtools or a mount.
//!
//! Talos formats the ESP with `mkfs.vfat -F 32 -n EFI --invariant` and fills it with `mcopy -s -p -Q -m` from a
//! staging directory whose mtimes were set to `SOURCE_DATE_EPOCH` (talos `pkg/makefs/vfat.go`). This module keeps
//! what matters of that for firmware and for `fsck.vfat`: mkfs.fat 4.2's choice of sectors per cluster for the
//! partition size, 32 reserved sectors (rounded up to a cluster), two FATs, the FAT length formula, FSInfo in
//! sector 1, the backup boot sector in 6, media 0xf8, label `EFI` in the boot sector and as a root entry. It is
//! not byte-identical to mkfs.vfat: mkfs.fat also rounds the sector count down to a multiple of its guessed
//! track size, and its `--invariant` volume ID is 0x1234abcd where talforge uses the epoch.
//!
//! Because the whole file set is known up front, the filesystem is planned before a byte is written: directories
//! and files get contiguous cluster runs in a depth-first walk of the sorted tree, directory entries (with long
//! names) are built in memory, and file contents are streamed from their source into their clusters. Every
//! timestamp is the epoch (UTC), the volume ID is the epoch's low 32 bits (the convention Talos uses for its ISO's
//! FAT serial), and nothing depends on the host clock, time zone or umask.
//!
//! (The `fatfs` 0.3 crate was the first choice but writes invalid directories: a long-name entry before `.` and
//! `..`, and `..` pointing at cluster 2 instead of 0 for the root; `fsck.vfat` rejects them. Fixed on its master
//! branch (rafalh/rust-fatfs#99, #100) but not in 0.3.6, the latest release; see also rafalh/rust-fatfs#117.)

use std::fs::File;
use std::io::Read as _;
use std::path::PathBuf;

use super::DiskError;
use super::fat_names::{ShortNames, TreeDir, TreeNode, build_tree, lfn_count, lfn_entries, sfn_char};
use super::image::SectorSize;
use super::region::Region;

/// The filesystem label Talos gives its ESP (and the partition label).
pub const EFI_LABEL: &str = "EFI";

const MIN_FAT32_CLUSTERS: u64 = 65_525;
const MAX_FAT32_CLUSTERS: u64 = 0x0fff_fff5;
/// Bytes per directory entry.
pub(super) const DIR_ENTRY: usize = 32;
const MAX_DIR_ENTRIES: u64 = 65_536;
const END_OF_CHAIN: u32 = 0x0fff_ffff;
const ATTR_READ_ONLY: u8 = 0x01;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
/// Seconds from the Unix epoch to 1980-01-01 and to the end of 2107: what FAT dates can hold.
const FAT_EPOCH_MIN: u64 = 315_532_800;
const FAT_EPOCH_MAX: u64 = 4_354_819_199;
const COPY_BUFFER: usize = 1024 * 1024;

/// A file to put on the ESP: its path inside the filesystem (`EFI/BOOT/BOOTX64.EFI`), where its bytes come
/// from, and whether it carries the FAT read-only attribute (Talos's ISO marks `loader/random-seed` so).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspFile {
    pub path: String,
    pub source: EspSource,
    pub read_only: bool,
}

/// The contents of an [`EspFile`]: in memory, or streamed from a file (for the UKI, which can be large).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EspSource {
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl EspFile {
    pub fn bytes(path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        EspFile { path: path.into(), source: EspSource::Bytes(data.into()), read_only: false }
    }

    pub fn file(path: impl Into<String>, source: impl Into<PathBuf>) -> Self {
        EspFile { path: path.into(), source: EspSource::File(source.into()), read_only: false }
    }

    /// The same file with the FAT read-only attribute set (`mattrib +r`).
    pub fn read_only(self) -> Self {
        EspFile { read_only: true, ..self }
    }

    pub(super) fn len(&self) -> Result<u64, DiskError> {
        match &self.source {
            EspSource::Bytes(b) => Ok(b.len() as u64),
            EspSource::File(p) => Ok(std::fs::metadata(p).map_err(DiskError::io("read", p))?.len()),
        }
    }
}

/// The on-disk geometry of a FAT32 filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FatGeometry {
    pub sector_size: u32,
    pub total_sectors: u32,
    pub sectors_per_cluster: u32,
    pub reserved_sectors: u32,
    pub fats: u32,
    pub sectors_per_fat: u32,
    /// Data clusters (numbered from 2).
    pub clusters: u32,
}

impl FatGeometry {
    /// The geometry `mkfs.fat -F 32` (dosfstools 4.2) picks for `size` bytes: 1 sector per cluster up to
    /// 260 MiB, 8 up to 8 GiB, 16 up to 16 GiB, 32 up to 32 GiB, 64 above; fewer when that leaves FAT32 short of
    /// 65525 clusters; reserved sectors 32 rounded up to a cluster; the FAT length rounded up to a cluster.
    pub fn mkfs_like(size: u64, sector_size: u32) -> Result<Self, DiskError> {
        SectorSize::from_bytes(sector_size)?;
        let sector = u64::from(sector_size);
        let total = size / sector;
        let Ok(total_sectors) = u32::try_from(total) else {
            return Err(DiskError::EspTooLargeForFat32 { esp_size: size, sector_size });
        };
        let size_mib = size.div_ceil(1024 * 1024);
        let mut spc: u64 = match size_mib {
            m if m > 32 * 1024 => 64,
            m if m > 16 * 1024 => 32,
            m if m > 8 * 1024 => 16,
            m if m > 260 => 8,
            _ => 1,
        };
        loop {
            let reserved = 32u64.next_multiple_of(spc);
            let data = total.saturating_sub(reserved);
            let estimate = (data * sector + 2 * 8) / (spc * sector + 2 * 4);
            let fat_len = ((estimate + 2) * 4).div_ceil(sector).next_multiple_of(spc);
            let clusters = data.saturating_sub(2 * fat_len) / spc;
            if clusters >= MIN_FAT32_CLUSTERS {
                // The FAT covers every cluster (the estimate is an upper bound), and FAT32 numbers stop below
                // 0x0ffffff6: with at most 2^32 sectors and 8+ sectors per cluster above 8 GiB neither can fail,
                // but say so rather than write a broken filesystem.
                let covered = fat_len * sector / 4 >= clusters + 2;
                if !covered || clusters > MAX_FAT32_CLUSTERS {
                    return Err(DiskError::EspTooLargeForFat32 { esp_size: size, sector_size });
                }
                return Ok(FatGeometry {
                    sector_size,
                    total_sectors,
                    sectors_per_cluster: spc as u32,
                    reserved_sectors: reserved as u32,
                    fats: 2,
                    sectors_per_fat: fat_len as u32,
                    clusters: clusters as u32,
                });
            }
            if spc == 1 {
                return Err(DiskError::EspTooSmallForFat32 { esp_size: size, sector_size, clusters });
            }
            spc /= 2;
        }
    }

    pub fn cluster_size(&self) -> u64 {
        u64::from(self.sector_size) * u64::from(self.sectors_per_cluster)
    }

    fn fat_offset(&self, copy: u32) -> u64 {
        u64::from(self.sector_size) * (u64::from(self.reserved_sectors) + u64::from(copy * self.sectors_per_fat))
    }

    fn cluster_offset(&self, cluster: u32) -> u64 {
        let data = u64::from(self.reserved_sectors) + u64::from(self.fats) * u64::from(self.sectors_per_fat);
        data * u64::from(self.sector_size) + u64::from(cluster.saturating_sub(2)) * self.cluster_size()
    }
}

/// A FAT date/time: 2-second resolution, plus the creation time's extra 10 ms units for odd seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FatTimestamp {
    pub date: u16,
    pub time: u16,
    pub tenths: u8,
}

impl FatTimestamp {
    /// The UTC date and time of `epoch` (seconds since 1970), which must fall in 1980–2107.
    pub fn from_epoch(epoch: u64) -> Result<Self, DiskError> {
        if !(FAT_EPOCH_MIN..=FAT_EPOCH_MAX).contains(&epoch) {
            return Err(DiskError::EpochOutOfRange { epoch });
        }
        let (days, secs) = (epoch / 86_400, epoch % 86_400);
        let (y, m, d) = civil_from_days(days);
        let (hour, min, sec) = (secs / 3600, secs % 3600 / 60, secs % 60);
        Ok(FatTimestamp {
            date: (((y - 1980) << 9) | (m << 5) | d) as u16,
            time: ((hour << 11) | (min << 5) | (sec / 2)) as u16,
            tenths: ((sec % 2) * 100) as u8,
        })
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard Hinnant's
/// `civil_from_days`), for days ≥ 0.
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// What was written, for the image report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatSummary {
    pub geometry: FatGeometry,
    pub volume_id: u32,
    /// Clusters holding directories and files, the root directory included.
    pub used_clusters: u32,
    pub files: usize,
    /// Directories other than the root.
    pub directories: usize,
}

/// The planned filesystem: where every directory and file goes, and the directory contents.
#[derive(Debug)]
pub(crate) struct FatPlan {
    geometry: FatGeometry,
    label: [u8; 11],
    volume_id: u32,
    stamp: FatTimestamp,
    /// Allocated cluster runs `(first, count)` in allocation order (= cluster order).
    runs: Vec<(u32, u32)>,
    /// Directories: first cluster and entries (root first).
    dirs: Vec<(u32, Vec<u8>)>,
    /// Files with contents: index into the file list, first cluster, size.
    files: Vec<(usize, u32, u64)>,
    file_count: usize,
    /// Indices (into the file list) of the files marked read-only.
    read_only: Vec<usize>,
    used_clusters: u32,
}

impl FatPlan {
    /// Plans a FAT32 filesystem of `size` bytes labelled `label` holding `files`, with all timestamps at `epoch`.
    pub(crate) fn new(
        size: u64,
        sector_size: u32,
        label: &str,
        files: &[EspFile],
        epoch: u64,
    ) -> Result<Self, DiskError> {
        let geometry = FatGeometry::mkfs_like(size, sector_size)?;
        let stamp = FatTimestamp::from_epoch(epoch)?;
        let tree = build_tree(files)?;
        let mut plan = FatPlan {
            geometry,
            label: volume_label(label),
            // Talos sets its ISO's FAT serial to uint32(epoch) (pkg/imager/iso/iso.go).
            volume_id: epoch as u32,
            stamp,
            runs: vec![],
            dirs: vec![],
            files: vec![],
            file_count: files.len(),
            read_only: files.iter().enumerate().filter(|(_, f)| f.read_only).map(|(i, _)| i).collect(),
            used_clusters: 0,
        };
        let cluster_size = geometry.cluster_size();
        let mut next: u64 = 2;
        let root_clusters = dir_clusters(&tree, true, cluster_size, "")?;
        plan.alloc(&mut next, root_clusters);
        plan.layout_dir(&tree, "", 2, None, &mut next)?;
        let used = next - 2;
        if used > u64::from(geometry.clusters) {
            return Err(DiskError::EspFull {
                need_clusters: used,
                clusters: u64::from(geometry.clusters),
                cluster_size,
                esp_size: size,
            });
        }
        plan.used_clusters = used as u32;
        Ok(plan)
    }

    /// Reserves `count` clusters at the cursor; a run past the end is caught by the caller's total check.
    fn alloc(&mut self, next: &mut u64, count: u64) -> u32 {
        let first = u32::try_from(*next).unwrap_or(u32::MAX);
        if count > 0 {
            self.runs.push((first, u32::try_from(count).unwrap_or(u32::MAX)));
        }
        *next = next.saturating_add(count);
        first
    }

    /// Builds the entries of `dir` (whose clusters start at `first`), allocating its children depth-first.
    fn layout_dir(
        &mut self,
        dir: &TreeDir,
        path: &str,
        first: u32,
        parent: Option<u32>,
        next: &mut u64,
    ) -> Result<(), DiskError> {
        let cluster_size = self.geometry.cluster_size();
        let mut entries = Vec::new();
        match parent {
            None => entries.extend(self.sfn_entry(&self.label, ATTR_VOLUME_ID, 0, 0)),
            Some(parent) => {
                entries.extend(self.sfn_entry(&dot_name(1), ATTR_DIRECTORY, first, 0));
                entries.extend(self.sfn_entry(&dot_name(2), ATTR_DIRECTORY, parent, 0));
            }
        }
        let own_index = self.dirs.len();
        self.dirs.push((first, vec![]));
        let mut names = ShortNames::default();
        for (name, node) in &dir.children {
            let child_path = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
            let (sfn, lfn) = names.assign(name).ok_or_else(|| DiskError::InvalidEspPath {
                path: child_path.clone(),
                reason: "no free short name is left in its directory".into(),
            })?;
            let (attr, cluster, size) = match node {
                TreeNode::Dir(sub) => {
                    let count = dir_clusters(sub, false, cluster_size, &child_path)?;
                    let cluster = self.alloc(next, count);
                    // `..` in `sub` names this directory, and the root is cluster 0 there (whatever its cluster).
                    let this = if parent.is_none() { 0 } else { first };
                    self.layout_dir(sub, &child_path, cluster, Some(this), next)?;
                    (ATTR_DIRECTORY, cluster, 0)
                }
                TreeNode::File(index, size) => {
                    let count = size.div_ceil(cluster_size);
                    let cluster = if count == 0 { 0 } else { self.alloc(next, count) };
                    if count > 0 {
                        self.files.push((*index, cluster, *size));
                    }
                    let attr =
                        if self.read_only.contains(index) { ATTR_ARCHIVE | ATTR_READ_ONLY } else { ATTR_ARCHIVE };
                    (attr, cluster, *size as u32)
                }
            };
            if lfn {
                entries.extend(lfn_entries(name, &sfn));
            }
            entries.extend(self.sfn_entry(&sfn, attr, cluster, size));
        }
        if let Some(slot) = self.dirs.get_mut(own_index) {
            slot.1 = entries;
        }
        Ok(())
    }

    fn sfn_entry(&self, name: &[u8; 11], attr: u8, cluster: u32, size: u32) -> [u8; DIR_ENTRY] {
        let s = self.stamp;
        let mut e = [0u8; DIR_ENTRY];
        e[..11].copy_from_slice(name);
        e[11] = attr;
        e[13] = s.tenths;
        e[14..16].copy_from_slice(&s.time.to_le_bytes());
        e[16..18].copy_from_slice(&s.date.to_le_bytes());
        e[18..20].copy_from_slice(&s.date.to_le_bytes());
        e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
        e[22..24].copy_from_slice(&s.time.to_le_bytes());
        e[24..26].copy_from_slice(&s.date.to_le_bytes());
        e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
        e[28..32].copy_from_slice(&size.to_le_bytes());
        e
    }

    /// Writes the planned filesystem into `region` (which must read as zeros), streaming file contents from
    /// `files` (the list the plan was made from).
    pub(crate) fn write(&self, region: &Region<'_>, files: &[EspFile]) -> Result<FatSummary, DiskError> {
        let g = &self.geometry;
        let sector = u64::from(g.sector_size);
        let boot = self.boot_sector();
        let info = self.fs_info();
        for (at, bytes) in [(0, &boot), (1, &info), (6, &boot), (7, &info)] {
            region.write_at(at * sector, bytes)?;
        }
        self.write_fats(region)?;
        for (cluster, entries) in &self.dirs {
            region.write_at(g.cluster_offset(*cluster), entries)?;
        }
        for &(index, cluster, size) in &self.files {
            let Some(file) = files.get(index) else { continue };
            copy_contents(region, g.cluster_offset(cluster), file, size)?;
        }
        Ok(FatSummary {
            geometry: *g,
            volume_id: self.volume_id,
            used_clusters: self.used_clusters,
            files: self.file_count,
            directories: self.dirs.len().saturating_sub(1),
        })
    }

    // The boot sector and FSInfo buffers are a sector long, and sectors are at least 512 bytes (`SectorSize`), so
    // the constant offsets below are in bounds.
    fn boot_sector(&self) -> Vec<u8> {
        let g = &self.geometry;
        let mut b = vec![0u8; g.sector_size as usize];
        b[..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
        b[3..11].copy_from_slice(b"MSWIN4.1");
        b[11..13].copy_from_slice(&(g.sector_size as u16).to_le_bytes());
        b[13] = g.sectors_per_cluster as u8;
        b[14..16].copy_from_slice(&(g.reserved_sectors as u16).to_le_bytes());
        b[16] = g.fats as u8;
        b[21] = 0xf8; // fixed disk
        b[24..26].copy_from_slice(&63u16.to_le_bytes()); // sectors per track, unused by UEFI
        b[26..28].copy_from_slice(&255u16.to_le_bytes()); // heads
        b[32..36].copy_from_slice(&g.total_sectors.to_le_bytes());
        b[36..40].copy_from_slice(&g.sectors_per_fat.to_le_bytes());
        b[44..48].copy_from_slice(&2u32.to_le_bytes()); // root directory cluster
        b[48..50].copy_from_slice(&1u16.to_le_bytes()); // FSInfo sector
        b[50..52].copy_from_slice(&6u16.to_le_bytes()); // backup boot sector
        b[64] = 0x80; // drive number
        b[66] = 0x29; // extended boot signature: the next three fields are valid
        b[67..71].copy_from_slice(&self.volume_id.to_le_bytes());
        b[71..82].copy_from_slice(&self.label);
        b[82..90].copy_from_slice(b"FAT32   ");
        // Not bootable by a BIOS: `int 18h` (try the next boot device), then halt.
        b[90..95].copy_from_slice(&[0xcd, 0x18, 0xf4, 0xeb, 0xfd]);
        b[510..512].copy_from_slice(&[0x55, 0xaa]);
        b
    }

    fn fs_info(&self) -> Vec<u8> {
        let g = &self.geometry;
        let free = g.clusters - self.used_clusters;
        let next_free = if free == 0 { u32::MAX } else { 2 + self.used_clusters };
        let mut s = vec![0u8; g.sector_size as usize];
        s[..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
        s[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
        s[488..492].copy_from_slice(&free.to_le_bytes());
        s[492..496].copy_from_slice(&next_free.to_le_bytes());
        s[508..512].copy_from_slice(&0xaa55_0000u32.to_le_bytes());
        s
    }

    /// Both FAT copies: entries 0 and 1, then a chain per run; the free rest stays a hole.
    fn write_fats(&self, region: &Region<'_>) -> Result<(), DiskError> {
        const CHUNK: usize = 16 * 1024;
        let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK * 4);
        chunk.extend_from_slice(&0x0fff_fff8u32.to_le_bytes());
        chunk.extend_from_slice(&END_OF_CHAIN.to_le_bytes());
        let mut written = 0u64;
        let mut flush = |chunk: &mut Vec<u8>| -> Result<(), DiskError> {
            for copy in 0..self.geometry.fats {
                region.write_at(self.geometry.fat_offset(copy) + written, chunk)?;
            }
            written += chunk.len() as u64;
            chunk.clear();
            Ok(())
        };
        for &(first, count) in &self.runs {
            for cluster in first..first.saturating_add(count) {
                let last = cluster == first + count - 1;
                let value = if last { END_OF_CHAIN } else { cluster + 1 };
                chunk.extend_from_slice(&value.to_le_bytes());
                if chunk.len() >= CHUNK * 4 {
                    flush(&mut chunk)?;
                }
            }
        }
        flush(&mut chunk)
    }
}

/// `EFI` → `EFI        `; only the characters FAT allows in a short name (upper-cased), others become `_`.
fn volume_label(label: &str) -> [u8; 11] {
    let mut out = [b' '; 11];
    for (o, c) in out.iter_mut().zip(label.chars()) {
        let c = c.to_ascii_uppercase();
        *o = if sfn_char(c) || c == ' ' { c as u8 } else { b'_' };
    }
    out
}

fn dot_name(dots: usize) -> [u8; 11] {
    let mut n = [b' '; 11];
    for b in n.iter_mut().take(dots) {
        *b = b'.';
    }
    n
}

/// Clusters for a directory's entries (at least one).
fn dir_clusters(dir: &TreeDir, root: bool, cluster_size: u64, path: &str) -> Result<u64, DiskError> {
    let fixed = if root { 1 } else { 2 };
    let mut entries: u64 = fixed;
    let mut names = ShortNames::default();
    for name in dir.children.keys() {
        let lfn = names.assign(name).is_none_or(|(_, lfn)| lfn);
        entries += 1 + if lfn { lfn_count(name) } else { 0 };
    }
    if entries > MAX_DIR_ENTRIES {
        return Err(DiskError::InvalidEspPath {
            path: if path.is_empty() { "/".into() } else { path.into() },
            reason: format!("the directory needs {entries} entries: FAT allows at most {MAX_DIR_ENTRIES}"),
        });
    }
    Ok((entries * DIR_ENTRY as u64).div_ceil(cluster_size).max(1))
}

/// Streams `file`'s contents into its clusters, checking that it still has the planned size.
fn copy_contents(region: &Region<'_>, offset: u64, file: &EspFile, size: u64) -> Result<(), DiskError> {
    let changed = |found| DiskError::EspSourceChanged { path: file.path.clone(), expected: size, found };
    match &file.source {
        EspSource::Bytes(bytes) => region.write_at(offset, bytes),
        EspSource::File(path) => {
            let source = File::open(path).map_err(DiskError::io("read", path))?;
            // One byte more than planned is enough to notice a file that grew.
            let mut reader = source.take(size + 1);
            let mut buf = vec![0u8; COPY_BUFFER.min(size as usize + 1)];
            let mut done = 0u64;
            loop {
                let n = reader.read(&mut buf).map_err(DiskError::io("read", path))?;
                if n == 0 {
                    break;
                }
                if done + n as u64 > size {
                    return Err(changed(done + n as u64));
                }
                region.write_at(offset + done, buf.get(..n).unwrap_or_default())?;
                done += n as u64;
            }
            if done != size {
                return Err(changed(done));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn geometry_follows_mkfs_fat() {
        // mkfs.fat 4.2 on 2101 MiB: 8 sectors/cluster, 32 reserved, FAT of 4200 sectors (its sector count is
        // rounded down to 63-sector tracks, so it finds 536800 clusters where the full partition has 536802).
        let g = FatGeometry::mkfs_like(2101 * MIB, 512).unwrap();
        assert_eq!(
            (g.sectors_per_cluster, g.reserved_sectors, g.fats, g.sectors_per_fat, g.clusters, g.total_sectors),
            (8, 32, 2, 4200, 536_802, 2101 * 2048)
        );
        // -S 4096: 8 sectors (32 KiB) per cluster, FAT of 72 sectors.
        let g = FatGeometry::mkfs_like(2101 * MIB, 4096).unwrap();
        assert_eq!((g.sectors_per_cluster, g.reserved_sectors, g.sectors_per_fat, g.clusters), (8, 32, 72, 67_210));
        // Small: one sector per cluster, FAT not cluster-aligned beyond that (mkfs.fat: 64 MiB → 1009 sectors).
        let g = FatGeometry::mkfs_like(64 * MIB, 512).unwrap();
        assert_eq!((g.sectors_per_cluster, g.sectors_per_fat), (1, 1009));
        // 300 MiB at 4096: cluster size falls back to 1 sector to keep 65525 clusters (mkfs.fat: FAT 75).
        let g = FatGeometry::mkfs_like(300 * MIB, 4096).unwrap();
        assert_eq!((g.sectors_per_cluster, g.sectors_per_fat), (1, 75));
        // Large partitions: reserved rounded up to the cluster (mkfs.fat on 33 GiB: 64 per cluster, 64 reserved).
        let g = FatGeometry::mkfs_like(33 * 1024 * MIB, 512).unwrap();
        assert_eq!((g.sectors_per_cluster, g.reserved_sectors, g.sectors_per_fat), (64, 64, 8448));
        let e = FatGeometry::mkfs_like(100 * MIB, 4096).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the 100 MiB EFI partition is too small for FAT32 with 4096-byte sectors: it gives 25518 clusters, \
             FAT32 needs at least 65525"
        );
        assert!(matches!(FatGeometry::mkfs_like(3 << 40, 512), Err(DiskError::EspTooLargeForFat32 { .. })));
    }

    #[test]
    fn timestamps() {
        // 2024-02-29 13:37:43 UTC.
        let t = FatTimestamp::from_epoch(1_709_213_863).unwrap();
        assert_eq!(t.date, ((2024 - 1980) << 9) | (2 << 5) | 29);
        assert_eq!(t.time, (13 << 11) | (37 << 5) | 21);
        assert_eq!(t.tenths, 100);
        assert_eq!(FatTimestamp::from_epoch(FAT_EPOCH_MIN).unwrap(), FatTimestamp { date: 33, time: 0, tenths: 0 });
        let end = FatTimestamp::from_epoch(FAT_EPOCH_MAX).unwrap();
        assert_eq!(end.date, (127 << 9) | (12 << 5) | 31);
        let e = FatTimestamp::from_epoch(0).unwrap_err();
        assert!(e.to_string().starts_with("epoch 0 is outside the FAT timestamp range"), "{e}");
        assert!(FatTimestamp::from_epoch(FAT_EPOCH_MAX + 1).is_err());
    }

    #[test]
    fn bad_paths() {
        let check = |path: &str| {
            FatPlan::new(64 * MIB, 512, EFI_LABEL, &[EspFile::bytes(path, b"x".to_vec())], FAT_EPOCH_MIN)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            check("/EFI/x"),
            "esp path \"/EFI/x\" is invalid: expected a relative path like EFI/BOOT/BOOTX64.EFI"
        );
        assert_eq!(
            check("EFI//x"),
            "esp path \"EFI//x\" is invalid: it has an empty component (expected no `//` and no trailing `/`)"
        );
        assert_eq!(check("EFI/../x"), "esp path \"EFI/../x\" is invalid: component \"..\" is not allowed");
        assert_eq!(
            check("EFI/a:b"),
            "esp path \"EFI/a:b\" is invalid: component \"a:b\" contains ':', which FAT does not allow in names"
        );
        assert_eq!(
            check("EFI/x."),
            "esp path \"EFI/x.\" is invalid: component \"x.\" ends with a dot or a space, which FAT drops"
        );
        let two = |a: &str, b: &str| {
            let files = [EspFile::bytes(a, vec![1]), EspFile::bytes(b, vec![2])];
            FatPlan::new(64 * MIB, 512, EFI_LABEL, &files, FAT_EPOCH_MIN).unwrap_err().to_string()
        };
        assert_eq!(two("a/b", "a/b"), "esp path \"a/b\" is invalid: it is given twice");
        assert_eq!(
            two("EFI/boot/x", "EFI/BOOT/y"),
            "esp path \"EFI/BOOT/y\" is invalid: \"BOOT\" and \"boot\" differ only in case, which FAT does not tell apart"
        );
        assert_eq!(two("a", "a/b"), "esp path \"a/b\" is invalid: a is also given as a file");
        assert_eq!(two("a/b", "a"), "esp path \"a\" is invalid: it is also a directory of another file");
    }

    #[test]
    fn plan_is_depth_first_and_contiguous() {
        let files = [
            EspFile::bytes("loader/loader.conf", b"timeout 10\n".to_vec()),
            EspFile::bytes("EFI/Linux/Talos-v1.14.0.efi", vec![7; 10_000]),
            EspFile::bytes("EFI/BOOT/BOOTX64.EFI", vec![8; 5000]),
            EspFile::bytes("empty", vec![]),
        ];
        let plan = FatPlan::new(64 * MIB, 512, EFI_LABEL, &files, FAT_EPOCH_MIN).unwrap();
        // Root 2; EFI 3; EFI/BOOT 4; BOOTX64.EFI 5..=14; EFI/Linux 15; UKI 16..=35; loader 36; loader.conf 37.
        assert_eq!(plan.runs, [(2, 1), (3, 1), (4, 1), (5, 10), (15, 1), (16, 20), (36, 1), (37, 1)]);
        assert_eq!(plan.used_clusters, 36);
        assert_eq!(plan.files, [(2, 5, 5000), (1, 16, 10_000), (0, 37, 11)]);
    }

    #[test]
    fn full_esp_is_reported() {
        let files = [EspFile::bytes("EFI/Linux/big.efi", vec![1; 40 * MIB as usize])];
        let e = FatPlan::new(33 * MIB, 512, EFI_LABEL, &files, FAT_EPOCH_MIN).unwrap_err();
        assert_eq!(
            e.to_string(),
            "esp contents do not fit: they need 81923 clusters of 512 bytes (40961 KiB), the 33 MiB EFI partition \
             has 66512 clusters (33256 KiB)"
        );
    }
}
