//! Tests of the PKI module against Talos's behaviour: generated bundles are
//! checked certificate by certificate with x509-parser (and openssl when it is
//! installed), and the talosctl-made stability bundle must load and write back
//! byte for byte.

mod admin;
mod generate;
mod load;
mod talosconfig;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use super::bundle::{check_token, generate_token};
use super::keys::{PrivateKey, pem_decode, pem_encode};
use super::*;

/// Keys and a certificate of other types (made with openssl, test-only) to check what loading accepts.
const RSA_CA_CRT: &str = include_str!("../testdata/rsa1024-ca.crt");
const RSA_CA_KEY_PKCS1: &str = include_str!("../testdata/rsa1024-ca-pkcs1.key");
const RSA_CA_KEY_PKCS8: &str = include_str!("../testdata/rsa1024-ca-pkcs8.key");
const P384_KEY: &str = include_str!("../testdata/p384.key");

const OID_KEY_USAGE: &str = "2.5.29.15";
const OID_EXT_KEY_USAGE: &str = "2.5.29.37";
const OID_BASIC_CONSTRAINTS: &str = "2.5.29.19";
const OID_SKID: &str = "2.5.29.14";
const OID_AKID: &str = "2.5.29.35";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ED25519: &str = "1.3.101.112";

/// `now()` as a unix time, for `openssl verify -attime`.
const ATTIME: &str = "1763790001";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_763_790_000) // 2025-11-22T05:40:00Z
}

fn seeded(n: u8) -> SeededSecretRng {
    SeededSecretRng::new([n; 32])
}

fn ok<T>(r: Result<T, PkiError>) -> T {
    r.unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

/// One RSA-4096 bundle shared by the tests (key generation is the slow part).
fn bundle_1_14() -> &'static SecretsBundle {
    static BUNDLE: OnceLock<SecretsBundle> = OnceLock::new();
    BUNDLE.get_or_init(|| ok(SecretsBundle::generate(&mut seeded(1), now(), Contract::V1_14)))
}

/// A contract-1.6 bundle: ECDSA service-account key, cheap to make.
fn bundle_1_6() -> SecretsBundle {
    ok(SecretsBundle::generate(&mut seeded(6), now(), Contract::new(1, 6)))
}

/// The talosctl-made stability bundle in `../shared`.
fn stability_path() -> PathBuf {
    crate::testsupport::shared_dir().join("talos-schema/stability/secrets.yaml")
}

fn stability_text() -> Option<String> {
    let path = stability_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(err) => {
            eprintln!(
                "SKIPPED: talosctl stability bundle {} not readable ({err}); talosctl compatibility not checked",
                path.display()
            );
            None
        }
    }
}

fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

fn der_of(pem: &[u8]) -> Vec<u8> {
    pem_decode(pem).unwrap_or_else(|e| panic!("bad PEM: {e}")).der
}

fn with_cert<R>(pem: &[u8], f: impl FnOnce(&X509Certificate<'_>) -> R) -> R {
    let der = der_of(pem);
    let (rest, cert) = x509_parser::parse_x509_certificate(&der).unwrap_or_else(|e| panic!("{e}"));
    assert!(rest.is_empty());
    f(&cert)
}

fn parse_key(pem: &[u8]) -> PrivateKey {
    keys::parse_private_key_pem(pem).unwrap_or_else(|e| panic!("{e:?}"))
}

/// Verifies `cert`'s signature with `issuer_spki` (ECDSA P-256/SHA-256 or Ed25519).
fn signature_verifies(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    use p256::ecdsa::signature::Verifier as _;
    let tbs = cert.tbs_certificate.as_ref();
    let sig: &[u8] = &cert.signature_value.data;
    let spki = issuer.public_key();
    let key: &[u8] = &spki.subject_public_key.data;
    match cert.signature_algorithm.algorithm.to_id_string().as_str() {
        OID_ECDSA_SHA256 => {
            let Ok(vk) = p256::ecdsa::VerifyingKey::from_sec1_bytes(key) else {
                return false;
            };
            let Ok(sig) = p256::ecdsa::Signature::from_der(sig) else {
                return false;
            };
            vk.verify(tbs, &sig).is_ok()
        }
        OID_ED25519 => {
            let Ok(key): Result<[u8; 32], _> = key.try_into() else {
                return false;
            };
            let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&key) else {
                return false;
            };
            let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
                return false;
            };
            vk.verify_strict(tbs, &sig).is_ok()
        }
        _ => false,
    }
}

