//! What a machine built to a profile must report, in one of two modes:
//!
//! - **hardware** ([`Expectation::for_hardware`]): the profile's description of the real server: its NIC
//!   drivers and PCI IDs, disk buses, nominal sizes and models, sockets × cores × threads, installed memory,
//!   GPUs.
//! - **emulated** ([`Expectation::for_emulation`]): the VM the lab makes from the profile's `emulation`
//!   sections: the QEMU NIC model's driver and PCI ID, the QEMU disk device's bus, model and exact emulated
//!   size, `emulation.cpus`/`memory` (or the lab's own shape, [`Expectation::with_vm_shape`]); parts the lab
//!   cannot emulate (GPUs, NICs or disks without an `emulation` section) are listed as not checked.
//!
//! Node facts ([`NodeFacts`]) add what the profile cannot know: MAC addresses.

use std::collections::BTreeMap;

use talforge_builder::plan::profile::ResolvedProfile;
use talforge_builder::spec::profile::{
    Arch, DiskBus, DiskDevice, DiskSpec, FirmwareKind, GpuVendor, NicModel, NicSpec, SmbiosSpec,
};
use talforge_builder::spec::units::MacAddr;

use super::QualifyError;

/// MemTotal may be this much below the installed memory (firmware reservations, the kernel's code and page
/// tables, crash kernel). Measured: 94-96 % of 1-2 GiB VMs (OVMF/SeaBIOS, Debian 6.1); a large server keeps
/// about 98 %.
pub const MEMORY_SHORTFALL_PERCENT: u64 = 10;

/// A real disk's capacity may differ this much from the profile's nominal size: vendors round decimal
/// capacities (IDEMA sizes are a little above nominal, e.g. 480,103,981,056 bytes for 480 GB) and hardware
/// RAID volumes keep some metadata. Distinct product sizes (1.92 vs 1.6 TB, 3.84 vs 4 TB) differ by 4 % or
/// more. Emulated disks are compared exactly: the lab creates them with the byte size the profile gives.
pub const DISK_SIZE_TOLERANCE_PERCENT: u64 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A real machine, against the profile's hardware description.
    Hardware,
    /// A lab VM, against the profile's emulation.
    Emulated,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Hardware => "hardware",
            Mode::Emulated => "emulated",
        }
    }
}

/// What one node knows beyond its profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// Expected MAC per profile NIC name: the cluster file's `mac:` (the primary NIC), or the MACs the lab
    /// assigned.
    pub macs: BTreeMap<String, MacAddr>,
}

impl NodeFacts {
    /// The cluster file's `mac:`, which belongs to the profile's primary NIC.
    pub fn primary_mac(profile: &ResolvedProfile, mac: MacAddr) -> NodeFacts {
        let mut macs = BTreeMap::new();
        if let Some(nic) = profile.primary_nic() {
            macs.insert(nic.name.clone(), mac);
        }
        NodeFacts { macs }
    }
}

/// The comparison's reference: built from a profile, then adjusted by the lab or node facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectation {
    pub profile: String,
    pub mode: Mode,
    pub arch: Arch,
    pub firmware: FirmwareKind,
    pub secure_boot: bool,
    pub tpm: bool,
    pub cpus: Option<Expected<u32>>,
    /// Installed memory in bytes.
    pub memory: Option<Expected<u64>>,
    pub smbios: SmbiosSpec,
    /// In hardware mode the SMBIOS product may carry more after the profile's (Lenovo appends the machine
    /// type); in emulated mode the lab sets it exactly.
    pub smbios_product_prefix: bool,
    pub nics: Vec<ExpectedNic>,
    pub disks: Vec<ExpectedDisk>,
    pub gpus: Vec<ExpectedGpu>,
    pub extensions: Vec<String>,
    pub kernel_modules: Vec<String>,
    /// Parts of the profile that this mode does not check, with the reason.
    pub skipped: Vec<Skipped>,
}

