//! Qualification on real inventories: the fixture guest booted on VMs shaped like the two lab profiles
//! (testbed/tests/data/qualify/, made by the `capture` script there), edited copies with one defect each, and
//! broken files.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use talforge_builder::plan::profile::{ResolvedProfile, resolve_profile};
use talforge_builder::spec::Catalog;

use super::*;

const VIRTIO: &str = "qemu-virtio-uefi";
const SECURE: &str = "qemu-nvme-secureboot-tpm";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/qualify").join(name)
}

fn profile(name: &str) -> ResolvedProfile {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    resolve_profile(&Catalog::open(&root).unwrap(), name).unwrap()
}

fn inventory(profile: &str) -> Inventory {
    read_inventory(&data(&format!("{profile}.json"))).unwrap()
}

fn json_of(profile: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(&format!("{profile}.json"))).unwrap()).unwrap()
}

fn emulated(profile_name: &str, inv: &Inventory) -> Report {
    qualify(&Expectation::for_emulation(&profile(profile_name)), inv)
}

/// The ids of the mismatches after `edit` changes the profile's own inventory (emulated mode).
fn mismatches_after(profile_name: &str, edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut v = json_of(profile_name);
    edit(&mut v);
    let inv = parse_inventory(&v.to_string(), Path::new("edited.json")).unwrap();
    emulated(profile_name, &inv).mismatches().map(|c| c.id.clone()).collect()
}

// ------------------------------------------------------------------------------------------------ real boots

#[test]
fn the_virtio_vm_qualifies_against_qemu_virtio_uefi() {
    let r = emulated(VIRTIO, &inventory(VIRTIO));
    assert!(r.qualified, "{}", r.human());
    assert_eq!(r.summary.mismatch, 0);
    // The virtio-blk disks report rotational (the kernel's default): shown, not held against the VM.
    let rot: Vec<&Check> = r.checks.iter().filter(|c| c.id.ends_with(".rotational")).collect();
    assert_eq!(rot.len(), 2);
    assert!(rot.iter().all(|c| c.status == Status::NotChecked && c.found == "true"));
    insta::assert_snapshot!("virtio_emulated", r.human());
}

#[test]
fn the_secure_boot_vm_qualifies_against_qemu_nvme_secureboot_tpm() {
    let r = emulated(SECURE, &inventory(SECURE));
    assert!(r.qualified, "{}", r.human());
    let find = |id: &str| r.checks.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no check {id}"));
    assert_eq!(find("firmware.secureBoot").found, "enabled (SecureBoot=1, SetupMode=0)");
    assert_eq!(find("tpm").found, "TPM 2.0 (/dev/tpm0)");
    assert_eq!(find("disks.osd").device.as_deref(), Some("nvme1n1"));
    assert_eq!(find("nics.net0.pciId").found, "8086:10d3");
    insta::assert_snapshot!("secure_emulated", r.human());
    insta::assert_json_snapshot!("secure_emulated_json", r);
}

#[test]
fn the_qemu_profiles_also_qualify_their_vms_as_hardware() {
    // The two lab profiles describe the VM itself (1 socket × 2 cores × 1 thread, 2 GiB, QEMU's NVMe model), so
    // hardware mode, with its tolerances, agrees with emulated mode.
    for name in [VIRTIO, SECURE] {
        let r = qualify(&Expectation::for_hardware(&profile(name)), &inventory(name));
        assert!(r.qualified, "{name}:\n{}", r.human());
        assert_eq!(r.mode, Mode::Hardware);
    }
    // virtio-blk has no rotation flag in either mode; NVMe's is compared in both.
    let r = qualify(&Expectation::for_hardware(&profile(VIRTIO)), &inventory(VIRTIO));
    let rot: Vec<Status> = r.checks.iter().filter(|c| c.id.ends_with(".rotational")).map(|c| c.status).collect();
    assert_eq!(rot, [Status::NotChecked, Status::NotChecked]);
    let r = qualify(&Expectation::for_hardware(&profile(SECURE)), &inventory(SECURE));
    let rot: Vec<Status> = r.checks.iter().filter(|c| c.id.ends_with(".rotational")).map(|c| c.status).collect();
    assert_eq!(rot, [Status::Pass, Status::Pass]);
}

