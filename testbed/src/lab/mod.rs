//! `talforge lab`: the cluster file's nodes as QEMU VMs shaped like their hardware profiles, on a private
//! network with a DHCP server and a config server, validated stage by stage and reported.
//!
//! One run:
//! 1. plan the cluster with one extra kernel argument for every image,
//!    `talos.config=http://<gateway>/config?uuid=${uuid}&mac=${mac}` (a metal deployment with a config
//!    server does the same), build the metal images with the builder (cached between runs) and the machine
//!    configs;
//! 2. decide KVM or TCG by booting a probe guest;
//! 3. make the lab's network namespace: a bridge holding the gateway address, one tap per VM NIC; start the
//!    DHCP server (it answers only the nodes' MACs, with the cluster file's addresses) and the config
//!    server on the gateway;
//! 4. per node, in parallel: write the metal image onto the install disk, start swtpm and QEMU under a
//!    supervisor ([`crate::vm`]), and run the stages ([`stages::FIXTURE_STAGES`]);
//! 5. tear everything down — on success, failure, a dead QEMU, or SIGINT/SIGTERM — and write the report
//!    (JUnit XML, HTML with a timeline, run.json, per-node artifacts).
//!
//! Faults can be injected (`--fault`) to see the lab fail the way it should: refuse a node's config, kill
//! a VM after a stage, remove a disk from a VM.

pub mod observe;
pub mod stages;
pub mod state;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use talforge_builder::ErrorClass;
use talforge_builder::build::{BuildOptions, build};
use talforge_builder::plan::profile::{ResolvedProfile, resolve_profile};
use talforge_builder::plan::{ClusterPlan, PlanOverrides, plan_cluster};
use talforge_builder::spec::cluster::{ClusterSpec, OutputKind};
use talforge_builder::spec::profile::FirmwareKind;
use talforge_builder::spec::units::{ByteSize, MacAddr};
use talforge_builder::spec::{Catalog, Source};
use talforge_builder::tool::ToolRunner;
use tokio::sync::{mpsc, watch};

use self::observe::NodeObs;
use self::stages::{Check, FIXTURE_STAGES, Timeouts, Waited, human, wait_for};
use crate::configserver::{ConfigEntry, Fetch};
use crate::net::dhcp::{DhcpConfig, DhcpEvent, DhcpLease, dhcp_socket, serve_dhcp};
use crate::net::{LabNet, NetMode, NetSpec};
use crate::qemu::files::prepare_vm_files;
use crate::qemu::process::{QEMU, SWTPM, find_program};
use crate::qemu::{AccelRequest, BootMedium, FirmwarePaths, NodeInputs, QemuError, VmPlan, probe_accel, resolve_vm};
use crate::qualify::{Expectation, NodeFacts, Status, parse_inventory, qualify};
use crate::report::{Artifact, NodeRecord, Outcome, RunRecord, StageRecord, StageStatus, write_report};
use crate::vm::{LaunchSpec, Vm, VmSignal, VmState};

/// The bridge inside the lab's namespace.
pub const BRIDGE: &str = "tfbr0";

/// The config server's port on the gateway.
pub const CONFIG_PORT: u16 = 80;

/// How long a VM gets to quit over QMP at teardown before its process group is killed.
const QUIT_GRACE: Duration = Duration::from_secs(5);

/// A fault to inject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The config server answers this node with 403.
    RefuseConfig { node: String },
    /// SIGKILL this node's QEMU once it has passed `stage`.
    Kill { node: String, after: String },
    /// Build this node's VM without the profile disk `disk` (its id: `osd`, `osd[1]`).
    DropDisk { node: String, disk: String },
    /// Inject an NMI into this node once it has passed `stage` (QMP `inject-nmi`): a guest that panics on an
    /// unknown NMI (the fixture guest; a Talos node with the sysctl `kernel.unknown_nmi_panic=1`) panics,
    /// and pvpanic reports it as GUEST_PANICKED.
    Panic { node: String, after: String },
}

impl Fault {
    /// `refuse-config:NODE`, `kill:NODE@STAGE`, `panic:NODE@STAGE`, `drop-disk:NODE:DISK`.
    pub fn parse(s: &str) -> Result<Fault, String> {
        let bad = || {
            format!(
                "--fault {s:?}: expected refuse-config:NODE, kill:NODE@STAGE, panic:NODE@STAGE or \
                 drop-disk:NODE:DISK"
            )
        };
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "refuse-config" if !rest.is_empty() => Ok(Fault::RefuseConfig { node: rest.into() }),
            "kill" | "panic" => {
                let (node, after) = rest.split_once('@').ok_or_else(bad)?;
                if !FIXTURE_STAGES.iter().any(|d| d.name == after) {
                    return Err(format!("--fault {s:?}: no stage {after:?}"));
                }
                let (node, after) = (node.into(), after.into());
                Ok(if kind == "kill" { Fault::Kill { node, after } } else { Fault::Panic { node, after } })
            }
            "drop-disk" => {
                let (node, disk) = rest.split_once(':').ok_or_else(bad)?;
                Ok(Fault::DropDisk { node: node.into(), disk: disk.into() })
            }
            _ => Err(bad()),
        }
    }

    fn node(&self) -> &str {
        match self {
            Fault::RefuseConfig { node }
            | Fault::Kill { node, .. }
            | Fault::Panic { node, .. }
            | Fault::DropDisk { node, .. } => node,
        }
    }
}

/// Where the lab's UEFI firmware comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FirmwareSource {
    /// Debian's `ovmf` package.
    #[default]
    Debian,
    /// rust-osdev's `ovmf-prebuilt` (downloaded once into `<cache>/ovmf-prebuilt`; needs network the first
    /// time).
    OvmfPrebuilt,
}

