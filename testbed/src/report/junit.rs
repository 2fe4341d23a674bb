//! `junit.xml`: the run as JUnit XML, one test suite per node and one test case per stage (see the module
//! documentation of [`super`] for the layout).

use super::text::{self, Context};
use super::{Counts, NodeRecord, RunRecord, StageRecord, StageStatus, node_span_ms, not_run_reason, stage_ran_ms};

/// The run as JUnit XML.
pub fn junit_xml(run: &RunRecord) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let c = Counts::of_run(run);
    out.push_str(&format!(
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\">\n",
        attr(&format!("talforge lab {}", run.lab)),
        c.total,
        c.failed,
        c.skipped + c.not_run,
        text::seconds3(run.duration_ms),
    ));
    for node in &run.nodes {
        testsuite(&mut out, run, node);
    }
    out.push_str("</testsuites>\n");
    out
}

fn testsuite(out: &mut String, run: &RunRecord, node: &NodeRecord) {
    let c = Counts::of(&node.stages);
    out.push_str(&format!(
        "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\" \
         timestamp=\"{}\" hostname=\"{name}\">\n",
        c.total,
        c.failed,
        c.skipped + c.not_run,
        text::seconds3(node_span_ms(run, node)),
        attr(&run.started_at),
        name = attr(&node.name),
    ));
    out.push_str("    <properties>\n");
    let mut properties =
        vec![("accel", run.accel.as_str()), ("profile", &node.profile), ("outcome", run.outcome.as_str())];
    if let Some(m) = &run.message {
        properties.push(("message", m));
    }
    for (name, value) in properties {
        out.push_str(&format!("      <property name=\"{name}\" value=\"{}\"/>\n", attr(value)));
    }
    out.push_str("    </properties>\n");
    for (i, stage) in node.stages.iter().enumerate() {
        testcase(out, run, node, i, stage);
    }
    let mut limits = String::new();
    for (heading, lines) in [("not emulated", &node.not_emulated), ("approximated", &node.approximated)] {
        if !lines.is_empty() {
            limits.push_str(&format!("{heading}:\n"));
            for l in lines {
                limits.push_str(&format!("  {l}\n"));
            }
        }
    }
    if !limits.is_empty() {
        out.push_str(&format!("    <system-out>{}</system-out>\n", body(&limits)));
    }
    out.push_str("  </testsuite>\n");
}

fn testcase(out: &mut String, run: &RunRecord, node: &NodeRecord, index: usize, stage: &StageRecord) {
    out.push_str(&format!(
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\"",
        attr(&format!("{}.{}", run.lab, node.name)),
        attr(&format!("{:02} {}", index + 1, stage.name)),
        text::seconds3(stage_ran_ms(run, stage).unwrap_or(0)),
    ));
    let mut children = String::new();
    match stage.status {
        StageStatus::Passed => {}
        StageStatus::Failed => {
            let message = stage.message.as_deref().unwrap_or("stage failed");
            let mut detail =
                format!("{message}\ntimeout: {} = {}\n", stage.timeout_name, text::seconds(stage.timeout_ms));
            if let Some(last) = &stage.last_observed {
                let sep = if last.contains('\n') { "\n" } else { " " };
                detail.push_str(&format!("last observed:{sep}{}\n", last.trim_end_matches('\n')));
            }
            children.push_str(&format!(
                "      <failure message=\"{}\" type=\"stage-failed\">{}</failure>\n",
                attr(message),
                body(&detail)
            ));
        }
        StageStatus::Skipped => {
            let message = stage.message.as_deref().unwrap_or("skipped");
            children.push_str(&format!("      <skipped message=\"{}\"/>\n", attr(message)));
        }
        StageStatus::NotRun => {
            let message = stage.message.as_deref().unwrap_or_else(|| not_run_reason(run, node, index));
            children.push_str(&format!("      <skipped message=\"{}\"/>\n", attr(message)));
        }
    }
    let mut system_out = String::new();
    if let (StageStatus::Passed, Some(m)) = (stage.status, &stage.message) {
        system_out.push_str(&format!("{m}\n"));
    }
    if !stage.artifacts.is_empty() {
        system_out.push_str("artifacts:\n");
        for a in &stage.artifacts {
            system_out.push_str(&format!("  {}: {} ({} bytes)\n", a.name, a.path, a.bytes));
        }
    }
    if !system_out.is_empty() {
        children.push_str(&format!("      <system-out>{}</system-out>\n", body(&system_out)));
    }
    if children.is_empty() {
        out.push_str("/>\n");
    } else {
        out.push_str(">\n");
        out.push_str(&children);
        out.push_str("    </testcase>\n");
    }
}

fn attr(s: &str) -> String {
    text::xml(s, Context::Attribute)
}

fn body(s: &str) -> String {
    text::xml(s, Context::Text)
}
