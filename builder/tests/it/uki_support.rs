//! Test support: locating Debian's systemd-boot/OVMF files, the cached Debian kernel, a busybox initramfs, FAT
//! ESP images and QEMU runs. Every external program goes through the crate's `ToolRunner`; tests that need a
//! missing program or file skip with a message saying what to install.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use talforge_builder::tool::{Program, ToolRunner};

pub const EPOCH: u64 = 1_700_000_000;

pub const OBJDUMP: Program = Program::new("objdump", "binutils");
pub const OBJCOPY: Program = Program::new("objcopy", "binutils");
pub const SBVERIFY: Program = Program::new("sbverify", "sbsigntool");
pub const SBSIGN: Program = Program::new("sbsign", "sbsigntool");
pub const OPENSSL: Program = Program::new("openssl", "openssl");
pub const CERT_TO_EFI_SIG_LIST: Program = Program::new("cert-to-efi-sig-list", "efitools");
pub const SIGN_EFI_SIG_LIST: Program = Program::new("sign-efi-sig-list", "efitools");
pub const QEMU: Program = Program::new("qemu-system-x86_64", "qemu-system-x86");
pub const TIMEOUT: Program = Program::new("timeout", "coreutils");
pub const MKFS_VFAT: Program = Program::new("mkfs.vfat", "dosfstools");
pub const MCOPY: Program = Program::new("mcopy", "mtools");
pub const DPKG_DEB: Program = Program::new("dpkg-deb", "dpkg");
pub const APT_GET: Program = Program::new("apt-get", "apt");
pub const APT_CACHE: Program = Program::new("apt-cache", "apt");

pub const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
pub const SD_BOOT: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
pub const BUSYBOX: &str = "/bin/busybox";
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_CODE_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

pub fn runner() -> ToolRunner {
    ToolRunner::new(EPOCH)
}

/// Skips the calling test (returns `None`) with a message when a program is missing.
pub fn need(programs: &[Program]) -> Option<()> {
    let r = runner();
    for p in programs {
        if r.find(*p).is_none() {
            talforge_builder::skip_test!("SKIPPED: {} is not installed (Debian package {})", p.name, p.package);
            return None;
        }
    }
    Some(())
}

/// Reads a file the test needs, or skips with a message naming the Debian package.
pub fn need_file(path: &str, package: &str) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(data) => Some(data),
        Err(_) => {
            talforge_builder::skip_test!("SKIPPED: {path} is missing (Debian package {package})");
            None
        }
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A seeded RSA-4096 signing key, Talos's size, valid from [`EPOCH`].
pub fn signing_key() -> &'static talforge_builder::assemble::uki::SigningKey {
    static KEY: std::sync::OnceLock<talforge_builder::assemble::uki::SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let mut rng = talforge_builder::pki::SeededSecretRng::new([42; 32]);
        talforge_builder::assemble::uki::SigningKey::generate(
            &mut rng,
            talforge_builder::assemble::uki::DEFAULT_UKI_COMMON_NAME,
            talforge_builder::assemble::uki::UKI_SIGNING_KEY_BITS,
            std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH),
        )
        .unwrap()
    })
}

/// `${TALFORGE_CACHE:-$HOME/.cache/talforge}`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("TALFORGE_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache/talforge"),
    }
}

/// The newest cached `linux-image-6.1.*-amd64` kernel (downloading the .deb with `apt-get download` into the
/// cache when there is none), extracted with `dpkg-deb -x`. `None` (skip) when it cannot be had.
pub fn debian_kernel() -> Option<Vec<u8>> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    need(&[DPKG_DEB])?;
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).ok()?;
    let find_deb = || {
        // Our own downloads, and the ones ci/fixture-release pinned (same kernel package).
        let mut debs: Vec<PathBuf> = [cache.clone(), cache.join("debs")]
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.starts_with("linux-image-6.1.") && name.contains("-amd64_") && name.ends_with(".deb")
            })
            .collect();
        debs.sort();
        debs.pop()
    };
    let deb = match find_deb() {
        Some(deb) => deb,
        None => {
            need(&[APT_CACHE, APT_GET])?;
            let r = runner();
            let out =
                r.run(APT_CACHE, ["search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-amd64$"], None, None).ok()?;
            let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect();
            names.sort_by_key(|n| n.split('-').nth(3).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0));
            let Some(name) = names.pop() else {
                talforge_builder::skip_test!("SKIPPED: no linux-image-6.1.*-amd64 package in the apt sources");
                return None;
            };
            if let Err(e) = r.run(APT_GET, ["download", name.as_str()], Some(&cache), None) {
                talforge_builder::skip_test!("SKIPPED: cannot download {name}: {e}");
                return None;
            }
            find_deb()?
        }
    };
    let stem = deb.file_stem()?.to_str()?.to_owned();
    let extracted = cache.join(&stem);
    if !extracted.join("boot").is_dir() {
        let tmp = cache.join(format!("{stem}.partial"));
        let _ = std::fs::remove_dir_all(&tmp);
        runner().run(DPKG_DEB, ["-x".as_ref(), deb.as_os_str(), tmp.as_os_str()], None, None).ok()?;
        std::fs::rename(&tmp, &extracted).ok()?;
    }
    let boot = extracted.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))?;
    std::fs::read(vmlinuz).ok()
}

