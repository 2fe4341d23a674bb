//! The binary end to end: secrets, cluster-mode and talosctl-mode config generation, plan JSON, profiles.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::support::{repo, scratch_copy, stderr, stdout, talforge};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A scratch folder holding the shipped catalog and the sample lab cluster.
fn sample_workspace() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for sub in ["hardware-profiles", "overlays"] {
        let t = scratch_copy(&repo().join(sub));
        std::fs::rename(t.keep(), tmp.path().join(sub)).unwrap();
    }
    std::fs::copy(repo().join("testbed/labs/sample.yaml"), tmp.path().join("talforge.yaml")).unwrap();
    tmp
}

#[test]
fn secrets_gen_writes_a_0600_bundle_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let out = talforge(tmp.path(), &["secrets", "gen", "--out", "s.yaml", "--talos-version", "v1.13.2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let p = tmp.path().join("s.yaml");
    assert_eq!(mode(&p), 0o600);
    let text = std::fs::read_to_string(&p).unwrap();
    let bundle = talforge_builder::secrets::parse(&p, &text).unwrap();
    // Contract 1.13: URL-safe cluster id alphabet, RSA service-account key.
    assert!(!bundle.cluster.id.contains('+') && !bundle.cluster.id.contains('/'));
    assert!(String::from_utf8_lossy(&bundle.certs.k8s_service_account.key).contains("RSA PRIVATE KEY"));
    assert!(!stderr(&out).contains("PRIVATE KEY"), "secrets must never be logged");

    let again = talforge(tmp.path(), &["secrets", "gen", "--out", "s.yaml"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).contains("s.yaml: refusing to overwrite an existing file (use --force)"));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), text, "the old bundle is kept");
    let forced = talforge(tmp.path(), &["secrets", "gen", "--out", "s.yaml", "--force"]);
    assert!(forced.status.success());
    assert_ne!(std::fs::read_to_string(&p).unwrap(), text);
}