#[test]
fn each_vm_fails_the_other_profile_with_every_difference_reported() {
    let r = emulated(SECURE, &inventory(VIRTIO));
    assert!(!r.qualified);
    let ids: Vec<&str> = r.mismatches().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "firmware.secureBoot",
            "tpm",
            "smbios.product",
            "nics.net0",
            "nics.extra",
            "disks.system",
            "disks.osd",
            "disks.extra"
        ]
    );
    insta::assert_snapshot!("virtio_vm_against_secure_profile", r.human());
}

#[test]
fn a_serial_log_gives_the_same_inventory_as_the_json() {
    let from_log = read_inventory(&data(&format!("{SECURE}.serial.log"))).unwrap();
    assert_eq!(from_log, inventory(SECURE));
}

// ------------------------------------------------------------------------------------------------ one defect each

#[test]
fn a_missing_disk_is_one_mismatch() {
    let ids = mismatches_after(SECURE, |v| {
        v["disks"].as_array_mut().unwrap().retain(|d| d["serial"] != "TF-OSD-0");
    });
    assert_eq!(ids, ["disks.osd"]);
}

#[test]
fn a_wrong_nic_driver_is_one_mismatch() {
    assert_eq!(mismatches_after(SECURE, |v| v["nics"][0]["driver"] = json!("e1000")), ["nics.net0.driver"]);
}

#[test]
fn a_wrong_nic_pci_id_is_one_mismatch() {
    assert_eq!(mismatches_after(VIRTIO, |v| v["nics"][0]["pciId"] = json!("1af4:1041")), ["nics.net0.pciId"]);
}

#[test]
fn secure_boot_off_is_one_mismatch() {
    let ids = mismatches_after(SECURE, |v| v["firmware"] = json!({"type": "uefi", "secureBoot": 0, "setupMode": 1}));
    assert_eq!(ids, ["firmware.secureBoot"]);
}

#[test]
fn no_tpm_is_one_mismatch() {
    let ids = mismatches_after(SECURE, |v| v["tpm"] = json!({"present": false, "versionMajor": null, "device": null}));
    assert_eq!(ids, ["tpm"]);
}

#[test]
fn a_tpm_1_2_is_not_a_tpm_2() {
    assert_eq!(mismatches_after(SECURE, |v| v["tpm"]["versionMajor"] = json!(1)), ["tpm"]);
}

#[test]
fn a_wrong_disk_size_is_one_mismatch() {
    // One sector short: emulated disks are compared exactly.
    let ids = mismatches_after(SECURE, |v| v["disks"][1]["sizeBytes"] = json!(20 * (1_u64 << 30) - 512));
    assert_eq!(ids, ["disks.osd.size"]);
}

#[test]
fn an_extra_nic_is_one_mismatch() {
    let ids = mismatches_after(SECURE, |v| {
        let mut nic = v["nics"][0].clone();
        nic["name"] = json!("eth1");
        nic["mac"] = json!("52:54:00:7f:00:03");
        nic["pciAddress"] = json!("0000:00:04.0");
        v["nics"].as_array_mut().unwrap().push(nic);
    });
    assert_eq!(ids, ["nics.extra"]);
}

#[test]
fn an_extra_disk_is_one_mismatch_but_a_cdrom_is_none() {
    fn extra(name: &'static str, read_only: bool) -> impl FnOnce(&mut Value) {
        move |v: &mut Value| {
            let mut d = v["disks"][0].clone();
            d["name"] = json!(name);
            d["serial"] = json!("OTHER");
            d["readOnly"] = json!(read_only);
            v["disks"].as_array_mut().unwrap().push(d);
        }
    }
    assert_eq!(mismatches_after(SECURE, extra("nvme2n1", false)), ["disks.extra"]);
    assert!(mismatches_after(SECURE, extra("sr0", true)).is_empty());
}

#[test]
fn a_wrong_serial_is_one_mismatch() {
    assert_eq!(mismatches_after(VIRTIO, |v| v["disks"][0]["serial"] = json!("XX-SYS-0")), ["disks.system.serial"]);
}

#[test]
fn disks_listed_in_another_order_still_match() {
    assert!(mismatches_after(SECURE, |v| v["disks"].as_array_mut().unwrap().reverse()).is_empty());
}

#[test]
fn a_disk_on_another_bus_is_missing_and_extra() {
    // An AHCI disk is not the profile's NVMe OSD disk, whatever its size and serial.
    let ids = mismatches_after(SECURE, |v| v["disks"][1]["transport"] = json!("sata"));
    assert_eq!(ids, ["disks.osd", "disks.extra"]);
}

