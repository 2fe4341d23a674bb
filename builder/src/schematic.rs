//! Image Factory schematics: the YAML that names an image's customization, and its ID.
//!
//! The ID is the hex SHA-256 of the schematic marshalled by go-yaml (Image Factory's
//! `pkg/schematic`): fields in struct order, empty fields left out, `customization: {}` when nothing is
//! customized. talforge writes the same bytes, so an image it builds is named like the factory's.

use sha2::{Digest, Sha256};

use crate::machine_config::build::{M, strs};
use crate::yaml::emit;

/// The customization talforge puts in a schematic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schematic {
    /// Official extension names (`siderolabs/intel-ucode`), in the order they are listed.
    pub extensions: Vec<String>,
    pub extra_kernel_args: Vec<String>,
    /// The disk image's boot loader, when it is not the one Talos's imager would pick (`bootloader`).
    pub bootloader: Option<String>,
    /// sd-boot's Secure Boot key enrollment, when set explicitly (`secureboot.enrollKeys`).
    pub enroll_keys: Option<String>,
    /// The disk image's logical sector size, when not 512 (`diskImage.sectorSize`).
    pub sector_size: Option<u32>,
    /// Not part of the schematic itself (it selects the `-secureboot` installer and image variants).
    pub secure_boot: bool,
}

impl Schematic {
    /// The schematic YAML and its ID.
    pub fn render(&self) -> (String, String) {
        let mut c = M::new();
        if !self.extra_kernel_args.is_empty() {
            c = c.put("extraKernelArgs", strs(&self.extra_kernel_args));
        }
        if !self.extensions.is_empty() {
            c = c.put("systemExtensions", M::new().put("officialExtensions", strs(&self.extensions)));
        }
        if let Some(b) = &self.bootloader {
            c = c.put("bootloader", b.as_str());
        }
        if let Some(k) = &self.enroll_keys {
            c = c.put("secureboot", M::new().put("enrollKeys", k.as_str()));
        }
        if let Some(n) = self.sector_size {
            c = c.put("diskImage", M::new().put("sectorSize", n));
        }
        let yaml = emit::to_string(&M::new().put("customization", c).build());
        let id = schematic_id(&yaml);
        (yaml, id)
    }
}

/// The Image Factory ID of schematic YAML as go-yaml marshals it.
pub fn schematic_id(yaml: &str) -> String {
    let digest = Sha256::digest(yaml.as_bytes());
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_factory_vectors() {
        // Image Factory pkg/schematic/schematic_test.go.
        let (yaml, id) = Schematic::default().render();
        assert_eq!(yaml, "customization: {}\n");
        assert_eq!(id, "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba");
        let s = Schematic { extra_kernel_args: vec!["noapic".into(), "nolapic".into()], ..Schematic::default() };
        assert_eq!(s.render().1, "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c");
        let s = Schematic { sector_size: Some(4096), ..Schematic::default() };
        assert_eq!(s.render().1, "92833e9ddd9bb9e11b2464fa5525429f01866306d52ebd882ee08d7918f6d1ea");
    }

    #[test]
    fn field_order_follows_image_factory() {
        // pkg/schematic Customization: extraKernelArgs, meta, systemExtensions, bootloader, secureboot, diskImage.
        let s = Schematic {
            extensions: vec!["siderolabs/gvisor".into()],
            extra_kernel_args: vec!["vga=791".into()],
            bootloader: Some("sd-boot".into()),
            enroll_keys: Some("force".into()),
            sector_size: None,
            secure_boot: true,
        };
        assert_eq!(
            s.render().0,
            "customization:\n    extraKernelArgs:\n        - vga=791\n    systemExtensions:\n        officialExtensions:\n            \
             - siderolabs/gvisor\n    bootloader: sd-boot\n    secureboot:\n        enrollKeys: force\n"
        );
    }

    #[test]
    fn extensions_layout() {
        let s = Schematic { extensions: vec!["siderolabs/intel-ucode".into()], ..Schematic::default() };
        assert_eq!(
            s.render().0,
            "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/intel-ucode\n"
        );
    }
}
