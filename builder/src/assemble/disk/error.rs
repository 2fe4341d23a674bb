//! The one error type of disk-image assembly. Every variant carries the values it complains about, so that a
//! message says what was expected and what was found without a debugger.

use std::path::PathBuf;

const MIB: u64 = 1024 * 1024;

/// What can go wrong planning or writing a disk image.
///
/// Classes for the binary's exit code: [`DiskError::Io`] is I/O, [`DiskError::UnsupportedSectorSize`] is
/// unsupported, everything else is bad input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskError {
    #[error("sector size {found} is not supported: expected 512 or 4096")]
    UnsupportedSectorSize { found: u32 },

    #[error("{what} size {size} bytes is not a multiple of the {sector_size}-byte sector size")]
    UnalignedSize { what: &'static str, size: u64, sector_size: u32 },

    #[error("disk size {} is too small: the partitions need at least {} MiB", show_size(*.disk_size), .need.div_ceil(MIB))]
    DiskTooSmall { disk_size: u64, need: u64 },

    #[error("partition name {name:?} is {units} UTF-16 code units long: GPT allows at most 36")]
    PartitionNameTooLong { name: String, units: usize },

    #[error(
        "the {} EFI partition is too small for FAT32 with {sector_size}-byte sectors: it gives {clusters} clusters, \
         FAT32 needs at least 65525",
        show_size(*.esp_size)
    )]
    EspTooSmallForFat32 { esp_size: u64, sector_size: u32, clusters: u64 },

    #[error(
        "the {} EFI partition is too large for FAT32: expected at most 4294967295 sectors of {sector_size} bytes",
        show_size(*.esp_size)
    )]
    EspTooLargeForFat32 { esp_size: u64, sector_size: u32 },

    #[error("esp path {path:?} is invalid: {reason}")]
    InvalidEspPath { path: String, reason: String },

    #[error("esp file {path:?} is {size} bytes: FAT32 files hold at most 4294967295 bytes")]
    EspFileTooLarge { path: String, size: u64 },

    #[error(
        "esp contents do not fit: they need {need_clusters} clusters of {cluster_size} bytes ({} KiB), the {} EFI \
         partition has {clusters} clusters ({} KiB)",
        kib(*.need_clusters, *.cluster_size),
        show_size(*.esp_size),
        kib(*.clusters, *.cluster_size)
    )]
    EspFull { need_clusters: u64, clusters: u64, cluster_size: u64, esp_size: u64 },

    #[error("esp file {path:?} changed while it was copied: expected {expected} bytes, read {found}")]
    EspSourceChanged { path: String, expected: u64, found: u64 },

    #[error("meta tag 0 is reserved: it marks the end of the Talos ADV (expected tags 1 to 255)")]
    MetaTagZero,

    #[error("meta tag {tag:#x} is given {count} times: expected each tag once")]
    DuplicateMetaTag { tag: u8, count: usize },

    #[error("meta entries need {need} bytes: the Talos ADV holds at most {max}")]
    MetaTooLarge { need: usize, max: usize },

    #[error("not a valid Talos ADV: {reason}")]
    InvalidAdv { reason: String },

    #[error(
        "epoch {epoch} is outside the FAT timestamp range: expected 315532800 (1980-01-01) to 4354819199 \
         (2107-12-31)"
    )]
    EpochOutOfRange { epoch: u64 },

    #[error("cannot {action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DiskError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DiskError {
        let path = path.into();
        move |source| DiskError::Io { action, path, source }
    }
}

fn kib(clusters: u64, cluster_size: u64) -> u64 {
    clusters.saturating_mul(cluster_size) / 1024
}

/// `2246 MiB` for whole MiB, else the byte count.
fn show_size(bytes: u64) -> String {
    if bytes.is_multiple_of(MIB) { format!("{} MiB", bytes / MIB) } else { format!("{bytes} bytes") }
}
