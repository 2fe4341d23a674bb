//! What can go wrong before a comparison starts: the inventory cannot be read or is not what the guest
//! writes, or the node facts name hardware the profile does not have. Mismatches are not errors: they are
//! the report's findings.

use std::path::PathBuf;

use talforge_builder::ErrorClass;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QualifyError {
    #[error("cannot read inventory {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The JSON is malformed or a field has the wrong type; `line`/`column` are positions in the file.
    #[error("{}:{line}:{column}: {}{message}", path.display(), field_prefix(field))]
    Invalid { path: PathBuf, line: usize, column: usize, field: String, message: String },

    #[error(
        "{}:{line}:{column}: schema: expected inventory schema {expected} (what this talforge reads); found {found}",
        path.display()
    )]
    Schema { path: PathBuf, line: usize, column: usize, expected: u64, found: String },

    #[error(
        "{}:{line}: the inventory JSON is cut off (the guest or its log stopped before the end), and no complete \
         inventory precedes it",
        path.display()
    )]
    Truncated { path: PathBuf, line: usize },

    #[error(
        "{}: no inventory: expected a JSON object, or a serial log with a line `TALFORGE-INVENTORY {{...}}`",
        path.display()
    )]
    NotFound { path: PathBuf },

    #[error("node facts: profile {profile} has no NIC {nic:?}; its NICs: {known}")]
    UnknownNic { profile: String, nic: String, known: String },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() { String::new() } else { format!("{field}: ") }
}

impl QualifyError {
    /// The class the binary maps to an exit code: all of these are about the input (exit 2).
    pub fn class(&self) -> ErrorClass {
        match self {
            QualifyError::Read { .. } => ErrorClass::Io,
            QualifyError::Invalid { .. }
            | QualifyError::Schema { .. }
            | QualifyError::Truncated { .. }
            | QualifyError::NotFound { .. }
            | QualifyError::UnknownNic { .. } => ErrorClass::BadInput,
        }
    }
}
