//! Talos release inputs: where a release comes from, getting it, and pinning it.
//!
//! For the builder a release is the tree `usr/install/<arch>/{vmlinuz, initramfs.xz, systemd-boot.efi,
//! systemd-stub.efi}` plus extension directories (`manifest.yaml` + `rootfs/`). [`fetch_release`] produces
//! that from one of three sources ([`ReleaseSource`], the cluster file's `talos.source`):
//!
//! - **registry** (default `ghcr.io/siderolabs`): the image `<prefix>/imager:<talos tag>` (a multi-platform
//!   index, narrowed to `linux/<arch>`) gives the four boot files, reading only the layers needed; official
//!   extension names resolve through the catalogue `<prefix>/extensions:<talos tag>`; everything goes through
//!   the content-addressed [`Cache`];
//! - **OCI layout**: the same images from a local `oci-layout` directory, no network;
//! - **directory**: a plain directory already in the release layout (the fixture release), extensions
//!   under `extensions/<name>/`.
//!
//! Every image digest used is pinned in [`Lock`] (`talforge.lock`, next to the cluster file). A pin is reused
//! while its image reference is unchanged; when the source now serves another digest for it, that is an
//! error ([`ReleaseError::LockMismatch`]) unless the caller asks to update the lock. Offline, nothing touches
//! the network: every digest comes from the lock and every blob from the cache.
//!
//! Extension references ([`ExtensionRef::parse`]):
//! - `./x`, `../x`, `/x`: a local extension directory (relative to the cluster file's directory);
//! - `host/repo:tag`, `host/repo@sha256:…`, `host/repo:tag@sha256:…` (the first component has a `.` or `:`
//!   or is `localhost`): that image, from its registry (from the layout for an OCI-layout source); a digest in
//!   the reference is the pin;
//! - `<namespace>/<name>` (`siderolabs/gvisor`): an official extension, resolved through the catalogue of the
//!   release's Talos version (renamed extensions are found under their old names too); for a directory
//!   source, `extensions/<name>/` of the directory.

pub mod cache;
pub mod catalog;
pub mod dir;
pub mod error;
mod layout;
pub mod lock;
mod oci;
pub mod reference;
pub mod registry;
mod unpack;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use cache::Cache;
pub use dir::{Blob, INITRAMFS, KERNEL, Release, SD_BOOT, SD_STUB, hex, sha256_hex};
pub use error::{ReleaseError, ReleaseErrorClass, Result};
pub use lock::{Lock, Pin};
pub use reference::{Digest, ImageRef};

use catalog::Catalog;
use oci::{PlatformChoice, Store, open_image};

/// The default registry prefix: where Sidero Labs publishes `imager`, `extensions` and the extension images.
pub const DEFAULT_REGISTRY: &str = "ghcr.io/siderolabs";

/// The four files the builder takes from a release, per architecture.
pub const BOOT_FILES: [&str; 4] = [KERNEL, INITRAMFS, SD_BOOT, SD_STUB];

/// Where a release comes from (the cluster file's `talos.source`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseSource {
    /// A registry prefix holding `imager`, `extensions` and the extension images: `host[/path]`.
    Registry(String),
    /// A local OCI image layout directory.
    OciLayout(PathBuf),
    /// A plain directory in the release layout.
    Dir(PathBuf),
}

impl Default for ReleaseSource {
    fn default() -> Self {
        ReleaseSource::Registry(DEFAULT_REGISTRY.to_owned())
    }
}

fn check_prefix(prefix: &str) -> Result<()> {
    let bad = |m: String| ReleaseError::InvalidSource { message: format!("registry {prefix:?}: {m}") };
    if prefix.contains('@') || prefix.ends_with('/') {
        return Err(bad("expected host[/path] without tag, digest or trailing slash".into()));
    }
    let probe = format!("{prefix}/imager:v0");
    let r = ImageRef::parse(&probe).map_err(bad)?;
    if r.tag.as_deref() != Some("v0") {
        return Err(bad("expected host[/path] without a tag".into()));
    }
    Ok(())
}

