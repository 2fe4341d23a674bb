//! Test support: the repository's catalog, skipping without a dependency (failing instead under CI), a
//! private network namespace with taps, swtpm and QEMU processes that die with the test, and a small QMP
//! client.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use talforge_builder::plan::profile::{ResolvedProfile, resolve_profile};
use talforge_builder::spec::Catalog;
use talforge_testbed::qemu::process::{ChildGuard, QEMU, SWTPM, command, find_program};
use talforge_testbed::qemu::{Accel, TpmPlan, VmPlan, qemu_args, swtpm_args};

/// How long swtpm and QEMU may take to create their sockets.
const SOCKET_DEADLINE: Duration = Duration::from_secs(20);
/// How long a QMP read (a reply or an awaited event) may take.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(30);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn catalog() -> Catalog {
    Catalog::open(&repo()).expect("catalog")
}

pub fn profile(name: &str) -> ResolvedProfile {
    resolve_profile(&catalog(), name).unwrap_or_else(|e| panic!("profile {name}: {e}"))
}

/// Every shipped profile, resolved.
pub fn shipped_profiles() -> Vec<ResolvedProfile> {
    let cat = catalog();
    cat.profile_names().map(|n| resolve_profile(&cat, n).unwrap_or_else(|e| panic!("profile {n}: {e}"))).collect()
}

/// Skips the calling test with `why` (or fails it under CI).
pub fn unavailable<T>(why: &str) -> Option<T> {
    talforge_builder::tool::skip_test(&format!("SKIP: {why}"));
    None
}

pub fn qemu() -> Option<PathBuf> {
    find_program(QEMU)
        .ok()
        .or_else(|| unavailable("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"))
}

pub fn swtpm() -> Option<PathBuf> {
    find_program(SWTPM).ok().or_else(|| unavailable("swtpm is not installed (Debian package swtpm)"))
}

pub fn program(name: &'static str, package: &'static str) -> Option<PathBuf> {
    let p = talforge_builder::tool::Program::new(name, package);
    find_program(p).ok().or_else(|| unavailable(&format!("{name} is not installed (Debian package {package})")))
}

pub fn need_file(path: &Path, package: &str) -> Option<()> {
    if path.is_file() {
        Some(())
    } else {
        unavailable(&format!("{} is missing (Debian package {package})", path.display()))
    }
}

/// The fixture release (ci/fixture-release), or `$TALFORGE_FIXTURE_RELEASE`.
pub fn fixture_release() -> Option<PathBuf> {
    let dir =
        std::env::var_os("TALFORGE_FIXTURE_RELEASE").map_or_else(|| repo().join("out/fixture-release"), PathBuf::from);
    if dir.join("fixture.json").is_file() {
        Some(std::fs::canonicalize(&dir).expect("canonical fixture path"))
    } else {
        unavailable(&format!(
            "no fixture release at {} (build it with ci/fixture-release, or set TALFORGE_FIXTURE_RELEASE)",
            dir.display()
        ))
    }
}

