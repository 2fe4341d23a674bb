//! Optional NAT from the lab to the networks the lab process can reach, without touching the host's network
//! namespace: [slirp4netns] (a user-mode TCP/IP stack, the one rootless Podman uses) puts a tap `tfnat0`
//! into the lab's namespace and carries its traffic out through ordinary sockets of its own, in the
//! namespace `talforge` runs in. Inside the lab's namespace, forwarding is switched on and nftables
//! masquerades the lab subnet out of `tfnat0`, so the VMs (whose router is the gateway) reach out too. The
//! host gets no interface, route, firewall rule or sysctl; all of it goes with the namespace.
//!
//! The host's own loopback stays out of reach (`--disable-host-loopback`): a guest must not reach services
//! that listen on the host's 127.0.0.1 because it is NATed. slirp4netns's DNS forwarder (the host's
//! resolvers) is at the NAT subnet's `.3`; the lab hands that to the VMs as their DNS server.
//!
//! [slirp4netns]: https://github.com/rootless-containers/slirp4netns

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use talforge_builder::tool::{Program, ToolError, ToolRunner};

use super::NetError;

pub(crate) const SLIRP4NETNS: Program = Program::new("slirp4netns", "slirp4netns");
pub(crate) const NFT: Program = Program::new("nft", "nftables");

/// The tap slirp4netns makes in the lab's namespace.
pub const NAT_TAP: &str = "tfnat0";

/// The NAT subnets tried in order (a /24 each); the first that does not overlap the lab's subnet is used.
const NAT_SUBNETS: [Ipv4Addr; 3] =
    [Ipv4Addr::new(10, 0, 2, 0), Ipv4Addr::new(172, 31, 254, 0), Ipv4Addr::new(192, 168, 254, 0)];

/// How long slirp4netns may take to configure its tap.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// `Ok` when the programs NAT needs are installed; checked before anything is built.
pub fn check_tools() -> Result<(), NetError> {
    let runner = ToolRunner::new(0);
    for p in [SLIRP4NETNS, NFT] {
        if runner.find(p).is_none() {
            return Err(NetError::Tool(ToolError::Missing { program: p }));
        }
    }
    Ok(())
}

/// The addresses of the NAT side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatAddrs {
    /// The /24 slirp4netns emulates (`--cidr`).
    pub subnet: Ipv4Addr,
    /// `tfnat0`'s address in the lab's namespace (`.100`).
    pub tap: Ipv4Addr,
    /// slirp4netns's router, the lab namespace's default route (`.2`).
    pub router: Ipv4Addr,
    /// slirp4netns's DNS forwarder (`.3`).
    pub dns: Ipv4Addr,
}

/// The NAT subnet for a lab on `gateway/prefix`: the first of [`NAT_SUBNETS`] that does not overlap it.
pub fn nat_addrs(gateway: Ipv4Addr, prefix: u8) -> Result<NatAddrs, NetError> {
    let mask = |p: u8| if p == 0 { 0 } else { u32::MAX << (32 - u32::from(p)) };
    let overlaps = |net: Ipv4Addr| {
        // Two prefixes overlap when they agree on the shorter one's bits.
        let m = mask(prefix.min(24));
        u32::from(net) & m == u32::from(gateway) & m
    };
    let subnet = NAT_SUBNETS.into_iter().find(|n| !overlaps(*n)).ok_or_else(|| {
        NetError::Unsupported(format!(
            "NAT: the lab subnet {gateway}/{prefix} overlaps every subnet slirp4netns could use ({})",
            NAT_SUBNETS.map(|n| format!("{n}/24")).join(", ")
        ))
    })?;
    let host = |h: u32| Ipv4Addr::from(u32::from(subnet) | h);
    Ok(NatAddrs { subnet, tap: host(100), router: host(2), dns: host(3) })
}

/// Where slirp4netns finds the lab's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NatTarget {
    /// A named namespace's file (`--netns-type=path`).
    Path(PathBuf),
    /// The holder's pid: slirp4netns joins its user namespace and network namespace.
    Pid(u32),
}

