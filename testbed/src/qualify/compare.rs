//! The comparison: one check per profile fact, in a fixed order.
//!
//! NICs and disks are matched before they are compared, so that one defect is one mismatch: a profile NIC
//! is paired with the inventory NIC that agrees with it on the most attributes (a NIC is a candidate when
//! its driver or its PCI ID agrees; a disk when its transport is the profile's bus); exact matches are
//! paired first, in profile order. A NIC with the wrong driver is then found (its PCI ID agrees) and
//! reported as a wrong driver, not as a missing NIC plus an extra one. Inventory devices left over are
//! reported once, under `nics.extra` or `disks.extra`.

use talforge_builder::spec::profile::{Arch, FirmwareKind};
use talforge_builder::spec::units::ByteSize;

use super::expect::{
    Expectation, ExpectedDisk, ExpectedNic, MEMORY_SHORTFALL_PERCENT, Mode, bus_name, gpu_text, nic_text,
};
use super::inventory::{Disk, Firmware, FirmwareType, Inventory, Nic};
use super::report::{Check, Report};

/// Compares `inv` with `exp` and reports every check.
pub fn qualify(exp: &Expectation, inv: &Inventory) -> Report {
    let mut c = Vec::new();
    check_platform(exp, inv, &mut c);
    check_shape(exp, inv, &mut c);
    check_smbios(exp, inv, &mut c);
    check_nics(exp, inv, &mut c);
    check_disks(exp, inv, &mut c);
    check_gpus(exp, inv, &mut c);
    check_software(exp, inv, &mut c);
    Report::new(&exp.profile, exp.mode, c)
}

fn skipped(exp: &Expectation, prefix: &str, found: &str, c: &mut Vec<Check>) {
    for s in exp.skipped.iter().filter(|s| {
        s.id == prefix || s.id.starts_with(&format!("{prefix}.")) || s.id.starts_with(&format!("{prefix}["))
    }) {
        c.push(Check::not_checked(&s.id, &s.expected, found, &s.reason));
    }
}

fn or_unknown(v: Option<&str>) -> String {
    v.map_or_else(|| "unknown".to_owned(), str::to_owned)
}

// ------------------------------------------------------------------------------------------------ platform

fn check_platform(exp: &Expectation, inv: &Inventory, c: &mut Vec<Check>) {
    let uname = match exp.arch {
        Arch::Amd64 => "x86_64",
        Arch::Arm64 => "aarch64",
    };
    let found = inv.kernel.arch.as_deref();
    c.push(Check::new("arch", found == Some(uname), format!("{} ({uname})", exp.arch.as_str()), or_unknown(found)));

    let want = match exp.firmware {
        FirmwareKind::Uefi => FirmwareType::Uefi,
        FirmwareKind::Bios => FirmwareType::Bios,
    };
    c.push(Check::new("firmware.type", inv.firmware.kind == want, want.as_str(), inv.firmware.kind.as_str()));

    let sb = secure_boot_text(&inv.firmware);
    c.push(if exp.secure_boot {
        Check::new("firmware.secureBoot", inv.firmware.secure_boot == Some(1), "enabled (SecureBoot=1)", sb)
    } else {
        Check::new("firmware.secureBoot", true, "not required", sb)
    });

    let tpm = &inv.tpm;
    let found = match (tpm.present, tpm.version_major) {
        (false, _) => "none".to_owned(),
        (true, Some(2)) => "TPM 2.0".to_owned(),
        (true, Some(1)) => "TPM 1.2".to_owned(),
        (true, v) => format!("TPM, version {}", v.map_or_else(|| "unknown".to_owned(), |v| v.to_string())),
    };
    let found = match &tpm.device {
        Some(d) if tpm.present => format!("{found} ({d})"),
        _ => found,
    };
    c.push(if exp.tpm {
        Check::new("tpm", tpm.present && tpm.version_major == Some(2), "TPM 2.0", found)
    } else {
        Check::new("tpm", true, "not required", found)
    });
}

fn secure_boot_text(fw: &Firmware) -> String {
    if fw.kind == FirmwareType::Bios {
        return "BIOS firmware (no Secure Boot)".to_owned();
    }
    let state = match fw.secure_boot {
        Some(1) => "enabled",
        Some(0) => "off",
        Some(_) => "unknown value",
        None => return "no SecureBoot variable".to_owned(),
    };
    let mut s = format!("{state} (SecureBoot={}", fw.secure_boot.unwrap_or_default());
    if let Some(m) = fw.setup_mode {
        s.push_str(&format!(", SetupMode={m}"));
    }
    s.push(')');
    s
}

