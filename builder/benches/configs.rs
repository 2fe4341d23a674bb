//! Benchmark: render the machine configs of 10,000 nodes from one cluster file (target ≤ 2 s).
//!
//! Run with `ci/bench` (or `cargo bench -p talforge-builder --bench configs`). It times the three phases of
//! `talforge config gen`: planning (parse, resolve profiles and overlays), rendering every node's config
//! (generate, patch, print), and writing the files; it prints the numbers and fails if rendering a
//! 10,000-node cluster (plan + render) takes longer than the target.

#![allow(clippy::expect_used)] // a benchmark: a failure is a crash with its reason

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

use talforge_builder::machine_config::render::ClusterInputs;
use talforge_builder::pki::{SecretsBundle, SeededSecretRng};
use talforge_builder::plan::{PlanOverrides, plan_cluster};
use talforge_builder::spec::Catalog;
use talforge_builder::yaml::emit;

const NODES: usize = 10_000;
const TARGET: Duration = Duration::from_secs(2);

fn cluster_file(nodes: usize) -> String {
    let profiles =
        ["qemu-virtio-uefi", "qemu-nvme-secureboot-tpm", "dell-poweredge-r760", "lenovo-thinksystem-sr665-v3"];
    let mut s = String::from(
        "apiVersion: talforge.dev/v1alpha1\nkind: Cluster\nname: bench\ntalos: {version: v1.14.0}\n\
         kubernetes: {version: 1.34.1}\nendpoint: https://10.0.0.1:6443\noverlays: [cilium, rook-ceph, kubevirt]\n\
         network: {gateway: 10.0.0.254, nameservers: [10.0.0.254]}\nnodes:\n",
    );
    for i in 0..nodes {
        let role = if i < 3 { "controlplane" } else { "worker" };
        let profile = profiles[i % profiles.len()];
        let (hi, lo) = ((i + 1) / 250, (i + 1) % 250 + 1);
        let _ = writeln!(s, "  - {{name: node-{i}, role: {role}, profile: {profile}, address: 10.0.{hi}.{lo}/16}}");
    }
    s
}

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = std::env::temp_dir().join(format!("talforge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let file = tmp.join("talforge.yaml");
    std::fs::write(&file, cluster_file(NODES)).expect("write cluster file");
    let catalog = Catalog::open(&repo).expect("catalog");
    let secrets = SecretsBundle::generate(
        &mut SeededSecretRng::new([7; 32]),
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        talforge_builder::quirks::Contract::V1_14,
    )
    .expect("secrets");

    let mut best = (Duration::MAX, Duration::MAX, Duration::MAX);
    let mut bytes = 0usize;
    for _round in 0..3 {
        let t0 = Instant::now();
        let plan = plan_cluster(&file, &catalog, &PlanOverrides::default()).expect("plan");
        let t1 = Instant::now();
        let inputs = ClusterInputs::new(&plan, &secrets).expect("inputs");
        let mut rendered = Vec::with_capacity(plan.nodes.len());
        for n in &plan.nodes {
            rendered.push(emit::to_string_multi(&inputs.node_config(n).expect("render")));
        }
        let t2 = Instant::now();
        let out = tmp.join("configs");
        for (n, text) in plan.nodes.iter().zip(&rendered) {
            talforge_builder::output::write_atomic(
                &out.join(format!("{}.yaml", n.name)),
                text.as_bytes(),
                talforge_builder::output::SECRET_MODE,
                talforge_builder::output::Overwrite::Replace,
            )
            .expect("write");
        }
        let t3 = Instant::now();
        bytes = rendered.iter().map(String::len).sum();
        best = (best.0.min(t1 - t0), best.1.min(t2 - t1), best.2.min(t3 - t2));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let total = best.0 + best.1;
    println!("configs for {NODES} nodes ({} MiB of YAML), best of 3:", bytes / (1 << 20));
    println!("  plan (parse, resolve profiles and overlays): {:>8.3} s", best.0.as_secs_f64());
    println!("  render (generate, patch, print):             {:>8.3} s", best.1.as_secs_f64());
    println!(
        "  plan + render:                               {:>8.3} s  (target {} s)",
        total.as_secs_f64(),
        TARGET.as_secs()
    );
    println!("  write {NODES} files atomically (fsync each):  {:>8.3} s", best.2.as_secs_f64());
    if total > TARGET {
        eprintln!("bench: plan + render took {:.3} s, over the {} s target", total.as_secs_f64(), TARGET.as_secs());
        std::process::exit(1);
    }
}