/// A newc cpio archive (what the kernel unpacks as initramfs).
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn header(&mut self, name: &str, mode: u32, size: usize, rdev: (u32, u32)) {
        self.ino += 1;
        let fields = [self.ino, mode, 0, 0, 1, 0, size as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        self.out.resize(self.out.len().next_multiple_of(4), 0);
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.header(name, 0o040755, 0, (0, 0));
        self
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        self.header(name, 0o100000 | mode, data.len(), (0, 0));
        self.out.extend_from_slice(data);
        self.pad();
        self
    }

    pub fn char_device(&mut self, name: &str, major: u32, minor: u32) -> &mut Self {
        self.header(name, 0o020600, 0, (major, minor));
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, (0, 0));
        std::mem::take(&mut self.out)
    }
}

/// The line `/init` prints once the kernel runs it.
pub const MARKER: &str = "TALFORGE-BOOT-OK";

/// An initramfs whose `/init` (busybox sh) prints [`MARKER`] with `/proc/cmdline` and the kernel lockdown state,
/// then powers off.
pub fn busybox_initramfs(busybox: &[u8]) -> Vec<u8> {
    let init = format!(
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t sysfs sysfs /sys\n\
         /bin/busybox mount -t securityfs securityfs /sys/kernel/security 2>/dev/null\n\
         lockdown=$(/bin/busybox cat /sys/kernel/security/lockdown 2>/dev/null)\n\
         echo \"{MARKER} cmdline=[$(/bin/busybox cat /proc/cmdline)] lockdown=[$lockdown]\"\n\
         /bin/busybox poweroff -f\n"
    );
    Cpio::default()
        .dir("bin")
        .file("bin/busybox", 0o755, busybox)
        .dir("dev")
        .char_device("dev/console", 5, 1)
        .file("init", 0o755, init.as_bytes())
        .dir("proc")
        .dir("sys")
        .finish()
}

/// Writes `files` (path inside the ESP → contents) into a fresh FAT image at `image` with `mkfs.vfat` + `mcopy`.
pub fn build_esp(work: &Path, image: &Path, files: &[(&str, &[u8])]) {
    let staging = work.join("esp-staging");
    let _ = std::fs::remove_dir_all(&staging);
    for (path, data) in files {
        let dst = staging.join(path);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::write(dst, data).unwrap();
    }
    let _ = std::fs::remove_file(image);
    let r = runner();
    // 64 MiB, FAT32.
    r.run(MKFS_VFAT, ["-C".as_ref(), "-F".as_ref(), "32".as_ref(), image.as_os_str(), "65536".as_ref()], None, None)
        .unwrap();
    let mut args: Vec<std::ffi::OsString> = vec!["-s".into(), "-i".into(), image.into()];
    for top in std::fs::read_dir(&staging).unwrap() {
        args.push(top.unwrap().path().into());
    }
    args.push("::/".into());
    r.run(MCOPY, &args, None, None).unwrap();
}

/// What a QEMU run left behind.
pub struct Run {
    pub serial: String,
    pub elapsed: Duration,
    /// `true` when QEMU exited by itself (the guest powered off), `false` when the deadline killed it.
    pub exited: bool,
}

/// Firmware setup for a run.
pub struct Firmware<'a> {
    pub code: &'a str,
    pub vars: &'a Path,
    pub secure_boot: bool,
}

/// Boots `esp` under QEMU/TCG (q35, OVMF, 1 GiB, serial to a file) until the guest powers off or `deadline`
/// passes. Runs are serialized: two TCG guests on two shared cores would only slow each other down.
pub fn run_qemu(work: &Path, esp: &Path, firmware: &Firmware<'_>, deadline: Duration) -> Run {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let serial = work.join("serial.log");
    let _ = std::fs::remove_file(&serial);
    let machine = if firmware.secure_boot { "q35,smm=on" } else { "q35" };
    let mut args: Vec<String> = vec![
        "-k".into(),
        "5".into(),
        deadline.as_secs().to_string(),
        QEMU.name.into(),
        "-machine".into(),
        machine.into(),
        "-accel".into(),
        "tcg".into(),
        "-m".into(),
        "1024".into(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-serial".into(),
        format!("file:{}", serial.display()),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=0,readonly=on,file={}", firmware.code),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", firmware.vars.display()),
        "-drive".into(),
        format!("if=virtio,format=raw,file={}", esp.display()),
    ];
    if firmware.secure_boot {
        args.extend(["-global".into(), "driver=cfi.pflash01,property=secure,value=on".into()]);
    }
    let start = Instant::now();
    let result = runner().run(TIMEOUT, &args, Some(work), None);
    let elapsed = start.elapsed();
    let serial = String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    if let Err(e) = &result {
        eprintln!("qemu did not exit by itself: {e}");
    }
    Run { serial, elapsed, exited: result.is_ok() }
}

/// The last `n` lines of the serial log, for assertion messages.
pub fn tail(serial: &str, n: usize) -> String {
    let lines: Vec<_> = serial.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
