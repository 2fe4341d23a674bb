//! Command-line interface: clap definitions and one function per command.

mod build;
mod config;
mod lab;
mod plan;
mod profile;
mod qualify;
mod secrets;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use talforge_builder::{Error, ErrorClass};

/// Reproducible Talos Linux images and machine configs per hardware profile, with a QEMU validation lab.
#[derive(Debug, Parser)]
#[command(name = "talforge", version, max_term_width = 100)]
pub struct Cli {
    /// Folder holding hardware-profiles/ and overlays/ (default: found by walking up from the cluster file, or
    /// from the current folder for commands without one).
    #[arg(long, global = true, value_name = "DIR")]
    pub catalog: Option<PathBuf>,

    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve the cluster file, its profiles and overlays, and print what would be built per image and node.
    Plan(plan::PlanArgs),
    /// Talos secrets bundles.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Talos machine configs.
    #[command(subcommand)]
    Config(Box<config::ConfigCommand>),
    /// Hardware profiles and overlays.
    #[command(subcommand)]
    Profile(profile::ProfileCommand),
    /// Build the boot images of the cluster's nodes (initramfs with extensions, UKI, metal disk, ISO, PXE,
    /// installer), reproducibly, with a manifest of every artifact's sha256.
    Build(build::BuildArgs),
    /// Rebuild a build folder from its manifest and compare every artifact's sha256.
    Verify(build::VerifyArgs),
    /// Compare a machine's inventory (NICs, disks, firmware, TPM, CPUs, memory) with its hardware profile;
    /// exit 1 on any mismatch.
    Qualify(qualify::QualifyArgs),
    /// The QEMU lab: boot the cluster's nodes as VMs shaped like their hardware profiles, validate them stage
    /// by stage, report (JUnit + HTML); reach a running lab's network.
    #[command(subcommand)]
    Lab(lab::LabCommand),
}

pub fn init_logging(verbose: u8) {
    // -v and -vv raise talforge's own crates; dependencies stay at warn (backhand logs every squashfs read at
    // info), unless -vvv or TALFORGE_LOG asks for them.
    let level = match verbose {
        0 => "warn",
        1 => "warn,talforge=info,talforge_builder=info,talforge_testbed=info",
        2 => "warn,talforge=debug,talforge_builder=debug,talforge_testbed=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TALFORGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plan(a) => plan::run(&a, cli.catalog.as_deref()),
        Command::Secrets(c) => secrets::run(c),
        Command::Config(c) => config::run(*c, cli.catalog.as_deref()),
        Command::Profile(c) => profile::run(c, cli.catalog.as_deref()),
        Command::Build(a) => build::run_build(&a, cli.catalog.as_deref()),
        Command::Verify(a) => build::run_verify(&a, cli.catalog.as_deref()),
        Command::Qualify(a) => qualify::run(&a, cli.catalog.as_deref()),
        Command::Lab(c) => lab::run(c, cli.catalog.as_deref()),
    }
}

/// Exit codes by error class (DESIGN.md): 1 failed check, 2 bad input, 3 missing dependency, 4 timeout,
/// 70 bug.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let class = e.chain().find_map(|c| {
        c.downcast_ref::<Error>()
            .map(Error::class)
            .or_else(|| c.downcast_ref::<talforge_testbed::qualify::QualifyError>().map(|q| q.class()))
            .or_else(|| c.downcast_ref::<talforge_testbed::lab::LabError>().map(|q| q.class()))
    });
    match class {
        Some(c) => u8::try_from(c.exit_code()).unwrap_or(70),
        // Errors the binary makes itself are about what the user typed.
        None => ErrorClass::BadInput.exit_code() as u8,
    }
}

/// The cluster file: `-f` or `talforge.yaml` in the current directory.
pub fn cluster_file(f: &Option<PathBuf>) -> PathBuf {
    f.clone().unwrap_or_else(|| PathBuf::from("talforge.yaml"))
}

/// The catalog: `--catalog`, else found from the cluster file's folder.
pub fn catalog_for(
    explicit: Option<&std::path::Path>,
    near: &std::path::Path,
) -> anyhow::Result<talforge_builder::spec::Catalog> {
    use talforge_builder::spec::Catalog;
    Ok(match explicit {
        Some(dir) => Catalog::open(dir)?,
        None => Catalog::discover(near.parent().unwrap_or(std::path::Path::new(".")))?,
    })
}