// ------------------------------------------------------------------------------------------------ shape

fn check_shape(exp: &Expectation, inv: &Inventory, c: &mut Vec<Check>) {
    match &exp.cpus {
        Some(e) => c.push(Check::new(
            "cpus",
            inv.cpus == Some(e.value),
            format!("{} ({})", e.value, e.source),
            inv.cpus.map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
        )),
        None => skipped(exp, "cpus", &inv.cpus.map_or_else(|| "unknown".to_owned(), |n| n.to_string()), c),
    }
    let found_mem = inv.memory_bytes.map_or_else(|| "unknown".to_owned(), size_text);
    match &exp.memory {
        Some(e) => {
            let ok = inv.memory_bytes.is_some_and(|m| {
                m <= e.value && u128::from(m) * 100 >= u128::from(e.value) * u128::from(100 - MEMORY_SHORTFALL_PERCENT)
            });
            c.push(Check::new("memory", ok, format!("{} ({})", ByteSize(e.value), e.source), found_mem).note(format!(
                "MemTotal may be up to {MEMORY_SHORTFALL_PERCENT}% below the installed memory, never above"
            )));
        }
        None => skipped(exp, "memory", &found_mem, c),
    }
}

/// `17179869184 bytes (16GiB)`, or `2055970816 bytes (1.91 GiB)` for sizes without a round unit.
pub(super) fn size_text(bytes: u64) -> String {
    if bytes >= ByteSize::MIB && (bytes.is_multiple_of(ByteSize::MIB) || bytes.is_multiple_of(1_000_000)) {
        format!("{bytes} bytes ({})", ByteSize(bytes))
    } else {
        #[allow(clippy::cast_precision_loss)] // two decimals of a human-readable size
        let gib = bytes as f64 / ByteSize::GIB as f64;
        format!("{bytes} bytes ({gib:.2} GiB)")
    }
}

// ------------------------------------------------------------------------------------------------ SMBIOS

fn check_smbios(exp: &Expectation, inv: &Inventory, c: &mut Vec<Check>) {
    let s = &exp.smbios;
    let i = &inv.smbios;
    let fields = [
        ("manufacturer", &s.manufacturer, &i.sys_vendor),
        ("product", &s.product, &i.product_name),
        ("version", &s.version, &i.product_version),
        ("family", &s.family, &i.product_family),
        ("sku", &s.sku, &i.product_sku),
    ];
    for (key, want, found) in fields {
        let Some(want) = want else { continue };
        let prefix = key == "product" && exp.smbios_product_prefix;
        let ok = found.as_deref().is_some_and(|f| if prefix { f.starts_with(want.as_str()) } else { f == want });
        let mut check = Check::new(format!("smbios.{key}"), ok, want.as_str(), or_unknown(found.as_deref()));
        if prefix {
            check = check.note("prefix match: vendors append the machine type");
        }
        c.push(check);
    }
}

// ------------------------------------------------------------------------------------------------ matching

/// Pairs slots (profile NICs or disks) with candidates (inventory devices). `score(slot, candidate)` is
/// `None` when the candidate cannot be that slot, else the number of agreeing attributes and whether all
/// agree. Exact matches are paired first in slot order; the rest by highest score, then slot order, then
/// candidate order. Returns each slot's candidate.
fn pair(slots: usize, candidates: usize, score: impl Fn(usize, usize) -> Option<(usize, bool)>) -> Vec<Option<usize>> {
    let mut assigned: Vec<Option<usize>> = vec![None; slots];
    let mut taken = vec![false; candidates];
    for (s, slot) in assigned.iter_mut().enumerate() {
        if let Some(k) = (0..candidates).find(|&k| !taken[k] && score(s, k).is_some_and(|(_, exact)| exact)) {
            *slot = Some(k);
            taken[k] = true;
        }
    }
    loop {
        let mut best: Option<(usize, usize, usize)> = None;
        for s in (0..slots).filter(|&s| assigned[s].is_none()) {
            for k in (0..candidates).filter(|&k| !taken[k]) {
                if let Some((points, _)) = score(s, k)
                    && best.is_none_or(|(b, _, _)| points > b)
                {
                    best = Some((points, s, k));
                }
            }
        }
        let Some((_, s, k)) = best else { break };
        assigned[s] = Some(k);
        taken[k] = true;
    }
    assigned
}

// ------------------------------------------------------------------------------------------------ NICs

struct NicAgreement {
    driver: bool,
    pci_id: bool,
    mac: Option<bool>,
    bus_path: Option<bool>,
}

