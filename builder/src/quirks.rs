//! Every Talos-version-dependent default in one place.
//!
//! A [`Quirks`] is made for one Talos version and answers every question whose answer changed between
//! releases: which machine-config documents exist, where a setting lives (a v1alpha1 field or its own
//! document), the default kernel command line, the installer image. Talos keeps the same idea in
//! `pkg/machinery/imager/quirks` and `config.VersionContract`; the gates below follow those (pre-release
//! suffixes are ignored, as Talos ignores them).

use std::fmt;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::spec::profile::Bootloader;
use crate::spec::units::Version;

/// The oldest and newest Talos minor versions talforge generates for.
pub const OLDEST: (u64, u64) = (1, 12);
pub const NEWEST: (u64, u64) = (1, 14);

/// The Talos version used when none is given (direct `config gen`, `secrets gen`).
pub const DEFAULT_TALOS_VERSION: &str = "v1.14.0";
/// The Kubernetes version used when none is given.
pub const DEFAULT_KUBERNETES_VERSION: &str = "1.34.1";

/// A Talos machine-config contract: the `major.minor` a config (and a secrets bundle) is generated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Contract {
    pub major: u32,
    pub minor: u32,
}

impl Contract {
    pub const V1_12: Contract = Contract::new(1, 12);
    pub const V1_13: Contract = Contract::new(1, 13);
    pub const V1_14: Contract = Contract::new(1, 14);
    /// The newest contract talforge knows.
    pub const LATEST: Contract = Contract::V1_14;
    /// Every contract talforge generates for, newest first.
    pub const ALL: [Contract; 3] = [Contract::V1_14, Contract::V1_13, Contract::V1_12];

    pub const fn new(major: u32, minor: u32) -> Self {
        Contract { major, minor }
    }

    /// Talos's `ParseContractFromVersion`: `v1.14`, `1.14.0`, `v1.14.0-rc.1` all give 1.14. No range check.
    pub fn parse(s: &str) -> Option<Contract> {
        let t = s.strip_prefix('v').unwrap_or(s);
        let mut parts = t.splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor_text = parts.next()?;
        let minor = minor_text.parse().ok()?;
        Some(Contract::new(major, minor))
    }

    /// The contract for a Talos version, if talforge supports it.
    pub fn for_version(v: &Version) -> Result<Contract> {
        let pair = v.minor_pair();
        if pair < OLDEST || pair > NEWEST {
            return Err(Error::unsupported(format!(
                "Talos {v}: talforge generates for Talos v{}.{} to v{}.{}",
                OLDEST.0, OLDEST.1, NEWEST.0, NEWEST.1
            )));
        }
        let narrow = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
        Ok(Contract::new(narrow(v.major), narrow(v.minor)))
    }

    /// Talos's `contract.Greater(1.x)`: true when this contract is newer than `1.minor`.
    pub fn newer_than(self, minor: u32) -> bool {
        (self.major, self.minor) > (1, minor)
    }
}

impl Default for Contract {
    fn default() -> Self {
        Contract::LATEST
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}", self.major, self.minor)
    }
}

/// Boot platform (only `metal` is built today).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Platform {
    Metal,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Metal => "metal",
        }
    }
}

/// Version-dependent behaviour of one Talos version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quirks {
    pub version: Version,
    pub contract: Contract,
}

impl Quirks {
    pub fn new(version: &Version) -> Result<Quirks> {
        Ok(Quirks { version: version.clone(), contract: Contract::for_version(version)? })
    }

    // ---- machine-config document layout (talos pkg/machinery/config/contract.go) ----

    /// Kubernetes settings live in `Kube*Config` documents instead of v1alpha1 `cluster`/`machine.kubelet`.
    pub fn multidoc_kubernetes(&self) -> bool {
        self.contract.newer_than(13)
    }

    /// The install disk goes into `UnattendedInstallConfig` instead of `machine.install`.
    pub fn unattended_install_config(&self) -> bool {
        self.contract.newer_than(13)
    }

