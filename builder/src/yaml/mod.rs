//! YAML for talforge: a positioned tree ([`Node`]), a reader with go-yaml's scalar rules, a go-yaml-compatible
//! writer, and a serde bridge that reports errors as `file:line:col: field.path: message`.

pub mod de;
pub mod emit;
pub mod node;
pub mod parse;
pub mod resolve;

pub use de::{DeError, FieldPath, PathSeg, from_node};
pub use node::{Key, Mapping, Node, Span, Value};
pub use parse::{SyntaxError, parse_document, parse_documents};
