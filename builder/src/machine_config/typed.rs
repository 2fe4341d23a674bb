//! Decoding a YAML document into its Talos shape and printing it back the way Talos's `yaml.Marshal` would.
//!
//! Talos never keeps the YAML it reads: it decodes into Go structs (go-yaml's coercions, unknown-key checks)
//! and encodes those structs again (Go field order, `omitempty`, sorted maps). Both halves are done here on
//! [`Node`] trees, driven by the shape table, so a patched or hand-written document comes out exactly as Talos
//! would print it.
//!
//! The *typed* tree between the two halves stands for the Go value: a struct is a mapping of the fields that
//! were set (inline structs spliced in), an absent key is Go's zero value (nil pointer, nil slice, zero scalar),
//! a present pointer, slice or map is non-nil even when empty, and custom scalars hold their canonical text.

use crate::yaml::{FieldPath, Key, Mapping, Node, Span, Value};

use super::error::{DocId, ShapeError};
use super::scalars::{self, Norm, ScalarSpec, SourceText, ZeroForm};
use super::shapes::{Contract, DocDef, Shapes, TypeDef, TypeExpr};

/// Structs whose custom `IsZero()` looks at only some fields (all other `iszero` structs look at every field).
fn custom_zero_fields(struct_name: &str) -> Option<&'static [&'static str]> {
    match struct_name {
        "block.EncryptionSpec" => Some(&["provider", "keys"]),
        "runtime.ProvisioningSpec" => Some(&["diskSelector"]),
        _ => None,
    }
}

/// Which kind of Go value a free-form (`any`) node holds, as `merge` names it in its type errors.
pub(crate) fn go_any_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint64",
        Value::Float(_) => "float64",
        Value::Str(_) => "string",
        Value::Seq(_) => "[]interface {}",
        Value::Map(_) => "map[string]interface {}",
    }
}

/// How go-yaml names a node in its errors: `!!str `abc``.
fn describe(node: &Node, text: Option<&str>) -> String {
    let tag = match &node.value {
        Value::Null => "!!null",
        Value::Bool(_) => "!!bool",
        Value::Int(_) | Value::UInt(_) => "!!int",
        Value::Float(_) => "!!float",
        Value::Str(_) => "!!str",
        Value::Seq(_) => return "!!seq".into(),
        Value::Map(_) => return "!!map".into(),
    };
    let t = text.map(str::to_owned).or_else(|| scalars::fallback_text(&node.value)).unwrap_or_default();
    let shown = if t.chars().count() > 10 { format!("{}...", t.chars().take(7).collect::<String>()) } else { t };
    format!("{tag} `{shown}`")
}

/// Decoding state for one document.
pub(crate) struct Decoder<'s> {
    pub shapes: &'static Shapes,
    pub contract: Contract,
    pub source: Option<&'s SourceText<'s>>,
    pub doc: Option<DocId>,
    first_unknown: Option<ShapeError>,
}

impl<'s> Decoder<'s> {
    pub fn new(contract: Contract, source: Option<&'s SourceText<'s>>) -> Self {
        Decoder { shapes: Shapes::get(), contract, source, doc: None, first_unknown: None }
    }

    fn type_err(&self, node: &Node, path: &FieldPath, expected: &TypeExpr) -> ShapeError {
        ShapeError::Type {
            doc: self.doc.clone().map(Box::new),
            path: path.clone(),
            span: node.span,
            expected: expected.to_string(),
            found: describe(node, self.text_of(node).as_deref()),
        }
    }

    fn invalid(&self, node: &Node, path: &FieldPath, message: String) -> ShapeError {
        ShapeError::Invalid { doc: self.doc.clone().map(Box::new), path: path.clone(), span: node.span, message }
    }

    /// go-yaml's `n.Value` for a scalar node.
    fn text_of(&self, node: &Node) -> Option<String> {
        if let Value::Str(s) = &node.value {
            return Some(s.clone());
        }
        if matches!(node.value, Value::Seq(_) | Value::Map(_)) {
            return None;
        }
        self.source
            .and_then(|src| src.scalar_text(&node.value, node.span.line, node.span.col))
            .or_else(|| scalars::fallback_text(&node.value))
    }