/// (oid, critical, value) of each extension, the SKID/AKID value blanked.
fn extension_shape(cert: &X509Certificate<'_>) -> Vec<(String, bool, Vec<u8>)> {
    cert.extensions()
        .iter()
        .map(|e| {
            let oid = e.oid.to_id_string();
            let value = if oid == OID_SKID || oid == OID_AKID { Vec::new() } else { e.value.to_vec() };
            (oid, e.critical, value)
        })
        .collect()
}

fn skid(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions().iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
        _ => None,
    })
}

/// Checks one generated CA against Talos's template.
fn check_ca(name: &str, pair: &CertAndKey, subject: &str, sig_oid: &str) {
    with_cert(&pair.crt, |cert| {
        assert_eq!(cert.version().0, 2, "{name}: X.509 v3");
        let serial = cert.raw_serial();
        let serial = serial.strip_prefix(&[0u8]).unwrap_or(serial);
        assert!(serial.len() <= 16, "{name}: serial {} bytes, must be < 2^128", serial.len());
        assert_eq!(cert.signature_algorithm.algorithm.to_id_string(), sig_oid, "{name}");
        assert_eq!(cert.subject().to_string(), subject, "{name}: subject");
        assert_eq!(cert.issuer().as_raw(), cert.subject().as_raw(), "{name}: self-issued");
        let validity = cert.validity();
        assert_eq!(validity.not_before.timestamp(), 1_763_790_000, "{name}: notBefore = now");
        assert_eq!(validity.not_after.timestamp() - validity.not_before.timestamp(), 87_600 * 3600, "{name}: 10 years");
        let exts = cert.extensions();
        let oids: Vec<String> = exts.iter().map(|e| e.oid.to_id_string()).collect();
        assert_eq!(oids, [OID_KEY_USAGE, OID_EXT_KEY_USAGE, OID_BASIC_CONSTRAINTS, OID_SKID], "{name}: Go's order");
        for ext in exts {
            match ext.parsed_extension() {
                ParsedExtension::KeyUsage(ku) => {
                    assert!(ext.critical);
                    assert!(ku.digital_signature() && ku.key_cert_sign(), "{name}: {ku}");
                    assert_eq!(ku.flags, 1 | 1 << 5, "{name}: only digitalSignature and keyCertSign");
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    assert!(!ext.critical);
                    assert!(eku.server_auth && eku.client_auth && !eku.any && eku.other.is_empty(), "{name}");
                    assert!(!eku.code_signing && !eku.email_protection && !eku.time_stamping && !eku.ocsp_signing);
                }
                ParsedExtension::BasicConstraints(bc) => {
                    assert!(ext.critical && bc.ca && bc.path_len_constraint.is_none(), "{name}: {bc:?}");
                }
                ParsedExtension::SubjectKeyIdentifier(id) => {
                    assert!(!ext.critical);
                    assert_eq!(id.0.len(), 20, "{name}: 20-byte SKID");
                }
                other => panic!("{name}: unexpected extension {other:?}"),
            }
        }
        assert!(signature_verifies(cert, cert), "{name}: self-signature");
        assert!(parse_key(&pair.key).matches_spki(cert.public_key()), "{name}: key matches");
    });
}

// ----------------------------------------------------------------- contract

#[test]
fn contracts_parse_and_compare() {
    assert_eq!(Contract::parse("v1.14.0-rc.1"), Some(Contract::V1_14));
    assert_eq!(Contract::parse("1.7"), Some(Contract::new(1, 7)));
    assert!(Contract::parse("1").is_none() && Contract::parse("v1.x").is_none() && Contract::parse("").is_none());
    assert!(Contract::new(1, 7).uses_rsa_service_account_key() && !Contract::new(1, 6).uses_rsa_service_account_key());
    assert!(Contract::new(1, 3).uses_secretbox() && !Contract::new(1, 2).uses_secretbox());
    assert!(Contract::new(2, 0) > Contract::V1_14);
    assert_eq!(Contract::default().to_string(), "v1.14");
}
