//! `talforge lab`: boot the cluster file's nodes as QEMU VMs shaped like their hardware profiles, validate
//! them stage by stage, report; and reach a running lab's network.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use talforge_testbed::lab::state::{LabState, default_state_dir};
use talforge_testbed::lab::{Fault, FirmwareSource, LabError, LabOptions, run_lab};
use talforge_testbed::qemu::AccelRequest;

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the nodes' metal images, boot them as VMs on a private network, run every stage (VM started,
    /// firmware reached the bootloader, kernel booted, extensions loaded, config fetched, inventory matches
    /// the profile, powered off), tear everything down and write the report. Exit 0 when every stage
    /// passes, 1 when one fails, 4 when only timeouts failed, 130/143 on SIGINT/SIGTERM.
    Run(RunArgs),
    /// Like `run`, but leave the VMs running after the inventory stage, until Ctrl-C, SIGTERM or `lab down`.
    Up(RunArgs),
    /// Show whether the lab runs, its network namespace and nodes.
    Status(StateArgs),
    /// Print a node's serial console log.
    Console(ConsoleArgs),
    /// Stop a lab started by `lab up` (SIGTERM to it; it tears everything down).
    Down(StateArgs),
    /// Run a command inside the running lab's network namespace, with TALOSCONFIG and KUBECONFIG set.
    Exec(ExecArgs),
    /// An interactive shell ($SHELL, else /bin/sh) inside the running lab's network namespace.
    Shell(StateArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// Cluster file (default: talforge.yaml).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The lab's folder (default: $TALFORGE_LAB_DIR or the cache's lab/<cluster>-<hash>).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// KVM or TCG; `auto` boots a probe guest under KVM and falls back to TCG (default: the cluster file's
    /// lab.accel).
    #[arg(long, value_enum)]
    pub accel: Option<AccelArg>,
    /// Write the report here: junit.xml, report.html, run.json, nodes/<node>/ logs (default: <state>/report).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Only this node of the cluster file (repeatable; default: every node).
    #[arg(long = "node", value_name = "NODE")]
    pub nodes: Vec<String>,
    /// A stage's timeout, NAME=DURATION (kernel-booted=90s); repeatable.
    #[arg(long = "timeout", value_name = "STAGE=DURATION")]
    pub timeouts: Vec<String>,
    /// Inject a fault: refuse-config:NODE, kill:NODE@STAGE (SIGKILL its QEMU after STAGE passed),
    /// panic:NODE@STAGE (an NMI after STAGE passed; the fixture guest panics on it),
    /// drop-disk:NODE:DISK (build the VM without that disk); repeatable.
    #[arg(long = "fault", value_name = "FAULT")]
    pub faults: Vec<String>,
    /// Never use the network to fetch the release.
    #[arg(long)]
    pub offline: bool,
    /// Where OVMF comes from: Debian's `ovmf` package, or rust-osdev's ovmf-prebuilt (downloaded from GitHub
    /// once into the cache; Secure Boot profiles keep Debian's Secure Boot build).
    #[arg(long, value_enum, default_value = "debian")]
    pub firmware: FirmwareArg,
    /// NAT the lab's network to the networks this process reaches (slirp4netns; nothing is added to the
    /// host's network), as the cluster file's lab.nat does.
    #[arg(long)]
    pub nat: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FirmwareArg {
    Debian,
    OvmfPrebuilt,
}

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// Node name.
    pub node: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// The command and its arguments (after `--`).
    #[arg(trailing_var_arg = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

fn state_dir(a: &StateArgs) -> anyhow::Result<PathBuf> {
    if let Some(d) = &a.state {
        return Ok(d.clone());
    }
    let file = super::cluster_file(&a.file);
    let source = talforge_builder::spec::Source::read(&file)?;
    let spec: talforge_builder::spec::cluster::ClusterSpec = source.decode()?;
    Ok(default_state_dir(&file, &spec.name)?)
}

/// The cluster's name (the lab's namespace is named after it): from lab.json's cluster file is not
/// available once it is gone, so from the cluster file, else the state folder's name (`<cluster>-<hash>`).
fn cluster_name(a: &StateArgs) -> anyhow::Result<String> {
    let file = super::cluster_file(&a.file);
    if file.is_file() {
        let spec: talforge_builder::spec::cluster::ClusterSpec =
            talforge_builder::spec::Source::read(&file)?.decode()?;
        return Ok(spec.name);
    }
    let dir = state_dir(a)?;
    let name = dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.rsplit_once('-')).map(|(c, _)| c.to_owned());
    name.ok_or_else(|| {
        anyhow::Error::new(LabError::Input(format!("no cluster file {} to name the lab", file.display())))
    })
}

fn running(a: &StateArgs) -> anyhow::Result<LabState> {
    let dir = state_dir(a)?;
    LabState::read(&dir)?.ok_or_else(|| {
        anyhow::Error::new(LabError::Input(format!(
            "no lab is running in {} (start one with `talforge lab up`)",
            dir.display()
        )))
    })
}

