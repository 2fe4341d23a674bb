//! Snapshots of the plan and the machine config of every shipped hardware profile (one control-plane node on
//! the profile, contracts 1.13 and 1.14), and of the sample lab cluster's plan. Secrets are the lint
//! placeholders so the snapshots show structure, not key material.

use std::path::PathBuf;

use talforge_builder::machine_config::render::ClusterInputs;
use talforge_builder::plan::{PlanOverrides, render, resolve};
use talforge_builder::spec::{Catalog, ClusterSpec, Source};
use talforge_builder::yaml::emit::to_string_multi;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cluster(version: &str, profile: &str) -> String {
    format!(
        "apiVersion: talforge.dev/v1alpha1\nkind: Cluster\nname: snap\ntalos: {{version: {version}}}\n\
         kubernetes: {{version: 1.34.1}}\nendpoint: https://10.5.0.11:6443\n\
         network: {{gateway: 10.5.0.1, nameservers: [10.5.0.1]}}\nnodes:\n\
         \x20 - {{name: node-1, role: controlplane, profile: {profile}, address: 10.5.0.11/24}}\n"
    )
}

#[test]
fn plan_and_config_of_every_shipped_profile() {
    let catalog = Catalog::open(&repo()).unwrap();
    let secrets = talforge_builder::lint::placeholder_secrets();
    let mut n = 0;
    for profile in catalog.profile_names() {
        for (version, tag) in [("v1.13.0", "1.13"), ("v1.14.0", "1.14")] {
            let src = Source::parse(repo().join("snapshot.yaml"), cluster(version, profile)).unwrap();
            let spec: ClusterSpec = src.decode().unwrap();
            let plan = resolve(&src, &spec, &catalog, &PlanOverrides::default()).unwrap();
            if tag == "1.14" {
                insta::assert_json_snapshot!(format!("plan-{profile}"), plan.nodes);
            }
            let inputs = ClusterInputs::new(&plan, &secrets).unwrap();
            let config = to_string_multi(&inputs.node_config(&plan.nodes[0]).unwrap());
            insta::assert_snapshot!(format!("config-{tag}-{profile}"), config);
            n += 1;
        }
    }
    assert!(n >= 16);
}

#[test]
fn sample_cluster_plan() {
    let catalog = Catalog::open(&repo()).unwrap();
    let file = repo().join("testbed/labs/sample.yaml");
    let plan = talforge_builder::plan::plan_cluster(&file, &catalog, &PlanOverrides::default()).unwrap();
    let root = std::fs::canonicalize(repo()).unwrap();
    let text = render::human(&plan).replace(&root.display().to_string(), "<repo>");
    insta::assert_snapshot!("sample-plan", text);
}
