//! The plan: everything the cluster file, its profiles and overlays resolve to, checked, before any work.
//!
//! Resolution order (DESIGN.md): profile `extends` chain → overlays in listed order → node overrides → CLI
//! flags → version quirks → validate. `talforge plan` prints this; `config gen` and `build` consume it.

pub mod overlay;
pub mod profile;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::assemble::disk::{SectorSize, sd_boot_metal_disk_size, sd_boot_min_disk_size};
use crate::error::{Diagnostic, Diagnostics, Error, Result};
use crate::machine_config::generate::{
    BondPlan, DiskSelector, GenOptions, InstallTarget, LinkPlan, LinkSelector, NodeFacts,
};
use crate::quirks::{Contract, Platform, Quirks};
use crate::schematic::Schematic;
use crate::spec::catalog::Catalog;
use crate::spec::cluster::{ClusterSpec, NodeSpec, OutputKind};
use crate::spec::profile::{DiskBus, DiskRole};
use crate::spec::units::{ByteSize, IpCidr, Version};
use crate::spec::{PatchRef, Role, Source};
use crate::yaml::{FieldPath, Node};

pub use overlay::ResolvedOverlay;
pub use profile::ResolvedProfile;

/// Settings given on the command line; they win over the cluster file.
#[derive(Clone, Debug, Default)]
pub struct PlanOverrides {
    pub talos_version: Option<Version>,
    pub kubernetes_version: Option<Version>,
    /// Only plan these nodes (all when empty).
    pub nodes: Vec<String>,
    /// `--config-patch` values (talosctl's forms: `@file`, a file name, or the patch itself), applied after
    /// every other patch, then the control-plane and worker ones.
    pub patches: Vec<String>,
    pub control_plane_patches: Vec<String>,
    pub worker_patches: Vec<String>,
    /// Kernel arguments for every node's image, after the node's own (the lab adds `talos.config=`).
    pub kernel_args: Vec<String>,
}

/// A machine-config patch in the order it applies, with where it came from.
#[derive(Clone, Debug)]
pub struct PatchInput {
    /// Where it came from, as users should see it: a file path or `talforge.yaml:12:7`.
    pub origin: String,
    /// The file the patch text lives in, for error positions.
    pub file: PathBuf,
    pub content: PatchContent,
}

#[derive(Clone, Debug)]
pub enum PatchContent {
    /// Patch text (a file), with overlay `${values}` already substituted.
    Text(String),
    /// An inline patch written in the cluster file (positions are the cluster file's).
    Inline(Node),
}

/// The resolved, validated cluster.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPlan {
    pub cluster: String,
    #[serde(skip)]
    pub cluster_file: PathBuf,
    pub talos_version: String,
    pub contract: Contract,
    pub kubernetes_version: String,
    pub endpoint: String,
    /// Where the secrets bundle is read from (or created).
    pub secrets: PathBuf,
    pub overlays: Vec<String>,
    pub images: Vec<ImagePlan>,
    pub nodes: Vec<NodePlan>,
    #[serde(skip)]
    pub quirks: Quirks,
    #[serde(skip)]
    pub gen_options: GenOptions,
    /// Patches applied to every node's config, then control planes', then workers' (overlays first).
    #[serde(skip)]
    pub role_patches: BTreeMap<Role, Vec<PatchInput>>,
    /// Command-line patches per role: applied last, after node patches.
    #[serde(skip)]
    pub cli_patches: BTreeMap<Role, Vec<PatchInput>>,
    /// Where the Talos release comes from (`talos.source`; relative paths made absolute).
    #[serde(skip)]
    pub release_source: crate::release::ReleaseSource,
    /// Bytes of the metal raw image (`diskImage.size`, else Talos's default).
    pub disk_image_size: u64,
    /// Logical sector size of the metal image: 512 or 4096.
    pub sector_size: u32,
    /// Where the Secure Boot signing key lives (absolute).
    pub secure_boot_keys: PathBuf,
    #[serde(skip)]
    pub enroll_keys: Option<crate::spec::cluster::EnrollKeys>,
    /// The files behind each profile and overlay used (for the manifest's input digests).
    #[serde(skip)]
    pub profile_files: BTreeMap<String, Vec<PathBuf>>,
    #[serde(skip)]
    pub overlay_files: BTreeMap<String, Vec<PathBuf>>,
    pub warnings: Vec<String>,
}

/// One boot image: a distinct (profile, schematic) pair.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagePlan {
    /// `<profile>-<first 12 hex of the schematic ID>`: the image folder name.
    pub id: String,
    pub profile: String,
    pub arch: String,
    pub platform: String,
    pub secure_boot: bool,
    pub bootloader: String,
    /// Where the profile decided the boot loader (for build errors about it).
    #[serde(skip)]
    pub bootloader_at: crate::error::Diagnostic,
    pub extensions: Vec<String>,
    /// Extra kernel arguments (the schematic's `extraKernelArgs`).
    pub extra_kernel_args: Vec<String>,
    /// The full kernel command line the UKI carries.
    pub cmdline: String,
    pub outputs: Vec<OutputKind>,
    pub schematic_id: String,
    pub schematic: String,
    pub installer_image: String,
    pub nodes: Vec<String>,
    /// A node of this image whose install disk is smaller than the metal image (an error when metal images are
    /// built: the cluster file's `outputs` is checked by the plan, `--kind` by the build).
    #[serde(skip)]
    pub metal_disk_error: Option<crate::error::Diagnostic>,
}

