//! talforge's lab: boots built images as QEMU VMs shaped like each node's hardware profile.
//!
//! - [`qemu`]: QEMU command lines built from a node's resolved profile (pure functions), firmware and
//!   acceleration choice.
//! - [`qualify`]: compares what a booted machine reports (its inventory) with its hardware profile.

pub mod configserver;
pub mod lab;
pub mod net;
pub mod qemu;
pub mod qualify;
pub mod report;
pub mod vm;
