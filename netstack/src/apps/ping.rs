//! `ping`: ICMP echo requests at an interval, replies reported with TTL and RTT,
//! and the ICMP errors routers send back (time exceeded, unreachable) reported
//! like iputils' `From 10.0.1.1 icmp_seq=1 Time to live exceeded`.
//!
//! Owns one raw IPv4/ICMP smoltcp socket per run: raw because the report needs
//! each reply's TTL, which smoltcp's ICMP socket does not expose, and because a
//! run may set the requests' TTL (traceroute-style probes). The host picks the
//! source address; smoltcp itself still answers echo requests to the host.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::raw;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    Icmpv4Message, Icmpv4Packet, Icmpv4Repr, IpProtocol, IpVersion, Ipv4Packet, Ipv4Repr,
};

/// Payload bytes of each request by default (iputils' `-s 56`: 84-byte packets).
const PAYLOAD: u16 = 56;
/// IPv4 and ICMP echo headers.
const HEADERS: u16 = 28;

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingOptions {
    /// Requests to send (`-c`).
    pub count: u16,
    /// Time between requests (`-i`).
    pub interval: Duration,
    /// How long to wait for answers after the last request (`-W`).
    pub timeout: Duration,
    /// TTL of the requests (`-t`).
    pub ttl: u8,
    /// Source address (`-I`); the host picks one from the route when `None`.
    pub source: Option<Ipv4Addr>,
    /// Payload bytes (`-s`).
    pub size: u16,
    /// Path MTU discovery `do` (`-M do`): a request over the route's MTU
    /// fails at once with `sendmsg: Message too large`. Without it the
    /// kernel would fragment it, which the simulator does not do; such a
    /// request fails too, saying so. Requests carry DF either way.
    pub dont_fragment: bool,
}

impl Default for PingOptions {
    /// Three requests a second apart, one second to answer, TTL 64, source from the route.
    fn default() -> Self {
        PingOptions {
            count: 3,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            ttl: 64,
            source: None,
            size: PAYLOAD,
            dont_fragment: false,
        }
    }
}

/// One echo reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingReply {
    /// The request's sequence number.
    pub seq: u16,
    /// Who answered.
    pub from: Ipv4Addr,
    /// The reply's TTL as it arrived.
    pub ttl: u8,
    /// Round-trip time.
    pub rtt: Duration,
}

/// An ICMP error about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingError {
    /// The request's sequence number.
    pub seq: u16,
    /// Who sent the error.
    pub from: Ipv4Addr,
    /// ICMP type (11 time exceeded, 3 unreachable).
    pub icmp_type: u8,
    /// ICMP code.
    pub code: u8,
    /// The next hop's MTU of a "fragmentation needed" (RFC 1191).
    pub mtu: u16,
    /// Time from the request to the error.
    pub rtt: Duration,
}

impl PingError {
    /// iputils' wording.
    pub fn describe(&self) -> String {
        match (self.icmp_type, self.code) {
            (11, _) => "Time to live exceeded".into(),
            (3, 0) => "Destination Net Unreachable".into(),
            (3, 1) => "Destination Host Unreachable".into(),
            (3, 3) => "Destination Port Unreachable".into(),
            (3, 4) => format!("Frag needed and DF set (mtu = {})", self.mtu),
            (3, _) => "Destination Unreachable".into(),
            _ => "ICMP error".into(),
        }
    }
}

/// What a run saw so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingReport {
    /// The destination.
    pub target: Ipv4Addr,
    /// Requests sent.
    pub transmitted: u16,
    /// Replies, in arrival order (one per sequence number).
    pub replies: Vec<PingReply>,
    /// ICMP errors, in arrival order.
    pub errors: Vec<PingError>,
    /// Requests that could not be sent, with ping's message for each
    /// (`sendmsg: Message too large`).
    pub local_errors: Vec<(u16, String)>,
    /// Bytes of each request's IP packet (`-s` plus 28).
    pub packet_len: u16,
    /// Whether the run is over (all sent, and answered or timed out).
    pub done: bool,
}

impl PingReport {
    /// Whether every request got a reply.
    pub fn all_replied(&self) -> bool {
        self.transmitted > 0 && self.replies.len() == usize::from(self.transmitted)
    }
}

/// One ping run.
#[derive(Debug)]
pub struct Ping {
    handle: Option<SocketHandle>,
    src: Ipv4Addr,
    ident: u16,
    options: PingOptions,
    started: Instant,
    sent_at: BTreeMap<u16, Instant>,
    report: PingReport,
    /// The route's MTU towards the target, if known.
    mtu: Option<u16>,
    /// The path MTU towards the target, when smaller (the host's cache, then
    /// what "fragmentation needed" errors say), as the socket learns it.
    pmtu: Option<u16>,
}

