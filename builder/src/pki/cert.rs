//! Certificates: the self-signed CAs of a Talos secrets bundle and the Talos
//! API client certificate, laid out like Go's `x509.CreateCertificate` output
//! for the templates in siderolabs/crypto (same fields, same extension order).

use std::time::{Duration, SystemTime};

use p256::ecdsa::signature::Signer as _;
use rcgen::string::PrintableString;
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, PublicKeyData, SerialNumber, SignatureAlgorithm, SigningKey,
};
use time::OffsetDateTime;

use super::PkiError;
use super::bundle::{CertAndKey, check_os_ca};
use super::keys::{PEM_CERTIFICATE, PrivateKey, p256_public_point, pem_encode};
use super::rng::{SecretRng, random_array};

/// Validity of the bundle's CAs (`CAValidityTime` in Talos: 87600 h).
pub const CA_VALIDITY: Duration = Duration::from_secs(87_600 * 3600);

/// Validity of the talosconfig client certificate
/// (`TalosAPIDefaultCertificateValidityDuration`: 365 × 24 h).
pub const CLIENT_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The role in the subject of the admin client certificate.
pub const ADMIN_ROLE: &str = "os:admin";

const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const OID_SUBJECT_KEY_ID: &[u64] = &[2, 5, 29, 14];
const OID_AUTHORITY_KEY_ID: &[u64] = &[2, 5, 29, 35];

/// A private key that can sign certificates through rcgen.
///
/// Both algorithms sign deterministically (Ed25519 by design, ECDSA with
/// RFC 6979 nonces), so certificates depend only on the [`SecretRng`] and `now`.
pub(crate) enum Signer {
    P256 { key: p256::ecdsa::SigningKey, public: Vec<u8> },
    Ed25519 { key: ed25519_dalek::SigningKey, public: [u8; 32] },
}

impl Signer {
    /// A signer for `key`; RSA keys are not used for signing here.
    pub(crate) fn new(key: &PrivateKey) -> Result<Self, PkiError> {
        match key {
            PrivateKey::EcdsaP256(sk) => {
                Ok(Signer::P256 { key: p256::ecdsa::SigningKey::from(sk), public: p256_public_point(sk) })
            }
            PrivateKey::Ed25519(sk) => Ok(Signer::Ed25519 { key: sk.clone(), public: sk.verifying_key().to_bytes() }),
            PrivateKey::Rsa(_) => {
                Err(PkiError::Crypto("expected an ECDSA P-256 or Ed25519 signing key; found an RSA key".to_owned()))
            }
        }
    }
}

impl PublicKeyData for Signer {
    fn der_bytes(&self) -> &[u8] {
        match self {
            Signer::P256 { public, .. } => public,
            Signer::Ed25519 { public, .. } => public,
        }
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self {
            Signer::P256 { .. } => &rcgen::PKCS_ECDSA_P256_SHA256,
            Signer::Ed25519 { .. } => &rcgen::PKCS_ED25519,
        }
    }
}

impl SigningKey for Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            Signer::P256 { key, .. } => {
                let sig: p256::ecdsa::Signature = key.try_sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            Signer::Ed25519 { key, .. } => Ok(ed25519_dalek::Signer::sign(key, msg).to_bytes().to_vec()),
        }
    }
}

/// Years an X.509 time can hold (GeneralizedTime has four digits; rcgen
/// panics outside this range, so it is checked here).
const X509_YEARS: std::ops::RangeInclusive<i32> = 0..=9999;

/// `now` as a whole-second UTC time (X.509 times have no fractions; Go drops
/// them the same way). Never panics: out-of-range times are errors.
pub(crate) fn to_datetime(t: SystemTime) -> Result<OffsetDateTime, PkiError> {
    let out_of_range =
        || PkiError::Crypto("expected a time between years 0 and 9999; found one out of that range".to_owned());
    let secs: i64 = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok(),
        Err(before) => i64::try_from(before.duration().as_secs()).ok().map(|s| -s),
    }
    .ok_or_else(out_of_range)?;
    let dt = OffsetDateTime::from_unix_timestamp(secs).map_err(|_| out_of_range())?;
    if !X509_YEARS.contains(&dt.year()) {
        return Err(out_of_range());
    }
    Ok(dt)
}

