//! sd-boot auto-enrollment files (`loader/keys/auto/{PK,KEK,db}.auth`): for each variable an
//! `EFI_SIGNATURE_LIST` database holding the enrolled certificate, prefixed by an `EFI_VARIABLE_AUTHENTICATION_2`
//! header whose PKCS#7 signature covers name ‖ vendor GUID ‖ attributes ‖ timestamp ‖ database, as
//! `SetVariable` verifies it. Talos (`internal/pkg/secureboot/database`) signs all three with the UKI signing key
//! and uses one signature owner derived from the certificate; optionally the KEK and db also get Microsoft's
//! certificates. Talos stamps the files with the wall clock; here the timestamp is the build epoch, so the files
//! are reproducible.

use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::der::oid;
use super::secureboot::{Guid, SecureBootError, SigningKey, pem_encode, write_private_file};

/// sd-boot's auto-enrollment file names, in the order sd-boot enrolls them (db, KEK, then PK, which ends setup
/// mode).
pub const DB_AUTH: &str = "db.auth";
pub const KEK_AUTH: &str = "KEK.auth";
pub const PK_AUTH: &str = "PK.auth";

/// `EFI_VARIABLE_NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS | TIME_BASED_AUTHENTICATED_WRITE_ACCESS`.
pub const SECURE_BOOT_VARIABLE_ATTRIBUTES: u32 = 0x01 | 0x02 | 0x04 | 0x20;

/// `WIN_CERT_TYPE_EFI_GUID`.
const WIN_CERT_TYPE_EFI_GUID: u16 = 0x0ef1;
/// Size of `EFI_TIME`.
const EFI_TIME_SIZE: usize = 16;
/// Size of an `EFI_SIGNATURE_LIST` header.
const SIGNATURE_LIST_HEADER_SIZE: usize = 28;

/// Certificates (DER) added with [`Guid::MICROSOFT_OWNER`] when Talos's `includeWellKnownCerts` is on. Talos embeds
/// KEK: Microsoft Corporation KEK CA 2011, Microsoft Corporation KEK 2K CA 2023; db: Microsoft Corporation UEFI CA
/// 2011, Microsoft Option ROM UEFI CA 2023, Microsoft UEFI CA 2023 (in that order: its file names sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WellKnownCertificates {
    pub kek: Vec<Vec<u8>>,
    pub db: Vec<Vec<u8>>,
}

/// The three auto-enrollment files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentFiles {
    pub pk: Vec<u8>,
    pub kek: Vec<u8>,
    pub db: Vec<u8>,
}

/// `EFI_TIME`, as stored in an `EFI_VARIABLE_AUTHENTICATION_2` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EfiTime {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub nanosecond: u32,
    pub time_zone: i16,
    pub daylight: u8,
}

impl EfiTime {
    /// `epoch` (seconds since 1970) in UTC, with zero nanoseconds, time zone and daylight flags (firmware rejects
    /// anything else in authenticated variables).
    pub fn from_unix(epoch: u64) -> Result<EfiTime, SecureBootError> {
        let bad = || {
            SecureBootError::Enrollment(format!(
                "expected a timestamp between years 1970 and 9999; found epoch {epoch}"
            ))
        };
        let dt =
            time::OffsetDateTime::from_unix_timestamp(i64::try_from(epoch).map_err(|_| bad())?).map_err(|_| bad())?;
        let year = u16::try_from(dt.year()).ok().filter(|y| *y <= 9999).ok_or_else(bad)?;
        Ok(EfiTime {
            year,
            month: u8::from(dt.month()),
            day: dt.day(),
            hour: dt.hour(),
            minute: dt.minute(),
            second: dt.second(),
            nanosecond: 0,
            time_zone: 0,
            daylight: 0,
        })
    }

