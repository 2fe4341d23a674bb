//! The shape registry: every Talos config document kind, its Go struct tree and the YAML/merge flags of every
//! field, read once from `shapes.txt`.
//!
//! Decoding, normalizing and merging a document all walk a YAML tree alongside its Go type. Talos gets that type
//! from reflection; we get it from this table, so the patch engine can reorder fields, drop empties and merge
//! per field exactly like `yaml.Marshal` and `merge.Merge` would, without hand-writing one Rust type per kind.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

/// The shape table, compiled in.
const SHAPES_TXT: &str = include_str!("shapes.txt");

pub use crate::quirks::Contract;

/// A field's Go type, as written in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeExpr {
    String,
    Bool,
    Int,
    Uint,
    Float,
    Slice(Box<TypeExpr>),
    Map(Box<TypeExpr>),
    Ptr(Box<TypeExpr>),
    /// A `struct`, `scalar` or `any` type defined in the table.
    Named(String),
}

impl TypeExpr {
    fn parse(text: &str) -> Option<TypeExpr> {
        Some(if let Some(rest) = text.strip_prefix("[]") {
            TypeExpr::Slice(Box::new(TypeExpr::parse(rest)?))
        } else if let Some(rest) = text.strip_prefix("map[string]") {
            TypeExpr::Map(Box::new(TypeExpr::parse(rest)?))
        } else if let Some(rest) = text.strip_prefix('*') {
            TypeExpr::Ptr(Box::new(TypeExpr::parse(rest)?))
        } else {
            match text {
                "string" => TypeExpr::String,
                "bool" => TypeExpr::Bool,
                "int" => TypeExpr::Int,
                "uint" => TypeExpr::Uint,
                "float" => TypeExpr::Float,
                "" => return None,
                other if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_') => {
                    TypeExpr::Named(other.to_owned())
                }
                _ => return None,
            }
        })
    }

    fn visit_named<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            TypeExpr::Slice(t) | TypeExpr::Map(t) | TypeExpr::Ptr(t) => t.visit_named(out),
            TypeExpr::Named(n) => out.push(n),
            _ => {}
        }
    }
}

impl fmt::Display for TypeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeExpr::String => f.write_str("string"),
            TypeExpr::Bool => f.write_str("bool"),
            TypeExpr::Int => f.write_str("int"),
            TypeExpr::Uint => f.write_str("uint"),
            TypeExpr::Float => f.write_str("float64"),
            TypeExpr::Slice(t) => write!(f, "[]{t}"),
            TypeExpr::Map(t) => write!(f, "map[string]{t}"),
            TypeExpr::Ptr(t) => write!(f, "*{t}"),
            TypeExpr::Named(n) => f.write_str(n),
        }
    }
}

/// A custom `Merge` method on a field's type (`merge=<note>` in the table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeRule {
    /// v1alpha1 `NetworkDeviceList`: by `interface`, else by equal `deviceSelector`, else append.
    ByInterfaceOrDeviceSelector,
    /// v1alpha1 `VlanList`: by `vlanId`, else append.
    ByVlanId,
    /// v1alpha1 `AdmissionPluginConfigList`: by `name`, else append.
    ByName,
    /// extensions `ConfigFileList`: by `mountPath`, else append.
    ByMountPath,
    /// security `ImageVerificationRules`: a rule with a known `image` pattern replaces the old one, else append.
    ByImagePatternReplace,
    /// `meta.Args`: right keys overwrite left keys wholesale; an empty right side is a no-op.
    MapKeysOverwrite,
    /// `meta.Prefix`/`Addr`/`AddrPort`: replaced unless the right side is zero.
    ReplaceUnlessZero,
    /// `cel.Expression`, `block.ByteSize`, `block.PercentageSize`: left := right, even when right is unset.
    AlwaysOverwrite,
}

