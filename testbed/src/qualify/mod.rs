//! Qualification: what a booted machine reports (its inventory), compared with its hardware profile.
//!
//! `talforge qualify` runs it on an inventory file; the lab's inventory stage runs the same code on the
//! fixture guest's serial log. Three steps, each usable alone:
//!
//! 1. [`read_inventory`] / [`parse_inventory`]: the guest's `TALFORGE-INVENTORY` JSON, from the JSON file or
//!    the last complete line of a serial log, with located errors.
//! 2. [`Expectation`]: what the machine must show, from a resolved profile, for real hardware
//!    ([`Expectation::for_hardware`]) or for the lab VM ([`Expectation::for_emulation`]), plus node facts.
//! 3. [`qualify`]: every check with pass / mismatch / not checked, expected and found values ([`Report`]).
//!
//! The rules (tolerances, matching, what is informational) are in docs/qualify.md.

mod compare;
mod error;
mod expect;
mod inventory;
mod report;

pub use compare::{glob_match, qualify};
pub use error::QualifyError;
pub use expect::{
    DISK_SIZE_TOLERANCE_PERCENT, Expectation, Expected, ExpectedDisk, ExpectedGpu, ExpectedNic,
    MEMORY_SHORTFALL_PERCENT, Mode, NodeFacts, QEMU_DISK_MODEL, QEMU_NVME_MODEL, Skipped, bus_transports,
    emulated_nic_pci_id,
};
pub use inventory::{
    ConfigFetch, Disk, Extension, Firmware, FirmwareFiles, FirmwareType, INVENTORY_MARKER, INVENTORY_SCHEMA, Inventory,
    Kernel, Modules, Network, Nic, PciDevice, Smbios, Tpm, parse_inventory, read_inventory,
};
pub use report::{Check, Report, Status, Summary};

#[cfg(test)]
mod tests;
