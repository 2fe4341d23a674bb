//! The PXE outputs: `kernel-<arch>` and `initramfs-<arch>.xz` (copies of the release's kernel and of the
//! initramfs with extensions, as Talos's `outKernel`/`outInitramfs` copy them), `cmdline-<platform>-<arch>` (the
//! kernel command line exactly as Talos's `outCmdline` writes it: the bytes of the line, **no trailing newline**;
//! talos `pkg/imager/out.go`), and `boot.ipxe`, the script Image Factory serves for `/pxe/<id>/<version>/<plat>-<arch>`
//! (image-factory `internal/frontend/http/standard.ipxe`):
//!
//! ```text
//! #!ipxe
//!
//! imgfree
//! kernel <base>kernel-amd64 <cmdline>
//! initrd <base>initramfs-amd64.xz
//! boot
//! ```
//!
//! `<base>` is empty by default, so the URLs are relative and iPXE resolves them against the script's own URL
//! (serve the directory over HTTP and `chain http://host/dir/boot.ipxe`); with a base URL (`http://host/dir/`, a
//! missing trailing `/` is added) they are absolute, like the factory's. Secure Boot PXE (the factory's
//! `secureboot.ipxe`, which boots the signed UKI) is not produced: Talos refuses kernel/initramfs outputs with
//! Secure Boot.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use super::atomic::TempOutput;

/// Everything the PXE files are made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PxeSpec {
    /// `amd64` or `arm64`.
    pub arch: String,
    /// Talos platform of the command line (`metal`): names `cmdline-<platform>-<arch>`.
    pub platform: String,
    pub kernel: PathBuf,
    /// The initramfs (zstd-compressed in Talos despite the `.xz` name).
    pub initramfs: PathBuf,
    /// The kernel command line, without a trailing newline.
    pub cmdline: String,
    /// Base URL for `boot.ipxe`; `None` for relative URLs.
    pub base_url: Option<String>,
}

/// The files written, in the order above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PxeReport {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub cmdline: PathBuf,
    pub ipxe: PathBuf,
}

/// What can go wrong writing the PXE files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PxeError {
    #[error("architecture {found:?} is not supported: expected amd64 or arm64")]
    UnsupportedArch { found: String },

    #[error("platform {found:?} is not usable in a file name: expected a non-empty name without '/'")]
    InvalidPlatform { found: String },

    #[error("the kernel command line has a line break at byte {at}: expected a single line")]
    MultiLineCmdline { at: usize },

    #[error("base url {found:?} is not usable in an ipxe script: expected an http(s) or tftp url without spaces")]
    InvalidBaseUrl { found: String },

    #[error("cannot {action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PxeError {
    let path = path.to_owned();
    move |source| PxeError::Io { action, path, source }
}

/// The iPXE script for `arch`, `cmdline` and an optional base URL (see the module docs).
pub fn ipxe_script(arch: &str, cmdline: &str, base_url: Option<&str>) -> Result<String, PxeError> {
    let base = match base_url {
        None => String::new(),
        Some(url) => {
            let scheme_ok = ["http://", "https://", "tftp://"].iter().any(|s| url.starts_with(s));
            if !scheme_ok || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(PxeError::InvalidBaseUrl { found: url.to_owned() });
            }
            if url.ends_with('/') { url.to_owned() } else { format!("{url}/") }
        }
    };
    if let Some(at) = cmdline.find(['\n', '\r']) {
        return Err(PxeError::MultiLineCmdline { at });
    }
    Ok(format!("#!ipxe\n\nimgfree\nkernel {base}kernel-{arch} {cmdline}\ninitrd {base}initramfs-{arch}.xz\nboot\n"))
}

/// Writes the four PXE files into `dir`.
pub fn write_pxe(dir: &Path, spec: &PxeSpec) -> Result<PxeReport, PxeError> {
    let report = write_pxe_scripts(dir, spec)?;
    copy_file(&spec.kernel, &report.kernel)?;
    copy_file(&spec.initramfs, &report.initramfs)?;
    Ok(report)
}