    /// The 16-byte encoding (pad bytes zero).
    pub fn to_bytes(&self) -> [u8; EFI_TIME_SIZE] {
        let mut b = [0u8; EFI_TIME_SIZE];
        b[0..2].copy_from_slice(&self.year.to_le_bytes());
        b[2] = self.month;
        b[3] = self.day;
        b[4] = self.hour;
        b[5] = self.minute;
        b[6] = self.second;
        b[8..12].copy_from_slice(&self.nanosecond.to_le_bytes());
        b[12..14].copy_from_slice(&self.time_zone.to_le_bytes());
        b[14] = self.daylight;
        b
    }

    fn from_bytes(b: &[u8; EFI_TIME_SIZE]) -> EfiTime {
        EfiTime {
            year: u16::from_le_bytes([b[0], b[1]]),
            month: b[2],
            day: b[3],
            hour: b[4],
            minute: b[5],
            second: b[6],
            nanosecond: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            time_zone: i16::from_le_bytes([b[12], b[13]]),
            daylight: b[14],
        }
    }
}

/// One `EFI_SIGNATURE_LIST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureList {
    pub signature_type: Guid,
    pub header: Vec<u8>,
    /// (owner, signature data) pairs; all the same size within one list.
    pub signatures: Vec<(Guid, Vec<u8>)>,
}

/// An `.auth` file read back: the `EFI_VARIABLE_AUTHENTICATION_2` header and the signature database after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedVariable {
    pub timestamp: EfiTime,
    /// `CertType` of the `WIN_CERTIFICATE_UEFI_GUID` ([`Guid::CERT_TYPE_PKCS7`]).
    pub cert_type: Guid,
    /// The PKCS#7 `SignedData` (DER, without a `ContentInfo` wrapper).
    pub signed_data: Vec<u8>,
    /// The variable data that follows the header.
    pub data: Vec<u8>,
}

/// The signature owner Talos uses for the enrolled certificate: a version-4-labelled SHA-256 name UUID in the X.500
/// name space of the certificate's PEM text (Go `pem.EncodeToMemory` of the DER).
pub fn owner_guid(cert_der: &[u8]) -> Guid {
    Guid::sha256_name(Guid::NAMESPACE_X500, pem_encode("CERTIFICATE", cert_der).as_bytes())
}

/// A signature database of X.509 certificates. Like go-uefi's `SignatureDatabase.Append`, a certificate joins the
/// first list whose signature size matches and gets a new list otherwise; an identical (owner, certificate) pair
/// twice is an error.
pub fn x509_signature_database(entries: &[(Guid, &[u8])]) -> Result<Vec<u8>, SecureBootError> {
    let mut lists: Vec<SignatureList> = Vec::new();
    for (owner, cert) in entries {
        if lists.iter().any(|l| l.signatures.iter().any(|(o, d)| o == owner && d.as_slice() == *cert)) {
            return Err(SecureBootError::Enrollment(format!(
                "expected each certificate once per owner {owner}; found a duplicate"
            )));
        }
        match lists.iter_mut().find(|l| l.signatures.first().is_some_and(|(_, d)| d.len() == cert.len())) {
            Some(list) => list.signatures.push((*owner, cert.to_vec())),
            None => lists.push(SignatureList {
                signature_type: Guid::CERT_X509,
                header: Vec::new(),
                signatures: vec![(*owner, cert.to_vec())],
            }),
        }
    }
    let mut out = Vec::new();
    for list in &lists {
        let size = 16 + list.signatures.first().map_or(0, |(_, d)| d.len());
        let total = SIGNATURE_LIST_HEADER_SIZE + list.header.len() + size * list.signatures.len();
        let too_big =
            || SecureBootError::Enrollment("expected a signature list below 4 GiB; found it larger".to_owned());
        out.extend_from_slice(&list.signature_type.to_efi_bytes());
        out.extend_from_slice(&u32::try_from(total).map_err(|_| too_big())?.to_le_bytes());
        out.extend_from_slice(&u32::try_from(list.header.len()).map_err(|_| too_big())?.to_le_bytes());
        out.extend_from_slice(&u32::try_from(size).map_err(|_| too_big())?.to_le_bytes());
        out.extend_from_slice(&list.header);
        for (owner, data) in &list.signatures {
            out.extend_from_slice(&owner.to_efi_bytes());
            out.extend_from_slice(data);
        }
    }
    Ok(out)
}

