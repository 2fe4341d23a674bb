//! OCI images as talforge reads them: where blobs come from ([`Store`]), manifests and indexes (oci-spec
//! types), platform selection, and layer streams that are verified against their digest while being read.
//!
//! A [`Store`] is a registry (through the cache) or a local OCI layout. Everything above it works on
//! digests only: an image is opened by the digest its tag resolved to (or the lock pins), an index is narrowed
//! to the `linux/<arch>` manifest, and layers are fetched one at a time, only when a caller reads them. Every
//! byte talforge uses is hashed and compared with the digest that named it; a mismatch is an error, never a
//! warning.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use sha2::{Digest as _, Sha256};

use super::error::{ReleaseError, Result};
use super::reference::{Digest, ImageRef};

/// Manifests larger than this are refused (the distribution spec's recommended limit is 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Where images come from: a registry (through the cache) or an OCI layout directory.
pub(crate) trait Store {
    /// Where `image` is looked for, for messages ("registry 127.0.0.1:5000", "OCI layout /x").
    fn place(&self, image: &ImageRef) -> String;

    /// The digest the image's tag points to now.
    fn resolve_tag(&mut self, image: &ImageRef) -> Result<Digest>;

    /// The bytes of the manifest or index with `digest`; the caller verifies them.
    fn manifest_bytes(&mut self, image: &ImageRef, digest: &Digest) -> Result<Vec<u8>>;

    /// A local file with the blob's bytes (downloaded first if needed); the caller verifies while reading.
    fn blob_file(&mut self, image: &ImageRef, digest: &Digest, size: u64) -> Result<PathBuf>;
}

/// An image narrowed to one platform: its platform manifest's digest and layers.
#[derive(Clone, Debug)]
pub(crate) struct OpenImage {
    pub image: ImageRef,
    /// The digest of the `linux/<arch>` image manifest (what trees are keyed by).
    pub manifest_digest: Digest,
    pub layers: Vec<Layer>,
}

/// One layer of an image manifest.
#[derive(Clone, Debug)]
pub(crate) struct Layer {
    pub digest: Digest,
    pub size: u64,
}

/// How to choose a manifest from an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlatformChoice<'a> {
    /// Exactly `linux/<arch>`.
    Exact(&'a str),
    /// `linux/<arch>`, else `linux/amd64`, else the only real platform (for the extension catalogue, whose
    /// content is the same for every platform).
    Prefer(&'a str),
}

/// Fetches and verifies the manifest or index with `digest`.
pub(crate) fn fetch_manifest(store: &mut dyn Store, image: &ImageRef, digest: &Digest) -> Result<Vec<u8>> {
    let bytes = store.manifest_bytes(image, digest)?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(bad(image, digest, format!("expected a manifest of at most 4 MiB; found {} bytes", bytes.len())));
    }
    let found = Digest::of(&bytes);
    if &found != digest {
        return Err(ReleaseError::DigestMismatch {
            reference: image.tagged(),
            expected: digest.to_string(),
            found: found.to_string(),
            from: None,
        });
    }
    Ok(bytes)
}

fn bad(image: &ImageRef, digest: &Digest, message: impl Into<String>) -> ReleaseError {
    ReleaseError::BadImage { reference: image.tagged(), digest: digest.to_string(), message: message.into() }
}

/// The two kinds of manifest documents.
#[derive(Debug)]
pub(crate) enum Parsed {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

#[derive(serde::Deserialize)]
struct Probe {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<i64>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<serde::de::IgnoredAny>,
    layers: Option<serde::de::IgnoredAny>,
}

const INDEX_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
const MANIFEST_TYPES: [&str; 2] =
    ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];

/// Every manifest media type talforge reads (the `Accept` list for registries).
pub(crate) const ACCEPTED_MANIFEST_TYPES: [&str; 4] =
    [INDEX_TYPES[0], INDEX_TYPES[1], MANIFEST_TYPES[0], MANIFEST_TYPES[1]];