    /// Whether a string node was written as a plain scalar that go-yaml reads as a timestamp.
    fn is_plain_timestamp(&self, node: &Node) -> bool {
        let (Some(src), Value::Str(s)) = (self.source, &node.value) else { return false };
        src.plain_token(node.span.line, node.span.col) == Some(s.as_str())
            && matches!(crate::yaml::resolve::resolve_plain(s), crate::yaml::resolve::Resolved::Timestamp)
    }

    /// Decodes a whole document: identity, then its root struct.
    pub fn document(&mut self, doc: &Node) -> Result<(DocId, &'static DocDef, Node), ShapeError> {
        let (mut id, def) = identify(doc, self.contract)?;
        if def.named {
            // Named for error messages until the decoded `name` is known.
            let raw = doc.as_map().and_then(|m| m.get("name")).and_then(|n| scalars::fallback_text(&n.value));
            id.name = Some(raw.unwrap_or_default());
        }
        self.doc = Some(id.clone());
        let typed = self.struct_value(doc, &def.root, &FieldPath::root())?;
        if let Some(e) = self.first_unknown.take() {
            return Err(e);
        }
        if def.named {
            let name = typed.as_map().and_then(|m| m.get("name")).and_then(Node::as_str).unwrap_or("");
            id.name = Some(name.to_owned());
        }
        Ok((id, def, typed))
    }

    /// Decodes `node` as a value of type `ty`; `None` when Go would hold the zero value (null, or an empty
    /// `meta.Unstructured`, whose inline map go-yaml leaves nil).
    pub fn value(&mut self, node: &Node, ty: &TypeExpr, path: &FieldPath) -> Result<Option<Node>, ShapeError> {
        if matches!(node.value, Value::Null) {
            return Ok(None);
        }
        let span = node.span;
        let out = match ty {
            TypeExpr::Ptr(t) => return self.value(node, t, path),
            TypeExpr::String => match &node.value {
                Value::Seq(_) | Value::Map(_) => return Err(self.type_err(node, path, ty)),
                _ if self.is_plain_timestamp(node) => return Err(self.type_err(node, path, ty)),
                _ => Node::at(Value::Str(self.text_of(node).unwrap_or_default()), span),
            },
            TypeExpr::Bool => match &node.value {
                Value::Bool(b) => Node::at(Value::Bool(*b), span),
                Value::Str(s) => match s.as_str() {
                    "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Node::at(Value::Bool(true), span),
                    "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Node::at(Value::Bool(false), span),
                    _ => return Err(self.type_err(node, path, ty)),
                },
                _ => return Err(self.type_err(node, path, ty)),
            },
            TypeExpr::Int => match &node.value {
                Value::Int(i) => Node::at(Value::Int(*i), span),
                Value::Float(f)
                    if f.fract() == 0.0 && *f >= -9.223_372_036_854_776e18 && *f < 9.223_372_036_854_776e18 =>
                {
                    Node::at(Value::Int(*f as i64), span)
                }
                _ => return Err(self.type_err(node, path, ty)),
            },
            TypeExpr::Uint => match &node.value {
                Value::Int(i) if *i >= 0 => Node::at(Value::Int(*i), span),
                Value::UInt(u) => Node::at(Value::UInt(*u), span),
                Value::Float(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 1.844_674_407_370_955_2e19 => {
                    let u = *f as u64;
                    Node::at(i64::try_from(u).map_or(Value::UInt(u), Value::Int), span)
                }
                _ => return Err(self.type_err(node, path, ty)),
            },
            TypeExpr::Float => match &node.value {
                Value::Int(i) => Node::at(Value::Float(*i as f64), span),
                Value::UInt(u) => Node::at(Value::Float(*u as f64), span),
                Value::Float(f) => Node::at(Value::Float(*f), span),
                _ => return Err(self.type_err(node, path, ty)),
            },
            TypeExpr::Slice(elem) => {
                let Value::Seq(items) = &node.value else { return Err(self.type_err(node, path, ty)) };
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match self.value(item, elem, &path.index(i))? {
                        Some(v) => out.push(v),
                        // go-yaml keeps a nil element for nillable types and drops it for the others.
                        None if nillable(self.shapes, elem) => out.push(Node::at(Value::Null, item.span)),
                        None if matches!(item.value, Value::Null) => {}
                        None => out.push(Node::at(Value::Map(Mapping::new()), item.span)),
                    }
                }
                Node::at(Value::Seq(out), span)
            }
            TypeExpr::Map(elem) => {
                let Value::Map(m) = &node.value else { return Err(self.type_err(node, path, ty)) };
                let mut out = Mapping::new();
                for (k, v) in m.iter() {
                    let decoded = match self.value(v, elem, &path.key(&k.name))? {
                        Some(d) => d,
                        None => zero_typed(self.shapes, elem, v.span),
                    };
                    out.push(k.clone(), decoded);
                }
                Node::at(Value::Map(out), span)
            }
            TypeExpr::Named(name) => match self.shapes.type_def(name) {
                Some(TypeDef::Struct(_)) => self.struct_value(node, name, path)?,
                Some(TypeDef::Scalar { values, .. }) => self.scalar(node, name, values.as_deref(), path)?,
                Some(TypeDef::Any { .. }) => return self.any(node, name, path),
                None => return Err(self.invalid(node, path, format!("type {name} is missing from the shape table"))),
            },
        };
        Ok(Some(out))
    }

