//! `talforge lab run` end to end under TCG: the sample cluster's three nodes (two profiles, one of them UEFI
//! Secure Boot with a TPM and NVMe disks) boot their metal images, fetch their configs from the lab's config
//! server and pass every stage; then the failure scenarios — an inventory that does not match (a missing
//! disk), a refused config, a VM killed mid-boot, a stage timeout, SIGTERM to `talforge lab run` — each end in
//! the right failed stage with a useful message; a guest panic comes through pvpanic. Then the lab as uid
//! 65534 in a user namespace (and refused, saying why, where /dev/net/tun is root's), NAT through slirp4netns
//! to an "outside" namespace the test makes, and a BIOS node booting its PXE kernel under SeaBIOS. After
//! every scenario the test lists what could survive a bad teardown (QEMU, swtpm and slirp4netns processes,
//! the network namespace, taps, the VMs' folder) and finds nothing.
//!
//! Needs root (the lab's network namespace, and to set up the rootless run), QEMU, OVMF, swtpm, xmllint,
//! slirp4netns, nftables, busybox and the fixture release (ci/fixture-release); without them the tests skip,
//! and fail under CI.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::repo;

fn unavailable<T>(why: &str) -> Option<T> {
    talforge_builder::tool::skip_test(&format!("SKIP: {why}"));
    None
}

/// Root, the programs and files the lab needs, and the fixture release.
fn needs() -> Option<PathBuf> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|r| r.split_whitespace().nth(1));
    if euid != Some("0") {
        return unavailable("the lab needs root (its network namespace)");
    }
    for (p, pkg) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("swtpm", "swtpm"),
        ("ip", "iproute2"),
        ("xmllint", "libxml2-utils"),
    ] {
        if talforge_builder::tool::ToolRunner::new(0).find(talforge_builder::tool::Program::new(p, pkg)).is_none() {
            return unavailable(&format!("{p} is not installed (Debian package {pkg})"));
        }
    }
    for f in ["/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"] {
        if !Path::new(f).is_file() {
            return unavailable(&format!("{f} is missing (Debian package ovmf)"));
        }
    }
    let dir =
        std::env::var_os("TALFORGE_FIXTURE_RELEASE").map_or_else(|| repo().join("out/fixture-release"), PathBuf::from);
    if !dir.join("fixture.json").is_file() {
        return unavailable(&format!("no fixture release at {} (build it with ci/fixture-release)", dir.display()));
    }
    Some(std::fs::canonicalize(dir).expect("fixture path"))
}

/// A lab folder of its own (state, report) and the cluster file, holding the sample cluster's `nodes`.
struct Lab {
    dir: tempfile::TempDir,
    cluster: PathBuf,
    /// `--catalog`: the repository, unless a test made its own.
    catalog: PathBuf,
}

