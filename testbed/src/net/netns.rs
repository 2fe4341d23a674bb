//! Named network namespaces as iproute2 keeps them (a bind mount at `/run/netns/<name>`): running `ip`,
//! listing and deleting namespaces, listing their links, and opening sockets inside one.
//!
//! A socket belongs to the namespace it was created in for its whole life, and `setns` moves only the
//! calling thread; so [`in_netns`] makes the socket on a short-lived thread that first enters the namespace,
//! and hands it back. The caller's own threads never leave the host namespace.

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd as _;
use std::path::PathBuf;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use talforge_builder::tool::{Program, ToolRunner};

use super::NetError;

pub(crate) const IP: Program = Program::new("ip", "iproute2");

/// Where iproute2 keeps named network namespaces.
pub(crate) const NETNS_DIR: &str = "/run/netns";

/// The namespace file of `name`.
pub(crate) fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Where `ip` is installed.
pub(crate) fn find_ip() -> Result<PathBuf, NetError> {
    ToolRunner::new(0).find(IP).ok_or(NetError::Tool(talforge_builder::tool::ToolError::Missing { program: IP }))
}

/// Runs `ip args...` (controlled environment), returning its stdout; a failure names the command line and
/// what `ip` printed on stderr.
pub(crate) fn ip<S: AsRef<str>>(args: &[S]) -> Result<Vec<u8>, NetError> {
    Ok(ToolRunner::new(0).run(IP, args.iter().map(|a| OsString::from(a.as_ref())), None, None)?.stdout)
}

/// Deletes the network namespace `name` (a stale lab's, say), and first every link in it but `lo`, so that
/// a process still holding the namespace open keeps no taps alive. `Ok(false)` when there is none.
pub fn delete_netns(name: &str) -> Result<bool, NetError> {
    super::check_netns_name(name)?;
    if !netns_path(name).exists() {
        return Ok(false);
    }
    for link in links_in(name).iter().filter(|l| *l != "lo") {
        // Deleting one end of a veth pair takes the other with it: a link may be gone by now.
        if let Err(e) = ip(&["-n", name, "link", "delete", link])
            && links_in(name).contains(link)
        {
            return Err(e);
        }
    }
    ip(&["netns", "delete", name])?;
    Ok(true)
}

/// The network namespaces under `/run/netns` whose names start with `prefix`, sorted.
pub fn list_netns(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// The names of the links in network namespace `netns` (`ip -n <netns> -j link show`), in `ip`'s order;
/// empty when the namespace does not exist or `ip` fails.
pub fn links_in(netns: &str) -> Vec<String> {
    let Ok(out) = ip(&["-n", netns, "-j", "link", "show"]) else {
        return Vec::new();
    };
    let links: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap_or_default();
    links.iter().filter_map(|l| l.get("ifname")?.as_str().map(str::to_owned)).collect()
}

/// Runs `f` on a new thread that has entered network namespace `netns` first; what `f` makes there (a
/// socket) stays in that namespace.
pub(crate) fn in_netns<T, F>(netns: &str, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let path = netns_path(netns);
    let thread = std::thread::Builder::new().name("talforge-netns".into()).spawn(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open network namespace {}: {e}", path.display())))?;
        move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network)).map_err(|e| {
            let e = io::Error::from(e);
            io::Error::new(e.kind(), format!("cannot enter network namespace {}: {e}", path.display()))
        })?;
        f()
    })?;
    thread
        .join()
        .map_err(|_| io::Error::other(format!("the thread making a socket in network namespace {netns} panicked")))?
}
