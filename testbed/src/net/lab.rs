//! A lab's network: one named network namespace holding `lo`, a bridge with the gateway address and one tap
//! per VM NIC on the bridge. Everything is made inside the namespace; the host's namespace gets nothing, and
//! removing the namespace removes the whole network.
//!
//! The namespace also routes the limited broadcast 255.255.255.255 out of the bridge: a DHCP server replies
//! there to clients that have no address yet, and without a route the kernel refuses to send (ENETUNREACH).

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::NetError;
use super::nat::{NAT_TAP, Nat, NatAddrs, NatTarget, nat_addrs, ruleset};
use super::netns::{find_ip, in_netns, ip, links_in, netns_path};
use super::userns::{Holder, SocketKind, bind_in, bind_socket, check_rootless};

/// Who owns the lab's network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetMode {
    /// Root: a named namespace (`/run/netns/<name>`, made with `ip netns add`), which `ip netns` lists.
    Root,
    /// Rootless: the namespace is owned by a user namespace in which the lab's user is root, held by a
    /// process (see [`super::userns`]); it has no name under `/run/netns`.
    User,
}

impl NetMode {
    /// Root when the effective uid is 0; otherwise rootless if this host allows it, and
    /// [`NetError::NeedsRoot`] saying why not if it does not.
    pub fn for_this_user() -> Result<NetMode, NetError> {
        let euid = rustix::process::geteuid();
        if euid.is_root() {
            return Ok(NetMode::Root);
        }
        check_rootless().map(|()| NetMode::User).map_err(|reason| NetError::NeedsRoot { euid: euid.as_raw(), reason })
    }

    /// "root" or "rootless (user namespace)".
    pub fn describe(self) -> &'static str {
        match self {
            NetMode::Root => "root",
            NetMode::User => "rootless (user namespace)",
        }
    }
}

/// What a lab's network is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSpec {
    /// The network namespace's name: `/run/netns/<netns>` as root; rootless, only a label in messages.
    pub netns: String,
    /// A folder of the lab's own for the network's files (the NAT's log, ruleset and API socket). It is on
    /// the command lines of the helper processes (the rootless namespace holder, slirp4netns), so stale ones
    /// a killed lab left are found by it.
    pub run_dir: PathBuf,
    /// The bridge's name inside the namespace, e.g. `tfbr0`.
    pub bridge: String,
    /// The bridge's address: the VMs' gateway, DHCP and HTTP server.
    pub gateway: Ipv4Addr,
    /// The lab subnet's prefix length (1 to 30).
    pub prefix: u8,
    /// One tap per VM NIC, on the bridge.
    pub taps: Vec<String>,
    /// NAT from the lab to the networks the lab process reaches, through slirp4netns ([`super::nat`]).
    pub nat: bool,
}

/// A lab network that exists; [`LabNet::destroy`] removes it, and dropping it without that removes it too
/// (best effort, errors ignored).
#[derive(Debug)]
pub struct LabNet {
    spec: NetSpec,
    ip: PathBuf,
    live: bool,
    /// Rootless: the process holding the namespaces.
    holder: Option<Holder>,
    /// The NAT, when asked for.
    nat: Option<Nat>,
}

impl LabNet {
    /// Makes the namespace, the bridge with the gateway address and the taps, as root or rootless
    /// ([`NetMode::for_this_user`] decides; [`NetError::NeedsRoot`] when `mode` is [`NetMode::Root`] and
    /// the user is not). As root, a namespace of that name already existing is [`NetError::Exists`]: the
    /// caller decides whether it is stale and removes it with [`delete_netns`](super::delete_netns). If a
    /// step fails, what was made is removed again.
    pub fn create(spec: &NetSpec, mode: NetMode) -> Result<LabNet, NetError> {
        check_spec(spec)?;
        let ip_path = find_ip()?;
        match mode {
            NetMode::Root => {
                let euid = rustix::process::geteuid();
                if !euid.is_root() {
                    return Err(NetError::NeedsRoot { euid: euid.as_raw(), reason: "root was asked for".into() });
                }
                if netns_path(&spec.netns).exists() {
                    return Err(NetError::Exists { netns: spec.netns.clone() });
                }
                let mut steps = setup_args(spec).into_iter();
                if let Some(add) = steps.next() {
                    ip(&add)?;
                }
                let mut net = LabNet { spec: spec.clone(), ip: ip_path, live: true, holder: None, nat: None };
                for step in steps {
                    // On failure `net` is dropped here, which removes the namespace again.
                    ip(&step)?;
                }
                net.start_nat()?;
                Ok(net)
            }
            NetMode::User => {
                let holder = Holder::start(&spec.run_dir)?;
                let mut net = LabNet { spec: spec.clone(), ip: ip_path, live: true, holder: Some(holder), nat: None };
                for step in inside_args(spec) {
                    // On failure `net` is dropped here, which stops the holder and so the namespace.
                    net.run_inside("ip", &step)?;
                }
                net.start_nat()?;
                Ok(net)
            }
        }
    }