impl Lab {
    fn new(release: &Path, nodes: &[&str]) -> Lab {
        let dir = tempfile::Builder::new().prefix("tflab.").tempdir().expect("tempdir");
        let text = std::fs::read_to_string(repo().join("testbed/labs/sample.yaml")).expect("sample.yaml");
        let from = "source: { dir: ../../out/fixture-release }";
        assert!(text.contains(from), "testbed/labs/sample.yaml no longer says {from:?}; update this test");
        let mut out = String::new();
        for line in text.replace(from, &format!("source: {{ dir: {} }}", release.display())).lines() {
            let node = line.trim_start().strip_prefix("- { name: ").and_then(|r| r.split(',').next());
            if node.is_some_and(|n| !nodes.contains(&n)) {
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        let cluster = dir.path().join("sample.yaml");
        std::fs::write(&cluster, out).expect("write cluster file");
        Lab { dir, cluster, catalog: repo() }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn report(&self) -> PathBuf {
        self.dir.path().join("report")
    }

    fn command(&self, args: &[&str]) -> Command {
        self.lab_command("run", args)
    }

    /// `talforge lab SUB` (run or up, which take the same flags) on this lab.
    fn lab_command(&self, sub: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_talforge"));
        c.args(["lab", sub, "-f"])
            .arg(&self.cluster)
            .arg("--catalog")
            .arg(&self.catalog)
            .arg("--state")
            .arg(self.state())
            .arg("--report")
            .arg(self.report())
            .args(args)
            // The build cache is shared by the lab tests (the builder's cache is safe to share).
            .env("TALFORGE_CACHE", Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-cache"))
            .env("NO_COLOR", "1")
            .env_remove("TALFORGE_LOG")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let t = Instant::now();
        let out = self.command(args).output().expect("run talforge lab run");
        eprintln!("talforge lab run {args:?}: {} in {:.1} s", out.status, t.elapsed().as_secs_f64());
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn record(&self) -> Value {
        let text = std::fs::read_to_string(self.report().join("run.json")).expect("run.json");
        serde_json::from_str(&text).expect("run.json parses")
    }

    /// Nothing of the lab survives: no process started for it (their command lines name the lab's folder),
    /// no network namespace, no tap or bridge in the host's namespace, no VM folder.
    fn assert_torn_down(&self) {
        let state = std::fs::canonicalize(self.state()).expect("state folder");
        let needle = state.to_string_lossy().into_owned();
        let mut left = Vec::new();
        for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
            if !e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&needle) && !cmd.contains("lab run") {
                left.push(cmd);
            }
        }
        assert!(left.is_empty(), "processes of the lab survived: {left:?}");
        let netns = talforge_testbed::lab::state::netns_name("sample", &state);
        assert!(talforge_testbed::net::list_netns(&netns).is_empty(), "network namespace {netns} survived");
        let host_links = Command::new("ip").args(["-o", "link", "show"]).output().expect("ip link");
        let host_links = String::from_utf8_lossy(&host_links.stdout).into_owned();
        for l in host_links.lines() {
            let name = l.split(':').nth(1).unwrap_or("").trim();
            assert!(
                !(name == talforge_testbed::lab::BRIDGE || (name.starts_with("tf") && name.len() == 12)),
                "a lab link is in the host's namespace: {l}"
            );
        }
        assert!(!state.join("run").exists(), "the VMs' folder survived: {}", state.join("run").display());
        assert!(!state.join("lab.json").exists(), "lab.json survived");
    }
}

/// Reads `child`'s stderr until a line contains `needle` (at most 400 s), returning the lines so far; kills
/// the child and fails if it never comes.
fn stderr_until(child: &mut std::process::Child, needle: &str) -> Vec<String> {
    stderr_until_line(child, |l| l.contains(needle)).0
}

/// Reads `child`'s stderr until a line satisfies `wanted` (at most 400 s); returns the lines so far and the
/// rest of stderr, still coming. Kills the child and fails if the line never comes.
fn stderr_until_line(
    child: &mut std::process::Child,
    wanted: impl Fn(&str) -> bool,
) -> (Vec<String>, std::sync::mpsc::Receiver<String>) {
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(400);
    let mut seen: Vec<String> = Vec::new();
    while !seen.last().is_some_and(|l| wanted(l)) {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            panic!("never saw the line waited for on stderr:\n{}", seen.join("\n"));
        };
        seen.push(line);
    }
    (seen, rx)
}

fn stage<'a>(record: &'a Value, node: &str, stage: &str) -> &'a Value {
    record["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["name"] == node)
        .unwrap_or_else(|| panic!("no node {node} in {record}"))["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"] == stage)
        .unwrap_or_else(|| panic!("no stage {stage} for {node}"))
}

fn statuses(record: &Value, node: &str) -> Vec<String> {
    let n = record["nodes"].as_array().expect("nodes").iter().find(|n| n["name"] == node).expect("node");
    n["stages"].as_array().expect("stages").iter().map(|s| s["status"].as_str().expect("status").to_owned()).collect()
}

