//! Generation: certificate templates, key formats, contracts, tokens, randomness.

use super::*;

// ---------------------------------------------------------------- generation

#[test]
fn generated_cas_match_talos_templates() {
    let b = bundle_1_14();
    check_ca("etcd", &b.certs.etcd, "O=etcd", OID_ECDSA_SHA256);
    check_ca("k8s", &b.certs.k8s, "O=kubernetes", OID_ECDSA_SHA256);
    check_ca("k8saggregator", &b.certs.k8s_aggregator, "", OID_ECDSA_SHA256);
    check_ca("os", &b.certs.os, "O=talos", OID_ED25519);

    for (name, pair) in [("etcd", &b.certs.etcd), ("k8s", &b.certs.k8s), ("k8saggregator", &b.certs.k8s_aggregator)] {
        let block = ok(pem_decode(&pair.key).map_err(PkiError::Crypto));
        assert_eq!(block.label, "EC PRIVATE KEY", "{name}");
        assert_eq!(block.der.len(), 121, "{name}: SEC1 with parameters and public key, like Go");
        assert!(matches!(parse_key(&pair.key), PrivateKey::EcdsaP256(_)));
    }
    let os = ok(pem_decode(&b.certs.os.key).map_err(PkiError::Crypto));
    assert_eq!(os.label, "ED25519 PRIVATE KEY");
    assert_eq!(os.der.len(), 48, "PKCS#8 v1 without public key, like Go");
    // Every PEM is Go's layout: 64-column lines, LF, trailing newline.
    for pem in
        [&b.certs.etcd.crt, &b.certs.etcd.key, &b.certs.os.crt, &b.certs.os.key, &b.certs.k8s_service_account.key]
    {
        let block = ok(pem_decode(pem).map_err(PkiError::Crypto));
        assert_eq!(pem, &pem_encode(&block.label, &block.der));
        assert!(String::from_utf8_lossy(pem).lines().all(|l| l.len() <= 64));
    }
    // Serials and key identifiers are distinct.
    let skids: Vec<Vec<u8>> = [&b.certs.etcd, &b.certs.k8s, &b.certs.k8s_aggregator, &b.certs.os]
        .iter()
        .map(|p| with_cert(&p.crt, |c| skid(c).unwrap_or_default()))
        .collect();
    for (i, a) in skids.iter().enumerate() {
        assert!(skids[i + 1..].iter().all(|b| b != a));
    }
}

#[test]
fn generated_cas_have_the_same_der_shape_as_talosctl() {
    let Some(text) = stability_text() else { return };
    let talos = ok(SecretsBundle::from_yaml(&text));
    let ours = bundle_1_14();
    let pairs = [
        ("etcd", &talos.certs.etcd, &ours.certs.etcd),
        ("k8s", &talos.certs.k8s, &ours.certs.k8s),
        ("k8saggregator", &talos.certs.k8s_aggregator, &ours.certs.k8s_aggregator),
        ("os", &talos.certs.os, &ours.certs.os),
    ];
    for (name, theirs, mine) in pairs {
        with_cert(&theirs.crt, |t| {
            with_cert(&mine.crt, |m| {
                assert_eq!(t.subject().as_raw(), m.subject().as_raw(), "{name}: subject DER (string types)");
                assert_eq!(t.issuer().as_raw(), m.issuer().as_raw(), "{name}: issuer DER");
                assert_eq!(extension_shape(t), extension_shape(m), "{name}: extensions");
                assert_eq!(
                    t.signature_algorithm.algorithm, m.signature_algorithm.algorithm,
                    "{name}: signature algorithm"
                );
                assert_eq!(t.signature_algorithm.parameters.is_some(), m.signature_algorithm.parameters.is_some());
                assert_eq!(t.public_key().algorithm.algorithm, m.public_key().algorithm.algorithm);
            });
        });
    }
}

