//! Release sources against a real registry (Debian's `docker-registry` on 127.0.0.1, images pushed with
//! `skopeo`), and the same images from OCI layouts. Registry tests skip with a message when the tools are
//! missing; layout tests always run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::registry_support::*;
use talforge_builder::release::{
    Cache, FetchOptions, FetchedRelease, Lock, ReleaseError, ReleaseErrorClass, ReleaseRequest, ReleaseSource,
    fetch_release,
};

struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        crypto();
        Env { tmp: tempfile::tempdir().unwrap() }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    fn opts(&self) -> FetchOptions {
        let mut o = FetchOptions::new(Cache::new(self.path("cache")));
        o.lock_path = Some(self.path("talforge.lock"));
        o.timeout = Duration::from_secs(5);
        o
    }

    /// Options without a lock: for tests that use several different images under one name.
    fn opts_no_lock(&self) -> FetchOptions {
        FetchOptions { lock_path: None, ..self.opts() }
    }

    fn req(&self, source: ReleaseSource, extensions: &[&str]) -> ReleaseRequest {
        ReleaseRequest {
            source,
            talos_version: TALOS.into(),
            arch: "amd64".into(),
            extensions: extensions.iter().map(|s| s.to_string()).collect(),
            base_dir: self.tmp.path().to_owned(),
        }
    }

    fn lock(&self) -> Lock {
        Lock::read(&self.path("talforge.lock")).unwrap().expect("lock written")
    }
}

fn timed(
    label: &str,
    f: impl FnOnce() -> Result<FetchedRelease, ReleaseError>,
) -> Result<FetchedRelease, ReleaseError> {
    let t = Instant::now();
    let r = f();
    match &r {
        Ok(fr) => eprintln!("TIMING {label}: {:.3}s {:?}", t.elapsed().as_secs_f64(), fr.stats),
        Err(e) => eprintln!("TIMING {label}: {:.3}s error: {e}", t.elapsed().as_secs_f64()),
    }
    r
}

fn check_boot_files(fr: &FetchedRelease, generation: u32) {
    let r = &fr.release;
    for (name, want) in expected_boot("amd64", generation) {
        let blob = match name {
            "vmlinuz" => &r.kernel,
            "initramfs.xz" => &r.initramfs,
            "systemd-boot.efi" => &r.sd_boot,
            _ => &r.sd_stub,
        };
        assert_eq!(blob.sha256, sha256(&want), "{name}");
        assert_eq!(std::fs::read(&blob.path).unwrap(), want, "{name}");
        assert_eq!(blob.size, want.len() as u64);
    }
    // exactly the four files were extracted
    let dir = r.kernel.path.parent().unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["initramfs.xz", "systemd-boot.efi", "systemd-stub.efi", "vmlinuz"]);
    assert_eq!(r.arch, "amd64");
}

