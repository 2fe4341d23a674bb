//! A lab VM, resolved: one node's hardware profile (its `emulation` sections) plus what only the lab knows
//! (the node's name, MACs, SMBIOS identity, boot medium, and where its sockets, logs, firmware variables, TPM
//! state and disk images live) become a [`VmPlan`]: plain data from which the QEMU and swtpm command lines
//! are pure functions (`args`), and which later pieces (the VM supervisor, the lab network) fill in or read:
//! every path and tap name is a field.
//!
//! Identity is deterministic: MACs and the SMBIOS UUID are derived from the lab and node names, so the same
//! cluster file gives the same VMs on every run and machine (a node's `mac:` in the cluster file wins for its
//! primary NIC). Lab disk serials are the profile's `emulation.serial` prefix plus the disk's index among its
//! `count` identical disks (`TF-OSD-0`, `R760-OSD-7`), as `talforge qualify` expects them.
//!
//! What the lab cannot build is listed, never faked: GPUs and parts without an `emulation` section go to
//! [`VmPlan::not_emulated`]; parts built as a different device than the real one (an E810 port as an e1000e,
//! a 3.2 TB NVMe drive as a 20 GiB one) go to [`VmPlan::approximated`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use talforge_builder::plan::profile::ResolvedProfile;
use talforge_builder::spec::profile::{Arch, DiskBus, DiskDevice, DiskRole, DiskSpec, FirmwareKind, NicModel};
use talforge_builder::spec::units::{ByteSize, MacAddr};

use super::QemuError;
use super::firmware::FirmwarePaths;
use crate::qualify::{QEMU_DISK_MODEL, QEMU_NVME_MODEL, emulated_nic_pci_id, glob_match};

/// PCI slots q35 leaves free on its root bus (pcie.0): 1 to 30 (0 is the host bridge, 31 the ICH9 LPC, SATA
/// and SMBus functions). QEMU 7.2 refuses the 31st device: "PCI: no slot/function available".
pub const PCI_SLOTS: usize = 30;

/// Longest serial every emulated bus carries unchanged: NVMe's serial number field, ATA IDENTIFY's serial
/// and virtio-blk's ID string are 20 bytes.
pub const MAX_SERIAL_LEN: usize = 20;

/// A Unix socket path must fit `sun_path` (108 bytes with the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Ports of one AHCI controller (the q35 built-in one is `ide.0`..`ide.5`).
pub const AHCI_PORTS: usize = 6;

/// What the lab knows about a node beyond its profile.
#[derive(Clone, Debug)]
pub struct NodeInputs {
    /// The cluster's name (seeds MACs, the SMBIOS UUID and tap names).
    pub lab: String,
    pub node: String,
    /// This VM's folder: sockets, console log, firmware variables, TPM state, disk images.
    pub work_dir: PathBuf,
    pub boot: BootMedium,
    /// MACs by profile NIC name (the cluster file's `mac:` belongs to the primary NIC); other NICs get
    /// [`derived_mac`].
    pub macs: BTreeMap<String, MacAddr>,
    /// The cluster file's `lab.cpus` / `lab.memory`, overriding the profile's `emulation`.
    pub cpus: Option<u32>,
    pub memory: Option<ByteSize>,
    /// Default: [`derived_uuid`].
    pub smbios_uuid: Option<SmbiosUuid>,
    /// Default: the node name.
    pub smbios_serial: Option<String>,
    pub firmware: FirmwarePaths,
}

impl NodeInputs {
    /// Inputs with every default: derived MACs and UUID, the profile's CPUs and memory, Debian's OVMF.
    pub fn new(lab: &str, node: &str, work_dir: &Path, boot: BootMedium) -> NodeInputs {
        NodeInputs {
            lab: lab.to_owned(),
            node: node.to_owned(),
            work_dir: work_dir.to_owned(),
            boot,
            macs: BTreeMap::new(),
            cpus: None,
            memory: None,
            smbios_uuid: None,
            smbios_serial: None,
            firmware: FirmwarePaths::debian(),
        }
    }
}

