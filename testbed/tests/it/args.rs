//! QEMU and swtpm command lines: one snapshot per shipped profile and accelerator, with a fixed work folder
//! (`/lab/work/<node>`) so paths are stable; and the plan's rules with their errors.

use std::path::{Path, PathBuf};

use talforge_builder::plan::profile::{ResolvedProfile, resolve_profile};
use talforge_builder::spec::Catalog;
use talforge_builder::spec::units::{ByteSize, MacAddr};
use talforge_testbed::qemu::plan::{derived_mac, derived_tap_name, derived_uuid};
use talforge_testbed::qemu::{Accel, BootMedium, NodeInputs, RebootAction, VmPlan, qemu_args, resolve_vm, swtpm_args};

use crate::support::{argv_text, profile, shipped_profiles};

const LAB: &str = "sample";
const NODE: &str = "node-1";

fn inputs(boot: BootMedium) -> NodeInputs {
    NodeInputs::new(LAB, NODE, &Path::new("/lab/work").join(NODE), boot)
}

fn plan(p: &ResolvedProfile) -> VmPlan {
    resolve_vm(p, &inputs(BootMedium::InstallDisk)).unwrap_or_else(|e| panic!("{}: {e}", p.name))
}

/// What the plan says beyond the argv: the NICs and disks by profile name, and what the lab leaves out.
fn plan_text(vm: &VmPlan) -> String {
    let mut s = format!(
        "{} vCPUs, {} MiB, SMBIOS uuid {} serial {}\n",
        vm.cpus, vm.memory_mib, vm.smbios.uuid, vm.smbios.serial
    );
    for n in &vm.nics {
        s.push_str(&format!("nic {}: {} mac {} tap {}\n", n.name, n.model.qemu_device(), n.mac, n.tap));
    }
    for d in &vm.disks {
        s.push_str(&format!(
            "disk {}: {:?} serial {} size {} ({}) image {}\n",
            d.id,
            d.device,
            d.serial,
            d.size,
            ByteSize(d.size),
            d.image.display()
        ));
    }
    for n in &vm.not_emulated {
        s.push_str(&format!("not emulated {}: {} ({})\n", n.part, n.real, n.reason));
    }
    for a in &vm.approximated {
        s.push_str(&format!("approximated {}: real {} / lab {}\n", a.part, a.real, a.lab));
    }
    s
}

#[test]
fn argv_of_every_shipped_profile_under_kvm_and_tcg() {
    let profiles = shipped_profiles();
    assert!(profiles.len() >= 9, "shipped profiles: {}", profiles.len());
    for p in &profiles {
        let vm = plan(p);
        insta::assert_snapshot!(format!("plan-{}", p.name), plan_text(&vm));
        insta::assert_snapshot!(format!("argv-{}-kvm", p.name), argv_text(&qemu_args(&vm, Accel::Kvm)));
        insta::assert_snapshot!(format!("argv-{}-tcg", p.name), argv_text(&qemu_args(&vm, Accel::Tcg)));
    }
}

#[test]
fn kernel_and_cdrom_boots_exit_on_reboot() {
    let p = profile("qemu-virtio-uefi");
    let kernel = BootMedium::Kernel {
        kernel: "/lab/images/kernel-amd64".into(),
        initrd: "/lab/images/initramfs-amd64.xz".into(),
        cmdline: "talos.platform=metal console=ttyS0,115200 talos.config=http://10.5.0.1/config?uuid=${uuid}".into(),
    };
    let vm = resolve_vm(&p, &inputs(kernel)).unwrap();
    assert_eq!(vm.reboot, RebootAction::Exit);
    insta::assert_snapshot!("argv-qemu-virtio-uefi-kernel", argv_text(&qemu_args(&vm, Accel::Tcg)));
    let vm = resolve_vm(&p, &inputs(BootMedium::Cdrom { iso: "/lab/images/metal-amd64.iso".into() })).unwrap();
    assert_eq!(vm.reboot, RebootAction::Exit);
    insta::assert_snapshot!("argv-qemu-virtio-uefi-cdrom", argv_text(&qemu_args(&vm, Accel::Tcg)));
    assert_eq!(plan(&p).reboot, RebootAction::Reset, "a disk boot resets on reboot (Secure Boot enrollment)");
}

