//! Hardware profiles (`hardware-profiles/<vendor>-<model>.yaml`, `kind: HardwareProfile`): what a server model
//! has (NICs, disks, GPUs, firmware) and how the lab emulates it.
//!
//! A profile may `extends` another; the chain is merged before validation (see `crate::plan::profile`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ApiVersion;
use super::units::ByteSize;

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum HardwareProfileKind {
    HardwareProfile,
}

/// What a profile file says. Every section is optional so that a profile can extend another and change only
/// what differs; the resolved profile (`ResolvedProfile`) is checked for completeness.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HardwareProfileSpec {
    pub api_version: ApiVersion,
    pub kind: HardwareProfileKind,
    /// Equals the file stem.
    pub name: String,
    /// Parent profile name; its sections are the defaults for this one.
    #[serde(default)]
    pub extends: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub arch: Option<Arch>,
    #[serde(default)]
    pub firmware: Option<FirmwareSpec>,
    #[serde(default)]
    pub cpu: Option<CpuSpec>,
    #[serde(default)]
    pub memory: Option<ByteSize>,
    /// Replaces the parent's list when present.
    #[serde(default)]
    pub nics: Option<Vec<NicSpec>>,
    #[serde(default)]
    pub bonds: Option<Vec<BondSpec>>,
    #[serde(default)]
    pub disks: Option<Vec<DiskSpec>>,
    #[serde(default)]
    pub gpus: Option<Vec<GpuSpec>>,
    /// System extensions (official names such as `siderolabs/intel-ucode`); appended to the parent's.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Kernel arguments (`-arg` removes an inherited or default one); appended to the parent's.
    #[serde(default)]
    pub kernel_args: Vec<String>,
    /// Kernel modules to load (must not be built into the Talos kernel); appended to the parent's.
    #[serde(default)]
    pub kernel_modules: Vec<KernelModuleSpec>,
    /// Sysctls; merged over the parent's.
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// How the lab emulates this machine; merged over the parent's.
    #[serde(default)]
    pub emulation: Option<EmulationSpec>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FirmwareSpec {
    #[serde(default, rename = "type")]
    pub kind: Option<FirmwareKind>,
    #[serde(default)]
    pub secure_boot: Option<bool>,
    /// A TPM 2.0 is present.
    #[serde(default)]
    pub tpm: Option<bool>,
    /// Serial console, e.g. `ttyS0,115200` (becomes `console=` on the kernel command line).
    #[serde(default)]
    pub serial_console: Option<String>,
    /// Boot loader of the disk image: `sd-boot` (UEFI; the default for `type: uefi` and with Secure Boot),
    /// `dual-boot` (sd-boot for UEFI + GRUB for BIOS, Talos's default on amd64) or `grub` (the default for
    /// `type: bios`).
    #[serde(default)]
    pub bootloader: Option<Bootloader>,
}

/// Talos's disk-image boot loaders (the imager's `imageOptions.bootloader`, the schematic's `bootloader`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Bootloader {
    SdBoot,
    DualBoot,
    Grub,
}

