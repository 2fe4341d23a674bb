//! `talforge plan`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use talforge_builder::plan::{PlanOverrides, plan_cluster};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Cluster file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Only these nodes (repeatable).
    #[arg(long = "node", value_name = "NAME")]
    pub nodes: Vec<String>,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Override the cluster file's Talos version.
    #[arg(long, value_name = "V")]
    pub talos_version: Option<String>,
    /// Override the cluster file's Kubernetes version.
    #[arg(long, value_name = "V")]
    pub kubernetes_version: Option<String>,
}

pub fn overrides(talos: &Option<String>, k8s: &Option<String>, nodes: &[String]) -> anyhow::Result<PlanOverrides> {
    let parse = |s: &Option<String>, flag: &str| -> anyhow::Result<_> {
        s.as_deref().map(|v| v.parse().map_err(|e: String| anyhow::anyhow!("{flag}: {e}"))).transpose()
    };
    Ok(PlanOverrides {
        talos_version: parse(talos, "--talos-version")?,
        kubernetes_version: parse(k8s, "--kubernetes-version")?,
        nodes: nodes.to_vec(),
        ..PlanOverrides::default()
    })
}

pub fn run(a: &PlanArgs, catalog: Option<&Path>) -> anyhow::Result<ExitCode> {
    let file = super::cluster_file(&a.file);
    let cat = super::catalog_for(catalog, &file)?;
    let plan = plan_cluster(&file, &cat, &overrides(&a.talos_version, &a.kubernetes_version, &a.nodes)?)?;
    talforge_builder::machine_config::render::check_configs(&plan)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", talforge_builder::plan::render::human(&plan));
    }
    Ok(ExitCode::SUCCESS)
}
