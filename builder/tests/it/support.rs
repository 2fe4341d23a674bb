//! Test support: where `../shared` is, and skipping politely when it is absent.

use std::path::PathBuf;

/// `../shared` beside the repository (CI clones it there), or `TALFORGE_SHARED`.
pub fn shared_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TALFORGE_SHARED") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared");
    p.is_dir().then_some(p)
}

/// The shared file at `rel`, or `None` after printing why the test is skipped.
pub fn shared_file(rel: &str) -> Option<PathBuf> {
    match shared_dir() {
        Some(d) if d.join(rel).exists() => Some(d.join(rel)),
        _ => {
            eprintln!("SKIPPED: ../shared/{rel} is absent (clone the shared folder beside the repository)");
            None
        }
    }
}