/// Writes only the command line and the iPXE script into `dir`, for callers that put the kernel and initramfs
/// at the report's paths themselves (the build links them from its cache).
pub fn write_pxe_scripts(dir: &Path, spec: &PxeSpec) -> Result<PxeReport, PxeError> {
    let arch = spec.arch.as_str();
    if !matches!(arch, "amd64" | "arm64") {
        return Err(PxeError::UnsupportedArch { found: spec.arch.clone() });
    }
    if spec.platform.is_empty() || spec.platform.contains(['/', '\0']) || spec.platform.starts_with('.') {
        return Err(PxeError::InvalidPlatform { found: spec.platform.clone() });
    }
    let script = ipxe_script(arch, &spec.cmdline, spec.base_url.as_deref())?;
    let report = PxeReport {
        kernel: dir.join(format!("kernel-{arch}")),
        initramfs: dir.join(format!("initramfs-{arch}.xz")),
        cmdline: dir.join(format!("cmdline-{}-{arch}", spec.platform)),
        ipxe: dir.join("boot.ipxe"),
    };
    write_bytes(&report.cmdline, spec.cmdline.as_bytes())?;
    write_bytes(&report.ipxe, script.as_bytes())?;
    Ok(report)
}

fn copy_file(from: &Path, to: &Path) -> Result<(), PxeError> {
    let mut source = File::open(from).map_err(io_err("open", from))?;
    let tmp = TempOutput::create(to).map_err(io_err("create", to))?;
    let mut sink = BufWriter::with_capacity(1024 * 1024, tmp.file());
    std::io::copy(&mut source, &mut sink).map_err(io_err("copy into", to))?;
    sink.flush().map_err(io_err("write", to))?;
    drop(sink);
    tmp.commit().map_err(io_err("write", to))
}

fn write_bytes(to: &Path, bytes: &[u8]) -> Result<(), PxeError> {
    let tmp = TempOutput::create(to).map_err(io_err("create", to))?;
    let mut f = tmp.file();
    f.write_all(bytes).map_err(io_err("write", to))?;
    tmp.commit().map_err(io_err("write", to))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMDLINE: &str = "talos.platform=metal console=tty0 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on \
                           selinux=1 module.sig_enforce=1 proc_mem.force_override=never";

    #[test]
    fn script_matches_image_factory_template() {
        assert_eq!(
            ipxe_script("amd64", CMDLINE, None).unwrap(),
            format!("#!ipxe\n\nimgfree\nkernel kernel-amd64 {CMDLINE}\ninitrd initramfs-amd64.xz\nboot\n")
        );
        assert_eq!(
            ipxe_script("arm64", "a=b", Some("http://10.0.0.1/images/x")).unwrap(),
            "#!ipxe\n\nimgfree\nkernel http://10.0.0.1/images/x/kernel-arm64 a=b\n\
             initrd http://10.0.0.1/images/x/initramfs-arm64.xz\nboot\n"
        );
        assert_eq!(
            ipxe_script("amd64", "a\nb", None).unwrap_err().to_string(),
            "the kernel command line has a line break at byte 1: expected a single line"
        );
        assert!(matches!(ipxe_script("amd64", "a", Some("ftp://x/")), Err(PxeError::InvalidBaseUrl { .. })));
    }

    #[test]
    fn writes_the_four_files() {
        let dir = tempfile::tempdir().unwrap();
        let (k, i) = (dir.path().join("vmlinuz"), dir.path().join("initramfs.xz"));
        std::fs::write(&k, b"kernel bytes").unwrap();
        std::fs::write(&i, b"initramfs bytes").unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let spec = PxeSpec {
            arch: "amd64".into(),
            platform: "metal".into(),
            kernel: k,
            initramfs: i,
            cmdline: CMDLINE.into(),
            base_url: None,
        };
        let r = write_pxe(&out, &spec).unwrap();
        assert_eq!(std::fs::read(&r.kernel).unwrap(), b"kernel bytes");
        assert_eq!(std::fs::read(&r.initramfs).unwrap(), b"initramfs bytes");
        // Exactly the command line: no trailing newline (Talos `os.WriteFile(path, []byte(i.cmdline))`).
        assert_eq!(std::fs::read(out.join("cmdline-metal-amd64")).unwrap(), CMDLINE.as_bytes());
        assert!(std::fs::read_to_string(&r.ipxe).unwrap().starts_with("#!ipxe\n"));
        let mut names: Vec<_> =
            std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["boot.ipxe", "cmdline-metal-amd64", "initramfs-amd64.xz", "kernel-amd64"]);
        let bad = PxeSpec { arch: "riscv64".into(), ..spec };
        assert_eq!(
            write_pxe(&out, &bad).unwrap_err().to_string(),
            "architecture \"riscv64\" is not supported: expected amd64 or arm64"
        );
    }
}