fn xmllint(args: &[&str], file: &Path) -> String {
    let out = Command::new("xmllint").args(args).arg(file).output().expect("xmllint");
    assert!(out.status.success(), "xmllint {args:?} {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_sample_lab_boots_three_nodes_and_passes_every_stage() {
    let Some(release) = needs() else { return };
    let lab = Lab::new(&release, &["cp-1", "w-1", "w-2"]);
    let out = lab.run(&["--accel", "tcg"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("lab sample: passed — 21/21 stages passed on 3 nodes"), "{stdout}");
    lab.assert_torn_down();

    let r = lab.record();
    assert_eq!(r["outcome"], "passed");
    for node in ["cp-1", "w-1", "w-2"] {
        assert_eq!(statuses(&r, node), vec!["passed"; 7], "{node}");
    }
    // The Secure Boot node enrolled its keys (one reset) before its kernel booted.
    let k = stage(&r, "w-1", "kernel-booted")["message"].as_str().expect("message");
    assert!(k.contains("after 1 reset(s)"), "{k}");
    let c = stage(&r, "w-1", "config-fetched")["message"].as_str().expect("message");
    assert!(c.starts_with("sha256 ") && c.contains("equals the served config's"), "{c}");
    // What the config server served is the node's machine config from the configs folder.
    let served = std::fs::read(lab.state().join("configs/nodes/w-1.yaml")).expect("w-1 config");
    let digest = sha2::Sha256::digest(&served);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert!(c.contains(&hex), "{c} vs {hex}");
    let inv = stage(&r, "w-1", "inventory-matches-profile")["message"].as_str().expect("message");
    assert!(inv.contains("checks pass"), "{inv}");
    let fetches: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.report().join("lab/config-server.json")).expect("log"))
            .expect("fetch log");
    let nodes: Vec<&str> = fetches.as_array().expect("fetches").iter().filter_map(|f| f["node"].as_str()).collect();
    for node in ["cp-1", "w-1", "w-2"] {
        assert!(nodes.contains(&node), "{node} fetched no config: {fetches}");
    }
    assert!(fetches.as_array().expect("fetches").iter().all(|f| f["status"] == 200), "{fetches}");
    // Artifacts per node: console log, QEMU argv and stderr, the guest's inventory and the qualification.
    for f in ["console.log", "qemu.argv", "qemu.stderr", "inventory.json", "qualify.txt"] {
        assert!(lab.report().join("nodes/w-1").join(f).is_file(), "nodes/w-1/{f}");
    }
    assert!(lab.report().join("nodes/w-1/swtpm.stderr").is_file());

    // JUnit: well-formed (xmllint), one testcase per stage per node, no failure.
    let junit = lab.report().join("junit.xml");
    xmllint(&["--noout"], &junit);
    assert_eq!(xmllint(&["--xpath", "count(//testsuite)"], &junit).trim(), "3");
    assert_eq!(xmllint(&["--xpath", "count(//testcase)"], &junit).trim(), "21");
    assert_eq!(xmllint(&["--xpath", "count(//failure)"], &junit).trim(), "0");
    let html = std::fs::read_to_string(lab.report().join("report.html")).expect("report.html");
    assert!(html.contains("<svg") && html.contains("kernel-booted") && !html.contains("<script"), "HTML report");
}

use sha2::Digest as _;

