//! One lab VM under supervision: QEMU in its own process group (and the lab's network namespace), swtpm
//! when the profile has a TPM, QMP through the `qapi` crate with its event stream polled for the VM's whole
//! life (the pump also completes pending commands), and the serial console read from its chardev socket
//! (QEMU keeps the full log in the chardev's logfile whether or not anyone reads).
//!
//! QEMU starts paused (`-S`): the supervisor connects QMP and the console first, then sends `cont`, so no
//! console byte and no event is missed. Everything it sees goes out as [`VmSignal`]s: state changes from
//! the [`state`] machine (QMP `SHUTDOWN`, `RESET`, `STOP`, `RESUME`, `POWERDOWN`, `GUEST_PANICKED`,
//! `WATCHDOG`, and the process's exit), raw QMP event summaries, and console lines with terminal escapes
//! removed.
//!
//! sd-boot shows its menu for `timeout` seconds (Talos writes 10); when the console shows the countdown
//! (`Boot in N s`) the supervisor presses Enter on the serial console, once per menu, so the default
//! entry boots at once. Secure Boot key enrollment happens before the menu and is never interrupted.

pub mod console;
pub mod state;

use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use qapi::futures::{QapiService, QmpStreamTokio};
use serde::Deserialize;
use tokio::io::WriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;

pub use self::console::ConsoleLine;
pub use self::state::{VmInput, VmState, next_state};
use crate::qemu::process::command;
use crate::qemu::{Accel, VmPlan, qemu_args, swtpm_args};

/// How long swtpm and QEMU may take to create their sockets.
pub const SOCKET_DEADLINE: Duration = Duration::from_secs(30);

type QmpService = QapiService<QmpStreamTokio<WriteHalf<UnixStream>>>;