/// What `lab run` / `lab up` is asked to do.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub cluster_file: PathBuf,
    /// Where hardware-profiles/ and overlays/ are.
    pub catalog: PathBuf,
    /// The lab's folder (images, configs, VM files, lab.json); default [`state::default_state_dir`].
    pub state_dir: Option<PathBuf>,
    /// Where the report goes; default `<state>/report`.
    pub report_dir: Option<PathBuf>,
    /// `--accel`, else the cluster file's `lab.accel`.
    pub accel: Option<AccelRequest>,
    pub timeouts: Vec<String>,
    /// Only these nodes of the cluster file (all when empty).
    pub nodes: Vec<String>,
    pub faults: Vec<Fault>,
    /// Never use the network to get the release (the builder's `--offline`).
    pub offline: bool,
    /// Where OVMF comes from.
    pub firmware: FirmwareSource,
    /// `--nat`: NAT even when the cluster file's `lab.nat` is off.
    pub nat: bool,
    /// `lab up`: stop before powering off and keep the VMs until SIGINT/SIGTERM (`lab down`).
    pub keep_running: bool,
    /// Progress lines on stderr.
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Builder(#[from] talforge_builder::Error),
    #[error(transparent)]
    Qemu(#[from] QemuError),
    #[error("lab network: {0}")]
    Net(String),
    #[error(transparent)]
    Network(#[from] crate::net::NetError),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Busy(String),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Internal(String),
    #[error("interrupted by signal {signal} before the lab started")]
    Interrupted { signal: i32 },
}

impl LabError {
    pub fn class(&self) -> ErrorClass {
        match self {
            LabError::Builder(e) => e.class(),
            LabError::Qemu(e) => e.class(),
            LabError::Network(e) => e.class(),
            LabError::Net(_) | LabError::Io { .. } | LabError::Busy(_) => ErrorClass::Io,
            LabError::Input(_) => ErrorClass::BadInput,
            LabError::Internal(_) => ErrorClass::Internal,
            LabError::Interrupted { .. } => ErrorClass::CheckFailed,
        }
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LabError + 'a {
    move |source| LabError::Io { what, path: path.to_owned(), source }
}

/// How a run ended, for the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    Passed,
    /// A stage failed (exit 1).
    Failed,
    /// Only timeouts failed (exit 4).
    TimedOut,
    /// SIGINT (exit 130) or SIGTERM (exit 143).
    Interrupted {
        signal: i32,
    },
}

impl RunEnd {
    pub fn exit_code(self) -> u8 {
        match self {
            RunEnd::Passed => 0,
            RunEnd::Failed => 1,
            RunEnd::TimedOut => 4,
            RunEnd::Interrupted { signal } => u8::try_from(128 + signal).unwrap_or(1),
        }
    }
}

/// A finished run.
#[derive(Debug)]
pub struct LabRun {
    pub record: RunRecord,
    pub end: RunEnd,
    pub report_dir: PathBuf,
    pub state_dir: PathBuf,
}

/// Everything about one node the lab needs.
#[derive(Clone, Debug)]
struct NodeSetup {
    name: String,
    profile: ResolvedProfile,
    vm: VmPlan,
    /// The metal image written onto the install disk; `None` for kernel boots (BIOS nodes).
    disk_image: Option<PathBuf>,
    address: Ipv4Addr,
    config: ConfigEntry,
    extensions: usize,
    kill_after: Option<String>,
    panic_after: Option<String>,
}

/// Shared by the node tasks.
#[derive(Debug)]
struct Shared {
    start: Instant,
    launch: LaunchSpec,
    timeouts: Timeouts,
    keep_running: bool,
    progress: bool,
    report_dir: PathBuf,
}

impl Shared {
    fn ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn say(&self, node: &str, what: fmt::Arguments<'_>) {
        if self.progress {
            eprintln!("[{:>7.1} s] {node:<8} {what}", self.start.elapsed().as_secs_f64());
        }
    }
}

/// The lab's kernel argument pointing every node at the config server.
pub fn config_kernel_arg(gateway: Ipv4Addr) -> String {
    let host = if CONFIG_PORT == 80 { gateway.to_string() } else { format!("{gateway}:{CONFIG_PORT}") };
    format!("talos.config=http://{host}/config?uuid=${{uuid}}&mac=${{mac}}")
}

/// The gateway and prefix of the lab network: the cluster file's `network.gateway` and the prefix of the
/// nodes' addresses (10.5.0.1/24, `talosctl cluster create`'s default, when it gives none).
fn lab_subnet(spec: &ClusterSpec) -> Result<(Ipv4Addr, u8), LabError> {
    let gateway = match spec.network.gateway {
        Some(IpAddr::V4(g)) => g,
        Some(IpAddr::V6(g)) => {
            return Err(LabError::Input(format!("network.gateway {g}: the lab network is IPv4 only")));
        }
        None => Ipv4Addr::new(10, 5, 0, 1),
    };
    let prefix = spec.nodes.iter().find_map(|n| n.address.map(|a| a.prefix)).unwrap_or(24);
    if !(8..=30).contains(&prefix) {
        return Err(LabError::Input(format!("node address prefix /{prefix}: the lab needs /8 to /30")));
    }
    Ok((gateway, prefix))
}

/// Node addresses: the cluster file's, else the next free host address of the subnet from .10 up.
fn node_addresses(spec: &ClusterSpec, gateway: Ipv4Addr, prefix: u8) -> Result<Vec<Ipv4Addr>, LabError> {
    let mask = u32::MAX << (32 - u32::from(prefix));
    let net = u32::from(gateway) & mask;
    let mut taken: Vec<Ipv4Addr> = vec![gateway];
    let mut out = Vec::new();
    for n in &spec.nodes {
        if let Some(a) = n.address {
            let IpAddr::V4(v4) = a.addr else {
                return Err(LabError::Input(format!(
                    "node {}: address {}: the lab network is IPv4 only",
                    n.name, a.addr
                )));
            };
            if u32::from(v4) & mask != net {
                return Err(LabError::Input(format!(
                    "node {}: address {v4}/{} is not in the lab network {}/{prefix} of gateway {gateway}",
                    n.name,
                    a.prefix,
                    Ipv4Addr::from(net)
                )));
            }
            if taken.contains(&v4) {
                return Err(LabError::Input(format!("node {}: address {v4} is used twice", n.name)));
            }
            taken.push(v4);
        }
    }
    let mut next = net + 10;
    for n in &spec.nodes {
        match n.address.map(|a| a.addr) {
            Some(IpAddr::V4(v4)) => out.push(v4),
            _ => {
                while taken.contains(&Ipv4Addr::from(next)) {
                    next += 1;
                }
                if next & !mask == !mask {
                    return Err(LabError::Input("the lab network has no free address left".into()));
                }
                taken.push(Ipv4Addr::from(next));
                out.push(Ipv4Addr::from(next));
            }
        }
    }
    Ok(out)
}

/// Writes a zstd-compressed raw image onto `disk` (a sparse file of `size` bytes): runs of zeros are
/// skipped, so the disk stays sparse.
/// A report folder must be new, empty, or hold an earlier report (its per-node and lab folders are replaced):
/// `--report .` must not wipe a user's files.
fn check_report_dir(dir: &Path) -> Result<(), LabError> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(LabError::Io { what: "cannot read the report folder", path: dir.to_owned(), source });
        }
    };
    if entries.next().is_none() || dir.join(crate::report::JSON_FILE).is_file() {
        return Ok(());
    }
    Err(LabError::Input(format!(
        "--report {}: the folder is not empty and holds no earlier lab report ({}); give a new or empty folder",
        dir.display(),
        crate::report::JSON_FILE
    )))
}

/// The unit [`write_image`] skips when all zero.
const BLOCK: usize = 64 * 1024;

pub fn write_image(zst: &Path, disk: &Path, size: u64) -> Result<(), LabError> {
    let src = std::fs::File::open(zst).map_err(io("cannot open image", zst))?;
    let mut dec = zstd::stream::read::Decoder::new(src).map_err(io("cannot read image", zst))?;
    let mut out = std::fs::File::create(disk).map_err(io("cannot create disk", disk))?;
    let mut buf = vec![0u8; 1 << 20];
    let zeros = vec![0u8; BLOCK];
    let mut pos: u64 = 0;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = dec.read(&mut buf[filled..]).map_err(io("cannot decompress image", zst))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        for block in buf[..filled].chunks(BLOCK) {
            if block != &zeros[..block.len()] {
                out.seek(SeekFrom::Start(pos)).map_err(io("cannot write disk", disk))?;
                out.write_all(block).map_err(io("cannot write disk", disk))?;
            }
            pos += block.len() as u64;
        }
    }
    if pos > size {
        return Err(LabError::Input(format!(
            "image {} ({pos} bytes) does not fit the install disk ({size} bytes)",
            zst.display()
        )));
    }
    out.set_len(size).map_err(io("cannot size disk", disk))?;
    Ok(())
}

/// Plans, builds, sets up and runs the lab; tears it down; writes the report.
pub async fn run_lab(opts: LabOptions) -> Result<LabRun, LabError> {
    let signals = Signals::install()?;
    let result = run_lab_inner(opts, &signals).await;
    signals.watcher.abort();
    result
}

/// SIGINT and SIGTERM, from the start of a run: they set the cancel channel the stages watch.
#[derive(Clone, Debug)]
struct Signals {
    /// Keeps the channel open after the watcher has fired (stages then see the reason, not a closed channel).
    _open: watch::Sender<Option<String>>,
    cancel_rx: watch::Receiver<Option<String>>,
    seen: Arc<std::sync::atomic::AtomicI32>,
    watcher: Arc<tokio::task::JoinHandle<()>>,
}