pub fn run(c: LabCommand, catalog: Option<&Path>) -> anyhow::Result<ExitCode> {
    match c {
        LabCommand::Run(a) => run_or_up(&a, catalog, false),
        LabCommand::Up(a) => run_or_up(&a, catalog, true),
        LabCommand::Status(a) => {
            let dir = state_dir(&a)?;
            match LabState::read(&dir)? {
                None => {
                    println!("not running ({})", dir.display());
                    Ok(ExitCode::from(1))
                }
                Some(s) => {
                    match s.netns_holder {
                        None => println!("running: lab {} (pid {}), network namespace {}", s.cluster, s.pid, s.netns),
                        Some(h) => println!(
                            "running: lab {} (pid {}), rootless network namespace {} held by pid {h}",
                            s.cluster, s.pid, s.netns
                        ),
                    }
                    println!("gateway {} (config server http://{}/config)", s.gateway, s.gateway);
                    if let Some(nat) = &s.nat {
                        println!("NAT through {nat}");
                    }
                    for n in &s.nodes {
                        println!("  {:<10} {:<15} uuid {}", n.name, n.address, n.uuid);
                    }
                    println!("TALOSCONFIG={}", s.talosconfig.display());
                    println!("report: {}", s.report_dir.display());
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        LabCommand::Console(a) => {
            let dir = state_dir(&a.state)?;
            let log = match LabState::read(&dir)? {
                Some(s) => s.nodes.iter().find(|n| n.name == a.node).map(|n| n.console_log.clone()),
                None => Some(dir.join("report/nodes").join(&a.node).join("console.log")),
            }
            .ok_or_else(|| anyhow::Error::new(LabError::Input(format!("no node {:?} in the lab", a.node))))?;
            let bytes = std::fs::read(&log)
                .map_err(|e| anyhow::Error::new(LabError::Io { what: "cannot read", path: log.clone(), source: e }))?;
            use std::io::Write as _;
            std::io::stdout().write_all(&bytes)?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Down(a) => {
            let dir = state_dir(&a)?;
            let Some(s) = LabState::read(&dir)? else {
                // Nothing runs: clean what a killed run may have left (its VMs, namespace, files).
                let _lock = talforge_testbed::lab::state::LabLock::acquire(&dir)?;
                let cluster = cluster_name(&a)?;
                let done = talforge_testbed::lab::state::clean_stale(&cluster, &dir)?;
                for l in &done {
                    println!("{l}");
                }
                println!("not running ({})", dir.display());
                return Ok(ExitCode::SUCCESS);
            };
            let pid = rustix::process::Pid::from_raw(i32::try_from(s.pid)?)
                .ok_or_else(|| anyhow::anyhow!("bad pid {}", s.pid))?;
            rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
            let start = Instant::now();
            let mut pause = Duration::from_millis(20);
            while talforge_testbed::lab::state::alive(s.pid) {
                if start.elapsed() > Duration::from_secs(60) {
                    anyhow::bail!("lab {} (pid {}) did not stop within 60 s", s.cluster, s.pid);
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            println!("stopped lab {} (pid {})", s.cluster, s.pid);
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Exec(a) => exec(&a.state, a.command),
        LabCommand::Shell(a) => {
            let shell = std::env::var_os("SHELL").filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into());
            exec(&a, vec![shell])
        }
    }
}

fn exec(a: &StateArgs, command: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let s = running(a)?;
    // Root: the named namespace; rootless: the holder's user and network namespaces.
    let mut cmd = match s.netns_holder {
        None => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", &s.netns]);
            c
        }
        Some(pid) => {
            let mut c = std::process::Command::new("nsenter");
            c.args(talforge_testbed::net::userns::enter_args(pid));
            c
        }
    };
    cmd.args(&command);
    cmd.env("TALOSCONFIG", &s.talosconfig).env("KUBECONFIG", &s.kubeconfig).env("TALFORGE_LAB", &s.cluster);
    let status = cmd.status().map_err(|e| anyhow::anyhow!("cannot run {:?}: {e}", cmd.get_program()))?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(1),
    })
}

fn run_or_up(a: &RunArgs, catalog: Option<&Path>, keep_running: bool) -> anyhow::Result<ExitCode> {
    let file = super::cluster_file(&a.state.file);
    let cat = super::catalog_for(catalog, &file)?;
    let mut faults = Vec::new();
    for f in &a.faults {
        faults.push(Fault::parse(f).map_err(|m| anyhow::Error::new(LabError::Input(m)))?);
    }
    let opts = LabOptions {
        cluster_file: file,
        catalog: cat.root.clone(),
        state_dir: a.state.state.clone(),
        report_dir: a.report.clone(),
        accel: a.accel.map(|x| match x {
            AccelArg::Auto => AccelRequest::Auto,
            AccelArg::Kvm => AccelRequest::Kvm,
            AccelArg::Tcg => AccelRequest::Tcg,
        }),
        timeouts: a.timeouts.clone(),
        nodes: a.nodes.clone(),
        faults,
        offline: a.offline,
        firmware: match a.firmware {
            FirmwareArg::Debian => FirmwareSource::Debian,
            FirmwareArg::OvmfPrebuilt => FirmwareSource::OvmfPrebuilt,
        },
        nat: a.nat,
        keep_running,
        progress: true,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let run = match rt.block_on(run_lab(opts)) {
        Ok(r) => r,
        Err(LabError::Interrupted { signal }) => {
            eprintln!("interrupted by signal {signal} before the lab started; nothing to tear down");
            return Ok(ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)));
        }
        Err(e) => return Err(e.into()),
    };
    let r = &run.record;
    let stages: usize = r.nodes.iter().map(|n| n.stages.len()).sum();
    let passed: usize = r
        .nodes
        .iter()
        .flat_map(|n| &n.stages)
        .filter(|s| s.status == talforge_testbed::report::StageStatus::Passed)
        .count();
    println!(
        "lab {}: {} — {passed}/{stages} stages passed on {} nodes in {:.1} s",
        r.lab,
        r.outcome.as_str(),
        r.nodes.len(),
        r.duration_ms as f64 / 1000.0
    );
    if let Some(m) = &r.message {
        println!("{m}");
    }
    println!("report: {}", run.report_dir.join("report.html").display());
    Ok(ExitCode::from(run.end.exit_code()))
}
