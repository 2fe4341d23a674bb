//! Secure Boot key material and the PKCS#7 signatures made with it.
//!
//! Talos signs sd-boot, the UKI and the sd-boot auto-enrollment databases with one RSA key and its self-signed
//! certificate (`talosctl gen secureboot uki`: RSA-4096, sha512WithRSAEncryption, subject `O=<common name>` only
//! because siderolabs/crypto's `NewSelfSignedCertificateAuthority` ignores the common name, random 128-bit serial,
//! random 20-byte subject key identifier, 87600 h validity, KeyUsage digitalSignature+keyCertSign, BasicConstraints
//! CA). [`SigningKey`] generates such a key from the injectable [`SecretRng`] or loads one from PEM files, writes
//! files with mode 0600, and never prints the private key.
//!
//! One deliberate difference: Talos's certificate inherits ExtKeyUsage serverAuth+clientAuth from the TLS CA
//! template, which firmware ignores but `sbverify` rejects (it checks the S/MIME signing purpose and only excuses a
//! code-signing-only EKU). Generated certificates here carry ExtKeyUsage codeSigning instead, so `sbverify --cert`
//! accepts the signatures; keys made by `talosctl gen secureboot uki` can still be loaded and used.
//!
//! Signatures are PKCS#1 v1.5 over SHA-256 (deterministic), wrapped in a PKCS#7 `SignedData` laid out like
//! Talos's signer (go-uefi `pkcs7.SignPKCS7`): signed attributes contentType, signingTime, messageDigest. The
//! signing time is an explicit input (the build epoch) instead of the clock, so the same key and input always give
//! the same bytes.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng as _, TryCryptoRng, TryRng};
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _, EncodeRsaPublicKey as _};
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest as _, Sha256, Sha512};

use super::der::{self, oid, tag};
use crate::pki::{PkiError, SecretRng};

/// RSA modulus size of the UKI signing key (`talosctl gen secureboot uki`).
pub const UKI_SIGNING_KEY_BITS: usize = 4096;
/// Default subject of the UKI signing certificate (`--common-name` default of `talosctl gen secureboot uki`).
pub const DEFAULT_UKI_COMMON_NAME: &str = "Test UKI Signing Key";
/// Validity of the signing certificate (`secrets.CAValidityTime`, 87600 h).
pub const SIGNING_CERT_VALIDITY: Duration = Duration::from_secs(87_600 * 3600);

const PEM_CERTIFICATE: &str = "CERTIFICATE";
const PEM_RSA_PRIVATE: &str = "RSA PRIVATE KEY";
const PEM_PRIVATE: &str = "PRIVATE KEY";

/// What can go wrong with Secure Boot keys, signatures and enrollment data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecureBootError {
    /// The private key is unusable (bad PEM, wrong type, does not match the certificate).
    #[error("signing key: {0}")]
    Key(String),
    /// The certificate is unusable.
    #[error("signing certificate: {0}")]
    Certificate(String),
    /// The PE image to sign is malformed or already signed.
    #[error("pe image: {0}")]
    Image(String),
    /// Enrollment data (`.auth`, signature lists) is malformed.
    #[error("enrollment data: {0}")]
    Enrollment(String),
    /// The random number generator failed.
    #[error("cannot get random bytes for the signing key")]
    Rng(#[source] PkiError),
    /// Reading a key or certificate file failed.
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing a key, certificate or enrollment file failed.
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Refusing to replace an existing key or certificate file.
    #[error("{}: expected no existing file; found one (remove it to generate new keys)", .path.display())]
    Exists { path: PathBuf },
}

/// A GUID, stored in the order its string form reads (RFC 4122); UEFI structures use
/// [`Guid::to_efi_bytes`] (first three fields little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid([u8; 16]);

