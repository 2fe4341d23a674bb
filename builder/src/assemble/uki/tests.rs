//! Hermetic tests of UKI layout, signing and enrollment structures, on a synthetic systemd stub and a seeded key.
//! Checks against third-party tools (objdump, sbverify, openssl, efitools) and the QEMU boots live in `tests/it`.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use rsa::pkcs1::DecodeRsaPublicKey as _;
use sha2::{Digest as _, Sha256};

use super::der::{self, Reader, oid, tag};
use super::*;
use crate::pki::{PkiError, SecretRng, SeededSecretRng};

const EPOCH: u64 = 1_700_000_000;

/// A seeded RSA-2048 key (4096 is Talos's size; one test covers it, the rest use 2048 to keep signing fast).
fn test_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut rng = SeededSecretRng::new([7; 32]);
        SigningKey::generate(
            &mut rng,
            DEFAULT_UKI_COMMON_NAME,
            2048,
            SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH),
        )
        .unwrap()
    })
}

/// A minimal PE32+ shaped like systemd's stub: `.text`, `.sbat`, `.sdmagic` with `version`, a DOS program, a COFF
/// symbol table after the sections, and the given alignments.
fn synthetic_stub(version: &str, section_alignment: u32, file_alignment: u32) -> Vec<u8> {
    let sections: Vec<(&str, Vec<u8>, u32)> = vec![
        (".text", vec![0xc3; 0x30], 0x6000_0020),
        (
            ".sbat",
            b"sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n".to_vec(),
            0x4000_0040,
        ),
        (".sdmagic", format!("#### LoaderInfo: systemd-stub {version} ####").into_bytes(), 0x4000_0040),
    ];
    let align = |v: u32, a: u32| v.div_ceil(a) * a;
    let size_of_headers = align(0x80 + 4 + 20 + 240 + 40 * sections.len() as u32, file_alignment);
    let mut va = align(size_of_headers, section_alignment);
    let mut raw = size_of_headers;
    let mut table = Vec::new();
    let mut body = Vec::new();
    for (name, data, chars) in &sections {
        let raw_size = align(data.len() as u32, file_alignment);
        let mut h = [0u8; 40];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&va.to_le_bytes());
        h[16..20].copy_from_slice(&raw_size.to_le_bytes());
        h[20..24].copy_from_slice(&raw.to_le_bytes());
        h[36..40].copy_from_slice(&chars.to_le_bytes());
        table.extend_from_slice(&h);
        let mut d = data.clone();
        d.resize(raw_size as usize, 0);
        body.extend_from_slice(&d);
        va = align(va + data.len() as u32, section_alignment);
        raw += raw_size;
    }
    let symbols_at = raw;
    let mut out = vec![0u8; size_of_headers as usize];
    out[..2].copy_from_slice(b"MZ");
    out[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    out[0x40..0x80].fill(0xee); // the DOS program, which the UKI drops
    out[0x80..0x84].copy_from_slice(b"PE\0\0");
    let c = 0x84;
    out[c..c + 2].copy_from_slice(&0x8664u16.to_le_bytes());
    out[c + 2..c + 4].copy_from_slice(&(sections.len() as u16).to_le_bytes());
    out[c + 4..c + 8].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    out[c + 8..c + 12].copy_from_slice(&symbols_at.to_le_bytes());
    out[c + 12..c + 16].copy_from_slice(&2u32.to_le_bytes());
    out[c + 16..c + 18].copy_from_slice(&240u16.to_le_bytes());
    out[c + 18..c + 20].copy_from_slice(&0x0206u16.to_le_bytes());
    let o = c + 20;
    out[o..o + 2].copy_from_slice(&0x20bu16.to_le_bytes());
    out[o + 2] = 2;
    out[o + 3] = 40;
    out[o + 16..o + 20].copy_from_slice(&size_of_headers.to_le_bytes()); // entry point
    out[o + 32..o + 36].copy_from_slice(&section_alignment.to_le_bytes());
    out[o + 36..o + 40].copy_from_slice(&file_alignment.to_le_bytes());
    out[o + 56..o + 60].copy_from_slice(&va.to_le_bytes());
    out[o + 60..o + 64].copy_from_slice(&size_of_headers.to_le_bytes());
    out[o + 64..o + 68].copy_from_slice(&0xabcdu32.to_le_bytes());
    out[o + 68..o + 70].copy_from_slice(&10u16.to_le_bytes());
    out[o + 108..o + 112].copy_from_slice(&16u32.to_le_bytes());
    out[o + 240..o + 240 + table.len()].copy_from_slice(&table);
    out.extend_from_slice(&body);
    out.extend_from_slice(&[0x55; 36]); // two COFF symbols + an empty string table
    out
}

