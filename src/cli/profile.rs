//! `talforge profile list|show|lint`.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use talforge_builder::lint;
use talforge_builder::plan::profile::resolve_profile;
use talforge_builder::spec::Catalog;

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// List hardware profiles and overlays.
    List(ListArgs),
    /// Show a hardware profile resolved through its `extends` chain.
    Show(ShowArgs),
    /// Load and check every hardware profile and overlay, and apply every overlay's patches to generated
    /// configs for every supported Talos contract.
    Lint(ListArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Profile name.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn catalog(explicit: Option<&Path>) -> anyhow::Result<Catalog> {
    Ok(match explicit {
        Some(d) => Catalog::open(d)?,
        None => Catalog::discover(Path::new("."))?,
    })
}

pub fn run(c: ProfileCommand, explicit: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cat = catalog(explicit)?;
    match c {
        ProfileCommand::List(a) => {
            let profiles: Vec<&str> = cat.profile_names().collect();
            let overlays: Vec<&str> = cat.overlay_names().collect();
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"profiles": profiles, "overlays": overlays}))?
                );
            } else {
                println!("hardware profiles ({}):", profiles.len());
                for p in &profiles {
                    let desc = match cat.load_profile(p) {
                        Some(Ok(l)) => l.spec.description.unwrap_or_default(),
                        Some(Err(_)) => "(invalid: run `talforge profile lint`)".to_owned(),
                        None => String::new(),
                    };
                    println!("  {p:<34} {desc}");
                }
                println!("overlays ({}):", overlays.len());
                for o in &overlays {
                    let desc = match cat.load_overlay(o) {
                        Some(Ok(l)) => l.spec.description.unwrap_or_default(),
                        Some(Err(_)) => "(invalid: run `talforge profile lint`)".to_owned(),
                        None => String::new(),
                    };
                    println!("  {o:<34} {desc}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ProfileCommand::Show(a) => {
            if !cat.has_profile(&a.name) {
                return Err(talforge_builder::Error::Input(Box::new(talforge_builder::Diagnostic::new(
                    cat.root.join("hardware-profiles"),
                    talforge_builder::yaml::Span::UNKNOWN,
                    talforge_builder::yaml::FieldPath::root(),
                    format!("unknown hardware profile {:?}; known: {}", a.name, cat.known_profiles()),
                )))
                .into());
            }
            let p = resolve_profile(&cat, &a.name)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print!("{}", talforge_builder::plan::render::profile(&p));
            }
            Ok(ExitCode::SUCCESS)
        }
        ProfileCommand::Lint(a) => {
            let report = lint::lint_catalog(&cat);
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.human());
            }
            Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