impl Guid {
    /// `EFI_GLOBAL_VARIABLE` (vendor of `PK` and `KEK`).
    pub const EFI_GLOBAL_VARIABLE: Guid = Guid::from_u128(0x8be4df61_93ca_11d2_aa0d_00e098032b8c);
    /// `EFI_IMAGE_SECURITY_DATABASE_GUID` (vendor of `db`).
    pub const IMAGE_SECURITY_DATABASE: Guid = Guid::from_u128(0xd719b2cb_3d3a_4596_a3bc_dad00e67656f);
    /// `EFI_CERT_X509_GUID` (signature list type for DER certificates).
    pub const CERT_X509: Guid = Guid::from_u128(0xa5c059a1_94e4_4aa7_87b5_ab155c2bf072);
    /// `EFI_CERT_TYPE_PKCS7_GUID` (`WIN_CERTIFICATE_UEFI_GUID` type of `EFI_VARIABLE_AUTHENTICATION_2`).
    pub const CERT_TYPE_PKCS7: Guid = Guid::from_u128(0x4aafd29d_68df_49ee_8aa9_347d375665a7);
    /// Signature owner Talos uses for the well-known Microsoft certificates.
    pub const MICROSOFT_OWNER: Guid = Guid::from_u128(0x77fa9abd_0359_4d32_bd60_28f4e78f784b);
    /// RFC 4122 name space for X.500 names (Go `uuid.NameSpaceX500`).
    pub const NAMESPACE_X500: Guid = Guid::from_u128(0x6ba7b814_9dad_11d1_80b4_00c04fd430c8);

    /// The GUID whose string form is the hex of `value`.
    pub const fn from_u128(value: u128) -> Guid {
        Guid(value.to_be_bytes())
    }

    /// The bytes in string order.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The 16 bytes as UEFI stores an `EFI_GUID`: `Data1` (u32), `Data2`, `Data3` (u16) little-endian, `Data4` as is.
    pub fn to_efi_bytes(&self) -> [u8; 16] {
        let b = self.0;
        [b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]
    }

