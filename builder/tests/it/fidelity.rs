//! Byte-for-byte fidelity with `talosctl gen config`: the golden files of Talos's stability test
//! (`../shared/talos-schema/stability/`, inputs in its SOURCE.md).

use talforge_builder::machine_config::generate::{GenInput, GenOptions, generate};
use talforge_builder::quirks::Quirks;
use talforge_builder::spec::Role;
use talforge_builder::yaml::emit::to_string_multi;

use crate::support::shared_file;

fn bundle() -> Option<talforge_builder::pki::SecretsBundle> {
    let p = shared_file("talos-schema/stability/secrets.yaml")?;
    Some(talforge_builder::secrets::load(&p).expect("stability secrets load"))
}

fn golden(rel: &str) -> Option<String> {
    let p = shared_file(&format!("talos-schema/stability/{rel}"))?;
    Some(std::fs::read_to_string(p).unwrap())
}

fn base(version: &str, role: Role) -> String {
    let secrets = bundle().unwrap();
    let q = Quirks::new(&version.parse().unwrap()).unwrap();
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
    to_string_multi(&generate(&input, role, None))
}

fn check(ours: &str, golden: &str, name: &str) {
    if ours != golden {
        let line = ours.lines().zip(golden.lines()).position(|(a, b)| a != b).map_or(0, |l| l + 1);
        panic!("{name}: differs from talosctl's output at line {line}\n--- ours\n{ours}");
    }
}

#[test]
fn base_configs_equal_talosctl() {
    if bundle().is_none() {
        return;
    }
    for (v, dir) in [("v1.13.0", "v1.13"), ("v1.14.0", "v1.14")] {
        for (role, file) in [(Role::Controlplane, "base-controlplane.yaml"), (Role::Worker, "base-worker.yaml")] {
            let g = golden(&format!("{dir}/{file}")).unwrap();
            check(&base(v, role), &g, &format!("{dir}/{file}"));
        }
    }
}