/// Parses manifest bytes as an index or an image manifest (OCI or Docker schema 2).
pub(crate) fn parse_manifest(image: &ImageRef, digest: &Digest, bytes: &[u8]) -> Result<Parsed> {
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| bad(image, digest, format!("expected a JSON manifest or index; found invalid JSON ({e})")))?;
    if probe.schema_version != Some(2) {
        return Err(bad(
            image,
            digest,
            format!(
                "expected schemaVersion 2; found {}",
                probe.schema_version.map(|v| v.to_string()).unwrap_or_else(|| "none".into())
            ),
        ));
    }
    let is_index = match probe.media_type.as_deref() {
        Some(t) if INDEX_TYPES.contains(&t) => true,
        Some(t) if MANIFEST_TYPES.contains(&t) => false,
        Some(t) => {
            return Err(bad(image, digest, format!("expected an image index or manifest; found media type {t:?}")));
        }
        None => match (probe.manifests.is_some(), probe.layers.is_some()) {
            (true, false) => true,
            (false, true) => false,
            _ => return Err(bad(image, digest, "expected an image index (manifests) or manifest (layers)")),
        },
    };
    if is_index {
        serde_json::from_slice(bytes)
            .map(|i| Parsed::Index(Box::new(i)))
            .map_err(|e| bad(image, digest, format!("malformed image index: {e}")))
    } else {
        serde_json::from_slice(bytes)
            .map(|m| Parsed::Manifest(Box::new(m)))
            .map_err(|e| bad(image, digest, format!("malformed image manifest: {e}")))
    }
}

fn descriptor_digest(image: &ImageRef, parent: &Digest, d: &Descriptor) -> Result<Digest> {
    Digest::parse(d.digest().as_ref()).map_err(|e| bad(image, parent, e))
}

fn platform_name(d: &Descriptor) -> Option<String> {
    let p = d.platform().as_ref()?;
    let mut s = format!("{}/{}", p.os(), p.architecture());
    if let Some(v) = p.variant() {
        s.push('/');
        s.push_str(v);
    }
    Some(s)
}

fn is_platform(d: &Descriptor, arch: &str) -> bool {
    d.platform().as_ref().is_some_and(|p| {
        p.os().to_string() == "linux"
            && p.architecture().to_string() == arch
            && (arch != "arm64" || matches!(p.variant().as_deref(), None | Some("v8")))
    })
}

/// Picks the manifest for the platform from an index.
pub(crate) fn select_platform<'a>(
    image: &ImageRef,
    index: &'a ImageIndex,
    choice: PlatformChoice<'_>,
) -> Result<&'a Descriptor> {
    let entries = index.manifests();
    let arch = match choice {
        PlatformChoice::Exact(a) | PlatformChoice::Prefer(a) => a,
    };
    if let Some(d) = entries.iter().find(|d| is_platform(d, arch)) {
        return Ok(d);
    }
    if let PlatformChoice::Prefer(_) = choice {
        if let Some(d) = entries.iter().find(|d| is_platform(d, "amd64")) {
            return Ok(d);
        }
        let real: Vec<&Descriptor> =
            entries.iter().filter(|d| platform_name(d).is_none_or(|p| !p.starts_with("unknown/"))).collect();
        if let [only] = real.as_slice() {
            return Ok(only);
        }
    }
    Err(ReleaseError::NoPlatform {
        reference: image.tagged(),
        arch: arch.to_owned(),
        available: entries.iter().map(|d| platform_name(d).unwrap_or_else(|| "(no platform)".into())).collect(),
    })
}

const LAYER_PREFIXES: [&str; 4] = [
    "application/vnd.oci.image.layer.v1.",
    "application/vnd.oci.image.layer.nondistributable.v1.",
    "application/vnd.docker.image.rootfs.diff.",
    "application/vnd.docker.image.rootfs.foreign.diff.",
];
const LAYER_SUFFIXES: [&str; 4] = ["tar", "tar+gzip", "tar+zstd", "tar.gzip"];

fn is_layer_type(t: &str) -> bool {
    LAYER_PREFIXES.iter().any(|p| t.strip_prefix(p).is_some_and(|rest| LAYER_SUFFIXES.contains(&rest)))
}