/// slirp4netns's arguments. The API socket goes in `run_dir`, which so appears on its command line (that
/// is how a stale one left by a killed lab is found).
pub(crate) fn slirp_args(target: &NatTarget, addrs: &NatAddrs, run_dir: &Path) -> Vec<String> {
    let mut a: Vec<String> = [
        "--configure",
        "--mtu=65520",
        "--disable-host-loopback",
        &format!("--cidr={}/24", addrs.subnet),
        &format!("--api-socket={}", run_dir.join("slirp4netns.sock").display()),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    match target {
        NatTarget::Path(p) => a.extend(["--netns-type=path".to_owned(), p.display().to_string()]),
        NatTarget::Pid(pid) => a.push(pid.to_string()),
    }
    a.push(NAT_TAP.to_owned());
    a
}

/// The nftables ruleset the lab's namespace gets: masquerade what leaves from the lab subnet through
/// `tfnat0`.
pub fn ruleset(gateway: Ipv4Addr, prefix: u8) -> String {
    let net = Ipv4Addr::from(u32::from(gateway) & (u32::MAX << (32 - u32::from(prefix))));
    format!(
        "table ip talforge {{\n\tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\t\
         ip saddr {net}/{prefix} oifname \"{NAT_TAP}\" masquerade\n\t}}\n}}\n"
    )
}

/// A running slirp4netns; dropping it kills it.
#[derive(Debug)]
pub(crate) struct Nat {
    child: Child,
    pub(crate) addrs: NatAddrs,
    log: PathBuf,
}

impl Nat {
    /// Starts slirp4netns (its own process group, output to `run_dir/slirp4netns.log`) and waits until
    /// `has_address()` says `tfnat0` is configured.
    pub(crate) fn start(
        target: &NatTarget,
        addrs: NatAddrs,
        run_dir: &Path,
        has_address: impl Fn() -> bool,
    ) -> Result<Nat, NetError> {
        use std::os::unix::process::CommandExt as _;
        let program =
            ToolRunner::new(0).find(SLIRP4NETNS).ok_or(NetError::Tool(ToolError::Missing { program: SLIRP4NETNS }))?;
        let args: Vec<std::ffi::OsString> = slirp_args(target, &addrs, run_dir).into_iter().map(Into::into).collect();
        let log = run_dir.join("slirp4netns.log");
        let file =
            std::fs::File::create(&log).map_err(|source| NetError::Io { op: "create", path: log.clone(), source })?;
        let err = file.try_clone().map_err(|source| NetError::Io { op: "open", path: log.clone(), source })?;
        let mut cmd = crate::qemu::process::command(&program, &args);
        cmd.stdout(Stdio::from(file)).stderr(Stdio::from(err)).process_group(0);
        let mut argv = vec![program.into_os_string()];
        argv.extend(args);
        let child = cmd.spawn().map_err(|source| NetError::Tool(ToolError::Spawn { argv: argv.clone(), source }))?;
        let mut nat = Nat { child, addrs, log };
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pause = Duration::from_millis(10);
        loop {
            if has_address() {
                return Ok(nat);
            }
            if let Ok(Some(status)) = nat.child.try_wait() {
                return Err(NetError::Tool(ToolError::Failed {
                    argv,
                    status: status.to_string(),
                    stderr: nat.log_tail(),
                }));
            }
            if Instant::now() >= deadline {
                return Err(NetError::Tool(ToolError::Failed {
                    argv,
                    status: format!("{NAT_TAP} had no address after {} s", READY_TIMEOUT.as_secs()),
                    stderr: nat.log_tail(),
                }));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// Kills slirp4netns and reaps it.
    pub(crate) fn stop(&mut self) -> String {
        let pid = self.pid();
        match self.child.try_wait() {
            Ok(Some(status)) => format!("slirp4netns (pid {pid}) had already exited ({status})"),
            _ => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                format!("stopped slirp4netns (pid {pid}), the lab's NAT")
            }
        }
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_subnet_avoids_the_lab_subnet() {
        let a = nat_addrs(Ipv4Addr::new(10, 5, 0, 1), 24).unwrap();
        assert_eq!(
            a,
            NatAddrs {
                subnet: Ipv4Addr::new(10, 0, 2, 0),
                tap: Ipv4Addr::new(10, 0, 2, 100),
                router: Ipv4Addr::new(10, 0, 2, 2),
                dns: Ipv4Addr::new(10, 0, 2, 3),
            }
        );
        assert_eq!(nat_addrs(Ipv4Addr::new(10, 0, 2, 1), 24).unwrap().subnet, Ipv4Addr::new(172, 31, 254, 0));
        // A /8 lab covers 10.0.2.0/24; a /28 inside it too.
        assert_eq!(nat_addrs(Ipv4Addr::new(10, 9, 9, 1), 8).unwrap().subnet, Ipv4Addr::new(172, 31, 254, 0));
        assert_eq!(nat_addrs(Ipv4Addr::new(10, 0, 2, 17), 28).unwrap().subnet, Ipv4Addr::new(172, 31, 254, 0));
        assert_eq!(nat_addrs(Ipv4Addr::new(10, 0, 3, 1), 24).unwrap().subnet, Ipv4Addr::new(10, 0, 2, 0));
        // Half the address space: 10.0.2.0 is in the lower half, the other two in the upper (so no lab subnet
        // the network's checks allow, prefix 1 to 30, overlaps all three).
        assert_eq!(nat_addrs(Ipv4Addr::new(10, 0, 0, 1), 1).unwrap().subnet, Ipv4Addr::new(172, 31, 254, 0));
        assert_eq!(nat_addrs(Ipv4Addr::new(172, 31, 0, 1), 1).unwrap().subnet, Ipv4Addr::new(10, 0, 2, 0));
    }

    #[test]
    fn slirp_arguments() {
        let a = nat_addrs(Ipv4Addr::new(10, 5, 0, 1), 24).unwrap();
        let run = Path::new("/lab/state/run");
        assert_eq!(
            slirp_args(&NatTarget::Path("/run/netns/talforge-x".into()), &a, run).join(" "),
            "--configure --mtu=65520 --disable-host-loopback --cidr=10.0.2.0/24 \
             --api-socket=/lab/state/run/slirp4netns.sock --netns-type=path /run/netns/talforge-x tfnat0"
        );
        assert!(slirp_args(&NatTarget::Pid(42), &a, run).join(" ").ends_with("slirp4netns.sock 42 tfnat0"));
    }

    #[test]
    fn masquerades_only_the_lab_subnet_out_of_the_nat_tap() {
        assert_eq!(
            ruleset(Ipv4Addr::new(10, 5, 0, 1), 24),
            "table ip talforge {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy \
             accept;\n\t\tip saddr 10.5.0.0/24 oifname \"tfnat0\" masquerade\n\t}\n}\n"
        );
    }
}
