//! Resolving a hardware profile: follow its `extends` chain, merge, fill defaults, and check the result.
//!
//! Merge rules (also in hardware-profiles/README.md): scalar fields and the `firmware`, `cpu`, `emulation`
//! sections merge field by field with the child winning; `nics`, `bonds`, `disks` and `gpus` replace the
//! parent's list when the child gives one; `extensions`, `kernelArgs` and `kernelModules` append; `sysctls`
//! merge per key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{Diagnostic, Error, Result};
use crate::spec::Source;
use crate::spec::catalog::{Catalog, LoadedProfile};
use crate::spec::profile::{
    Arch, BondSpec, Bootloader, CpuSpec, CpuVendor, DiskRole, DiskSpec, EmulationSpec, FirmwareKind, GpuSpec,
    GpuVendor, KernelModuleSpec, NicSpec, SmbiosSpec,
};
use crate::spec::units::ByteSize;
use crate::yaml::FieldPath;

/// Kernel features built into the Talos kernel (siderolabs/pkgs kernel config): listing them as modules
/// makes the module load fail at boot, so profiles and overlays may not.
pub const BUILT_IN_MODULES: &[&str] =
    &["rbd", "ceph", "kvm", "kvm_intel", "kvm_amd", "vhost_net", "tun", "ptp_kvm", "libceph"];