/// How the VM boots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum BootMedium {
    /// From the install disk, whose image the caller wrote (a metal image) before the VM starts.
    InstallDisk,
    /// QEMU loads a kernel and initramfs itself (as PXE would), with this command line.
    Kernel { kernel: PathBuf, initrd: PathBuf, cmdline: String },
    /// From an ISO on an AHCI CD-ROM, ahead of the install disk.
    Cdrom { iso: PathBuf },
}

/// What QEMU does when the guest reboots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum RebootAction {
    /// Reset and keep running (QMP `RESET` event): Secure Boot key enrollment reboots once, Talos reboots
    /// after an upgrade, and the same disk boots again.
    Reset,
    /// Exit (`-no-reboot`; QMP `SHUTDOWN` with reason `guest-reset`): after installing from a kernel or an
    /// ISO, the supervisor relaunches the VM from its disk.
    Exit,
}

/// A resolved lab VM: everything its QEMU, swtpm and files are made from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmPlan {
    pub lab: String,
    pub node: String,
    pub profile: String,
    /// `q35` or a versioned `pc-q35-*`.
    pub machine: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub firmware: FirmwarePlan,
    pub tpm: Option<TpmPlan>,
    pub smbios: SmbiosPlan,
    pub nics: Vec<NicPlan>,
    pub disks: Vec<DiskPlan>,
    pub boot: BootMedium,
    pub reboot: RebootAction,
    pub console: ConsolePlan,
    /// QMP server socket (QEMU listens; the supervisor connects).
    pub qmp_socket: PathBuf,
    pub not_emulated: Vec<NotEmulated>,
    pub approximated: Vec<Approximation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum FirmwarePlan {
    /// QEMU's built-in SeaBIOS.
    Bios,
    /// OVMF: read-only `code`, and this VM's own copy (`vars`) of the variable store `vars_template`.
    Uefi { code: PathBuf, vars_template: PathBuf, vars: PathBuf, secure_boot: bool },
}

/// swtpm's files for a TPM 2.0.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmPlan {
    pub state_dir: PathBuf,
    /// swtpm's control socket (swtpm listens; QEMU connects).
    pub socket: PathBuf,
    pub log: PathBuf,
}

/// SMBIOS type 1 (system) strings, and type 11 OEM strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SmbiosPlan {
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    pub version: Option<String>,
    pub family: Option<String>,
    pub sku: Option<String>,
    pub serial: String,
    pub uuid: SmbiosUuid,
    /// Type 11 strings, e.g. `io.systemd.stub.kernel-cmdline-extra=talos.config=...` for UKI boots.
    pub oem_strings: Vec<String>,
}

/// The serial console: a socket QEMU listens on, and a log of everything the guest wrote (kept whether or
/// not anyone is connected).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsolePlan {
    pub socket: PathBuf,
    pub log: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NicPlan {
    /// The profile's logical NIC name.
    pub name: String,
    pub model: NicModel,
    pub mac: MacAddr,
    /// Host tap device the NIC is attached to (made by the lab network before QEMU starts).
    pub tap: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskPlan {
    /// `name`, or `name[i]` for one of `count` identical disks (as `talforge qualify` names them).
    pub id: String,
    pub name: String,
    pub index: u32,
    pub role: DiskRole,
    pub device: DiskDevice,
    pub serial: String,
    /// Bytes; the image file is created with exactly this size (sparse).
    pub size: u64,
    pub logical_block_size: Option<u32>,
    /// Reported to the guest where the bus can say it (SCSI and SATA: `rotation_rate`).
    pub rotational: Option<bool>,
    /// The raw image file.
    pub image: PathBuf,
}

/// A part of the real machine the lab does not build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotEmulated {
    /// `nics.<name>`, `disks.<id>`, `gpus[<i>]`.
    pub part: String,
    pub real: String,
    pub reason: String,
}

/// A part the lab builds as something other than the real one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Approximation {
    pub part: String,
    pub real: String,
    pub lab: String,
}

/// An SMBIOS system UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SmbiosUuid(pub [u8; 16]);

impl fmt::Display for SmbiosUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Serialize for SmbiosUuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().into()
}

/// The MAC of a node's NIC number `index` when the cluster file gives none: `02:` (locally administered,
/// unicast) and five bytes of SHA-256 over the lab, node and index.
pub fn derived_mac(lab: &str, node: &str, index: usize) -> MacAddr {
    let h = digest(&["talforge-mac", lab, node, &index.to_string()]);
    MacAddr([0x02, h[0], h[1], h[2], h[3], h[4]])
}