#[test]
fn cluster_mode_writes_every_config_0600_and_never_half_overwrites() {
    let ws = sample_workspace();
    let out = talforge(ws.path(), &["config", "gen", "--out", "out"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let configs = ws.path().join("out/configs");
    let mut files = vec![configs.join("controlplane.yaml"), configs.join("worker.yaml"), configs.join("talosconfig")];
    for n in ["cp-1", "w-1", "w-2"] {
        files.push(configs.join(format!("nodes/{n}.yaml")));
    }
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert_eq!(mode(&ws.path().join("secrets.yaml")), 0o600, "the secrets bundle is created 0600");

    // Node configs carry their node's facts; role configs do not.
    let w1 = std::fs::read_to_string(configs.join("nodes/w-1.yaml")).unwrap();
    assert!(w1.contains("hostname: w-1") && w1.contains("address: 10.5.0.21/24"));
    assert!(w1.contains("match: link.driver == \"e1000e\" && link.pciid == \"8086:10D3\""));
    assert!(w1.contains("installer:\n    image: factory.talos.dev/metal-installer-secureboot/"));
    let worker = std::fs::read_to_string(configs.join("worker.yaml")).unwrap();
    assert!(worker.contains("auto: stable") && !worker.contains("10.5.0.21"));
    // Cilium's patch deletes flannel and disables kube-proxy on control planes only.
    let cp = std::fs::read_to_string(configs.join("nodes/cp-1.yaml")).unwrap();
    assert!(!cp.contains("KubeFlannelCNIConfig"));
    assert!(cp.contains("kind: KubeProxyConfig\nenabled: false\n"));
    assert!(cp.contains("- rook-ceph"), "rook-ceph's PodSecurity exemption");

    let tc =
        talforge_builder::pki::TalosConfig::from_yaml(&std::fs::read_to_string(configs.join("talosconfig")).unwrap())
            .unwrap();
    assert_eq!(tc.context, "sample");
    assert_eq!(tc.contexts["sample"].endpoints, vec!["10.5.0.11".to_owned()]);

    // A second run without --force refuses and leaves every file as it was.
    let before: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    let again = talforge(ws.path(), &["config", "gen", "--out", "out"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("refusing to overwrite an existing file (use --force)"));
    let after: Vec<String> = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    assert_eq!(before, after);
    // With --force the same secrets give the same node configs (only the talosconfig's client cert is new).
    let forced = talforge(ws.path(), &["config", "gen", "--out", "out", "--force"]);
    assert!(forced.status.success());
    assert_eq!(std::fs::read_to_string(configs.join("nodes/cp-1.yaml")).unwrap(), before[3]);
}

#[test]
fn cluster_mode_applies_command_line_patches_last() {
    let ws = sample_workspace();
    let out = talforge(
        ws.path(),
        &[
            "config",
            "gen",
            "--out",
            "out",
            "--config-patch-worker",
            "{apiVersion: v1alpha1, kind: KubeletConfig, clusterDNS: [10.96.0.10]}",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let w2 = std::fs::read_to_string(ws.path().join("out/configs/nodes/w-2.yaml")).unwrap();
    assert!(w2.contains("clusterDNS:\n    - 10.96.0.10\n"));
    let cp = std::fs::read_to_string(ws.path().join("out/configs/nodes/cp-1.yaml")).unwrap();
    assert!(!cp.contains("clusterDNS"));
}

#[test]
fn plan_json_describes_images_and_nodes() {
    let ws = sample_workspace();
    let out = talforge(ws.path(), &["plan", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(v["images"].as_array().unwrap().len(), 2);
    assert_eq!(v["contract"]["minor"], 14);
    assert!(!ws.path().join("secrets.yaml").exists(), "plan never creates secrets");
}

fn stability(rel: &str) -> Option<PathBuf> {
    let p = repo().join("../shared/talos-schema/stability").join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: ../shared/talos-schema/stability/{rel} is absent");
        None
    }
}

#[test]
fn direct_mode_matches_talosctl_golden_output() {
    let (Some(secrets), Some(patch)) = (stability("secrets.yaml"), stability("patch.yaml")) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let patch_arg = format!("@{}", patch.display());
    let out = talforge(
        tmp.path(),
        &[
            "config",
            "gen",
            "base",
            "https://base:6443",
            "--with-secrets",
            secrets.to_str().unwrap(),
            "--kubernetes-version",
            "1.28.0",
            "--talos-version",
            "v1.14",
            "--install-disk",
            "/dev/vda",
            "--install-image",
            "",
            "--additional-sans",
            "foo,bar",
            "--dns-domain",
            "example.com",
            "--registry-mirror",
            "ghcr.io=https://ghcr.io.my-mirror.com",
            "--allow-scheduling-on-control-planes",
            "--install-extra-kernel-args",
            "foo=bar,bar=baz",
            "--local-api-server-port",
            "5443",
            "--sysctl",
            "foo=bar",
            "--custom-cni-url",
            "https://example.com/cni.yaml",
            "--config-patch",
            &patch_arg,
            "--with-docs=false",
            "--with-examples=false",
            "-o",
            "out",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for role in ["controlplane", "worker"] {
        let ours = std::fs::read_to_string(tmp.path().join(format!("out/{role}.yaml"))).unwrap();
        let golden = std::fs::read_to_string(stability(&format!("v1.14/overrides-{role}.yaml")).unwrap()).unwrap();
        assert!(ours == golden, "{role}.yaml differs from talosctl's");
        assert_eq!(mode(&tmp.path().join(format!("out/{role}.yaml"))), 0o600);
    }
    let tc = std::fs::read_to_string(tmp.path().join("out/talosconfig")).unwrap();
    assert!(tc.starts_with("context: base\ncontexts:\n    base:\n        endpoints: []\n"), "{tc}");
}

#[test]
fn direct_mode_rejects_comments_and_bad_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let out = talforge(tmp.path(), &["config", "gen", "c", "https://1.2.3.4:6443", "--with-docs"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: unsupported: --with-docs/--with-examples"), "{}", stderr(&out));
    let out = talforge(tmp.path(), &["config", "gen", "c", "https://1.2.3.4:6443", "--talos-version", "v1.11"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: unsupported: Talos v1.11: talforge generates for Talos v1.12 to v1.14\n");
    let out = talforge(tmp.path(), &["config", "gen", "c", "10.0.0.1:6443"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: ENDPOINT: expected an endpoint like https://10.5.0.10:6443; found \"10.0.0.1:6443\"\n"
    );
    let out = talforge(tmp.path(), &["config", "gen", "c", "https://1.2.3.4:6443", "--config-patch", "@nope.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: cannot read nope.yaml: "), "{}", stderr(&out));
    assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none(), "failed runs write nothing");
}

#[test]
fn profiles_list_show_and_lint() {
    let ws = sample_workspace();
    let out = talforge(ws.path(), &["profile", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(v["profiles"].as_array().unwrap().len() >= 8);
    assert_eq!(v["overlays"].as_array().unwrap().len(), 6);
    let show = talforge(ws.path(), &["profile", "show", "qemu-nvme-secureboot-tpm"]);
    assert!(stdout(&show).contains("qemu-nvme-secureboot-tpm (qemu-nvme-secureboot-tpm < qemu-virtio-uefi)"));
    assert!(stdout(&show).contains("Secure Boot, TPM 2.0"));
    let lint = talforge(ws.path(), &["profile", "lint"]);
    assert!(lint.status.success(), "{}", stdout(&lint));
    // Break one overlay patch: lint fails with exit 1 and names the file and the field.
    std::fs::write(
        ws.path().join("overlays/cilium/kube-proxy-replacement.yaml"),
        "apiVersion: v1alpha1\nkind: KubeProxyConfig\nenable: false\n",
    )
    .unwrap();
    let lint = talforge(ws.path(), &["profile", "lint"]);
    assert_eq!(lint.status.code(), Some(1));
    assert!(
        stdout(&lint).contains("overlays/cilium/kube-proxy-replacement.yaml:3:1: KubeProxyConfig: enable: unknown keys found during decoding"),
        "{}",
        stdout(&lint)
    );
}
