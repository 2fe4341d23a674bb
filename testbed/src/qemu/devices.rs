//! Checking a VM against the QEMU that will run it: the device names a plan uses must be in
//! `qemu-system-x86_64 -device help`. QEMU 7.2 (Debian 12) lists all the lab uses (`virtio-net-pci`,
//! `e1000e`, `e1000`, `vmxnet3`, `rtl8139`, `virtio-blk-pci`, `nvme`, `virtio-scsi-pci`, `megasas-gen2`,
//! `scsi-hd`, `ahci` (alias of `ich9-ahci`), `ide-hd`, `ide-cd`, `tpm-tis`, `pvpanic`) except `igb`, which
//! came with QEMU 8.0.

use std::collections::BTreeSet;

use super::QemuError;
use super::args::required_devices;
use super::plan::VmPlan;

/// The device names (and aliases) in `-device help` output: lines like `name "e1000e", bus PCI, desc ...`
/// or `name "ich9-ahci", bus PCI, alias "ahci"`.
pub fn parse_device_help(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        for key in ["name \"", "alias \""] {
            if let Some(rest) = line.split(key).nth(1)
                && let Some(end) = rest.find('"')
            {
                out.insert(rest[..end].to_owned());
            }
        }
    }
    out
}

/// Fails on the first device `vm` needs that `available` (from [`parse_device_help`]) lacks; `version` is
/// QEMU's for the message.
pub fn check_devices(vm: &VmPlan, available: &BTreeSet<String>, version: &str) -> Result<(), QemuError> {
    for d in required_devices(vm) {
        if !available.contains(d) {
            let hint = if d == "igb" { " (igb needs QEMU 8.0 or later)" } else { "" };
            return Err(QemuError::MissingDevice { device: d.to_owned(), version: version.to_owned(), hint });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases() {
        let text = "Storage devices:\nname \"ich9-ahci\", bus PCI, alias \"ahci\"\nname \"nvme\", bus PCI, desc \"Non-Volatile Memory Express\"\n\nNetwork devices:\nname \"e1000e\", bus PCI, desc \"Intel 82574L GbE Controller\"\n";
        let set = parse_device_help(text);
        assert_eq!(set.into_iter().collect::<Vec<_>>(), ["ahci", "e1000e", "ich9-ahci", "nvme"]);
    }
}
