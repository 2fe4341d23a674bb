//! The installer image archive (`installer-<arch>.tar`): an OCI image layout in a tar (what
//! `skopeo … oci-archive:<path>` reads), holding an image whose last layer is Talos's **artifacts layer** — the
//! boot assets the installer copies to the disk, at the paths of talos `pkg/imager/out.go` `outInstaller`
//! (v1.14.0-rc.1, unchanged since 1.10):
//!
//! - Talos ≥ 1.10, or Secure Boot: `usr/install/<arch>/systemd-boot.efi` and `usr/install/<arch>/vmlinuz.efi`
//!   (the UKI; `vmlinuz.efi.signed` for Secure Boot before 1.10);
//! - older without Secure Boot (GRUB installs): `usr/install/<arch>/vmlinuz` and `usr/install/<arch>/initramfs.xz`.
//!
//! Talos builds the image from `installer-base` (its first layer: the `installer` binary, GRUB, dosfstools,
//! mtools, xfsprogs, musl, CA certificates; entrypoint `/bin/installer`), copies the base's config, and appends the
//! artifacts layer (and an overlay layer for SBCs). A registry is not reachable here, so the base is an optional
//! input ([`BaseImage`]: pre-built layer blobs with their digests and the base config's `config` object). **Without
//! it the image holds only the artifacts layer**: no installer binary, no tools, no entrypoint, so it cannot run as
//! a Talos installer (`talosctl upgrade --image` and `machine.install.image` need the real base); it carries the
//! exact boot assets, digest-addressed.
//!
//! Differences from Talos, all for reproducibility: Talos writes a docker-save tarball (`tarball.WriteToFile`) with
//! config `created` = the build time; here it is an OCI layout with `created` = the epoch (RFC 3339, UTC), and no
//! `history`. The artifacts layer is a name-sorted ustar with only the files (no directory entries, as Talos),
//! uid/gid 0, no user/group names; where Talos leaves mode 0 and mtime 0 it has mode 0644 and mtime = epoch. The
//! layer is gzip level 6 (`flate2`, miniz_oxide backend, single-threaded, no name, mtime 0), so its digest depends
//! on the locked miniz_oxide version, never on the machine. The outer tar is name-sorted (`blobs/`,
//! `blobs/sha256/`, the blobs by digest, `index.json`, `oci-layout`), uid/gid 0, mtime = epoch, 0755 directories
//! and 0644 files. JSON is compact, with fixed field order. Written beside the output and renamed into place;
//! base blobs are streamed in and their digests verified on the way.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::atomic::{ScratchFile, TempOutput};
use super::disk::fat::civil_from_days;

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The annotation naming the image in an OCI layout (`skopeo … oci-archive:<path>:<name>`).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

const LAYER_GZIP_LEVEL: u32 = 6;
const COPY_BUFFER: usize = 1024 * 1024;

/// The boot assets of the artifacts layer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstallerArtifacts {
    /// systemd-boot and the UKI (Talos ≥ 1.10, or Secure Boot).
    SdBoot { systemd_boot: PathBuf, uki: PathBuf },
    /// The kernel and the initramfs (Talos < 1.10 without Secure Boot).
    Grub { kernel: PathBuf, initramfs: PathBuf },
}

/// A layer of the base image, as stored in a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseLayer {
    /// The layer blob (compressed, as pulled).
    pub blob: PathBuf,
    /// Its media type, e.g. [`MEDIA_TYPE_LAYER_GZIP`].
    pub media_type: String,
    /// `sha256:<hex>` of the blob; checked while the blob is copied.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed layer tar (taken as given).
    pub diff_id: String,
}

/// The base image (Talos's `installer-base`): its layers (Talos keeps only the first when there are two) and
/// the `config` object of its image config (`Entrypoint`, `Env`, `Labels`, …), copied as is.
#[derive(Clone, Debug, PartialEq)]
pub struct BaseImage {
    pub layers: Vec<BaseLayer>,
    pub config: Option<serde_json::Value>,
}

/// Everything the installer archive is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct InstallerSpec {
    /// `amd64` or `arm64`.
    pub arch: String,
    /// Talos version (`v1.14.0`): decides the artifact layout.
    pub version: String,
    pub secure_boot: bool,
    pub artifacts: InstallerArtifacts,
    /// The image's name in the layout (`org.opencontainers.image.ref.name`), e.g. the tag `v1.14.0`.
    pub ref_name: String,
    pub base: Option<BaseImage>,
    /// `SOURCE_DATE_EPOCH`: the config's `created` and every tar mtime.
    pub epoch: u64,
}

/// A blob's descriptor fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: String,
    pub size: u64,
}