    /// Runs `program args...` inside the namespace (controlled environment), returning its stdout.
    pub fn run_inside(&self, program: &str, args: &[String]) -> Result<Vec<u8>, NetError> {
        match &self.holder {
            Some(h) => h.run(program, args),
            None => {
                let mut all = vec!["netns".to_owned(), "exec".to_owned(), self.spec.netns.clone(), program.to_owned()];
                all.extend(args.iter().cloned());
                ip(&all)
            }
        }
    }

    /// With `spec.nat`: slirp4netns attached, forwarding on and the lab subnet masqueraded out of its tap.
    fn start_nat(&mut self) -> Result<(), NetError> {
        if !self.spec.nat {
            return Ok(());
        }
        let addrs = nat_addrs(self.spec.gateway, self.spec.prefix)?;
        let target = match &self.holder {
            Some(h) => NatTarget::Pid(h.pid()),
            None => NatTarget::Path(netns_path(&self.spec.netns)),
        };
        let has_address = || {
            let args = ["-j", "-4", "addr", "show", "dev", NAT_TAP].map(str::to_owned);
            let out = self.run_inside("ip", &args).unwrap_or_default();
            let links: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap_or_default();
            links.iter().any(|l| l["addr_info"].as_array().is_some_and(|a| !a.is_empty()))
        };
        let nat = Nat::start(&target, addrs, &self.spec.run_dir, has_address)?;
        self.nat = Some(nat);
        self.run_inside("sh", &["-c".to_owned(), "echo 1 > /proc/sys/net/ipv4/ip_forward".to_owned()])?;
        let rules = self.spec.run_dir.join("nat.nft");
        std::fs::write(&rules, ruleset(self.spec.gateway, self.spec.prefix)).map_err(|source| NetError::Io {
            op: "write",
            path: rules.clone(),
            source,
        })?;
        self.run_inside("nft", &["-f".to_owned(), rules.display().to_string()])?;
        Ok(())
    }

    /// The NAT's addresses and slirp4netns's pid, when the lab has NAT.
    pub fn nat(&self) -> Option<(NatAddrs, u32)> {
        self.nat.as_ref().map(|n| (n.addrs, n.pid()))
    }

    /// With NAT, one line: `slirp4netns (pid N): 10.0.2.100 on tfnat0 routes via 10.0.2.2; DNS 10.0.2.3`.
    pub fn nat_summary(&self) -> Option<String> {
        self.nat().map(|(a, pid)| {
            format!("slirp4netns (pid {pid}): {} on {NAT_TAP} routes via {}; DNS {}", a.tap, a.router, a.dns)
        })
    }

    /// Rootless: the pid of the process holding the namespaces (`nsenter --target <pid> --user --net
    /// --preserve-credentials` enters them).
    pub fn holder_pid(&self) -> Option<u32> {
        self.holder.as_ref().map(Holder::pid)
    }

    /// The program and arguments that run what follows them inside the namespace (and exec it, so the
    /// child's pid is the program's): `ip netns exec <name>` as root, `nsenter ... --` rootless.
    pub fn wrap(&self) -> (PathBuf, Vec<OsString>) {
        match &self.holder {
            Some(h) => h.wrap(),
            None => (self.ip.clone(), vec!["netns".into(), "exec".into(), self.spec.netns.clone().into()]),
        }
    }

    /// The network namespace's name.
    pub fn name(&self) -> &str {
        &self.spec.netns
    }

    /// What the network was made from.
    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    /// `program args...` inside the namespace ([`LabNet::wrap`]) with the environment of
    /// [`qemu::process::command`](crate::qemu::process::command) (only `PATH`, `LC_ALL=C`, `TZ=UTC`; stdin
    /// from /dev/null). The wrapper execs `program`: the child's pid is the program's.
    pub fn command(&self, program: &Path, args: &[OsString]) -> Command {
        let (wrapper, mut all) = self.wrap();
        all.push(program.into());
        all.extend(args.iter().cloned());
        crate::qemu::process::command(&wrapper, &all)
    }

    /// A TCP listener on `addr` inside the namespace (so reachable from the VMs, not from the host),
    /// nonblocking, ready for `tokio::net::TcpListener::from_std`.
    pub fn bind_tcp(&self, addr: SocketAddr) -> std::io::Result<TcpListener> {
        let l = TcpListener::from(self.bind(SocketKind::Tcp, addr)?);
        l.set_nonblocking(true)?;
        Ok(l)
    }

