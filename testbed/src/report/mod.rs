//! The lab's report: what `talforge lab run --report DIR` leaves behind for people and for CI, written from a
//! plain data model ([`RunRecord`]) that the lab fills in as it boots nodes and runs their stages.
//!
//! [`write_report`] writes three files into the report folder, each to a temporary file in that folder that is
//! then renamed, so a reader never sees a half-written file under its final name:
//!
//! - `junit.xml` ([`junit_xml`]): JUnit XML as Jenkins, GitLab and GitHub test reporters read it. One
//!   `<testsuites name="talforge lab LAB">` with the run's totals and duration; one `<testsuite>` per node
//!   (`hostname` = node, `timestamp` = the run's start) with `<properties>` `accel`, `profile`, `outcome` (plus
//!   `message` when the run has one); one `<testcase classname="LAB.NODE" name="NN STAGE">` per stage in run
//!   order, `NN` being the two-digit 1-based stage index so that CI pages that sort by name keep the order. A
//!   failed stage has `<failure type="stage-failed">` whose text holds the message, the named timeout and the
//!   last value the pass condition observed; a skipped or not-run stage has `<skipped message="...">`. A
//!   testcase's `<system-out>` holds a passed stage's detail and the stage's artifact paths; a testsuite's holds
//!   what the node's VM does not emulate or only approximates. Times are seconds with three decimals; a stage
//!   that started and did not finish (an interrupted run) counts until the end of the run.
//! - `report.html` ([`html`]): one self-contained HTML5 page (inline CSS and SVG; no script, no external
//!   fonts, images or style sheets): the run's header, a timeline with one row per node and one bar per stage,
//!   an overview of the nodes, a table of stages per node with links to the artifacts (relative to the report
//!   folder), what each node does not emulate or approximates, and the teardown steps.
//! - `run.json`: the [`RunRecord`] itself, pretty-printed JSON with camelCase keys, for tools.
//!
//! Both renderings are pure functions of the record (no clock, stable order), so they are snapshot-tested.
//! Text from guests (serial logs, observed values) can hold any character: both renderings escape markup
//! characters and replace characters that XML 1.0 forbids or HTML calls control characters (ESC from ANSI
//! colour codes, NUL, C1 controls) with U+FFFD.

mod html;
mod junit;
mod text;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use html::html;
pub use junit::junit_xml;

/// File names inside the report folder.
pub const JUNIT_FILE: &str = "junit.xml";
pub const HTML_FILE: &str = "report.html";
pub const JSON_FILE: &str = "run.json";

/// The mode of the report files: readable by everyone (CI artifact uploaders, web servers).
const REPORT_FILE_MODE: u32 = 0o644;

/// One `talforge lab run`: the cluster, how it ran, and every node's stages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The cluster's name.
    pub lab: String,
    /// The cluster file's path as the user gave it.
    pub cluster_file: String,
    /// RFC 3339 UTC, e.g. `2026-11-22T12:00:00Z`, formatted by the caller.
    pub started_at: String,
    /// `tcg` or `kvm`, plus why, e.g. `tcg (KVM probe: guest did not reach the marker in 5 s)`.
    pub accel: String,
    pub duration_ms: u64,
    pub outcome: Outcome,
    /// The run's summary line on failure or interruption.
    pub message: Option<String>,
    pub nodes: Vec<NodeRecord>,
    /// Teardown steps as lines for people (`stopped qemu cp-1 (pid 123)`, `deleted netns talforge-x`).
    pub teardown: Vec<String>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
    Interrupted,
}

impl Outcome {
    /// The serialized name: `passed`, `failed`, `interrupted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// One node of the run: its hardware profile, its stages in run order, and the limits of its emulation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub name: String,
    pub profile: String,
    pub stages: Vec<StageRecord>,
    /// Parts of the profile the VM does not have at all (e.g. a GPU).
    pub not_emulated: Vec<String>,
    /// Parts the VM has in another form (e.g. an NVMe disk of another model).
    pub approximated: Vec<String>,
}

/// One validation stage of one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageRecord {
    /// The stage's id, kebab-case (`kernel-booted`).
    pub name: String,
    /// For people (`Kernel booted`).
    pub title: String,
    pub status: StageStatus,
    /// Milliseconds from the run's start; `None` when the stage did not start.
    pub start_ms: Option<u64>,
    /// `None` when the stage did not start or did not finish (an interrupted run).
    pub end_ms: Option<u64>,
    /// The name of the timeout that bounds the stage (`kernel-booted`).
    pub timeout_name: String,
    pub timeout_ms: u64,
    /// Why the stage failed, was skipped or did not run; or a pass detail
    /// (`sha256 ab12… equals the served config`).
    pub message: Option<String>,
    /// On failure: the last value the pass condition saw.
    pub last_observed: Option<String>,
    pub artifacts: Vec<Artifact>,
}