impl MergeRule {
    fn parse(note: &str) -> Option<MergeRule> {
        Some(match note {
            "by-interface-or-deviceSelector" => MergeRule::ByInterfaceOrDeviceSelector,
            "by-vlanId" => MergeRule::ByVlanId,
            "by-name" => MergeRule::ByName,
            "by-mountPath" => MergeRule::ByMountPath,
            "by-imagePattern-replace" => MergeRule::ByImagePatternReplace,
            "map-keys-overwrite" => MergeRule::MapKeysOverwrite,
            "replace-unless-zero" => MergeRule::ReplaceUnlessZero,
            "always-overwrite" => MergeRule::AlwaysOverwrite,
            _ => return None,
        })
    }
}

/// One YAML field of a struct (or an `inline` embedded struct).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// YAML name; empty for an inline embedded struct.
    pub name: String,
    pub ty: TypeExpr,
    pub omitempty: bool,
    pub replace: bool,
    pub inline: bool,
    pub iszero: bool,
    pub omitonlyifnil: bool,
    pub merge: Option<MergeRule>,
    pub since: Option<Contract>,
    pub until: Option<Contract>,
}

impl Field {
    /// Whether the field exists in a Talos binary of this contract.
    pub fn active_in(&self, contract: Contract) -> bool {
        self.since.is_none_or(|s| contract >= s) && self.until.is_none_or(|u| contract <= u)
    }
}

/// A Go struct: its fields in declaration order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StructDef {
    pub name: String,
    pub fields: Vec<Field>,
}

/// What a named type is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeDef {
    Struct(StructDef),
    /// A custom marshaler producing a scalar; `values` lists the enum names from the table comment, if given.
    Scalar {
        name: String,
        values: Option<Vec<String>>,
    },
    /// Arbitrary YAML (`meta.Unstructured`, `meta.ArgValue`).
    Any {
        name: String,
    },
}

/// A registered document kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocDef {
    pub kind: String,
    pub root: String,
    /// First contract that registers the kind (`None`: every contract the table covers).
    pub since: Option<Contract>,
    /// Whether the Go type is a `NamedDocument` (its root struct has a `name` field).
    pub named: bool,
}

/// An error in `shapes.txt` itself (found by [`Shapes::parse`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shapes.txt:{}: {}", self.line, self.message)
    }
}

/// The parsed shape table.
#[derive(Clone, Debug, Default)]
pub struct Shapes {
    docs: Vec<DocDef>,
    doc_index: HashMap<String, usize>,
    types: HashMap<String, TypeDef>,
}

