//! A serde `Deserializer` over [`Node`] trees that knows where every value came from.
//!
//! Typed specs (`ClusterSpec`, `HardwareProfileSpec`, ...) are deserialized from the positioned tree rather
//! than from text, so every error carries the field path (`disks[1].role`) and the line and column of the
//! offending value, and says what was expected and what was found.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::node::{Node, Span, Value};

/// One step of a path into a YAML tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// A path into a YAML tree, printed the way users write it: `nodes[0].address`, `nodeLabels["a.b/c"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<PathSeg>);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    pub fn key(&self, k: impl Into<String>) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::Key(k.into()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::Index(i));
        p
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Finds the node this path names in `root`, or the deepest existing ancestor.
    pub fn locate<'a>(&self, root: &'a Node) -> &'a Node {
        let mut cur = root;
        for seg in &self.0 {
            let next = match (seg, &cur.value) {
                (PathSeg::Key(k), Value::Map(m)) => m.get(k),
                (PathSeg::Index(i), Value::Seq(s)) => s.get(*i),
                _ => None,
            };
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
        cur
    }

    /// The position of the key (for a mapping entry) or node this path names, if it exists in `root`.
    pub fn span_in(&self, root: &Node) -> Span {
        if let Some((PathSeg::Key(k), parent)) = self.0.split_last() {
            let parent_node = FieldPath(parent.to_vec()).locate(root);
            if let Some((key, value)) = parent_node.as_map().and_then(|m| m.get_entry(k)) {
                return if value.span.is_known() { value.span } else { key.span };
            }
        }
        self.locate(root).span
    }
}

fn is_plain_ident(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                PathSeg::Key(k) if is_plain_ident(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                PathSeg::Key(k) => write!(f, "[{k:?}]")?,
                PathSeg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// A deserialization error: what went wrong, at which path and position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeError {
    /// Path segments, innermost first (they are added while the error travels outwards).
    rev_path: Vec<PathSeg>,
    pub span: Span,
    pub message: String,
    located: bool,
}

impl DeError {
    pub fn new(message: impl Into<String>) -> Self {
        DeError { rev_path: Vec::new(), span: Span::UNKNOWN, message: message.into(), located: false }
    }

    pub fn path(&self) -> FieldPath {
        FieldPath(self.rev_path.iter().rev().cloned().collect())
    }

    fn at(mut self, span: Span) -> Self {
        if !self.located {
            self.span = span;
            self.located = true;
        }
        self
    }

    fn within(mut self, seg: PathSeg) -> Self {
        self.rev_path.push(seg);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        if path.is_root() { write!(f, "{}", self.message) } else { write!(f, "{path}: {}", self.message) }
    }
}

impl std::error::Error for DeError {}

fn one_of(expected: &[&str]) -> String {
    if expected.is_empty() { "nothing here".to_owned() } else { format!("one of {}", expected.join(", ")) }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string())
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("expected {exp}; found {}", describe(&unexp)))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("expected {exp}; found {}", describe(&unexp)))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(format!("expected {}; found {variant:?}", one_of(expected)))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(format!("unknown field {field:?}; expected {}", one_of(expected)))
    }

    fn missing_field(field: &'static str) -> Self {
        // The field does not exist, so the error points at its would-be parent mapping.
        let mut e = DeError::new("required field is missing");
        e.rev_path.push(PathSeg::Key(field.to_owned()));
        e
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError::new(format!("duplicate field {field:?}"))
    }
}

fn describe(u: &de::Unexpected<'_>) -> String {
    match u {
        de::Unexpected::Str(s) => format!("{s:?}"),
        de::Unexpected::Unit => "null".to_owned(),
        de::Unexpected::Map => "a mapping".to_owned(),
        de::Unexpected::Seq => "a list".to_owned(),
        de::Unexpected::Float(f) => format!("the number {f} (write it in quotes if you mean text)"),
        other => other.to_string(),
    }
}

/// Deserializes `T` from a node.
pub fn from_node<'a, T: de::Deserialize<'a>>(node: &'a Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node))
}

/// Deserializer for one node.
#[derive(Clone, Copy, Debug)]
pub struct NodeDe<'a>(pub &'a Node);