impl StageRecord {
    /// How long the stage ran, when it started and finished.
    pub fn duration_ms(&self) -> Option<u64> {
        Some(self.end_ms?.saturating_sub(self.start_ms?))
    }
}

/// A stage's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    Passed,
    Failed,
    /// Not applicable to this node (decided before it would have run).
    Skipped,
    /// Did not run: an earlier stage failed or the run was interrupted.
    NotRun,
}

impl StageStatus {
    /// The serialized name: `passed`, `failed`, `skipped`, `not-run`.
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Passed => "passed",
            StageStatus::Failed => "failed",
            StageStatus::Skipped => "skipped",
            StageStatus::NotRun => "not-run",
        }
    }
}

/// A file a stage left in the report folder (serial log, inventory, screenshot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    pub name: String,
    /// Relative to the report folder.
    pub path: String,
    pub bytes: u64,
}

/// The files [`write_report`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportFiles {
    pub junit: PathBuf,
    pub html: PathBuf,
    pub json: PathBuf,
}

/// Writes `junit.xml`, `report.html` and `run.json` into `dir` (created if missing), mode 0644, each through a
/// temporary file in `dir` renamed over the final name. Errors name the file.
pub fn write_report(dir: &Path, run: &RunRecord) -> std::io::Result<ReportFiles> {
    std::fs::create_dir_all(dir).map_err(|e| with_path(e, "cannot create the report folder", dir))?;
    let json = serde_json::to_string_pretty(run).map_err(std::io::Error::other)? + "\n";
    let files = ReportFiles { junit: dir.join(JUNIT_FILE), html: dir.join(HTML_FILE), json: dir.join(JSON_FILE) };
    write_atomically(&files.junit, junit_xml(run).as_bytes())?;
    write_atomically(&files.html, html(run).as_bytes())?;
    write_atomically(&files.json, json.as_bytes())?;
    // The renames are durable once the folder is synced.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| with_path(e, "cannot sync the report folder", dir))?;
    Ok(files)
}

/// Writes `bytes` to `path` by way of a synced temporary file in the same folder (so the rename is atomic).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| with_path(e, "cannot create a temporary file in", dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().set_permissions(std::fs::Permissions::from_mode(REPORT_FILE_MODE)))
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| with_path(e, "cannot write", tmp.path()))?;
    // On failure the temporary file is dropped, which deletes it.
    tmp.persist(path).map_err(|e| with_path(e.error, "cannot rename the temporary file to", path))?;
    Ok(())
}

fn with_path(e: std::io::Error, what: &str, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Why a not-run stage did not run, when the lab gave no message: an earlier stage of the same node failed,
/// else the run was interrupted, else (another node failed and the run stopped) an earlier stage failed.
fn not_run_reason(run: &RunRecord, node: &NodeRecord, index: usize) -> &'static str {
    let earlier_failed = node.stages.iter().take(index).any(|s| s.status == StageStatus::Failed);
    if !earlier_failed && run.outcome == Outcome::Interrupted {
        "not run: the run was interrupted"
    } else {
        "not run: an earlier stage failed"
    }
}

/// Stage counts by status, over a node or the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    total: usize,
    passed: usize,
    failed: usize,
    skipped: usize,
    not_run: usize,
}

impl Counts {
    fn of<'a>(stages: impl IntoIterator<Item = &'a StageRecord>) -> Counts {
        let mut c = Counts::default();
        for s in stages {
            c.total += 1;
            match s.status {
                StageStatus::Passed => c.passed += 1,
                StageStatus::Failed => c.failed += 1,
                StageStatus::Skipped => c.skipped += 1,
                StageStatus::NotRun => c.not_run += 1,
            }
        }
        c
    }

    fn of_run(run: &RunRecord) -> Counts {
        Counts::of(run.nodes.iter().flat_map(|n| &n.stages))
    }
}

/// When a stage ended: its end, or for a stage that started and did not finish (an interrupted run), the
/// end of the run.
fn stage_end_ms(run: &RunRecord, stage: &StageRecord) -> Option<u64> {
    stage.end_ms.or_else(|| stage.start_ms.map(|start| run.duration_ms.max(start)))
}

/// How long a stage ran: until its end or, unfinished, until the end of the run.
fn stage_ran_ms(run: &RunRecord, stage: &StageRecord) -> Option<u64> {
    Some(stage_end_ms(run, stage)?.saturating_sub(stage.start_ms?))
}

/// The span of a node's stages: from the first start to the last end, 0 if no stage started.
fn node_span_ms(run: &RunRecord, node: &NodeRecord) -> u64 {
    let start = node.stages.iter().filter_map(|s| s.start_ms).min();
    let end = node.stages.iter().filter_map(|s| stage_end_ms(run, s)).max();
    match (start, end) {
        (Some(s), Some(e)) => e.saturating_sub(s),
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