#[test]
fn memory_is_allowed_10_percent_below_and_never_above() {
    let gib2 = 2_u64 << 30;
    assert!(mismatches_after(VIRTIO, |v| v["memoryBytes"] = json!(gib2 - gib2 / 10)).is_empty());
    assert_eq!(mismatches_after(VIRTIO, |v| v["memoryBytes"] = json!(gib2 / 100 * 89)), ["memory"]);
    assert_eq!(mismatches_after(VIRTIO, |v| v["memoryBytes"] = json!(gib2 + 4096)), ["memory"]);
    assert_eq!(mismatches_after(VIRTIO, |v| v["memoryBytes"] = Value::Null), ["memory"]);
}

#[test]
fn cpus_and_bios_firmware() {
    assert_eq!(mismatches_after(VIRTIO, |v| v["cpus"] = json!(4)), ["cpus"]);
    let ids = mismatches_after(SECURE, |v| {
        v["firmware"] = json!({"type": "bios", "secureBoot": null, "setupMode": null, "efivars": false});
    });
    assert_eq!(ids, ["firmware.type", "firmware.secureBoot"]);
}

#[test]
fn failed_extension_modules_are_a_mismatch() {
    let ids = mismatches_after(SECURE, |v| v["modules"]["failedFromExtensions"] = json!(["nvme"]));
    assert_eq!(ids, ["extensions.modules"]);
}

#[test]
fn the_lab_vm_shape_overrides_the_profile_emulation() {
    let inv = inventory(VIRTIO);
    let exp = Expectation::for_emulation(&profile(VIRTIO)).with_vm_shape(4, 8 << 30);
    let ids: Vec<String> = qualify(&exp, &inv).mismatches().map(|c| c.id.clone()).collect();
    assert_eq!(ids, ["cpus", "memory"]);
}

// ------------------------------------------------------------------------------------------------ node facts

#[test]
fn expected_macs_are_checked() {
    let p = profile(SECURE);
    let inv = inventory(SECURE);
    let mac = |s: &str| s.parse().unwrap();
    let good = Expectation::for_emulation(&p).with_facts(&NodeFacts::primary_mac(&p, mac("52:54:00:7F:00:02")));
    let r = qualify(&good.unwrap(), &inv);
    assert!(r.qualified, "{}", r.human());
    assert!(r.checks.iter().any(|c| c.id == "nics.net0.mac" && c.status == Status::Pass));

    let bad = Expectation::for_emulation(&p).with_facts(&NodeFacts::primary_mac(&p, mac("52:54:00:7f:00:09")));
    let ids: Vec<String> = qualify(&bad.unwrap(), &inv).mismatches().map(|c| c.id.clone()).collect();
    assert_eq!(ids, ["nics.net0.mac"]);

    let facts = NodeFacts { macs: [("lan9".to_owned(), mac("52:54:00:7f:00:02"))].into() };
    let err = Expectation::for_emulation(&p).with_facts(&facts).unwrap_err();
    assert_eq!(err.to_string(), "node facts: profile qemu-nvme-secureboot-tpm has no NIC \"lan9\"; its NICs: net0");
}

#[test]
fn identical_nics_are_told_apart_by_mac() {
    // Two identical NICs in the inventory, listed in the other order than the facts' MACs: each profile NIC
    // still gets the one with its MAC.
    let mut p = profile(SECURE);
    let mut second = p.nics[0].clone();
    second.name = "net1".into();
    second.primary = false;
    p.nics.push(second);
    let mut v = json_of(SECURE);
    let mut nic = v["nics"][0].clone();
    nic["name"] = json!("eth1");
    nic["mac"] = json!("52:54:00:7f:00:01");
    v["nics"].as_array_mut().unwrap().insert(0, nic);
    let inv = parse_inventory(&v.to_string(), Path::new("two-nics.json")).unwrap();
    let facts = NodeFacts {
        macs: [
            ("net0".to_owned(), "52:54:00:7f:00:02".parse().unwrap()),
            ("net1".to_owned(), "52:54:00:7f:00:01".parse().unwrap()),
        ]
        .into(),
    };
    let r = qualify(&Expectation::for_emulation(&p).with_facts(&facts).unwrap(), &inv);
    assert!(r.qualified, "{}", r.human());
    let on = |id: &str| r.checks.iter().find(|c| c.id == id).and_then(|c| c.device.clone());
    assert_eq!(on("nics.net0").as_deref(), Some("eth0"));
    assert_eq!(on("nics.net1").as_deref(), Some("eth1"));
}