    /// Sysctls go into a `SysctlConfig` document instead of `machine.sysctls`.
    pub fn sysctl_config_document(&self) -> bool {
        self.contract.newer_than(13)
    }

    /// Kernel modules go into `KernelModuleConfig` documents instead of `machine.kernel.modules`.
    pub fn kernel_module_config_document(&self) -> bool {
        self.contract.newer_than(13)
    }

    /// Host DNS, discovery service and identity are separate documents.
    pub fn discovery_and_resolver_documents(&self) -> bool {
        self.contract.newer_than(13)
    }

    /// New 1.14 defaults: EPHEMERAL `mount.secure`, weekly fstrim, workload isolation.
    pub fn hardened_defaults(&self) -> bool {
        self.contract.newer_than(13)
    }

    /// `HostnameConfig` and registry documents exist (multi-doc network config).
    pub fn multidoc_network(&self) -> bool {
        self.contract.newer_than(11)
    }

    /// KubeSpan is its own document.
    pub fn kubespan_document(&self) -> bool {
        self.contract.newer_than(12)
    }

    /// 1.12 still emits an empty `machine.network: {}`.
    pub fn empty_machine_network(&self) -> bool {
        !self.contract.newer_than(12)
    }

    /// A `LinkAliasConfig` name may hold `%d` to alias every link its selector matches (`net%d` → net0, net1).
    /// Without it (1.12) a selector that matches several links aliases none of them.
    pub fn link_alias_patterns(&self) -> bool {
        self.contract.newer_than(12)
    }

    /// `install.extraKernelArgs` survives generation (it is dropped by the 1.14 contract; with sd-boot the
    /// UKI command line is what counts anyway).
    pub fn install_extra_kernel_args(&self) -> bool {
        !self.contract.newer_than(13)
    }

    /// The secrets bundle's cluster id uses the URL-safe base64 alphabet up to 1.13, standard from 1.14.
    pub fn cluster_id_url_safe(&self) -> bool {
        !self.contract.newer_than(13)
    }

    // ---- boot assets (talos pkg/imager, pkg/machinery/imager/quirks) ----

    /// The kernel command line Talos's imager builds for `platform` before user arguments, in Talos's order.
    pub fn default_kernel_args(&self, platform: Platform, arch: &str, secure_boot: bool) -> Vec<String> {
        let mut args = vec![format!("talos.platform={}", platform.as_str())];
        match (platform, arch) {
            (Platform::Metal, "arm64") => args.extend(["console=ttyAMA0".into(), "console=tty0".into()]),
            (Platform::Metal, _) => args.push("console=tty0".into()),
        }
        let c = self.contract;
        if !c.newer_than(13) {
            args.push("init_on_alloc=1".into());
        }
        args.extend(["slab_nomerge".into(), "pti=on".into(), "consoleblank=0".into()]);
        if !c.newer_than(13) {
            args.push("nvme_core.io_timeout=4294967295".into());
        }
        args.push("printk.devkmsg=on".into());
        args.push("selinux=1".into());
        args.push("module.sig_enforce=1".into());
        if c.newer_than(12) {
            args.push("proc_mem.force_override=never".into());
        }
        if secure_boot && !c.newer_than(13) {
            args.push("lockdown=confidentiality".into());
        }
        args
    }

    /// The boot loader Talos's imager picks for a disk image when none is asked for (`selectBootloader`):
    /// sd-boot with Secure Boot and on arm64, dual-boot (sd-boot for UEFI + GRUB for BIOS) on amd64.
    /// A schematic names the boot loader only when it differs from this.
    pub fn default_bootloader(&self, arch: &str, secure_boot: bool) -> Bootloader {
        if secure_boot || arch == "arm64" { Bootloader::SdBoot } else { Bootloader::DualBoot }
    }