impl Signals {
    fn install() -> Result<Signals, LabError> {
        use tokio::signal::unix::{SignalKind, signal};
        let (cancel_tx, cancel_rx) = watch::channel::<Option<String>>(None);
        let seen = Arc::new(std::sync::atomic::AtomicI32::new(0));
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| LabError::Internal(format!("SIGTERM handler: {e}")))?;
        let mut int =
            signal(SignalKind::interrupt()).map_err(|e| LabError::Internal(format!("SIGINT handler: {e}")))?;
        let watcher = {
            let cancel_tx = cancel_tx.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let (n, name) = tokio::select! {
                    _ = term.recv() => (15, "SIGTERM"),
                    _ = int.recv() => (2, "SIGINT"),
                };
                seen.store(n, std::sync::atomic::Ordering::SeqCst);
                let _ = cancel_tx.send(Some(format!("interrupted by {name}")));
            })
        };
        Ok(Signals { _open: cancel_tx, cancel_rx, seen, watcher: Arc::new(watcher) })
    }

    /// Stops here if a signal came (before anything that needs tearing down exists).
    fn check(&self) -> Result<(), LabError> {
        match self.seen.load(std::sync::atomic::Ordering::SeqCst) {
            0 => Ok(()),
            signal => Err(LabError::Interrupted { signal }),
        }
    }
}

async fn run_lab_inner(opts: LabOptions, signals: &Signals) -> Result<LabRun, LabError> {
    let start = Instant::now();
    let started_at = state::rfc3339_now();
    let catalog = Catalog::open(&opts.catalog)?;
    let spec: ClusterSpec = Source::read(&opts.cluster_file)?.decode()?;
    let (gateway, prefix) = lab_subnet(&spec)?;
    let addresses = node_addresses(&spec, gateway, prefix)?;
    let timeouts = Timeouts::parse(&opts.timeouts, &FIXTURE_STAGES).map_err(LabError::Input)?;
    for f in &opts.faults {
        if !spec.nodes.iter().any(|n| n.name == f.node()) {
            return Err(LabError::Input(format!("--fault: no node {:?} in {}", f.node(), opts.cluster_file.display())));
        }
        if !opts.nodes.is_empty() && !opts.nodes.iter().any(|n| n == f.node()) {
            return Err(LabError::Input(format!(
                "--fault: node {:?} is not among --node {}",
                f.node(),
                opts.nodes.join(", ")
            )));
        }
    }
    // Root, or rootless when the host allows a user namespace; known before anything is built.
    let net_mode = NetMode::for_this_user()?;
    let nat = opts.nat || spec.lab.nat;
    if nat {
        crate::net::nat::check_tools()?;
    }
    let qemu = find_program(QEMU)?;
    let overrides = PlanOverrides {
        kernel_args: vec![config_kernel_arg(gateway)],
        nodes: opts.nodes.clone(),
        ..PlanOverrides::default()
    };
    let plan = plan_cluster(&opts.cluster_file, &catalog, &overrides)?;
    // A cluster file whose configs cannot be rendered (a broken patch) fails before anything is built.
    talforge_builder::machine_config::render::check_configs(&plan)?;

    let state_dir = match &opts.state_dir {
        Some(d) => d.clone(),
        None => state::default_state_dir(&opts.cluster_file, &plan.cluster)?,
    };
    std::fs::create_dir_all(&state_dir).map_err(io("cannot create", &state_dir))?;
    let state_dir = std::fs::canonicalize(&state_dir).map_err(io("cannot resolve", &state_dir))?;
    let lock = state::LabLock::acquire(&state_dir)?;
    let report_dir = opts.report_dir.clone().unwrap_or_else(|| state_dir.join("report"));
    // A lab killed with SIGKILL leaves its VMs (their own process groups), namespace and files behind.
    for line in state::clean_stale(&plan.cluster, &state_dir)? {
        if opts.progress {
            eprintln!("{line}");
        }
    }
    let netns = state::netns_name(&plan.cluster, &state_dir);
    check_report_dir(&report_dir)?;
    let run_dir = state_dir.join("run");

    // Images and configs.
    let say = |m: String| {
        if opts.progress {
            eprintln!("[{:>7.1} s] {m}", start.elapsed().as_secs_f64());
        }
    };
    // UEFI nodes boot their metal image from the install disk. BIOS nodes boot the PXE kernel and initramfs
    // (QEMU loads them, as a PXE server would): the builder makes sd-boot disk images only.
    let mut profiles: BTreeMap<String, bool> = BTreeMap::new();
    for n in &plan.nodes {
        let bios = resolve_profile(&catalog, &n.profile)?.firmware.kind == FirmwareKind::Bios;
        profiles.insert(n.profile.clone(), bios);
    }
    let images_dir = state_dir.join("images");
    let plan = Arc::new(plan);
    let mut built = 0;
    for (kind, bios) in [(OutputKind::Metal, false), (OutputKind::Pxe, true)] {
        let these: Vec<String> = profiles.iter().filter(|(_, b)| **b == bios).map(|(p, _)| p.clone()).collect();
        if these.is_empty() {
            continue;
        }
        say(format!("building the {} images of {} ({})", kind.as_str(), plan.cluster, these.join(", ")));
        let build_opts = BuildOptions {
            out: images_dir.clone(),
            release: None,
            kinds: Some(vec![kind]),
            profiles: these,
            epoch: None,
            cache: talforge_builder::release::cache::Cache::default_root().map_err(talforge_builder::Error::from)?,
            offline: opts.offline,
            update_lock: false,
            build_cache: None,
        };
        let plan = plan.clone();
        built += tokio::task::spawn_blocking(move || build(&plan, &build_opts, ToolRunner::new).map(|r| r.from_cache))
            .await
            .map_err(|e| LabError::Internal(format!("build task: {e}")))??;
    }
    say(format!("images ready ({built} pieces from the cache)"));
    signals.check()?;
    let (bundle, _) = talforge_builder::secrets::load_or_create(&plan.secrets, &plan.quirks)?;
    let configs_dir = state_dir.join("configs");
    talforge_builder::machine_config::write_cluster_configs(
        &plan,
        &bundle,
        &configs_dir,
        talforge_builder::output::Overwrite::Replace,
    )?;

    // Acceleration.
    let accel_req = opts.accel.unwrap_or_else(|| spec.lab.accel.into());
    let decision = {
        let qemu = qemu.clone();
        let scratch = state_dir.clone();
        tokio::task::spawn_blocking(move || probe_accel(accel_req, &qemu, &scratch))
            .await
            .map_err(|e| LabError::Internal(format!("probe task: {e}")))??
    };
    say(format!("accelerator {decision}"));
    signals.check()?;

    // Firmware (UEFI nodes).
    let any_uefi = plan.nodes.iter().any(|n| {
        resolve_profile(&catalog, &n.profile)
            .map(|p| p.firmware.kind == talforge_builder::spec::profile::FirmwareKind::Uefi)
            .unwrap_or(false)
    });
    let firmware = match opts.firmware {
        FirmwareSource::Debian => FirmwarePaths::debian(),
        FirmwareSource::OvmfPrebuilt => {
            let dir = talforge_builder::release::cache::Cache::default_root()
                .map_err(talforge_builder::Error::from)?
                .join("ovmf-prebuilt");
            tokio::task::spawn_blocking(move || FirmwarePaths::ovmf_prebuilt(&dir))
                .await
                .map_err(|e| LabError::Internal(format!("firmware task: {e}")))??
        }
    };
    if any_uefi {
        firmware.check()?;
        say(format!("OVMF {}", firmware.code.display()));
    }

    // Nodes.
    let mut setups = Vec::new();
    let needs_tpm =
        plan.nodes.iter().any(|n| resolve_profile(&catalog, &n.profile).map(|p| p.firmware.tpm).unwrap_or(false));
    let swtpm = if needs_tpm { Some(find_program(SWTPM)?) } else { None };
    for (i, n) in spec.nodes.iter().enumerate() {
        let Some(np) = plan.nodes.iter().find(|p| p.name == n.name) else { continue };
        let profile = resolve_profile(&catalog, &np.profile)?;
        let image = plan
            .images
            .iter()
            .find(|im| im.id == np.image)
            .ok_or_else(|| LabError::Internal(format!("node {}: image {} is not in the plan", n.name, np.image)))?;
        let image_dir = images_dir.join("images").join(&image.id);
        let (boot, disk_image) = if profile.firmware.kind == FirmwareKind::Bios {
            let arch = &image.arch;
            let kernel = image_dir.join(format!("kernel-{arch}"));
            let initrd = image_dir.join(format!("initramfs-{arch}.xz"));
            (BootMedium::Kernel { kernel, initrd, cmdline: image.cmdline.clone() }, None)
        } else {
            let file = if image.secure_boot { "metal-amd64-secureboot.raw.zst" } else { "metal-amd64.raw.zst" };
            (BootMedium::InstallDisk, Some(image_dir.join(file)))
        };
        let mut inputs = NodeInputs::new(&plan.cluster, &n.name, &run_dir.join(&n.name), boot);
        if let Some(mac) = n.mac {
            inputs.macs = NodeFacts::primary_mac(&profile, mac).macs;
        }
        inputs.cpus = spec.lab.cpus;
        inputs.firmware = firmware.clone();
        inputs.memory = spec.lab.memory;
        let mut vm = resolve_vm(&profile, &inputs)?;
        for f in &opts.faults {
            if let Fault::DropDisk { node, disk } = f
                && node == &n.name
            {
                let before = vm.disks.len();
                let install = vm.install_disk().map(|d| d.id.clone());
                if install.as_deref() == Some(disk.as_str()) {
                    return Err(LabError::Input(format!("--fault drop-disk: {disk} is {node}'s install disk")));
                }
                vm.disks.retain(|d| &d.id != disk && &d.name != disk);
                if vm.disks.len() == before {
                    let ids: Vec<&str> = vm.disks.iter().map(|d| d.id.as_str()).collect();
                    return Err(LabError::Input(format!(
                        "--fault drop-disk: {node} has no disk {disk} (disks: {})",
                        ids.join(", ")
                    )));
                }
            }
        }
        let body = std::fs::read(configs_dir.join("nodes").join(format!("{}.yaml", n.name)))
            .map_err(io("cannot read the machine config", &configs_dir))?;
        let config = ConfigEntry {
            node: n.name.clone(),
            uuid: vm.smbios.uuid.to_string(),
            macs: vm.nics.iter().map(|m| m.mac.to_string()).collect(),
            body: Arc::new(body),
            refuse: opts.faults.iter().any(|f| matches!(f, Fault::RefuseConfig { node } if node == &n.name)),
        };
        let kill_after = opts.faults.iter().find_map(|f| match f {
            Fault::Kill { node, after } if node == &n.name => Some(after.clone()),
            _ => None,
        });
        let panic_after = opts.faults.iter().find_map(|f| match f {
            Fault::Panic { node, after } if node == &n.name => Some(after.clone()),
            _ => None,
        });
        setups.push(NodeSetup {
            name: n.name.clone(),
            extensions: image.extensions.len(),
            profile,
            vm,
            disk_image,
            address: addresses[i],
            config,
            kill_after,
            panic_after,
        });
    }

    // Network (from here on, everything made is torn down).
    std::fs::create_dir_all(&run_dir).map_err(io("cannot create", &run_dir))?;
    let taps: Vec<String> = setups.iter().flat_map(|s| s.vm.nics.iter().map(|n| n.tap.clone())).collect();
    let net_spec =
        NetSpec { netns: netns.clone(), run_dir: run_dir.clone(), bridge: BRIDGE.into(), gateway, prefix, taps, nat };
    let net = LabNet::create(&net_spec, net_mode)?;
    say(format!(
        "network namespace {netns} ({}{}): bridge {BRIDGE} {gateway}/{prefix}, {} taps",
        net_mode.describe(),
        net.holder_pid().map(|p| format!(", held by pid {p}")).unwrap_or_default(),
        net_spec.taps.len()
    ));
    if let Some(nat) = net.nat_summary() {
        say(format!("NAT through {nat}"));
    }

    let mut lab = Running {
        net: Some(net),
        vms: BTreeMap::new(),
        servers: Vec::new(),
        run_dir: run_dir.clone(),
        state_dir: state_dir.clone(),
        setups: setups.clone(),
    };
    let result = lab
        .run(RunInputs {
            signals: signals.clone(),
            opts: &opts,
            plan: &plan,
            setups,
            gateway,
            prefix,
            qemu,
            swtpm,
            decision: decision.to_string(),
            accel: decision.accel,
            timeouts,
            start,
            started_at,
            report_dir: report_dir.clone(),
            configs_dir,
        })
        .await;
    let mut teardown = lab.teardown().await;
    // The VMs are gone: their logs are complete. Keep them with the report, then remove the VMs' files.
    let mut result = result;
    if let Ok((record, _)) = &mut result {
        for n in record.nodes.iter_mut() {
            if let Some(s) = lab.setups.iter().find(|s| s.name == n.name) {
                let node_dir = report_dir.join("nodes").join(&n.name);
                let artifacts = collect_artifacts(s, &node_dir, &report_dir);
                attach(&mut n.stages, &artifacts);
            }
        }
    }
    teardown.extend(lab.remove_files());
    drop(lock);
    let (mut record, end) = result?;
    record.teardown = teardown;
    record.duration_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let files = write_report(&report_dir, &record).map_err(io("cannot write the report in", &report_dir))?;
    if opts.progress {
        eprintln!("report: {} (JUnit: {})", files.html.display(), files.junit.display());
    }
    Ok(LabRun { record, end, report_dir, state_dir })
}