/// `t + d`, as long as the result is still a valid X.509 time.
fn add(t: OffsetDateTime, d: Duration) -> Result<OffsetDateTime, PkiError> {
    let too_late =
        || PkiError::Crypto("expected a certificate expiry before year 10000; found one after it".to_owned());
    let d = time::Duration::try_from(d).map_err(|_| too_late())?;
    t.checked_add(d).filter(|end| X509_YEARS.contains(&end.year())).ok_or_else(too_late)
}

/// `O=<org>` as Go's `pkix.Name` encodes it: PrintableString when the value
/// fits that alphabet, UTF8String otherwise.
fn organization(org: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    let value = match PrintableString::try_from(org) {
        Ok(p) => DnValue::PrintableString(p),
        Err(_) => DnValue::Utf8String(org.to_owned()),
    };
    dn.push(DnType::OrganizationName, value);
    dn
}

/// A random serial below 2^128 (siderolabs/crypto `NewSerialNumber`).
fn random_serial(rng: &mut dyn SecretRng) -> Result<SerialNumber, PkiError> {
    let bytes: [u8; 16] = random_array(rng)?;
    Ok(SerialNumber::from_slice(&bytes))
}

fn rcgen_error(what: &str, err: rcgen::Error) -> PkiError {
    PkiError::Crypto(format!("expected to {what}; found error: {err}"))
}

/// A self-signed CA like siderolabs/crypto's `NewSelfSignedCertificateAuthority`:
/// subject `O=<org>` (empty when `org` is `None`: that function ignores the
/// common name the aggregator CA asks for), validity `[now, now+87600h]`,
/// random serial, random 20-byte SubjectKeyIdentifier, then extensions in Go's
/// order: KeyUsage (critical: digitalSignature, keyCertSign), ExtKeyUsage
/// (serverAuth, clientAuth), BasicConstraints (critical, CA), SubjectKeyIdentifier.
/// Returns the certificate PEM.
pub(crate) fn self_signed_ca(
    key: &PrivateKey,
    org: Option<&str>,
    rng: &mut dyn SecretRng,
    now: SystemTime,
) -> Result<Vec<u8>, PkiError> {
    let signer = Signer::new(key)?;
    let not_before = to_datetime(now)?;
    let serial = random_serial(rng)?;
    let skid: [u8; 20] = random_array(rng)?;

    let mut params = CertificateParams::default();
    params.not_before = not_before;
    params.not_after = add(not_before, CA_VALIDITY)?;
    params.serial_number = Some(serial);
    params.distinguished_name = org.map(organization).unwrap_or_default();
    params.is_ca = IsCa::NoCa; // BasicConstraints and SKID are written below, in Go's order
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let mut basic_constraints =
        // SEQUENCE { BOOLEAN TRUE }: cA without a path length
        CustomExtension::from_oid_content(OID_BASIC_CONSTRAINTS, vec![0x30, 0x03, 0x01, 0x01, 0xff]);
    basic_constraints.set_criticality(true);
    let mut skid_der = vec![0x04, 0x14];
    skid_der.extend_from_slice(&skid);
    params.custom_extensions = vec![basic_constraints, CustomExtension::from_oid_content(OID_SUBJECT_KEY_ID, skid_der)];

    let cert = params.self_signed(&signer).map_err(|err| rcgen_error("sign a CA certificate", err))?;
    Ok(pem_encode(PEM_CERTIFICATE, cert.der()))
}

