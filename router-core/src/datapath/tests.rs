//! Pipeline tests on the seed lab's addresses: k8s-ctr (192.168.10.100) with a
//! pod port, a directly reachable worker, a VXLAN/Geneve route to k8s-w0's pods.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, EthernetFrame, Ipv4Packet, Ipv6Packet, UdpPacket};

use super::checksum;
use super::pipeline::{Config, OwnedTables, PortConfig, TunnelConfig, originate, process};
use super::reason::{Action, Reason};
use crate::ecmp::HashPolicy;
use crate::fib::{Encap, Fib, Nexthop, NexthopKind, Protocol, Route};
use crate::neighbour::{self, arp, ndp};
use crate::port::PortId;
use crate::wire::layout::{ENCAP_OVERHEAD, ETHERNET_HEADER_LEN};
use crate::wire::{geneve, vxlan};

const ETH1: PortId = PortId(1);
const POD: PortId = PortId(10);
const ETH1_MAC: EthernetAddress = EthernetAddress([0x08, 0, 0x27, 0, 0, 0x64]);
const POD_MAC: EthernetAddress = EthernetAddress([0x0a, 0, 0, 0, 0, 0x0a]);
const W1_MAC: EthernetAddress = EthernetAddress([0x08, 0, 0x27, 0, 0, 0x65]);
const RTR_MAC: EthernetAddress = EthernetAddress([0x08, 0, 0x27, 0, 0, 0xc8]);
const TUNNEL_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0xee]);
const CLIENT_MAC: EthernetAddress = EthernetAddress([0x0a, 0, 0, 0, 0, 0x99]);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// One host's tables.
type Host = OwnedTables;

/// Shorthands on a host's tables.
trait HostExt {
    fn run(&self, ingress: PortId, frame: &[u8]) -> (super::Verdict, Vec<u8>);
    fn neighbour(&mut self, addr: &str, port: PortId, mac: EthernetAddress);
}

impl HostExt for Host {
    fn run(&self, ingress: PortId, frame: &[u8]) -> (super::Verdict, Vec<u8>) {
        let mut out = Vec::new();
        let v = process(&self.tables(), ingress, frame, &mut out);
        (v, out)
    }

    fn neighbour(&mut self, addr: &str, port: PortId, mac: EthernetAddress) {
        let forever = Instant::from_secs(1 << 30);
        self.neighbours
            .insert_reachable(ip(addr), port, mac, forever);
    }
}

fn port(mac: EthernetAddress, owned: &[&str], mtu: u16) -> PortConfig {
    PortConfig {
        addrs: arp::PortAddrs {
            mac,
            owned: owned.iter().map(|a| v4(a)).collect(),
            announced: vec![v4("192.168.10.211")]
                .into_iter()
                .filter(|_| mac == ETH1_MAC)
                .collect(),
        },
        ipv6: ndp::PortAddrsV6 {
            owned: vec!["fd00:10::100".parse().unwrap()],
            announced: vec!["fd00:10::211".parse().unwrap()]
                .into_iter()
                .filter(|_| mac == ETH1_MAC)
                .collect(),
        },
        mtu,
    }
}

