//! Private keys: generation from a [`SecretRng`], PEM encoding in exactly the
//! forms Talos (siderolabs/crypto) writes, parsing of every form Talos reads,
//! and checking a key against a certificate's public key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use p256::pkcs8::{DecodePrivateKey as _, PrivateKeyInfoRef};
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _};
use rsa::traits::PublicKeyParts as _;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::PkiError;
use super::rng::{RsaRngAdapter, SecretRng, random_array};

pub(crate) const PEM_CERTIFICATE: &str = "CERTIFICATE";
pub(crate) const PEM_EC_PRIVATE: &str = "EC PRIVATE KEY";
pub(crate) const PEM_RSA_PRIVATE: &str = "RSA PRIVATE KEY";
pub(crate) const PEM_ED25519_PRIVATE: &str = "ED25519 PRIVATE KEY";
pub(crate) const PEM_PKCS8_PRIVATE: &str = "PRIVATE KEY";

/// Size of the RSA service-account key Talos generates.
pub(crate) const RSA_SERVICE_ACCOUNT_BITS: usize = 4096;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_ED448: &str = "1.3.101.113";
const OID_X25519: &str = "1.3.101.110";
const OID_P256: &str = "1.2.840.10045.3.1.7";

/// DER prefix of a PKCS#8 v1 `PrivateKeyInfo` holding an Ed25519 seed, as Go's
/// `x509.MarshalPKCS8PrivateKey` writes it (RFC 8410 §7): version 0,
/// algorithm 1.3.101.112 without parameters, and the seed as an OCTET STRING
/// wrapped in the privateKey OCTET STRING. The 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// A private key of one of the types this module works with.
#[derive(Clone)]
pub(crate) enum PrivateKey {
    EcdsaP256(p256::SecretKey),
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.describe())
    }
}

/// The kinds of key a field accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    EcdsaP256,
    Ed25519,
    Rsa,
}

impl PrivateKey {
    pub(crate) fn kind(&self) -> KeyKind {
        match self {
            PrivateKey::EcdsaP256(_) => KeyKind::EcdsaP256,
            PrivateKey::Ed25519(_) => KeyKind::Ed25519,
            PrivateKey::Rsa(_) => KeyKind::Rsa,
        }
    }

    /// "an ECDSA P-256 key", "an Ed25519 key", "an RSA-4096 key".
    pub(crate) fn describe(&self) -> String {
        match self {
            PrivateKey::EcdsaP256(_) => "an ECDSA P-256 key".to_owned(),
            PrivateKey::Ed25519(_) => "an Ed25519 key".to_owned(),
            PrivateKey::Rsa(key) => format!("an RSA-{} key", key.n().as_ref().bits()),
        }
    }

    /// Whether this key is the private half of `spki`.
    pub(crate) fn matches_spki(&self, spki: &SubjectPublicKeyInfo<'_>) -> bool {
        let alg = spki.algorithm.algorithm.to_id_string();
        let data: &[u8] = &spki.subject_public_key.data;
        match self {
            PrivateKey::EcdsaP256(sk) => {
                alg == OID_EC_PUBLIC_KEY
                    && spki_curve(spki).as_deref() == Some(OID_P256)
                    && p256::PublicKey::from_sec1_bytes(data).is_ok_and(|pk| pk == sk.public_key())
            }
            PrivateKey::Ed25519(sk) => alg == OID_ED25519 && data == sk.verifying_key().as_bytes(),
            PrivateKey::Rsa(key) => {
                if alg != OID_RSA {
                    return false;
                }
                match spki.parsed() {
                    Ok(x509_parser::public_key::PublicKey::RSA(pk)) => {
                        same_integer(pk.modulus, &key.n().as_ref().to_be_bytes())
                            && same_integer(pk.exponent, &key.e().to_be_bytes())
                    }
                    _ => false,
                }
            }
        }
    }

