//! The human form of a plan (`talforge plan` without `--json`).

use std::fmt::Write as _;

use crate::machine_config::generate::{InstallTarget, LinkPlan};
use crate::quirks::NetworkStyle;

use super::ClusterPlan;

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
    let style = p.quirks.network_style();
    for n in &p.nodes {
        writeln!(o, "  {} ({}, profile {})", n.name, n.role.as_str(), n.profile_chain.join(" < "))?;
        writeln!(o, "    image:    {}", n.image)?;
        writeln!(o, "    hostname: {}", n.facts.hostname)?;
        let install = match &n.facts.install {
            Some(InstallTarget::Path(d)) => d.clone(),
            Some(InstallTarget::Selector(s)) => s.cel(),
            None => "(none)".to_owned(),
        };
        writeln!(o, "    install:  {install}")?;
        for l in &n.facts.links {
            writeln!(o, "    link:     {}", describe_link(l, style))?;
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

fn describe_link(l: &LinkPlan, style: NetworkStyle) -> String {
    let addr = if l.dhcp {
        "DHCP".to_owned()
    } else {
        let a: Vec<String> = l.addresses.iter().map(ToString::to_string).collect();
        match l.gateway {
            Some(g) => format!("{} via {g}", a.join(", ")),
            None => a.join(", "),
        }
    };
    let how = match (&l.bond, &l.selector) {
        (Some(b), _) => {
            let m: Vec<&str> = b.members.iter().map(|(n, _)| n.as_str()).collect();
            format!("bond {} of {}", b.mode, m.join("+"))
        }
        (None, Some(s)) => match style {
            NetworkStyle::LinkAlias => format!("alias where {}", s.cel()),
            NetworkStyle::DeviceSelector => {
                let mut parts = Vec::new();
                if let Some(m) = s.mac {
                    parts.push(format!("hardwareAddr {m}"));
                }
                if let Some(d) = &s.driver {
                    parts.push(format!("driver {d}"));
                }
                if let Some(p) = &s.pci_id {
                    parts.push(format!("pciID {}", p.to_uppercase()));
                }
                format!("deviceSelector {}", parts.join(", "))
            }
        },
        (None, None) => "(by name)".to_owned(),
    };
    format!("{} ({how}): {addr}", l.name)
}
