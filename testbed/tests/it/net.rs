//! The lab network for real (root): a namespace with a bridge and taps that leaves the host's namespace
//! untouched and disappears when destroyed or dropped; the DHCP server leasing to busybox udhcpc on a veth
//! in a client namespace, and not to an unknown MAC; listeners made inside the namespace that the host
//! cannot see.
//!
//! Namespaces are named `tfnet-<what>-<pid>`; each test deletes its own on the way out, even when an
//! assertion fails.

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use talforge_builder::spec::units::MacAddr;
use talforge_testbed::net::dhcp::{DhcpConfig, DhcpEvent, DhcpLease, dhcp_socket, serve_dhcp};
use talforge_testbed::net::{LabNet, NetError, NetMode, NetSpec, delete_netns, links_in, list_netns};

use crate::support::{Netns, ok, program, unavailable};

/// How long a udhcpc run may take: the known client is leased at once; the unknown one gives up after two
/// discovers one second apart.
const CLIENT_DEADLINE: Duration = Duration::from_secs(20);

const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 1);
const KNOWN_MAC: &str = "52:54:00:00:00:11";
const UNKNOWN_MAC: &str = "52:54:00:00:00:99";
const LEASED: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 11);

fn netns_name(what: &str) -> String {
    format!("tfnet-{what}-{}", std::process::id())
}

fn spec(what: &str, taps: &[&str]) -> NetSpec {
    NetSpec {
        netns: netns_name(what),
        bridge: "tfbr0".into(),
        gateway: GATEWAY,
        prefix: 24,
        taps: taps.iter().map(|t| (*t).to_owned()).collect(),
        run_dir: format!("/tfnet/{what}").into(),
        nat: false,
    }
}

/// Deletes the named namespaces when dropped, so a failed assertion leaves nothing behind.
struct DeleteOnDrop(Vec<String>);

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = delete_netns(n);
        }
    }
}

/// The lab network of `spec`; `None` (the test skips) without root or iproute2.
fn create(spec: &NetSpec) -> Option<LabNet> {
    match LabNet::create(spec, NetMode::Root) {
        Ok(net) => Some(net),
        Err(e @ NetError::NeedsRoot { .. }) => unavailable(&e.to_string()),
        Err(NetError::Tool(talforge_builder::tool::ToolError::Missing { .. })) => {
            unavailable("ip is not installed (Debian package iproute2)")
        }
        Err(e) => panic!("create the lab network {}: {e}", spec.netns),
    }
}

fn ip_json(args: &[&str]) -> Vec<Value> {
    serde_json::from_str(&ok(Command::new("ip").args(args))).expect("ip -j output")
}

fn host_links() -> Vec<String> {
    ip_json(&["-j", "link", "show"]).iter().map(|l| l["ifname"].as_str().expect("ifname").to_owned()).collect()
}

fn flags(link: &Value) -> Vec<&str> {
    link["flags"].as_array().expect("flags").iter().map(|f| f.as_str().expect("flag")).collect()
}

