//! Machine-config generation with `talosctl gen config`'s exact document set, field values and order, per
//! Talos contract (1.12, 1.13: v1alpha1 plus a few documents; 1.14: the multi-document layout).
//!
//! The generator is a pure function of its inputs: the secrets bundle, cluster-wide options and, for
//! per-node configs, the node's facts (hostname, install disk, network links, modules, sysctls, labels)
//! that talforge derives from hardware profiles. User and overlay patches are applied afterwards.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::pki::{EncryptionSecret, SecretsBundle};
use crate::quirks::Quirks;
use crate::spec::Role;
use crate::spec::units::{Endpoint, IpCidr, MacAddr, Version};
use crate::yaml::Node;

use super::build::{M, empty, list, strs};

/// Cluster-wide generation options (talosctl `gen config` flags and the `generate.With*` options the Talos
/// stability tests use).
#[derive(Clone, Debug, PartialEq)]
pub struct GenOptions {
    pub additional_sans: Vec<String>,
    pub dns_domain: String,
    pub pod_subnets: Vec<String>,
    pub service_subnets: Vec<String>,
    pub allow_scheduling_on_control_planes: bool,
    pub local_api_server_port: Option<u16>,
    pub install_disk: Option<String>,
    pub install_image: Option<String>,
    pub install_extra_kernel_args: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub custom_cni_url: Option<String>,
    /// Registry mirrors, host → endpoints, in the order given.
    pub registry_mirrors: Vec<(String, Vec<String>)>,
    pub discovery: bool,
    pub kubespan: Option<bool>,
    /// `None`: the default 7445; `Some(0)` disables KubePrism.
    pub kube_prism_port: Option<u16>,
    pub debug: bool,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            additional_sans: Vec::new(),
            dns_domain: "cluster.local".to_owned(),
            pod_subnets: vec!["10.244.0.0/16".to_owned()],
            service_subnets: vec!["10.96.0.0/12".to_owned()],
            allow_scheduling_on_control_planes: false,
            local_api_server_port: None,
            install_disk: None,
            install_image: None,
            install_extra_kernel_args: Vec::new(),
            sysctls: BTreeMap::new(),
            custom_cni_url: None,
            registry_mirrors: Vec::new(),
            discovery: true,
            kubespan: None,
            kube_prism_port: None,
            debug: false,
        }
    }
}

/// Everything the generator needs.
#[derive(Clone, Copy, Debug)]
pub struct GenInput<'a> {
    pub quirks: &'a Quirks,
    pub cluster_name: &'a str,
    pub endpoint: &'a Endpoint,
    pub kubernetes: &'a Version,
    pub secrets: &'a SecretsBundle,
    pub options: &'a GenOptions,
}

/// How a node finds its install disk.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum InstallTarget {
    /// A device path, e.g. `/dev/sda`.
    Path(String),
    /// Match by disk properties (globs allowed in model and serial).
    Selector(DiskSelector),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskSelector {
    /// Talos disk transport: `nvme`, `sata`, `sas`, `virtio`, `scsi`, `usb`.
    pub transport: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub rotational: Option<bool>,
    /// Size bounds in bytes, when transport, model and serial alone would also match another disk.
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
}

impl DiskSelector {
    /// The Talos ≥ 1.14 CEL expression (`disk.*` fields, `glob(pattern, value)`).
    pub fn cel(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = &self.transport {
            parts.push(format!("disk.transport == {}", cel_str(t)));
        }
        if let Some(m) = &self.model {
            parts.push(cel_match("disk.model", m));
        }
        if let Some(s) = &self.serial {
            parts.push(cel_match("disk.serial", s));
        }
        match self.rotational {
            Some(true) => parts.push("disk.rotational".to_owned()),
            Some(false) => parts.push("!disk.rotational".to_owned()),
            None => {}
        }
        if let Some(n) = self.min_size {
            parts.push(format!("disk.size >= {n}u"));
        }
        if let Some(n) = self.max_size {
            parts.push(format!("disk.size <= {n}u"));
        }
        if parts.is_empty() {
            parts.push("disk.transport != \"\"".to_owned());
        }
        parts.join(" && ")
    }

