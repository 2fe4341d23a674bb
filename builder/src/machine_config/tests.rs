//! Table-driven tests of the patch engine: one case per Talos rule, each asserting the exact resulting documents
//! or the exact error, plus the golden files recorded from real Talos runs (read from ../shared at test time).

use crate::yaml::{Node, Value, parse_documents};

use super::*;

/// A plain, test-only printer (not go-yaml-exact) so failures show readable trees.
fn dump(n: &Node) -> String {
    fn go(n: &Node, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match &n.value {
            Value::Map(m) if !m.is_empty() => {
                for (k, v) in m.iter() {
                    match &v.value {
                        Value::Map(mm) if !mm.is_empty() => {
                            out.push_str(&format!("{pad}{}:\n", k.name));
                            go(v, indent + 2, out);
                        }
                        Value::Seq(s) if !s.is_empty() => {
                            out.push_str(&format!("{pad}{}:\n", k.name));
                            go(v, indent + 2, out);
                        }
                        _ => out.push_str(&format!("{pad}{}: {}\n", k.name, scalar(v))),
                    }
                }
            }
            Value::Seq(s) if !s.is_empty() => {
                for item in s {
                    out.push_str(&format!("{pad}-\n"));
                    go(item, indent + 2, out);
                }
            }
            _ => out.push_str(&format!("{pad}{}\n", scalar(n))),
        }
    }
    fn scalar(n: &Node) -> String {
        match &n.value {
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::UInt(u) => u.to_string(),
            Value::Float(f) => format!("{f:?}"),
            Value::Str(s) => format!("{s:?}"),
            Value::Seq(_) => "[]".into(),
            Value::Map(_) => "{}".into(),
        }
    }
    let mut out = String::new();
    go(n, 0, &mut out);
    out
}

fn dump_all(docs: &[Node]) -> String {
    docs.iter().map(dump).collect::<Vec<_>>().join("---\n")
}

fn docs(text: &str) -> Vec<Node> {
    parse_documents(text).expect("test YAML parses")
}

fn patch(text: &str) -> Patch {
    load_patch(text, PatchOrigin::Label("--config-patch #1".into())).expect("test patch loads")
}

fn patch_err(text: &str) -> PatchError {
    load_patch(text, PatchOrigin::Label("--config-patch #1".into())).expect_err("patch must not load")
}

/// Applies patches and compares the result with `expected` (parsed, so order and types count).
#[track_caller]
fn check(config: &str, patches: &[&str], contract: Contract, expected: &str) {
    let ps: Vec<Patch> = patches.iter().map(|p| patch(p)).collect();
    let got = apply_patches(docs(config), &ps, contract).unwrap_or_else(|e| panic!("apply failed: {e}"));
    let want = docs(expected);
    assert_eq!(dump_all(&got), dump_all(&want));
    assert_eq!(got, want);
}

#[track_caller]
fn check_err(config: &str, patches: &[&str], contract: Contract, expected: &str) -> PatchError {
    let ps: Vec<Patch> = patches.iter().map(|p| patch(p)).collect();
    let e = apply_patches(docs(config), &ps, contract).expect_err("apply must fail");
    assert_eq!(e.to_string(), expected);
    e
}

const V1: &str = "version: v1alpha1
debug: false
persist: true
machine:
    type: controlplane
    token: t
    certSANs: []
    kubelet:
        image: ghcr.io/siderolabs/kubelet:v1.28.0
        defaultRuntimeSeccompProfileEnabled: true
    network:
        interfaces:
            - interface: eth0
              dhcp: true
            - deviceSelector:
                busPath: 0*
              mtu: 1500
    install:
        wipe: false
cluster:
    controlPlane:
        endpoint: https://base:6443
    clusterName: base
    network:
        dnsDomain: cluster.local
        podSubnets:
            - 10.244.0.0/16
        serviceSubnets:
            - 10.96.0.0/12
    token: x
    apiServer:
        image: registry.k8s.io/kube-apiserver:v1.28.0
        extraArgs:
            foo: bar
            list:
                - a
        admissionControl:
            - name: PodSecurity
              configuration:
                  apiVersion: pod-security.admission.config.k8s.io/v1alpha1
                  exemptions:
                      namespaces:
                          - kube-system
                  kind: PodSecurityConfiguration
";

/// The same config with `tail` spliced over the end of it (a test builds expected output as a small diff).
fn v1_with(replace: &[(&str, &str)]) -> String {
    let mut s = V1.to_owned();
    for (from, to) in replace {
        assert!(s.contains(from), "{from:?} not in V1");
        s = s.replacen(from, to, 1);
    }
    s
}

const HOSTNAME: &str = "apiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n";

fn multi() -> String {
    format!("{V1}---\n{HOSTNAME}")
}

