//! The talosctl client configuration (`talosconfig`), as
//! `pkg/machinery/client/config` reads and writes it.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::PkiError;
use super::bundle::parse_certificate_pem;
use super::keys::{KeyParseError, describe_base64_error, describe_spki, parse_private_key_pem};
use super::yaml::{self, MapReader, Node};

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
        let mut out = String::new();
        yaml::write_field(&mut out, 0, "context", &self.context);
        if self.contexts.is_empty() {
            out.push_str("contexts: {}\n");
            return out;
        }
        yaml::write_key(&mut out, 0, "contexts");
        let mut names: Vec<&String> = self.contexts.keys().collect();
        names.sort_by(|a, b| go_yaml_key_order(a, b));
        for name in names {
            let Some(ctx) = self.contexts.get(name) else {
                continue;
            };
            yaml::write_key(&mut out, 1, name);
            yaml::write_list(&mut out, 2, "endpoints", &ctx.endpoints);
            if !ctx.nodes.is_empty() {
                yaml::write_list(&mut out, 2, "nodes", &ctx.nodes);
            }
            for (field, value) in [("ca", &ctx.ca), ("crt", &ctx.crt), ("key", &ctx.key)] {
                if !value.is_empty() {
                    yaml::write_field(&mut out, 2, field, &STANDARD.encode(value));
                }
            }
            if !ctx.auth.is_empty() {
                yaml::write_key(&mut out, 2, "auth");
                if let Some((username, password)) = &ctx.auth.basic {
                    yaml::write_key(&mut out, 3, "basic");
                    yaml::write_field(&mut out, 4, "username", username);
                    yaml::write_field(&mut out, 4, "password", password);
                }
                if let Some(identity) = &ctx.auth.siderov1_identity {
                    yaml::write_key(&mut out, 3, "siderov1");
                    yaml::write_field(&mut out, 4, "identity", identity);
                }
            }
            if !ctx.cluster.is_empty() {
                yaml::write_field(&mut out, 2, "cluster", &ctx.cluster);
            }
            if !ctx.proxy_url.is_empty() {
                yaml::write_field(&mut out, 2, "proxy-url", &ctx.proxy_url);
            }
        }
        out
    }

    /// Reads a talosconfig. Like Talos, the deprecated `target` field is
    /// appended to `endpoints`. Unknown fields are rejected, `ca`/`crt`/`key`
    /// must be base64 of PEM, certificates must parse and the key must belong
    /// to `crt`. Errors name the field as `contexts.<name>.<field>`.
    pub fn from_yaml(text: &str) -> Result<Self, PkiError> {
        let root = yaml::parse(text)?;
        let mut doc = match root {
            Node::Map(_) => MapReader::new(root, "", &["context", "contexts"], "a talosconfig")?,
            Node::Null => {
                return Err(PkiError::invalid("(document)", "expected a talosconfig mapping; found an empty document"));
            }
            other => {
                return Err(PkiError::invalid(
                    "(document)",
                    format!("expected a talosconfig mapping; found {}", yaml::describe(&other)),
                ));
            }
        };
        let context = doc.opt_string("context")?.unwrap_or_default();
        let mut contexts = BTreeMap::new();
        if let Some(node) = doc.take("contexts") {
            let entries = match node {
                Node::Map(entries) => entries,
                other => {
                    return Err(PkiError::invalid(
                        "contexts",
                        format!("expected a mapping of context names to contexts; found {}", yaml::describe(&other)),
                    ));
                }
            };
            for (name, value) in entries {
                let path = format!("contexts.{name}");
                if matches!(value, Node::Null) {
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

/// go-yaml's order for string map keys: character by character, letters
/// before other characters unless following a digit, and runs of digits
/// compared as numbers (`ctx-2` < `ctx-10`).
fn go_yaml_key_order(a: &str, b: &str) -> Ordering {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut after_digit = false;
    for i in 0..a.len().min(b.len()) {
        let (ca, cb) = (a[i], b[i]);
        if ca == cb {
            after_digit = ca.is_numeric();
            continue;
        }
        let (la, lb) = (ca.is_alphabetic(), cb.is_alphabetic());
        if la && lb {
            return ca.cmp(&cb);
        }
        if la || lb {
            // One letter, one non-letter: letters first, except right after
            // a digit, where the non-letter (a longer number) comes first.
            let a_first = if after_digit { la } else { lb };
            return if a_first { Ordering::Less } else { Ordering::Greater };
        }
        // Neither is a letter: compare the digit runs starting here as numbers.
        let mut an: i128 = 0;
        let mut bn: i128 = 0;
        if ca == '0' || cb == '0' {
            // Inside a number with a non-zero digit before: a leading zero
            // here is significant, so bias both sides equally.
            if a[..i].iter().rev().take_while(|c| c.is_numeric()).any(|c| *c != '0') {
                an = 1;
                bn = 1;
            }
        }
        let run = |s: &[char], mut n: i128| -> (i128, usize) {
            let mut j = i;
            while j < s.len() && s[j].is_numeric() {
                n = n.saturating_mul(10).saturating_add(i128::from(s[j].to_digit(10).unwrap_or(0)));
                j += 1;
            }
            (n, j)
        };
        let (an, ai) = run(&a, an);
        let (bn, bi) = run(&b, bn);
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ca.cmp(&cb);
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::go_yaml_key_order;

    #[test]
    fn context_names_sort_like_go_yaml() {
        let mut names = vec!["ctx-10", "ctx-2", "b", "a", "Z", "a1", "a-1", "ctx-02"];
        names.sort_by(|a, b| go_yaml_key_order(a, b));
        // "a-1" < "a1": at the second character, no digits (0) sorts before 1.
        assert_eq!(names, vec!["Z", "a", "a-1", "a1", "b", "ctx-2", "ctx-02", "ctx-10"]);
    }
}