#[test]
fn lab_network_lives_in_its_namespace_only() {
    let spec = spec("links", &["tap0", "tap1"]);
    let _cleanup = DeleteOnDrop(vec![spec.netns.clone()]);
    let host_before = host_links();
    let Some(lab) = create(&spec) else { return };
    let ns = spec.netns.as_str();

    assert!(matches!(LabNet::create(&spec, NetMode::Root), Err(NetError::Exists { netns }) if netns == ns));
    assert_eq!(links_in(ns), ["lo", "tfbr0", "tap0", "tap1"]);
    let links = ip_json(&["-n", ns, "-j", "link", "show"]);
    for link in &links {
        let name = link["ifname"].as_str().unwrap();
        assert!(flags(link).contains(&"UP"), "{name} is not up: {link}");
        if name.starts_with("tap") {
            assert_eq!(link["master"], "tfbr0", "{name} is not on the bridge: {link}");
        }
    }
    let addrs = ip_json(&["-n", ns, "-j", "addr", "show", "dev", "tfbr0"]);
    let v4: Vec<(String, u64)> = addrs[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| (a["local"].as_str().unwrap().to_owned(), a["prefixlen"].as_u64().unwrap()))
        .collect();
    assert_eq!(v4, [("10.5.0.1".to_owned(), 24)]);
    let routes = ip_json(&["-n", ns, "-j", "route", "show"]);
    assert!(
        routes.iter().any(|r| r["dst"] == "255.255.255.255" && r["dev"] == "tfbr0"),
        "no limited-broadcast route through the bridge: {routes:?}"
    );

    let host_after = host_links();
    let new: Vec<&String> = host_after.iter().filter(|l| !host_before.contains(l)).collect();
    assert!(new.is_empty(), "links appeared in the host's namespace: {new:?}");

    let lines = lab.destroy().unwrap();
    assert_eq!(
        lines,
        [
            format!("deleted tap tap0 in network namespace {ns}"),
            format!("deleted tap tap1 in network namespace {ns}"),
            format!("deleted bridge tfbr0 in network namespace {ns}"),
            format!("deleted network namespace {ns}"),
        ]
    );
    assert!(list_netns(ns).is_empty(), "{ns} is left after destroy");

    drop(create(&spec).unwrap());
    assert!(list_netns(ns).is_empty(), "{ns} is left after drop");
    assert!(!delete_netns(ns).unwrap(), "delete_netns found a namespace that was gone");

    // A lab whose owner died without cleaning up: delete_netns removes it.
    std::mem::forget(create(&spec).unwrap());
    assert_eq!(list_netns(ns), [ns]);
    assert!(delete_netns(ns).unwrap());
    assert!(list_netns(ns).is_empty(), "{ns} is left after delete_netns");
    let host_end = host_links();
    let new: Vec<&String> = host_end.iter().filter(|l| !host_before.contains(l)).collect();
    assert!(new.is_empty(), "links appeared in the host's namespace: {new:?}");
}

/// The udhcpc script: on `bound`, writes what the server handed out to `<script>.<interface>`.
const UDHCPC_SCRIPT: &str = "#!/bin/sh\n\
    [ \"$1\" = bound ] && echo \"$ip $subnet $router $dns $hostname $lease $serverid\" > \"$0.$interface\"\n\
    exit 0\n";

