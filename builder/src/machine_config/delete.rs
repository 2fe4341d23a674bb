//! `$patch: delete` directives: finding them in a patch document (Talos's `AppendDeletesTo`) and applying the
//! resulting selectors to the config's typed documents (Talos's `selector.ApplyTo`).
//!
//! Talos strips every directive out of the patch YAML before decoding it and turns each into a selector
//! document that runs just before the patch's merge content; this module reproduces both halves, including
//! the cascading removal of containers a deletion left empty and the exact error texts.

use crate::yaml::{FieldPath, Node, Span, Value};

use super::error::DocId;
use super::scalars;
use super::shapes::{Contract, Shapes, TypeDef, TypeExpr};

/// One `$patch: delete`: a whole document, a key path, or a list item matched by its first `key: value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Selector {
    /// Path segments by YAML name; list indexes are written `[i]`.
    pub path: Vec<String>,
    pub api_version: String,
    pub kind: String,
    /// Set when the patch document had a non-empty `name` (a named selector).
    pub name: Option<String>,
    pub key: String,
    pub value: String,
    /// Where the `$patch` key was written.
    pub span: Span,
}

impl Selector {
    pub fn merge_key(&self) -> String {
        DocId { api_version: self.api_version.clone(), kind: self.kind.clone(), name: self.name.clone() }.merge_key()
    }

    pub fn path_string(&self) -> String {
        self.path.join(".")
    }

    pub fn field_path(&self) -> FieldPath {
        let mut p = FieldPath::root();
        for seg in &self.path {
            p = match seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')).and_then(|s| s.parse().ok()) {
                Some(i) => p.index(i),
                None => p.key(seg),
            };
        }
        p
    }
}

/// A malformed directive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DirectiveError {
    pub span: Span,
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Parent {
    Doc,
    Map,
    Seq,
}

struct Walk {
    api_version: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    root_span: Span,
    root_is_map: bool,
    out: Vec<Selector>,
}

/// `go-yaml`'s `Value` of a scalar node, as Talos's `findValue` returns it.
fn scalar_value(n: &Node) -> String {
    match &n.value {
        Value::Seq(_) | Value::Map(_) | Value::Null => String::new(),
        v => scalars::fallback_text(v).unwrap_or_default(),
    }
}

fn is_delete(key: &str, v: &Node) -> bool {
    key == "$patch" && matches!(&v.value, Value::Str(s) if s == "delete")
}

/// Removes every `$patch: delete` from one patch document and returns the selectors, in document order, and
/// whether the document itself is left (a document that was deleted whole, became empty, or holds only scalar
/// `version`/`kind`/`name` keys is dropped, as Talos drops it).
pub(crate) fn extract_deletes(doc: &mut Node) -> Result<(Vec<Selector>, bool), DirectiveError> {
    let find = |k: &str| doc.as_map().and_then(|m| m.get(k)).map(scalar_value);
    let mut w = Walk {
        api_version: find("apiVersion"),
        kind: find("kind"),
        name: find("name"),
        root_span: doc.span,
        root_is_map: doc.as_map().is_some(),
        out: Vec::new(),
    };
    let mut path = Vec::new();
    let del = process(&mut w, Parent::Doc, doc, &mut path)?;
    let keep = !del && !is_empty_doc(doc);
    Ok((w.out, keep))
}

