//! The secrets bundle (`talosctl gen secrets`): generation, YAML in the exact
//! layout talosctl writes, and loading with validation of every field.

use std::fmt;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

use super::cert::self_signed_ca;
use super::keys::{
    KeyKind, KeyParseError, PEM_CERTIFICATE, PrivateKey, RSA_SERVICE_ACCOUNT_BITS, describe_base64_error,
    describe_spki, generate_ed25519, generate_p256, generate_rsa, parse_private_key_pem, pem_decode,
};
use super::rng::{SecretRng, random_array};
use super::yaml::{self, MapReader};
use super::{Contract, PkiError};
use crate::machine_config::build::M;

/// Size in bytes of the cluster id, cluster secret and encryption secret.
const SECRET_SIZE: usize = 32;

/// Everything `talosctl gen secrets` writes: the cluster identity, Kubernetes
/// secrets, the trustd token and the CAs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SecretsBundle {
    /// `cluster:` — discovery identity.
    pub cluster: ClusterSecrets,
    /// `secrets:` — Kubernetes bootstrap token and etcd encryption key.
    pub secrets: Secrets,
    /// `trustdinfo:` — the token machines use to get certificates from trustd.
    pub trustd_info: TrustdInfo,
    /// `certs:` — the CAs and the service-account key.
    pub certs: Certs,
}

/// `cluster:` — the discovery identity.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecrets {
    /// Base64 of 32 random bytes (URL-safe alphabet before Talos 1.14). Talos
    /// only uses it as an opaque identifier, so any non-empty string loads.
    pub id: String,
    /// Standard base64 of 32 random bytes (an AES-256 key).
    pub secret: String,
}

/// `secrets:` — Kubernetes bootstrap token and etcd encryption secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    /// `[0-9a-z]{6}.[0-9a-z]{16}`.
    pub bootstrap_token: String,
    /// The key kube-apiserver encrypts secrets in etcd with.
    pub encryption: EncryptionSecret,
}

/// Which etcd encryption provider the secret is for.
#[derive(Clone, PartialEq, Eq)]
pub enum EncryptionSecret {
    /// `secretboxencryptionsecret` (contract > 1.2): base64 of 32 bytes.
    Secretbox(String),
    /// `aescbcencryptionsecret` (contract ≤ 1.2): base64 of 16, 24 or 32 bytes.
    AesCbc(String),
}

/// `trustdinfo:`.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustdInfo {
    /// `[0-9a-z]{6}.[0-9a-z]{16}`.
    pub token: String,
}

/// `certs:` — the CAs and the service-account key.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Certs {
    /// etcd CA: ECDSA P-256, `O=etcd`.
    pub etcd: CertAndKey,
    /// Kubernetes CA: ECDSA P-256, `O=kubernetes`.
    pub k8s: CertAndKey,
    /// Kubernetes aggregator (front-proxy) CA: ECDSA P-256, empty subject.
    pub k8s_aggregator: CertAndKey,
    /// Service-account signing key: RSA-4096 (contract ≥ 1.7) or ECDSA P-256.
    pub k8s_service_account: PemKey,
    /// Talos API CA: Ed25519, `O=talos`.
    pub os: CertAndKey,
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    /// PEM `CERTIFICATE`.
    pub crt: Vec<u8>,
    /// PEM private key (`EC PRIVATE KEY`, `ED25519 PRIVATE KEY`, ...).
    pub key: Vec<u8>,
}

/// A private key without a certificate, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct PemKey {
    /// PEM `RSA PRIVATE KEY` or `EC PRIVATE KEY`.
    pub key: Vec<u8>,
}

// Secrets never appear in Debug output.
const REDACTED: &str = "<redacted>";

impl fmt::Debug for ClusterSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSecrets").field("id", &self.id).field("secret", &REDACTED).finish()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.encryption {
            EncryptionSecret::Secretbox(_) => "Secretbox",
            EncryptionSecret::AesCbc(_) => "AesCbc",
        };
        f.debug_struct("Secrets")
            .field("bootstrap_token", &REDACTED)
            .field("encryption", &format_args!("{kind}({REDACTED})"))
            .finish()
    }
}

impl fmt::Debug for EncryptionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncryptionSecret::Secretbox(_) => write!(f, "Secretbox({REDACTED})"),
            EncryptionSecret::AesCbc(_) => write!(f, "AesCbc({REDACTED})"),
        }
    }
}

impl fmt::Debug for TrustdInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustdInfo").field("token", &REDACTED).finish()
    }
}

impl fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAndKey").field("crt", &String::from_utf8_lossy(&self.crt)).field("key", &REDACTED).finish()
    }
}

