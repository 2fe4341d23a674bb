//! Talos's `merge.Merge` on typed trees: the rules by which a strategic-merge patch document changes the
//! document it matches.
//!
//! Talos merges reflectively, so the outcome depends on each field's Go type (pointer, slice, map, struct,
//! scalar), its `merge:"replace"` tag and the custom `Merge` methods of a dozen types. The same decisions are
//! made here from the shape table; the rules are listed in the crate report and in each function.

use crate::yaml::{FieldPath, Mapping, Node, Value};

use super::scalars::{self, GoUrl, ScalarMerge};
use super::shapes::{Contract, MergeRule, Shapes, TypeDef, TypeExpr};
use super::typed::{go_any_type, is_zero_scalar, scalar_is_zero};

/// A merge failure: where in the document and why (Talos's message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MergeError {
    pub path: FieldPath,
    pub message: String,
}

pub(crate) struct Merger {
    pub shapes: &'static Shapes,
    pub contract: Contract,
}

#[derive(Clone, Copy, Debug, Default)]
struct Flags {
    replace: bool,
    overwrite: bool,
    rule: Option<MergeRule>,
}

impl Merger {
    pub fn new(contract: Contract) -> Self {
        Merger { shapes: Shapes::get(), contract }
    }

    /// Merges a patch document into the document it matched (both typed; `root` is the root struct).
    pub fn document(&self, left: &mut Node, right: &Node, root: &str) -> Result<(), MergeError> {
        let mut l = Some(std::mem::replace(left, Node::null()));
        let r = self.struct_fields(&mut l, Some(right), root, &FieldPath::root());
        *left = l.unwrap_or_else(|| Node::map(Mapping::new()));
        r
    }

    fn value(
        &self,
        left: &mut Option<Node>,
        right: Option<&Node>,
        ty: &TypeExpr,
        flags: Flags,
        path: &FieldPath,
    ) -> Result<(), MergeError> {
        // A nil right value (a `null` map value of a nillable type) never changes the left side.
        let right = right.filter(|r| !matches!(r.value, Value::Null));
        if let Some(rule) = flags.rule {
            return self.custom(left, right, ty, rule, path);
        }
        match ty {
            TypeExpr::Ptr(t) => {
                // nil right keeps left; nil left takes right; otherwise the pointees merge with overwrite.
                let Some(r) = right else { return Ok(()) };
                if left.is_none() {
                    *left = Some(r.clone());
                    return Ok(());
                }
                self.value(left, Some(r), t, Flags { overwrite: true, ..flags }, path)
            }
            TypeExpr::Slice(_) => {
                let Some(r) = right else { return Ok(()) };
                let Value::Seq(ritems) = &r.value else { return Ok(()) };
                match left {
                    Some(Node { value: Value::Seq(litems), .. }) if !flags.replace => {
                        litems.extend(ritems.iter().cloned())
                    }
                    _ => *left = Some(r.clone()),
                }
                Ok(())
            }
            TypeExpr::Map(elem) => {
                let Some(r) = right else { return Ok(()) };
                if flags.replace {
                    *left = Some(r.clone());
                    return Ok(());
                }
                self.map_entries(left, r, |l, rv, p| self.value(l, Some(rv), elem, Flags::default(), p), path)
            }
            TypeExpr::Named(name) => match self.shapes.type_def(name) {
                Some(TypeDef::Struct(_)) => {
                    if flags.replace {
                        if right.is_some_and(|r| r.as_map().is_some_and(|m| !m.is_empty())) {
                            *left = right.cloned();
                        }
                        return Ok(());
                    }
                    self.struct_fields(left, right, name, path)
                }
                Some(TypeDef::Any { name }) if name == "meta.Unstructured" => {
                    // A struct holding one inline `map[string]any`: replaced whole under `merge:"replace"`,
                    // otherwise its map merges per key.
                    let Some(r) = right else { return Ok(()) };
                    if flags.replace {
                        *left = Some(r.clone());
                        return Ok(());
                    }
                    self.map_entries(left, r, |l, rv, p| self.any_value(l, rv, p), path)
                }
                Some(TypeDef::Any { .. }) => {
                    if let Some(r) = right {
                        *left = Some(r.clone());
                    }
                    Ok(())
                }
                Some(TypeDef::Scalar { .. }) => self.scalar(left, right, name, flags, path),
                None => Err(MergeError { path: path.clone(), message: format!("merge not implemented for {name}") }),
            },
            TypeExpr::Bool => {
                // bool is always assigned, false (and unset) included.
                *left = right.cloned();
                Ok(())
            }
            TypeExpr::String | TypeExpr::Int | TypeExpr::Uint | TypeExpr::Float => {
                if let Some(r) = right
                    && (flags.overwrite || !is_zero_scalar(&r.value))
                {
                    *left = Some(r.clone());
                }
                Ok(())
            }
        }
    }

