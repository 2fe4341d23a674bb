//! `talforge config gen`: machine configs from a cluster file, or talosctl-compatible direct mode.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use talforge_builder::machine_config::{self, DirectRequest, OutputType};
use talforge_builder::output::Overwrite;
use talforge_builder::plan::plan_cluster;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Generate machine configs.
    ///
    /// Cluster mode (no positional arguments): reads the cluster file and writes controlplane.yaml,
    /// worker.yaml, nodes/<node>.yaml and talosconfig (all mode 0600) under OUT/configs/.
    ///
    /// Direct mode (`CLUSTER ENDPOINT`): like `talosctl gen config`, with the same flags and output.
    Gen(GenArgs),
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Cluster name (direct mode).
    #[arg(value_name = "CLUSTER")]
    pub cluster: Option<String>,
    /// Kubernetes API endpoint, e.g. https://10.5.0.10:6443 (direct mode).
    #[arg(value_name = "ENDPOINT", requires = "cluster")]
    pub endpoint: Option<String>,

    /// Cluster file (cluster mode).
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with = "cluster")]
    pub file: Option<PathBuf>,
    /// Output: cluster mode writes OUT/configs/ (default out/<cluster>); direct mode writes the files into
    /// this directory (default: current directory), or to this file when one output type is chosen, or to
    /// stdout with `-o -`.
    #[arg(short = 'o', long = "output", visible_alias = "out", value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,

    /// Secrets bundle to use (direct mode; cluster mode reads the cluster file's `secrets`).
    #[arg(long, value_name = "FILE")]
    pub with_secrets: Option<PathBuf>,
    /// Kubernetes version.
    #[arg(long, value_name = "V")]
    pub kubernetes_version: Option<String>,
    /// Talos version whose config contract to generate for (v1.12 to v1.14).
    #[arg(long, value_name = "V")]
    pub talos_version: Option<String>,
    /// Patch for all machine types: @file, a file name, or inline YAML/JSON (repeatable).
    #[arg(long = "config-patch", value_name = "PATCH")]
    pub config_patch: Vec<String>,
    /// Patch for control-plane machines (repeatable).
    #[arg(long = "config-patch-control-plane", value_name = "PATCH")]
    pub config_patch_control_plane: Vec<String>,
    /// Patch for worker machines (repeatable).
    #[arg(long = "config-patch-worker", value_name = "PATCH")]
    pub config_patch_worker: Vec<String>,
    /// Install disk (direct mode; talosctl's default is /dev/sda, `""` for none).
    #[arg(long, value_name = "DISK", default_value = "/dev/sda")]
    pub install_disk: String,
    /// Installer image (direct mode; default: the Image Factory installer with no customization).
    #[arg(long, value_name = "IMAGE")]
    pub install_image: Option<String>,
    /// Extra certificate SANs (comma separated, repeatable).
    #[arg(long, value_name = "SANS", value_delimiter = ',')]
    pub additional_sans: Vec<String>,
    /// Kubernetes DNS domain.
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    pub dns_domain: String,
    /// Registry mirror `host=url` (repeatable).
    #[arg(long, value_name = "HOST=URL", value_delimiter = ',')]
    pub registry_mirror: Vec<String>,
    /// Config document version (only v1alpha1).
    #[arg(long = "version", value_name = "V", default_value = "v1alpha1")]
    pub config_version: String,
    /// Add documentation comments (not supported: talforge writes configs without comments).
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub with_docs: bool,
    /// Add example comments (not supported: talforge writes configs without comments).
    #[arg(long, value_name = "BOOL", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub with_examples: bool,
    /// Enable cluster discovery.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub with_cluster_discovery: bool,
    /// Enable KubeSpan.
    #[arg(long)]
    pub with_kubespan: bool,
    /// Output types (direct mode): controlplane, worker, talosconfig.
    #[arg(
        short = 't',
        long = "output-types",
        value_name = "TYPES",
        value_delimiter = ',',
        default_value = "controlplane,worker,talosconfig"
    )]
    pub output_types: Vec<String>,

    // Options the Talos stability tests use that talosctl has no flags for.
    /// Allow workloads on control-plane nodes.
    #[arg(long)]
    pub allow_scheduling_on_control_planes: bool,
    /// Extra kernel arguments for machine.install (contract ≤ 1.13; comma separated).
    #[arg(long, value_name = "ARGS", value_delimiter = ',')]
    pub install_extra_kernel_args: Vec<String>,
    /// Local API server port on control planes.
    #[arg(long, value_name = "PORT")]
    pub local_api_server_port: Option<u16>,
    /// Sysctl `key=value` (repeatable).
    #[arg(long = "sysctl", value_name = "KEY=VALUE")]
    pub sysctls: Vec<String>,
    /// Custom CNI manifest URL (no Flannel).
    #[arg(long, value_name = "URL")]
    pub custom_cni_url: Option<String>,
}

