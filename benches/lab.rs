//! Benchmark: wall time of `talforge lab run` on the sample lab under TCG, from start to every stage passed
//! (target <= 90 s for the three nodes), and how it grows from one node to three.
//!
//! Runs, each a fresh lab folder with the images already in the build cache (a first, untimed run fills it):
//! - 1 node: cp-1 (qemu-virtio-uefi);
//! - 2 nodes: cp-1 and w-2 (two of the same profile: what parallel VMs cost on this machine);
//! - 3 nodes: cp-1, w-1 (qemu-nvme-secureboot-tpm: Secure Boot key enrollment and its reboot), w-2; twice,
//!   the median counts.
//!
//! Each run must pass every stage (exit 0). Needs root, QEMU, OVMF and swtpm (exit 3 without them).

#![allow(clippy::expect_used)] // a benchmark: a failure is a crash with its reason

#[allow(dead_code)] // each benchmark uses part of it
mod scratch;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use scratch::{Scratch, median, run, secs, tool};

/// The three-node lab must pass within this.
const TARGET: Duration = Duration::from_secs(90);

/// `nodes` of the sample lab: one cluster file in its own folder.
fn lab(nodes: &[&str]) -> Scratch {
    let s = Scratch::new("");
    let text = std::fs::read_to_string(&s.cluster_file).expect("read the cluster file");
    let kept: String = text
        .lines()
        .filter(|l| {
            let node = l.trim_start().strip_prefix("- { name: ").and_then(|r| r.split(',').next());
            node.is_none_or(|n| nodes.contains(&n))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&s.cluster_file, kept).expect("write the cluster file");
    s
}

/// One `talforge lab run --accel tcg`; returns the wall time and the run's own duration (run.json).
fn lab_run(s: &Scratch, cache: &Path) -> (Duration, Duration) {
    let mut cmd = tool(env!("CARGO_BIN_EXE_talforge"));
    cmd.arg("--catalog").arg(scratch::repo()).args(["lab", "run", "--accel", "tcg", "-f"]).arg(&s.cluster_file);
    cmd.arg("--state").arg(s.path().join("state")).arg("--report").arg(s.path().join("report"));
    cmd.env("TALFORGE_CACHE", cache);
    let (took, out) = run(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(": passed"), "the lab did not pass:\n{stdout}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path().join("report/run.json")).expect("run.json"))
            .expect("run.json parses");
    let ms = record["durationMs"].as_u64().expect("durationMs");
    (took, Duration::from_millis(ms))
}

fn main() -> ExitCode {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|r| r.split_whitespace().nth(1)) != Some("0") {
        eprintln!("bench: the lab needs root (its network namespace)");
        return ExitCode::from(3);
    }
    scratch::require_tools(&["qemu-system-x86_64", "swtpm", "ip"], "qemu-system-x86 swtpm iproute2 ovmf");
    let cache_dir = tempfile::Builder::new().prefix("talforge-bench-lab-cache-").tempdir().expect("temp dir");
    let cache = cache_dir.path();

    let all = ["cp-1", "w-1", "w-2"];
    let (warm, _) = lab_run(&lab(&all), cache);
    println!("first run (builds the images into an empty cache): {}", secs(warm));

    let mut rows = Vec::new();
    for nodes in [&["cp-1"][..], &["cp-1", "w-2"][..]] {
        let (wall, own) = lab_run(&lab(nodes), cache);
        rows.push((nodes.len(), nodes.join(", "), vec![wall], own));
    }
    let mut walls = Vec::new();
    let mut own = Duration::ZERO;
    for _ in 0..2 {
        let (w, o) = lab_run(&lab(&all), cache);
        walls.push(w);
        own = own.max(o);
    }
    let three = median(&walls);
    rows.push((3, all.join(", "), walls.clone(), own));

    println!("talforge lab run --accel tcg, images in the build cache, every stage passed:");
    for (n, names, times, own) in &rows {
        let list: Vec<String> = times.iter().map(|t| secs(*t)).collect();
        println!("  {n} node(s) ({names}): wall {} (run.json {})", list.join(", "), secs(*own));
    }
    let one = rows[0].2[0];
    println!(
        "growth: 1 → 2 nodes x{:.2}, 1 → 3 nodes x{:.2} (the third node boots with Secure Boot enrollment)",
        rows[1].2[0].as_secs_f64() / one.as_secs_f64(),
        three.as_secs_f64() / one.as_secs_f64()
    );
    if three <= TARGET {
        println!("PASS: 3-node lab {} (median of {}) <= target {}", secs(three), walls.len(), secs(TARGET));
        ExitCode::SUCCESS
    } else {
        println!("FAIL: 3-node lab {} (median of {}) > target {}", secs(three), walls.len(), secs(TARGET));
        ExitCode::from(1)
    }
}
