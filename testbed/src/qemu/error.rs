//! What can go wrong turning a profile into a VM, preparing its files, or probing the accelerator. A probe
//! that finds KVM unusable is not an error: it is the decision's reason (see `accel`).

use std::ffi::OsString;
use std::path::PathBuf;

use talforge_builder::ErrorClass;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QemuError {
    #[error(
        "cannot get OVMF from ovmf-prebuilt ({tag}) into {dir}: {message} (it downloads from GitHub; without \
         network use Debian's OVMF: --firmware debian)"
    )]
    FirmwareFetch { tag: String, dir: PathBuf, message: String },

    #[error("profile {profile}: the lab emulates amd64 machines; found arch {arch}")]
    UnsupportedArch { profile: String, arch: String },

    #[error(
        "profile {profile}: emulation.machine: the lab builds q35 machines (`q35` or a versioned `pc-q35-*`); \
         found {machine:?}"
    )]
    UnsupportedMachine { profile: String, machine: String },

    #[error("profile {profile}: {field}: expected at least 1; found 0")]
    Zero { profile: String, field: &'static str },

    #[error("profile {profile}: the install disk {disk:?} has no emulation section, so the lab has no disk to boot")]
    InstallDiskNotEmulated { profile: String, disk: String },

    #[error("profile {profile}: disks[{disk}]: lab serial {serial:?}: {problem}")]
    BadSerial { profile: String, disk: String, serial: String, problem: String },

    #[error(
        "profile {profile}: disks[{disk}].emulation.logicalBlockSize: {device} disks take {supported}; found {found}"
    )]
    UnsupportedBlockSize { profile: String, disk: String, device: &'static str, supported: &'static str, found: u32 },

    #[error(
        "profile {profile}: the VM needs {needed} PCI slots on pcie.0 (NICs, virtio-blk and NVMe disks, disk \
         controllers); q35 has {available}"
    )]
    TooManyPciDevices { profile: String, needed: usize, available: usize },

    #[error("node {node}: MAC {mac} {problem}")]
    BadMac { node: String, mac: String, problem: String },

    #[error("node {node}: a MAC is given for NIC {nic:?}, which the profile does not emulate; emulated NICs: {known}")]
    UnknownNic { node: String, nic: String, known: String },

    #[error("node {node}: tap name {name:?}: expected 1 to 15 characters of [a-zA-Z0-9_.-]")]
    BadTapName { node: String, name: String },

    #[error("node {node}: {what} {}: {problem}", path.display())]
    BadPath { node: String, what: &'static str, path: PathBuf, problem: &'static str },

    #[error("{} is missing (Debian package {package})", path.display())]
    MissingFile { path: PathBuf, package: &'static str },

    #[error(transparent)]
    Tool(#[from] talforge_builder::tool::ToolError),

    #[error("QEMU {version} has no device {device:?}{hint}")]
    MissingDevice { device: String, version: String, hint: &'static str },

    #[error("disk image {}: {size} bytes is larger than the emulated disk ({emulated} bytes)", path.display())]
    DiskImageTooLarge { path: PathBuf, size: u64, emulated: u64 },

    #[error("cannot {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start {}", display_argv(argv))]
    Spawn {
        argv: Vec<OsString>,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn display_argv(argv: &[OsString]) -> String {
    argv.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

impl QemuError {
    /// The class the binary maps to an exit code.
    pub fn class(&self) -> ErrorClass {
        match self {
            QemuError::UnsupportedArch { .. }
            | QemuError::UnsupportedMachine { .. }
            | QemuError::UnsupportedBlockSize { .. }
            | QemuError::TooManyPciDevices { .. }
            | QemuError::MissingDevice { .. } => ErrorClass::Unsupported,
            QemuError::Zero { .. }
            | QemuError::InstallDiskNotEmulated { .. }
            | QemuError::BadSerial { .. }
            | QemuError::BadMac { .. }
            | QemuError::UnknownNic { .. }
            | QemuError::BadTapName { .. }
            | QemuError::BadPath { .. }
            | QemuError::DiskImageTooLarge { .. } => ErrorClass::BadInput,
            QemuError::MissingFile { .. }
            | QemuError::FirmwareFetch { .. }
            | QemuError::Tool(talforge_builder::tool::ToolError::Missing { .. }) => ErrorClass::MissingDependency,
            QemuError::Tool(_) | QemuError::Io { .. } | QemuError::Spawn { .. } => ErrorClass::Io,
        }
    }
}
