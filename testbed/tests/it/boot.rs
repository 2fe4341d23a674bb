//! VMs made by the testbed's command lines boot the fixture release (docs/fixture-release.md) under TCG,
//! and the guest's `TALFORGE-INVENTORY` line shows the hardware the profile promises: NIC models and MACs,
//! disk buses, serials and sizes, Secure Boot, the TPM, SMBIOS. Each VM runs in a private network namespace
//! on the taps its plan names; swtpm provides the TPM; QMP powers it off.
//!
//! The images come from the builder library building the sample cluster (testbed/labs/sample.yaml) from
//! the fixture release, once per test binary and release, under the target's scratch folder.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use talforge_builder::build::{BuildOptions, build};
use talforge_builder::plan::{PlanOverrides, plan_cluster};
use talforge_builder::spec::cluster::OutputKind;
use talforge_builder::spec::units::ByteSize;
use talforge_builder::tool::ToolRunner;
use talforge_testbed::qemu::files::prepare_vm_files;
use talforge_testbed::qemu::{Accel, BootMedium, FirmwarePaths, NodeInputs, VmPlan, resolve_vm};
use talforge_testbed::qualify::{Expectation, NodeFacts, Status, emulated_nic_pci_id, parse_inventory, qualify};

use crate::support::{
    DumpOnPanic, Netns, Qmp, need_file, ok, profile, program, qemu, repo, start_qemu, start_swtpm, swtpm,
};

/// A TCG boot here: OVMF 6-15 s, sd-boot's menu, the kernel to the inventory 5-13 s, the Secure Boot
/// enrollment reboot doubling the firmware part; a loaded CI machine is slower.
const BOOT_DEADLINE: Duration = Duration::from_secs(400);

/// From the inventory line to the guest watching the ACPI power button (a few shell commands).
const POWER_BUTTON_DEADLINE: Duration = Duration::from_secs(60);

const SECURE: &str = "qemu-nvme-secureboot-tpm";
const PLAIN: &str = "qemu-virtio-uefi";

/// The sample cluster's metal and PXE images of both lab profiles, built once per test binary and fixture
/// release.
fn sample_images() -> Option<PathBuf> {
    let release = crate::support::fixture_release()?;
    let exe = std::fs::metadata(std::env::current_exe().expect("test binary")).expect("test binary");
    let fixture = std::fs::read(release.join("fixture.json")).expect("fixture.json");
    let key = format!("{}-{:?}-{}", exe.len(), exe.modified().ok(), fixture.len());
    let key: u64 = key
        .bytes()
        .chain(fixture.iter().copied())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(scratch).expect("target tmp");
    let lock = File::create(scratch.join("testbed-sample.lock")).expect("lock file");
    lock.lock().expect("lock");
    let root = scratch.join(format!("testbed-sample-{key:016x}"));
    let out = root.join("out");
    if !root.join("done").exists() {
        for e in std::fs::read_dir(scratch).expect("scratch").flatten() {
            if e.file_name().to_string_lossy().starts_with("testbed-sample-") && e.path().is_dir() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let lab = root.join("lab");
        std::fs::create_dir_all(lab.join("secureboot")).expect("mkdir");
        let text = std::fs::read_to_string(repo().join("testbed/labs/sample.yaml")).expect("sample.yaml");
        let from = "source: { dir: ../../out/fixture-release }";
        assert!(text.contains(from), "testbed/labs/sample.yaml no longer says {from:?}; update this test");
        std::fs::write(
            lab.join("sample.yaml"),
            text.replace(from, &format!("source: {{ dir: {} }}", release.display())),
        )
        .expect("write");
        // No keys are copied: the build makes this lab's Secure Boot key (testbed/labs/secureboot/ is a local,
        // git-ignored folder that a fresh checkout does not have).
        let catalog = crate::support::catalog();
        let plan = plan_cluster(&lab.join("sample.yaml"), &catalog, &PlanOverrides::default()).expect("plan");
        let opts = BuildOptions {
            out: out.clone(),
            release: None,
            kinds: Some(vec![OutputKind::Metal, OutputKind::Pxe]),
            profiles: vec![SECURE.into(), PLAIN.into()],
            epoch: None,
            cache: root.join("cache"),
            offline: true,
            update_lock: false,
            build_cache: None,
        };
        let t = Instant::now();
        build(&plan, &opts, ToolRunner::new).expect("build the sample images");
        eprintln!("sample images built in {:.1} s", t.elapsed().as_secs_f64());
        std::fs::write(root.join("done"), "").expect("mark done");
    }
    drop(lock);
    Some(out)
}

fn image_dir(out: &Path, profile: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(out.join("images"))
        .expect("images")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix(profile)).is_some_and(|r| r.len() == 13)
        })
        .collect();
    assert_eq!(found.len(), 1, "one image folder for {profile}: {found:?}");
    found.into_iter().next().expect("one")
}

