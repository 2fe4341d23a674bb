//! The DHCPv4 wire format: the BOOTP header (RFC 2131 section 2), the magic cookie and the options (RFC
//! 2132), parsed and built by pure functions. Only Ethernet hardware addresses are taken; options in the
//! `sname` and `file` fields (option overload) are not read.

use std::net::Ipv4Addr;

use talforge_builder::spec::units::MacAddr;

use super::{DhcpConfig, DhcpLease};

/// The server's UDP port.
pub const SERVER_PORT: u16 = 67;
/// The client's UDP port.
pub const CLIENT_PORT: u16 = 68;
/// After the fixed BOOTP fields, before the options (RFC 2131 section 3).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// The `flags` bit a client sets when it cannot receive unicast before it has an address.
pub const BROADCAST_FLAG: u16 = 0x8000;

/// op .. file: the fixed BOOTP fields.
const FIXED_LEN: usize = 236;
/// Replies are padded to BOOTP's minimum message size (RFC 951); some clients drop shorter ones.
const MIN_REPLY_LEN: usize = 300;

pub const OPT_PAD: u8 = 0;
pub const OPT_SUBNET_MASK: u8 = 1;
pub const OPT_ROUTER: u8 = 3;
pub const OPT_DNS: u8 = 6;
pub const OPT_HOSTNAME: u8 = 12;
pub const OPT_REQUESTED_ADDR: u8 = 50;
pub const OPT_LEASE_TIME: u8 = 51;
pub const OPT_MESSAGE_TYPE: u8 = 53;
pub const OPT_SERVER_ID: u8 = 54;
pub const OPT_MESSAGE: u8 = 56;
pub const OPT_CLIENT_ID: u8 = 61;
pub const OPT_END: u8 = 255;

/// BOOTP's `op`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Request,
    Reply,
}

/// Option 53.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
}

impl MessageType {
    const ALL: [MessageType; 8] = [
        MessageType::Discover,
        MessageType::Offer,
        MessageType::Request,
        MessageType::Decline,
        MessageType::Ack,
        MessageType::Nak,
        MessageType::Release,
        MessageType::Inform,
    ];

    pub fn code(self) -> u8 {
        match self {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
        }
    }

    pub fn from_code(code: u8) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// `DHCPDISCOVER` and so on.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Discover => "DHCPDISCOVER",
            MessageType::Offer => "DHCPOFFER",
            MessageType::Request => "DHCPREQUEST",
            MessageType::Decline => "DHCPDECLINE",
            MessageType::Ack => "DHCPACK",
            MessageType::Nak => "DHCPNAK",
            MessageType::Release => "DHCPRELEASE",
            MessageType::Inform => "DHCPINFORM",
        }
    }
}

/// A parsed DHCP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpMessage {
    pub op: Op,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: MacAddr,
    pub message_type: MessageType,
    /// Every option but pad and end, in order; an option given several times is one, its values joined
    /// (RFC 3396).
    pub options: Vec<(u8, Vec<u8>)>,
}

impl DhcpMessage {
    /// The value of option `code`.
    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options.iter().find(|(c, _)| *c == code).map(|(_, v)| v.as_slice())
    }

    fn option_addr(&self, code: u8) -> Option<Ipv4Addr> {
        let v: [u8; 4] = self.option(code)?.try_into().ok()?;
        Some(Ipv4Addr::from(v))
    }

    /// Option 50, the address a client asks for.
    pub fn requested_addr(&self) -> Option<Ipv4Addr> {
        self.option_addr(OPT_REQUESTED_ADDR)
    }

    /// Option 54, the server a client chose.
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.option_addr(OPT_SERVER_ID)
    }

    /// Option 12.
    pub fn hostname(&self) -> Option<String> {
        self.option(OPT_HOSTNAME).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Option 51, in seconds.
    pub fn lease_secs(&self) -> Option<u32> {
        Some(u32::from_be_bytes(self.option(OPT_LEASE_TIME)?.try_into().ok()?))
    }

    /// Option 1 as a prefix length (None unless the mask is contiguous).
    pub fn prefix(&self) -> Option<u8> {
        let mask = u32::from(self.option_addr(OPT_SUBNET_MASK)?);
        let ones = mask.leading_ones();
        (mask.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
    }

    /// Options holding a list of addresses (3 router, 6 DNS).
    pub fn addrs(&self, code: u8) -> Vec<Ipv4Addr> {
        self.option(code).unwrap_or_default().chunks_exact(4).map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3])).collect()
    }
}

