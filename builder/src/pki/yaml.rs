//! Reading the bundle and talosconfig formats field by field, on the project's YAML tree.
//!
//! Both formats are small and fixed, so they are read with a [`MapReader`] that walks the tree with a
//! dotted field path and reports missing, unknown and wrong fields by that path (the caller positions the
//! path in the file). Writing goes through the project's go-yaml-compatible emitter.

use crate::yaml::{self, Node, Value};

use super::PkiError;

/// Parses one YAML document.
pub(crate) fn parse(text: &str) -> Result<Node, PkiError> {
    yaml::parse_document(text).map_err(|e| PkiError::Yaml {
        message: e.message,
        line: Some(u64::from(e.span.line)),
        column: Some(u64::from(e.span.col)),
    })
}

/// Describes a node's kind for "found ..." messages.
pub(crate) fn describe(node: &Node) -> &'static str {
    node.kind_name()
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// A scalar's text as Go would decode it into a string field (numbers and booleans keep their text).
fn scalar_text(node: &Node) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Null | Value::Seq(_) | Value::Map(_) => None,
    }
}

/// A mapping being read field by field under a dotted `path`.
pub(crate) struct MapReader {
    path: String,
    entries: Vec<(String, Node)>,
}

impl MapReader {
    /// Reads `node` (found at `path`) as a mapping whose keys must all be in `allowed`. `expected` describes
    /// the mapping for a "missing" message.
    pub(crate) fn new(node: Node, path: &str, allowed: &[&'static str], expected: &str) -> Result<Self, PkiError> {
        let entries: Vec<(String, Node)> = match node.value {
            Value::Map(m) => m.into_iter().map(|(k, v)| (k.name, v)).collect(),
            Value::Null => return Err(PkiError::missing(path, expected)),
            other => {
                return Err(PkiError::invalid(path, format!("expected {expected}; found {}", other.kind_name())));
            }
        };
        if let Some((key, _)) = entries.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(PkiError::UnknownField { field: join(path, key), expected: allowed.to_vec() });
        }
        Ok(MapReader { path: path.to_owned(), entries })
    }

    pub(crate) fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Removes and returns the value of `key`, treating `null` as absent.
    pub(crate) fn take(&mut self, key: &str) -> Option<Node> {
        let index = self.entries.iter().position(|(k, _)| k == key)?;
        let (_, value) = self.entries.remove(index);
        match value.value {
            Value::Null => None,
            _ => Some(value),
        }
    }

    /// A required mapping.
    pub(crate) fn map(&mut self, key: &str, allowed: &[&'static str], expected: &str) -> Result<MapReader, PkiError> {
        let path = self.path(key);
        match self.take(key) {
            Some(node) => MapReader::new(node, &path, allowed, expected),
            None => Err(PkiError::missing(path, expected)),
        }
    }

    /// A required, non-empty string.
    pub(crate) fn string(&mut self, key: &str, expected: &str) -> Result<String, PkiError> {
        let path = self.path(key);
        match self.opt_string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(PkiError::missing(path, expected)),
        }
    }

    /// An optional string (absent, null and `""` are all `None`).
    pub(crate) fn opt_string(&mut self, key: &str) -> Result<Option<String>, PkiError> {
        let path = self.path(key);
        match self.take(key) {
            None => Ok(None),
            Some(node) => match scalar_text(&node) {
                Some(s) => Ok(if s.is_empty() { None } else { Some(s) }),
                None => Err(PkiError::invalid(path, format!("expected a string; found {}", describe(&node)))),
            },
        }
    }

    /// An optional list of strings (absent and null are empty).
    pub(crate) fn string_list(&mut self, key: &str) -> Result<Vec<String>, PkiError> {
        let path = self.path(key);
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Node { value: Value::Seq(items), .. }) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    scalar_text(item).ok_or_else(|| {
                        PkiError::invalid(
                            format!("{path}[{i}]"),
                            format!("expected a string; found {}", describe(item)),
                        )
                    })
                })
                .collect(),
            Some(other) => {
                Err(PkiError::invalid(path, format!("expected a list of strings; found {}", describe(&other))))
            }
        }
    }
}
