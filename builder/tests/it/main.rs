//! Integration tests of the builder library (one test binary, as STYLE.md asks).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod conformance;
mod fidelity;
mod initramfs;
mod initramfs_common;
mod initramfs_fixture;
mod registry;
mod registry_support;
mod robustness;
mod snapshots_profiles;
mod support;
mod uki_boot;
mod uki_support;
mod uki_tools;
