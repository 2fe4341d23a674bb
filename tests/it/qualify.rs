//! `talforge qualify` through the binary: exit 0 when the inventory matches its profile, 1 on a mismatch,
//! 2 on bad input, on the fixture guest's real inventories (testbed/tests/data/qualify/).

use std::path::PathBuf;

use crate::support::{repo, stderr, stdout, talforge};

fn data(name: &str) -> PathBuf {
    repo().join("testbed/tests/data/qualify").join(name)
}

fn qualify(args: &[&str]) -> std::process::Output {
    let tmp = tempfile::tempdir().unwrap();
    let catalog = repo();
    let mut all = vec!["--catalog", catalog.to_str().unwrap(), "qualify"];
    all.extend_from_slice(args);
    talforge(tmp.path(), &all)
}

#[test]
fn a_matching_inventory_exits_0() {
    let inv = data("qemu-nvme-secureboot-tpm.json");
    let out = qualify(&["--profile", "qemu-nvme-secureboot-tpm", "--inventory", inv.to_str().unwrap(), "--emulated"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("mode emulated"), "{text}");
    assert!(text.ends_with("qualified: 26 checks, 26 pass, 0 mismatch, 0 not checked\n"), "{text}");
}

#[test]
fn a_serial_log_is_read_like_the_json() {
    let inv = data("qemu-nvme-secureboot-tpm.serial.log");
    let out = qualify(&["--profile", "qemu-nvme-secureboot-tpm", "--inventory", inv.to_str().unwrap(), "--emulated"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn a_mismatch_exits_1_and_the_json_report_lists_it() {
    let inv = data("qemu-virtio-uefi.json");
    let out = qualify(&["--profile", "qemu-nvme-secureboot-tpm", "--inventory", inv.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["mode"], "hardware");
    assert_eq!(report["qualified"], false);
    let tpm = report["checks"].as_array().unwrap().iter().find(|c| c["id"] == "tpm").unwrap();
    assert_eq!(
        (&tpm["status"], &tpm["expected"], &tpm["found"]),
        (&"mismatch".into(), &"TPM 2.0".into(), &"none".into())
    );
    assert_eq!(report["summary"]["mismatch"], 8);
}

#[test]
fn an_unknown_profile_exits_2() {
    let inv = data("qemu-virtio-uefi.json");
    let out = qualify(&["--profile", "no-such-server", "--inventory", inv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown hardware profile \"no-such-server\"; known: dell-poweredge-r760"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_broken_inventory_exits_2_with_its_position() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(data("qemu-virtio-uefi.json")).unwrap();
    let line = text.lines().position(|l| l.contains("\"sizeBytes\": 21474836480")).unwrap() + 1;
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, text.replacen("\"sizeBytes\": 21474836480", "\"sizeBytes\": \"20G\"", 1)).unwrap();
    let out = qualify(&["--profile", "qemu-virtio-uefi", "--inventory", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!("error: {}:{line}:24: disks[1].sizeBytes: invalid type: string \"20G\", expected u64\n", bad.display())
    );

    let missing = tmp.path().join("missing.json");
    let out = qualify(&["--profile", "qemu-virtio-uefi", "--inventory", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with(&format!("error: cannot read inventory {}: ", missing.display())));
}