/// A node's SMBIOS UUID: an RFC 9562 version 8 (custom) UUID of SHA-256 over the lab and node names.
pub fn derived_uuid(lab: &str, node: &str) -> SmbiosUuid {
    let h = digest(&["talforge-smbios-uuid", lab, node]);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    SmbiosUuid(b)
}

/// A tap device name for a node's NIC number `index`, unique per lab and node and within Linux's 15
/// characters: `tf` + 8 hex digits of SHA-256 over the lab and node + `n<index>`.
pub fn derived_tap_name(lab: &str, node: &str, index: usize) -> String {
    let h = digest(&["talforge-tap", lab, node]);
    format!("tf{:02x}{:02x}{:02x}{:02x}n{index}", h[0], h[1], h[2], h[3])
}

/// The QEMU device a lab disk is, for reports.
pub fn disk_device_name(d: DiskDevice) -> &'static str {
    match d {
        DiskDevice::VirtioBlk => "virtio-blk",
        DiskDevice::Nvme => "nvme",
        DiskDevice::VirtioScsi => "scsi-hd on virtio-scsi",
        DiskDevice::Megasas => "scsi-hd on megasas-gen2",
        DiskDevice::Ahci => "ide-hd on AHCI",
    }
}

/// Turns a node's resolved profile and the lab's inputs into its VM.
pub fn resolve_vm(profile: &ResolvedProfile, inputs: &NodeInputs) -> Result<VmPlan, QemuError> {
    let pname = || profile.name.clone();
    if profile.arch != Arch::Amd64 {
        return Err(QemuError::UnsupportedArch { profile: pname(), arch: profile.arch.as_str().to_owned() });
    }
    let machine = profile.emulation.machine.clone();
    if machine != "q35" && !machine.starts_with("pc-q35-") {
        return Err(QemuError::UnsupportedMachine { profile: pname(), machine });
    }
    let cpus = inputs.cpus.unwrap_or(profile.emulation.cpus);
    if cpus == 0 {
        return Err(QemuError::Zero { profile: pname(), field: "emulation.cpus" });
    }
    let memory = inputs.memory.unwrap_or(profile.emulation.memory).bytes();
    if memory == 0 {
        return Err(QemuError::Zero { profile: pname(), field: "emulation.memory" });
    }
    // QEMU takes whole MiB.
    let memory_mib = memory.div_ceil(ByteSize::MIB);

    let work = &inputs.work_dir;
    let firmware = match profile.firmware.kind {
        FirmwareKind::Bios => FirmwarePlan::Bios,
        FirmwareKind::Uefi => {
            let secure_boot = profile.firmware.secure_boot;
            FirmwarePlan::Uefi {
                code: if secure_boot { inputs.firmware.code_secure_boot.clone() } else { inputs.firmware.code.clone() },
                vars_template: inputs.firmware.vars_template.clone(),
                vars: work.join("OVMF_VARS.fd"),
                secure_boot,
            }
        }
    };
    let tpm = profile.firmware.tpm.then(|| TpmPlan {
        state_dir: work.join("tpm"),
        socket: work.join("tpm.sock"),
        log: work.join("tpm.log"),
    });

    let mut not_emulated = Vec::new();
    let mut approximated = Vec::new();
    let (nics, given_macs) = resolve_nics(profile, inputs, &mut not_emulated, &mut approximated)?;
    if let Some(name) = given_macs.into_iter().next() {
        let known: Vec<&str> = nics.iter().map(|n| n.name.as_str()).collect();
        return Err(QemuError::UnknownNic {
            node: inputs.node.clone(),
            nic: name,
            known: if known.is_empty() { "none".into() } else { known.join(", ") },
        });
    }
    let disks = resolve_disks(profile, work, &mut not_emulated, &mut approximated)?;
    for (i, g) in profile.gpus.iter().enumerate() {
        not_emulated.push(NotEmulated {
            part: format!("gpus[{i}]"),
            real: format!("{} × {} ({})", g.count, g.model, g.pci_id),
            reason: "GPUs are not emulated; talforge qualify checks them on real hardware".into(),
        });
    }
    if let (Some(s), Some(c), Some(t)) = (profile.cpu.sockets, profile.cpu.cores, profile.cpu.threads)
        && u64::from(s) * u64::from(c) * u64::from(t) != u64::from(cpus)
    {
        let model = profile.cpu.model.as_deref().map(|m| format!("{m}, ")).unwrap_or_default();
        approximated.push(Approximation {
            part: "cpu".into(),
            real: format!("{model}{s} sockets × {c} cores × {t} threads"),
            lab: format!("{cpus} vCPUs"),
        });
    }
    if let Some(m) = profile.memory
        && m.bytes() != memory_mib * ByteSize::MIB
    {
        approximated.push(Approximation {
            part: "memory".into(),
            real: m.to_string(),
            lab: ByteSize(memory_mib * ByteSize::MIB).to_string(),
        });
    }

    let pci = nics.len()
        + disks.iter().filter(|d| matches!(d.device, DiskDevice::VirtioBlk | DiskDevice::Nvme)).count()
        + [DiskDevice::VirtioScsi, DiskDevice::Megasas]
            .iter()
            .filter(|dev| disks.iter().any(|d| d.device == **dev))
            .count()
        + extra_ahci_controllers(&disks, &inputs.boot);
    if pci > PCI_SLOTS {
        return Err(QemuError::TooManyPciDevices { profile: pname(), needed: pci, available: PCI_SLOTS });
    }

    let s = &profile.emulation.smbios;
    let vm = VmPlan {
        lab: inputs.lab.clone(),
        node: inputs.node.clone(),
        profile: pname(),
        machine: profile.emulation.machine.clone(),
        cpus,
        memory_mib,
        firmware,
        tpm,
        smbios: SmbiosPlan {
            manufacturer: s.manufacturer.clone(),
            product: s.product.clone(),
            version: s.version.clone(),
            family: s.family.clone(),
            sku: s.sku.clone(),
            serial: inputs.smbios_serial.clone().unwrap_or_else(|| inputs.node.clone()),
            uuid: inputs.smbios_uuid.unwrap_or_else(|| derived_uuid(&inputs.lab, &inputs.node)),
            oem_strings: Vec::new(),
        },
        nics,
        disks,
        reboot: match inputs.boot {
            BootMedium::InstallDisk => RebootAction::Reset,
            BootMedium::Kernel { .. } | BootMedium::Cdrom { .. } => RebootAction::Exit,
        },
        boot: inputs.boot.clone(),
        console: ConsolePlan { socket: work.join("console.sock"), log: work.join("console.log") },
        qmp_socket: work.join("qmp.sock"),
        not_emulated,
        approximated,
    };
    check_paths(&vm)?;
    Ok(vm)
}

