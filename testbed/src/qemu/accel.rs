//! Choosing the accelerator by booting, not by looking at `/dev/kvm`: on some hosts `/dev/kvm` opens and
//! VMs start, but guests crawl so slowly they look hung (on the development host, a nested VM, the kernel's
//! decompressor never finished). `--accel auto` boots a tiny probe guest ([`super::probe_image`]) under KVM
//! with the lab's own KVM arguments and uses KVM only if the guest prints its marker within
//! [`PROBE_DEADLINE`]; otherwise TCG, with the reason. `--accel kvm|tcg` forces the choice.
//!
//! When the KVM probe fails, the same probe runs under TCG too, so the reason can say whether the probe
//! itself works (then "KVM does not work here" is a finding, not a probe bug).

use std::ffi::OsString;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::QemuError;
use super::args::accel_args;
use super::probe_image::{PROBE_BAD_MEMORY, PROBE_GUEST_MIB, PROBE_OK, PROBE_STAGES, probe_firmware};
use super::process::{ChildGuard, command};

/// How long the probe guest may take to print its marker. A working KVM takes well under a second
/// (QEMU's start included), TCG about 0.4 s on the 2-core development host; the hosts this guards against
/// need tens of seconds or never get there.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(5);

/// The device whose opening is the first check.
pub const KVM_DEVICE: &str = "/dev/kvm";

/// The accelerator a VM runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// What the user asked for (`--accel`, the cluster file's `lab.accel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelRequest {
    Auto,
    Kvm,
    Tcg,
}

impl From<talforge_builder::spec::cluster::Accel> for AccelRequest {
    fn from(a: talforge_builder::spec::cluster::Accel) -> Self {
        use talforge_builder::spec::cluster::Accel as A;
        match a {
            A::Auto => AccelRequest::Auto,
            A::Kvm => AccelRequest::Kvm,
            A::Tcg => AccelRequest::Tcg,
        }
    }
}

/// The accelerator to use and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccelDecision {
    pub accel: Accel,
    pub reason: AccelReason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccelReason {
    /// `--accel kvm|tcg`.
    Requested,
    /// The KVM probe guest printed its marker.
    KvmBooted { probe: ProbeRun },
    /// `/dev/kvm` cannot be opened read-write.
    KvmUnavailable { device: PathBuf, error: String },
    /// The KVM probe guest did not print its marker; `tcg` is the same probe under TCG.
    KvmProbeFailed { probe: ProbeRun, tcg: ProbeRun },
}

impl fmt::Display for AccelDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.accel)?;
        match &self.reason {
            AccelReason::Requested => write!(f, "requested"),
            AccelReason::KvmBooted { probe } => {
                write!(f, "the KVM probe guest reached its marker in {:.2} s", probe.elapsed.as_secs_f64())
            }
            AccelReason::KvmUnavailable { device, error } => {
                write!(f, "{} cannot be opened ({error})", device.display())
            }
            AccelReason::KvmProbeFailed { probe, tcg } => {
                write!(f, "the KVM probe guest did not reach its marker: {probe}; under TCG it {tcg}")
            }
        }
    }
}

/// How far the probe guest got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeStage {
    RealMode,
    ProtectedMode,
    LongMode,
}

impl fmt::Display for ProbeStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeStage::RealMode => "real mode",
            ProbeStage::ProtectedMode => "protected mode",
            ProbeStage::LongMode => "long mode",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The marker line arrived.
    Marker,
    /// The guest read back different memory than it wrote.
    BadMemory,
    /// QEMU ended before the marker (`status` as Rust prints an exit status; `stderr` its last lines).
    Exited { status: String, stderr: String },
    /// The deadline passed first.
    Deadline { deadline: Duration },
}

/// One probe boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeRun {
    pub accel: Accel,
    /// From starting QEMU to the marker (or to giving up).
    pub elapsed: Duration,
    pub outcome: ProbeOutcome,
    /// The last stage letter the guest printed.
    pub stage: Option<ProbeStage>,
}

impl ProbeRun {
    pub fn reached_marker(&self) -> bool {
        self.outcome == ProbeOutcome::Marker
    }
}

