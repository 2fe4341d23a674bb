//! The report on three runs (all passed; a failed stage with hostile guest output and a not-run tail;
//! interrupted): snapshots of both renderings, the JUnit read back by xmllint, and the files on disk.

use std::os::unix::fs::PermissionsExt as _;

use talforge_builder::tool::{Program, ToolRunner};

use super::*;

const XMLLINT: Program = Program::new("xmllint", "libxml2-utils");

/// The lab's seven stages on one node, all passed, starting `offset` ms into the run.
fn passed_stages(node: &str, offset: u64) -> Vec<StageRecord> {
    let serial = Artifact { name: "serial-log".into(), path: format!("nodes/{node}/serial.log"), bytes: 48_213 };
    let plan = [
        ("vm-started", "VM started", 120, "qemu-start", 10_000, Some("qemu pid 4242, QMP ready"), vec![]),
        ("firmware-reached-bootloader", "Firmware reached the bootloader", 3_280, "firmware", 60_000, None, vec![]),
        ("kernel-booted", "Kernel booted", 11_400, "kernel-booted", 120_000, None, vec![serial]),
        ("extensions-loaded", "Extensions loaded", 6_250, "extensions-loaded", 60_000, None, vec![]),
        (
            "config-fetched",
            "Config fetched",
            1_250,
            "config-fetched",
            60_000,
            Some("sha256 ab12cd34… equals the served config"),
            vec![],
        ),
        (
            "inventory-matches-profile",
            "Inventory matches the profile",
            2_600,
            "inventory",
            30_000,
            None,
            vec![
                Artifact { name: "inventory".into(), path: format!("nodes/{node}/inventory.json"), bytes: 3_071 },
                Artifact { name: "qualify".into(), path: format!("nodes/{node}/qualify.txt"), bytes: 1_904 },
            ],
        ),
        ("powered-off", "Powered off", 6_300, "shutdown", 30_000, None, vec![]),
    ];
    let mut at = offset;
    plan.into_iter()
        .map(|(name, title, took, timeout_name, timeout_ms, message, artifacts)| {
            let start = at;
            at += took;
            StageRecord {
                name: name.into(),
                title: title.into(),
                status: StageStatus::Passed,
                start_ms: Some(start),
                end_ms: Some(at),
                timeout_name: timeout_name.into(),
                timeout_ms,
                message: message.map(Into::into),
                last_observed: None,
                artifacts,
            }
        })
        .collect()
}

fn node(name: &str, profile: &str, stages: Vec<StageRecord>) -> NodeRecord {
    NodeRecord {
        name: name.into(),
        profile: profile.into(),
        stages,
        not_emulated: vec!["gpu0: NVIDIA L4 (no passthrough in the lab)".into()],
        approximated: vec!["disk osd: QEMU NVMe 64 GiB stands for Samsung PM9A3 3.84 TB".into()],
    }
}

fn all_passed() -> RunRecord {
    RunRecord {
        lab: "demo".into(),
        cluster_file: "examples/demo/cluster.yaml".into(),
        started_at: "2026-11-22T12:00:00Z".into(),
        accel: "kvm (/dev/kvm is usable)".into(),
        duration_ms: 33_600,
        outcome: Outcome::Passed,
        message: None,
        nodes: vec![
            node("cp-1", "qemu-virtio-uefi", passed_stages("cp-1", 0)),
            node("worker-1", "qemu-virtio-uefi", passed_stages("worker-1", 410)),
            node("worker-2", "qemu-nvme-secureboot-tpm", passed_stages("worker-2", 820)),
        ],
        teardown: vec![
            "stopped qemu cp-1 (pid 4242)".into(),
            "stopped qemu worker-1 (pid 4250)".into(),
            "stopped qemu worker-2 (pid 4258)".into(),
            "stopped the config server on 10.5.0.1:8080".into(),
            "deleted netns talforge-demo".into(),
        ],
    }
}

/// What the failed stage saw last: ANSI colours (ESC), markup characters, quotes, a NUL.
const HOSTILE: &str =
    "\u{1b}[32m[   12.3] <6>loop: module loaded & \"ready\" 'ok'\u{1b}[0m\n[   13.0] a < b && c > d\u{0}";