/// What was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallerReport {
    /// Bytes of the archive.
    pub size: u64,
    pub manifest: BlobInfo,
    pub config: BlobInfo,
    pub artifacts_layer: BlobInfo,
    /// `sha256:<hex>` of the artifacts layer's uncompressed tar.
    pub artifacts_diff_id: String,
    /// Paths inside the artifacts layer, in tar order.
    pub artifact_paths: Vec<String>,
    /// Layers in the manifest (base layers + 1).
    pub layers: usize,
}

/// What can go wrong writing the archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    #[error("architecture {found:?} is not supported: expected amd64 or arm64")]
    UnsupportedArch { found: String },

    #[error("talos {version}{} installs {expected}: found {found}", if *.secure_boot { " with secure boot" } else { "" })]
    WrongArtifacts { version: String, secure_boot: bool, expected: &'static str, found: &'static str },

    #[error(
        "image name {found:?} is not a valid org.opencontainers.image.ref.name: expected components of letters and digits joined by '/', '-', '.', '_', ':', '@', '+'"
    )]
    InvalidRefName { found: String },

    #[error("base layer {} has digest {found}: expected {expected}", .blob.display())]
    DigestMismatch { blob: PathBuf, expected: String, found: String },

    #[error("base layer {field} {found:?} is not a digest: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest { field: &'static str, found: String },

    #[error("base image config must be a json object: found {found}")]
    InvalidBaseConfig { found: String },

    #[error("epoch {epoch} cannot be a tar mtime: expected at most 8589934591")]
    EpochOutOfRange { epoch: u64 },

    #[error("cannot {action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OciError {
    let path = path.to_owned();
    move |source| OciError::Io { action, path, source }
}

/// Whether Talos `version` (with or without Secure Boot) installs systemd-boot + UKI: quirk `UseSDBootForUEFI`
/// (≥ 1.10; an unparsable version counts as older there) or Secure Boot.
pub fn uses_sd_boot(version: &str, secure_boot: bool) -> bool {
    let v = version.strip_prefix('v').unwrap_or(version);
    let mut parts = v.split(['.', '-', '+']);
    let parsed = (|| Some((parts.next()?.parse::<u64>().ok()?, parts.next()?.parse::<u64>().ok()?)))();
    secure_boot || parsed.is_some_and(|mm| mm >= (1, 10))
}

/// The artifacts layer's files: `(path in the layer, source)`, sorted by path.
pub fn artifact_files(spec: &InstallerSpec) -> Result<Vec<(String, PathBuf)>, OciError> {
    let arch = spec.arch.as_str();
    if !matches!(arch, "amd64" | "arm64") {
        return Err(OciError::UnsupportedArch { found: spec.arch.clone() });
    }
    let sd_boot = uses_sd_boot(&spec.version, spec.secure_boot);
    let wrong = |expected, found| OciError::WrongArtifacts {
        version: spec.version.clone(),
        secure_boot: spec.secure_boot,
        expected,
        found,
    };
    let dir = format!("usr/install/{arch}");
    let mut files = match (&spec.artifacts, sd_boot) {
        (InstallerArtifacts::SdBoot { systemd_boot, uki }, true) => {
            let signed = if spec.secure_boot && !uses_sd_boot(&spec.version, false) { ".signed" } else { "" };
            vec![
                (format!("{dir}/systemd-boot.efi"), systemd_boot.clone()),
                (format!("{dir}/vmlinuz.efi{signed}"), uki.clone()),
            ]
        }
        (InstallerArtifacts::Grub { kernel, initramfs }, false) => {
            vec![(format!("{dir}/vmlinuz"), kernel.clone()), (format!("{dir}/initramfs.xz"), initramfs.clone())]
        }
        (InstallerArtifacts::SdBoot { .. }, false) => {
            return Err(wrong("a kernel and an initramfs", "systemd-boot and a uki"));
        }
        (InstallerArtifacts::Grub { .. }, true) => {
            return Err(wrong("systemd-boot and a uki", "a kernel and an initramfs"));
        }
    };
    files.sort();
    Ok(files)
}

/// `2023-11-14T22:13:20Z`.
pub fn rfc3339(epoch: u64) -> String {
    let (y, mo, d) = civil_from_days(epoch / 86_400);
    let s = epoch % 86_400;
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
}

