//! `talforge build`: turns each image of a plan into the Talos boot assets its nodes need — initramfs with
//! the node's extensions, UKI (signed for Secure Boot), metal disk image, ISO, PXE files, installer image —
//! byte-reproducibly, without root, into `<out>/images/<profile>-<schematic12>/`, and records every artifact
//! with its sha256 and every input with its digest in `<out>/manifest.json`.
//!
//! Everything is built in a work folder inside `<out>` and moved into place per image once complete, so a
//! killed build never leaves a partial file under a final name. Finished pieces are cached by the digest of
//! their inputs, so an unchanged rebuild links them instead of building them again.

pub mod cache;
pub mod keys;
pub mod manifest;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::assemble::disk::{EspFile, MetalImageSpec, SectorSize, write_metal_image};
use crate::assemble::initramfs::{Extension, build_initramfs, content_key_for_digest};
use crate::assemble::uki::{EnrollmentFiles, SigningKey, UkiInputs, build_uki, kernel_release, sign_pe, stub_version};
use crate::assemble::{compress, iso, oci, pxe, qcow2};
use crate::error::{AssembleError, Diagnostic, Error, Result};
use crate::plan::{ClusterPlan, ImagePlan};
use crate::release::{FetchOptions, Release, ReleaseRequest, ReleaseSource, ResolvedExtension};
use crate::spec::cluster::{EnrollKeys, OutputKind};
use crate::spec::profile::Bootloader;
use crate::tool::ToolRunner;
use crate::yaml::{FieldPath, Span};

use cache::{Cache, Cached, Key, link_or_copy};
use manifest::{ImageRecord, Manifest, ReleaseRecord};

/// Everything about a build that is not in the plan.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The cluster output folder (`out/<cluster>`).
    pub out: PathBuf,
    /// Release source overriding the cluster file's `talos.source` (`--release`).
    pub release: Option<ReleaseSource>,
    /// Output kinds overriding the cluster file's `outputs`.
    pub kinds: Option<Vec<OutputKind>>,
    /// Only the images of these profiles (all when empty).
    pub profiles: Vec<String>,
    /// `SOURCE_DATE_EPOCH`; default: the release's epoch, else 0.
    pub epoch: Option<u64>,
    /// The cache root (`$TALFORGE_CACHE`): pulled images under `oci/`, built pieces under `build/`.
    pub cache: PathBuf,
    /// Never touch the network: every image digest from `talforge.lock`, every blob from the cache.
    pub offline: bool,
    /// Accept new digests for tags that moved since `talforge.lock` was written.
    pub update_lock: bool,
    /// Where built pieces are cached instead of `<cache>/build` (`talforge verify` rebuilds into an empty one,
    /// so nothing it compares comes from an earlier build).
    pub build_cache: Option<PathBuf>,
}

/// What a build made.
#[derive(Clone, Debug)]
pub struct BuildReport {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    /// Artifacts linked from the cache rather than built.
    pub from_cache: usize,
}

/// Talos's `/etc/os-release` for the UKI's `.osrel` section (pkg/machinery/constants `OSReleaseTemplate`).
pub fn os_release(version: &str) -> String {
    format!(
        "NAME=\"Talos\"\nID=talos\nVERSION_ID={version}\nPRETTY_NAME=\"Talos ({version})\"\n\
         HOME_URL=\"https://www.talos.dev/\"\nBUG_REPORT_URL=\"https://github.com/siderolabs/talos/issues\"\n\
         VENDOR_NAME=\"Sidero Labs\"\nVENDOR_URL=\"https://www.siderolabs.com/\"\n"
    )
}

/// Talos's names for image outputs (`pkg/imager` `OutputPath`): `<platform>-<arch>[-secureboot]...`.
fn names(im: &ImagePlan) -> ImageNames {
    let sb = if im.secure_boot { "-secureboot" } else { "" };
    let (p, a) = (&im.platform, &im.arch);
    ImageNames {
        raw: format!("{p}-{a}{sb}.raw"),
        iso: format!("{p}-{a}{sb}.iso"),
        uki: format!("{p}-{a}{sb}-uki.efi"),
        installer: format!("installer-{a}{sb}.tar"),
        qcow2: format!("{p}-{a}{sb}.qcow2"),
    }
}