fn u32_at(data: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(data[off..off + 4].try_into().unwrap())
}

fn inputs<'a>(stub: &'a [u8], profiles: Option<&'a [UkiProfile]>) -> UkiInputs<'a> {
    UkiInputs {
        stub,
        kernel: b"MZ-kernel-bytes",
        initrd: &[0x42; 700],
        cmdline: "talos.platform=metal console=tty0",
        os_release: "NAME=\"Talos\"\nID=talos\n",
        uname: Some("6.18.1-talos"),
        splash: Some(b"BM-splash"),
        pcr_public_key: None,
        profiles,
        epoch: EPOCH,
    }
}

#[test]
fn uki_layout_follows_talos_rules() {
    let stub = synthetic_stub("257.9", 0x1000, 0x200);
    let reset = [UkiProfile::reset_maintenance("talos.platform=metal console=tty0")];
    let uki = build_uki(&inputs(&stub, Some(&reset))).unwrap();
    let sections = read_sections(&uki).unwrap();
    let names: Vec<_> = sections.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            ".text", ".sbat", ".sdmagic", ".osrel", ".cmdline", ".uname", ".splash", ".linux", ".initrd", ".profile",
            ".profile", ".cmdline"
        ]
    );
    // The stub's sections keep their RVAs and sizes.
    let stub_sections = read_sections(&stub).unwrap();
    for (a, b) in stub_sections.iter().zip(&sections) {
        assert_eq!(
            (a.virtual_address, a.virtual_size, a.size_of_raw_data),
            (b.virtual_address, b.virtual_size, b.size_of_raw_data)
        );
    }
    // New RVAs start after the last stub section, each aligned to SectionAlignment.
    let last = &stub_sections[2];
    let mut va = (last.virtual_address + last.virtual_size).next_multiple_of(0x1000);
    for s in &sections[3..] {
        assert_eq!(s.virtual_address, va, "{}", s.name);
        assert_eq!(s.size_of_raw_data, s.virtual_size.next_multiple_of(0x200), "{}", s.name);
        assert_eq!(s.characteristics, 0x4000_0040, "{}", s.name);
        va = (va + s.virtual_size).next_multiple_of(0x1000);
    }
    // Raw data is packed from SizeOfHeaders in table order.
    let size_of_headers = u32_at(&uki, 0x98 + 60);
    assert_eq!(size_of_headers, (0x84 + 20 + 240 + 40 * 12u32).next_multiple_of(0x200));
    let mut raw = size_of_headers;
    for s in &sections {
        assert_eq!(s.pointer_to_raw_data, raw, "{}", s.name);
        raw += s.size_of_raw_data;
    }
    assert_eq!(uki.len(), raw as usize);
    // Header fields.
    assert_eq!(u32_at(&uki, 0x3c), 0x80);
    assert!(uki[0x40..0x80].iter().all(|b| *b == 0), "the dos program is dropped");
    assert_eq!(u32_at(&uki, 0x84 + 4), EPOCH as u32, "TimeDateStamp = epoch");
    assert_eq!(u32_at(&uki, 0x84 + 8), 0, "no COFF symbol table");
    assert_eq!(u32_at(&uki, 0x84 + 12), 0, "no COFF symbols");
    assert_eq!(&uki[0x98 + 2..0x98 + 4], [0, 0], "linker version 0.0");
    assert_eq!(u32_at(&uki, 0x98 + 64), 0, "CheckSum 0");
    assert_eq!(u32_at(&uki, 0x98 + 56), va, "SizeOfImage ends at the last section, aligned");
    let code: u32 = sections.iter().filter(|s| s.characteristics & 0x40 == 0).map(|s| s.size_of_raw_data).sum();
    let data: u32 = sections.iter().filter(|s| s.characteristics & 0x40 != 0).map(|s| s.size_of_raw_data).sum();
    assert_eq!((u32_at(&uki, 0x98 + 4), u32_at(&uki, 0x98 + 8)), (code, data));
    // Contents.
    assert_eq!(
        section_data(&uki, ".cmdline").unwrap(),
        [
            &b"talos.platform=metal console=tty0"[..],
            &b"talos.platform=metal console=tty0 talos.experimental.wipe=system:EPHEMERAL,STATE"[..]
        ]
    );
    assert_eq!(
        section_data(&uki, ".profile").unwrap(),
        [&b"ID=main"[..], &b"ID=reset-maintenance\nTITLE=Reset to maintenance mode"[..]]
    );
    assert_eq!(section_data(&uki, ".linux").unwrap(), [&b"MZ-kernel-bytes"[..]]);
    assert_eq!(section_data(&uki, ".uname").unwrap(), [&b"6.18.1-talos"[..]]);
    assert_eq!(section_data(&uki, ".sbat").unwrap(), section_data(&stub, ".sbat").unwrap());
}