// ------------------------------------------------------------------------------------------------ server profiles

#[test]
fn a_server_profile_in_the_lab_expects_its_emulated_devices() {
    let exp = Expectation::for_emulation(&profile("dell-poweredge-r760"));
    let nics: Vec<(&str, &str, &str)> =
        exp.nics.iter().map(|n| (n.name.as_str(), n.driver.as_str(), n.pci_id.as_str())).collect();
    assert_eq!(
        nics,
        [
            ("lom0", "e1000e", "8086:10d3"),
            ("lom1", "e1000e", "8086:10d3"),
            ("ocp0", "e1000e", "8086:10d3"),
            ("ocp1", "e1000e", "8086:10d3")
        ]
    );
    assert_eq!(exp.disks.len(), 9);
    // The BOSS card has no emulation.size: the VM's disk gets the nominal 480 GB, exactly.
    assert_eq!(
        (exp.disks[0].id.as_str(), exp.disks[0].size.value, exp.disks[0].size_tolerance_percent),
        ("boss", 480_000_000_000, 0)
    );
    assert_eq!(exp.disks[0].model.as_deref(), Some(QEMU_NVME_MODEL));
    assert_eq!(exp.disks[0].serial.as_deref(), Some("R760-BOSS-*"));
    assert_eq!((exp.disks[8].id.as_str(), exp.disks[8].size.value), ("nvme[7]", 20 << 30));
    assert_eq!((exp.cpus.as_ref().map(|c| c.value), exp.memory.as_ref().map(|m| m.value)), (Some(4), Some(8 << 30)));
}

#[test]
fn a_server_profile_as_hardware_expects_the_real_parts() {
    let exp = Expectation::for_hardware(&profile("dell-poweredge-r760"));
    assert_eq!(exp.nics[2].driver, "ice");
    assert_eq!(exp.nics[2].pci_id, "8086:159b");
    assert_eq!(exp.cpus.as_ref().map(|c| c.value), Some(128), "2 sockets × 32 cores × 2 threads");
    assert_eq!(exp.memory.as_ref().map(|m| m.value), Some(512 << 30));
    assert_eq!(exp.disks[0].model.as_deref(), Some("Dell BOSS-N1"));
    assert_eq!(exp.disks[0].size_tolerance_percent, DISK_SIZE_TOLERANCE_PERCENT);
    let sas = Expectation::for_hardware(&profile("hpe-proliant-dl380-gen10"));
    assert_eq!(sas.disks[1].transports, ["sas", "scsi"]);
}

#[test]
fn real_disk_sizes_allow_the_vendors_rounding_only() {
    // The secure profile's VM as hardware, with its 16 GiB system disk given a nominal decimal size's real
    // capacity: IDEMA's 480 GB is 480,103,981,056 bytes.
    let mut p = profile(SECURE);
    p.disks[0].size = "480GB".parse().unwrap();
    let exp = Expectation::for_hardware(&p);
    let with_size = |bytes: u64| {
        let mut v = json_of(SECURE);
        v["disks"][0]["sizeBytes"] = json!(bytes);
        let inv = parse_inventory(&v.to_string(), Path::new("x.json")).unwrap();
        qualify(&exp, &inv).mismatches().map(|c| c.id.clone()).collect::<Vec<_>>()
    };
    assert!(with_size(480_103_981_056).is_empty());
    assert!(with_size(472_000_000_000).is_empty(), "RAID metadata: 1.7 % below");
    assert!(with_size(447 << 30).is_empty(), "447 GiB is how tools show 480 GB");
    assert_eq!(with_size(400_000_000_000), ["disks.system.size"], "a 400 GB disk is another product");
    assert_eq!(with_size(490_000_000_000), ["disks.system.size"], "2.1 % above");
}

