//! The secrets bundle as the rest of talforge sees it: load one with located errors, or create one with
//! the system clock and the OS random number generator (the only places those are read).

use std::path::Path;
use std::time::SystemTime;

use crate::error::{Diagnostic, Error, Result};
use crate::output::{Overwrite, SECRET_MODE, write_atomic};
use crate::pki::{OsSecretRng, PkiError, SecretsBundle};
use crate::quirks::Quirks;
use crate::yaml::{self, FieldPath, PathSeg, Span};

/// A new bundle for the Talos version (OS randomness, current time).
pub fn generate(q: &Quirks) -> Result<SecretsBundle> {
    SecretsBundle::generate(&mut OsSecretRng, SystemTime::now(), q.contract).map_err(|e| Error::Internal(e.to_string()))
}

/// Reads and checks a bundle; errors name the file, line, column and field.
pub fn load(path: &Path) -> Result<SecretsBundle> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
    parse(path, &text)
}

/// Checks bundle text (`path` is only for messages).
pub fn parse(path: &Path, text: &str) -> Result<SecretsBundle> {
    SecretsBundle::from_yaml(text).map_err(|e| locate(path, text, &e).into())
}

/// Loads the bundle at `path`, or creates it (mode 0600) if the file does not exist.
pub fn load_or_create(path: &Path, q: &Quirks) -> Result<(SecretsBundle, bool)> {
    if path.exists() {
        return Ok((load(path)?, false));
    }
    let bundle = generate(q)?;
    write_atomic(path, bundle.to_yaml().as_bytes(), SECRET_MODE, Overwrite::Refuse)?;
    Ok((bundle, true))
}

/// Turns a PKI error into a diagnostic positioned at the field it names.
fn locate(path: &Path, text: &str, e: &PkiError) -> Diagnostic {
    let message = match e {
        PkiError::Invalid { message, .. } => message.clone(),
        PkiError::MissingField { expected, .. } => format!("required field is missing; expected {expected}"),
        PkiError::UnknownField { expected, .. } => format!("unknown field; expected one of {}", expected.join(", ")),
        PkiError::Yaml { message, line, column } => {
            let span = Span::new(line.unwrap_or(0) as u32, column.unwrap_or(0) as u32);
            return Diagnostic::new(path, span, FieldPath::root(), format!("invalid YAML: {message}"));
        }
        other => other.to_string(),
    };
    let field = FieldPath(
        e.field()
            .unwrap_or_default()
            .split('.')
            .filter(|s| !s.is_empty())
            .map(|s| PathSeg::Key(s.to_owned()))
            .collect(),
    );
    let span = match yaml::parse_document(text) {
        Ok(root) => field.span_in(&root),
        Err(_) => Span::UNKNOWN,
    };
    Diagnostic::new(path, span, field, message)
}