impl ReleaseSource {
    /// The source the cluster file's `talos.source` fields describe; relative paths are resolved against
    /// `base` (the cluster file's directory). No field means the default registry; more than one is an error.
    pub fn from_spec(
        registry: Option<&str>,
        oci_layout: Option<&Path>,
        dir: Option<&Path>,
        base: &Path,
    ) -> Result<ReleaseSource> {
        match (registry, oci_layout, dir) {
            (None, None, None) => Ok(ReleaseSource::default()),
            (Some(r), None, None) => {
                check_prefix(r)?;
                Ok(ReleaseSource::Registry(r.to_owned()))
            }
            (None, Some(p), None) => Ok(ReleaseSource::OciLayout(base.join(p))),
            (None, None, Some(p)) => Ok(ReleaseSource::Dir(base.join(p))),
            _ => Err(ReleaseError::InvalidSource {
                message: "expected exactly one of talos.source.registry, ociLayout, dir; found several".into(),
            }),
        }
    }

    /// The value of `--release DIR|REF`: an existing directory with an `oci-layout` file is an OCI layout,
    /// another existing directory or anything written as a path (`/`, `./`, `../`) is a release directory,
    /// anything else a registry prefix.
    pub fn from_cli(value: &str, cwd: &Path) -> Result<ReleaseSource> {
        let p = cwd.join(value);
        let pathlike = value.starts_with('/') || value.starts_with("./") || value.starts_with("../");
        if p.is_dir() || pathlike {
            if p.join("oci-layout").is_file() {
                return Ok(ReleaseSource::OciLayout(p));
            }
            return Ok(ReleaseSource::Dir(p));
        }
        check_prefix(value)?;
        Ok(ReleaseSource::Registry(value.to_owned()))
    }
}

impl std::fmt::Display for ReleaseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReleaseSource::Registry(r) => write!(f, "registry {r}"),
            ReleaseSource::OciLayout(p) => write!(f, "OCI layout {}", p.display()),
            ReleaseSource::Dir(p) => write!(f, "directory {}", p.display()),
        }
    }
}

/// An extension as the cluster file or a profile names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExtensionRef {
    /// `<namespace>/<name>`, resolved through the release's catalogue.
    Catalog(String),
    /// A full image reference.
    Image(ImageRef),
    /// A local extension directory.
    Path(PathBuf),
}

impl ExtensionRef {
    /// Parses a reference (the rules are in the module documentation).
    pub fn parse(s: &str) -> Result<ExtensionRef> {
        let invalid = |m: String| ReleaseError::InvalidReference { reference: s.to_owned(), message: m };
        if s.starts_with('/') || s.starts_with("./") || s.starts_with("../") || s == "." || s == ".." {
            return Ok(ExtensionRef::Path(PathBuf::from(s)));
        }
        let first = s.split('/').next().unwrap_or_default();
        if s.contains('/') && reference::looks_like_host(first) {
            return ImageRef::parse(s).map(ExtensionRef::Image).map_err(invalid);
        }
        let parts: Vec<&str> = s.split('/').collect();
        if s.contains(':') || s.contains('@') {
            return Err(invalid(
                "an extension name has no tag or digest (the catalogue pins the version); to pin one yourself, \
                 write a full reference with the registry host, e.g. ghcr.io/siderolabs/<name>:<version>"
                    .into(),
            ));
        }
        match parts.as_slice() {
            [ns, name]
                if reference::ImageRef::parse(&format!("x.invalid/{ns}/{name}@sha256:{}", "0".repeat(64))).is_ok() =>
            {
                Ok(ExtensionRef::Catalog(s.to_owned()))
            }
            [name] => Err(invalid(format!(
                "expected <namespace>/<name> (e.g. siderolabs/{name}), a full image reference or a path (./dir)"
            ))),
            _ => Err(invalid(
                "expected <namespace>/<name> with lowercase letters, digits and . _ -, a full image reference \
                 (host/repo:tag) or a path (./dir)"
                    .into(),
            )),
        }
    }
}