/// What a supervised VM reports.
#[derive(Clone, Debug)]
pub enum VmSignal {
    /// The state machine moved.
    State(VmState),
    /// A QMP event, summarized (`RESET guest=true`).
    Qmp(String),
    /// A complete console line.
    Console(ConsoleLine),
    /// The bootloader menu's countdown appeared (and Enter was pressed if asked).
    BootMenu,
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot start {what} for {node}: {source} (command: {argv})")]
    Spawn { node: String, what: &'static str, argv: String, source: std::io::Error },
    #[error("{what} of {node} exited before making its socket {socket}: {status}; {tail}")]
    EarlyExit { node: String, what: &'static str, socket: PathBuf, status: String, tail: String },
    #[error("{what} of {node} made no socket {socket} within {seconds} s")]
    NoSocket { node: String, what: &'static str, socket: PathBuf, seconds: u64 },
    #[error("QMP of {node}: {message}")]
    Qmp { node: String, message: String },
    #[error("console of {node}: {source}")]
    Console { node: String, source: std::io::Error },
    #[error("{node}: cannot write {path}: {source}")]
    Io { node: String, path: PathBuf, source: std::io::Error },
}

/// Programs and places a VM is started with.
#[derive(Clone, Debug)]
pub struct LaunchSpec {
    pub qemu: PathBuf,
    pub swtpm: Option<PathBuf>,
    pub accel: Accel,
    /// Wraps a program and its arguments into the command that runs it (inside the lab's network
    /// namespace: `ip netns exec <ns> program args...`, which execs, so the child is the program).
    pub wrap: Option<(PathBuf, Vec<OsString>)>,
    /// Press Enter at the bootloader menu.
    pub skip_boot_menu: bool,
}

/// A running, supervised VM.
pub struct Vm {
    pub plan: VmPlan,
    pid: Option<u32>,
    swtpm_pid: Option<u32>,
    qmp: Arc<QmpService>,
    exit: watch::Receiver<Option<VmState>>,
    tasks: Vec<JoinHandle<()>>,
    swtpm: Option<tokio::process::Child>,
    /// QEMU's stderr file.
    pub stderr: PathBuf,
    /// The QEMU command line, one argument per line.
    pub argv_file: PathBuf,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm").field("node", &self.plan.node).field("pid", &self.pid).finish_non_exhaustive()
    }
}

fn argv_string(program: &Path, args: &[OsString]) -> String {
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(|a| a.as_os_str()))
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn wrapped(spec: &LaunchSpec, program: &Path, args: Vec<OsString>) -> (PathBuf, Vec<OsString>) {
    match &spec.wrap {
        Some((w, pre)) => {
            let mut all = pre.clone();
            all.push(program.as_os_str().to_owned());
            all.extend(args);
            (w.clone(), all)
        }
        None => (program.to_owned(), args),
    }
}

fn tail_of(path: &Path, lines: usize) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let all: Vec<&str> = text.lines().collect();
    let t = all[all.len().saturating_sub(lines)..].join(" | ");
    if t.is_empty() { "no output".into() } else { format!("stderr: {t}") }
}

/// Waits for `socket` to exist, with backoff, while `child` runs.
async fn wait_for_socket(
    node: &str,
    what: &'static str,
    socket: &Path,
    child: &mut tokio::process::Child,
    stderr: &Path,
) -> Result<(), VmError> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if socket.exists() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(VmError::EarlyExit {
                node: node.into(),
                what,
                socket: socket.into(),
                status: status.to_string(),
                tail: tail_of(stderr, 5),
            });
        }
        if start.elapsed() > SOCKET_DEADLINE {
            return Err(VmError::NoSocket {
                node: node.into(),
                what,
                socket: socket.into(),
                seconds: SOCKET_DEADLINE.as_secs(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

fn spawn(
    node: &str,
    what: &'static str,
    program: &Path,
    args: Vec<OsString>,
    stdout_stderr: &Path,
) -> Result<tokio::process::Child, VmError> {
    let argv = argv_string(program, &args);
    let io = |source| VmError::Io { node: node.into(), path: stdout_stderr.into(), source };
    let err = std::fs::File::create(stdout_stderr).map_err(io)?;
    let mut cmd = command(program, &args);
    cmd.stdout(std::process::Stdio::null()).stderr(err);
    // Its own process group: a terminal's Ctrl-C reaches talforge only, which tears the VM down in order.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    cmd.spawn().map_err(|source| VmError::Spawn { node: node.into(), what, argv, source })
}

/// QEMU 7.2's `query-status` reply (`singlestep` was removed from the schema the crate is generated from,
/// so the command is defined here with the fields QEMU 7.2 sends).
#[derive(Debug, serde::Serialize)]
pub struct QueryStatus72;

#[derive(Clone, Debug, Deserialize)]
pub struct StatusInfo72 {
    pub running: bool,
    pub status: String,
    #[serde(default)]
    pub singlestep: Option<bool>,
}

impl qapi::Command for QueryStatus72 {
    type Ok = StatusInfo72;
    const NAME: &'static str = "query-status";
    const ALLOW_OOB: bool = false;
}
impl qapi::qmp::QmpCommand for QueryStatus72 {}

fn summarize(ev: &qapi::qmp::Event) -> (String, Option<VmInput>) {
    use qapi::qmp::Event as E;
    let enum_name = |v: &dyn erased::Named| v.name();
    match ev {
        E::SHUTDOWN { data, .. } => {
            let reason = enum_name(&data.reason);
            (
                format!("SHUTDOWN guest={} reason={reason}", data.guest),
                Some(VmInput::Shutdown { guest: data.guest, reason }),
            )
        }
        E::RESET { data, .. } => (format!("RESET guest={}", data.guest), Some(VmInput::Reset { guest: data.guest })),
        E::STOP { .. } => ("STOP".into(), Some(VmInput::Stopped)),
        E::RESUME { .. } => ("RESUME".into(), Some(VmInput::Resumed)),
        E::POWERDOWN { .. } => ("POWERDOWN".into(), Some(VmInput::PowerButton)),
        E::GUEST_PANICKED { data, .. } => {
            let action = enum_name(&data.action);
            let info = data.info.as_ref().map(|i| format!("{i:?}"));
            (format!("GUEST_PANICKED action={action}"), Some(VmInput::Panicked { action, info }))
        }
        E::WATCHDOG { data, .. } => {
            let action = enum_name(&data.action);
            (format!("WATCHDOG action={action}"), Some(VmInput::Watchdog { action }))
        }
        other => {
            let name = serde_json::to_value(other)
                .ok()
                .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "event".into());
            (name, None)
        }
    }
}

mod erased {
    /// A QAPI enum's wire name.
    pub trait Named {
        fn name(&self) -> String;
    }
    impl<T: serde::Serialize> Named for T {
        fn name(&self) -> String {
            serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| "?".into())
        }
    }
}

impl Vm {
    /// Starts swtpm (if the plan has a TPM) and QEMU, connects QMP and the console, and lets the guest run.
    /// The VM's files (disks, firmware variables, TPM state) must be prepared.
    pub async fn launch(
        plan: VmPlan,
        spec: &LaunchSpec,
        signals: mpsc::UnboundedSender<VmSignal>,
    ) -> Result<Vm, VmError> {
        let node = plan.node.clone();
        let work = plan.console.log.parent().map_or_else(|| PathBuf::from("."), Path::to_owned);
        let stderr = work.join("qemu.stderr");
        let argv_file = work.join("qemu.argv");
        let mut swtpm = None;
        let mut swtpm_pid = None;
        if let (Some(tpm), Some(bin)) = (&plan.tpm, &spec.swtpm) {
            let log = work.join("swtpm.stderr");
            let mut child = spawn(&node, "swtpm", bin, swtpm_args(tpm), &log)?;
            swtpm_pid = child.id();
            wait_for_socket(&node, "swtpm", &tpm.socket, &mut child, &log).await?;
            swtpm = Some(child);
        }
        let mut args = qemu_args(&plan, spec.accel);
        args.push("-S".into());
        let (program, all) = wrapped(spec, &spec.qemu, args);
        let mut listing = String::new();
        for a in std::iter::once(program.as_os_str()).chain(all.iter().map(|a| a.as_os_str())) {
            listing.push_str(&a.to_string_lossy());
            listing.push('\n');
        }
        std::fs::write(&argv_file, listing).map_err(|source| VmError::Io {
            node: node.clone(),
            path: argv_file.clone(),
            source,
        })?;
        let mut child = spawn(&node, "QEMU", &program, all, &stderr)?;
        let pid = child.id();
        wait_for_socket(&node, "QEMU", &plan.qmp_socket, &mut child, &stderr).await?;
        wait_for_socket(&node, "QEMU", &plan.console.socket, &mut child, &stderr).await?;

        let qerr = |message: String| VmError::Qmp { node: node.clone(), message };
        let negotiation = QmpStreamTokio::open_uds(&plan.qmp_socket)
            .await
            .map_err(|e| qerr(format!("cannot connect {}: {e}", plan.qmp_socket.display())))?;
        let stream = negotiation.negotiate().await.map_err(|e| qerr(format!("capabilities negotiation: {e}")))?;
        let (qmp, mut events) = stream.into_parts();
        let qmp = Arc::new(qmp);

        let (exit_tx, exit_rx) = watch::channel(None);
        let state = Arc::new(Mutex::new(VmState::Created));
        let mut tasks = Vec::new();

        // State updates go through one place.
        let feed = {
            let state = state.clone();
            let signals = signals.clone();
            move |input: VmInput| {
                let state = state.clone();
                let signals = signals.clone();
                async move {
                    let mut s = state.lock().await;
                    let n = next_state(&s, &input);
                    if n != *s {
                        *s = n.clone();
                        let _ = signals.send(VmSignal::State(n));
                    }
                }
            }
        };
        feed(VmInput::Launched).await;

        // The event pump: for the VM's whole life (it also completes `execute` calls).
        {
            let feed = feed.clone();
            let signals = signals.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(ev) = events.next().await {
                    match ev {
                        Ok(ev) => {
                            let (summary, input) = summarize(&ev);
                            let _ = signals.send(VmSignal::Qmp(summary));
                            if let Some(i) = input {
                                feed(i).await;
                            }
                        }
                        Err(e) => {
                            let _ = signals.send(VmSignal::Qmp(format!("QMP stream error: {e}")));
                        }
                    }
                }
                feed(VmInput::QmpClosed).await;
            }));
        }

        // The console.
        let console = UnixStream::connect(&plan.console.socket)
            .await
            .map_err(|source| VmError::Console { node: node.clone(), source })?;
        tasks.push(tokio::spawn(console::read_console(console, signals.clone(), spec.skip_boot_menu)));

        // The process.
        {
            let feed = feed.clone();
            tasks.push(tokio::spawn(async move {
                let status = child.wait().await;
                let (code, signal) = match status {
                    Ok(s) => (s.code(), s.signal()),
                    Err(_) => (None, None),
                };
                feed(VmInput::Exited { code, signal }).await;
                let s = state.lock().await.clone();
                let _ = exit_tx.send(Some(s));
            }));
        }

        let vm = Vm { plan, pid, swtpm_pid, qmp, exit: exit_rx, tasks, swtpm, stderr, argv_file };
        vm.qmp
            .execute(qapi::qmp::cont {})
            .await
            .map_err(|e| VmError::Qmp { node: node.clone(), message: format!("cont: {e}") })?;
        Ok(vm)
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn swtpm_pid(&self) -> Option<u32> {
        self.swtpm_pid
    }

    async fn run<C: qapi::qmp::QmpCommand>(&self, cmd: C) -> Result<C::Ok, VmError> {
        let name = C::NAME;
        self.qmp
            .execute(cmd)
            .await
            .map_err(|e| VmError::Qmp { node: self.plan.node.clone(), message: format!("{name}: {e}") })
    }

    /// Presses the ACPI power button.
    pub async fn powerdown(&self) -> Result<(), VmError> {
        self.run(qapi::qmp::system_powerdown {}).await.map(drop)
    }

    /// A non-maskable interrupt to the guest's first CPU.
    pub async fn inject_nmi(&self) -> Result<(), VmError> {
        self.run(qapi::qmp::inject_nmi {}).await.map(drop)
    }

    pub async fn reset(&self) -> Result<(), VmError> {
        self.run(qapi::qmp::system_reset {}).await.map(drop)
    }

    pub async fn status(&self) -> Result<StatusInfo72, VmError> {
        self.run(QueryStatus72).await
    }

    /// SIGKILL to QEMU's process group (what a crash or the OOM killer does).
    pub fn kill(&self) {
        if let Some(pid) = self.pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }

    /// QEMU's final state once it has exited.
    pub async fn wait_exit(&self) -> VmState {
        let mut rx = self.exit.clone();
        loop {
            if let Some(s) = rx.borrow().clone() {
                return s;
            }
            if rx.changed().await.is_err() {
                return VmState::Exited { code: None, signal: None, after: None };
            }
        }
    }

    /// Stops everything: `quit` over QMP, SIGKILL to the process group if QEMU is still there after
    /// `grace`, then swtpm. Returns what it did, as report lines.
    pub async fn shutdown(mut self, grace: Duration) -> Vec<String> {
        let node = self.plan.node.clone();
        let mut lines = Vec::new();
        let already = self.exit.borrow().clone();
        let end = match already {
            Some(s) => s,
            None => {
                let _ = tokio::time::timeout(Duration::from_secs(2), self.run(qapi::qmp::quit {})).await;
                match tokio::time::timeout(grace, self.wait_exit()).await {
                    Ok(s) => s,
                    Err(_) => {
                        self.kill();
                        self.wait_exit().await
                    }
                }
            }
        };
        lines.push(format!("qemu {node} (pid {}): {end}", self.pid.map_or_else(|| "?".into(), |p| p.to_string())));
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        if let Some(mut s) = self.swtpm.take() {
            let _ = s.start_kill();
            let st = s.wait().await;
            lines.push(format!(
                "swtpm {node} (pid {}): stopped ({})",
                self.swtpm_pid.map_or_else(|| "?".into(), |p| p.to_string()),
                st.map_or_else(|e| e.to_string(), |s| s.to_string())
            ));
        }
        lines
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // Normal paths call `shutdown`; after a panic the process group still goes.
        if self.exit.borrow().is_none() {
            self.kill();
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}
