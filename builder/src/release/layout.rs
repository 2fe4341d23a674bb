//! A local OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) as a release source: no network.
//!
//! Images are found by the `org.opencontainers.image.ref.name` annotation of the entries in `index.json`
//! (`io.containerd.image.name` is accepted too). For `ghcr.io/siderolabs/imager:v1.14.0` the names
//! `ghcr.io/siderolabs/imager:v1.14.0`, `siderolabs/imager:v1.14.0` and `imager:v1.14.0` match; a bare tag
//! does not (one layout holds the imager, the catalogue and extensions, which share tags). Images whose
//! digest is already known (pinned in the lock, listed in the catalogue) are read by digest, indexed or not.
//! `skopeo copy --all docker://ghcr.io/siderolabs/imager:v1.14.0 oci:DIR:ghcr.io/siderolabs/imager:v1.14.0`
//! makes such a layout and keeps index digests (without `--all` only one platform's manifest is copied and
//! the digests the catalogue pins are not in the layout).

use std::path::{Path, PathBuf};

use oci_spec::image::ImageIndex;

use super::error::{ReleaseError, Result};
use super::oci::{MAX_MANIFEST_BYTES, Store};
use super::reference::{Digest, ImageRef};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// An opened OCI layout directory.
#[derive(Debug)]
pub(crate) struct LayoutStore {
    dir: PathBuf,
    /// (name, digest) of every named entry of `index.json`.
    names: Vec<(String, Digest)>,
}

impl LayoutStore {
    /// Opens `dir`, checking `oci-layout` and reading `index.json`.
    pub(crate) fn open(dir: &Path) -> Result<LayoutStore> {
        let invalid = |m: String| ReleaseError::InvalidSource { message: format!("OCI layout {}: {m}", dir.display()) };
        let marker = dir.join("oci-layout");
        let text = std::fs::read_to_string(&marker).map_err(|e| ReleaseError::read(&marker, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| invalid(format!("expected oci-layout to be JSON; found invalid JSON ({e})")))?;
        match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some(ver) if ver.starts_with("1.") => {}
            other => return Err(invalid(format!("expected imageLayoutVersion 1.x; found {other:?}"))),
        }
        let index_path = dir.join("index.json");
        let bytes = std::fs::read(&index_path).map_err(|e| ReleaseError::read(&index_path, e))?;
        let index: ImageIndex =
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("malformed index.json: {e}")))?;
        let mut names = Vec::new();
        for d in index.manifests() {
            let Some(ann) = d.annotations() else { continue };
            let digest = Digest::parse(d.digest().as_ref()).map_err(|e| invalid(format!("index.json: {e}")))?;
            for key in [REF_NAME, CONTAINERD_NAME] {
                if let Some(n) = ann.get(key) {
                    names.push((n.clone(), digest.clone()));
                }
            }
        }
        Ok(LayoutStore { dir: dir.to_owned(), names })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    fn missing_blob(&self, image: &ImageRef, digest: &Digest) -> ReleaseError {
        ReleaseError::BadImage {
            reference: image.tagged(),
            digest: digest.to_string(),
            message: format!(
                "expected the blob in the OCI layout at {}; it is not there (copy images with `skopeo copy --all` so \
                 that index digests are kept)",
                self.blob_path(digest).display()
            ),
        }
    }
}

impl Store for LayoutStore {
    fn place(&self, _image: &ImageRef) -> String {
        format!("the OCI layout at {}", self.dir.display())
    }

    fn resolve_tag(&mut self, image: &ImageRef) -> Result<Digest> {
        let tag = image.tag.as_deref().unwrap_or_default();
        let candidates = [image.tagged(), format!("{}:{tag}", image.repository), format!("{}:{tag}", image.basename())];
        let mut found: Vec<&Digest> =
            self.names.iter().filter(|(n, _)| candidates.contains(n)).map(|(_, d)| d).collect();
        found.sort();
        found.dedup();
        match found.as_slice() {
            [d] => Ok((*d).clone()),
            [] => {
                let mut known: Vec<&str> = self.names.iter().map(|(n, _)| n.as_str()).collect();
                known.sort_unstable();
                known.dedup();
                Err(ReleaseError::ImageNotFound {
                    reference: image.tagged(),
                    place: format!(
                        "{} (its index.json names: {})",
                        self.place(image),
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                })
            }
            many => Err(ReleaseError::InvalidSource {
                message: format!(
                    "OCI layout {}: expected one image named {}; found {} different digests",
                    self.dir.display(),
                    image.tagged(),
                    many.len()
                ),
            }),
        }
    }

    fn manifest_bytes(&mut self, image: &ImageRef, digest: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(digest);
        match std::fs::metadata(&p) {
            Ok(m) if m.len() > MAX_MANIFEST_BYTES as u64 => Err(ReleaseError::BadImage {
                reference: image.tagged(),
                digest: digest.to_string(),
                message: format!("expected a manifest of at most 4 MiB; found {} bytes", m.len()),
            }),
            Ok(_) => std::fs::read(&p).map_err(|e| ReleaseError::read(&p, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.missing_blob(image, digest)),
            Err(e) => Err(ReleaseError::read(&p, e)),
        }
    }

    fn blob_file(&mut self, image: &ImageRef, digest: &Digest, _size: u64) -> Result<PathBuf> {
        let p = self.blob_path(digest);
        if p.is_file() { Ok(p) } else { Err(self.missing_blob(image, digest)) }
    }
}