struct RunInputs<'a> {
    signals: Signals,
    opts: &'a LabOptions,
    plan: &'a ClusterPlan,
    setups: Vec<NodeSetup>,
    gateway: Ipv4Addr,
    prefix: u8,
    qemu: PathBuf,
    swtpm: Option<PathBuf>,
    decision: String,
    accel: crate::qemu::Accel,
    timeouts: Timeouts,
    start: Instant,
    started_at: String,
    report_dir: PathBuf,
    configs_dir: PathBuf,
}

/// What is running, for teardown.
struct Running {
    net: Option<LabNet>,
    vms: BTreeMap<String, Vm>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    run_dir: PathBuf,
    state_dir: PathBuf,
    setups: Vec<NodeSetup>,
}

impl Running {
    async fn run(&mut self, r: RunInputs<'_>) -> Result<(RunRecord, RunEnd), LabError> {
        let net = self.net.as_ref().ok_or_else(|| LabError::Internal("no network".into()))?;
        let Signals { cancel_rx, seen: signal_seen, .. } = r.signals.clone();

        // Observations per node.
        let mut obs_tx: BTreeMap<String, watch::Sender<NodeObs>> = BTreeMap::new();
        let mut obs_rx: BTreeMap<String, watch::Receiver<NodeObs>> = BTreeMap::new();
        for s in &r.setups {
            let (tx, rx) = watch::channel(NodeObs::default());
            obs_tx.insert(s.name.clone(), tx);
            obs_rx.insert(s.name.clone(), rx);
        }
        let obs_tx = Arc::new(obs_tx);

        // DHCP.
        let leases: Vec<DhcpLease> = r
            .setups
            .iter()
            .filter_map(|s| {
                s.vm.nics.first().map(|n| DhcpLease { mac: n.mac, addr: s.address, hostname: Some(s.name.clone()) })
            })
            .collect();
        let by_mac: BTreeMap<MacAddr, String> =
            r.setups.iter().flat_map(|s| s.vm.nics.iter().map(|n| (n.mac, s.name.clone()))).collect();
        let dhcp_cfg = DhcpConfig {
            server: r.gateway,
            prefix: r.prefix,
            router: Some(r.gateway),
            // With NAT, slirp4netns's DNS forwarder (reached through the NAT); else the gateway.
            dns: vec![net.nat().map_or(r.gateway, |(a, _)| a.dns)],
            lease_secs: 3600,
            leases,
        };
        let socket = dhcp_socket(net).map_err(|e| LabError::Net(format!("DHCP socket: {e}")))?;
        let socket = tokio::net::UdpSocket::from_std(socket).map_err(|e| LabError::Net(format!("DHCP socket: {e}")))?;
        let (dhcp_tx, mut dhcp_rx) = mpsc::unbounded_channel::<DhcpEvent>();
        self.servers.push(tokio::spawn(async move {
            let _ = serve_dhcp(socket, dhcp_cfg, dhcp_tx).await;
        }));
        let dhcp_log = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        {
            let obs_tx = obs_tx.clone();
            let by_mac = by_mac.clone();
            let log = dhcp_log.clone();
            let start = r.start;
            self.servers.push(tokio::spawn(async move {
                while let Some(ev) = dhcp_rx.recv().await {
                    let mac = match &ev {
                        DhcpEvent::Offered { mac, .. }
                        | DhcpEvent::Acked { mac, .. }
                        | DhcpEvent::Nak { mac, .. }
                        | DhcpEvent::Ignored { mac, .. } => *mac,
                    };
                    let line = format!("{:>8.3} s {ev:?}", start.elapsed().as_secs_f64());
                    if let Ok(mut l) = log.lock() {
                        l.push(line.clone());
                    }
                    if let Some(tx) = by_mac.get(&mac).and_then(|n| obs_tx.get(n)) {
                        tx.send_modify(|o| o.dhcp.push(line));
                    }
                }
            }));
        }

        // The config server.
        let listener = net
            .bind_tcp(SocketAddr::new(IpAddr::V4(r.gateway), CONFIG_PORT))
            .map_err(|e| LabError::Net(format!("config server on {}:{CONFIG_PORT}: {e}", r.gateway)))?;
        let listener =
            tokio::net::TcpListener::from_std(listener).map_err(|e| LabError::Net(format!("config server: {e}")))?;
        let entries: Vec<ConfigEntry> = r.setups.iter().map(|s| s.config.clone()).collect();
        let (fetch_tx, mut fetch_rx) = mpsc::unbounded_channel::<Fetch>();
        let start = r.start;
        self.servers.push(tokio::spawn(async move {
            let _ = crate::configserver::serve(listener, entries, fetch_tx, start).await;
        }));
        let fetch_log = Arc::new(std::sync::Mutex::new(Vec::<Fetch>::new()));
        {
            let obs_tx = obs_tx.clone();
            let log = fetch_log.clone();
            let by_ip: BTreeMap<String, String> =
                r.setups.iter().map(|s| (s.address.to_string(), s.name.clone())).collect();
            self.servers.push(tokio::spawn(async move {
                while let Some(f) = fetch_rx.recv().await {
                    if let Ok(mut l) = log.lock() {
                        l.push(f.clone());
                    }
                    let ip = f.client.rsplit_once(':').map_or(f.client.as_str(), |(ip, _)| ip).to_owned();
                    let node = f.node.clone().or_else(|| by_ip.get(&ip).cloned());
                    if let Some(tx) = node.and_then(|n| obs_tx.get(&n)) {
                        tx.send_modify(|o| o.fetches.push(f));
                    }
                }
            }));
        }

        state::LabState {
            pid: std::process::id(),
            cluster: r.plan.cluster.clone(),
            cluster_file: r.opts.cluster_file.clone(),
            netns: net.name().to_owned(),
            netns_holder: net.holder_pid(),
            nat: net.nat_summary(),
            gateway: r.gateway.to_string(),
            talosconfig: r.configs_dir.join("talosconfig"),
            kubeconfig: self.state_dir.join("kubeconfig"),
            report_dir: r.report_dir.clone(),
            nodes: r
                .setups
                .iter()
                .map(|s| state::NodeState {
                    name: s.name.clone(),
                    address: s.address.to_string(),
                    console_log: s.vm.console.log.clone(),
                    uuid: s.vm.smbios.uuid.to_string(),
                })
                .collect(),
        }
        .write(&self.state_dir)?;

        let netns_wrap = Some(net.wrap());
        let shared = Arc::new(Shared {
            start: r.start,
            launch: LaunchSpec {
                qemu: r.qemu.clone(),
                swtpm: r.swtpm.clone(),
                accel: r.accel,
                wrap: netns_wrap,
                skip_boot_menu: true,
            },
            timeouts: r.timeouts.clone(),
            keep_running: r.opts.keep_running,
            progress: r.opts.progress,
            report_dir: r.report_dir.clone(),
        });
        std::fs::create_dir_all(&r.report_dir).map_err(io("cannot create", &r.report_dir))?;
        // An earlier run's per-node and lab files go (the report files themselves are replaced).
        for sub in ["nodes", "lab"] {
            let d = r.report_dir.join(sub);
            if d.exists() {
                std::fs::remove_dir_all(&d).map_err(io("cannot clear", &d))?;
            }
        }

        let mut tasks = tokio::task::JoinSet::new();
        for s in r.setups.clone() {
            let shared = shared.clone();
            let obs = obs_rx.remove(&s.name).ok_or_else(|| LabError::Internal("observer".into()))?;
            let tx = obs_tx.get(&s.name).cloned().ok_or_else(|| LabError::Internal("observer".into()))?;
            let cancel = cancel_rx.clone();
            tasks.spawn(async move { run_node(s, shared, obs, tx, cancel).await });
        }
        let mut records = BTreeMap::new();
        while let Some(done) = tasks.join_next().await {
            let (rec, vm) = done.map_err(|e| LabError::Internal(format!("node task: {e}")))?;
            if let Some(vm) = vm {
                self.vms.insert(rec.name.clone(), vm);
            }
            records.insert(rec.name.clone(), rec);
        }
        // lab up: stay until asked to stop.
        if r.opts.keep_running && cancel_rx.borrow().is_none() {
            eprintln!(
                "lab {} is up; `talforge lab exec -f {} -- CMD` runs a command in its network; Ctrl-C or `talforge lab down` stops it",
                r.plan.cluster,
                r.opts.cluster_file.display()
            );
            let mut c = cancel_rx.clone();
            while c.borrow().is_none() {
                if c.changed().await.is_err() {
                    break;
                }
            }
        }

        // Lab-wide artifacts.
        let lab_dir = r.report_dir.join("lab");
        std::fs::create_dir_all(&lab_dir).map_err(io("cannot create", &lab_dir))?;
        let fetches = fetch_log.lock().map(|l| l.clone()).unwrap_or_default();
        let text = serde_json::to_string_pretty(&fetches).unwrap_or_default();
        std::fs::write(lab_dir.join("config-server.json"), text).map_err(io("cannot write", &lab_dir))?;
        let dhcp = dhcp_log.lock().map(|l| l.join("\n")).unwrap_or_default();
        std::fs::write(lab_dir.join("dhcp.log"), dhcp + "\n").map_err(io("cannot write", &lab_dir))?;
        std::fs::write(lab_dir.join("accel.txt"), format!("{}\n", r.decision)).map_err(io("cannot write", &lab_dir))?;

        let nodes: Vec<NodeRecord> = r.setups.iter().filter_map(|s| records.remove(&s.name)).collect();
        let signal = signal_seen.load(std::sync::atomic::Ordering::SeqCst);
        let failed: Vec<&StageRecord> =
            nodes.iter().flat_map(|n| n.stages.iter()).filter(|s| s.status == StageStatus::Failed).collect();
        let (outcome, end, message) = if signal != 0 && r.opts.keep_running && failed.is_empty() && !nodes.is_empty() {
            // `lab up` ends this way: every stage had passed.
            let why = cancel_rx.borrow().clone().unwrap_or_default();
            (Outcome::Passed, RunEnd::Passed, Some(format!("lab up: every stage passed; stopped ({why})")))
        } else if signal != 0 {
            let why = cancel_rx.borrow().clone().unwrap_or_default();
            (Outcome::Interrupted, RunEnd::Interrupted { signal }, Some(why))
        } else if failed.is_empty() {
            (Outcome::Passed, RunEnd::Passed, None)
        } else {
            let only_timeouts = failed.iter().all(|s| s.message.as_deref().is_some_and(|m| m.starts_with("timed out")));
            let names: Vec<String> = nodes
                .iter()
                .flat_map(|n| {
                    n.stages
                        .iter()
                        .filter(|s| s.status == StageStatus::Failed)
                        .map(move |s| format!("{} {}: {}", n.name, s.name, s.message.clone().unwrap_or_default()))
                })
                .collect();
            (Outcome::Failed, if only_timeouts { RunEnd::TimedOut } else { RunEnd::Failed }, Some(names.join("; ")))
        };
        let record = RunRecord {
            lab: r.plan.cluster.clone(),
            cluster_file: r.opts.cluster_file.display().to_string(),
            started_at: r.started_at.clone(),
            accel: r.decision.clone(),
            duration_ms: shared.ms(),
            outcome,
            message,
            nodes,
            teardown: Vec::new(),
        };
        Ok((record, end))
    }

