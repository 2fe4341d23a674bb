//! Where the VM firmware comes from. UEFI is OVMF from Debian's `ovmf` package (2022.11 in bookworm), 4 MiB
//! flash builds, as QEMU's firmware descriptors in `/usr/share/qemu/firmware/` pair them:
//!
//! | descriptor | code | variable store |
//! |---|---|---|
//! | `60-edk2-x86_64.json` | `OVMF_CODE_4M.fd` | `OVMF_VARS_4M.fd` |
//! | `50-edk2-x86_64-secure.json` (Secure Boot, SMM, empty store) | `OVMF_CODE_4M.secboot.fd` | `OVMF_VARS_4M.fd` |
//! | `40-edk2-x86_64-secure-enrolled.json` (Microsoft keys enrolled) | `OVMF_CODE_4M.ms.fd` | `OVMF_VARS_4M.ms.fd` |
//!
//! The lab uses the first two. With the empty store, Secure Boot firmware starts in setup mode, so the
//! image's sd-boot enrolls the builder's keys on first boot (and reboots once); after that the firmware
//! enforces them. Each VM gets its own copy of the store, kept across relaunches so enrolled keys stay.
//! BIOS machines get QEMU's built-in SeaBIOS (`bios-256k.bin`, package `seabios`, a dependency of
//! `qemu-system-x86`).
//!
//! Opt-in for hosts with network: [`FirmwarePaths::ovmf_prebuilt`] takes OVMF from rust-osdev's
//! `ovmf-prebuilt` releases (a newer EDK II than Debian's, fetched from GitHub once, checked against the
//! release's SHA-256 and cached). Those builds have no SMM Secure Boot variant, so Secure Boot profiles keep
//! Debian's `OVMF_CODE_4M.secboot.fd`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::QemuError;

/// The Debian package that ships OVMF.
pub const OVMF_PACKAGE: &str = "ovmf";

/// OVMF files (a per-VM copy is made of the variable store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FirmwarePaths {
    pub code: PathBuf,
    /// Built with Secure Boot and SMM (`-machine smm=on`, secure pflash).
    pub code_secure_boot: PathBuf,
    /// An empty variable store: no keys, so Secure Boot starts in setup mode.
    pub vars_template: PathBuf,
}

impl FirmwarePaths {
    /// Debian's `ovmf` package.
    pub fn debian() -> FirmwarePaths {
        let dir = Path::new("/usr/share/OVMF");
        FirmwarePaths {
            code: dir.join("OVMF_CODE_4M.fd"),
            code_secure_boot: dir.join("OVMF_CODE_4M.secboot.fd"),
            vars_template: dir.join("OVMF_VARS_4M.fd"),
        }
    }

    /// OVMF from `ovmf-prebuilt`'s newest release the crate knows, in `dir` (a folder of its own: the crate
    /// replaces it when it fetches). Nothing is downloaded when `dir` already holds that release (its `sha256`
    /// file names it). Secure Boot code stays Debian's.
    pub fn ovmf_prebuilt(dir: &Path) -> Result<FirmwarePaths, QemuError> {
        use ovmf_prebuilt::{Arch, FileType, Prebuilt, Source};
        let source = Source::LATEST;
        let p = Prebuilt::fetch(source.clone(), dir).map_err(|e| QemuError::FirmwareFetch {
            tag: source.tag.to_owned(),
            dir: dir.to_owned(),
            message: e.to_string(),
        })?;
        Ok(FirmwarePaths {
            code: p.get_file(Arch::X64, FileType::Code),
            code_secure_boot: FirmwarePaths::debian().code_secure_boot,
            vars_template: p.get_file(Arch::X64, FileType::Vars),
        })
    }

    /// The release [`FirmwarePaths::ovmf_prebuilt`] uses: its tag and the SHA-256 of its tarball.
    pub fn ovmf_prebuilt_release() -> (&'static str, &'static str) {
        let s = ovmf_prebuilt::Source::LATEST;
        (s.tag, s.sha256)
    }

    /// Fails with a missing-dependency error naming the package unless every file is there.
    pub fn check(&self) -> Result<(), QemuError> {
        for p in [&self.code, &self.code_secure_boot, &self.vars_template] {
            if !p.is_file() {
                return Err(QemuError::MissingFile { path: p.clone(), package: OVMF_PACKAGE });
            }
        }
        Ok(())
    }
}
