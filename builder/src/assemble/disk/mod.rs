//! Boot-image assembly: the pieces a Talos disk image is made of, written in pure Rust so that talforge builds
//! images without root, loop devices, mkfs or mtools, and byte-reproducibly (same inputs and epoch, same bytes).
//!
//! - [`gpt`]: the partition table, with Talos's label-derived GUIDs;
//! - [`fat`]: the FAT32 EFI system partition;
//! - [`meta`]: the META partition's Talos ADV;
//! - [`image`]: the metal sd-boot raw image that puts them together, written sparse and atomically.

mod error;
pub mod fat;
mod fat_names;
pub mod gpt;
pub mod image;
pub mod meta;
pub(crate) mod region;

#[cfg(test)]
mod tests;

pub use error::DiskError;
pub use fat::{EspFile, EspSource, FatGeometry, FatSummary};
pub use gpt::{GptLayout, GptPartition, Guid, format_guid, guid_from_label};
pub use image::{
    MetalImagePlan, MetalImageReport, MetalImageSpec, SectorSize, plan_metal_image, sd_boot_esp_size,
    sd_boot_metal_disk_size, sd_boot_min_disk_size, write_metal_image,
};
pub use meta::{parse_adv, talos_adv};