impl fmt::Debug for PemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemKey").field("key", &REDACTED).finish()
    }
}

// ---------------------------------------------------------------- generation

impl SecretsBundle {
    /// Generates a new bundle like `talosctl gen secrets` for `contract`.
    ///
    /// All randomness (keys, serials, key identifiers, tokens, secrets) is
    /// drawn from `rng`, and every signature is deterministic, so a
    /// [`super::SeededSecretRng`] and a fixed `now` give the same bundle byte
    /// for byte. CAs are valid from `now` (whole seconds) for 87600 hours.
    pub fn generate(rng: &mut dyn SecretRng, now: SystemTime, contract: Contract) -> Result<Self, PkiError> {
        let etcd = new_ca(generate_p256(rng)?, Some("etcd"), rng, now)?;
        let k8s = new_ca(generate_p256(rng)?, Some("kubernetes"), rng, now)?;
        let k8s_aggregator = new_ca(generate_p256(rng)?, None, rng, now)?;
        let service_account_key = if contract.uses_rsa_service_account_key() {
            generate_rsa(rng, RSA_SERVICE_ACCOUNT_BITS)?
        } else {
            generate_p256(rng)?
        };
        let k8s_service_account = PemKey { key: service_account_key.to_pem()? };
        let os = new_ca(generate_ed25519(rng)?, Some("talos"), rng, now)?;

        let bootstrap_token = generate_token(rng)?;
        let encryption_key = STANDARD.encode(random_array::<SECRET_SIZE>(rng)?);
        let encryption = if contract.uses_secretbox() {
            EncryptionSecret::Secretbox(encryption_key)
        } else {
            EncryptionSecret::AesCbc(encryption_key)
        };
        let trustd_token = generate_token(rng)?;
        let id_bytes: [u8; SECRET_SIZE] = random_array(rng)?;
        let id = if contract.uses_standard_cluster_id_encoding() {
            STANDARD.encode(id_bytes)
        } else {
            URL_SAFE.encode(id_bytes)
        };
        let secret = STANDARD.encode(random_array::<SECRET_SIZE>(rng)?);

        Ok(SecretsBundle {
            cluster: ClusterSecrets { id, secret },
            secrets: Secrets { bootstrap_token, encryption },
            trustd_info: TrustdInfo { token: trustd_token },
            certs: Certs { etcd, k8s, k8s_aggregator, k8s_service_account, os },
        })
    }
}

fn new_ca(
    key: PrivateKey,
    org: Option<&str>,
    rng: &mut dyn SecretRng,
    now: SystemTime,
) -> Result<CertAndKey, PkiError> {
    let crt = self_signed_ca(&key, org, rng, now)?;
    Ok(CertAndKey { crt, key: key.to_pem()? })
}

const TOKEN_CHARS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A kubeadm-style token `[0-9a-z]{6}.[0-9a-z]{16}`: each character is a
/// random byte mod 36, with bytes ≥ 252 discarded so that all 36 characters
/// are equally likely (Talos `genToken`).
pub(crate) fn generate_token(rng: &mut dyn SecretRng) -> Result<String, PkiError> {
    let mut token = String::with_capacity(23);
    let mut buf = [0u8; 32];
    let mut pos = buf.len();
    for i in 0..22 {
        if i == 6 {
            token.push('.');
        }
        loop {
            if pos == buf.len() {
                rng.try_fill_bytes(&mut buf)?;
                pos = 0;
            }
            let b = buf[pos];
            pos += 1;
            if b < 252 {
                token.push(char::from(TOKEN_CHARS[usize::from(b % 36)]));
                break;
            }
        }
    }
    Ok(token)
}

// ------------------------------------------------------------------- writing

impl SecretsBundle {
    /// The bundle as `talosctl gen secrets` writes it (go-yaml, 4-space
    /// indentation, fields in Talos's struct order), without the comment line
    /// some talosctl-made files start with.
    pub fn to_yaml(&self) -> String {
        let pair = |p: &CertAndKey| M::new().put("crt", STANDARD.encode(&p.crt)).put("key", STANDARD.encode(&p.key));
        let (enc_key, enc) = match &self.secrets.encryption {
            EncryptionSecret::AesCbc(s) => ("aescbcencryptionsecret", s),
            EncryptionSecret::Secretbox(s) => ("secretboxencryptionsecret", s),
        };
        let c = &self.certs;
        let doc = M::new()
            .put("cluster", M::new().put("id", &self.cluster.id).put("secret", &self.cluster.secret))
            .put("secrets", M::new().put("bootstraptoken", &self.secrets.bootstrap_token).put(enc_key, enc))
            .put("trustdinfo", M::new().put("token", &self.trustd_info.token))
            .put(
                "certs",
                M::new()
                    .put("etcd", pair(&c.etcd))
                    .put("k8s", pair(&c.k8s))
                    .put("k8saggregator", pair(&c.k8s_aggregator))
                    .put("k8sserviceaccount", M::new().put("key", STANDARD.encode(&c.k8s_service_account.key)))
                    .put("os", pair(&c.os)),
            );
        crate::yaml::emit::to_string(&doc.build())
    }
}