fn check_extension_tree(dir: &Path, arch: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &str| std::fs::symlink_metadata(dir.join(p)).unwrap().permissions().mode() & 0o7777;
    assert!(dir.join("manifest.yaml").is_file());
    assert_eq!(mode("rootfs/usr/local/bin/tool"), 0o755);
    assert_eq!(mode("rootfs/usr/local/lib"), 0o750);
    assert_eq!(mode("rootfs/usr/local/lib/secret"), 0o600);
    assert_eq!(mode("rootfs/usr/lib/modules/ext.ko"), 0o644);
    assert_eq!(std::fs::read_link(dir.join("rootfs/usr/lib/ext-link.ko")).unwrap(), Path::new("modules/ext.ko"));
    assert_eq!(std::fs::read(dir.join("rootfs/usr/local/bin/tool2")).unwrap(), b"#!/bin/sh\necho tool\n");
    assert!(!dir.join("rootfs/usr/local/lib/gone").exists(), "whiteout applied");
    assert!(!dir.join("rootfs/usr/local/share/old").exists(), "opaque whiteout applied");
    assert_eq!(std::fs::read_to_string(dir.join("rootfs/usr/local/share/new")).unwrap(), arch);
    let mtime = std::fs::metadata(dir.join("rootfs/usr/local/bin/tool")).unwrap().modified().unwrap();
    assert_eq!(mtime, std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let mut top: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    top.sort();
    assert_eq!(top, ["manifest.yaml", "rootfs"]);
}

/// Imager from the registry: the right four files, pins in the lock, only needed layers downloaded; then the
/// same offline from the cache with the registry stopped.
#[test]
fn imager_from_registry_then_offline() {
    let Some((reg_bin, skopeo)) = tools("imager_from_registry_then_offline") else { return };
    let env = Env::new();
    let mut reg = Registry::start(&reg_bin, &skopeo);
    let mut layout = Layout::new(&env.path("layout"));
    let (index, bottoms) = imager(&layout, 1);
    layout.tag("imager", &index);
    reg.push(&layout.dir, "imager", &format!("siderolabs/imager:{TALOS}"));

    let source = ReleaseSource::Registry(format!("{}/siderolabs", reg.host));
    let req = env.req(source.clone(), &[]);
    let fr = timed("imager cold", || fetch_release(&req, &env.opts())).unwrap();
    check_boot_files(&fr, 1);
    assert!(fr.lock_written);
    let lock = env.lock();
    let pin = lock.imager.as_ref().unwrap();
    assert_eq!(pin.image, format!("{}/siderolabs/imager:{TALOS}", reg.host));
    assert_eq!(pin.digest.as_str(), index.digest);
    assert_eq!(lock.talos, TALOS);
    assert_eq!(fr.lock.as_ref(), Some(&lock));
    // two of the three layers were needed: the stale bottom one was never downloaded
    assert_eq!(fr.stats.blobs_downloaded, 2, "{:?}", fr.stats);
    let cache = Cache::new(env.path("cache"));
    for b in &bottoms {
        assert!(!cache.blob_path(&talforge_builder::release::Digest::parse(b).unwrap()).exists());
    }
    assert!(cache.blob_path(&pin.digest).is_file(), "the index is cached");

    // warm: nothing downloaded, the lock is unchanged and not rewritten
    let fr = timed("imager warm", || fetch_release(&req, &env.opts())).unwrap();
    check_boot_files(&fr, 1);
    assert!(!fr.lock_written);
    assert_eq!(fr.stats.blobs_downloaded, 0);

    // offline with the registry gone
    reg.stop();
    let mut opts = env.opts();
    opts.offline = true;
    let fr = timed("imager offline", || fetch_release(&req, &opts)).unwrap();
    check_boot_files(&fr, 1);
    assert_eq!(fr.stats.manifests_fetched, 0);
    assert_eq!(fr.stats.blobs_downloaded, 0);

    // and online with the registry gone: a clear error, quickly
    let t = Instant::now();
    let e = fetch_release(&req, &env.opts()).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(
        e.to_string().starts_with(&format!(
            "{}/siderolabs/imager:{TALOS}: registry error: cannot connect to {}",
            reg.host, reg.host
        )),
        "{e}"
    );
    assert_eq!(e.class(), ReleaseErrorClass::Io);
}

/// Catalogue + extensions from the registry; unsafe layers are refused.
#[test]
fn extensions_from_registry() {
    let Some((reg_bin, skopeo)) = tools("extensions_from_registry") else { return };
    let env = Env::new();
    let reg = Registry::start(&reg_bin, &skopeo);
    let mut layout = Layout::new(&env.path("layout"));
    let (imager_index, _) = imager(&layout, 1);
    layout.tag("imager", &imager_index);
    let ext_a = extension(&layout, "ext-a", "1.0.0");
    layout.tag("ext-a", &ext_a);
    let ext_b = extension(&layout, "ext-b", "2.0.0");
    layout.tag("ext-b", &ext_b);
    let mut traversal = extension_entries("evil-traversal", "1");
    traversal.push(Entry::RawName(b"rootfs/../../escaped", b"pwned".to_vec()));
    let traversal = raw_extension(&layout, &traversal);
    layout.tag("evil-traversal", &traversal);
    let mut device = extension_entries("evil-device", "1");
    device.push(Entry::Char("rootfs/dev-null"));
    let device = raw_extension(&layout, &device);
    layout.tag("evil-device", &device);
    let cat = catalogue(
        &layout,
        &[
            ("ext-a", "1.0.0", &ext_a.digest),
            ("ext-b", "2.0.0", &ext_b.digest),
            ("evil-traversal", "1", &traversal.digest),
            ("evil-device", "1", &device.digest),
        ],
    );
    layout.tag("extensions", &cat);
    for (name, repo) in [
        ("imager", "imager"),
        ("ext-a", "ext-a:1.0.0"),
        ("ext-b", "ext-b:2.0.0"),
        ("evil-traversal", "evil-traversal:1"),
        ("evil-device", "evil-device:1"),
        ("extensions", "extensions"),
    ] {
        let repo_tag =
            if repo.contains(':') { format!("siderolabs/{repo}") } else { format!("siderolabs/{repo}:{TALOS}") };
        reg.push(&layout.dir, name, &repo_tag);
    }

    let source = ReleaseSource::Registry(format!("{}/siderolabs", reg.host));
    let req = env.req(source.clone(), &["siderolabs/ext-a", "siderolabs/ext-b"]);
    let fr = timed("catalogue + 2 extensions cold", || fetch_release(&req, &env.opts())).unwrap();
    check_boot_files(&fr, 1);
    assert_eq!(fr.extensions.len(), 2);
    for (ext, (name, version, desc)) in
        fr.extensions.iter().zip([("ext-a", "1.0.0", &ext_a), ("ext-b", "2.0.0", &ext_b)])
    {
        assert_eq!(ext.reference, format!("siderolabs/{name}"));
        assert_eq!((ext.name.as_str(), ext.version.as_str()), (name, version));
        assert_eq!(ext.image.as_deref(), Some(format!("{}/siderolabs/{name}:{version}", reg.host).as_str()));
        assert_eq!(ext.digest.as_ref().unwrap().as_str(), desc.digest);
        check_extension_tree(&ext.dir, "amd64");
        assert_eq!(fr.release.find_extension(&ext.reference, Path::new("/")), Some(ext.dir.clone()));
    }
    let lock = env.lock();
    assert_eq!(lock.catalog.as_ref().unwrap().digest.as_str(), cat.digest);
    assert_eq!(lock.catalog.as_ref().unwrap().image, format!("{}/siderolabs/extensions:{TALOS}", reg.host));
    assert_eq!(lock.extensions["siderolabs/ext-a"].digest.as_str(), ext_a.digest);
    assert_eq!(lock.extensions["siderolabs/ext-b"].image, format!("{}/siderolabs/ext-b:2.0.0", reg.host));
    let text = std::fs::read_to_string(env.path("talforge.lock")).unwrap();
    eprintln!("LOCK\n{text}");

    // warm run and offline run agree
    let fr2 = timed("catalogue + 2 extensions warm", || fetch_release(&req, &env.opts())).unwrap();
    assert_eq!(fr2.stats.blobs_downloaded, 0);
    assert_eq!(fr2.extensions, fr.extensions);
    let mut offline = env.opts();
    offline.offline = true;
    let fr3 = fetch_release(&req, &offline).unwrap();
    assert_eq!(fr3.extensions, fr.extensions);

    // a full image reference works as well, pinned by the lock under the text as written
    let full = format!("{}/siderolabs/ext-b:2.0.0", reg.host);
    let fr4 = fetch_release(&env.req(source.clone(), &[&full]), &env.opts()).unwrap();
    assert_eq!(fr4.extensions[0].digest.as_ref().unwrap().as_str(), ext_b.digest);
    assert_eq!(env.lock().extensions[&full].digest.as_str(), ext_b.digest);
    assert!(env.lock().catalog.is_none(), "no catalogue needed, none pinned");

    // unknown name
    let e = fetch_release(&env.req(source.clone(), &["siderolabs/nope"]), &env.opts()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "extension siderolabs/nope: not found in the catalogue {}/siderolabs/extensions:{TALOS} (4 extensions)",
            reg.host
        )
    );

    // unsafe layers: refused, nothing escapes, no tree committed
    let e = fetch_release(&env.req(source.clone(), &["siderolabs/evil-traversal"]), &env.opts()).unwrap_err();
    assert!(matches!(e, ReleaseError::UnsafeEntry { .. }), "{e}");
    assert!(e.to_string().contains("unsafe entry \"rootfs/../../escaped\": '..' component"), "{e}");
    assert!(!env.path("cache/oci/escaped").exists() && !env.path("cache/escaped").exists());
    let e = fetch_release(&env.req(source.clone(), &["siderolabs/evil-device"]), &env.opts()).unwrap_err();
    assert!(e.to_string().contains("unsafe entry \"rootfs/dev-null\": device files are not allowed"), "{e}");
    assert_eq!(e.class(), ReleaseErrorClass::BadInput);
    let trees = std::fs::read_dir(env.path("cache/oci/trees/sha256")).unwrap().count();
    assert_eq!(trees, 4, "imager, catalogue, ext-a, ext-b; none for the refused images");
    assert_eq!(std::fs::read_dir(env.path("cache/oci/tmp")).unwrap().count(), 0, "no work files left");

    // the same images copied out of the registry by skopeo into an OCI layout read the same, without network
    let pulled = env.path("pulled");
    for (repo_tag, name) in [
        (format!("siderolabs/imager:{TALOS}"), format!("ghcr.io/siderolabs/imager:{TALOS}")),
        (format!("siderolabs/extensions:{TALOS}"), format!("ghcr.io/siderolabs/extensions:{TALOS}")),
        ("siderolabs/ext-a:1.0.0".to_owned(), "ghcr.io/siderolabs/ext-a:1.0.0".to_owned()),
        ("siderolabs/ext-b:2.0.0".to_owned(), "ghcr.io/siderolabs/ext-b:2.0.0".to_owned()),
    ] {
        reg.pull_to_layout(&repo_tag, &pulled, &name);
    }
    drop(reg);
    let mut opts = env.opts();
    opts.cache = Cache::new(env.path("cache2"));
    opts.lock_path = Some(env.path("layout.lock"));
    let fr5 = timed("skopeo layout", || {
        fetch_release(
            &env.req(ReleaseSource::OciLayout(pulled.clone()), &["siderolabs/ext-a", "siderolabs/ext-b"]),
            &opts,
        )
    })
    .unwrap();
    check_boot_files(&fr5, 1);
    for (a, b) in fr5.extensions.iter().zip(&fr.extensions) {
        assert_eq!(snapshot(&a.dir), snapshot(&b.dir));
        assert_eq!(a.digest, b.digest);
    }
}