struct ImageNames {
    raw: String,
    iso: String,
    uki: String,
    installer: String,
    qcow2: String,
}

fn bad_input(path: &Path, message: String) -> Error {
    Error::Input(Box::new(Diagnostic::new(path, Span::UNKNOWN, FieldPath::root(), message)))
}

/// Removes work folders left by killed builds (their process is gone).
fn clean_stale_work(out: &Path) {
    let Ok(rd) = std::fs::read_dir(out) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(".work-") {
            let alive = Path::new("/proc").join(pid).exists() && pid != std::process::id().to_string();
            if !alive {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Builds every (selected) image of the plan.
pub fn build(plan: &ClusterPlan, opts: &BuildOptions, runner_epoch: impl Fn(u64) -> ToolRunner) -> Result<BuildReport> {
    let images: Vec<&ImagePlan> =
        plan.images.iter().filter(|i| opts.profiles.is_empty() || opts.profiles.contains(&i.profile)).collect();
    if images.is_empty() {
        return Err(bad_input(&plan.cluster_file, format!("no image matches the profiles {:?}", opts.profiles)));
    }
    for im in &images {
        let kinds: Vec<OutputKind> = opts.kinds.clone().unwrap_or_else(|| im.outputs.clone());
        let booting: Vec<&str> = kinds
            .iter()
            .filter(|k| matches!(k, OutputKind::Metal | OutputKind::Iso | OutputKind::Qcow2 | OutputKind::Installer))
            .map(|k| k.as_str())
            .collect();
        if im.bootloader != Bootloader::SdBoot.as_str() && !booting.is_empty() {
            let mut d = im.bootloader_at.clone();
            d.message = format!(
                "unsupported: bootloader {} for the {} image of {}: talforge builds UEFI sd-boot disk images only \
                 (GRUB and dual-boot are not implemented yet); use bootloader: sd-boot on UEFI machines, or build \
                 only uki/pxe outputs",
                im.bootloader,
                booting.join("/"),
                im.id
            );
            return Err(Error::Input(Box::new(d)));
        }
        if let (Some(d), true) = (&im.metal_disk_error, kinds.contains(&OutputKind::Metal)) {
            return Err(Error::Input(Box::new(d.clone())));
        }
    }
    let arch = images[0].arch.clone();
    if let Some(other) = images.iter().find(|i| i.arch != arch) {
        return Err(Error::unsupported(format!(
            "one build for two architectures ({arch} and {}): build each with --profile",
            other.arch
        )));
    }
    let mut extensions: Vec<String> = Vec::new();
    for r in images.iter().flat_map(|i| &i.extensions) {
        if !extensions.contains(r) {
            extensions.push(r.clone());
        }
    }
    let request = ReleaseRequest {
        source: opts.release.clone().unwrap_or_else(|| plan.release_source.clone()),
        talos_version: plan.talos_version.clone(),
        arch: arch.clone(),
        extensions,
        base_dir: plan.cluster_file.parent().map(Path::to_owned).unwrap_or_default(),
    };
    let mut fetch = FetchOptions::new(crate::release::Cache::new(&opts.cache));
    fetch.lock_path = Some(crate::release::lock_path_for(&plan.cluster_file));
    fetch.offline = opts.offline;
    fetch.update_lock = opts.update_lock;
    let fetched = crate::release::fetch_release(&request, &fetch)?;
    if fetched.lock_written {
        tracing::info!(lock = %fetch.lock_path.as_deref().unwrap_or(Path::new("")).display(), "pinned release digests");
    }
    // Every extension is read and checked against the Talos version before anything is written.
    let mut loaded = BTreeMap::new();
    for e in &fetched.extensions {
        let ext = Extension::load(&e.dir)?;
        match ext.check_compatible(&plan.quirks.version) {
            Ok(()) => {}
            Err(crate::assemble::initramfs::InitramfsError::Incompatible { version, constraint, talos, .. }) => {
                let message = format!("{} {version} supports Talos {constraint}; this image is for {talos}", e.name);
                return Err(crate::release::incompatible_extension(e, message).into());
            }
            Err(other) => return Err(other.into()),
        }
        loaded.insert(e.reference.clone(), ext);
    }
    let epoch = opts.epoch.or(fetched.release.epoch).unwrap_or(0);
    let inputs =
        Inputs { release: &fetched.release, source: &request.source, resolved: &fetched.extensions, loaded, epoch };
    let runner = runner_epoch(epoch);
    let cache = Cache::new(opts.build_cache.clone().unwrap_or_else(|| opts.cache.join("build")));

    let created_out = !opts.out.exists();
    std::fs::create_dir_all(&opts.out).map_err(|source| Error::Write { path: opts.out.clone(), source })?;
    clean_stale_work(&opts.out);
    let work = opts.out.join(format!(".work-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|source| Error::Write { path: work.clone(), source })?;
    let result = build_in(plan, opts, &inputs, &runner, &cache, &work, &images);
    let _ = std::fs::remove_dir_all(&work);
    if result.is_err() && created_out {
        // Leave no trace of a failed first build (remove_dir refuses a folder that holds anything).
        let _ = std::fs::remove_dir(&opts.out);
    }
    result
}

/// What the images are built from: the fetched release and its checked extensions.
struct Inputs<'a> {
    release: &'a Release,
    source: &'a ReleaseSource,
    resolved: &'a [ResolvedExtension],
    /// The loaded extensions by reference as written.
    loaded: BTreeMap<String, Extension>,
    epoch: u64,
}

fn build_in(
    plan: &ClusterPlan,
    opts: &BuildOptions,
    inputs: &Inputs<'_>,
    runner: &ToolRunner,
    cache: &Cache,
    work: &Path,
    images: &[&ImagePlan],
) -> Result<BuildReport> {
    let (release, epoch) = (inputs.release, inputs.epoch);
    // The kernel, stub and base initramfs are read only when something is built from them (not for a build
    // whose pieces all come from the cache); sd-boot is small and decides the enrollment mode.
    let kernel = Lazy::new(&release.kernel.path);
    let base_initramfs = Lazy::new(&release.initramfs.path);
    let stub = Lazy::new(&release.sd_stub.path);
    let sd_boot = read(&release.sd_boot.path)?;
    let version = plan.talos_version.clone();
    let base_digest = hex_bytes(&release.initramfs.sha256)?;

    let needs_keys = images.iter().any(|i| i.secure_boot);
    let signing = if needs_keys { Some(keys::load_or_create(&plan.secure_boot_keys)?) } else { None };

    let mut from_cache = 0;
    let mut initramfs_keys: BTreeMap<Vec<String>, String> = BTreeMap::new();
    // Digests already known (from cache stamps and the release), so the manifest need not read those files.
    let mut known: BTreeMap<(String, String), (u64, String)> = BTreeMap::new();
    let mut image_records = Vec::new();
    let mut staged: Vec<(String, PathBuf)> = Vec::new();
    for im in images {
        let kinds: Vec<OutputKind> = opts.kinds.clone().unwrap_or_else(|| im.outputs.clone());
        let stage = work.join("images").join(&im.id);
        std::fs::create_dir_all(&stage).map_err(|source| Error::Write { path: stage.clone(), source })?;
        std::fs::set_permissions(&stage, std::fs::Permissions::from_mode(0o755))
            .map_err(|source| Error::Write { path: stage.clone(), source })?;
        let n = names(im);

        // Extensions, by reference, from the release (or a directory).
        let mut exts = Vec::new();
        for r in &im.extensions {
            let ext = inputs.loaded.get(r).ok_or_else(|| {
                Error::Internal(format!("extension {r:?} of image {} was not fetched with the release", im.id))
            })?;
            exts.push(ext.clone());
        }

        // Initramfs: release initramfs + extensions.
        // Images with the same extensions share one key (hashing the extension trees is most of a warm build).
        let ikey = match initramfs_keys.get(&im.extensions) {
            Some(k) => k.clone(),
            None => {
                let k = content_key_for_digest(&base_digest, &exts, &plan.quirks.version, epoch, runner)?;
                initramfs_keys.insert(im.extensions.clone(), k.clone());
                k
            }
        };
        let initramfs = match cache.get("initramfs", &ikey, "initramfs.xz") {
            Some(c) => {
                from_cache += 1;
                c
            }
            None => {
                let wd = work.join(format!("initramfs-{}", im.id));
                let t = std::time::Instant::now();
                let art = build_initramfs(base_initramfs.get()?, &exts, &plan.quirks.version, epoch, runner, &wd)?;
                tracing::info!(image = %im.id, ms = t.elapsed().as_millis() as u64, "initramfs built");
                let entry = cache.put_file("initramfs", &ikey, "initramfs.xz", &art.path)?;
                let _ = std::fs::remove_dir_all(&wd);
                entry
            }
        };
        let initramfs_path = initramfs.path.clone();

        // UKI (signed for Secure Boot), and sd-boot signed the same way.
        let osrel = os_release(&version);
        let mut ukey = Key::new("uki");
        ukey.part("stub", release.sd_stub.sha256.as_bytes())
            .part("kernel", release.kernel.sha256.as_bytes())
            .part("initramfs", initramfs.sha256.as_bytes())
            .part("cmdline", im.cmdline.as_bytes())
            .part("osrel", osrel.as_bytes())
            .part("epoch", &epoch.to_le_bytes())
            // Whether the stub takes `.profile` sections follows from the stub, which is part of the key.
            .part("profile-sections", crate::assemble::uki::MIN_STUB_VERSION_FOR_PROFILES.to_string().as_bytes());
        if let (Some(k), true) = (&signing, im.secure_boot) {
            ukey.part("signed-by", k.cert_der());
        }
        let ukey = ukey.finish();
        let uki = match cache.get("uki", &ukey, "uki.efi") {
            Some(c) => {
                from_cache += 1;
                c
            }
            None => {
                let profiles_ok = systemd_version(stub.get()?)
                    .is_some_and(|v| v >= crate::assemble::uki::MIN_STUB_VERSION_FOR_PROFILES);
                let reset = crate::assemble::uki::UkiProfile::reset_maintenance(&im.cmdline);
                let extra = [reset];
                let uki = build_uki(&UkiInputs {
                    stub: stub.get()?,
                    kernel: kernel.get()?,
                    initrd: &read(&initramfs_path)?,
                    cmdline: &im.cmdline,
                    os_release: &osrel,
                    uname: kernel_release(kernel.get()?).as_deref(),
                    profiles: Some(if profiles_ok { &extra[..] } else { &[] }),
                    epoch,
                    ..UkiInputs::default()
                })?;
                let uki = match (&signing, im.secure_boot) {
                    (Some(k), true) => sign_pe(&uki, k, epoch)?,
                    _ => uki,
                };
                let tmp = work.join(format!("uki-{ukey}"));
                write(&tmp, &uki)?;
                cache.put_file("uki", &ukey, "uki.efi", &tmp)?
            }
        };
        let uki_path = uki.path.clone();
        // sd-boot (signed like the UKI) and the key-enrollment files are made only when an artifact that holds
        // them is built, not for artifacts linked from the cache: RSA-4096 signing is most of a warm build.
        let image_key = match (&signing, im.secure_boot) {
            (Some(k), true) => Some(k),
            _ => None,
        };
        let boot_files = BootFiles::new(&sd_boot, image_key, work.join(format!("sd-boot-{}.efi", im.id)), epoch);
        let enroll_mode = enroll_mode(plan.enroll_keys, &sd_boot);

        let mut akey = Key::new("artifacts");
        akey.part("uki", ukey.as_bytes())
            .part("sd-boot", release.sd_boot.sha256.as_bytes())
            .part("sd-boot-signed-by", image_key.map(|k| k.cert_der()).unwrap_or_default())
            .part("version", version.as_bytes())
            .part("enroll", enroll_mode.as_str().as_bytes())
            .part("epoch", &epoch.to_le_bytes());
        let akey = akey.finish();

        for kind in &kinds {
            match kind {
                OutputKind::Uki => {
                    link_or_copy(&uki_path, &stage.join(&n.uki))?;
                    known.insert((im.id.clone(), n.uki.clone()), (uki.size, uki.sha256.clone()));
                }
                OutputKind::Pxe => {
                    let spec = pxe::PxeSpec {
                        arch: im.arch.clone(),
                        platform: im.platform.clone(),
                        kernel: release.kernel.path.clone(),
                        initramfs: initramfs_path.clone(),
                        cmdline: im.cmdline.clone(),
                        base_url: None,
                    };
                    let report = pxe::write_pxe_scripts(&stage, &spec)?;
                    // The kernel joins the cache (a copy: the release folder is the user's), so it is linked
                    // like every other cached artifact; the initramfs is linked from its entry.
                    let kernel_file = match cache.get("kernel", &release.kernel.sha256, "vmlinuz") {
                        Some(c) => c,
                        None => {
                            let tmp = work.join(format!("kernel-{}", release.kernel.sha256));
                            std::fs::copy(&release.kernel.path, &tmp)
                                .map_err(|source| Error::Write { path: tmp.clone(), source })?;
                            cache.put_file("kernel", &release.kernel.sha256, "vmlinuz", &tmp)?
                        }
                    };
                    for (path, c) in [(&report.kernel, &kernel_file), (&report.initramfs, &initramfs)] {
                        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        publish(c, &stage, &im.id, &name, &mut known)?;
                    }
                }
                OutputKind::Metal | OutputKind::Qcow2 => {
                    let zst = format!("{}.zst", n.raw);
                    let want = if *kind == OutputKind::Metal { zst.clone() } else { n.qcow2.clone() };
                    let key = format!("{akey}-{}", if *kind == OutputKind::Metal { "metal" } else { "qcow2" });
                    if let Some(c) = cache.get("artifacts", &key, &want) {
                        from_cache += 1;
                        publish(&c, &stage, &im.id, &want, &mut known)?;
                        continue;
                    }
                    let raw = work.join(&n.raw);
                    if !raw.exists() {
                        let files = esp_files(
                            boot_files.sd_boot()?,
                            &uki_path,
                            &version,
                            boot_files.enrollment()?,
                            enroll_mode,
                        );
                        let sector = SectorSize::from_bytes(plan.sector_size).map_err(AssembleError::from)?;
                        let spec = MetalImageSpec {
                            esp_files: files,
                            disk_size: plan.disk_image_size,
                            ..MetalImageSpec::sd_boot((plan.contract.major, plan.contract.minor), sector, epoch)
                        };
                        let t = std::time::Instant::now();
                        write_metal_image(&raw, &spec)?;
                        tracing::info!(image = %im.id, ms = t.elapsed().as_millis() as u64, "metal disk written");
                    }
                    let made = work.join(&want);
                    let t = std::time::Instant::now();
                    if *kind == OutputKind::Metal {
                        compress::compress_file(&raw, &made, compress::Compression::Zstd)?;
                    } else {
                        qcow2::convert_to_qcow2(runner, &raw, &made, qcow2::TALOS_QCOW2_OPTIONS)?;
                    }
                    tracing::info!(image = %im.id, file = %want, ms = t.elapsed().as_millis() as u64, "written");
                    let c = cache.put_file("artifacts", &key, &want, &made)?;
                    publish(&c, &stage, &im.id, &want, &mut known)?;
                }
                OutputKind::Iso => {
                    let key = format!("{akey}-iso");
                    if let Some(c) = cache.get("artifacts", &key, &n.iso) {
                        from_cache += 1;
                        publish(&c, &stage, &im.id, &n.iso, &mut known)?;
                        continue;
                    }
                    let sb = match (boot_files.enrollment()?, image_key) {
                        (Some(e), Some(k)) => {
                            let d = work.join(format!("iso-keys-{}", im.id));
                            e.write_to(&d)?;
                            let cert = d.join("uki-signing-cert.der");
                            write(&cert, k.cert_der())?;
                            Some(iso::IsoSecureBoot {
                                enroll: enroll_mode,
                                signing_cert_der: cert,
                                platform_key: d.join("PK.auth"),
                                key_exchange_key: d.join("KEK.auth"),
                                signature_db: d.join("db.auth"),
                            })
                        }
                        _ => None,
                    };
                    let made = work.join(&n.iso);
                    let t = std::time::Instant::now();
                    iso::build_iso(
                        &made,
                        &iso::IsoSpec {
                            version: version.clone(),
                            arch: im.arch.clone(),
                            sd_boot: boot_files.sd_boot()?.to_owned(),
                            uki: uki_path.clone(),
                            secure_boot: sb,
                            epoch,
                        },
                    )?;
                    tracing::info!(image = %im.id, file = %n.iso, ms = t.elapsed().as_millis() as u64, "written");
                    let c = cache.put_file("artifacts", &key, &n.iso, &made)?;
                    publish(&c, &stage, &im.id, &n.iso, &mut known)?;
                }
                OutputKind::Installer => {
                    let key = format!("{akey}-installer");
                    if let Some(c) = cache.get("artifacts", &key, &n.installer) {
                        from_cache += 1;
                        publish(&c, &stage, &im.id, &n.installer, &mut known)?;
                        continue;
                    }
                    let made = work.join(&n.installer);
                    oci::write_installer(
                        &made,
                        &oci::InstallerSpec {
                            arch: im.arch.clone(),
                            version: version.clone(),
                            secure_boot: im.secure_boot,
                            artifacts: oci::InstallerArtifacts::SdBoot {
                                systemd_boot: boot_files.sd_boot()?.to_owned(),
                                uki: uki_path.clone(),
                            },
                            ref_name: version.clone(),
                            base: None,
                            epoch,
                        },
                    )?;
                    let c = cache.put_file("artifacts", &key, &n.installer, &made)?;
                    publish(&c, &stage, &im.id, &n.installer, &mut known)?;
                }
            }
        }

        // Schematic next to the images.
        let sch = work.join("schematics").join(format!("{}.yaml", im.schematic_id));
        write(&sch, im.schematic.as_bytes())?;
        staged.push((im.id.clone(), stage));
        image_records.push(ImageRecord {
            id: im.id.clone(),
            profile: im.profile.clone(),
            schematic_id: im.schematic_id.clone(),
            secure_boot: im.secure_boot,
            cmdline: im.cmdline.clone(),
            extensions: exts.iter().map(|e| (e.name().to_owned(), e.version().to_owned())).collect(),
            initramfs_sha256: initramfs.sha256.clone(),
            outputs: kinds.clone(),
        });
    }

    // Move each finished image folder into place (replacing the previous build of that image).
    let images_dir = opts.out.join("images");
    std::fs::create_dir_all(&images_dir).map_err(|source| Error::Write { path: images_dir.clone(), source })?;
    for (id, stage) in &staged {
        let dest = images_dir.join(id);
        replace_dir(stage, &dest, &work.join(format!("old-{id}")))
            .map_err(|source| Error::Write { path: dest.clone(), source })?;
    }
    let sch_dir = work.join("schematics");
    if sch_dir.is_dir() {
        for e in std::fs::read_dir(&sch_dir).map_err(|source| Error::Read { path: sch_dir.clone(), source })?.flatten()
        {
            let dest = opts.out.join("schematics").join(e.file_name());
            let bytes = read(&e.path())?;
            crate::output::write_atomic(&dest, &bytes, crate::output::PUBLIC_MODE, crate::output::Overwrite::Replace)?;
        }
    }

    let manifest = Manifest::collect(
        plan,
        ReleaseRecord::new(release, inputs.source, inputs.resolved),
        epoch,
        &opts.out,
        image_records,
        &images_dir,
        &known,
    )?;
    let manifest_path = opts.out.join("manifest.json");
    crate::output::write_atomic(
        &manifest_path,
        manifest.to_json().as_bytes(),
        crate::output::PUBLIC_MODE,
        crate::output::Overwrite::Replace,
    )?;
    Ok(BuildReport { manifest, manifest_path, from_cache })
}

/// A release file read on first use.
struct Lazy<'a> {
    path: &'a Path,
    data: std::cell::OnceCell<Vec<u8>>,
}

impl<'a> Lazy<'a> {
    fn new(path: &'a Path) -> Self {
        Lazy { path, data: std::cell::OnceCell::new() }
    }

    fn get(&self) -> Result<&[u8]> {
        if self.data.get().is_none() {
            let _ = self.data.set(read(self.path)?);
        }
        Ok(self.data.get().map(Vec::as_slice).unwrap_or_default())
    }
}

/// The bytes of a lowercase hex digest.
fn hex_bytes(hex: &str) -> Result<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| Error::Internal(format!("not a hex digest: {hex:?}")))
        })
        .collect()
}

