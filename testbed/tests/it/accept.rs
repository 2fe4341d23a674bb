//! QEMU itself takes every shipped profile's command line: each VM is started paused (`-S`) in a private
//! network namespace with its taps (and swtpm for TPM profiles), and QMP `query-pci` must show exactly the
//! plan's NICs, disks and controllers with the PCI IDs the profiles and `talforge qualify` expect.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{Value, json};
use talforge_builder::spec::profile::DiskDevice;
use talforge_testbed::qemu::devices::{check_devices, parse_device_help};
use talforge_testbed::qemu::files::prepare_vm_files;
use talforge_testbed::qemu::{Accel, BootMedium, NodeInputs, QemuError, VmPlan, resolve_vm};
use talforge_testbed::qualify::emulated_nic_pci_id;

use crate::args::{all_devices, synthetic};
use crate::support::{Netns, Qmp, need_file, ok, qemu, shipped_profiles, start_qemu, start_swtpm, swtpm};

fn qemu_version(qemu: &std::path::Path) -> String {
    let out = ok(Command::new(qemu).arg("--version"));
    out.lines().next().unwrap_or_default().trim_start_matches("QEMU emulator version ").to_owned()
}

#[test]
fn every_device_a_shipped_profile_needs_is_in_this_qemu() {
    let Some(qemu) = qemu() else { return };
    let help = ok(Command::new(&qemu).args(["-device", "help"]));
    let devices = parse_device_help(&help);
    let version = qemu_version(&qemu);
    for name in ["virtio-net-pci", "e1000e", "nvme", "virtio-blk-pci", "ahci", "ide-hd", "tpm-tis", "pvpanic"] {
        assert!(devices.contains(name), "QEMU {version} lists no {name}");
    }
    let work = tempfile::tempdir().unwrap();
    for p in shipped_profiles() {
        let vm = resolve_vm(&p, &NodeInputs::new("sample", "node-1", work.path(), BootMedium::InstallDisk)).unwrap();
        check_devices(&vm, &devices, &version).unwrap_or_else(|e| panic!("{}: {e}", p.name));
    }
    // igb arrived in QEMU 8.0: a profile asking for it is refused by an older QEMU, not given another NIC.
    let dir = tempfile::tempdir().unwrap();
    let p = synthetic(
        dir.path(),
        "nics:\n  - { name: net0, driver: igb, pciID: 8086:10c9, emulation: { model: igb } }\n\
         disks:\n  - { name: sys, role: install, bus: virtio, size: 1GiB, emulation: { device: virtio-blk } }\n",
    );
    let vm = resolve_vm(&p, &NodeInputs::new("sample", "node-1", work.path(), BootMedium::InstallDisk)).unwrap();
    let r = check_devices(&vm, &devices, &version);
    if devices.contains("igb") {
        assert!(r.is_ok(), "{r:?}");
    } else {
        let e = r.unwrap_err();
        assert!(matches!(e, QemuError::MissingDevice { .. }));
        assert_eq!(e.to_string(), format!("QEMU {version} has no device \"igb\" (igb needs QEMU 8.0 or later)"));
    }
}

/// `vendor:device` of each PCI function by its QEMU id (`nic0`, `disk3`, `scsi0`), and the functions
/// without one (the machine's own).
fn pci_functions(qmp: &mut Qmp) -> (BTreeMap<String, String>, Vec<String>) {
    let buses = qmp.execute("query-pci", json!({}));
    let mut by_id = BTreeMap::new();
    let mut anonymous = Vec::new();
    let devices: Vec<&Value> =
        buses.as_array().expect("buses").iter().flat_map(|b| b["devices"].as_array().expect("devices")).collect();
    for d in devices {
        let id = format!("{:04x}:{:04x}", d["id"]["vendor"].as_u64().unwrap(), d["id"]["device"].as_u64().unwrap());
        match d["qdev_id"].as_str() {
            Some(q) if !q.is_empty() => {
                by_id.insert(q.to_owned(), id);
            }
            _ => anonymous.push(format!("{:02x}.{} {id}", d["slot"].as_u64().unwrap(), d["function"])),
        }
    }
    anonymous.sort();
    (by_id, anonymous)
}