    /// The Image Factory installer image for a schematic (what `machine.install.image` /
    /// `UnattendedInstallConfig.installer.image` should point at so upgrades keep the extensions).
    pub fn factory_installer_image(&self, platform: Platform, schematic_id: &str, secure_boot: bool) -> String {
        let sb = if secure_boot { "-secureboot" } else { "" };
        format!("factory.talos.dev/{}-installer{sb}/{schematic_id}:{}", platform.as_str(), self.version.tag())
    }

    /// The kubelet and control-plane images for a Kubernetes version.
    pub fn kubernetes_images(&self, k8s: &Version) -> KubernetesImages {
        let t = k8s.tag();
        KubernetesImages {
            kubelet: format!("ghcr.io/siderolabs/kubelet:{t}"),
            api_server: format!("registry.k8s.io/kube-apiserver:{t}"),
            controller_manager: format!("registry.k8s.io/kube-controller-manager:{t}"),
            scheduler: format!("registry.k8s.io/kube-scheduler:{t}"),
            proxy: format!("registry.k8s.io/kube-proxy:{t}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesImages {
    pub kubelet: String,
    pub api_server: String,
    pub controller_manager: String,
    pub scheduler: String,
    pub proxy: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: &str) -> Quirks {
        Quirks::new(&v.parse().unwrap()).unwrap()
    }

    #[test]
    fn supported_range() {
        assert_eq!(q("v1.12.0").contract, Contract::V1_12);
        assert_eq!(q("v1.14.0-rc.1").contract, Contract::V1_14);
        for bad in ["v1.11.6", "v1.15.0", "v2.0.0"] {
            let e = Quirks::new(&bad.parse().unwrap()).unwrap_err();
            assert_eq!(e.class(), crate::ErrorClass::Unsupported, "{bad}");
        }
        assert_eq!(Contract::parse("1.14"), Some(Contract::V1_14));
        assert_eq!(Contract::parse("v1.14.0-rc.1"), Some(Contract::V1_14));
        assert_eq!(Contract::parse("v1"), None);
    }

    #[test]
    fn document_layout_gates() {
        assert!(!q("v1.13.9").multidoc_kubernetes());
        assert!(q("v1.14.0").multidoc_kubernetes());
        assert!(q("v1.12.3").empty_machine_network());
        assert!(!q("v1.13.0").empty_machine_network());
        assert!(!q("v1.12.9").link_alias_patterns());
        assert!(q("v1.13.0").link_alias_patterns());
        assert!(q("v1.13.0").cluster_id_url_safe());
        assert!(!q("v1.14.0").cluster_id_url_safe());
    }

    #[test]
    fn cmdline_matches_talos_golden() {
        // talos pkg/imager/imager_test.go, metal amd64 1.14.
        assert_eq!(
            q("v1.14.0").default_kernel_args(Platform::Metal, "amd64", false).join(" "),
            "talos.platform=metal console=tty0 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 \
             module.sig_enforce=1 proc_mem.force_override=never"
        );
        let sb13 = q("v1.13.0").default_kernel_args(Platform::Metal, "amd64", true).join(" ");
        assert!(sb13.starts_with("talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge"), "{sb13}");
        assert!(sb13.ends_with("proc_mem.force_override=never lockdown=confidentiality"), "{sb13}");
        let k12 = q("v1.12.0").default_kernel_args(Platform::Metal, "amd64", false).join(" ");
        assert!(k12.ends_with("module.sig_enforce=1"), "{k12}");
    }

    #[test]
    fn images() {
        let q = q("v1.14.0");
        assert_eq!(
            q.factory_installer_image(Platform::Metal, "376567988ad3", true),
            "factory.talos.dev/metal-installer-secureboot/376567988ad3:v1.14.0"
        );
        assert_eq!(q.kubernetes_images(&"1.34.1".parse().unwrap()).kubelet, "ghcr.io/siderolabs/kubelet:v1.34.1");
    }
}