fn failed() -> RunRecord {
    let mut stages = passed_stages("worker-1", 410);
    stages[1].status = StageStatus::Skipped;
    stages[1].message = Some("the profile boots with SeaBIOS: there is no UEFI bootloader marker".into());
    stages[1].start_ms = None;
    stages[1].end_ms = None;
    let k = &mut stages[2];
    k.status = StageStatus::Failed;
    k.start_ms = Some(530);
    k.end_ms = Some(120_530);
    k.message = Some("the kernel did not print \"TALFORGE-BOOTED\" within the kernel-booted timeout".into());
    k.last_observed = Some(HOSTILE.into());
    k.artifacts =
        vec![Artifact { name: "serial-log".into(), path: "nodes/worker-1/serial log.txt".into(), bytes: 2_310_778 }];
    for s in &mut stages[3..] {
        s.status = StageStatus::NotRun;
        s.start_ms = None;
        s.end_ms = None;
        s.message = None;
        s.artifacts.clear();
    }
    stages[6].message = Some("not run: the lab powers off only nodes that booted".into());
    RunRecord {
        lab: "edge <&> 'lab'".into(),
        cluster_file: "clusters/edge \"prod\".yaml".into(),
        started_at: "2026-11-22T12:00:00Z".into(),
        accel: "tcg (KVM probe: guest did not reach the marker in 5 s)".into(),
        duration_ms: 121_900,
        outcome: Outcome::Failed,
        message: Some("worker-1: stage kernel-booted failed (1 of 14 stages)".into()),
        nodes: vec![node("cp-1", "qemu-virtio-uefi", passed_stages("cp-1", 0)), node("worker-1", "qemu-bios", stages)],
        teardown: vec!["stopped qemu cp-1 (pid 4242)".into(), "killed qemu worker-1 (pid 4250) after 10 s".into()],
    }
}

fn interrupted() -> RunRecord {
    let mut cp = passed_stages("cp-1", 0);
    cp[3].status = StageStatus::NotRun;
    cp[3].end_ms = None;
    cp[3].message = Some("interrupted (SIGINT) while waiting for the extensions".into());
    cp[3].artifacts.clear();
    for s in &mut cp[4..] {
        s.status = StageStatus::NotRun;
        s.start_ms = None;
        s.end_ms = None;
        s.message = None;
        s.artifacts.clear();
    }
    let mut worker = passed_stages("worker-1", 410);
    for s in &mut worker[2..] {
        s.status = StageStatus::NotRun;
        s.end_ms = None;
        s.message = None;
        s.artifacts.clear();
    }
    for s in &mut worker[3..] {
        s.start_ms = None;
    }
    RunRecord {
        lab: "demo".into(),
        cluster_file: "examples/demo/cluster.yaml".into(),
        started_at: "2026-11-22T12:00:00Z".into(),
        accel: "tcg (KVM probe: /dev/kvm is missing)".into(),
        duration_ms: 17_950,
        outcome: Outcome::Interrupted,
        message: Some("interrupted by SIGINT after 17.95 s; the nodes were stopped".into()),
        nodes: vec![node("cp-1", "qemu-virtio-uefi", cp), node("worker-1", "qemu-virtio-uefi", worker)],
        teardown: vec![
            "stopped qemu cp-1 (pid 4242)".into(),
            "stopped qemu worker-1 (pid 4250)".into(),
            "deleted netns talforge-demo".into(),
        ],
    }
}

fn empty() -> RunRecord {
    RunRecord {
        lab: "empty".into(),
        cluster_file: "c.yaml".into(),
        started_at: "2026-11-22T12:00:00Z".into(),
        accel: "kvm".into(),
        duration_ms: 0,
        outcome: Outcome::Failed,
        message: Some("the cluster has no nodes".into()),
        nodes: vec![],
        teardown: vec![],
    }
}