impl NicAgreement {
    fn of(e: &ExpectedNic, n: &Nic) -> NicAgreement {
        NicAgreement {
            driver: n.driver.as_deref() == Some(e.driver.as_str()),
            pci_id: n.pci_id.as_deref().is_some_and(|p| p.eq_ignore_ascii_case(&e.pci_id)),
            mac: e.mac.map(|m| n.mac.as_deref().is_some_and(|f| f.eq_ignore_ascii_case(&m.to_string()))),
            bus_path: e.bus_path.as_ref().map(|g| n.pci_address.as_deref().is_some_and(|a| glob_match(g, a))),
        }
    }

    fn score(&self) -> Option<(usize, bool)> {
        if !self.driver && !self.pci_id {
            return None;
        }
        let all = [Some(self.driver), Some(self.pci_id), self.mac, self.bus_path];
        let points = all.iter().flatten().filter(|ok| **ok).count();
        Some((points, all.iter().flatten().all(|ok| *ok)))
    }
}

fn inventory_nic_text(n: &Nic) -> String {
    format!(
        "driver {}, PCI ID {}, MAC {}",
        or_unknown(n.driver.as_deref()),
        or_unknown(n.pci_id.as_deref()),
        or_unknown(n.mac.as_deref())
    )
}

fn check_nics(exp: &Expectation, inv: &Inventory, c: &mut Vec<Check>) {
    let pairs = pair(exp.nics.len(), inv.nics.len(), |s, k| NicAgreement::of(&exp.nics[s], &inv.nics[k]).score());
    for (e, found) in exp.nics.iter().zip(&pairs) {
        let id = format!("nics.{}", e.name);
        let Some(n) = found.map(|k| &inv.nics[k]) else {
            c.push(Check::new(&id, false, nic_text(e), "no NIC with this driver or PCI ID"));
            continue;
        };
        c.push(Check::new(&id, true, nic_text(e), inventory_nic_text(n)).on(&n.name));
        let a = NicAgreement::of(e, n);
        c.push(Check::new(format!("{id}.driver"), a.driver, &e.driver, or_unknown(n.driver.as_deref())).on(&n.name));
        c.push(Check::new(format!("{id}.pciId"), a.pci_id, &e.pci_id, or_unknown(n.pci_id.as_deref())).on(&n.name));
        if let (Some(ok), Some(mac)) = (a.mac, e.mac) {
            c.push(Check::new(format!("{id}.mac"), ok, mac.to_string(), or_unknown(n.mac.as_deref())).on(&n.name));
        }
        if let (Some(ok), Some(glob)) = (a.bus_path, &e.bus_path) {
            c.push(
                Check::new(format!("{id}.busPath"), ok, glob, or_unknown(n.pci_address.as_deref()))
                    .on(&n.name)
                    .note("matched against the PCI address"),
            );
        }
    }
    skipped(exp, "nics", "-", c);
    let extra: Vec<String> = (0..inv.nics.len())
        .filter(|k| !pairs.contains(&Some(*k)))
        .map(|k| format!("{} ({})", inv.nics[k].name, inventory_nic_text(&inv.nics[k])))
        .collect();
    c.push(Check::new(
        "nics.extra",
        extra.is_empty(),
        format!("only the profile's {} NIC(s)", exp.nics.len()),
        if extra.is_empty() { "none".to_owned() } else { extra.join("; ") },
    ));
}

// ------------------------------------------------------------------------------------------------ disks

struct DiskAgreement {
    size: bool,
    serial: Option<bool>,
    model: Option<bool>,
    rotational: Option<bool>,
}

impl DiskAgreement {
    fn of(e: &ExpectedDisk, d: &Disk) -> Option<DiskAgreement> {
        let transport = d.transport.as_deref()?;
        if !e.transports.contains(&transport) {
            return None;
        }
        Some(DiskAgreement {
            size: d.size_bytes.is_some_and(|found| size_ok(e, found)),
            serial: e.serial.as_ref().map(|g| d.serial.as_deref().is_some_and(|s| glob_match(g, s))),
            model: e.model.as_ref().map(|g| d.model.as_deref().is_some_and(|m| glob_match(g, m))),
            rotational: match (e.rotational, e.rotational_unchecked) {
                (Some(r), None) => Some(d.rotational == Some(r)),
                _ => None,
            },
        })
    }

    fn score(&self) -> (usize, bool) {
        let all = [Some(self.size), self.serial, self.model, self.rotational];
        (all.iter().flatten().filter(|ok| **ok).count(), all.iter().flatten().all(|ok| *ok))
    }
}

