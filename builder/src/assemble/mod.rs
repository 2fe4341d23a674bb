//! Boot-image assembly: the pieces of a Talos boot image, written in Rust so images build without root, loop
//! devices or mkfs, byte-reproducibly (same inputs and epoch, same bytes).
//!
//! - [`disk`]: the metal sd-boot raw image (GPT with Talos's label-derived GUIDs, FAT32 ESP, META with the
//!   Talos ADV), written sparse and atomically;
//! - [`initramfs`]: system extensions (validated, one squashfs each, `extensions.yaml`, firmware and microcode
//!   placed as Talos places them) appended to the release initramfs as reproducible newc cpio archives;
//! - [`uki`]: the unified kernel image and the Secure Boot artefacts around it (signing key, Authenticode
//!   signatures, `PK`/`KEK`/`db` auto-enrollment files);
//! - [`iso`], [`pxe`], [`oci`], [`qcow2`], [`compress`]: the other outputs (UEFI ISO, PXE files, installer OCI
//!   archive, qcow2, `.zst`/`.xz`/`.gz`), each written atomically.

mod atomic;
pub mod compress;
pub mod disk;
pub mod initramfs;
pub mod iso;
pub mod oci;
pub mod pxe;
pub mod qcow2;
pub mod uki;

#[cfg(test)]
mod output_tests;
