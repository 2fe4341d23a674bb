//! Byte-for-byte fidelity with `talosctl gen config`: the golden files of Talos's stability test
//! (`../shared/talos-schema/stability/`, inputs in its SOURCE.md), for contracts 1.13 and 1.14, base and
//! overrides, control plane and worker: 8 files.

use std::path::PathBuf;

use talforge_builder::machine_config::generate::{GenInput, GenOptions, generate};
use talforge_builder::machine_config::{DirectFiles, DirectRequest, generate_direct};
use talforge_builder::quirks::Quirks;
use talforge_builder::spec::Role;
use talforge_builder::yaml::emit::to_string_multi;

use crate::support::shared_file;

fn stability(rel: &str) -> Option<PathBuf> {
    shared_file(&format!("talos-schema/stability/{rel}"))
}

fn check(ours: &str, golden: &str, name: &str) {
    if ours != golden {
        let line = ours.lines().zip(golden.lines()).position(|(a, b)| a != b).map_or(0, |l| l + 1);
        panic!("{name}: differs from talosctl's output at line {line}\n--- ours\n{ours}");
    }
}

/// The "base" case: only the secrets bundle, cluster `base`, endpoint `https://base:6443`, Kubernetes 1.28.0.
fn base_request(talos: &str, secrets: PathBuf) -> DirectRequest {
    DirectRequest {
        cluster: "base".into(),
        endpoint: "https://base:6443".into(),
        secrets: Some(secrets),
        kubernetes_version: Some("1.28.0".into()),
        talos_version: Some(talos.into()),
        install_disk: None,
        install_image: Some(String::new()),
        dns_domain: "cluster.local".into(),
        discovery: true,
        ..DirectRequest::default()
    }
}

/// The "overrides" case of v1alpha1_stability_test.go.
fn overrides_request(talos: &str, secrets: PathBuf, patch: PathBuf) -> DirectRequest {
    DirectRequest {
        additional_sans: vec!["foo".into(), "bar".into()],
        allow_scheduling_on_control_planes: true,
        dns_domain: "example.com".into(),
        install_disk: Some("/dev/vda".into()),
        install_extra_kernel_args: vec!["foo=bar".into(), "bar=baz".into()],
        local_api_server_port: Some(5443),
        sysctls: vec![("foo".into(), "bar".into())],
        custom_cni_url: Some("https://example.com/cni.yaml".into()),
        registry_mirrors: vec![("ghcr.io".into(), vec!["https://ghcr.io.my-mirror.com".into()])],
        patches: vec![format!("@{}", patch.display())],
        ..base_request(talos, secrets)
    }
}

fn compare(files: &DirectFiles, dir: &str, case: &str) {
    for (ours, role) in [(&files.controlplane, "controlplane"), (&files.worker, "worker")] {
        let name = format!("{dir}/{case}-{role}.yaml");
        let golden = std::fs::read_to_string(stability(&name).unwrap()).unwrap();
        check(ours, &golden, &name);
    }
}

#[test]
fn all_eight_golden_configs_equal_talosctl() {
    let (Some(secrets), Some(patch14), Some(patch13)) =
        (stability("secrets.yaml"), stability("patch.yaml"), stability("patch-pre14.yaml"))
    else {
        return;
    };
    for (talos, dir, patch) in [("v1.13", "v1.13", &patch13), ("v1.14", "v1.14", &patch14)] {
        compare(&generate_direct(&base_request(talos, secrets.clone())).unwrap(), dir, "base");
        compare(&generate_direct(&overrides_request(talos, secrets.clone(), patch.clone())).unwrap(), dir, "overrides");
    }
}

/// The generator alone (no patch engine, no normalization) already prints talosctl's bytes.
#[test]
fn generator_output_is_already_canonical() {
    let Some(path) = stability("secrets.yaml") else { return };
    let secrets = talforge_builder::secrets::load(&path).unwrap();
    for (v, dir) in [("v1.13.0", "v1.13"), ("v1.14.0", "v1.14")] {
        let q = Quirks::new(&v.parse().unwrap()).unwrap();
        let endpoint = "https://base:6443".parse().unwrap();
        let k8s = "1.28.0".parse().unwrap();
        let opts = GenOptions::default();
        let input = GenInput {
            quirks: &q,
            cluster_name: "base",
            endpoint: &endpoint,
            kubernetes: &k8s,
            secrets: &secrets,
            options: &opts,
        };
        for (role, file) in [(Role::Controlplane, "base-controlplane.yaml"), (Role::Worker, "base-worker.yaml")] {
            let golden = std::fs::read_to_string(stability(&format!("{dir}/{file}")).unwrap()).unwrap();
            check(&to_string_multi(&generate(&input, role, None)), &golden, &format!("{dir}/{file}"));
        }
    }
}