    /// Inverse of [`Guid::to_efi_bytes`].
    pub fn from_efi_bytes(b: [u8; 16]) -> Guid {
        Guid([b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]])
    }

    /// A name-based UUID like Go's `uuid.NewHash(sha256.New(), space, data, 4)`: the first 16 bytes of
    /// SHA-256(space ‖ data) with the version nibble set to 4 and the RFC 4122 variant.
    pub fn sha256_name(space: Guid, data: &[u8]) -> Guid {
        let digest = Sha256::new().chain_update(space.0).chain_update(data).finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Guid(b)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = |r: std::ops::Range<usize>| self.0[r].iter().map(|b| format!("{b:02x}")).collect::<String>();
        write!(f, "{}-{}-{}-{}-{}", h(0..4), h(4..6), h(6..8), h(8..10), h(10..16))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// The RSA signing key and its certificate. `Debug` shows the certificate subject and serial, never the key.
#[derive(Clone)]
pub struct SigningKey {
    key: RsaPrivateKey,
    cert_der: Vec<u8>,
    /// The certificate's issuer `Name` (DER), for `IssuerAndSerialNumber`.
    issuer: Vec<u8>,
    /// The certificate's serial number (INTEGER content octets).
    serial: Vec<u8>,
    subject: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("subject", &self.subject)
            .field("serial", &hex(&self.serial))
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Paths written by [`SigningKey::write_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyFiles {
    /// `<prefix>-signing-key.pem` (PKCS#1 `RSA PRIVATE KEY`).
    pub key_pem: PathBuf,
    /// `<prefix>-signing-cert.pem`.
    pub cert_pem: PathBuf,
    /// `<prefix>-signing-cert.der`.
    pub cert_der: PathBuf,
}

impl SigningKey {
    /// Generates a key and self-signed certificate like `talosctl gen secureboot uki --common-name <common_name>`,
    /// valid from `not_before` (whole seconds) for [`SIGNING_CERT_VALIDITY`]. Randomness (serial, subject key id,
    /// primes) comes only from `rng`, so a seeded generator and a fixed time give the same key and certificate.
    pub fn generate(
        rng: &mut dyn SecretRng,
        common_name: &str,
        bits: usize,
        not_before: SystemTime,
    ) -> Result<SigningKey, SecureBootError> {
        let mut serial = [0u8; 16];
        let mut skid = [0u8; 20];
        fill(rng, &mut serial)?;
        fill(rng, &mut skid)?;
        let mut adapter = RsaRngAdapter { inner: rng, failure: None, fallback: None };
        let key = RsaPrivateKey::new(&mut adapter, bits);
        if let Some(err) = adapter.failure {
            return Err(err);
        }
        let key =
            key.map_err(|e| SecureBootError::Key(format!("expected to generate an rsa-{bits} key; found error: {e}")))?;
        let cert_der = self_signed_certificate(&key, common_name, &serial, &skid, not_before)?;
        SigningKey::from_parts(key, cert_der)
    }

    /// Loads a private key (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY` PEM) and its certificate (PEM), and
    /// checks that they belong together.
    pub fn from_pem(key_pem: &[u8], cert_pem: &[u8]) -> Result<SigningKey, SecureBootError> {
        let (label, der) = pem_decode(key_pem).map_err(SecureBootError::Key)?;
        let key = match label.as_str() {
            PEM_RSA_PRIVATE => RsaPrivateKey::from_pkcs1_der(&der)
                .map_err(|e| SecureBootError::Key(format!("expected a pkcs#1 rsa private key; found error: {e}")))?,
            PEM_PRIVATE => RsaPrivateKey::from_pkcs8_der(&der)
                .map_err(|e| SecureBootError::Key(format!("expected a pkcs#8 rsa private key; found error: {e}")))?,
            other => {
                return Err(SecureBootError::Key(format!(
                    "expected a pem \"{PEM_RSA_PRIVATE}\" or \"{PEM_PRIVATE}\" block; found \"{other}\""
                )));
            }
        };
        let (label, cert_der) = pem_decode(cert_pem).map_err(SecureBootError::Certificate)?;
        if label != PEM_CERTIFICATE {
            return Err(SecureBootError::Certificate(format!(
                "expected a pem \"{PEM_CERTIFICATE}\" block; found \"{label}\""
            )));
        }
        SigningKey::from_parts(key, cert_der)
    }

    /// [`SigningKey::from_pem`] on the contents of two files.
    pub fn load(key_path: &Path, cert_path: &Path) -> Result<SigningKey, SecureBootError> {
        let read =
            |path: &Path| std::fs::read(path).map_err(|source| SecureBootError::Read { path: path.into(), source });
        SigningKey::from_pem(&read(key_path)?, &read(cert_path)?)
    }

    fn from_parts(key: RsaPrivateKey, cert_der: Vec<u8>) -> Result<SigningKey, SecureBootError> {
        let (rest, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| SecureBootError::Certificate(format!("expected a der x.509 certificate; found error: {e}")))?;
        if !rest.is_empty() {
            return Err(SecureBootError::Certificate(format!(
                "expected one certificate; found {} trailing bytes",
                rest.len()
            )));
        }
        let public = key
            .to_public_key()
            .to_pkcs1_der()
            .map_err(|e| SecureBootError::Key(format!("expected to encode the public key; found error: {e}")))?;
        if cert.public_key().subject_public_key.data.as_ref() != public.as_bytes() {
            return Err(SecureBootError::Key(
                "expected the private key of the certificate's public key; found a different key".to_owned(),
            ));
        }
        let issuer = cert.tbs_certificate.issuer.as_raw().to_vec();
        let serial = cert.tbs_certificate.raw_serial().to_vec();
        let subject = cert.tbs_certificate.subject.to_string();
        Ok(SigningKey { key, cert_der, issuer, serial, subject })
    }

    /// The certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate as Go's `pem.EncodeToMemory` writes it (64-character lines); Talos derives the enrollment
    /// owner GUID from exactly these bytes.
    pub fn cert_pem(&self) -> String {
        pem_encode(PEM_CERTIFICATE, &self.cert_der)
    }

    /// The private key as PKCS#1 PEM (`RSA PRIVATE KEY`), the format Talos writes. Handle with care.
    pub fn key_pem(&self) -> Result<String, SecureBootError> {
        let der = self
            .key
            .to_pkcs1_der()
            .map_err(|e| SecureBootError::Key(format!("expected to encode the private key; found error: {e}")))?;
        Ok(pem_encode(PEM_RSA_PRIVATE, der.as_bytes()))
    }

    /// The certificate subject, e.g. `O=Test UKI Signing Key`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Writes `<prefix>-signing-key.pem`, `<prefix>-signing-cert.pem` and `<prefix>-signing-cert.der` into `dir`
    /// (created 0700 if missing), each with mode 0600, refusing to replace existing files (like `talosctl gen
    /// secureboot uki`; Talos uses the prefix `uki`).
    pub fn write_files(&self, dir: &Path, prefix: &str) -> Result<SigningKeyFiles, SecureBootError> {
        let files = SigningKeyFiles {
            key_pem: dir.join(format!("{prefix}-signing-key.pem")),
            cert_pem: dir.join(format!("{prefix}-signing-cert.pem")),
            cert_der: dir.join(format!("{prefix}-signing-cert.der")),
        };
        for path in [&files.key_pem, &files.cert_pem, &files.cert_der] {
            if path.symlink_metadata().is_ok() {
                return Err(SecureBootError::Exists { path: path.clone() });
            }
        }
        create_private_dir(dir)?;
        let key_pem = self.key_pem()?;
        write_private_file(&files.cert_pem, self.cert_pem().as_bytes(), false)?;
        write_private_file(&files.cert_der, &self.cert_der, false)?;
        write_private_file(&files.key_pem, key_pem.as_bytes(), false)?;
        Ok(files)
    }

    /// RSASSA-PKCS1-v1_5 signature of a SHA-256 digest (deterministic).
    pub(crate) fn sign_sha256(&self, digest: &[u8]) -> Result<Vec<u8>, SecureBootError> {
        let digest_info = der::seq(&[&der::algorithm(oid::SHA256), &der::octet_string(digest)]);
        self.key
            .sign(Pkcs1v15Sign::new_unprefixed(), &digest_info)
            .map_err(|e| SecureBootError::Key(format!("expected to sign with the rsa key; found error: {e}")))
    }

    /// A PKCS#7 `SignedData` (RFC 2315, version 1) by this key: digest SHA-256, the certificate included, one
    /// `SignerInfo` with signed attributes contentType = `content_type` (a DER OID), signingTime =
    /// `signing_time`, messageDigest = `message_digest`. `content` is the encapsulated content TLV, or `None` for a
    /// detached signature.
    pub(crate) fn signed_data(
        &self,
        content_type: &[u8],
        content: Option<&[u8]>,
        message_digest: &[u8],
        signing_time: u64,
    ) -> Result<Vec<u8>, SecureBootError> {
        let time = der::time(signing_time).ok_or_else(|| {
            SecureBootError::Key(format!("expected a signing time before year 10000; found epoch {signing_time}"))
        })?;
        let mut attributes = [
            der::seq(&[oid::CONTENT_TYPE, &der::cons(tag::SET, &[content_type])]),
            der::seq(&[oid::SIGNING_TIME, &der::cons(tag::SET, &[&time])]),
            der::seq(&[oid::MESSAGE_DIGEST, &der::cons(tag::SET, &[&der::octet_string(message_digest)])]),
        ];
        // DER orders SET OF by encoding.
        attributes.sort();
        let attributes = attributes.concat();
        let signature = self.sign_sha256(&Sha256::digest(der::tlv(tag::SET, &attributes)))?;
        let signer_info = der::seq(&[
            &der::small_integer(1),
            &der::seq(&[&self.issuer, &der::tlv(tag::INTEGER, &self.serial)]),
            &der::algorithm(oid::SHA256),
            &der::tlv(tag::context(0), &attributes),
            &der::algorithm(oid::RSA_ENCRYPTION),
            &der::octet_string(&signature),
        ]);
        let content_info = match content {
            Some(content) => der::seq(&[content_type, &der::cons(tag::context(0), &[content])]),
            None => der::seq(&[content_type]),
        };
        Ok(der::seq(&[
            &der::small_integer(1),
            &der::cons(tag::SET, &[&der::algorithm(oid::SHA256)]),
            &content_info,
            &der::cons(tag::context(0), &[&self.cert_der]),
            &der::cons(tag::SET, &[&signer_info]),
        ]))
    }
}

fn fill(rng: &mut dyn SecretRng, dst: &mut [u8]) -> Result<(), SecureBootError> {
    rng.try_fill_bytes(dst).map_err(SecureBootError::Rng)
}

/// Feeds a [`SecretRng`] to `rsa`'s infallible `rand_core` traits. The first failure is kept and the adapter
/// switches to a fixed stream so prime search still ends; the caller then discards the key and reports the error.
struct RsaRngAdapter<'a> {
    inner: &'a mut dyn SecretRng,
    failure: Option<SecureBootError>,
    fallback: Option<ChaCha20Rng>,
}