#[test]
fn uki_is_deterministic_and_depends_on_the_epoch() {
    let stub = synthetic_stub("257.9", 0x200, 0x200);
    let a = build_uki(&inputs(&stub, Some(&[]))).unwrap();
    let b = build_uki(&inputs(&stub, Some(&[]))).unwrap();
    assert_eq!(Sha256::digest(&a), Sha256::digest(&b));
    let later = build_uki(&UkiInputs { epoch: EPOCH + 1, ..inputs(&stub, Some(&[])) }).unwrap();
    assert_ne!(a, later);
    assert_eq!(a.len(), later.len());
    let err = build_uki(&UkiInputs { epoch: 1 << 32, ..inputs(&stub, None) }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "source date epoch: expected at most 4294967295 (the pe timestamp is 32 bits); found 4294967296"
    );
}

#[test]
fn optional_sections_are_left_out_and_pcrpkey_goes_before_linux() {
    let stub = synthetic_stub("257.9", 0x200, 0x200);
    let uki =
        build_uki(&UkiInputs { uname: None, splash: None, pcr_public_key: Some(b"-----BEGIN"), ..inputs(&stub, None) })
            .unwrap();
    let names: Vec<_> = read_sections(&uki).unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, [".text", ".sbat", ".sdmagic", ".osrel", ".cmdline", ".pcrpkey", ".linux", ".initrd"]);
}

#[test]
fn profiles_with_a_cmdline_need_systemd_257() {
    let old = synthetic_stub("252.39-1~deb12u2", 0x200, 0x200);
    assert_eq!(stub_version(&old).unwrap().as_deref(), Some("252.39-1~deb12u2"));
    let reset = [UkiProfile::reset("talos.platform=metal")];
    let err = build_uki(&inputs(&old, Some(&reset))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "uki profile \"reset\": expected a systemd-stub >= 257 for profiles with a command line; found systemd-stub 252.39-1~deb12u2"
    );
    // The main profile alone has no command line: harmless on an old stub.
    let uki = build_uki(&inputs(&old, Some(&[]))).unwrap();
    assert_eq!(section_data(&uki, ".cmdline").unwrap().len(), 1);
    assert_eq!(UkiProfile::reset("x").cmdline.as_deref(), Some("x talos.experimental.wipe=system"));
    assert_eq!(UkiProfile::reset("x").section_text(), "ID=reset\nTITLE=Reset system disk");
}