/// A blob whose bytes in the registry's storage no longer match its digest is detected, for a layer and
/// for a manifest; a damaged cached layer is detected offline.
#[test]
fn corrupted_blobs_are_detected() {
    let Some((reg_bin, skopeo)) = tools("corrupted_blobs_are_detected") else { return };
    let env = Env::new();
    let reg = Registry::start(&reg_bin, &skopeo);
    let mut layout = Layout::new(&env.path("layout"));
    let (index, _) = imager(&layout, 1);
    layout.tag("imager", &index);
    reg.push(&layout.dir, "imager", &format!("siderolabs/imager:{TALOS}"));
    let source = ReleaseSource::Registry(format!("{}/siderolabs", reg.host));
    let req = env.req(source, &[]);

    // the amd64 manifest's top (zstd) layer: flip its last byte in the registry's storage
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.blob_path(&index.digest)).unwrap()).unwrap();
    let amd64 = idx["manifests"].as_array().unwrap().iter().find(|m| m["platform"]["architecture"] == "amd64").unwrap();
    let amd64_digest = amd64["digest"].as_str().unwrap().to_owned();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.blob_path(&amd64_digest)).unwrap()).unwrap();
    let top = m["layers"][2]["digest"].as_str().unwrap().to_owned();
    let data_path = reg.blob_data(&top);
    let good = std::fs::read(&data_path).unwrap();
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0xff;
    std::fs::write(&data_path, &bad).unwrap();
    let e = fetch_release(&req, &env.opts()).unwrap_err();
    eprintln!("ERROR layer: {e}");
    assert!(matches!(e, ReleaseError::DigestMismatch { .. }), "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "{}/siderolabs/imager:{TALOS}: expected content with digest {top}; found sha256:{}",
            reg.host,
            sha256(&bad)
        )),
        "{e}"
    );
    assert!(!env.path("cache/oci/blobs/sha256").join(&top[7..]).exists(), "nothing cached under the digest");
    assert!(!env.path("talforge.lock").exists(), "no lock from a failed fetch");
    std::fs::write(&data_path, &good).unwrap();

    // a manifest served with other bytes than its digest
    let mpath = reg.blob_data(&amd64_digest);
    let good_m = std::fs::read(&mpath).unwrap();
    let mut bad_m = good_m.clone();
    bad_m.push(b' ');
    std::fs::write(&mpath, &bad_m).unwrap();
    let mut fresh = env.opts();
    fresh.cache = Cache::new(env.path("cache-fresh")); // the first attempt cached the manifests
    let e = fetch_release(&req, &fresh).unwrap_err();
    eprintln!("ERROR manifest: {e}");
    assert!(matches!(e, ReleaseError::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&amd64_digest), "{e}");
    std::fs::write(&mpath, &good_m).unwrap();

    // now it works; then damage the cached copy of the layer and drop the tree: offline reports it
    let fr = fetch_release(&req, &env.opts()).unwrap();
    check_boot_files(&fr, 1);
    let cached = env.path("cache/oci/blobs/sha256").join(&top[7..]);
    std::fs::write(&cached, &bad).unwrap();
    std::fs::remove_dir_all(env.path("cache/oci/trees")).unwrap();
    let mut offline = env.opts();
    offline.offline = true;
    let e = fetch_release(&req, &offline).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}/siderolabs/imager:{TALOS}: expected content with digest {top}; found sha256:{} (in {})",
            reg.host,
            sha256(&bad),
            cached.display()
        )
    );
}

