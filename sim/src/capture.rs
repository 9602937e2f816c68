//! `tcpdump -nn` for the lab: the frames a segment carried, one line each
//! (a VXLAN frame's inner packet on the line after it, as tcpdump prints
//! it), and tcpdump's filter expressions for the common cases.
//!
//! Owns the text layout (absolute TCP sequence numbers, as `tcpdump -S`)
//! and the filter subset: `arp`, `ip`, `ip6`, `icmp`, `icmp6`, `tcp`,
//! `udp`, `[src|dst] host ADDR`, `[tcp|udp] [src|dst] port N`, joined by
//! `and`; like tcpdump's, a filter looks at the outer packet only. Which
//! frames a segment carried is the engine's ([`crate::Engine::watch`]).

use std::net::IpAddr;

use router_core::wire::{geneve, vxlan};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol, Icmpv4Packet,
    IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};

/// Which end of a packet a term looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Either,
    Src,
    Dst,
}

/// One term of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Arp,
    Ip,
    Ip6,
    /// An IP protocol (1 icmp, 6 tcp, 17 udp, 58 icmp6).
    Proto(u8),
    Host(Dir, IpAddr),
    Port(Dir, u16),
}

/// A tcpdump filter: every term must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter(Vec<Term>);

impl Filter {
    /// Parse tcpdump's expression words, e.g. `udp port 8472`.
    pub fn parse(words: &[&str]) -> Result<Filter, String> {
        let mut terms = Vec::new();
        let mut it = words.iter().copied().peekable();
        while let Some(w) = it.next() {
            let dir = match w {
                "src" => Dir::Src,
                "dst" => Dir::Dst,
                _ => Dir::Either,
            };
            let w = if dir == Dir::Either {
                w
            } else {
                it.next().ok_or("src/dst needs host or port")?
            };
            let value = |it: &mut std::iter::Peekable<_>, what: &str| -> Result<&str, String> {
                it.next().ok_or_else(|| format!("{what} needs a value"))
            };
            match w {
                "and" | "&&" => {}
                "arp" => terms.push(Term::Arp),
                "ip" => terms.push(Term::Ip),
                "ip6" => terms.push(Term::Ip6),
                "icmp" => terms.push(Term::Proto(1)),
                "icmp6" => terms.push(Term::Proto(58)),
                "tcp" | "udp" => {
                    terms.push(Term::Proto(if w == "tcp" { 6 } else { 17 }));
                }
                "host" => {
                    let v = value(&mut it, "host")?;
                    let addr = v
                        .parse()
                        .map_err(|_| format!("host {v:?} is not an address"))?;
                    terms.push(Term::Host(dir, addr));
                }
                "port" => {
                    let v = value(&mut it, "port")?;
                    let port = v.parse().map_err(|_| format!("port {v:?} is not a port"))?;
                    terms.push(Term::Port(dir, port));
                }
                other => {
                    return Err(format!(
                        "{other:?}: tcpdump filters here are arp, ip, ip6, icmp, icmp6, tcp, udp, [src|dst] host ADDR, [src|dst] port N, joined by and"
                    ));
                }
            }
        }
        Ok(Filter(terms))
    }

    /// Whether the frame's outer packet passes every term.
    pub fn matches(&self, frame: &[u8]) -> bool {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return false;
        };
        let ip = ip_of(&eth);
        self.0.iter().all(|t| match (t, &ip) {
            (Term::Arp, _) => eth.ethertype() == EthernetProtocol::Arp,
            (Term::Ip, _) => eth.ethertype() == EthernetProtocol::Ipv4,
            (Term::Ip6, _) => eth.ethertype() == EthernetProtocol::Ipv6,
            (Term::Proto(p), Some(ip)) => ip.proto == *p,
            (Term::Host(d, a), Some(ip)) => pick(*d, ip.src == *a, ip.dst == *a),
            (Term::Port(d, p), Some(ip)) => {
                ip.ports.is_some_and(|(s, t)| pick(*d, s == *p, t == *p))
            }
            _ => false,
        })
    }
}

fn pick(d: Dir, src: bool, dst: bool) -> bool {
    match d {
        Dir::Either => src || dst,
        Dir::Src => src,
        Dir::Dst => dst,
    }
}

/// The IP header fields a filter reads.
struct IpSummary {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    ports: Option<(u16, u16)>,
}