    fn struct_value(&mut self, node: &Node, struct_name: &str, path: &FieldPath) -> Result<Node, ShapeError> {
        let Value::Map(m) = &node.value else {
            return Err(self.type_err(node, path, &TypeExpr::Named(struct_name.to_owned())));
        };
        let fields = self.shapes.fields(struct_name, self.contract);
        let mut out = Mapping::new();
        for (k, v) in m.iter() {
            let Some(field) = fields.iter().find(|f| f.name == k.name) else {
                if self.first_unknown.is_none() {
                    self.first_unknown = Some(ShapeError::UnknownKey {
                        doc: self.doc.clone().map(Box::new),
                        path: path.key(&k.name),
                        span: k.span,
                    });
                }
                continue;
            };
            if let Some(d) = self.value(v, &field.ty, &path.key(&k.name))? {
                out.push(k.clone(), d);
            }
        }
        Ok(Node::at(Value::Map(out), node.span))
    }

    fn scalar(
        &mut self,
        node: &Node,
        name: &str,
        values: Option<&[String]>,
        path: &FieldPath,
    ) -> Result<Node, ShapeError> {
        let ty = TypeExpr::Named(name.to_owned());
        if matches!(node.value, Value::Seq(_) | Value::Map(_)) {
            return Err(self.type_err(node, path, &ty));
        }
        let Some(spec) = scalars::scalar_spec(name) else {
            return Err(self.invalid(node, path, format!("scalar type {name} has no behaviour defined")));
        };
        let text = self.text_of(node).unwrap_or_default();
        let value = match spec.norm {
            Norm::Raw => node.value.clone(),
            Norm::Text => Value::Str(text),
            Norm::TrimSpace => Value::Str(text.trim().to_owned()),
            Norm::Duration => match &node.value {
                Value::Int(0) => Value::Str("0s".into()),
                Value::Str(s) => match scalars::parse_duration(s) {
                    Ok(d) => Value::Str(scalars::format_duration(d)),
                    Err(_) => return Err(self.type_err(node, path, &ty)),
                },
                _ => return Err(self.type_err(node, path, &ty)),
            },
            Norm::Enum => match values {
                Some(vs) => match scalars::canonical_enum(vs, &text) {
                    Some(c) => Value::Str(c.to_owned()),
                    None => {
                        let short = name.rsplit('.').next().unwrap_or(name);
                        return Err(self.invalid(node, path, format!("{text} does not belong to {short} values")));
                    }
                },
                None => Value::Str(text),
            },
            Norm::PortRange => match &node.value {
                Value::Str(s) => match s.split_once('-') {
                    Some((a, b)) if a == b && !a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) => {
                        a.parse::<i64>().map(Value::Int).unwrap_or_else(|_| node.value.clone())
                    }
                    _ => node.value.clone(),
                },
                other => other.clone(),
            },
            Norm::Url => match scalars::GoUrl::parse(&text) {
                Some(u) if !text.is_empty() => Value::Str(u.to_go_string()),
                _ => Value::Str(text),
            },
        };
        Ok(Node::at(value, node.span))
    }

    fn any(&mut self, node: &Node, name: &str, path: &FieldPath) -> Result<Option<Node>, ShapeError> {
        let span = node.span;
        if name == "meta.ArgValue" {
            let bad = || self.invalid(node, path, "arg value must be a string or list of strings".into());
            return Ok(Some(match &node.value {
                Value::Map(_) => return Err(bad()),
                Value::Seq(items) => {
                    let mut out = Vec::new();
                    for item in items {
                        match &item.value {
                            Value::Null => {}
                            Value::Seq(_) | Value::Map(_) => return Err(bad()),
                            _ => out.push(Node::at(Value::Str(self.text_of(item).unwrap_or_default()), item.span)),
                        }
                    }
                    Node::at(Value::Seq(out), span)
                }
                _ => match self.text_of(node).unwrap_or_default() {
                    s if s.is_empty() => Node::at(Value::Null, span),
                    s => Node::at(Value::Str(s), span),
                },
            }));
        }
        match &node.value {
            Value::Map(m) if m.is_empty() => Ok(None),
            Value::Map(_) => Ok(Some(node.clone())),
            _ => Err(self.type_err(node, path, &TypeExpr::Named(name.to_owned()))),
        }
    }
}

