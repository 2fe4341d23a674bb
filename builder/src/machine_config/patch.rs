//! Config patches as `talosctl gen config --config-patch` loads and applies them: strategic-merge patches
//! (with `$patch: delete`) and RFC 6902 JSON patches, detected in Talos's order and applied with its rules.
//!
//! Loading mirrors `configpatcher.LoadPatch` (strategic first, then JSON, then JSON-in-YAML; an empty patch is
//! an empty JSON patch). Applying mirrors `configpatcher.Apply` + `StrategicMerge`: documents are matched by
//! `apiVersion/kind[/name]`, merged with [`super::merge`], new ones appended, and every result is printed the
//! way Talos would print it.

use crate::yaml::{Node, Span, Value, parse_documents};

use super::delete::{self, DeleteFailure, Selector};
use super::error::{DocId, PatchError, PatchOrigin, ShapeError};
use super::jsonpatch::{self, Operation};
use super::merge::Merger;
use super::scalars::SourceText;
use super::shapes::{Contract, DocDef, Shapes, TypeExpr};
use super::typed::{Decoder, Encoder};

/// A loaded patch.
#[derive(Clone, Debug)]
pub struct Patch {
    origin: PatchOrigin,
    text: String,
    body: Body,
}

#[derive(Clone, Debug)]
enum Body {
    /// Documents and delete selectors, in the order Talos applies them.
    Strategic(Vec<Item>),
    Json(Vec<Operation>),
}

#[derive(Clone, Debug)]
enum Item {
    /// A patch document (raw, after its `$patch` directives were taken out); decoded again at apply time
    /// against the target contract.
    Merge(Node),
    Delete(Selector),
}

/// Which kind of patch [`load_patch`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    StrategicMerge,
    Json6902,
}

impl Patch {
    pub fn origin(&self) -> &PatchOrigin {
        &self.origin
    }

    pub fn kind(&self) -> PatchKind {
        match self.body {
            Body::Strategic(_) => PatchKind::StrategicMerge,
            Body::Json(_) => PatchKind::Json6902,
        }
    }