/// A client certificate for the Talos API like siderolabs/crypto's
/// `NewKeyPair` + `NewCertificateFromCSR` with Talos's admin options: a new
/// Ed25519 key, subject `O=<role>`, validity `[now, now+validity]`, random
/// serial, KeyUsage (critical) digitalSignature, ExtKeyUsage clientAuth, and an
/// AuthorityKeyIdentifier copied from the CA's SubjectKeyIdentifier (no SKID,
/// no BasicConstraints: Go adds neither for a non-CA template).
///
/// `ca_der` must be the CA certificate of `ca_key` (checked by the caller).
/// Returns (certificate PEM, key PEM).
fn client_cert(
    ca_der: &[u8],
    ca_key: &PrivateKey,
    role: &str,
    validity: Duration,
    rng: &mut dyn SecretRng,
    now: SystemTime,
) -> Result<(Vec<u8>, Vec<u8>), PkiError> {
    let ca_signer = Signer::new(ca_key)?;
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der)
        .map_err(|err| PkiError::Crypto(format!("expected a parseable CA certificate; found error: {err}")))?;
    let ca_skid = ca.extensions().iter().find_map(|ext| match ext.parsed_extension() {
        x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
        _ => None,
    });
    let ca_subject = ca.tbs_certificate.subject.as_raw().to_vec();

    let key = super::keys::generate_ed25519(rng)?;
    let leaf_signer = Signer::new(&key)?;
    let not_before = to_datetime(now)?;
    let serial = random_serial(rng)?;

    let mut params = CertificateParams::default();
    params.not_before = not_before;
    params.not_after = add(not_before, validity)?;
    params.serial_number = Some(serial);
    params.distinguished_name = organization(role);
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if let Some(skid) = ca_skid.filter(|id| !id.is_empty()) {
        // AuthorityKeyIdentifier ::= SEQUENCE { [0] IMPLICIT KeyIdentifier }
        // Short-form DER lengths only: the identifier must fit in 125 bytes.
        let len = match u8::try_from(skid.len()) {
            Ok(len) if len <= 125 => len,
            _ => {
                return Err(PkiError::invalid(
                    "certs.os.crt",
                    format!("expected a subject key identifier of at most 125 bytes; found {} bytes", skid.len()),
                ));
            }
        };
        let mut akid = vec![0x30, len + 2, 0x80, len];
        akid.extend_from_slice(&skid);
        params.custom_extensions = vec![CustomExtension::from_oid_content(OID_AUTHORITY_KEY_ID, akid)];
    }

    let issuer = Issuer::from_ca_cert_der(&ca_der.into(), &ca_signer)
        .map_err(|err| rcgen_error("read the CA certificate as an issuer", err))?;
    let cert =
        params.signed_by(&leaf_signer, &issuer).map_err(|err| rcgen_error("sign the client certificate", err))?;

    // rcgen re-encodes the issuer name; make sure it is byte-identical to the
    // CA's subject, or chain building by name would fail.
    let (_, leaf) = x509_parser::parse_x509_certificate(cert.der())
        .map_err(|err| PkiError::Crypto(format!("expected to parse the new client certificate; found error: {err}")))?;
    if leaf.tbs_certificate.issuer.as_raw() != ca_subject.as_slice() {
        return Err(PkiError::Crypto(
            "expected the client certificate's issuer to equal the CA subject byte for byte; found a different encoding"
                .to_owned(),
        ));
    }

    Ok((pem_encode(PEM_CERTIFICATE, cert.der()), key.to_pem()?))
}

/// Issues the `talosctl gen config` admin client certificate (`O=os:admin`,
/// Ed25519, clientAuth only, valid for 365 days from `now`) from the bundle's
/// OS CA. The CA is validated first; errors name `certs.os.crt`/`certs.os.key`.
pub fn generate_admin_cert(
    os_ca: &CertAndKey,
    rng: &mut dyn SecretRng,
    now: SystemTime,
) -> Result<CertAndKey, PkiError> {
    generate_client_cert(os_ca, ADMIN_ROLE, CLIENT_CERT_VALIDITY, rng, now)
}

/// Like [`generate_admin_cert`] with another Talos role (`os:reader`,
/// `os:operator`, ...) and validity.
pub fn generate_client_cert(
    os_ca: &CertAndKey,
    role: &str,
    validity: Duration,
    rng: &mut dyn SecretRng,
    now: SystemTime,
) -> Result<CertAndKey, PkiError> {
    let (ca_der, ca_key) = check_os_ca(os_ca)?;
    let (crt, key) = client_cert(&ca_der, &ca_key, role, validity, rng, now)?;
    Ok(CertAndKey { crt, key })
}