#[test]
fn gpus_are_not_emulated_and_are_checked_by_pci_id_on_hardware() {
    let p = profile("lenovo-thinksystem-sr665-v3-h100");
    let exp = Expectation::for_emulation(&p);
    let r = qualify(&exp, &inventory(VIRTIO));
    let gpu = r.checks.iter().find(|c| c.id == "gpus[0]").unwrap();
    assert_eq!(gpu.status, Status::NotChecked);
    assert_eq!(gpu.expected, "2 × H100 PCIe (10de:2331)");

    let hw = Expectation::for_hardware(&p);
    let gpu_status = |devices: Option<Vec<&str>>| {
        let mut inv = inventory(VIRTIO);
        inv.pci_devices = devices.map(|ids| {
            ids.iter().map(|id| PciDevice { pci_id: (*id).to_owned(), pci_address: None, driver: None }).collect()
        });
        let r = qualify(&hw, &inv);
        r.checks.iter().find(|c| c.id == "gpus[0]").map(|c| c.status)
    };
    assert_eq!(gpu_status(None), Some(Status::NotChecked));
    assert_eq!(gpu_status(Some(vec!["10de:2331", "8086:10d3", "10de:2331"])), Some(Status::Pass));
    assert_eq!(gpu_status(Some(vec!["10de:2331"])), Some(Status::Mismatch));
}

#[test]
fn extensions_and_kernel_modules_are_checked_by_name_on_hardware() {
    let mut p = profile(SECURE);
    p.extensions = vec!["ghcr.io/example/fixture-storage-net:6.1@sha256:0123".into(), "siderolabs/intel-ucode".into()];
    p.kernel_modules = ["nvme-core", "vfio_pci"]
        .iter()
        .map(|m| talforge_builder::spec::profile::KernelModuleSpec { name: (*m).into(), parameters: Vec::new() })
        .collect();
    let r = qualify(&Expectation::for_hardware(&p), &inventory(SECURE));
    let get = |id: &str| r.checks.iter().find(|c| c.id == id).unwrap();
    assert_eq!(get("extensions").status, Status::Mismatch);
    assert_eq!(get("extensions").found, "fixture-storage-net, fixture-firmware; missing: intel-ucode");
    assert_eq!(get("kernelModules").status, Status::Mismatch);
    assert_eq!(get("kernelModules").found, "not loaded: vfio_pci", "nvme-core is nvme_core");

    // In the lab both are informational.
    let r = qualify(&Expectation::for_emulation(&p), &inventory(SECURE));
    assert!(r.qualified, "{}", r.human());
    let get = |id: &str| r.checks.iter().find(|c| c.id == id).unwrap().status;
    assert_eq!((get("extensions"), get("kernelModules")), (Status::NotChecked, Status::NotChecked));
}

// ------------------------------------------------------------------------------------------------ bad input

fn parse_err(text: &str) -> String {
    parse_inventory(text, Path::new("inv.json")).unwrap_err().to_string()
}

#[test]
fn malformed_json_is_reported_with_file_line_column() {
    let text = std::fs::read_to_string(data(&format!("{VIRTIO}.json"))).unwrap();
    let line = text.lines().position(|l| l.starts_with("  \"cpus\": 2")).unwrap() + 1;
    let broken = text.replacen("  \"cpus\": 2,", "  \"cpus\": 2,,", 1);
    assert_eq!(parse_err(&broken), format!("inv.json:{line}:13: key must be a string"));
    let wrong_type = text.replacen("  \"cpus\": 2,", "  \"cpus\": \"two\",", 1);
    assert_eq!(parse_err(&wrong_type), format!("inv.json:{line}:15: cpus: invalid type: string \"two\", expected u32"));
    let wrong_variant = text.replacen("\"type\": \"uefi\"", "\"type\": \"efi\"", 1);
    let line = text.lines().position(|l| l.contains("\"type\": \"uefi\"")).unwrap() + 1;
    assert_eq!(
        parse_err(&wrong_variant),
        format!("inv.json:{line}:17: firmware.type: unknown variant `efi`, expected `uefi` or `bios`")
    );
    let disk_size = text.replacen("\"sizeBytes\": 21474836480", "\"sizeBytes\": -1", 1);
    let line = text.lines().position(|l| l.contains("\"sizeBytes\": 21474836480")).unwrap() + 1;
    assert_eq!(
        parse_err(&disk_size),
        format!("inv.json:{line}:21: disks[1].sizeBytes: invalid value: integer `-1`, expected u64")
    );
}

#[test]
fn a_missing_required_section_names_it() {
    let mut v = json_of(VIRTIO);
    v.as_object_mut().unwrap().remove("tpm");
    assert!(parse_err(&v.to_string()).ends_with(": missing field `tpm`"), "{}", parse_err(&v.to_string()));
}

