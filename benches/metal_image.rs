//! Benchmark: metal image assembly by talforge against the standard-tool pipeline (target: talforge ≤ 0.5× the
//! pipeline's wall time).
//!
//! Both sides build the same image from the same inputs, the ESP of a metal sd-boot image for the sample lab's
//! `qemu-virtio-uefi` node: sd-boot as `EFI/boot/BOOTX64.efi`, the UKI `talforge build --kind uki` makes as
//! `EFI/Linux/Talos-v1.14.0.efi`, and `loader/loader.conf`; then compress the raw disk to `.raw.zst`.
//!
//! - talforge: `write_metal_image` with `MetalImageSpec::sd_boot` (the call `talforge build` makes), then
//!   `compress_file(…, Compression::Zstd)`.
//! - pipeline: `truncate -s` the raw disk (our size), `sgdisk` the same partitions (our offsets, type and
//!   partition GUIDs, names, disk GUID), `mkfs.vfat -F 32` a separate ESP file, `mmd`/`mcopy` the files in,
//!   `dd conv=notrunc,sparse` the ESP into the raw at its partition offset (and META's bytes, were ours not all
//!   zero), `zstd -T0 -18` the raw.
//!
//! Each round runs talforge, then the pipeline, on fresh output files; the first round is a warm-up (page cache,
//! first touch of the inputs) and is discarded, the figures are the medians of the next [`RUNS`]. Both results
//! are then read back with gdisk and mtools: the same partition table, the same files in the ESP, and a `.zst`
//! that holds the whole disk; a pipeline that did less work than ours would not count. Our `.raw.zst` must be
//! byte-identical in every round.

#![allow(clippy::expect_used)] // a benchmark: a failure is a crash with its reason

#[allow(dead_code)] // each benchmark uses part of it
mod scratch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use scratch::{Scratch, TALOS_MAJOR_MINOR, TALOS_VERSION, all_secs, median, run, secs, tool, zstd_content_size};
use talforge_builder::assemble::compress::{Compression, compress_file};
use talforge_builder::assemble::disk::{
    EspFile, MetalImageReport, MetalImageSpec, SectorSize, format_guid, write_metal_image,
};

/// Timed rounds after the warm-up.
const RUNS: usize = 3;
/// talforge's wall time over the pipeline's must not exceed this.
const TARGET_RATIO: f64 = 0.5;
/// The profile whose UKI goes on the ESP.
const PROFILE: &str = "qemu-virtio-uefi";
/// `loader/loader.conf` as `talforge build` writes it without Secure Boot enrollment.
const LOADER_CONF: &str = "# systemd-boot configuration\n\ntimeout 10\n";
/// Fixed FAT volume ID for the pipeline's `mkfs.vfat`.
const PIPELINE_VOLUME_ID: &str = "7a1f0e00";

/// One ESP file: where it comes from and where it goes on the ESP.
#[derive(Debug)]
struct Input {
    source: PathBuf,
    esp_path: String,
}

