//! The extension catalogue of a Talos release: the image `<prefix>/extensions:<talos tag>`, whose file
//! `/image-digests` lists every official extension as `ghcr.io/siderolabs/<name>:<version>@sha256:…`, one
//! per line (Image Factory reads the same file; lines without `@` are skipped, as it does).
//!
//! A name such as `siderolabs/gvisor` is matched against the repository path of each line (the reference
//! without its registry host). Names Image Factory still accepts for renamed extensions are mapped to the new
//! names ([`alias`]). The catalogue's references point at `ghcr.io`; for another registry prefix they are
//! re-homed: `<prefix>/<last path component>:<version>@<digest>`, the digest unchanged.

use super::reference::ImageRef;

/// The parsed `image-digests` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    pub entries: Vec<ImageRef>,
}

/// The catalogue file inside the image.
pub const IMAGE_DIGESTS: &str = "image-digests";

impl Catalog {
    /// Parses `image-digests`: `host/repo:tag@sha256:…` per line; blank lines and lines without `@` are skipped.
    pub fn parse(text: &str) -> Result<Catalog, String> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || !line.contains('@') {
                continue;
            }
            let r = ImageRef::parse(line).map_err(|e| format!("image-digests line {}: {e}", n + 1))?;
            if r.tag.is_none() {
                return Err(format!("image-digests line {}: expected name:version@digest; found {line:?}", n + 1));
            }
            entries.push(r);
        }
        if entries.is_empty() {
            return Err("expected image-digests to list extensions; found none".into());
        }
        Ok(Catalog { entries })
    }

    /// The entry for `name` (`siderolabs/gvisor`), following Image Factory's renames.
    pub fn find(&self, name: &str) -> Option<&ImageRef> {
        let by = |n: &str| self.entries.iter().find(|e| e.repository == n);
        by(name).or_else(|| alias(name).and_then(by))
    }
}

/// The current name of an extension that was renamed or published under a wrong name (the renames Image
/// Factory's `ExtensionNameAlias` applies).
pub fn alias(name: &str) -> Option<&'static str> {
    Some(match name {
        "siderolabs/v4l-uvc" => "siderolabs/v4l-uvc-drivers",
        "siderolabs/usb-modem" => "siderolabs/usb-modem-drivers",
        "siderolabs/gasket" => "siderolabs/gasket-driver",
        "siderolabs/talos-vmtoolsd" => "siderolabs/vmtoolsd-guest-agent",
        "siderolabs/xe-guest-utilities" => "siderolabs/xen-guest-agent",
        "siderolabs/nvidia-container-toolkit" => "siderolabs/nvidia-container-toolkit-lts",
        "siderolabs/nvidia-open-gpu-kernel-modules" => "siderolabs/nvidia-open-gpu-kernel-modules-lts",
        "siderolabs/nonfree-kmod-nvidia" => "siderolabs/nonfree-kmod-nvidia-lts",
        "siderolabs/nvidia-fabricmanager" => "siderolabs/nvidia-fabric-manager-lts",
        "siderolabs/i915-ucode" => "siderolabs/i915",
        "siderolabs/amdgpu-firmware" => "siderolabs/amdgpu",
        _ => return None,
    })
}

/// `entry` moved under the registry prefix `prefix` (`host[/path]`): same basename, tag and digest.
pub fn rehome(entry: &ImageRef, prefix: &str) -> ImageRef {
    let (registry, path) = match prefix.split_once('/') {
        Some((h, p)) => (h.to_owned(), format!("{p}/{}", entry.basename())),
        None => (prefix.to_owned(), entry.basename().to_owned()),
    };
    ImageRef { registry, repository: path, tag: entry.tag.clone(), digest: entry.digest.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GVISOR: &str =
        "ghcr.io/siderolabs/gvisor:20231214.0@sha256:5ab365f2b98ab885b1d9a6ebb2e2b06d0a7887d2c173a2b7d3f9e0e4f2f4f1cb";
    const I915: &str = "ghcr.io/siderolabs/i915:20250101-v1.14.0@sha256:6f9e2d0c8a9d18b9a54c3d0f7c6b3a2f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b";

    #[test]
    fn parse_find_alias_rehome() {
        let c = Catalog::parse(&format!("{GVISOR}\n\n  {I915}  \nnot-a-line\n")).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.find("siderolabs/gvisor").unwrap().to_string(), GVISOR);
        assert_eq!(c.find("siderolabs/i915-ucode").unwrap().to_string(), I915);
        assert!(c.find("gvisor").is_none());
        assert!(c.find("other/gvisor").is_none());
        let r = rehome(c.find("siderolabs/gvisor").unwrap(), "127.0.0.1:5000/mirror/siderolabs");
        assert_eq!(r.to_string(), GVISOR.replace("ghcr.io/siderolabs", "127.0.0.1:5000/mirror/siderolabs"));
        assert_eq!(rehome(&r, "ghcr.io/siderolabs").to_string(), GVISOR);

        assert!(Catalog::parse("").unwrap_err().contains("found none"));
        let e = Catalog::parse("ghcr.io/siderolabs/x@sha256:abc\n").unwrap_err();
        assert!(e.starts_with("image-digests line 1:"), "{e}");
    }
}