#[test]
fn talosctl_key_encodings_are_reproduced_byte_for_byte() {
    let Some(text) = stability_text() else { return };
    let talos = ok(SecretsBundle::from_yaml(&text));
    for pem in [&talos.certs.etcd.key, &talos.certs.k8s.key, &talos.certs.os.key, &talos.certs.k8s_service_account.key]
    {
        assert_eq!(&ok(parse_key(pem).to_pem()), pem, "re-encoding a Go-made key changes nothing");
    }
}

#[test]
fn pkcs1_rsa_keys_are_reencoded_byte_for_byte() {
    // An openssl-made PKCS#1 key (standard DER, as Go's MarshalPKCS1PrivateKey).
    let pem = RSA_CA_KEY_PKCS1.as_bytes();
    assert_eq!(ok(parse_key(pem).to_pem()), pem);
}

#[test]
fn service_account_key_follows_the_contract() {
    use rsa::traits::PublicKeyParts as _;
    let b = bundle_1_14();
    let block = ok(pem_decode(&b.certs.k8s_service_account.key).map_err(PkiError::Crypto));
    assert_eq!(block.label, "RSA PRIVATE KEY");
    match parse_key(&b.certs.k8s_service_account.key) {
        PrivateKey::Rsa(key) => {
            assert_eq!(key.n().as_ref().bits(), 4096);
            let e = key.e().to_be_bytes();
            assert_eq!(e.iter().copied().skip_while(|b| *b == 0).collect::<Vec<u8>>(), [1, 0, 1], "e = 65537");
        }
        other => panic!("{other:?}"),
    }
    for contract in [Contract::new(1, 6), Contract::new(1, 0)] {
        let b = ok(SecretsBundle::generate(&mut seeded(2), now(), contract));
        let block = ok(pem_decode(&b.certs.k8s_service_account.key).map_err(PkiError::Crypto));
        assert_eq!(block.label, "EC PRIVATE KEY", "{contract}");
    }
}

#[test]
fn encryption_secret_and_cluster_identity_follow_the_contract() {
    let b = bundle_1_14();
    let EncryptionSecret::Secretbox(s) = &b.secrets.encryption else { panic!("1.14 uses secretbox") };
    assert_eq!(ok(STANDARD.decode(s).map_err(|e| PkiError::Crypto(e.to_string()))).len(), 32);
    assert_eq!(STANDARD.decode(&b.cluster.id).map(|v| v.len()).ok(), Some(32));
    assert_eq!(STANDARD.decode(&b.cluster.secret).map(|v| v.len()).ok(), Some(32));

    let old = ok(SecretsBundle::generate(&mut seeded(3), now(), Contract::new(1, 2)));
    let EncryptionSecret::AesCbc(s) = &old.secrets.encryption else { panic!("1.2 uses aescbc") };
    assert_eq!(STANDARD.decode(s).map(|v| v.len()).ok(), Some(32));
    assert!(old.to_yaml().contains("\n    aescbcencryptionsecret: "));
    assert!(!old.to_yaml().contains("secretbox"));
    let new = ok(SecretsBundle::generate(&mut seeded(3), now(), Contract::new(1, 3)));
    assert!(matches!(new.secrets.encryption, EncryptionSecret::Secretbox(_)));

    // A generator that yields only 0xff shows the alphabet: "/" vs "_".
    struct Ones;
    impl SecretRng for Ones {
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            dst.fill(0xff);
        }
    }
    // 0xff scalars are invalid P-256 keys, so the bundle cannot be made from
    // Ones; the id encoding is checked through the contract switch instead.
    assert!(Contract::new(1, 14).uses_standard_cluster_id_encoding());
    assert!(!Contract::new(1, 13).uses_standard_cluster_id_encoding());
    assert!(matches!(SecretsBundle::generate(&mut Ones, now(), Contract::V1_14), Err(PkiError::Rng(_))));
    let b13 = ok(SecretsBundle::generate(&mut seeded(7), now(), Contract::new(1, 6)));
    assert_eq!(URL_SAFE.decode(&b13.cluster.id).map(|v| v.len()).ok(), Some(32), "≤1.13: URL-safe alphabet");
    assert!(!b13.cluster.id.contains(['+', '/']));
}