/// A profile with its chain merged and defaults filled in.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedProfile {
    pub name: String,
    /// The profile and its ancestors, child first.
    pub chain: Vec<String>,
    #[serde(skip)]
    pub files: Vec<PathBuf>,
    pub description: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub arch: Arch,
    pub firmware: Firmware,
    pub cpu: CpuSpec,
    pub memory: Option<ByteSize>,
    pub nics: Vec<NicSpec>,
    pub bonds: Vec<BondSpec>,
    pub disks: Vec<DiskSpec>,
    pub gpus: Vec<GpuSpec>,
    /// Extensions the profile asks for, including those its hardware implies (microcode, NIC firmware,
    /// GPU drivers), sorted and without duplicates.
    pub extensions: Vec<String>,
    pub kernel_args: Vec<String>,
    pub kernel_modules: Vec<KernelModuleSpec>,
    pub sysctls: BTreeMap<String, String>,
    pub emulation: Emulation,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Firmware {
    pub kind: FirmwareKind,
    pub secure_boot: bool,
    pub tpm: bool,
    pub serial_console: Option<String>,
    pub bootloader: Bootloader,
    /// Where the boot loader was decided (`firmware.bootloader`, or `firmware.type` for the default), for
    /// errors about it.
    #[serde(skip)]
    pub bootloader_at: Diagnostic,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Emulation {
    pub machine: String,
    pub cpus: u32,
    pub memory: ByteSize,
    pub smbios: SmbiosSpec,
}

impl ResolvedProfile {
    /// The NIC that carries the node's address: the one marked primary, else the first NIC.
    pub fn primary_nic(&self) -> Option<&NicSpec> {
        self.nics.iter().find(|n| n.primary).or_else(|| self.nics.first())
    }

    pub fn install_disk(&self) -> Option<&DiskSpec> {
        self.disks.iter().find(|d| d.role == DiskRole::Install)
    }

    pub fn osd_disks(&self) -> impl Iterator<Item = &DiskSpec> {
        self.disks.iter().filter(|d| d.role == DiskRole::Osd)
    }
}

/// Where a merged list came from, for error positions.
#[derive(Clone, Copy, Debug, Default)]
struct Origin(usize);

/// Loads `name` and its ancestors from the catalog and resolves them.
pub fn resolve_profile(catalog: &Catalog, name: &str) -> Result<ResolvedProfile> {
    let mut chain: Vec<LoadedProfile> = Vec::new();
    let mut next = Some(name.to_owned());
    while let Some(n) = next {
        if let Some(pos) = chain.iter().position(|p| p.spec.name == n) {
            let cycle: Vec<&str> =
                chain[pos..].iter().map(|p| p.spec.name.as_str()).chain(std::iter::once(n.as_str())).collect();
            let last = chain.last().map(|p| &p.source);
            let msg = format!("profile {n:?} extends itself: {}", cycle.join(" → "));
            return Err(match last {
                Some(src) => src.diag(FieldPath::root().key("extends"), msg).into(),
                None => Error::Internal(msg),
            });
        }
        let loaded = match catalog.load_profile(&n) {
            Some(r) => r?,
            None => {
                let msg = format!("unknown hardware profile {n:?}; known: {}", catalog.known_profiles());
                return Err(match chain.last() {
                    Some(child) => child.source.diag(FieldPath::root().key("extends"), msg).into(),
                    None => Error::Internal(msg),
                });
            }
        };
        next = loaded.spec.extends.clone();
        chain.push(loaded);
    }
    merge_chain(&chain)
}

fn merge_chain(chain: &[LoadedProfile]) -> Result<ResolvedProfile> {
    // Walk from the root ancestor to the child so later (child) values win.
    let mut description = None;
    let mut vendor = None;
    let mut model = None;
    let mut arch = None;
    let mut fw_kind = None;
    let mut fw_kind_origin = Origin(0);
    let mut bootloader: Option<(Bootloader, Origin)> = None;
    let mut secure_boot = None;
    let mut tpm = None;
    let mut serial_console = None;
    let mut cpu = CpuSpec::default();
    let mut memory = None;
    let mut nics: (Vec<NicSpec>, Origin) = (Vec::new(), Origin(0));
    let mut bonds: (Vec<BondSpec>, Origin) = (Vec::new(), Origin(0));
    let mut disks: (Vec<DiskSpec>, Origin) = (Vec::new(), Origin(0));
    let mut gpus: (Vec<GpuSpec>, Origin) = (Vec::new(), Origin(0));
    let mut extensions: Vec<(String, Origin, usize)> = Vec::new();
    let mut kernel_args: Vec<(String, Origin, usize)> = Vec::new();
    let mut kernel_modules: Vec<(KernelModuleSpec, Origin, usize)> = Vec::new();
    let mut sysctls = BTreeMap::new();
    let mut emulation = EmulationSpec::default();

    for (idx, lp) in chain.iter().enumerate().rev() {
        let s = &lp.spec;
        let o = Origin(idx);
        macro_rules! take {
            ($dst:ident, $src:expr) => {
                if let Some(v) = $src.clone() {
                    $dst = Some(v);
                }
            };
        }
        take!(description, s.description);
        take!(vendor, s.vendor);
        take!(model, s.model);
        take!(arch, s.arch);
        take!(memory, s.memory);
        if let Some(fw) = &s.firmware {
            if fw.kind.is_some() {
                fw_kind = fw.kind;
                fw_kind_origin = o;
            }
            if let Some(b) = fw.bootloader {
                bootloader = Some((b, o));
            }
            take!(secure_boot, fw.secure_boot);
            take!(tpm, fw.tpm);
            take!(serial_console, fw.serial_console);
        }
        if let Some(c) = &s.cpu {
            if c.vendor.is_some() {
                cpu.vendor = c.vendor;
            }
            if c.model.is_some() {
                cpu.model.clone_from(&c.model);
            }
            if c.sockets.is_some() {
                cpu.sockets = c.sockets;
            }
            if c.cores.is_some() {
                cpu.cores = c.cores;
            }
            if c.threads.is_some() {
                cpu.threads = c.threads;
            }
        }
        if let Some(v) = &s.nics {
            nics = (v.clone(), o);
        }
        if let Some(v) = &s.bonds {
            bonds = (v.clone(), o);
        }
        if let Some(v) = &s.disks {
            disks = (v.clone(), o);
        }
        if let Some(v) = &s.gpus {
            gpus = (v.clone(), o);
        }
        extensions.extend(s.extensions.iter().enumerate().map(|(i, e)| (e.clone(), o, i)));
        kernel_args.extend(s.kernel_args.iter().enumerate().map(|(i, e)| (e.clone(), o, i)));
        kernel_modules.extend(s.kernel_modules.iter().enumerate().map(|(i, e)| (e.clone(), o, i)));
        sysctls.extend(s.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(e) = &s.emulation {
            if e.machine.is_some() {
                emulation.machine.clone_from(&e.machine);
            }
            if e.cpus.is_some() {
                emulation.cpus = e.cpus;
            }
            if e.memory.is_some() {
                emulation.memory = e.memory;
            }
            if let Some(sm) = &e.smbios {
                let dst = emulation.smbios.get_or_insert_with(SmbiosSpec::default);
                for (d, v) in [
                    (&mut dst.manufacturer, &sm.manufacturer),
                    (&mut dst.product, &sm.product),
                    (&mut dst.version, &sm.version),
                    (&mut dst.family, &sm.family),
                    (&mut dst.sku, &sm.sku),
                ] {
                    if v.is_some() {
                        d.clone_from(v);
                    }
                }
            }
        }
    }

    let src = |o: Origin| -> &Source { &chain[o.0].source };
    let child = &chain[0];
    let mut errors: Vec<Diagnostic> = Vec::new();
    let root = FieldPath::root();

    // NICs.
    let (nic_list, no) = &nics;
    if nic_list.is_empty() {
        errors.push(child.source.diag(root.key("nics"), "a profile needs at least one NIC (here or in a parent)"));
    }
    let mut seen = BTreeSet::new();
    let bond_names: BTreeSet<&str> = bonds.0.iter().map(|b| b.name.as_str()).collect();
    for (i, n) in nic_list.iter().enumerate() {
        let p = root.key("nics").index(i);
        if !is_link_name(&n.name) {
            errors.push(src(*no).diag(
                p.key("name"),
                format!("expected a link name ([a-z][a-z0-9]*, at most 15 characters); found {:?}", n.name),
            ));
        }
        if !seen.insert(n.name.as_str()) {
            errors.push(src(*no).diag(p.key("name"), format!("duplicate NIC name {:?}", n.name)));
        }
        if !is_pci_id(&n.pci_id) {
            errors.push(src(*no).diag(
                p.key("pciID"),
                format!("expected a PCI vendor:device ID like 8086:159b (lowercase hex); found {:?}", n.pci_id),
            ));
        }
        if n.driver.is_empty() || n.driver.contains(char::is_whitespace) {
            errors.push(src(*no).diag(p.key("driver"), format!("expected a Linux driver name; found {:?}", n.driver)));
        }
        if let Some(b) = &n.bond
            && !bond_names.contains(b.as_str())
        {
            errors.push(src(*no).diag(
                p.key("bond"),
                format!("unknown bond {b:?}; bonds defined: {}", join_or_none(bond_names.iter().copied())),
            ));
        }
    }
    let primaries: Vec<usize> = nic_list.iter().enumerate().filter(|(_, n)| n.primary).map(|(i, _)| i).collect();
    if primaries.len() > 1 {
        errors.push(src(*no).diag(
            root.key("nics").index(primaries[1]).key("primary"),
            format!("only one NIC can be primary; nics[{}] already is", primaries[0]),
        ));
    }
    for (i, b) in bonds.0.iter().enumerate() {
        let p = root.key("bonds").index(i);
        if !is_link_name(&b.name) {
            errors.push(src(bonds.1).diag(p.key("name"), format!("expected a link name; found {:?}", b.name)));
        }
        if !nic_list.iter().any(|n| n.bond.as_deref() == Some(b.name.as_str())) {
            errors.push(
                src(bonds.1).diag(p, format!("bond {:?} has no member NICs (set `bond: {}` on them)", b.name, b.name)),
            );
        }
    }

    // Disks.
    let (disk_list, d_o) = &disks;
    let mut seen = BTreeSet::new();
    for (i, d) in disk_list.iter().enumerate() {
        let p = root.key("disks").index(i);
        if !seen.insert(d.name.as_str()) {
            errors.push(src(*d_o).diag(p.key("name"), format!("duplicate disk name {:?}", d.name)));
        }
        if d.count == 0 {
            errors.push(src(*d_o).diag(p.key("count"), "expected at least 1"));
        }
        if d.role == DiskRole::Install && d.count != 1 {
            errors.push(src(*d_o).diag(p.key("count"), "the install disk must be a single disk (count: 1)"));
        }
    }
    let installs: Vec<usize> =
        disk_list.iter().enumerate().filter(|(_, d)| d.role == DiskRole::Install).map(|(i, _)| i).collect();
    if installs.is_empty() {
        errors.push(
            child.source.diag(root.key("disks"), "a profile needs exactly one disk with role install; found none"),
        );
    } else if installs.len() > 1 {
        errors.push(src(*d_o).diag(
            root.key("disks").index(installs[1]).key("role"),
            format!("a profile needs exactly one disk with role install; disks[{}] already is", installs[0]),
        ));
    }

    // GPUs.
    for (i, g) in gpus.0.iter().enumerate() {
        let p = root.key("gpus").index(i);
        if g.emulated {
            errors.push(src(gpus.1).diag(
                p.key("emulated"),
                "GPUs cannot be emulated by the lab; set emulated: false (they are checked on real hardware only)",
            ));
        }
        if !is_pci_id(&g.pci_id) {
            errors.push(
                src(gpus.1).diag(p.key("pciID"), format!("expected a PCI vendor:device ID; found {:?}", g.pci_id)),
            );
        }
    }

    // Lists that append across the chain.
    for (e, o, i) in &extensions {
        if let Err(m) = check_extension_name(e) {
            errors.push(src(*o).diag(root.key("extensions").index(*i), m));
        }
    }
    for (a, o, i) in &kernel_args {
        if let Err(m) = check_kernel_arg(a) {
            errors.push(src(*o).diag(root.key("kernelArgs").index(*i), m));
        }
    }
    for (m, o, i) in &kernel_modules {
        if let Err(msg) = check_kernel_module(&m.name) {
            errors.push(src(*o).diag(root.key("kernelModules").index(*i).key("name"), msg));
        }
    }

    let kind = fw_kind.unwrap_or(FirmwareKind::Uefi);
    let secure_boot = secure_boot.unwrap_or(false);
    if secure_boot && kind == FirmwareKind::Bios {
        errors.push(
            child.source.diag(root.key("firmware").key("secureBoot"), "Secure Boot needs UEFI firmware (type: uefi)"),
        );
    }
    // The boot loader: as written, else sd-boot for UEFI machines and GRUB for BIOS ones (a profile knows its
    // firmware, so the image needs no second boot path).
    let bl_path = root.key("firmware").key("bootloader");
    match bootloader {
        Some((b, o)) if secure_boot && b != Bootloader::SdBoot => errors
            .push(src(o).diag(bl_path.clone(), format!("Secure Boot images boot with sd-boot; found {}", b.as_str()))),
        Some((Bootloader::SdBoot, o)) if kind == FirmwareKind::Bios => errors.push(
            src(o).diag(bl_path.clone(), "sd-boot needs UEFI firmware; BIOS machines boot with grub or dual-boot"),
        ),
        _ => {}
    }
    let (bootloader, bootloader_at) = match bootloader {
        Some((b, o)) => (b, src(o).diag(bl_path, "")),
        None if kind == FirmwareKind::Bios => {
            (Bootloader::Grub, src(fw_kind_origin).diag(root.key("firmware").key("type"), ""))
        }
        None => (Bootloader::SdBoot, child.source.diag(root.key("firmware"), "")),
    };

    if !errors.is_empty() {
        return Err(if errors.len() == 1 {
            errors.remove(0).into()
        } else {
            Error::Inputs(crate::error::Diagnostics(errors))
        });
    }

    // Extensions implied by the hardware.
    let mut ext: BTreeSet<String> = extensions.into_iter().map(|(e, _, _)| e).collect();
    match cpu.vendor {
        Some(CpuVendor::Intel) => {
            ext.insert("siderolabs/intel-ucode".into());
        }
        Some(CpuVendor::Amd) => {
            ext.insert("siderolabs/amd-ucode".into());
        }
        _ => {}
    }
    for n in nic_list {
        ext.extend(n.firmware.iter().cloned());
    }
    let mut modules: Vec<KernelModuleSpec> = kernel_modules.into_iter().map(|(m, _, _)| m).collect();
    for g in &gpus.0 {
        for e in gpu_extensions(g.vendor) {
            ext.insert((*e).to_owned());
        }
        if g.vendor == GpuVendor::Nvidia {
            for m in ["nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"] {
                if !modules.iter().any(|x| x.name == m) {
                    modules.push(KernelModuleSpec { name: m.to_owned(), parameters: Vec::new() });
                }
            }
            sysctls.entry("net.core.bpf_jit_harden".to_owned()).or_insert_with(|| "1".to_owned());
        }
    }

    Ok(ResolvedProfile {
        name: child.spec.name.clone(),
        chain: chain.iter().map(|p| p.spec.name.clone()).collect(),
        files: chain.iter().map(|p| p.source.path.clone()).collect(),
        description,
        vendor,
        model,
        arch: arch.unwrap_or(Arch::Amd64),
        firmware: Firmware { kind, secure_boot, tpm: tpm.unwrap_or(false), serial_console, bootloader, bootloader_at },
        cpu,
        memory,
        nics: nics.0,
        bonds: bonds.0,
        disks: disks.0,
        gpus: gpus.0,
        extensions: ext.into_iter().collect(),
        kernel_args: kernel_args.into_iter().map(|(a, _, _)| a).collect(),
        kernel_modules: modules,
        sysctls,
        emulation: Emulation {
            machine: emulation.machine.unwrap_or_else(|| "q35".to_owned()),
            cpus: emulation.cpus.unwrap_or(2),
            memory: emulation.memory.unwrap_or(ByteSize(2 * ByteSize::GIB)),
            smbios: emulation.smbios.unwrap_or_default(),
        },
    })
}

/// Official extensions a GPU vendor needs (Talos's GPU guides; open kernel modules, LTS branch for NVIDIA).
pub fn gpu_extensions(vendor: GpuVendor) -> &'static [&'static str] {
    match vendor {
        GpuVendor::Nvidia => {
            &["siderolabs/nvidia-container-toolkit-lts", "siderolabs/nvidia-open-gpu-kernel-modules-lts"]
        }
        GpuVendor::Amd => &["siderolabs/amdgpu"],
        GpuVendor::Intel => &["siderolabs/i915"],
    }
}

fn join_or_none<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = it.collect();
    if v.is_empty() { "none".to_owned() } else { v.join(", ") }
}