    /// Go's map merge: for each right key, a non-nil left value merges recursively, otherwise the right value is
    /// stored; keys are never removed.
    fn map_entries(
        &self,
        left: &mut Option<Node>,
        right: &Node,
        mut each: impl FnMut(&mut Option<Node>, &Node, &FieldPath) -> Result<(), MergeError>,
        path: &FieldPath,
    ) -> Result<(), MergeError> {
        let Value::Map(rm) = &right.value else { return Ok(()) };
        if !matches!(left, Some(Node { value: Value::Map(_), .. })) {
            *left = Some(Node::at(Value::Map(Mapping::new()), right.span));
        }
        let Some(Node { value: Value::Map(lm), .. }) = left else { return Ok(()) };
        for (k, rv) in rm.iter() {
            let p = path.key(&k.name);
            match lm.get_mut(&k.name) {
                Some(lv) if !matches!(lv.value, Value::Null) => {
                    let mut slot = Some(std::mem::replace(lv, Node::null()));
                    let r = each(&mut slot, rv, &p);
                    *lv = slot.unwrap_or_else(Node::null);
                    r?;
                }
                Some(lv) => *lv = rv.clone(),
                None => lm.push(k.clone(), rv.clone()),
            }
        }
        Ok(())
    }

    /// A `map[string]any` value whose left side is set: the dynamic types must match; maps merge per key, lists
    /// concatenate, scalars follow the scalar rules.
    fn any_value(&self, left: &mut Option<Node>, right: &Node, path: &FieldPath) -> Result<(), MergeError> {
        let Some(l) = left else {
            *left = Some(right.clone());
            return Ok(());
        };
        let (lt, rt) = (go_any_type(&l.value), go_any_type(&right.value));
        if lt != rt {
            return Err(MergeError {
                path: path.clone(),
                message: format!("merge type mismatch left {lt} right {rt}"),
            });
        }
        match (&mut l.value, &right.value) {
            (Value::Map(_), Value::Map(_)) => self.map_entries(left, right, |l, rv, p| self.any_value(l, rv, p), path),
            (Value::Seq(litems), Value::Seq(ritems)) => {
                litems.extend(ritems.iter().cloned());
                Ok(())
            }
            (_, Value::Bool(_)) => {
                *l = right.clone();
                Ok(())
            }
            (_, rv) => {
                if !is_zero_scalar(rv) {
                    *l = right.clone();
                }
                Ok(())
            }
        }
    }

