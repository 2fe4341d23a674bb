//! `talforge.yaml` (`kind: Cluster`): the one file a user writes to describe a cluster.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::units::{ByteSize, Endpoint, IpCidr, MacAddr, Version};
use super::{ApiVersion, PatchRef};

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum ClusterKind {
    Cluster,
}

/// What the user wrote in the cluster file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSpec {
    pub api_version: ApiVersion,
    pub kind: ClusterKind,
    /// Cluster name: a DNS label, used as Talos `clusterName` and the talosconfig context.
    pub name: String,
    pub talos: TalosSpec,
    pub kubernetes: KubernetesSpec,
    /// Kubernetes API endpoint, `https://<host>:<port>`.
    pub endpoint: Endpoint,
    /// Secrets bundle (talosctl-compatible), relative to the cluster file; created when missing.
    #[serde(default = "default_secrets")]
    pub secrets: PathBuf,
    /// Config overlays applied to every node, in order (folders under `overlays/`).
    #[serde(default)]
    pub overlays: Vec<OverlayRef>,
    /// Boot-asset kinds to build for every node's image.
    #[serde(default = "default_outputs")]
    pub outputs: Vec<OutputKind>,
    /// System extensions for every node's image: official names (`siderolabs/intel-ucode`), `<ns>/<name>`
    /// from the release source's catalogue, image references, or extension directories (`./x`).
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Secure Boot signing keys and enrollment, for profiles with Secure Boot.
    #[serde(default)]
    pub secure_boot: SecureBootSpec,
    /// Metal disk image options (Talos imager `imageOptions`).
    #[serde(default)]
    pub disk_image: DiskImageSpec,
    #[serde(default)]
    pub network: ClusterNetworkSpec,
    /// Extra names and addresses for the Talos and Kubernetes API certificates.
    #[serde(default)]
    pub additional_sans: Vec<String>,
    #[serde(default)]
    pub allow_scheduling_on_control_planes: bool,
    /// Machine-config patches for every node, then for control planes, then for workers.
    #[serde(default)]
    pub patches: Vec<PatchRef>,
    #[serde(default)]
    pub control_plane_patches: Vec<PatchRef>,
    #[serde(default)]
    pub worker_patches: Vec<PatchRef>,
    pub nodes: Vec<NodeSpec>,
    /// Only the lab reads this.
    #[serde(default)]
    pub lab: LabSpec,
}

/// Metal disk image options.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiskImageSpec {
    /// Size of the raw image (`imageOptions.diskSize`); default Talos's for the version (2246 MiB for an
    /// sd-boot image from Talos 1.11).
    #[serde(default)]
    pub size: Option<crate::spec::units::ByteSize>,
    /// Logical sector size, 512 or 4096 (`imageOptions.diskSectorSize`, the schematic's
    /// `diskImage.sectorSize`); for disks with 4 KiB native sectors.
    #[serde(default)]
    pub sector_size: Option<u32>,
}

/// Secure Boot settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecureBootSpec {
    /// Folder (relative to the cluster file) holding `uki-signing-key.pem` and `uki-signing-cert.pem`; created
    /// with a new key (mode 0600) when missing.
    #[serde(default = "default_secure_boot_keys")]
    pub keys: PathBuf,
    /// sd-boot's `secure-boot-enroll` mode for the enrollment files on the ESP. Default: `if-safe`, or `force`
    /// with systemd-boot older than 253, which does not know `if-safe`.
    #[serde(default)]
    pub enroll_keys: Option<EnrollKeys>,
}

impl Default for SecureBootSpec {
    fn default() -> Self {
        SecureBootSpec { keys: default_secure_boot_keys(), enroll_keys: None }
    }
}

fn default_secure_boot_keys() -> PathBuf {
    PathBuf::from("secureboot")
}

/// systemd-boot `secure-boot-enroll` values.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EnrollKeys {
    IfSafe,
    Manual,
    Force,
    Off,
}

impl EnrollKeys {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollKeys::IfSafe => "if-safe",
            EnrollKeys::Manual => "manual",
            EnrollKeys::Force => "force",
            EnrollKeys::Off => "off",
        }
    }
}

fn default_secrets() -> PathBuf {
    PathBuf::from("secrets.yaml")
}

