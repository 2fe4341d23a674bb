//! A lab's folder and what a running lab leaves there for `lab status`, `lab exec` and `lab down`:
//! `lab.json` (the lab's pid, network namespace, nodes, paths) while it runs, and a lock so two runs of the
//! same lab cannot share a folder.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::LabError;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LabState {
    pub pid: u32,
    pub cluster: String,
    pub cluster_file: PathBuf,
    pub netns: String,
    /// Rootless labs: the pid holding the user and network namespaces (`nsenter --target <pid> --user --net
    /// --preserve-credentials` enters them); absent for a named namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_holder: Option<u32>,
    /// With NAT: slirp4netns's pid and the addresses, as one line for `lab status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<String>,
    pub gateway: String,
    pub talosconfig: PathBuf,
    pub kubeconfig: PathBuf,
    pub report_dir: PathBuf,
    pub nodes: Vec<NodeState>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeState {
    pub name: String,
    pub address: String,
    pub uuid: String,
    pub console_log: PathBuf,
}

pub const STATE_FILE: &str = "lab.json";

impl LabState {
    pub fn write(&self, dir: &Path) -> Result<(), LabError> {
        let path = dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| LabError::Internal(e.to_string()))?;
        talforge_builder::output::write_atomic(
            &path,
            text.as_bytes(),
            0o644,
            talforge_builder::output::Overwrite::Replace,
        )?;
        Ok(())
    }

    /// The running lab's state, if its process is alive.
    pub fn read(dir: &Path) -> Result<Option<LabState>, LabError> {
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LabError::Io { what: "cannot read", path, source }),
        };
        let st: LabState = serde_json::from_str(&text)
            .map_err(|e| LabError::Input(format!("{}:{}:{}: {e}", path.display(), e.line(), e.column())))?;
        Ok(alive(st.pid).then_some(st))
    }

    pub fn remove(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(STATE_FILE));
    }
}

/// Whether process `pid` runs (a zombie has finished: its parent has not reaped it yet).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// An exclusive lock on a lab folder, held while a lab runs.
#[derive(Debug)]
pub struct LabLock {
    _file: File,
}

impl LabLock {
    pub fn acquire(dir: &Path) -> Result<LabLock, LabError> {
        let path = dir.join("lock");
        let file =
            File::create(&path).map_err(|source| LabError::Io { what: "cannot create", path: path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(LabLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                let who = LabState::read(dir).ok().flatten().map(|s| format!(" (pid {})", s.pid)).unwrap_or_default();
                Err(LabError::Busy(format!(
                    "a lab is already running in {}{who}; stop it with `talforge lab down` or use another --state folder",
                    dir.display()
                )))
            }
            Err(std::fs::TryLockError::Error(source)) => Err(LabError::Io { what: "cannot lock", path, source }),
        }
    }
}

/// What a lab killed with SIGKILL leaves in `dir` (only when no lab runs there: the caller holds its lock or
/// found its process gone): QEMU, swtpm and slirp4netns processes whose command line names the lab's VM
/// folder (`<dir>/run/`) get SIGKILL (a rootless lab's namespace holder exits by itself when the lab dies), its network namespace is deleted, the VM folder and lab.json removed.
/// Returns what was done.
pub fn clean_stale(cluster: &str, dir: &Path) -> Result<Vec<String>, LabError> {
    let mut done = Vec::new();
    let run = dir.join("run");
    let needle = format!("{}/", run.display());
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let program = cmd.split(' ').next().unwrap_or("");
        let ours = cmd.contains(&needle)
            && ["qemu-system-x86_64", "swtpm", "slirp4netns"].iter().any(|p| program.ends_with(p));
        if ours
            && let Some(p) = rustix::process::Pid::from_raw(pid)
            && rustix::process::kill_process(p, rustix::process::Signal::KILL).is_ok()
        {
            done.push(format!("killed {program} (pid {pid}) a killed run left behind"));
        }
    }
    let netns = netns_name(cluster, dir);
    if crate::net::delete_netns(&netns)? {
        done.push(format!("removed the network namespace {netns} a killed run left behind"));
    }
    if run.exists() {
        std::fs::remove_dir_all(&run).map_err(|source| LabError::Io {
            what: "cannot remove",
            path: run.clone(),
            source,
        })?;
        done.push(format!("removed {}", run.display()));
    }
    LabState::remove(dir);
    Ok(done)
}

fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0]);
    }
    h.finalize().iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// `$TALFORGE_LAB_DIR/<cluster>-<hash>` or `<cache>/lab/<cluster>-<hash>`, the hash over the cluster file's
/// absolute path (two checkouts get two labs).
pub fn default_state_dir(cluster_file: &Path, cluster: &str) -> Result<PathBuf, LabError> {
    let abs = std::fs::canonicalize(cluster_file).map_err(|source| LabError::Io {
        what: "cannot resolve",
        path: cluster_file.to_owned(),
        source,
    })?;
    let name = format!("{cluster}-{}", short_hash(&[abs.as_os_str().as_encoded_bytes()]));
    let root = match std::env::var_os("TALFORGE_LAB_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            talforge_builder::release::cache::Cache::default_root().map_err(talforge_builder::Error::from)?.join("lab")
        }
    };
    Ok(root.join(name))
}

/// The lab's network namespace: `talforge-<cluster>-<hash of the lab folder>`.
pub fn netns_name(cluster: &str, state_dir: &Path) -> String {
    format!("talforge-{cluster}-{}", short_hash(&[state_dir.as_os_str().as_encoded_bytes()]))
}

/// Now, as RFC 3339 UTC with seconds.
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        assert!(alive(std::process::id()));
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        // Exited but not reaped: a zombie, which does not count.
        let start = std::time::Instant::now();
        while alive(pid) && start.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::yield_now();
        }
        assert!(!alive(pid), "a zombie is not alive");
        c.wait().unwrap();
        assert!(!alive(pid));
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn a_second_lock_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let a = LabLock::acquire(d.path()).unwrap();
        let e = LabLock::acquire(d.path()).unwrap_err();
        assert!(e.to_string().contains("already running"), "{e}");
        drop(a);
        LabLock::acquire(d.path()).unwrap();
    }

    #[test]
    fn netns_names_differ_per_folder() {
        assert_ne!(netns_name("sample", Path::new("/a")), netns_name("sample", Path::new("/b")));
        assert!(netns_name("sample", Path::new("/a")).starts_with("talforge-sample-"));
    }
}