    /// A UDP socket on `addr` inside the namespace, nonblocking, ready for `tokio::net::UdpSocket::from_std`.
    pub fn bind_udp(&self, addr: SocketAddr) -> std::io::Result<UdpSocket> {
        let s = UdpSocket::from(self.bind(SocketKind::Udp, addr)?);
        s.set_nonblocking(true)?;
        Ok(s)
    }

    /// Like [`LabNet::bind_udp`], with broadcasts allowed (SO_BROADCAST): the DHCP server's socket.
    pub fn bind_udp_broadcast(&self, addr: SocketAddr) -> std::io::Result<UdpSocket> {
        let s = UdpSocket::from(self.bind(SocketKind::UdpBroadcast, addr)?);
        s.set_nonblocking(true)?;
        Ok(s)
    }

    fn bind(&self, kind: SocketKind, addr: SocketAddr) -> std::io::Result<std::os::fd::OwnedFd> {
        let netns = self.spec.netns.clone();
        let proto = if kind == SocketKind::Tcp { "TCP" } else { "UDP" };
        match &self.holder {
            Some(h) => bind_in(h, kind, addr).map_err(|e| bind_error(e, proto, addr, &netns)),
            None => in_netns(&self.spec.netns, move || {
                bind_socket(kind, addr).map_err(|e| bind_error(e, proto, addr, &netns))
            }),
        }
    }

    /// Deletes the taps, the bridge and the namespace (rootless: stops the holder, and the namespace goes
    /// with it), returning a line for each thing done. Every step is tried; the first failure is returned
    /// after the rest ran.
    pub fn destroy(mut self) -> Result<Vec<String>, NetError> {
        self.live = false;
        let mut done: Vec<String> = self.nat.as_mut().map(Nat::stop).into_iter().collect();
        match self.holder.as_mut() {
            Some(h) => done.push(h.stop()?),
            None => done.extend(teardown(&self.spec)?),
        }
        Ok(done)
    }
}

impl Drop for LabNet {
    fn drop(&mut self) {
        if self.live {
            self.live = false;
            if let Some(n) = self.nat.as_mut() {
                n.stop();
            }
            match self.holder.as_mut() {
                Some(h) => drop(h.stop()),
                None => drop(teardown(&self.spec)),
            }
        }
    }
}

fn bind_error(e: std::io::Error, proto: &str, addr: SocketAddr, netns: &str) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cannot bind {proto} {addr} in network namespace {netns}: {e}"))
}

/// The `ip` command lines (without `ip`) that make `spec`'s network as root, in order; the first makes the
/// named namespace, the rest are [`inside_args`] with `-n <netns>`.
pub fn setup_args(spec: &NetSpec) -> Vec<Vec<String>> {
    let ns = spec.netns.as_str();
    let mut steps = vec![vec!["netns".to_owned(), "add".to_owned(), ns.to_owned()]];
    steps.extend(inside_args(spec).into_iter().map(|step| {
        let mut s = vec!["-n".to_owned(), ns.to_owned()];
        s.extend(step);
        s
    }));
    steps
}

/// The `ip` command lines (without `ip`) that make `spec`'s network when run inside the namespace.
pub fn inside_args(spec: &NetSpec) -> Vec<Vec<String>> {
    let br = spec.bridge.as_str();
    let cidr = format!("{}/{}", spec.gateway, spec.prefix);
    let line = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<String>>();
    let mut steps = vec![
        line(&["link", "set", "lo", "up"]),
        line(&["link", "add", br, "type", "bridge"]),
        line(&["addr", "add", &cidr, "broadcast", "+", "dev", br]),
        line(&["link", "set", br, "up"]),
        line(&["route", "add", "255.255.255.255/32", "dev", br]),
    ];
    for tap in &spec.taps {
        steps.push(line(&["tuntap", "add", "dev", tap, "mode", "tap"]));
        steps.push(line(&["link", "set", tap, "master", br, "up"]));
    }
    steps
}