#[test]
fn strategic_merge_rules() {
    let c = Contract::V1_13;
    // (name, patch, replacements in V1 giving the expected v1alpha1 document)
    // (name, patch, replacements in V1 giving the expected v1alpha1 document)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        ("scalar overwrite", "machine:\n  token: new\n", &[("token: t\n", "token: new\n")]),
        ("zero does not overwrite", "machine:\n  token: \"\"\n  type: controlplane\n", &[]),
        (
            "bool false overwrites through a pointer",
            "machine:\n  kubelet:\n    defaultRuntimeSeccompProfileEnabled: false\n",
            &[("defaultRuntimeSeccompProfileEnabled: true", "defaultRuntimeSeccompProfileEnabled: false")],
        ),
        ("pointer to zero scalar is set", "debug: true\n", &[("debug: false", "debug: true")]),
        ("list append", "machine:\n  certSANs: [foo, bar]\n", &[("certSANs: []", "certSANs: [foo, bar]")]),
        (
            "replace list replaced",
            "cluster:\n  network:\n    podSubnets: [10.0.0.0/8]\n",
            &[("- 10.244.0.0/16", "- 10.0.0.0/8")],
        ),
        (
            "map merged per key, extraArgs keys overwritten whole",
            "cluster:\n  apiServer:\n    extraArgs:\n      list: [b]\n      new: x\n",
            &[(
                "            list:\n                - a\n",
                "            list:\n                - b\n            new: x\n",
            )],
        ),
        (
            "interfaces merged by interface",
            "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        mtu: 9000\n      - interface: eth1\n        dhcp: false\n",
            &[
                (
                    "            - interface: eth0\n              dhcp: true\n",
                    "            - interface: eth0\n              mtu: 9000\n              dhcp: true\n",
                ),
                (
                    "              mtu: 1500\n",
                    "              mtu: 1500\n            - interface: eth1\n              dhcp: false\n",
                ),
            ],
        ),
        (
            "interfaces merged by deviceSelector",
            "machine:\n  network:\n    interfaces:\n      - deviceSelector: {busPath: \"0*\"}\n        dhcp: true\n",
            &[("              mtu: 1500\n", "              mtu: 1500\n              dhcp: true\n")],
        ),
        (
            "admissionControl merged by name, exemptions appended",
            "cluster:\n  apiServer:\n    admissionControl:\n      - name: PodSecurity\n        configuration:\n          exemptions:\n            namespaces: [rook-ceph]\n",
            &[(
                "                          - kube-system\n",
                "                          - kube-system\n                          - rook-ceph\n",
            )],
        ),
        (
            "new key in a struct",
            "machine:\n  sysctls:\n    net.ipv4.ip_forward: \"1\"\n    a: b\n",
            &[(
                "        wipe: false\ncluster:",
                "        wipe: false\n    sysctls:\n        a: b\n        net.ipv4.ip_forward: \"1\"\ncluster:",
            )],
        ),
    ];
    for (name, p, repl) in cases {
        let expected = format!("{}---\n{HOSTNAME}", v1_with(repl));
        let ps = [patch(p)];
        let got = apply_patches(docs(&multi()), &ps, c).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(dump_all(&got), dump_all(&docs(&expected)), "{name}");
    }
}

#[test]
fn vlans_merge_by_vlan_id() {
    let cfg = "version: v1alpha1\nmachine:\n  type: worker\n  token: t\n  certSANs: []\n  network:\n    interfaces:\n      - interface: eth0\n        vlans:\n          - vlanId: 10\n            mtu: 1400\n";
    let p = "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        vlans:\n          - vlanId: 10\n            dhcp: true\n          - vlanId: 20\n";
    check(
        cfg,
        &[p],
        Contract::V1_14,
        "version: v1alpha1\nmachine:\n  type: worker\n  token: t\n  certSANs: []\n  network:\n    interfaces:\n      - interface: eth0\n        vlans:\n          - routes: []\n            dhcp: true\n            vlanId: 10\n            mtu: 1400\n          - routes: []\n            vlanId: 20\ncluster: null\n",
    );
}

#[test]
fn kubelet_extra_args_overwrite_and_config_deep_merge() {
    let cfg = "apiVersion: v1alpha1\nkind: KubeletConfig\nimage: k\nconfig:\n  a: {b: 1, l: [x]}\nextraArgs:\n  x: \"1\"\n  y: [a]\n";
    let p = "apiVersion: v1alpha1\nkind: KubeletConfig\nconfig:\n  a: {c: 2, l: [y]}\nextraArgs:\n  y: [b]\n";
    check(
        cfg,
        &[p],
        Contract::V1_14,
        "apiVersion: v1alpha1\nkind: KubeletConfig\nimage: k\nconfig:\n  a: {b: 1, c: 2, l: [x, y]}\nextraArgs:\n  x: \"1\"\n  y: [b]\n",
    );
}

