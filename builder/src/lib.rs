//! talforge's library: what the user wrote (specs), what it resolves to (plans), and what gets written
//! (secrets, machine configs, and later boot images).

pub mod assemble;
pub mod build;
pub mod error;
pub mod lint;
pub mod machine_config;
pub mod output;
pub mod pki;
pub mod plan;
pub mod quirks;
pub mod release;
pub mod schematic;
pub mod secrets;
pub mod spec;
pub mod tool;
pub mod yaml;

pub use error::{Diagnostic, Error, ErrorClass, Result};

#[cfg(test)]
mod testsupport;