/// Whether Go keeps a nil element of this type in a decoded list.
fn nillable(shapes: &Shapes, ty: &TypeExpr) -> bool {
    match ty {
        TypeExpr::Ptr(_) | TypeExpr::Slice(_) | TypeExpr::Map(_) => true,
        TypeExpr::Named(n) => matches!(shapes.type_def(n), Some(TypeDef::Any { name }) if name == "meta.ArgValue"),
        _ => false,
    }
}

/// The typed zero value stored for a `null` map value (go-yaml stores the element type's zero value).
fn zero_typed(shapes: &Shapes, ty: &TypeExpr, span: Span) -> Node {
    let v = match ty {
        TypeExpr::String => Value::Str(String::new()),
        TypeExpr::Bool => Value::Bool(false),
        TypeExpr::Int | TypeExpr::Uint => Value::Int(0),
        TypeExpr::Float => Value::Float(0.0),
        TypeExpr::Named(n) => match shapes.type_def(n) {
            Some(TypeDef::Struct(_)) => Value::Map(Mapping::new()),
            Some(TypeDef::Scalar { .. }) => match scalars::scalar_spec(n).map(|s| s.zero) {
                Some(ZeroForm::Str(s)) => Value::Str(s.to_owned()),
                Some(ZeroForm::Int) => Value::Int(0),
                _ => Value::Null,
            },
            _ => Value::Null,
        },
        _ => Value::Null,
    };
    Node::at(v, span)
}

/// The `(apiVersion, kind)` detection of Talos's decoder, and the registered kind it names.
pub(crate) fn identify(doc: &Node, contract: Contract) -> Result<(DocId, &'static DocDef), ShapeError> {
    let span = doc.span;
    let Value::Map(m) = &doc.value else { return Err(ShapeError::NotAMapping { span, found: doc.kind_name() }) };
    let mut version = String::new();
    let mut kind = String::new();
    let text = |n: &Node, key: &str| -> Result<String, ShapeError> {
        match &n.value {
            Value::Seq(_) | Value::Map(_) => Err(ShapeError::Type {
                doc: None,
                path: FieldPath::root().key(key),
                span: n.span,
                expected: "string".into(),
                found: describe(n, None),
            }),
            v => Ok(scalars::fallback_text(v).unwrap_or_default()),
        }
    };
    for (k, v) in m.iter() {
        match k.name.as_str() {
            "kind" => kind = text(v, "kind")?,
            "apiVersion" => version = text(v, "apiVersion")?,
            "machine" | "cluster" | "debug" | "persist" => version = "v1alpha1".into(),
            _ => {}
        }
    }
    let shapes = Shapes::get();
    let not_registered = |kind: &str, version: &str| ShapeError::NotRegistered {
        kind: kind.to_owned(),
        version: version.to_owned(),
        span: m.get_entry("kind").map_or(span, |(k, _)| k.span),
        // A kind a newer Talos knows: say so, the usual cause is a patch written for a newer release.
        newer: Contract::ALL
            .iter()
            .rev()
            .find(|c| **c > contract && shapes.doc(kind, **c).is_some())
            .map(|first| (*first, contract)),
    };
    if version == "v1alpha1" && kind.is_empty() {
        let def = shapes.doc("v1alpha1", contract).ok_or_else(|| not_registered("v1alpha1", ""))?;
        return Ok((DocId::v1alpha1(), def));
    }
    if kind.is_empty() {
        return Err(ShapeError::MissingKind { span });
    }
    if version.is_empty() {
        return Err(ShapeError::MissingApiVersion { span });
    }
    // The v1alpha1 kind is registered for every apiVersion; the others only for `v1alpha1`.
    match shapes.doc(&kind, contract) {
        Some(def) if kind == "v1alpha1" => Ok((DocId::v1alpha1(), def)),
        Some(def) if version == "v1alpha1" => Ok((DocId { api_version: version, kind, name: None }, def)),
        _ => Err(not_registered(&kind, &version)),
    }
}

