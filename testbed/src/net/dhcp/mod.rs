//! The lab's DHCPv4 server: it hands each VM NIC the address the lab planned for its MAC, and answers
//! nothing else, so a lab never hands out addresses to machines it did not make.
//!
//! [`answer`] decides, as a pure function, what to send for a client's message and which [`DhcpEvent`] to
//! report; [`serve_dhcp`] runs it on a socket from [`dhcp_socket`] until its task is aborted.
//!
//! Replies to clients without an address (`ciaddr` 0: DISCOVER, the REQUEST that follows, every NAK) go to
//! the limited broadcast 255.255.255.255:68 whatever the client's broadcast flag says: unicasting to an
//! address the client does not have yet would need an ARP entry written by hand. The lab's namespace routes
//! 255.255.255.255 out of its bridge (see [`LabNet::create`]); a renewing client (`ciaddr` set) gets its
//! ACK by unicast. Relayed messages (`giaddr` set) are ignored: the server serves its own bridge only.

mod wire;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use talforge_builder::spec::units::MacAddr;
use tokio::sync::mpsc::UnboundedSender;

pub use wire::{
    BROADCAST_FLAG, CLIENT_PORT, DhcpMessage, DhcpParseError, MAGIC_COOKIE, MessageType, Op, ReplyKind, SERVER_PORT,
    build_reply, parse_message, subnet_mask,
};

use super::LabNet;

/// The largest datagram read; DHCP messages are at most a few hundred bytes, Ethernet frames 1500.
const RECV_BUFFER: usize = 4096;

/// One planned address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpLease {
    pub mac: MacAddr,
    pub addr: Ipv4Addr,
    /// Sent as option 12.
    pub hostname: Option<String>,
}

/// What the server hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpConfig {
    /// The server's address (option 54), the lab's gateway.
    pub server: Ipv4Addr,
    /// The subnet's prefix length (option 1).
    pub prefix: u8,
    /// Option 3.
    pub router: Option<Ipv4Addr>,
    /// Option 6; left out when empty.
    pub dns: Vec<Ipv4Addr>,
    /// Option 51.
    pub lease_secs: u32,
    /// The only clients answered.
    pub leases: Vec<DhcpLease>,
}

/// What the server did with a client's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DhcpEvent {
    Offered {
        mac: MacAddr,
        addr: Ipv4Addr,
    },
    Acked {
        mac: MacAddr,
        addr: Ipv4Addr,
    },
    Nak {
        mac: MacAddr,
        reason: String,
    },
    /// Not answered: an unknown MAC, a relayed message, a client that chose another server, a DECLINE,
    /// RELEASE or INFORM.
    Ignored {
        mac: MacAddr,
        reason: String,
    },
}

/// What to do with one client message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send `bytes` to `to`, then report `event`.
    Reply { bytes: Vec<u8>, to: SocketAddrV4, event: DhcpEvent },
    /// Send nothing; report the event.
    Ignore(DhcpEvent),
}

const LIMITED_BROADCAST: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);