/// One node, resolved.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePlan {
    pub name: String,
    pub role: Role,
    pub profile: String,
    pub profile_chain: Vec<String>,
    pub image: String,
    pub facts: NodeFacts,
    /// Disks for Ceph OSDs (for the Rook addon), by profile disk name.
    pub osd_disks: Vec<String>,
    /// The patches applied to this node's config, in order.
    pub patches: Vec<String>,
    #[serde(skip)]
    pub node_patches: Vec<PatchInput>,
    pub warnings: Vec<String>,
}

/// Loads the cluster file and resolves it against the catalog.
pub fn plan_cluster(cluster_file: &Path, catalog: &Catalog, ov: &PlanOverrides) -> Result<ClusterPlan> {
    let source = Source::read(cluster_file)?;
    let spec: ClusterSpec = source.decode()?;
    resolve(&source, &spec, catalog, ov)
}

fn err_list(mut errors: Vec<Diagnostic>) -> Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0).into()),
        _ => Err(Error::Inputs(Diagnostics(errors))),
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Resolves a decoded cluster spec.
pub fn resolve(src: &Source, spec: &ClusterSpec, catalog: &Catalog, ov: &PlanOverrides) -> Result<ClusterPlan> {
    let root = FieldPath::root();
    let mut errors = Vec::new();

    if !is_dns_label(&spec.name) {
        errors.push(src.diag(
            root.key("name"),
            format!("expected a DNS label (lowercase letters, digits, '-'); found {:?}", spec.name),
        ));
    }
    let talos_version = ov.talos_version.clone().unwrap_or_else(|| spec.talos.version.clone());
    let quirks = match Quirks::new(&talos_version) {
        Ok(q) => q,
        Err(e) => {
            let path = root.key("talos").key("version");
            return Err(match (&ov.talos_version, e) {
                (None, Error::Unsupported { what }) => src.diag(path, format!("unsupported: {what}")).into(),
                (_, e) => e,
            });
        }
    };
    let kubernetes = ov.kubernetes_version.clone().unwrap_or_else(|| spec.kubernetes.version.clone());
    if let Some(s) = &spec.talos.source {
        let n = [s.registry.is_some(), s.oci_layout.is_some(), s.dir.is_some()].iter().filter(|b| **b).count();
        if n != 1 {
            errors.push(src.diag(
                root.key("talos").key("source"),
                format!("expected exactly one of registry, ociLayout, dir; found {n}"),
            ));
        } else if let Some(r) = &s.registry
            && let Err(e) = crate::release::ReleaseSource::from_spec(Some(r), None, None, Path::new("/"))
        {
            errors.push(src.diag(root.key("talos").key("source").key("registry"), e.to_string()));
        }
    }

    // The metal disk image's sector and total size.
    let sector_size = match spec.disk_image.sector_size {
        None | Some(512) => SectorSize::B512,
        Some(4096) => SectorSize::B4096,
        Some(other) => {
            errors.push(
                src.diag(root.key("diskImage").key("sectorSize"), format!("expected 512 or 4096; found {other}")),
            );
            SectorSize::B512
        }
    };
    let (major, minor) = (quirks.contract.major, quirks.contract.minor);
    let disk_image_size = match spec.disk_image.size {
        None => sd_boot_metal_disk_size(major, minor),
        Some(size) => {
            let need = sd_boot_min_disk_size(major, minor, sector_size);
            let p = root.key("diskImage").key("size");
            if size.0 < need {
                errors.push(src.diag(
                    p,
                    format!(
                        "disk image too small: {size} cannot hold the EFI and META partitions of Talos {}.{}, which \
                         need at least {} MiB",
                        major,
                        minor,
                        need.div_ceil(ByteSize::MIB)
                    ),
                ));
            } else if !size.0.is_multiple_of(u64::from(sector_size.bytes())) {
                errors.push(src.diag(
                    p,
                    format!(
                        "expected a multiple of the {}-byte sector size; found {} bytes",
                        sector_size.bytes(),
                        size.0
                    ),
                ));
            }
            size.0
        }
    };

    if spec.nodes.is_empty() {
        errors.push(src.diag(root.key("nodes"), "a cluster needs at least one node"));
    } else if !spec.nodes.iter().any(|n| n.role == Role::Controlplane) {
        errors.push(src.diag(root.key("nodes"), "a cluster needs at least one node with role controlplane"));
    }

    // Node names, hostnames and addresses must be unique.
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut addrs: BTreeMap<IpAddr, usize> = BTreeMap::new();
    let mut macs = BTreeMap::new();
    for (i, n) in spec.nodes.iter().enumerate() {
        let p = root.key("nodes").index(i);
        if !is_dns_label(&n.name) {
            errors.push(src.diag(
                p.key("name"),
                format!("expected a DNS label (lowercase letters, digits, '-'); found {:?}", n.name),
            ));
        }
        if let Some(first) = names.insert(&n.name, i) {
            errors.push(src.diag(p.key("name"), format!("duplicate node name {:?} (also nodes[{first}])", n.name)));
        }
        if let Some(a) = n.address {
            if let Some(first) = addrs.insert(a.addr, i) {
                errors.push(src.diag(p.key("address"), format!("duplicate address {} (also nodes[{first}])", a.addr)));
            }
            if a.addr == a.network() && a.prefix < 31 {
                errors.push(src.diag(p.key("address"), format!("{a} is a network address, not a host address")));
            }
            // Control planes serve the endpoint (their address or a VIP on their link), so it must be in their
            // network; workers may reach it through the gateway when there is one.
            if let Some(ep) = spec.endpoint.ip() {
                let routed = n.role == Role::Worker && spec.network.gateway.is_some();
                if !a.contains(ep) && !routed {
                    let why = match n.role {
                        Role::Controlplane => "a control plane serves the endpoint on its own link",
                        Role::Worker => "without a gateway a worker reaches only its own network",
                    };
                    errors.push(src.diag(
                        p.key("address"),
                        format!(
                            "{a} is outside the endpoint's network: {ep} is not in {}/{} ({why})",
                            a.network(),
                            a.prefix
                        ),
                    ));
                }
            }
            if let Some(gw) = spec.network.gateway
                && !a.contains(gw)
            {
                errors.push(src.diag(
                    p.key("address"),
                    format!("the gateway {gw} is outside {a}'s network ({}/{})", a.network(), a.prefix),
                ));
            }
        }
        if let Some(m) = n.mac
            && let Some(first) = macs.insert(m, i)
        {
            errors.push(src.diag(p.key("mac"), format!("duplicate MAC address {m} (also nodes[{first}])")));
        }
        for (k, a) in n.kernel_args.iter().enumerate() {
            if let Err(m) = profile::check_kernel_arg(a) {
                errors.push(src.diag(p.key("kernelArgs").index(k), m));
            }
        }
        for (k, e) in n.extensions.iter().enumerate() {
            if let Err(m) = profile::check_extension_name(e) {
                errors.push(src.diag(p.key("extensions").index(k), m));
            }
        }
        if let Some(d) = &n.install_disk
            && !d.starts_with("/dev/")
        {
            errors.push(src.diag(p.key("installDisk"), format!("expected a device path like /dev/sda; found {d:?}")));
        }
    }
    for (k, e) in spec.extensions.iter().enumerate() {
        if let Err(m) = profile::check_extension_name(e) {
            errors.push(src.diag(root.key("extensions").index(k), m));
        }
    }
    for (k, m) in spec.network.registry_mirrors.iter() {
        for (j, u) in m.iter().enumerate() {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                errors.push(src.diag(
                    root.key("network").key("registryMirrors").key(k).index(j),
                    format!("expected an http:// or https:// URL; found {u:?}"),
                ));
            }
        }
    }

    // Overlays (cluster-wide), checked against the Talos version.
    let mut overlays = Vec::new();
    for (i, o) in spec.overlays.iter().enumerate() {
        match overlay::resolve_overlay(catalog, o, &quirks, src, &root.key("overlays").index(i)) {
            Ok(r) => overlays.push(r),
            Err(Error::Input(d)) => errors.push(*d),
            Err(Error::Inputs(ds)) => errors.extend(ds.0),
            Err(e) => return Err(e),
        }
    }

    // Profiles, once each.
    let mut profiles: BTreeMap<String, ResolvedProfile> = BTreeMap::new();
    for (i, n) in spec.nodes.iter().enumerate() {
        if profiles.contains_key(&n.profile) {
            continue;
        }
        if !catalog.has_profile(&n.profile) {
            errors.push(src.diag(
                root.key("nodes").index(i).key("profile"),
                format!("unknown hardware profile {:?}; known: {}", n.profile, catalog.known_profiles()),
            ));
            continue;
        }
        match profile::resolve_profile(catalog, &n.profile) {
            Ok(p) => {
                profiles.insert(n.profile.clone(), p);
            }
            Err(Error::Input(d)) => errors.push(*d),
            Err(Error::Inputs(ds)) => errors.extend(ds.0),
            Err(e) => return Err(e),
        }
    }
    err_list(errors)?;

    let base_dir = src.path.parent().map(Path::to_owned).unwrap_or_default();
    let gen_options = gen_options(spec);

    // Role patches: overlays (per role and version), then the cluster's patches.
    let mut role_patches: BTreeMap<Role, Vec<PatchInput>> = BTreeMap::new();
    for role in [Role::Controlplane, Role::Worker] {
        let mut list = Vec::new();
        for o in &overlays {
            list.extend(o.patches_for(role));
        }
        list.extend(patch_inputs(src, &base_dir, &spec.patches, &root.key("patches"))?);
        let (extra, key) = match role {
            Role::Controlplane => (&spec.control_plane_patches, "controlPlanePatches"),
            Role::Worker => (&spec.worker_patches, "workerPatches"),
        };
        list.extend(patch_inputs(src, &base_dir, extra, &root.key(key))?);
        role_patches.insert(role, list);
    }
    let mut cli_patches: BTreeMap<Role, Vec<PatchInput>> = BTreeMap::new();
    for role in [Role::Controlplane, Role::Worker] {
        let extra = match role {
            Role::Controlplane => &ov.control_plane_patches,
            Role::Worker => &ov.worker_patches,
        };
        let flag = match role {
            Role::Controlplane => "--config-patch-control-plane",
            Role::Worker => "--config-patch-worker",
        };
        let mut list = cli_patch_inputs(&ov.patches, "--config-patch")?;
        list.extend(cli_patch_inputs(extra, flag)?);
        cli_patches.insert(role, list);
    }

    let mut images: Vec<ImagePlan> = Vec::new();
    let mut nodes = Vec::new();
    let mut errors = Vec::new();
    for (i, n) in spec.nodes.iter().enumerate() {
        if !ov.nodes.is_empty() && !ov.nodes.contains(&n.name) {
            continue;
        }
        let p = root.key("nodes").index(i);
        let Some(prof) = profiles.get(&n.profile) else { continue };
        let mut node_overlays = Vec::new();
        for (j, o) in n.overlays.iter().enumerate() {
            match overlay::resolve_overlay(catalog, o, &quirks, src, &p.key("overlays").index(j)) {
                Ok(r) => node_overlays.push(r),
                Err(Error::Input(d)) => errors.push(*d),
                Err(Error::Inputs(ds)) => errors.extend(ds.0),
                Err(e) => return Err(e),
            }
        }
        let all_overlays: Vec<&ResolvedOverlay> = overlays.iter().chain(node_overlays.iter()).collect();

        // Image: profile → overlays → node.
        let mut extensions: BTreeSet<String> = prof.extensions.iter().cloned().collect();
        let mut kargs: Vec<String> = prof.kernel_args.clone();
        for o in &all_overlays {
            extensions.extend(o.extensions.iter().cloned());
            kargs.extend(o.kernel_args.iter().cloned());
        }
        extensions.extend(spec.extensions.iter().cloned());
        extensions.extend(n.extensions.iter().cloned());
        kargs.extend(n.kernel_args.iter().cloned());
        kargs.extend(ov.kernel_args.iter().cloned());
        if let Some(c) = &prof.firmware.serial_console {
            kargs.push(format!("console={c}"));
        }
        let kargs = match normalize_kernel_args(&kargs) {
            Ok(k) => k,
            Err(m) => {
                errors.push(src.diag(p.key("kernelArgs"), m));
                continue;
            }
        };
        let extensions: Vec<String> = extensions.into_iter().collect();
        // The metal image is written onto the install disk: it must fit. An error now when the cluster file asks
        // for metal images; kept with the image for `talforge build --kind metal` otherwise.
        let metal_disk_error =
            prof.disks.iter().find(|d| d.role == DiskRole::Install).filter(|d| d.size.0 < disk_image_size).map(|d| {
                src.diag(
                    p.key("profile"),
                    format!(
                        "disk too small: profile {}'s install disk {:?} is {}, smaller than the {} MiB metal image \
                         (diskImage.size)",
                        prof.name,
                        d.name,
                        d.size,
                        disk_image_size.div_ceil(ByteSize::MIB)
                    ),
                )
            });
        if let Some(e) = metal_disk_error.clone().filter(|_| spec.outputs.contains(&OutputKind::Metal)) {
            errors.push(e);
            continue;
        }
        let bootloader = prof.firmware.bootloader;
        let talos_default = quirks.default_bootloader(prof.arch.as_str(), prof.firmware.secure_boot);
        let schematic = Schematic {
            extensions: extensions.clone(),
            extra_kernel_args: kargs.clone(),
            bootloader: (bootloader != talos_default).then(|| bootloader.as_str().to_owned()),
            enroll_keys: spec
                .secure_boot
                .enroll_keys
                .filter(|k| prof.firmware.secure_boot && *k != crate::spec::cluster::EnrollKeys::IfSafe)
                .map(|k| k.as_str().to_owned()),
            sector_size: (sector_size != SectorSize::B512).then(|| sector_size.bytes()),
            secure_boot: prof.firmware.secure_boot,
        };
        let (schematic_yaml, schematic_id) = schematic.render();
        let image_id = format!("{}-{}", prof.name, &schematic_id[..12]);
        let installer_image = spec.talos.installer_image.clone().unwrap_or_else(|| {
            quirks.factory_installer_image(Platform::Metal, &schematic_id, prof.firmware.secure_boot)
        });
        match images.iter_mut().find(|im| im.id == image_id) {
            Some(im) => {
                im.nodes.push(n.name.clone());
                if im.metal_disk_error.is_none() {
                    im.metal_disk_error = metal_disk_error;
                }
            }
            None => {
                let mut cmdline =
                    quirks.default_kernel_args(Platform::Metal, prof.arch.as_str(), prof.firmware.secure_boot);
                cmdline = apply_user_args(cmdline, &kargs);
                images.push(ImagePlan {
                    id: image_id.clone(),
                    profile: prof.name.clone(),
                    arch: prof.arch.as_str().to_owned(),
                    platform: Platform::Metal.as_str().to_owned(),
                    secure_boot: prof.firmware.secure_boot,
                    bootloader: bootloader.as_str().to_owned(),
                    bootloader_at: prof.firmware.bootloader_at.clone(),
                    extensions,
                    extra_kernel_args: kargs.clone(),
                    cmdline: cmdline.join(" "),
                    outputs: spec.outputs.clone(),
                    schematic_id: schematic_id.clone(),
                    schematic: schematic_yaml,
                    installer_image: installer_image.clone(),
                    nodes: vec![n.name.clone()],
                    metal_disk_error,
                });
            }
        }

        // Config facts.
        let mut warnings = Vec::new();
        let mut modules: Vec<(String, Vec<String>)> =
            prof.kernel_modules.iter().map(|m| (m.name.clone(), m.parameters.clone())).collect();
        let mut sysctls = prof.sysctls.clone();
        for o in &all_overlays {
            for m in &o.kernel_modules {
                if !modules.iter().any(|(x, _)| *x == m.name) {
                    modules.push((m.name.clone(), m.parameters.clone()));
                }
            }
            sysctls.extend(o.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let install = match &n.install_disk {
            Some(d) => Some(InstallTarget::Path(d.clone())),
            None => match install_selector(prof, &quirks) {
                Ok(sel) => sel.map(InstallTarget::Selector),
                Err(m) => {
                    errors.push(src.diag(p.key("profile"), m));
                    continue;
                }
            },
        };
        let links = match plan_links(n, prof, &quirks, spec.network.gateway, &mut warnings) {
            Ok(l) => l,
            Err(m) => {
                errors.push(src.diag(p.clone(), m));
                continue;
            }
        };
        let facts = NodeFacts {
            hostname: n.hostname.clone().unwrap_or_else(|| n.name.clone()),
            install,
            install_image: Some(installer_image),
            links,
            nameservers: spec.network.nameservers.clone(),
            kernel_modules: modules,
            sysctls,
            labels: n.labels.clone(),
        };

        let mut node_patches = Vec::new();
        for o in &node_overlays {
            node_patches.extend(o.patches_for(n.role));
        }
        node_patches.extend(patch_inputs(src, &base_dir, &n.patches, &p.key("patches"))?);
        let patch_names: Vec<String> = role_patches[&n.role]
            .iter()
            .chain(&node_patches)
            .chain(&cli_patches[&n.role])
            .map(|x| x.origin.clone())
            .collect();

        nodes.push(NodePlan {
            name: n.name.clone(),
            role: n.role,
            profile: prof.name.clone(),
            profile_chain: prof.chain.clone(),
            image: image_id,
            facts,
            osd_disks: prof.disks.iter().filter(|d| d.role == DiskRole::Osd).map(|d| d.name.clone()).collect(),
            patches: patch_names,
            node_patches,
            warnings,
        });
    }
    err_list(errors)?;
    if !ov.nodes.is_empty() {
        for want in &ov.nodes {
            if !spec.nodes.iter().any(|n| &n.name == want) {
                return Err(Error::Input(Box::new(src.diag(root.key("nodes"), format!("no node named {want:?}")))));
            }
        }
    }

    let secrets = if spec.secrets.is_absolute() { spec.secrets.clone() } else { base_dir.join(&spec.secrets) };
    let absolute = |p: &Path| if p.is_absolute() { p.to_owned() } else { base_dir.join(p) };
    let release_source = match &spec.talos.source {
        None => crate::release::ReleaseSource::default(),
        Some(s) => crate::release::ReleaseSource::from_spec(
            s.registry.as_deref(),
            s.oci_layout.as_deref(),
            s.dir.as_deref(),
            &base_dir,
        )?,
    };
    let secure_boot_keys = absolute(&spec.secure_boot.keys);
    let profile_files: BTreeMap<String, Vec<PathBuf>> =
        profiles.iter().map(|(k, p)| (k.clone(), p.files.clone())).collect();
    let mut overlay_files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for o in &overlays {
        let mut files = vec![o.dir.join(crate::spec::catalog::OVERLAY_FILE)];
        files.extend(o.patches.iter().map(|(_, p)| p.file.clone()));
        overlay_files.insert(o.name.clone(), files);
    }
    Ok(ClusterPlan {
        cluster: spec.name.clone(),
        cluster_file: src.path.clone(),
        talos_version: talos_version.tag(),
        contract: quirks.contract,
        kubernetes_version: kubernetes.plain(),
        endpoint: spec.endpoint.url(),
        secrets,
        overlays: overlays.iter().map(|o| o.name.clone()).collect(),
        images,
        nodes,
        quirks,
        gen_options,
        role_patches,
        cli_patches,
        release_source,
        disk_image_size,
        sector_size: sector_size.bytes(),
        secure_boot_keys,
        enroll_keys: spec.secure_boot.enroll_keys,
        profile_files,
        overlay_files,
        warnings: Vec::new(),
    })
}

fn transport(bus: DiskBus) -> &'static str {
    match bus {
        DiskBus::Nvme => "nvme",
        DiskBus::Sata => "sata",
        DiskBus::Sas => "sas",
        DiskBus::Virtio => "virtio",
        DiskBus::Scsi => "scsi",
        DiskBus::Usb => "usb",
    }
}