/// Reads a signature database back into its lists.
pub fn parse_signature_database(mut data: &[u8]) -> Result<Vec<SignatureList>, SecureBootError> {
    let err = |m: String| SecureBootError::Enrollment(m);
    let mut lists = Vec::new();
    while !data.is_empty() {
        if data.len() < SIGNATURE_LIST_HEADER_SIZE {
            return Err(err(format!("expected a 28-byte signature list header; found {} bytes", data.len())));
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&data[..16]);
        let u32_at = |off: usize| u32::from_le_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]]) as usize;
        let (total, header_size, size) = (u32_at(16), u32_at(20), u32_at(24));
        let body = total.checked_sub(SIGNATURE_LIST_HEADER_SIZE + header_size);
        let body = match body {
            Some(b) if total <= data.len() && size >= 16 && b % size == 0 => b,
            _ => {
                return Err(err(format!(
                    "expected a signature list of whole {size}-byte entries within {} bytes; found list size {total} with header size {header_size}",
                    data.len()
                )));
            }
        };
        let header = data[SIGNATURE_LIST_HEADER_SIZE..SIGNATURE_LIST_HEADER_SIZE + header_size].to_vec();
        let entries = &data[SIGNATURE_LIST_HEADER_SIZE + header_size..total];
        let signatures = entries
            .chunks(size)
            .map(|e| {
                let mut owner = [0u8; 16];
                owner.copy_from_slice(&e[..16]);
                (Guid::from_efi_bytes(owner), e[16..].to_vec())
            })
            .collect();
        debug_assert_eq!(entries.len(), body);
        lists.push(SignatureList { signature_type: Guid::from_efi_bytes(guid), header, signatures });
        data = &data[total..];
    }
    Ok(lists)
}

/// An `.auth` file for variable `name` (vendor `vendor`): `EFI_VARIABLE_AUTHENTICATION_2` (timestamp, PKCS#7
/// `SignedData` by `signer` over name (UTF-16LE, no terminator) ‖ vendor GUID ‖ attributes ‖ timestamp ‖ `data`),
/// followed by `data`.
pub fn authenticated_variable(
    name: &str,
    vendor: Guid,
    data: &[u8],
    signer: &SigningKey,
    timestamp: u64,
) -> Result<Vec<u8>, SecureBootError> {
    let time = EfiTime::from_unix(timestamp)?.to_bytes();
    let mut payload: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    payload.extend_from_slice(&vendor.to_efi_bytes());
    payload.extend_from_slice(&SECURE_BOOT_VARIABLE_ATTRIBUTES.to_le_bytes());
    payload.extend_from_slice(&time);
    payload.extend_from_slice(data);
    let signed_data = signer.signed_data(oid::DATA, None, &Sha256::digest(&payload), timestamp)?;

    let length = u32::try_from(8 + 16 + signed_data.len())
        .map_err(|_| SecureBootError::Enrollment("expected a signature below 4 GiB; found it larger".to_owned()))?;
    let mut out = Vec::with_capacity(EFI_TIME_SIZE + length as usize + data.len());
    out.extend_from_slice(&time);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&0x0200u16.to_le_bytes());
    out.extend_from_slice(&WIN_CERT_TYPE_EFI_GUID.to_le_bytes());
    out.extend_from_slice(&Guid::CERT_TYPE_PKCS7.to_efi_bytes());
    out.extend_from_slice(&signed_data);
    out.extend_from_slice(data);
    Ok(out)
}