/// k8s-ctr: eth1 192.168.10.100/24, a pod 172.20.0.10 on its own port, k8s-w1's
/// pods directly routed, k8s-w0's pods through a tunnel to 192.168.20.100.
fn k8s_ctr(encap: Encap) -> Host {
    let mut h = Host {
        fib: Fib::new(),
        neighbours: neighbour::Table::new(neighbour::Config::default()),
        ports: BTreeMap::new(),
        identities: BTreeMap::new(),
        config: Config {
            hash_policy: HashPolicy::L4,
            hash_seed: 7,
            tunnel: Some(TunnelConfig::new(v4("192.168.10.100"), TUNNEL_MAC)),
        },
    };
    h.ports
        .insert(ETH1, port(ETH1_MAC, &["192.168.10.100"], 1500));
    h.ports.insert(POD, port(POD_MAC, &["172.20.0.201"], 1500));
    let connected = |p| Route::new(Protocol::Connected, vec![Nexthop::connected(p)]);
    let via = |gw: &str, p| Route::new(Protocol::Static, vec![Nexthop::gateway(ip(gw), p)]);
    h.fib
        .insert("192.168.10.0/24".parse().unwrap(), &connected(ETH1));
    h.fib
        .insert("172.20.0.10/32".parse().unwrap(), &connected(POD));
    h.fib.insert(
        "172.20.1.0/24".parse().unwrap(),
        &via("192.168.10.101", ETH1),
    );
    h.fib.insert(
        "192.168.20.0/24".parse().unwrap(),
        &via("192.168.10.200", ETH1),
    );
    h.fib
        .insert("fd00:20::/64".parse().unwrap(), &via("fd00:10::200", ETH1));
    h.fib.insert(
        "10.99.0.0/16".parse().unwrap(),
        &Route::new(
            Protocol::Static,
            vec![Nexthop {
                kind: NexthopKind::Blackhole,
                weight: 1,
            }],
        ),
    );
    let tunnel = Nexthop {
        kind: NexthopKind::Tunnel {
            endpoint: ip("192.168.20.100"),
            encap,
            vni: None,
        },
        weight: 1,
    };
    h.fib.insert(
        "172.20.2.0/24".parse().unwrap(),
        &Route::new(Protocol::Kernel, vec![tunnel]),
    );
    let lb = Route::new(
        Protocol::Ebgp,
        vec![
            Nexthop::gateway(ip("192.168.10.101"), ETH1),
            Nexthop::gateway(ip("192.168.10.200"), ETH1),
        ],
    );
    h.fib.insert("172.16.1.1/32".parse().unwrap(), &lb);
    h.neighbour("192.168.10.101", ETH1, W1_MAC);
    h.neighbour("192.168.10.200", ETH1, RTR_MAC);
    h.neighbour("fd00:10::200", ETH1, RTR_MAC);
    h.neighbour("172.20.0.10", POD, CLIENT_MAC);
    h.identities.insert(ip("172.20.0.10"), 12345);
    h
}

/// k8s-w0 (192.168.20.100) with the pod 172.20.2.36 behind port 10.
fn k8s_w0() -> Host {
    let mut h = k8s_ctr(Encap::Vxlan);
    h.config.tunnel = Some(TunnelConfig::new(v4("192.168.20.100"), TUNNEL_MAC));
    h.ports
        .insert(ETH1, port(ETH1_MAC, &["192.168.20.100"], 1500));
    let pod = Route::new(Protocol::Connected, vec![Nexthop::connected(POD)]);
    h.fib.insert("172.20.2.36/32".parse().unwrap(), &pod);
    h.neighbour("172.20.2.36", POD, CLIENT_MAC);
    h
}

/// An Ethernet + IPv4 + UDP/TCP frame with a valid header checksum, padded to `pad_to`.
fn ipv4_frame(
    dst_mac: EthernetAddress,
    src: &str,
    dst: &str,
    proto: u8,
    sport: u16,
    ttl: u8,
    pad_to: usize,
) -> Vec<u8> {
    let payload = [0xabu8; 12];
    let l4_len = 8 + payload.len();
    let mut f = Vec::new();
    f.extend_from_slice(dst_mac.as_bytes());
    f.extend_from_slice(CLIENT_MAC.as_bytes());
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + l4_len) as u16;
    let mut iph = [0u8; 20];
    iph[0] = 0x45;
    iph[2..4].copy_from_slice(&total.to_be_bytes());
    iph[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    iph[8] = ttl;
    iph[9] = proto;
    iph[12..16].copy_from_slice(&v4(src).octets());
    iph[16..20].copy_from_slice(&v4(dst).octets());
    let c = checksum::compute(&iph);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&80u16.to_be_bytes());
    f.extend_from_slice(&(l4_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&payload);
    if f.len() < pad_to {
        f.resize(pad_to, 0);
    }
    f
}

fn ipv6_frame(dst: &str, hop_limit: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(ETH1_MAC.as_bytes());
    f.extend_from_slice(CLIENT_MAC.as_bytes());
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, hop_limit]);
    f.extend_from_slice(&"fd00:10::5".parse::<Ipv6Addr>().unwrap().octets());
    f.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
    f.extend_from_slice(&[0x30, 0x39, 0, 80, 0, 8, 0, 0]);
    f
}