/// What `query-pci` must show for `vm`.
fn expected_pci(vm: &VmPlan) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (i, n) in vm.nics.iter().enumerate() {
        m.insert(format!("nic{i}"), emulated_nic_pci_id(n.model).to_owned());
    }
    for (i, d) in vm.disks.iter().enumerate() {
        match d.device {
            DiskDevice::VirtioBlk => m.insert(format!("disk{i}"), "1af4:1001".to_owned()),
            DiskDevice::Nvme => m.insert(format!("disk{i}"), "1b36:0010".to_owned()),
            DiskDevice::VirtioScsi => m.insert("scsi0".to_owned(), "1af4:1004".to_owned()),
            DiskDevice::Megasas => m.insert("megasas0".to_owned(), "1000:0079".to_owned()),
            DiskDevice::Ahci => None,
        };
    }
    m
}

#[test]
fn qemu_builds_every_shipped_profile_as_planned() {
    let Some(qemu) = qemu() else { return };
    let Some(swtpm) = swtpm() else { return };
    let fw = talforge_testbed::qemu::FirmwarePaths::debian();
    for f in [&fw.code, &fw.code_secure_boot, &fw.vars_template] {
        let Some(()) = need_file(f, "ovmf") else { return };
    }
    let Some(netns) = Netns::create("accept") else { return };
    let work = tempfile::tempdir().unwrap();
    let extra_dir = tempfile::tempdir().unwrap();
    let mut profiles = shipped_profiles();
    profiles.push(all_devices(extra_dir.path()));
    for (k, p) in profiles.iter().enumerate() {
        let node = format!("n{k}");
        let dir = work.path().join(&node);
        let boot = if p.name == "test-box" {
            std::fs::create_dir_all(&dir).unwrap();
            let iso = dir.join("empty.iso");
            std::fs::write(&iso, vec![0u8; 1 << 20]).unwrap();
            BootMedium::Cdrom { iso }
        } else {
            BootMedium::InstallDisk
        };
        let vm = resolve_vm(p, &NodeInputs::new("accept", &node, &dir, boot)).unwrap();
        prepare_vm_files(&vm).unwrap();
        for n in &vm.nics {
            netns.add_tap(&n.tap, None);
        }
        let _tpm = vm.tpm.as_ref().map(|t| start_swtpm(&swtpm, t));
        let stderr = dir.join("qemu.stderr");
        let mut q = start_qemu(&qemu, &netns, &vm, Accel::Tcg, &["-S"], &stderr);
        let mut qmp = Qmp::connect(&vm.qmp_socket);
        assert_eq!(qmp.execute("query-status", json!({}))["status"], "prelaunch", "{}", p.name);
        let (by_id, anonymous) = pci_functions(&mut qmp);
        let mut expected = expected_pci(&vm);
        // Extra AHCI controllers (the all-devices VM has one).
        for (id, pci) in &by_id {
            if id.starts_with("ahci") {
                expected.insert(id.clone(), pci.clone());
            }
        }
        assert_eq!(by_id, expected, "{}: PCI functions by QEMU id", p.name);
        assert_eq!(
            anonymous,
            ["00.0 8086:29c0", "1f.0 8086:2918", "1f.2 8086:2922", "1f.3 8086:2930"],
            "{}: only q35's own functions besides the plan's",
            p.name
        );
        // The TPM and the pvpanic device are ISA devices; QOM lists them.
        let isa = qmp.execute("qom-list", json!({ "path": "/machine/peripheral-anon" }));
        let types: Vec<&str> = isa.as_array().unwrap().iter().filter_map(|c| c["type"].as_str()).collect();
        assert!(types.iter().any(|t| t.contains("pvpanic")), "{}: {types:?}", p.name);
        assert_eq!(types.iter().any(|t| t.contains("tpm-tis")), vm.tpm.is_some(), "{}: {types:?}", p.name);
        qmp.execute("quit", json!({}));
        let status = q.child().wait().unwrap();
        assert!(
            status.success(),
            "{}: QEMU {status}: {}",
            p.name,
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        eprintln!("{}: {} PCI functions as planned", p.name, by_id.len());
    }
}