fn size_ok(e: &ExpectedDisk, found: u64) -> bool {
    let want = u128::from(e.size.value);
    let diff = u128::from(found).abs_diff(want);
    diff * 100 <= want * u128::from(e.size_tolerance_percent)
}

/// Optical drives and read-only devices (virtual media, a CD-ROM with the ISO) are not the machine's disks.
fn ignored_disk(d: &Disk) -> bool {
    d.name.starts_with("sr") || d.read_only == Some(true)
}

fn expected_disk_text(e: &ExpectedDisk) -> String {
    let mut s = format!("{} disk, {}", bus_name(e.bus), ByteSize(e.size.value));
    if let Some(g) = &e.serial {
        s.push_str(&format!(", serial {g}"));
    }
    s
}

fn inventory_disk_text(d: &Disk) -> String {
    let size = d.size_bytes.map_or_else(|| "size unknown".to_owned(), |b| ByteSize(b).to_string());
    let mut s = format!("{} disk, {size}", or_unknown(d.transport.as_deref()));
    if let Some(v) = &d.serial {
        s.push_str(&format!(", serial {v}"));
    }
    s
}

fn check_disks(exp: &Expectation, inv: &Inventory, c: &mut Vec<Check>) {
    let candidates: Vec<&Disk> = inv.disks.iter().filter(|d| !ignored_disk(d)).collect();
    let pairs = pair(exp.disks.len(), candidates.len(), |s, k| {
        DiskAgreement::of(&exp.disks[s], candidates[k]).map(|a| a.score())
    });
    for (e, found) in exp.disks.iter().zip(&pairs) {
        let id = format!("disks.{}", e.id);
        let Some((d, a)) = found.map(|k| candidates[k]).and_then(|d| DiskAgreement::of(e, d).map(|a| (d, a))) else {
            c.push(Check::new(&id, false, expected_disk_text(e), format!("no {} disk", bus_name(e.bus))));
            continue;
        };
        c.push(Check::new(&id, true, expected_disk_text(e), inventory_disk_text(d)).on(&d.name));
        let size = d.size_bytes.map_or_else(|| "unknown".to_owned(), size_text);
        let (expected, note) = if e.size_tolerance_percent == 0 {
            (size_text(e.size.value), format!("{}; exact: the lab creates the disk with this size", e.size.source))
        } else {
            (
                format!("{} ± {}%", size_text(e.size.value), e.size_tolerance_percent),
                format!("{}, nominal: vendors round capacities, RAID volumes keep metadata", e.size.source),
            )
        };
        c.push(Check::new(format!("{id}.size"), a.size, expected, size).on(&d.name).note(note));
        if let (Some(ok), Some(g)) = (a.serial, &e.serial) {
            c.push(Check::new(format!("{id}.serial"), ok, g, or_unknown(d.serial.as_deref())).on(&d.name));
        }
        if let (Some(ok), Some(m)) = (a.model, &e.model) {
            c.push(Check::new(format!("{id}.model"), ok, m, or_unknown(d.model.as_deref())).on(&d.name));
        }
        let found_rot = d.rotational.map_or_else(|| "unknown".to_owned(), |r| r.to_string());
        match (e.rotational, e.rotational_unchecked, a.rotational) {
            (Some(r), Some(why), _) => {
                c.push(Check::not_checked(format!("{id}.rotational"), r.to_string(), found_rot, why).on(&d.name));
            }
            (Some(r), None, Some(ok)) => {
                c.push(Check::new(format!("{id}.rotational"), ok, r.to_string(), found_rot).on(&d.name));
            }
            _ => {}
        }
    }
    skipped(exp, "disks", "-", c);
    let extra: Vec<String> = (0..candidates.len())
        .filter(|k| !pairs.contains(&Some(*k)))
        .map(|k| format!("{} ({})", candidates[k].name, inventory_disk_text(candidates[k])))
        .collect();
    let ignored: Vec<&str> = inv.disks.iter().filter(|d| ignored_disk(d)).map(|d| d.name.as_str()).collect();
    let mut check = Check::new(
        "disks.extra",
        extra.is_empty(),
        format!("only the profile's {} disk(s)", exp.disks.len()),
        if extra.is_empty() { "none".to_owned() } else { extra.join("; ") },
    );
    if !ignored.is_empty() {
        check = check.note(format!("optical and read-only devices ignored: {}", ignored.join(", ")));
    }
    c.push(check);
}

// ------------------------------------------------------------------------------------------------ GPUs