/// What to fetch.
#[derive(Clone, Debug)]
pub struct ReleaseRequest {
    pub source: ReleaseSource,
    /// The Talos image tag: `v1.14.0`, `v1.14.0-rc.1` (a missing leading `v` is added).
    pub talos_version: String,
    /// `amd64` or `arm64`.
    pub arch: String,
    /// Extension references as written (the keys of [`Release::extensions`] and of the lock).
    pub extensions: Vec<String>,
    /// The directory relative extension paths are resolved against (the cluster file's).
    pub base_dir: PathBuf,
}

/// How to fetch.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    pub cache: Cache,
    /// `talforge.lock` to read and write (none: nothing pinned or recorded).
    pub lock_path: Option<PathBuf>,
    /// Never touch the network: digests from the lock, blobs from the cache.
    pub offline: bool,
    /// Accept what the source serves now and rewrite the lock, instead of reporting a mismatch.
    pub update_lock: bool,
    /// Bound on connecting, on each read, and on each manifest request (default 30 s).
    pub timeout: Duration,
    /// Registries (`host[:port]`) spoken to over plain HTTP besides loopback ones.
    pub plain_http: Vec<String>,
    /// Use HTTPS for loopback registries too (by default they get plain HTTP, as Docker does).
    pub https_on_loopback: bool,
    /// PEM files with CA certificates to trust besides the system's (a private registry's CA).
    pub extra_ca_certs: Vec<PathBuf>,
}

impl FetchOptions {
    /// Online, no lock, 30 s timeout.
    pub fn new(cache: Cache) -> FetchOptions {
        FetchOptions {
            cache,
            lock_path: None,
            offline: false,
            update_lock: false,
            timeout: Duration::from_secs(30),
            plain_http: Vec::new(),
            https_on_loopback: false,
            extra_ca_certs: Vec::new(),
        }
    }
}

/// Where `talforge.lock` goes for a cluster file.
pub fn lock_path_for(cluster_file: &Path) -> PathBuf {
    cluster_file.parent().unwrap_or(Path::new(".")).join(lock::FILE_NAME)
}

/// What a fetch did over the network and in the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Manifests and indexes requested from registries (tag resolutions included).
    pub manifests_fetched: u32,
    /// Blobs downloaded into the cache.
    pub blobs_downloaded: u32,
    pub bytes_downloaded: u64,
    /// Manifests and blobs found in the cache.
    pub from_cache: u32,
}

/// One requested extension, resolved to a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedExtension {
    /// The reference as written.
    pub reference: String,
    /// `metadata.name` and `metadata.version` of its `manifest.yaml`.
    pub name: String,
    pub version: String,
    /// The directory holding `manifest.yaml` and `rootfs/`.
    pub dir: PathBuf,
    /// The image it came from (without digest) and the pinned digest; none for directories.
    pub image: Option<String>,
    pub digest: Option<Digest>,
}

/// A fetched release.
#[derive(Clone, Debug)]
pub struct FetchedRelease {
    /// The boot files (in the cache or the release directory) and the extensions by reference.
    pub release: Release,
    /// The requested extensions, in request order.
    pub extensions: Vec<ResolvedExtension>,
    /// The pins of this fetch (none when nothing came from an image).
    pub lock: Option<Lock>,
    /// Whether the lock file was (re)written.
    pub lock_written: bool,
    pub stats: FetchStats,
}

