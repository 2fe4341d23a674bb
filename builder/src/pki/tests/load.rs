//! Loading and writing bundles: round trips, the talosctl file, and bad inputs.

use super::*;

// ------------------------------------------------------------- round trips

#[test]
fn generated_bundle_round_trips() {
    let b = bundle_1_14();
    let text = b.to_yaml();
    let back = ok(SecretsBundle::from_yaml(&text));
    assert_eq!(&back, b);
    assert_eq!(back.to_yaml(), text);
    ok(b.validate());

    let old = ok(SecretsBundle::generate(&mut seeded(4), now(), Contract::new(1, 2)));
    assert_eq!(ok(SecretsBundle::from_yaml(&old.to_yaml())), old);
}

#[test]
fn to_yaml_has_talosctl_layout() {
    let b = bundle_1_14();
    let text = b.to_yaml();
    let lines: Vec<&str> = text.lines().collect();
    let keys: Vec<String> = lines.iter().map(|l| l.split(':').next().unwrap_or_default().to_owned()).collect();
    let expected = [
        "cluster",
        "    id",
        "    secret",
        "secrets",
        "    bootstraptoken",
        "    secretboxencryptionsecret",
        "trustdinfo",
        "    token",
        "certs",
        "    etcd",
        "        crt",
        "        key",
        "    k8s",
        "        crt",
        "        key",
        "    k8saggregator",
        "        crt",
        "        key",
        "    k8sserviceaccount",
        "        key",
        "    os",
        "        crt",
        "        key",
    ];
    assert_eq!(keys, expected);
    assert!(text.ends_with('\n') && !text.ends_with("\n\n"));
    assert!(text.contains(&format!("        crt: {}\n", STANDARD.encode(&b.certs.os.crt))));
}

#[test]
fn talosctl_bundle_loads_and_writes_back_identically() {
    let Some(text) = stability_text() else { return };
    let b = ok(SecretsBundle::from_yaml(&text));
    assert_eq!(b.cluster.id, "0raF93qnkMvF-FZNuvyGozXNdLiT2FOWSlyBaW4PR-w=");
    assert_eq!(b.secrets.bootstrap_token, "inn7ol.u4ehnti8qyls9ymo");
    assert_eq!(b.trustd_info.token, "d8cwfa.eyvpi0xwxyarbfid");
    assert!(matches!(parse_key(&b.certs.k8s_service_account.key), PrivateKey::EcdsaP256(_)));
    with_cert(&b.certs.k8s_aggregator.crt, |c| assert_eq!(c.subject().to_string(), ""));
    with_cert(&b.certs.os.crt, |c| assert_eq!(c.subject().to_string(), "O=talos"));

    let without_comments: String = text.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
    assert_eq!(b.to_yaml(), without_comments);
}

// --------------------------------------------------------------- bad inputs

/// The contract-1.6 bundle's YAML with `from` replaced by `to` (once).
fn mutated(from: &str, to: &str) -> String {
    let text = bundle_1_6().to_yaml();
    assert!(text.contains(from), "test bug: {from:?} not in the bundle");
    text.replacen(from, to, 1)
}

