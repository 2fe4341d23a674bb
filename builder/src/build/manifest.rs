//! `manifest.json`: every artifact of a build with its size and sha256, and every input with its digest
//! (release files, extensions, profiles, overlays, epoch, talforge version) — what `talforge verify` rebuilds
//! from and compares against.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::plan::ClusterPlan;
use crate::release::{Release, ReleaseSource, ResolvedExtension, hex};
use crate::spec::cluster::OutputKind;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    pub talforge: String,
    pub cluster: String,
    /// The cluster file the build was planned from (absolute).
    pub cluster_file: PathBuf,
    pub talos_version: String,
    pub epoch: u64,
    pub release: ReleaseRecord,
    pub profiles: Vec<InputRecord>,
    pub overlays: Vec<InputRecord>,
    pub images: Vec<ImageRecord>,
    pub artifacts: Vec<ArtifactRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseRecord {
    pub source: String,
    pub kernel: String,
    pub initramfs: String,
    pub systemd_boot: String,
    pub systemd_stub: String,
    /// Every extension the images use, as the cluster file wrote it and as it was resolved.
    pub extensions: Vec<ExtensionRecord>,
}

impl ReleaseRecord {
    /// What a build used: the source as `--release` would name it, the boot files' and extensions' digests.
    pub fn new(release: &Release, source: &ReleaseSource, extensions: &[ResolvedExtension]) -> ReleaseRecord {
        ReleaseRecord {
            source: match source {
                ReleaseSource::Registry(prefix) => prefix.clone(),
                ReleaseSource::Dir(p) | ReleaseSource::OciLayout(p) => {
                    std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()).display().to_string()
                }
            },
            kernel: release.kernel.sha256.clone(),
            initramfs: release.initramfs.sha256.clone(),
            systemd_boot: release.sd_boot.sha256.clone(),
            systemd_stub: release.sd_stub.sha256.clone(),
            extensions: extensions
                .iter()
                .map(|e| ExtensionRecord {
                    reference: e.reference.clone(),
                    name: e.name.clone(),
                    version: e.version.clone(),
                    image: e.image.clone(),
                    digest: e.digest.as_ref().map(ToString::to_string),
                })
                .collect(),
        }
    }
}

/// One extension: its reference as written, its manifest's name and version, and the image and digest it
/// was pulled from (none for a directory).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionRecord {
    pub reference: String,
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// An input file set and the digest of its contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InputRecord {
    pub name: String,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageRecord {
    pub id: String,
    pub profile: String,
    pub schematic_id: String,
    pub secure_boot: bool,
    pub cmdline: String,
    /// (name, version) of each extension, in layer order.
    pub extensions: Vec<(String, String)>,
    pub initramfs_sha256: String,
    pub outputs: Vec<OutputKind>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArtifactRecord {
    /// Relative to the output folder.
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// sha256 of files, each prefixed with its name and length.
fn digest_files(files: &[PathBuf]) -> Result<String> {
    let mut h = Sha256::new();
    for f in files {
        let data = std::fs::read(f).map_err(|source| Error::Read { path: f.clone(), source })?;
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((data.len() as u64).to_le_bytes());
        h.update(&data);
    }
    Ok(hex(&h.finalize()))
}

/// sha256 and size of a file, streamed.
pub fn file_digest(path: &Path) -> Result<(u64, String)> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((size, hex(&h.finalize())))
}

impl Manifest {
    /// Records the plan's inputs and every file under `images_dir` (for the images just built).
    pub fn collect(
        plan: &ClusterPlan,
        release: ReleaseRecord,
        epoch: u64,
        out: &Path,
        images: Vec<ImageRecord>,
        images_dir: &Path,
        known: &std::collections::BTreeMap<(String, String), (u64, String)>,
    ) -> Result<Manifest> {
        let mut artifacts = Vec::new();
        for im in &images {
            let dir = images_dir.join(&im.id);
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|source| Error::Read { path: dir.clone(), source })?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            for p in entries {
                // Digests the build already knows (cached artifacts, release files); the others are read here.
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let (size, sha256) = match known.get(&(im.id.clone(), name)) {
                    Some((size, sha)) => (*size, sha.clone()),
                    None => file_digest(&p)?,
                };
                let rel = p.strip_prefix(out).unwrap_or(&p).to_string_lossy().into_owned();
                artifacts.push(ArtifactRecord { path: rel, size, sha256 });
            }
        }
        artifacts.sort_by(|a, b| a.path.cmp(&b.path));
        let mut profiles = Vec::new();
        for (name, files) in &plan.profile_files {
            profiles.push(InputRecord { name: name.clone(), sha256: digest_files(files)? });
        }
        let mut overlays = Vec::new();
        for (name, files) in &plan.overlay_files {
            overlays.push(InputRecord { name: name.clone(), sha256: digest_files(files)? });
        }
        Ok(Manifest {
            talforge: env!("CARGO_PKG_VERSION").to_owned(),
            cluster: plan.cluster.clone(),
            cluster_file: std::fs::canonicalize(&plan.cluster_file).unwrap_or_else(|_| plan.cluster_file.clone()),
            talos_version: plan.talos_version.clone(),
            epoch,
            release,
            profiles,
            overlays,
            images,
            artifacts,
        })
    }

    pub fn to_json(&self) -> String {
        // Strings, numbers, booleans and lists only: serialization cannot fail.
        #[allow(clippy::expect_used)]
        let mut s = serde_json::to_string_pretty(self).expect("manifest serializes");
        s.push('\n');
        s
    }

    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Input(Box::new(crate::error::Diagnostic::new(
                path,
                crate::yaml::Span::new(e.line() as u32, e.column() as u32),
                crate::yaml::FieldPath::root(),
                format!("not a talforge manifest: {e}"),
            )))
        })
    }
}
