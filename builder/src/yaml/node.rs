//! The YAML tree talforge works on: ordered mappings, typed scalars and the source position of every node.
//!
//! Specs, patches and machine configs all pass through this one type. Keeping positions on every node lets
//! any later check (a duplicate address, a patch that targets a missing key) point at the exact file, line and
//! column; keeping mappings ordered lets the emitter reproduce Go struct field order.

use std::fmt;

/// A 1-based line and column in a source file; `0:0` means "not from a file" (built in code).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub line: u32,
    pub col: u32,
}

impl Span {
    pub const UNKNOWN: Span = Span { line: 0, col: 0 };

    pub fn new(line: u32, col: u32) -> Self {
        Span { line, col }
    }

    pub fn is_known(self) -> bool {
        self.line != 0
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One YAML node: a value and where it was written.
///
/// Equality ignores positions: two trees are equal when their values are.
#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

/// A YAML value after tag resolution (go-yaml's rules: YAML 1.2 core schema plus go-yaml's extras).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// Integers above `i64::MAX` (go-yaml decodes them as `uint64`).
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Mapping),
}

/// A mapping key: always a string (non-string YAML keys are kept in their canonical string form, as Go's
/// `map[string]T` would hold them), with its position.
#[derive(Clone, Debug)]
pub struct Key {
    pub name: String,
    pub span: Span,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// An insertion-ordered mapping with unique keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mapping {
    entries: Vec<(Key, Node)>,
}

impl Mapping {
    pub fn new() -> Self {
        Mapping::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries.iter_mut().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    pub fn get_entry(&self, key: &str) -> Option<(&Key, &Node)> {
        self.entries.iter().find(|(k, _)| k.name == key).map(|(k, v)| (k, v))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, keeping the key's position if it exists, appending otherwise.
    pub fn insert(&mut self, key: impl Into<String>, value: Node) {
        let key = key.into();
        match self.get_mut(&key) {
            Some(slot) => *slot = value,
            None => self.entries.push((Key { name: key, span: Span::UNKNOWN }, value)),
        }
    }

    /// Appends an entry with a known key position. The caller guarantees the key is new.
    pub fn push(&mut self, key: Key, value: Node) {
        self.entries.push((key, value));
    }

    pub fn remove(&mut self, key: &str) -> Option<Node> {
        let at = self.entries.iter().position(|(k, _)| k.name == key)?;
        Some(self.entries.remove(at).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Node)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&Key, &mut Node)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.name.as_str())
    }

    /// Reorders the entries with a stable sort.
    pub fn sort_by(&mut self, mut less: impl FnMut(&str, &str) -> std::cmp::Ordering) {
        self.entries.sort_by(|(a, _), (b, _)| less(&a.name, &b.name));
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Node) -> bool) {
        self.entries.retain(|(k, v)| keep(&k.name, v));
    }
}

impl IntoIterator for Mapping {
    type Item = (Key, Node);
    type IntoIter = std::vec::IntoIter<(Key, Node)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl FromIterator<(String, Node)> for Mapping {
    fn from_iter<I: IntoIterator<Item = (String, Node)>>(iter: I) -> Self {
        let mut m = Mapping::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl Node {
    pub fn new(value: Value) -> Self {
        Node { value, span: Span::UNKNOWN }
    }

    pub fn at(value: Value, span: Span) -> Self {
        Node { value, span }
    }

    pub fn null() -> Self {
        Node::new(Value::Null)
    }

    pub fn str(s: impl Into<String>) -> Self {
        Node::new(Value::Str(s.into()))
    }

    pub fn bool(b: bool) -> Self {
        Node::new(Value::Bool(b))
    }

    pub fn int(i: i64) -> Self {
        Node::new(Value::Int(i))
    }

    pub fn seq(items: impl IntoIterator<Item = Node>) -> Self {
        Node::new(Value::Seq(items.into_iter().collect()))
    }

    pub fn map(m: Mapping) -> Self {
        Node::new(Value::Map(m))
    }

    pub fn empty_map() -> Self {
        Node::new(Value::Map(Mapping::new()))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&Mapping> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Mapping> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_seq_mut(&mut self) -> Option<&mut Vec<Node>> {
        match &mut self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// A short name of the value's type, for error messages ("expected a mapping; found a string").
    pub fn kind_name(&self) -> &'static str {
        self.value.kind_name()
    }
}

impl Value {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::UInt(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Builds a tree from any serde data (positions are not kept: use the source tree for those).
impl<'de> serde::Deserialize<'de> for Node {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::null())
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::null())
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                <Node as serde::Deserialize>::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
                Ok(Node::new(Value::Bool(b)))
            }
            fn visit_i64<E>(self, i: i64) -> Result<Node, E> {
                Ok(Node::new(Value::Int(i)))
            }
            fn visit_u64<E>(self, u: u64) -> Result<Node, E> {
                Ok(Node::new(i64::try_from(u).map_or(Value::UInt(u), Value::Int)))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Node, E> {
                Ok(Node::new(Value::Float(f)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Node, E> {
                Ok(Node::str(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(n) = a.next_element::<Node>()? {
                    items.push(n);
                }
                Ok(Node::new(Value::Seq(items)))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut m = Mapping::new();
                while let Some((k, v)) = a.next_entry::<String, Node>()? {
                    m.insert(k, v);
                }
                Ok(Node::new(Value::Map(m)))
            }
        }
        d.deserialize_any(V)
    }
}