/// Several fetches at once into one empty cache all succeed with the same result and leave no work files.
#[test]
fn concurrent_fetches_share_the_cache() {
    let Some((reg_bin, skopeo)) = tools("concurrent_fetches_share_the_cache") else { return };
    let env = Env::new();
    let reg = Registry::start(&reg_bin, &skopeo);
    let mut layout = Layout::new(&env.path("layout"));
    let (index, _) = imager(&layout, 1);
    layout.tag("imager", &index);
    let ext_a = extension(&layout, "ext-a", "1.0.0");
    layout.tag("ext-a", &ext_a);
    let cat = catalogue(&layout, &[("ext-a", "1.0.0", &ext_a.digest)]);
    layout.tag("extensions", &cat);
    reg.push(&layout.dir, "imager", &format!("siderolabs/imager:{TALOS}"));
    reg.push(&layout.dir, "ext-a", "siderolabs/ext-a:1.0.0");
    reg.push(&layout.dir, "extensions", &format!("siderolabs/extensions:{TALOS}"));
    let req = env.req(ReleaseSource::Registry(format!("{}/siderolabs", reg.host)), &["siderolabs/ext-a"]);
    let results: Vec<FetchedRelease> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let req = req.clone();
                let mut opts = env.opts();
                opts.lock_path = Some(env.path(&format!("lock-{i}")));
                s.spawn(move || fetch_release(&req, &opts).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        check_boot_files(r, 1);
        check_extension_tree(&r.extensions[0].dir, "amd64");
        assert_eq!(r.extensions, results[0].extensions);
        assert_eq!(r.lock, results[0].lock);
    }
    assert_eq!(std::fs::read_dir(env.path("cache/oci/tmp")).unwrap().count(), 0, "no work files left");
    assert_eq!(std::fs::read_dir(env.path("cache/oci/trees/sha256")).unwrap().count(), 3);
}

/// A tag that moved after the lock was written is reported, and followed only when asked.
#[test]
fn lock_mismatch_is_reported() {
    let Some((reg_bin, skopeo)) = tools("lock_mismatch_is_reported") else { return };
    let env = Env::new();
    let reg = Registry::start(&reg_bin, &skopeo);
    let mut layout = Layout::new(&env.path("layout"));
    let (first, _) = imager(&layout, 1);
    layout.tag("first", &first);
    let (second, _) = imager(&layout, 5);
    layout.tag("second", &second);
    reg.push(&layout.dir, "first", &format!("siderolabs/imager:{TALOS}"));
    let req = env.req(ReleaseSource::Registry(format!("{}/siderolabs", reg.host)), &[]);
    fetch_release(&req, &env.opts()).unwrap();
    let before = std::fs::read(env.path("talforge.lock")).unwrap();

    reg.push(&layout.dir, "second", &format!("siderolabs/imager:{TALOS}"));
    let e = fetch_release(&req, &env.opts()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}/siderolabs/imager:{TALOS}: talforge.lock pins {}; the source now serves {} (re-run with --update-lock to accept it)",
            reg.host, first.digest, second.digest
        )
    );
    assert_eq!(e.class(), ReleaseErrorClass::BadInput);
    assert_eq!(std::fs::read(env.path("talforge.lock")).unwrap(), before, "lock untouched");

    let mut update = env.opts();
    update.update_lock = true;
    let fr = fetch_release(&req, &update).unwrap();
    check_boot_files(&fr, 5);
    assert!(fr.lock_written);
    assert_eq!(env.lock().imager.unwrap().digest.as_str(), second.digest);

    // another Talos version is another reference: pinned afresh, no mismatch, the old pin dropped
    reg.push(&layout.dir, "first", "siderolabs/imager:v1.14.1");
    let mut req2 = req.clone();
    req2.talos_version = "1.14.1".into();
    let fr = fetch_release(&req2, &env.opts()).unwrap();
    check_boot_files(&fr, 1);
    let lock = env.lock();
    assert_eq!(lock.talos, "v1.14.1");
    assert_eq!(lock.imager.as_ref().unwrap().image, format!("{}/siderolabs/imager:v1.14.1", reg.host));
    assert_eq!(lock.imager.unwrap().digest.as_str(), first.digest);

    // a lock with an unknown field is refused before anything is fetched
    let text = std::fs::read_to_string(env.path("talforge.lock")).unwrap();
    std::fs::write(env.path("talforge.lock"), format!("{text}surprise: true\n")).unwrap();
    let e = fetch_release(&req, &env.opts()).unwrap_err();
    assert!(matches!(e, ReleaseError::LockParse { .. }), "{e}");
    assert!(e.to_string().contains("unknown field \"surprise\""), "{e}");
}

/// Offline without a cache gives the documented message; without a lock another one. No network used.
#[test]
fn offline_errors() {
    let env = Env::new();
    let d = format!("sha256:{}", "ab".repeat(32));
    std::fs::write(
        env.path("talforge.lock"),
        format!(
            "apiVersion: talforge.dev/v1alpha1\nimager:\n    digest: {d}\n    image: ghcr.io/siderolabs/imager:v1.14.0\nkind: \
             ReleaseLock\ntalos: v1.14.0\n"
        ),
    )
    .unwrap();
    let mut opts = env.opts();
    opts.offline = true;
    let req = env.req(ReleaseSource::default(), &[]);
    let e = fetch_release(&req, &opts).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "offline: ghcr.io/siderolabs/imager:v1.14.0 ({d}) is not in the cache at {}; run once without --offline",
            env.path("cache/oci/blobs/sha256").join("ab".repeat(32)).display()
        )
    );
    assert_eq!(e.class(), ReleaseErrorClass::MissingDependency);

    std::fs::remove_file(env.path("talforge.lock")).unwrap();
    let e = fetch_release(&req, &opts).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "offline: ghcr.io/siderolabs/imager:v1.14.0 is not pinned in {}; run once without --offline",
            env.path("talforge.lock").display()
        )
    );
    assert_eq!(e.class(), ReleaseErrorClass::MissingDependency);
}