#[test]
fn faulty_nodes_fail_the_right_stage_and_the_lab_still_tears_down() {
    let Some(release) = needs() else { return };
    let lab = Lab::new(&release, &["cp-1", "w-1", "w-2"]);
    let out = lab.run(&[
        "--accel",
        "tcg",
        "--fault",
        "refuse-config:cp-1",
        "--fault",
        "drop-disk:w-2:osd",
        "--fault",
        "kill:w-1@firmware-reached-bootloader",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    lab.assert_torn_down();
    let r = lab.record();
    assert_eq!(r["outcome"], "failed");

    // A config server refusing a node.
    let s = stage(&r, "cp-1", "config-fetched");
    assert_eq!(s["status"], "failed");
    let m = s["message"].as_str().expect("message");
    assert!(m.contains("the config server refused cp-1: 403"), "{m}");
    assert_eq!(statuses(&r, "cp-1")[5..], ["not-run", "not-run"]);

    // A missing disk: the inventory does not match the profile.
    let s = stage(&r, "w-2", "inventory-matches-profile");
    assert_eq!(s["status"], "failed");
    let m = s["message"].as_str().expect("message");
    assert!(m.contains("mismatch") && m.contains("osd"), "{m}");
    assert!(s["lastObserved"].as_str().is_some_and(|o| !o.is_empty()), "{s}");

    // A VM killed mid-boot.
    let s = stage(&r, "w-1", "kernel-booted");
    assert_eq!(s["status"], "failed");
    let m = s["message"].as_str().expect("message");
    assert!(m.contains("killed by signal 9 (SIGKILL)"), "{m}");
    assert_eq!(statuses(&r, "w-1")[..2], ["passed", "passed"]);

    let junit = lab.report().join("junit.xml");
    xmllint(&["--noout"], &junit);
    assert_eq!(xmllint(&["--xpath", "count(//failure)"], &junit).trim(), "3");
}

#[test]
fn a_guest_panic_reaches_the_lab_through_pvpanic_and_fails_the_next_stage() {
    let Some(release) = needs() else { return };
    let lab = Lab::new(&release, &["cp-1"]);
    // An NMI once the extensions are loaded: the fixture guest panics on it, pvpanic raises GUEST_PANICKED,
    // QEMU pauses the guest, and the stage after (config-fetched) fails at once, not at its timeout.
    let out = lab.run(&["--accel", "tcg", "--fault", "panic:cp-1@extensions-loaded"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("fault: injecting an NMI (QMP inject-nmi)"), "{stderr}");
    lab.assert_torn_down();
    let r = lab.record();
    assert_eq!(statuses(&r, "cp-1")[..5], ["passed", "passed", "passed", "passed", "failed"]);
    let fetched = stage(&r, "cp-1", "config-fetched");
    let message = fetched["message"].as_str().unwrap_or_default();
    // From the QMP event alone: a panic in NMI context prints nothing before pvpanic pauses the guest.
    assert_eq!(message, "guest panicked (QMP GUEST_PANICKED action=pause)", "{fetched}");
}

#[test]
fn a_bios_node_boots_its_pxe_kernel_under_seabios_and_passes_every_stage() {
    let Some(release) = needs() else { return };
    let mut lab = Lab::new(&release, &["cp-1"]);
    // A catalog of the test's own: the shipped overlays, and a legacy-BIOS twin of qemu-virtio-uefi for cp-1
    // (no shipped profile is BIOS).
    let catalog = lab.dir.path().join("catalog");
    std::fs::create_dir_all(catalog.join("hardware-profiles")).expect("catalog");
    std::os::unix::fs::symlink(repo().join("overlays"), catalog.join("overlays")).expect("overlays");
    let mut profile =
        std::fs::read_to_string(repo().join("hardware-profiles/qemu-virtio-uefi.yaml")).expect("qemu-virtio-uefi");
    for (from, to) in [
        ("name: qemu-virtio-uefi", "name: qemu-virtio-bios"),
        ("  type: uefi", "  type: bios"),
        ("product: qemu-virtio-uefi", "product: qemu-virtio-bios"),
    ] {
        assert_eq!(profile.matches(from).count(), 1, "qemu-virtio-uefi.yaml no longer has {from:?}");
        profile = profile.replace(from, to);
    }
    std::fs::write(catalog.join("hardware-profiles/qemu-virtio-bios.yaml"), profile).expect("profile");
    let cluster = std::fs::read_to_string(&lab.cluster).expect("cluster file");
    assert_eq!(cluster.matches("profile: qemu-virtio-uefi").count(), 1);
    std::fs::write(&lab.cluster, cluster.replace("profile: qemu-virtio-uefi", "profile: qemu-virtio-bios"))
        .expect("cluster file");
    lab.catalog = catalog;

    let out = lab.run(&["--accel", "tcg"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("building the pxe images of sample (qemu-virtio-bios)"), "{stderr}");
    lab.assert_torn_down();
    let r = lab.record();
    assert_eq!(statuses(&r, "cp-1"), ["passed"; 7]);
    // SeaBIOS's own log, on the console through the debug port, shows it starting QEMU's linuxboot ROM.
    let fw = stage(&r, "cp-1", "firmware-reached-bootloader");
    assert!(fw["message"].as_str().unwrap_or_default().contains("Booting from ROM"), "{fw}");
    let argv = std::fs::read_to_string(lab.report().join("nodes/cp-1/qemu.argv")).expect("qemu.argv");
    assert!(argv.contains("-kernel") && argv.contains("isa-debugcon") && !argv.contains("pflash"), "{argv}");
    let qualify = std::fs::read_to_string(lab.report().join("nodes/cp-1/qualify.txt")).expect("qualify.txt");
    let line = qualify.lines().find(|l| l.contains("firmware.type")).unwrap_or_default();
    assert!(line.trim_start().starts_with("pass") && line.ends_with("found bios"), "{qualify}");
}

/// The folder `--firmware ovmf-prebuilt` uses, holding the release the crate wants (as if fetched): Debian's
/// OVMF files under its names, and the release's SHA-256 in `sha256`. Nothing is downloaded.
fn seed_ovmf_prebuilt() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-cache/ovmf-prebuilt");
    let (_, sha) = talforge_testbed::qemu::FirmwarePaths::ovmf_prebuilt_release();
    std::fs::create_dir_all(dir.join("x64")).expect("mkdir");
    for (from, to) in [("OVMF_CODE_4M.fd", "code.fd"), ("OVMF_VARS_4M.fd", "vars.fd")] {
        let tmp = dir.join("x64").join(format!(".{to}.tmp"));
        std::fs::copy(Path::new("/usr/share/OVMF").join(from), &tmp).expect("copy OVMF");
        std::fs::rename(&tmp, dir.join("x64").join(to)).expect("rename");
    }
    std::fs::write(dir.join("sha256"), sha).expect("sha256");
    dir
}

#[test]
fn a_stage_timeout_fails_that_stage_with_what_it_last_saw() {
    let Some(release) = needs() else { return };
    let lab = Lab::new(&release, &["cp-1", "w-1", "w-2"]);
    // This run also takes OVMF from an ovmf-prebuilt folder (seeded: no network), which must boot, and runs
    // one node of the three.
    let prebuilt = seed_ovmf_prebuilt();
    let out =
        lab.run(&["--accel", "tcg", "--node", "cp-1", "--timeout", "kernel-booted=1s", "--firmware", "ovmf-prebuilt"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stdout));
    lab.assert_torn_down();
    let argv = std::fs::read_to_string(lab.report().join("nodes/cp-1/qemu.argv")).expect("qemu.argv");
    let code = prebuilt.join("x64/code.fd");
    assert!(argv.contains(&format!("file={}", code.display())), "{argv}");
    let r = lab.record();
    assert_eq!(r["nodes"].as_array().expect("nodes").len(), 1, "--node cp-1: {r}");
    assert_eq!(stage(&r, "cp-1", "firmware-reached-bootloader")["status"], "passed");
    let s = stage(&r, "cp-1", "kernel-booted");
    assert_eq!(s["status"], "failed");
    assert_eq!(s["message"], "timed out after 1.0 s (timeout kernel-booted)");
    assert_eq!(s["timeoutMs"], 1000);
    assert!(s["lastObserved"].as_str().is_some_and(|o| !o.is_empty()), "{s}");
    assert_eq!(statuses(&r, "cp-1"), ["passed", "passed", "failed", "not-run", "not-run", "not-run", "not-run"]);
}

#[test]
fn sigterm_mid_run_interrupts_tears_down_and_still_reports() {
    let Some(release) = needs() else { return };
    let lab = Lab::new(&release, &["cp-1"]);
    let mut child =
        lab.command(&["--accel", "tcg"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    // Once the firmware has handed over to the bootloader, the VM is mid-boot.
    let (mut seen, rx) =
        stderr_until_line(&mut child, |l| l.contains("firmware-reached-bootloader") && l.contains("passed"));
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = child.wait().expect("wait");
    for l in rx.try_iter() {
        seen.push(l);
    }
    assert_eq!(status.code(), Some(143), "{}", seen.join("\n"));
    lab.assert_torn_down();
    let r = lab.record();
    assert_eq!(r["outcome"], "interrupted");
    assert_eq!(r["message"], "interrupted by SIGTERM");
    let s = stage(&r, "cp-1", "kernel-booted");
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["message"], "interrupted by SIGTERM");
    let teardown: Vec<&str> = r["teardown"].as_array().expect("teardown").iter().filter_map(Value::as_str).collect();
    assert!(teardown.iter().any(|l| l.starts_with("qemu cp-1")), "{teardown:?}");
}

#[test]
fn lab_up_is_reachable_with_status_exec_and_console_until_lab_down() {
    let Some(release) = needs() else { return };
    let lab = Lab::new(&release, &["cp-1"]);
    let mut cmd = lab.lab_command("up", &["--accel", "tcg"]);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn lab up");
    stderr_until(&mut child, "is up;");
    let state = lab.state();
    let tf = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_talforge"))
            .args(args)
            .arg("--state")
            .arg(&state)
            .output()
            .expect("run talforge")
    };
    let out = tf(&["lab", "status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && text.contains("running: lab sample") && text.contains("10.5.0.11"), "{text}");

    // A command inside the lab's network: the bridge holds the gateway, the node answers pings, the
    // talosconfig is the lab's.
    let mut exec = Command::new(env!("CARGO_BIN_EXE_talforge"));
    exec.args(["lab", "exec", "--state"]).arg(&state).args([
        "--",
        "sh",
        "-c",
        "echo TALOSCONFIG=$TALOSCONFIG; ip -o -4 addr show tfbr0; busybox ping -c 1 -W 10 10.5.0.11",
    ]);
    let out = exec.output().expect("lab exec");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "lab exec failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("10.5.0.1/24"), "{text}");
    assert!(text.contains("1 packets received"), "{text}");
    let talosconfig = state.join("configs/talosconfig");
    assert!(text.contains(&format!("TALOSCONFIG={}", talosconfig.display())), "{text}");
    assert!(talosconfig.is_file());

    let out = tf(&["lab", "console", "cp-1"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("TALFORGE-INVENTORY {"), "lab console cp-1");

    let out = tf(&["lab", "down"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped lab sample"));
    let status = child.wait().expect("wait for lab up");
    assert_eq!(status.code(), Some(0), "lab up after lab down");
    lab.assert_torn_down();
    let r = lab.record();
    assert_eq!(r["outcome"], "passed");
    assert_eq!(statuses(&r, "cp-1")[6], "skipped");
    let out = tf(&["lab", "status"]);
    assert_eq!(out.status.code(), Some(1), "status of a stopped lab");
}

#[test]
fn what_a_sigkilled_lab_leaves_is_cleaned_by_lab_down() {
    let Some(release) = needs() else { return };
    if talforge_builder::tool::ToolRunner::new(0)
        .find(talforge_builder::tool::Program::new("slirp4netns", ""))
        .is_none()
    {
        return unavailable("slirp4netns is not installed (Debian package slirp4netns)").unwrap_or(());
    }
    let lab = Lab::new(&release, &["cp-1"]);
    // With NAT, so slirp4netns is left behind too; in "the outside", so nothing can leave this machine.
    let (outside, _outside_netns, _httpd) = the_outside(&lab, "killed");
    let mut cmd = in_netns(&outside, &lab.command(&["--accel", "tcg", "--nat"]));
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    stderr_until_line(&mut child, |l| l.contains("vm-started") && l.contains("passed"));
    // SIGKILL: no teardown runs; QEMU (its own process group) and the namespace stay.
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let state = std::fs::canonicalize(lab.state()).expect("state");
    let netns = talforge_testbed::lab::state::netns_name("sample", &state);
    assert_eq!(talforge_testbed::net::list_netns(&netns), vec![netns.clone()], "the killed run's namespace");

    let out = Command::new(env!("CARGO_BIN_EXE_talforge"))
        .args(["lab", "down", "-f"])
        .arg(&lab.cluster)
        .arg("--state")
        .arg(&state)
        .output()
        .expect("lab down");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("killed ") && text.contains("qemu-system-x86_64"), "{text}");
    assert!(text.contains("slirp4netns (pid "), "{text}");
    assert!(text.contains(&format!("removed the network namespace {netns}")), "{text}");
    lab.assert_torn_down();
}

/// The uid and gid the rootless tests run the lab as (nobody).
const NOBODY: u32 = 65534;

/// `talforge args...` as uid and gid 65534 in a mount namespace of its own, in which `/dev/net/tun` is a
/// node of mode `tun_mode` that the test makes in `lab`'s folder; the host's device is never touched. 0666
/// is what Debian's udev gives it; 0600 is a host that keeps it to root. The build cache is one for uid
/// 65534, shared by these tests. With `netns`, it runs in that (named) network namespace.
fn as_nobody(lab: &Lab, netns: Option<&str>, tun_mode: &str, args: &[&str]) -> Command {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab-cache-nobody");
    std::fs::create_dir_all(&cache).expect("cache");
    for d in [lab.dir.path(), cache.as_path()] {
        let out = Command::new("chown").args(["-R", &format!("{NOBODY}:{NOBODY}")]).arg(d).output().expect("chown");
        assert!(out.status.success(), "chown {}: {}", d.display(), String::from_utf8_lossy(&out.stderr));
    }
    let tun = lab.dir.path().join("tun");
    let _ = std::fs::remove_file(&tun);
    let mut c = Command::new("nsenter");
    c.arg(netns.map_or_else(|| "--net=/proc/self/ns/net".to_owned(), |n| format!("--net=/run/netns/{n}")))
        .args(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            "mknod -m \"$1\" \"$2\" c 10 200 && mount --bind \"$2\" /dev/net/tun && shift 2 && \
             exec setpriv --reuid=65534 --regid=65534 --clear-groups -- \"$@\"",
        )
        .args(["sh", tun_mode])
        .arg(&tun)
        .arg(env!("CARGO_BIN_EXE_talforge"))
        .args(args)
        .env("HOME", lab.dir.path())
        .env("TALFORGE_CACHE", &cache)
        .env("NO_COLOR", "1")
        .env_remove("TALFORGE_LOG")
        .stdin(Stdio::null());
    c
}

/// The real uid of process `pid`.
fn uid_of(pid: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

#[test]
fn without_root_the_lab_runs_in_a_user_namespace_or_says_why_it_cannot() {
    let Some(release) = needs() else { return };
    let lab = Lab::new(&release, &["cp-1"]);
    let state = lab.state();
    let state_arg = state.to_str().expect("utf-8 path");
    let cluster = lab.cluster.to_str().expect("utf-8 path").to_owned();
    let catalog = repo().to_str().expect("utf-8 path").to_owned();
    let report = lab.report();
    let report_arg = report.to_str().expect("utf-8 path");
    let run_args =
        ["-f", &cluster, "--catalog", &catalog, "--state", state_arg, "--report", report_arg, "--accel", "tcg"];

    // A host whose /dev/net/tun is root's only: refused before anything is built, saying why.
    let mut args = vec!["lab", "run"];
    args.extend(run_args);
    let out = as_nobody(&lab, None, "0600", &args).output().expect("run lab as nobody");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "needs root or a user namespace, and effective uid 65534 cannot have one here: /dev/net/tun \
                      cannot be opened read-write (Permission denied (os error 13)); it is mode 0600"
        ),
        "{err}"
    );
    assert!(!state.join("images").exists(), "images were built before the refusal");

    // A host that allows it: `lab up --nat` as uid 65534 passes every stage to power-off, run inside "the
    // outside" (see the NAT test).
    let (outside, _outside_netns, _httpd) = the_outside(&lab, "rootless");
    let mut args = vec!["lab", "up", "--nat"];
    args.extend(run_args);
    let up = as_nobody(&lab, Some(&outside), "0666", &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("up");
    let mut child = TermOnDrop(up);
    let said = stderr_until(&mut child.0, "is up;").join("\n");
    assert!(said.contains("(rootless (user namespace), held by pid "), "{said}");
    let netns = talforge_testbed::lab::state::netns_name("sample", &std::fs::canonicalize(&state).expect("state"));
    assert!(talforge_testbed::net::list_netns(&netns).is_empty(), "a rootless lab made a named namespace");

    // The lab's processes are uid 65534's, and the holder is in a network namespace of its own.
    let rec: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("lab.json")).expect("lab.json")).expect("json");
    let holder = rec["netnsHolder"].as_u64().expect("lab.json names the namespace holder").to_string();
    assert_eq!(uid_of(&holder), Some(NOBODY));
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("ns link");
    assert_ne!(ns(&holder), ns("self"));
    let qemu: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            cmd.starts_with(b"/usr/bin/qemu-system") && String::from_utf8_lossy(&cmd).contains(state_arg)
        })
        .collect();
    assert_eq!(qemu.len(), 1, "one QEMU for cp-1");
    assert_eq!(uid_of(&qemu[0]), Some(NOBODY));
    assert_eq!(ns(&qemu[0]), ns(&holder), "QEMU is not in the lab's network namespace");

    // Status and exec as the same user: inside, it is root of the namespace and reaches the node.
    let out =
        as_nobody(&lab, Some(&outside), "0666", &["lab", "status", "--state", state_arg]).output().expect("status");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains(&format!("rootless network namespace {netns} held by pid {holder}")), "{text}");
    assert!(text.contains("NAT through slirp4netns (pid ") && text.contains("10.0.2.100 on tfnat0"), "{text}");
    let wget = format!("{} {OUTSIDE_URL}", WGET_OUTSIDE.join(" "));
    let script =
        format!("id -u; ip -o -4 addr show tfbr0; busybox ping -c 1 -W 10 10.5.0.11; nft list ruleset; {wget}");
    let out =
        as_nobody(&lab, Some(&outside), "0666", &["lab", "exec", "--state", state_arg, "--", "sh", "-c", &script])
            .output()
            .expect("exec");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "lab exec: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("0\n") && text.contains("10.5.0.1/24") && text.contains("1 packets received"), "{text}");
    // NAT rootless: slirp4netns joined the holder's namespaces; the outside answers through it.
    assert!(text.contains("oifname \"tfnat0\" masquerade") && text.ends_with("outside says hi\n"), "{text}");

    let out = as_nobody(&lab, Some(&outside), "0666", &["lab", "down", "--state", state_arg]).output().expect("down");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(child.0.wait().expect("wait for lab up").code(), Some(0), "lab up after lab down");
    assert!(!Path::new(&format!("/proc/{holder}")).exists(), "the namespace holder survived");
    lab.assert_torn_down();
    let r = lab.record();
    assert_eq!(r["outcome"], "passed");
    assert_eq!(statuses(&r, "cp-1")[..6], ["passed"; 6]);
    let teardown: Vec<&str> = r["teardown"].as_array().expect("teardown").iter().filter_map(Value::as_str).collect();
    assert!(
        teardown.iter().any(|l| l.starts_with("stopped the holder of the user and network namespaces")),
        "{teardown:?}"
    );
}

/// Network namespaces a test made, deleted (with their links) when dropped.
struct TestNetns(Vec<String>);

impl Drop for TestNetns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = talforge_testbed::net::delete_netns(n);
        }
    }
}