/// A value and where it comes from (shown in the report).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected<T> {
    pub value: T,
    pub source: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub id: String,
    pub expected: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedNic {
    /// The profile's logical name.
    pub name: String,
    pub driver: String,
    pub pci_id: String,
    pub mac: Option<MacAddr>,
    /// Glob over the PCI address (`0000:17:00.0`).
    pub bus_path: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedDisk {
    /// `name`, or `name[i]` for one of `count` identical disks.
    pub id: String,
    pub bus: DiskBus,
    /// Inventory transports that are this bus (SAS disks show as `scsi`).
    pub transports: &'static [&'static str],
    pub size: Expected<u64>,
    /// Allowed difference from `size`, in percent (0 = exact).
    pub size_tolerance_percent: u64,
    /// Serial number glob.
    pub serial: Option<String>,
    pub model: Option<String>,
    pub rotational: Option<bool>,
    /// Why rotation is not compared although the profile gives it.
    pub rotational_unchecked: Option<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedGpu {
    pub vendor: GpuVendor,
    pub model: String,
    pub pci_id: String,
    pub count: u32,
}

impl Expectation {
    /// The real machine the profile describes.
    pub fn for_hardware(p: &ResolvedProfile) -> Expectation {
        let cpus = match (p.cpu.sockets, p.cpu.cores, p.cpu.threads) {
            (Some(s), Some(c), Some(t)) => {
                Some(Expected { value: s * c * t, source: format!("sockets {s} × cores {c} × threads {t}") })
            }
            _ => None,
        };
        let mut skipped = Vec::new();
        if cpus.is_none() {
            skipped.push(Skipped {
                id: "cpus".into(),
                expected: "-".into(),
                reason: "the profile does not give cpu.sockets, cpu.cores and cpu.threads".into(),
            });
        }
        let memory = p.memory.map(|m| Expected { value: m.bytes(), source: format!("memory {m}") });
        if memory.is_none() {
            skipped.push(Skipped {
                id: "memory".into(),
                expected: "-".into(),
                reason: "the profile does not give memory".into(),
            });
        }
        let mut disks = Vec::new();
        for d in &p.disks {
            for id in disk_ids(d) {
                disks.push(ExpectedDisk {
                    id,
                    bus: d.bus,
                    transports: bus_transports(d.bus),
                    size: Expected { value: d.size.bytes(), source: format!("size {}", d.size) },
                    size_tolerance_percent: DISK_SIZE_TOLERANCE_PERCENT,
                    serial: d.serial.clone(),
                    model: d.model.clone(),
                    rotational: d.rotational,
                    rotational_unchecked: (d.bus == DiskBus::Virtio && d.rotational.is_some())
                        .then_some(VIRTIO_ROTATION),
                });
            }
        }
        Expectation {
            profile: p.name.clone(),
            mode: Mode::Hardware,
            arch: p.arch,
            firmware: p.firmware.kind,
            secure_boot: p.firmware.secure_boot,
            tpm: p.firmware.tpm,
            cpus,
            memory,
            smbios: p.emulation.smbios.clone(),
            smbios_product_prefix: true,
            nics: p.nics.iter().map(hardware_nic).collect(),
            disks,
            gpus: p
                .gpus
                .iter()
                .map(|g| ExpectedGpu {
                    vendor: g.vendor,
                    model: g.model.clone(),
                    pci_id: g.pci_id.clone(),
                    count: g.count,
                })
                .collect(),
            extensions: p.extensions.clone(),
            kernel_modules: p.kernel_modules.iter().map(|m| m.name.clone()).collect(),
            skipped,
        }
    }

    /// The lab VM made from the profile's emulation sections.
    pub fn for_emulation(p: &ResolvedProfile) -> Expectation {
        let mut skipped = Vec::new();
        let mut nics = Vec::new();
        for n in &p.nics {
            match &n.emulation {
                Some(e) => nics.push(ExpectedNic {
                    name: n.name.clone(),
                    driver: e.model.guest_driver().to_owned(),
                    pci_id: emulated_nic_pci_id(e.model).to_owned(),
                    mac: None,
                    // The lab places devices itself; the real card's PCI address does not apply.
                    bus_path: None,
                }),
                None => skipped.push(Skipped {
                    id: format!("nics.{}", n.name),
                    expected: nic_text(&hardware_nic(n)),
                    reason: "not emulated (the NIC has no emulation section)".into(),
                }),
            }
        }
        let mut disks = Vec::new();
        for d in &p.disks {
            let Some(e) = &d.emulation else {
                for id in disk_ids(d) {
                    skipped.push(Skipped {
                        id: format!("disks.{id}"),
                        expected: format!("{} disk, {}", bus_name(d.bus), d.size),
                        reason: "not emulated (the disk has no emulation section)".into(),
                    });
                }
                continue;
            };
            let (size, source) = match e.size {
                Some(s) => (s, format!("emulation.size {s}")),
                None => (d.size, format!("size {}, no emulation.size", d.size)),
            };
            // QEMU shows whole logical blocks of the image file.
            let block = u64::from(e.logical_block_size.unwrap_or(512)).max(1);
            let bytes = size.bytes() / block * block;
            // The lab sets `emulation.serial` + the disk's index; the profile's own pattern is the real disk's.
            let serial = e.serial.as_ref().map(|prefix| format!("{prefix}*"));
            let (bus, model, rotational, rotational_unchecked) = match e.device {
                DiskDevice::VirtioBlk => (DiskBus::Virtio, None, d.rotational, d.rotational.map(|_| VIRTIO_ROTATION)),
                // Linux marks every NVMe namespace non-rotational.
                DiskDevice::Nvme => (
                    DiskBus::Nvme,
                    Some(QEMU_NVME_MODEL.to_owned()),
                    d.rotational.filter(|r| !r),
                    d.rotational.filter(|r| *r).map(|_| "an emulated NVMe disk is never rotational"),
                ),
                // ide-hd and scsi-hd report what the lab sets with rotation_rate (1 = non-rotational).
                DiskDevice::Ahci => (DiskBus::Sata, Some(QEMU_DISK_MODEL.to_owned()), d.rotational, None),
                DiskDevice::VirtioScsi | DiskDevice::Megasas => {
                    (DiskBus::Scsi, Some(QEMU_DISK_MODEL.to_owned()), d.rotational, None)
                }
            };
            for id in disk_ids(d) {
                disks.push(ExpectedDisk {
                    id,
                    bus,
                    transports: bus_transports(bus),
                    size: Expected { value: bytes, source: source.clone() },
                    size_tolerance_percent: 0,
                    serial: serial.clone(),
                    model: model.clone(),
                    rotational,
                    rotational_unchecked,
                });
            }
        }
        for (i, g) in p.gpus.iter().enumerate() {
            skipped.push(Skipped {
                id: format!("gpus[{i}]"),
                expected: gpu_text(g.count, &g.model, &g.pci_id),
                reason: "not emulated (GPUs are checked on real hardware only)".into(),
            });
        }
        Expectation {
            profile: p.name.clone(),
            mode: Mode::Emulated,
            arch: p.arch,
            firmware: p.firmware.kind,
            secure_boot: p.firmware.secure_boot,
            tpm: p.firmware.tpm,
            cpus: Some(Expected { value: p.emulation.cpus, source: "emulation.cpus".into() }),
            memory: Some(Expected { value: p.emulation.memory.bytes(), source: "emulation.memory".into() }),
            smbios: p.emulation.smbios.clone(),
            smbios_product_prefix: false,
            nics,
            disks,
            gpus: Vec::new(),
            extensions: p.extensions.clone(),
            kernel_modules: p.kernel_modules.iter().map(|m| m.name.clone()).collect(),
            skipped,
        }
    }

    /// The lab's VM shape when the cluster file's `lab` section overrides the profile's emulation.
    pub fn with_vm_shape(mut self, cpus: u32, memory: u64) -> Expectation {
        self.cpus = Some(Expected { value: cpus, source: "the lab's VM".into() });
        self.memory = Some(Expected { value: memory, source: "the lab's VM".into() });
        self
    }

    /// Adds the node's MAC addresses; a MAC for a NIC the profile does not have (or does not emulate) is an
    /// error.
    pub fn with_facts(mut self, facts: &NodeFacts) -> Result<Expectation, QualifyError> {
        for (name, mac) in &facts.macs {
            let Some(nic) = self.nics.iter_mut().find(|n| &n.name == name) else {
                let known: Vec<&str> = self.nics.iter().map(|n| n.name.as_str()).collect();
                return Err(QualifyError::UnknownNic {
                    profile: self.profile.clone(),
                    nic: name.clone(),
                    known: if known.is_empty() { "none".into() } else { known.join(", ") },
                });
            };
            nic.mac = Some(*mac);
        }
        Ok(self)
    }
}

/// virtio-blk has no rotation flag; Linux leaves such disks rotational (the block layer's default).
const VIRTIO_ROTATION: &str = "virtio-blk does not report rotation";

/// QEMU's NVMe identify model string.
pub const QEMU_NVME_MODEL: &str = "QEMU NVMe Ctrl";
/// QEMU's ide-hd and scsi-hd model string (when the lab sets no other).
pub const QEMU_DISK_MODEL: &str = "QEMU HARDDISK";

/// The PCI vendor:device the guest sees for a QEMU NIC model (QEMU 7.2; virtio-net on pcie.0, where the lab
/// attaches NICs, stays transitional: 1000, not the modern-only 1041).
pub fn emulated_nic_pci_id(model: NicModel) -> &'static str {
    match model {
        NicModel::VirtioNetPci => "1af4:1000",
        NicModel::E1000e => "8086:10d3",
        NicModel::E1000 => "8086:100e",
        NicModel::Vmxnet3 => "15ad:07b0",
        NicModel::Rtl8139 => "10ec:8139",
        NicModel::Igb => "8086:10c9",
    }
}

