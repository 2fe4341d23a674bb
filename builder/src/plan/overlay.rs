//! Resolving an overlay reference: load the overlay, check it supports the Talos version, fill its
//! `${values}`, and read the patch files that apply to each role.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Diagnostic, Diagnostics, Error, Result};
use crate::quirks::Quirks;
use crate::spec::catalog::Catalog;
use crate::spec::cluster::OverlayRef;
use crate::spec::profile::KernelModuleSpec;
use crate::spec::{Role, Source};
use crate::yaml::{FieldPath, Span};

use super::profile::{check_extension_name, check_kernel_arg, check_kernel_module};
use super::{PatchContent, PatchInput};

#[derive(Clone, Debug)]
pub struct ResolvedOverlay {
    pub name: String,
    pub dir: PathBuf,
    pub values: BTreeMap<String, String>,
    pub extensions: Vec<String>,
    pub kernel_args: Vec<String>,
    pub kernel_modules: Vec<KernelModuleSpec>,
    pub sysctls: BTreeMap<String, String>,
    /// (roles it applies to (empty: all), patch)
    pub patches: Vec<(Vec<Role>, PatchInput)>,
}

impl ResolvedOverlay {
    pub fn patches_for(&self, role: Role) -> impl Iterator<Item = PatchInput> + '_ {
        self.patches.iter().filter(move |(r, _)| r.is_empty() || r.contains(&role)).map(|(_, p)| p.clone())
    }
}

/// `at` is the position of the reference in `src` (the cluster file).
pub fn resolve_overlay(
    catalog: &Catalog,
    r: &OverlayRef,
    quirks: &Quirks,
    src: &Source,
    at: &FieldPath,
) -> Result<ResolvedOverlay> {
    let loaded = match catalog.load_overlay(&r.name) {
        Some(l) => l?,
        None => {
            return Err(src
                .diag(at.clone(), format!("unknown overlay {:?}; known: {}", r.name, catalog.known_overlays()))
                .into());
        }
    };
    let spec = &loaded.spec;
    let osrc = &loaded.source;
    let root = FieldPath::root();
    let mut errors: Vec<Diagnostic> = Vec::new();

    if let Some(req) = &spec.talos
        && !req.matches(&quirks.version)
    {
        errors.push(src.diag(
            at.clone(),
            format!("overlay {:?} supports Talos {req}; the cluster uses {}", r.name, quirks.version),
        ));
    }
    let mut values = BTreeMap::new();
    for (k, v) in &r.values {
        if !spec.values.contains_key(k) {
            let known: Vec<&str> = spec.values.keys().map(String::as_str).collect();
            errors.push(src.diag(
                at.key("values").key(k),
                format!(
                    "overlay {:?} has no value {k:?}; it takes: {}",
                    r.name,
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            ));
        }
        values.insert(k.clone(), v.clone());
    }
    for (k, def) in &spec.values {
        if values.contains_key(k) {
            continue;
        }
        match &def.default {
            Some(d) => {
                values.insert(k.clone(), d.clone());
            }
            None => errors.push(src.diag(
                at.clone(),
                format!(
                        "overlay {:?} needs a value for {k:?}: write `{{name: {}, values: {{{k}: ...}}}}`{}",
                        r.name,
                        r.name,
                        def.description
                            .as_ref()
                            .map(|d| format!(" ({k}: {})", d.trim_end_matches('.')))
                            .unwrap_or_default(),
                    ),
            )),
        }
    }
    for (i, e) in spec.extensions.iter().enumerate() {
        if let Err(m) = check_extension_name(e) {
            errors.push(osrc.diag(root.key("extensions").index(i), m));
        }
    }
    for (i, a) in spec.kernel_args.iter().enumerate() {
        if let Err(m) = check_kernel_arg(a) {
            errors.push(osrc.diag(root.key("kernelArgs").index(i), m));
        }
    }
    for (i, m) in spec.kernel_modules.iter().enumerate() {
        if let Err(msg) = check_kernel_module(&m.name) {
            errors.push(osrc.diag(root.key("kernelModules").index(i).key("name"), msg));
        }
    }

    let mut patches = Vec::new();
    // Without every value the patches cannot be filled in; the missing values are already reported.
    let patch_specs = if values.len() == spec.values.len() { spec.patches.as_slice() } else { &[] };
    for (i, p) in patch_specs.iter().enumerate() {
        if let Some(req) = &p.talos
            && !req.matches(&quirks.version)
        {
            continue;
        }
        let path = loaded.dir.join(&p.file);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(
                    osrc.diag(root.key("patches").index(i).key("file"), format!("cannot read {}: {e}", path.display())),
                );
                continue;
            }
        };
        match substitute(&text, &values) {
            Ok(t) => patches.push((
                p.roles.clone(),
                PatchInput { origin: path.display().to_string(), file: path, content: PatchContent::Text(t) },
            )),
            Err((span, msg)) => errors.push(Diagnostic::new(&path, span, FieldPath::root(), msg)),
        }
    }

    match errors.len() {
        0 => Ok(ResolvedOverlay {
            name: spec.name.clone(),
            dir: loaded.dir.clone(),
            values,
            extensions: spec.extensions.clone(),
            kernel_args: spec.kernel_args.clone(),
            kernel_modules: spec.kernel_modules.clone(),
            sysctls: spec.sysctls.clone(),
            patches,
        }),
        1 => Err(errors.remove(0).into()),
        _ => Err(Error::Inputs(Diagnostics(errors))),
    }
}

/// Replaces `${name}` with its value; `$${` writes a literal `${`.
pub fn substitute(text: &str, values: &BTreeMap<String, String>) -> std::result::Result<String, (Span, String)> {
    let mut out = String::with_capacity(text.len());
    for (ln, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        let mut col = 1usize;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos..];
            if let Some(lit) = after.strip_prefix("$${") {
                out.push_str("${");
                col += pos + 3;
                rest = lit;
                continue;
            }
            if let Some(body) = after.strip_prefix("${") {
                let span = Span::new(ln as u32 + 1, (col + pos) as u32);
                let Some(end) = body.find('}') else {
                    return Err((span, "unterminated ${ placeholder".to_owned()));
                };
                let name = &body[..end];
                match values.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        let known: Vec<&str> = values.keys().map(String::as_str).collect();
                        return Err((
                            span,
                            format!("unknown placeholder ${{{name}}}; the overlay defines: {}", known.join(", ")),
                        ));
                    }
                }
                col += pos + 2 + end + 1;
                rest = &body[end + 1..];
                continue;
            }
            out.push('$');
            col += pos + 1;
            rest = &after[1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        let mut v = BTreeMap::new();
        v.insert("mirror".to_owned(), "http://10.5.0.1:5000".to_owned());
        assert_eq!(
            substitute("url: ${mirror}/v2\nx: $${lit} $5\n", &v).unwrap(),
            "url: http://10.5.0.1:5000/v2\nx: ${lit} $5\n"
        );
        let (span, msg) = substitute("a: 1\nb: ${nope}\n", &v).unwrap_err();
        assert_eq!(span, Span::new(2, 4));
        assert!(msg.contains("unknown placeholder ${nope}"), "{msg}");
    }
}