/// A `talforge lab` process that gets SIGTERM (so it tears its lab down) and is reaped when dropped, so a
/// failed assertion leaves no lab running.
struct TermOnDrop(std::process::Child);

impl Drop for TermOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let _ = self.0.wait();
        }
    }
}

/// A child process killed and reaped when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fetches the outside's web page (busybox 1.35's `wget -T` crashes: `timeout` bounds it instead).
const WGET_OUTSIDE: [&str; 6] = ["timeout", "20", "busybox", "wget", "-q", "-O-"];
const OUTSIDE_URL: &str = "http://192.0.2.1:8080/hello";

/// "The outside" for NAT tests: a namespace of the test's own with 192.0.2.1 (TEST-NET-1) on a bridge and a
/// web server there serving "outside says hi". A lab run in it opens slirp4netns's sockets there, so no
/// traffic leaves this machine. Returns its name, and guards that remove it and stop the server.
fn the_outside(lab: &Lab, what: &str) -> (String, TestNetns, KillOnDrop) {
    let outside = format!("tflab-out-{what}-{}", std::process::id());
    let guard = TestNetns(vec![outside.clone()]);
    ip_ok(&["netns", "add", &outside]);
    ip_ok(&["-n", &outside, "link", "set", "lo", "up"]);
    ip_ok(&["-n", &outside, "link", "add", "out0", "type", "bridge"]);
    ip_ok(&["-n", &outside, "addr", "add", "192.0.2.1/24", "dev", "out0"]);
    ip_ok(&["-n", &outside, "link", "set", "out0", "up"]);
    let www = lab.dir.path().join("www");
    std::fs::create_dir_all(&www).expect("www");
    std::fs::write(www.join("hello"), "outside says hi\n").expect("hello");
    let httpd = Command::new("ip")
        .args(["netns", "exec", &outside, "busybox", "httpd", "-f", "-p", "192.0.2.1:8080", "-h"])
        .arg(&www)
        .spawn()
        .expect("httpd");
    (outside, guard, KillOnDrop(httpd))
}