/// A registry that accepts connections and never answers fails within the timeout; a closed port at once.
#[test]
fn registry_down_fails_in_bounded_time() {
    let env = Env::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    listener.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        let mut held = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !s2.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok((c, _)) = listener.accept() {
                held.push(c); // never answer
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let mut opts = env.opts();
    opts.timeout = Duration::from_secs(2);
    let req = env.req(ReleaseSource::Registry(format!("{host}/siderolabs")), &[]);
    let t0 = Instant::now();
    let e = fetch_release(&req, &opts).unwrap_err();
    let took = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    t.join().unwrap();
    eprintln!("TIMING hanging registry: {:.3}s: {e}", took.as_secs_f64());
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "{took:?}");
    assert_eq!(e.to_string(), format!("{host}/siderolabs/imager:{TALOS}: registry did not answer within 2s"));
    assert_eq!(e.class(), ReleaseErrorClass::Io);

    let port = free_port();
    let req = env.req(ReleaseSource::Registry(format!("127.0.0.1:{port}/siderolabs")), &[]);
    let t0 = Instant::now();
    let e = fetch_release(&req, &opts).unwrap_err();
    eprintln!("TIMING closed port: {:.3}s: {e}", t0.elapsed().as_secs_f64());
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(e.to_string().contains("cannot connect to 127.0.0.1:"), "{e}");
}

fn layout_release(env: &Env) -> (Layout, Desc, Desc, Desc, Desc) {
    let mut layout = Layout::new(&env.path("layout"));
    let (index, _) = imager(&layout, 1);
    layout.tag(&format!("ghcr.io/siderolabs/imager:{TALOS}"), &index);
    let ext_a = extension(&layout, "ext-a", "1.0.0");
    let ext_b = extension(&layout, "ext-b", "2.0.0");
    // ext-a only by digest (as the catalogue pins it), ext-b also by a short name
    layout.tag("siderolabs/ext-b:2.0.0", &ext_b);
    let cat = catalogue(&layout, &[("ext-a", "1.0.0", &ext_a.digest), ("ext-b", "2.0.0", &ext_b.digest)]);
    layout.tag(&format!("extensions:{TALOS}"), &cat);
    (layout, index, cat, ext_a, ext_b)
}

/// The OCI-layout source reads the same images from a layout directory, without network.
#[test]
fn oci_layout_source() {
    let env = Env::new();
    let (layout, index, cat, ext_a, ext_b) = layout_release(&env);
    let source = ReleaseSource::OciLayout(layout.dir.clone());
    let req = env.req(source.clone(), &["siderolabs/ext-a", "siderolabs/ext-b", "ghcr.io/siderolabs/ext-b:2.0.0"]);
    let fr = timed("layout cold", || fetch_release(&req, &env.opts())).unwrap();
    check_boot_files(&fr, 1);
    assert_eq!(fr.stats.manifests_fetched + fr.stats.blobs_downloaded, 0, "no registry");
    for e in &fr.extensions {
        check_extension_tree(&e.dir, "amd64");
    }
    assert_eq!(fr.extensions[1].dir, fr.extensions[2].dir, "same image, same tree");
    let lock = env.lock();
    assert_eq!(lock.imager.unwrap().digest.as_str(), index.digest);
    assert_eq!(lock.catalog.unwrap().digest.as_str(), cat.digest);
    assert_eq!(lock.extensions["siderolabs/ext-a"].digest.as_str(), ext_a.digest);
    assert_eq!(lock.extensions["ghcr.io/siderolabs/ext-b:2.0.0"].digest.as_str(), ext_b.digest);
    // offline is fine for a layout (it never needs the network)
    let mut opts = env.opts();
    opts.offline = true;
    let fr2 = timed("layout warm offline", || fetch_release(&req, &opts)).unwrap();
    assert_eq!(fr2.extensions, fr.extensions);

    // arm64 from the same layout: the arm64 manifest and its files
    let mut req64 = req.clone();
    req64.arch = "arm64".into();
    req64.extensions = vec!["siderolabs/ext-a".into()];
    let fr64 = fetch_release(&req64, &env.opts()).unwrap();
    assert_eq!(std::fs::read(&fr64.release.sd_stub.path).unwrap(), boot_file("arm64", "arm64", "systemd-stub.efi", 1));
    check_extension_tree(&fr64.extensions[0].dir, "arm64");

    // an image the layout does not name
    let e = fetch_release(&env.req(source, &["ghcr.io/siderolabs/ext-a:1.0.0"]), &env.opts()).unwrap_err();
    assert!(e.to_string().starts_with("ghcr.io/siderolabs/ext-a:1.0.0: not found in the OCI layout at"), "{e}");
}