/// The server's answer to `request` (RFC 2131 section 4.3).
pub fn answer(cfg: &DhcpConfig, request: &DhcpMessage) -> Answer {
    let mac = request.chaddr;
    let ignore = |reason: String| Answer::Ignore(DhcpEvent::Ignored { mac, reason });
    if request.op != Op::Request {
        return ignore(format!("a BOOTREPLY ({}), not a client's message", request.message_type.name()));
    }
    let Some(lease) = cfg.leases.iter().find(|l| l.mac == mac) else {
        return ignore("unknown MAC: the lab's DHCP configuration has no lease for it".to_owned());
    };
    if !request.giaddr.is_unspecified() {
        return ignore(format!("relayed by {}: the lab's server answers only clients on its bridge", request.giaddr));
    }
    let reply = |kind: ReplyKind<'_>, to: SocketAddrV4, event: DhcpEvent| Answer::Reply {
        bytes: build_reply(cfg, request, kind),
        to,
        event,
    };
    let to = if request.ciaddr.is_unspecified() {
        LIMITED_BROADCAST
    } else {
        SocketAddrV4::new(request.ciaddr, CLIENT_PORT)
    };
    match request.message_type {
        MessageType::Discover => reply(ReplyKind::Offer(lease), to, DhcpEvent::Offered { mac, addr: lease.addr }),
        MessageType::Request => {
            if let Some(chosen) = request.server_id().filter(|s| *s != cfg.server) {
                return ignore(format!("the client chose server {chosen}"));
            }
            // SELECTING and INIT-REBOOT name the address in option 50, RENEWING and REBINDING in ciaddr.
            let wanted = request.requested_addr().or((!request.ciaddr.is_unspecified()).then_some(request.ciaddr));
            let reason = match wanted {
                Some(a) if a == lease.addr => {
                    return reply(ReplyKind::Ack(lease), to, DhcpEvent::Acked { mac, addr: lease.addr });
                }
                Some(a) => format!("requested {a}; the lab's lease for {mac} is {}", lease.addr),
                None => "the DHCPREQUEST names no address (neither option 50 nor ciaddr)".to_owned(),
            };
            reply(ReplyKind::Nak(&reason), LIMITED_BROADCAST, DhcpEvent::Nak { mac, reason: reason.clone() })
        }
        MessageType::Decline => {
            ignore(format!("DHCPDECLINE: the client found {} in use", request.requested_addr().unwrap_or(lease.addr)))
        }
        MessageType::Release => ignore("DHCPRELEASE".to_owned()),
        MessageType::Inform => ignore("DHCPINFORM is not answered".to_owned()),
        t @ (MessageType::Offer | MessageType::Ack | MessageType::Nak) => {
            ignore(format!("a server's {} in a BOOTREQUEST", t.name()))
        }
    }
}

/// Answers DHCP on `socket` (from [`dhcp_socket`], made a tokio socket) with `cfg`, reporting each answered
/// or ignored message on `events` (a dropped receiver is fine). Datagrams that are not DHCP messages are
/// dropped unreported. Runs until its task is aborted, or until receiving or sending fails.
pub async fn serve_dhcp(
    socket: tokio::net::UdpSocket,
    cfg: DhcpConfig,
    events: UnboundedSender<DhcpEvent>,
) -> io::Result<()> {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let (len, _from) = socket.recv_from(&mut buf).await?;
        let Ok(request) = parse_message(buf.get(..len).unwrap_or_default()) else {
            continue;
        };
        let event = match answer(&cfg, &request) {
            Answer::Ignore(event) => event,
            Answer::Reply { bytes, to, event } => {
                socket.send_to(&bytes, SocketAddr::V4(to)).await.map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot send the DHCP reply for {} to {to}: {e}", request.chaddr))
                })?;
                event
            }
        };
        let _ = events.send(event);
    }
}

/// The server's socket: UDP 0.0.0.0:67 inside `net`'s namespace, broadcasts allowed, nonblocking.
///
/// It is not bound to the bridge device (SO_BINDTODEVICE is not in rustix 1, and the workspace has no
/// unsafe code); it needs not be, as the lab's namespace has no other interface with an address but `lo`.
pub fn dhcp_socket(net: &LabNet) -> io::Result<std::net::UdpSocket> {
    net.bind_udp_broadcast(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, SERVER_PORT)))
}

#[cfg(test)]
mod tests {
    use super::wire::tests::client_message;
    use super::wire::{
        OPT_CLIENT_ID, OPT_DNS, OPT_HOSTNAME, OPT_MESSAGE, OPT_REQUESTED_ADDR, OPT_ROUTER, OPT_SERVER_ID,
    };
    use super::*;