    /// Number of patch documents plus delete selectors, or of JSON operations.
    pub fn len(&self) -> usize {
        match &self.body {
            Body::Strategic(items) => items.len(),
            Body::Json(ops) => ops.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Loads one patch (the text of a `--config-patch` value or file).
///
/// Detection follows Talos: a multi-document strategic merge patch if every document decodes as a registered
/// config document (after `$patch: delete` processing); otherwise a JSON array of RFC 6902 operations; otherwise
/// a YAML list of operations. An empty (or comment-only) patch is an empty JSON patch. When nothing fits, the
/// error is the JSON error for text starting with `[` and the strategic-merge error otherwise.
pub fn load_patch(text: &str, origin: PatchOrigin) -> Result<Patch, PatchError> {
    let strategic_err = match load_strategic(text, &origin) {
        Ok(items) => return Ok(Patch { origin, text: text.to_owned(), body: Body::Strategic(items) }),
        Err(e) => e,
    };
    let json_err = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => match json_ops(&v) {
            Some(ops) => return Ok(Patch { origin, text: text.to_owned(), body: Body::Json(ops) }),
            None => "json: cannot unmarshal into Go value of type jsonpatch.Patch".to_owned(),
        },
        Err(e) => e.to_string(),
    };
    if let Some(ops) = yaml_ops(text) {
        return Ok(Patch { origin, text: text.to_owned(), body: Body::Json(ops) });
    }
    if text.trim_start().starts_with('[') {
        return Err(PatchError::Load { origin, span: Span::UNKNOWN, message: json_err });
    }
    Err(strategic_err)
}

/// `[]Operation` from JSON: an array of objects (or nulls, which Go keeps as empty operations), or `null`.
fn json_ops(v: &serde_json::Value) -> Option<Vec<Operation>> {
    match v {
        serde_json::Value::Null => Some(Vec::new()),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                serde_json::Value::Object(m) => Some(m.clone()),
                serde_json::Value::Null => Some(Operation::new()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// `yaml.Unmarshal(text, &[]map[string]any)`: only the first document counts; nothing at all is an empty list.
fn yaml_ops(text: &str) -> Option<Vec<Operation>> {
    let docs = parse_documents(text).ok()?;
    let Some(first) = docs.first() else { return Some(Vec::new()) };
    match &first.value {
        Value::Null => Some(Vec::new()),
        Value::Seq(items) => items
            .iter()
            .map(|i| match &i.value {
                Value::Null => Some(Operation::new()),
                Value::Map(_) => match jsonpatch::node_to_json(i)? {
                    serde_json::Value::Object(m) => Some(m),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Loads a patch written inline in a cluster file: a mapping is a one-document strategic-merge patch, a list
/// an RFC 6902 patch. `source_text` is the text of the file the node was parsed from (positions refer to it).
pub fn load_patch_node(node: &Node, source_text: &str, origin: PatchOrigin) -> Result<Patch, PatchError> {
    let text = source_text.to_owned();
    match &node.value {
        Value::Seq(items) => {
            let mut ops = Vec::new();
            for i in items {
                match jsonpatch::node_to_json(i) {
                    Some(serde_json::Value::Object(m)) => ops.push(m),
                    _ => {
                        return Err(PatchError::Load {
                            origin,
                            span: i.span,
                            message: format!("expected an RFC 6902 operation (a mapping); found {}", i.kind_name()),
                        });
                    }
                }
            }
            Ok(Patch { origin, text, body: Body::Json(ops) })
        }
        _ => {
            let items = strategic_items(vec![node.clone()], &SourceText::new(source_text), &origin)?;
            Ok(Patch { origin, text, body: Body::Strategic(items) })
        }
    }
}

fn load_strategic(text: &str, origin: &PatchOrigin) -> Result<Vec<Item>, PatchError> {
    let docs = parse_documents(text).map_err(|e| PatchError::Load {
        origin: origin.clone(),
        span: e.span,
        message: e.message,
    })?;
    strategic_items(docs, &SourceText::new(text), origin)
}

fn strategic_items(docs: Vec<Node>, source: &SourceText<'_>, origin: &PatchOrigin) -> Result<Vec<Item>, PatchError> {
    let mut v1_selectors = Vec::new();
    let mut items = Vec::new();
    for mut doc in docs {
        let (selectors, keep) = delete::extract_deletes(&mut doc).map_err(|e| PatchError::DeleteDirective {
            origin: origin.clone(),
            span: e.span,
            message: e.message,
        })?;
        for sel in selectors {
            // Talos's container lists v1alpha1 delete selectors before every other document.
            if sel.kind == "v1alpha1" && sel.api_version.is_empty() {
                v1_selectors.push(Item::Delete(sel));
            } else {
                items.push(Item::Delete(sel));
            }
        }
        if !keep || matches!(doc.value, Value::Null) {
            continue;
        }
        if !matches!(doc.value, Value::Map(_)) {
            return Err(PatchError::Load {
                origin: origin.clone(),
                span: doc.span,
                message: format!(
                    "expected a YAML document (a mapping) at line {}; found {}",
                    doc.span.line,
                    doc.kind_name()
                ),
            });
        }
        // The loading binary knows every contract's fields; the target contract is checked at apply time.
        let mut first_err = None;
        for contract in Contract::ALL {
            match Decoder::new(contract, Some(source)).document(&doc) {
                Ok(_) => {
                    first_err = None;
                    break;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(PatchError::Shape { origin: origin.clone(), source: Box::new(e) });
        }
        items.push(Item::Merge(doc));
    }
    if v1_selectors.is_empty() && items.is_empty() {
        return Err(PatchError::Load {
            origin: origin.clone(),
            span: Span::UNKNOWN,
            message: "config not found".into(),
        });
    }
    v1_selectors.extend(items);
    Ok(v1_selectors)
}

/// One document of the config being patched, in its typed form.
#[derive(Clone, Debug)]
struct Doc {
    id: DocId,
    def: &'static DocDef,
    node: Node,
    /// Whether a later document of the same patch can merge into it (Talos 1.13 does not index documents a patch
    /// appended).
    indexed: bool,
}

fn decode_config(node: &Node, contract: Contract, index: usize) -> Result<Doc, PatchError> {
    let (id, def, node) = Decoder::new(contract, None)
        .document(node)
        .map_err(|source| PatchError::Config { index, source: Box::new(source) })?;
    Ok(Doc { id, def, node, indexed: true })
}

/// Applies patches in order to a config (its documents in container order) and returns every document printed
/// as Talos prints it: the v1alpha1 document first, then the others in order, new ones at the end.
pub fn apply_patches(config: Vec<Node>, patches: &[Patch], contract: Contract) -> Result<Vec<Node>, PatchError> {
    // Empty (null) documents are skipped, as Talos's loader skips them.
    let mut docs = config
        .iter()
        .enumerate()
        .filter(|(_, n)| !matches!(n.value, Value::Null))
        .map(|(i, n)| decode_config(n, contract, i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut i = 0;
    while i < patches.len() {
        match &patches[i].body {
            Body::Strategic(items) => {
                strategic(&mut docs, &patches[i], items, contract)?;
                i += 1;
            }
            Body::Json(_) => {
                // Consecutive JSON patches are concatenated into one, as `LoadPatches` does.
                let mut ops: Vec<(&PatchOrigin, &Operation)> = Vec::new();
                let first = &patches[i].origin;
                while let Some(Patch { origin, body: Body::Json(more), .. }) = patches.get(i) {
                    ops.extend(more.iter().map(|o| (origin, o)));
                    i += 1;
                }
                docs = json6902(docs, first, &ops, contract)?;
            }
        }
    }
    let enc = Encoder::new(contract);
    let (v1, rest): (Vec<Doc>, Vec<Doc>) = docs.into_iter().partition(|d| d.id.is_v1alpha1());
    Ok(v1.into_iter().chain(rest).map(|d| enc.struct_value(d.node.as_map(), &d.def.root, d.node.span)).collect())
}

fn strategic(docs: &mut Vec<Doc>, patch: &Patch, items: &[Item], contract: Contract) -> Result<(), PatchError> {
    let origin = &patch.origin;
    let source = SourceText::new(&patch.text);
    let shapes = Shapes::get();
    let merger = Merger::new(contract);
    let legacy_index = contract < Contract::V1_14;
    for d in docs.iter_mut() {
        d.indexed = true;
    }
    if legacy_index {
        legacy_duplicates(items, origin)?;
    }
    for item in items {
        match item {
            Item::Delete(sel) => {
                let key = sel.merge_key();
                // A selector for a document the config does not have is skipped (Talos 1.14).
                let Some(pos) = docs.iter().position(|d| d.indexed && d.id.merge_key() == key) else { continue };
                if sel.path.is_empty() {
                    docs.remove(pos);
                    continue;
                }
                let doc = &mut docs[pos];
                let root = TypeExpr::Named(doc.def.root.clone());
                if let Err(f) =
                    delete::delete_path(shapes, contract, &mut doc.node, &root, &sel.path, &sel.key, &sel.value)
                {
                    return Err(delete_error(origin, sel, &doc.id, &f));
                }
            }
            Item::Merge(raw) => {
                let (id, def, typed) = Decoder::new(contract, Some(&source))
                    .document(raw)
                    .map_err(|source| PatchError::Shape { origin: origin.clone(), source: Box::new(source) })?;
                let key = id.merge_key();
                match docs.iter().position(|d| d.indexed && d.id.merge_key() == key) {
                    Some(pos) => {
                        merger.document(&mut docs[pos].node, &typed, &def.root).map_err(|e| PatchError::Merge {
                            origin: origin.clone(),
                            span: e.path.span_in(&typed),
                            doc: Box::new(id.clone()),
                            path: e.path,
                            message: e.message,
                        })?;
                    }
                    None => docs.push(Doc { id, def, node: typed, indexed: !legacy_index }),
                }
            }
        }
    }
    container_check(docs, origin)
}

/// Talos 1.13 loads patches with validation: two documents with the same `apiVersion/kind/name` are rejected.
fn legacy_duplicates(items: &[Item], origin: &PatchOrigin) -> Result<(), PatchError> {
    let mut seen = std::collections::HashSet::new();
    for item in items {
        let Item::Merge(raw) = item else { continue };
        let find = |k: &str| match raw.as_map().and_then(|m| m.get(k)).map(|n| &n.value) {
            None | Some(Value::Null) => String::new(),
            Some(v) => super::scalars::fallback_text(v).unwrap_or_default(),
        };
        let kind = find("kind");
        let id =
            format!("{}/{}/{}", find("apiVersion"), if kind.is_empty() { "v1alpha1" } else { &kind }, find("name"));
        if !seen.insert(id.clone()) {
            return Err(PatchError::Load {
                origin: origin.clone(),
                span: raw.span,
                message: format!("duplicate document {id} is not allowed (line {})", raw.span.line),
            });
        }
    }
    Ok(())
}

fn delete_error(origin: &PatchOrigin, sel: &Selector, doc: &DocId, f: &DeleteFailure) -> PatchError {
    let p = sel.path_string();
    let message = if sel.name.is_some() {
        format!(
            "named patch delete: document {}/{}: failed to delete path '{p}': {}",
            doc.api_version,
            doc.kind,
            f.text()
        )
    } else {
        format!(
            "patch delete: path '{p}' in document '{}/{}': failed to delete path '{p}': {}",
            doc.api_version,
            doc.kind,
            f.text()
        )
    };
    PatchError::Delete {
        origin: origin.clone(),
        span: sel.span,
        doc: Box::new(doc.clone()),
        path: sel.field_path(),
        message,
    }
}

/// `container.New`'s duplicate checks.
fn container_check(docs: &[Doc], origin: &PatchOrigin) -> Result<(), PatchError> {
    let mut seen = std::collections::HashSet::new();
    let mut v1 = false;
    for d in docs {
        if d.id.is_v1alpha1() {
            if v1 {
                return Err(PatchError::Container {
                    origin: origin.clone(),
                    message: "duplicate v1alpha1.Config".into(),
                });
            }
            v1 = true;
            continue;
        }
        let key = format!("{}/{}", d.id.kind, d.id.name.as_deref().unwrap_or(""));
        if !seen.insert(key.clone()) {
            return Err(PatchError::Container {
                origin: origin.clone(),
                message: format!("duplicate document: {key}"),
            });
        }
    }
    Ok(())
}

fn json6902(
    docs: Vec<Doc>,
    first: &PatchOrigin,
    ops: &[(&PatchOrigin, &Operation)],
    contract: Contract,
) -> Result<Vec<Doc>, PatchError> {
    if docs.len() != 1 {
        return Err(PatchError::JsonMultiDoc { origin: first.clone(), documents: docs.len() });
    }
    let enc = Encoder::new(contract);
    let doc = &docs[0];
    let printed = enc.struct_value(doc.node.as_map(), &doc.def.root, doc.node.span);
    let Some(mut json) = jsonpatch::node_to_json(&printed) else {
        return Err(PatchError::JsonPatch {
            origin: first.clone(),
            op: String::new(),
            path: String::new(),
            message: "failure converting talos machine config to json: a number JSON cannot hold".into(),
        });
    };
    let plain: Vec<Operation> = ops.iter().map(|(_, o)| (*o).clone()).collect();
    if let Err(e) = jsonpatch::apply(&mut json, &plain) {
        let origin = ops.get(e.index).map_or(first, |(o, _)| *o).clone();
        return Err(PatchError::JsonPatch { origin, op: e.op, path: e.path, message: e.message });
    }
    let node = jsonpatch::json_to_node(&json);
    let last = ops.last().map_or(first, |(o, _)| *o);
    let (id, def, typed) = Decoder::new(contract, None)
        .document(&node)
        .map_err(|source: ShapeError| PatchError::Shape { origin: last.clone(), source: Box::new(source) })?;
    Ok(vec![Doc { id, def, node: typed, indexed: true }])
}