#[test]
fn an_unknown_key_is_accepted() {
    let mut v = json_of(VIRTIO);
    v["newKey"] = json!({"x": 1});
    v["nics"][0]["speedMbps"] = json!(1000);
    assert!(parse_inventory(&v.to_string(), Path::new("x.json")).is_ok());
}

#[test]
fn another_schema_version_is_refused() {
    let mut v = json_of(VIRTIO);
    v["schema"] = json!(2);
    assert_eq!(
        parse_err(&v.to_string()),
        "inv.json:1:1: schema: expected inventory schema 1 (what this talforge reads); found 2"
    );
    v.as_object_mut().unwrap().remove("schema");
    assert!(parse_err(&v.to_string()).ends_with("found no schema key"));
}

#[test]
fn in_a_serial_log_the_last_complete_line_counts_and_positions_are_the_logs() {
    let line = serde_json::to_string(&json_of(SECURE)).unwrap();
    let mut other = json_of(VIRTIO);
    other["cpus"] = json!(7);
    let earlier = serde_json::to_string(&other).unwrap();
    // An earlier boot's line, then this boot's, then a line cut off by a power failure.
    let log = format!(
        "OVMF\r\n[ 1.0] TALFORGE-INVENTORY {earlier}\r\nboot 2\n1732270000.5 TALFORGE-INVENTORY {line}\r\nTALFORGE-INVENTORY {}\n",
        &line[..200]
    );
    let inv = parse_inventory(&log, Path::new("serial.log")).unwrap();
    assert_eq!(inv, inventory(SECURE));

    // Only a cut-off line: say so, with its line.
    let cut = format!("kernel\nTALFORGE-INVENTORY {}\n", &line[..300]);
    assert_eq!(
        parse_err(&cut).replace("inv.json", "serial.log"),
        "serial.log:2: the inventory JSON is cut off (the guest or its log stopped before the end), and no \
         complete inventory precedes it"
    );

    // A wrong value on the line is located in the log: line 3, after the timestamp and the marker.
    let bad = line.replacen("\"cpus\":2", "\"cpus\":true", 1);
    let col = "1.5 TALFORGE-INVENTORY ".len() + bad.find("\"cpus\":true").unwrap() + "\"cpus\":true".len();
    let log = format!("a\nb\n1.5 TALFORGE-INVENTORY {bad}\n");
    assert_eq!(parse_err(&log), format!("inv.json:3:{col}: cpus: invalid type: boolean `true`, expected u32"));
}

#[test]
fn text_without_an_inventory_is_refused() {
    assert_eq!(
        parse_err("[    0.000] Linux version\nTALFORGE-STAGE kernel-booted\n"),
        "inv.json: no inventory: expected a JSON object, or a serial log with a line `TALFORGE-INVENTORY {...}`"
    );
    assert_eq!(parse_err(""), parse_err("nothing"));
}

#[test]
fn an_unreadable_file_names_it() {
    let err = read_inventory(Path::new("/nonexistent/inv.json")).unwrap_err();
    assert_eq!(err.to_string(), "cannot read inventory /nonexistent/inv.json");
    assert_eq!(err.class(), talforge_builder::ErrorClass::Io);
}

// ------------------------------------------------------------------------------------------------ globs

#[test]
fn globs() {
    assert!(glob_match("TF-SYS-*", "TF-SYS-0"));
    assert!(glob_match("TF-SYS-*", "TF-SYS-"));
    assert!(!glob_match("TF-SYS-*", "TF-OSD-0"));
    assert!(glob_match("S6EU?N0*", "S6EUAN0123"));
    assert!(!glob_match("S6EU?N0*", "S6EUN0123"));
    assert!(glob_match("*-N1", "Dell BOSS-N1"));
    assert!(glob_match("a*b*c", "aXbYbZc"));
    assert!(!glob_match("a*b*c", "aXbYbZ"));
    assert!(glob_match("0000:1[7-8]:00.*", "0000:18:00.1"));
    assert!(!glob_match("0000:1[!7]:00.0", "0000:17:00.0"));
    assert!(glob_match("a[b", "a[b"), "an unclosed class is literal");
    assert!(glob_match("exact", "exact"));
    assert!(!glob_match("exact", "exactly"));
}