#[test]
fn swtpm_argv() {
    let vm = plan(&profile("qemu-nvme-secureboot-tpm"));
    let tpm = vm.tpm.as_ref().expect("the profile has a TPM");
    insta::assert_snapshot!(argv_text(&swtpm_args(tpm)), @r"
    socket
    --tpm2
    --tpmstate dir=/lab/work/node-1/tpm,mode=0600
    --ctrl type=unixio,path=/lab/work/node-1/tpm.sock,mode=0600
    --log file=/lab/work/node-1/tpm.log
    --terminate
    ");
    assert!(plan(&profile("qemu-virtio-uefi")).tpm.is_none());
}

#[test]
fn gpus_are_listed_as_not_emulated_never_faked() {
    let gpu = plan(&profile("lenovo-thinksystem-sr665-v3-h100"));
    let base = plan(&profile("lenovo-thinksystem-sr665-v3"));
    let gpus: Vec<_> = gpu.not_emulated.iter().filter(|n| n.part.starts_with("gpus")).collect();
    assert_eq!(gpus.len(), 1, "{:?}", gpu.not_emulated);
    assert_eq!(gpus[0].real, "2 × H100 PCIe (10de:2331)");
    assert!(base.not_emulated.iter().all(|n| !n.part.starts_with("gpus")));
    // The GPU variant's VM is exactly the base model's: nothing stands in for the GPUs.
    assert_eq!(qemu_args(&gpu, Accel::Kvm), qemu_args(&base, Accel::Kvm));
}

#[test]
fn identity_is_derived_from_lab_and_node_and_can_be_given() {
    let p = profile("dell-poweredge-r760");
    let vm = plan(&p);
    let macs: Vec<MacAddr> = vm.nics.iter().map(|n| n.mac).collect();
    for (i, m) in macs.iter().enumerate() {
        assert_eq!(*m, derived_mac(LAB, NODE, i));
        assert_eq!(m.0[0] & 0x03, 0x02, "locally administered unicast: {m}");
    }
    let distinct: std::collections::BTreeSet<_> = macs.iter().collect();
    assert_eq!(distinct.len(), macs.len());
    assert_ne!(derived_mac(LAB, NODE, 0), derived_mac(LAB, "node-2", 0));
    assert_ne!(derived_mac(LAB, NODE, 0), derived_mac("other", NODE, 0));
    let uuid = derived_uuid(LAB, NODE);
    assert_eq!(vm.smbios.uuid, uuid);
    assert_eq!(uuid.0[6] >> 4, 8, "version 8");
    assert_eq!(uuid.0[8] >> 6, 0b10, "RFC 9562 variant");
    assert_ne!(uuid, derived_uuid(LAB, "node-2"));
    assert_eq!(vm.nics[0].tap, derived_tap_name(LAB, NODE, 0));
    assert!(vm.nics.iter().all(|n| n.tap.len() <= 15));

    // The cluster file's mac: for the primary NIC (ocp0), and the lab's shape.
    let mut i = inputs(BootMedium::InstallDisk);
    let given: MacAddr = "52:54:00:12:34:56".parse().unwrap();
    i.macs.insert("ocp0".into(), given);
    i.cpus = Some(2);
    i.memory = Some(ByteSize(1536 * ByteSize::MIB));
    i.smbios_serial = Some("SN-1".into());
    let vm = resolve_vm(&p, &i).unwrap();
    assert_eq!(vm.macs()["ocp0"], given);
    assert_eq!(vm.macs()["lom0"], derived_mac(LAB, NODE, 0));
    assert_eq!((vm.cpus, vm.memory_mib, vm.smbios.serial.as_str()), (2, 1536, "SN-1"));

    i.macs.insert("lom1".into(), given);
    let e = resolve_vm(&p, &i).unwrap_err();
    assert_eq!(e.to_string(), "node node-1: MAC 52:54:00:12:34:56 is given to both lom1 and ocp0");
    i.macs.clear();
    i.macs.insert("gpu0".into(), given);
    let e = resolve_vm(&p, &i).unwrap_err();
    assert_eq!(
        e.to_string(),
        "node node-1: a MAC is given for NIC \"gpu0\", which the profile does not emulate; emulated NICs: lom0, lom1, ocp0, ocp1"
    );
    i.macs.clear();
    i.macs.insert("lom0".into(), "01:00:5e:00:00:01".parse().unwrap());
    assert!(resolve_vm(&p, &i).unwrap_err().to_string().contains("is a multicast address"));
}

#[test]
fn disk_serials_are_prefix_and_index_and_match_the_profile_patterns() {
    for p in shipped_profiles() {
        let vm = plan(&p);
        for d in &vm.disks {
            let spec = p.disks.iter().find(|s| s.name == d.name).unwrap();
            let prefix = spec.emulation.as_ref().and_then(|e| e.serial.clone()).unwrap();
            assert_eq!(d.serial, format!("{prefix}{}", d.index), "{}: {}", p.name, d.id);
            if let Some(pattern) = &spec.serial {
                assert!(
                    talforge_testbed::qualify::glob_match(pattern, &d.serial),
                    "{}: {pattern} vs {}",
                    p.name,
                    d.serial
                );
            }
        }
        // One image per disk, each count expanded.
        let expected: u32 = p.disks.iter().filter(|d| d.emulation.is_some()).map(|d| d.count).sum();
        assert_eq!(vm.disks.len(), expected as usize, "{}", p.name);
    }
}

// ------------------------------------------------------------------------------------------------ synthetic

/// A catalog with one profile `test-box` made of `body` (YAML after the header), resolved.
pub fn synthetic(dir: &Path, body: &str) -> ResolvedProfile {
    let pdir = dir.join("hardware-profiles");
    std::fs::create_dir_all(&pdir).unwrap();
    let text = format!("apiVersion: talforge.dev/v1alpha1\nkind: HardwareProfile\nname: test-box\n{body}");
    std::fs::write(pdir.join("test-box.yaml"), text).unwrap();
    resolve_profile(&Catalog::open(dir).unwrap(), "test-box").unwrap_or_else(|e| panic!("test-box: {e}"))
}

const NIC: &str =
    "nics:\n  - { name: net0, driver: virtio_net, pciID: 1af4:1000, emulation: { model: virtio-net-pci } }\n";

fn disks_yaml(disks: &[&str]) -> String {
    let mut s = String::from("disks:\n");
    for d in disks {
        s.push_str("  - ");
        s.push_str(d);
        s.push('\n');
    }
    s
}

fn resolve_err(body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = synthetic(dir.path(), body);
    resolve_vm(&p, &inputs(BootMedium::InstallDisk)).unwrap_err().to_string()
}

#[test]
fn profiles_the_lab_cannot_build_are_refused_with_the_reason() {
    let install =
        "{ name: sys, role: install, bus: virtio, size: 8GiB, emulation: { device: virtio-blk, serial: S- } }";
    assert_eq!(
        resolve_err(&format!("arch: arm64\n{NIC}{}", disks_yaml(&[install]))),
        "profile test-box: the lab emulates amd64 machines; found arch arm64"
    );
    assert_eq!(
        resolve_err(&format!("emulation: {{ machine: pc }}\n{NIC}{}", disks_yaml(&[install]))),
        "profile test-box: emulation.machine: the lab builds q35 machines (`q35` or a versioned `pc-q35-*`); found \"pc\""
    );
    assert_eq!(
        resolve_err(&format!("{NIC}{}", disks_yaml(&["{ name: sys, role: install, bus: sata, size: 8GiB }"]))),
        "profile test-box: the install disk \"sys\" has no emulation section, so the lab has no disk to boot"
    );
    assert_eq!(
        resolve_err(&format!(
            "{NIC}{}",
            disks_yaml(&[
                "{ name: sys, role: install, bus: sata, size: 8GiB, serial: 'S3*', emulation: { device: ahci, serial: X- } }"
            ])
        )),
        "profile test-box: disks[sys]: lab serial \"X-0\": does not match the disk's serial pattern \"S3*\", so \
         selectors written for the real disk would miss the lab's; set emulation.serial to a prefix the pattern matches"
    );
    assert_eq!(
        resolve_err(&format!(
            "{NIC}{}",
            disks_yaml(&[
                "{ name: sys, role: install, bus: sata, size: 8GiB, emulation: { device: ahci, serial: ABCDEFGHIJKLMNOPQRSTU } }"
            ])
        )),
        "profile test-box: disks[sys]: lab serial \"ABCDEFGHIJKLMNOPQRSTU0\": expected at most 20 printable ASCII \
         characters without spaces (NVMe, ATA and virtio-blk carry 20)"
    );
    assert_eq!(
        resolve_err(&format!(
            "{NIC}{}",
            disks_yaml(&[
                install,
                "{ name: d, role: data, bus: virtio, size: 8GiB, count: 2, emulation: { device: virtio-blk, serial: S- } }"
            ])
        )),
        "profile test-box: disks[d[0]]: lab serial \"S-0\": disk sys has the same serial"
    );
    assert_eq!(
        resolve_err(&format!(
            "{NIC}{}",
            disks_yaml(&[
                "{ name: sys, role: install, bus: sata, size: 8GiB, emulation: { device: ahci, logicalBlockSize: 4096 } }"
            ])
        )),
        "profile test-box: disks[sys].emulation.logicalBlockSize: ide-hd on AHCI disks take 512; found 4096"
    );
    assert_eq!(
        resolve_err(&format!(
            "{NIC}{}",
            disks_yaml(&[
                install,
                "{ name: osd, role: osd, bus: nvme, size: 8GiB, count: 30, emulation: { device: nvme, serial: O- } }"
            ])
        )),
        "profile test-box: the VM needs 32 PCI slots on pcie.0 (NICs, virtio-blk and NVMe disks, disk \
         controllers); q35 has 30"
    );
    // Sockets must fit sun_path.
    let dir = tempfile::tempdir().unwrap();
    let p = synthetic(dir.path(), &format!("{NIC}{}", disks_yaml(&[install])));
    let deep = PathBuf::from("/lab/".to_owned() + &"w".repeat(100));
    let e = resolve_vm(&p, &NodeInputs::new(LAB, NODE, &deep, BootMedium::InstallDisk)).unwrap_err();
    assert!(e.to_string().contains("a Unix socket path must be shorter than 108 bytes"), "{e}");
}

/// Every disk bus and NIC model QEMU 7.2 has, in one VM: more SATA disks than q35's six AHCI ports, SCSI
/// disks on both controllers, 4 KiB sectors, rotation flags, a commas-in-paths work folder. `accept` boots
/// QEMU with it too.
pub fn all_devices(dir: &Path) -> ResolvedProfile {
    let mut nics = String::from("nics:\n");
    for (i, (model, driver, pci)) in [
        ("virtio-net-pci", "virtio_net", "1af4:1000"),
        ("e1000e", "e1000e", "8086:10d3"),
        ("e1000", "e1000", "8086:100e"),
        ("vmxnet3", "vmxnet3", "15ad:07b0"),
        ("rtl8139", "8139cp", "10ec:8139"),
    ]
    .iter()
    .enumerate()
    {
        nics.push_str(&format!(
            "  - {{ name: n{i}, driver: {driver}, pciID: {pci}, emulation: {{ model: {model} }} }}\n"
        ));
    }
    let disks = disks_yaml(&[
        "{ name: sys, role: install, bus: nvme, size: 4GiB, emulation: { device: nvme, serial: SYS-, logicalBlockSize: 4096 } }",
        "{ name: vb, role: data, bus: virtio, size: 1GiB, emulation: { device: virtio-blk, serial: VB-, logicalBlockSize: 4096 } }",
        "{ name: sata, role: data, bus: sata, size: 1GiB, count: 7, rotational: true, emulation: { device: ahci, serial: SATA- } }",
        "{ name: vs, role: osd, bus: scsi, size: 2GiB, count: 2, rotational: false, emulation: { device: virtio-scsi, serial: VS-, logicalBlockSize: 4096 } }",
        "{ name: mr, role: osd, bus: sas, size: 2GiB, rotational: false, emulation: { device: megasas, serial: MR- } }",
    ]);
    synthetic(
        dir,
        &format!(
            "firmware: {{ type: bios }}\nemulation: {{ machine: pc-q35-7.2, cpus: 1, memory: 512MiB }}\n{nics}{disks}"
        ),
    )
}

#[test]
fn every_bus_and_model_in_one_vm() {
    let dir = tempfile::tempdir().unwrap();
    let p = all_devices(dir.path());
    let vm = resolve_vm(
        &p,
        &NodeInputs::new(
            LAB,
            NODE,
            Path::new("/lab/work,1/node-1"),
            BootMedium::Cdrom { iso: "/lab/images/metal-amd64.iso".into() },
        ),
    )
    .unwrap();
    insta::assert_snapshot!("argv-all-devices", argv_text(&qemu_args(&vm, Accel::Tcg)));
    let text = argv_text(&qemu_args(&vm, Accel::Tcg));
    // The CD-ROM and six disks fill q35's AHCI; the seventh and eighth ports are on a second controller.
    assert!(text.contains("-device ide-cd,bus=ide.0,drive=cdrom,bootindex=0\n"), "{text}");
    assert!(text.contains("-device ahci,id=ahci1\n"));
    assert!(text.contains("bus=ahci1.1,id=disk8,drive=drive8,serial=SATA-6,rotation_rate=0\n"), "{text}");
    assert!(text.contains("file=/lab/work,,1/node-1/disk-sys.raw,"), "commas in paths are doubled: {text}");
    assert!(!text.contains("pflash"), "BIOS machines have no pflash");
}