/// Layer semantics and refusals, through layouts.
#[test]
fn layer_rules() {
    let env = Env::new();
    let mut layout = Layout::new(&env.path("layout"));
    // imager whose top layer deletes vmlinuz
    let mid = layout.layer(
        &["vmlinuz", "initramfs.xz", "systemd-boot.efi", "systemd-stub.efi"]
            .map(|f| Entry::OwnedFile(format!("usr/install/amd64/{f}"), f.as_bytes().to_vec(), 0o644)),
        Compression::Gzip,
    );
    let top = layout.layer(&[file("usr/install/amd64/.wh.vmlinuz", "")], Compression::Zstd);
    let m = layout.image("amd64", &[mid.clone(), top.clone()]);
    layout.tag(&format!("ghcr.io/siderolabs/imager:{TALOS}"), &m);
    let req = env.req(ReleaseSource::OciLayout(layout.dir.clone()), &[]);
    let e = fetch_release(&req, &env.opts_no_lock()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "ghcr.io/siderolabs/imager:{TALOS}: expected /usr/install/amd64/vmlinuz in the image; layer {} deletes it (whiteout)",
            top.0.digest
        )
    );

    // opaque parent, symlink in place of the file, missing platform
    for (n, (entries, want)) in [
        (vec![file("usr/install/.wh..wh..opq", "")], "hides it (opaque directory /usr/install)"),
        (vec![Entry::Symlink("usr/install/amd64/vmlinuz", "/boot/vmlinuz")], "; found a symlink"),
        (vec![file("usr/install", "a file replaces the directory")], "replaces /usr/install with a regular file"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut l = Layout::new(&env.path(&format!("l{n}")));
        let mid = l.layer(
            &["vmlinuz", "initramfs.xz", "systemd-boot.efi", "systemd-stub.efi"]
                .map(|f| Entry::OwnedFile(format!("usr/install/amd64/{f}"), f.as_bytes().to_vec(), 0o644)),
            Compression::None,
        );
        let top = l.layer(&entries, Compression::Gzip);
        let m = l.image("amd64", &[mid, top]);
        l.tag(&format!("ghcr.io/siderolabs/imager:{TALOS}"), &m);
        let e = fetch_release(&env.req(ReleaseSource::OciLayout(l.dir.clone()), &[]), &env.opts_no_lock()).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
        assert!(matches!(e, ReleaseError::MissingFile { .. }));
    }
    // a boot file that is a hard link to another file of its layer is read through the link
    let mut hl = Layout::new(&env.path("hardlink"));
    let layer = hl.layer(
        &[
            file("usr/share/stub.efi", "the stub"),
            file("usr/install/amd64/vmlinuz", "k"),
            file("usr/install/amd64/initramfs.xz", "i"),
            file("usr/install/amd64/systemd-boot.efi", "b"),
            Entry::HardLink("usr/install/amd64/systemd-stub.efi", "usr/share/stub.efi"),
        ],
        Compression::Zstd,
    );
    let hm = hl.image("amd64", &[layer]);
    hl.tag(&format!("ghcr.io/siderolabs/imager:{TALOS}"), &hm);
    let fr = fetch_release(&env.req(ReleaseSource::OciLayout(hl.dir.clone()), &[]), &env.opts_no_lock()).unwrap();
    assert_eq!(std::fs::read(&fr.release.sd_stub.path).unwrap(), b"the stub");
    assert_eq!(std::fs::read(&fr.release.kernel.path).unwrap(), b"k");

    let idx = layout.index(&[("arm64", m.clone())]);
    let mut l2 = Layout::new(&env.path("l-arm"));
    for f in std::fs::read_dir(layout.dir.join("blobs/sha256")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), l2.dir.join("blobs/sha256").join(f.file_name())).unwrap();
    }
    l2.tag(&format!("imager:{TALOS}"), &idx);
    let e = fetch_release(&env.req(ReleaseSource::OciLayout(l2.dir.clone()), &[]), &env.opts_no_lock()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("ghcr.io/siderolabs/imager:{TALOS}: expected an image for linux/amd64; found linux/arm64/v8")
    );

    // a good imager, and extensions that try to escape
    let mut ok = Layout::new(&env.path("ok"));
    let (index, _) = imager(&ok, 1);
    ok.tag(&format!("ghcr.io/siderolabs/imager:{TALOS}"), &index);
    let cases: Vec<(&str, Vec<Vec<Entry>>, &str)> = vec![
        (
            "abs",
            vec![vec![Entry::RawName(b"/etc/escaped", b"x".to_vec())]],
            "unsafe entry \"/etc/escaped\": absolute path",
        ),
        (
            "symlink-parent",
            vec![
                vec![Entry::RawSymlink(b"rootfs/link", "/tmp")],
                vec![Entry::RawName(b"rootfs/link/escaped", b"x".to_vec())],
            ],
            "unsafe entry \"rootfs/link/escaped\": goes through the symlink rootfs/link",
        ),
        (
            "hardlink-out",
            vec![vec![Entry::HardLink("rootfs/h", "/etc/passwd")]],
            "unsafe entry \"rootfs/h\": hard link target /etc/passwd: absolute path",
        ),
        ("device", vec![vec![Entry::Char("rootfs/c")]], "device files are not allowed"),
        (
            "extra-top",
            vec![vec![file("extra", "x")]],
            "expected exactly manifest.yaml (a file) and rootfs/ (a directory) at the top; found extra, manifest.yaml, rootfs",
        ),
    ];
    let mut lines = Vec::new();
    let mut digests = Vec::new();
    for (name, layers, _) in &cases {
        let mut ls = Vec::new();
        for (i, entries) in layers.iter().enumerate() {
            let mut e = if i == 0 { extension_entries(name, "1") } else { Vec::new() };
            e.extend(entries.iter().cloned());
            ls.push(ok.layer(&e, Compression::Gzip));
        }
        let m = ok.image("amd64", &ls);
        digests.push(m.digest.clone());
    }
    for ((name, _, _), d) in cases.iter().zip(&digests) {
        lines.push((*name, "1", d.as_str()));
    }
    let cat = catalogue(&ok, &lines);
    ok.tag(&format!("ghcr.io/siderolabs/extensions:{TALOS}"), &cat);
    let outside = Path::new("/tmp/escaped");
    let _ = std::fs::remove_file(outside);
    for (name, _, want) in &cases {
        let e = fetch_release(
            &env.req(ReleaseSource::OciLayout(ok.dir.clone()), &[&format!("siderolabs/{name}")]),
            &env.opts_no_lock(),
        )
        .unwrap_err();
        eprintln!("ERROR {name}: {e}");
        assert!(e.to_string().contains(want), "{name}: {e}");
        assert_eq!(e.class(), ReleaseErrorClass::BadInput, "{name}");
    }
    assert!(!outside.exists() && !Path::new("/etc/escaped").exists());
    assert_eq!(std::fs::read_dir(env.path("cache/oci/tmp")).unwrap().count(), 0, "no work files left");
}