    /// Stops VMs, servers and the network, removes the VMs' files. Never fails: what it could not do is
    /// a line of its own.
    async fn teardown(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        for (_, vm) in std::mem::take(&mut self.vms) {
            lines.extend(vm.shutdown(QUIT_GRACE).await);
        }
        for t in self.servers.drain(..) {
            t.abort();
            let _ = t.await;
        }
        lines.push("stopped the DHCP and config servers".into());
        if let Some(net) = self.net.take() {
            match net.destroy() {
                Ok(l) => lines.extend(l),
                Err(e) => lines.push(format!("could not remove the lab network: {e}")),
            }
        }
        state::LabState::remove(&self.state_dir);
        lines
    }

    /// Removes the VMs' folder (disks, firmware variables, TPM state, sockets).
    fn remove_files(&self) -> Vec<String> {
        match std::fs::remove_dir_all(&self.run_dir) {
            Ok(()) => vec![format!("removed {}", self.run_dir.display())],
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => vec![format!("could not remove {}: {e}", self.run_dir.display())],
        }
    }
}

/// One node: its stages in order; returns its record and its VM (still to be shut down).
async fn run_node(
    s: NodeSetup,
    shared: Arc<Shared>,
    mut obs: watch::Receiver<NodeObs>,
    obs_tx: watch::Sender<NodeObs>,
    mut cancel: watch::Receiver<Option<String>>,
) -> (NodeRecord, Option<Vm>) {
    let node_dir = shared.report_dir.join("nodes").join(&s.name);
    let _ = std::fs::create_dir_all(&node_dir);
    let mut stages: Vec<StageRecord> = Vec::new();
    let mut vm: Option<Vm> = None;
    let mut failed = false;
    let mut vm_task: Option<tokio::task::JoinHandle<()>> = None;
    for def in FIXTURE_STAGES {
        let timeout = shared.timeouts.of(&def);
        let mut rec = StageRecord {
            name: def.name.into(),
            title: def.title.into(),
            status: StageStatus::NotRun,
            start_ms: None,
            end_ms: None,
            timeout_name: def.name.into(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            message: None,
            last_observed: None,
            artifacts: Vec::new(),
        };
        if failed {
            stages.push(rec);
            continue;
        }
        if shared.keep_running && def.name == "powered-off" {
            rec.status = StageStatus::Skipped;
            rec.message = Some("lab up: the VM is left running".into());
            stages.push(rec);
            continue;
        }
        rec.start_ms = Some(shared.ms());
        let waited = match def.name {
            "vm-started" => {
                let r = start_vm(&s, &shared, &obs_tx).await;
                match r {
                    Ok((v, task)) => {
                        vm = Some(v);
                        vm_task = Some(task);
                        wait_for(&mut obs, timeout, &mut cancel, |o| match &o.vm {
                            VmState::Running => Check::Pass(format!("{} vCPUs, {} MiB", s.vm.cpus, s.vm.memory_mib)),
                            st if st.is_exited() => Check::Fail(st.to_string(), st.to_string()),
                            st => Check::Pending(st.to_string()),
                        })
                        .await
                    }
                    Err(w) => w,
                }
            }
            "firmware-reached-bootloader" => {
                wait_for(&mut obs, timeout, &mut cancel, |o| {
                    if let Some(l) = &o.firmware_handoff {
                        return Check::Pass(l.clone());
                    }
                    if let Some(f) = o.fatal() {
                        return Check::Fail(f, o.tail_text(8));
                    }
                    Check::Pending(o.tail_text(4))
                })
                .await
            }
            "kernel-booted" => {
                wait_for(&mut obs, timeout, &mut cancel, |o| {
                    if let Some(m) = o.marker("kernel-booted") {
                        let resets = o.qmp_events.iter().filter(|e| e.starts_with("RESET")).count();
                        return Check::Pass(format!(
                            "kernel {}{}",
                            m.get("kernel").unwrap_or("?"),
                            if resets > 0 {
                                format!(" after {resets} reset(s) (Secure Boot key enrollment)")
                            } else {
                                String::new()
                            }
                        ));
                    }
                    if let Some(f) = o.fatal() {
                        return Check::Fail(f, o.tail_text(8));
                    }
                    Check::Pending(o.tail_text(4))
                })
                .await
            }
            "extensions-loaded" => {
                let want = s.extensions;
                wait_for(&mut obs, timeout, &mut cancel, |o| {
                    if let Some(m) = o.marker("extensions-loaded") {
                        let num = |k| m.get(k).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
                        let seen = format!(
                            "layers={} modules={} failed={} index={}",
                            num("layers"),
                            num("modules"),
                            num("failed"),
                            m.get("index").unwrap_or("?")
                        );
                        if num("layers") < want {
                            return Check::Fail(
                                format!("{} extension layers mounted, the image has {want}", num("layers")),
                                seen,
                            );
                        }
                        if num("failed") > 0 {
                            return Check::Fail(format!("{} extension modules failed to load", num("failed")), seen);
                        }
                        if want > 0 && num("modules") == 0 {
                            return Check::Fail("no module from the extensions was loaded".into(), seen);
                        }
                        return Check::Pass(seen);
                    }
                    if let Some(f) = o.fatal() {
                        return Check::Fail(f, o.tail_text(8));
                    }
                    Check::Pending(o.tail_text(4))
                })
                .await
            }
            "config-fetched" => {
                let served = s.config.sha256();
                wait_for(&mut obs, timeout, &mut cancel, |o| {
                    let last_fetch =
                        o.fetches.last().map(|f| format!("{} {} from {}: {}", f.status, f.path, f.client, f.reason));
                    if let Some(f) = o.fetches.iter().find(|f| f.status != 200) {
                        return Check::Fail(
                            format!("the config server refused {}: {} {}", s.name, f.status, f.reason),
                            last_fetch.unwrap_or_default(),
                        );
                    }
                    if let Some(m) = o.marker("config-fetched") {
                        let got = m.get("sha256").unwrap_or("");
                        return if got == served {
                            Check::Pass(format!(
                                "sha256 {got} equals the served config's ({} bytes)",
                                s.config.body.len()
                            ))
                        } else {
                            Check::Fail(
                                format!("the guest's config sha256 {got} differs from the served config's {served}"),
                                last_fetch.unwrap_or_default(),
                            )
                        };
                    }
                    if let Some(m) = o.marker("config-failed") {
                        return Check::Fail(
                            format!(
                                "the guest could not fetch its config (status {})",
                                m.get("status").unwrap_or("none")
                            ),
                            last_fetch.unwrap_or_else(|| "no request reached the config server".into()),
                        );
                    }
                    if let Some(m) = o.marker("config-skipped") {
                        return Check::Fail("the guest has no talos.config kernel argument".into(), format!("{m:?}"));
                    }
                    if let Some(f) = o.fatal() {
                        return Check::Fail(f, o.tail_text(8));
                    }
                    Check::Pending(last_fetch.unwrap_or_else(|| o.tail_text(4)))
                })
                .await
            }
            "inventory-matches-profile" => {
                let exp = Expectation::for_emulation(&s.profile)
                    .with_vm_shape(s.vm.cpus, s.vm.memory_mib * ByteSize::MIB)
                    .with_facts(&NodeFacts { macs: s.vm.macs() });
                match exp {
                    Err(e) => Waited::Failed {
                        message: format!("cannot build the expectation: {e}"),
                        observed: String::new(),
                    },
                    Ok(exp) => {
                        let node_dir = node_dir.clone();
                        wait_for(&mut obs, timeout, &mut cancel, |o| {
                            if let Some(json) = &o.inventory {
                                let line = format!("TALFORGE-INVENTORY {json}");
                                let inv = match parse_inventory(&line, Path::new("console.log")) {
                                    Ok(i) => i,
                                    Err(e) => {
                                        return Check::Fail(
                                            format!("the inventory does not parse: {e}"),
                                            json.chars().take(400).collect(),
                                        );
                                    }
                                };
                                let report = qualify(&exp, &inv);
                                let _ = std::fs::write(node_dir.join("inventory.json"), json);
                                let _ = std::fs::write(node_dir.join("qualify.txt"), report.human());
                                let bad: Vec<String> = report
                                    .checks
                                    .iter()
                                    .filter(|c| c.status == Status::Mismatch)
                                    .map(|c| format!("{}: expected {}, found {}", c.id, c.expected, c.found))
                                    .collect();
                                return if bad.is_empty() {
                                    Check::Pass(format!(
                                        "{} checks pass, {} not checked",
                                        report.summary.pass, report.summary.not_checked
                                    ))
                                } else {
                                    Check::Fail(
                                        format!("{} mismatch(es): {}", bad.len(), bad.join("; ")),
                                        bad.join("\n"),
                                    )
                                };
                            }
                            if let Some(f) = o.fatal() {
                                return Check::Fail(f, o.tail_text(8));
                            }
                            Check::Pending(o.tail_text(4))
                        })
                        .await
                    }
                }
            }
            "powered-off" => {
                // Wait for the guest to watch the power button, press it, and wait for QEMU to exit.
                let ready = wait_for(&mut obs, timeout, &mut cancel, |o| {
                    if o.marker("waiting-for-poweroff").is_some() || o.marker("poweroff").is_some() {
                        return Check::Pass(String::new());
                    }
                    if let Some(f) = o.fatal() {
                        return Check::Fail(f, o.tail_text(8));
                    }
                    Check::Pending(o.tail_text(4))
                })
                .await;
                match (ready, &vm) {
                    (Waited::Passed(_), Some(v)) => power_off(v, &mut obs, timeout, &mut cancel).await,
                    (Waited::Passed(_), None) => Waited::Failed { message: "no VM".into(), observed: String::new() },
                    (other, _) => other,
                }
            }
            other => Waited::Failed { message: format!("unknown stage {other}"), observed: String::new() },
        };
        rec.end_ms = Some(shared.ms());
        match waited {
            Waited::Passed(detail) => {
                rec.status = StageStatus::Passed;
                shared.say(&s.name, format_args!("{:<28} passed  {detail}", def.name));
                rec.message = Some(detail);
            }
            Waited::Failed { message, observed } => {
                rec.status = StageStatus::Failed;
                shared.say(&s.name, format_args!("{:<28} FAILED  {message}", def.name));
                rec.message = Some(message);
                rec.last_observed = Some(observed);
                failed = true;
            }
            Waited::TimedOut { observed } => {
                rec.status = StageStatus::Failed;
                let message = format!("timed out after {} (timeout {})", human(timeout), def.name);
                shared.say(&s.name, format_args!("{:<28} FAILED  {message}", def.name));
                rec.message = Some(message);
                rec.last_observed = Some(observed);
                failed = true;
            }
            Waited::Interrupted { why, observed } => {
                rec.status = StageStatus::Failed;
                shared.say(&s.name, format_args!("{:<28} FAILED  {why}", def.name));
                rec.message = Some(why);
                rec.last_observed = Some(observed);
                failed = true;
            }
        }
        if rec.status == StageStatus::Passed
            && s.kill_after.as_deref() == Some(def.name)
            && let Some(v) = &vm
        {
            shared.say(&s.name, format_args!("fault: killing QEMU (pid {:?}) with SIGKILL", v.pid()));
            v.kill();
        }
        if rec.status == StageStatus::Passed
            && s.panic_after.as_deref() == Some(def.name)
            && let Some(v) = &vm
        {
            shared.say(&s.name, format_args!("fault: injecting an NMI (QMP inject-nmi)"));
            if let Err(e) = v.inject_nmi().await {
                shared.say(&s.name, format_args!("fault: {e}"));
            }
        }
        stages.push(rec);
    }
    // The signal forwarder ends with the VM's channel (when the VM is shut down at teardown).
    drop(vm_task.take());
    let record = NodeRecord {
        name: s.name.clone(),
        profile: s.profile.name.clone(),
        stages,
        not_emulated: s.vm.not_emulated.iter().map(|n| format!("{}: {} ({})", n.part, n.real, n.reason)).collect(),
        approximated: s.vm.approximated.iter().map(|a| format!("{}: {} → {}", a.part, a.real, a.lab)).collect(),
    };
    (record, vm)
}

/// How long the lab waits for QEMU to exit after pressing the power button before pressing it again.
const POWER_BUTTON_REPEAT: Duration = Duration::from_secs(15);

/// Presses the ACPI power button and waits until the guest has powered off and QEMU exited; presses again
/// every [`POWER_BUTTON_REPEAT`] (as a person at a BMC would) until the stage's timeout.
async fn power_off(
    vm: &Vm,
    obs: &mut watch::Receiver<NodeObs>,
    timeout: Duration,
    cancel: &mut watch::Receiver<Option<String>>,
) -> Waited {
    let deadline = Instant::now() + timeout;
    let mut presses = 0;
    loop {
        if let Err(e) = vm.powerdown().await {
            return Waited::Failed { message: e.to_string(), observed: String::new() };
        }
        presses += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let w = wait_for(obs, left.min(POWER_BUTTON_REPEAT), cancel, |o| match &o.vm {
            VmState::Exited { code: Some(0), .. }
                if o.qmp_events.iter().any(|e| e.starts_with("SHUTDOWN guest=true")) =>
            {
                Check::Pass(format!(
                    "{}; the guest said {}; power button pressed {presses} time(s)",
                    o.vm,
                    o.marker("poweroff").and_then(|m| m.get("reason")).unwrap_or("?")
                ))
            }
            st if st.is_exited() => Check::Fail(format!("{st} instead of a clean power-off"), o.qmp_events.join(", ")),
            st => Check::Pending(format!("{st}; QMP events: {}", o.qmp_events.join(", "))),
        })
        .await;
        match w {
            Waited::TimedOut { .. } if Instant::now() < deadline && !obs.borrow().vm.is_exited() => {}
            other => return other,
        }
    }
}

/// Prepares the VM's files and starts it; the forwarding task moves VM signals into the node's
/// observations.
async fn start_vm(
    s: &NodeSetup,
    shared: &Shared,
    obs_tx: &watch::Sender<NodeObs>,
) -> Result<(Vm, tokio::task::JoinHandle<()>), Waited> {
    let fail = |message: String| Waited::Failed { message, observed: String::new() };
    let vm_plan = s.vm.clone();
    let image = s.disk_image.clone();
    let prepared = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let work = vm_plan.console.log.parent().map(Path::to_owned).unwrap_or_default();
        std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
        let install = vm_plan.install_disk().ok_or_else(|| "the VM has no install disk".to_owned())?;
        if let Some(image) = &image {
            write_image(image, &install.image, install.size).map_err(|e| e.to_string())?;
        }
        prepare_vm_files(&vm_plan).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| fail(format!("preparing the VM's files: {e}")))?;
    prepared.map_err(fail)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<VmSignal>();
    let fwd_tx = obs_tx.clone();
    let task = tokio::spawn(async move {
        while let Some(sig) = rx.recv().await {
            fwd_tx.send_modify(|o| o.apply(sig));
        }
    });
    shared.say(&s.name, format_args!("starting QEMU ({})", s.vm.profile));
    match Vm::launch(s.vm.clone(), &shared.launch, tx).await {
        Ok(vm) => Ok((vm, task)),
        Err(e) => {
            task.abort();
            Err(fail(e.to_string()))
        }
    }
}