/// Links a cached artifact into an image's staging folder and records its digest for the manifest.
fn publish(
    c: &Cached,
    stage: &Path,
    image: &str,
    name: &str,
    known: &mut BTreeMap<(String, String), (u64, String)>,
) -> Result<()> {
    link_or_copy(&c.path, &stage.join(name))?;
    known.insert((image.to_owned(), name.to_owned()), (c.size, c.sha256.clone()));
    Ok(())
}

/// An image's sd-boot binary (signed with the image's key, if any) and Secure Boot enrollment files, made on
/// first use.
struct BootFiles<'a> {
    sd_boot: &'a [u8],
    key: Option<&'a SigningKey>,
    path: PathBuf,
    epoch: u64,
    written: std::cell::OnceCell<()>,
    enrollment: std::cell::OnceCell<Option<EnrollmentFiles>>,
}

impl<'a> BootFiles<'a> {
    fn new(sd_boot: &'a [u8], key: Option<&'a SigningKey>, path: PathBuf, epoch: u64) -> Self {
        BootFiles { sd_boot, key, path, epoch, written: Default::default(), enrollment: Default::default() }
    }

    /// The path of the (signed) sd-boot binary, written on first call.
    fn sd_boot(&self) -> Result<&Path> {
        if self.written.get().is_none() {
            let bytes = match self.key {
                Some(k) => sign_pe(self.sd_boot, k, self.epoch)?,
                None => self.sd_boot.to_vec(),
            };
            write(&self.path, &bytes)?;
            let _ = self.written.set(());
        }
        Ok(&self.path)
    }