/// Gets a release's boot files and extensions (blocking: runs its own runtime when a registry is used; do
/// not call it from inside an async runtime).
pub fn fetch_release(req: &ReleaseRequest, opts: &FetchOptions) -> Result<FetchedRelease> {
    let tag =
        if req.talos_version.starts_with('v') { req.talos_version.clone() } else { format!("v{}", req.talos_version) };
    if !reference::valid_tag(&tag) {
        return Err(ReleaseError::InvalidReference {
            reference: req.talos_version.clone(),
            message: "expected a Talos version such as v1.14.0".into(),
        });
    }
    if !matches!(req.arch.as_str(), "amd64" | "arm64") {
        return Err(ReleaseError::InvalidSource {
            message: format!("expected arch amd64 or arm64; found {:?}", req.arch),
        });
    }
    let refs = req.extensions.iter().map(|s| ExtensionRef::parse(s)).collect::<Result<Vec<_>>>()?;
    let old = match &opts.lock_path {
        Some(p) => Lock::read(p)?,
        None => None,
    };
    opts.cache.clean_stale_temp();
    let mut f = Fetcher {
        req,
        opts,
        tag: tag.clone(),
        old: old.clone().unwrap_or_default(),
        new: Lock::new(&tag),
        registry: registry::RegistryStore::new(opts),
        layout: None,
        catalog: None,
    };
    if let ReleaseSource::OciLayout(dir) = &req.source {
        f.layout = Some(layout::LayoutStore::open(dir)?);
    }
    let mut release = match &req.source {
        ReleaseSource::Dir(dir) => Release::open_dir(dir, &req.arch)?,
        ReleaseSource::Registry(prefix) => f.imager(prefix.clone())?,
        ReleaseSource::OciLayout(_) => f.imager(DEFAULT_REGISTRY.to_owned())?,
    };
    let mut extensions = Vec::new();
    for (written, r) in req.extensions.iter().zip(&refs) {
        let ext = f.extension(written, r, &release)?;
        release.extensions.insert(written.clone(), ext.dir.clone());
        extensions.push(ext);
    }
    let stats = f.registry.stats;
    let new = f.new;
    let mut lock_written = false;
    if let Some(path) = &opts.lock_path
        && !opts.offline
        && !new.is_empty()
        && old.as_ref() != Some(&new)
    {
        new.write(path)?;
        lock_written = true;
    }
    Ok(FetchedRelease { release, extensions, lock: (!new.is_empty()).then_some(new), lock_written, stats })
}

struct Fetcher<'a> {
    req: &'a ReleaseRequest,
    opts: &'a FetchOptions,
    tag: String,
    old: Lock,
    new: Lock,
    registry: registry::RegistryStore<'a>,
    layout: Option<layout::LayoutStore>,
    catalog: Option<(ImageRef, Catalog)>,
}

