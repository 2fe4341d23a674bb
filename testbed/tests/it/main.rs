//! talforge-testbed's integration tests.
//!
//! - `args`: the QEMU and swtpm command lines of every shipped profile (insta snapshots, fixed paths) and
//!   the plan rules (MACs, serials, what is not emulated, errors).
//! - `accept`: QEMU 7.2 itself accepts every shipped profile's command line and builds the devices.
//! - `boot`: VMs boot the fixture release on profile-shaped hardware and report it.
//! - `accel`: the acceleration probe.
//!
//! VM tests need root (a private network namespace with taps), QEMU, OVMF and swtpm; without them they say
//! `SKIP:` and pass, except under CI (`CI` set), where a skip fails.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod accel;
mod accept;
mod args;
mod boot;
mod net;
mod support;