/// OCI image-layout `ref.name` grammar: `component ("/" component)*`, `component = alnum+ (sep alnum+)*`,
/// `sep = [-._:@+] | "--"`.
fn valid_ref_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|component| {
            let bytes = component.as_bytes();
            let alnum = |b: u8| b.is_ascii_alphanumeric();
            let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else { return false };
            alnum(first)
                && alnum(last)
                && bytes.windows(2).all(|w| alnum(w[0]) || alnum(w[1]) || w == b"--")
                && bytes.iter().all(|&b| alnum(b) || b"-._:@+".contains(&b))
                && !component.contains("---")
        })
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    count: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing { inner, hash: Sha256::new(), count: 0 }
    }

    fn finish(self) -> (W, String, u64) {
        (self.inner, format!("sha256:{}", hex(&self.hash.finalize())), self.count)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let done = buf.get(..n).unwrap_or_default();
        self.hash.update(done);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// Yields exactly `remaining` bytes of `inner`, failing if it ends sooner: the tar crate pads a short entry
/// without complaint, which would corrupt the archive if a source file shrank while it was read.
struct Exact<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(buf.get_mut(..want).unwrap_or_default())?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was read"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn tar_header(size: u64, mode: u32, kind: tar::EntryType, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(kind);
    h
}

/// Writes the artifacts layer (gzip'd tar) to `sink`; returns (diff_id, blob digest, blob size).
fn write_artifacts_layer(
    files: &[(String, PathBuf)],
    epoch: u64,
    sink: &File,
    path: &Path,
) -> Result<(String, BlobInfo), OciError> {
    let blob = Hashing::new(BufWriter::with_capacity(COPY_BUFFER, sink));
    let gz =
        flate2::GzBuilder::new().mtime(0).operating_system(3).write(blob, flate2::Compression::new(LAYER_GZIP_LEVEL));
    let mut tar = tar::Builder::new(Hashing::new(gz));
    for (name, source) in files {
        let f = File::open(source).map_err(io_err("open", source))?;
        let size = f.metadata().map_err(io_err("read", source))?.len();
        let mut h = tar_header(size, 0o644, tar::EntryType::Regular, epoch);
        tar.append_data(&mut h, name, Exact { inner: f, remaining: size }).map_err(io_err("read", source))?;
    }
    let diff = tar.into_inner().map_err(io_err("write", path))?;
    let (gz, diff_id, _) = diff.finish();
    let blob = gz.finish().map_err(io_err("write", path))?;
    let (mut buf, digest, size) = blob.finish();
    buf.flush().map_err(io_err("write", path))?;
    Ok((diff_id, BlobInfo { digest, size }))
}

#[derive(Serialize)]
struct Descriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<Platform<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct Platform<'a> {
    architecture: &'a str,
    os: &'a str,
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    manifests: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    created: String,
    architecture: &'a str,
    os: &'a str,
    config: &'a serde_json::Value,
    rootfs: RootFs<'a>,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: Vec<&'a str>,
}

/// A blob of the archive: in memory, or a file (with the digest it must have).
enum Blob {
    Bytes(Vec<u8>),
    File { path: PathBuf, size: u64, verify: Option<String> },
}