/// The identity of a config document (`v1alpha1`, `KubeletConfig`, `RegistryMirrorConfig/ghcr.io`), with Talos's
/// errors for a missing kind or apiVersion and for kinds the contract does not register.
pub fn document_id(doc: &Node, contract: Contract) -> Result<DocId, ShapeError> {
    let (mut id, def) = identify(doc, contract)?;
    if def.named {
        let name =
            doc.as_map().and_then(|m| m.get("name")).map(|n| scalars::fallback_text(&n.value).unwrap_or_default());
        id.name = Some(name.unwrap_or_default());
    }
    Ok(id)
}

// ---- zero checks --------------------------------------------------------------------------------------------

/// go-yaml's `isZero` (what `omitempty` drops) for a present typed value.
pub(crate) fn is_empty(shapes: &Shapes, contract: Contract, node: &Node, ty: &TypeExpr) -> bool {
    match ty {
        TypeExpr::Ptr(_) => false,
        TypeExpr::String | TypeExpr::Bool | TypeExpr::Int | TypeExpr::Uint | TypeExpr::Float => {
            is_zero_scalar(&node.value)
        }
        TypeExpr::Slice(_) | TypeExpr::Map(_) => match &node.value {
            Value::Seq(s) => s.is_empty(),
            Value::Map(m) => m.is_empty(),
            _ => true,
        },
        TypeExpr::Named(n) => match shapes.type_def(n) {
            Some(TypeDef::Struct(_)) => struct_is_empty(shapes, contract, node.as_map(), n),
            Some(TypeDef::Scalar { .. }) => scalar_is_zero(n, &node.value),
            Some(TypeDef::Any { name }) if name == "meta.ArgValue" => false,
            Some(TypeDef::Any { .. }) => node.as_map().is_none_or(Mapping::is_empty),
            None => false,
        },
    }
}

fn struct_is_empty(shapes: &Shapes, contract: Contract, m: Option<&Mapping>, name: &str) -> bool {
    let Some(m) = m else { return true };
    let fields = shapes.fields(name, contract);
    let only = custom_zero_fields(name);
    fields.iter().filter(|f| only.is_none_or(|o| o.contains(&f.name.as_str()))).all(|f| match m.get(&f.name) {
        None => true,
        Some(v) => is_empty(shapes, contract, v, &f.ty),
    })
}

/// Go's zero value for a basic scalar: `""`, `0`, `false`.
pub(crate) fn is_zero_scalar(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Str(s) => s.is_empty(),
        Value::Int(i) => *i == 0,
        Value::UInt(u) => *u == 0,
        Value::Float(f) => *f == 0.0,
        Value::Bool(b) => !b,
        Value::Seq(_) | Value::Map(_) => false,
    }
}

/// Whether a custom scalar's (canonical) value is its type's zero value.
pub(crate) fn scalar_is_zero(name: &str, v: &Value) -> bool {
    match scalars::scalar_spec(name) {
        Some(ScalarSpec { zero: ZeroForm::Str(z), norm, .. }) => match v {
            Value::Str(s) if norm == Norm::Duration => scalars::parse_duration(s).is_ok_and(|d| d == 0),
            Value::Str(s) => s == z || s.is_empty(),
            other => is_zero_scalar(other),
        },
        _ => is_zero_scalar(v),
    }
}

// ---- encoding -----------------------------------------------------------------------------------------------

/// Prints typed documents as go-yaml would: Go field order, `omitempty`, non-omitempty zero values filled in,
/// map keys in go-yaml's natural order.
pub(crate) struct Encoder {
    pub shapes: &'static Shapes,
    pub contract: Contract,
}

