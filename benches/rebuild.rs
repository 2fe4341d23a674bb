//! Benchmark: a warm rebuild takes at most 2 % of a cold build's wall time.
//!
//! `talforge build -f <sample lab> -o OUT` with the release binary: every output kind of the sample lab (metal,
//! ISO, PXE, UKI, installer) for its two images. Cold: a fresh cache and a fresh output folder, [`COLD_RUNS`]
//! times after one discarded warm-up run (which creates the Secure Boot signing key next to the cluster file, as
//! a user's first build does once, and brings the release and the binary into the page cache). Warm: the same
//! command again, with the last cold run's cache and output folder, [`WARM_RUNS`] times, none discarded. Figures
//! are medians. Every warm build must leave the same manifest as the cold one, so a warm build that skipped work
//! it owes would not count.

#![allow(clippy::expect_used)] // a benchmark: a failure is a crash with its reason

#[allow(dead_code)] // each benchmark uses part of it
mod scratch;

use std::process::ExitCode;

use scratch::{Scratch, all_secs, build_command, median, run, secs};

const COLD_RUNS: usize = 3;
const WARM_RUNS: usize = 3;
/// Warm over cold wall time must not exceed this.
const TARGET_RATIO: f64 = 0.02;

fn main() -> ExitCode {
    let s = Scratch::new("");
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    let mut last = None;
    // Round 0 is the discarded warm-up (module docs).
    for round in 0..=COLD_RUNS {
        let (cache, out) = (s.path().join(format!("cache-{round}")), s.path().join(format!("out-{round}")));
        let argv = s.build_args(&out, &[]);
        let (took, _) = run(&mut build_command(&argv, &cache));
        if round > 0 {
            cold.push(took);
        }
        if let Some((old_cache, old_out)) = last.replace((cache, out)) {
            // Keep the disk from filling up with copies.
            for d in [old_cache, old_out] {
                std::fs::remove_dir_all(d).expect("remove an old build");
            }
        }
    }
    let (cache, out) = last.expect("at least one cold run");
    let manifest = std::fs::read_to_string(out.join("manifest.json")).expect("read the cold manifest");
    let artifacts = serde_json::from_str::<serde_json::Value>(&manifest).expect("parse the manifest")["artifacts"]
        .as_array()
        .map_or(0, Vec::len);
    let argv = s.build_args(&out, &[]);
    for _ in 0..WARM_RUNS {
        let (took, _) = run(&mut build_command(&argv, &cache));
        warm.push(took);
        let again = std::fs::read_to_string(out.join("manifest.json")).expect("read the warm manifest");
        assert!(again == manifest, "a warm rebuild wrote a different manifest.json than the cold build");
    }

    let (c, w) = (median(&cold), median(&warm));
    let ratio = w.as_secs_f64() / c.as_secs_f64();
    println!("rebuild of the sample lab (every output kind, 2 images, {artifacts} artifacts):");
    println!(
        "  cold (fresh cache and output folder), median of {COLD_RUNS} after a warm-up: {:>9}  runs: {}",
        secs(c),
        all_secs(&cold)
    );
    println!(
        "  warm (same cache and output folder), median of {WARM_RUNS}:                  {:>9}  runs: {}",
        secs(w),
        all_secs(&warm)
    );
    let verdict = if ratio <= TARGET_RATIO { "pass" } else { "FAIL" };
    println!("  ratio warm / cold: {:.2} %  (target <= {:.0} %)  {verdict}", ratio * 100.0, TARGET_RATIO * 100.0);
    if ratio > TARGET_RATIO {
        eprintln!(
            "bench: a warm rebuild took {:.2} % of a cold build, over the {:.0} % target",
            ratio * 100.0,
            TARGET_RATIO * 100.0
        );
        // Returning (not exiting) removes the scratch folder.
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