    /// The PEM encoding Talos uses for this key type.
    pub(crate) fn to_pem(&self) -> Result<Vec<u8>, PkiError> {
        match self {
            PrivateKey::EcdsaP256(sk) => {
                let der = sk.to_sec1_der().map_err(|err| {
                    PkiError::Crypto(format!("expected to encode a SEC1 EC private key; found error: {err}"))
                })?;
                Ok(pem_encode(PEM_EC_PRIVATE, &der))
            }
            PrivateKey::Ed25519(sk) => {
                let mut der = Vec::with_capacity(48);
                der.extend_from_slice(&ED25519_PKCS8_PREFIX);
                der.extend_from_slice(sk.as_bytes());
                Ok(pem_encode(PEM_ED25519_PRIVATE, &der))
            }
            PrivateKey::Rsa(key) => {
                let der = key.to_pkcs1_der().map_err(|err| {
                    PkiError::Crypto(format!("expected to encode a PKCS#1 RSA private key; found error: {err}"))
                })?;
                Ok(pem_encode(PEM_RSA_PRIVATE, der.as_bytes()))
            }
        }
    }
}

/// Whether two big-endian unsigned integers are equal, ignoring leading zeros.
fn same_integer(a: &[u8], b: &[u8]) -> bool {
    let strip = |x: &[u8]| -> Vec<u8> { x.iter().copied().skip_while(|b| *b == 0).collect() };
    strip(a) == strip(b)
}

/// The named curve in an EC SubjectPublicKeyInfo, as a dotted OID.
fn spki_curve(spki: &SubjectPublicKeyInfo<'_>) -> Option<String> {
    spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|oid| oid.to_id_string())
}

/// Describes the public key in a certificate, for messages.
pub(crate) fn describe_spki(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_EC_PUBLIC_KEY => match spki_curve(spki) {
            Some(curve) => format!("an ECDSA {} key", curve_name(&curve)),
            None => "an ECDSA key on an unnamed curve".to_owned(),
        },
        OID_ED25519 => "an Ed25519 key".to_owned(),
        OID_RSA => match spki.parsed() {
            Ok(pk) => format!("an RSA-{} key", pk.key_size()),
            Err(_) => "an RSA key".to_owned(),
        },
        other => describe_algorithm_oid(other),
    }
}

fn curve_name(oid: &str) -> String {
    match oid {
        OID_P256 => "P-256".to_owned(),
        "1.3.132.0.33" => "P-224".to_owned(),
        "1.3.132.0.34" => "P-384".to_owned(),
        "1.3.132.0.35" => "P-521".to_owned(),
        "1.3.132.0.10" => "secp256k1".to_owned(),
        other => format!("curve {other}"),
    }
}

fn describe_algorithm_oid(oid: &str) -> String {
    match oid {
        OID_ED448 => "an Ed448 key".to_owned(),
        OID_X25519 => "an X25519 key".to_owned(),
        "1.2.840.10040.4.1" => "a DSA key".to_owned(),
        other => format!("a key with algorithm {other}"),
    }
}

/// Curve name of an EC key in DER, found by its OID bytes (for messages only).
fn sniff_curve(der: &[u8]) -> Option<&'static str> {
    const CURVES: [(&[u8], &str); 5] = [
        (&[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07], "P-256"),
        (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x21], "P-224"),
        (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22], "P-384"),
        (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23], "P-521"),
        (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a], "secp256k1"),
    ];
    CURVES.iter().find(|(pattern, _)| der.windows(pattern.len()).any(|w| w == *pattern)).map(|(_, name)| *name)
}

// ---------------------------------------------------------------- generation

/// A P-256 key whose scalar is drawn from `rng` (rejection sampling, so every
/// valid scalar is equally likely).
pub(crate) fn generate_p256(rng: &mut dyn SecretRng) -> Result<PrivateKey, PkiError> {
    // The chance that 32 random bytes are not a valid scalar is about 2^-32,
    // so this loop practically never repeats; the bound only guards against a
    // broken generator.
    for _ in 0..64 {
        let bytes: [u8; 32] = random_array(rng)?;
        if let Ok(sk) = p256::SecretKey::from_slice(&bytes) {
            return Ok(PrivateKey::EcdsaP256(sk));
        }
    }
    Err(PkiError::Rng("expected random bytes that form a P-256 scalar; found 64 invalid draws in a row".to_owned()))
}