impl fmt::Display for ProbeRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.elapsed.as_secs_f64();
        let stage = match self.stage {
            Some(s) => format!("last stage {s}"),
            None => "before its first output".to_owned(),
        };
        match &self.outcome {
            ProbeOutcome::Marker => write!(f, "reached its marker in {t:.2} s"),
            ProbeOutcome::BadMemory => write!(f, "read back different memory than it wrote ({t:.2} s)"),
            ProbeOutcome::Exited { status, stderr } => {
                write!(f, "QEMU exited ({status}) after {t:.2} s, {stage}")?;
                if !stderr.is_empty() {
                    write!(f, ": {stderr}")?;
                }
                Ok(())
            }
            ProbeOutcome::Deadline { deadline } => {
                write!(f, "did not reach its marker within {:.1} s ({stage})", deadline.as_secs_f64())
            }
        }
    }
}

/// QEMU's arguments for the probe guest: the lab's machine type and accelerator arguments, the generated
/// firmware as `-bios`, COM1 on stdout, exit instead of rebooting on a triple fault.
pub fn probe_args(firmware: &Path, accel: Accel) -> Vec<OsString> {
    let mut a: Vec<OsString> =
        ["-nodefaults", "-no-user-config", "-display", "none", "-machine", "q35"].iter().map(OsString::from).collect();
    a.extend(accel_args(accel).iter().map(OsString::from));
    a.extend(["-smp", "1", "-m"].iter().map(OsString::from));
    a.push(format!("{PROBE_GUEST_MIB}M").into());
    a.push("-bios".into());
    a.push(firmware.as_os_str().to_owned());
    a.extend(["-serial", "stdio", "-no-reboot"].iter().map(OsString::from));
    a
}

/// Decides the accelerator. For `Auto`: TCG if [`KVM_DEVICE`] cannot be opened; else the probe under KVM
/// decides, within [`PROBE_DEADLINE`]. `scratch` is where the probe's temporary folder goes (removed after).
pub fn probe_accel(requested: AccelRequest, qemu: &Path, scratch: &Path) -> Result<AccelDecision, QemuError> {
    let decided = |accel, reason| Ok(AccelDecision { accel, reason });
    match requested {
        AccelRequest::Kvm => decided(Accel::Kvm, AccelReason::Requested),
        AccelRequest::Tcg => decided(Accel::Tcg, AccelReason::Requested),
        AccelRequest::Auto => {
            if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(KVM_DEVICE) {
                return decided(
                    Accel::Tcg,
                    AccelReason::KvmUnavailable { device: KVM_DEVICE.into(), error: e.to_string() },
                );
            }
            let probe = run_probe(qemu, Accel::Kvm, scratch, PROBE_DEADLINE)?;
            if probe.reached_marker() {
                return decided(Accel::Kvm, AccelReason::KvmBooted { probe });
            }
            let tcg = run_probe(qemu, Accel::Tcg, scratch, PROBE_DEADLINE)?;
            decided(Accel::Tcg, AccelReason::KvmProbeFailed { probe, tcg })
        }
    }
}