/// Copies the node's logs into the report folder; returns (stage names it belongs to, artifact).
fn collect_artifacts(s: &NodeSetup, node_dir: &Path, report_dir: &Path) -> Vec<(&'static [&'static str], Artifact)> {
    let work = s.vm.console.log.parent().map(Path::to_owned).unwrap_or_default();
    let mut out = Vec::new();
    let rel = |p: &Path| p.strip_prefix(report_dir).unwrap_or(p).display().to_string();
    let mut add = |stages: &'static [&'static str], src: PathBuf, name: &str| {
        let dst = node_dir.join(name);
        if !src.is_file() || (src != dst && std::fs::copy(&src, &dst).is_err()) {
            return;
        }
        let bytes = std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
        out.push((stages, Artifact { name: name.to_owned(), path: rel(&dst), bytes }));
    };
    const ALL: &[&str] = &[
        "vm-started",
        "firmware-reached-bootloader",
        "kernel-booted",
        "extensions-loaded",
        "config-fetched",
        "inventory-matches-profile",
        "powered-off",
    ];
    add(&["vm-started"], work.join("qemu.argv"), "qemu.argv");
    add(&["vm-started", "powered-off"], work.join("qemu.stderr"), "qemu.stderr");
    if s.vm.tpm.is_some() {
        add(&["vm-started"], work.join("swtpm.stderr"), "swtpm.stderr");
    }
    add(ALL, s.vm.console.log.clone(), "console.log");
    add(&["inventory-matches-profile"], node_dir.join("inventory.json"), "inventory.json");
    add(&["inventory-matches-profile"], node_dir.join("qualify.txt"), "qualify.txt");
    out
}