fn main() -> ExitCode {
    scratch::require_tools(
        &["truncate", "dd", "sgdisk", "mkfs.vfat", "mmd", "mcopy", "mdir", "zstd"],
        "coreutils gdisk dosfstools mtools zstd",
    );
    let release = scratch::fixture_release();
    let s = Scratch::new("");
    let uki = build_uki(&s);
    let conf = s.path().join("loader.conf");
    std::fs::write(&conf, LOADER_CONF).expect("write loader.conf");
    let inputs = [
        Input { source: release.join("usr/install/amd64/systemd-boot.efi"), esp_path: "EFI/boot/BOOTX64.efi".into() },
        Input { source: uki, esp_path: format!("EFI/Linux/Talos-{TALOS_VERSION}.efi") },
        Input { source: conf, esp_path: "loader/loader.conf".into() },
    ];
    let spec = MetalImageSpec {
        esp_files: inputs.iter().map(|i| EspFile::file(i.esp_path.clone(), i.source.clone())).collect(),
        ..MetalImageSpec::sd_boot(TALOS_MAJOR_MINOR, SectorSize::B512, scratch::EPOCH)
    };

    let ours_dir = s.path().join("talforge");
    let pipe_dir = s.path().join("pipeline");
    for d in [&ours_dir, &pipe_dir] {
        std::fs::create_dir(d).expect("create an output folder");
    }
    let ours_raw = ours_dir.join("metal-amd64.raw");
    let ours_zst = Compression::Zstd.output_path(&ours_raw);
    let mut report: Option<MetalImageReport> = None;
    let mut meta: Option<(PathBuf, u64)> = None;
    let mut first_zst = Vec::new();
    let (mut ours_times, mut pipe_times) = (Vec::new(), Vec::new());
    for round in 0..=RUNS {
        clear(&ours_dir);
        let t = Instant::now();
        let r = write_metal_image(&ours_raw, &spec).expect("write the metal image");
        compress_file(&ours_raw, &ours_zst, Compression::Zstd).expect("compress the metal image");
        let ours = t.elapsed();
        let r = report.get_or_insert(r);
        let zst = std::fs::read(&ours_zst).expect("read our .raw.zst");
        if round == 0 {
            meta = meta_bytes(&ours_raw, r, s.path());
            first_zst = zst;
        } else {
            assert!(zst == first_zst, "talforge's .raw.zst differs between runs: the build is not reproducible");
        }

        clear(&pipe_dir);
        let pipe = pipeline(&pipe_dir, r, &inputs, meta.as_ref());
        if round > 0 {
            ours_times.push(ours);
            pipe_times.push(pipe);
        }
    }
    let report = report.expect("at least one round");
    let pipe_raw = pipe_dir.join("metal-amd64.raw");
    check_same_image(&report, &ours_raw, &pipe_raw, &inputs);
    let sizes = [&ours_zst, &pipe_raw.with_extension("raw.zst")].map(|z| {
        assert_eq!(zstd_content_size(z), report.disk_size, "{} does not hold the whole disk", z.display());
        std::fs::metadata(z).expect("stat the .zst").len()
    });

    let (ours, pipe) = (median(&ours_times), median(&pipe_times));
    let ratio = ours.as_secs_f64() / pipe.as_secs_f64();
    let esp = report.partitions.iter().find(|p| p.name == "EFI").expect("an EFI partition");
    println!(
        "metal image assembly: {} MiB disk, {} MiB ESP, {} MiB of ESP files, META {}; median of {RUNS} runs after \
         one discarded warm-up:",
        report.disk_size >> 20,
        (esp.sectors() * u64::from(report.sector_size)) >> 20,
        inputs.iter().map(|i| std::fs::metadata(&i.source).expect("stat an input").len()).sum::<u64>() >> 20,
        if meta.is_some() { "copied" } else { "all zero (nothing to copy)" },
    );
    println!(
        "  talforge (write_metal_image + compress_file): {:>9}  runs: {}  .raw.zst {} bytes",
        secs(ours),
        all_secs(&ours_times),
        sizes[0]
    );
    println!(
        "  pipeline (truncate, sgdisk, mkfs.vfat, mtools, dd, zstd -T0 -18): {:>9}  runs: {}  .raw.zst {} bytes",
        secs(pipe),
        all_secs(&pipe_times),
        sizes[1]
    );
    let verdict = if ratio <= TARGET_RATIO { "pass" } else { "FAIL" };
    println!("  ratio talforge / pipeline: {ratio:.3}  (target <= {TARGET_RATIO})  {verdict}");
    if ratio > TARGET_RATIO {
        eprintln!("bench: talforge took {ratio:.3}x the pipeline's time, over the {TARGET_RATIO}x target");
        // Returning (not exiting) removes the scratch folder.
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Builds the sample's UKI for [`PROFILE`] with the release binary (fresh cache) and returns its path.
fn build_uki(s: &Scratch) -> PathBuf {
    let out = s.path().join("uki-out");
    let argv = s.build_args(&out, &["--kind", "uki", "--profile", PROFILE]);
    run(&mut scratch::build_command(&argv, &s.path().join("cache")));
    let found = scratch::find_named(&out, "metal-amd64-uki.efi");
    match found.as_slice() {
        [one] => one.clone(),
        other => panic!("expected one metal-amd64-uki.efi under {}, found {other:?}", out.display()),
    }
}

/// Removes every file in `dir`.
fn clear(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("list an output folder") {
        std::fs::remove_file(entry.expect("read a folder entry").path()).expect("remove an old output");
    }
}

/// Our META partition's bytes, saved to a file, with their offset; `None` when they are all zero.
fn meta_bytes(raw: &Path, report: &MetalImageReport, dir: &Path) -> Option<(PathBuf, u64)> {
    let sector = u64::from(report.sector_size);
    let meta = report.partitions.iter().find(|p| p.name == "META").expect("a META partition");
    let (offset, len) = (meta.first_lba * sector, meta.sectors() * sector);
    let mut bytes = vec![0u8; usize::try_from(len).expect("META fits in memory")];
    let file = std::fs::File::open(raw).expect("open our image");
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut bytes, offset).expect("read META");
    if bytes.iter().all(|b| *b == 0) {
        return None;
    }
    let path = dir.join("meta.bin");
    std::fs::write(&path, bytes).expect("write META's bytes");
    Some((path, offset))
}

/// The standard-tool pipeline, in `dir`; returns its wall time.
fn pipeline(dir: &Path, layout: &MetalImageReport, inputs: &[Input], meta: Option<&(PathBuf, u64)>) -> Duration {
    let raw = dir.join("metal-amd64.raw");
    let esp_img = dir.join("esp.img");
    let sector = u64::from(layout.sector_size);
    let esp = layout.partitions.iter().find(|p| p.name == "EFI").expect("an EFI partition");
    let esp_bytes = esp.sectors() * sector;

    let t = Instant::now();
    run(tool("truncate").arg("-s").arg(layout.disk_size.to_string()).arg(&raw));
    run(tool("sgdisk").args(sgdisk_args(layout)).arg(&raw));
    run(tool("truncate").arg("-s").arg(esp_bytes.to_string()).arg(&esp_img));
    run(tool("mkfs.vfat")
        .args(["--invariant", "-F", "32", "-S", &sector.to_string(), "-n", "EFI", "-i", PIPELINE_VOLUME_ID])
        .arg(&esp_img));
    // Every folder above a file, parents first: EFI, EFI/boot, EFI/Linux, loader.
    let mut folders: Vec<&Path> = Vec::new();
    for i in inputs {
        let mut above: Vec<&Path> = Path::new(&i.esp_path).ancestors().skip(1).collect();
        above.retain(|p| !p.as_os_str().is_empty() && !folders.contains(p));
        folders.extend(above.into_iter().rev());
    }
    run(tool("mmd").arg("-i").arg(&esp_img).args(folders.iter().map(|f| format!("::{}", f.display()))));
    for i in inputs {
        run(tool("mcopy").arg("-i").arg(&esp_img).arg(&i.source).arg(format!("::{}", i.esp_path)));
    }
    run(&mut dd(&esp_img, &raw, esp.first_lba * sector));
    if let Some((bytes, offset)) = meta {
        run(&mut dd(bytes, &raw, *offset));
    }
    run(tool("zstd").args(["-T0", "-18", "-q", "-f"]).arg(&raw).arg("-o").arg(raw.with_extension("raw.zst")));
    t.elapsed()
}

/// `sgdisk` arguments that write our partition table: disk GUID, then per partition its sectors, type GUID,
/// partition GUID and name.
fn sgdisk_args(layout: &MetalImageReport) -> Vec<String> {
    let mut args = vec!["--clear".to_owned(), format!("--disk-guid={}", format_guid(&layout.disk_guid))];
    for (n, p) in layout.partitions.iter().enumerate().map(|(i, p)| (i + 1, p)) {
        args.push(format!("--new={n}:{}:{}", p.first_lba, p.last_lba));
        args.push(format!("--typecode={n}:{}", format_guid(&p.type_guid)));
        args.push(format!("--partition-guid={n}:{}", format_guid(&p.part_guid)));
        args.push(format!("--change-name={n}:{}", p.name));
        if p.attributes != 0 {
            args.push(format!("--attributes={n}:=:{:016x}", p.attributes));
        }
    }
    args
}

/// `dd` that writes `from` into `to` at byte `offset`, keeping `to`'s size and holes.
fn dd(from: &Path, to: &Path, offset: u64) -> std::process::Command {
    let mut cmd = tool("dd");
    cmd.arg(format!("if={}", from.display()))
        .arg(format!("of={}", to.display()))
        .args(["bs=1M", "oflag=seek_bytes", "conv=notrunc,sparse", "status=none"])
        .arg(format!("seek={offset}"));
    cmd
}

/// `sgdisk` lines that may differ between the two images: the one naming the file, and those about where the
/// usable area starts (Talos starts it at 2048, sgdisk at 34, which no `sgdisk` option sets; the partitions are
/// where ours are either way).
fn skip_gpt_line(line: &str, raw: &Path) -> bool {
    line.starts_with(&format!("Disk {}:", raw.display()))
        || line.starts_with("First usable sector is")
        || line.starts_with("Total free space is")
}

/// Both images, read back by gdisk and mtools, have the same partitions and the same ESP folders and files, the
/// files with the inputs' bytes.
fn check_same_image(layout: &MetalImageReport, ours: &Path, pipe: &Path, inputs: &[Input]) {
    let table = |raw: &Path| {
        let mut text = String::new();
        for n in 0..=layout.partitions.len() {
            let arg = if n == 0 { "--print".to_owned() } else { format!("--info={n}") };
            let (_, out) = run(tool("sgdisk").arg(arg).arg(raw));
            let lines = String::from_utf8_lossy(&out.stdout).into_owned();
            text.extend(lines.lines().filter(|l| !skip_gpt_line(l, raw)).map(|l| format!("{l}\n")));
        }
        text
    };
    let (a, b) = (table(ours), table(pipe));
    assert_eq!(a, b, "the pipeline's partition table differs from ours");
    let sector = u64::from(layout.sector_size);
    let esp = layout.partitions.iter().find(|p| p.name == "EFI").expect("an EFI partition");
    let mut listings = Vec::new();
    for raw in [ours, pipe] {
        let image = format!("{}@@{}", raw.display(), esp.first_lba * sector);
        let (_, out) = run(tool("mdir").args(["-/", "-b", "-i", &image, "::"]));
        let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
        names.sort();
        listings.push(names);
        for i in inputs {
            let (_, out) = run(tool("mcopy").args(["-n", "-i", &image]).arg(format!("::{}", i.esp_path)).arg("-"));
            let want = std::fs::read(&i.source).expect("read an input");
            assert!(
                out.stdout == want,
                "{} in the ESP of {} differs from {}",
                i.esp_path,
                raw.display(),
                i.source.display()
            );
        }
    }
    assert_eq!(listings[0], listings[1], "the ESPs hold different files");
}