fn ip_of(eth: &EthernetFrame<&[u8]>) -> Option<IpSummary> {
    let (src, dst, proto, payload) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            let start = usize::from(ip.header_len());
            let end = usize::from(ip.total_len()).min(eth.payload().len());
            let payload = eth.payload().get(start..end)?;
            (
                IpAddr::V4(ip.src_addr()),
                IpAddr::V4(ip.dst_addr()),
                u8::from(ip.next_header()),
                payload,
            )
        }
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            let payload = eth.payload().get(40..)?;
            (
                IpAddr::V6(ip.src_addr()),
                IpAddr::V6(ip.dst_addr()),
                u8::from(ip.next_header()),
                payload,
            )
        }
        _ => return None,
    };
    let ports = matches!(proto, 6 | 17)
        .then(|| payload.get(..4))
        .flatten()
        .map(|p| {
            (
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            )
        });
    Some(IpSummary {
        src,
        dst,
        proto,
        ports,
    })
}

/// `HH:MM:SS.uuuuuu` of a virtual time.
fn clock(at: Instant) -> String {
    let us = at.total_micros();
    let s = us / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        us % 1_000_000
    )
}

/// tcpdump's lines for one frame sent at `at`.
pub fn lines(at: Instant, frame: &[u8]) -> Vec<String> {
    let mut after = Vec::new();
    let first = describe(frame, &mut after);
    let mut out = vec![format!("{} {first}", clock(at))];
    out.extend(after);
    out
}

/// One frame's text; a VXLAN frame's inner frame goes to `after` (tcpdump
/// prints it on a line of its own).
fn describe(frame: &[u8], after: &mut Vec<String>) -> String {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return format!("[|ether] length {}", frame.len());
    };
    match eth.ethertype() {
        EthernetProtocol::Arp => arp(eth.payload()),
        EthernetProtocol::Ipv4 => ipv4(eth.payload(), after),
        EthernetProtocol::Ipv6 => ipv6(eth.payload()),
        other => format!(
            "ethertype 0x{:04x}, length {}",
            u16::from(other),
            frame.len()
        ),
    }
}

fn mac(m: EthernetAddress) -> String {
    crate::show::mac(m)
}

fn arp(payload: &[u8]) -> String {
    let Ok(a) = ArpPacket::new_checked(payload) else {
        return "ARP, [|arp]".into();
    };
    let ip = |b: &[u8]| {
        <[u8; 4]>::try_from(b).map_or("?".to_string(), |o| std::net::Ipv4Addr::from(o).to_string())
    };
    match a.operation() {
        ArpOperation::Request => format!(
            "ARP, Request who-has {} tell {}, length {}",
            ip(a.target_protocol_addr()),
            ip(a.source_protocol_addr()),
            payload.len()
        ),
        ArpOperation::Reply => format!(
            "ARP, Reply {} is-at {}, length {}",
            ip(a.source_protocol_addr()),
            <[u8; 6]>::try_from(a.source_hardware_addr())
                .map_or("?".to_string(), |m| mac(EthernetAddress(m))),
            payload.len()
        ),
        _ => format!("ARP, length {}", payload.len()),
    }
}

fn ipv4(bytes: &[u8], after: &mut Vec<String>) -> String {
    let Ok(ip) = Ipv4Packet::new_checked(bytes) else {
        return "IP [|ip]".into();
    };
    let start = usize::from(ip.header_len());
    let end = usize::from(ip.total_len()).min(bytes.len());
    let payload = bytes.get(start..end).unwrap_or_default();
    let (src, dst) = (ip.src_addr().to_string(), ip.dst_addr().to_string());
    match ip.next_header() {
        IpProtocol::Icmp => format!("IP {src} > {dst}: {}", icmp(payload)),
        IpProtocol::Tcp => format!("IP {}", tcp(&src, &dst, payload)),
        IpProtocol::Udp => format!("IP {}", udp(&src, &dst, payload, after)),
        other => format!(
            "IP {src} > {dst}: ip-proto-{}, length {}",
            u8::from(other),
            payload.len()
        ),
    }
}