impl Fetcher<'_> {
    /// The store images of this source come from.
    fn store(&mut self) -> &mut dyn Store {
        match &mut self.layout {
            Some(l) => l,
            None => &mut self.registry,
        }
    }

    /// The digest to use for `image`: its own digest, else the lock's pin checked against the source (or the
    /// lock's pin alone, offline).
    fn pin(&mut self, image: &ImageRef, locked: Option<Pin>) -> Result<Digest> {
        if let Some(d) = &image.digest {
            return Ok(d.clone());
        }
        let locked = locked.filter(|p| p.image == image.without_digest()).map(|p| p.digest);
        if self.opts.offline && self.layout.is_none() {
            return locked.ok_or_else(|| ReleaseError::OfflineNotLocked {
                reference: image.to_string(),
                lock: self.opts.lock_path.clone().unwrap_or_else(|| PathBuf::from(lock::FILE_NAME)),
            });
        }
        let found = self.store().resolve_tag(image)?;
        match locked {
            Some(l) if l != found && !self.opts.update_lock => Err(ReleaseError::LockMismatch {
                reference: image.to_string(),
                locked: l.to_string(),
                found: found.to_string(),
            }),
            _ => Ok(found),
        }
    }

    /// The boot files from `<prefix>/imager:<tag>`, extracted into the cache once per manifest and arch.
    fn imager(&mut self, prefix: String) -> Result<Release> {
        let image = parse_ref(&format!("{prefix}/imager:{}", self.tag))?;
        let top = self.pin(&image, self.old.imager.clone())?;
        self.new.imager = Some(Pin { image: image.without_digest(), digest: top.clone() });
        let arch = self.req.arch.clone();
        let img = open_image(self.store(), &image, &top, PlatformChoice::Exact(&arch))?;
        let cache = self.opts.cache.clone();
        let tree = cache.tree_path(&img.manifest_digest);
        let arch_dir = tree.join("usr/install").join(&arch);
        if !arch_dir.is_dir() {
            let tmp = cache.temp_dir("imager")?;
            let wanted: Vec<String> = BOOT_FILES.iter().map(|f| format!("usr/install/{arch}/{f}")).collect();
            let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
            unpack::extract_files(self.store(), &img, &wanted, &tmp.path)?;
            cache.commit_dir(tmp, &arch_dir)?;
        }
        Release::open_dir(&tree, &arch)
    }

    /// The catalogue of this release (pinned and parsed once).
    fn catalog(&mut self) -> Result<(ImageRef, Catalog)> {
        if let Some(c) = &self.catalog {
            return Ok(c.clone());
        }
        let prefix = match &self.req.source {
            ReleaseSource::Registry(p) => p.clone(),
            _ => DEFAULT_REGISTRY.to_owned(),
        };
        let image = parse_ref(&format!("{prefix}/extensions:{}", self.tag))?;
        let top = self.pin(&image, self.old.catalog.clone())?;
        self.new.catalog = Some(Pin { image: image.without_digest(), digest: top.clone() });
        let arch = self.req.arch.clone();
        let img = open_image(self.store(), &image, &top, PlatformChoice::Prefer(&arch))?;
        let cache = self.opts.cache.clone();
        let tree = cache.tree_path(&img.manifest_digest);
        let file = tree.join(catalog::IMAGE_DIGESTS);
        if !file.is_file() {
            let tmp = cache.temp_dir("catalog")?;
            unpack::extract_files(self.store(), &img, &[catalog::IMAGE_DIGESTS], &tmp.path)?;
            cache.commit_dir(tmp, &tree)?;
        }
        let text = std::fs::read_to_string(&file).map_err(|e| ReleaseError::read(&file, e))?;
        let cat = Catalog::parse(&text).map_err(|message| ReleaseError::BadImage {
            reference: image.tagged(),
            digest: top.to_string(),
            message,
        })?;
        self.catalog = Some((image.clone(), cat.clone()));
        Ok((image, cat))
    }

    fn extension(&mut self, written: &str, r: &ExtensionRef, release: &Release) -> Result<ResolvedExtension> {
        let (dir, image, digest) = match r {
            ExtensionRef::Path(p) => {
                let dir = self.req.base_dir.join(p);
                if !dir.is_dir() {
                    return Err(ReleaseError::ExtensionNotFound {
                        reference: written.to_owned(),
                        place: format!("{} (no such directory)", dir.display()),
                    });
                }
                (dir, None, None)
            }
            ExtensionRef::Catalog(name) if matches!(self.req.source, ReleaseSource::Dir(_)) => {
                let dir = release.find_extension(name, &self.req.base_dir).ok_or_else(|| {
                    // The directory's own extensions (keys with a `/` are references resolved before this one).
                    let known: Vec<&str> =
                        release.extensions.keys().map(String::as_str).filter(|k| !k.contains('/')).collect();
                    ReleaseError::ExtensionNotFound {
                        reference: written.to_owned(),
                        place: format!(
                            "{}; known: {}",
                            release.root.join("extensions").display(),
                            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                        ),
                    }
                })?;
                (dir, None, None)
            }
            ExtensionRef::Catalog(name) => {
                let (cat_ref, cat) = self.catalog()?;
                let entry = cat.find(name).ok_or_else(|| ReleaseError::ExtensionNotFound {
                    reference: written.to_owned(),
                    place: format!("the catalogue {} ({} extensions)", cat_ref.tagged(), cat.entries.len()),
                })?;
                let pull = match &self.req.source {
                    ReleaseSource::Registry(prefix) => catalog::rehome(entry, prefix),
                    _ => entry.clone(),
                };
                let digest = entry.digest.clone().ok_or_else(|| ReleaseError::BadImage {
                    reference: cat_ref.tagged(),
                    digest: String::new(),
                    message: format!("expected a digest for {name}"),
                })?;
                if let Some(p) = self.old.extensions.get(written)
                    && p.image == pull.without_digest()
                    && p.digest != digest
                    && !self.opts.update_lock
                {
                    return Err(ReleaseError::LockMismatch {
                        reference: pull.without_digest(),
                        locked: p.digest.to_string(),
                        found: digest.to_string(),
                    });
                }
                let dir = self.extension_tree(&pull, &digest)?;
                (dir, Some(pull.without_digest()), Some(digest))
            }
            ExtensionRef::Image(image) => {
                let digest = self.pin(image, self.old.extensions.get(written).cloned())?;
                let dir = self.extension_tree(image, &digest)?;
                (dir, Some(image.without_digest()), Some(digest))
            }
        };
        if let (Some(image), Some(digest)) = (&image, &digest) {
            self.new.extensions.insert(written.to_owned(), Pin { image: image.clone(), digest: digest.clone() });
        }
        let (name, version) = check_extension_dir(&dir, written)?;
        Ok(ResolvedExtension { reference: written.to_owned(), name, version, dir, image, digest })
    }

    /// The unpacked extension image, in the cache once per manifest.
    fn extension_tree(&mut self, image: &ImageRef, digest: &Digest) -> Result<PathBuf> {
        let arch = self.req.arch.clone();
        // (not `self.store()`: the cache is used while the store is borrowed)
        let store: &mut dyn Store = match &mut self.layout {
            Some(l) => l,
            None => &mut self.registry,
        };
        let img = open_image(store, image, digest, PlatformChoice::Exact(&arch))?;
        let tree = self.opts.cache.tree_path(&img.manifest_digest);
        if !tree.is_dir() {
            let tmp = self.opts.cache.temp_dir("extension")?;
            unpack::unpack_image(store, &img, &tmp.path)?;
            check_extension(&tmp.path, Path::new("manifest.yaml"), &image.tagged())?;
            self.opts.cache.commit_dir(tmp, &tree)?;
        }
        Ok(tree)
    }
}