/// Deletes the taps, the bridge and the namespace (what is already gone is reported, not an error).
fn teardown(spec: &NetSpec) -> Result<Vec<String>, NetError> {
    let ns = spec.netns.as_str();
    let mut done = Vec::new();
    if !netns_path(ns).exists() {
        done.push(format!("network namespace {ns} was already gone"));
        return Ok(done);
    }
    let mut first_error = None;
    let links = links_in(ns);
    let mut delete_link = |kind: &str, name: &str| {
        if !links.iter().any(|l| l == name) {
            done.push(format!("{kind} {name} in network namespace {ns} was already gone"));
            return;
        }
        match ip(&["-n", ns, "link", "delete", name]) {
            Ok(_) => done.push(format!("deleted {kind} {name} in network namespace {ns}")),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    };
    for tap in &spec.taps {
        delete_link("tap", tap);
    }
    delete_link("bridge", &spec.bridge);
    match ip(&["netns", "delete", ns]) {
        Ok(_) => done.push(format!("deleted network namespace {ns}")),
        Err(e) => {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// A namespace name `ip netns` and `/run/netns` take safely.
pub(crate) fn check_netns_name(name: &str) -> Result<(), NetError> {
    if valid_name(name, 64) {
        Ok(())
    } else {
        Err(NetError::BadName {
            what: "network namespace",
            name: name.to_owned(),
            expected: "1 to 64 characters of [a-zA-Z0-9_.-], not starting with '-' or '.'",
        })
    }
}

fn valid_name(name: &str, max: usize) -> bool {
    (1..=max).contains(&name.len())
        && !name.starts_with(['-', '.'])
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Checks what the kernel and `ip` would reject later, with errors that say which field.
pub(crate) fn check_spec(spec: &NetSpec) -> Result<(), NetError> {
    check_netns_name(&spec.netns)?;
    let mut seen: Vec<&str> = Vec::new();
    for (what, name) in std::iter::once(("bridge", &spec.bridge)).chain(spec.taps.iter().map(|t| ("tap", t))) {
        if !valid_name(name, 15) || name == "lo" {
            return Err(NetError::BadName {
                what,
                name: name.clone(),
                expected: "1 to 15 characters of [a-zA-Z0-9_.-], not starting with '-' or '.', and not lo",
            });
        }
        if seen.contains(&name.as_str()) {
            return Err(NetError::DuplicateName { name: name.clone() });
        }
        seen.push(name);
    }
    let bad = |problem| Err(NetError::BadAddress { gateway: spec.gateway, prefix: spec.prefix, problem });
    if !(1..=30).contains(&spec.prefix) {
        return bad("expected a prefix length of 1 to 30 (room for the gateway and the VMs)");
    }
    let g = spec.gateway;
    if g.is_unspecified() || g.is_loopback() || g.is_multicast() || g.is_broadcast() || g.is_link_local() {
        return bad("expected a unicast address that is not loopback or link-local");
    }
    let host_bits = u32::MAX >> spec.prefix;
    let host = u32::from(g) & host_bits;
    if host == 0 || host == host_bits {
        return bad("the gateway is the subnet's network or broadcast address");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NetSpec {
        NetSpec {
            netns: "tflab-a".into(),
            bridge: "tfbr0".into(),
            gateway: Ipv4Addr::new(10, 5, 0, 1),
            prefix: 24,
            taps: vec!["tap0".into(), "tap1".into()],
            run_dir: "/lab/run".into(),
            nat: false,
        }
    }

    #[test]
    fn setup_commands() {
        let text: Vec<String> = setup_args(&spec()).iter().map(|a| a.join(" ")).collect();
        assert_eq!(
            text,
            [
                "netns add tflab-a",
                "-n tflab-a link set lo up",
                "-n tflab-a link add tfbr0 type bridge",
                "-n tflab-a addr add 10.5.0.1/24 broadcast + dev tfbr0",
                "-n tflab-a link set tfbr0 up",
                "-n tflab-a route add 255.255.255.255/32 dev tfbr0",
                "-n tflab-a tuntap add dev tap0 mode tap",
                "-n tflab-a link set tap0 master tfbr0 up",
                "-n tflab-a tuntap add dev tap1 mode tap",
                "-n tflab-a link set tap1 master tfbr0 up",
            ]
        );
    }

    #[test]
    fn spec_errors_name_the_field() {
        assert!(check_spec(&spec()).is_ok());
        let err = |f: fn(&mut NetSpec)| {
            let mut s = spec();
            f(&mut s);
            check_spec(&s).unwrap_err().to_string()
        };
        assert_eq!(
            err(|s| s.taps[1] = "a-very-long-tap-name".into()),
            "tap name \"a-very-long-tap-name\": expected 1 to 15 characters of [a-zA-Z0-9_.-], not starting \
             with '-' or '.', and not lo"
        );
        assert!(err(|s| s.bridge = "-x".into()).starts_with("bridge name \"-x\""));
        assert!(err(|s| s.netns = "a/b".into()).starts_with("network namespace name \"a/b\""));
        assert_eq!(
            err(|s| s.taps[0] = "tfbr0".into()),
            "interface name \"tfbr0\" is given twice (the bridge and the taps share one namespace)"
        );
        assert_eq!(
            err(|s| s.prefix = 31),
            "gateway 10.5.0.1/31: expected a prefix length of 1 to 30 (room for the gateway and the VMs)"
        );
        assert_eq!(
            err(|s| s.gateway = Ipv4Addr::new(10, 5, 0, 255)),
            "gateway 10.5.0.255/24: the gateway is the subnet's network or broadcast address"
        );
        assert!(err(|s| s.gateway = Ipv4Addr::new(10, 5, 0, 0)).ends_with("network or broadcast address"));
        assert!(err(|s| s.gateway = Ipv4Addr::new(127, 0, 0, 1)).contains("not loopback"));
    }
}