fn gen_options(spec: &ClusterSpec) -> GenOptions {
    let mut o = GenOptions {
        additional_sans: spec.additional_sans.clone(),
        allow_scheduling_on_control_planes: spec.allow_scheduling_on_control_planes,
        registry_mirrors: spec.network.registry_mirrors.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        ..GenOptions::default()
    };
    if let Some(d) = &spec.network.dns_domain {
        o.dns_domain.clone_from(d);
    }
    if !spec.network.pod_subnets.is_empty() {
        o.pod_subnets = spec.network.pod_subnets.iter().map(ToString::to_string).collect();
    }
    if !spec.network.service_subnets.is_empty() {
        o.service_subnets = spec.network.service_subnets.iter().map(ToString::to_string).collect();
    }
    o
}

/// A glob (`*`, `?`) match, for telling whether a selector pattern could match another disk's string.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Could a pattern/value on the selector side match a value on another disk? Unknown on either side: yes.
fn may_match(pattern: &Option<String>, other: &Option<String>) -> bool {
    match (pattern, other) {
        (Some(p), Some(o)) => glob_match(p, o) || glob_match(o, p),
        _ => true,
    }
}

/// The install-disk selector for a profile: transport, model, serial and rotation from the install disk, plus
/// a size bound when those would also match another disk of the machine (installing Talos onto a Ceph OSD
/// disk would destroy it). Errors when no selector can single the disk out.
fn install_selector(prof: &ResolvedProfile, q: &Quirks) -> std::result::Result<Option<DiskSelector>, String> {
    let Some(d) = prof.install_disk() else { return Ok(None) };
    let mut sel = DiskSelector {
        transport: Some(transport(d.bus).to_owned()),
        model: d.model.clone(),
        serial: d.serial.clone(),
        // Only SATA/SAS/SCSI disks report rotation reliably (virtio-blk and NVMe do not).
        rotational: if matches!(d.bus, DiskBus::Sata | DiskBus::Sas | DiskBus::Scsi) { d.rotational } else { None },
        min_size: None,
        max_size: None,
    };
    // Up to 1.13 the selector is v1alpha1's: no transport, only a type (nvme, ssd = not rotational, hdd).
    let v1alpha1 = !q.unattended_install_config();
    let rivals: Vec<&crate::spec::profile::DiskSpec> = prof
        .disks
        .iter()
        .filter(|o| o.name != d.name)
        .filter(|o| may_match(&sel.model, &o.model) && may_match(&sel.serial, &o.serial))
        .filter(|o| {
            let o_rotational = if o.bus == DiskBus::Nvme { Some(false) } else { o.rotational };
            if !v1alpha1 {
                return o.bus == d.bus
                    && match (sel.rotational, o.rotational) {
                        (Some(a), Some(b)) => a == b,
                        _ => true,
                    };
            }
            match (d.bus, sel.rotational) {
                (DiskBus::Nvme, _) => o.bus == DiskBus::Nvme,
                (_, Some(r)) => o_rotational.is_none_or(|x| x == r),
                (_, None) => true,
            }
        })
        .collect();
    if rivals.is_empty() {
        return Ok(Some(sel));
    }
    let size = d.size.bytes();
    let names =
        |v: &[&crate::spec::profile::DiskSpec]| v.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", ");
    if rivals.iter().any(|o| o.size.bytes() == size) {
        return Err(format!(
            "the install disk {:?} cannot be told apart from disk(s) {} of profile {} (same bus and size): give it a \
             model or serial pattern",
            d.name,
            names(&rivals),
            prof.name
        ));
    }
    // Halfway to the nearest rival on each side, so real capacities a little off the nominal size still match.
    let larger = rivals.iter().map(|o| o.size.bytes()).filter(|s| *s > size).min();
    let smaller = rivals.iter().map(|o| o.size.bytes()).filter(|s| *s < size).max();
    sel.max_size = larger.map(|l| size + (l - size) / 2);
    sel.min_size = smaller.map(|s| s + (size - s) / 2);
    if sel.min_size.is_some() && sel.max_size.is_some() && !q.unattended_install_config() {
        return Err(format!(
            "the install disk {:?} of profile {} sits between larger and smaller disks on the same bus ({}); Talos {} \
             selects install disks by one size bound: give it a model or serial pattern",
            d.name,
            prof.name,
            names(&rivals),
            q.version
        ));
    }
    Ok(Some(sel))
}