/// Writes the installer archive at `out`.
pub fn write_installer(out: &Path, spec: &InstallerSpec) -> Result<InstallerReport, OciError> {
    let files = artifact_files(spec)?;
    if !valid_ref_name(&spec.ref_name) {
        return Err(OciError::InvalidRefName { found: spec.ref_name.clone() });
    }
    if spec.epoch > 0o77_777_777_777 {
        return Err(OciError::EpochOutOfRange { epoch: spec.epoch });
    }
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let base_layers = spec.base.as_ref().map(|b| b.layers.as_slice()).unwrap_or_default();
    let base_config = spec.base.as_ref().and_then(|b| b.config.as_ref()).unwrap_or(&empty);
    if !base_config.is_object() {
        return Err(OciError::InvalidBaseConfig { found: base_config.to_string().chars().take(80).collect() });
    }
    for l in base_layers {
        for (field, value) in [("digest", &l.digest), ("diff_id", &l.diff_id)] {
            if !valid_digest(value) {
                return Err(OciError::InvalidDigest { field, found: value.clone() });
            }
        }
    }

    // The artifacts layer, into a scratch file beside the output.
    let layer_file = ScratchFile::create(out, "layer").map_err(io_err("create a scratch file beside", out))?;
    let (diff_id, layer) = write_artifacts_layer(&files, spec.epoch, layer_file.file(), layer_file.path())?;

    let mut blobs: BTreeMap<String, Blob> = BTreeMap::new();
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in base_layers {
        let size = std::fs::metadata(&l.blob).map_err(io_err("read", &l.blob))?.len();
        layer_descs.push((l.media_type.as_str(), l.digest.clone(), size));
        diff_ids.push(l.diff_id.as_str());
        blobs.insert(l.digest.clone(), Blob::File { path: l.blob.clone(), size, verify: Some(l.digest.clone()) });
    }
    layer_descs.push((MEDIA_TYPE_LAYER_GZIP, layer.digest.clone(), layer.size));
    diff_ids.push(&diff_id);
    blobs.insert(
        layer.digest.clone(),
        Blob::File { path: layer_file.path().to_owned(), size: layer.size, verify: None },
    );

    let config_json = serde_json::to_vec(&ImageConfig {
        created: rfc3339(spec.epoch),
        architecture: &spec.arch,
        os: "linux",
        config: base_config,
        rootfs: RootFs { kind: "layers", diff_ids },
    })
    .map_err(|e| io_err("encode the image config for", out)(e.into()))?;
    let config =
        BlobInfo { digest: format!("sha256:{}", hex(&Sha256::digest(&config_json))), size: config_json.len() as u64 };

    let descriptor = |media_type, digest, size| Descriptor {
        media_type,
        digest,
        size,
        platform: None,
        annotations: BTreeMap::new(),
    };
    let manifest_json = serde_json::to_vec(&Manifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_MANIFEST,
        config: descriptor(MEDIA_TYPE_CONFIG, &config.digest, config.size),
        layers: layer_descs.iter().map(|(m, d, s)| descriptor(m, d, *s)).collect(),
    })
    .map_err(|e| io_err("encode the manifest for", out)(e.into()))?;
    let manifest = BlobInfo {
        digest: format!("sha256:{}", hex(&Sha256::digest(&manifest_json))),
        size: manifest_json.len() as u64,
    };
    let index_json = serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: MEDIA_TYPE_INDEX,
        manifests: vec![Descriptor {
            media_type: MEDIA_TYPE_MANIFEST,
            digest: &manifest.digest,
            size: manifest.size,
            platform: Some(Platform { architecture: &spec.arch, os: "linux" }),
            annotations: BTreeMap::from([(REF_NAME_ANNOTATION, spec.ref_name.as_str())]),
        }],
    })
    .map_err(|e| io_err("encode the index for", out)(e.into()))?;
    blobs.insert(config.digest.clone(), Blob::Bytes(config_json));
    blobs.insert(manifest.digest.clone(), Blob::Bytes(manifest_json));

    // The archive: name-sorted.
    let tmp = TempOutput::create(out).map_err(io_err("create", out))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(COPY_BUFFER, tmp.file()));
    let write_err = io_err("write", out);
    let dir = |tar: &mut tar::Builder<_>, name: &str| {
        let mut h = tar_header(0, 0o755, tar::EntryType::Directory, spec.epoch);
        tar.append_data(&mut h, name, io::empty())
    };
    dir(&mut tar, "blobs/").map_err(io_err("write", out))?;
    dir(&mut tar, "blobs/sha256/").map_err(io_err("write", out))?;
    for (digest, blob) in &blobs {
        let name = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        match blob {
            Blob::Bytes(b) => {
                let mut h = tar_header(b.len() as u64, 0o644, tar::EntryType::Regular, spec.epoch);
                tar.append_data(&mut h, &name, b.as_slice()).map_err(io_err("write", out))?;
            }
            Blob::File { path, size, verify } => {
                let f = File::open(path).map_err(io_err("open", path))?;
                let mut reader = HashingReader { inner: Exact { inner: f, remaining: *size }, hash: Sha256::new() };
                let mut h = tar_header(*size, 0o644, tar::EntryType::Regular, spec.epoch);
                tar.append_data(&mut h, &name, &mut reader).map_err(io_err("read", path))?;
                let found = format!("sha256:{}", hex(&reader.hash.finalize()));
                if let Some(expected) = verify
                    && &found != expected
                {
                    return Err(OciError::DigestMismatch { blob: path.clone(), expected: expected.clone(), found });
                }
            }
        }
    }
    for (name, bytes) in
        [("index.json", index_json.as_slice()), ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.as_slice())]
    {
        let mut h = tar_header(bytes.len() as u64, 0o644, tar::EntryType::Regular, spec.epoch);
        tar.append_data(&mut h, name, bytes).map_err(io_err("write", out))?;
    }
    let mut buf = tar.into_inner().map_err(io_err("write", out))?;
    buf.flush().map_err(write_err)?;
    drop(buf);
    let size = tmp.file().metadata().map_err(io_err("read", tmp.path()))?.len();
    tmp.commit().map_err(io_err("write", out))?;
    Ok(InstallerReport {
        size,
        manifest,
        config,
        artifacts_layer: layer,
        artifacts_diff_id: diff_id.clone(),
        artifact_paths: files.into_iter().map(|(p, _)| p).collect(),
        layers: base_layers.len() + 1,
    })
}