    /// The PK/KEK/db enrollment files for a Secure Boot image (`None` otherwise), made on first call.
    fn enrollment(&self) -> Result<Option<&EnrollmentFiles>> {
        if self.enrollment.get().is_none() {
            let files = match self.key {
                Some(k) => Some(EnrollmentFiles::generate(k.cert_der(), k, None, self.epoch)?),
                None => None,
            };
            let _ = self.enrollment.set(files);
        }
        Ok(self.enrollment.get().and_then(Option::as_ref))
    }
}

/// Puts the finished folder `stage` at `dest`. An existing `dest` is swapped with `stage` in one
/// `renameat2(RENAME_EXCHANGE)`, so at every instant `dest` is either the complete previous build or the complete
/// new one, even if the process is killed; the previous build ends up at `stage` and goes with the work folder.
/// Filesystems without the exchange fall back to two renames through `old` (a crash between them leaves no
/// `dest`, never a mixed one).
fn replace_dir(stage: &Path, dest: &Path, old: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, stage, CWD, dest, RenameFlags::EXCHANGE) {
        Ok(()) => return Ok(()),
        Err(rustix::io::Errno::NOENT) if !dest.exists() => return std::fs::rename(stage, dest),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::NOTSUP) => {}
        Err(e) => return Err(e.into()),
    }
    std::fs::rename(dest, old)?;
    std::fs::rename(stage, dest)
}

