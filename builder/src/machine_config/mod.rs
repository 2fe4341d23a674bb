//! Talos machine configs: generation per contract, patches with Talos semantics, and rendering.

pub mod build;
pub mod generate;