/// `busybox udhcpc` on `interface` in `client`, trying `tries` times one second apart.
fn udhcpc(client: &Netns, busybox: &Path, script: &Path, interface: &str, tries: u32) -> tokio::process::Command {
    let args: Vec<OsString> = [
        "udhcpc",
        "-i",
        interface,
        "-f",
        "-q",
        "-n",
        "-t",
        &tries.to_string(),
        "-T",
        "1",
        "-s",
        script.to_str().unwrap(),
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let mut cmd = tokio::process::Command::from(client.command(busybox, &args));
    cmd.kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dhcp_leases_planned_macs_to_a_real_client_only() {
    let spec = spec("dhcp", &["tap0"]);
    let _cleanup = DeleteOnDrop(vec![spec.netns.clone()]);
    let Some(busybox) = program("busybox", "busybox-static") else { return };
    let Some(lab) = create(&spec) else { return };
    let Some(client) = Netns::create("net-dhcp-client") else { return };
    let ns = lab.name();
    for (lab_end, client_end, mac) in [("vk", "ck", KNOWN_MAC), ("vu", "cu", UNKNOWN_MAC)] {
        ok(Command::new("ip")
            .args(["-n", ns, "link", "add", lab_end, "type", "veth", "peer", "name", client_end])
            .args(["address", mac, "netns", &client.name]));
        ok(Command::new("ip").args(["-n", ns, "link", "set", lab_end, "master", "tfbr0", "up"]));
        ok(Command::new("ip").args(["-n", &client.name, "link", "set", client_end, "up"]));
    }

    let cfg = DhcpConfig {
        server: GATEWAY,
        prefix: 24,
        router: Some(GATEWAY),
        dns: vec![GATEWAY],
        lease_secs: 3600,
        leases: vec![DhcpLease { mac: KNOWN_MAC.parse().unwrap(), addr: LEASED, hostname: Some("node-1".into()) }],
    };
    let socket = tokio::net::UdpSocket::from_std(dhcp_socket(&lab).unwrap()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(serve_dhcp(socket, cfg, tx));

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("record");
    std::fs::write(&script, UDHCPC_SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let unknown = udhcpc(&client, &busybox, &script, "cu", 2).output();
    let known = udhcpc(&client, &busybox, &script, "ck", 3).output();
    let (unknown, known) = tokio::time::timeout(CLIENT_DEADLINE, async { tokio::join!(unknown, known) })
        .await
        .expect("udhcpc runs within the deadline");
    let (unknown, known) = (unknown.unwrap(), known.unwrap());
    if server.is_finished() {
        panic!("the DHCP server stopped: {:?}", server.await);
    }
    server.abort();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }

    let text = |o: &std::process::Output| {
        format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    assert!(known.status.success(), "udhcpc with a planned MAC failed: {}\nevents: {events:?}", text(&known));
    let lease = std::fs::read_to_string(dir.path().join("record.ck")).unwrap();
    assert_eq!(lease.trim(), "10.5.0.11 255.255.255.0 10.5.0.1 10.5.0.1 node-1 3600 10.5.0.1");
    let known_mac: MacAddr = KNOWN_MAC.parse().unwrap();
    assert!(events.contains(&DhcpEvent::Offered { mac: known_mac, addr: LEASED }), "{events:?}");
    assert!(events.contains(&DhcpEvent::Acked { mac: known_mac, addr: LEASED }), "{events:?}");

    assert!(!unknown.status.success(), "udhcpc with an unknown MAC got a lease: {}", text(&unknown));
    assert!(!dir.path().join("record.cu").exists(), "the unknown MAC was bound");
    let unknown_mac: MacAddr = UNKNOWN_MAC.parse().unwrap();
    let about_unknown: Vec<&DhcpEvent> = events
        .iter()
        .filter(|e| matches!(e, DhcpEvent::Offered { mac, .. } | DhcpEvent::Acked { mac, .. } | DhcpEvent::Nak { mac, .. } | DhcpEvent::Ignored { mac, .. } if *mac == unknown_mac))
        .collect();
    assert!(!about_unknown.is_empty(), "no event about the unknown MAC: {events:?}");
    assert!(
        about_unknown
            .iter()
            .all(|e| matches!(e, DhcpEvent::Ignored { reason, .. } if reason.starts_with("unknown MAC"))),
        "{about_unknown:?}"
    );
    drop(client);
    lab.destroy().unwrap();
}

/// Answers one HTTP request on `listener` with `body`.
fn respond_once(listener: TcpListener, body: &'static str) -> std::thread::JoinHandle<TcpListener> {
    std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(CLIENT_DEADLINE)).unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "the client closed before its request ended");
            request.extend_from_slice(&buf[..n]);
        }
        write!(conn, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        listener
    })
}

#[test]
fn sockets_bound_in_the_lab_stay_in_it() {
    let spec = spec("sockets", &[]);
    let _cleanup = DeleteOnDrop(vec![spec.netns.clone()]);
    let Some(busybox) = program("busybox", "busybox-static") else { return };
    let Some(lab) = create(&spec) else { return };

    let listener = lab.bind_tcp(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = respond_once(listener, "hello from the lab");
    let url = format!("http://{GATEWAY}:{port}/");
    let args: Vec<OsString> = ["wget", "-q", "-O", "-", &url].iter().map(OsString::from).collect();
    assert_eq!(ok(&mut lab.command(&busybox, &args)), "hello from the lab");
    let listener = server.join().unwrap();

    // Were the listener in the host's namespace, the host could not bind its port; connecting there from
    // the host reaches the host's own listener, and the lab's sees nothing.
    let host = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the lab's port is free in the host");
    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    host.accept().unwrap();
    listener.set_nonblocking(true).unwrap();
    assert_eq!(listener.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);

    let udp = lab.bind_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    UdpSocket::bind((Ipv4Addr::LOCALHOST, udp_port)).expect("the lab's UDP port is free in the host");

    let err = lab.bind_tcp("192.0.2.1:0".parse().unwrap()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrNotAvailable);
    assert!(err.to_string().starts_with(&format!("cannot bind TCP 192.0.2.1:0 in network namespace {}", lab.name())));

    let env = ok(&mut lab.command(Path::new("/usr/bin/env"), &[]));
    let mut env: Vec<&str> = env.lines().map(|l| l.split('=').next().unwrap()).collect();
    env.sort_unstable();
    assert_eq!(env, ["LC_ALL", "PATH", "TZ"]);
    lab.destroy().unwrap();
}