impl Ping {
    /// Start pinging `target` from `src` with echo identifier `ident` at
    /// `now`, over a route whose MTU is `mtu` (`pmtu`: the path MTU the
    /// host has learnt, if smaller).
    pub fn start(
        now: Instant,
        sockets: &mut SocketSet<'static>,
        (src, target): (Ipv4Addr, Ipv4Addr),
        ident: u16,
        options: PingOptions,
        (mtu, pmtu): (Option<u16>, Option<u16>),
    ) -> Self {
        let slots = usize::from(options.count).clamp(1, 64);
        let packet_len = options.size.saturating_add(HEADERS);
        let room = usize::from(packet_len.max(576));
        let buffer =
            move |n| raw::PacketBuffer::new(vec![raw::PacketMetadata::EMPTY; n], vec![0; n * room]);
        let socket = raw::Socket::new(IpVersion::Ipv4, IpProtocol::Icmp, buffer(16), buffer(slots));
        Ping {
            handle: Some(sockets.add(socket)),
            src,
            ident,
            options,
            started: now,
            sent_at: BTreeMap::new(),
            report: PingReport {
                target,
                transmitted: 0,
                replies: Vec::new(),
                errors: Vec::new(),
                local_errors: Vec::new(),
                packet_len,
                done: false,
            },
            mtu,
            pmtu,
        }
    }

    /// What the run saw so far.
    pub fn report(&self) -> &PingReport {
        &self.report
    }

    /// When the next request or the end of the run is due.
    pub fn poll_at(&self) -> Option<Instant> {
        if self.report.done {
            None
        } else if self.report.transmitted < self.options.count {
            Some(self.send_time(self.report.transmitted))
        } else {
            Some(self.deadline())
        }
    }

    fn send_time(&self, seq: u16) -> Instant {
        self.started + self.options.interval * u32::from(seq)
    }

    fn deadline(&self) -> Instant {
        self.send_time(self.options.count.saturating_sub(1)) + self.options.timeout
    }

    /// Read answers, send due requests and end the run when it is over. Returns
    /// whether anything changed.
    pub fn poll(&mut self, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        let Some(handle) = self.handle else {
            return false;
        };
        let socket = sockets.get_mut::<raw::Socket>(handle);
        let mut acted = false;
        while let Ok(packet) = socket.recv() {
            acted |= self.answer(now, packet);
        }
        while self.report.transmitted < self.options.count
            && now >= self.send_time(self.report.transmitted)
        {
            let seq = self.report.transmitted;
            let len = self.report.packet_len;
            match (self.mtu, self.pmtu) {
                // Over a path MTU the socket learnt, with DF: Linux refuses
                // locally and says what the path takes.
                (_, Some(pmtu)) if self.options.dont_fragment && len > pmtu => {
                    let why = format!("local error: message too long, mtu={pmtu}");
                    self.report.local_errors.push((seq, why));
                }
                (Some(mtu), _) if len > mtu => {
                    let why = if self.options.dont_fragment {
                        "sendmsg: Message too large".to_string()
                    } else {
                        format!(
                            "{} bytes over the route's mtu {mtu} would be fragmented, which the simulator does not do",
                            self.report.packet_len
                        )
                    };
                    self.report.local_errors.push((seq, why));
                }
                _ => {
                    if socket.send_slice(&self.request(seq)).is_err() {
                        break;
                    }
                    self.sent_at.insert(seq, now);
                }
            }
            self.report.transmitted += 1;
            acted = true;
        }
        let answered =
            self.report.replies.len() + self.report.errors.len() + self.report.local_errors.len();
        let all_sent = self.report.transmitted == self.options.count;
        if all_sent && (answered >= usize::from(self.options.count) || now >= self.deadline()) {
            sockets.remove(handle);
            self.handle = None;
            self.report.done = true;
            acted = true;
        }
        acted
    }