fn parse_ref(s: &str) -> Result<ImageRef> {
    ImageRef::parse(s).map_err(|message| ReleaseError::InvalidReference { reference: s.to_owned(), message })
}

/// Checks that `dir` is a Talos extension (exactly `manifest.yaml` and `rootfs/`, as Talos's loader
/// requires, with `version: v1alpha1` and the metadata the builder reads) and returns its `metadata.name` and
/// `metadata.version`. Manifest errors name the file, line, column and field.
pub fn check_extension_dir(dir: &Path, reference: &str) -> Result<(String, String)> {
    check_extension(dir, &dir.join("manifest.yaml"), reference)
}

/// The error for an extension whose `metadata.compatibility.talos.version` excludes the Talos version being
/// built, located at that field of its `manifest.yaml` (named as [`check_extension`] names it).
pub fn incompatible_extension(e: &ResolvedExtension, message: String) -> ReleaseError {
    use crate::error::Diagnostic;
    use crate::yaml::FieldPath;
    let manifest = e.dir.join("manifest.yaml");
    let shown = if e.image.is_some() { PathBuf::from("manifest.yaml") } else { manifest.clone() };
    let field = FieldPath::root().key("metadata").key("compatibility").key("talos").key("version");
    let located = match std::fs::read_to_string(&manifest).ok().and_then(|t| crate::yaml::parse_document(&t).ok()) {
        Some(doc) => Diagnostic::at_path(&shown, &doc, field, message).to_string(),
        None => format!("{}: {message}", shown.display()),
    };
    ReleaseError::BadExtension { reference: e.image.clone().unwrap_or_else(|| e.reference.clone()), message: located }
}

