//! Unit-test support: where the shared Talos reference data lives.

use std::path::PathBuf;

/// `../shared` beside the repository (CI clones it there), or `TALFORGE_SHARED`. Tests that need a file from
/// it print `SKIPPED` and pass when it is absent.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("TALFORGE_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    }
}