/// Why a datagram is not a DHCP message the server reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DhcpParseError {
    #[error("{len} bytes: expected at least 240 (the BOOTP fields and the magic cookie)")]
    TooShort { len: usize },
    #[error("op {0}: expected 1 (BOOTREQUEST) or 2 (BOOTREPLY)")]
    BadOp(u8),
    #[error("hardware type {htype} with {hlen}-byte addresses: expected Ethernet (1, 6)")]
    UnsupportedHardware { htype: u8, hlen: u8 },
    #[error("magic cookie {found:?}: expected {MAGIC_COOKIE:?}")]
    BadCookie { found: [u8; 4] },
    #[error("option {code} at byte {offset} runs past the end of the message")]
    TruncatedOption { code: u8, offset: usize },
    #[error("no option 53 (message type): a BOOTP message, not DHCP")]
    NoMessageType,
    #[error("option 53 (message type): expected one byte of 1 to 8; found {found:?}")]
    BadMessageType { found: Vec<u8> },
}

/// Reads a DHCP message (either direction).
pub fn parse_message(data: &[u8]) -> Result<DhcpMessage, DhcpParseError> {
    let fixed: &[u8; FIXED_LEN + 4] = data
        .get(..FIXED_LEN + 4)
        .and_then(|b| b.try_into().ok())
        .ok_or(DhcpParseError::TooShort { len: data.len() })?;
    let op = match fixed[0] {
        1 => Op::Request,
        2 => Op::Reply,
        other => return Err(DhcpParseError::BadOp(other)),
    };
    let (htype, hlen) = (fixed[1], fixed[2]);
    if (htype, hlen) != (1, 6) {
        return Err(DhcpParseError::UnsupportedHardware { htype, hlen });
    }
    let u16_at = |i: usize| u16::from_be_bytes([fixed[i], fixed[i + 1]]);
    let addr_at = |i: usize| Ipv4Addr::new(fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]);
    let cookie = [fixed[236], fixed[237], fixed[238], fixed[239]];
    if cookie != MAGIC_COOKIE {
        return Err(DhcpParseError::BadCookie { found: cookie });
    }
    let mut options: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut i = FIXED_LEN + 4;
    while let Some(&code) = data.get(i) {
        match code {
            OPT_PAD => i += 1,
            OPT_END => break,
            _ => {
                let value = data
                    .get(i + 1)
                    .and_then(|&len| data.get(i + 2..i + 2 + usize::from(len)))
                    .ok_or(DhcpParseError::TruncatedOption { code, offset: i })?;
                match options.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, v)) => v.extend_from_slice(value),
                    None => options.push((code, value.to_vec())),
                }
                i += 2 + value.len();
            }
        }
    }
    let message_type = match options.iter().find(|(c, _)| *c == OPT_MESSAGE_TYPE) {
        None => return Err(DhcpParseError::NoMessageType),
        Some((_, v)) => match v.as_slice() {
            [code] => MessageType::from_code(*code),
            _ => None,
        }
        .ok_or_else(|| DhcpParseError::BadMessageType { found: v.clone() })?,
    };
    Ok(DhcpMessage {
        op,
        xid: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        secs: u16_at(8),
        flags: u16_at(10),
        ciaddr: addr_at(12),
        yiaddr: addr_at(16),
        siaddr: addr_at(20),
        giaddr: addr_at(24),
        chaddr: MacAddr([fixed[28], fixed[29], fixed[30], fixed[31], fixed[32], fixed[33]]),
        message_type,
        options,
    })
}