/// The ESP of a metal image, as Talos's sd-boot installer lays it out.
fn esp_files(
    sd_boot: &Path,
    uki: &Path,
    version: &str,
    enroll: Option<&EnrollmentFiles>,
    mode: EnrollKeys,
) -> Vec<EspFile> {
    let mut conf = String::from("# systemd-boot configuration\n\ntimeout 10\n");
    let mut files = vec![
        EspFile::file("EFI/boot/BOOTX64.efi", sd_boot.to_owned()),
        EspFile::file(format!("EFI/Linux/Talos-{version}.efi"), uki.to_owned()),
    ];
    if let Some(e) = enroll {
        conf.push_str(&format!("\nsecure-boot-enroll {}\n", mode.as_str()));
        for (name, data) in e.files() {
            files.push(EspFile::bytes(format!("loader/keys/auto/{name}"), data.to_vec()));
        }
    }
    files.push(EspFile::bytes("loader/loader.conf", conf.into_bytes()));
    files
}

/// The enrollment mode: the cluster file's, else Talos's `if-safe`, or `force` for systemd-boot older than 253
/// (which does not know `if-safe`).
fn enroll_mode(configured: Option<EnrollKeys>, sd_boot: &[u8]) -> EnrollKeys {
    configured.unwrap_or_else(|| match systemd_version(sd_boot) {
        Some(v) if v < 253 => EnrollKeys::Force,
        _ => EnrollKeys::IfSafe,
    })
}