impl Bootloader {
    pub fn as_str(self) -> &'static str {
        match self {
            Bootloader::SdBoot => "sd-boot",
            Bootloader::DualBoot => "dual-boot",
            Bootloader::Grub => "grub",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FirmwareKind {
    Uefi,
    Bios,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CpuSpec {
    #[serde(default)]
    pub vendor: Option<CpuVendor>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub sockets: Option<u32>,
    /// Cores per socket.
    #[serde(default)]
    pub cores: Option<u32>,
    /// Threads per core.
    #[serde(default)]
    pub threads: Option<u32>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CpuVendor {
    Intel,
    Amd,
    Arm,
    /// A virtual CPU (QEMU): no microcode.
    Virtual,
}

/// A network interface of the machine model.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NicSpec {
    /// Logical name, used as the Talos link alias (≥1.14) and by bonds; `[a-z][a-z0-9]*`, ≤15 characters.
    pub name: String,
    /// Linux driver as Talos reports it (`link.driver`), e.g. `ice`, `mlx5_core`, `virtio_net`.
    pub driver: String,
    /// PCI vendor:device, lowercase hex (`8086:159b`).
    #[serde(rename = "pciID")]
    pub pci_id: String,
    #[serde(default)]
    pub model: Option<String>,
    /// PCI bus path glob (Talos `busPath`, e.g. `0000:17:00.0`) telling apart the ports of one card.
    #[serde(default)]
    pub bus_path: Option<String>,
    /// Link speed, informational (`25G`).
    #[serde(default)]
    pub speed: Option<String>,
    /// System extensions carrying firmware this NIC needs.
    #[serde(default)]
    pub firmware: Vec<String>,
    /// The node's `address` goes on this NIC (at most one per profile; default: the first NIC not in a bond,
    /// or the first bond).
    #[serde(default)]
    pub primary: bool,
    /// Name of the bond this NIC is a member of.
    #[serde(default)]
    pub bond: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// How the lab emulates this NIC; absent means it is not emulated.
    #[serde(default)]
    pub emulation: Option<NicEmulationSpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NicEmulationSpec {
    /// QEMU device model.
    pub model: NicModel,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum NicModel {
    VirtioNetPci,
    E1000e,
    E1000,
    Vmxnet3,
    Rtl8139,
    Igb,
}

impl NicModel {
    /// The QEMU `-device` name.
    pub fn qemu_device(self) -> &'static str {
        match self {
            NicModel::VirtioNetPci => "virtio-net-pci",
            NicModel::E1000e => "e1000e",
            NicModel::E1000 => "e1000",
            NicModel::Vmxnet3 => "vmxnet3",
            NicModel::Rtl8139 => "rtl8139",
            NicModel::Igb => "igb",
        }
    }

    /// The Linux driver that binds the emulated device.
    pub fn guest_driver(self) -> &'static str {
        match self {
            NicModel::VirtioNetPci => "virtio_net",
            NicModel::E1000e => "e1000e",
            NicModel::E1000 => "e1000",
            NicModel::Vmxnet3 => "vmxnet3",
            NicModel::Rtl8139 => "8139cp",
            NicModel::Igb => "igb",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BondSpec {
    pub name: String,
    /// Linux bonding mode name: `802.3ad`, `active-backup`, `balance-rr`, ...
    pub mode: String,
    #[serde(default)]
    pub lacp_rate: Option<String>,
    #[serde(default)]
    pub xmit_hash_policy: Option<String>,
    #[serde(default)]
    pub miimon: Option<u32>,
    #[serde(default)]
    pub mtu: Option<u32>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DiskRole {
    Install,
    Osd,
    Data,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DiskBus {
    Nvme,
    Sata,
    Sas,
    Virtio,
    Scsi,
    Usb,
}

/// A disk (or a set of identical disks) of the machine model.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskSpec {
    /// Logical name, unique in the profile.
    pub name: String,
    pub role: DiskRole,
    pub bus: DiskBus,
    /// Model string as the disk reports it (Talos `disk.model`).
    #[serde(default)]
    pub model: Option<String>,
    pub size: ByteSize,
    /// Serial number glob, e.g. `S6EU*`.
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub rotational: Option<bool>,
    /// How many identical disks (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// How the lab emulates this disk; absent means it is not emulated.
    #[serde(default)]
    pub emulation: Option<DiskEmulationSpec>,
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskEmulationSpec {
    pub device: DiskDevice,
    /// Emulated size (sparse); defaults to the profile size.
    #[serde(default)]
    pub size: Option<ByteSize>,
    /// Serial prefix; the lab appends the disk index.
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub logical_block_size: Option<u32>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum DiskDevice {
    VirtioBlk,
    Nvme,
    /// `scsi-hd` on a virtio-scsi controller.
    VirtioScsi,
    /// `scsi-hd` on an emulated LSI MegaRAID SAS controller.
    Megasas,
    /// `ide-hd` on the q35 AHCI controller (SATA).
    Ahci,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum GpuVendor {
    Nvidia,
    Amd,
    Intel,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GpuSpec {
    pub vendor: GpuVendor,
    pub model: String,
    #[serde(rename = "pciID")]
    pub pci_id: String,
    #[serde(default = "one")]
    pub count: u32,
    /// GPUs cannot be emulated: this must be `false` and the part is checked only on real hardware.
    #[serde(default)]
    pub emulated: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KernelModuleSpec {
    pub name: String,
    #[serde(default)]
    pub parameters: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmulationSpec {
    /// QEMU machine type (default `q35`).
    #[serde(default)]
    pub machine: Option<String>,
    /// vCPUs and memory for the lab VM (the cluster file's `lab` section overrides them).
    #[serde(default)]
    pub cpus: Option<u32>,
    #[serde(default)]
    pub memory: Option<ByteSize>,
    #[serde(default)]
    pub smbios: Option<SmbiosSpec>,
}

/// SMBIOS type 1 (system) strings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SmbiosSpec {
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub family: Option<String>,
    #[serde(default)]
    pub sku: Option<String>,
}