#[test]
fn kernel_release_comes_from_the_bzimage_header() {
    let mut bz = vec![0u8; 0x1000];
    bz[0x1f1] = 4; // setup sectors
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x20e..0x210].copy_from_slice(&0x300u16.to_le_bytes());
    let text = b"6.18.1-talos (root@buildkitsandbox) #1 SMP\0";
    bz[0x500..0x500 + text.len()].copy_from_slice(text);
    assert_eq!(kernel_release(&bz).as_deref(), Some("6.18.1-talos"));
    bz[0x20e..0x210].copy_from_slice(&0x900u16.to_le_bytes()); // beyond the setup sectors
    assert_eq!(kernel_release(&bz), None);
    assert_eq!(kernel_release(b"MZ arm64 Image"), None);
    let stub = synthetic_stub("257.9", 0x200, 0x200);
    assert_eq!(
        build_uki(&UkiInputs { kernel: b"", ..inputs(&stub, None) }).unwrap_err().to_string(),
        "uki layout: expected a kernel image for .linux; found 0 bytes"
    );
}

#[test]
fn bad_profiles_are_errors() {
    let stub = synthetic_stub("257.9", 0x200, 0x200);
    let main = [UkiProfile { id: "main".into(), title: None, cmdline: None }];
    assert_eq!(
        build_uki(&inputs(&stub, Some(&main))).unwrap_err().to_string(),
        "uki profile \"main\": expected an id other than \"main\" (reserved for the default profile); found \"main\""
    );
    let twice = [UkiProfile::reset("a"), UkiProfile::reset("b")];
    assert!(build_uki(&inputs(&stub, Some(&twice))).unwrap_err().to_string().contains("found this id twice"));
    let newline = [UkiProfile { id: "x\nTITLE=y".into(), title: None, cmdline: None }];
    assert!(build_uki(&inputs(&stub, Some(&newline))).is_err());
}

#[test]
fn malformed_stubs_are_errors_not_panics() {
    let stub = synthetic_stub("257.9", 0x200, 0x200);
    // Every truncation up to the end of the section data.
    let sections_end =
        read_sections(&stub).unwrap().iter().map(|s| s.pointer_to_raw_data + s.size_of_raw_data).max().unwrap();
    for len in 0..sections_end as usize {
        let r = build_uki(&inputs(&stub[..len], None));
        assert!(matches!(r, Err(UkiError::Stub(_))), "truncated to {len}: {r:?}");
    }
    // Every single-byte corruption of the headers either fails cleanly or builds.
    for at in 0..0x200 {
        let mut bad = stub.clone();
        bad[at] ^= 0xff;
        let _ = build_uki(&inputs(&bad, None));
    }
    let mut pe32 = stub.clone();
    pe32[0x98..0x9a].copy_from_slice(&0x10bu16.to_le_bytes());
    assert_eq!(
        build_uki(&inputs(&pe32, None)).unwrap_err().to_string(),
        "systemd stub: expected a pe32+ image (magic 0x20b); found magic 0x10b"
    );
    assert_eq!(
        build_uki(&inputs(b"\x7fELF\x02\x01", None)).unwrap_err().to_string(),
        "systemd stub: expected a pe image starting with \"MZ\"; found bytes 7f 45"
    );
    let mut huge = stub.clone();
    let sdmagic = 0x98 + 240 + 2 * 40;
    huge[sdmagic + 20..sdmagic + 24].copy_from_slice(&0xffff_0000u32.to_le_bytes());
    assert!(build_uki(&inputs(&huge, None)).unwrap_err().to_string().contains("runs past the end"));
}

#[test]
fn a_signed_stub_loses_its_certificate_table_entry() {
    let stub = synthetic_stub("257.9", 0x200, 0x200);
    let signed = sign_pe(&stub, test_key(), EPOCH).unwrap();
    let uki = build_uki(&inputs(&signed, None)).unwrap();
    assert_eq!(&uki[0x98 + 112 + 32..0x98 + 112 + 40], [0; 8]);
    assert_eq!(uki, build_uki(&inputs(&stub, None)).unwrap());
}

#[test]
fn guids_use_the_uefi_byte_order() {
    let g = Guid::EFI_GLOBAL_VARIABLE;
    assert_eq!(g.to_string(), "8be4df61-93ca-11d2-aa0d-00e098032b8c");
    assert_eq!(
        g.to_efi_bytes(),
        [0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c]
    );
    assert_eq!(Guid::from_efi_bytes(g.to_efi_bytes()), g);
    // Known answer computed independently (Python: sha256(ns_x500 || pem)[:16], version 4, RFC 4122 variant) for
    // the PEM of the bytes 00..=9f.
    let der: Vec<u8> = (0u8..0xa0).collect();
    assert_eq!(owner_guid(&der).to_string(), OWNER_GUID_KNOWN_ANSWER);
}

