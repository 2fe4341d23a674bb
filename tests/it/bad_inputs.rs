//! The bad-input corpus (tests/bad-inputs/<case>/): every case fails with its exact message, naming the file,
//! line, column and field, exits 2, never panics, and writes nothing — through `talforge plan` and through
//! `talforge build`, whose cache (a fresh folder outside the case) stays empty too. A build missing a tool exits
//! 3 and names the Debian package.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, UNIX_EPOCH};

use talforge_builder::pki::{Contract, SecretsBundle, SeededSecretRng};

use crate::support::{repo, scratch_copy, stderr, talforge};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Rejected by `talforge plan`, and by `talforge build` with the same message before it reads a release.
    Plan,
    /// `config gen` only (the input is one that only config generation reads).
    ConfigGen,
    /// Accepted by `plan` (which reads no release), rejected by `talforge build`: the release, its extensions
    /// or the build's own pre-flight.
    Build,
}

struct Case {
    dir: &'static str,
    mode: Mode,
    message: &'static str,
}

const fn plan(dir: &'static str, message: &'static str) -> Case {
    Case { dir, mode: Mode::Plan, message }
}

const fn build(dir: &'static str, message: &'static str) -> Case {
    Case { dir, mode: Mode::Build, message }
}

const CASES: &[Case] = &[
    plan("01-malformed-yaml", "talforge.yaml:8:5: invalid YAML: unclosed bracket '{'"),
    plan(
        "02-unknown-field",
        "talforge.yaml:11:5: nodes[0].adress: unknown field \"adress\"; expected one of name, role, profile, address, \
         hostname, mac, installDisk, kernelArgs, extensions, overlays, labels, patches",
    ),
    plan(
        "03-unknown-profile",
        "talforge.yaml:8:48: nodes[0].profile: unknown hardware profile \"dell-r650\"; known: dell-poweredge-r760, \
         hpe-proliant-dl380-gen10, hpe-proliant-dl385-gen11, lenovo-thinksystem-sr650-v2, lenovo-thinksystem-sr665-v3, \
         lenovo-thinksystem-sr665-v3-h100, qemu-nvme-secureboot-tpm, qemu-virtio-uefi, supermicro-sys-120u-tnr",
    ),
    plan(
        "04-unknown-overlay",
        "talforge.yaml:7:20: overlays[1]: unknown overlay \"calico\"; known: airgap, cilium, kubevirt, lab-fast, \
         nvidia-gpu, rook-ceph",
    ),
    plan(
        "05-cyclic-extends",
        "hardware-profiles/lab-b.yaml:4:10: extends: profile \"lab-a\" extends itself: lab-a → lab-b → lab-a",
    ),
    plan("06-duplicate-node-names", "talforge.yaml:9:13: nodes[1].name: duplicate node name \"cp-1\" (also nodes[0])"),
    plan("07-duplicate-addresses", "talforge.yaml:9:68: nodes[1].address: duplicate address 10.5.0.11 (also nodes[0])"),
    plan(
        "08-address-outside-endpoint-network",
        "talforge.yaml:8:75: nodes[0].address: 10.6.0.11/24 is outside the endpoint's network: 10.5.0.11 is not in \
         10.6.0.0/24 (a control plane serves the endpoint on its own link)",
    ),
    plan(
        "09-patch-targets-missing-path",
        "patches/drop-max-pods.yaml:6:5: patch delete: path 'config.maxPods' in document 'v1alpha1/KubeletConfig': \
         failed to delete path 'config.maxPods': lookup failed",
    ),
    plan(
        "10-json-patch-on-multidoc",
        "talforge.yaml:8:5: JSON6902 patches are not supported for multi-document machine configuration",
    ),
    Case {
        dir: "11-secrets-wrong-key-type",
        mode: Mode::ConfigGen,
        message: "secrets.yaml:23:14: certs.os.key: expected an Ed25519 private key (PEM \"ED25519 PRIVATE KEY\"); \
                  found an ECDSA P-256 key",
    },
    plan(
        "12-unsupported-talos-version",
        "talforge.yaml:4:19: talos.version: unsupported: Talos v1.11.5: talforge generates for Talos v1.12 to v1.14",
    ),
    plan(
        "13-wrong-api-version",
        "talforge.yaml:1:13: apiVersion: expected one of talforge.dev/v1alpha1; found \"talforge.dev/v1\"",
    ),
    plan("14-wrong-kind", "talforge.yaml:2:7: kind: expected one of Cluster; found \"HardwareProfile\""),
    plan(
        "15-http-endpoint",
        "talforge.yaml:6:11: endpoint: expected an endpoint like https://10.5.0.10:6443; found \"http://10.5.0.11:6443\"",
    ),
    plan(
        "16-bad-address",
        "talforge.yaml:8:75: nodes[0].address: expected an address with prefix length like 10.5.0.11/24; found \
         \"10.5.0.300/24\"",
    ),
    plan("17-bad-role", "talforge.yaml:8:25: nodes[0].role: expected one of controlplane, worker; found \"master\""),
    plan("18-no-control-plane", "talforge.yaml:8:3: nodes: a cluster needs at least one node with role controlplane"),
    plan("19-no-nodes", "talforge.yaml:7:8: nodes: a cluster needs at least one node"),
    plan(
        "20-bad-node-name",
        "talforge.yaml:8:13: nodes[0].name: expected a DNS label (lowercase letters, digits, '-'); found \"CP_1\"",
    ),
    plan(
        "21-profile-bad-disk-role",
        "hardware-profiles/lab-r650.yaml:12:11: disks[1].role: expected one of install, osd, data; found \"osdd\"",
    ),
    plan(
        "22-profile-name-mismatch",
        "hardware-profiles/lab-x.yaml:3:7: name: expected the file stem \"lab-x\"; found \"lab-y\"",
    ),
    plan(
        "23-builtin-kernel-module",
        "hardware-profiles/lab-ceph.yaml:10:11: kernelModules[1].name: \"rbd\" is built into the Talos kernel and \
         cannot be loaded as a module; remove it",
    ),
    plan(
        "24-emulated-gpu",
        "hardware-profiles/lab-gpu.yaml:9:81: gpus[0].emulated: GPUs cannot be emulated by the lab; set emulated: \
         false (they are checked on real hardware only)",
    ),
    plan(
        "25-overlay-missing-value",
        "talforge.yaml:7:12: overlays[0]: overlay \"airgap\" needs a value for \"mirror\": write `{name: airgap, \
         values: {mirror: ...}}` (mirror: URL of the internal registry that mirrors docker.io, ghcr.io, \
         registry.k8s.io, quay.io and gcr.io (e.g. https://registry.lab.internal:5000))",
    ),
    plan(
        "26-patch-unknown-field",
        "talforge.yaml:10:9: v1alpha1: machine.install.disks: unknown keys found during decoding",
    ),
    plan(
        "27-patch-file-missing",
        "talforge.yaml:8:5: patches[0]: cannot read patch file patches/missing.yaml: No such file or directory (os \
         error 2)",
    ),
    plan(
        "28-conflicting-kernel-args",
        "talforge.yaml:11:17: nodes[0].kernelArgs: conflicting kernel arguments \"mitigations=off\" and \
         \"mitigations=auto\"",
    ),
    plan(
        "29-gateway-outside-network",
        "talforge.yaml:9:75: nodes[0].address: the gateway 10.9.0.1 is outside 10.5.0.11/24's network (10.5.0.0/24)",
    ),
    plan(
        "30-patch-unknown-kind-for-version",
        "talforge.yaml:8:29: \"KubeletConfig\" \"v1alpha1\": not registered (a Talos v1.14 document; this config is \
         for the v1.13 contract)",
    ),
    plan(
        "31-version-as-number",
        "talforge.yaml:5:24: kubernetes.version: expected a version like v1.14.0; found the number 1.3 (write it in \
         quotes if you mean text)",
    ),
    plan("32-empty-file", "talforge.yaml:1:1: the file is empty"),
    plan(
        "33-ambiguous-nic-on-talos-1.12",
        "talforge.yaml:8:5: nodes[0]: NIC lom0: 2 NICs of profile hpe-proliant-dl380-gen10 match its selector: on \
         Talos v1.12.5 a link alias must match exactly one link; set `mac:` on node cp-1 or `busPath:` on the \
         profile's NICs",
    ),
    plan(
        "34-install-disk-ambiguous",
        "talforge.yaml:8:48: nodes[0].profile: the install disk \"boot\" cannot be told apart from disk(s) data of \
         profile lab-twin-nvme (same bus and size): give it a model or serial pattern",
    ),
    // Cases 35-39 carry a release folder (`talos.source.dir: release`) of placeholder files: each fails before
    // the boot files are parsed.
    build(
        "35-release-missing-stub",
        "release: not a talos release for amd64: missing usr/install/amd64/systemd-stub.efi",
    ),
    build(
        "36-extension-manifest-invalid-yaml",
        "extension fixture/fixture-broken: release/extensions/fixture-broken/manifest.yaml:7:18: invalid YAML: \
         unclosed bracket '{'",
    ),
    build(
        "37-extension-manifest-missing-version",
        "extension fixture/fixture-unversioned: release/extensions/fixture-unversioned/manifest.yaml:3:3: \
         metadata.version: expected the extension's version; found none",
    ),
    build(
        "38-extension-incompatible-talos",
        "extension fixture/fixture-future: release/extensions/fixture-future/manifest.yaml:9:16: \
         metadata.compatibility.talos.version: fixture-future 1.0 supports Talos >= v1.15.0; this image is for v1.14.0",
    ),
    build(
        "39-unknown-extension",
        "extension siderolabs/fixture-firmwre: not found in release/extensions; known: fixture-firmware",
    ),
    plan(
        "40-disk-image-too-small",
        "talforge.yaml:7:20: diskImage.size: disk image too small: 64MiB cannot hold the EFI and META partitions of \
         Talos 1.14, which need at least 2104 MiB",
    ),
    plan(
        "41-install-disk-smaller-than-image",
        "talforge.yaml:9:48: nodes[0].profile: disk too small: profile lab-small-disk's install disk \"boot\" is \
         3GiB, smaller than the 4096 MiB metal image (diskImage.size)",
    ),
    build(
        "42-unsupported-bootloader",
        "hardware-profiles/lab-grub.yaml:4:37: firmware.bootloader: unsupported: bootloader grub for the metal image \
         of lab-grub-39d496b2cbdb: talforge builds UEFI sd-boot disk images only (GRUB and dual-boot are not \
         implemented yet); use bootloader: sd-boot on UEFI machines, or build only uki/pxe outputs",
    ),
];

