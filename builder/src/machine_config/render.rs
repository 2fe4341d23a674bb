//! Rendering a planned cluster's configs: generate each role's and node's documents, apply the patches in
//! plan order, print them the way Talos prints them, and write them (mode 0600) with the talosconfig.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::output::{Overwrite, SECRET_MODE, write_atomic};
use crate::pki::{OsSecretRng, SecretsBundle, TalosConfig, generate_admin_cert};
use crate::plan::{ClusterPlan, NodePlan, PatchContent, PatchInput};
use crate::spec::Role;
use crate::spec::units::{Endpoint, Version};
use crate::yaml::{Node, emit};

use super::generate::{GenInput, GenOptions, NodeFacts, generate};
use super::{Patch, PatchOrigin, apply_patches, load_patch, load_patch_node};

/// Loads a planned patch (a file's text or an inline node from the cluster file).
pub fn load_planned_patch(p: &PatchInput) -> Result<Patch> {
    Ok(match &p.content {
        PatchContent::Text(t) => load_patch(t, PatchOrigin::File(p.file.clone()))?,
        PatchContent::Inline(node) => {
            let text =
                std::fs::read_to_string(&p.file).map_err(|source| Error::Read { path: p.file.clone(), source })?;
            load_patch_node(node, &text, PatchOrigin::Inline { file: p.file.clone(), at: node.span })?
        }
    })
}

/// What the generator needs besides a role and node facts.
#[derive(Debug)]
pub struct ClusterInputs<'a> {
    pub plan: &'a ClusterPlan,
    pub secrets: &'a SecretsBundle,
    endpoint: Endpoint,
    kubernetes: Version,
    role_patches: Vec<(Role, Vec<Patch>)>,
    cli_patches: Vec<(Role, Vec<Patch>)>,
}

impl<'a> ClusterInputs<'a> {
    /// Loads every role patch once (they are shared by all nodes of a role).
    pub fn new(plan: &'a ClusterPlan, secrets: &'a SecretsBundle) -> Result<Self> {
        let endpoint = plan.endpoint.parse().map_err(Error::Internal)?;
        let kubernetes = plan.kubernetes_version.parse().map_err(Error::Internal)?;
        let load = |m: &std::collections::BTreeMap<Role, Vec<PatchInput>>| -> Result<Vec<(Role, Vec<Patch>)>> {
            m.iter()
                .map(|(role, list)| Ok((*role, list.iter().map(load_planned_patch).collect::<Result<Vec<_>>>()?)))
                .collect()
        };
        let role_patches = load(&plan.role_patches)?;
        let cli_patches = load(&plan.cli_patches)?;
        Ok(ClusterInputs { plan, secrets, endpoint, kubernetes, role_patches, cli_patches })
    }

    fn input(&self) -> GenInput<'_> {
        GenInput {
            quirks: &self.plan.quirks,
            cluster_name: &self.plan.cluster,
            endpoint: &self.endpoint,
            kubernetes: &self.kubernetes,
            secrets: self.secrets,
            options: &self.plan.gen_options,
        }
    }

    fn patches(list: &[(Role, Vec<Patch>)], role: Role) -> &[Patch] {
        list.iter().find(|(r, _)| *r == role).map_or(&[], |(_, p)| p.as_slice())
    }

    /// A role's config (`controlplane.yaml`, `worker.yaml`): no node facts, the role's patches.
    pub fn role_config(&self, role: Role) -> Result<Vec<Node>> {
        let docs = generate(&self.input(), role, None);
        let mut patches = Self::patches(&self.role_patches, role).to_vec();
        patches.extend_from_slice(Self::patches(&self.cli_patches, role));
        Ok(apply_patches(docs, &patches, self.plan.contract)?)
    }

    /// One node's config: its facts, the role's patches, then its own.
    pub fn node_config(&self, node: &NodePlan) -> Result<Vec<Node>> {
        let docs = generate(&self.input(), node.role, Some(&node.facts));
        let mut patches = Self::patches(&self.role_patches, node.role).to_vec();
        for p in &node.node_patches {
            patches.push(load_planned_patch(p)?);
        }
        patches.extend_from_slice(Self::patches(&self.cli_patches, node.role));
        Ok(apply_patches(docs, &patches, self.plan.contract)?)
    }
}