/// [`check_extension_dir`], naming the manifest `shown` in errors (an unpacked image's temp folder is gone by
/// the time the user reads the message; the reference says where it came from).
fn check_extension(dir: &Path, shown: &Path, reference: &str) -> Result<(String, String)> {
    use crate::error::Diagnostic;
    use crate::yaml::{FieldPath, Value};
    let bad = |m: String| ReleaseError::BadExtension { reference: reference.to_owned(), message: m };
    let rd = std::fs::read_dir(dir).map_err(|e| ReleaseError::read(dir, e))?;
    let mut names = Vec::new();
    for e in rd {
        let e = e.map_err(|e| ReleaseError::read(dir, e))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let manifest = dir.join("manifest.yaml");
    let rootfs_ok = std::fs::symlink_metadata(dir.join("rootfs")).is_ok_and(|m| m.is_dir());
    let manifest_ok = std::fs::symlink_metadata(&manifest).is_ok_and(|m| m.is_file());
    if names != ["manifest.yaml", "rootfs"] || !rootfs_ok || !manifest_ok {
        return Err(bad(format!(
            "expected exactly manifest.yaml (a file) and rootfs/ (a directory) at the top; found {}",
            if names.is_empty() { "nothing".to_owned() } else { names.join(", ") }
        )));
    }
    let text = std::fs::read_to_string(&manifest).map_err(|e| ReleaseError::read(&manifest, e))?;
    let doc = crate::yaml::parse_document(&text).map_err(|e| {
        bad(Diagnostic::new(shown, e.span, FieldPath::root(), format!("invalid YAML: {}", e.message)).to_string())
    })?;
    // A required scalar field, as text; a missing or empty one is reported at its nearest existing parent.
    let field = |path: FieldPath, what: &str| -> Result<String> {
        let located = |m: String| bad(Diagnostic::at_path(shown, &doc, path.clone(), m).to_string());
        let mut n = Some(&doc);
        for seg in &path.0 {
            n = match (seg, n) {
                (crate::yaml::PathSeg::Key(k), Some(node)) => node.as_map().and_then(|m| m.get(k)),
                _ => None,
            };
        }
        let Some(n) = n.filter(|n| !matches!(n.value, Value::Null)) else {
            return Err(located(format!("expected {what}; found none")));
        };
        let s = match &n.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            Value::Float(f) => f.to_string(),
            _ => return Err(located(format!("expected {what} (a string); found {}", n.kind_name()))),
        };
        if s.trim().is_empty() {
            return Err(located(format!("expected {what}; found an empty string")));
        }
        Ok(s)
    };
    let root = FieldPath::root();
    let version = field(root.key("version"), "v1alpha1")?;
    if version != "v1alpha1" {
        return Err(bad(Diagnostic::at_path(
            shown,
            &doc,
            root.key("version"),
            format!("expected v1alpha1; found {version:?}"),
        )
        .to_string()));
    }
    let meta = root.key("metadata");
    let name = field(meta.key("name"), "the extension's name")?;
    let version = field(meta.key("version"), "the extension's version")?;
    field(meta.key("author"), "the extension's author")?;
    field(meta.key("description"), "a description of the extension")?;
    Ok((name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_refs() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            ExtensionRef::parse("siderolabs/gvisor").unwrap(),
            ExtensionRef::Catalog("siderolabs/gvisor".into())
        );
        assert_eq!(ExtensionRef::parse("./ext/x").unwrap(), ExtensionRef::Path("./ext/x".into()));
        assert_eq!(ExtensionRef::parse("/abs/x").unwrap(), ExtensionRef::Path("/abs/x".into()));
        assert!(matches!(ExtensionRef::parse("ghcr.io/siderolabs/gvisor:1.0").unwrap(), ExtensionRef::Image(_)));
        assert!(matches!(ExtensionRef::parse(&format!("localhost:5000/x@{d}")).unwrap(), ExtensionRef::Image(_)));
        for (bad, msg) in [
            ("gvisor", "expected <namespace>/<name> (e.g. siderolabs/gvisor)"),
            ("siderolabs/gvisor:1.0", "an extension name has no tag or digest"),
            ("Siderolabs/gvisor", "expected <namespace>/<name> with lowercase"),
            ("a/b/c", "expected <namespace>/<name> with lowercase"),
            ("ghcr.io/siderolabs/gvisor", "expected a tag or a digest"),
        ] {
            let e = ExtensionRef::parse(bad).unwrap_err();
            assert!(e.to_string().contains(msg), "{bad}: {e}");
            assert_eq!(e.class(), ReleaseErrorClass::BadInput);
        }
    }

    #[test]
    fn extension_manifest_errors_are_located() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("rootfs")).unwrap();
        let meta = "metadata:\n  name: x\n  version: \"1\"\n  author: a\n  description: d\n";
        let check = |text: &str| {
            std::fs::write(t.path().join("manifest.yaml"), text).unwrap();
            check_extension_dir(t.path(), "ns/x").map_err(|e| e.to_string())
        };
        let m = t.path().join("manifest.yaml").display().to_string();
        assert_eq!(check(&format!("version: v1alpha1\n{meta}")), Ok(("x".into(), "1".into())));
        assert_eq!(
            check(&format!("version: v1\n{meta}")),
            Err(format!("extension ns/x: {m}:1:10: version: expected v1alpha1; found \"v1\""))
        );
        assert_eq!(
            check("version: v1alpha1\nmetadata:\n  name: [x]\n"),
            Err(format!(
                "extension ns/x: {m}:3:9: metadata.name: expected the extension's name (a string); found a list"
            ))
        );
        assert_eq!(
            check("version: v1alpha1\nmetadata:\n  name: x\n  version: \"1\"\n  description: d\n"),
            Err(format!("extension ns/x: {m}:3:3: metadata.author: expected the extension's author; found none"))
        );
        assert_eq!(
            check("version: v1alpha1\nmetadata: {name: x\n"),
            Err(format!("extension ns/x: {m}:2:11: invalid YAML: unclosed bracket '{{'"))
        );
    }

    #[test]
    fn sources() {
        let base = Path::new("/c");
        assert_eq!(ReleaseSource::from_spec(None, None, None, base).unwrap(), ReleaseSource::default());
        assert_eq!(
            ReleaseSource::from_spec(Some("127.0.0.1:5000/siderolabs"), None, None, base).unwrap(),
            ReleaseSource::Registry("127.0.0.1:5000/siderolabs".into())
        );
        assert_eq!(
            ReleaseSource::from_spec(None, Some(Path::new("oci")), None, base).unwrap(),
            ReleaseSource::OciLayout("/c/oci".into())
        );
        assert_eq!(
            ReleaseSource::from_spec(None, None, Some(Path::new("/r")), base).unwrap(),
            ReleaseSource::Dir("/r".into())
        );
        assert!(ReleaseSource::from_spec(Some("ghcr.io/x"), None, Some(Path::new("r")), base).is_err());
        for bad in ["siderolabs", "ghcr.io/siderolabs:v1", "ghcr.io/siderolabs/", "ghcr.io/Sidero"] {
            assert!(ReleaseSource::from_spec(Some(bad), None, None, base).is_err(), "{bad}");
        }
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("rel")).unwrap();
        std::fs::create_dir(t.path().join("lay")).unwrap();
        std::fs::write(t.path().join("lay/oci-layout"), "{}").unwrap();
        assert_eq!(ReleaseSource::from_cli("rel", t.path()).unwrap(), ReleaseSource::Dir(t.path().join("rel")));
        assert_eq!(ReleaseSource::from_cli("lay", t.path()).unwrap(), ReleaseSource::OciLayout(t.path().join("lay")));
        assert_eq!(
            ReleaseSource::from_cli("ghcr.io/siderolabs", t.path()).unwrap(),
            ReleaseSource::Registry("ghcr.io/siderolabs".into())
        );
    }
}
