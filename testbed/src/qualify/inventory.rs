//! The inventory a booted machine reports: today the fixture guest's `TALFORGE-INVENTORY` line (written by
//! testbed/fixture/inventory.sh, described in docs/fixture-release.md), later a real node's Talos resources
//! mapped to the same shape.
//!
//! The reader is tolerant where the schema allows it (keys may be added, so unknown keys are ignored; values
//! the guest could not read are `null`) and strict where it must be (the `schema` version, the types of the
//! fields it knows). A file is either the JSON object itself or any text (a serial log) holding
//! `TALFORGE-INVENTORY {json}` lines; the last complete line is used.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::QualifyError;

/// The inventory schema this reader understands (`INVENTORY_SCHEMA` in inventory.sh).
pub const INVENTORY_SCHEMA: u64 = 1;

/// What precedes the JSON on the guest's report line.
pub const INVENTORY_MARKER: &str = "TALFORGE-INVENTORY ";

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub schema: u64,
    /// `talforge-fixture` for the fixture guest.
    #[serde(default)]
    pub guest: Option<String>,
    pub kernel: Kernel,
    /// Extension layers in load order.
    #[serde(default)]
    pub extensions: Vec<Extension>,
    #[serde(default)]
    pub modules: Option<Modules>,
    #[serde(default)]
    pub firmware_files: Option<FirmwareFiles>,
    #[serde(default)]
    pub config: Option<ConfigFetch>,
    #[serde(default)]
    pub network: Option<Network>,
    pub nics: Vec<Nic>,
    pub disks: Vec<Disk>,
    pub firmware: Firmware,
    pub tpm: Tpm,
    /// Processors in /proc/cpuinfo (logical CPUs).
    #[serde(default)]
    pub cpus: Option<u32>,
    /// MemTotal in bytes: installed memory minus what firmware and kernel keep.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    #[serde(default)]
    pub smbios: Smbios,
    #[serde(default)]
    pub uptime_seconds: Option<f64>,
    /// PCI functions (`pciId` = vendor:device). The fixture guest does not list them; a real node's
    /// inventory (Talos `PCIDevices`) does, and GPUs are checked against it.
    #[serde(default)]
    pub pci_devices: Option<Vec<PciDevice>>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Kernel {
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    /// `uname -m`: `x86_64`, `aarch64`.
    #[serde(default)]
    pub arch: Option<String>,
    #[serde(default)]
    pub cmdline: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Extension {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub mountpoint: Option<String>,
    /// Kernel modules the layer carries.
    #[serde(default)]
    pub modules: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Modules {
    #[serde(default)]
    pub index: Option<String>,
    #[serde(default)]
    pub from_extensions: Vec<String>,
    /// Extension modules that did not load.
    #[serde(default)]
    pub failed_from_extensions: Vec<String>,
    /// Every module in /proc/modules.
    #[serde(default)]
    pub loaded: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FirmwareFiles {
    pub count: u64,
    #[serde(default)]
    pub files: Vec<String>,
}

/// The machine-config fetch (`talos.config=`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigFetch {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    /// HTTP status.
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub size_bytes: Option<u64>,
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// `dhcp`, `static`, `none` or `dhcp-failed`.
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub interface: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
}

/// A network interface with a device behind it, by its kernel name.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Nic {
    pub name: String,
    #[serde(default)]
    pub mac: Option<String>,
    /// The link's driver (`virtio_net`, `e1000e`), as Talos reports `link.driver`.
    #[serde(default)]
    pub driver: Option<String>,
    /// `vvvv:dddd` of the PCI function.
    #[serde(default)]
    pub pci_id: Option<String>,
    #[serde(default)]
    pub pci_address: Option<String>,
    #[serde(default)]
    pub pci_driver: Option<String>,
    #[serde(default)]
    pub bus_path: Option<String>,
    #[serde(default)]
    pub operstate: Option<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub addresses: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Disk {
    pub name: String,
    #[serde(default)]
    pub size_bytes: Option<u64>,
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub wwid: Option<String>,
    #[serde(default)]
    pub logical_block_size: Option<u32>,
    #[serde(default)]
    pub physical_block_size: Option<u32>,
    #[serde(default)]
    pub rotational: Option<bool>,
    #[serde(default)]
    pub read_only: Option<bool>,
    /// `nvme`, `virtio`, `sata`, `scsi`, `usb`, `mmc` or `unknown`.
    #[serde(default)]
    pub transport: Option<String>,
    #[serde(default)]
    pub pci_id: Option<String>,
    #[serde(default)]
    pub pci_address: Option<String>,
    #[serde(default)]
    pub pci_driver: Option<String>,
    #[serde(default)]
    pub bus_path: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FirmwareType {
    Uefi,
    Bios,
}

impl FirmwareType {
    pub fn as_str(self) -> &'static str {
        match self {
            FirmwareType::Uefi => "uefi",
            FirmwareType::Bios => "bios",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Firmware {
    #[serde(rename = "type")]
    pub kind: FirmwareType,
    /// The data byte of the `SecureBoot` EFI variable: 1 enforcing, 0 off, `null` absent (or BIOS).
    #[serde(default)]
    pub secure_boot: Option<u8>,
    /// The data byte of `SetupMode`: 1 while no platform key is enrolled.
    #[serde(default)]
    pub setup_mode: Option<u8>,
    #[serde(default)]
    pub efivars: bool,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Tpm {
    pub present: bool,
    #[serde(default)]
    pub version_major: Option<u8>,
    #[serde(default)]
    pub device: Option<String>,
}

/// SMBIOS strings under their /sys/class/dmi/id names (snake_case, unlike the rest of the schema).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Smbios {
    #[serde(default)]
    pub sys_vendor: Option<String>,
    #[serde(default)]
    pub product_name: Option<String>,
    #[serde(default)]
    pub product_version: Option<String>,
    #[serde(default)]
    pub product_serial: Option<String>,
    #[serde(default)]
    pub product_uuid: Option<String>,
    #[serde(default)]
    pub product_family: Option<String>,
    #[serde(default)]
    pub product_sku: Option<String>,
    #[serde(default)]
    pub board_vendor: Option<String>,
    #[serde(default)]
    pub board_name: Option<String>,
    #[serde(default)]
    pub bios_vendor: Option<String>,
    #[serde(default)]
    pub bios_version: Option<String>,
    #[serde(default)]
    pub chassis_type: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PciDevice {
    pub pci_id: String,
    #[serde(default)]
    pub pci_address: Option<String>,
    #[serde(default)]
    pub driver: Option<String>,
}

/// Reads an inventory file: the JSON object, or a serial log holding the guest's report line.
pub fn read_inventory(path: &Path) -> Result<Inventory, QualifyError> {
    let bytes = std::fs::read(path).map_err(|source| QualifyError::Read { path: path.to_owned(), source })?;
    // Serial logs carry firmware escape sequences and stray bytes; the inventory itself is UTF-8 JSON.
    let text = String::from_utf8_lossy(&bytes);
    parse_inventory(&text, path)
}

/// Parses `text` (read from `origin`, named in errors) as an inventory: the whole text when it is a JSON
/// object, else the last complete `TALFORGE-INVENTORY {json}` line.
pub fn parse_inventory(text: &str, origin: &Path) -> Result<Inventory, QualifyError> {
    if text.trim_start().starts_with('{') {
        return parse_json(text, Place { path: origin, line: 0, column: 0 });
    }
    let mut truncated_at = None;
    let lines: Vec<&str> = text.lines().collect();
    for (idx, line) in lines.iter().enumerate().rev() {
        let Some(at) = line.find(INVENTORY_MARKER).filter(|at| line[at + INVENTORY_MARKER.len()..].starts_with('{'))
        else {
            continue;
        };
        let start = at + INVENTORY_MARKER.len();
        let json = line[start..].trim_end();
        let place = Place { path: origin, line: idx, column: start };
        match parse_json(json, place) {
            Err(QualifyError::Truncated { line, .. }) => {
                // An earlier complete line (a previous boot in the same log) still counts.
                truncated_at.get_or_insert(line);
            }
            other => return other,
        }
    }
    Err(match truncated_at {
        Some(line) => QualifyError::Truncated { path: origin.to_owned(), line },
        None => QualifyError::NotFound { path: origin.to_owned() },
    })
}

/// Where a JSON text starts in its file: lines before it, and bytes before it on its first line.
#[derive(Clone, Copy)]
struct Place<'a> {
    path: &'a Path,
    line: usize,
    column: usize,
}

impl Place<'_> {
    /// File position (1-based line and column) of serde_json's position inside the JSON text.
    fn at(&self, line: usize, column: usize) -> (usize, usize) {
        if line <= 1 { (self.line + 1, self.column + column) } else { (self.line + line, column) }
    }

    fn invalid(&self, e: &serde_json::Error, field: String) -> QualifyError {
        let (line, column) = self.at(e.line(), e.column());
        if e.classify() == serde_json::error::Category::Eof {
            return QualifyError::Truncated { path: self.path.to_owned(), line };
        }
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        QualifyError::Invalid { path: self.path.to_owned(), line, column, field, message }
    }
}

/// Only the version, read first so that a newer schema is reported as such and not as a type error.
#[derive(Deserialize)]
struct SchemaProbe {
    #[serde(default)]
    schema: Option<serde_json::Value>,
}

fn parse_json(json: &str, place: Place<'_>) -> Result<Inventory, QualifyError> {
    let probe: SchemaProbe = serde_json::from_str(json).map_err(|e| place.invalid(&e, String::new()))?;
    if probe.schema.as_ref().and_then(serde_json::Value::as_u64) != Some(INVENTORY_SCHEMA) {
        let (line, column) = place.at(1, 1);
        return Err(QualifyError::Schema {
            path: place.path.to_owned(),
            line,
            column,
            expected: INVENTORY_SCHEMA,
            found: probe.schema.map_or_else(|| "no schema key".to_owned(), |v| v.to_string()),
        });
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let inventory: Inventory = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        place.invalid(e.inner(), field)
    })?;
    de.end().map_err(|e| place.invalid(&e, String::new()))?;
    Ok(inventory)
}