fn ipv6(bytes: &[u8]) -> String {
    let Ok(ip) = Ipv6Packet::new_checked(bytes) else {
        return "IP6 [|ip6]".into();
    };
    let payload = bytes.get(40..).unwrap_or_default();
    let (src, dst) = (ip.src_addr().to_string(), ip.dst_addr().to_string());
    match ip.next_header() {
        IpProtocol::Icmpv6 => format!(
            "IP6 {src} > {dst}: ICMP6, type {}, length {}",
            payload.first().copied().unwrap_or_default(),
            payload.len()
        ),
        IpProtocol::Tcp => format!("IP6 {}", tcp(&src, &dst, payload)),
        IpProtocol::Udp => format!("IP6 {}", udp(&src, &dst, payload, &mut Vec::new())),
        other => format!(
            "IP6 {src} > {dst}: ip-proto-{}, length {}",
            u8::from(other),
            payload.len()
        ),
    }
}

fn icmp(payload: &[u8]) -> String {
    let Ok(p) = Icmpv4Packet::new_checked(payload) else {
        return "ICMP [|icmp]".into();
    };
    let len = payload.len();
    match (payload[0], payload[1]) {
        (8, _) | (0, _) => format!(
            "ICMP echo {}, id {}, seq {}, length {len}",
            if payload[0] == 8 { "request" } else { "reply" },
            p.echo_ident(),
            p.echo_seq_no()
        ),
        (11, _) => format!("ICMP time exceeded in-transit, length {len}"),
        (3, code) => {
            // The quoted packet's destination names what was unreachable.
            let quoted = payload
                .get(8 + 16..8 + 20)
                .and_then(|b| <[u8; 4]>::try_from(b).ok());
            let what = quoted.map_or("?".into(), |b| std::net::Ipv4Addr::from(b).to_string());
            match code {
                0 => format!("ICMP net {what} unreachable, length {len}"),
                1 => format!("ICMP host {what} unreachable, length {len}"),
                3 => format!("ICMP {what} port unreachable, length {len}"),
                4 => format!(
                    "ICMP {what} unreachable - need to frag (mtu {}), length {len}",
                    u16::from_be_bytes([payload[6], payload[7]])
                ),
                c => format!("ICMP {what} unreachable (code {c}), length {len}"),
            }
        }
        (t, c) => format!("ICMP type {t} code {c}, length {len}"),
    }
}

fn tcp(src: &str, dst: &str, payload: &[u8]) -> String {
    let Ok(t) = TcpPacket::new_checked(payload) else {
        return format!("{src} > {dst}: tcp [|tcp]");
    };
    let mut flags = String::new();
    for (on, c) in [
        (t.syn(), 'S'),
        (t.fin(), 'F'),
        (t.rst(), 'R'),
        (t.psh(), 'P'),
        (t.urg(), 'U'),
    ] {
        if on {
            flags.push(c);
        }
    }
    if t.ack() {
        flags.push('.');
    }
    let len = payload.len().saturating_sub(usize::from(t.header_len()));
    let mut line = format!(
        "{src}.{} > {dst}.{}: Flags [{flags}], seq {}",
        t.src_port(),
        t.dst_port(),
        t.seq_number().0 as u32
    );
    if t.ack() {
        line.push_str(&format!(", ack {}", t.ack_number().0 as u32));
    }
    line.push_str(&format!(", win {}, length {len}", t.window_len()));
    if len > 0 && (t.src_port() == 179 || t.dst_port() == 179) {
        line.push_str(": BGP");
    }
    line
}