// ------------------------------------------------------------------- reading

const ROOT_FIELDS: &[&str] = &["cluster", "secrets", "trustdinfo", "certs"];
const CLUSTER_FIELDS: &[&str] = &["id", "secret"];
const SECRETS_FIELDS: &[&str] = &["bootstraptoken", "aescbcencryptionsecret", "secretboxencryptionsecret"];
const TRUSTD_FIELDS: &[&str] = &["token"];
const CERTS_FIELDS: &[&str] = &["etcd", "k8s", "k8saggregator", "k8sserviceaccount", "os"];
const PAIR_FIELDS: &[&str] = &["crt", "key"];
const KEY_FIELDS: &[&str] = &["key"];

const TOKEN_EXPECTED: &str = "a token matching [0-9a-z]{6}.[0-9a-z]{16}";
const SECRETBOX_EXPECTED: &str = "standard base64 of a 32-byte key";
const CRT_EXPECTED: &str = "base64 of a PEM \"CERTIFICATE\"";
const KEY_EXPECTED: &str = "base64 of a PEM private key";

impl SecretsBundle {
    /// Loads a bundle written by `talosctl gen secrets` (any version) or by
    /// [`SecretsBundle::to_yaml`], and checks every field with
    /// [`SecretsBundle::validate`]. Unknown fields are rejected.
    pub fn from_yaml(text: &str) -> Result<Self, PkiError> {
        let root = yaml::parse(text)?;
        if root.as_map().is_none() {
            return Err(PkiError::invalid(
                "(document)",
                format!("expected a mapping with fields {}; found {}", ROOT_FIELDS.join(", "), yaml::describe(&root)),
            ));
        }
        let mut doc = MapReader::new(root, "", ROOT_FIELDS, "a secrets bundle")?;

        let mut cluster = doc.map("cluster", CLUSTER_FIELDS, "a mapping with id and secret")?;
        let id = cluster.string("id", "the cluster id (base64 of 32 bytes)")?;
        let secret = cluster.string("secret", "the cluster secret (standard base64 of 32 bytes)")?;

        let mut secrets_map =
            doc.map("secrets", SECRETS_FIELDS, "a mapping with bootstraptoken and an encryption secret")?;
        let bootstrap_token = secrets_map.string("bootstraptoken", TOKEN_EXPECTED)?;
        let aescbc = secrets_map.opt_string("aescbcencryptionsecret")?;
        let secretbox = secrets_map.opt_string("secretboxencryptionsecret")?;
        let encryption = match (secretbox, aescbc) {
            (Some(s), None) => EncryptionSecret::Secretbox(s),
            (None, Some(s)) => EncryptionSecret::AesCbc(s),
            (Some(_), Some(_)) => {
                return Err(PkiError::invalid(
                    "secrets",
                    "expected only one of secretboxencryptionsecret and aescbcencryptionsecret; found both",
                ));
            }
            (None, None) => {
                return Err(PkiError::missing(
                    "secrets.secretboxencryptionsecret",
                    format!("{SECRETBOX_EXPECTED} (or secrets.aescbcencryptionsecret for Talos 1.2 and older)"),
                ));
            }
        };

        let mut trustd = doc.map("trustdinfo", TRUSTD_FIELDS, "a mapping with token")?;
        let token = trustd.string("token", TOKEN_EXPECTED)?;

        let mut certs_map =
            doc.map("certs", CERTS_FIELDS, "a mapping with etcd, k8s, k8saggregator, k8sserviceaccount and os")?;
        let etcd = read_pair(&mut certs_map, "etcd")?;
        let k8s = read_pair(&mut certs_map, "k8s")?;
        let k8s_aggregator = read_pair(&mut certs_map, "k8saggregator")?;
        let mut sa = certs_map.map("k8sserviceaccount", KEY_FIELDS, "a mapping with key")?;
        let k8s_service_account = PemKey { key: read_base64(&mut sa, "key", KEY_EXPECTED)? };
        let os = read_pair(&mut certs_map, "os")?;

        let bundle = SecretsBundle {
            cluster: ClusterSecrets { id, secret },
            secrets: Secrets { bootstrap_token, encryption },
            trustd_info: TrustdInfo { token },
            certs: Certs { etcd, k8s, k8s_aggregator, k8s_service_account, os },
        };
        bundle.validate()?;
        Ok(bundle)
    }
}