    /// Struct merge: every field, set or not, merges with its own `replace` tag and `overwrite` reset.
    fn struct_fields(
        &self,
        left: &mut Option<Node>,
        right: Option<&Node>,
        name: &str,
        path: &FieldPath,
    ) -> Result<(), MergeError> {
        let empty = Mapping::new();
        let rm = right.and_then(Node::as_map).unwrap_or(&empty);
        let had_left = left.is_some();
        let mut lnode = left
            .take()
            .unwrap_or_else(|| Node::at(Value::Map(Mapping::new()), right.map_or_else(Default::default, |r| r.span)));
        if !matches!(lnode.value, Value::Map(_)) {
            lnode.value = Value::Map(Mapping::new());
        }
        let mut result = Ok(());
        if let Value::Map(lm) = &mut lnode.value {
            for f in self.shapes.fields(name, self.contract) {
                let key = lm
                    .get_entry(&f.name)
                    .map(|(k, _)| k.clone())
                    .or_else(|| rm.get_entry(&f.name).map(|(k, _)| k.clone()));
                let mut slot = lm.remove(&f.name);
                let flags = Flags { replace: f.replace, overwrite: false, rule: f.merge };
                let r = self.value(&mut slot, rm.get(&f.name), &f.ty, flags, &path.key(&f.name));
                if let (Some(v), Some(k)) = (slot, key) {
                    lm.push(k, v);
                }
                if r.is_err() {
                    result = r;
                    break;
                }
            }
        }
        let keep = had_left || lnode.as_map().is_some_and(|m| !m.is_empty());
        *left = keep.then_some(lnode);
        result
    }

    fn scalar(
        &self,
        left: &mut Option<Node>,
        right: Option<&Node>,
        name: &str,
        flags: Flags,
        path: &FieldPath,
    ) -> Result<(), MergeError> {
        let Some(r) = right else { return Ok(()) };
        let merge = scalars::scalar_spec(name).map_or(ScalarMerge::UnlessZero, |s| s.merge);
        match merge {
            ScalarMerge::UnlessZero => {
                if flags.overwrite || !scalar_is_zero(name, &r.value) {
                    *left = Some(r.clone());
                }
            }
            ScalarMerge::UnlessNil => *left = Some(r.clone()),
            ScalarMerge::UrlComponents => {
                let rtext = r.as_str().unwrap_or("");
                let ltext = left.as_ref().and_then(Node::as_str).unwrap_or("");
                if rtext.is_empty() {
                    return Ok(());
                }
                if ltext.is_empty() {
                    *left = Some(r.clone());
                    return Ok(());
                }
                match (GoUrl::parse(ltext), GoUrl::parse(rtext)) {
                    (Some(mut lu), Some(ru)) => {
                        lu.merge_from(&ru).map_err(|message| MergeError { path: path.clone(), message })?;
                        *left = Some(Node::at(Value::Str(lu.to_go_string()), r.span));
                    }
                    _ => *left = Some(r.clone()),
                }
            }
            ScalarMerge::SizeHalves => {
                // `block.Size{*PercentageSize, *ByteSize}` prints its ByteSize when set: a percentage on the right
                // only shows when left has no byte size.
                let rtext = r.as_str().unwrap_or("");
                let left_is_bytes =
                    left.as_ref().and_then(Node::as_str).is_some_and(|l| !l.is_empty() && !l.ends_with('%'));
                if rtext.is_empty() || (rtext.ends_with('%') && left_is_bytes) {
                    return Ok(());
                }
                *left = Some(r.clone());
            }
        }
        Ok(())
    }