impl<'a> NodeDe<'a> {
    fn wrap<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.at(self.0.span))
    }
}

macro_rules! forward_to_any {
    ($($m:ident)*) => { $( fn $m<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> { self.deserialize_any(v) } )* };
}

impl<'a> de::Deserializer<'a> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.0.value {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(*b),
            Value::Int(i) => v.visit_i64(*i),
            Value::UInt(u) => v.visit_u64(*u),
            Value::Float(f) => v.visit_f64(*f),
            Value::Str(s) => v.visit_borrowed_str(s),
            Value::Seq(items) => v.visit_seq(SeqAccess { items, next: 0 }),
            Value::Map(m) => {
                let entries: Vec<_> = m.iter().collect();
                v.visit_map(MapAccess { entries, next: 0, value: None })
            }
        };
        self.wrap(r)
    }

    fn deserialize_string<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        // Integers read as strings where a string is wanted (go-yaml does the same); other types do not,
        // because their text is lost (`1.10` would become "1.1").
        let r = match &self.0.value {
            Value::Int(i) => v.visit_string(i.to_string()),
            Value::UInt(u) => v.visit_string(u.to_string()),
            Value::Float(f) => Err(DeError::new(format!(
                "expected a string; found the number {f} (write it in quotes if you mean text)"
            ))),
            Value::Bool(b) => Err(DeError::new(format!(
                "expected a string; found the boolean {b} (write it in quotes if you mean text)"
            ))),
            _ => return self.deserialize_any(v),
        };
        self.wrap(r)
    }

    fn deserialize_str<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_string(v)
    }

    fn deserialize_option<V: Visitor<'a>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0.value {
            Value::Null => self.wrap(v.visit_none()),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(self, _name: &'static str, v: V) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.0.value {
            Value::Str(s) => v.visit_enum(s.as_str().into_deserializer()),
            Value::Map(m) if m.len() == 1 => {
                let Some((k, val)) = m.iter().next() else {
                    return Err(DeError::new("empty mapping").at(self.0.span));
                };
                v.visit_enum(EnumAccess { key: k.name.as_str(), value: val })
                    .map_err(|e| e.at(val.span).within(PathSeg::Key(k.name.clone())))
            }
            _ => Err(DeError::new(format!("expected a string; found {}", self.0.kind_name()))),
        };
        self.wrap(r)
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_seq deserialize_map deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(self, _name: &'static str, v: V) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _n: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match &self.0.value {
            Value::Map(_) => self.deserialize_any(v),
            _ => self.wrap(Err(DeError::new(format!("expected a mapping; found {}", self.0.kind_name())))),
        }
    }
}

struct SeqAccess<'a> {
    items: &'a [Node],
    next: usize,
}

impl<'a> de::SeqAccess<'a> for SeqAccess<'a> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.get(self.next) else { return Ok(None) };
        let i = self.next;
        self.next += 1;
        seed.deserialize(NodeDe(item)).map(Some).map_err(|e| e.at(item.span).within(PathSeg::Index(i)))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.next)
    }
}

struct MapAccess<'a> {
    entries: Vec<(&'a super::node::Key, &'a Node)>,
    next: usize,
    value: Option<(&'a str, &'a Node)>,
}

impl<'a> de::MapAccess<'a> for MapAccess<'a> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some((k, v)) = self.entries.get(self.next).copied() else { return Ok(None) };
        self.next += 1;
        self.value = Some((k.name.as_str(), v));
        seed.deserialize(KeyDe(&k.name)).map(Some).map_err(|e| e.at(k.span).within(PathSeg::Key(k.name.clone())))
    }

    fn next_value_seed<T: DeserializeSeed<'a>>(&mut self, seed: T) -> Result<T::Value, DeError> {
        let Some((k, v)) = self.value.take() else {
            return Err(DeError::new("internal: value requested before key"));
        };
        seed.deserialize(NodeDe(v)).map_err(|e| e.at(v.span).within(PathSeg::Key(k.to_owned())))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.next)
    }
}

/// Mapping keys are strings; they may also be read as numbers or booleans when the target map wants that.
struct KeyDe<'a>(&'a str);