/// Reads an `.auth` file back.
pub fn parse_authenticated_variable(file: &[u8]) -> Result<AuthenticatedVariable, SecureBootError> {
    let err = |m: String| SecureBootError::Enrollment(m);
    if file.len() < EFI_TIME_SIZE + 24 {
        return Err(err(format!("expected at least 40 bytes of authentication header; found {} bytes", file.len())));
    }
    let mut time = [0u8; EFI_TIME_SIZE];
    time.copy_from_slice(&file[..EFI_TIME_SIZE]);
    let length = u32::from_le_bytes([file[16], file[17], file[18], file[19]]) as usize;
    let revision = u16::from_le_bytes([file[20], file[21]]);
    let kind = u16::from_le_bytes([file[22], file[23]]);
    if revision != 0x0200 || kind != WIN_CERT_TYPE_EFI_GUID {
        return Err(err(format!(
            "expected win_certificate revision 0x0200 type 0x0ef1; found revision 0x{revision:04x} type 0x{kind:04x}"
        )));
    }
    if length < 24 || EFI_TIME_SIZE + length > file.len() {
        return Err(err(format!(
            "expected a win_certificate length of 24..{} bytes; found {length}",
            file.len() - EFI_TIME_SIZE
        )));
    }
    let mut cert_type = [0u8; 16];
    cert_type.copy_from_slice(&file[24..40]);
    Ok(AuthenticatedVariable {
        timestamp: EfiTime::from_bytes(&time),
        cert_type: Guid::from_efi_bytes(cert_type),
        signed_data: file[40..EFI_TIME_SIZE + length].to_vec(),
        data: file[EFI_TIME_SIZE + length..].to_vec(),
    })
}

impl EnrollmentFiles {
    /// `PK.auth`, `KEK.auth` and `db.auth` enrolling `enrolled_cert` (DER), each signed by `signer` and stamped
    /// `timestamp`, as Talos's `database.Generate`: PK = the certificate; KEK and db = the certificate, then the
    /// well-known ones if given.
    pub fn generate(
        enrolled_cert: &[u8],
        signer: &SigningKey,
        well_known: Option<&WellKnownCertificates>,
        timestamp: u64,
    ) -> Result<EnrollmentFiles, SecureBootError> {
        x509_parser::parse_x509_certificate(enrolled_cert).map_err(|e| {
            SecureBootError::Certificate(format!("expected a der x.509 certificate to enroll; found error: {e}"))
        })?;
        let owner = owner_guid(enrolled_cert);
        let database = |extra: &[Vec<u8>]| {
            let mut entries: Vec<(Guid, &[u8])> = vec![(owner, enrolled_cert)];
            entries.extend(extra.iter().map(|c| (Guid::MICROSOFT_OWNER, c.as_slice())));
            x509_signature_database(&entries)
        };
        let (kek_extra, db_extra) = match well_known {
            Some(w) => (w.kek.as_slice(), w.db.as_slice()),
            None => (&[][..], &[][..]),
        };
        Ok(EnrollmentFiles {
            pk: authenticated_variable("PK", Guid::EFI_GLOBAL_VARIABLE, &database(&[])?, signer, timestamp)?,
            kek: authenticated_variable("KEK", Guid::EFI_GLOBAL_VARIABLE, &database(kek_extra)?, signer, timestamp)?,
            db: authenticated_variable("db", Guid::IMAGE_SECURITY_DATABASE, &database(db_extra)?, signer, timestamp)?,
        })
    }

    /// (file name, contents) for each file.
    pub fn files(&self) -> [(&'static str, &[u8]); 3] {
        [(DB_AUTH, &self.db), (KEK_AUTH, &self.kek), (PK_AUTH, &self.pk)]
    }

    /// Writes the three files into `dir` (e.g. the ESP's `loader/keys/auto/`), mode 0600, replacing old ones.
    pub fn write_to(&self, dir: &Path) -> Result<(), SecureBootError> {
        std::fs::create_dir_all(dir).map_err(|source| SecureBootError::Write { path: dir.into(), source })?;
        for (name, data) in self.files() {
            write_private_file(&dir.join(name), data, true)?;
        }
        Ok(())
    }
}