    /// The echo request with sequence number `seq`, as a whole IPv4 packet.
    fn request(&self, seq: u16) -> Vec<u8> {
        let data = vec![0u8; usize::from(self.options.size)];
        let icmp = Icmpv4Repr::EchoRequest {
            ident: self.ident,
            seq_no: seq,
            data: &data,
        };
        let ip = Ipv4Repr {
            src_addr: self.src,
            dst_addr: self.report.target,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: self.options.ttl,
        };
        let caps = ChecksumCapabilities::default();
        let mut bytes = vec![0u8; ip.buffer_len() + icmp.buffer_len()];
        let mut packet = Ipv4Packet::new_unchecked(&mut bytes[..]);
        ip.emit(&mut packet, &caps);
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(packet.payload_mut()),
            &caps,
        );
        bytes
    }

    /// Take one received ICMP packet; true if it answered one of our requests.
    fn answer(&mut self, now: Instant, packet: &[u8]) -> bool {
        let Ok(ip) = Ipv4Packet::new_checked(packet) else {
            return false;
        };
        let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
            return false;
        };
        let (from, ttl) = (ip.src_addr(), ip.hop_limit());
        match icmp.msg_type() {
            Icmpv4Message::EchoReply if icmp.echo_ident() == self.ident => {
                let seq = icmp.echo_seq_no();
                let Some(&sent) = self.sent_at.get(&seq) else {
                    return false;
                };
                if self.report.replies.iter().any(|r| r.seq == seq) {
                    return false;
                }
                let rtt = now - sent;
                self.report.replies.push(PingReply {
                    seq,
                    from,
                    ttl,
                    rtt,
                });
                true
            }
            Icmpv4Message::TimeExceeded | Icmpv4Message::DstUnreachable => {
                let Some(seq) = self.quoted_seq(icmp.data()) else {
                    return false;
                };
                let error = PingError {
                    seq,
                    from,
                    icmp_type: icmp.msg_type().into(),
                    code: icmp.msg_code(),
                    // RFC 1191: the next hop's MTU in the header's last two bytes.
                    mtu: u16::from_be_bytes([ip.payload()[6], ip.payload()[7]]),
                    rtt: now - self.sent_at[&seq],
                };
                if (error.icmp_type, error.code) == (3, 4) && error.mtu >= 68 {
                    self.pmtu = Some(self.pmtu.map_or(error.mtu, |p| p.min(error.mtu)));
                }
                self.report.errors.push(error);
                true
            }
            _ => false,
        }
    }

    /// The sequence number of our request quoted in an ICMP error, if it is ours.
    fn quoted_seq(&self, quoted: &[u8]) -> Option<u16> {
        let header_len = usize::from(*quoted.first()? & 0x0f) * 4;
        let icmp = quoted.get(header_len..header_len + 8)?;
        let ours = quoted.get(9) == Some(&1)
            && icmp[0] == 8
            && u16::from_be_bytes([icmp[4], icmp[5]]) == self.ident
            && quoted.get(16..20) == Some(&self.report.target.octets()[..]);
        let seq = u16::from_be_bytes([icmp[6], icmp[7]]);
        (ours && self.sent_at.contains_key(&seq)).then_some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping() -> (SocketSet<'static>, Ping) {
        let mut sockets = SocketSet::new(Vec::new());
        let p = Ping::start(
            Instant::ZERO,
            &mut sockets,
            (Ipv4Addr::new(10, 0, 1, 10), Ipv4Addr::new(10, 0, 2, 10)),
            0x1234,
            PingOptions::default(),
            (Some(1500), None),
        );
        (sockets, p)
    }

    /// Turn a request into the reply the target would send, with `ttl`.
    fn reply_to(request: &[u8], ttl: u8) -> Vec<u8> {
        let ip = Ipv4Packet::new_checked(request).unwrap();
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        let caps = ChecksumCapabilities::default();
        let repr = Icmpv4Repr::parse(&icmp, &caps).unwrap();
        let Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        } = repr
        else {
            panic!("not a request")
        };
        let reply = Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        };
        let ip_repr = Ipv4Repr {
            src_addr: ip.dst_addr(),
            dst_addr: ip.src_addr(),
            next_header: IpProtocol::Icmp,
            payload_len: reply.buffer_len(),
            hop_limit: ttl,
        };
        let mut bytes = vec![0u8; ip_repr.buffer_len() + reply.buffer_len()];
        let mut p = Ipv4Packet::new_unchecked(&mut bytes[..]);
        ip_repr.emit(&mut p, &caps);
        reply.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
        bytes
    }

    #[test]
    fn requests_are_84_byte_echoes_with_the_ttl() {
        let (_, p) = ping();
        let r = p.request(7);
        assert_eq!(r.len(), 84);
        let ip = Ipv4Packet::new_checked(&r[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.hop_limit(), 64);
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (0x1234, 7));
    }

    #[test]
    fn replies_and_quoted_errors_are_matched_to_requests() {
        let (_, mut p) = ping();
        p.sent_at.insert(0, Instant::ZERO);
        p.sent_at.insert(1, Instant::from_secs(1));
        let at = Instant::from_millis(3);
        assert!(p.answer(at, &reply_to(&p.request(0), 63)));
        assert!(!p.answer(at, &reply_to(&p.request(0), 63)), "duplicate");
        assert!(!p.answer(at, &reply_to(&p.request(5), 63)), "never sent");
        let reply = p.report.replies[0];
        assert_eq!((reply.seq, reply.ttl), (0, 63));
        assert_eq!(reply.rtt, Duration::from_millis(3));
        let quoted = p.request(1);
        let error = crate::icmp::error(
            crate::icmp::Error::TtlExceeded,
            Ipv4Addr::new(10, 0, 1, 1),
            &quoted,
        )
        .unwrap();
        assert!(p.answer(at, &error));
        let e = p.report.errors[0];
        assert_eq!((e.seq, e.from), (1, Ipv4Addr::new(10, 0, 1, 1)));
        assert_eq!(e.describe(), "Time to live exceeded");
    }
}
