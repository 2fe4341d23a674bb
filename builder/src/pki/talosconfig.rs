//! The talosctl client configuration (`talosconfig`), as
//! `pkg/machinery/client/config` reads and writes it.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::PkiError;
use super::bundle::parse_certificate_pem;
use super::keys::{KeyParseError, describe_base64_error, describe_spki, parse_private_key_pem};
use super::yaml::{self, MapReader};
use crate::machine_config::build::{M, strs};
use crate::yaml::Value;

/// A talosconfig: the current context and the named contexts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TalosConfig {
    /// Name of the context talosctl uses by default (may be empty).
    pub context: String,
    /// Contexts by name.
    pub contexts: BTreeMap<String, TalosContext>,
}

/// One talosconfig context. Empty fields are omitted from the YAML, except
/// `endpoints`, which Talos always writes (`endpoints: []`).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TalosContext {
    /// Talos API endpoints (IPs or host names, optionally with port).
    pub endpoints: Vec<String>,
    /// Default target nodes.
    pub nodes: Vec<String>,
    /// PEM of the OS CA certificate.
    pub ca: Vec<u8>,
    /// PEM of the client certificate.
    pub crt: Vec<u8>,
    /// PEM of the client key.
    pub key: Vec<u8>,
    /// Alternative authentication (Omni).
    pub auth: TalosAuth,
    /// Cluster name (Omni).
    pub cluster: String,
    /// HTTP proxy URL.
    pub proxy_url: String,
}

impl std::fmt::Debug for TalosContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TalosContext")
            .field("endpoints", &self.endpoints)
            .field("nodes", &self.nodes)
            .field("ca", &String::from_utf8_lossy(&self.ca))
            .field("crt", &String::from_utf8_lossy(&self.crt))
            .field("key", &"<redacted>")
            .field("auth", &self.auth)
            .field("cluster", &self.cluster)
            .field("proxy_url", &self.proxy_url)
            .finish()
    }
}

/// `auth:` of a context.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct TalosAuth {
    /// `basic: {username, password}`.
    pub basic: Option<(String, String)>,
    /// `siderov1: {identity}`.
    pub siderov1_identity: Option<String>,
}

impl std::fmt::Debug for TalosAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TalosAuth")
            .field("basic", &self.basic.as_ref().map(|(user, _)| (user, "<redacted>")))
            .field("siderov1_identity", &self.siderov1_identity)
            .finish()
    }
}

impl TalosAuth {
    fn is_empty(&self) -> bool {
        self.basic.is_none() && self.siderov1_identity.is_none()
    }
}

impl TalosConfig {
    /// A talosconfig with one context, as `talosctl gen config` makes it
    /// (Talos's `NewConfig` sets no nodes; pass an empty list for the same).
    /// `ca`, `crt` and `key` are PEM.
    pub fn new(context: &str, endpoints: Vec<String>, nodes: Vec<String>, ca: &[u8], crt: &[u8], key: &[u8]) -> Self {
        let ctx = TalosContext {
            endpoints,
            nodes,
            ca: ca.to_vec(),
            crt: crt.to_vec(),
            key: key.to_vec(),
            ..TalosContext::default()
        };
        TalosConfig { context: context.to_owned(), contexts: BTreeMap::from([(context.to_owned(), ctx)]) }
    }

    /// The YAML talosctl writes (go-yaml `Marshal`: 4-space indentation,
    /// list items indented under their key, contexts in go-yaml's key order).
    pub fn to_yaml(&self) -> String {
        let mut names: Vec<&String> = self.contexts.keys().collect();
        names.sort_by(|a, b| crate::yaml::emit::go_map_key_cmp(a, b));
        let mut contexts = M::new();
        for name in names {
            let Some(ctx) = self.contexts.get(name) else { continue };
            let mut c = M::new().put("endpoints", strs(&ctx.endpoints));
            if !ctx.nodes.is_empty() {
                c = c.put("nodes", strs(&ctx.nodes));
            }
            for (field, value) in [("ca", &ctx.ca), ("crt", &ctx.crt), ("key", &ctx.key)] {
                if !value.is_empty() {
                    c = c.put(field, STANDARD.encode(value));
                }
            }
            if !ctx.auth.is_empty() {
                let mut auth = M::new();
                if let Some((username, password)) = &ctx.auth.basic {
                    auth = auth.put("basic", M::new().put("username", username).put("password", password));
                }
                if let Some(identity) = &ctx.auth.siderov1_identity {
                    auth = auth.put("siderov1", M::new().put("identity", identity));
                }
                c = c.put("auth", auth);
            }
            if !ctx.cluster.is_empty() {
                c = c.put("cluster", &ctx.cluster);
            }
            if !ctx.proxy_url.is_empty() {
                c = c.put("proxy-url", &ctx.proxy_url);
            }
            contexts = contexts.put(name, c);
        }
        crate::yaml::emit::to_string(&M::new().put("context", &self.context).put("contexts", contexts).build())
    }

