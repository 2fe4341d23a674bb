//! Boot-image assembly: the pieces of a Talos boot image, written in Rust so images build without root, loop
//! devices or mkfs, byte-reproducibly (same inputs and epoch, same bytes).
//!
//! - [`disk`]: the metal sd-boot raw image (GPT with Talos's label-derived GUIDs, FAT32 ESP, META with the
//!   Talos ADV), written sparse and atomically;
//! - [`initramfs`]: system extensions (validated, one squashfs each, `extensions.yaml`, firmware and microcode
//!   placed as Talos places them) appended to the release initramfs as reproducible newc cpio archives;
//! - [`uki`]: the unified kernel image and the Secure Boot artefacts around it (signing key, Authenticode
//!   signatures, `PK`/`KEK`/`db` auto-enrollment files).

pub mod disk;
pub mod initramfs;
pub mod uki;
