//! talforge's lab: boots built images as QEMU VMs shaped like each node's hardware profile.
//!
//! The lab arrives with the testbed issue; this crate holds its place in the workspace so the builder's
//! types stay free of lab concerns.