fn pod_frame(dst: &str, sport: u16) -> Vec<u8> {
    ipv4_frame(POD_MAC, "172.20.0.10", dst, 17, sport, 64, 0)
}

#[test]
fn forwards_with_mac_rewrite_ttl_decrement_and_valid_checksum() {
    let h = k8s_ctr(Encap::Vxlan);
    let frame = ipv4_frame(ETH1_MAC, "192.168.10.200", "172.20.1.5", 17, 1000, 64, 60);
    let (v, out) = h.run(ETH1, &frame);
    assert_eq!(v.reason, Reason::Forwarded);
    assert_eq!(v.egress, Some(ETH1));
    let eth = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!(eth.dst_addr(), W1_MAC);
    assert_eq!(eth.src_addr(), ETH1_MAC);
    let ip4 = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip4.hop_limit(), 63);
    assert!(ip4.verify_checksum());
    assert_eq!(out.len(), 14 + 40, "Ethernet padding is trimmed");
    assert_eq!(
        &out[14 + 12..],
        &frame[14 + 12..54],
        "addresses and payload untouched"
    );
}

#[test]
fn slow_path_cases_pass_the_frame_unchanged() {
    let h = k8s_ctr(Encap::Vxlan);
    let cases = [
        (
            ipv4_frame(ETH1_MAC, "192.168.10.200", "172.20.1.5", 17, 1, 1, 0),
            Reason::TtlExceeded,
        ),
        (
            ipv4_frame(ETH1_MAC, "192.168.10.200", "192.168.10.100", 6, 1, 64, 0),
            Reason::Local,
        ),
        (
            ipv4_frame(ETH1_MAC, "192.168.10.200", "192.168.10.211", 6, 1, 64, 0),
            Reason::Local,
        ),
        (
            ipv4_frame(ETH1_MAC, "192.168.10.200", "8.8.8.8", 6, 1, 64, 0),
            Reason::NoRoute,
        ),
        (
            ipv4_frame(
                EthernetAddress::BROADCAST,
                "192.168.10.200",
                "255.255.255.255",
                17,
                1,
                64,
                0,
            ),
            Reason::Local,
        ),
    ];
    for (frame, reason) in cases {
        let (v, out) = h.run(ETH1, &frame);
        assert_eq!(v.reason, reason);
        assert_eq!(v.reason.action(), Action::Pass);
        assert_eq!(out, frame);
    }
}

#[test]
fn neighbour_miss_asks_for_the_nexthop() {
    let h = k8s_ctr(Encap::Vxlan);
    let frame = ipv4_frame(ETH1_MAC, "172.20.1.5", "192.168.10.55", 17, 1, 64, 0);
    let (v, out) = h.run(ETH1, &frame);
    assert_eq!(v.reason, Reason::NeighbourMiss);
    assert_eq!(v.resolve, Some((ip("192.168.10.55"), ETH1)));
    assert_eq!(out, frame);
}

