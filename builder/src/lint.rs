//! `talforge profile lint`: every hardware profile resolves, and every overlay's patches apply to generated
//! configs of both roles for every Talos contract the overlay supports.
//!
//! The patches are applied to configs generated from a placeholder secrets bundle (the generator only copies
//! certificate text), so lint needs no key generation and finishes in well under a second.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Error;
use crate::machine_config::generate::{GenInput, GenOptions, generate};
use crate::machine_config::render::load_planned_patch;
use crate::machine_config::{Contract, apply_patches};
use crate::pki::{CertAndKey, Certs, ClusterSecrets, EncryptionSecret, PemKey, Secrets, SecretsBundle, TrustdInfo};
use crate::plan::overlay::resolve_overlay;
use crate::plan::profile::resolve_profile;
use crate::quirks::Quirks;
use crate::spec::cluster::OverlayRef;
use crate::spec::{Catalog, Role, Source};
use crate::yaml::FieldPath;

#[derive(Clone, Debug, Default, Serialize)]
pub struct LintReport {
    pub profiles: Vec<LintItem>,
    pub overlays: Vec<LintItem>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LintItem {
    pub name: String,
    pub problems: Vec<String>,
}

impl LintReport {
    pub fn ok(&self) -> bool {
        self.profiles.iter().chain(&self.overlays).all(|i| i.problems.is_empty())
    }

    pub fn human(&self) -> String {
        let mut o = String::new();
        for (what, items) in [("profile", &self.profiles), ("overlay", &self.overlays)] {
            for i in items {
                if i.problems.is_empty() {
                    o.push_str(&format!("ok    {what} {}\n", i.name));
                } else {
                    o.push_str(&format!("FAIL  {what} {}\n", i.name));
                    for p in &i.problems {
                        for line in p.lines() {
                            o.push_str(&format!("        {line}\n"));
                        }
                    }
                }
            }
        }
        let bad = self.profiles.iter().chain(&self.overlays).filter(|i| !i.problems.is_empty()).count();
        o.push_str(&format!(
            "{} profiles, {} overlays checked; {bad} with problems\n",
            self.profiles.len(),
            self.overlays.len()
        ));
        o
    }
}

fn problems(e: Error) -> Vec<String> {
    match e {
        Error::Inputs(ds) => ds.0.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    }
}

/// Checks every profile and overlay in the catalog.
pub fn lint_catalog(cat: &Catalog) -> LintReport {
    let mut report = LintReport::default();
    for name in cat.profile_names() {
        let problems = match resolve_profile(cat, name) {
            Ok(_) => Vec::new(),
            Err(e) => problems(e),
        };
        report.profiles.push(LintItem { name: name.to_owned(), problems });
    }
    for name in cat.overlay_names() {
        report.overlays.push(LintItem { name: name.to_owned(), problems: lint_overlay(cat, name) });
    }
    report
}

/// A placeholder bundle: valid shapes, no real keys.
pub fn placeholder_secrets() -> SecretsBundle {
    let pem = |label: &str| format!("-----BEGIN {label}-----\nbGludA==\n-----END {label}-----\n").into_bytes();
    let ca = || CertAndKey { crt: pem("CERTIFICATE"), key: pem("EC PRIVATE KEY") };
    SecretsBundle {
        cluster: ClusterSecrets { id: "bGludA==".into(), secret: "bGludA==".into() },
        secrets: Secrets {
            bootstrap_token: "abcdef.0123456789abcdef".into(),
            encryption: EncryptionSecret::Secretbox("bGludA==".into()),
        },
        trustd_info: TrustdInfo { token: "abcdef.0123456789abcdef".into() },
        certs: Certs {
            etcd: ca(),
            k8s: ca(),
            k8s_aggregator: ca(),
            k8s_service_account: PemKey { key: pem("RSA PRIVATE KEY") },
            os: ca(),
        },
    }
}

fn lint_overlay(cat: &Catalog, name: &str) -> Vec<String> {
    let loaded = match cat.load_overlay(name) {
        Some(Ok(l)) => l,
        Some(Err(e)) => return problems(e),
        None => return vec![format!("overlay {name:?} vanished while linting")],
    };
    // Fill values the overlay requires with placeholders.
    let values: BTreeMap<String, String> = loaded
        .spec
        .values
        .iter()
        .filter(|(_, v)| v.default.is_none())
        .map(|(k, _)| (k.clone(), format!("http://lint.invalid/{k}")))
        .collect();
    let r = OverlayRef { name: name.to_owned(), values };
    let src = match Source::parse("<lint>", format!("overlays: [{name}]\n")) {
        Ok(s) => s,
        Err(e) => return problems(e),
    };
    let secrets = placeholder_secrets();
    let mut out = Vec::new();
    for contract in Contract::ALL {
        let version = crate::spec::units::Version::new(u64::from(contract.major), u64::from(contract.minor), 0);
        if loaded.spec.talos.as_ref().is_some_and(|req| !req.matches(&version)) {
            continue;
        }
        let Ok(quirks) = Quirks::new(&version) else { continue };
        let ov = match resolve_overlay(cat, &r, &quirks, &src, &FieldPath::root().key("overlays").index(0)) {
            Ok(o) => o,
            Err(e) => {
                out.extend(problems(e).into_iter().map(|p| format!("Talos {version}: {p}")));
                continue;
            }
        };
        let endpoint = crate::spec::units::Endpoint { host: "10.5.0.10".into(), port: 6443 };
        let k8s = crate::spec::units::Version::new(1, 34, 1);
        let opts = GenOptions::default();
        let input = GenInput {
            quirks: &quirks,
            cluster_name: "lint",
            endpoint: &endpoint,
            kubernetes: &k8s,
            secrets: &secrets,
            options: &opts,
        };
        for role in [Role::Controlplane, Role::Worker] {
            let patches: Result<Vec<_>, _> = ov.patches_for(role).map(|p| load_planned_patch(&p)).collect();
            let result = patches.and_then(|p| Ok(apply_patches(generate(&input, role, None), &p, contract)?));
            if let Err(e) = result {
                out.push(format!("Talos {version}, {} config: {e}", role.as_str()));
            }
        }
    }
    out
}
