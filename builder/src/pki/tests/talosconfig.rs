//! The talosconfig file.

use super::*;

// -------------------------------------------------------------- talosconfig

#[test]
fn talosconfig_has_talosctl_layout() {
    let b = bundle_1_6();
    let admin = ok(generate_admin_cert(&b.certs.os, &mut seeded(9), now()));
    let cfg = TalosConfig::new(
        "my-cluster",
        vec!["10.5.0.10".into(), "10.5.0.11".into()],
        vec![],
        &b.certs.os.crt,
        &admin.crt,
        &admin.key,
    );
    let expected = format!(
        "context: my-cluster\ncontexts:\n    my-cluster:\n        endpoints:\n            - 10.5.0.10\n            - 10.5.0.11\n        ca: {}\n        crt: {}\n        key: {}\n",
        b64(&b.certs.os.crt),
        b64(&admin.crt),
        b64(&admin.key)
    );
    assert_eq!(cfg.to_yaml(), expected);
    assert_eq!(ok(TalosConfig::from_yaml(&expected)), cfg);

    let with_nodes = TalosConfig::new("c", vec![], vec!["10.5.0.2".into()], b"", b"", b"");
    assert_eq!(
        with_nodes.to_yaml(),
        "context: c\ncontexts:\n    c:\n        endpoints: []\n        nodes:\n            - 10.5.0.2\n"
    );
    assert_eq!(ok(TalosConfig::from_yaml(&with_nodes.to_yaml())), with_nodes);

    let quoted = TalosConfig::new("yes", vec!["fd00::1".into(), "true".into()], vec![], b"", b"", b"");
    assert_eq!(
        quoted.to_yaml(),
        "context: 'yes'\ncontexts:\n    'yes':\n        endpoints:\n            - fd00::1\n            - \"true\"\n"
    );
    assert_eq!(ok(TalosConfig::from_yaml(&quoted.to_yaml())), quoted);
}

#[test]
fn talosconfig_reads_every_talos_field_and_rejects_bad_ones() {
    let text = "context: a\ncontexts:\n    a:\n        target: 1.2.3.4\n        endpoints:\n            - 5.6.7.8\n        auth:\n            basic:\n                username: u\n                password: p\n            siderov1:\n                identity: me\n        cluster: omni\n        proxy-url: http://proxy\n    b: ~\n";
    let cfg = ok(TalosConfig::from_yaml(text));
    let a = cfg.contexts.get("a").unwrap_or_else(|| panic!("context a"));
    assert_eq!(a.endpoints, ["5.6.7.8", "1.2.3.4"], "target is folded into endpoints like Talos");
    assert_eq!(a.auth.basic, Some(("u".into(), "p".into())));
    assert_eq!(a.auth.siderov1_identity.as_deref(), Some("me"));
    assert_eq!((a.cluster.as_str(), a.proxy_url.as_str()), ("omni", "http://proxy"));
    assert_eq!(cfg.contexts.len(), 1, "null contexts are skipped");
    let written = cfg.to_yaml();
    assert!(written.contains("        auth:\n            basic:\n                username: u\n                password: p\n            siderov1:\n                identity: me\n        cluster: omni\n        proxy-url: http://proxy\n"), "{written}");
    assert_eq!(ok(TalosConfig::from_yaml(&written)), cfg);

    match TalosConfig::from_yaml("context: a\ncontexts:\n    a:\n        endpoint: x\n") {
        Err(PkiError::UnknownField { field, .. }) => assert_eq!(field, "contexts.a.endpoint"),
        other => panic!("{other:?}"),
    }
    match TalosConfig::from_yaml("context: a\ncontexts:\n    a:\n        endpoints: [x]\n        ca: '%%'\n") {
        Err(PkiError::Invalid { field, message }) => {
            assert_eq!(field, "contexts.a.ca");
            assert!(message.starts_with("expected base64"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // A key that is not the certificate's.
    let b = bundle_1_6();
    let admin = ok(generate_admin_cert(&b.certs.os, &mut seeded(10), now()));
    let other = ok(generate_admin_cert(&b.certs.os, &mut seeded(11), now()));
    let bad = TalosConfig::new("x", vec![], vec![], &b.certs.os.crt, &admin.crt, &other.key).to_yaml();
    match TalosConfig::from_yaml(&bad) {
        Err(PkiError::Invalid { field, message }) => {
            assert_eq!(field, "contexts.x.key");
            assert_eq!(
                message,
                "expected the private key of the certificate in contexts.x.crt (an Ed25519 key); found an Ed25519 key that does not match it"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ok(TalosConfig::from_yaml("context: \"\"\ncontexts: {}\n")).to_yaml(), "context: \"\"\ncontexts: {}\n");
}
