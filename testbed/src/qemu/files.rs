//! A VM's files before QEMU starts: sparse disk images of the emulated sizes, the VM's own copy of the
//! firmware variable store, the TPM state folder. Existing files are kept (a relaunched VM keeps its disks,
//! enrolled Secure Boot keys and TPM state), so this is safe to call before every launch.

use std::fs::OpenOptions;
use std::path::Path;

use super::QemuError;
use super::plan::{FirmwarePlan, VmPlan};

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> QemuError {
    let path = path.to_owned();
    move |source| QemuError::Io { op, path, source }
}

/// Makes `path` a disk image of exactly `size` bytes: a new file is sparse (no blocks written); an existing
/// smaller one (an install image written into it) is extended with a hole; a larger one is an error, since
/// the guest would lose its end.
pub fn create_sparse_disk(path: &Path, size: u64) -> Result<(), QemuError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    let f = OpenOptions::new().write(true).create(true).truncate(false).open(path).map_err(io("open", path))?;
    let len = f.metadata().map_err(io("stat", path))?.len();
    if len > size {
        return Err(QemuError::DiskImageTooLarge { path: path.to_owned(), size: len, emulated: size });
    }
    if len < size {
        f.set_len(size).map_err(io("resize", path))?;
    }
    Ok(())
}

/// Creates what [`VmPlan`] needs on disk, keeping what exists: the work folder, every disk image, the
/// variable store copy (UEFI), the TPM state folder.
pub fn prepare_vm_files(vm: &VmPlan) -> Result<(), QemuError> {
    for d in &vm.disks {
        create_sparse_disk(&d.image, d.size)?;
    }
    for p in [&vm.qmp_socket, &vm.console.socket, &vm.console.log] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        }
    }
    if let FirmwarePlan::Uefi { vars_template, vars, .. } = &vm.firmware
        && !vars.exists()
    {
        if !vars_template.is_file() {
            return Err(QemuError::MissingFile { path: vars_template.clone(), package: super::firmware::OVMF_PACKAGE });
        }
        if let Some(dir) = vars.parent() {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        }
        std::fs::copy(vars_template, vars).map_err(io("copy the firmware variables to", vars))?;
    }
    if let Some(t) = &vm.tpm {
        std::fs::create_dir_all(&t.state_dir).map_err(io("create", &t.state_dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn disks_are_sparse_and_grow_but_never_shrink() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/disk.raw");
        create_sparse_disk(&p, 16 << 30).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.len(), 16 << 30);
        assert_eq!(m.blocks(), 0, "a new image has no blocks");
        // An install image written into the file: extended to the emulated size, its data kept.
        std::fs::write(&p, b"install image").unwrap();
        create_sparse_disk(&p, 1 << 20).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);
        assert_eq!(&std::fs::read(&p).unwrap()[..13], b"install image");
        let e = create_sparse_disk(&p, 4096).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("disk image {}: 1048576 bytes is larger than the emulated disk (4096 bytes)", p.display())
        );
    }
}