/// The emulated NICs, and the names of given MACs no emulated NIC took.
fn resolve_nics(
    profile: &ResolvedProfile,
    inputs: &NodeInputs,
    not_emulated: &mut Vec<NotEmulated>,
    approximated: &mut Vec<Approximation>,
) -> Result<(Vec<NicPlan>, Vec<String>), QemuError> {
    let mut macs = inputs.macs.clone();
    let mut nics = Vec::new();
    for (i, n) in profile.nics.iter().enumerate() {
        let model = n.model.as_deref().map(|m| format!(" ({m})")).unwrap_or_default();
        let real = format!("driver {}, PCI ID {}{model}", n.driver, n.pci_id);
        let Some(e) = &n.emulation else {
            not_emulated.push(NotEmulated {
                part: format!("nics.{}", n.name),
                real,
                reason: "the NIC has no emulation section".into(),
            });
            continue;
        };
        let lab_driver = e.model.guest_driver();
        let lab_pci = emulated_nic_pci_id(e.model);
        if n.driver != lab_driver || n.pci_id != lab_pci {
            approximated.push(Approximation {
                part: format!("nics.{}", n.name),
                real,
                lab: format!("QEMU {}: driver {lab_driver}, PCI ID {lab_pci}", e.model.qemu_device()),
            });
        }
        let mac = macs.remove(&n.name).unwrap_or_else(|| derived_mac(&inputs.lab, &inputs.node, i));
        if mac.0[0] & 1 != 0 {
            return Err(QemuError::BadMac {
                node: inputs.node.clone(),
                mac: mac.to_string(),
                problem: "is a multicast address (the first byte's lowest bit is set)".into(),
            });
        }
        if let Some(other) = nics.iter().find(|o: &&NicPlan| o.mac == mac) {
            return Err(QemuError::BadMac {
                node: inputs.node.clone(),
                mac: mac.to_string(),
                problem: format!("is given to both {} and {}", other.name, n.name),
            });
        }
        nics.push(NicPlan {
            name: n.name.clone(),
            model: e.model,
            mac,
            tap: derived_tap_name(&inputs.lab, &inputs.node, i),
        });
    }
    Ok((nics, macs.into_keys().collect()))
}

