//! The human form of a plan (`talforge plan` without `--json`).

use std::fmt::Write as _;

use crate::machine_config::generate::{InstallTarget, LinkPlan};

use super::ClusterPlan;
use super::profile::ResolvedProfile;

/// Renders the plan as indented text.
pub fn human(p: &ClusterPlan) -> String {
    let mut o = String::new();
    let _ = write_plan(&mut o, p);
    o
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "(none)".to_owned() } else { items.join(", ") }
}

fn write_plan(o: &mut String, p: &ClusterPlan) -> std::fmt::Result {
    writeln!(
        o,
        "cluster {}: Talos {} (config contract {}), Kubernetes {}",
        p.cluster, p.talos_version, p.contract, p.kubernetes_version
    )?;
    writeln!(o, "  endpoint: {}", p.endpoint)?;
    writeln!(o, "  overlays: {}", list(&p.overlays))?;
    writeln!(o, "  secrets:  {}", p.secrets.display())?;
    writeln!(o)?;
    writeln!(o, "images ({}):", p.images.len())?;
    for im in &p.images {
        writeln!(o, "  {}", im.id)?;
        writeln!(
            o,
            "    profile:     {} ({} {}, {}{})",
            im.profile,
            im.platform,
            im.arch,
            im.bootloader,
            if im.secure_boot { ", Secure Boot" } else { "" }
        )?;
        writeln!(o, "    schematic:   {}", im.schematic_id)?;
        writeln!(o, "    extensions:  {}", list(&im.extensions))?;
        writeln!(o, "    kernel args: {}", list(&im.extra_kernel_args))?;
        writeln!(o, "    cmdline:     {}", im.cmdline)?;
        let outs: Vec<String> = im.outputs.iter().map(|k| format!("{k:?}").to_lowercase()).collect();
        writeln!(o, "    outputs:     {}", list(&outs))?;
        writeln!(o, "    installer:   {}", im.installer_image)?;
        writeln!(o, "    nodes:       {}", list(&im.nodes))?;
    }
    writeln!(o)?;
    writeln!(o, "nodes ({}):", p.nodes.len())?;
    for n in &p.nodes {
        writeln!(o, "  {} ({}, profile {})", n.name, n.role.as_str(), n.profile_chain.join(" < "))?;
        writeln!(o, "    image:    {}", n.image)?;
        writeln!(o, "    hostname: {}", n.facts.hostname)?;
        let install = match &n.facts.install {
            Some(InstallTarget::Path(d)) => d.clone(),
            Some(InstallTarget::Selector(s)) if p.quirks.unattended_install_config() => s.cel(),
            Some(InstallTarget::Selector(s)) => s.v1alpha1_text(),
            None => "(none)".to_owned(),
        };
        writeln!(o, "    install:  {install}")?;
        for l in &n.facts.links {
            writeln!(o, "    link:     {}", describe_link(l))?;
        }
        if !n.facts.nameservers.is_empty() {
            let ns: Vec<String> = n.facts.nameservers.iter().map(ToString::to_string).collect();
            writeln!(o, "    dns:      {}", ns.join(", "))?;
        }
        let mods: Vec<String> = n.facts.kernel_modules.iter().map(|(m, _)| m.clone()).collect();
        writeln!(o, "    modules:  {}", list(&mods))?;
        let sys: Vec<String> = n.facts.sysctls.iter().map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(o, "    sysctls:  {}", list(&sys))?;
        writeln!(o, "    osd:      {}", list(&n.osd_disks))?;
        writeln!(o, "    patches:  {}", list(&n.patches))?;
        for w in &n.warnings {
            writeln!(o, "    warning:  {w}")?;
        }
    }
    for w in &p.warnings {
        writeln!(o, "warning: {w}")?;
    }
    Ok(())
}

fn describe_link(l: &LinkPlan) -> String {
    let addr = if l.dhcp {
        "DHCP".to_owned()
    } else {
        let a: Vec<String> = l.addresses.iter().map(ToString::to_string).collect();
        match l.gateway {
            Some(g) => format!("{} via {g}", a.join(", ")),
            None => a.join(", "),
        }
    };
    let aliases: Vec<String> = l.aliases.iter().map(|a| format!("{} where {}", a.name, a.selector.cel())).collect();
    let how = match &l.bond {
        Some(b) => format!("bond {} of {}; {}", b.mode, b.links.join("+"), aliases.join("; ")),
        None => aliases.join("; "),
    };
    format!("{} ({how}): {addr}", l.name)
}

/// The human form of a resolved profile (`talforge profile show`).
pub fn profile(p: &ResolvedProfile) -> String {
    let mut o = String::new();
    let _ = write_profile(&mut o, p);
    o
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

fn write_profile(o: &mut String, p: &ResolvedProfile) -> std::fmt::Result {
    writeln!(o, "{} ({})", p.name, p.chain.join(" < "))?;
    if let Some(d) = &p.description {
        writeln!(o, "  {d}")?;
    }
    writeln!(o, "  model:     {} {}", opt(&p.vendor), opt(&p.model))?;
    let fw = &p.firmware;
    writeln!(
        o,
        "  firmware:  {:?}{}{}{}",
        fw.kind,
        if fw.secure_boot { ", Secure Boot" } else { "" },
        if fw.tpm { ", TPM 2.0" } else { "" },
        fw.serial_console.as_ref().map(|c| format!(", console {c}")).unwrap_or_default()
    )?;
    writeln!(
        o,
        "  cpu:       {:?} {} ({} sockets x {} cores)",
        p.cpu.vendor,
        opt(&p.cpu.model),
        p.cpu.sockets.map_or("-".into(), |v| v.to_string()),
        p.cpu.cores.map_or("-".into(), |v| v.to_string())
    )?;
    writeln!(o, "  arch:      {}", p.arch.as_str())?;
    for n in &p.nics {
        let emu = n.emulation.as_ref().map_or("not emulated".to_owned(), |e| format!("lab: {}", e.model.qemu_device()));
        writeln!(
            o,
            "  nic:       {} {} {} {}{}{} ({emu})",
            n.name,
            n.driver,
            n.pci_id,
            opt(&n.model),
            if n.primary { ", primary" } else { "" },
            n.bond.as_ref().map(|b| format!(", in {b}")).unwrap_or_default()
        )?;
    }
    for b in &p.bonds {
        writeln!(o, "  bond:      {} mode {}", b.name, b.mode)?;
    }
    for d in &p.disks {
        let emu = d.emulation.as_ref().map_or("not emulated".to_owned(), |e| format!("lab: {:?}", e.device));
        writeln!(
            o,
            "  disk:      {} {:?} {:?} {} x{} {} ({emu})",
            d.name,
            d.role,
            d.bus,
            d.size,
            d.count,
            opt(&d.model)
        )?;
    }
    for g in &p.gpus {
        writeln!(o, "  gpu:       {}x {:?} {} {} (not emulated)", g.count, g.vendor, g.model, g.pci_id)?;
    }
    writeln!(o, "  extensions: {}", list(&p.extensions))?;
    writeln!(o, "  kernel args: {}", list(&p.kernel_args))?;
    let mods: Vec<String> = p.kernel_modules.iter().map(|m| m.name.clone()).collect();
    writeln!(o, "  modules:   {}", list(&mods))?;
    let sys: Vec<String> = p.sysctls.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(o, "  sysctls:   {}", list(&sys))?;
    writeln!(o, "  lab:       {} {} vCPU {} memory", p.emulation.machine, p.emulation.cpus, p.emulation.memory)?;
    Ok(())
}