/// The node's address goes on the profile's primary NIC (or the bond it belongs to). Links are named by
/// `LinkAliasConfig`s; when a selector cannot single out one port (identical ports and no MAC or bus path),
/// Talos ≥ 1.13 aliases them all with a `%d` pattern, and the address goes on the first.
fn plan_links(
    n: &NodeSpec,
    prof: &ResolvedProfile,
    q: &Quirks,
    gateway: Option<IpAddr>,
    warnings: &mut Vec<String>,
) -> std::result::Result<Vec<LinkPlan>, String> {
    use crate::machine_config::generate::AliasPlan;
    use crate::spec::profile::NicSpec;

    let Some(primary) = prof.primary_nic() else { return Ok(Vec::new()) };
    let selector_for = |nic: &NicSpec, mac: Option<crate::spec::units::MacAddr>| LinkSelector {
        mac,
        driver: if mac.is_some() { None } else { Some(nic.driver.clone()) },
        // A virtio NIC's sysfs device is the virtio device, whose uevent has no PCI_ID: Talos sees an empty
        // PCI ID there, so selecting on it would never match.
        pci_id: if mac.is_some() || nic.driver.starts_with("virtio") { None } else { Some(nic.pci_id.clone()) },
        bus_path: if mac.is_some() { None } else { nic.bus_path.clone() },
    };
    // How many of the profile's NICs a selector built from `nic` (without a MAC) matches.
    let twins = |nic: &NicSpec| {
        prof.nics
            .iter()
            .filter(|x| x.driver == nic.driver && x.pci_id == nic.pci_id && x.bus_path == nic.bus_path)
            .count()
    };
    let addresses: Vec<IpCidr> = n.address.into_iter().collect();
    let gw = if addresses.is_empty() { None } else { gateway };
    let dhcp = addresses.is_empty();
    let cannot_tell = |what: &str, fix: &str| {
        format!("{what}: on Talos {} a link alias must match exactly one link; {fix}", q.version)
    };

    if let Some(bond_name) = &primary.bond {
        let Some(bond) = prof.bonds.iter().find(|b| &b.name == bond_name) else { return Ok(Vec::new()) };
        let members: Vec<&NicSpec> = prof.nics.iter().filter(|x| x.bond.as_deref() == Some(bond_name)).collect();
        let mut aliases = Vec::new();
        let mut links = Vec::new();
        let mut done = vec![false; members.len()];
        for i in 0..members.len() {
            if done[i] {
                continue;
            }
            let sel = selector_for(members[i], None);
            let same: Vec<usize> = (i..members.len()).filter(|j| selector_for(members[*j], None) == sel).collect();
            for j in &same {
                done[*j] = true;
            }
            if same.len() == 1 && twins(members[i]) == 1 {
                aliases.push(AliasPlan { name: members[i].name.clone(), selector: sel });
                links.push(members[i].name.clone());
                continue;
            }
            if !q.link_alias_patterns() {
                return Err(cannot_tell(
                    &format!("bond {bond_name}: its ports look identical"),
                    "set `busPath:` on the profile's bond member NICs",
                ));
            }
            let matched = twins(members[i]);
            if matched > same.len() {
                warnings.push(format!(
                    "bond {bond_name}: {matched} NICs match the selector of its {} identical ports; the first {} \
                     Talos enumerates join the bond (set busPath on the profile's NICs to choose)",
                    same.len(),
                    same.len()
                ));
            }
            let prefix = format!("{bond_name}p");
            aliases.push(AliasPlan { name: format!("{prefix}%d"), selector: sel });
            links.extend((0..same.len()).map(|k| format!("{prefix}{k}")));
        }
        return Ok(vec![LinkPlan {
            name: bond_name.clone(),
            aliases,
            bond: Some(BondPlan {
                mode: bond.mode.clone(),
                links,
                lacp_rate: bond.lacp_rate.clone(),
                xmit_hash_policy: bond.xmit_hash_policy.clone(),
                miimon: bond.miimon,
            }),
            addresses,
            gateway: gw,
            dhcp,
            mtu: bond.mtu,
        }]);
    }

    let sel = selector_for(primary, n.mac);
    let matched = if n.mac.is_some() { 1 } else { twins(primary) };
    let (alias, name) = if matched == 1 {
        (primary.name.clone(), primary.name.clone())
    } else if q.link_alias_patterns() {
        warnings.push(format!(
            "{matched} NICs of profile {} match the selector of {} ({}); the address goes on the first one Talos \
             enumerates ({}p0); set `mac:` on the node or `busPath:` in the profile to choose",
            prof.name,
            primary.name,
            sel.cel(),
            primary.name
        ));
        (format!("{}p%d", primary.name), format!("{}p0", primary.name))
    } else {
        return Err(cannot_tell(
            &format!("NIC {}: {matched} NICs of profile {} match its selector", primary.name, prof.name),
            &format!("set `mac:` on node {} or `busPath:` on the profile's NICs", n.name),
        ));
    };
    Ok(vec![LinkPlan {
        name,
        aliases: vec![AliasPlan { name: alias, selector: sel }],
        bond: None,
        addresses,
        gateway: gw,
        dhcp,
        mtu: primary.mtu,
    }])
}

