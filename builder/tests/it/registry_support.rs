//! Test support: OCI image layouts built in the test (tar layers written with the `tar` crate, gzip, zstd or
//! plain), a throwaway `docker-registry` on 127.0.0.1 that the test owns and kills, and `skopeo` to push
//! layouts into it. Nothing here talks to any address but 127.0.0.1.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub fn sha256(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", sha256(data))
}

/// The installs the registry tests need, or `None` after printing why the test is skipped.
pub fn tools(test: &str) -> Option<(PathBuf, PathBuf)> {
    if std::env::var_os("TALFORGE_NO_REGISTRY_TESTS").is_some() {
        eprintln!("SKIP {test}: TALFORGE_NO_REGISTRY_TESTS is set");
        return None;
    }
    let registry = PathBuf::from("/usr/bin/docker-registry");
    let skopeo = ["/usr/bin/skopeo", "/usr/local/bin/skopeo"].iter().map(PathBuf::from).find(|p| p.is_file());
    match (registry.is_file(), skopeo) {
        (true, Some(s)) => Some((registry, s)),
        (r, s) => {
            talforge_builder::skip_test!(
                "SKIP {test}: needs {} (apt-get install -y docker-registry skopeo)",
                [(!r).then_some("docker-registry"), s.is_none().then_some("skopeo")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
            None
        }
    }
}

/// Installs ring as rustls's provider (the binary does this in main).
pub fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// ---------------------------------------------------------------------------------------------------------
// Tar layers

#[derive(Clone, Debug)]
pub enum Entry {
    File(&'static str, Vec<u8>, u32),
    Dir(&'static str, u32),
    Symlink(&'static str, &'static str),
    HardLink(&'static str, &'static str),
    /// A character device.
    Char(&'static str),
    /// A regular file whose name is written into the header as raw bytes (no checks).
    RawName(&'static [u8], Vec<u8>),
    /// A symlink whose name is written raw.
    RawSymlink(&'static [u8], &'static str),
    /// Owned path variant for trees read from disk.
    OwnedFile(String, Vec<u8>, u32),
    OwnedDir(String, u32),
    OwnedSymlink(String, String),
}

pub fn file(p: &'static str, data: impl Into<Vec<u8>>) -> Entry {
    Entry::File(p, data.into(), 0o644)
}

const MTIME: u64 = 1_700_000_000;

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn raw_name(h: &mut tar::Header, name: &[u8]) {
    let n = &mut h.as_old_mut().name;
    n.fill(0);
    n[..name.len()].copy_from_slice(name);
}

pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            Entry::File(p, d, m) => {
                let mut h = header(tar::EntryType::Regular, *m, d.len() as u64);
                b.append_data(&mut h, p, &d[..]).unwrap();
            }
            Entry::OwnedFile(p, d, m) => {
                let mut h = header(tar::EntryType::Regular, *m, d.len() as u64);
                b.append_data(&mut h, p, &d[..]).unwrap();
            }
            Entry::Dir(p, m) => {
                let mut h = header(tar::EntryType::Directory, *m, 0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            Entry::OwnedDir(p, m) => {
                let mut h = header(tar::EntryType::Directory, *m, 0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            Entry::Symlink(p, t) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, p, t).unwrap();
            }
            Entry::OwnedSymlink(p, t) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                b.append_link(&mut h, p, t).unwrap();
            }
            Entry::HardLink(p, t) => {
                let mut h = header(tar::EntryType::Link, 0o644, 0);
                b.append_link(&mut h, p, t).unwrap();
            }
            Entry::Char(p) => {
                let mut h = header(tar::EntryType::Char, 0o600, 0);
                h.set_device_major(1).unwrap();
                h.set_device_minor(3).unwrap();
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            Entry::RawName(name, d) => {
                let mut h = header(tar::EntryType::Regular, 0o644, d.len() as u64);
                raw_name(&mut h, name);
                h.set_cksum();
                b.append(&h, &d[..]).unwrap();
            }
            Entry::RawSymlink(name, target) => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                raw_name(&mut h, name);
                h.set_link_name(target).unwrap();
                h.set_cksum();
                b.append(&h, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn compress(data: &[u8], c: Compression) -> (Vec<u8>, &'static str) {
    match c {
        Compression::None => (data.to_vec(), "application/vnd.oci.image.layer.v1.tar"),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            (e.finish().unwrap(), "application/vnd.oci.image.layer.v1.tar+gzip")
        }
        Compression::Zstd => (zstd::encode_all(data, 3).unwrap(), "application/vnd.oci.image.layer.v1.tar+zstd"),
    }
}

// ---------------------------------------------------------------------------------------------------------
// OCI layouts

/// A descriptor as it goes into a manifest or index.
#[derive(Clone, Debug)]
pub struct Desc {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Desc {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// An OCI image layout being written.
#[derive(Debug)]
pub struct Layout {
    pub dir: PathBuf,
    index: Vec<serde_json::Value>,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let l = Layout { dir: dir.to_owned(), index: Vec::new() };
        l.write_index();
        l
    }

    pub fn blob(&self, media_type: &str, data: &[u8]) -> Desc {
        let d = digest(data);
        std::fs::write(self.dir.join("blobs/sha256").join(&d[7..]), data).unwrap();
        Desc { media_type: media_type.to_owned(), digest: d, size: data.len() as u64 }
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(&digest[7..])
    }

    /// A layer from tar entries.
    pub fn layer(&self, entries: &[Entry], c: Compression) -> (Desc, String) {
        let t = tar(entries);
        let diff_id = digest(&t);
        let (bytes, mt) = compress(&t, c);
        (self.blob(mt, &bytes), diff_id)
    }

    /// An image manifest over the layers; returns its descriptor.
    pub fn image(&self, arch: &str, layers: &[(Desc, String)]) -> Desc {
        let config = serde_json::json!({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.1.clone()).collect::<Vec<_>>()},
            "config": {}
        });
        let c = self.blob("application/vnd.oci.image.config.v1+json", config.to_string().as_bytes());
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": c.json(),
            "layers": layers.iter().map(|l| l.0.json()).collect::<Vec<_>>(),
        });
        self.blob("application/vnd.oci.image.manifest.v1+json", m.to_string().as_bytes())
    }

    /// An index over (arch, manifest) pairs.
    pub fn index(&self, manifests: &[(&str, Desc)]) -> Desc {
        let i = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests.iter().map(|(arch, d)| {
                let mut j = d.json();
                j["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
                if *arch == "arm64" { j["platform"]["variant"] = "v8".into(); }
                j
            }).collect::<Vec<_>>(),
        });
        self.blob("application/vnd.oci.image.index.v1+json", i.to_string().as_bytes())
    }

    /// Names `desc` in `index.json`.
    pub fn tag(&mut self, name: &str, desc: &Desc) {
        let mut j = desc.json();
        j["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
        self.index.push(j);
        self.write_index();
    }

    fn write_index(&self) {
        let i = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": self.index});
        std::fs::write(self.dir.join("index.json"), i.to_string()).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------------------
// The registry

/// A `docker-registry` serving on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Registry {
    pub host: String,
    pub storage: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
    skopeo: PathBuf,
}

/// An unused port on 127.0.0.1 (bound and released; the registry binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http_get_status(host: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&host.parse().ok()?, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let line = String::from_utf8_lossy(&buf[..n]);
    line.split_whitespace().nth(1)?.parse().ok()
}

impl Registry {
    pub fn start(registry: &Path, skopeo: &Path) -> Registry {
        Registry::start_with(registry, skopeo, None)
    }

    /// A registry that requires HTTP basic authentication (htpasswd) for everything.
    pub fn start_with_auth(registry: &Path, skopeo: &Path) -> Registry {
        Registry::start_full(registry, skopeo, None, true)
    }

    /// A registry serving HTTPS with the given PEM certificate chain and key.
    pub fn start_with(registry: &Path, skopeo: &Path, tls: Option<(&Path, &Path)>) -> Registry {
        Registry::start_full(registry, skopeo, tls, false)
    }

    fn start_full(registry: &Path, skopeo: &Path, tls: Option<(&Path, &Path)>, auth: bool) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        for _ in 0..5 {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            let mut text = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
                storage.display()
            );
            if auth {
                // Nobody logs in during the tests: any well-formed bcrypt entry will do.
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, "ci:$2y$05$abcdefghijklmnopqrstuu5Q8J6q5oW9e2lB7wz1d3m4k5Lr6GiGe\n").unwrap();
                text.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: talforge-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            if let Some((cert, key)) = tls {
                text.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()));
            }
            std::fs::write(&config, text).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new(registry)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                // a TLS registry answers a plain request with 400: it is up either way
                if http_get_status(&host, "/v2/")
                    .is_some_and(|s| s == 200 || (tls.is_some() && s == 400) || (auth && s == 401))
                {
                    return Registry { host, storage, child: Some(child), _dir: dir, skopeo: skopeo.to_owned() };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // port taken in the meantime: try another
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// Pushes the image named `name` in the layout to `<host>/<repo>:<tag>`, keeping digests.
    pub fn push(&self, layout: &Path, name: &str, repo_tag: &str) {
        let out = Command::new(&self.skopeo)
            .args(["--insecure-policy", "copy", "--all", "--preserve-digests", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{name}", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo push {name} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Copies `<host>/<repo>:<tag>` into an OCI layout under `name`.
    pub fn pull_to_layout(&self, repo_tag: &str, layout: &Path, name: &str) {
        let out = Command::new(&self.skopeo)
            .args(["--insecure-policy", "copy", "--all", "--preserve-digests", "--quiet", "--src-tls-verify=false"])
            .arg(format!("docker://{}/{repo_tag}", self.host))
            .arg(format!("oci:{}:{name}", layout.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo pull {repo_tag} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The registry's stored copy of a blob.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = &digest[7..];
        self.storage.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// Stops the registry (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------------------
// Release images

pub const TALOS: &str = "v1.14.0";

/// Contents of the imager's boot files for an (image platform, release arch, generation).
pub fn boot_file(image_arch: &str, arch: &str, name: &str, generation: u32) -> Vec<u8> {
    let mut v = format!("{name} for {arch} in the {image_arch} image, generation {generation}\n").into_bytes();
    v.extend((0..4096u32).map(|i| (i * 7 + generation) as u8));
    v
}

/// The expected final boot files of [`imager`] for `arch`.
pub fn expected_boot(arch: &str, generation: u32) -> Vec<(&'static str, Vec<u8>)> {
    ["vmlinuz", "initramfs.xz", "systemd-boot.efi", "systemd-stub.efi"]
        .into_iter()
        .map(|f| {
            // vmlinuz comes from the top (zstd) layer; the rest from the middle (gzip) layer
            let g = if f == "vmlinuz" { generation + 1 } else { generation };
            (f, boot_file(arch, arch, f, g))
        })
        .collect()
}

fn install_path(arch: &str, f: &str) -> &'static str {
    Box::leak(format!("usr/install/{arch}/{f}").into_boxed_str())
}

/// An imager-like multi-arch image: per platform three layers — a plain-tar bottom layer with stale boot
/// files that the layers above fully override (so it is never needed), a gzip layer with the boot files of
/// both architectures plus unrelated tools, and a zstd layer that replaces `vmlinuz` and whiteouts the SBOM.
/// Returns (index descriptor, bottom-layer digests).
pub fn imager(l: &Layout, generation: u32) -> (Desc, Vec<String>) {
    let mut manifests = Vec::new();
    let mut bottoms = Vec::new();
    for image_arch in ["amd64", "arm64"] {
        let mut stale = vec![Entry::Dir("usr/", 0o755)];
        let mut mid = vec![
            file("usr/bin/imager", format!("imager {image_arch} {generation}")),
            Entry::Dir("usr/install/", 0o755),
        ];
        let mut top = Vec::new();
        for arch in ["amd64", "arm64"] {
            for f in ["vmlinuz", "initramfs.xz", "systemd-boot.efi", "systemd-stub.efi"] {
                stale.push(Entry::File(install_path(arch, f), b"stale".to_vec(), 0o644));
                let content = if image_arch == arch {
                    boot_file(arch, arch, f, generation)
                } else {
                    boot_file(image_arch, arch, f, generation)
                };
                mid.push(Entry::File(install_path(arch, f), content, 0o644));
            }
            mid.push(file(install_path(arch, "talos.spdx.json"), "{}"));
            let content = if image_arch == arch {
                boot_file(arch, arch, "vmlinuz", generation + 1)
            } else {
                boot_file(image_arch, arch, "vmlinuz", generation + 1)
            };
            top.push(Entry::File(install_path(arch, "vmlinuz"), content, 0o644));
            top.push(file(install_path(arch, ".wh.talos.spdx.json"), ""));
        }
        let bottom = l.layer(&stale, Compression::None);
        bottoms.push(bottom.0.digest.clone());
        let layers = [bottom, l.layer(&mid, Compression::Gzip), l.layer(&top, Compression::Zstd)];
        manifests.push((image_arch, l.image(image_arch, &layers)));
    }
    (l.index(&manifests), bottoms)
}

/// An extension image's layer entries: `manifest.yaml` and `rootfs/` with a file of each mode.
pub fn extension_entries(name: &str, version: &str) -> Vec<Entry> {
    let manifest = format!(
        "version: v1alpha1\nmetadata:\n  name: {name}\n  version: {version}\n  author: talforge tests\n  description: test\n  \
         compatibility:\n    talos:\n      version: \">= v1.12.0\"\n"
    );
    vec![
        Entry::OwnedFile("manifest.yaml".into(), manifest.into_bytes(), 0o644),
        Entry::Dir("rootfs/", 0o755),
        Entry::Dir("rootfs/usr/", 0o755),
        Entry::Dir("rootfs/usr/lib/", 0o755),
        Entry::Dir("rootfs/usr/lib/modules/", 0o755),
        Entry::OwnedFile("rootfs/usr/lib/modules/ext.ko".into(), format!("module of {name}").into_bytes(), 0o644),
        Entry::Dir("rootfs/usr/local/", 0o755),
        Entry::Dir("rootfs/usr/local/lib/", 0o750),
        Entry::Dir("rootfs/usr/local/bin/", 0o755),
        Entry::File("rootfs/usr/local/bin/tool", b"#!/bin/sh\necho tool\n".to_vec(), 0o755),
        Entry::File("rootfs/usr/local/lib/secret", b"s".to_vec(), 0o600),
        Entry::Symlink("rootfs/usr/lib/ext-link.ko", "modules/ext.ko"),
        Entry::HardLink("rootfs/usr/local/bin/tool2", "rootfs/usr/local/bin/tool"),
        Entry::File("rootfs/usr/local/lib/gone", b"deleted by the next layer".to_vec(), 0o644),
        Entry::Dir("rootfs/usr/local/share/", 0o755),
        Entry::File("rootfs/usr/local/share/old", b"hidden by an opaque whiteout".to_vec(), 0o644),
    ]
}

/// A two-layer extension image (gzip then zstd; the second deletes a file and makes a directory opaque),
/// as a multi-arch index; returns its descriptor.
pub fn extension(l: &Layout, name: &str, version: &str) -> Desc {
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let first = l.layer(&extension_entries(name, version), Compression::Gzip);
        let second = l.layer(
            &[
                file("rootfs/usr/local/lib/.wh.gone", ""),
                file("rootfs/usr/local/share/.wh..wh..opq", ""),
                file("rootfs/usr/local/share/new", arch.to_string()),
            ],
            Compression::Zstd,
        );
        manifests.push((arch, l.image(arch, &[first, second])));
    }
    l.index(&manifests)
}

/// A single-platform extension image from one layer of entries.
pub fn raw_extension(l: &Layout, entries: &[Entry]) -> Desc {
    let layer = l.layer(entries, Compression::Gzip);
    l.image("amd64", &[layer])
}

/// The catalogue image: `image-digests` listing `ghcr.io/siderolabs/<name>:<version>@<digest>` lines.
pub fn catalogue(l: &Layout, lines: &[(&str, &str, &str)]) -> Desc {
    let text: String = lines.iter().map(|(n, v, d)| format!("ghcr.io/siderolabs/{n}:{v}@{d}\n")).collect();
    let descriptions: String =
        lines.iter().map(|(n, v, d)| format!("\"ghcr.io/siderolabs/{n}:{v}@{d}\":\n  author: tests\n")).collect();
    let layer = l.layer(
        &[
            Entry::OwnedFile("image-digests".into(), text.into_bytes(), 0o644),
            Entry::OwnedFile("descriptions.yaml".into(), descriptions.into_bytes(), 0o644),
        ],
        Compression::Gzip,
    );
    let m = l.image("amd64", &[layer]);
    l.index(&[("amd64", m)])
}

/// Every path under `root` with (type, mode, content or link target), for comparing trees.
pub fn snapshot(root: &Path) -> Vec<(String, String)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    fn walk(root: &Path, p: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for e in entries {
            let rel = e.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&e).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                out.push((rel, format!("symlink -> {}", std::fs::read_link(&e).unwrap().display())));
            } else if m.is_dir() {
                out.push((rel, format!("dir {mode:o}")));
                walk(root, &e, out);
            } else {
                out.push((rel, format!("file {mode:o} {}", sha256(&std::fs::read(&e).unwrap()))));
            }
        }
    }
    walk(root, root, &mut out);
    out
}