#[test]
fn drops_what_it_must() {
    let h = k8s_ctr(Encap::Vxlan);
    let good = ipv4_frame(ETH1_MAC, "192.168.10.200", "172.20.1.5", 17, 1, 64, 0);
    let mut bad_sum = good.clone();
    bad_sum[24] ^= 0xff;
    assert_eq!(h.run(ETH1, &bad_sum).0.reason, Reason::BadChecksum);
    assert_eq!(h.run(ETH1, &good[..30]).0.reason, Reason::Malformed);
    assert_eq!(h.run(ETH1, &good[..10]).0.reason, Reason::Malformed);
    let mut other = good.clone();
    other[0..6].copy_from_slice(W1_MAC.as_bytes());
    assert_eq!(h.run(ETH1, &other).0.reason, Reason::OtherHost);
    assert_eq!(h.run(PortId(77), &good).0.reason, Reason::UnknownPort);
    let hole = ipv4_frame(ETH1_MAC, "192.168.10.200", "10.99.1.1", 17, 1, 64, 0);
    assert_eq!(h.run(ETH1, &hole).0.reason, Reason::Blackhole);
    let mut truncated_header = good.clone();
    truncated_header[14] = 0x4f;
    assert_eq!(h.run(ETH1, &truncated_header).0.reason, Reason::Malformed);
    let mut options = good.clone();
    options[14] = 0x46;
    options[24..26].fill(0);
    let c = checksum::compute(&options[14..38]);
    options[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(h.run(ETH1, &options).0.reason, Reason::SlowPath);
}

#[test]
fn too_big_needs_the_slow_path() {
    let mut h = k8s_ctr(Encap::Vxlan);
    h.ports.get_mut(&ETH1).unwrap().mtu = 39;
    let frame = ipv4_frame(ETH1_MAC, "192.168.10.200", "172.20.1.5", 17, 1, 64, 0);
    let v = h.run(ETH1, &frame).0;
    assert_eq!((v.reason, v.mtu), (Reason::FragmentationNeeded, Some(39)));
}

#[test]
fn answers_arp_for_owned_and_announced_only() {
    let h = k8s_ctr(Encap::Vxlan);
    let ask = |t: &str| arp::request(RTR_MAC, v4("192.168.10.200"), v4(t));
    for target in ["192.168.10.100", "192.168.10.211"] {
        let (v, out) = h.run(ETH1, &ask(target));
        assert_eq!((v.reason, v.egress), (Reason::ArpReply, Some(ETH1)));
        assert_eq!(
            EthernetFrame::new_checked(&out[..]).unwrap().dst_addr(),
            RTR_MAC
        );
    }
    assert_eq!(
        h.run(ETH1, &ask("192.168.10.101")).0.reason,
        Reason::ArpOther
    );
}

#[test]
fn answers_neighbour_solicitations_for_owned_and_announced_only() {
    let h = k8s_ctr(Encap::Vxlan);
    let v6 = |a: &str| a.parse::<Ipv6Addr>().unwrap();
    let ask = |t: &str| ndp::solicitation(RTR_MAC, v6("fe80::200"), v6(t));
    for target in ["fd00:10::100", "fd00:10::211"] {
        let (v, out) = h.run(ETH1, &ask(target));
        assert_eq!((v.reason, v.egress), (Reason::NdpReply, Some(ETH1)));
        let addrs = &h.ports[&ETH1];
        let want = ndp::respond(ETH1, ETH1_MAC, &addrs.ipv6, &ask(target)).reply;
        assert_eq!(Ok(out.clone()), want);
        assert_eq!(ndp::advertisement_of(&out), Some((v6(target), ETH1_MAC)));
    }
    // Another target; the pod port does not announce; an advertisement; a
    // solicitation without the source link-layer option (the slow path's).
    assert_eq!(h.run(ETH1, &ask("fd00:10::101")).0.reason, Reason::NdpOther);
    assert_eq!(h.run(POD, &ask("fd00:10::211")).0.reason, Reason::NdpOther);
    let advert = ndp::unsolicited_advertisement(RTR_MAC, v6("fd00:10::200"));
    assert_eq!(h.run(ETH1, &advert).0.reason, Reason::NdpOther);
    let mut bare = ask("fd00:10::211");
    bare.truncate(bare.len() - 8);
    bare[18..20].copy_from_slice(&24u16.to_be_bytes());
    assert!(!ndp::datapath_answers_shape(&bare));
    assert_eq!(h.run(ETH1, &bare).0.reason, Reason::NdpOther);
    // Traffic to an announced IPv6 address is the host's.
    let to_vip = ipv6_frame("fd00:10::211", 64);
    assert_eq!(h.run(ETH1, &to_vip).0.reason, Reason::Local);
}

#[test]
fn ecmp_follows_the_l4_hash() {
    let mut h = k8s_ctr(Encap::Vxlan);
    let members = |h: &Host| {
        let mut seen = BTreeMap::new();
        for sport in 0..64 {
            let (v, out) = h.run(POD, &pod_frame("172.16.1.1", 1000 + sport));
            assert_eq!(v.reason, Reason::Forwarded);
            *seen.entry(out[0..6].to_vec()).or_insert(0) += 1;
        }
        seen
    };
    assert_eq!(members(&h).len(), 2);
    h.config.hash_policy = HashPolicy::L3;
    assert_eq!(members(&h).len(), 1);
}

#[test]
fn ipv6_forwarding_decrements_hop_limit() {
    let h = k8s_ctr(Encap::Vxlan);
    let (v, out) = h.run(ETH1, &ipv6_frame("fd00:20::7", 64));
    assert_eq!(v.reason, Reason::Forwarded);
    assert_eq!(Ipv6Packet::new_checked(&out[14..]).unwrap().hop_limit(), 63);
    assert_eq!(
        h.run(ETH1, &ipv6_frame("fd00:20::7", 1)).0.reason,
        Reason::TtlExceeded
    );
    assert_eq!(
        h.run(ETH1, &ipv6_frame("fd00:10::100", 64)).0.reason,
        Reason::Local
    );
    assert_eq!(
        h.run(ETH1, &ipv6_frame("fe80::1", 64)).0.reason,
        Reason::Local
    );
}

#[test]
fn vxlan_encap_then_decap_on_the_remote_node() {
    let ctr = k8s_ctr(Encap::Vxlan);
    let frame = pod_frame("172.20.2.36", 5555);
    let (v, wire) = ctr.run(POD, &frame);
    assert_eq!((v.reason, v.egress), (Reason::Encapsulated, Some(ETH1)));
    assert_eq!(wire.len(), frame.len() + ENCAP_OVERHEAD);
    let eth = EthernetFrame::new_checked(&wire[..]).unwrap();
    assert_eq!(eth.dst_addr(), RTR_MAC, "underlay nexthop is the router");
    let outer = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(outer.verify_checksum());
    assert!(outer.dont_frag());
    assert_eq!(outer.hop_limit(), 64);
    assert_eq!(outer.src_addr(), v4("192.168.10.100"));
    assert_eq!(outer.dst_addr(), v4("192.168.20.100"));
    let udp = UdpPacket::new_checked(outer.payload()).unwrap();
    assert_eq!(udp.dst_port(), 8472);
    assert_eq!(udp.checksum(), 0);
    assert!(udp.src_port() >= 49152);
    let vx = vxlan::Header::new_checked(udp.payload()).unwrap();
    assert_eq!(vxlan::Repr::parse(&vx), Ok(vxlan::Repr { vni: 12345 }));
    let inner = vx.payload();
    assert_eq!(&inner[0..6], TUNNEL_MAC.as_bytes());
    assert_eq!(
        Ipv4Packet::new_checked(&inner[14..]).unwrap().hop_limit(),
        63
    );

    // The router forwards it (outer TTL 63) to k8s-w0, which decapsulates.
    let mut arrived = wire.clone();
    arrived[0..6].copy_from_slice(ETH1_MAC.as_bytes());
    let w0 = k8s_w0();
    let (v, out) = w0.run(ETH1, &arrived);
    assert_eq!((v.reason, v.egress), (Reason::Forwarded, Some(POD)));
    let ip4 = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(ip4.dst_addr(), v4("172.20.2.36"));
    assert_eq!(ip4.hop_limit(), 62);
    assert!(ip4.verify_checksum());
}

#[test]
fn geneve_encap_then_decap_and_bad_headers() {
    let ctr = k8s_ctr(Encap::Geneve);
    let (v, wire) = ctr.run(POD, &pod_frame("172.20.2.36", 7));
    assert_eq!(v.reason, Reason::Encapsulated);
    let udp_at = 14 + 20;
    assert_eq!(
        u16::from_be_bytes([wire[udp_at + 2], wire[udp_at + 3]]),
        6081
    );
    let g = geneve::Header::new_checked(&wire[udp_at + 8..]).unwrap();
    assert_eq!(g.protocol(), geneve::PROTOCOL_ETHERNET);
    assert_eq!(g.vni(), 12345);

    let mut arrived = wire.clone();
    arrived[0..6].copy_from_slice(ETH1_MAC.as_bytes());
    let w0 = k8s_w0();
    assert_eq!(w0.run(ETH1, &arrived).0.reason, Reason::Forwarded);
    let mut critical = arrived.clone();
    critical[udp_at + 8 + 1] = 0x40;
    assert_eq!(w0.run(ETH1, &critical).0.reason, Reason::BadTunnelHeader);
    let mut oam = arrived.clone();
    oam[udp_at + 8 + 1] = 0x80;
    assert_eq!(w0.run(ETH1, &oam).0.reason, Reason::SlowPath);
}

#[test]
fn vxlan_without_the_i_flag_is_dropped() {
    let (_, wire) = k8s_ctr(Encap::Vxlan).run(POD, &pod_frame("172.20.2.36", 9));
    let mut arrived = wire;
    arrived[0..6].copy_from_slice(ETH1_MAC.as_bytes());
    arrived[14 + 20 + 8] = 0;
    assert_eq!(
        k8s_w0().run(ETH1, &arrived).0.reason,
        Reason::BadTunnelHeader
    );
}

#[test]
fn tunnel_needs_room_for_the_overhead() {
    // A 40-byte packet is a 90-byte outer packet: outer IPv4, UDP, VXLAN
    // and the inner Ethernet header are 50 bytes.
    let mut ctr = k8s_ctr(Encap::Vxlan);
    ctr.ports.get_mut(&ETH1).unwrap().mtu = (40 + ENCAP_OVERHEAD - 1) as u16;
    let v = ctr.run(POD, &pod_frame("172.20.2.36", 1)).0;
    assert_eq!((v.reason, v.mtu), (Reason::FragmentationNeeded, Some(39)));
    ctr.ports.get_mut(&ETH1).unwrap().mtu = (40 + ENCAP_OVERHEAD) as u16;
    let (v, out) = ctr.run(POD, &pod_frame("172.20.2.36", 1));
    assert_eq!(v.reason, Reason::Encapsulated);
    assert_eq!(out.len() - ETHERNET_HEADER_LEN, 40 + ENCAP_OVERHEAD);
}

/// The IP packet of an Ethernet frame built by the helpers above.
fn ip_of(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

#[test]
fn originate_routes_and_frames_without_touching_the_ttl() {
    let h = k8s_ctr(Encap::Vxlan);
    let frame = ipv4_frame(ETH1_MAC, "192.168.10.100", "172.20.1.5", 17, 1000, 64, 0);
    let mut out = Vec::new();
    let v = originate(&h.tables(), ip_of(&frame), &mut out);
    assert_eq!((v.reason, v.egress), (Reason::Forwarded, Some(ETH1)));
    let eth = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!(eth.dst_addr(), W1_MAC, "via the gateway 192.168.10.101");
    assert_eq!(eth.src_addr(), ETH1_MAC);
    assert_eq!(u16::from(eth.ethertype()), 0x0800);
    assert_eq!(eth.payload(), ip_of(&frame), "TTL and checksum untouched");
}

#[test]
fn originate_ttl_one_still_leaves() {
    let h = k8s_ctr(Encap::Vxlan);
    let frame = ipv4_frame(ETH1_MAC, "192.168.10.100", "192.168.20.7", 1, 0, 1, 0);
    let mut out = Vec::new();
    let v = originate(&h.tables(), ip_of(&frame), &mut out);
    assert_eq!(v.reason, Reason::Forwarded);
    assert_eq!(Ipv4Packet::new_checked(&out[14..]).unwrap().hop_limit(), 1);
    assert_eq!(&out[0..6], RTR_MAC.as_bytes());
}

#[test]
fn originate_ipv6_keeps_the_hop_limit() {
    let h = k8s_ctr(Encap::Vxlan);
    let frame = ipv6_frame("fd00:20::7", 64);
    let mut out = Vec::new();
    let v = originate(&h.tables(), ip_of(&frame), &mut out);
    assert_eq!(v.reason, Reason::Forwarded);
    assert_eq!(u16::from_be_bytes([out[12], out[13]]), 0x86dd);
    assert_eq!(Ipv6Packet::new_checked(&out[14..]).unwrap().hop_limit(), 64);
}

#[test]
fn originate_reports_local_misses_and_no_route() {
    let h = k8s_ctr(Encap::Vxlan);
    let mut out = Vec::new();
    let cases = [
        ("192.168.10.100", Reason::Local),
        ("192.168.10.211", Reason::Local),
        ("192.168.10.55", Reason::NeighbourMiss),
        ("8.8.8.8", Reason::NoRoute),
        ("10.99.0.1", Reason::Blackhole),
    ];
    for (dst, reason) in cases {
        let frame = ipv4_frame(ETH1_MAC, "192.168.10.100", dst, 6, 1, 64, 0);
        let v = originate(&h.tables(), ip_of(&frame), &mut out);
        assert_eq!(v.reason, reason, "{dst}");
        assert_eq!(&out[14..], ip_of(&frame), "{dst}: the packet is unchanged");
    }
    let frame = ipv4_frame(ETH1_MAC, "192.168.10.100", "192.168.10.55", 6, 1, 64, 0);
    let v = originate(&h.tables(), ip_of(&frame), &mut out);
    assert_eq!(v.resolve, Some((ip("192.168.10.55"), ETH1)));
    assert_eq!(
        originate(&h.tables(), &[0x45, 0, 0], &mut out).reason,
        Reason::Malformed
    );
    assert_eq!(
        originate(&h.tables(), &[], &mut out).reason,
        Reason::Malformed
    );
}

#[test]
fn originate_encapsulates_with_the_inner_ttl_kept() {
    let h = k8s_ctr(Encap::Vxlan);
    let frame = pod_frame("172.20.2.36", 4242);
    let packet = ip_of(&frame).to_vec();
    let mut out = Vec::new();
    let v = originate(&h.tables(), &packet, &mut out);
    assert_eq!((v.reason, v.egress), (Reason::Encapsulated, Some(ETH1)));
    let inner_ip = &out[ENCAP_OVERHEAD + ETHERNET_HEADER_LEN..];
    assert_eq!(inner_ip, &packet[..], "inner packet untouched");
    let vx = vxlan::Header::new_checked(&out[14 + 20 + 8..]).unwrap();
    assert_eq!(vxlan::Repr::parse(&vx), Ok(vxlan::Repr { vni: 12345 }));
}

#[test]
fn originate_and_forward_pick_the_same_ecmp_member() {
    let h = k8s_ctr(Encap::Vxlan);
    let mut out = Vec::new();
    for sport in 0..32 {
        let frame = pod_frame("172.16.1.1", 2000 + sport);
        let (forwarded, fwd_out) = h.run(POD, &frame);
        let v = originate(&h.tables(), ip_of(&frame), &mut out);
        assert_eq!(v.reason, forwarded.reason);
        assert_eq!(&out[0..12], &fwd_out[0..12], "same nexthop MAC");
    }
}

#[test]
fn dsr_requests_carry_the_service_in_geneve_and_are_accepted_where_asked() {
    use crate::wire::geneve::{self, DsrOption};
    use crate::wire::layout::OUTER_TUNNEL_AT;
    let mut lb = k8s_ctr(Encap::Geneve);
    lb.neighbour("192.168.10.101", ETH1, W1_MAC);
    let request = ipv4_frame(ETH1_MAC, "203.0.113.7", "172.20.1.5", 6, 40000, 64, 0);
    let dsr = DsrOption {
        addr: v4("172.16.1.1"),
        port: 80,
    };
    let mut out = Vec::new();
    let v = super::pipeline::dispatch(&lb.tables(), &request, v4("192.168.10.101"), dsr, &mut out);
    assert_eq!((v.reason, v.egress), (Reason::Encapsulated, Some(ETH1)));
    let header = geneve::Header::new_checked(&out[OUTER_TUNNEL_AT..]).unwrap();
    assert_eq!(DsrOption::find(header.options()), Ok(Some(dsr)));
    assert!(header.critical());
    let inner = &out[OUTER_TUNNEL_AT + header.header_len()..];
    assert_eq!(inner[ETHERNET_HEADER_LEN + 8], 63, "TTL decremented");

    // The backend's node: its tunnel endpoint is the address dispatched to.
    let mut w1 = k8s_ctr(Encap::Geneve);
    let mut tunnel = TunnelConfig::new(v4("192.168.10.101"), TUNNEL_MAC);
    w1.ports.get_mut(&ETH1).unwrap().addrs.mac = W1_MAC;
    w1.config.tunnel = Some(tunnel);
    assert_eq!(w1.run(ETH1, &out).0.reason, Reason::BadTunnelHeader);
    tunnel.dsr = true;
    w1.config.tunnel = Some(tunnel);
    let (v, _) = w1.run(ETH1, &out);
    assert_eq!(v.dsr, Some(dsr));
}