/// Inventory transports for a profile bus. SAS disks sit on a SCSI host (inventory.sh reports `scsi`).
pub fn bus_transports(bus: DiskBus) -> &'static [&'static str] {
    match bus {
        DiskBus::Nvme => &["nvme"],
        DiskBus::Sata => &["sata"],
        DiskBus::Sas => &["sas", "scsi"],
        DiskBus::Virtio => &["virtio"],
        DiskBus::Scsi => &["scsi"],
        DiskBus::Usb => &["usb"],
    }
}

pub fn bus_name(bus: DiskBus) -> &'static str {
    match bus {
        DiskBus::Nvme => "nvme",
        DiskBus::Sata => "sata",
        DiskBus::Sas => "sas",
        DiskBus::Virtio => "virtio",
        DiskBus::Scsi => "scsi",
        DiskBus::Usb => "usb",
    }
}

fn disk_ids(d: &DiskSpec) -> Vec<String> {
    if d.count <= 1 { vec![d.name.clone()] } else { (0..d.count).map(|i| format!("{}[{i}]", d.name)).collect() }
}

fn hardware_nic(n: &NicSpec) -> ExpectedNic {
    ExpectedNic {
        name: n.name.clone(),
        driver: n.driver.clone(),
        pci_id: n.pci_id.clone(),
        mac: None,
        bus_path: n.bus_path.clone(),
    }
}

pub(super) fn nic_text(n: &ExpectedNic) -> String {
    let mut s = format!("driver {}, PCI ID {}", n.driver, n.pci_id);
    if let Some(m) = n.mac {
        s.push_str(&format!(", MAC {m}"));
    }
    if let Some(b) = &n.bus_path {
        s.push_str(&format!(", bus path {b}"));
    }
    s
}

pub(super) fn gpu_text(count: u32, model: &str, pci_id: &str) -> String {
    format!("{count} × {model} ({pci_id})")
}