/// Renders every config of the plan with placeholder secrets and throws the result away: `plan` uses it to
/// report patch and config errors before any secrets or files exist.
pub fn check_configs(plan: &ClusterPlan) -> Result<()> {
    let secrets = crate::lint::placeholder_secrets();
    let inputs = ClusterInputs::new(plan, &secrets)?;
    for role in [Role::Controlplane, Role::Worker] {
        inputs.role_config(role)?;
    }
    for n in &plan.nodes {
        inputs.node_config(n)?;
    }
    Ok(())
}

/// A talosconfig for the cluster: endpoints are the control planes' addresses, the default node the first
/// control plane; the admin certificate is new (OS randomness, current time).
pub fn talosconfig(plan: &ClusterPlan, secrets: &SecretsBundle) -> Result<String> {
    let cps: Vec<String> = plan
        .nodes
        .iter()
        .filter(|n| n.role == Role::Controlplane)
        .filter_map(|n| n.facts.links.iter().flat_map(|l| l.addresses.iter()).next().map(|a| a.addr.to_string()))
        .collect();
    let nodes: Vec<String> = cps.iter().take(1).cloned().collect();
    admin_talosconfig(&plan.cluster, cps, nodes, secrets)
}

fn admin_talosconfig(
    context: &str,
    endpoints: Vec<String>,
    nodes: Vec<String>,
    secrets: &SecretsBundle,
) -> Result<String> {
    let admin = generate_admin_cert(&secrets.certs.os, &mut OsSecretRng, SystemTime::now())
        .map_err(|e| Error::Internal(format!("admin certificate: {e}")))?;
    Ok(TalosConfig::new(context, endpoints, nodes, &secrets.certs.os.crt, &admin.crt, &admin.key).to_yaml())
}

/// Writes `controlplane.yaml`, `worker.yaml`, `nodes/<node>.yaml` and `talosconfig` into `dir` (all 0600, each
/// atomically). Everything is rendered before the first file is written, so a bad patch writes nothing.
pub fn write_cluster_configs(
    plan: &ClusterPlan,
    secrets: &SecretsBundle,
    dir: &Path,
    overwrite: Overwrite,
) -> Result<Vec<PathBuf>> {
    let inputs = ClusterInputs::new(plan, secrets)?;
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for (role, name) in [(Role::Controlplane, "controlplane.yaml"), (Role::Worker, "worker.yaml")] {
        files.push((dir.join(name), emit::to_string_multi(&inputs.role_config(role)?)));
    }
    for n in &plan.nodes {
        files
            .push((dir.join("nodes").join(format!("{}.yaml", n.name)), emit::to_string_multi(&inputs.node_config(n)?)));
    }
    files.push((dir.join("talosconfig"), talosconfig(plan, secrets)?));
    if overwrite == Overwrite::Refuse
        && let Some((p, _)) = files.iter().find(|(p, _)| p.exists())
    {
        return Err(Error::Exists { path: p.clone() });
    }
    for (p, text) in &files {
        write_atomic(p, text.as_bytes(), SECRET_MODE, overwrite)?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// A `talosctl gen config` request (direct mode).
#[derive(Clone, Debug, Default)]
pub struct DirectRequest {
    pub cluster: String,
    pub endpoint: String,
    pub secrets: Option<PathBuf>,
    pub kubernetes_version: Option<String>,
    pub talos_version: Option<String>,
    pub patches: Vec<String>,
    pub patches_control_plane: Vec<String>,
    pub patches_worker: Vec<String>,
    pub install_disk: Option<String>,
    pub install_image: Option<String>,
    pub additional_sans: Vec<String>,
    pub dns_domain: String,
    pub registry_mirrors: Vec<(String, Vec<String>)>,
    pub discovery: bool,
    pub kubespan: Option<bool>,
    pub allow_scheduling_on_control_planes: bool,
    pub install_extra_kernel_args: Vec<String>,
    pub local_api_server_port: Option<u16>,
    pub sysctls: Vec<(String, String)>,
    pub custom_cni_url: Option<String>,
}

/// talosctl's output types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputType {
    Controlplane,
    Worker,
    Talosconfig,
}

impl OutputType {
    pub fn file_name(self) -> &'static str {
        match self {
            OutputType::Controlplane => "controlplane.yaml",
            OutputType::Worker => "worker.yaml",
            OutputType::Talosconfig => "talosconfig",
        }
    }
}