#[test]
fn delete_directives() {
    let c = Contract::V1_14;
    let flannel = "apiVersion: v1alpha1\nkind: KubeFlannelCNIConfig\nbackendType: vxlan\nbackendPort: 4789\n";
    let kubelet = "apiVersion: v1alpha1\nkind: KubeletConfig\nimage: k\nconfig: {}\nclusterDNS: [1.1.1.1]\n";
    let cfg = format!("{V1}---\n{flannel}---\n{kubelet}");
    // A whole document.
    check(
        &cfg,
        &["apiVersion: v1alpha1\nkind: KubeFlannelCNIConfig\n$patch: delete\n"],
        c,
        &format!("{V1}---\n{kubelet}"),
    );
    // A key, and a list item (by its first key).
    check(
        &cfg,
        &[
            "machine:\n  install:\n    $patch: delete\n  network:\n    interfaces:\n      - interface: eth0\n        $patch: delete\n",
        ],
        c,
        &format!(
            "{}---\n{flannel}---\n{kubelet}",
            v1_with(&[
                ("    install:\n        wipe: false\n", ""),
                ("            - interface: eth0\n              dhcp: true\n", ""),
            ])
        ),
    );
    // Delete then re-add in one document; a named selector.
    check(
        &format!(
            "{V1}---\napiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: ghcr.io\nendpoints: [{{url: https://a}}]\n"
        ),
        &["apiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: ghcr.io\nendpoints:\n  $patch: delete\n"],
        c,
        &format!("{V1}---\napiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: ghcr.io\n"),
    );
    // A selector for a document the config lacks is skipped.
    check(V1, &["apiVersion: v1alpha1\nkind: KubeFlannelCNIConfig\n$patch: delete\n"], c, V1);
}

#[test]
fn delete_directive_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "kind: KubeFlannelCNIConfig\n$patch: delete\n",
            "--config-patch #1:1:1: error processing patch delete statements: missing apiVersion in document for which $patch: delete is used",
        ),
        (
            "machine:\n  network:\n    interfaces:\n      - interface: eth0\n        addresses:\n          $patch: delete\n",
            "--config-patch #1:6:11: error processing patch delete statements: cannot delete an inner key in 'machine.network.interfaces.[0].addresses'",
        ),
        (
            "machine:\n  certSANs:\n    - $patch: delete\n",
            "--config-patch #1:3:7: error processing patch delete statements: no key:val found in sequence node for path machine.certSANs.[0]",
        ),
        (
            "kind: KubeletConfig\nclusterDNS:\n  $patch: delete\n",
            "--config-patch #1:3:3: error processing patch delete statements: kind and apiVersion must be both set for path clusterDNS",
        ),
    ];
    for (p, want) in cases {
        assert_eq!(patch_err(p).to_string(), *want);
    }
    // Applying a selector that names nothing in the document.
    check_err(
        V1,
        &["machine:\n  network:\n    interfaces:\n      - interface: eth9\n        $patch: delete\n"],
        Contract::V1_14,
        "--config-patch #1:5:9: patch delete: path 'machine.network.interfaces.[0]' in document '/v1alpha1': failed to delete path 'machine.network.interfaces.[0]': lookup failed",
    );
    check_err(
        V1,
        &["machine:\n  files:\n    - path: /x\n      $patch: delete\n"],
        Contract::V1_14,
        "--config-patch #1:4:7: patch delete: path 'machine.files.[0]' in document '/v1alpha1': failed to delete path 'machine.files.[0]': lookup failed",
    );
    let e = check_err(
        &format!("{V1}---\napiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: ghcr.io\n"),
        &["apiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: ghcr.io\nskipFallback:\n  x:\n    $patch: delete\n"],
        Contract::V1_14,
        "--config-patch #1:6:5: named patch delete: document v1alpha1/RegistryMirrorConfig: failed to delete path 'skipFallback.x': lookup failed",
    );
    assert_eq!(e.document().map(ToString::to_string), Some("RegistryMirrorConfig/ghcr.io".into()));
    assert_eq!(e.field_path().to_string(), "skipFallback.x");
}

