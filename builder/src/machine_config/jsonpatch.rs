//! RFC 6902 JSON patches applied the way Talos applies them: with evanphx/json-patch v5.9 (root package)
//! semantics and error texts, on the JSON form of the single config document.
//!
//! The library Talos uses differs from the RFC in ways users notice (`replace` of a missing object key acts
//! as `add`, negative array indexes are accepted, a missing `value` adds `null`), so the operations are
//! interpreted here rather than with a strict RFC implementation.

use serde_json::{Map, Value as Json};

use crate::yaml::{Mapping, Node, Value};

/// One operation as decoded by Go's `json.Unmarshal` into `map[string]*json.RawMessage`: any object.
pub(crate) type Operation = Map<String, Json>;

/// Why an operation failed: Talos's text, and the op and path for the diagnostic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OpError {
    pub index: usize,
    pub op: String,
    pub path: String,
    pub message: String,
}

const MISSING: &str = "missing value";
const INVALID_INDEX: &str = "invalid index referenced";

fn kind_of(op: &Operation) -> String {
    match op.get("op") {
        Some(Json::String(s)) => s.clone(),
        _ => "unknown".into(),
    }
}

fn str_field(op: &Operation, name: &str) -> Result<String, String> {
    match op.get(name) {
        None | Some(Json::Null) => Err(format!("operation missing {name} field: {MISSING}")),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("json: cannot unmarshal {} into Go value of type string", json_kind(other))),
    }
}

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// The operation's `value`: `None` when missing or `null` (Go leaves the raw message nil for both).
fn value_of(op: &Operation) -> Option<&Json> {
    op.get("value").filter(|v| !v.is_null())
}

fn decode_key(k: &str) -> String {
    k.replace("~1", "/").replace("~0", "~")
}

fn atoi(key: &str) -> Result<i64, String> {
    key.parse::<i64>().map_err(|_| format!("strconv.Atoi: parsing {key:?}: invalid syntax"))
}

fn invalid_index(idx: i64) -> String {
    format!("Unable to access invalid index: {idx}: {INVALID_INDEX}")
}

/// `findObject`: the container holding the path's last segment, and that segment decoded.
fn find_object<'a>(doc: &'a mut Json, path: &str) -> Option<(&'a mut Json, String)> {
    let split: Vec<&str> = path.split('/').collect();
    if split.len() < 2 {
        return None;
    }
    let key = decode_key(split[split.len() - 1]);
    let mut cur = doc;
    for part in &split[1..split.len() - 1] {
        let part = decode_key(part);
        let next = match cur {
            Json::Object(m) => m.get_mut(&part)?,
            Json::Array(a) => {
                let idx = array_index(a.len(), &part, false).ok()?;
                a.get_mut(idx)?
            }
            _ => return None,
        };
        if !matches!(next, Json::Object(_) | Json::Array(_)) {
            return None;
        }
        cur = next;
    }
    matches!(cur, Json::Object(_) | Json::Array(_)).then_some((cur, key))
}

/// An existing element's index (`get`/`remove`/`set`), negative indexes counting from the end.
fn array_index(len: usize, key: &str, _insert: bool) -> Result<usize, String> {
    let idx = atoi(key)?;
    let n = len as i64;
    let real = if idx < 0 {
        if idx < -n {
            return Err(invalid_index(idx));
        }
        idx + n
    } else {
        idx
    };
    if real >= n {
        return Err(invalid_index(idx));
    }
    Ok(real as usize)
}

fn get(con: &Json, key: &str) -> Result<Option<Json>, String> {
    match con {
        Json::Object(m) => Ok(m.get(key).cloned()),
        Json::Array(a) => Ok(Some(a[array_index(a.len(), key, false)?].clone())),
        _ => Ok(None),
    }
}