fn udp(src: &str, dst: &str, payload: &[u8], after: &mut Vec<String>) -> String {
    let Ok(u) = UdpPacket::new_checked(payload) else {
        return format!("{src} > {dst}: udp [|udp]");
    };
    let head = format!("{src}.{} > {dst}.{}:", u.src_port(), u.dst_port());
    let data = u.payload();
    match u.dst_port() {
        vxlan::PORT_LINUX | vxlan::PORT_IANA if data.len() >= vxlan::HEADER_LEN => {
            let vni = u32::from_be_bytes([0, data[4], data[5], data[6]]);
            let mut inner = Vec::new();
            after.push(describe(&data[vxlan::HEADER_LEN..], &mut inner));
            after.extend(inner);
            if u.dst_port() == vxlan::PORT_LINUX {
                // tcpdump reads 8472 as OTV, whose header VXLAN's matches.
                format!(
                    "{head} OTV, flags [I] (0x{:02x}), overlay 0, instance {vni}",
                    data[0]
                )
            } else {
                format!("{head} VXLAN, flags [I] (0x{:02x}), vni {vni}", data[0])
            }
        }
        geneve::PORT if data.len() >= geneve::HEADER_LEN => {
            let options = usize::from(data[0] & 0x3f) * 4;
            let vni = u32::from_be_bytes([0, data[4], data[5], data[6]]);
            let flags = if data[1] & 0x40 != 0 { "C" } else { "none" };
            let mut line = format!("{head} Geneve, Flags [{flags}], vni 0x{vni:x}");
            if options > 0 {
                line.push_str(&format!(", options [{options} bytes]"));
            }
            let inner = data.get(geneve::HEADER_LEN + options..).unwrap_or_default();
            line + ": " + &describe(inner, after)
        }
        _ => format!("{head} UDP, length {}", data.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ethertype: u16, ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    /// An IPv4 header for `payload` of protocol `proto`.
    fn ipv4_packet(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
        let len = (20 + payload.len()) as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(payload);
        p
    }

    fn echo() -> Vec<u8> {
        let mut icmp = vec![8, 0, 0, 0, 0, 35, 0, 1];
        icmp.extend_from_slice(&[0u8; 56]);
        ipv4_packet([172, 20, 0, 89], [172, 20, 2, 73], 1, &icmp)
    }

    #[test]
    fn vxlan_frames_read_as_tcpdump_prints_them() {
        let inner = frame(0x0800, &echo());
        let mut udp = vec![0xb8, 0xe7, 0x21, 0x18, 0, 0, 0, 0];
        udp.extend_from_slice(&[0x08, 0, 0, 0, 0x00, 0x53, 0xfc, 0]);
        udp.extend_from_slice(&inner);
        let len = udp.len() as u16;
        udp[4..6].copy_from_slice(&len.to_be_bytes());
        let outer = frame(
            0x0800,
            &ipv4_packet([192, 168, 10, 100], [192, 168, 20, 100], 17, &udp),
        );
        let l = lines(Instant::from_micros(3_723_000_001_i64), &outer);
        assert_eq!(
            l,
            [
                "01:02:03.000001 IP 192.168.10.100.47335 > 192.168.20.100.8472: OTV, flags [I] (0x08), overlay 0, instance 21500",
                "IP 172.20.0.89 > 172.20.2.73: ICMP echo request, id 35, seq 1, length 64",
            ]
        );
        // A filter reads the outer packet: no ICMP to see.
        let f = |s: &str| Filter::parse(&s.split_whitespace().collect::<Vec<_>>()).unwrap();
        assert!(!f("icmp").matches(&outer));
        assert!(f("udp and dst port 8472").matches(&outer));
        assert!(f("host 192.168.20.100").matches(&outer));
        assert!(!f("src host 192.168.20.100").matches(&outer));
        assert!(f("icmp").matches(&inner));
    }

    #[test]
    fn geneve_prints_its_inner_packet_on_the_same_line() {
        let mut udp = vec![0xb8, 0xe7, 0x17, 0xc1, 0, 0, 0, 0];
        udp.extend_from_slice(&[0, 0, 0x65, 0x58, 0x00, 0x53, 0xfc, 0]);
        udp.extend_from_slice(&frame(0x0800, &echo()));
        let len = udp.len() as u16;
        udp[4..6].copy_from_slice(&len.to_be_bytes());
        let outer = frame(
            0x0800,
            &ipv4_packet([192, 168, 10, 100], [192, 168, 20, 100], 17, &udp),
        );
        let l = lines(Instant::ZERO, &outer);
        assert_eq!(
            l,
            [
                "00:00:00.000000 IP 192.168.10.100.47335 > 192.168.20.100.6081: Geneve, Flags [none], vni 0x53fc: IP 172.20.0.89 > 172.20.2.73: ICMP echo request, id 35, seq 1, length 64"
            ]
        );
    }

    #[test]
    fn bad_filters_and_short_frames_are_named() {
        let err = Filter::parse(&["port", "http"]).unwrap_err();
        assert_eq!(err, "port \"http\" is not a port");
        assert!(
            Filter::parse(&["icmp", "or", "arp"])
                .unwrap_err()
                .starts_with("\"or\"")
        );
        assert!(Filter::parse(&["host"]).is_err());
        assert_eq!(
            lines(Instant::ZERO, &[1, 2, 3])[0],
            "00:00:00.000000 [|ether] length 3"
        );
        assert_eq!(
            lines(Instant::ZERO, &frame(0x0800, &[0x45]))[0],
            "00:00:00.000000 IP [|ip]"
        );
    }
}