fn read_pair(certs: &mut MapReader, name: &str) -> Result<CertAndKey, PkiError> {
    let mut pair = certs.map(name, PAIR_FIELDS, "a mapping with crt and key")?;
    Ok(CertAndKey {
        crt: read_base64(&mut pair, "crt", CRT_EXPECTED)?,
        key: read_base64(&mut pair, "key", KEY_EXPECTED)?,
    })
}

fn read_base64(map: &mut MapReader, key: &str, expected: &str) -> Result<Vec<u8>, PkiError> {
    let text = map.string(key, expected)?;
    STANDARD.decode(text.as_bytes()).map_err(|err| {
        PkiError::invalid(
            map.path(key),
            format!("expected {expected} (standard alphabet, padded); found {}", describe_base64_error(&err)),
        )
    })
}

// ---------------------------------------------------------------- validation

/// Which private keys a `certs.*` field accepts.
struct KeyPolicy {
    kinds: &'static [KeyKind],
    expected: &'static str,
}

/// etcd, k8s and k8saggregator: Talos generates ECDSA P-256 and, like
/// siderolabs/crypto, also loads RSA and Ed25519 CAs (bundles made from a
/// kubeadm PKI directory have RSA CAs).
const CA_POLICY: KeyPolicy = KeyPolicy {
    kinds: &[KeyKind::EcdsaP256, KeyKind::Rsa, KeyKind::Ed25519],
    expected: "an ECDSA P-256, RSA or Ed25519 private key (PEM \"EC PRIVATE KEY\", \"RSA PRIVATE KEY\", \"ED25519 PRIVATE KEY\" or \"PRIVATE KEY\")",
};

/// The Talos API CA: client certificates are issued from it as Ed25519.
const OS_POLICY: KeyPolicy =
    KeyPolicy { kinds: &[KeyKind::Ed25519], expected: "an Ed25519 private key (PEM \"ED25519 PRIVATE KEY\")" };

/// Service-account key: kube-apiserver accepts RSA and ECDSA.
const SERVICE_ACCOUNT_POLICY: KeyPolicy = KeyPolicy {
    kinds: &[KeyKind::Rsa, KeyKind::EcdsaP256],
    expected: "an RSA or ECDSA P-256 private key (PEM \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")",
};

impl SecretsBundle {
    /// Checks every field: tokens and secrets have the right shape, each
    /// certificate parses, each key is of a type its field accepts, and each
    /// key belongs to its certificate. Errors name the field by its YAML path.
    pub fn validate(&self) -> Result<(), PkiError> {
        if self.cluster.id.is_empty() {
            return Err(PkiError::missing("cluster.id", "the cluster id (base64 of 32 bytes)"));
        }
        check_base64_len("cluster.secret", &self.cluster.secret, &[SECRET_SIZE])?;
        check_token("secrets.bootstraptoken", &self.secrets.bootstrap_token)?;
        match &self.secrets.encryption {
            EncryptionSecret::Secretbox(s) => check_base64_len("secrets.secretboxencryptionsecret", s, &[SECRET_SIZE])?,
            EncryptionSecret::AesCbc(s) => check_base64_len("secrets.aescbcencryptionsecret", s, &[16, 24, 32])?,
        }
        check_token("trustdinfo.token", &self.trustd_info.token)?;
        let certs = &self.certs;
        check_cert_and_key("certs.etcd", &certs.etcd, &CA_POLICY)?;
        check_cert_and_key("certs.k8s", &certs.k8s, &CA_POLICY)?;
        check_cert_and_key("certs.k8saggregator", &certs.k8s_aggregator, &CA_POLICY)?;
        check_key("certs.k8sserviceaccount.key", &certs.k8s_service_account.key, &SERVICE_ACCOUNT_POLICY)?;
        check_cert_and_key("certs.os", &certs.os, &OS_POLICY)?;
        Ok(())
    }
}

fn check_base64_len(field: &str, value: &str, sizes: &[usize]) -> Result<(), PkiError> {
    let sizes_text = match sizes {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(ToString::to_string).collect();
            format!("{} or {last}", init.join(", "))
        }
    };
    let expected = format!("standard base64 of {sizes_text} bytes");
    if value.is_empty() {
        return Err(PkiError::missing(field, expected));
    }
    let decoded = STANDARD.decode(value.as_bytes()).map_err(|err| {
        PkiError::invalid(field, format!("expected {expected}; found {}", describe_base64_error(&err)))
    })?;
    if !sizes.contains(&decoded.len()) {
        return Err(PkiError::invalid(field, format!("expected {expected}; found {} bytes", decoded.len())));
    }
    Ok(())
}