/// Opens the image `top` names, narrowing indexes (nested at most 4 deep) to the chosen platform.
pub(crate) fn open_image(
    store: &mut dyn Store,
    image: &ImageRef,
    top: &Digest,
    choice: PlatformChoice<'_>,
) -> Result<OpenImage> {
    let mut digest = top.clone();
    for _ in 0..4 {
        let bytes = fetch_manifest(store, image, &digest)?;
        match parse_manifest(image, &digest, &bytes)? {
            Parsed::Index(index) => {
                let d = select_platform(image, &index, choice)?;
                digest = descriptor_digest(image, &digest, d)?;
            }
            Parsed::Manifest(m) => {
                let mut layers = Vec::new();
                for l in m.layers() {
                    let media_type = l.media_type().to_string();
                    if !is_layer_type(&media_type) {
                        return Err(bad(
                            image,
                            &digest,
                            format!("expected tar layers (plain, gzip or zstd); found media type {media_type:?}"),
                        ));
                    }
                    if l.urls().as_ref().is_some_and(|u| !u.is_empty()) {
                        return Err(bad(image, &digest, "foreign layers (with urls) are not supported"));
                    }
                    layers.push(Layer { digest: descriptor_digest(image, &digest, l)?, size: l.size() });
                }
                return Ok(OpenImage { image: image.clone(), manifest_digest: digest, layers });
            }
        }
    }
    Err(bad(image, top, "expected an image manifest within 4 nested indexes"))
}

/// Reads a file while hashing and counting its bytes.
#[derive(Debug)]
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), count: 0 }
    }

    /// The digest and length of everything read so far.
    pub(crate) fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

type Raw = BufReader<HashingReader<File>>;

/// The decompressor for a layer, chosen by the stream's first bytes (gzip, zstd or plain tar), so that a
/// mislabelled layer still reads.
pub(crate) enum Decoder {
    Plain(Raw),
    Gzip(Box<flate2::bufread::MultiGzDecoder<Raw>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, Raw>>),
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decoder::Plain(_) => "Decoder::Plain",
            Decoder::Gzip(_) => "Decoder::Gzip",
            Decoder::Zstd(_) => "Decoder::Zstd",
        })
    }
}

impl Read for Decoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

impl Decoder {
    fn into_raw(self) -> Raw {
        match self {
            Decoder::Plain(r) => r,
            Decoder::Gzip(r) => r.into_inner(),
            Decoder::Zstd(r) => r.finish(),
        }
    }
}

/// The layer an entry belongs to, for messages.
#[derive(Clone, Debug)]
pub(crate) struct LayerCtx {
    pub image: String,
    pub digest: Digest,
}

impl LayerCtx {
    /// An error about this layer's tar stream (long messages are cut: tar errors quote field bytes).
    pub(crate) fn malformed(&self, e: impl std::fmt::Display) -> ReleaseError {
        let mut m = e.to_string();
        if m.chars().count() > 160 {
            m = m.chars().take(160).collect::<String>() + "…";
        }
        ReleaseError::BadImage {
            reference: self.image.clone(),
            digest: self.digest.to_string(),
            message: format!("expected a tar layer; {m}"),
        }
    }

    /// An entry that must not be unpacked.
    pub(crate) fn unsafe_entry(&self, path: impl std::fmt::Display, reason: impl Into<String>) -> ReleaseError {
        ReleaseError::UnsafeEntry {
            reference: self.image.clone(),
            layer: self.digest.to_string(),
            path: path.to_string(),
            reason: reason.into(),
        }
    }
}

/// A layer being read: a tar stream over the decompressed, hashed blob.
pub(crate) struct LayerStream {
    pub image: String,
    pub digest: Digest,
    pub path: PathBuf,
    pub archive: tar::Archive<Decoder>,
}

impl std::fmt::Debug for LayerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerStream").field("image", &self.image).field("digest", &self.digest).finish()
    }
}