/// Waits until the console log holds a complete inventory line, QEMU exits, or the deadline passes; returns
/// the log.
fn wait_for_inventory(log: &Path, q: &mut talforge_testbed::qemu::process::ChildGuard, deadline: Duration) -> String {
    let start = Instant::now();
    let mut text = String::new();
    crate::support::wait_until(deadline, || {
        text = read_lossy(log);
        let done = text.lines().any(|l| l.contains("TALFORGE-INVENTORY {") && l.trim_end().ends_with('}'));
        done || q.child().try_wait().ok().flatten().is_some()
    });
    eprintln!("inventory after {:.1} s", start.elapsed().as_secs_f64());
    text
}

/// A console log as text (firmware writes escape sequences and stray bytes).
fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

fn inventory_json(text: &str) -> Value {
    let line = text
        .lines()
        .rev()
        .find_map(|l| l.split_once("TALFORGE-INVENTORY ").map(|(_, j)| j.trim_end()))
        .unwrap_or_else(|| panic!("no inventory line; console tail:\n{}", tail(text, 40)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("inventory JSON: {e}: {line}"))
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn needs() -> Option<(PathBuf, PathBuf)> {
    let qemu = qemu()?;
    let swtpm = swtpm()?;
    let fw = FirmwarePaths::debian();
    for f in [&fw.code, &fw.code_secure_boot, &fw.vars_template] {
        need_file(f, "ovmf")?;
    }
    Some((qemu, swtpm))
}

/// Qualification of the inventory against the profile's emulation: no mismatch.
fn assert_qualified(vm: &VmPlan, text: &str, cpus_mem: Option<(u32, u64)>) {
    let inv = parse_inventory(text, Path::new("console.log")).expect("inventory parses");
    let mut exp = Expectation::for_emulation(&profile(&vm.profile));
    if let Some((c, m)) = cpus_mem {
        exp = exp.with_vm_shape(c, m);
    }
    let exp = exp.with_facts(&NodeFacts { macs: vm.macs() }).expect("facts");
    let report = qualify(&exp, &inv);
    let bad: Vec<String> =
        report.checks.iter().filter(|c| c.status == Status::Mismatch).map(|c| format!("{c:?}")).collect();
    assert!(bad.is_empty(), "{}: qualify finds mismatches:\n{}", vm.profile, bad.join("\n"));
    assert!(report.summary.pass > 10, "{}: {:?}", vm.profile, report.summary);
}

fn nic_by_mac<'a>(inv: &'a Value, mac: &str) -> &'a Value {
    inv["nics"]
        .as_array()
        .expect("nics")
        .iter()
        .find(|n| n["mac"] == mac)
        .unwrap_or_else(|| panic!("no NIC with MAC {mac}: {}", inv["nics"]))
}

fn disk_by_serial<'a>(inv: &'a Value, serial: &str) -> &'a Value {
    inv["disks"]
        .as_array()
        .expect("disks")
        .iter()
        .find(|d| d["serial"] == serial)
        .unwrap_or_else(|| panic!("no disk with serial {serial}: {}", inv["disks"]))
}