const OWNER_GUID_KNOWN_ANSWER: &str = "635b5270-6346-4270-be6a-3ba30a47bd14";

#[test]
fn pem_lines_are_64_columns_like_go() {
    let pem = secureboot::pem_encode("CERTIFICATE", &[0xab; 100]);
    let lines: Vec<_> = pem.lines().collect();
    assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
    assert_eq!(lines[1].len(), 64);
    assert_eq!(lines[2].len(), 64);
    assert_eq!(lines[3].len(), 136 - 128);
    assert_eq!(lines[4], "-----END CERTIFICATE-----");
    assert!(pem.ends_with("-----\n"));
    assert_eq!(secureboot::pem_decode(pem.as_bytes()).unwrap(), ("CERTIFICATE".to_owned(), vec![0xab; 100]));
}

#[test]
fn generated_key_is_deterministic_and_talos_shaped() {
    let key = test_key();
    let mut rng = SeededSecretRng::new([7; 32]);
    let again = SigningKey::generate(
        &mut rng,
        DEFAULT_UKI_COMMON_NAME,
        2048,
        SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH),
    )
    .unwrap();
    assert_eq!(again.cert_der(), key.cert_der());
    assert_eq!(*again.key_pem().unwrap(), *key.key_pem().unwrap());
    assert!(format!("{key:?}").contains("<redacted>"));
    assert!(!format!("{key:?}").contains("PRIVATE"));

    let (_, cert) = x509_parser::parse_x509_certificate(key.cert_der()).unwrap();
    assert_eq!(cert.subject().to_string(), "O=Test UKI Signing Key");
    assert_eq!(cert.issuer().to_string(), "O=Test UKI Signing Key");
    assert_eq!(cert.signature_algorithm.algorithm.to_id_string(), "1.2.840.113549.1.1.13", "sha512WithRSAEncryption");
    assert_eq!(cert.validity().not_before.timestamp(), EPOCH as i64);
    assert_eq!(cert.validity().not_after.timestamp(), EPOCH as i64 + 87_600 * 3600);
    assert!(cert.raw_serial().len() <= 17);
    let ext_oids: Vec<_> = cert.extensions().iter().map(|e| (e.oid.to_id_string(), e.critical)).collect();
    assert_eq!(
        ext_oids,
        [
            ("2.5.29.15".to_owned(), true),
            ("2.5.29.37".to_owned(), false),
            ("2.5.29.19".to_owned(), true),
            ("2.5.29.14".to_owned(), false)
        ]
    );
    assert!(cert.is_ca());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.code_signing && !eku.server_auth && !eku.client_auth && eku.other.is_empty(), "{eku:?}");
    assert!(cert.verify_signature(None).is_ok(), "self-signature verifies");

    let loaded = SigningKey::from_pem(key.key_pem().unwrap().as_bytes(), key.cert_pem().as_bytes()).unwrap();
    assert_eq!(loaded.cert_der(), key.cert_der());
    assert!(key.key_pem().unwrap().starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
}

#[test]
fn mismatched_or_malformed_keys_are_errors() {
    let key = test_key();
    let mut rng = SeededSecretRng::new([8; 32]);
    let other = SigningKey::generate(&mut rng, "other", 1024, SystemTime::UNIX_EPOCH).unwrap();
    let err = SigningKey::from_pem(other.key_pem().unwrap().as_bytes(), key.cert_pem().as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "signing key: expected the private key of the certificate's public key; found a different key"
    );
    let err = SigningKey::from_pem(key.cert_pem().as_bytes(), key.cert_pem().as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "signing key: expected a pem \"RSA PRIVATE KEY\" or \"PRIVATE KEY\" block; found \"CERTIFICATE\""
    );
    let err = SigningKey::from_pem(b"nothing here", key.cert_pem().as_bytes()).unwrap_err();
    assert_eq!(err.to_string(), "signing key: expected a pem \"-----BEGIN\" line; found none");
}

struct FailingRng;

