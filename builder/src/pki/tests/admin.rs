//! The talosconfig admin client certificate, and openssl's opinion of every PEM.

use super::*;

// ------------------------------------------------------------- admin cert

#[test]
fn admin_cert_is_an_ed25519_client_cert_signed_by_the_os_ca() {
    let b = bundle_1_14();
    let admin = ok(generate_admin_cert(&b.certs.os, &mut seeded(5), now()));
    check_admin_cert(&admin, &b.certs.os);
    // Deterministic too.
    assert_eq!(admin, ok(generate_admin_cert(&b.certs.os, &mut seeded(5), now())));
}

#[test]
fn admin_cert_from_the_talosctl_os_ca() {
    let Some(text) = stability_text() else { return };
    let b = ok(SecretsBundle::from_yaml(&text));
    let admin = ok(generate_admin_cert(&b.certs.os, &mut OsSecretRng, now()));
    check_admin_cert(&admin, &b.certs.os);
}

fn check_admin_cert(admin: &CertAndKey, ca: &CertAndKey) {
    let block = ok(pem_decode(&admin.key).map_err(PkiError::Crypto));
    assert_eq!(block.label, "ED25519 PRIVATE KEY");
    assert_eq!(block.der.len(), 48);
    with_cert(&ca.crt, |ca_cert| {
        with_cert(&admin.crt, |cert| {
            assert_eq!(cert.subject().to_string(), "O=os:admin");
            // PrintableString, as Go writes "os:admin"
            assert_eq!(cert.subject().as_raw()[11], 0x13);
            assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
            assert_eq!(cert.signature_algorithm.algorithm.to_id_string(), OID_ED25519);
            assert_eq!(cert.public_key().algorithm.algorithm.to_id_string(), OID_ED25519);
            let serial = cert.raw_serial();
            assert!(serial.strip_prefix(&[0u8]).unwrap_or(serial).len() <= 16);
            let v = cert.validity();
            assert_eq!(v.not_before.timestamp(), 1_763_790_000);
            assert_eq!(v.not_after.timestamp() - v.not_before.timestamp(), 365 * 24 * 3600);
            let oids: Vec<String> = cert.extensions().iter().map(|e| e.oid.to_id_string()).collect();
            assert_eq!(oids, [OID_KEY_USAGE, OID_EXT_KEY_USAGE, OID_AKID], "Go's order, no SKID, no BasicConstraints");
            for ext in cert.extensions() {
                match ext.parsed_extension() {
                    ParsedExtension::KeyUsage(ku) => {
                        assert!(ext.critical);
                        assert_eq!(ku.flags, 1, "digitalSignature only");
                    }
                    ParsedExtension::ExtendedKeyUsage(eku) => {
                        assert!(eku.client_auth && !eku.server_auth && !eku.any && eku.other.is_empty());
                        assert!(!eku.code_signing && !eku.email_protection && !eku.time_stamping && !eku.ocsp_signing);
                    }
                    ParsedExtension::AuthorityKeyIdentifier(akid) => {
                        assert_eq!(akid.key_identifier.as_ref().map(|k| k.0.to_vec()), skid(ca_cert));
                        assert!(akid.authority_cert_issuer.is_none() && akid.authority_cert_serial.is_none());
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(signature_verifies(cert, ca_cert), "signed by the OS CA");
            assert!(!signature_verifies(cert, cert), "not self-signed");
            assert!(parse_key(&admin.key).matches_spki(cert.public_key()));
        });
    });
}

#[test]
fn admin_cert_needs_an_ed25519_os_ca() {
    let b = bundle_1_6();
    let err = generate_admin_cert(&b.certs.etcd, &mut seeded(1), now()).err();
    match err {
        Some(PkiError::Invalid { field, message }) => {
            assert_eq!(field, "certs.os.key");
            assert_eq!(
                message,
                "expected an Ed25519 private key (PEM \"ED25519 PRIVATE KEY\"); found an ECDSA P-256 key"
            );
        }
        other => panic!("{other:?}"),
    }
    let mismatched = CertAndKey { crt: b.certs.os.crt.clone(), key: bundle_1_14().certs.os.key.clone() };
    assert!(matches!(
        generate_admin_cert(&mismatched, &mut seeded(1), now()),
        Err(PkiError::Invalid { field, .. }) if field == "certs.os.key"
    ));
}

// ------------------------------------------------------------------ openssl

fn openssl_available() -> bool {
    let found = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    if !found {
        crate::skip_test!("SKIPPED: openssl CLI not installed");
    }
    found
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap_or_else(|e| panic!("openssl: {e}"));
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// openssl does not know Talos's "ED25519 PRIVATE KEY" label; the body is
/// plain PKCS#8, so relabel it.
fn for_openssl(pem: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(pem).replace("ED25519 PRIVATE KEY", "PRIVATE KEY").into_bytes()
}

#[test]
fn openssl_accepts_every_pem() {
    if !openssl_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("talforge-pki-{}", std::process::id()));
    ok(std::fs::create_dir_all(&dir).map_err(|e| PkiError::Crypto(e.to_string())));
    let write = |name: &str, data: &[u8]| -> String {
        let path = dir.join(name);
        ok(std::fs::write(&path, data).map_err(|e| PkiError::Crypto(e.to_string())));
        path.to_string_lossy().into_owned()
    };
    let b = bundle_1_14();
    let admin = ok(generate_admin_cert(&b.certs.os, &mut seeded(8), now()));
    let cas = [
        ("etcd", &b.certs.etcd, "Subject: O = etcd"),
        ("k8s", &b.certs.k8s, "Subject: O = kubernetes"),
        ("k8saggregator", &b.certs.k8s_aggregator, "Subject: \n"),
        ("os", &b.certs.os, "Subject: O = talos"),
    ];
    for (name, pair, subject) in cas {
        let crt = write(&format!("{name}.crt"), &pair.crt);
        let key = write(&format!("{name}.key"), &for_openssl(&pair.key));
        let text = openssl(&["x509", "-noout", "-text", "-in", &crt]);
        assert!(text.contains(subject), "{name}: {text}");
        assert!(text.contains("CA:TRUE"), "{name}");
        assert!(text.contains("Digital Signature, Certificate Sign"), "{name}");
        assert!(text.contains("TLS Web Server Authentication, TLS Web Client Authentication"), "{name}");
        openssl(&["pkey", "-noout", "-in", &key]);
        // The key's public half is the certificate's.
        let from_key = openssl(&["pkey", "-pubout", "-in", &key]);
        let from_crt = openssl(&["x509", "-noout", "-pubkey", "-in", &crt]);
        assert_eq!(from_key, from_crt, "{name}");
        // Self-signed CA verifies against itself.
        let verified = openssl(&["verify", "-attime", ATTIME, "-CAfile", &crt, &crt]);
        assert!(verified.contains("OK"), "{name}: {verified}");
    }
    let sa = write("sa.key", &b.certs.k8s_service_account.key);
    let rsa_text = openssl(&["rsa", "-check", "-noout", "-in", &sa]);
    assert!(rsa_text.contains("RSA key ok"), "{rsa_text}");

    let os_crt = dir.join("os.crt").to_string_lossy().into_owned();
    let admin_crt = write("admin.crt", &admin.crt);
    let admin_key = write("admin.key", &for_openssl(&admin.key));
    let text = openssl(&["x509", "-noout", "-text", "-in", &admin_crt]);
    assert!(text.contains("Subject: O = os:admin"), "{text}");
    assert!(text.contains("TLS Web Client Authentication") && !text.contains("Server Authentication"));
    let verified = openssl(&["verify", "-attime", ATTIME, "-purpose", "sslclient", "-CAfile", &os_crt, &admin_crt]);
    assert!(verified.contains("OK"), "{verified}");
    assert_eq!(
        openssl(&["pkey", "-pubout", "-in", &admin_key]),
        openssl(&["x509", "-noout", "-pubkey", "-in", &admin_crt])
    );
    let _ = std::fs::remove_dir_all(&dir);
}