/// Kernel arguments in order; `-name` removes an earlier `name` or `name=...`; the same key given twice with
/// different values is a conflict (except `console=`, which may repeat).
pub fn normalize_kernel_args(args: &[String]) -> std::result::Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for a in args {
        if let Some(name) = a.strip_prefix('-') {
            out.retain(|x| x != name && !x.starts_with(&format!("{name}=")));
            out.push(a.clone());
            continue;
        }
        let key = a.split('=').next().unwrap_or(a);
        if key != "console"
            && let Some(prev) = out.iter().find(|x| x.split('=').next() == Some(key) && *x != a)
        {
            return Err(format!("conflicting kernel arguments {prev:?} and {a:?}"));
        }
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// Talos's rule for user arguments over the defaults: `console=` and `talos.platform=` replace the default,
/// `-name` deletes, everything else appends.
pub fn apply_user_args(mut cmdline: Vec<String>, user: &[String]) -> Vec<String> {
    let mut replaced_console = false;
    for a in user {
        if let Some(name) = a.strip_prefix('-') {
            cmdline.retain(|x| x != name && !x.starts_with(&format!("{name}=")));
            continue;
        }
        let key = a.split('=').next().unwrap_or(a);
        if key == "console" && !replaced_console {
            cmdline.retain(|x| !x.starts_with("console="));
            replaced_console = true;
        } else if key == "talos.platform" {
            cmdline.retain(|x| !x.starts_with("talos.platform="));
        }
        if !cmdline.contains(a) {
            cmdline.push(a.clone());
        }
    }
    cmdline
}

/// Command-line patches in talosctl's forms: `@file`, a bare file name (no spaces, newlines, `[` or `{`), or the
/// patch text itself (shown as `--config-patch #N`).
pub fn cli_patch_inputs(values: &[String], flag: &str) -> Result<Vec<PatchInput>> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let inline = v.contains('\n') || v.contains(' ') || v.starts_with('[') || v.starts_with('{');
        let file = v.strip_prefix('@').map(str::to_owned).or_else(|| (!inline).then(|| v.clone()));
        out.push(match file {
            Some(f) => {
                let path = PathBuf::from(&f);
                let text =
                    std::fs::read_to_string(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
                PatchInput { origin: f, file: path, content: PatchContent::Text(text) }
            }
            None => {
                let label = format!("{flag} #{}", i + 1);
                PatchInput { origin: label.clone(), file: PathBuf::from(label), content: PatchContent::Text(v.clone()) }
            }
        });
    }
    Ok(out)
}