fn attach(stages: &mut [StageRecord], artifacts: &[(&'static [&'static str], Artifact)]) {
    for st in stages.iter_mut() {
        if st.status == StageStatus::NotRun {
            continue;
        }
        for (names, a) in artifacts {
            if names.contains(&st.name.as_str()) {
                st.artifacts.push(a.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_name_their_form() {
        assert_eq!(Fault::parse("refuse-config:w-1"), Ok(Fault::RefuseConfig { node: "w-1".into() }));
        assert_eq!(
            Fault::parse("kill:cp-1@kernel-booted"),
            Ok(Fault::Kill { node: "cp-1".into(), after: "kernel-booted".into() })
        );
        assert_eq!(Fault::parse("drop-disk:w-2:osd"), Ok(Fault::DropDisk { node: "w-2".into(), disk: "osd".into() }));
        assert!(Fault::parse("kill:cp-1@booted").unwrap_err().contains("no stage \"booted\""));
        assert_eq!(
            Fault::parse("panic:w-2@config-fetched"),
            Ok(Fault::Panic { node: "w-2".into(), after: "config-fetched".into() })
        );
        assert!(Fault::parse("panic:w-2").unwrap_err().contains("panic:NODE@STAGE"));
        assert!(Fault::parse("explode:cp-1").unwrap_err().contains("expected refuse-config:NODE"));
    }

    #[test]
    fn the_config_argument_points_at_the_gateway() {
        assert_eq!(
            config_kernel_arg(Ipv4Addr::new(10, 5, 0, 1)),
            "talos.config=http://10.5.0.1/config?uuid=${uuid}&mac=${mac}"
        );
    }

    fn spec(nodes: &str) -> ClusterSpec {
        let text = format!(
            "apiVersion: talforge.dev/v1alpha1\nkind: Cluster\nname: t\ntalos: {{ version: v1.14.0 }}\n\
             kubernetes: {{ version: 1.34.1 }}\nendpoint: https://10.5.0.11:6443\n\
             network: {{ gateway: 10.5.0.1 }}\nnodes:\n{nodes}"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, text).unwrap();
        Source::read(&f).unwrap().decode().unwrap()
    }

    #[test]
    fn node_addresses_come_from_the_cluster_file_or_the_next_free_one() {
        let s = spec(
            "  - { name: a, role: controlplane, profile: p, address: 10.5.0.10/24 }\n  - { name: b, role: worker, profile: p }\n",
        );
        let (gw, prefix) = lab_subnet(&s).unwrap();
        assert_eq!((gw, prefix), (Ipv4Addr::new(10, 5, 0, 1), 24));
        assert_eq!(
            node_addresses(&s, gw, prefix).unwrap(),
            vec![Ipv4Addr::new(10, 5, 0, 10), Ipv4Addr::new(10, 5, 0, 11)]
        );
        let s = spec("  - { name: a, role: controlplane, profile: p, address: 10.6.0.10/24 }\n");
        let e = node_addresses(&s, gw, prefix).unwrap_err().to_string();
        assert!(e.contains("node a: address 10.6.0.10/24 is not in the lab network 10.5.0.0/24"), "{e}");
    }

    #[test]
    fn a_report_folder_with_other_files_is_refused() {
        let d = tempfile::tempdir().unwrap();
        check_report_dir(&d.path().join("new")).unwrap();
        check_report_dir(d.path()).unwrap();
        std::fs::write(d.path().join("notes.txt"), "mine").unwrap();
        let e = check_report_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("not empty and holds no earlier lab report"), "{e}");
        std::fs::write(d.path().join("run.json"), "{}").unwrap();
        check_report_dir(d.path()).unwrap();
    }

    #[test]
    fn images_are_written_sparse_and_sized_to_the_disk() {
        let d = tempfile::tempdir().unwrap();
        let mut raw = vec![0u8; 4 << 20];
        raw[0] = 1;
        raw[(3 << 20) + 5] = 7;
        let zst = d.path().join("i.raw.zst");
        std::fs::write(&zst, zstd::encode_all(raw.as_slice(), 3).unwrap()).unwrap();
        let disk = d.path().join("disk.raw");
        write_image(&zst, &disk, 64 << 20).unwrap();
        let back = std::fs::read(&disk).unwrap();
        assert_eq!(back.len(), 64 << 20);
        assert_eq!(&back[..raw.len()], raw.as_slice());
        use std::os::unix::fs::MetadataExt as _;
        assert!(std::fs::metadata(&disk).unwrap().blocks() * 512 < 1 << 20, "two written blocks, the rest holes");
        let e = write_image(&zst, &disk, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("does not fit the install disk"), "{e}");
    }
}