impl SecretRng for FailingRng {
    fn fill_bytes(&mut self, _: &mut [u8]) {}
    fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), PkiError> {
        Err(PkiError::Rng("expected entropy; found none".into()))
    }
}

#[test]
fn rng_failure_is_an_error() {
    let err = SigningKey::generate(&mut FailingRng, "x", 1024, SystemTime::UNIX_EPOCH).unwrap_err();
    assert_eq!(err.to_string(), "cannot get random bytes for the signing key");
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert_eq!(source, "random number generator failure: expected entropy; found none");
}

#[test]
fn key_files_are_private_and_never_replaced() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys");
    let files = test_key().write_files(&out, "uki").unwrap();
    for path in [&files.key_pem, &files.cert_pem, &files.cert_der] {
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600, "{}", path.display());
    }
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(files.key_pem.file_name().unwrap(), "uki-signing-key.pem");
    let loaded = SigningKey::load(&files.key_pem, &files.cert_pem).unwrap();
    assert_eq!(loaded.cert_der(), std::fs::read(&files.cert_der).unwrap());
    let err = test_key().write_files(&out, "uki").unwrap_err();
    assert!(matches!(err, SecureBootError::Exists { .. }), "{err}");
}

/// Checks a PKCS#7 `SignedData` made by `key`: structure, messageDigest = `digest`, and the RSA signature over
/// the signed attributes. Returns the signing time TLV.
fn verify_signed_data(signed_data: &[u8], expected_content_type: &[u8], digest: &[u8], key: &SigningKey) -> Vec<u8> {
    let mut top = Reader::new(signed_data);
    let sd = top.expect(tag::SEQUENCE, "signed data").unwrap();
    assert!(top.is_empty());
    let mut r = Reader::new(sd.content);
    assert_eq!(r.expect(tag::INTEGER, "version").unwrap().content, [1]);
    assert_eq!(r.expect(tag::SET, "digest algorithms").unwrap().content, der::algorithm(oid::SHA256));
    let ci = r.expect(tag::SEQUENCE, "content info").unwrap();
    assert!(ci.content.starts_with(expected_content_type));
    let certs = r.expect(tag::context(0), "certificates").unwrap();
    assert_eq!(certs.content, key.cert_der());
    let infos = r.expect(tag::SET, "signer infos").unwrap();
    assert!(r.is_empty());
    let mut r = Reader::new(Reader::new(infos.content).expect(tag::SEQUENCE, "signer info").unwrap().content);
    assert_eq!(r.expect(tag::INTEGER, "version").unwrap().content, [1]);
    r.expect(tag::SEQUENCE, "issuer and serial").unwrap();
    assert_eq!(r.expect(tag::SEQUENCE, "digest algorithm").unwrap().raw, der::algorithm(oid::SHA256));
    let attrs = r.expect(tag::context(0), "signed attributes").unwrap();
    assert_eq!(r.expect(tag::SEQUENCE, "signature algorithm").unwrap().raw, der::algorithm(oid::RSA_ENCRYPTION));
    let sig = r.expect(tag::OCTET_STRING, "signature").unwrap();
    assert!(r.is_empty(), "no unsigned attributes");

    let mut a = Reader::new(attrs.content);
    let mut time = Vec::new();
    let mut seen = Vec::new();
    while !a.is_empty() {
        let attr = a.expect(tag::SEQUENCE, "attribute").unwrap();
        let mut ar = Reader::new(attr.content);
        let oid_tlv = ar.read().unwrap().raw;
        let value = Reader::new(ar.expect(tag::SET, "values").unwrap().content).read().unwrap();
        if oid_tlv == oid::CONTENT_TYPE {
            assert_eq!(value.raw, expected_content_type);
        } else if oid_tlv == oid::MESSAGE_DIGEST {
            assert_eq!(value.content, digest, "messageDigest");
        } else if oid_tlv == oid::SIGNING_TIME {
            time = value.raw.to_vec();
        }
        seen.push(oid_tlv.to_vec());
    }
    assert_eq!(seen, [oid::CONTENT_TYPE.to_vec(), oid::SIGNING_TIME.to_vec(), oid::MESSAGE_DIGEST.to_vec()]);
    let (_, cert) = x509_parser::parse_x509_certificate(key.cert_der()).unwrap();
    let public = rsa::RsaPublicKey::from_pkcs1_der(&cert.public_key().subject_public_key.data).unwrap();
    let attrs_digest = Sha256::digest(der::tlv(tag::SET, attrs.content));
    let digest_info = der::seq(&[&der::algorithm(oid::SHA256), &der::octet_string(&attrs_digest)]);
    public.verify(rsa::Pkcs1v15Sign::new_unprefixed(), &digest_info, sig.content).unwrap();
    time
}

