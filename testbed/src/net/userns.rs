//! Rootless lab networks: without root, the lab's network namespace is owned by a user namespace in which
//! the lab's user is root, so it may make the bridge and taps there and nowhere else.
//!
//! - A *holder* process (`unshare --user --map-root-user --net`, running `sh` that waits on its stdin) keeps
//!   both namespaces alive. It has no name under `/run/netns` (only root may write there); it is found by
//!   its pid, and it exits as soon as the lab's end of its stdin closes, so a lab killed with SIGKILL leaves
//!   no namespace behind once its VMs are gone.
//! - Commands run inside through `nsenter --target <pid> --user --net --preserve-credentials` (which execs:
//!   the child's pid is the program's). `--preserve-credentials` because the holder's namespace denies
//!   `setgroups`, which nsenter's switch to uid 0 would call; the lab's uid is mapped to 0 there anyway.
//! - Sockets: a multithreaded process may not enter a user namespace (`setns` refuses), so the lab starts
//!   its own binary inside through nsenter ([`BIND_HELPER`]); that binds the socket and hands the file
//!   descriptor back over a Unix socket (SCM_RIGHTS). A socket stays in the namespace it was made in.
//!
//! A host allows this when unprivileged user namespaces are enabled and `/dev/net/tun` is open to the user
//! (Debian's udev makes it 0666); [`check_rootless`] says which of these is missing.

use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead as _, BufReader, IoSlice, IoSliceMut, Read as _};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ExitCode, Stdio};
use std::time::{Duration, Instant};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
    recvmsg, sendmsg,
};
use talforge_builder::tool::{Program, ToolError, ToolRunner};

use super::NetError;

pub(crate) const NSENTER: Program = Program::new("nsenter", "util-linux");
pub(crate) const UNSHARE: Program = Program::new("unshare", "util-linux");

/// The device QEMU and `ip tuntap` open to make and attach taps.
pub const TUN: &str = "/dev/net/tun";

/// The first argument with which the `talforge` binary runs as the socket helper ([`bind_helper_main`]).
pub const BIND_HELPER: &str = "__lab-netns-bind";

/// The holder's `$0`, so `ps` says what it is.
const HOLDER_NAME: &str = "talforge-netns-holder";