/// An Ed25519 key whose seed is 32 bytes from `rng`.
pub(crate) fn generate_ed25519(rng: &mut dyn SecretRng) -> Result<PrivateKey, PkiError> {
    let seed: [u8; 32] = random_array(rng)?;
    Ok(PrivateKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed)))
}

/// An RSA key with public exponent 65537 whose primes come from `rng`.
pub(crate) fn generate_rsa(rng: &mut dyn SecretRng, bits: usize) -> Result<PrivateKey, PkiError> {
    let mut adapter = RsaRngAdapter::new(rng);
    let key = rsa::RsaPrivateKey::new(&mut adapter, bits);
    adapter.finish()?;
    let key =
        key.map_err(|err| PkiError::Crypto(format!("expected to generate an RSA-{bits} key; found error: {err}")))?;
    Ok(PrivateKey::Rsa(Box::new(key)))
}

// ----------------------------------------------------------------------- PEM

/// PEM exactly as Go's `pem.EncodeToMemory` writes it: LF line endings,
/// 64-character lines, trailing newline.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> Vec<u8> {
    let body = STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let mut rest = body.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out.into_bytes()
}

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PemBlock {
    pub(crate) label: String,
    pub(crate) der: Vec<u8>,
}

/// Decodes the first PEM block in `data`. Like Go's `pem.Decode`, text before
/// the block and anything after it are ignored. Headers (`Proc-Type:` ...) and
/// so encrypted keys are not supported. The error is the "found ..." half of
/// a message.
pub(crate) fn pem_decode(data: &[u8]) -> Result<PemBlock, String> {
    let text = std::str::from_utf8(data).map_err(|_| "bytes that are not PEM text".to_owned())?;
    let mut lines = text.lines();
    let label = loop {
        let Some(line) = lines.next() else {
            return Err(if text.trim().is_empty() {
                "an empty value".to_owned()
            } else {
                "no \"-----BEGIN ...-----\" line".to_owned()
            });
        };
        if let Some(rest) = line.trim_end().strip_prefix("-----BEGIN ") {
            match rest.strip_suffix("-----") {
                Some(label) => break label.to_owned(),
                None => return Err(format!("a malformed PEM header line {line:?}")),
            }
        }
    };
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    loop {
        let Some(line) = lines.next() else {
            return Err(format!("a PEM \"{label}\" block without its \"{end}\" line"));
        };
        let line = line.trim();
        if line == end {
            break;
        }
        if line.starts_with("-----") {
            return Err(format!("a PEM \"{label}\" block ended by {line:?}"));
        }
        if line.contains(':') {
            return Err(format!(
                "a PEM \"{label}\" block with headers (encrypted or annotated keys are not supported)"
            ));
        }
        body.push_str(line);
    }
    let der = STANDARD.decode(body.as_bytes()).map_err(|err| {
        format!("a PEM \"{label}\" block whose body is not valid base64 ({})", describe_base64_error(&err))
    })?;
    if der.is_empty() {
        return Err(format!("an empty PEM \"{label}\" block"));
    }
    Ok(PemBlock { label, der })
}

/// Lowercase description of a base64 decoding error.
pub(crate) fn describe_base64_error(err: &base64::DecodeError) -> String {
    match err {
        base64::DecodeError::InvalidByte(offset, byte) => {
            format!("character {:?} at offset {offset}", char::from(*byte))
        }
        base64::DecodeError::InvalidLength(len) => {
            format!("{len} symbols, which is not a valid length")
        }
        base64::DecodeError::InvalidLastSymbol { offset, symbol, .. } => {
            format!("non-canonical last symbol {:?} at offset {offset}", char::from(*symbol))
        }
        base64::DecodeError::InvalidPadding => "incorrect padding".to_owned(),
    }
}

// ------------------------------------------------------------------- parsing

/// Why a private key could not be used, as the "found ..." half of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyParseError {
    /// Not a key at all, or a key that does not decode.
    Malformed(String),
    /// A well-formed key of a type this module does not support.
    Unsupported(String),
}