/// What a server sends back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind<'a> {
    Offer(&'a DhcpLease),
    Ack(&'a DhcpLease),
    /// With option 56 saying why.
    Nak(&'a str),
}

/// The reply to `request`: the client's `xid`, `flags` (so its broadcast bit), `giaddr` and `chaddr`; for
/// an offer or ack the lease's address in `yiaddr` and options 51, 1, 3, 6, 12 from `cfg` and the lease;
/// always 53 and 54 (the server's address); option 61 echoed when the client sent one (RFC 6842). Padded
/// to 300 bytes.
pub fn build_reply(cfg: &DhcpConfig, request: &DhcpMessage, reply: ReplyKind<'_>) -> Vec<u8> {
    let (message_type, lease) = match reply {
        ReplyKind::Offer(l) => (MessageType::Offer, Some(l)),
        ReplyKind::Ack(l) => (MessageType::Ack, Some(l)),
        ReplyKind::Nak(_) => (MessageType::Nak, None),
    };
    let mut m = Vec::with_capacity(MIN_REPLY_LEN);
    m.extend_from_slice(&[2, 1, 6, 0]);
    m.extend_from_slice(&request.xid.to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    m.extend_from_slice(&request.flags.to_be_bytes());
    // RFC 2131 table 3: an ACK repeats the client's ciaddr; OFFER and NAK carry 0.
    let ciaddr = if message_type == MessageType::Ack { request.ciaddr } else { Ipv4Addr::UNSPECIFIED };
    m.extend_from_slice(&ciaddr.octets());
    m.extend_from_slice(&lease.map_or(Ipv4Addr::UNSPECIFIED, |l| l.addr).octets());
    m.extend_from_slice(&Ipv4Addr::UNSPECIFIED.octets());
    m.extend_from_slice(&request.giaddr.octets());
    m.extend_from_slice(&request.chaddr.0);
    m.resize(FIXED_LEN, 0);
    m.extend_from_slice(&MAGIC_COOKIE);
    put_option(&mut m, OPT_MESSAGE_TYPE, &[message_type.code()]);
    put_option(&mut m, OPT_SERVER_ID, &cfg.server.octets());
    if let Some(lease) = lease {
        put_option(&mut m, OPT_LEASE_TIME, &cfg.lease_secs.to_be_bytes());
        put_option(&mut m, OPT_SUBNET_MASK, &subnet_mask(cfg.prefix).octets());
        if let Some(router) = cfg.router {
            put_option(&mut m, OPT_ROUTER, &router.octets());
        }
        if !cfg.dns.is_empty() {
            let dns: Vec<u8> = cfg.dns.iter().flat_map(|a| a.octets()).collect();
            put_option(&mut m, OPT_DNS, &dns);
        }
        if let Some(name) = &lease.hostname {
            put_option(&mut m, OPT_HOSTNAME, name.as_bytes());
        }
    }
    if let ReplyKind::Nak(why) = reply {
        put_option(&mut m, OPT_MESSAGE, why.as_bytes());
    }
    if let Some(id) = request.option(OPT_CLIENT_ID) {
        put_option(&mut m, OPT_CLIENT_ID, id);
    }
    m.push(OPT_END);
    if m.len() < MIN_REPLY_LEN {
        m.resize(MIN_REPLY_LEN, OPT_PAD);
    }
    m
}

/// Appends option `code`; a value longer than 255 bytes becomes several instances (RFC 3396).
fn put_option(m: &mut Vec<u8>, code: u8, value: &[u8]) {
    for chunk in value.chunks(255) {
        m.push(code);
        m.push(chunk.len() as u8); // chunks(255): fits
        m.extend_from_slice(chunk);
    }
    if value.is_empty() {
        m.extend_from_slice(&[code, 0]);
    }
}

/// The netmask of a prefix length (0 to 32; longer is taken as 32).
pub fn subnet_mask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A client's message of type `t` shaped like busybox udhcpc's (client id, parameter request list), with
    /// `extra` options.
    pub(crate) fn client_message(t: MessageType, mac: [u8; 6], extra: &[(u8, &[u8])]) -> Vec<u8> {
        let mut m = vec![0u8; FIXED_LEN];
        m[..4].copy_from_slice(&[1, 1, 6, 0]);
        m[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        m[8..10].copy_from_slice(&3u16.to_be_bytes());
        m[28..34].copy_from_slice(&mac);
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, t.code()]);
        let mut id = vec![1];
        id.extend_from_slice(&mac);
        m.extend_from_slice(&[OPT_CLIENT_ID, 7]);
        m.extend_from_slice(&id);
        for (code, value) in extra {
            m.push(*code);
            m.push(value.len() as u8);
            m.extend_from_slice(value);
        }
        m.extend_from_slice(&[55, 4, 1, 3, 6, 12, OPT_END]);
        m
    }

    #[test]
    fn parses_a_client_message() {
        let data = client_message(MessageType::Discover, [0x52, 0x54, 0, 0, 0, 0x11], &[(OPT_HOSTNAME, b"n1")]);
        let m = parse_message(&data).unwrap();
        assert_eq!(m.op, Op::Request);
        assert_eq!(m.xid, 0x1234_5678);
        assert_eq!(m.secs, 3);
        assert_eq!(m.flags, 0);
        assert_eq!(m.chaddr.to_string(), "52:54:00:00:00:11");
        assert_eq!(m.message_type, MessageType::Discover);
        assert_eq!(m.hostname().as_deref(), Some("n1"));
        assert_eq!(m.option(OPT_CLIENT_ID), Some(&[1, 0x52, 0x54, 0, 0, 0, 0x11][..]));
        assert_eq!(m.option(55), Some(&[1, 3, 6, 12][..]));
        assert_eq!(m.requested_addr(), None);
    }

    #[test]
    fn pad_split_options_and_a_missing_end() {
        let mut data = client_message(MessageType::Request, [2, 0, 0, 0, 0, 1], &[]);
        data.pop(); // no end option
        data.extend_from_slice(&[OPT_PAD, OPT_PAD, OPT_HOSTNAME, 2, b'a', b'b', OPT_HOSTNAME, 1, b'c']);
        let m = parse_message(&data).unwrap();
        assert_eq!(m.hostname().as_deref(), Some("abc"));
    }

    #[test]
    fn parse_errors() {
        let good = client_message(MessageType::Discover, [2, 0, 0, 0, 0, 1], &[]);
        assert_eq!(parse_message(&good[..239]), Err(DhcpParseError::TooShort { len: 239 }));
        let mut bad = good.clone();
        bad[236] = 0;
        assert_eq!(
            parse_message(&bad).unwrap_err().to_string(),
            "magic cookie [0, 130, 83, 99]: expected [99, 130, 83, 99]"
        );
        let mut bad = good.clone();
        bad[0] = 3;
        assert_eq!(parse_message(&bad), Err(DhcpParseError::BadOp(3)));
        let mut bad = good.clone();
        bad[1] = 6;
        assert_eq!(parse_message(&bad), Err(DhcpParseError::UnsupportedHardware { htype: 6, hlen: 6 }));
        let mut bad = good[..240].to_vec();
        bad.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, 1, OPT_HOSTNAME, 9, b'x']);
        assert_eq!(parse_message(&bad), Err(DhcpParseError::TruncatedOption { code: 12, offset: 243 }));
        let mut bad = good[..240].to_vec();
        bad.push(OPT_END);
        assert_eq!(parse_message(&bad), Err(DhcpParseError::NoMessageType));
        let mut bad = good[..240].to_vec();
        bad.extend_from_slice(&[OPT_MESSAGE_TYPE, 1, 9, OPT_END]);
        assert_eq!(parse_message(&bad), Err(DhcpParseError::BadMessageType { found: vec![9] }));
    }

    #[test]
    fn long_options_are_split_and_joined() {
        let mut m = Vec::new();
        put_option(&mut m, OPT_DNS, &[7; 300]);
        assert_eq!((m[0], m[1], m[257], m[258]), (OPT_DNS, 255, OPT_DNS, 45));
        assert_eq!(m.len(), 2 + 255 + 2 + 45);
    }

    #[test]
    fn masks() {
        assert_eq!(subnet_mask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(subnet_mask(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(subnet_mask(32), Ipv4Addr::BROADCAST);
        assert_eq!(subnet_mask(20), Ipv4Addr::new(255, 255, 240, 0));
    }
}