/// The project's fixture release (plain directory) pushed as images and fetched back: identical files.
#[test]
fn fixture_release_round_trip() {
    let fixture_dir = std::env::var_os("TALFORGE_FIXTURE_RELEASE")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../out/fixture-release"), PathBuf::from);
    let fixture = fixture_dir.as_path();
    if !fixture.join("usr/install/amd64/vmlinuz").is_file() {
        talforge_builder::skip_test!(
            "SKIP fixture_release_round_trip: no fixture release at {} (run ci/fixture-release)",
            fixture.display()
        );
        return;
    }
    let Some((reg_bin, skopeo)) = tools("fixture_release_round_trip") else { return };
    let env = Env::new();
    let dir_req = env.req(
        ReleaseSource::Dir(fixture.to_owned()),
        &["siderolabs/fixture-storage-net", "siderolabs/fixture-firmware"],
    );
    let mut no_lock = env.opts();
    no_lock.lock_path = None;
    let from_dir = fetch_release(&dir_req, &no_lock).unwrap();
    assert!(from_dir.lock.is_none());

    let mut layout = Layout::new(&env.path("layout"));
    // imager: the four files split over two layers (gzip, zstd), plus the release's fixture.json
    let read = |f: &str| std::fs::read(fixture.join("usr/install/amd64").join(f)).unwrap();
    let l1 = layout.layer(
        &[
            Entry::OwnedFile("usr/install/amd64/vmlinuz".into(), read("vmlinuz"), 0o644),
            Entry::OwnedFile("usr/install/amd64/initramfs.xz".into(), read("initramfs.xz"), 0o644),
            Entry::OwnedFile("fixture.json".into(), std::fs::read(fixture.join("fixture.json")).unwrap(), 0o644),
        ],
        Compression::Gzip,
    );
    let l2 = layout.layer(
        &[
            Entry::OwnedFile("usr/install/amd64/systemd-boot.efi".into(), read("systemd-boot.efi"), 0o644),
            Entry::OwnedFile("usr/install/amd64/systemd-stub.efi".into(), read("systemd-stub.efi"), 0o644),
        ],
        Compression::Zstd,
    );
    let m = layout.image("amd64", &[l1, l2]);
    let index = layout.index(&[("amd64", m)]);
    layout.tag("imager", &index);
    let mut lines = Vec::new();
    for ext in &from_dir.extensions {
        let entries = tree_entries(&ext.dir);
        let layer = layout.layer(&entries, Compression::Zstd);
        let m = layout.image("amd64", &[layer]);
        let idx = layout.index(&[("amd64", m)]);
        layout.tag(&ext.name, &idx);
        lines.push((ext.name.clone(), ext.version.clone(), idx.digest.clone()));
    }
    let cat =
        catalogue(&layout, &lines.iter().map(|(n, v, d)| (n.as_str(), v.as_str(), d.as_str())).collect::<Vec<_>>());
    layout.tag("extensions", &cat);
    let reg = Registry::start(&reg_bin, &skopeo);
    reg.push(&layout.dir, "imager", &format!("siderolabs/imager:{TALOS}"));
    reg.push(&layout.dir, "extensions", &format!("siderolabs/extensions:{TALOS}"));
    for (n, v, _) in &lines {
        reg.push(&layout.dir, n, &format!("siderolabs/{n}:{v}"));
    }

    let req = env.req(
        ReleaseSource::Registry(format!("{}/siderolabs", reg.host)),
        &["siderolabs/fixture-storage-net", "siderolabs/fixture-firmware"],
    );
    let fr = timed("fixture cold", || fetch_release(&req, &env.opts())).unwrap();
    eprintln!("fixture bytes downloaded: {}", fr.stats.bytes_downloaded);
    let fr2 = timed("fixture warm", || fetch_release(&req, &env.opts())).unwrap();
    let mut off = env.opts();
    off.offline = true;
    let fr3 = timed("fixture offline", || fetch_release(&req, &off)).unwrap();
    for got in [&fr, &fr2, &fr3] {
        let (a, b) = (&got.release, &from_dir.release);
        for (x, y) in
            [(&a.kernel, &b.kernel), (&a.initramfs, &b.initramfs), (&a.sd_boot, &b.sd_boot), (&a.sd_stub, &b.sd_stub)]
        {
            assert_eq!((x.sha256.as_str(), x.size), (y.sha256.as_str(), y.size));
        }
        for (x, y) in got.extensions.iter().zip(&from_dir.extensions) {
            assert_eq!((x.name.as_str(), x.version.as_str()), (y.name.as_str(), y.version.as_str()));
            assert_eq!(snapshot(&x.dir), snapshot(&y.dir), "{}", x.name);
        }
    }
}