fn check_gpus(exp: &Expectation, inv: &Inventory, c: &mut Vec<Check>) {
    for (i, g) in exp.gpus.iter().enumerate() {
        let id = format!("gpus[{i}]");
        let expected = gpu_text(g.count, &g.model, &g.pci_id);
        match &inv.pci_devices {
            Some(devs) => {
                let n = devs.iter().filter(|d| d.pci_id.eq_ignore_ascii_case(&g.pci_id)).count();
                let ok = u32::try_from(n).is_ok_and(|n| n == g.count);
                c.push(Check::new(id, ok, expected, format!("{n} PCI device(s) {}", g.pci_id)));
            }
            None => c.push(Check::not_checked(id, expected, "-", "the inventory lists no PCI devices")),
        }
    }
    skipped(exp, "gpus", "-", c);
}

// ------------------------------------------------------------------------------------------------ software

/// `siderolabs/intel-ucode`, `ghcr.io/siderolabs/intel-ucode:20250211@sha256:…` or `./dir/x` → `intel-ucode` /
/// `x`: the name an extension reports.
fn extension_name(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

fn check_software(exp: &Expectation, inv: &Inventory, c: &mut Vec<Check>) {
    if !exp.kernel_modules.is_empty() {
        let expected = exp.kernel_modules.join(", ");
        let norm = |m: &str| m.replace('-', "_");
        match (&inv.modules, exp.mode) {
            (_, Mode::Emulated) => c.push(Check::not_checked(
                "kernelModules",
                expected,
                "-",
                "Talos loads them from the machine config for hardware the lab may not emulate",
            )),
            (None, Mode::Hardware) => {
                c.push(Check::not_checked("kernelModules", expected, "-", "the inventory lists no modules"))
            }
            (Some(m), Mode::Hardware) => {
                let missing: Vec<&str> = exp
                    .kernel_modules
                    .iter()
                    .filter(|k| !m.loaded.iter().any(|l| norm(l) == norm(k)))
                    .map(String::as_str)
                    .collect();
                let found = if missing.is_empty() {
                    "all loaded".to_owned()
                } else {
                    format!("not loaded: {}", missing.join(", "))
                };
                c.push(Check::new("kernelModules", missing.is_empty(), expected, found));
            }
        }
    }

    let names: Vec<&str> = inv.extensions.iter().map(|e| e.name.as_str()).collect();
    let found = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
    if !exp.extensions.is_empty() {
        let expected = exp.extensions.join(", ");
        match exp.mode {
            Mode::Emulated => c.push(Check::not_checked(
                "extensions",
                expected,
                found,
                "informational in the lab: an image built from the fixture release carries fixture extensions",
            )),
            Mode::Hardware => {
                let missing: Vec<&str> =
                    exp.extensions.iter().map(|e| extension_name(e)).filter(|n| !names.contains(n)).collect();
                let found =
                    if missing.is_empty() { found } else { format!("{found}; missing: {}", missing.join(", ")) };
                c.push(
                    Check::new("extensions", missing.is_empty(), expected, found)
                        .note("compared by name: the reference's last part, without tag or digest"),
                );
            }
        }
    }
    if let Some(m) = &inv.modules
        && !inv.extensions.is_empty()
    {
        let failed = &m.failed_from_extensions;
        c.push(Check::new(
            "extensions.modules",
            failed.is_empty(),
            "every extension module loads",
            if failed.is_empty() {
                format!("{} loaded", m.from_extensions.len())
            } else {
                format!("failed: {}", failed.join(", "))
            },
        ));
    }
}

// ------------------------------------------------------------------------------------------------ globs

/// Shell-style glob as Talos selectors use them: `*` any run, `?` one character, `[a-z]`/`[!x]`/`[^x]`
/// one character of (not of) a set; everything else literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and the text position it currently covers up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => class_match(&p, pi, t[ti]),
            Some(ch) if *ch == t[ti] => Some(pi + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ti += 1;
            }
            (None, Some((sp, st))) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches `ch` against the class starting at `p[open] == '['`; the pattern index after the class when it
/// matches. An unclosed `[` is a literal.
fn class_match(p: &[char], open: usize, ch: char) -> Option<usize> {
    let mut i = open + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let start = i;
    let mut hit = false;
    while let Some(&c) = p.get(i) {
        if c == ']' && i > start {
            return (hit != negate).then_some(i + 1);
        }
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|e| *e != ']') {
            hit |= (c..=p[i + 2]).contains(&ch);
            i += 3;
        } else {
            hit |= c == ch;
            i += 1;
        }
    }
    (ch == '[').then_some(open + 1)
}
