//! talforge's lab: boots built images as QEMU VMs shaped like each node's hardware profile.
//!
//! - [`qemu`]: QEMU command lines built from a node's resolved profile (pure functions), firmware and
//!   acceleration choice.
//! - [`qualify`]: compares what a booted machine reports (its inventory) with its hardware profile.
//! - [`vm`]: one supervised VM: QEMU in its own process group, QMP (the `qapi` crate) driving a state machine,
//!   the serial console as lines.
//! - [`net`]: the lab's network namespace, bridge and taps, and its DHCP server.
//! - [`configserver`]: machine configs over HTTP by SMBIOS UUID or MAC.
//! - [`lab`]: `talforge lab`: build, network, VMs, stages, teardown (docs/lab.md).
//! - [`report`]: JUnit XML, a self-contained HTML report with a timeline, run.json.

pub mod configserver;
pub mod lab;
pub mod net;
pub mod qemu;
pub mod qualify;
pub mod report;
pub mod vm;