pub fn run(c: ConfigCommand, catalog: Option<&Path>) -> anyhow::Result<ExitCode> {
    match c {
        ConfigCommand::Gen(a) => {
            if a.with_docs || a.with_examples {
                return Err(talforge_builder::Error::unsupported(
                    "--with-docs/--with-examples: talforge writes configs without comments (talosctl's --with-docs=false --with-examples=false output)",
                )
                .into());
            }
            if a.config_version != "v1alpha1" {
                anyhow::bail!("unknown config version: {:?}", a.config_version);
            }
            let overwrite = if a.force { Overwrite::Replace } else { Overwrite::Refuse };
            match (&a.cluster, &a.endpoint) {
                (Some(cluster), Some(endpoint)) => direct(&a, cluster, endpoint, overwrite),
                (Some(_), None) => anyhow::bail!("direct mode needs CLUSTER and ENDPOINT"),
                _ => cluster_mode(&a, catalog, overwrite),
            }
        }
    }
}

fn cluster_mode(a: &GenArgs, catalog: Option<&Path>, overwrite: Overwrite) -> anyhow::Result<ExitCode> {
    let file = super::cluster_file(&a.file);
    let cat = super::catalog_for(catalog, &file)?;
    let mut ov = super::plan::overrides(&a.talos_version, &a.kubernetes_version, &[])?;
    ov.patches.clone_from(&a.config_patch);
    ov.control_plane_patches.clone_from(&a.config_patch_control_plane);
    ov.worker_patches.clone_from(&a.config_patch_worker);
    let plan = plan_cluster(&file, &cat, &ov)?;
    let out = a.output.clone().unwrap_or_else(|| PathBuf::from("out").join(&plan.cluster));
    let (bundle, created) = talforge_builder::secrets::load_or_create(&plan.secrets, &plan.quirks)?;
    if created {
        eprintln!("created secrets bundle {} (mode 0600)", plan.secrets.display());
    }
    let written = machine_config::write_cluster_configs(&plan, &bundle, &out.join("configs"), overwrite)?;
    for p in written {
        eprintln!("wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn direct(a: &GenArgs, cluster: &str, endpoint: &str, overwrite: Overwrite) -> anyhow::Result<ExitCode> {
    let mut types = Vec::new();
    for t in &a.output_types {
        types.push(match t.as_str() {
            "controlplane" => OutputType::Controlplane,
            "worker" => OutputType::Worker,
            "talosconfig" => OutputType::Talosconfig,
            other => anyhow::bail!("invalid output type: {other:?} (expected controlplane, worker, talosconfig)"),
        });
    }
    if types.is_empty() {
        anyhow::bail!("at least one output type must be specified");
    }
    let mut sysctls = Vec::new();
    for s in &a.sysctls {
        let (k, v) = s.split_once('=').ok_or_else(|| anyhow::anyhow!("--sysctl: expected key=value; found {s:?}"))?;
        sysctls.push((k.to_owned(), v.to_owned()));
    }
    let mut mirrors: Vec<(String, Vec<String>)> = Vec::new();
    for m in &a.registry_mirror {
        let (host, url) = m.split_once('=').ok_or_else(|| anyhow::anyhow!("invalid registry mirror spec: {m:?}"))?;
        match mirrors.iter_mut().find(|(h, _)| h == host) {
            Some((_, urls)) => urls.push(url.to_owned()),
            None => mirrors.push((host.to_owned(), vec![url.to_owned()])),
        }
    }
    let req = DirectRequest {
        cluster: cluster.to_owned(),
        endpoint: endpoint.to_owned(),
        secrets: a.with_secrets.clone(),
        kubernetes_version: a.kubernetes_version.clone(),
        talos_version: a.talos_version.clone(),
        patches: a.config_patch.clone(),
        patches_control_plane: a.config_patch_control_plane.clone(),
        patches_worker: a.config_patch_worker.clone(),
        install_disk: Some(a.install_disk.clone()).filter(|d| !d.is_empty()),
        install_image: a.install_image.clone(),
        additional_sans: a.additional_sans.iter().filter(|s| !s.is_empty()).cloned().collect(),
        dns_domain: a.dns_domain.clone(),
        registry_mirrors: mirrors,
        discovery: a.with_cluster_discovery,
        kubespan: a.with_kubespan.then_some(true),
        allow_scheduling_on_control_planes: a.allow_scheduling_on_control_planes,
        install_extra_kernel_args: a.install_extra_kernel_args.clone(),
        local_api_server_port: a.local_api_server_port,
        sysctls,
        custom_cni_url: a.custom_cni_url.clone(),
    };
    let files = machine_config::generate_direct(&req)?;
    let stdout = a.output.as_deref() == Some(Path::new("-"));
    if stdout && types.len() > 1 {
        anyhow::bail!("can't use multiple output types with stdout");
    }
    for t in &types {
        let content = files.get(*t);
        if stdout {
            print!("{content}");
            continue;
        }
        let path = match &a.output {
            Some(p) if types.len() == 1 => p.clone(),
            Some(dir) => dir.join(t.file_name()),
            None => PathBuf::from(t.file_name()),
        };
        talforge_builder::output::write_atomic(
            &path,
            content.as_bytes(),
            talforge_builder::output::SECRET_MODE,
            overwrite,
        )?;
        eprintln!("Created {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