impl Encoder {
    pub fn new(contract: Contract) -> Self {
        Encoder { shapes: Shapes::get(), contract }
    }

    pub fn struct_value(&self, m: Option<&Mapping>, name: &str, span: Span) -> Node {
        let mut out = Mapping::new();
        for f in self.shapes.fields(name, self.contract) {
            match m.and_then(|m| m.get_entry(&f.name)) {
                Some((k, v)) => {
                    if f.omitempty && is_empty(self.shapes, self.contract, v, &f.ty) {
                        continue;
                    }
                    out.push(k.clone(), self.value(v, &f.ty));
                }
                None if f.omitempty => {}
                None => out.push(Key { name: f.name.clone(), span: Span::UNKNOWN }, self.zero(&f.ty)),
            }
        }
        Node::at(Value::Map(out), span)
    }

    pub fn value(&self, node: &Node, ty: &TypeExpr) -> Node {
        match (ty, &node.value) {
            (_, Value::Null) => self.zero(ty),
            (TypeExpr::Ptr(t), _) => self.value(node, t),
            (TypeExpr::Slice(t), Value::Seq(items)) => {
                Node::at(Value::Seq(items.iter().map(|i| self.value(i, t)).collect()), node.span)
            }
            (TypeExpr::Map(t), Value::Map(m)) => {
                let mut out = Mapping::new();
                for (k, v) in m.iter() {
                    out.push(k.clone(), self.value(v, t));
                }
                out.sort_by(crate::yaml::emit::go_map_key_cmp);
                Node::at(Value::Map(out), node.span)
            }
            (TypeExpr::Named(n), v) => match self.shapes.type_def(n) {
                Some(TypeDef::Struct(_)) => self.struct_value(node.as_map(), n, node.span),
                Some(TypeDef::Any { name }) if name == "meta.Unstructured" => sort_any(node),
                _ => Node::at(v.clone(), node.span),
            },
            _ => node.clone(),
        }
    }

    /// What go-yaml prints for a non-omitempty field the value left unset.
    pub fn zero(&self, ty: &TypeExpr) -> Node {
        Node::new(match ty {
            TypeExpr::String => Value::Str(String::new()),
            TypeExpr::Bool => Value::Bool(false),
            TypeExpr::Int | TypeExpr::Uint => Value::Int(0),
            TypeExpr::Float => Value::Float(0.0),
            TypeExpr::Slice(_) => Value::Seq(Vec::new()),
            TypeExpr::Map(_) => Value::Map(Mapping::new()),
            TypeExpr::Ptr(_) => Value::Null,
            TypeExpr::Named(n) => match self.shapes.type_def(n) {
                Some(TypeDef::Struct(_)) => return self.struct_value(None, n, Span::UNKNOWN),
                Some(TypeDef::Any { name }) if name == "meta.Unstructured" => Value::Map(Mapping::new()),
                Some(TypeDef::Scalar { .. }) => match scalars::scalar_spec(n).map(|s| s.zero) {
                    Some(ZeroForm::Str(s)) => Value::Str(s.to_owned()),
                    Some(ZeroForm::Int) => Value::Int(0),
                    _ => Value::Null,
                },
                _ => Value::Null,
            },
        })
    }
}

/// Free-form YAML as go-yaml prints a `map[string]any`: every mapping's keys sorted, recursively.
pub(crate) fn sort_any(node: &Node) -> Node {
    match &node.value {
        Value::Map(m) => {
            let mut out = Mapping::new();
            for (k, v) in m.iter() {
                out.push(k.clone(), sort_any(v));
            }
            out.sort_by(crate::yaml::emit::go_map_key_cmp);
            Node::at(Value::Map(out), node.span)
        }
        Value::Seq(items) => Node::at(Value::Seq(items.iter().map(sort_any).collect()), node.span),
        _ => node.clone(),
    }
}

/// Decodes and re-encodes one document so it reads exactly as Talos's decode→encode would print it.
pub fn normalize_document(doc: &mut Node, contract: Contract) -> Result<(), ShapeError> {
    let mut dec = Decoder::new(contract, None);
    let (_, def, typed) = dec.document(doc)?;
    *doc = Encoder::new(contract).struct_value(typed.as_map(), &def.root, doc.span);
    Ok(())
}