/// `cmd` (program, arguments, environment) run in the named network namespace `netns` by `nsenter --net`,
/// which keeps this mount namespace (so `/run/netns` is the host's) and execs: the child's pid is `cmd`'s.
fn in_netns(netns: &str, cmd: &Command) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{netns}")).arg(cmd.get_program()).args(cmd.get_args()).stdin(Stdio::null());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

fn ip_ok(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn nat_reaches_the_outside_from_the_vms_network_and_leaves_the_host_alone() {
    let Some(release) = needs() else { return };
    for (p, pkg) in [("slirp4netns", "slirp4netns"), ("nft", "nftables"), ("busybox", "busybox")] {
        if talforge_builder::tool::ToolRunner::new(0).find(talforge_builder::tool::Program::new(p, pkg)).is_none() {
            return unavailable(&format!("{p} is not installed (Debian package {pkg})")).unwrap_or(());
        }
    }
    let lab = Lab::new(&release, &["cp-1"]);
    let node = format!("tflab-node-{}", std::process::id());
    let _node_netns = TestNetns(vec![node.clone()]);
    let (outside, _outside_netns, _httpd) = the_outside(&lab, "nat");
    let forward_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("ip_forward");

    // `lab up --nat` inside "the outside" (nsenter --net keeps this mount namespace: /run/netns is shared).
    let mut cmd = in_netns(&outside, &lab.lab_command("up", &["--accel", "tcg", "--nat"]));
    let mut child = TermOnDrop(cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn lab up --nat"));
    let said = stderr_until(&mut child.0, "is up;").join("\n");
    assert!(said.contains("NAT through slirp4netns (pid ") && said.contains("10.0.2.100 on tfnat0"), "{said}");
    let state = std::fs::canonicalize(lab.state()).expect("state");
    let labns = talforge_testbed::lab::state::netns_name("sample", &state);

    // A machine on the lab's bridge, as the VMs are (veth into a namespace of the test's), routed by the
    // gateway: it reaches the outside through the NAT.
    ip_ok(&["netns", "add", &node]);
    ip_ok(&["-n", &labns, "link", "add", "tfvn0", "type", "veth", "peer", "name", "eth0", "netns", &node]);
    ip_ok(&["-n", &labns, "link", "set", "tfvn0", "master", "tfbr0", "up"]);
    ip_ok(&["-n", &node, "addr", "add", "10.5.0.99/24", "dev", "eth0"]);
    ip_ok(&["-n", &node, "link", "set", "eth0", "up"]);
    ip_ok(&["-n", &node, "route", "add", "default", "via", "10.5.0.1"]);
    let get = |netns: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", netns])
            .args(WGET_OUTSIDE)
            .arg(OUTSIDE_URL)
            .output()
            .expect("wget");
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    assert_eq!(get(&node), "outside says hi\n", "from a machine on the lab's bridge");
    assert_eq!(get(&labns), "outside says hi\n", "from the lab's namespace");
    let rules = Command::new("ip").args(["netns", "exec", &labns, "nft", "list", "ruleset"]).output().expect("nft");
    let rules = String::from_utf8_lossy(&rules.stdout).into_owned();
    assert!(rules.contains("ip saddr 10.5.0.0/24 oifname \"tfnat0\" masquerade"), "{rules}");

    let out = Command::new(env!("CARGO_BIN_EXE_talforge")).args(["lab", "down", "--state"]).arg(&state).output();
    assert!(out.expect("lab down").status.success());
    assert_eq!(child.0.wait().expect("wait for lab up").code(), Some(0), "lab up after lab down");
    lab.assert_torn_down();
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("ip_forward"), forward_before);
    let r = lab.record();
    assert_eq!(r["outcome"], "passed");
    let teardown: Vec<&str> = r["teardown"].as_array().expect("teardown").iter().filter_map(Value::as_str).collect();
    assert!(teardown.iter().any(|l| l.starts_with("stopped slirp4netns (pid ")), "{teardown:?}");
}
