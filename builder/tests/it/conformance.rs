//! Conformance: every config talforge emits, for every shipped hardware profile, every set of shipped overlays
//! and every contract that has a schema in `../shared/talos-schema/`, validates against Talos's JSON schema of
//! that version.
//!
//! The schemas have known upstream defects (SOURCE.md); they are corrected in memory before validating, each
//! correction named below, and nothing else is relaxed.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use talforge_builder::machine_config::node_to_json;
use talforge_builder::machine_config::render::ClusterInputs;
use talforge_builder::plan::{PlanOverrides, resolve};
use talforge_builder::spec::{Catalog, ClusterSpec, Role, Source};

use crate::support::shared_file;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Talos's schema with the upstream defects listed in SOURCE.md corrected.
fn corrected_schema(path: &Path, contract: &str) -> Value {
    let mut s: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let defs = s["$defs"].as_object_mut().unwrap();
    // 1. `persist` is emitted by talosctl but missing from the v1alpha1 definition.
    defs["v1alpha1.Config"]["properties"]["persist"] = json!({"type": "boolean"});
    // 2. The kind enums say KubeSpanEndpoints / UnattendedInstall; the registered kinds end in "Config".
    for (def, kind) in [
        ("network.KubespanEndpointsConfigV1Alpha1", "KubeSpanEndpointsConfig"),
        ("runtime.UnattendedInstallConfigV1Alpha1", "UnattendedInstallConfig"),
    ] {
        if let Some(e) = defs.get_mut(def).and_then(|d| d["properties"]["kind"]["enum"].as_array_mut()) {
            e.push(json!(kind));
        }
    }
    // 3. The 1.13 schema lacks machine.install.extraKernelArgs.
    if contract == "v1.13" {
        defs["v1alpha1.InstallConfig"]["properties"]["extraKernelArgs"] =
            json!({"type": "array", "items": {"type": "string"}});
    }
    s
}

/// Validation messages quote the whole instance; keep them readable.
fn short(m: &str) -> String {
    if m.len() > 200 {
        format!("{}...", &m[..m.char_indices().nth(200).map_or(m.len(), |(i, _)| i)])
    } else {
        m.to_owned()
    }
}

fn overlay_sets(all: &[String]) -> Vec<Vec<String>> {
    // Every subset, in catalog order.
    (0..1u32 << all.len())
        .map(|mask| all.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, o)| o.clone()).collect())
        .collect()
}

fn cluster_yaml(version: &str, profile: &str, overlays: &[String]) -> String {
    let ov: Vec<String> = overlays
        .iter()
        .map(|o| {
            if o == "airgap" {
                "{name: airgap, values: {mirror: \"https://mirror.lab:5000\"}}".to_owned()
            } else {
                o.clone()
            }
        })
        .collect();
    format!(
        "apiVersion: talforge.dev/v1alpha1\nkind: Cluster\nname: conformance\ntalos: {{version: {version}}}\n\
         kubernetes: {{version: 1.34.1}}\nendpoint: https://10.5.0.11:6443\noverlays: [{}]\n\
         network: {{gateway: 10.5.0.1, nameservers: [10.5.0.1]}}\nnodes:\n\
         \x20 - {{name: cp-1, role: controlplane, profile: {profile}, address: 10.5.0.11/24}}\n\
         \x20 - {{name: w-1, role: worker, profile: {profile}, address: 10.5.0.21/24, labels: {{zone: a}}}}\n",
        ov.join(", ")
    )
}

#[test]
fn every_profile_overlay_set_and_contract_validates_against_talos_schema() {
    let catalog = Catalog::open(&repo()).unwrap();
    let profiles: Vec<String> = catalog.profile_names().map(str::to_owned).collect();
    let overlays: Vec<String> = catalog.overlay_names().map(str::to_owned).collect();
    assert!(profiles.len() >= 8 && overlays.len() >= 6);
    let secrets = talforge_builder::lint::placeholder_secrets();
    let mut checked = 0usize;
    let mut failures = Vec::new();
    for (version, contract) in [("v1.13.0", "v1.13"), ("v1.14.0", "v1.14")] {
        let Some(schema_path) = shared_file(&format!("talos-schema/config.schema.{contract}.json")) else { return };
        let schema = corrected_schema(&schema_path, contract);
        // One validator per document kind (the root schema's oneOf picks by kind, but its errors do not say
        // which field is wrong).
        let mut validators = std::collections::BTreeMap::new();
        for entry in schema["oneOf"].as_array().unwrap() {
            let r = entry["$ref"].as_str().unwrap();
            let def = &schema["$defs"][r.trim_start_matches("#/$defs/")];
            let kinds: Vec<String> = match def["properties"]["kind"]["enum"].as_array() {
                Some(k) => k.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect(),
                None => vec!["v1alpha1".to_owned()],
            };
            let mut sub = schema.clone();
            sub.as_object_mut().unwrap().remove("oneOf");
            sub["$ref"] = json!(r);
            let v = std::sync::Arc::new(jsonschema::validator_for(&sub).expect("schema compiles"));
            for k in kinds {
                validators.insert(k, v.clone());
            }
        }
        for profile in &profiles {
            for set in overlay_sets(&overlays) {
                let text = cluster_yaml(version, profile, &set);
                let src = Source::parse(repo().join("conformance.yaml"), text).unwrap();
                let spec: ClusterSpec = src.decode().unwrap();
                let plan = resolve(&src, &spec, &catalog, &PlanOverrides::default())
                    .unwrap_or_else(|e| panic!("{profile} {set:?} {version}: {e}"));
                let inputs = ClusterInputs::new(&plan, &secrets).unwrap();
                let mut configs = vec![
                    ("controlplane".to_owned(), inputs.role_config(Role::Controlplane).unwrap()),
                    ("worker".to_owned(), inputs.role_config(Role::Worker).unwrap()),
                ];
                for n in &plan.nodes {
                    configs.push((n.name.clone(), inputs.node_config(n).unwrap()));
                }
                for (name, docs) in configs {
                    for doc in &docs {
                        let json = node_to_json(doc).unwrap();
                        checked += 1;
                        let kind = json.get("kind").and_then(Value::as_str).unwrap_or("v1alpha1");
                        let Some(validator) = validators.get(kind) else {
                            failures.push(format!("{contract} {profile} {set:?} {name}: kind {kind} has no schema"));
                            continue;
                        };
                        let errs: Vec<String> = validator
                            .iter_errors(&json)
                            .map(|e| format!("{} at {}", short(&e.to_string()), e.instance_path()))
                            .collect();
                        if !errs.is_empty() {
                            failures.push(format!("{contract} {profile} {set:?} {name} {kind}: {}", errs.join("; ")));
                        }
                    }
                }
            }
        }
    }
    eprintln!("validated {checked} documents");
    assert!(
        failures.is_empty(),
        "{} documents do not validate:\n{}",
        failures.len(),
        failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}