impl TryRng for RsaRngAdapter<'_> {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        if let Some(fallback) = self.fallback.as_mut() {
            fallback.fill_bytes(dst);
        } else if let Err(e) = self.inner.try_fill_bytes(dst) {
            self.failure = Some(SecureBootError::Rng(e));
            let mut fallback = ChaCha20Rng::from_seed([0u8; 32]);
            fallback.fill_bytes(dst);
            self.fallback = Some(fallback);
        }
        Ok(())
    }
}

impl TryCryptoRng for RsaRngAdapter<'_> {}

/// rcgen's view of the RSA key: SHA-512 PKCS#1 v1.5 signatures, as Go's `x509.SHA512WithRSA`.
struct CertSigner<'a> {
    key: &'a RsaPrivateKey,
    public: Vec<u8>,
}

impl rcgen::PublicKeyData for CertSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA512
    }
}

impl rcgen::SigningKey for CertSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let digest_info = der::seq(&[&der::algorithm(oid::SHA512), &der::octet_string(&Sha512::digest(msg))]);
        self.key.sign(Pkcs1v15Sign::new_unprefixed(), &digest_info).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// The self-signed certificate siderolabs/crypto makes for `x509.RSA(true)` CAs, with Go's extension order:
/// KeyUsage (critical), ExtKeyUsage, BasicConstraints (critical, CA), SubjectKeyIdentifier; ExtKeyUsage is
/// codeSigning (see the module documentation).
fn self_signed_certificate(
    key: &RsaPrivateKey,
    organization: &str,
    serial: &[u8; 16],
    skid: &[u8; 20],
    not_before: SystemTime,
) -> Result<Vec<u8>, SecureBootError> {
    use rcgen::{CustomExtension, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose};

    let bad_time = || {
        SecureBootError::Certificate(
            "expected a validity period between years 1970 and 9999; found otherwise".to_owned(),
        )
    };
    let start = not_before.duration_since(SystemTime::UNIX_EPOCH).map_err(|_| bad_time())?.as_secs();
    let end = start.checked_add(SIGNING_CERT_VALIDITY.as_secs()).ok_or_else(bad_time)?;
    let to_time = |secs: u64| {
        i64::try_from(secs)
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .filter(|t| t.year() <= 9999)
            .ok_or_else(bad_time)
    };
    let public = key
        .to_public_key()
        .to_pkcs1_der()
        .map_err(|e| SecureBootError::Key(format!("expected to encode the public key; found error: {e}")))?;
    let signer = CertSigner { key, public: public.as_bytes().to_vec() };

    let mut params = rcgen::CertificateParams::default();
    params.not_before = to_time(start)?;
    params.not_after = to_time(end)?;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
    let mut dn = DistinguishedName::new();
    let value = match rcgen::string::PrintableString::try_from(organization) {
        Ok(p) => DnValue::PrintableString(p),
        Err(_) => DnValue::Utf8String(organization.to_owned()),
    };
    dn.push(DnType::OrganizationName, value);
    params.distinguished_name = dn;
    params.is_ca = IsCa::NoCa; // BasicConstraints and SKID are custom extensions below, in Go's order
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    // BasicConstraints ::= SEQUENCE { cA BOOLEAN TRUE }
    let mut basic_constraints = CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x03, 0x01, 0x01, 0xff]);
    basic_constraints.set_criticality(true);
    let skid_ext = CustomExtension::from_oid_content(&[2, 5, 29, 14], der::octet_string(skid));
    params.custom_extensions = vec![basic_constraints, skid_ext];
    let cert = params
        .self_signed(&signer)
        .map_err(|e| SecureBootError::Certificate(format!("expected to sign the certificate; found error: {e}")))?;
    Ok(cert.der().to_vec())
}