fn patch_inputs(src: &Source, base_dir: &Path, refs: &[PatchRef], at: &FieldPath) -> Result<Vec<PatchInput>> {
    let mut out = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let p = at.index(i);
        match r {
            PatchRef::File(f) => {
                let path = if f.is_absolute() { f.clone() } else { base_dir.join(f) };
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::from(src.diag(p.clone(), format!("cannot read patch file {}: {e}", path.display())))
                })?;
                out.push(PatchInput {
                    origin: path.display().to_string(),
                    file: path,
                    content: PatchContent::Text(text),
                });
            }
            PatchRef::Inline(_) => {
                // Take the positioned node from the source tree so errors point into the cluster file.
                let node = p.locate(&src.root).clone();
                let span = p.span_in(&src.root);
                out.push(PatchInput {
                    origin: format!("{}:{}:{}", src.path.display(), span.line, span.col),
                    file: src.path.clone(),
                    content: PatchContent::Inline(node),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn kernel_arg_rules() {
        assert_eq!(normalize_kernel_args(&v(&["a=1", "b", "-a"])).unwrap(), v(&["b", "-a"]));
        assert!(normalize_kernel_args(&v(&["a=1", "a=2"])).unwrap_err().contains("conflicting"));
        assert_eq!(normalize_kernel_args(&v(&["console=tty0", "console=ttyS0"])).unwrap().len(), 2);
        let base = v(&["talos.platform=metal", "console=tty0", "slab_nomerge"]);
        assert_eq!(
            apply_user_args(base, &v(&["console=ttyS0,115200", "-slab_nomerge", "x=1"])),
            v(&["talos.platform=metal", "console=ttyS0,115200", "x=1"])
        );
    }
}