/// Tar entries for a directory tree, as an extension image holds it (paths relative to `root`).
fn tree_entries(root: &Path) -> Vec<Entry> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    fn walk(root: &Path, p: &Path, out: &mut Vec<Entry>) {
        let mut entries: Vec<_> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for e in entries {
            let rel = e.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&e).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                out.push(Entry::OwnedSymlink(rel, std::fs::read_link(&e).unwrap().display().to_string()));
            } else if m.is_dir() {
                out.push(Entry::OwnedDir(format!("{rel}/"), mode));
                walk(root, &e, out);
            } else {
                out.push(Entry::OwnedFile(rel, std::fs::read(&e).unwrap(), mode));
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// HTTPS with rustls + ring against a registry whose certificate comes from a private CA: refused without
/// the CA, accepted with it.
#[test]
fn https_registry_with_private_ca() {
    let Some((reg_bin, skopeo)) = tools("https_registry_with_private_ca") else { return };
    if !Path::new("/usr/bin/openssl").is_file() {
        talforge_builder::skip_test!("SKIP https_registry_with_private_ca: needs openssl");
        return;
    }
    let env = Env::new();
    let pki = env.path("pki");
    std::fs::create_dir(&pki).unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("/usr/bin/openssl").args(args).current_dir(&pki).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=talforge test CA"],
        ]
        .concat(),
    );
    openssl(&[&["req"][..], &ec, &["-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(
        pki.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let reg = Registry::start_with(&reg_bin, &skopeo, Some((&pki.join("srv.pem"), &pki.join("srv.key"))));
    let mut layout = Layout::new(&env.path("layout"));
    let (index, _) = imager(&layout, 1);
    layout.tag("imager", &index);
    reg.push(&layout.dir, "imager", &format!("siderolabs/imager:{TALOS}"));
    let req = env.req(ReleaseSource::Registry(format!("{}/siderolabs", reg.host)), &[]);

    let mut opts = env.opts();
    opts.https_on_loopback = true;
    let e = fetch_release(&req, &opts).unwrap_err();
    eprintln!("ERROR untrusted: {e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert_eq!(e.class(), ReleaseErrorClass::Io);

    opts.extra_ca_certs = vec![pki.join("ca.pem")];
    let fr = timed("https imager", || fetch_release(&req, &opts)).unwrap();
    check_boot_files(&fr, 1);
}

/// Malformed manifests and layers are errors, never panics: hand-made cases, then a few hundred mutated
/// layers of an imager and of an extension.
#[test]
fn malformed_images_are_errors() {
    let env = Env::new();
    let opts = env.opts_no_lock();
    let imager_named = |l: &mut Layout, m: &Desc| l.tag(&format!("ghcr.io/siderolabs/imager:{TALOS}"), m);
    let boot: Vec<Entry> = ["vmlinuz", "initramfs.xz", "systemd-boot.efi", "systemd-stub.efi"]
        .iter()
        .map(|f| Entry::OwnedFile(format!("usr/install/amd64/{f}"), vec![b'x'; 3000], 0o644))
        .collect();
    let raw = tar(&boot);
    let gz = compress(&raw, Compression::Gzip).0;
    let zs = compress(&raw, Compression::Zstd).0;
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "garbage",
            b"this is not a tar archive at all, just text ".repeat(20),
            "application/vnd.oci.image.layer.v1.tar",
            "expected a tar layer",
        ),
        ("truncated gzip", gz[..gz.len() / 2].to_vec(), "application/vnd.oci.image.layer.v1.tar+gzip", "expected"),
        ("truncated zstd", zs[..zs.len() / 2].to_vec(), "application/vnd.oci.image.layer.v1.tar+zstd", "expected"),
        (
            "wasm layer",
            gz.clone(),
            "application/vnd.wasm.content.layer.v1+wasm",
            "expected tar layers (plain, gzip or zstd)",
        ),
        ("tar cut mid-entry", raw[..1200].to_vec(), "application/vnd.oci.image.layer.v1.tar", "expected a tar layer"),
    ];
    for (name, bytes, media_type, want) in cases {
        let mut l = Layout::new(&env.path(name));
        let d = l.blob(media_type, &bytes);
        let m = l.image("amd64", &[(d, digest(&bytes))]);
        imager_named(&mut l, &m);
        let e = fetch_release(&env.req(ReleaseSource::OciLayout(l.dir.clone()), &[]), &opts).unwrap_err();
        eprintln!("ERROR {name}: {e}");
        assert!(e.to_string().contains(want), "{name}: {e}");
        assert_eq!(e.class(), ReleaseErrorClass::BadInput, "{name}");
    }

    // manifests: broken JSON, a bad digest, a wrong size
    let mut l = Layout::new(&env.path("manifests"));
    let good = l.layer(&boot, Compression::Gzip);
    let bad_manifests: Vec<(&str, String, &str)> = vec![
        ("json", "{\"schemaVersion\": 2, \"layers\": [".into(), "invalid JSON"),
        (
            "digest",
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:zz","size":1}}]}}"#,
                d = good.0.digest
            ),
            "malformed image manifest",
        ),
        (
            "size",
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":10}}]}}"#,
                d = good.0.digest
            ),
            "expected 10 bytes as the manifest says; found",
        ),
        (
            "index in index loop",
            r#"{"schemaVersion":2,"manifests":[]}"#.into(),
            "expected an image for linux/amd64; found no platforms",
        ),
    ];
    for (name, text, want) in bad_manifests {
        let m = l.blob("application/vnd.oci.image.manifest.v1+json", text.as_bytes());
        l.tag(&format!("ghcr.io/siderolabs/imager:{TALOS}"), &m);
        let e = fetch_release(&env.req(ReleaseSource::OciLayout(l.dir.clone()), &[]), &opts).unwrap_err();
        eprintln!("ERROR manifest {name}: {e}");
        assert!(e.to_string().contains(want), "{name}: {e}");
        // start over with a clean index for the next case
        l = Layout::new(&env.path(&format!("manifests-{name}")));
        let _ = l.layer(&boot, Compression::Gzip);
    }

    // mutated layers: flip a few bytes anywhere; every outcome is a result
    let ext = extension_entries("fuzz", "1");
    let ext_raw = tar(&ext);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut ok, mut err) = (0, 0);
    let fuzz = env.path("fuzz");
    for i in 0..200u32 {
        let extension_case = i % 2 == 1;
        let base = if extension_case { &ext_raw } else { &raw };
        let (mut bytes, mt) =
            compress(base, [Compression::None, Compression::Gzip, Compression::Zstd][(i % 3) as usize]);
        for _ in 0..(1 + next() % 4) {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] ^= (next() % 255 + 1) as u8;
        }
        let _ = std::fs::remove_dir_all(&fuzz);
        let mut l = Layout::new(&fuzz);
        let layer = l.blob(mt, &bytes);
        if extension_case {
            let (index, _) = imager(&l, 1);
            l.tag(&format!("ghcr.io/siderolabs/imager:{TALOS}"), &index);
            let m = l.image("amd64", &[(layer, String::new())]);
            l.tag("ghcr.io/siderolabs/fuzz:1", &m);
        } else {
            let m = l.image("amd64", &[(layer, String::new())]);
            l.tag(&format!("ghcr.io/siderolabs/imager:{TALOS}"), &m);
        }
        let mut o = env.opts_no_lock();
        o.cache = Cache::new(env.path("fuzz-cache"));
        let exts: &[&str] = if extension_case { &["ghcr.io/siderolabs/fuzz:1"] } else { &[] };
        match fetch_release(&env.req(ReleaseSource::OciLayout(fuzz.clone()), exts), &o) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
        let _ = std::fs::remove_dir_all(env.path("fuzz-cache/oci/trees"));
    }
    eprintln!("fuzz: {ok} fetched, {err} refused");
    assert!(err > 60, "most mutations are refused");
}

/// A registry that wants credentials gets a clear error: talforge pulls anonymously.
#[test]
fn registry_requiring_credentials_is_refused_clearly() {
    let Some((reg_bin, skopeo)) = tools("registry_requiring_credentials_is_refused_clearly") else { return };
    let env = Env::new();
    let reg = Registry::start_with_auth(&reg_bin, &skopeo);
    let req = env.req(ReleaseSource::Registry(format!("{}/siderolabs", reg.host)), &[]);
    let e = timed("credentials wanted", || fetch_release(&req, &env.opts())).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "{}/siderolabs/imager:{TALOS}: registry error: access denied; talforge pulls anonymously",
            reg.host
        )),
        "{e}"
    );
    assert_eq!(e.class(), ReleaseErrorClass::Io);
}