/// Talos link alias / Linux interface name rules.
pub fn is_link_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some('a'..='z')) && s.len() <= 15 && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

pub fn is_pci_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 9
        && b[4] == b':'
        && b.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// An extension is an official name (`siderolabs/<name>`) or a full image reference.
pub fn check_extension_name(e: &str) -> std::result::Result<(), String> {
    if e.starts_with("./") || e.starts_with("../") || e.starts_with('/') {
        return if e.contains(char::is_whitespace) {
            Err(format!("expected an extension directory; found {e:?}"))
        } else {
            Ok(())
        };
    }
    let ok = !e.is_empty()
        && e.contains('/')
        && !e.contains(char::is_whitespace)
        && e.split('/').all(|p| !p.is_empty())
        && e.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_./:@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected an official extension name like siderolabs/intel-ucode, an image reference or a directory (./x); found {e:?}"
        ))
    }
}

/// Kernel arguments: one token each; `-name` removes an argument.
pub fn check_kernel_arg(a: &str) -> std::result::Result<(), String> {
    if a.is_empty() || a == "-" || a.contains(char::is_whitespace) || a.contains('"') {
        return Err(format!("expected one kernel argument like console=ttyS0 or -name to remove one; found {a:?}"));
    }
    Ok(())
}

pub fn check_kernel_module(name: &str) -> std::result::Result<(), String> {
    if BUILT_IN_MODULES.contains(&name) {
        return Err(format!("{name:?} is built into the Talos kernel and cannot be loaded as a module; remove it"));
    }
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("expected a kernel module name; found {name:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_checks() {
        assert!(is_link_name("lan0"));
        assert!(!is_link_name("Lan0"));
        assert!(!is_link_name("a-very-long-interface-name"));
        assert!(is_pci_id("8086:159b"));
        assert!(!is_pci_id("8086:159B"));
        assert!(!is_pci_id("8086159b"));
        assert!(check_kernel_module("rbd").is_err());
        assert!(check_kernel_module("vfio_pci").is_ok());
        assert!(check_extension_name("siderolabs/intel-ucode").is_ok());
        assert!(check_extension_name("intel-ucode").is_err());
        assert!(check_kernel_arg("-console").is_ok());
        assert!(check_kernel_arg("a b").is_err());
    }
}