impl<'de> de::Deserializer<'de> for KeyDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_borrowed_str(self.0)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0.parse::<u32>() {
            Ok(n) => v.visit_u32(n),
            Err(_) => Err(DeError::new(format!("expected a number as key; found {:?}", self.0))),
        }
    }

    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0.parse::<u64>() {
            Ok(n) => v.visit_u64(n),
            Err(_) => Err(DeError::new(format!("expected a number as key; found {:?}", self.0))),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u128 f32 f64 char str string bytes byte_buf option unit unit_struct
        newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

struct EnumAccess<'a> {
    key: &'a str,
    value: &'a Node,
}

impl<'a> de::EnumAccess<'a> for EnumAccess<'a> {
    type Error = DeError;
    type Variant = VariantAccess<'a>;

    fn variant_seed<V: DeserializeSeed<'a>>(self, seed: V) -> Result<(V::Value, VariantAccess<'a>), DeError> {
        let v = seed.deserialize(KeyDe(self.key))?;
        Ok((v, VariantAccess(self.value)))
    }
}

struct VariantAccess<'a>(&'a Node);

impl<'a> de::VariantAccess<'a> for VariantAccess<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.0.value {
            Value::Null => Ok(()),
            _ => Err(DeError::new(format!("expected no value; found {}", self.0.kind_name()))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(NodeDe(self.0))
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_any(NodeDe(self.0), v)
    }

    fn struct_variant<V: Visitor<'a>>(self, _fields: &'static [&'static str], v: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_any(NodeDe(self.0), v)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::yaml::parse_document;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Role {
        Install,
        Osd,
        Data,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Disk {
        role: Role,
        size_gb: Option<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Profile {
        name: String,
        disks: Vec<Disk>,
    }

    fn err(text: &str) -> (String, Span) {
        let n = parse_document(text).unwrap();
        let e = from_node::<Profile>(&n).unwrap_err();
        (e.to_string(), e.span)
    }

    #[test]
    fn reads_valid_input() {
        let n = parse_document("name: r650\ndisks:\n  - role: install\n    sizeGb: 480\n  - {role: osd}\n").unwrap();
        let p: Profile = from_node(&n).unwrap();
        assert_eq!(p.disks[0], Disk { role: Role::Install, size_gb: Some(480) });
        assert_eq!(p.disks[1].role, Role::Osd);
    }

    #[test]
    fn errors_name_path_and_position() {
        let (m, s) = err("name: r650\ndisks:\n  - role: install\n  - role: osdd\n");
        assert_eq!(m, "disks[1].role: expected one of install, osd, data; found \"osdd\"");
        assert_eq!(s, Span::new(4, 11));

        let (m, s) = err("name: r650\ndisks:\n  - role: osd\n    color: red\n");
        assert_eq!(m, "disks[0].color: unknown field \"color\"; expected one of role, sizeGb");
        assert_eq!(s, Span::new(4, 5));

        let (m, s) = err("name: r650\ndisks:\n  - sizeGb: 4\n");
        assert_eq!(m, "disks[0].role: required field is missing");
        assert_eq!(s, Span::new(3, 5));

        let (m, s) = err("name: r650\ndisks:\n  - role: osd\n    sizeGb: big\n");
        assert_eq!(m, "disks[0].sizeGb: expected u32; found \"big\"");
        assert_eq!(s, Span::new(4, 13));

        let (m, _) = err("name: 1.10\ndisks: []\n");
        assert_eq!(m, "name: expected a string; found the number 1.1 (write it in quotes if you mean text)");

        let (m, s) = err("name: x\ndisks: {a: 1}\n");
        assert_eq!(m, "disks: expected a sequence; found a mapping");
        assert_eq!(s, Span::new(2, 8));
    }

    #[test]
    fn locate_paths() {
        let n = parse_document("a:\n  b:\n    - x\n    - y: 1\n").unwrap();
        let p = FieldPath::root().key("a").key("b").index(1).key("y");
        assert_eq!(p.to_string(), "a.b[1].y");
        assert_eq!(p.span_in(&n), Span::new(4, 10));
        assert_eq!(FieldPath::root().key("a").key("zz").span_in(&n), Span::new(2, 3));
        assert_eq!(FieldPath::root().key("node.kubernetes.io/x").to_string(), "[\"node.kubernetes.io/x\"]");
    }
}
