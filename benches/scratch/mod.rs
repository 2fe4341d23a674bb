//! What the image benchmarks share: a scratch folder holding a copy of the sample cluster file that builds from
//! the fixture release, and one way to run a child process (a controlled environment, the wall time, and a
//! failure that names the argv and shows its stderr).
//!
//! Benchmarks are binaries (`harness = false`): a broken setup is a crash with its reason (exit 101), a missing
//! prerequisite exits 3 (the "missing dependency" class), a missed target exits 1.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// `SOURCE_DATE_EPOCH` of every build: fixed, so runs build the same bytes.
pub const EPOCH: u64 = 1_700_000_000;

/// The Talos version of the sample cluster file (`talos.version`), as a string and as `(major, minor)`.
pub const TALOS_VERSION: &str = "v1.14.0";
pub const TALOS_MAJOR_MINOR: (u32, u32) = (1, 14);

/// The sample lab's cluster file, relative to the repository root.
const SAMPLE: &str = "testbed/labs/sample.yaml";
/// How the sample names the fixture release: relative to the cluster file's folder.
const SAMPLE_SOURCE: &str = "../../out/fixture-release";

/// The repository root: the catalog (hardware-profiles/, overlays/) and out/fixture-release.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fixture release, or exit 3 saying how to make it.
pub fn fixture_release() -> PathBuf {
    let dir = repo().join("out/fixture-release");
    if !dir.join("usr/install/amd64/systemd-boot.efi").is_file() {
        eprintln!("bench: no fixture release at {}: run ci/fixture-release first (ci/bench does)", dir.display());
        std::process::exit(3);
    }
    dir
}

/// Exit 3 unless every command in `tools` is on `PATH`.
pub fn require_tools(tools: &[&str], packages: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> =
        tools.iter().copied().filter(|t| !std::env::split_paths(&path).any(|d| d.join(t).is_file())).collect();
    if !missing.is_empty() {
        eprintln!("bench: missing {}: install the Debian packages {packages} (ci/bench does)", missing.join(", "));
        std::process::exit(3);
    }
}

/// A temp folder (removed on drop) with a copy of the sample cluster file that reads the fixture release by its
/// absolute path, a cache root and an output folder.
#[derive(Debug)]
pub struct Scratch {
    dir: tempfile::TempDir,
    pub cluster_file: PathBuf,
}

impl Scratch {
    /// The sample with `extra` appended (top-level YAML, e.g. `diskImage: { size: 4GiB }\n`).
    pub fn new(extra: &str) -> Self {
        let release = fixture_release();
        let dir = tempfile::Builder::new().prefix("talforge-bench-").tempdir().expect("create a temp dir");
        let sample = std::fs::read_to_string(repo().join(SAMPLE)).expect("read the sample cluster file");
        assert!(sample.contains(SAMPLE_SOURCE), "{SAMPLE} no longer names {SAMPLE_SOURCE}: update the bench");
        let text = sample.replace(SAMPLE_SOURCE, &release.display().to_string()) + extra;
        let cluster_file = dir.path().join("talforge.yaml");
        std::fs::write(&cluster_file, text).expect("write the cluster file");
        Scratch { dir, cluster_file }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The argv of `talforge --catalog REPO build -f CLUSTER -o OUT ARGS…` (the release binary cargo built for
    /// this bench).
    pub fn build_args(&self, out: &Path, args: &[&str]) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![env!("CARGO_BIN_EXE_talforge").into(), "--catalog".into()];
        argv.extend([repo().into(), "build".into(), "-f".into(), self.cluster_file.clone().into()]);
        argv.extend(["-o".into(), out.into()]);
        argv.extend(args.iter().map(OsString::from));
        argv
    }
}

/// `argv` as a build command: [`tool`]'s environment plus `TALFORGE_CACHE=cache`.
pub fn build_command(argv: &[OsString], cache: &Path) -> Command {
    let (program, args) = argv.split_first().expect("a program to run");
    let mut cmd = tool(program);
    cmd.args(args).env("TALFORGE_CACHE", cache);
    cmd
}

/// A command with a controlled environment: `PATH`, the C locale, UTC and the fixed `SOURCE_DATE_EPOCH` (which
/// talforge, mkfs.vfat and mtools take as the time of the files they write).
pub fn tool(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string());
    cmd
}

/// Runs `cmd` to completion; panics with its argv and stderr unless it succeeds. Returns the wall time and the
/// output.
pub fn run(cmd: &mut Command) -> (Duration, Output) {
    let t = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    (took, out)
}

/// The median of `times` (the upper one of an even count).
pub fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().expect("at least one timing")
}

/// Seconds with millisecond precision, for the reports.
pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// Seconds of each run, for the reports.
pub fn all_secs(times: &[Duration]) -> String {
    times.iter().map(|d| format!("{:.3}", d.as_secs_f64())).collect::<Vec<_>>().join(", ")
}

/// The files under `dir` whose name is `name`, sorted.
pub fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display())) {
            let path = entry.expect("read a folder entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name() == Some(OsStr::new(name)) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The decompressed size `zstd -lv` reports for a `.zst` file (all frames).
pub fn zstd_content_size(file: &Path) -> u64 {
    let (_, out) = run(tool("zstd").arg("-lv").arg(file));
    let text = String::from_utf8_lossy(&out.stdout);
    // `Decompressed Size: 4.00 GiB (4294967296 B)`
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Decompressed Size:"))
        .and_then(|rest| rest.rsplit_once('(')?.1.strip_suffix(" B)")?.parse().ok())
        .unwrap_or_else(|| panic!("zstd -lv {} did not report a decompressed size:\n{text}", file.display()))
}