#[test]
fn unknown_keys_and_kinds() {
    let e = patch_err("machine:\n  install:\n    disks: [a]\n");
    assert_eq!(
        e.to_string(),
        "--config-patch #1:3:5: v1alpha1: machine.install.disks: unknown keys found during decoding"
    );
    assert_eq!(e.field_path().to_string(), "machine.install.disks");
    assert_eq!(e.span(), crate::yaml::Span::new(3, 5));
    let e = patch_err("apiVersion: v1alpha1\nkind: NoSuchConfig\n");
    assert_eq!(e.to_string(), "--config-patch #1:2:1: \"NoSuchConfig\" \"v1alpha1\": not registered");
    assert_eq!(
        patch_err("apiVersion: v1alpha2\nkind: KubeletConfig\n").to_string(),
        "--config-patch #1:2:1: \"KubeletConfig\" \"v1alpha2\": not registered"
    );
    assert_eq!(patch_err("apiVersion: v1alpha2\nfoo: bar\n").to_string(), "--config-patch #1:1:1: missing kind");
    // apiVersion v1alpha1 without a kind is the legacy document, where apiVersion is not a field.
    assert_eq!(
        patch_err("apiVersion: v1alpha1\nfoo: bar\n").to_string(),
        "--config-patch #1:1:1: v1alpha1: apiVersion: unknown keys found during decoding"
    );
    assert_eq!(patch_err("kind: KubeletConfig\nfoo: bar\n").to_string(), "--config-patch #1:1:1: missing apiVersion");
    // A 1.14-only kind loads (the binary knows it) but is not registered under a 1.13 contract.
    check_err(
        V1,
        &["apiVersion: v1alpha1\nkind: KubeletConfig\nclusterDNS: [1.1.1.1]\n"],
        Contract::V1_13,
        "--config-patch #1:2:1: \"KubeletConfig\" \"v1alpha1\": not registered (a Talos v1.14 document; this config \
         is for the v1.13 contract)",
    );
    // Type errors, with go-yaml's coercions.
    let e = patch_err("machine:\n  kubelet:\n    defaultRuntimeSeccompProfileEnabled: maybe\n");
    assert_eq!(
        e.to_string(),
        "--config-patch #1:3:42: v1alpha1: machine.kubelet.defaultRuntimeSeccompProfileEnabled: expected bool; found !!str `maybe`"
    );
    let e = patch_err("cluster:\n  controlPlane:\n    localAPIServerPort: abc\n");
    assert_eq!(
        e.to_string(),
        "--config-patch #1:3:25: v1alpha1: cluster.controlPlane.localAPIServerPort: expected int; found !!str `abc`"
    );
}

#[test]
fn coercion_keeps_go_yaml_text() {
    // An int or float written into a string field becomes its text, exactly as written.
    let p = "machine:\n  token: 1.10\n  type: 0x1F\n  kubelet:\n    image: true\n";
    check(
        V1,
        &[p],
        Contract::V1_13,
        &v1_with(&[
            ("type: controlplane", "type: \"0x1F\""),
            ("token: t", "token: \"1.10\""),
            ("image: ghcr.io/siderolabs/kubelet:v1.28.0", "image: \"true\""),
        ]),
    );
}

#[test]
fn new_documents_append_and_merge_later() {
    let add = "apiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: docker.io\nendpoints: [{url: https://m1}]\n";
    let more = "apiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: docker.io\nendpoints: [{url: https://m2}]\nskipFallback: true\n";
    check(
        &multi(),
        &[add, more],
        Contract::V1_14,
        &format!(
            "{V1}---\n{HOSTNAME}---\napiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: docker.io\nendpoints:\n  - url: https://m1\n  - url: https://m2\nskipFallback: true\n"
        ),
    );
    // Talos 1.14 merges a second document with the same identity in one patch into the first one; 1.13 loads
    // patches with validation and rejects it.
    check(
        &multi(),
        &[&format!("{add}---\n{more}")],
        Contract::V1_14,
        &format!(
            "{V1}---\n{HOSTNAME}---\napiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: docker.io\nendpoints:\n  - url: https://m1\n  - url: https://m2\nskipFallback: true\n"
        ),
    );
    check_err(
        &multi(),
        &[&format!("{add}---\n{more}")],
        Contract::V1_13,
        "--config-patch #1:6:1: duplicate document v1alpha1/RegistryMirrorConfig/docker.io is not allowed (line 6)",
    );
}