impl LayerStream {
    /// Opens the layer blob at `path`.
    pub(crate) fn open(image: &ImageRef, layer: &Layer, path: &Path) -> Result<LayerStream> {
        let f = File::open(path).map_err(|e| ReleaseError::read(path, e))?;
        let len = f.metadata().map_err(|e| ReleaseError::read(path, e))?.len();
        if len != layer.size {
            return Err(ReleaseError::BadImage {
                reference: image.tagged(),
                digest: layer.digest.to_string(),
                message: format!(
                    "expected {} bytes as the manifest says; found {len} in {}",
                    layer.size,
                    path.display()
                ),
            });
        }
        let mut raw = BufReader::with_capacity(256 << 10, HashingReader::new(f));
        let head = raw.fill_buf().map_err(|e| ReleaseError::read(path, e))?;
        let decoder = if head.starts_with(&[0x1f, 0x8b]) {
            Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(raw)))
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            let z = zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| ReleaseError::read(path, e))?;
            Decoder::Zstd(Box::new(z))
        } else {
            Decoder::Plain(raw)
        };
        Ok(LayerStream {
            image: image.tagged(),
            digest: layer.digest.clone(),
            path: path.to_owned(),
            archive: tar::Archive::new(decoder),
        })
    }

    /// Calls `f` for every entry of the layer, then checks the blob's digest and size. When anything fails,
    /// the rest of the blob is still read: a blob that does not match its digest is reported as that (the
    /// likely cause), not as whatever broke in the tar stream.
    pub(crate) fn for_each(
        mut self,
        expected_size: u64,
        mut f: impl FnMut(&LayerCtx, &mut tar::Entry<'_, Decoder>) -> Result<()>,
    ) -> Result<()> {
        let ctx = LayerCtx { image: self.image.clone(), digest: self.digest.clone() };
        let res = (|| -> Result<()> {
            let entries = self.archive.entries().map_err(|e| ctx.malformed(e))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| ctx.malformed(e))?;
                f(&ctx, &mut entry)?;
            }
            Ok(())
        })();
        match res {
            Ok(()) => self.finish(expected_size),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Drains the raw blob after a failure; a digest mismatch replaces `err`.
    fn fail(self, err: ReleaseError) -> ReleaseError {
        let LayerStream { image, digest, path, archive } = self;
        let mut raw = archive.into_inner().into_raw();
        let _ = io::copy(&mut raw, &mut io::sink());
        let (found, _) = raw.into_inner().finish();
        if found != digest {
            return ReleaseError::DigestMismatch {
                reference: image,
                expected: digest.to_string(),
                found: found.to_string(),
                from: Some(path),
            };
        }
        err
    }

    /// Reads what is left of the blob and checks its digest and size. Call after the last entry.
    fn finish(self, expected_size: u64) -> Result<()> {
        let LayerStream { image, digest, path, archive } = self;
        let mut decoder = archive.into_inner();
        let drained = io::copy(&mut decoder, &mut io::sink());
        let mut raw = decoder.into_raw();
        let rest = io::copy(&mut raw, &mut io::sink());
        let (found, len) = raw.into_inner().finish();
        if found != digest {
            return Err(ReleaseError::DigestMismatch {
                reference: image,
                expected: digest.to_string(),
                found: found.to_string(),
                from: Some(path),
            });
        }
        if let Err(e) = drained.and(rest) {
            return Err(ReleaseError::BadImage {
                reference: image,
                digest: digest.to_string(),
                message: format!("expected a complete compressed tar stream; {e}"),
            });
        }
        if len != expected_size {
            return Err(ReleaseError::BadImage {
                reference: image,
                digest: digest.to_string(),
                message: format!("expected {expected_size} bytes as the manifest says; found {len}"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> ImageRef {
        ImageRef::parse("ghcr.io/siderolabs/imager:v1.14.0").unwrap()
    }

    #[test]
    fn manifests_are_classified_and_malformed_ones_rejected() {
        let d = Digest::of(b"x");
        let idx = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":1,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b856","size":1,"platform":{"os":"unknown","architecture":"unknown"}}]}"#;
        let Parsed::Index(i) = parse_manifest(&img(), &d, idx).unwrap() else { panic!("not an index") };
        assert!(select_platform(&img(), &i, PlatformChoice::Exact("arm64")).is_ok());
        let e = select_platform(&img(), &i, PlatformChoice::Exact("amd64")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ghcr.io/siderolabs/imager:v1.14.0: expected an image for linux/amd64; found linux/arm64/v8, unknown/unknown"
        );
        // the catalogue takes the only real platform
        assert!(select_platform(&img(), &i, PlatformChoice::Prefer("amd64")).is_ok());

        for (bytes, want) in [
            (&b"{"[..], "expected a JSON manifest or index; found invalid JSON"),
            (br#"{"schemaVersion":1}"#, "expected schemaVersion 2; found 1"),
            (br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, "found media type \"text/plain\""),
            (br#"{"schemaVersion":2}"#, "expected an image index (manifests) or manifest (layers)"),
            (br#"{"schemaVersion":2,"layers":[{"digest":5}]}"#, "malformed image manifest"),
            (&b"\xff\xfe"[..], "invalid JSON"),
        ] {
            let e = parse_manifest(&img(), &d, bytes).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn layer_media_types() {
        assert!(is_layer_type("application/vnd.oci.image.layer.v1.tar+zstd"));
        assert!(is_layer_type("application/vnd.docker.image.rootfs.diff.tar.gzip"));
        assert!(!is_layer_type("application/vnd.oci.empty.v1+json"));
        assert!(!is_layer_type("application/vnd.oci.image.layer.v1.tar+lz4"));
    }
}
