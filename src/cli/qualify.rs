//! `talforge qualify`: compare a machine's inventory with its hardware profile.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use talforge_builder::plan::profile::resolve_profile;
use talforge_builder::spec::Catalog;
use talforge_testbed::qualify::{Expectation, qualify, read_inventory};

#[derive(Debug, Args)]
pub struct QualifyArgs {
    /// Hardware profile the machine should match.
    #[arg(long, value_name = "P")]
    pub profile: String,
    /// The machine's inventory: the fixture guest's JSON, or a serial log holding its `TALFORGE-INVENTORY`
    /// line (the last complete one counts).
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// Compare with the lab VM made from the profile's emulation sections (QEMU devices, emulated disk
    /// sizes, emulation.cpus/memory) instead of the real hardware the profile describes.
    #[arg(long)]
    pub emulated: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Exit 0 when every check passes, 1 when any is a mismatch; bad input is an error (exit 2).
pub fn run(a: &QualifyArgs, catalog: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cat = match catalog {
        Some(d) => Catalog::open(d)?,
        None => Catalog::discover(Path::new("."))?,
    };
    if !cat.has_profile(&a.profile) {
        return Err(talforge_builder::Error::Input(Box::new(talforge_builder::Diagnostic::new(
            cat.root.join("hardware-profiles"),
            talforge_builder::yaml::Span::UNKNOWN,
            talforge_builder::yaml::FieldPath::root(),
            format!("unknown hardware profile {:?}; known: {}", a.profile, cat.known_profiles()),
        )))
        .into());
    }
    let profile = resolve_profile(&cat, &a.profile)?;
    let inventory = read_inventory(&a.inventory)?;
    let expectation =
        if a.emulated { Expectation::for_emulation(&profile) } else { Expectation::for_hardware(&profile) };
    let report = qualify(&expectation, &inventory);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("inventory {}", a.inventory.display());
        print!("{}", report.human());
    }
    Ok(if report.qualified { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