#[test]
fn authenticode_signature_is_deterministic_and_verifies() {
    let stub = synthetic_stub("257.9", 0x200, 0x200);
    let uki = build_uki(&inputs(&stub, None)).unwrap();
    let key = test_key();
    let signed = sign_pe(&uki, key, EPOCH).unwrap();
    assert_eq!(signed, sign_pe(&uki, key, EPOCH).unwrap(), "same key and input, same bytes");
    assert_eq!(authenticode_digest(&signed).unwrap(), authenticode_digest(&uki).unwrap());
    assert_eq!(&signed[..0x98 + 112 + 32], &uki[..0x98 + 112 + 32], "only the certificate table entry changes");
    assert_eq!(u32_at(&signed, 0x98 + 112 + 32) as usize, uki.len());
    assert_eq!(signed.len() % 8, 0);

    let sigs = pe_signatures(&signed).unwrap();
    assert_eq!(sigs.len(), 1);
    let mut r = Reader::new(&sigs[0]);
    let ci = r.expect(tag::SEQUENCE, "content info").unwrap();
    let mut r = Reader::new(ci.content);
    assert_eq!(r.read().unwrap().raw, oid::SIGNED_DATA);
    let signed_data = r.expect(tag::context(0), "content").unwrap().content;
    // The encapsulated SpcIndirectDataContent ends with the image digest.
    let image_digest = authenticode_digest(&uki).unwrap();
    let spc_start = find(signed_data, oid::SPC_INDIRECT_DATA).unwrap();
    let spc = &signed_data[spc_start..];
    let mut r = Reader::new(&spc[oid::SPC_INDIRECT_DATA.len()..]);
    let spc_tlv = Reader::new(r.expect(tag::context(0), "content").unwrap().content).read().unwrap();
    assert!(spc_tlv.content.ends_with(&image_digest));
    let time = verify_signed_data(signed_data, oid::SPC_INDIRECT_DATA, &Sha256::digest(spc_tlv.content), key);
    assert_eq!(time, der::time(EPOCH).unwrap());

    let mut tampered = signed.clone();
    tampered[0x400] ^= 1;
    assert_ne!(authenticode_digest(&tampered).unwrap(), image_digest);
    assert_eq!(
        sign_pe(&signed, key, EPOCH).unwrap_err().to_string(),
        format!(
            "pe image: expected an unsigned image; found a certificate table of {} bytes",
            signed.len() - uki.len()
        )
    );
}