#[test]
fn json_patches() {
    let single = "version: v1alpha1\nmachine:\n  type: worker\n  token: t\n  certSANs: [a]\ncluster:\n  token: c\n";
    let base_out = |certs: &str, extra: &str| {
        format!(
            "version: v1alpha1\nmachine:\n  type: worker\n  token: t\n  certSANs: {certs}\n{extra}cluster:\n  token: c\n"
        )
    };
    check(
        single,
        &[r#"[{"op": "add", "path": "/machine/certSANs/-", "value": "b"}]"#],
        Contract::V1_14,
        &base_out("[a, b]", ""),
    );
    check(
        single,
        &[r#"[{"op": "replace", "path": "/machine/certSANs/0", "value": "z"}]"#],
        Contract::V1_14,
        &base_out("[z]", ""),
    );
    check(single, &[r#"[{"op": "remove", "path": "/machine/certSANs/0"}]"#], Contract::V1_14, &base_out("[]", ""));
    // Replace of a missing object key acts as add (evanphx/json-patch).
    check(
        single,
        &[r#"[{"op": "replace", "path": "/machine/env", "value": {"A": "1"}}]"#],
        Contract::V1_14,
        &base_out("[a]", "  env:\n    A: \"1\"\n"),
    );
    // YAML form, and two consecutive JSON patches concatenated.
    let yaml_form = "- op: add\n  path: /machine/certSANs/-\n  value: y1\n";
    assert_eq!(patch(yaml_form).kind(), PatchKind::Json6902);
    check(
        single,
        &[yaml_form, r#"[{"op": "add", "path": "/machine/certSANs/-", "value": "y2"}]"#],
        Contract::V1_14,
        &base_out("[a, y1, y2]", ""),
    );
    // Missing paths fail with the op and path named.
    let e = check_err(
        single,
        &[r#"[{"op": "add", "path": "/machine/nope/x", "value": 1}]"#],
        Contract::V1_14,
        "--config-patch #1: failure applying rfc6902 patches to talos machine config: add operation does not apply: doc is missing path: \"/machine/nope/x\": missing value",
    );
    assert!(matches!(e, PatchError::JsonPatch { ref op, ref path, .. } if op == "add" && path == "/machine/nope/x"));
    check_err(
        single,
        &[r#"[{"op": "remove", "path": "/machine/nope"}]"#],
        Contract::V1_14,
        "--config-patch #1: failure applying rfc6902 patches to talos machine config: error in remove for path: '/machine/nope': Unable to remove nonexistent key: nope: missing value",
    );
    // Multi-document configs reject JSON patches, even empty ones.
    check_err(
        &multi(),
        &[r#"[{"op": "add", "path": "/machine/certSANs/-", "value": "b"}]"#],
        Contract::V1_14,
        "--config-patch #1: JSON6902 patches are not supported for multi-document machine configuration",
    );
    check_err(
        &multi(),
        &[""],
        Contract::V1_14,
        "--config-patch #1: JSON6902 patches are not supported for multi-document machine configuration",
    );
}

#[test]
fn empty_patch_is_an_empty_json_patch() {
    for text in ["", "# only a comment\n", "\n\n"] {
        let p = patch(text);
        assert_eq!((p.kind(), p.len()), (PatchKind::Json6902, 0), "{text:?}");
    }
    let single = "version: v1alpha1\nmachine:\n  type: worker\n  token: t\n  certSANs: []\ncluster: null\n";
    check(single, &[""], Contract::V1_14, single);
    assert_eq!(patch_err("{}").to_string(), "--config-patch #1: config not found");
}

#[test]
fn normalize_reorders_drops_and_fills() {
    let mut doc =
        docs("kind: KubeletConfig\nclusterDNS: []\napiVersion: v1alpha1\nextraArgs:\n  b: \"\"\n  a: x\n").remove(0);
    normalize_document(&mut doc, Contract::V1_14).expect("normalizes");
    assert_eq!(
        dump(&doc),
        dump(
            &docs(
                "apiVersion: v1alpha1\nkind: KubeletConfig\nimage: \"\"\nconfig: {}\nextraArgs:\n  a: x\n  b: null\n"
            )[0]
        )
    );
    let mut doc = docs("apiVersion: v1alpha1\nkind: FilesystemTrimConfig\ninterval: 168h\n").remove(0);
    normalize_document(&mut doc, Contract::V1_14).expect("normalizes");
    assert_eq!(doc, docs("apiVersion: v1alpha1\nkind: FilesystemTrimConfig\ninterval: 168h0m0s\n")[0]);
    let mut doc = docs("apiVersion: v1alpha1\nkind: KubeletConfig\nimage: k\nbogus: 1\n").remove(0);
    let e = normalize_document(&mut doc, Contract::V1_14).expect_err("unknown key");
    assert_eq!(e.to_string(), "KubeletConfig: bogus: unknown keys found during decoding");
    assert_eq!(e.span(), crate::yaml::Span::new(4, 1));
}

#[test]
fn document_ids() {
    let c = Contract::V1_14;
    let id = |t: &str| document_id(&docs(t)[0], c).map(|d| d.to_string());
    assert_eq!(id("machine: {}\n"), Ok("v1alpha1".into()));
    assert_eq!(id("apiVersion: v1alpha1\nkind: KubeletConfig\n"), Ok("KubeletConfig".into()));
    assert_eq!(
        id("apiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: ghcr.io\n"),
        Ok("RegistryMirrorConfig/ghcr.io".into())
    );
    assert_eq!(id("version: v1alpha1\n").map_err(|e| e.to_string()), Err("missing kind".into()));
}

// ---- golden files ---------------------------------------------------------------------------------------------

fn golden(rel: &str) -> Option<String> {
    let p = crate::testsupport::shared_dir().join("talos-schema/stability").join(rel);
    match std::fs::read_to_string(&p) {
        Ok(s) => Some(s),
        Err(_) => {
            eprintln!("skipping: golden file {} is not available", p.display());
            None
        }
    }
}

#[test]
fn golden_files_are_normalization_fixed_points() {
    for v in ["v1.13", "v1.14"] {
        let contract = if v == "v1.13" { Contract::V1_13 } else { Contract::V1_14 };
        for f in ["base-controlplane", "base-worker", "overrides-controlplane", "overrides-worker"] {
            let Some(text) = golden(&format!("{v}/{f}.yaml")) else { return };
            for (i, doc) in docs(&text).into_iter().enumerate() {
                let mut n = doc.clone();
                normalize_document(&mut n, contract).unwrap_or_else(|e| panic!("{v}/{f} doc {i}: {e}"));
                assert_eq!(dump(&n), dump(&doc), "{v}/{f} doc {i}");
                assert_eq!(n, doc, "{v}/{f} doc {i}");
            }
        }
    }
}

#[test]
fn golden_patches_reproduce_overrides() {
    // 1.14: patch.yaml into the KubeletConfig document.
    let (Some(base), Some(over), Some(p)) =
        (golden("v1.14/base-controlplane.yaml"), golden("v1.14/overrides-controlplane.yaml"), golden("patch.yaml"))
    else {
        return;
    };
    let pick = |text: &str, kind: &str| {
        docs(text).into_iter().find(|d| d.as_map().and_then(|m| m.get("kind")).and_then(Node::as_str) == Some(kind))
    };
    let base_kubelet = pick(&base, "KubeletConfig").expect("base has KubeletConfig");
    let want = pick(&over, "KubeletConfig").expect("overrides has KubeletConfig");
    let got = apply_patches(vec![base_kubelet], &[patch(&p)], Contract::V1_14).expect("applies");
    assert_eq!(dump_all(&got), dump(&want));
    // 1.13: patch-pre14.yaml into machine.kubelet of the v1alpha1 document.
    let (Some(base), Some(over), Some(p)) = (
        golden("v1.13/base-controlplane.yaml"),
        golden("v1.13/overrides-controlplane.yaml"),
        golden("patch-pre14.yaml"),
    ) else {
        return;
    };
    let kubelet =
        |doc: &Node| doc.as_map().and_then(|m| m.get("machine")).and_then(|m| m.as_map()?.get("kubelet")).cloned();
    let got = apply_patches(vec![docs(&base).remove(0)], &[patch(&p)], Contract::V1_13).expect("applies");
    assert_eq!(kubelet(&got[0]).map(|k| dump(&k)), kubelet(&docs(&over)[0]).map(|k| dump(&k)));
}

#[test]
fn custom_merges_of_multi_doc_kinds() {
    let c = Contract::V1_14;
    let h = "apiVersion: v1alpha1\n";
    // (name, config doc, patch doc, expected doc) — all documents carry `apiVersion: v1alpha1`.
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "configFiles by mountPath",
            "kind: ExtensionServiceConfig\nname: nut\nconfigFiles:\n  - content: a\n    mountPath: /a\n",
            "kind: ExtensionServiceConfig\nname: nut\nconfigFiles:\n  - content: b\n    mountPath: /a\n  - content: c\n    mountPath: /c\nenvironment: [X=1]\n",
            "kind: ExtensionServiceConfig\nname: nut\nconfigFiles:\n  - content: b\n    mountPath: /a\n  - content: c\n    mountPath: /c\nenvironment: [X=1]\n",
        ),
        (
            "image verification rules replaced by pattern",
            "kind: ImageVerificationConfig\nrules:\n  - image: a/*\n    skip: true\n  - image: b/*\n    deny: true\n",
            "kind: ImageVerificationConfig\nrules:\n  - image: a/*\n    deny: true\n  - image: c/*\n    skip: true\n",
            "kind: ImageVerificationConfig\nrules:\n  - image: a/*\n    deny: true\n  - image: b/*\n    deny: true\n  - image: c/*\n    skip: true\n",
        ),
        (
            "cel.Expression always overwrites, even when the patch leaves it unset",
            "kind: UnattendedInstallConfig\ninstaller: {}\nprovisioning:\n  diskSelector:\n    match: disk.dev_path == \"/dev/vda\"\n  wipe: false\n",
            "kind: UnattendedInstallConfig\nreboot: true\n",
            "kind: UnattendedInstallConfig\nreboot: true\ninstaller: {}\nprovisioning:\n  wipe: false\n",
        ),
        (
            "ByteSize always overwrites; block.Size keeps a byte size over a percentage",
            "kind: VolumeConfig\nname: EPHEMERAL\nprovisioning:\n  minSize: 10GiB\n  maxSize: 20GiB\n",
            "kind: VolumeConfig\nname: EPHEMERAL\nprovisioning:\n  maxSize: 50%\n",
            "kind: VolumeConfig\nname: EPHEMERAL\nprovisioning:\n  maxSize: 20GiB\n",
        ),
        (
            "meta.Prefix replaced unless zero",
            "kind: RoutingRuleConfig\nname: r1\nsrc: 10.0.0.0/8\ntable: main\n",
            "kind: RoutingRuleConfig\nname: r1\ndst: 192.168.0.0/16\n",
            "kind: RoutingRuleConfig\nname: r1\nsrc: 10.0.0.0/8\ndst: 192.168.0.0/16\ntable: main\n",
        ),
        (
            "meta.URL merges url.URL field by field",
            "kind: DiscoveryServiceConfig\nname: default\nendpoint: https://discovery.talos.dev/\n",
            "kind: DiscoveryServiceConfig\nname: default\nendpoint: https://my.disco:3000\n",
            "kind: DiscoveryServiceConfig\nname: default\nendpoint: https://my.disco:3000/\n",
        ),
        (
            "admission control configuration merged per key, lists appended",
            "kind: KubeAdmissionControlConfig\nname: PodSecurity\nconfiguration:\n  apiVersion: pod-security.admission.config.k8s.io/v1alpha1\n  defaults: {enforce: baseline}\n  exemptions:\n    namespaces: [kube-system]\n    usernames: []\n  kind: PodSecurityConfiguration\n",
            "kind: KubeAdmissionControlConfig\nname: PodSecurity\nconfiguration:\n  exemptions:\n    namespaces: [rook-ceph]\n",
            "kind: KubeAdmissionControlConfig\nname: PodSecurity\nconfiguration:\n  apiVersion: pod-security.admission.config.k8s.io/v1alpha1\n  defaults: {enforce: baseline}\n  exemptions:\n    namespaces: [kube-system, rook-ceph]\n    usernames: []\n  kind: PodSecurityConfiguration\n",
        ),
        (
            "replace lists in KubeNetworkConfig",
            "kind: KubeNetworkConfig\ndnsDomain: cluster.local\npodSubnets: [10.244.0.0/16]\nserviceSubnets: [10.96.0.0/12]\n",
            "kind: KubeNetworkConfig\ndnsDomain: example.com\npodSubnets: [10.0.0.0/16]\n",
            "kind: KubeNetworkConfig\ndnsDomain: example.com\npodSubnets: [10.0.0.0/16]\nserviceSubnets: [10.96.0.0/12]\n",
        ),
        (
            "durations and enums print canonically",
            "kind: TimeSyncConfig\nbootTimeout: 2m0s\n",
            "kind: TimeSyncConfig\nbootTimeout: 90s\n",
            "kind: TimeSyncConfig\nbootTimeout: 1m30s\n",
        ),
        (
            "enum names are case-insensitive",
            "kind: HostnameConfig\nauto: stable\n",
            "kind: HostnameConfig\nauto: OFF\n",
            "kind: HostnameConfig\nauto: \"off\"\n",
        ),
        (
            "a map key deleted",
            "kind: KubeNodeConfig\nnodeIP: {}\nlabels:\n  a: \"\"\n  b: x\n",
            "kind: KubeNodeConfig\nlabels:\n  a:\n    $patch: delete\n",
            "kind: KubeNodeConfig\nnodeIP: {}\nlabels:\n  b: x\n",
        ),
    ];
    for (name, cfg, p, want) in cases {
        let ps = [patch(&format!("{h}{p}"))];
        let got = apply_patches(docs(&format!("{h}{cfg}")), &ps, c).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(dump_all(&got), dump(&docs(&format!("{h}{want}"))[0]), "{name}");
    }
}

#[test]
fn type_errors_in_nested_shapes() {
    let e = patch_err(
        "machine:\n  registries:\n    mirrors:\n      docker.io:\n        endpoints: [a]\n        bogus: 1\n",
    );
    assert_eq!(
        e.to_string(),
        "--config-patch #1:6:9: v1alpha1: machine.registries.mirrors[\"docker.io\"].bogus: unknown keys found during decoding"
    );
    let e = patch_err("apiVersion: v1alpha1\nkind: HostnameConfig\nauto: sometimes\n");
    assert_eq!(
        e.to_string(),
        "--config-patch #1:3:7: HostnameConfig: auto: sometimes does not belong to AutoHostnameKind values"
    );
    let e = patch_err("apiVersion: v1alpha1\nkind: TimeSyncConfig\nbootTimeout: 30\n");
    assert_eq!(
        e.to_string(),
        "--config-patch #1:3:14: TimeSyncConfig: bootTimeout: expected time.Duration; found !!int `30`"
    );
    let e = patch_err("apiVersion: v1alpha1\nkind: KubeletConfig\nclusterDNS: 1.1.1.1\n");
    assert_eq!(
        e.to_string(),
        "--config-patch #1:3:13: KubeletConfig: clusterDNS: expected []string; found !!str `1.1.1.1`"
    );
}

#[test]
fn merge_type_mismatch_in_free_form_yaml() {
    let cfg = "apiVersion: v1alpha1\nkind: KubeletConfig\nimage: k\nconfig:\n  maxPods: 110\n";
    let e = check_err(
        cfg,
        &["apiVersion: v1alpha1\nkind: KubeletConfig\nconfig:\n  maxPods: \"250\"\n"],
        Contract::V1_14,
        "--config-patch #1:4:12: KubeletConfig: config.maxPods: merge type mismatch left int right string",
    );
    assert_eq!(e.field_path().to_string(), "config.maxPods");
}

#[test]
fn golden_patch_on_the_whole_config_changes_only_its_document() {
    let (Some(base), Some(over), Some(p)) =
        (golden("v1.14/base-controlplane.yaml"), golden("v1.14/overrides-controlplane.yaml"), golden("patch.yaml"))
    else {
        return;
    };
    let base_docs = docs(&base);
    let got = apply_patches(base_docs.clone(), &[patch(&p)], Contract::V1_14).expect("applies");
    assert_eq!(got.len(), base_docs.len());
    let want_kubelet =
        docs(&over).into_iter().find(|d| document_id(d, Contract::V1_14).is_ok_and(|i| i.kind == "KubeletConfig"));
    for (g, b) in got.iter().zip(&base_docs) {
        let id = document_id(b, Contract::V1_14).expect("golden ids");
        if id.kind == "KubeletConfig" {
            assert_eq!(Some(g), want_kubelet.as_ref());
        } else {
            assert_eq!(g, b, "{id}");
        }
    }
}

/// A tiny deterministic generator, so the robustness test needs no extra crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn no_panics_on_mangled_patches() {
    let Some(base) = golden("v1.14/base-controlplane.yaml") else { return };
    let Some(base13) = golden("v1.13/overrides-controlplane.yaml") else { return };
    let seeds: Vec<String> = docs(&base)
        .iter()
        .chain(docs(&base13).iter())
        .map(|d| {
            // Re-print each document as a patch: a flow-style rendering through the JSON form.
            super::jsonpatch::node_to_json(d).map(|j| j.to_string()).unwrap_or_default()
        })
        .collect();
    let mut rng = Lcg(7);
    let pieces = ["$patch: delete", "{", "}", "[", "]", ":", "\n", " - ", "null", "0", "\"\"", "-1", "1.5", "x"];
    for _ in 0..400 {
        let seed = &seeds[(rng.next() as usize) % seeds.len()];
        let mut text: Vec<char> = seed.chars().collect();
        for _ in 0..(rng.next() % 4) {
            if text.is_empty() {
                break;
            }
            let at = (rng.next() as usize) % text.len();
            let piece = pieces[(rng.next() as usize) % pieces.len()];
            let cut = (rng.next() as usize % 5).min(text.len() - at);
            text.splice(at..at + cut, piece.chars());
        }
        let text: String = text.into_iter().collect();
        if let Ok(p) = load_patch(&text, PatchOrigin::Label("fuzz".into())) {
            for (cfg, c) in [(&base, Contract::V1_14), (&base13, Contract::V1_13)] {
                let _ = apply_patches(docs(cfg), std::slice::from_ref(&p), c);
            }
        }
    }
    // Every golden document merged into its own config (lists double, nothing panics).
    for cfg in [&base, &base13] {
        let c = if std::ptr::eq(cfg, &base) { Contract::V1_14 } else { Contract::V1_13 };
        let all: Vec<Patch> =
            seeds.iter().filter_map(|s| load_patch(s, PatchOrigin::Label("self".into())).ok()).collect();
        for p in &all {
            let _ = apply_patches(docs(cfg), std::slice::from_ref(p), c);
        }
    }
}

#[test]
fn null_map_values_keep_the_left_side() {
    let cfg = "version: v1alpha1\nmachine:\n  type: worker\n  token: t\n  certSANs: []\n  registries:\n    mirrors:\n      docker.io:\n        endpoints: [https://a]\n";
    let p = "machine:\n  registries:\n    mirrors:\n      docker.io: null\n      ghcr.io: null\n";
    check(
        cfg,
        &[p],
        Contract::V1_14,
        "version: v1alpha1\nmachine:\n  type: worker\n  token: t\n  certSANs: []\n  registries:\n    mirrors:\n      docker.io:\n        endpoints: [https://a]\n      ghcr.io: null\ncluster: null\n",
    );
}

#[test]
fn fields_newer_than_the_contract_are_unknown() {
    let p = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nmount:\n  disableAccessTime: true\n";
    let cfg = format!("{V1}---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nmount:\n  secure: true\n");
    check(
        &cfg,
        &[p],
        Contract::V1_14,
        &format!(
            "{V1}---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nmount:\n  secure: true\n  disableAccessTime: true\n"
        ),
    );
    let e = check_err(
        &cfg,
        &[p],
        Contract::V1_13,
        "--config-patch #1:5:3: VolumeConfig/EPHEMERAL: mount.disableAccessTime: unknown keys found during decoding",
    );
    assert_eq!(e.span(), crate::yaml::Span::new(5, 3));
}

#[test]
fn compat_emit_golden_byte_exact() {
    for v in ["v1.13", "v1.14"] {
        let contract = if v == "v1.13" { Contract::V1_13 } else { Contract::V1_14 };
        for f in ["base-controlplane", "base-worker", "overrides-controlplane", "overrides-worker"] {
            let Some(text) = golden(&format!("{v}/{f}.yaml")) else { return };
            let out = apply_patches(docs(&text), &[], contract).expect("applies");
            assert_eq!(crate::yaml::emit::to_string_multi(&out), text, "{v}/{f}");
        }
    }
}