fn process(w: &mut Walk, parent: Parent, v: &mut Node, path: &mut Vec<String>) -> Result<bool, DirectiveError> {
    match &mut v.value {
        Value::Map(m) => {
            let keys: Vec<String> = m.keys().map(str::to_owned).collect();
            for key in keys {
                let Some((k, val)) = m.get_entry(&key) else { continue };
                if is_delete(&key, val) {
                    let span = k.span;
                    if parent != Parent::Seq
                        && let Some(_) = path.iter().find(|p| p.starts_with('['))
                    {
                        return Err(DirectiveError {
                            span,
                            message: format!("cannot delete an inner key in '{}'", path.join(".")),
                        });
                    }
                    let (sel_key, sel_value) = if parent == Parent::Seq {
                        let first = m.iter().find(|(k, v)| !is_delete(&k.name, v));
                        match first {
                            Some((k, v)) => (k.name.clone(), scalar_value(v)),
                            None => {
                                return Err(DirectiveError {
                                    span,
                                    message: format!("no key:val found in sequence node for path {}", path.join(".")),
                                });
                            }
                        }
                    } else {
                        (String::new(), String::new())
                    };
                    let sel = make_selector(w, path, sel_key, sel_value, span)?;
                    w.out.push(sel);
                    return Ok(true);
                }
                let Some(child) = m.get_mut(&key) else { continue };
                path.push(key.clone());
                let del = process(w, Parent::Map, child, path);
                path.pop();
                if del? {
                    m.remove(&key);
                    if m.is_empty() {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        }
        Value::Seq(items) => {
            let mut i = 0;
            while i < items.len() {
                path.push(format!("[{i}]"));
                let del = process(w, Parent::Seq, &mut items[i], path);
                path.pop();
                if del? {
                    items.remove(i);
                    if items.is_empty() {
                        return Ok(true);
                    }
                } else {
                    i += 1;
                }
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

fn make_selector(
    w: &Walk,
    path: &[String],
    key: String,
    value: String,
    span: Span,
) -> Result<Selector, DirectiveError> {
    if !w.root_is_map {
        return Err(DirectiveError { span: w.root_span, message: "expected a mapping node".into() });
    }
    let required = path.is_empty();
    if required {
        for (field, v) in [("apiVersion", &w.api_version), ("kind", &w.kind)] {
            if v.is_none() {
                return Err(DirectiveError {
                    span: w.root_span,
                    message: format!("missing {field} in document for which $patch: delete is used"),
                });
            }
        }
    }
    let api_version = w.api_version.clone().unwrap_or_default();
    let mut kind = w.kind.clone().unwrap_or_default();
    match (kind.is_empty(), api_version.is_empty()) {
        (true, true) => kind = "v1alpha1".into(),
        (false, false) => {}
        _ => {
            return Err(DirectiveError {
                span,
                message: format!("kind and apiVersion must be both set for path {}", path.join(".")),
            });
        }
    }
    let name = w.name.clone().filter(|n| !n.is_empty());
    Ok(Selector { path: path.to_vec(), api_version, kind, name, key, value, span })
}

/// Talos's `isEmptyDoc`: a mapping whose keys are only scalar `version`, `kind` or `name` (not `apiVersion`).
fn is_empty_doc(doc: &Node) -> bool {
    let Some(m) = doc.as_map() else { return false };
    m.iter().all(|(k, v)| {
        matches!(k.name.as_str(), "version" | "kind" | "name") && !matches!(v.value, Value::Seq(_) | Value::Map(_))
    })
}

// ---- applying selectors ---------------------------------------------------------------------------------------

pub(crate) enum DeleteFailure {
    Lookup,
    Other(String),
}

impl DeleteFailure {
    pub fn text(&self) -> &str {
        match self {
            DeleteFailure::Lookup => "lookup failed",
            DeleteFailure::Other(m) => m,
        }
    }
}

/// `deleteForPath` on a typed value of type `ty`.
pub(crate) fn delete_path(
    shapes: &Shapes,
    contract: Contract,
    node: &mut Node,
    ty: &TypeExpr,
    path: &[String],
    key: &str,
    value: &str,
) -> Result<(), DeleteFailure> {
    let Some((seg, rest)) = path.split_first() else { return Err(DeleteFailure::Other("path is empty".into())) };
    match ty {
        TypeExpr::Ptr(t) => delete_path(shapes, contract, node, t, path, key, value),
        TypeExpr::Slice(elem) => delete_from_slice(shapes, contract, node, elem, seg, rest, key, value),
        TypeExpr::Map(elem) => delete_in_map(shapes, contract, node, Some(elem), path, key, value),
        TypeExpr::Named(name) => match shapes.type_def(name) {
            Some(TypeDef::Struct(_)) => {
                let Some(field) = shapes.field(name, seg, contract) else { return Err(DeleteFailure::Lookup) };
                let Value::Map(m) = &mut node.value else { return Err(DeleteFailure::Lookup) };
                if rest.is_empty() {
                    m.remove(seg);
                    return Ok(());
                }
                match m.get_mut(seg) {
                    Some(child) => delete_path(shapes, contract, child, &field.ty, rest, key, value),
                    None => match &field.ty {
                        TypeExpr::Named(n) if shapes.struct_def(n).is_some() => {
                            // A zero struct value: descend into it; only zeroing one of its fields can succeed.
                            let mut empty = Node::map(crate::yaml::Mapping::new());
                            delete_path(shapes, contract, &mut empty, &field.ty, rest, key, value)
                        }
                        TypeExpr::Slice(_) if rest.len() > 1 => {
                            Err(DeleteFailure::Other("searching for complex paths in slices is not supported".into()))
                        }
                        _ => Err(DeleteFailure::Lookup),
                    },
                }
            }
            Some(TypeDef::Any { name }) if name == "meta.Unstructured" => {
                delete_in_map(shapes, contract, node, None, path, key, value)
            }
            _ => Err(DeleteFailure::Lookup),
        },
        _ => Err(DeleteFailure::Lookup),
    }
}

/// A map (`elem` `None`: free-form `map[string]any`, whose nested lists cannot be searched).
fn delete_in_map(
    shapes: &Shapes,
    contract: Contract,
    node: &mut Node,
    elem: Option<&TypeExpr>,
    path: &[String],
    key: &str,
    value: &str,
) -> Result<(), DeleteFailure> {
    let Some((seg, rest)) = path.split_first() else { return Err(DeleteFailure::Lookup) };
    let Value::Map(m) = &mut node.value else { return Err(DeleteFailure::Lookup) };
    if !m.contains_key(seg) {
        return Err(DeleteFailure::Lookup);
    }
    if rest.is_empty() {
        m.remove(seg);
        return Ok(());
    }
    let Some(child) = m.get_mut(seg) else { return Err(DeleteFailure::Lookup) };
    match elem {
        Some(t) => {
            if matches!(child.value, Value::Null) {
                return Err(DeleteFailure::Lookup);
            }
            delete_path(shapes, contract, child, t, rest, key, value)
        }
        None => match &child.value {
            Value::Map(_) => delete_in_map(shapes, contract, child, None, rest, key, value),
            Value::Seq(_) => {
                let (s, r) = rest.split_first().ok_or(DeleteFailure::Lookup)?;
                slice_checks(s, r)?;
                // Items of a `[]any` are interfaces: never searched.
                Err(DeleteFailure::Lookup)
            }
            _ => Err(DeleteFailure::Lookup),
        },
    }
}

fn slice_checks(seg: &str, rest: &[String]) -> Result<(), DeleteFailure> {
    if !rest.is_empty() {
        return Err(DeleteFailure::Other("searching for complex paths in slices is not supported".into()));
    }
    if seg.is_empty() {
        return Err(DeleteFailure::Other("searching for '' in a slice is not supported".into()));
    }
    if !seg.starts_with('[') {
        return Err(DeleteFailure::Other("searching for non-integer keys in slices is not supported".into()));
    }
    Ok(())
}

/// `deleteStructFrom`: removes the first struct element whose field `key` (a direct field, by YAML name) has the
/// string form `value`; only string fields and `fmt.Stringer` types compare.
#[allow(clippy::too_many_arguments)]
fn delete_from_slice(
    shapes: &Shapes,
    contract: Contract,
    node: &mut Node,
    elem: &TypeExpr,
    seg: &str,
    rest: &[String],
    key: &str,
    value: &str,
) -> Result<(), DeleteFailure> {
    slice_checks(seg, rest)?;
    let mut t = elem;
    while let TypeExpr::Ptr(inner) = t {
        t = inner;
    }
    let TypeExpr::Named(struct_name) = t else { return Err(DeleteFailure::Lookup) };
    let Some(st) = shapes.struct_def(struct_name) else { return Err(DeleteFailure::Lookup) };
    let Some(field) = st.fields.iter().find(|f| !f.inline && f.active_in(contract) && f.name == key) else {
        return Err(DeleteFailure::Lookup);
    };
    let Value::Seq(items) = &mut node.value else { return Err(DeleteFailure::Lookup) };
    let text_of = |item: &Node| -> Option<String> {
        let v = item.as_map().and_then(|m| m.get(key));
        match &field.ty {
            TypeExpr::String => Some(v.and_then(Node::as_str).unwrap_or("").to_owned()),
            TypeExpr::Named(n) => {
                let spec = scalars::scalar_spec(n).filter(|s| s.stringer)?;
                match v {
                    Some(v) => scalars::fallback_text(&v.value),
                    None => match spec.zero {
                        scalars::ZeroForm::Str(z) => Some(z.to_owned()),
                        _ => None,
                    },
                }
            }
            _ => None,
        }
    };
    let pos =
        items.iter().position(|item| !matches!(item.value, Value::Null) && text_of(item).as_deref() == Some(value));
    match pos {
        Some(i) => {
            items.remove(i);
            Ok(())
        }
        None => Err(DeleteFailure::Lookup),
    }
}