/// PEM with 64-character base64 lines and a trailing newline (Go's `pem.EncodeToMemory`).
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The first PEM block in `data`: (label, contents).
pub(crate) fn pem_decode(data: &[u8]) -> Result<(String, Vec<u8>), String> {
    use base64::Engine as _;
    let text = std::str::from_utf8(data).map_err(|_| "expected pem text; found non-utf-8 bytes".to_owned())?;
    let begin = text.find("-----BEGIN ").ok_or("expected a pem \"-----BEGIN\" line; found none")?;
    let after = &text[begin + "-----BEGIN ".len()..];
    let label_end = after.find("-----").ok_or("expected a complete pem \"-----BEGIN\" line; found it cut off")?;
    let label = after[..label_end].to_owned();
    let body = &after[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let end = body.find(&end_marker).ok_or_else(|| format!("expected \"{end_marker}\"; found none"))?;
    let b64: String = body[..end].chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("expected base64 inside the pem \"{label}\" block; found error: {e}"))?;
    Ok((label, der))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<(), SecureBootError> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| SecureBootError::Write { path: dir.into(), source })
}

/// Writes `data` to `path` with mode 0600 (set at creation, so the file is never readable by others).
/// `replace` allows overwriting an existing file (whose mode is then forced to 0600).
pub(crate) fn write_private_file(path: &Path, data: &[u8], replace: bool) -> Result<(), SecureBootError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let err = |source| SecureBootError::Write { path: path.into(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            SecureBootError::Exists { path: path.into() }
        } else {
            err(source)
        }
    })?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    file.write_all(data).map_err(err)?;
    file.sync_all().map_err(err)
}