/// Boots the probe guest under `accel` and waits for its marker until `deadline`. QEMU is killed and the
/// temporary folder (in `scratch`) removed before this returns.
pub fn run_probe(qemu: &Path, accel: Accel, scratch: &Path, deadline: Duration) -> Result<ProbeRun, QemuError> {
    let dir = tempfile::Builder::new()
        .prefix("talforge-accel-probe.")
        .tempdir_in(scratch)
        .map_err(|source| QemuError::Io { op: "create a folder in", path: scratch.to_owned(), source })?;
    let image = dir.path().join("probe.fd");
    std::fs::write(&image, probe_firmware()).map_err(|source| QemuError::Io {
        op: "write",
        path: image.clone(),
        source,
    })?;

    let args = probe_args(&image, accel);
    let mut cmd = command(qemu, &args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut argv = vec![qemu.as_os_str().to_owned()];
    argv.extend(args);
    let start = Instant::now();
    let mut qemu_child = ChildGuard::spawn(cmd, argv)?;

    // Readers on their own threads, so the wait below is a deadline on a channel.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let stdout = qemu_child.child().stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends at EOF (QEMU exited) or when the receiver is gone.
            while let Ok(n @ 1..) = out.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        })
    });
    let stderr = qemu_child.child().stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        })
    });

    let mut output = Vec::new();
    let outcome = loop {
        if let Some(o) = scan_output(&output) {
            break Some(o);
        }
        let Some(left) = deadline.checked_sub(start.elapsed()) else {
            break Some(ProbeOutcome::Deadline { deadline });
        };
        match rx.recv_timeout(left) {
            Ok(chunk) => output.extend_from_slice(&chunk),
            Err(mpsc::RecvTimeoutError::Timeout) => break Some(ProbeOutcome::Deadline { deadline }),
            // stdout closed: QEMU is exiting.
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
        }
    };
    let elapsed = start.elapsed();
    let status = if outcome.is_none() { qemu_child.child().wait() } else { qemu_child.kill() };
    let _ = qemu_child.kill();
    if let Some(t) = stdout {
        let _ = t.join();
    }
    let stderr_text = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    let outcome = outcome.unwrap_or_else(|| ProbeOutcome::Exited {
        status: status.map_or_else(|e| format!("status unknown: {e}"), |s| s.to_string()),
        stderr: last_lines(&stderr_text, 3),
    });
    let stage = PROBE_STAGES
        .iter()
        .zip([ProbeStage::RealMode, ProbeStage::ProtectedMode, ProbeStage::LongMode])
        .filter(|(letter, _)| output.split(|b| *b == b'\n').next().is_some_and(|first| first.contains(letter)))
        .map(|(_, s)| s)
        .next_back();
    drop(dir);
    Ok(ProbeRun { accel, elapsed, outcome, stage })
}

/// The outcome once a complete marker line is in `output`.
fn scan_output(output: &[u8]) -> Option<ProbeOutcome> {
    let text = String::from_utf8_lossy(output);
    let mut lines = text.split('\n');
    // The last piece has no newline yet.
    let _ = lines.next_back();
    lines.find_map(|l| match l.trim_end() {
        PROBE_OK => Some(ProbeOutcome::Marker),
        PROBE_BAD_MEMORY => Some(ProbeOutcome::BadMemory),
        _ => None,
    })
}

fn last_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_lines_are_complete_lines() {
        assert_eq!(scan_output(b"RPL\nTALFORGE-ACCEL-PROBE ok"), None);
        assert_eq!(scan_output(b"RPL\nTALFORGE-ACCEL-PROBE ok\n"), Some(ProbeOutcome::Marker));
        assert_eq!(scan_output(b"RPL\nTALFORGE-ACCEL-PROBE bad-memory\r\n"), Some(ProbeOutcome::BadMemory));
        assert_eq!(scan_output(b"R"), None);
    }

    #[test]
    fn decisions_read_as_sentences() {
        let probe = ProbeRun {
            accel: Accel::Kvm,
            elapsed: Duration::from_millis(60),
            outcome: ProbeOutcome::Exited {
                status: "signal: 6 (SIGABRT) (core dumped)".into(),
                stderr: "error: failed to set MSR 0x10a to 0x69".into(),
            },
            stage: None,
        };
        let tcg = ProbeRun {
            accel: Accel::Tcg,
            elapsed: Duration::from_millis(380),
            outcome: ProbeOutcome::Marker,
            stage: Some(ProbeStage::LongMode),
        };
        let d = AccelDecision { accel: Accel::Tcg, reason: AccelReason::KvmProbeFailed { probe, tcg } };
        assert_eq!(
            d.to_string(),
            "tcg: the KVM probe guest did not reach its marker: QEMU exited (signal: 6 (SIGABRT) (core dumped)) \
             after 0.06 s, before its first output: error: failed to set MSR 0x10a to 0x69; under TCG it reached \
             its marker in 0.38 s"
        );
        let slow = ProbeRun {
            accel: Accel::Kvm,
            elapsed: PROBE_DEADLINE,
            outcome: ProbeOutcome::Deadline { deadline: PROBE_DEADLINE },
            stage: Some(ProbeStage::LongMode),
        };
        assert_eq!(slow.to_string(), "did not reach its marker within 5.0 s (last stage long mode)");
    }
}