    /// The v1alpha1 selector as one line (`model: X, type: nvme`), for plans.
    pub fn v1alpha1_text(&self) -> String {
        let node = self.v1alpha1();
        let parts: Vec<String> = node
            .as_map()
            .map(|m| m.iter().map(|(k, v)| format!("{}: {}", k.name, v.as_str().unwrap_or_default())).collect())
            .unwrap_or_default();
        format!("diskSelector {{{}}}", parts.join(", "))
    }

    /// The v1alpha1 `machine.install.diskSelector` mapping (≤ 1.13).
    fn v1alpha1(&self) -> Node {
        let ty = match (self.transport.as_deref(), self.rotational) {
            (Some("nvme"), _) => Some("nvme"),
            (_, Some(true)) => Some("hdd"),
            (_, Some(false)) => Some("ssd"),
            _ => None,
        };
        // One size bound fits in v1alpha1's matcher; the plan never asks for two on these versions.
        let size = match (self.min_size, self.max_size) {
            (Some(n), _) => Some(format!(">= {n}")),
            (None, Some(n)) => Some(format!("<= {n}")),
            (None, None) => None,
        };
        M::new()
            .put_opt("size", size)
            .put_opt("model", self.model.clone())
            .put_opt("serial", self.serial.clone())
            .put_opt("type", ty)
            .build()
    }
}

fn cel_str(s: &str) -> String {
    // CEL string literals use Go-style escapes; Debug gives the same for the printable ASCII we accept.
    format!("{s:?}")
}

fn cel_match(field: &str, pattern: &str) -> String {
    if pattern.contains(['*', '?', '[']) {
        format!("glob({}, {field})", cel_str(pattern))
    } else {
        format!("{field} == {}", cel_str(pattern))
    }
}

/// How a link is selected.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkSelector {
    pub mac: Option<MacAddr>,
    pub driver: Option<String>,
    /// PCI vendor:device, lowercase as profiles write it (Talos compares it uppercase).
    pub pci_id: Option<String>,
    pub bus_path: Option<String>,
}

impl LinkSelector {
    /// The `LinkAliasConfig` CEL selector.
    pub fn cel(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.mac {
            parts.push(format!("mac(link.permanent_addr) == {}", cel_str(&m.to_string())));
        }
        if let Some(d) = &self.driver {
            parts.push(format!("link.driver == {}", cel_str(d)));
        }
        if let Some(p) = &self.pci_id {
            parts.push(format!("link.pciid == {}", cel_str(&p.to_uppercase())));
        }
        if let Some(b) = &self.bus_path {
            parts.push(cel_match("link.bus_path", b));
        }
        parts.join(" && ")
    }
}

/// A `LinkAliasConfig`: a name (with `%d` when the selector matches several links) for the links a selector
/// matches.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AliasPlan {
    pub name: String,
    pub selector: LinkSelector,
}

/// One configured link of a node: a NIC or a bond (named by its aliases), with its addresses.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkPlan {
    /// The link's name: an alias for a NIC, the bond's name for a bond.
    pub name: String,
    pub aliases: Vec<AliasPlan>,
    pub bond: Option<BondPlan>,
    pub addresses: Vec<IpCidr>,
    pub gateway: Option<std::net::IpAddr>,
    pub dhcp: bool,
    pub mtu: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BondPlan {
    pub mode: String,
    /// Member link names (aliases).
    pub links: Vec<String>,
    pub lacp_rate: Option<String>,
    pub xmit_hash_policy: Option<String>,
    pub miimon: Option<u32>,
}

/// What makes a node's config differ from its role's config.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFacts {
    pub hostname: String,
    pub install: Option<InstallTarget>,
    pub install_image: Option<String>,
    pub links: Vec<LinkPlan>,
    pub nameservers: Vec<std::net::IpAddr>,
    pub kernel_modules: Vec<(String, Vec<String>)>,
    pub sysctls: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

