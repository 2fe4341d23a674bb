//! Benchmark: peak RSS of `talforge build` stays at or under 200 MiB while it builds 4 GiB raw images.
//!
//! The sample lab with `diskImage: { size: 4GiB }`, `talforge build --kind metal` (both of its images: sd-boot
//! and Secure Boot), fresh cache and output folder, one run. The peak RSS is GNU time's `%M`: `ru_maxrss` of the
//! waited child, which Linux takes as the largest of the process and the children it waited for. Each image must
//! come out as a `.raw.zst` holding the whole 4 GiB disk.

#![allow(clippy::expect_used)] // a benchmark: a failure is a crash with its reason

#[allow(dead_code)] // each benchmark uses part of it
mod scratch;

use std::ffi::OsString;
use std::process::ExitCode;

use scratch::{Scratch, build_command, run, secs, zstd_content_size};

/// The raw disk size of every image.
const DISK_SIZE: u64 = 4 << 30;
/// Peak resident set size must not exceed this (KiB, as `ru_maxrss` counts).
const TARGET_KIB: u64 = 200 * 1024;
/// GNU time (Debian `time`), not the shell keyword.
const GNU_TIME: &str = "/usr/bin/time";

fn main() -> ExitCode {
    scratch::require_tools(&["zstd"], "zstd");
    if !std::path::Path::new(GNU_TIME).is_file() {
        eprintln!("bench: missing {GNU_TIME}: install the Debian package time (ci/bench does)");
        return ExitCode::from(3);
    }
    let s = Scratch::new("diskImage: { size: 4GiB }\n");
    let (cache, out, rss_file) = (s.path().join("cache"), s.path().join("out"), s.path().join("maxrss"));
    let mut argv: Vec<OsString> = vec![GNU_TIME.into(), "-f".into(), "%M".into(), "-o".into(), rss_file.clone().into()];
    argv.extend(s.build_args(&out, &["--kind", "metal"]));
    let (took, _) = run(&mut build_command(&argv, &cache));
    let rss = std::fs::read_to_string(&rss_file).expect("read GNU time's output");
    let peak_kib: u64 = rss.trim().parse().unwrap_or_else(|_| panic!("{GNU_TIME} -f %M wrote {rss:?}"));

    let mut images = Vec::new();
    for dir in std::fs::read_dir(out.join("images")).expect("list the images") {
        let dir = dir.expect("read a folder entry").path();
        let zst: Vec<_> = std::fs::read_dir(&dir)
            .expect("list an image folder")
            .map(|e| e.expect("read a folder entry").path())
            .filter(|p| p.to_string_lossy().ends_with(".raw.zst"))
            .collect();
        let [zst] = zst.as_slice() else { panic!("expected one metal .raw.zst in {}, found {zst:?}", dir.display()) };
        assert_eq!(zstd_content_size(zst), DISK_SIZE, "{} does not hold a 4 GiB disk", zst.display());
        images.push((
            zst.strip_prefix(&out).expect("under the output folder").to_owned(),
            zst.metadata().expect("stat").len(),
        ));
    }
    images.sort();
    assert_eq!(images.len(), 2, "expected the sample lab's two images, found {images:?}");

    println!("talforge build --kind metal, 4 GiB raw disks, fresh cache, one run: {}", secs(took));
    for (path, size) in &images {
        println!("  {}: {size} bytes ({:.1} MiB)", path.display(), *size as f64 / f64::from(1 << 20));
    }
    let verdict = if peak_kib <= TARGET_KIB { "pass" } else { "FAIL" };
    println!("  peak RSS: {:.1} MiB  (target <= {} MiB)  {verdict}", peak_kib as f64 / 1024.0, TARGET_KIB / 1024);
    if peak_kib > TARGET_KIB {
        eprintln!("bench: peak RSS {} KiB is over the {} KiB target", peak_kib, TARGET_KIB);
        // Returning (not exiting) removes the scratch folder.
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