impl Shapes {
    /// The compiled-in table, parsed once. Errors in it are reported by [`Shapes::parse`] (and the crate tests);
    /// here they leave out the broken lines.
    pub fn get() -> &'static Shapes {
        static SHAPES: OnceLock<Shapes> = OnceLock::new();
        SHAPES.get_or_init(|| Shapes::parse(SHAPES_TXT).0)
    }

    /// The table's source text.
    pub fn source() -> &'static str {
        SHAPES_TXT
    }

    /// Parses a table, returning what could be read and every problem found (unknown flags, bad types, types
    /// referenced but never defined).
    pub fn parse(text: &str) -> (Shapes, Vec<TableError>) {
        let mut shapes = Shapes::default();
        let mut errors = Vec::new();
        let mut current: Option<StructDef> = None;
        let mut refs: Vec<(usize, String)> = Vec::new();
        let mut inline_refs: Vec<(usize, String)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.split('#').next().unwrap_or("").trim_end();
            if line.trim().is_empty() {
                continue;
            }
            let indented = line.starts_with(' ');
            let words: Vec<&str> = line.split_whitespace().collect();
            let mut err = |m: String| errors.push(TableError { line: line_no, message: m });
            if indented {
                let Some(st) = current.as_mut() else {
                    err("field line outside a struct".into());
                    continue;
                };
                match parse_field(&words) {
                    Ok(f) => {
                        let mut names = Vec::new();
                        f.ty.visit_named(&mut names);
                        refs.extend(names.into_iter().map(|n| (line_no, n.to_owned())));
                        if f.inline {
                            inline_refs.push((line_no, f.ty.to_string()));
                        }
                        st.fields.push(f);
                    }
                    Err(m) => err(m),
                }
                continue;
            }
            if let Some(st) = current.take() {
                shapes.types.insert(st.name.clone(), TypeDef::Struct(st));
            }
            match words.as_slice() {
                ["doc", kind, root, rest @ ..] => {
                    let mut since = None;
                    for flag in rest {
                        match flag.strip_prefix("since=").and_then(parse_version) {
                            Some(v) => since = Some(v),
                            None => err(format!("unknown doc flag {flag:?}")),
                        }
                    }
                    refs.push((line_no, (*root).to_owned()));
                    shapes.doc_index.insert((*kind).to_owned(), shapes.docs.len());
                    shapes.docs.push(DocDef {
                        kind: (*kind).to_owned(),
                        root: (*root).to_owned(),
                        since,
                        named: false,
                    });
                }
                ["struct", name] => current = Some(StructDef { name: (*name).to_owned(), fields: Vec::new() }),
                ["scalar", name] => {
                    let values = enum_values(raw);
                    shapes.types.insert((*name).to_owned(), TypeDef::Scalar { name: (*name).to_owned(), values });
                }
                ["any", name] => {
                    shapes.types.insert((*name).to_owned(), TypeDef::Any { name: (*name).to_owned() });
                }
                _ => err(format!("unrecognized line {line:?}")),
            }
        }
        if let Some(st) = current.take() {
            shapes.types.insert(st.name.clone(), TypeDef::Struct(st));
        }
        for (line, name) in refs {
            if !shapes.types.contains_key(&name) {
                errors.push(TableError { line, message: format!("type {name} is referenced but not defined") });
            }
        }
        for (line, name) in inline_refs {
            if !matches!(shapes.types.get(&name), Some(TypeDef::Struct(_))) {
                errors.push(TableError { line, message: format!("inline type {name} is not a struct") });
            }
        }
        let named: Vec<bool> = shapes
            .docs
            .iter()
            .map(|d| match shapes.types.get(&d.root) {
                Some(TypeDef::Struct(s)) => s.fields.iter().any(|f| f.name == "name" && !f.inline),
                _ => false,
            })
            .collect();
        for (d, n) in shapes.docs.iter_mut().zip(named) {
            d.named = n;
        }
        (shapes, errors)
    }

    pub fn docs(&self) -> &[DocDef] {
        &self.docs
    }

    /// The document kind, if registered in `contract`.
    pub fn doc(&self, kind: &str, contract: Contract) -> Option<&DocDef> {
        let d = self.docs.get(*self.doc_index.get(kind)?)?;
        d.since.is_none_or(|s| contract >= s).then_some(d)
    }

    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    pub fn types(&self) -> impl Iterator<Item = &TypeDef> {
        self.types.values()
    }

    pub fn struct_def(&self, name: &str) -> Option<&StructDef> {
        match self.types.get(name) {
            Some(TypeDef::Struct(s)) => Some(s),
            _ => None,
        }
    }

    /// A struct's YAML fields in Go order with `inline` structs spliced in, for one contract.
    pub fn fields(&self, struct_name: &str, contract: Contract) -> Vec<&Field> {
        let mut out = Vec::new();
        self.collect_fields(struct_name, contract, &mut out, 0);
        out
    }

    fn collect_fields<'a>(&'a self, name: &str, contract: Contract, out: &mut Vec<&'a Field>, depth: usize) {
        // Inline chains are two levels deep in practice; the bound only guards against a cyclic table.
        if depth > 8 {
            return;
        }
        let Some(st) = self.struct_def(name) else { return };
        for f in &st.fields {
            if !f.active_in(contract) {
                continue;
            }
            if f.inline {
                if let TypeExpr::Named(n) = &f.ty {
                    self.collect_fields(n, contract, out, depth + 1);
                }
            } else {
                out.push(f);
            }
        }
    }

    /// The field named `name` of a struct (inline fields included), for one contract.
    pub fn field(&self, struct_name: &str, name: &str, contract: Contract) -> Option<&Field> {
        self.fields(struct_name, contract).into_iter().find(|f| f.name == name)
    }
}

fn parse_version(v: &str) -> Option<Contract> {
    let (a, b) = v.split_once('.')?;
    Some(Contract::new(a.parse().ok()?, b.parse().ok()?))
}