#[test]
fn secure_boot_tpm_nvme_vm_boots_its_metal_image_and_shows_the_profile() {
    let Some((qemu, swtpm)) = needs() else { return };
    let Some(zstd) = program("zstd", "zstd") else { return };
    let Some(busybox) = program("busybox", "busybox-static") else { return };
    let Some(out) = sample_images() else { return };
    let Some(netns) = Netns::create("sb") else { return };
    let work = tempfile::tempdir().unwrap();

    // w-1 of the sample lab, booting its Secure Boot metal image from the NVMe install disk.
    let vm = resolve_vm(&profile(SECURE), &NodeInputs::new("sample", "w-1", work.path(), BootMedium::InstallDisk))
        .expect("plan");
    let install = vm.install_disk().expect("install disk");
    let image = image_dir(&out, SECURE).join("metal-amd64-secureboot.raw.zst");
    ok(Command::new(&zstd).args(["-d", "-q", "-f"]).arg(&image).arg("-o").arg(&install.image));
    prepare_vm_files(&vm).expect("files");
    assert_eq!(std::fs::metadata(&install.image).unwrap().len(), 16 * ByteSize::GIB);

    // The NIC's tap, with a DHCP server on it (nothing leaves the namespace).
    netns.add_tap(&vm.nics[0].tap, Some("10.0.2.1/24"));
    let conf = work.path().join("udhcpd.conf");
    std::fs::write(
        &conf,
        format!(
            "interface {}\nstart 10.0.2.15\nend 10.0.2.20\noption subnet 255.255.255.0\nlease_file {}\npidfile {}\n",
            vm.nics[0].tap,
            work.path().join("leases").display(),
            work.path().join("udhcpd.pid").display()
        ),
    )
    .unwrap();
    std::fs::write(work.path().join("leases"), "").unwrap();
    let mut dhcp_cmd = netns.command(&busybox, &["udhcpd".into(), "-f".into(), conf.into()]);
    dhcp_cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let _dhcp = talforge_testbed::qemu::process::ChildGuard::spawn(dhcp_cmd, Vec::new()).expect("udhcpd");

    let _tpm = start_swtpm(&swtpm, vm.tpm.as_ref().expect("TPM"));
    let stderr = work.path().join("qemu.stderr");
    let mut q = start_qemu(&qemu, &netns, &vm, Accel::Tcg, &[], &stderr);
    let _dump = DumpOnPanic { files: vec![vm.console.log.clone(), stderr.clone()] };
    let mut qmp = Qmp::connect(&vm.qmp_socket);
    let text = wait_for_inventory(&vm.console.log, &mut q, BOOT_DEADLINE);
    let inv = inventory_json(&text);
    let status = qmp.execute("query-status", json!({}));
    assert_eq!(status["status"], "running");
    // sd-boot enrolled the keys in setup mode and rebooted: QEMU reset the VM instead of exiting.
    let resets: Vec<&Value> = qmp.events.iter().filter(|e| e["event"] == "RESET").collect();
    assert_eq!(resets.len(), 1, "expected the enrollment reboot as one RESET; events: {:?}", qmp.events);
    assert_eq!(resets[0]["data"]["guest"], true, "{}", resets[0]);

    assert_eq!(inv["firmware"]["type"], "uefi");
    assert_eq!(inv["firmware"]["secureBoot"], 1, "Secure Boot enforcing after enrollment");
    assert_eq!(inv["firmware"]["setupMode"], 0);
    assert_eq!(inv["tpm"]["present"], true);
    assert_eq!(inv["tpm"]["versionMajor"], 2);
    assert_eq!(inv["cpus"], 2);
    let nics = inv["nics"].as_array().unwrap();
    assert_eq!(nics.len(), 1, "{nics:?}");
    let nic = nic_by_mac(&inv, &vm.nics[0].mac.to_string());
    assert_eq!((nic["driver"].as_str(), nic["pciId"].as_str()), (Some("e1000e"), Some("8086:10d3")));
    // Frames cross the tap: the guest got its address from the namespace's DHCP server.
    assert_eq!(inv["network"]["method"], "dhcp", "{}", inv["network"]);
    assert!(inv["network"]["address"].as_str().is_some_and(|a| a.starts_with("10.0.2.")), "{}", inv["network"]);
    for (serial, size) in [("TF-SYS-0", 16 * ByteSize::GIB), ("TF-OSD-0", 20 * ByteSize::GIB)] {
        let d = disk_by_serial(&inv, serial);
        assert_eq!(d["transport"], "nvme");
        assert_eq!(d["sizeBytes"], size);
        assert_eq!(d["model"], "QEMU NVMe Ctrl");
        assert_eq!(d["pciId"], "1b36:0010");
    }
    let s = &inv["smbios"];
    assert_eq!(s["sys_vendor"], "talforge");
    assert_eq!(s["product_name"], SECURE);
    assert_eq!(s["product_family"], "talforge-lab");
    assert_eq!(s["product_serial"], "w-1");
    assert_eq!(s["product_uuid"], vm.smbios.uuid.to_string());
    assert_qualified(&vm, &text, None);

    // The ACPI power button through QMP, once the guest watches it: the guest powers off and QEMU exits.
    let waiting = crate::support::wait_until(POWER_BUTTON_DEADLINE, || {
        read_lossy(&vm.console.log).contains("TALFORGE-STAGE waiting-for-poweroff")
    });
    assert!(waiting, "the guest never waited for the power button");
    qmp.execute("system_powerdown", json!({}));
    let shutdown = qmp.wait_event("SHUTDOWN").unwrap_or_else(|| panic!("no SHUTDOWN after system_powerdown"));
    assert_eq!(shutdown["data"]["guest"], true, "{shutdown}");
    let exit = q.child().wait().unwrap();
    assert!(exit.success(), "QEMU {exit}: {}", std::fs::read_to_string(&stderr).unwrap_or_default());
    let text = read_lossy(&vm.console.log);
    assert!(
        text.contains("TALFORGE-STAGE poweroff") && text.contains("reason=acpi-power-button"),
        "{}",
        tail(&text, 10)
    );
}