/// Checks `[0-9a-z]{6}\.[0-9a-z]{16}` without echoing the secret.
pub(crate) fn check_token(field: &str, token: &str) -> Result<(), PkiError> {
    let fail = |found: String| Err(PkiError::invalid(field, format!("expected {TOKEN_EXPECTED}; found {found}")));
    if token.is_empty() {
        return Err(PkiError::missing(field, TOKEN_EXPECTED));
    }
    let len = token.chars().count();
    if len != 23 {
        return fail(format!("{len} characters"));
    }
    let bytes = token.as_bytes();
    if bytes[6] != b'.' {
        return fail("no '.' after the first 6 characters".to_owned());
    }
    let bad = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 6)
        .map(|(_, b)| *b)
        .find(|b| !(b.is_ascii_digit() || b.is_ascii_lowercase()));
    match bad {
        Some(b) if b.is_ascii_uppercase() => fail("an uppercase letter".to_owned()),
        Some(_) => fail("a character outside [0-9a-z]".to_owned()),
        None => Ok(()),
    }
}

fn key_found(err: KeyParseError) -> String {
    match err {
        KeyParseError::Malformed(found) | KeyParseError::Unsupported(found) => found,
    }
}

/// Parses the key at `field` and checks its type against `policy`.
fn check_key(field: &str, pem: &[u8], policy: &KeyPolicy) -> Result<PrivateKey, PkiError> {
    let key = parse_private_key_pem(pem)
        .map_err(|err| PkiError::invalid(field, format!("expected {}; found {}", policy.expected, key_found(err))))?;
    if !policy.kinds.contains(&key.kind()) {
        return Err(PkiError::invalid(field, format!("expected {}; found {}", policy.expected, key.describe())));
    }
    Ok(key)
}

/// Checks an OS (Talos API) CA as `certs.os` and returns its certificate DER
/// and key.
pub(crate) fn check_os_ca(pair: &CertAndKey) -> Result<(Vec<u8>, PrivateKey), PkiError> {
    check_pair("certs.os", pair, &OS_POLICY)
}

fn check_cert_and_key(prefix: &str, pair: &CertAndKey, policy: &KeyPolicy) -> Result<(), PkiError> {
    check_pair(prefix, pair, policy).map(|_| ())
}

/// Checks `<prefix>.crt` is a PEM X.509 certificate, `<prefix>.key` a key the
/// policy accepts, and that the key belongs to the certificate. Returns the
/// certificate DER and the key.
fn check_pair(prefix: &str, pair: &CertAndKey, policy: &KeyPolicy) -> Result<(Vec<u8>, PrivateKey), PkiError> {
    let crt_field = format!("{prefix}.crt");
    let key_field = format!("{prefix}.key");
    let der = parse_certificate_pem(&crt_field, &pair.crt)?;
    let key = check_key(&key_field, &pair.key, policy)?;
    // The DER parsed a moment ago; parse again to borrow from `der`.
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|err| PkiError::invalid(&crt_field, format!("expected an X.509 certificate; found {err}")))?;
    let spki = cert.public_key();
    if !key.matches_spki(spki) {
        return Err(PkiError::invalid(
            key_field,
            format!(
                "expected the private key of the certificate in {crt_field} ({}); found {} that does not match it",
                describe_spki(spki),
                key.describe()
            ),
        ));
    }
    Ok((der, key))
}

/// Decodes a PEM `CERTIFICATE` and checks the DER is one X.509 certificate.
pub(crate) fn parse_certificate_pem(field: &str, pem: &[u8]) -> Result<Vec<u8>, PkiError> {
    let expected = "a PEM \"CERTIFICATE\" block";
    let block =
        pem_decode(pem).map_err(|found| PkiError::invalid(field, format!("expected {expected}; found {found}")))?;
    if block.label != PEM_CERTIFICATE {
        return Err(PkiError::invalid(field, format!("expected {expected}; found a PEM \"{}\" block", block.label)));
    }
    match x509_parser::parse_x509_certificate(&block.der) {
        Ok(([], _)) => Ok(block.der),
        Ok((rest, _)) => Err(PkiError::invalid(
            field,
            format!("expected one DER X.509 certificate; found {} bytes of trailing data after it", rest.len()),
        )),
        Err(err) => Err(PkiError::invalid(
            field,
            format!("expected a DER X.509 certificate; found data that does not parse ({err})"),
        )),
    }
}