/// Parses a PEM private key in any form Talos reads: `EC PRIVATE KEY` (SEC1),
/// `RSA PRIVATE KEY` (PKCS#1), `ED25519 PRIVATE KEY` (PKCS#8 holding Ed25519)
/// and `PRIVATE KEY` (PKCS#8 holding any of the three).
pub(crate) fn parse_private_key_pem(data: &[u8]) -> Result<PrivateKey, KeyParseError> {
    let block = pem_decode(data).map_err(KeyParseError::Malformed)?;
    let label = block.label.as_str();
    match label {
        PEM_EC_PRIVATE => p256::SecretKey::from_sec1_der(&block.der).map(PrivateKey::EcdsaP256).map_err(|_| {
            match sniff_curve(&block.der) {
                Some(curve) if curve != "P-256" => KeyParseError::Unsupported(format!("an ECDSA {curve} key")),
                _ => KeyParseError::Malformed(format!(
                    "a PEM \"{label}\" block whose contents do not parse as a SEC1 P-256 private key"
                )),
            }
        }),
        PEM_RSA_PRIVATE => {
            rsa::RsaPrivateKey::from_pkcs1_der(&block.der).map(|k| PrivateKey::Rsa(Box::new(k))).map_err(|err| {
                KeyParseError::Malformed(format!(
                    "a PEM \"{label}\" block whose contents do not parse as a PKCS#1 RSA private key ({err})"
                ))
            })
        }
        PEM_ED25519_PRIVATE => match parse_pkcs8(&block.der, label)? {
            key @ PrivateKey::Ed25519(_) => Ok(key),
            other => Err(KeyParseError::Malformed(format!("a PEM \"{label}\" block holding {}", other.describe()))),
        },
        PEM_PKCS8_PRIVATE => parse_pkcs8(&block.der, label),
        other => Err(KeyParseError::Malformed(format!("a PEM \"{other}\" block"))),
    }
}

fn parse_pkcs8(der: &[u8], label: &str) -> Result<PrivateKey, KeyParseError> {
    let info = PrivateKeyInfoRef::try_from(der).map_err(|_| {
        KeyParseError::Malformed(format!("a PEM \"{label}\" block whose contents do not parse as a PKCS#8 private key"))
    })?;
    let (alg, params) = info.algorithm.oids().map_err(|_| {
        KeyParseError::Malformed(format!("a PEM \"{label}\" block with malformed algorithm parameters"))
    })?;
    let alg = alg.to_string();
    let broken = |what: &str| {
        KeyParseError::Malformed(format!("a PEM \"{label}\" block whose PKCS#8 contents do not parse as {what}"))
    };
    match alg.as_str() {
        OID_ED25519 => ed25519_dalek::SigningKey::from_pkcs8_der(der)
            .map(PrivateKey::Ed25519)
            .map_err(|_| broken("an Ed25519 key")),
        OID_EC_PUBLIC_KEY => {
            let curve = params.map(|oid| oid.to_string()).unwrap_or_default();
            if curve != OID_P256 {
                return Err(KeyParseError::Unsupported(format!("an ECDSA {} key", curve_name(&curve))));
            }
            p256::SecretKey::from_pkcs8_der(der).map(PrivateKey::EcdsaP256).map_err(|_| broken("an ECDSA P-256 key"))
        }
        OID_RSA => {
            use rsa::pkcs8::DecodePrivateKey as _;
            rsa::RsaPrivateKey::from_pkcs8_der(der)
                .map(|k| PrivateKey::Rsa(Box::new(k)))
                .map_err(|_| broken("an RSA key"))
        }
        other => Err(KeyParseError::Unsupported(describe_algorithm_oid(other))),
    }
}

/// The uncompressed SEC1 public point of a P-256 key (what goes into a certificate).
pub(crate) fn p256_public_point(sk: &p256::SecretKey) -> Vec<u8> {
    sk.public_key().to_sec1_point(false).as_bytes().to_vec()
}
