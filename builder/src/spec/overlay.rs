//! Config overlays (`overlays/<name>/overlay.yaml`, `kind: Overlay`): reusable machine-config patches plus the
//! extensions, kernel arguments, modules and sysctls a cluster feature (Cilium, Rook-Ceph, ...) needs on Talos.
//!
//! Folder convention: `overlay.yaml`, the patch files it lists (per role and Talos version), and later
//! `addons/` with the pinned manifests the lab deploys.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ApiVersion;
use super::cluster::Role;
use super::profile::KernelModuleSpec;
use super::version_req::VersionReq;

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub enum OverlayKind {
    Overlay,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OverlaySpec {
    pub api_version: ApiVersion,
    pub kind: OverlayKind,
    /// Equals the folder name.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Talos versions this overlay supports, e.g. `>= 1.12`.
    #[serde(default)]
    pub talos: Option<VersionReq>,
    /// Placeholders usable as `${name}` in the overlay's patch files, with defaults.
    #[serde(default)]
    pub values: BTreeMap<String, OverlayValueSpec>,
    #[serde(default)]
    pub extensions: Vec<String>,
    #[serde(default)]
    pub kernel_args: Vec<String>,
    #[serde(default)]
    pub kernel_modules: Vec<KernelModuleSpec>,
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default)]
    pub patches: Vec<OverlayPatchSpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OverlayValueSpec {
    #[serde(default)]
    pub description: Option<String>,
    /// Without a default the cluster file must give a value.
    #[serde(default)]
    pub default: Option<String>,
}

/// One patch file of an overlay and where it applies.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OverlayPatchSpec {
    /// Path relative to the overlay folder.
    pub file: PathBuf,
    /// Machine roles it applies to (default: all).
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Talos versions it applies to (default: all the overlay supports).
    #[serde(default)]
    pub talos: Option<VersionReq>,
}