/// A real bundle whose OS CA key was swapped for the etcd CA's ECDSA key.
fn write_wrong_key_type_secrets(dir: &Path) {
    let mut rng = SeededSecretRng::new([11; 32]);
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut b = SecretsBundle::generate(&mut rng, now, Contract::new(1, 6)).expect("generate");
    b.certs.os.key = b.certs.etcd.key.clone();
    std::fs::write(dir.join("secrets.yaml"), b.to_yaml()).expect("write secrets");
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).expect("prefix").display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Runs `talforge args...` in `cwd` with extra environment (`TALFORGE_CACHE`, `PATH`).
fn talforge_env(cwd: &Path, args: &[&str], env: &[(&str, &OsStr)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_talforge"));
    cmd.args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .env_remove("TALFORGE_LOG")
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run talforge")
}

/// Files in a build cache that are not part of a finished entry: the release cache's `oci/tmp/`, and the
/// build cache's `.<key>.tmp-<pid>`/`.<key>.stale-<pid>` folders (a finished entry is `build/<kind>/<key>/`
/// holding its files and `.stamp`).
fn partial_files(cache: &Path) -> Vec<String> {
    files_under(cache)
        .into_iter()
        .filter(|f| {
            let parts: Vec<&str> = f.split('/').collect();
            let (last, dirs) = parts.split_last().expect("a path");
            f.starts_with("oci/tmp/")
                || dirs.iter().any(|d| d.starts_with('.'))
                || (last.starts_with('.') && *last != ".stamp")
        })
        .collect()
}

/// Runs `talforge build` in `cwd` with a fresh cache; checks the exit code and message, that the case folder
/// is unchanged and that the cache holds nothing. Returns a complaint, if any.
fn check_build(case: &Case, cwd: &Path) -> Option<String> {
    let cache = tempfile::tempdir().expect("cache dir");
    let before = files_under(cwd);
    let out = talforge_env(
        cwd,
        &["build", "-f", "talforge.yaml", "-o", "out"],
        &[("TALFORGE_CACHE", cache.path().as_os_str())],
    );
    let err = stderr(&out);
    let want = format!("error: {}\n", case.message);
    assert_eq!(files_under(cwd), before, "{}: a failed build must write nothing", case.dir);
    // Every case here is caught before the first cache write: plan and pre-flight errors come before the
    // release is fetched, and a release folder is read in place (the cache holds only what images give).
    assert_eq!(files_under(cache.path()), Vec::<String>::new(), "{}: a failed build must not fill the cache", case.dir);
    (out.status.code() != Some(2) || err != want || err.contains("panicked"))
        .then(|| format!("{} (build): exit {:?}\n  want: {want}  got:  {err}", case.dir, out.status.code()))
}

#[test]
fn every_bad_input_fails_with_its_message_and_exit_2() {
    let corpus = repo().join("tests/bad-inputs");
    let dirs = std::fs::read_dir(&corpus).expect("corpus").flatten().filter(|e| e.path().is_dir()).count();
    assert_eq!(dirs, CASES.len(), "every folder under tests/bad-inputs needs a row in CASES");
    assert!(CASES.len() >= 42);
    let mut failures = Vec::new();
    for case in CASES {
        let tmp = scratch_copy(&corpus.join(case.dir));
        let cwd = tmp.path();
        if !cwd.join("hardware-profiles").exists() {
            // Cases that use the shipped catalog get a copy, so paths in messages are relative.
            for sub in ["hardware-profiles", "overlays"] {
                let t = scratch_copy(&repo().join(sub));
                std::fs::rename(t.keep(), cwd.join(sub)).expect("move catalog");
            }
        }
        if case.dir == "11-secrets-wrong-key-type" {
            write_wrong_key_type_secrets(cwd);
        }
        let before = files_under(cwd);
        let want = format!("error: {}\n", case.message);
        match case.mode {
            Mode::Plan | Mode::ConfigGen => {
                let out = if case.mode == Mode::ConfigGen {
                    talforge(cwd, &["config", "gen", "-f", "talforge.yaml", "--out", "out"])
                } else {
                    talforge(cwd, &["plan", "-f", "talforge.yaml"])
                };
                let err = stderr(&out);
                if out.status.code() != Some(2) || err != want || err.contains("panicked") {
                    failures.push(format!("{}: exit {:?}\n  want: {want}  got:  {err}", case.dir, out.status.code()));
                }
                assert_eq!(files_under(cwd), before, "{}: a failed run must write nothing", case.dir);
            }
            Mode::Build => {
                // The case must get past `plan`, or it belongs in the plan cases.
                let out = talforge(cwd, &["plan", "-f", "talforge.yaml"]);
                if !out.status.success() {
                    failures.push(format!("{}: expected plan to pass; got: {}", case.dir, stderr(&out)));
                }
            }
        }
        // `build` reads no secrets bundle, so the config-gen case has nothing to say to it.
        if case.mode != Mode::ConfigGen {
            failures.extend(check_build(case, cwd));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A qcow2 build needs `qemu-img`: without it on PATH the build stops with exit 3, names the tool and its Debian
/// package, leaves no output folder and no partial cache entry. Needs the fixture release (ci/fixture-release).
#[test]
fn build_without_qemu_img_exits_3_naming_the_package() {
    let release = repo().join("out/fixture-release");
    if !release.join("usr/install/amd64/vmlinuz").is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing: CI must build it first (ci/fixture-release)",
            release.display()
        );
        talforge_builder::skip_test!("SKIP: {} is missing (build it with ci/fixture-release)", release.display());
        return;
    }
    let dir = tempfile::tempdir().expect("case dir");
    std::fs::write(
        dir.path().join("talforge.yaml"),
        "apiVersion: talforge.dev/v1alpha1\nkind: Cluster\nname: lab\ntalos: { version: v1.14.0 }\n\
         kubernetes: { version: 1.34.1 }\nendpoint: https://10.5.0.11:6443\n\
         nodes:\n  - { name: cp-1, role: controlplane, profile: qemu-virtio-uefi }\n",
    )
    .expect("write cluster file");
    let cache = tempfile::tempdir().expect("cache dir");
    // PATH without qemu-img (the tool runner adds /usr/sbin and /sbin; Debian installs qemu-img in /usr/bin).
    let empty_path = tempfile::tempdir().expect("PATH dir");
    let catalog = repo();
    let out = talforge_env(
        dir.path(),
        &[
            "--catalog",
            catalog.to_str().expect("utf-8 repo path"),
            "build",
            "-f",
            "talforge.yaml",
            "-o",
            "out",
            "--kind",
            "qcow2",
            "--release",
            release.to_str().expect("utf-8 release path"),
        ],
        &[("TALFORGE_CACHE", cache.path().as_os_str()), ("PATH", empty_path.path().as_os_str())],
    );
    let err = stderr(&out);
    assert_eq!(err, "error: qemu-img is not installed (Debian package qemu-utils)\n");
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert_eq!(files_under(dir.path()), ["talforge.yaml"], "no output folder, no lock, no stray file");
    // Pieces finished before the conversion (initramfs, UKI) stay in the cache as whole entries.
    assert_eq!(partial_files(cache.path()), Vec::<String>::new());
}

/// The install-disk check follows the outputs really built: `--kind metal` on a cluster whose `outputs` has no
/// metal image passes `plan` and is refused by `build` with the plan's message.
#[test]
fn kind_metal_checks_the_install_disk_that_outputs_did_not_ask_for() {
    let tmp = scratch_copy(&repo().join("tests/bad-inputs/41-install-disk-smaller-than-image"));
    let cwd = tmp.path();
    let file = cwd.join("talforge.yaml");
    let text = std::fs::read_to_string(&file).expect("read");
    // One line more above the nodes: the error moves from line 9 to 10.
    std::fs::write(&file, text.replace("kind: Cluster\n", "kind: Cluster\noutputs: [uki]\n")).expect("write");
    let plan = talforge_env(cwd, &["plan", "-f", "talforge.yaml"], &[]);
    assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));
    let cache = tempfile::tempdir().expect("cache dir");
    let out = talforge_env(
        cwd,
        &["build", "-f", "talforge.yaml", "-o", "out", "--kind", "metal"],
        &[("TALFORGE_CACHE", cache.path().as_os_str())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "error: talforge.yaml:10:48: nodes[0].profile: disk too small: profile lab-small-disk's install disk \"boot\" \
         is 3GiB, smaller than the 4096 MiB metal image (diskImage.size)\n"
    );
    assert!(!cwd.join("out").exists(), "nothing written");
    // Without metal the disk does not matter: the build goes on to the release (not cached; --offline keeps it
    // off the network).
    let out = talforge_env(
        cwd,
        &["build", "-f", "talforge.yaml", "-o", "out", "--kind", "uki", "--offline"],
        &[("TALFORGE_CACHE", cache.path().as_os_str())],
    );
    assert!(!stderr(&out).contains("disk too small"), "{}", stderr(&out));
}