fn resolve_disks(
    profile: &ResolvedProfile,
    work: &Path,
    not_emulated: &mut Vec<NotEmulated>,
    approximated: &mut Vec<Approximation>,
) -> Result<Vec<DiskPlan>, QemuError> {
    let mut disks = Vec::new();
    let mut serials: BTreeMap<String, String> = BTreeMap::new();
    for d in &profile.disks {
        let count = d.count.max(1);
        let real = disk_text(bus_str(d.bus), d.size, d.model.as_deref(), count);
        let Some(e) = &d.emulation else {
            if d.role == DiskRole::Install {
                return Err(QemuError::InstallDiskNotEmulated { profile: profile.name.clone(), disk: d.name.clone() });
            }
            not_emulated.push(NotEmulated {
                part: format!("disks.{}", d.name),
                real,
                reason: "the disk has no emulation section".into(),
            });
            continue;
        };
        let size = e.size.unwrap_or(d.size);
        check_block_size(profile, d, e.device, e.logical_block_size)?;
        let lab_model = match e.device {
            DiskDevice::VirtioBlk => None,
            DiskDevice::Nvme => Some(QEMU_NVME_MODEL),
            DiskDevice::VirtioScsi | DiskDevice::Megasas | DiskDevice::Ahci => Some(QEMU_DISK_MODEL),
        };
        let lab_bus = disk_device_name(e.device);
        let same_bus = matches!(
            (bus_str(d.bus), e.device),
            ("virtio", DiskDevice::VirtioBlk)
                | ("nvme", DiskDevice::Nvme)
                | ("sata", DiskDevice::Ahci)
                | ("scsi", DiskDevice::VirtioScsi | DiskDevice::Megasas)
        );
        if !same_bus || size != d.size || (d.model.is_some() && d.model.as_deref() != lab_model) {
            approximated.push(Approximation {
                part: format!("disks.{}", d.name),
                real,
                lab: disk_text(lab_bus, size, lab_model, count),
            });
        }
        let prefix = e.serial.clone().unwrap_or_else(|| format!("{}-", d.name.to_ascii_uppercase()));
        for index in 0..count {
            let id = if count == 1 { d.name.clone() } else { format!("{}[{index}]", d.name) };
            let serial = format!("{prefix}{index}");
            let bad = |problem: String| QemuError::BadSerial {
                profile: profile.name.clone(),
                disk: id.clone(),
                serial: serial.clone(),
                problem,
            };
            if serial.len() > MAX_SERIAL_LEN || !serial.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(bad(format!(
                    "expected at most {MAX_SERIAL_LEN} printable ASCII characters without spaces (NVMe, ATA and \
                     virtio-blk carry 20)"
                )));
            }
            if let Some(pattern) = &d.serial
                && !glob_match(pattern, &serial)
            {
                return Err(bad(format!(
                    "does not match the disk's serial pattern {pattern:?}, so selectors written for the real disk \
                     would miss the lab's; set emulation.serial to a prefix the pattern matches"
                )));
            }
            if let Some(other) = serials.insert(serial.clone(), id.clone()) {
                return Err(bad(format!("disk {other} has the same serial")));
            }
            let file = match count {
                1 => format!("disk-{}.raw", file_safe(&d.name)),
                _ => format!("disk-{}-{index}.raw", file_safe(&d.name)),
            };
            disks.push(DiskPlan {
                id,
                name: d.name.clone(),
                index,
                role: d.role,
                device: e.device,
                serial,
                size: size.bytes(),
                logical_block_size: e.logical_block_size,
                rotational: d.rotational,
                image: work.join(file),
            });
        }
    }
    Ok(disks)
}