    fn custom(
        &self,
        left: &mut Option<Node>,
        right: Option<&Node>,
        ty: &TypeExpr,
        rule: MergeRule,
        path: &FieldPath,
    ) -> Result<(), MergeError> {
        match rule {
            MergeRule::AlwaysOverwrite => {
                *left = right.cloned();
                return Ok(());
            }
            MergeRule::ReplaceUnlessZero => {
                if let Some(r) = right
                    && !is_zero_scalar(&r.value)
                {
                    *left = Some(r.clone());
                }
                return Ok(());
            }
            MergeRule::MapKeysOverwrite => {
                let Some(Value::Map(rm)) = right.map(|r| &r.value) else { return Ok(()) };
                if rm.is_empty() {
                    return Ok(());
                }
                if !matches!(left, Some(Node { value: Value::Map(_), .. })) {
                    *left = Some(Node::at(Value::Map(Mapping::new()), right.map_or_else(Default::default, |r| r.span)));
                }
                if let Some(Node { value: Value::Map(lm), .. }) = left {
                    for (k, v) in rm.iter() {
                        match lm.get_mut(&k.name) {
                            Some(slot) => *slot = v.clone(),
                            None => lm.push(k.clone(), v.clone()),
                        }
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        // Keyed lists.
        let Some(Value::Seq(ritems)) = right.map(|r| &r.value) else { return Ok(()) };
        let elem = match ty {
            TypeExpr::Slice(e) => e.as_ref().clone(),
            other => other.clone(),
        };
        if !matches!(left, Some(Node { value: Value::Seq(_), .. })) {
            *left = Some(Node::at(Value::Seq(Vec::new()), right.map_or_else(Default::default, |r| r.span)));
        }
        let Some(Node { value: Value::Seq(litems), .. }) = left else { return Ok(()) };
        if rule == MergeRule::ByImagePatternReplace {
            // Patterns are indexed once, before any right rule is applied; duplicates keep the last index.
            let index: Vec<(String, usize)> =
                litems.iter().enumerate().map(|(i, l)| (field_str(l, "image"), i)).collect();
            for ritem in ritems {
                let pattern = field_str(ritem, "image");
                match index.iter().rev().find(|(p, _)| *p == pattern) {
                    Some((_, i)) => litems[*i] = ritem.clone(),
                    None => litems.push(ritem.clone()),
                }
            }
            return Ok(());
        }
        for ritem in ritems {
            let found = match rule {
                MergeRule::ByInterfaceOrDeviceSelector => device_match(litems, ritem),
                MergeRule::ByVlanId => {
                    litems.iter().position(|l| field_uint(l, "vlanId") == field_uint(ritem, "vlanId"))
                }
                MergeRule::ByName => litems.iter().position(|l| field_str(l, "name") == field_str(ritem, "name")),
                MergeRule::ByMountPath => {
                    litems.iter().position(|l| field_str(l, "mountPath") == field_str(ritem, "mountPath"))
                }
                _ => None,
            };
            match found {
                Some(i) if !matches!(ritem.value, Value::Null) => {
                    let mut slot = Some(std::mem::replace(&mut litems[i], Node::null()));
                    let p = path.index(i);
                    // `merge.Merge(existing, item)` on two pointers: the pointees merge as structs.
                    let r = self.value(&mut slot, Some(ritem), &elem, Flags::default(), &p);
                    litems[i] = slot.unwrap_or_else(Node::null);
                    r?;
                }
                _ => litems.push(ritem.clone()),
            }
        }
        Ok(())
    }
}

fn field<'a>(item: &'a Node, key: &str) -> Option<&'a Node> {
    item.as_map().and_then(|m| m.get(key))
}

fn field_str(item: &Node, key: &str) -> String {
    field(item, key).and_then(Node::as_str).unwrap_or("").to_owned()
}

fn field_uint(item: &Node, key: &str) -> Option<u64> {
    match field(item, key).map(|n| &n.value) {
        None => Some(0),
        Some(Value::Int(i)) => u64::try_from(*i).ok(),
        Some(Value::UInt(u)) => Some(*u),
        Some(_) => None,
    }
}

/// `NetworkDeviceList.mergeDevice`: the first left device with the same `interface`; for a right device without
/// one, the first left device whose `deviceSelector` is Go-equal (`physical` is a pointer, so two selectors that
/// both set it are never equal).
fn device_match(left: &[Node], right: &Node) -> Option<usize> {
    let iface = field_str(right, "interface");
    if !iface.is_empty() {
        return left.iter().position(|l| field_str(l, "interface") == iface);
    }
    let rsel = field(right, "deviceSelector")?;
    left.iter().position(|l| field(l, "deviceSelector").is_some_and(|lsel| selectors_equal(lsel, rsel)))
}

fn selectors_equal(a: &Node, b: &Node) -> bool {
    if field(a, "physical").is_some() || field(b, "physical").is_some() {
        return false;
    }
    ["busPath", "hardwareAddr", "permanentAddr", "pciID", "driver"].iter().all(|k| field_str(a, k) == field_str(b, k))
}
