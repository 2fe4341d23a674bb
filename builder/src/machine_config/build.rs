//! Terse construction of YAML trees in code (the generator builds every Talos document with these).

use crate::yaml::{Mapping, Node, Value};

/// A mapping under construction; `put` keeps insertion order (callers write Go struct order).
#[derive(Debug, Default)]
pub struct M(Mapping);

impl M {
    pub fn new() -> M {
        M(Mapping::new())
    }

    /// A multi-doc Talos document head: `apiVersion: v1alpha1`, `kind: <kind>`.
    pub fn doc(kind: &str) -> M {
        M::new().put("apiVersion", "v1alpha1").put("kind", kind)
    }

    pub fn put(mut self, key: &str, value: impl Into<Node>) -> M {
        self.0.insert(key, value.into());
        self
    }

    pub fn put_if(self, cond: bool, key: &str, value: impl FnOnce() -> Node) -> M {
        if cond { self.put(key, value()) } else { self }
    }

    pub fn put_opt<T: Into<Node>>(self, key: &str, value: Option<T>) -> M {
        match value {
            Some(v) => self.put(key, v),
            None => self,
        }
    }

    pub fn build(self) -> Node {
        Node::map(self.0)
    }
}

impl From<M> for Node {
    fn from(m: M) -> Node {
        m.build()
    }
}

impl From<&str> for Node {
    fn from(s: &str) -> Node {
        Node::str(s)
    }
}

impl From<String> for Node {
    fn from(s: String) -> Node {
        Node::str(s)
    }
}

impl From<&String> for Node {
    fn from(s: &String) -> Node {
        Node::str(s.as_str())
    }
}

impl From<bool> for Node {
    fn from(b: bool) -> Node {
        Node::bool(b)
    }
}

impl From<u16> for Node {
    fn from(i: u16) -> Node {
        Node::int(i64::from(i))
    }
}

impl From<u32> for Node {
    fn from(i: u32) -> Node {
        Node::int(i64::from(i))
    }
}

impl From<i64> for Node {
    fn from(i: i64) -> Node {
        Node::int(i)
    }
}

/// A list of strings.
pub fn strs<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Node {
    Node::seq(items.into_iter().map(|s| Node::str(s.as_ref())))
}

/// A list of nodes.
pub fn list(items: impl IntoIterator<Item = Node>) -> Node {
    Node::seq(items)
}

/// An empty mapping, written `{}`.
pub fn empty() -> Node {
    Node::new(Value::Map(Mapping::new()))
}