fn add(con: &mut Json, key: &str, val: Json) -> Result<(), String> {
    match con {
        Json::Object(m) => {
            m.insert(key.to_owned(), val);
            Ok(())
        }
        Json::Array(a) => {
            if key == "-" {
                a.push(val);
                return Ok(());
            }
            let idx = key.parse::<i64>().map_err(|_| {
                format!("value was not a proper array index: '{key}': strconv.Atoi: parsing {key:?}: invalid syntax")
            })?;
            let size = a.len() as i64 + 1;
            if idx >= size {
                return Err(invalid_index(idx));
            }
            let real = if idx < 0 {
                if idx < -size {
                    return Err(invalid_index(idx));
                }
                idx + size
            } else {
                idx
            };
            a.insert(real as usize, val);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn remove(con: &mut Json, key: &str) -> Result<(), String> {
    match con {
        Json::Object(m) => match m.shift_remove(key) {
            Some(_) => Ok(()),
            None => Err(format!("Unable to remove nonexistent key: {key}: {MISSING}")),
        },
        Json::Array(a) => {
            let idx = atoi(key)?;
            let n = a.len() as i64;
            if idx >= n {
                return Err(invalid_index(idx));
            }
            let real = if idx < 0 {
                if idx < -n {
                    return Err(invalid_index(idx));
                }
                idx + n
            } else {
                idx
            };
            a.remove(real as usize);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn set(con: &mut Json, key: &str, val: Json) -> Result<(), String> {
    match con {
        Json::Object(m) => {
            m.insert(key.to_owned(), val);
            Ok(())
        }
        Json::Array(a) => {
            let i = array_index(a.len(), key, false)?;
            a[i] = val;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Applies the operations in order; the first failure stops (Talos then reports it).
pub(crate) fn apply(doc: &mut Json, ops: &[Operation]) -> Result<(), OpError> {
    for (index, op) in ops.iter().enumerate() {
        let kind = kind_of(op);
        let path_shown = match op.get("path") {
            Some(Json::String(s)) => s.clone(),
            _ => String::new(),
        };
        let fail = |message: String| OpError { index, op: kind.clone(), path: path_shown.clone(), message };
        let value = value_of(op).cloned().unwrap_or(Json::Null);
        match kind.as_str() {
            "add" => {
                let path = str_field(op, "path")
                    .map_err(|_| fail(format!("add operation failed to decode path: {MISSING}")))?;
                let Some((con, key)) = find_object(doc, &path) else {
                    return Err(fail(format!(
                        "add operation does not apply: doc is missing path: {path:?}: {MISSING}"
                    )));
                };
                add(con, &key, value).map_err(|e| fail(format!("error in add for path: '{path}': {e}")))?;
            }
            "remove" => {
                let path = str_field(op, "path")
                    .map_err(|_| fail(format!("remove operation failed to decode path: {MISSING}")))?;
                let Some((con, key)) = find_object(doc, &path) else {
                    return Err(fail(format!(
                        "remove operation does not apply: doc is missing path: {path:?}: {MISSING}"
                    )));
                };
                remove(con, &key).map_err(|e| fail(format!("error in remove for path: '{path}': {e}")))?;
            }
            "replace" => {
                let path =
                    str_field(op, "path").map_err(|e| fail(format!("replace operation failed to decode path: {e}")))?;
                if path.is_empty() {
                    match value_of(op) {
                        Some(v @ (Json::Object(_) | Json::Array(_))) => *doc = v.clone(),
                        _ => return Err(fail("replace operation value must be object or array: <nil>".into())),
                    }
                    continue;
                }
                let Some((con, key)) = find_object(doc, &path) else {
                    return Err(fail(format!(
                        "replace operation does not apply: doc is missing path: {path}: {MISSING}"
                    )));
                };
                if get(con, &key).is_err() {
                    return Err(fail(format!(
                        "replace operation does not apply: doc is missing key: {path}: {MISSING}"
                    )));
                }
                set(con, &key, value).map_err(|e| fail(format!("error in remove for path: '{path}': {e}")))?;
            }
            "move" | "copy" => {
                let is_move = kind == "move";
                let from =
                    str_field(op, "from").map_err(|e| fail(format!("{kind} operation failed to decode from: {e}")))?;
                let Some((con, key)) = find_object(doc, &from) else {
                    return Err(fail(format!(
                        "{kind} operation does not apply: doc is missing from path: {from}: {MISSING}"
                    )));
                };
                let val = match get(con, &key) {
                    Ok(v) => v.unwrap_or(Json::Null),
                    Err(e) if is_move => return Err(fail(format!("error in move for path: '{key}': {e}"))),
                    Err(e) => return Err(fail(format!("error in copy for from: '{from}': {e}"))),
                };
                if is_move {
                    remove(con, &key).map_err(|e| fail(format!("error in move for path: '{key}': {e}")))?;
                }
                let path =
                    str_field(op, "path").map_err(|e| fail(format!("{kind} operation failed to decode path: {e}")))?;
                let Some((con, key)) = find_object(doc, &path) else {
                    return Err(fail(format!(
                        "{kind} operation does not apply: doc is missing destination path: {path}: {MISSING}"
                    )));
                };
                add(con, &key, val).map_err(|e| {
                    if is_move {
                        fail(format!("error in move for path: '{path}': {e}"))
                    } else {
                        fail(format!("error while adding value during copy: {e}"))
                    }
                })?;
            }
            "test" => {
                let path =
                    str_field(op, "path").map_err(|e| fail(format!("test operation failed to decode path: {e}")))?;
                let failed = || fail(format!("testing value {path} failed: test failed"));
                if path.is_empty() {
                    if value_of(op) == Some(&*doc) {
                        continue;
                    }
                    return Err(failed());
                }
                let Some((con, key)) = find_object(doc, &path) else {
                    return Err(fail(format!("test operation does not apply: is missing path: {path}: {MISSING}")));
                };
                let current = get(con, &key).map_err(|e| fail(format!("error in test for path: '{path}': {e}")))?;
                // A JSON null decodes to a nil node in Go, so it compares like a missing value.
                match (current.filter(|c| !c.is_null()), value_of(op)) {
                    (None, None) => {}
                    (Some(c), Some(v)) if &c == v => {}
                    _ => return Err(failed()),
                }
            }
            other => return Err(fail(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(())
}

/// A YAML tree as JSON (ghodss/yaml `YAMLToJSON`); `None` for values JSON cannot hold (NaN, infinities).
pub fn node_to_json(node: &Node) -> Option<Json> {
    Some(match &node.value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => Json::Number(serde_json::Number::from_f64(*f)?),
        Value::Str(s) => Json::String(s.clone()),
        Value::Seq(items) => Json::Array(items.iter().map(node_to_json).collect::<Option<_>>()?),
        Value::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m.iter() {
                out.insert(k.name.clone(), node_to_json(v)?);
            }
            Json::Object(out)
        }
    })
}

/// JSON back to YAML (ghodss/yaml `JSONToYAML`): integral numbers become integers, as yaml.v2 prints them.
pub(crate) fn json_to_node(v: &Json) -> Node {
    Node::new(match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 9.0e15 { Value::Int(f as i64) } else { Value::Float(f) }
            }
        }
        Json::String(s) => Value::Str(s.clone()),
        Json::Array(a) => Value::Seq(a.iter().map(json_to_node).collect()),
        Json::Object(m) => {
            let mut out = Mapping::new();
            for (k, v) in m {
                out.insert(k.clone(), json_to_node(v));
            }
            Value::Map(out)
        }
    })
}
