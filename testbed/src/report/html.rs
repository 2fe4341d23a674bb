//! `report.html`: the run as one self-contained page for people: header, timeline (inline SVG), node overview,
//! a table of stages per node, emulation limits, teardown. No script and nothing fetched: the page opens from
//! a CI artifact store or a local folder as it is.

use super::text::{self, html as esc, html_attr as esc_attr};
use super::{
    Counts, NodeRecord, Outcome, RunRecord, StageRecord, StageStatus, node_span_ms, not_run_reason, stage_end_ms,
    stage_ran_ms,
};

const CSS: &str = "\
:root{color-scheme:light;--pass:#1a7f37;--fail:#cf222e;--grey:#d0d7de;--warn:#9a6700;--line:#d0d7de;--muted:#59636e}
body{font:14px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Helvetica Neue\",Arial,sans-serif;color:#1f2328;\
background:#fff;margin:0 auto;max-width:1280px;padding:16px 24px}
h1{font-size:22px;margin:0 0 8px}
h2{font-size:18px;margin:28px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:16px 0 4px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.muted{color:var(--muted);font-weight:normal}
.badge{display:inline-block;padding:1px 10px;border-radius:12px;color:#fff;font-size:14px;vertical-align:middle}
.o-passed{background:var(--pass)}.o-failed{background:var(--fail)}.o-interrupted{background:var(--warn)}
p.message{margin:8px 0;padding:6px 10px;border-left:4px solid var(--fail);background:#fff8f7;white-space:pre-wrap}
p.message.interrupted{border-color:var(--warn);background:#fff8c5}
dl.summary{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}
dl.summary dt{color:var(--muted)}dl.summary dd{margin:0}
svg.timeline{display:block;width:100%;height:auto;max-width:960px}
svg.timeline text{font:11px system-ui,-apple-system,\"Segoe UI\",Roboto,Arial,sans-serif}
.legend span{display:inline-block;margin-right:14px}
.key{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-1px;margin-right:4px}
.k-passed{background:var(--pass)}.k-failed{background:var(--fail)}.k-grey{background:var(--grey)}
table{border-collapse:collapse;width:100%}
th,td{border:1px solid var(--line);padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
td.num{text-align:right;white-space:nowrap}
td.text{white-space:pre-wrap;overflow-wrap:anywhere}
code.observed{display:block;white-space:pre-wrap;overflow-wrap:anywhere}
.st{font-weight:600;white-space:nowrap}
.st-passed{color:var(--pass)}.st-failed{color:var(--fail)}.st-skipped,.st-not-run{color:var(--muted)}
tr.failed td{background:#fff8f7}
footer{margin-top:32px;color:var(--muted);font-size:12px}
";

/// The run as one self-contained HTML5 page.
pub fn html(run: &RunRecord) -> String {
    let outcome = run.outcome.as_str();
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    // Nothing on the page is fetched or run; the policy keeps it so even if escaping were wrong.
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
    );
    out.push_str(&format!("<title>talforge lab {}: {outcome}</title>\n", esc(&run.lab)));
    out.push_str(&format!("<style>\n{CSS}</style>\n</head>\n<body>\n"));
    header(&mut out, run);
    out.push_str("<main>\n");
    out.push_str("<section>\n<h2>Timeline</h2>\n");
    timeline(&mut out, run);
    out.push_str("</section>\n");
    overview(&mut out, run);
    for (i, node) in run.nodes.iter().enumerate() {
        node_section(&mut out, run, i, node);
    }
    out.push_str("<section>\n<h2>Teardown</h2>\n");
    if run.teardown.is_empty() {
        out.push_str("<p class=\"muted\">No teardown steps were recorded.</p>\n");
    } else {
        out.push_str("<ol>\n");
        for line in &run.teardown {
            out.push_str(&format!("<li>{}</li>\n", esc(line)));
        }
        out.push_str("</ol>\n");
    }
    out.push_str("</section>\n</main>\n");
    out.push_str(
        "<footer>Written by <code>talforge lab run</code>. The same run as JUnit XML: \
         <a href=\"junit.xml\">junit.xml</a>; as JSON: <a href=\"run.json\">run.json</a>.</footer>\n",
    );
    out.push_str("</body>\n</html>\n");
    out
}

fn header(out: &mut String, run: &RunRecord) {
    let outcome = run.outcome.as_str();
    out.push_str("<header>\n");
    out.push_str(&format!(
        "<h1>talforge lab <code>{}</code> <span class=\"badge o-{outcome}\">{outcome}</span></h1>\n",
        esc(&run.lab)
    ));
    if let Some(m) = &run.message {
        let class = if run.outcome == Outcome::Interrupted { "message interrupted" } else { "message" };
        out.push_str(&format!("<p class=\"{class}\">{}</p>\n", esc(m)));
    }
    let c = Counts::of_run(run);
    out.push_str("<dl class=\"summary\">\n");
    let rows = [
        ("Cluster file", format!("<code>{}</code>", esc(&run.cluster_file))),
        ("Started", esc(&run.started_at)),
        ("Duration", text::seconds(run.duration_ms)),
        ("Acceleration", esc(&run.accel)),
        ("Nodes", run.nodes.len().to_string()),
        (
            "Stages",
            format!(
                "{} passed, {} failed, {} skipped, {} not run (of {})",
                c.passed, c.failed, c.skipped, c.not_run, c.total
            ),
        ),
    ];
    for (term, value) in rows {
        out.push_str(&format!("<dt>{term}</dt><dd>{value}</dd>\n"));
    }
    out.push_str("</dl>\n</header>\n");
}

// ------------------------------------------------------------------------------------------------ timeline

/// The SVG's coordinate system: a label column for node names, then the chart; the axis labels on top.
const SVG_WIDTH: f64 = 960.0;
const LABEL_WIDTH: f64 = 160.0;
const RIGHT_PAD: f64 = 24.0;
const CHART_WIDTH: f64 = SVG_WIDTH - LABEL_WIDTH - RIGHT_PAD;
const AXIS_HEIGHT: f64 = 22.0;
const ROW_HEIGHT: f64 = 28.0;
const BAR_HEIGHT: f64 = 18.0;
const BAR_GAP: f64 = 1.0;
/// Roughly the advance of one character of the 11 px label font: a label is drawn when the bar is wider.
const LABEL_CHAR_WIDTH: f64 = 6.5;
/// A node name longer than this is cut in the label column (the full name is in its tooltip).
const NODE_LABEL_CHARS: usize = 22;
/// Tick spacings to choose from, in milliseconds: the smallest that gives at most [`MAX_TICKS`] intervals.
const TICK_STEPS_MS: [u64; 16] = [
    100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000,
    3_600_000,
];
const MAX_TICKS: u64 = 10;

fn timeline(out: &mut String, run: &RunRecord) {
    if run.nodes.is_empty() {
        out.push_str("<p class=\"muted\">No nodes.</p>\n");
        return;
    }
    let stage_times = run.nodes.iter().flat_map(|n| &n.stages).flat_map(|s| [s.start_ms, s.end_ms]).flatten();
    let total_ms = stage_times.chain([run.duration_ms]).max().unwrap_or(0).max(1);
    let x = |ms: u64| LABEL_WIDTH + ms.min(total_ms) as f64 * CHART_WIDTH / total_ms as f64;
    let height = AXIS_HEIGHT + ROW_HEIGHT * run.nodes.len() as f64 + 4.0;
    out.push_str(&format!(
        "<svg class=\"timeline\" viewBox=\"0 0 {SVG_WIDTH} {height}\" width=\"{SVG_WIDTH}\" height=\"{height}\" \
         role=\"img\" aria-label=\"{}\">\n",
        esc_attr(&format!("Stages of each node over {}", text::seconds(run.duration_ms)))
    ));
    // Every other row shaded, so a bar's row is easy to follow.
    for row in (1..run.nodes.len()).step_by(2) {
        let y = AXIS_HEIGHT + ROW_HEIGHT * row as f64;
        out.push_str(&format!(
            "<rect x=\"0\" y=\"{y}\" width=\"{SVG_WIDTH}\" height=\"{ROW_HEIGHT}\" fill=\"#f6f8fa\"/>\n"
        ));
    }
    let step = TICK_STEPS_MS.iter().copied().find(|s| total_ms / s <= MAX_TICKS).unwrap_or_else(|| {
        let hour = TICK_STEPS_MS[TICK_STEPS_MS.len() - 1];
        (total_ms / MAX_TICKS).div_ceil(hour) * hour
    });
    let mut tick = 0;
    while tick <= total_ms {
        let tx = fmt(x(tick));
        out.push_str(&format!(
            "<line x1=\"{tx}\" y1=\"{}\" x2=\"{tx}\" y2=\"{}\" stroke=\"#d0d7de\"/>\
             <text x=\"{tx}\" y=\"14\" text-anchor=\"middle\" fill=\"#59636e\">{}</text>\n",
            AXIS_HEIGHT - 4.0,
            height,
            text::seconds(tick)
        ));
        tick += step;
    }
    for (row, node) in run.nodes.iter().enumerate() {
        let top = AXIS_HEIGHT + ROW_HEIGHT * row as f64;
        let label: String = if node.name.chars().count() > NODE_LABEL_CHARS {
            node.name.chars().take(NODE_LABEL_CHARS - 1).chain(['…']).collect()
        } else {
            node.name.clone()
        };
        out.push_str(&format!(
            "<a href=\"#node-{}\"><text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#1f2328\">\
             <title>{}</title>{}</text></a>\n",
            row + 1,
            LABEL_WIDTH - 8.0,
            fmt(top + ROW_HEIGHT / 2.0 + 4.0),
            esc(&format!("{} ({})", node.name, node.profile)),
            esc(&label),
        ));
        for (i, stage) in node.stages.iter().enumerate() {
            let (Some(start), Some(end)) = (stage.start_ms, stage_end_ms(run, stage)) else { continue };
            let (x0, x1) = (x(start), x(end));
            // A 1 px gap between bars keeps back-to-back stages of one colour apart.
            let width = (x1 - x0 - BAR_GAP).max(1.0);
            let bar_top = top + (ROW_HEIGHT - BAR_HEIGHT) / 2.0;
            let (fill, ink) = colours(stage.status);
            // A stage that started and did not finish (an interrupted run) runs to the end, outlined dashed.
            let unfinished = if stage.end_ms.is_none() { " stroke=\"#59636e\" stroke-dasharray=\"3 2\"" } else { "" };
            out.push_str(&format!(
                "<g><title>{}</title><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{BAR_HEIGHT}\" rx=\"2\" \
                 fill=\"{fill}\"{unfinished}/>",
                esc(&bar_tooltip(i, stage)),
                fmt(x0),
                fmt(bar_top),
                fmt(width),
            ));
            if stage.name.chars().count() as f64 * LABEL_CHAR_WIDTH + 6.0 <= width {
                out.push_str(&format!(
                    "<text x=\"{}\" y=\"{}\" fill=\"{ink}\">{}</text>",
                    fmt(x0 + 3.0),
                    fmt(bar_top + BAR_HEIGHT / 2.0 + 4.0),
                    esc(&stage.name)
                ));
            }
            out.push_str("</g>\n");
        }
    }
    out.push_str("</svg>\n");
    out.push_str(
        "<p class=\"legend\"><span><span class=\"key k-passed\"></span>passed</span>\
         <span><span class=\"key k-failed\"></span>failed</span>\
         <span><span class=\"key k-grey\"></span>skipped or not run</span>\
         <span class=\"muted\">Hover a bar for its stage and times.</span></p>\n",
    );
}

/// Bar fill and label colour by status.
fn colours(status: StageStatus) -> (&'static str, &'static str) {
    match status {
        StageStatus::Passed => ("#1a7f37", "#ffffff"),
        StageStatus::Failed => ("#cf222e", "#ffffff"),
        StageStatus::Skipped | StageStatus::NotRun => ("#d0d7de", "#1f2328"),
    }
}

/// `03 kernel-booted (Kernel booted): passed, 1.2 s to 13.9 s (12.7 s)`.
fn bar_tooltip(index: usize, stage: &StageRecord) -> String {
    let start = stage.start_ms.map(text::seconds).unwrap_or_default();
    let span = match (stage.end_ms, stage.duration_ms()) {
        (Some(end), Some(d)) => format!("{start} to {} ({})", text::seconds(end), text::seconds(d)),
        _ => format!("from {start}, did not finish"),
    };
    format!("{:02} {} ({}): {}, {span}", index + 1, stage.name, stage.title, status_label(stage.status))
}

/// SVG coordinates with one decimal.
fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

// ------------------------------------------------------------------------------------------------ tables

fn overview(out: &mut String, run: &RunRecord) {
    if run.nodes.is_empty() {
        return;
    }
    out.push_str("<section>\n<h2>Nodes</h2>\n<table class=\"nodes\">\n");
    out.push_str(
        "<thead><tr><th>Node</th><th>Profile</th><th>Passed</th><th>Failed</th><th>Skipped</th>\
         <th>Not run</th><th>Time</th></tr></thead>\n<tbody>\n",
    );
    for (i, node) in run.nodes.iter().enumerate() {
        let c = Counts::of(&node.stages);
        out.push_str(&format!(
            "<tr{}><td><a href=\"#node-{}\"><code>{}</code></a></td><td><code>{}</code></td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>\n",
            if c.failed > 0 { " class=\"failed\"" } else { "" },
            i + 1,
            esc(&node.name),
            esc(&node.profile),
            c.passed,
            c.failed,
            c.skipped,
            c.not_run,
            text::seconds(node_span_ms(run, node)),
        ));
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn node_section(out: &mut String, run: &RunRecord, index: usize, node: &NodeRecord) {
    out.push_str(&format!(
        "<section id=\"node-{}\">\n<h2>Node <code>{}</code> <span class=\"muted\">profile <code>{}</code></span>\
         </h2>\n",
        index + 1,
        esc(&node.name),
        esc(&node.profile)
    ));
    if node.stages.is_empty() {
        out.push_str("<p class=\"muted\">No stages.</p>\n");
    } else {
        out.push_str("<table class=\"stages\">\n");
        out.push_str(
            "<thead><tr><th>#</th><th>Stage</th><th>Status</th><th>Duration</th><th>Timeout</th><th>Message</th>\
             <th>Last observed</th><th>Artifacts</th></tr></thead>\n<tbody>\n",
        );
        for (i, stage) in node.stages.iter().enumerate() {
            stage_row(out, run, node, i, stage);
        }
        out.push_str("</tbody>\n</table>\n");
    }
    for (heading, lines) in [("Not emulated", &node.not_emulated), ("Approximated", &node.approximated)] {
        if lines.is_empty() {
            continue;
        }
        out.push_str(&format!("<h3>{heading}</h3>\n<ul>\n"));
        for l in lines {
            out.push_str(&format!("<li>{}</li>\n", esc(l)));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

fn stage_row(out: &mut String, run: &RunRecord, node: &NodeRecord, index: usize, stage: &StageRecord) {
    let status = stage.status;
    let duration = match (stage.end_ms, stage_ran_ms(run, stage)) {
        (Some(_), Some(d)) => text::seconds(d),
        (None, Some(d)) => format!("{}, unfinished", text::seconds(d)),
        (_, None) => "—".to_owned(),
    };
    let message = match (&stage.message, status) {
        (Some(m), _) => esc(m),
        (None, StageStatus::NotRun) => format!("<span class=\"muted\">{}</span>", not_run_reason(run, node, index)),
        (None, _) => String::new(),
    };
    let observed =
        stage.last_observed.as_ref().map(|o| format!("<code class=\"observed\">{}</code>", esc(o))).unwrap_or_default();
    let artifacts = stage
        .artifacts
        .iter()
        .map(|a| {
            format!(
                "<a href=\"{}\">{}</a> <span class=\"muted\">{}</span>",
                text::href(&a.path),
                esc(&a.name),
                text::size(a.bytes)
            )
        })
        .collect::<Vec<_>>()
        .join("<br>");
    out.push_str(&format!(
        "<tr class=\"{}\"><td class=\"num\">{:02}</td><td>{}<br><code>{}</code></td>\
         <td><span class=\"st st-{}\">{}</span></td><td class=\"num\">{duration}</td>\
         <td><code>{}</code> {}</td><td class=\"text\">{message}</td><td>{observed}</td><td>{artifacts}</td></tr>\n",
        status.as_str(),
        index + 1,
        esc(&stage.title),
        esc(&stage.name),
        status.as_str(),
        status_label(status),
        esc(&stage.timeout_name),
        text::seconds(stage.timeout_ms),
    ));
}

/// A status for people: `not run` rather than `not-run`.
fn status_label(status: StageStatus) -> &'static str {
    match status {
        StageStatus::NotRun => "not run",
        s => s.as_str(),
    }
}