/// The three files of a direct-mode run.
#[derive(Clone, Debug)]
pub struct DirectFiles {
    pub controlplane: String,
    pub worker: String,
    pub talosconfig: String,
}

impl DirectFiles {
    pub fn get(&self, t: OutputType) -> &str {
        match t {
            OutputType::Controlplane => &self.controlplane,
            OutputType::Worker => &self.worker,
            OutputType::Talosconfig => &self.talosconfig,
        }
    }
}

/// `talosctl gen config CLUSTER ENDPOINT ...`.
pub fn generate_direct(req: &DirectRequest) -> Result<DirectFiles> {
    let talos: Version = req
        .talos_version
        .as_deref()
        .unwrap_or(crate::quirks::DEFAULT_TALOS_VERSION)
        .parse()
        .map_err(|e: String| Error::unsupported(format!("--talos-version: {e}")))?;
    let quirks = crate::quirks::Quirks::new(&talos)?;
    let k8s_text = req.kubernetes_version.as_deref().unwrap_or(crate::quirks::DEFAULT_KUBERNETES_VERSION);
    let kubernetes: Version = k8s_text.parse().map_err(|e: String| bad_flag("--kubernetes-version", e))?;
    let endpoint: Endpoint = req.endpoint.parse().map_err(|e: String| bad_flag("ENDPOINT", e))?;

    // Patches load before anything is generated (talosctl does the same), so their errors come first.
    let load_all = |list: &[String], flag: &str| -> Result<Vec<Patch>> {
        crate::plan::cli_patch_inputs(list, flag)?.iter().map(load_planned_patch).collect()
    };
    let common = load_all(&req.patches, "--config-patch")?;
    let cp_only = load_all(&req.patches_control_plane, "--config-patch-control-plane")?;
    let w_only = load_all(&req.patches_worker, "--config-patch-worker")?;

    let secrets = match &req.secrets {
        Some(p) => crate::secrets::load(p)?,
        None => crate::secrets::generate(&quirks)?,
    };
    // talosctl: an explicit empty --install-image means no image.
    let install_image = req.install_image.clone().map(|i| Some(i).filter(|i| !i.is_empty())).unwrap_or_else(|| {
        Some(quirks.factory_installer_image(
            crate::quirks::Platform::Metal,
            &crate::schematic::Schematic::default().render().1,
            false,
        ))
    });
    let options = GenOptions {
        additional_sans: req.additional_sans.clone(),
        dns_domain: req.dns_domain.clone(),
        allow_scheduling_on_control_planes: req.allow_scheduling_on_control_planes,
        local_api_server_port: req.local_api_server_port,
        install_disk: req.install_disk.clone(),
        install_image,
        install_extra_kernel_args: req.install_extra_kernel_args.clone(),
        sysctls: req.sysctls.iter().cloned().collect(),
        custom_cni_url: req.custom_cni_url.clone(),
        registry_mirrors: req.registry_mirrors.clone(),
        discovery: req.discovery,
        kubespan: req.kubespan,
        ..GenOptions::default()
    };
    let input = GenInput {
        quirks: &quirks,
        cluster_name: &req.cluster,
        endpoint: &endpoint,
        kubernetes: &kubernetes,
        secrets: &secrets,
        options: &options,
    };
    let render = |role: Role, extra: &[Patch]| -> Result<String> {
        let mut patches = common.clone();
        patches.extend_from_slice(extra);
        let docs = apply_patches(generate(&input, role, None::<&NodeFacts>), &patches, quirks.contract)?;
        Ok(emit::to_string_multi(&docs))
    };
    Ok(DirectFiles {
        controlplane: render(Role::Controlplane, &cp_only)?,
        worker: render(Role::Worker, &w_only)?,
        talosconfig: admin_talosconfig(&req.cluster, Vec::new(), Vec::new(), &secrets)?,
    })
}

fn bad_flag(flag: &str, e: String) -> Error {
    Error::Input(Box::new(crate::error::Diagnostic::new(
        flag,
        crate::yaml::Span::UNKNOWN,
        crate::yaml::FieldPath::root(),
        e,
    )))
}