fn fixtures() -> [(&'static str, RunRecord); 4] {
    [("all-passed", all_passed()), ("failed", failed()), ("interrupted", interrupted()), ("empty", empty())]
}

/// `tests="…" failures="…" errors="0" skipped="…"` as on `<testsuites>`.
fn totals(tests: usize, failures: usize, skipped: usize) -> String {
    format!("tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\"")
}

/// The JUnit's counts agree with its elements.
fn assert_counts(xml: &str, tests: usize, failures: usize, skipped: usize) {
    let suites = xml.lines().find(|l| l.starts_with("<testsuites ")).unwrap();
    assert!(suites.contains(&totals(tests, failures, skipped)), "{suites}");
    assert_eq!(xml.matches("<testcase ").count(), tests);
    assert_eq!(xml.matches("<failure ").count(), failures);
    assert_eq!(xml.matches("<skipped ").count(), skipped);
}

// ------------------------------------------------------------------------------------------------ JUnit

#[test]
fn junit_all_passed() {
    let xml = junit_xml(&all_passed());
    assert_counts(&xml, 21, 0, 0);
    assert_eq!(xml.matches("<testsuite name=").count(), 3);
    assert!(xml.contains(
        "<testsuite name=\"worker-2\" tests=\"7\" failures=\"0\" errors=\"0\" skipped=\"0\" time=\"31.200\" \
         timestamp=\"2026-11-22T12:00:00Z\" hostname=\"worker-2\">"
    ));
    assert!(xml.contains("<testcase classname=\"demo.cp-1\" name=\"01 vm-started\" time=\"0.120\">"));
    assert!(xml.contains("<testcase classname=\"demo.cp-1\" name=\"07 powered-off\" time=\"6.300\"/>"));
    insta::assert_snapshot!(xml);
}

#[test]
fn junit_failed_stage_escapes_guest_output_and_skips_the_not_run_tail() {
    let xml = junit_xml(&failed());
    assert_counts(&xml, 14, 1, 5);
    assert!(!xml.contains('\u{1b}') && !xml.contains('\u{0}'));
    assert!(xml.contains("<testsuites name=\"talforge lab edge &lt;&amp;&gt; &apos;lab&apos;\""));
    assert!(xml.contains("classname=\"edge &lt;&amp;&gt; &apos;lab&apos;.worker-1\" name=\"03 kernel-booted\""));
    assert!(xml.contains(
        "last observed:\n\u{fffd}[32m[   12.3] &lt;6&gt;loop: module loaded &amp; &quot;ready&quot; &apos;ok&apos;"
    ));
    assert!(xml.contains("timeout: kernel-booted = 120 s\n"));
    assert!(xml.contains("<skipped message=\"not run: an earlier stage failed\"/>"));
    assert!(xml.contains("<skipped message=\"not run: the lab powers off only nodes that booted\"/>"));
    assert!(xml.contains("<skipped message=\"the profile boots with SeaBIOS: there is no UEFI bootloader marker\"/>"));
    insta::assert_snapshot!(xml);
}

#[test]
fn junit_interrupted_run_reports_not_run_stages_as_skipped() {
    let xml = junit_xml(&interrupted());
    assert_counts(&xml, 14, 0, 9);
    assert_eq!(xml.matches("<property name=\"outcome\" value=\"interrupted\"/>").count(), 2);
    assert!(xml.contains("<skipped message=\"interrupted (SIGINT) while waiting for the extensions\"/>"));
    assert_eq!(xml.matches("<skipped message=\"not run: the run was interrupted\"/>").count(), 8);
    insta::assert_snapshot!(xml);
}

#[test]
fn junit_of_a_run_without_nodes_has_zero_totals() {
    let xml = junit_xml(&empty());
    assert_counts(&xml, 0, 0, 0);
    assert!(xml.ends_with("time=\"0.000\">\n</testsuites>\n"), "{xml}");
}

/// `xmllint --xpath EXPR -` on `xml`, without the line feed xmllint ends its answer with.
fn xpath(runner: &ToolRunner, xml: &str, expr: &str) -> String {
    let out = runner.run(XMLLINT, ["--xpath", expr, "-"], None, Some(xml.as_bytes())).unwrap();
    let answer = String::from_utf8(out.stdout).unwrap();
    answer.strip_suffix('\n').unwrap_or(&answer).to_owned()
}

#[test]
fn junit_is_well_formed_and_reads_back_through_xmllint() {
    let runner = ToolRunner::new(0);
    if runner.find(XMLLINT).is_none() {
        talforge_builder::tool::skip_test("SKIP: xmllint is not installed (Debian package libxml2-utils)");
        return;
    }
    for (name, run) in fixtures() {
        let xml = junit_xml(&run);
        if let Err(e) = runner.run(XMLLINT, ["--noout", "-"], None, Some(xml.as_bytes())) {
            panic!("{name}: junit.xml is not well-formed: {e}\n{xml}");
        }
        // The inline SVG is XML too: a viewer that renders it on its own (or an XHTML reader) must parse it.
        let page = html(&run);
        if let (Some(start), Some(end)) = (page.find("<svg"), page.find("</svg>")) {
            let svg = &page[start..end + "</svg>".len()];
            if let Err(e) = runner.run(XMLLINT, ["--noout", "-"], None, Some(svg.as_bytes())) {
                panic!("{name}: the timeline SVG is not well-formed: {e}\n{svg}");
            }
        }
    }
    // A parser sees the counts and the guest's text as they were, escaped exactly once.
    let xml = junit_xml(&failed());
    assert_eq!(xpath(&runner, &xml, "count(//testcase)"), "14");
    assert_eq!(xpath(&runner, &xml, "count(//testcase/failure)"), "1");
    assert_eq!(xpath(&runner, &xml, "count(//testcase/skipped)"), "5");
    assert_eq!(xpath(&runner, &xml, "string(/testsuites/@name)"), "talforge lab edge <&> 'lab'");
    let failure = xpath(&runner, &xml, "string(//failure)");
    let expected_observed = HOSTILE.replace(['\u{1b}', '\u{0}'], "\u{fffd}");
    assert!(failure.contains(&expected_observed), "{failure}");
    assert_eq!(
        xpath(&runner, &xml, "string(//failure/@message)"),
        "the kernel did not print \"TALFORGE-BOOTED\" within the kernel-booted timeout"
    );
}

// ------------------------------------------------------------------------------------------------ HTML

#[test]
fn html_all_passed() {
    let page = html(&all_passed());
    // Labels only where they fit: the 120 ms vm-started bar is about 3 px wide.
    assert!(page.contains(">kernel-booted</text>"));
    assert!(!page.contains(">vm-started</text>"));
    assert!(page.contains("<title>01 vm-started (VM started): passed, 0 s to 0.12 s (0.12 s)</title>"));
    assert!(page.contains("<a href=\"nodes/cp-1/inventory.json\">inventory</a>"));
    insta::assert_snapshot!(page);
}

#[test]
fn html_failed_stage_escapes_guest_output() {
    let page = html(&failed());
    assert!(!page.contains('\u{1b}') && !page.contains('\u{0}'));
    assert!(page.contains(
        "<code class=\"observed\">\u{fffd}[32m[   12.3] &lt;6&gt;loop: module loaded &amp; &quot;ready&quot; \
         &#39;ok&#39;\u{fffd}[0m\n[   13.0] a &lt; b &amp;&amp; c &gt; d\u{fffd}</code>"
    ));
    assert!(page.contains("<title>talforge lab edge &lt;&amp;&gt; &#39;lab&#39;: failed</title>"));
    assert!(page.contains("<a href=\"nodes/worker-1/serial%20log.txt\">serial-log</a>"));
    assert!(page.contains("<span class=\"muted\">not run: an earlier stage failed</span>"));
    insta::assert_snapshot!(page);
}

#[test]
fn html_interrupted_run_draws_the_unfinished_stage_to_the_end() {
    let page = html(&interrupted());
    assert_eq!(page.matches("stroke-dasharray").count(), 2);
    assert!(page.contains("extensions-loaded (Extensions loaded): not run, from 14.8 s, did not finish"));
    assert!(page.contains("<span class=\"badge o-interrupted\">interrupted</span>"));
    insta::assert_snapshot!(page);
}

#[test]
fn html_is_self_contained() {
    for (name, run) in fixtures() {
        let page = html(&run);
        assert!(page.starts_with("<!DOCTYPE html>\n"), "{name}");
        for needle in ["<script", "http:", "https:", "src=", "url(", "@import", "<link", "<img", "<iframe"] {
            assert!(!page.contains(needle), "{name}: the page holds {needle:?}");
        }
        assert_eq!(page, html(&run), "{name}: the page is not deterministic");
    }
}

// ------------------------------------------------------------------------------------------------ JSON and files

#[test]
fn run_json_uses_camel_case_and_reads_back() {
    let run = interrupted();
    let json = serde_json::to_value(&run).unwrap();
    assert_eq!(json["outcome"], "interrupted");
    assert_eq!(json["clusterFile"], "examples/demo/cluster.yaml");
    assert_eq!(json["durationMs"], 17_950);
    let stage = &json["nodes"][0]["stages"][3];
    assert_eq!(stage["status"], "not-run");
    assert_eq!(stage["startMs"], 14_800);
    assert_eq!(stage["endMs"], serde_json::Value::Null);
    assert_eq!(stage["timeoutName"], "extensions-loaded");
    assert!(json["nodes"][0]["notEmulated"].is_array());
    let back: RunRecord = serde_json::from_value(json).unwrap();
    assert_eq!(back, run);
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn write_report_writes_three_files_0644_and_no_temporary_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("reports/run-1");
    let run = failed();
    let files = write_report(&dir, &run).unwrap();
    assert_eq!(
        files,
        ReportFiles { junit: dir.join("junit.xml"), html: dir.join("report.html"), json: dir.join("run.json") }
    );
    assert_eq!(entries(&dir), ["junit.xml", "report.html", "run.json"]);
    for f in [&files.junit, &files.html, &files.json] {
        assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o7777, 0o644, "{}", f.display());
    }
    assert_eq!(std::fs::read_to_string(&files.junit).unwrap(), junit_xml(&run));
    assert_eq!(std::fs::read_to_string(&files.html).unwrap(), html(&run));
    let back: RunRecord = serde_json::from_str(&std::fs::read_to_string(&files.json).unwrap()).unwrap();
    assert_eq!(back, run);

    // A second run into the same folder replaces the files.
    let run = all_passed();
    write_report(&dir, &run).unwrap();
    assert_eq!(entries(&dir), ["junit.xml", "report.html", "run.json"]);
    assert_eq!(std::fs::read_to_string(&files.junit).unwrap(), junit_xml(&run));
}

#[test]
fn write_report_error_names_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let e = write_report(&file.join("report"), &empty()).unwrap_err();
    assert!(e.to_string().starts_with(&format!("cannot create the report folder {}/report: ", file.display())), "{e}");
}