/// `Ok` when this (non-root) user can make a rootless lab network; otherwise why not.
pub(crate) fn check_rootless() -> Result<(), String> {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(TUN) {
        let how = std::fs::metadata(TUN).map_or_else(
            |_| "it does not exist (load the tun module)".to_owned(),
            |m| format!("it is mode {:04o} (Debian's udev makes it 0666)", m.permissions().mode() & 0o7777),
        );
        return Err(format!("{TUN} cannot be opened read-write ({e}); {how}"));
    }
    let runner = ToolRunner::new(0);
    for p in [UNSHARE, NSENTER] {
        if runner.find(p).is_none() {
            return Err(format!("{} is not installed (Debian package {})", p.name, p.package));
        }
    }
    match runner.run(UNSHARE, ["--user", "--map-root-user", "--net", "true"], None, None) {
        Ok(_) => Ok(()),
        Err(ToolError::Failed { stderr, .. }) => Err(format!(
            "unshare --user --map-root-user --net failed: {}; see the sysctls user.max_user_namespaces and \
             kernel.apparmor_restrict_unprivileged_userns",
            stderr.trim()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// The arguments that make `nsenter` enter the holder's namespaces and exec what follows `--`.
pub fn enter_args(pid: u32) -> Vec<OsString> {
    ["--target", &pid.to_string(), "--user", "--net", "--preserve-credentials", "--"]
        .iter()
        .map(OsString::from)
        .collect()
}

fn find(p: Program) -> Result<PathBuf, NetError> {
    ToolRunner::new(0).find(p).ok_or(NetError::Tool(ToolError::Missing { program: p }))
}

/// The process that holds a rootless lab's user and network namespaces. Dropping it stops it.
#[derive(Debug)]
pub(crate) struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    nsenter: PathBuf,
}

impl Holder {
    /// Starts the holder in its own process group (a Ctrl-C at the terminal reaches the lab, which tears
    /// down in order, not the holder). `tag` goes on its command line, so a stale one can be found by it.
    /// Returns once the holder is inside its new namespaces.
    pub(crate) fn start(tag: &Path) -> Result<Holder, NetError> {
        use std::os::unix::process::CommandExt as _;
        let unshare = find(UNSHARE)?;
        let nsenter = find(NSENTER)?;
        let mut argv: Vec<OsString> =
            ["--user", "--map-root-user", "--net", "--", "sh", "-c"].iter().map(OsString::from).collect();
        argv.extend([OsString::from("echo ready; read -r line; exit 0"), HOLDER_NAME.into(), tag.into()]);
        let mut cmd = crate::qemu::process::command(&unshare, &argv);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        let mut full = vec![unshare.clone().into_os_string()];
        full.extend(argv.iter().cloned());
        let mut child =
            cmd.spawn().map_err(|source| NetError::Tool(ToolError::Spawn { argv: full.clone(), source }))?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            // `echo ready` runs only after unshare made the namespaces and exec'd sh; EOF means it failed.
            let _ = BufReader::new(out).read_line(&mut line);
        }
        let mut holder = Holder { child, stdin, nsenter };
        if line.trim() != "ready" {
            let mut stderr = String::new();
            if let Some(mut e) = holder.child.stderr.take() {
                let _ = holder.child.kill();
                let _ = e.read_to_string(&mut stderr);
            }
            let status = holder.child.wait().map_or_else(|e| e.to_string(), |s| s.to_string());
            holder.stdin = None;
            return Err(NetError::Tool(ToolError::Failed { argv: full, status, stderr: stderr.trim().to_owned() }));
        }
        // Never run the lab's `ip` commands in the host's namespace: check the holder really is elsewhere.
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
        let theirs = ns(&holder.pid().to_string());
        if theirs.is_none() || theirs == ns("self") {
            return Err(NetError::Unsupported(format!(
                "the namespace holder (pid {}) is not in a network namespace of its own",
                holder.pid()
            )));
        }
        Ok(holder)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `nsenter` with the arguments that enter the namespaces.
    pub(crate) fn wrap(&self) -> (PathBuf, Vec<OsString>) {
        (self.nsenter.clone(), enter_args(self.pid()))
    }

    /// Runs `program args...` inside the namespaces (controlled environment), returning its stdout.
    pub(crate) fn run(&self, program: &str, args: &[String]) -> Result<Vec<u8>, NetError> {
        let mut all = enter_args(self.pid());
        all.push(program.into());
        all.extend(args.iter().map(OsString::from));
        Ok(ToolRunner::new(0).run(NSENTER, all, None, None)?.stdout)
    }

    /// Closes the holder's stdin, on which it exits; kills it if it has not within 5 s. The namespaces go
    /// when their last process does.
    pub(crate) fn stop(&mut self) -> Result<String, NetError> {
        let pid = self.pid();
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => {
                    return Ok(format!(
                        "stopped the holder of the user and network namespaces (pid {pid}); the namespaces went \
                         with it"
                    ));
                }
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Ok(format!("killed the namespace holder (pid {pid}), which did not exit within 5 s"));
                }
                Err(source) => {
                    return Err(NetError::Io { op: "wait for", path: format!("/proc/{pid}").into(), source });
                }
            }
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What socket the helper binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SocketKind {
    Tcp,
    Udp,
    /// UDP with SO_BROADCAST (the DHCP server's).
    UdpBroadcast,
}

impl SocketKind {
    fn word(self) -> &'static str {
        match self {
            SocketKind::Tcp => "tcp",
            SocketKind::Udp => "udp",
            SocketKind::UdpBroadcast => "udp-broadcast",
        }
    }

    fn parse(word: &str) -> Option<SocketKind> {
        [SocketKind::Tcp, SocketKind::Udp, SocketKind::UdpBroadcast].into_iter().find(|k| k.word() == word)
    }
}

/// A socket of `kind` bound to `addr` in the calling thread's network namespace.
pub(crate) fn bind_socket(kind: SocketKind, addr: SocketAddr) -> io::Result<OwnedFd> {
    match kind {
        SocketKind::Tcp => TcpListener::bind(addr).map(OwnedFd::from),
        SocketKind::Udp => UdpSocket::bind(addr).map(OwnedFd::from),
        SocketKind::UdpBroadcast => UdpSocket::bind(addr).and_then(|s| s.set_broadcast(true).map(|()| s.into())),
    }
}

/// Binds `kind` on `addr` inside the holder's namespaces by running this program's [`BIND_HELPER`] there,
/// and returns the socket it hands back.
pub(crate) fn bind_in(holder: &Holder, kind: SocketKind, addr: SocketAddr) -> io::Result<OwnedFd> {
    let exe = std::env::current_exe()?;
    let (ours, theirs) = UnixStream::pair()?;
    let (nsenter, mut args) = holder.wrap();
    args.extend([exe.into_os_string(), BIND_HELPER.into(), kind.word().into(), addr.to_string().into()]);
    let mut cmd = crate::qemu::process::command(&nsenter, &args);
    cmd.stdout(Stdio::from(OwnedFd::from(theirs))).stderr(Stdio::piped());
    let child = cmd.spawn()?;
    // The child's end must close here, or a helper that dies without sending leaves recvmsg waiting.
    drop(cmd);
    let mut byte = [0u8; 1];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = recvmsg(&ours, &mut [IoSliceMut::new(&mut byte)], &mut control, RecvFlags::CMSG_CLOEXEC);
    let mut fd = None;
    if received.is_ok() {
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = msg {
                fd = fd.or_else(|| fds.next());
            }
        }
    }
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    match fd {
        Some(fd) if out.status.success() => Ok(fd),
        _ => Err(io::Error::other(if stderr.is_empty() {
            format!("the socket helper ({} {BIND_HELPER}) sent no socket ({})", nsenter.display(), out.status)
        } else {
            stderr
        })),
    }
}

/// The helper's side: `talforge __lab-netns-bind KIND ADDR`, run inside the lab's namespaces, binds the
/// socket and sends it over its stdout (a Unix socket). Errors go to stderr, with exit status 1.
pub fn bind_helper_main(args: &[OsString]) -> ExitCode {
    match bind_and_send(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn bind_and_send(args: &[OsString]) -> Result<(), String> {
    let usage = || format!("usage: talforge {BIND_HELPER} tcp|udp|udp-broadcast ADDR:PORT (the lab runs this)");
    let [kind, addr] = args else { return Err(usage()) };
    let kind = kind.to_str().and_then(SocketKind::parse).ok_or_else(usage)?;
    let addr: SocketAddr = addr.to_str().and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let what = format!("{} {addr} in the lab's network namespace", kind.word());
    let fd = bind_socket(kind, addr).map_err(|e| format!("cannot bind {what}: {e}"))?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd.as_fd()];
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err("the socket does not fit the control message".into());
    }
    let stdout = io::stdout();
    sendmsg(stdout.as_fd(), &[IoSlice::new(b"s")], &mut control, SendFlags::empty())
        .map_err(|e| format!("cannot hand back the socket for {what} (is stdout a Unix socket?): {e}"))?;
    Ok(())
}

/// Whether `arg` (the binary's first argument) asks for the socket helper.
pub fn is_bind_helper(arg: &OsStr) -> bool {
    arg == BIND_HELPER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enter_args_enter_both_namespaces_keeping_credentials() {
        let text: Vec<String> = enter_args(42).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(text, ["--target", "42", "--user", "--net", "--preserve-credentials", "--"]);
    }

    #[test]
    fn helper_refuses_bad_arguments_with_usage() {
        let usage = "usage: talforge __lab-netns-bind tcp|udp|udp-broadcast ADDR:PORT (the lab runs this)";
        assert_eq!(bind_and_send(&[]).unwrap_err(), usage);
        assert_eq!(bind_and_send(&["sctp".into(), "1.2.3.4:5".into()]).unwrap_err(), usage);
        assert_eq!(bind_and_send(&["tcp".into(), "nowhere".into()]).unwrap_err(), usage);
        for k in [SocketKind::Tcp, SocketKind::Udp, SocketKind::UdpBroadcast] {
            assert_eq!(SocketKind::parse(k.word()), Some(k));
        }
    }
}
