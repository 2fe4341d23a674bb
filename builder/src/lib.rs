//! talforge's library: what the user wrote (specs), what it resolves to (plans), and what gets written
//! (secrets, machine configs, and later boot images).

pub mod error;
pub mod quirks;
pub mod spec;
pub mod yaml;

pub use error::{Diagnostic, Error, ErrorClass, Result};