#[test]
fn seeded_generation_is_reproducible() {
    let a = bundle_1_6();
    let b = bundle_1_6();
    assert_eq!(a, b);
    assert_eq!(a.to_yaml(), b.to_yaml());
    let c = ok(SecretsBundle::generate(&mut seeded(99), now(), Contract::new(1, 6)));
    assert_ne!(a.certs.os.key, c.certs.os.key);
    assert_ne!(a.cluster.secret, c.cluster.secret);
    // The OS generator works too and gives different bundles each time.
    let d = ok(SecretsBundle::generate(&mut OsSecretRng, now(), Contract::new(1, 6)));
    let e = ok(SecretsBundle::generate(&mut OsSecretRng, now(), Contract::new(1, 6)));
    assert_ne!(d.certs.etcd.key, e.certs.etcd.key);
    ok(d.validate());
}

#[test]
fn tokens_have_the_kubeadm_shape() {
    let b = bundle_1_14();
    for token in [&b.secrets.bootstrap_token, &b.trustd_info.token] {
        assert_eq!(token.len(), 23);
        assert_eq!(&token[6..7], ".");
        assert!(token.bytes().enumerate().all(|(i, c)| i == 6 || c.is_ascii_digit() || c.is_ascii_lowercase()));
        ok(check_token("t", token));
    }
    assert_ne!(b.secrets.bootstrap_token, b.trustd_info.token);

    // Bytes >= 252 are skipped; the rest map to byte % 36.
    struct Script(Vec<u8>, usize);
    impl SecretRng for Script {
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            for d in dst {
                *d = self.0[self.1 % self.0.len()];
                self.1 += 1;
            }
        }
    }
    let mut script: Vec<u8> = vec![252, 0, 253, 1, 254, 2, 255, 3, 4, 5];
    script.extend(36..52u8); // 36 % 36 = 0 ... 51 % 36 = 15
    script.extend([251, 251, 251, 251, 251, 251]); // padding: 251 % 36 = 35 = 'z'
    let token = ok(generate_token(&mut Script(script, 0)));
    assert_eq!(token, "012345.0123456789abcdef");
}

#[test]
fn a_failing_generator_is_an_error_not_a_panic() {
    struct Broken;
    impl SecretRng for Broken {
        fn fill_bytes(&mut self, _: &mut [u8]) {}
        fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), PkiError> {
            Err(PkiError::Rng("expected bytes; found none".into()))
        }
    }
    for contract in [Contract::new(1, 6), Contract::V1_14] {
        assert!(matches!(SecretsBundle::generate(&mut Broken, now(), contract), Err(PkiError::Rng(_))));
    }
    // RSA keygen: the adapter records the failure and the bundle is refused.
    struct FailsLater(usize);
    impl SecretRng for FailsLater {
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            dst.fill(7);
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), PkiError> {
            self.0 += 1;
            if self.0 > 3 {
                return Err(PkiError::Rng("expected bytes; found none".into()));
            }
            dst.fill(7);
            Ok(())
        }
    }
    assert!(matches!(keys::generate_rsa(&mut FailsLater(0), 1024), Err(PkiError::Rng(_))));
}

#[test]
fn times_outside_x509_range_are_errors_not_panics() {
    let year = Duration::from_secs(365 * 24 * 3600);
    let cases = [
        UNIX_EPOCH - year * 3000, // year -1030
        UNIX_EPOCH + year * 8035, // expiry after 9999
        UNIX_EPOCH + year * 20000,
    ];
    for t in cases {
        match SecretsBundle::generate(&mut seeded(1), t, Contract::new(1, 6)) {
            Err(PkiError::Crypto(message)) => {
                assert!(message.starts_with("expected a"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }
    // 1940 and 2060 still work (GeneralizedTime).
    for t in [UNIX_EPOCH - year * 30, UNIX_EPOCH + year * 90] {
        let b = ok(SecretsBundle::generate(&mut seeded(1), t, Contract::new(1, 6)));
        ok(SecretsBundle::from_yaml(&b.to_yaml()));
        ok(generate_admin_cert(&b.certs.os, &mut seeded(2), t));
    }
}