/// Runs `cmd`, panicking with its output unless it succeeds.
pub fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace of the test's own, with taps; deleted (with its taps) on drop. Needs root.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(tag: &str) -> Option<Netns> {
        // The effective uid, without unsafe code: /proc/self/status "Uid: real effective saved fs".
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|r| r.split_whitespace().nth(1));
        if euid != Some("0") {
            return unavailable("VM tests with taps need root (a private network namespace)");
        }
        program("ip", "iproute2")?;
        let name = format!("tftest-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "delete", &name]).stderr(Stdio::null()).status();
        ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ok(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        Some(ns)
    }

    /// A tap owned by the namespace, up, with `address` (CIDR) on it if given.
    pub fn add_tap(&self, tap: &str, address: Option<&str>) {
        ok(Command::new("ip").args(["-n", &self.name, "tuntap", "add", "dev", tap, "mode", "tap"]));
        ok(Command::new("ip").args(["-n", &self.name, "link", "set", tap, "up"]));
        if let Some(a) = address {
            ok(Command::new("ip").args(["-n", &self.name, "addr", "add", a, "dev", tap]));
        }
    }

    /// `program args` inside the namespace (`ip netns exec` execs it: the child is the program itself).
    pub fn command(&self, program: &Path, args: &[OsString]) -> Command {
        let mut all: Vec<OsString> = vec!["netns".into(), "exec".into(), self.name.clone().into(), program.into()];
        all.extend(args.iter().cloned());
        command(Path::new("/usr/sbin/ip"), &all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

/// Polls `cond` every 50 ms until it holds or `deadline` passes (test code only; the library waits on
/// events).
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// swtpm for `tpm`, running until dropped; returns once its control socket exists.
pub fn start_swtpm(swtpm: &Path, tpm: &TpmPlan) -> ChildGuard {
    let args = swtpm_args(tpm);
    let mut cmd = command(swtpm, &args);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut g = ChildGuard::spawn(cmd, args).expect("start swtpm");
    assert!(wait_until(SOCKET_DEADLINE, || tpm.socket.exists()), "swtpm made no socket {}", tpm.socket.display());
    assert!(g.child().try_wait().expect("swtpm status").is_none(), "swtpm exited");
    g
}

/// QEMU for `vm` (plus `extra` arguments) inside `netns`, stderr to `stderr`.
pub fn start_qemu(qemu: &Path, netns: &Netns, vm: &VmPlan, accel: Accel, extra: &[&str], stderr: &Path) -> ChildGuard {
    let mut args = qemu_args(vm, accel);
    args.extend(extra.iter().map(OsString::from));
    let mut cmd = netns.command(qemu, &args);
    cmd.stdout(Stdio::null()).stderr(std::fs::File::create(stderr).expect("stderr file"));
    ChildGuard::spawn(cmd, args).expect("start qemu")
}

/// A QMP session over the VM's socket (JSON lines), keeping the events it reads.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects (QEMU makes the socket as it starts) and negotiates capabilities.
    pub fn connect(path: &Path) -> Qmp {
        let mut stream = None;
        assert!(
            wait_until(SOCKET_DEADLINE, || {
                stream = UnixStream::connect(path).ok();
                stream.is_some()
            }),
            "no QMP socket at {}",
            path.display()
        );
        let stream = stream.expect("connected");
        stream.set_read_timeout(Some(QMP_TIMEOUT)).expect("timeout");
        let mut q =
            Qmp { reader: BufReader::new(stream.try_clone().expect("clone")), writer: stream, events: Vec::new() };
        let greeting = q.read();
        assert!(greeting.get("QMP").is_some(), "QMP greeting: {greeting}");
        q.execute("qmp_capabilities", json!({}));
        q
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read QMP");
        assert!(n > 0, "QMP connection closed");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("QMP sent {line:?}: {e}"))
    }

    /// Runs `command`, returning its `return` value (events read meanwhile are kept).
    pub fn execute(&mut self, command: &str, arguments: Value) -> Value {
        let msg = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{msg}").expect("write QMP");
        loop {
            let v = self.read();
            if v.get("event").is_some() {
                self.events.push(v);
                continue;
            }
            if let Some(r) = v.get("return") {
                return r.clone();
            }
            panic!("QMP {command} failed: {v}");
        }
    }

    /// Reads until event `name` arrives; `None` when nothing arrives within [`QMP_TIMEOUT`].
    pub fn wait_event(&mut self, name: &str) -> Option<Value> {
        if let Some(e) = self.events.iter().find(|e| e["event"] == name) {
            return Some(e.clone());
        }
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return None;
                }
                Err(e) => panic!("read QMP: {e}"),
            }
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("QMP sent {line:?}: {e}"));
            if v.get("event").is_some() {
                self.events.push(v.clone());
                if v["event"] == name {
                    return Some(v);
                }
            }
        }
    }
}

/// The argv as text, one option and its value per line, for snapshots.
pub fn argv_text(args: &[OsString]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut out = String::new();
    let mut i = 0;
    while i < args.len() {
        out.push_str(&args[i]);
        if args[i].starts_with('-') && args.get(i + 1).is_some_and(|n| !n.starts_with('-')) {
            out.push(' ');
            out.push_str(&args[i + 1]);
            i += 1;
        }
        out.push('\n');
        i += 1;
    }
    out
}

/// Prints the end of a VM's console log and QEMU's stderr if the test panics while this is alive.
pub struct DumpOnPanic {
    pub files: Vec<PathBuf>,
}

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for f in &self.files {
            let text = String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("---- {} (last 60 lines)", f.display());
            for l in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{l}");
            }
        }
    }
}