/// QEMU's block devices take power-of-two block sizes; Linux reads up to the page size (4096). IDE (the
/// AHCI disks) takes only 512: QEMU 7.2 says "discard_granularity must be 512 for ide" for 4096.
fn check_block_size(
    profile: &ResolvedProfile,
    d: &DiskSpec,
    device: DiskDevice,
    size: Option<u32>,
) -> Result<(), QemuError> {
    let Some(size) = size else { return Ok(()) };
    let (ok, supported) = match device {
        DiskDevice::Ahci => (size == 512, "512"),
        _ => (size == 512 || size == 4096, "512 or 4096"),
    };
    if ok {
        Ok(())
    } else {
        Err(QemuError::UnsupportedBlockSize {
            profile: profile.name.clone(),
            disk: d.name.clone(),
            device: disk_device_name(device),
            supported,
            found: size,
        })
    }
}

fn bus_str(bus: DiskBus) -> &'static str {
    match bus {
        DiskBus::Nvme => "nvme",
        DiskBus::Sata => "sata",
        DiskBus::Sas => "sas",
        DiskBus::Virtio => "virtio",
        DiskBus::Scsi => "scsi",
        DiskBus::Usb => "usb",
    }
}

fn disk_text(bus: &str, size: ByteSize, model: Option<&str>, count: u32) -> String {
    let model = model.map(|m| format!(" {m:?}")).unwrap_or_default();
    let count = if count > 1 { format!(" × {count}") } else { String::new() };
    format!("{bus} {size}{model}{count}")
}

fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

/// AHCI controllers beyond q35's built-in one: ports for the SATA disks and the CD-ROM, six per controller.
pub(crate) fn extra_ahci_controllers(disks: &[DiskPlan], boot: &BootMedium) -> usize {
    let ports = disks.iter().filter(|d| d.device == DiskDevice::Ahci).count()
        + usize::from(matches!(boot, BootMedium::Cdrom { .. }));
    ports.saturating_sub(1) / AHCI_PORTS
}

fn check_paths(vm: &VmPlan) -> Result<(), QemuError> {
    let mut sockets = vec![("QMP socket", &vm.qmp_socket), ("console socket", &vm.console.socket)];
    if let Some(t) = &vm.tpm {
        sockets.push(("TPM socket", &t.socket));
    }
    for (what, path) in sockets {
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(QemuError::BadPath {
                node: vm.node.clone(),
                what,
                path: path.clone(),
                problem: "a Unix socket path must be shorter than 108 bytes; use a shorter work folder",
            });
        }
    }
    if let Some(t) = &vm.tpm {
        // swtpm splits its options at commas and has no escape for them.
        for (what, path) in [("TPM state folder", &t.state_dir), ("TPM socket", &t.socket), ("TPM log", &t.log)] {
            if path.as_os_str().as_encoded_bytes().contains(&b',') {
                return Err(QemuError::BadPath {
                    node: vm.node.clone(),
                    what,
                    path: path.clone(),
                    problem: "swtpm cannot take a path with a comma",
                });
            }
        }
    }
    let mut seen = BTreeSet::new();
    for n in &vm.nics {
        if n.tap.is_empty()
            || n.tap.len() > 15
            || !n.tap.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            || !seen.insert(n.tap.as_str())
        {
            return Err(QemuError::BadTapName { node: vm.node.clone(), name: n.tap.clone() });
        }
    }
    Ok(())
}

impl VmPlan {
    /// Checks a plan the caller changed (tap names, socket paths) the way [`resolve_vm`] checks its own.
    pub fn check(&self) -> Result<(), QemuError> {
        check_paths(self)
    }

    /// MACs by profile NIC name, as `talforge qualify` takes them.
    pub fn macs(&self) -> BTreeMap<String, MacAddr> {
        self.nics.iter().map(|n| (n.name.clone(), n.mac)).collect()
    }

    pub fn install_disk(&self) -> Option<&DiskPlan> {
        self.disks.iter().find(|d| d.role == DiskRole::Install)
    }
}