fn default_outputs() -> Vec<OutputKind> {
    vec![OutputKind::Metal]
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TalosSpec {
    pub version: Version,
    /// Where the release comes from; the default is the `ghcr.io/siderolabs` registry.
    #[serde(default)]
    pub source: Option<ReleaseSourceSpec>,
    /// Installer image written into machine configs (`install.image` / `UnattendedInstallConfig`).
    /// Default: the Image Factory installer for each node's schematic.
    #[serde(default)]
    pub installer_image: Option<String>,
}

/// Exactly one of the three release sources.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReleaseSourceSpec {
    /// An OCI registry prefix holding `imager` and extension images (e.g. `ghcr.io/siderolabs`).
    #[serde(default)]
    pub registry: Option<String>,
    /// A local OCI image layout directory.
    #[serde(default)]
    pub oci_layout: Option<PathBuf>,
    /// A plain directory laid out like a Talos release (`usr/install/<arch>/...`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubernetesSpec {
    pub version: Version,
}

/// An overlay by name, optionally with values for its `${...}` placeholders.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct OverlayRef {
    pub name: String,
    pub values: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for OverlayRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            name: String,
            #[serde(default)]
            values: BTreeMap<String, String>,
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OverlayRef;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an overlay name, or a mapping with name and values")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<OverlayRef, E> {
                Ok(OverlayRef { name: s.to_owned(), values: BTreeMap::new() })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<OverlayRef, A::Error> {
                let f = Full::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(OverlayRef { name: f.name, values: f.values })
            }
        }
        d.deserialize_any(V)
    }
}

/// Boot-asset kinds (the builder issue gives each its behaviour).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    Metal,
    Iso,
    Uki,
    Pxe,
    Installer,
    Qcow2,
}

impl OutputKind {
    pub const ALL: [OutputKind; 6] = [
        OutputKind::Metal,
        OutputKind::Iso,
        OutputKind::Uki,
        OutputKind::Pxe,
        OutputKind::Installer,
        OutputKind::Qcow2,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Metal => "metal",
            OutputKind::Iso => "iso",
            OutputKind::Uki => "uki",
            OutputKind::Pxe => "pxe",
            OutputKind::Installer => "installer",
            OutputKind::Qcow2 => "qcow2",
        }
    }

    /// The kind named `s` (as written in `outputs`).
    pub fn parse(s: &str) -> Option<OutputKind> {
        OutputKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterNetworkSpec {
    /// Default gateway for the nodes' static addresses.
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    #[serde(default)]
    pub nameservers: Vec<IpAddr>,
    #[serde(default)]
    pub dns_domain: Option<String>,
    #[serde(default)]
    pub pod_subnets: Vec<IpCidr>,
    #[serde(default)]
    pub service_subnets: Vec<IpCidr>,
    /// Registry mirrors, host → endpoint URLs (Talos `RegistryMirrorConfig`).
    #[serde(default)]
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Controlplane,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Controlplane => "controlplane",
            Role::Worker => "worker",
        }
    }
}

/// One machine of the cluster.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSpec {
    pub name: String,
    pub role: Role,
    /// Hardware profile name (a file stem under `hardware-profiles/`).
    pub profile: String,
    /// Static address of the node's primary NIC; without it the node uses DHCP.
    #[serde(default)]
    pub address: Option<IpCidr>,
    /// Hostname; defaults to the node name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// MAC address of the primary NIC, when known (selects the NIC exactly; the lab also uses it).
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Install disk device path, overriding the profile's install-disk selector (e.g. `/dev/sda`).
    #[serde(default)]
    pub install_disk: Option<String>,
    /// Extra kernel arguments for this node's image (`-arg` removes one).
    #[serde(default)]
    pub kernel_args: Vec<String>,
    /// Extra system extensions for this node's image.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Extra overlays for this node, after the cluster's.
    #[serde(default)]
    pub overlays: Vec<OverlayRef>,
    /// Kubernetes node labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Machine-config patches for this node only, applied last.
    #[serde(default)]
    pub patches: Vec<PatchRef>,
}

/// Lab settings (read by the testbed; validated here so a typo fails early).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabSpec {
    #[serde(default)]
    pub cpus: Option<u32>,
    #[serde(default)]
    pub memory: Option<ByteSize>,
    #[serde(default)]
    pub accel: Accel,
    /// NAT from the lab's network to the networks the lab process reaches (slirp4netns), so the VMs can
    /// pull from registries; off by default (the lab is closed).
    #[serde(default)]
    pub nat: bool,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    #[default]
    Auto,
    Kvm,
    Tcg,
}