    /// Reads a talosconfig. Like Talos, the deprecated `target` field is
    /// appended to `endpoints`. Unknown fields are rejected, `ca`/`crt`/`key`
    /// must be base64 of PEM, certificates must parse and the key must belong
    /// to `crt`. Errors name the field as `contexts.<name>.<field>`.
    pub fn from_yaml(text: &str) -> Result<Self, PkiError> {
        let root = yaml::parse(text)?;
        let mut doc = match &root.value {
            Value::Map(_) => MapReader::new(root, "", &["context", "contexts"], "a talosconfig")?,
            Value::Null => {
                return Err(PkiError::invalid("(document)", "expected a talosconfig mapping; found an empty document"));
            }
            _ => {
                return Err(PkiError::invalid(
                    "(document)",
                    format!("expected a talosconfig mapping; found {}", yaml::describe(&root)),
                ));
            }
        };
        let context = doc.opt_string("context")?.unwrap_or_default();
        let mut contexts = BTreeMap::new();
        if let Some(node) = doc.take("contexts") {
            let described = yaml::describe(&node);
            let Value::Map(entries) = node.value else {
                return Err(PkiError::invalid(
                    "contexts",
                    format!("expected a mapping of context names to contexts; found {described}"),
                ));
            };
            for (key, value) in entries {
                let name = key.name;
                let path = format!("contexts.{name}");
                if matches!(value.value, Value::Null) {
                    continue;
                }
                let ctx = read_context(MapReader::new(value, &path, CONTEXT_FIELDS, "a context mapping")?, &path)?;
                contexts.insert(name, ctx);
            }
        }
        Ok(TalosConfig { context, contexts })
    }
}

const CONTEXT_FIELDS: &[&str] = &["target", "endpoints", "nodes", "ca", "crt", "key", "auth", "cluster", "proxy-url"];

fn read_context(mut map: MapReader, path: &str) -> Result<TalosContext, PkiError> {
    let target = map.opt_string("target")?;
    let mut endpoints = map.string_list("endpoints")?;
    endpoints.extend(target);
    let nodes = map.string_list("nodes")?;
    let ca = read_pem(&mut map, "ca")?;
    let crt = read_pem(&mut map, "crt")?;
    let key = read_pem(&mut map, "key")?;
    let mut auth = TalosAuth::default();
    if let Some(node) = map.take("auth") {
        let auth_path = format!("{path}.auth");
        let mut auth_map = MapReader::new(node, &auth_path, &["basic", "siderov1"], "an auth mapping")?;
        if let Some(node) = auth_map.take("basic") {
            let mut basic = MapReader::new(
                node,
                &format!("{auth_path}.basic"),
                &["username", "password"],
                "a mapping with username and password",
            )?;
            let username = basic.opt_string("username")?.unwrap_or_default();
            let password = basic.opt_string("password")?.unwrap_or_default();
            auth.basic = Some((username, password));
        }
        if let Some(node) = auth_map.take("siderov1") {
            let mut sidero =
                MapReader::new(node, &format!("{auth_path}.siderov1"), &["identity"], "a mapping with identity")?;
            auth.siderov1_identity = Some(sidero.opt_string("identity")?.unwrap_or_default());
        }
    }
    let cluster = map.opt_string("cluster")?.unwrap_or_default();
    let proxy_url = map.opt_string("proxy-url")?.unwrap_or_default();

    if !ca.is_empty() {
        parse_certificate_pem(&format!("{path}.ca"), &ca)?;
    }
    let crt_der = if crt.is_empty() { None } else { Some(parse_certificate_pem(&format!("{path}.crt"), &crt)?) };
    if !key.is_empty() {
        let key_field = format!("{path}.key");
        let expected = "an Ed25519, ECDSA P-256 or RSA private key (PEM \"ED25519 PRIVATE KEY\", \"EC PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"PRIVATE KEY\")";
        let parsed = parse_private_key_pem(&key).map_err(|err| {
            let (KeyParseError::Malformed(found) | KeyParseError::Unsupported(found)) = err;
            PkiError::invalid(&key_field, format!("expected {expected}; found {found}"))
        })?;
        if let Some(der) = crt_der {
            let cert = x509_parser::parse_x509_certificate(&der).map(|(_, c)| c).map_err(|err| {
                PkiError::invalid(format!("{path}.crt"), format!("expected an X.509 certificate; found {err}"))
            })?;
            if !parsed.matches_spki(cert.public_key()) {
                return Err(PkiError::invalid(
                    key_field,
                    format!(
                        "expected the private key of the certificate in {path}.crt ({}); found {} that does not match it",
                        describe_spki(cert.public_key()),
                        parsed.describe()
                    ),
                ));
            }
        }
    }

    Ok(TalosContext { endpoints, nodes, ca, crt, key, auth, cluster, proxy_url })
}

fn read_pem(map: &mut MapReader, key: &str) -> Result<Vec<u8>, PkiError> {
    let Some(text) = map.opt_string(key)? else {
        return Ok(Vec::new());
    };
    STANDARD.decode(text.as_bytes()).map_err(|err| {
        PkiError::invalid(
            map.path(key),
            format!("expected base64 (standard alphabet, padded) of PEM; found {}", describe_base64_error(&err)),
        )
    })
}