fn parse_field(words: &[&str]) -> Result<Field, String> {
    let (name, ty, flags) = match words {
        ["-", ty, flags @ ..] => ("", *ty, flags),
        [name, ty, flags @ ..] => (*name, *ty, flags),
        _ => return Err(format!("bad field line {:?}", words.join(" "))),
    };
    let ty = TypeExpr::parse(ty).ok_or_else(|| format!("bad type expression {ty:?}"))?;
    let mut f = Field {
        name: name.to_owned(),
        ty,
        omitempty: false,
        replace: false,
        inline: false,
        iszero: false,
        omitonlyifnil: false,
        merge: None,
        since: None,
        until: None,
    };
    for flag in flags {
        match *flag {
            "omitempty" => f.omitempty = true,
            "replace" => f.replace = true,
            "inline" => f.inline = true,
            "iszero" => f.iszero = true,
            "omitonlyifnil" => f.omitonlyifnil = true,
            "flow" => {}
            other => {
                if let Some(note) = other.strip_prefix("merge=") {
                    f.merge = Some(MergeRule::parse(note).ok_or_else(|| format!("unknown merge note {note:?}"))?);
                } else if let Some(v) = other.strip_prefix("since=") {
                    f.since = Some(parse_version(v).ok_or_else(|| format!("bad version {v:?}"))?);
                } else if let Some(v) = other.strip_prefix("until=") {
                    f.until = Some(parse_version(v).ok_or_else(|| format!("bad version {v:?}"))?);
                } else {
                    return Err(format!("unknown field flag {other:?}"));
                }
            }
        }
    }
    if name.is_empty() != f.inline {
        return Err("an inline field is written `- <Type> inline` and only that way".into());
    }
    Ok(f)
}

/// The enum names of a `scalar` line's comment (`values: a|b|c`), unless the list is abbreviated (`...`).
fn enum_values(raw: &str) -> Option<Vec<String>> {
    let comment = raw.split_once('#')?.1;
    let list = comment.split("values: ").nth(1)?;
    let list = list.split_whitespace().next()?;
    if list.contains("...") {
        return None;
    }
    Some(list.split('|').map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parses_without_errors_and_every_type_is_defined() {
        let (shapes, errors) = Shapes::parse(Shapes::source());
        assert!(errors.is_empty(), "{}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"));
        assert_eq!(shapes.docs().len(), 90);
        for d in shapes.docs() {
            assert!(shapes.struct_def(&d.root).is_some(), "{} root {}", d.kind, d.root);
        }
    }

    #[test]
    fn fields_splice_inline_and_respect_the_contract() {
        let s = Shapes::get();
        let names: Vec<&str> =
            s.fields("k8s.KubeletConfigV1Alpha1", Contract::V1_14).iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["apiVersion", "kind", "image", "config", "extraArgs", "clusterDNS", "defaultRuntimeSeccompProfileEnabled"]
        );
        let cp13 = s.field("v1alpha1.ClusterConfig", "controlPlane", Contract::V1_13).map(|f| f.omitempty);
        let cp14 = s.field("v1alpha1.ClusterConfig", "controlPlane", Contract::V1_14).map(|f| f.omitempty);
        assert_eq!((cp13, cp14), (Some(false), Some(true)));
        assert!(s.field("block.MountSpec", "disableAccessTime", Contract::V1_13).is_none());
    }

    #[test]
    fn kinds_are_registered_per_contract() {
        let s = Shapes::get();
        assert!(s.doc("KubeletConfig", Contract::V1_14).is_some());
        assert!(s.doc("KubeletConfig", Contract::V1_13).is_none());
        assert!(s.doc("KubeSpanConfig", Contract::V1_13).is_some());
        assert!(s.doc("KubeSpanConfig", Contract::V1_12).is_none());
        assert!(s.doc("HostnameConfig", Contract::V1_12).is_some());
        assert!(s.doc("RegistryMirrorConfig", Contract::V1_14).is_some_and(|d| d.named));
        assert!(s.doc("KubeletConfig", Contract::V1_14).is_some_and(|d| !d.named));
    }
}