/// The systemd major version in an sd-boot or sd-stub binary's `.sdmagic` (`systemd-boot 252.39` → 252).
fn systemd_version(pe: &[u8]) -> Option<u32> {
    if let Ok(Some(v)) = stub_version(pe) {
        return crate::assemble::uki::major_version(&v);
    }
    // sd-boot's magic reads `#### LoaderInfo: systemd-boot 252.39 ####`.
    let text = String::from_utf8_lossy(pe);
    let rest = text.split("LoaderInfo: systemd-boot ").nth(1)?;
    crate::assemble::uki::major_version(rest.split_whitespace().next()?)
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|source| Error::Read { path: p.to_owned(), source })
}

fn write(p: &Path, data: &[u8]) -> Result<()> {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Write { path: parent.to_owned(), source })?;
    }
    std::fs::write(p, data).map_err(|source| Error::Write { path: p.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_dir_swaps_whole_folders() {
        let dir = tempfile::tempdir().unwrap();
        let (stage, dest, old) = (dir.path().join("stage"), dir.path().join("dest"), dir.path().join("old"));
        std::fs::create_dir(&stage).unwrap();
        std::fs::write(stage.join("a"), "new").unwrap();
        // First build: no previous folder.
        replace_dir(&stage, &dest, &old).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("a")).unwrap(), "new");
        assert!(!stage.exists());
        // Second build: the previous folder comes back at the stage path, whole.
        std::fs::create_dir(&stage).unwrap();
        std::fs::write(stage.join("b"), "newer").unwrap();
        replace_dir(&stage, &dest, &old).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("b")).unwrap(), "newer");
        assert!(!dest.join("a").exists());
        assert_eq!(std::fs::read_to_string(stage.join("a")).unwrap(), "new");
        assert!(!old.exists(), "the exchange needs no intermediate name");
    }
}