#[test]
fn unaligned_images_are_padded_before_the_certificate_table() {
    let stub = synthetic_stub("257.9", 0x200, 0x200);
    assert_ne!(stub.len() % 8, 0);
    let signed = sign_pe(&stub, test_key(), EPOCH).unwrap();
    let table = u32_at(&signed, 0x98 + 112 + 32) as usize;
    assert_eq!(table, stub.len().next_multiple_of(8));
    assert!(signed[stub.len()..table].iter().all(|b| *b == 0));
    assert_eq!(authenticode_digest(&signed).unwrap(), authenticode_digest(&stub).unwrap());
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn enrollment_files_parse_back_and_verify() {
    let key = test_key();
    let files = EnrollmentFiles::generate(key.cert_der(), key, None, EPOCH).unwrap();
    assert_eq!(files, EnrollmentFiles::generate(key.cert_der(), key, None, EPOCH).unwrap(), "deterministic");
    let owner = owner_guid(key.cert_der());
    for (name, vendor, file) in [
        ("PK", Guid::EFI_GLOBAL_VARIABLE, &files.pk),
        ("KEK", Guid::EFI_GLOBAL_VARIABLE, &files.kek),
        ("db", Guid::IMAGE_SECURITY_DATABASE, &files.db),
    ] {
        let auth = parse_authenticated_variable(file).unwrap();
        assert_eq!(
            auth.timestamp,
            EfiTime {
                year: 2023,
                month: 11,
                day: 14,
                hour: 22,
                minute: 13,
                second: 20,
                nanosecond: 0,
                time_zone: 0,
                daylight: 0
            }
        );
        assert_eq!(auth.cert_type, Guid::CERT_TYPE_PKCS7);
        // EDK2 reads the digest algorithm at a fixed offset behind a two-byte length.
        assert_eq!(auth.signed_data[1], 0x82);
        assert_eq!(&auth.signed_data[13..22], &oid::SHA256[2..]);
        let lists = parse_signature_database(&auth.data).unwrap();
        assert_eq!(
            lists,
            [SignatureList {
                signature_type: Guid::CERT_X509,
                header: vec![],
                signatures: vec![(owner, key.cert_der().to_vec())]
            }]
        );
        let mut payload: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
        payload.extend_from_slice(&vendor.to_efi_bytes());
        payload.extend_from_slice(&0x27u32.to_le_bytes());
        payload.extend_from_slice(&file[..16]);
        payload.extend_from_slice(&auth.data);
        verify_signed_data(&auth.signed_data, oid::DATA, &Sha256::digest(&payload), key);
    }
}

#[test]
fn well_known_certificates_merge_by_size_like_go_uefi() {
    let key = test_key();
    let same_size = key.cert_der().to_vec();
    let mut other = same_size.clone();
    other.push(0);
    let well_known = WellKnownCertificates { kek: vec![other.clone()], db: vec![same_size.clone(), other.clone()] };
    let files = EnrollmentFiles::generate(key.cert_der(), key, Some(&well_known), EPOCH).unwrap();
    let owner = owner_guid(key.cert_der());
    let db = parse_signature_database(&parse_authenticated_variable(&files.db).unwrap().data).unwrap();
    assert_eq!(db.len(), 2);
    assert_eq!(db[0].signatures, [(owner, same_size.clone()), (Guid::MICROSOFT_OWNER, same_size.clone())]);
    assert_eq!(db[1].signatures, [(Guid::MICROSOFT_OWNER, other.clone())]);
    let kek = parse_signature_database(&parse_authenticated_variable(&files.kek).unwrap().data).unwrap();
    assert_eq!(kek.len(), 2);
    let pk = parse_signature_database(&parse_authenticated_variable(&files.pk).unwrap().data).unwrap();
    assert_eq!(pk.len(), 1, "PK never gets the well-known certificates");
    let dup = x509_signature_database(&[(owner, &same_size), (owner, &same_size)]).unwrap_err();
    assert!(dup.to_string().contains("found a duplicate"));
}

#[test]
fn malformed_enrollment_data_is_an_error() {
    assert!(parse_authenticated_variable(&[0; 39]).is_err());
    let key = test_key();
    let files = EnrollmentFiles::generate(key.cert_der(), key, None, EPOCH).unwrap();
    let auth = parse_authenticated_variable(&files.db).unwrap();
    assert!(parse_signature_database(&auth.data[..auth.data.len() - 1]).is_err());
    let mut bad = files.db.clone();
    bad[22] = 0xf0;
    assert_eq!(
        parse_authenticated_variable(&bad).unwrap_err().to_string(),
        "enrollment data: expected win_certificate revision 0x0200 type 0x0ef1; found revision 0x0200 type 0x0ef0"
    );
    assert!(EnrollmentFiles::generate(b"not a cert", key, None, EPOCH).is_err());
}

#[test]
fn talos_default_key_is_rsa_4096() {
    let mut rng = SeededSecretRng::new([1; 32]);
    let key =
        SigningKey::generate(&mut rng, DEFAULT_UKI_COMMON_NAME, UKI_SIGNING_KEY_BITS, SystemTime::UNIX_EPOCH).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(key.cert_der()).unwrap();
    assert_eq!(cert.public_key().parsed().unwrap().key_size(), 4096);
}