#[test]
fn server_shaped_vm_with_sata_scsi_and_four_nics_boots_the_kernel() {
    let Some((qemu, swtpm)) = needs() else { return };
    let Some(out) = sample_images() else { return };
    let Some(netns) = Netns::create("dl380") else { return };
    let work = tempfile::tempdir().unwrap();

    // The PXE kernel and initramfs (the fixture extensions carry e1000e and ahci) on an HPE DL380 Gen10
    // shape: 2 e1000e + 2 virtio-net, a SATA boot SSD, six SAS SSDs as virtio-scsi disks, UEFI with a TPM;
    // 2 vCPUs and 2 GiB as a cluster file's `lab` section would give it.
    let images = image_dir(&out, PLAIN);
    let cmdline = std::fs::read_to_string(images.join("cmdline-metal-amd64")).unwrap().trim().to_owned();
    let boot = BootMedium::Kernel {
        kernel: images.join("kernel-amd64"),
        initrd: images.join("initramfs-amd64.xz"),
        cmdline: format!("{cmdline} ip=off talforge.poweroff=1"),
    };
    let mut inputs = NodeInputs::new("sample", "dl380-1", work.path(), boot);
    inputs.cpus = Some(2);
    inputs.memory = Some(ByteSize(2 * ByteSize::GIB));
    let p = profile("hpe-proliant-dl380-gen10");
    let vm = resolve_vm(&p, &inputs).expect("plan");
    prepare_vm_files(&vm).expect("files");
    for n in &vm.nics {
        netns.add_tap(&n.tap, None);
    }
    let _tpm = start_swtpm(&swtpm, vm.tpm.as_ref().expect("TPM"));
    let stderr = work.path().join("qemu.stderr");
    let mut q = start_qemu(&qemu, &netns, &vm, Accel::Tcg, &[], &stderr);
    let _dump = DumpOnPanic { files: vec![vm.console.log.clone(), stderr.clone()] };
    let text = wait_for_inventory(&vm.console.log, &mut q, BOOT_DEADLINE);
    let inv = inventory_json(&text);
    // talforge.poweroff=1 and -no-reboot: the guest powers off and QEMU exits by itself.
    let exit = q.child().wait().unwrap();
    assert!(exit.success(), "QEMU {exit}: {}", std::fs::read_to_string(&stderr).unwrap_or_default());

    assert_eq!(inv["firmware"]["type"], "uefi");
    assert_eq!(inv["firmware"]["secureBoot"], 0);
    assert_eq!(inv["tpm"]["present"], true);
    assert_eq!(inv["cpus"], 2);
    // Every NIC of the plan is listed by the guest, with its MAC, its model's driver and PCI ID.
    let listed = inv["nics"].as_array().unwrap();
    assert_eq!(listed.len(), vm.nics.len(), "{}", inv["nics"]);
    for n in &vm.nics {
        let found = nic_by_mac(&inv, &n.mac.to_string());
        assert_eq!(found["driver"].as_str(), Some(n.model.guest_driver()), "{}", n.name);
        assert_eq!(found["pciId"].as_str(), Some(emulated_nic_pci_id(n.model)), "{}", n.name);
    }
    let boot = disk_by_serial(&inv, "DL380-BOOT-0");
    assert_eq!((boot["transport"].as_str(), boot["sizeBytes"].as_u64()), (Some("sata"), Some(240_000_000_000)));
    assert_eq!(boot["rotational"], false, "rotation_rate=1 reaches the guest");
    assert_eq!(boot["pciDriver"], "ahci");
    for i in 0..6 {
        let d = disk_by_serial(&inv, &format!("DL380-OSD-{i}"));
        assert_eq!((d["transport"].as_str(), d["sizeBytes"].as_u64()), (Some("scsi"), Some(20 * ByteSize::GIB)));
        assert_eq!(d["rotational"], false);
        assert_eq!(d["pciId"], "1af4:1004");
    }
    assert_eq!(inv["disks"].as_array().unwrap().len(), 7, "{}", inv["disks"]);
    assert_eq!(inv["smbios"]["sys_vendor"], "HPE");
    assert_eq!(inv["smbios"]["product_name"], "ProLiant DL380 Gen10");
    assert_qualified(&vm, &text, Some((2, 2 * ByteSize::GIB)));
}
