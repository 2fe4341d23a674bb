//! The one error type of the PKI module.

/// Everything that can go wrong while generating, loading or checking secrets.
///
/// Messages are lowercase and say what was expected and what was found, so a
/// caller can print them as they are after the field name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A value is present but wrong: bad base64, a key of the wrong type, a
    /// certificate that does not match its key, a malformed token...
    #[error("{field}: {message}")]
    Invalid {
        /// Dotted path of the field as it appears in the YAML, e.g. `certs.os.key`.
        field: String,
        /// Lowercase message: what was expected, and what was found.
        message: String,
    },
    /// A required field is absent (or empty/null).
    #[error("{field}: missing required field; expected {expected}")]
    MissingField {
        /// Dotted path of the missing field.
        field: String,
        /// What should have been there.
        expected: String,
    },
    /// A field that the format does not know.
    #[error("{field}: unknown field; expected one of: {}", expected.join(", "))]
    UnknownField {
        /// Dotted path of the unknown field.
        field: String,
        /// The field names that are allowed at that level.
        expected: Vec<&'static str>,
    },
    /// The text is not YAML the parser accepts.
    #[error("yaml syntax error{}: {message}", location_suffix(*line, *column))]
    Yaml {
        /// The parser's message.
        message: String,
        /// 1-based line, when the parser knows it.
        line: Option<u64>,
        /// 1-based column, when the parser knows it.
        column: Option<u64>,
    },
    /// Key generation, encoding or signing failed.
    #[error("crypto failure: {0}")]
    Crypto(String),
    /// The random number generator failed.
    #[error("random number generator failure: {0}")]
    Rng(String),
}

fn location_suffix(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

impl PkiError {
    /// Shorthand for [`PkiError::Invalid`].
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        PkiError::Invalid { field: field.into(), message: message.into() }
    }

    /// Shorthand for [`PkiError::MissingField`].
    pub(crate) fn missing(field: impl Into<String>, expected: impl Into<String>) -> Self {
        PkiError::MissingField { field: field.into(), expected: expected.into() }
    }

    /// The dotted field path this error is about, if it is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            PkiError::Invalid { field, .. }
            | PkiError::MissingField { field, .. }
            | PkiError::UnknownField { field, .. } => Some(field),
            _ => None,
        }
    }
}
