//! QEMU VMs for the lab, shaped like a node's hardware profile.
//!
//! - [`plan`]: a node's resolved profile + the lab's inputs → [`VmPlan`] (NICs with MACs and taps, disks
//!   with serials, sizes and image paths, firmware, TPM, SMBIOS, sockets; what is not emulated).
//! - [`args`]: the QEMU and swtpm command lines of a plan, as pure functions.
//! - [`files`]: sparse disk images, the per-VM firmware variable store, TPM state.
//! - [`accel`]: KVM or TCG, decided by booting a probe guest ([`probe_image`]).
//! - [`devices`]: a plan checked against `qemu-system-x86_64 -device help`.
//! - [`process`]: starting QEMU/swtpm with a controlled environment, killed on drop.
//!
//! docs/testbed.md has the rules and the QEMU facts they rest on.

pub mod accel;
pub mod args;
pub mod devices;
mod error;
pub mod files;
pub mod firmware;
pub mod plan;
pub mod probe_image;
pub mod process;

pub use accel::{
    Accel, AccelDecision, AccelReason, AccelRequest, ProbeOutcome, ProbeRun, ProbeStage, probe_accel, run_probe,
};
pub use args::{accel_args, qemu_args, swtpm_args};
pub use error::QemuError;
pub use firmware::FirmwarePaths;
pub use plan::{
    BootMedium, DiskPlan, FirmwarePlan, NicPlan, NodeInputs, RebootAction, SmbiosUuid, TpmPlan, VmPlan, resolve_vm,
};
