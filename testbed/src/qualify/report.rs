//! The result of a comparison: every check with its status and the expected and found values, in a fixed
//! order (the profile's sections, then its NICs and disks in profile order), as text for people and as JSON
//! for CI and the lab's report.

use std::fmt::Write as _;

use serde::Serialize;

use super::Mode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Mismatch,
    /// Not compared; `note` says why (not emulated, not in the inventory, informational).
    NotChecked,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Mismatch => "MISMATCH",
            Status::NotChecked => "not checked",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Stable identifier: `firmware.secureBoot`, `nics.net0.driver`, `disks.osd.size`, `disks.extra`.
    pub id: String,
    pub status: Status,
    pub expected: String,
    pub found: String,
    /// The inventory device the check looked at (`eth0`, `nvme0n1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Why a check was not made, or the rule behind a comparison (tolerances).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Check {
    pub fn new(id: impl Into<String>, ok: bool, expected: impl Into<String>, found: impl Into<String>) -> Check {
        Check {
            id: id.into(),
            status: if ok { Status::Pass } else { Status::Mismatch },
            expected: expected.into(),
            found: found.into(),
            device: None,
            note: None,
        }
    }

    pub fn not_checked(
        id: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
        why: &str,
    ) -> Check {
        Check {
            id: id.into(),
            status: Status::NotChecked,
            expected: expected.into(),
            found: found.into(),
            device: None,
            note: Some(why.to_owned()),
        }
    }

    pub fn on(mut self, device: &str) -> Check {
        self.device = Some(device.to_owned());
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Check {
        self.note = Some(note.into());
        self
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub pass: usize,
    pub mismatch: usize,
    pub not_checked: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub profile: String,
    pub mode: Mode,
    /// No check is a mismatch.
    pub qualified: bool,
    pub summary: Summary,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(profile: &str, mode: Mode, checks: Vec<Check>) -> Report {
        let mut summary = Summary::default();
        for c in &checks {
            match c.status {
                Status::Pass => summary.pass += 1,
                Status::Mismatch => summary.mismatch += 1,
                Status::NotChecked => summary.not_checked += 1,
            }
        }
        Report { profile: profile.to_owned(), mode, qualified: summary.mismatch == 0, summary, checks }
    }

    pub fn mismatches(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Mismatch)
    }

    /// The report as aligned text: one line per check, notes indented below.
    pub fn human(&self) -> String {
        let id_w = self.checks.iter().map(|c| c.id.chars().count()).max().unwrap_or(0);
        let exp_w = self.checks.iter().map(|c| c.expected.chars().count()).max().unwrap_or(0).min(EXPECTED_COLUMN_MAX);
        let mut o = String::new();
        let mode = match self.mode {
            Mode::Hardware => "hardware (the machine the profile describes)",
            Mode::Emulated => "emulated (the lab VM made from the profile's emulation sections)",
        };
        let _ = writeln!(o, "profile {}, mode {mode}", self.profile);
        for c in &self.checks {
            let found = match &c.device {
                Some(d) => format!("{d}: {}", c.found),
                None => c.found.clone(),
            };
            let _ = writeln!(
                o,
                "  {:<11}  {:<id_w$}  expected {:<exp_w$}  found {found}",
                c.status.label(),
                c.id,
                c.expected,
            );
            if let Some(n) = &c.note {
                let _ = writeln!(o, "  {:<11}  {:<id_w$}  ({n})", "", "");
            }
        }
        let s = &self.summary;
        let verdict = if self.qualified { "qualified" } else { "NOT qualified" };
        let _ = writeln!(
            o,
            "{verdict}: {} checks, {} pass, {} mismatch, {} not checked",
            self.checks.len(),
            s.pass,
            s.mismatch,
            s.not_checked
        );
        // Trailing spaces from padding the last column would make the text awkward to compare.
        o.lines().map(str::trim_end).fold(String::new(), |mut acc, l| {
            acc.push_str(l);
            acc.push('\n');
            acc
        })
    }
}

/// Longer expected values push the found column out for that line only.
const EXPECTED_COLUMN_MAX: usize = 44;