    const KNOWN: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const UNKNOWN: [u8; 6] = [0x52, 0x54, 0, 0xde, 0xad, 0x01];
    const LEASED: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 11);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 1);

    fn cfg() -> DhcpConfig {
        DhcpConfig {
            server: SERVER,
            prefix: 24,
            router: Some(SERVER),
            dns: vec![SERVER, Ipv4Addr::new(10, 5, 0, 2)],
            lease_secs: 3600,
            leases: vec![DhcpLease { mac: MacAddr(KNOWN), addr: LEASED, hostname: Some("node-1".into()) }],
        }
    }

    fn ask(data: &[u8]) -> Answer {
        answer(&cfg(), &parse_message(data).unwrap())
    }

    /// The reply, parsed back, with where it goes and the event.
    fn reply(a: Answer) -> (DhcpMessage, SocketAddrV4, DhcpEvent, usize) {
        match a {
            Answer::Reply { bytes, to, event } => (parse_message(&bytes).unwrap(), to, event, bytes.len()),
            Answer::Ignore(e) => panic!("ignored: {e:?}"),
        }
    }

    #[test]
    fn discover_gets_an_offer_with_every_option() {
        let data = client_message(MessageType::Discover, KNOWN, &[]);
        let (m, to, event, len) = reply(ask(&data));
        assert_eq!(event, DhcpEvent::Offered { mac: MacAddr(KNOWN), addr: LEASED });
        assert_eq!(to, "255.255.255.255:68".parse().unwrap());
        assert_eq!(len, 300, "padded to the BOOTP minimum");
        assert_eq!((m.op, m.message_type, m.xid, m.secs), (Op::Reply, MessageType::Offer, 0x1234_5678, 0));
        assert_eq!(
            (m.ciaddr, m.yiaddr, m.siaddr, m.giaddr),
            (Ipv4Addr::UNSPECIFIED, LEASED, Ipv4Addr::UNSPECIFIED, Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(m.chaddr, MacAddr(KNOWN));
        assert_eq!(m.server_id(), Some(SERVER));
        assert_eq!(m.lease_secs(), Some(3600));
        assert_eq!(m.prefix(), Some(24));
        assert_eq!(m.addrs(OPT_ROUTER), [SERVER]);
        assert_eq!(m.addrs(OPT_DNS), [SERVER, Ipv4Addr::new(10, 5, 0, 2)]);
        assert_eq!(m.hostname().as_deref(), Some("node-1"));
        assert_eq!(m.option(OPT_CLIENT_ID), Some(&[1, 0x52, 0x54, 0, 0x12, 0x34, 0x56][..]), "RFC 6842 echo");
        let codes: Vec<u8> = m.options.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, [53, 54, 51, 1, 3, 6, 12, 61]);
    }

    #[test]
    fn the_wire_bytes_of_an_offer() {
        let data = client_message(MessageType::Discover, KNOWN, &[]);
        let Answer::Reply { bytes, .. } = ask(&data) else { panic!("no reply") };
        assert_eq!(&bytes[..12], &[2, 1, 6, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0]);
        assert_eq!(&bytes[16..20], &[10, 5, 0, 11], "yiaddr");
        assert_eq!(&bytes[28..34], &KNOWN, "chaddr");
        assert_eq!(&bytes[236..240], &MAGIC_COOKIE);
        assert_eq!(&bytes[240..249], &[53, 1, 2, 54, 4, 10, 5, 0, 1]);
        let end = bytes.iter().rposition(|&b| b != 0).unwrap();
        assert_eq!(bytes[end], 255, "end option, then padding");
    }

    #[test]
    fn broadcast_flag_is_copied_and_replies_broadcast_either_way() {
        let mut data = client_message(MessageType::Discover, KNOWN, &[]);
        data[10..12].copy_from_slice(&BROADCAST_FLAG.to_be_bytes());
        let (m, to, _, _) = reply(ask(&data));
        assert_eq!(m.flags, BROADCAST_FLAG);
        assert_eq!(*to.ip(), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn request_in_selecting_gets_an_ack() {
        let data = client_message(
            MessageType::Request,
            KNOWN,
            &[(OPT_REQUESTED_ADDR, &LEASED.octets()), (OPT_SERVER_ID, &SERVER.octets())],
        );
        let (m, to, event, _) = reply(ask(&data));
        assert_eq!(event, DhcpEvent::Acked { mac: MacAddr(KNOWN), addr: LEASED });
        assert_eq!((m.message_type, m.yiaddr, m.ciaddr), (MessageType::Ack, LEASED, Ipv4Addr::UNSPECIFIED));
        assert_eq!(to, LIMITED_BROADCAST);
        assert_eq!(m.hostname().as_deref(), Some("node-1"));
        assert_eq!(m.lease_secs(), Some(3600));
    }

    #[test]
    fn renewal_is_acked_by_unicast() {
        let mut data = client_message(MessageType::Request, KNOWN, &[]);
        data[12..16].copy_from_slice(&LEASED.octets());
        let (m, to, event, _) = reply(ask(&data));
        assert_eq!(event, DhcpEvent::Acked { mac: MacAddr(KNOWN), addr: LEASED });
        assert_eq!(m.ciaddr, LEASED, "an ACK repeats ciaddr");
        assert_eq!(to, SocketAddrV4::new(LEASED, 68));
    }

    #[test]
    fn request_for_another_address_gets_a_nak() {
        let data = client_message(MessageType::Request, KNOWN, &[(OPT_REQUESTED_ADDR, &[10, 5, 0, 99])]);
        let (m, to, event, _) = reply(ask(&data));
        let reason = "requested 10.5.0.99; the lab's lease for 52:54:00:12:34:56 is 10.5.0.11";
        assert_eq!(event, DhcpEvent::Nak { mac: MacAddr(KNOWN), reason: reason.into() });
        assert_eq!((m.message_type, m.yiaddr), (MessageType::Nak, Ipv4Addr::UNSPECIFIED));
        assert_eq!(m.option(OPT_MESSAGE), Some(reason.as_bytes()));
        assert_eq!(m.server_id(), Some(SERVER));
        assert_eq!(m.lease_secs(), None, "a NAK carries no lease");
        assert_eq!(m.option(OPT_HOSTNAME), None);
        assert_eq!(to, LIMITED_BROADCAST);

        let mut renewing = client_message(MessageType::Request, KNOWN, &[]);
        renewing[12..16].copy_from_slice(&[10, 5, 0, 98]);
        let (_, to, event, _) = reply(ask(&renewing));
        assert!(matches!(event, DhcpEvent::Nak { .. }), "{event:?}");
        assert_eq!(to, LIMITED_BROADCAST, "a NAK is broadcast even to a client with an address");

        let nothing = client_message(MessageType::Request, KNOWN, &[]);
        let (_, _, event, _) = reply(ask(&nothing));
        assert!(matches!(&event, DhcpEvent::Nak { reason, .. } if reason.contains("names no address")), "{event:?}");
    }

    #[test]
    fn unknown_macs_and_other_servers_are_ignored() {
        for t in [MessageType::Discover, MessageType::Request] {
            let data = client_message(t, UNKNOWN, &[(OPT_REQUESTED_ADDR, &LEASED.octets())]);
            assert_eq!(
                ask(&data),
                Answer::Ignore(DhcpEvent::Ignored {
                    mac: MacAddr(UNKNOWN),
                    reason: "unknown MAC: the lab's DHCP configuration has no lease for it".into()
                })
            );
        }
        let other = client_message(
            MessageType::Request,
            KNOWN,
            &[(OPT_REQUESTED_ADDR, &LEASED.octets()), (OPT_SERVER_ID, &[10, 5, 0, 2])],
        );
        assert_eq!(
            ask(&other),
            Answer::Ignore(DhcpEvent::Ignored {
                mac: MacAddr(KNOWN),
                reason: "the client chose server 10.5.0.2".into()
            })
        );
        let mut relayed = client_message(MessageType::Discover, KNOWN, &[]);
        relayed[24..28].copy_from_slice(&[10, 9, 0, 1]);
        assert!(
            matches!(ask(&relayed), Answer::Ignore(DhcpEvent::Ignored { reason, .. }) if reason.starts_with("relayed by 10.9.0.1"))
        );
        for (t, why) in [
            (MessageType::Release, "DHCPRELEASE"),
            (MessageType::Decline, "DHCPDECLINE: the client found 10.5.0.11 in use"),
            (MessageType::Inform, "DHCPINFORM is not answered"),
        ] {
            assert_eq!(
                ask(&client_message(t, KNOWN, &[])),
                Answer::Ignore(DhcpEvent::Ignored { mac: MacAddr(KNOWN), reason: why.into() })
            );
        }
        let Answer::Reply { bytes, .. } = ask(&client_message(MessageType::Discover, KNOWN, &[])) else { panic!() };
        assert!(
            matches!(ask(&bytes), Answer::Ignore(DhcpEvent::Ignored { reason, .. }) if reason.starts_with("a BOOTREPLY"))
        );
    }

    #[test]
    fn options_left_out_when_not_configured() {
        let mut c = cfg();
        c.router = None;
        c.dns.clear();
        c.leases[0].hostname = None;
        let data = client_message(MessageType::Discover, KNOWN, &[]);
        let (m, _, _, _) = reply(answer(&c, &parse_message(&data).unwrap()));
        let codes: Vec<u8> = m.options.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, [53, 54, 51, 1, 61]);
    }
}