#[test]
fn bad_inputs_name_the_field_and_say_what_was_wrong() {
    let b = bundle_1_6();
    let os_key = b64(&b.certs.os.key);
    let etcd_key = b64(&b.certs.etcd.key);
    let k8s_key = b64(&b.certs.k8s.key);
    let etcd_crt = b64(&b.certs.etcd.crt);
    let sa_key = b64(&b.certs.k8s_service_account.key);
    let token = b.secrets.bootstrap_token.clone();
    let EncryptionSecret::Secretbox(secretbox) = b.secrets.encryption.clone() else { panic!() };
    let trustd_line = format!("trustdinfo:\n    token: {}\n", b.trustd_info.token);
    let os_block = format!("    os:\n        crt: {}\n        key: {os_key}\n", b64(&b.certs.os.crt));
    let ca_expected = "an ECDSA P-256, RSA or Ed25519 private key (PEM \"EC PRIVATE KEY\", \"RSA PRIVATE KEY\", \"ED25519 PRIVATE KEY\" or \"PRIVATE KEY\")";
    let cases: Vec<(&str, String, &str, String)> = vec![
        (
            "wrong key type in certs.os.key",
            mutated(&os_key, &etcd_key),
            "certs.os.key",
            "expected an Ed25519 private key (PEM \"ED25519 PRIVATE KEY\"); found an ECDSA P-256 key".into(),
        ),
        (
            "cert/key mismatch",
            mutated(&k8s_key, &etcd_key),
            "certs.k8s.key",
            "expected the private key of the certificate in certs.k8s.crt (an ECDSA P-256 key); found an ECDSA P-256 key that does not match it".into(),
        ),
        (
            "bad base64",
            mutated(&etcd_crt, "not-base64!"),
            "certs.etcd.crt",
            "expected base64 of a PEM \"CERTIFICATE\" (standard alphabet, padded); found character '-' at offset 3".into(),
        ),
        (
            "base64 of something that is not PEM",
            mutated(&etcd_crt, &b64(b"hello")),
            "certs.etcd.crt",
            "expected a PEM \"CERTIFICATE\" block; found no \"-----BEGIN ...-----\" line".into(),
        ),
        (
            "a key where the certificate goes",
            mutated(&etcd_crt, &etcd_key),
            "certs.etcd.crt",
            "expected a PEM \"CERTIFICATE\" block; found a PEM \"EC PRIVATE KEY\" block".into(),
        ),
        (
            "a certificate where the key goes",
            mutated(&etcd_key, &etcd_crt),
            "certs.etcd.key",
            format!("expected {ca_expected}; found a PEM \"CERTIFICATE\" block"),
        ),
        (
            "unsupported curve",
            mutated(&etcd_key, &b64(P384_KEY.as_bytes())),
            "certs.etcd.key",
            format!("expected {ca_expected}; found an ECDSA P-384 key"),
        ),
        (
            "Ed25519 service-account key",
            mutated(&sa_key, &os_key),
            "certs.k8sserviceaccount.key",
            "expected an RSA or ECDSA P-256 private key (PEM \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\"); found an Ed25519 key".into(),
        ),
        (
            "uppercase in the bootstrap token",
            mutated(&token, &token.to_uppercase()),
            "secrets.bootstraptoken",
            "expected a token matching [0-9a-z]{6}.[0-9a-z]{16}; found an uppercase letter".into(),
        ),
        (
            "short trustd token",
            mutated(&trustd_line, "trustdinfo:\n    token: abc.def\n"),
            "trustdinfo.token",
            "expected a token matching [0-9a-z]{6}.[0-9a-z]{16}; found 7 characters".into(),
        ),
        (
            "token without a dot",
            mutated(&token, "abcdefghijklmnopqrstuvw"),
            "secrets.bootstraptoken",
            "expected a token matching [0-9a-z]{6}.[0-9a-z]{16}; found no '.' after the first 6 characters".into(),
        ),
        (
            "cluster secret of the wrong size",
            mutated(&b.cluster.secret, &b64(&[1u8; 16])),
            "cluster.secret",
            "expected standard base64 of 32 bytes; found 16 bytes".into(),
        ),
        (
            "secretbox key that is not base64",
            mutated(&secretbox, "not_base64"),
            "secrets.secretboxencryptionsecret",
            "expected standard base64 of 32 bytes; found character '_' at offset 3".into(),
        ),
        (
            "both encryption secrets",
            mutated("    secretboxencryptionsecret:", &format!("    aescbcencryptionsecret: {secretbox}\n    secretboxencryptionsecret:")),
            "secrets",
            "expected only one of secretboxencryptionsecret and aescbcencryptionsecret; found both".into(),
        ),
        (
            "a mapping where a string goes",
            mutated(&format!("id: {}", b.cluster.id), "id: {a: b}"),
            "cluster.id",
            "expected a string; found a mapping".into(),
        ),
        (
            "a list where a mapping goes",
            mutated(&trustd_line, "trustdinfo: [1, 2]\n"),
            "trustdinfo",
            "expected a mapping with token; found a list".into(),
        ),
    ];
    for (name, text, field, message) in &cases {
        match SecretsBundle::from_yaml(text) {
            Err(PkiError::Invalid { field: f, message: m }) => {
                assert_eq!((f.as_str(), m.as_str()), (*field, message.as_str()), "case: {name}");
            }
            other => panic!("case {name}: expected Invalid, got {other:?}"),
        }
    }

    // Unknown fields, at any level.
    for (text, field, expected) in [
        (mutated("cluster:\n", "cluster:\n    extra: 1\n"), "cluster.extra", vec!["id", "secret"]),
        (format!("{}debug: true\n", b.to_yaml()), "debug", vec!["cluster", "secrets", "trustdinfo", "certs"]),
        (mutated("    os:\n", "    os:\n        ca: x\n"), "certs.os.ca", vec!["crt", "key"]),
    ] {
        match SecretsBundle::from_yaml(&text) {
            Err(PkiError::UnknownField { field: f, expected: e }) => {
                assert_eq!((f.as_str(), e), (field, expected));
            }
            other => panic!("{field}: expected UnknownField, got {other:?}"),
        }
    }

    // Missing fields (absent, null and empty all count as missing).
    for (text, field) in [
        (mutated(&trustd_line, "trustdinfo:\n"), "trustdinfo"),
        (mutated(&trustd_line, "trustdinfo:\n    token: \"\"\n"), "trustdinfo.token"),
        (mutated(&os_block, ""), "certs.os"),
        (mutated(&format!("        key: {os_key}\n"), ""), "certs.os.key"),
        (mutated(&format!("    secretboxencryptionsecret: {secretbox}\n"), ""), "secrets.secretboxencryptionsecret"),
        (mutated(&format!("    id: {}\n", b.cluster.id), "    id: ~\n"), "cluster.id"),
    ] {
        match SecretsBundle::from_yaml(&text) {
            Err(PkiError::MissingField { field: f, expected }) => {
                assert_eq!(f, field);
                assert!(!expected.is_empty());
            }
            other => panic!("{field}: expected MissingField, got {other:?}"),
        }
    }
    let err = SecretsBundle::from_yaml(&mutated(&trustd_line, "trustdinfo:\n")).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("trustdinfo: missing required field; expected a mapping with token")
    );

    // YAML syntax errors carry the position.
    match SecretsBundle::from_yaml("cluster:\n    id: [\n") {
        Err(PkiError::Yaml { line: Some(2), .. }) => {}
        other => panic!("{other:?}"),
    }
    match SecretsBundle::from_yaml("- a\n") {
        Err(PkiError::Invalid { field, message }) => {
            assert_eq!(field, "(document)");
            assert!(message.ends_with("found a list"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(SecretsBundle::from_yaml(""), Err(PkiError::Invalid { .. })));
}

#[test]
fn error_display_is_field_then_message() {
    let e = PkiError::Invalid { field: "certs.os.key".into(), message: "expected x; found y".into() };
    assert_eq!(e.to_string(), "certs.os.key: expected x; found y");
    assert_eq!(e.field(), Some("certs.os.key"));
    let e = PkiError::UnknownField { field: "cluster.extra".into(), expected: vec!["id", "secret"] };
    assert_eq!(e.to_string(), "cluster.extra: unknown field; expected one of: id, secret");
    let e = PkiError::Yaml { message: "unclosed bracket '['".into(), line: Some(2), column: Some(9) };
    assert_eq!(e.to_string(), "yaml syntax error at line 2, column 9: unclosed bracket '['");
}

#[test]
fn rsa_and_pkcs8_cas_are_accepted_like_talos_does() {
    // A kubeadm-style RSA Kubernetes CA, as NewBundleFromKubernetesPKI makes.
    let b = bundle_1_6();
    let k8s_crt = b64(&b.certs.k8s.crt);
    let k8s_key = b64(&b.certs.k8s.key);
    for key in [RSA_CA_KEY_PKCS1, RSA_CA_KEY_PKCS8] {
        let text = mutated(&k8s_crt, &b64(RSA_CA_CRT.as_bytes())).replacen(&k8s_key, &b64(key.as_bytes()), 1);
        let loaded = ok(SecretsBundle::from_yaml(&text));
        assert!(matches!(parse_key(&loaded.certs.k8s.key), PrivateKey::Rsa(_)));
        assert_eq!(loaded.to_yaml(), text, "round trip keeps the original bytes");
    }
    // An Ed25519 key under the generic PKCS#8 label is the same key.
    let relabelled = String::from_utf8_lossy(&b.certs.os.key).replace("ED25519 PRIVATE KEY", "PRIVATE KEY");
    let text = mutated(&b64(&b.certs.os.key), &b64(relabelled.as_bytes()));
    ok(SecretsBundle::from_yaml(&text));
}

#[test]
fn no_input_makes_it_panic() {
    let text = bundle_1_6().to_yaml();
    // Every truncation.
    for end in (0..text.len()).step_by(7) {
        let _ = SecretsBundle::from_yaml(&text[..end]);
        let _ = TalosConfig::from_yaml(&text[..end]);
    }
    // Byte flips, deletions and duplications at pseudo-random places.
    let mut rng = seeded(42);
    let bytes = text.as_bytes();
    for _ in 0..400 {
        let mut pick = [0u8; 4];
        rng.fill_bytes(&mut pick);
        let pos = usize::from(u16::from_le_bytes([pick[0], pick[1]])) % bytes.len();
        let mut m = bytes.to_vec();
        match pick[2] % 3 {
            0 => m[pos] = pick[3] % 128,
            1 => {
                m.remove(pos);
            }
            _ => m.insert(pos, m[pos]),
        }
        if let Ok(s) = std::str::from_utf8(&m) {
            let _ = SecretsBundle::from_yaml(s);
        }
    }
    // Odd YAML shapes.
    for s in [
        "~",
        "[]",
        "{}",
        "cluster: ~",
        "cluster: 1",
        "cluster:\n  id: 1\n  secret: 2",
        "a: &a [*a]",
        "? [a]\n: 1",
        "!!binary aGVsbG8=",
        "cluster: !!binary aGVsbG8=",
        "\u{feff}cluster:",
        "---\n---\n",
        "key: \"\\x00\"",
    ] {
        let _ = SecretsBundle::from_yaml(s);
        let _ = TalosConfig::from_yaml(s);
    }
}

#[test]
fn debug_output_redacts_secrets() {
    let b = bundle_1_6();
    let debug = format!("{b:?}");
    assert!(!debug.contains(&b.secrets.bootstrap_token));
    assert!(!debug.contains(&b.trustd_info.token));
    assert!(!debug.contains(&b.cluster.secret));
    let key_body = String::from_utf8_lossy(&b.certs.etcd.key).lines().nth(1).unwrap_or_default().to_owned();
    assert!(!debug.contains(&key_body));
    assert!(debug.contains("BEGIN CERTIFICATE"), "certificates are public and shown");
}

#[test]
fn corrupted_keys_and_certificates_are_errors_not_panics() {
    let b = bundle_1_6();
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("RSA PRIVATE KEY", der_of(RSA_CA_KEY_PKCS1.as_bytes())),
        ("PRIVATE KEY", der_of(RSA_CA_KEY_PKCS8.as_bytes())),
        ("EC PRIVATE KEY", der_of(&b.certs.etcd.key)),
        ("ED25519 PRIVATE KEY", der_of(&b.certs.os.key)),
        ("CERTIFICATE", der_of(&b.certs.etcd.crt)),
        ("CERTIFICATE", der_of(RSA_CA_CRT.as_bytes())),
    ];
    let certs: Vec<Vec<u8>> = vec![der_of(&b.certs.etcd.crt), der_of(RSA_CA_CRT.as_bytes())];
    let mut rng = seeded(77);
    let mut parsed = 0;
    for (label, der) in &inputs {
        for _ in 0..300 {
            let mut pick = [0u8; 4];
            rng.fill_bytes(&mut pick);
            let mut m = der.clone();
            let pos = usize::from(u16::from_le_bytes([pick[0], pick[1]])) % m.len();
            match pick[2] % 3 {
                0 => m[pos] ^= pick[3] | 1,
                1 => m.truncate(pos),
                _ => m[pos] = 0xff,
            }
            let pem = pem_encode(label, &m);
            if let Ok(key) = keys::parse_private_key_pem(&pem) {
                parsed += 1;
                for cert in &certs {
                    if let Ok((_, c)) = x509_parser::parse_x509_certificate(cert) {
                        let _ = key.matches_spki(c.public_key());
                    }
                }
            }
            let _ = bundle::parse_certificate_pem("f", &pem);
        }
    }
    // Some mutations (e.g. in unused padding) still parse; most must not.
    assert!(parsed < 6 * 300);
}
