//! What the lab knows about a node while it runs, gathered from its VM (state, QMP events, console), the
//! config server's log and the DHCP server; stage conditions read it.

use std::collections::{BTreeMap, VecDeque};

use crate::configserver::Fetch;
use crate::vm::{VmSignal, VmState};

/// Console lines kept for "last observed" messages.
pub const TAIL_LINES: usize = 12;

/// A `TALFORGE-STAGE <name> t=<uptime> key=value...` line of the fixture guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    pub name: String,
    pub fields: BTreeMap<String, String>,
}

impl Marker {
    pub fn parse(line: &str) -> Option<Marker> {
        let rest = &line[line.find("TALFORGE-STAGE ")? + "TALFORGE-STAGE ".len()..];
        let mut words = rest.split_whitespace();
        let name = words.next()?.to_owned();
        let fields = words.filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Some(Marker { name, fields })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
}

#[derive(Clone, Debug)]
pub struct NodeObs {
    pub vm: VmState,
    pub qmp_events: Vec<String>,
    pub markers: Vec<Marker>,
    /// The firmware's line handing over to a boot option (OVMF `BdsDxe: starting Boot...`, SeaBIOS
    /// `Booting from ...`).
    pub firmware_handoff: Option<String>,
    pub boot_menus: u32,
    /// The `TALFORGE-INVENTORY` JSON.
    pub inventory: Option<String>,
    pub tail: VecDeque<String>,
    pub fetches: Vec<Fetch>,
    pub dhcp: Vec<String>,
    pub console_lines: u64,
}

impl Default for NodeObs {
    fn default() -> Self {
        NodeObs {
            vm: VmState::Created,
            qmp_events: Vec::new(),
            markers: Vec::new(),
            firmware_handoff: None,
            boot_menus: 0,
            inventory: None,
            tail: VecDeque::new(),
            fetches: Vec::new(),
            dhcp: Vec::new(),
            console_lines: 0,
        }
    }
}

impl NodeObs {
    pub fn marker(&self, name: &str) -> Option<&Marker> {
        self.markers.iter().rev().find(|m| m.name == name)
    }

    /// The last console lines, one per line, for messages.
    pub fn tail_text(&self, n: usize) -> String {
        let skip = self.tail.len().saturating_sub(n);
        let lines: Vec<&str> = self.tail.iter().skip(skip).map(String::as_str).collect();
        if lines.is_empty() { "(no console output)".into() } else { lines.join("\n") }
    }

    /// Something every stage fails on: QEMU gone, the guest panicked, the fixture's /init gave up.
    pub fn fatal(&self) -> Option<String> {
        if let Some(m) = self.marker("failed") {
            return Some(format!("the guest's /init failed: {}", m.get("error").unwrap_or("?").replace('_', " ")));
        }
        match &self.vm {
            VmState::Exited { .. } => Some(self.vm.to_string()),
            VmState::Panicked { .. } => Some(match self.qmp_events.iter().rfind(|e| e.starts_with("GUEST_PANICKED")) {
                Some(e) => format!("{} (QMP {e})", self.vm),
                None => self.vm.to_string(),
            }),
            VmState::Paused { why } => Some(format!("the VM is paused ({why})")),
            _ => None,
        }
    }

    pub fn apply(&mut self, signal: VmSignal) {
        match signal {
            VmSignal::State(s) => self.vm = s,
            VmSignal::Qmp(e) => self.qmp_events.push(e),
            VmSignal::BootMenu => self.boot_menus += 1,
            VmSignal::Console(line) => {
                let text = line.text;
                self.console_lines += 1;
                if let Some(m) = Marker::parse(&text) {
                    self.markers.push(m);
                }
                if let Some((_, json)) = text.split_once("TALFORGE-INVENTORY ") {
                    self.inventory = Some(json.trim_end().to_owned());
                }
                if self.firmware_handoff.is_none()
                    && (text.contains("BdsDxe: starting Boot") || text.trim_start().starts_with("Booting from "))
                {
                    self.firmware_handoff = Some(text.trim().to_owned());
                }
                // The inventory line is long: keep its head.
                let short: String = text.chars().take(300).collect();
                self.tail.push_back(short);
                while self.tail.len() > TAIL_LINES * 4 {
                    self.tail.pop_front();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::ConsoleLine;

    #[test]
    fn markers_and_inventory_are_picked_out() {
        let mut o = NodeObs::default();
        for l in [
            "BdsDxe: starting Boot0001 \"UEFI Misc Device\" from PciRoot(0x0)/Pci(0x1,0x0)",
            "TALFORGE-STAGE kernel-booted t=1.23 kernel=6.1.0-56-amd64",
            "TALFORGE-INVENTORY {\"schema\":1}",
            "TALFORGE-STAGE failed t=2.00 error=cannot_mount_x",
        ] {
            o.apply(VmSignal::Console(ConsoleLine { text: l.into() }));
        }
        assert!(o.firmware_handoff.as_deref().is_some_and(|l| l.starts_with("BdsDxe: starting Boot0001")));
        assert_eq!(o.marker("kernel-booted").and_then(|m| m.get("kernel")), Some("6.1.0-56-amd64"));
        assert_eq!(o.inventory.as_deref(), Some("{\"schema\":1}"));
        assert_eq!(o.fatal().as_deref(), Some("the guest's /init failed: cannot mount x"));
        assert_eq!(o.console_lines, 4);
    }
}