fn b64(pem: &[u8]) -> String {
    B64.encode(pem)
}

fn pem_text(pem: &[u8]) -> String {
    String::from_utf8_lossy(pem).into_owned()
}

/// Generates the documents of a role's config (`node` = `None`) or of one node's config.
pub fn generate(input: &GenInput<'_>, role: Role, node: Option<&NodeFacts>) -> Vec<Node> {
    let q = input.quirks;
    let cp = role == Role::Controlplane;
    let o = input.options;
    let s = input.secrets;
    let imgs = q.kubernetes_images(input.kubernetes);

    let mut sysctls = o.sysctls.clone();
    if let Some(n) = node {
        sysctls.extend(n.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let install_disk_path = match node.and_then(|n| n.install.as_ref()) {
        Some(InstallTarget::Path(p)) => Some(p.clone()),
        Some(InstallTarget::Selector(_)) => None,
        None => o.install_disk.clone(),
    };
    let install_selector = match node.and_then(|n| n.install.as_ref()) {
        Some(InstallTarget::Selector(sel)) => Some(sel.clone()),
        _ => None,
    };
    let install_image = node.and_then(|n| n.install_image.clone()).or_else(|| o.install_image.clone());
    let kube_prism_port = o.kube_prism_port.unwrap_or(7445);
    let endpoint_url = input.endpoint.url();

    // ---- v1alpha1 ----
    let machine_ca =
        M::new().put("crt", b64(&s.certs.os.crt)).put("key", if cp { b64(&s.certs.os.key) } else { String::new() });
    let mut machine = M::new()
        .put("type", role.as_str())
        .put("token", &s.trustd_info.token)
        .put("ca", machine_ca)
        .put("certSANs", strs(&o.additional_sans));
    if !q.multidoc_kubernetes() {
        machine = machine.put(
            "kubelet",
            M::new()
                .put("image", &imgs.kubelet)
                .put("defaultRuntimeSeccompProfileEnabled", true)
                .put("disableManifestsDirectory", true),
        );
    }
    // machine.network: talosctl 1.12 writes it empty. Node networks go into link documents (1.12+).
    if q.empty_machine_network() {
        machine = machine.put("network", M::new());
    }
    if !q.unattended_install_config() {
        let kargs = if q.install_extra_kernel_args() { o.install_extra_kernel_args.clone() } else { Vec::new() };
        machine = machine.put(
            "install",
            M::new()
                .put_opt("disk", install_disk_path.clone())
                .put_opt("diskSelector", install_selector.as_ref().map(DiskSelector::v1alpha1))
                .put_if(!kargs.is_empty(), "extraKernelArgs", || strs(&kargs))
                .put_opt("image", install_image.clone())
                .put("wipe", false)
                .put("grubUseUKICmdline", true),
        );
    }
    if !q.sysctl_config_document() && !sysctls.is_empty() {
        machine = machine.put("sysctls", string_map(&sysctls));
    }
    let mut features = M::new().put("diskQuotaSupport", true);
    if !q.multidoc_kubernetes() && kube_prism_port > 0 {
        features = features.put("kubePrism", M::new().put("enabled", true).put("port", kube_prism_port));
    }
    if !q.discovery_and_resolver_documents() {
        features = features.put("hostDNS", M::new().put("enabled", true).put("forwardKubeDNSToHost", true));
    }
    machine = machine.put("features", features);
    if !q.kernel_module_config_document()
        && let Some(n) = node.filter(|n| !n.kernel_modules.is_empty())
    {
        machine = machine.put(
            "kernel",
            M::new().put(
                "modules",
                list(n.kernel_modules.iter().map(|(name, params)| {
                    M::new()
                        .put("name", name.as_str())
                        .put_if(!params.is_empty(), "parameters", || strs(params))
                        .build()
                })),
            ),
        );
    }
    if !q.multidoc_kubernetes() {
        let mut labels = BTreeMap::new();
        if cp {
            labels.insert("node.kubernetes.io/exclude-from-external-load-balancers".to_owned(), String::new());
        }
        if let Some(n) = node {
            labels.extend(n.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if !labels.is_empty() {
            machine = machine.put("nodeLabels", string_map(&labels));
        }
    }

    let mut cluster = M::new();
    let legacy = !q.multidoc_kubernetes();
    if legacy {
        let network = M::new()
            .put_opt(
                "cni",
                o.custom_cni_url.as_ref().map(|u| M::new().put("name", "custom").put("urls", strs([u])).build()),
            )
            .put("dnsDomain", o.dns_domain.as_str())
            .put("podSubnets", strs(&o.pod_subnets))
            .put("serviceSubnets", strs(&o.service_subnets));
        let control_plane = M::new()
            .put("endpoint", endpoint_url.as_str())
            .put_opt("localAPIServerPort", o.local_api_server_port.filter(|_| cp).filter(|p| *p != 0));
        cluster = cluster
            .put("id", &s.cluster.id)
            .put("secret", &s.cluster.secret)
            .put("controlPlane", control_plane)
            .put("clusterName", input.cluster_name)
            .put("network", network);
    }
    cluster = cluster.put("token", &s.secrets.bootstrap_token);
    if legacy && cp {
        cluster = match &s.secrets.encryption {
            EncryptionSecret::Secretbox(v) => cluster.put("secretboxEncryptionSecret", v.as_str()),
            EncryptionSecret::AesCbc(v) => cluster.put("aescbcEncryptionSecret", v.as_str()),
        };
    }
    if legacy {
        let ca = M::new()
            .put("crt", b64(&s.certs.k8s.crt))
            .put("key", if cp { b64(&s.certs.k8s.key) } else { String::new() });
        cluster = cluster.put("ca", ca);
    }
    if legacy && cp {
        cluster = cluster
            .put(
                "aggregatorCA",
                M::new().put("crt", b64(&s.certs.k8s_aggregator.crt)).put("key", b64(&s.certs.k8s_aggregator.key)),
            )
            .put("serviceAccount", M::new().put("key", b64(&s.certs.k8s_service_account.key)))
            .put(
                "apiServer",
                M::new()
                    .put("image", &imgs.api_server)
                    .put_if(!o.additional_sans.is_empty(), "certSANs", || strs(&o.additional_sans))
                    .put(
                        "admissionControl",
                        list([M::new().put("name", "PodSecurity").put("configuration", pod_security_config()).build()]),
                    )
                    .put("auditPolicy", audit_policy()),
            )
            .put("controllerManager", M::new().put("image", &imgs.controller_manager))
            .put("proxy", M::new().put("image", &imgs.proxy))
            .put("scheduler", M::new().put("image", &imgs.scheduler));
    }
    if legacy {
        cluster = cluster.put(
            "discovery",
            M::new()
                .put("enabled", o.discovery)
                .put("registries", M::new().put("kubernetes", M::new().put("disabled", true)).put("service", empty())),
        );
    }
    if cp {
        cluster = cluster.put(
            "etcd",
            M::new().put("ca", M::new().put("crt", b64(&s.certs.etcd.crt)).put("key", b64(&s.certs.etcd.key))),
        );
    }
    if legacy && cp && o.allow_scheduling_on_control_planes {
        cluster = cluster.put("allowSchedulingOnControlPlanes", true);
    }

    let v1 = M::new()
        .put("version", "v1alpha1")
        .put("debug", o.debug)
        .put("persist", true)
        .put("machine", machine)
        .put("cluster", cluster)
        .build();

    let mut docs = vec![v1];
    let multi = q.multidoc_kubernetes();

    // ---- separate documents, in talosctl's order ----
    if q.discovery_and_resolver_documents() {
        if o.discovery {
            docs.push(
                M::doc("DiscoveryServiceConfig")
                    .put("name", "default")
                    .put("endpoint", "https://discovery.talos.dev/")
                    .build(),
            );
        }
        docs.push(
            M::doc("DiscoveryIdentityConfig")
                .put("clusterID", &s.cluster.id)
                .put("clusterSecret", &s.cluster.secret)
                .build(),
        );
    }
    if q.unattended_install_config() && (install_disk_path.is_some() || install_selector.is_some()) {
        let m = match (&install_disk_path, &install_selector) {
            (Some(p), _) => format!("disk.dev_path == {}", cel_str(p)),
            (None, Some(sel)) => sel.cel(),
            (None, None) => String::new(),
        };
        docs.push(
            M::doc("UnattendedInstallConfig")
                .put("installer", M::new().put_opt("image", install_image.clone()))
                .put("provisioning", M::new().put("diskSelector", M::new().put("match", m)).put("wipe", false))
                .build(),
        );
    }
    if q.discovery_and_resolver_documents() {
        let ns: Vec<Node> = node.map(nameservers).unwrap_or_default();
        docs.push(
            M::doc("ResolverConfig")
                .put_if(!ns.is_empty(), "nameservers", || list(ns))
                .put("hostDNS", M::new().put("enabled", true).put("forwardKubeDNSToHost", true))
                .build(),
        );
    }
    if q.sysctl_config_document() && !sysctls.is_empty() {
        docs.push(M::doc("SysctlConfig").put("params", string_map(&sysctls)).build());
    }
    if q.hardened_defaults() {
        docs.push(M::doc("VolumeConfig").put("name", "EPHEMERAL").put("mount", M::new().put("secure", true)).build());
        docs.push(M::doc("FilesystemTrimConfig").put("interval", "168h0m0s").build());
        docs.push(M::doc("SecurityProfileConfig").put("workloadIsolation", true).build());
    }
    if q.multidoc_network() {
        let mut mirrors: Vec<&(String, Vec<String>)> = o.registry_mirrors.iter().collect();
        mirrors.sort_by(|a, b| a.0.cmp(&b.0));
        for (host, eps) in mirrors {
            docs.push(
                M::doc("RegistryMirrorConfig")
                    .put("name", host.as_str())
                    .put("endpoints", list(eps.iter().map(|e| M::new().put("url", e.as_str()).build())))
                    .build(),
            );
        }
        let hostname = match node {
            Some(n) => M::doc("HostnameConfig").put("hostname", n.hostname.as_str()),
            None => M::doc("HostnameConfig").put("auto", "stable"),
        };
        docs.push(hostname.build());
        if let (true, Some(enabled)) = (q.kubespan_document(), o.kubespan) {
            docs.push(M::doc("KubeSpanConfig").put("enabled", enabled).build());
        }
    }
    if let Some(n) = node {
        // Up to 1.13 the resolver document only carries nameservers (host DNS is a v1alpha1 feature there).
        if !q.discovery_and_resolver_documents() && !n.nameservers.is_empty() {
            docs.push(M::doc("ResolverConfig").put("nameservers", list(nameservers(n))).build());
        }
        docs.extend(link_documents(&n.links));
    }
    if q.kernel_module_config_document()
        && let Some(n) = node
    {
        for (name, params) in &n.kernel_modules {
            docs.push(
                M::doc("KernelModuleConfig")
                    .put("name", name.as_str())
                    .put_if(!params.is_empty(), "parameters", || strs(params))
                    .build(),
            );
        }
    }

    if multi {
        docs.push(
            M::doc("KubeClusterConfig")
                .put("clusterName", input.cluster_name)
                .put("endpoint", endpoint_url.as_str())
                .build(),
        );
        let mut labels = BTreeMap::new();
        if cp {
            labels.insert("node-role.kubernetes.io/control-plane".to_owned(), String::new());
            labels.insert("node.kubernetes.io/exclude-from-external-load-balancers".to_owned(), String::new());
        }
        if let Some(n) = node {
            labels.extend(n.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        docs.push(
            M::doc("KubeNodeConfig")
                .put("nodeIP", empty())
                .put_if(!labels.is_empty(), "labels", || string_map(&labels))
                .put_if(cp && !o.allow_scheduling_on_control_planes, "taints", || {
                    M::new().put("node-role.kubernetes.io/control-plane", "NoSchedule").build()
                })
                .build(),
        );
        docs.push(
            M::doc("KubeletConfig")
                .put("image", &imgs.kubelet)
                .put("config", empty())
                .put("defaultRuntimeSeccompProfileEnabled", true)
                .build(),
        );
        docs.push(
            M::doc("KubeNetworkConfig")
                .put("dnsDomain", o.dns_domain.as_str())
                .put("podSubnets", strs(&o.pod_subnets))
                .put("serviceSubnets", strs(&o.service_subnets))
                .build(),
        );
        let ca = if cp {
            M::doc("KubeAPIServerCAConfig").put(
                "issuingCA",
                M::new().put("cert", pem_text(&s.certs.k8s.crt)).put("key", pem_text(&s.certs.k8s.key)),
            )
        } else {
            M::doc("KubeAPIServerCAConfig").put("acceptedCAs", strs([pem_text(&s.certs.k8s.crt)]))
        };
        docs.push(ca.build());
        if kube_prism_port > 0 {
            docs.push(M::doc("KubePrismConfig").put("port", kube_prism_port).build());
        }
        if cp {
            docs.extend(control_plane_documents(input, &imgs, &endpoint_url));
        }
    }
    docs
}

fn control_plane_documents(
    input: &GenInput<'_>,
    imgs: &crate::quirks::KubernetesImages,
    endpoint_url: &str,
) -> Vec<Node> {
    let s = input.secrets;
    let o = input.options;
    let mut docs = vec![
        M::doc("KubeAggregatorCAConfig")
            .put(
                "issuingCA",
                M::new()
                    .put("cert", pem_text(&s.certs.k8s_aggregator.crt))
                    .put("key", pem_text(&s.certs.k8s_aggregator.key)),
            )
            .build(),
        M::doc("KubeAdmissionControlConfig")
            .put("name", "PodSecurity")
            .put("configuration", pod_security_config())
            .build(),
        M::doc("KubeAuditPolicyConfig").put("configuration", audit_policy()).build(),
        M::doc("KubeAuthenticationConfig")
            .put(
                "configuration",
                M::new()
                    .put(
                        "anonymous",
                        M::new()
                            .put(
                                "conditions",
                                list(["/livez", "/readyz", "/healthz"].map(|p| M::new().put("path", p).build())),
                            )
                            .put("enabled", true),
                    )
                    .put("jwt", list([])),
            )
            .build(),
        M::doc("KubeAuthorizerConfig").put("name", "node").put("type", "Node").build(),
        M::doc("KubeAuthorizerConfig").put("name", "rbac").put("type", "RBAC").build(),
    ];
    let mut providers = Vec::new();
    let (key_name, secret) = match &s.secrets.encryption {
        EncryptionSecret::Secretbox(v) => ("key2", v),
        EncryptionSecret::AesCbc(v) => ("key1", v),
    };
    providers.push(
        M::new()
            .put(
                "secretbox",
                M::new().put("keys", list([M::new().put("name", key_name).put("secret", secret.as_str()).build()])),
            )
            .build(),
    );
    docs.push(
        M::doc("KubeEtcdEncryptionConfig")
            .put(
                "config",
                M::new().put(
                    "resources",
                    list([M::new().put("providers", list(providers)).put("resources", strs(["secrets"])).build()]),
                ),
            )
            .build(),
    );
    docs.push(
        M::doc("KubeServiceAccountConfig")
            .put(
                "issuer",
                M::new().put("privateKey", pem_text(&s.certs.k8s_service_account.key)).put("issuerURL", endpoint_url),
            )
            .build(),
    );
    docs.push(
        M::doc("KubeAPIServerConfig")
            .put("image", &imgs.api_server)
            .put_opt("apiPort", o.local_api_server_port.filter(|p| *p != 0))
            .put_if(!o.additional_sans.is_empty(), "certExtraSANs", || strs(&o.additional_sans))
            .build(),
    );
    docs.push(M::doc("KubeControllerManagerConfig").put("image", &imgs.controller_manager).build());
    docs.push(M::doc("KubeSchedulerConfig").put("image", &imgs.scheduler).put("config", empty()).build());
    docs.push(M::doc("KubeProxyConfig").put("image", &imgs.proxy).put("config", empty()).build());
    if o.custom_cni_url.is_none() {
        docs.push(M::doc("KubeFlannelCNIConfig").put("backendType", "vxlan").put("backendPort", 4789_u32).build());
    }
    docs.push(M::doc("KubeCoreDNSConfig").put("enabled", true).build());
    if let Some(url) = &o.custom_cni_url {
        docs.push(M::doc("KubeExternalManifestConfig").put("name", "custom-cni").put("url", url.as_str()).build());
    }
    docs
}

/// Kubernetes PodSecurity admission defaults Talos generates (maps are sorted later, as go-yaml sorts them).
fn pod_security_config() -> Node {
    M::new()
        .put("apiVersion", "pod-security.admission.config.k8s.io/v1alpha1")
        .put(
            "defaults",
            M::new()
                .put("audit", "restricted")
                .put("audit-version", "latest")
                .put("enforce", "baseline")
                .put("enforce-version", "latest")
                .put("warn", "restricted")
                .put("warn-version", "latest"),
        )
        .put(
            "exemptions",
            M::new()
                .put("namespaces", strs(["kube-system"]))
                .put("runtimeClasses", list([]))
                .put("usernames", list([])),
        )
        .put("kind", "PodSecurityConfiguration")
        .build()
}

fn audit_policy() -> Node {
    M::new()
        .put("apiVersion", "audit.k8s.io/v1")
        .put("kind", "Policy")
        .put("rules", list([M::new().put("level", "Metadata").build()]))
        .build()
}

/// A Go `map[string]string`: keys in go-yaml's order.
fn string_map(m: &BTreeMap<String, String>) -> Node {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_by(|a, b| crate::yaml::emit::go_map_key_cmp(a, b));
    let mut out = M::new();
    for k in keys {
        out = out.put(k, m[k].as_str());
    }
    out.build()
}

fn nameservers(n: &NodeFacts) -> Vec<Node> {
    n.nameservers.iter().map(|a| M::new().put("address", a.to_string()).build()).collect()
}

/// Link documents: aliases for physical links, a bond if any, and the link's addresses.
fn link_documents(links: &[LinkPlan]) -> Vec<Node> {
    let mut docs = Vec::new();
    for l in links {
        for a in &l.aliases {
            docs.push(
                M::doc("LinkAliasConfig")
                    .put("name", a.name.as_str())
                    .put("selector", M::new().put("match", a.selector.cel()))
                    .build(),
            );
        }
        let head = match &l.bond {
            Some(b) => M::doc("BondConfig")
                .put("name", l.name.as_str())
                .put("links", strs(&b.links))
                .put("bondMode", b.mode.as_str())
                .put_opt("miimon", b.miimon)
                .put_opt("xmitHashPolicy", b.xmit_hash_policy.clone())
                .put_opt("lacpRate", b.lacp_rate.clone()),
            None => M::doc("LinkConfig").put("name", l.name.as_str()),
        };
        let addresses = || list(l.addresses.iter().map(|a| M::new().put("address", a.to_string()).build()));
        let routes = l.gateway.map(|gw| list([M::new().put("gateway", gw.to_string()).build()]));
        docs.push(
            head.put("up", true)
                .put_opt("mtu", l.mtu)
                .put_if(!l.addresses.is_empty(), "addresses", addresses)
                .put_opt("routes", routes)
                .build(),
        );
        if l.dhcp {
            docs.push(M::doc("DHCPv4Config").put("name", l.name.as_str()).build());
        }
    }
    docs
}
