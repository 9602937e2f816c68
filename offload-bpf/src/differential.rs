//! The differential harness: generated tables and frames run through
//! router-core's reference datapath (`router_core::datapath::process`) and
//! through the loaded XDP program (`BPF_PROG_TEST_RUN`); the XDP verdict, every
//! output byte and the per-reason counters must match.
//!
//! Frames arrive on port 0, which is the namespace's loopback (ifindex 1) for
//! the test run. Tables mix gateway, connected, blackhole and VXLAN/Geneve
//! tunnel routes (with underlay routes to the endpoints, loops and unroutable
//! endpoints), identities and an optional tunnel endpoint; frames are IPv4,
//! IPv6, ARP, neighbour discovery, tunnel frames to us (valid and corrupted) and other protocols,
//! each sometimes odd or truncated. A mismatch panics with the whole case:
//! tables, frame hex, both verdicts and outputs, to be pasted into a regression test.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nexthop_offload_bpf_common::flow::FLOW_BYTES;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use router_core::PortId;
use router_core::datapath::{
    Action, Config, OwnedTables, PortConfig, Reason, Tables, TunnelConfig, Verdict, process,
};
use router_core::ecmp::HashPolicy;
use router_core::fib::{Encap, Fib, Nexthop, NexthopKind, Protocol, Route};
use router_core::flow::{self, Observation, Point, Side};
use router_core::neighbour::{self, arp::PortAddrs, ndp, ndp::PortAddrsV6};
use router_core::wire::geneve::DsrOption;
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;

use crate::datapath::{Capacity, Datapath, privileged};
use crate::flows::{BadEvent, Event, Limit};
use crate::snapshot::Snapshot;

/// Kernel interface index of the port frames arrive on (loopback under test-run).
const INGRESS_IFINDEX: u32 = 1;

/// The kernel's `enum xdp_action` values.
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

/// Owned tables for one generated case.
#[derive(Clone, Debug)]
pub(crate) struct Lab {
    pub(crate) routes: Vec<(ipnet::IpNet, Vec<Nexthop>)>,
    pub(crate) neighbours: Vec<(IpAddr, EthernetAddress)>,
    pub(crate) ports: BTreeMap<PortId, PortConfig>,
    pub(crate) identities: BTreeMap<IpAddr, u32>,
    pub(crate) config: Config,
    /// The ports that face pods (flow events' sides).
    pub(crate) pods: BTreeSet<PortId>,
}

impl Lab {
    pub(crate) fn build(&self) -> OwnedTables {
        let mut fib = Fib::new();
        for (prefix, nexthops) in &self.routes {
            fib.insert(*prefix, &Route::new(Protocol::Static, nexthops.clone()));
        }
        let mut neighbours = neighbour::Table::new(neighbour::Config::default());
        let forever = Instant::from_secs(1_i64 << 40);
        for &(addr, mac) in &self.neighbours {
            neighbours.insert_reachable(addr, PortId(0), mac, forever);
        }
        OwnedTables {
            fib,
            neighbours,
            ports: self.ports.clone(),
            identities: self.identities.clone(),
            config: self.config,
        }
    }

    /// The maps for these tables.
    pub(crate) fn snapshot(&self, tables: &Tables) -> Result<Snapshot, String> {
        Ok(Snapshot::new(tables, Lab::ifindex)
            .map_err(|e| e.to_string())?
            .with_pod_ports(&self.pods))
    }

    /// The side of the node port `p` leads to.
    fn side(&self, p: PortId) -> Side {
        if self.pods.contains(&p) {
            Side::Endpoint
        } else {
            Side::Network
        }
    }

    /// The kernel interface index of each port: port 0 is the test-run ingress.
    pub(crate) fn ifindex(port: PortId) -> Option<u32> {
        Some(if port.0 == 0 {
            INGRESS_IFINDEX
        } else {
            100 + u32::from(port.0)
        })
    }
}

fn port_mac(p: u16) -> EthernetAddress {
    EthernetAddress([0x02, 0, 0, 0, 0, p as u8 + 1])
}

fn port_v4(p: u16) -> Ipv4Addr {
    Ipv4Addr::new(10, 255, p as u8, 1)
}

fn port_v6(p: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0xff, 0, 0, 0, 0, 0, p + 1)
}

fn announced_v6(p: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0xfe, 0, 0, 0, 0, 0, p + 1)
}

pub(crate) fn port(p: u16, mtu: u16) -> (PortId, PortConfig) {
    let config = PortConfig {
        addrs: PortAddrs {
            mac: port_mac(p),
            owned: vec![port_v4(p)],
            announced: vec![Ipv4Addr::new(10, 254, p as u8, 1)],
        },
        ipv6: PortAddrsV6 {
            owned: vec![port_v6(p)],
            announced: vec![announced_v6(p)],
        },
        mtu,
    };
    (PortId(p), config)
}

fn ports() -> impl Strategy<Value = BTreeMap<PortId, PortConfig>> {
    let mtu = prop::sample::select(vec![1500u16, 1500, 9000, 60]);
    prop::collection::vec(mtu, 1..=3)
        .prop_map(|mtus| (0u16..).zip(mtus).map(|(p, mtu)| port(p, mtu)).collect())
}

/// Addresses routes are built around and frames are sent to.
fn host() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        3 => (0u8..2, 0u8..4, any::<u8>()).prop_map(|(a, b, c)| IpAddr::V4(Ipv4Addr::new(10, a, b, c))),
        1 => any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from_bits(a))),
        2 => (0u16..4, any::<u16>(), any::<u16>())
            .prop_map(|(a, b, c)| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, a, 0, 0, 0, b, c))),
    ]
}

fn prefix_of(addr: IpAddr, len: u8) -> ipnet::IpNet {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    ipnet::IpNet::new(addr, len.min(max))
        .expect("length clamped")
        .trunc()
}

fn prefix_len(v4: bool) -> impl Strategy<Value = u8> {
    if v4 {
        prop_oneof![8 => 8u8..=32, 1 => 1u8..8, 1 => Just(0)].boxed()
    } else {
        prop_oneof![8 => 24u8..=128, 1 => 1u8..24].boxed()
    }
}

fn gateway(v4: bool) -> impl Strategy<Value = (IpAddr, u16)> {
    (0u16..3, 2u8..6).prop_map(move |(p, h)| {
        let addr = if v4 {
            IpAddr::V4(Ipv4Addr::new(10, 255, p as u8, h))
        } else {
            IpAddr::V6(Ipv6Addr::new(
                0xfd00,
                0xff,
                0,
                0,
                0,
                0,
                0,
                0x100 * (p + 1) + u16::from(h),
            ))
        };
        (addr, p)
    })
}

/// The tunnel endpoint of this host.
const TUNNEL_LOCAL: Ipv4Addr = Ipv4Addr::new(192, 168, 255, 1);
/// Destination MAC of encapsulated inner frames.
const INNER_MAC: EthernetAddress = EthernetAddress([0x02, 0xee, 0, 0, 0, 1]);

/// Remote tunnel endpoints: on each port's underlay link (192.168.p.0/24),
/// unroutable, routed into a tunnel again (172.16/16), IPv6.
fn endpoints() -> Vec<IpAddr> {
    let mut e: Vec<IpAddr> = (0u8..3)
        .flat_map(|p| (10u8..13).map(move |h| IpAddr::V4(Ipv4Addr::new(192, 168, p, h))))
        .collect();
    e.extend([
        IpAddr::V4(Ipv4Addr::new(192, 168, 9, 9)),
        IpAddr::V4(Ipv4Addr::new(172, 16, 0, 1)),
        "fd00:ee::1".parse().unwrap(),
    ]);
    e
}

fn tunnel() -> impl Strategy<Value = NexthopKind> {
    let encap = prop_oneof![Just(Encap::Vxlan), Just(Encap::Geneve)];
    let vni = prop_oneof![2 => Just(None), 1 => any::<u32>().prop_map(Some)];
    (prop::sample::select(endpoints()), encap, vni).prop_map(|(endpoint, encap, vni)| {
        NexthopKind::Tunnel {
            endpoint,
            encap,
            vni,
        }
    })
}

fn nexthop(v4: bool) -> impl Strategy<Value = Nexthop> {
    let kind = prop_oneof![
        6 => gateway(v4).prop_map(|(addr, p)| NexthopKind::Gateway { addr, port: PortId(p) }),
        2 => (0u16..3).prop_map(|p| NexthopKind::Connected { port: PortId(p) }),
        1 => Just(NexthopKind::Blackhole),
        4 => tunnel(),
    ];
    (kind, 1u16..4).prop_map(|(kind, weight)| Nexthop { kind, weight })
}

fn route(hosts: Vec<IpAddr>) -> impl Strategy<Value = (ipnet::IpNet, Vec<Nexthop>)> {
    prop::sample::select(hosts).prop_flat_map(|h| {
        (
            prefix_len(h.is_ipv4()).prop_map(move |l| prefix_of(h, l)),
            prop::collection::vec(nexthop(h.is_ipv4()), 1..=4),
        )
    })
}

pub(crate) fn mac_of(addr: IpAddr) -> EthernetAddress {
    let o = match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets()[12..].to_vec(),
    };
    EthernetAddress([
        0x0a,
        if addr.is_ipv4() { 4 } else { 6 },
        o[0],
        o[1],
        o[2],
        o[3],
    ])
}

/// A generated case: tables and the hosts frames are addressed to.
fn lab() -> impl Strategy<Value = (Lab, Vec<IpAddr>)> {
    let policy = prop_oneof![Just(HashPolicy::L3), Just(HashPolicy::L4)];
    let tunnel = prop_oneof![
        1 => Just(None),
        4 => (prop::sample::select(vec![8472u16, 4789]), any::<bool>()).prop_map(
            |(vxlan_port, dsr)| Some(TunnelConfig {
                vxlan_port,
                dsr,
                ..TunnelConfig::new(TUNNEL_LOCAL, INNER_MAC)
            })
        ),
    ];
    (
        prop::collection::vec(host(), 2..10),
        ports(),
        policy,
        any::<u32>(),
        tunnel,
        any::<u32>(),
        prop::collection::btree_set((0u16..3).prop_map(PortId), 0..=2),
    )
        .prop_flat_map(
            |(hosts, ports, hash_policy, hash_seed, tunnel, identity, pods)| {
                let gateways: Vec<IpAddr> = (0u16..3)
                    .flat_map(|p| {
                        (2u8..6).flat_map(move |h| {
                            let v6 = Ipv6Addr::new(
                                0xfd00,
                                0xff,
                                0,
                                0,
                                0,
                                0,
                                0,
                                0x100 * (p + 1) + u16::from(h),
                            );
                            [
                                IpAddr::V4(Ipv4Addr::new(10, 255, p as u8, h)),
                                IpAddr::V6(v6),
                            ]
                        })
                    })
                    .chain(hosts.iter().copied())
                    .chain(endpoints())
                    .collect();
                let known = prop::collection::vec(prop::bool::weighted(0.8), gateways.len());
                // Every other host has an identity (the VNI of its encapsulated traffic).
                let identities = hosts
                    .iter()
                    .step_by(2)
                    .zip(identity..)
                    .map(|(&h, id)| (h, id))
                    .collect();
                (
                    prop::collection::vec(route(hosts.clone()), 1..16),
                    known,
                    Just(gateways),
                    Just(hosts),
                    Just(ports),
                    Just(identities),
                    Just(Config {
                        hash_policy,
                        hash_seed,
                        tunnel,
                    }),
                    Just(pods),
                )
            },
        )
        .prop_map(
            |(mut routes, known, gateways, hosts, ports, identities, config, pods)| {
                let neighbours = gateways
                    .into_iter()
                    .zip(known)
                    .filter(|&(_, k)| k)
                    .map(|(a, _)| (a, mac_of(a)))
                    .collect();
                routes.extend(underlay());
                let lab = Lab {
                    routes,
                    neighbours,
                    ports,
                    identities,
                    config,
                    pods,
                };
                (lab, hosts)
            },
        )
}

/// Routes to the tunnel endpoints: each port's underlay link, and 172.16/16
/// into a tunnel (an endpoint behind a tunnel is a loop).
fn underlay() -> Vec<(ipnet::IpNet, Vec<Nexthop>)> {
    let mut routes: Vec<(ipnet::IpNet, Vec<Nexthop>)> = (0u8..3)
        .map(|p| {
            let prefix = ipnet::IpNet::new(Ipv4Addr::new(192, 168, p, 0).into(), 24).unwrap();
            (prefix, vec![Nexthop::connected(PortId(u16::from(p)))])
        })
        .collect();
    let looped = NexthopKind::Tunnel {
        endpoint: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 10)),
        encap: Encap::Vxlan,
        vni: None,
    };
    routes.push((
        "172.16.0.0/16".parse().unwrap(),
        vec![Nexthop {
            kind: looped,
            weight: 1,
        }],
    ));
    routes
}

/// The destination of a generated frame.
fn destination(hosts: Vec<IpAddr>, v4: bool) -> impl Strategy<Value = IpAddr> {
    let hosts: Vec<IpAddr> = hosts.into_iter().filter(|h| h.is_ipv4() == v4).collect();
    let special: Vec<IpAddr> = if v4 {
        vec![
            port_v4(0).into(),
            Ipv4Addr::new(10, 254, 1, 1).into(),
            Ipv4Addr::BROADCAST.into(),
            Ipv4Addr::new(224, 0, 0, 5).into(),
        ]
    } else {
        vec![
            port_v6(1).into(),
            "ff02::1".parse().unwrap(),
            "fe80::1".parse().unwrap(),
        ]
    };
    let random = if v4 {
        any::<u32>()
            .prop_map(|a| IpAddr::V4(Ipv4Addr::from_bits(a)))
            .boxed()
    } else {
        any::<u128>()
            .prop_map(|a| IpAddr::V6(Ipv6Addr::from_bits(a)))
            .boxed()
    };
    let near = if hosts.is_empty() {
        random.clone()
    } else {
        (prop::sample::select(hosts), any::<u8>())
            .prop_map(|(h, low)| match h {
                IpAddr::V4(a) => {
                    IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() ^ u32::from(low & 0x0f)))
                }
                IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() ^ u128::from(low))),
            })
            .boxed()
    };
    prop_oneof![6 => near, 1 => prop::sample::select(special), 2 => random]
}

/// Knobs that make a frame odd; most frames get none.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Oddity {
    dst_mac: u8,
    version: u8,
    ihl: u8,
    length_delta: i8,
    corrupt_checksum: bool,
    fragment: u16,
    padding: u8,
}

impl Oddity {
    /// A well-formed frame to port 0's MAC.
    pub(crate) const NONE: Oddity = Oddity {
        dst_mac: 0,
        version: 4,
        ihl: 5,
        length_delta: 0,
        corrupt_checksum: false,
        fragment: 0,
        padding: 0,
    };
}

pub(crate) fn oddity() -> impl Strategy<Value = Oddity> {
    let rare = |n: u32| prop::bool::weighted(1.0 / f64::from(n));
    (
        prop_oneof![16 => Just(0u8), 1 => 1u8..4],
        prop_oneof![30 => Just(0u8), 1 => 1u8..16],
        prop_oneof![20 => Just(5u8), 1 => 0u8..16],
        prop_oneof![20 => Just(0i8), 1 => -8i8..8],
        rare(30),
        prop_oneof![10 => Just(0u16), 1 => any::<u16>().prop_map(|f| f & 0x3fff)],
        prop_oneof![4 => Just(0u8), 1 => 1u8..12],
    )
        .prop_map(
            |(dst_mac, version, ihl, length_delta, corrupt_checksum, fragment, padding)| Oddity {
                dst_mac,
                version,
                ihl,
                length_delta,
                corrupt_checksum,
                fragment,
                padding,
            },
        )
}

/// A source address: random, or a generated host (which may have an identity).
fn source_v4(hosts: &[IpAddr]) -> impl Strategy<Value = u32> + use<> {
    let known: Vec<u32> = hosts
        .iter()
        .filter_map(|h| match h {
            IpAddr::V4(a) => Some(a.to_bits()),
            IpAddr::V6(_) => None,
        })
        .chain([0x0a00_0001])
        .collect();
    prop_oneof![any::<u32>(), prop::sample::select(known)]
}

/// An IP (or other protocol) frame, possibly odd.
fn ip_frame(hosts: Vec<IpAddr>) -> impl Strategy<Value = Vec<u8>> {
    let v4 = (
        destination(hosts.clone(), true),
        source_v4(&hosts),
        prop_oneof![8 => Just(64u8), 1 => 0u8..3, 1 => any::<u8>()],
        prop::sample::select(vec![6u8, 17, 132, 1, 47]),
        prop::collection::vec(any::<u8>(), 0..48),
        oddity(),
    )
        .prop_map(|(dst, src, ttl, proto, payload, odd)| {
            let IpAddr::V4(dst) = dst else {
                unreachable!("IPv4 destinations")
            };
            ipv4_frame(Ipv4Addr::from_bits(src), dst, ttl, proto, &payload, odd)
        });
    let v6 = (
        destination(hosts, false),
        any::<u128>(),
        prop_oneof![8 => Just(64u8), 1 => 0u8..3, 1 => any::<u8>()],
        prop::sample::select(vec![6u8, 17, 132, 58, 0]),
        prop::collection::vec(any::<u8>(), 0..48),
        oddity(),
    )
        .prop_map(|(dst, src, hops, next, payload, odd)| {
            let IpAddr::V6(dst) = dst else {
                unreachable!("IPv6 destinations")
            };
            ipv6_frame(Ipv6Addr::from_bits(src), dst, hops, next, &payload, odd)
        });
    let other = (any::<u16>(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(t, body)| {
        let t = if t == 0x0806 { 0x88cc } else { t };
        let mut f = ethernet(port_mac(0), t);
        f.extend(body);
        f
    });
    prop_oneof![12 => v4, 6 => v6, 1 => other]
}

fn frame(hosts: Vec<IpAddr>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        10 => ip_frame(hosts.clone()),
        2 => arp_frame(),
        2 => ndp_frame(),
        5 => tunnel_frame(ip_frame(hosts)),
    ]
}

/// Neighbour solicitations for addresses port 0 owns or announces, for
/// another port's, multicast and other addresses, from link-local,
/// unspecified and random sources; advertisements; without, with another or
/// with a second option; one byte changed at a field the checks of RFC 4861
/// §7.1 read or anywhere (mostly with the checksum made right again);
/// truncation and padding.
fn ndp_frame() -> impl Strategy<Value = Vec<u8>> {
    let target = prop_oneof![
        3 => Just(port_v6(0)),
        3 => Just(announced_v6(0)),
        1 => Just(port_v6(1)),
        1 => Just(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)),
        1 => any::<u128>().prop_map(Ipv6Addr::from_bits),
    ];
    let src = prop_oneof![
        4 => Just(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xaa)),
        1 => Just(Ipv6Addr::UNSPECIFIED),
        1 => any::<u128>().prop_map(Ipv6Addr::from_bits),
    ];
    // Hop limit, payload length, type, code, checksum, target, option type and length.
    let fields = vec![21usize, 19, 54, 55, 56, 62, 78, 79];
    let edit = prop_oneof![
        12 => Just(None),
        2 => (prop::sample::select(fields), any::<u8>()).prop_map(Some),
        1 => (0usize..86, any::<u8>()).prop_map(Some),
    ];
    // 0: as built, 1: no option, 2: a nonce option added, 3: the option's type 2.
    let options = prop_oneof![12 => Just(0u8), 1 => 1u8..4];
    let resize = prop_oneof![12 => Just(0i32), 1 => -40i32..0, 1 => 1i32..12];
    (
        target,
        src,
        prop::bool::weighted(0.15),
        options,
        edit,
        prop::bool::weighted(0.8),
        resize,
    )
        .prop_map(|(target, src, advert, options, edit, fix, resize)| {
            let peer = EthernetAddress([0x02, 0xaa, 0, 0, 0, 1]);
            let mut f = if advert {
                ndp::unsolicited_advertisement(peer, target)
            } else {
                let mut f = ndp::solicitation(peer, src, target);
                match options {
                    1 => f.truncate(78),
                    2 => f.extend_from_slice(&[14, 1, 1, 2, 3, 4, 5, 6]),
                    3 => f[78] = 2,
                    _ => {}
                }
                let len = (f.len() - 54) as u16;
                f[18..20].copy_from_slice(&len.to_be_bytes());
                f
            };
            if let Some((at, byte)) = edit
                && at < f.len()
            {
                f[at] = byte;
            }
            if fix {
                f[56..58].fill(0);
                let check = icmpv6_checksum(&f);
                f[56..58].copy_from_slice(&check.to_be_bytes());
            }
            let len = (f.len() as i32 + resize).max(0) as usize;
            f.resize(len, 0);
            f
        })
}

/// The ICMPv6 checksum of the message behind the 40-byte IPv6 header of
/// Ethernet frame `f` (RFC 8200 §8.1 pseudo-header), its checksum field zero.
fn icmpv6_checksum(f: &[u8]) -> u16 {
    use router_core::datapath::checksum;
    let message = &f[54..];
    let pseudo = checksum::sum(&f[22..54]) + message.len() as u32 + 58;
    !checksum::fold(pseudo + checksum::sum(message))
}

/// ARP requests for addresses port 0 owns or announces, for another port's
/// and other addresses; replies, gratuitous and unknown operations;
/// corrupted type/length fields, truncation and padding.
fn arp_frame() -> impl Strategy<Value = Vec<u8>> {
    let target = prop_oneof![
        3 => Just(port_v4(0)),
        3 => Just(Ipv4Addr::new(10, 254, 0, 1)),
        1 => Just(port_v4(1)),
        2 => any::<u32>().prop_map(Ipv4Addr::from_bits),
    ];
    let operation = prop_oneof![8 => Just(1u16), 2 => Just(2u16), 1 => any::<u16>()];
    let dst = prop_oneof![
        6 => Just(EthernetAddress::BROADCAST),
        2 => Just(port_mac(0)),
        1 => Just(EthernetAddress([0x02, 0xbb, 0, 0, 0, 9])),
    ];
    let corrupt = prop_oneof![12 => Just(None), 1 => (0usize..6, any::<u8>()).prop_map(Some)];
    let cut = prop_oneof![12 => Just(None), 1 => (14usize..42).prop_map(Some)];
    (
        target,
        operation,
        dst,
        any::<u32>(),
        prop::bool::weighted(0.1),
        corrupt,
        cut,
        prop_oneof![2 => Just(0usize), 1 => Just(18usize), 1 => 1usize..8],
    )
        .prop_map(
            |(target, op, dst, sender, gratuitous, corrupt, cut, padding)| {
                let sender = if gratuitous {
                    target
                } else {
                    Ipv4Addr::from_bits(sender)
                };
                let sha = EthernetAddress([0x02, 0xaa, 0, 0, 0, 1]);
                let mut f = ethernet(dst, 0x0806);
                f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
                f.extend_from_slice(&op.to_be_bytes());
                f.extend_from_slice(&sha.0);
                f.extend_from_slice(&sender.octets());
                f.extend_from_slice(&[0; 6]);
                f.extend_from_slice(&target.octets());
                if let Some((i, v)) = corrupt {
                    f[14 + i] = v;
                }
                if let Some(len) = cut {
                    f.truncate(len);
                }
                f.extend(std::iter::repeat_n(0u8, padding));
                f
            },
        )
}

/// What a generated tunnel frame gets wrong; most get nothing.
#[derive(Clone, Debug)]
struct TunnelOddity {
    /// Outer destination: 0 our endpoint, 1 another local address, 2 elsewhere.
    dst: u8,
    /// UDP destination port: 0 VXLAN 8472, 1 VXLAN 4789, 2 Geneve, 3 other.
    dport: u8,
    /// Not UDP.
    not_udp: bool,
    /// Fragment offset or MF bit.
    fragment: bool,
    /// Added to the UDP length.
    udp_delta: i16,
    /// VXLAN I flag cleared.
    no_vni_flag: bool,
    /// Geneve version, flags (O, C) and protocol.
    version: u8,
    flags: u8,
    protocol: u16,
    /// Geneve options: (type, data words) each; the declared length's delta.
    options: Vec<(u8, u8)>,
    options_delta: i8,
    /// Where Cilium's DSR option goes among them (`None`: nowhere).
    dsr_at: Option<usize>,
}

fn tunnel_oddity() -> impl Strategy<Value = TunnelOddity> {
    let rare = |n: u32| prop::bool::weighted(1.0 / f64::from(n));
    let option = (
        prop_oneof![12 => 0u8..0x80, 1 => 0x80u8..=0xff],
        prop_oneof![4 => 0u8..3, 1 => 0u8..32],
    );
    (
        prop_oneof![16 => Just(0u8), 1 => 1u8..3],
        prop_oneof![3 => 0u8..3, 1 => Just(3u8)],
        rare(40),
        rare(40),
        prop_oneof![20 => Just(0i16), 1 => -60i16..20],
        rare(30),
        prop_oneof![30 => Just(0u8), 1 => 1u8..4],
        prop_oneof![20 => Just(0u8), 1 => prop::sample::select(vec![0x80u8, 0x40, 0xc0])],
        prop_oneof![30 => Just(0x6558u16), 1 => Just(0x0800u16)],
        prop_oneof![
            3 => Just(Vec::new()),
            2 => prop::collection::vec(option.clone(), 1..4),
            1 => prop::collection::vec(option, 14..19),
        ],
        prop_oneof![20 => Just(0i8), 1 => -3i8..3],
        prop_oneof![2 => Just(None), 1 => (0usize..4).prop_map(Some)],
    )
        .prop_map(
            |(
                dst,
                dport,
                not_udp,
                fragment,
                udp_delta,
                no_vni_flag,
                version,
                flags,
                protocol,
                options,
                options_delta,
                dsr_at,
            )| TunnelOddity {
                dst,
                dport,
                not_udp,
                fragment,
                udp_delta,
                no_vni_flag,
                version,
                flags,
                protocol,
                options,
                options_delta,
                dsr_at,
            },
        )
}

/// The DSR option generated Geneve frames may carry.
const DSR: DsrOption = DsrOption {
    addr: Ipv4Addr::new(172, 16, 0, 80),
    port: 80,
};

/// An inner frame in Ethernet/IPv4/UDP/VXLAN-or-Geneve to (mostly) our
/// tunnel endpoint, the tunnel header valid or not.
fn tunnel_frame(inner: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (inner, tunnel_oddity(), any::<u32>(), any::<u16>()).prop_map(|(inner, odd, vni, sport)| {
        let dport = [8472u16, 4789, 6081, 53][usize::from(odd.dport)];
        let mut tunnel = Vec::new();
        let v = vni.to_be_bytes();
        if dport == 6081 {
            let mut options = Vec::new();
            for (i, &(kind, words)) in odd.options.iter().enumerate() {
                if odd.dsr_at == Some(i) {
                    options.extend_from_slice(&DSR.emit());
                }
                options.extend_from_slice(&[0x01, 0x02, kind, words]);
                options.extend(std::iter::repeat_n(0xabu8, 4 * usize::from(words & 0x1f)));
            }
            if odd.dsr_at.is_some_and(|i| i >= odd.options.len()) {
                options.extend_from_slice(&DSR.emit());
            }
            let declared = (options.len() / 4) as i16 + i16::from(odd.options_delta);
            tunnel.push((odd.version << 6) | (declared.clamp(0, 63) as u8));
            tunnel.push(odd.flags);
            tunnel.extend_from_slice(&odd.protocol.to_be_bytes());
            tunnel.extend_from_slice(&[v[1], v[2], v[3], 0]);
            tunnel.extend(options);
        } else {
            let flags = if odd.no_vni_flag { 0 } else { 0x08 };
            tunnel.extend_from_slice(&[flags, 0, 0, 0, v[1], v[2], v[3], 0]);
        }
        let payload_len = 8 + tunnel.len() + inner.len();
        let udp_len = (payload_len as i32 + i32::from(odd.udp_delta)).max(0) as u16;
        let mut udp = Vec::with_capacity(payload_len);
        udp.extend_from_slice(&sport.to_be_bytes());
        udp.extend_from_slice(&dport.to_be_bytes());
        udp.extend_from_slice(&udp_len.to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend(tunnel);
        udp.extend(inner);
        let dst = match odd.dst {
            0 => TUNNEL_LOCAL,
            1 => port_v4(0),
            _ => Ipv4Addr::new(192, 168, 1, 10),
        };
        let plain = Oddity {
            dst_mac: 0,
            version: 0,
            ihl: 5,
            length_delta: 0,
            corrupt_checksum: false,
            fragment: if odd.fragment { 0x2000 } else { 0 },
            padding: 0,
        };
        let proto = if odd.not_udp { 6 } else { 17 };
        ipv4_frame(Ipv4Addr::new(192, 168, 0, 10), dst, 64, proto, &udp, plain)
    })
}

fn ethernet(dst: EthernetAddress, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&[0x02, 0xaa, 0, 0, 0, 1]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn dst_mac(odd: Oddity) -> EthernetAddress {
    match odd.dst_mac {
        0 => port_mac(0),
        1 => EthernetAddress::BROADCAST,
        2 => EthernetAddress([0x01, 0x00, 0x5e, 0, 0, 5]),
        _ => EthernetAddress([0x02, 0xbb, 0, 0, 0, 9]),
    }
}

fn finish(mut f: Vec<u8>, odd: Oddity) -> Vec<u8> {
    f.extend(std::iter::repeat_n(0u8, usize::from(odd.padding)));
    f
}

pub(crate) fn ipv4_frame(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    proto: u8,
    payload: &[u8],
    odd: Oddity,
) -> Vec<u8> {
    let mut f = ethernet(dst_mac(odd), 0x0800);
    let header_len = 4 * usize::from(odd.ihl.max(5));
    let total = (header_len + payload.len()) as i32 + i32::from(odd.length_delta);
    let version = if odd.version == 0 { 4 } else { odd.version };
    let mut ip = vec![0u8; header_len];
    ip[0] = (version << 4) | odd.ihl;
    ip[2..4].copy_from_slice(&(total.max(0) as u16).to_be_bytes());
    ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    ip[6..8].copy_from_slice(&(0x4000 ^ odd.fragment).to_be_bytes());
    ip[8] = ttl;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let check = router_core::datapath::checksum::compute(&ip) ^ u16::from(odd.corrupt_checksum);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    f.extend(ip);
    f.extend_from_slice(payload);
    finish(f, odd)
}

fn ipv6_frame(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hops: u8,
    next: u8,
    payload: &[u8],
    odd: Oddity,
) -> Vec<u8> {
    let mut f = ethernet(dst_mac(odd), 0x86dd);
    let version = if odd.version == 0 { 6 } else { odd.version };
    let len = payload.len() as i32 + i32::from(odd.length_delta);
    let mut ip = [0u8; 40];
    ip[0] = version << 4;
    ip[4..6].copy_from_slice(&(len.max(0) as u16).to_be_bytes());
    ip[6] = next;
    ip[7] = hops;
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&dst.octets());
    f.extend_from_slice(&ip);
    f.extend_from_slice(payload);
    finish(f, odd)
}

/// The XDP verdict router-core's verdict stands for.
pub(crate) fn expected_action(v: &Verdict) -> u32 {
    match v.reason.action() {
        Action::Transmit if v.egress == Some(PortId(0)) => XDP_TX,
        Action::Transmit => XDP_REDIRECT,
        Action::Pass => XDP_PASS,
        Action::Drop => XDP_DROP,
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The reference, possibly perturbed (the negative control).
type Reference = fn(&Tables, &[u8], &mut Vec<u8>) -> Verdict;

pub(crate) fn reference(t: &Tables, frame: &[u8], out: &mut Vec<u8>) -> Verdict {
    process(t, PortId(0), frame, out)
}

/// Run every frame through both sides; the flow events both made, or
/// `Err` describing the first mismatch.
fn compare(
    dp: &mut Datapath,
    lab: &Lab,
    frames: &[Vec<u8>],
    reference: Reference,
) -> Result<Vec<Observation>, String> {
    let built = lab.build();
    let tables = built.tables();
    dp.sync(&lab.snapshot(&tables)?)
        .map_err(|e| e.to_string())?;
    dp.set_flows(Some(UNLIMITED)).map_err(|e| e.to_string())?;
    let before = dp.reason_counts().map_err(|e| e.to_string())?;
    let mut want_counts = [0u64; Reason::COUNT];
    let (mut want, mut got) = (Vec::new(), Vec::new());
    let mut observed = Vec::new();
    for frame in frames {
        let verdict = reference(&tables, frame, &mut want);
        want_counts[verdict.reason as usize] += 1;
        let action = dp.test_run(frame, &mut got).map_err(|e| e.to_string())?;
        let want_bytes: &[u8] = &want;
        if action != expected_action(&verdict) || got != want_bytes {
            return Err(format!(
                "mismatch\n{}\nframe (port 0): {}\nrouter-core: {verdict:?} → XDP {} {}\nxdp program:  XDP {action} {}",
                describe(lab),
                hex(frame),
                expected_action(&verdict),
                hex(want_bytes),
                hex(&got)
            ));
        }
        let events = dp.flow_events().ok_or("the flow reader was taken")?;
        let event = compare_flows(lab, &verdict, &want, events).map_err(|e| {
            format!(
                "flow events differ: {e}\n{}\nframe (port 0): {}\nrouter-core: {verdict:?}",
                describe(lab),
                hex(frame)
            )
        })?;
        observed.extend(event);
    }
    let after = dp.reason_counts().map_err(|e| e.to_string())?;
    let got_counts: Vec<u64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    if got_counts != want_counts {
        return Err(format!(
            "reason counters differ\n{}\nrouter-core {want_counts:?}\nxdp program {got_counts:?}",
            describe(lab)
        ));
    }
    Ok(observed)
}

/// Flow events without a rate limit.
const UNLIMITED: Limit = Limit {
    rate: u32::MAX,
    burst: u32::MAX,
};

/// The program's flow events for one frame against router-core's: the
/// event `flow::observe` makes of the reference verdict, about the packet
/// the verdict's output holds (after an encapsulation, the inner one),
/// byte for byte.
fn compare_flows(
    lab: &Lab,
    verdict: &Verdict,
    out: &[u8],
    events: Vec<Result<Event, BadEvent>>,
) -> Result<Option<Observation>, String> {
    let events: Vec<Event> = events
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let want = flow::observe(
        lab.side(PortId(0)),
        verdict.egress.map(|p| lab.side(p)),
        verdict.reason,
        verdict.decapsulated,
    );
    let (want, event) = match (want, events.as_slice()) {
        (None, []) => return Ok(None),
        (Some(want), [event]) => (want, event),
        (want, got) => return Err(format!("router-core {want:?}, xdp program {got:?}")),
    };
    let ip = verdict.observed_ip(out);
    let expected_egress = verdict.egress.and_then(Lab::ifindex);
    if event.observation != want
        || event.ingress != INGRESS_IFINDEX
        || event.egress != expected_egress
        || event.decapsulated != verdict.decapsulated
        || event.len as usize != ip.len()
        || event.bytes != ip[..ip.len().min(FLOW_BYTES)]
    {
        return Err(format!(
            "router-core {want:?} egress {expected_egress:?} about {}\nxdp program {event:?}",
            hex(ip)
        ));
    }
    Ok(Some(want))
}

fn describe(lab: &Lab) -> String {
    let mut s = format!("config: {:?}\n", lab.config);
    for (prefix, nexthops) in &lab.routes {
        let _ = writeln!(s, "route {prefix} → {nexthops:?}");
    }
    for (addr, mac) in &lab.neighbours {
        let _ = writeln!(s, "neighbour {addr} {mac}");
    }
    for (addr, id) in &lab.identities {
        let _ = writeln!(s, "identity {addr} {id}");
    }
    for (id, port) in &lab.ports {
        let _ = writeln!(
            s,
            "{id}: {} mtu {} owned {:?} announced {:?} v6 {:?}",
            port.addrs.mac, port.mtu, port.addrs.owned, port.addrs.announced, port.ipv6
        );
    }
    s
}

fn cases() -> impl Strategy<Value = (Lab, Vec<Vec<u8>>)> {
    lab().prop_flat_map(|(lab, hosts)| {
        let frames = prop::collection::vec(frame(hosts), FRAMES_PER_TABLE);
        (Just(lab), frames)
    })
}

const TABLES: u32 = 100;
const FRAMES_PER_TABLE: usize = 1000;

fn load() -> Option<Datapath> {
    if let Err(why) = privileged() {
        nexthop_testkit::skip(&format!("the differential test: {why}"));
        return None;
    }
    Some(Datapath::load(&Capacity::default()).expect("the XDP object loads"))
}

#[test]
fn xdp_program_matches_router_core() {
    let Some(dp) = load() else { return };
    let dp = std::cell::RefCell::new(dp);
    let mut runner = TestRunner::new(RunnerConfig {
        cases: TABLES,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..RunnerConfig::default()
    });
    let start = std::time::Instant::now();
    let events = std::cell::RefCell::new(BTreeMap::<String, u64>::new());
    let result = runner.run(&cases(), |(lab, frames)| {
        let observed =
            compare(&mut dp.borrow_mut(), &lab, &frames, reference).map_err(TestCaseError::fail)?;
        for o in observed {
            let kind = match (o.point, o.verdict) {
                (Some(point), _) => point.name().to_string(),
                (None, verdict) => format!("{verdict:?}"),
            };
            *events.borrow_mut().entry(kind).or_default() += 1;
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let events = events.into_inner();
    eprintln!("flow events, equal on both sides: {events:?}");
    for point in ["to-endpoint", "to-network", "to-overlay", "to-stack"] {
        assert!(events.contains_key(point), "no {point} event was made");
    }
    let drops = events.keys().filter(|k| k.starts_with("Dropped")).count();
    assert!(drops >= 5, "only {drops} kinds of drop event were made");
    let counts = dp.borrow().reason_counts().expect("counters read");
    let exits: Vec<(Reason, u64)> = (0..Reason::COUNT as u8)
        .filter_map(|i| Some((Reason::from_index(i)?, counts[usize::from(i)])))
        .collect();
    eprintln!(
        "{} frames over {TABLES} tables in {:?}, 0 mismatches; exits: {exits:?}",
        TABLES as usize * FRAMES_PER_TABLE,
        start.elapsed()
    );
    let missed: Vec<Reason> = exits
        .iter()
        .filter(|&&(_, n)| n == 0)
        .map(|&(r, _)| r)
        .collect();
    assert!(missed.is_empty(), "no generated frame exits by {missed:?}");
}

/// A reference with a different hash seed: ECMP choices move, so the harness must object.
fn perturbed(t: &Tables, frame: &[u8], out: &mut Vec<u8>) -> Verdict {
    let config = Config {
        hash_seed: t.config.hash_seed ^ 0x5a5a_5a5a,
        ..*t.config
    };
    process(
        &Tables {
            config: &config,
            ..*t
        },
        PortId(0),
        frame,
        out,
    )
}

#[test]
fn negative_control_catches_a_perturbed_reference() {
    let Some(mut dp) = load() else { return };
    let gw = |h: u8| Nexthop::gateway(IpAddr::V4(Ipv4Addr::new(10, 255, 0, h)), PortId(0));
    let lab = Lab {
        routes: vec![(
            "10.0.0.0/8".parse().unwrap(),
            vec![gw(2), gw(3), gw(4), gw(5)],
        )],
        neighbours: (2..6)
            .map(|h| {
                let a = IpAddr::V4(Ipv4Addr::new(10, 255, 0, h));
                (a, mac_of(a))
            })
            .collect(),
        ports: BTreeMap::from([port(0, 1500)]),
        identities: BTreeMap::new(),
        config: Config {
            hash_policy: HashPolicy::L4,
            hash_seed: 7,
            tunnel: None,
        },
        pods: BTreeSet::new(),
    };
    let odd = Oddity::NONE;
    let frames: Vec<Vec<u8>> = (0..64u16)
        .map(|i| {
            let payload = [(i >> 8) as u8, i as u8, 0, 80];
            ipv4_frame(
                Ipv4Addr::new(192, 0, 2, 1),
                Ipv4Addr::new(10, 1, 2, 3),
                64,
                17,
                &payload,
                odd,
            )
        })
        .collect();
    compare(&mut dp, &lab, &frames, reference).expect("the true reference agrees");
    let err =
        compare(&mut dp, &lab, &frames, perturbed).expect_err("a perturbed reference is caught");
    assert!(
        err.contains("mismatch") && err.contains("frame (port 0)"),
        "{err}"
    );
}

/// A UDP datagram 10.0.0.1 → 10.1.0.7 arriving on port 0.
fn udp_10_1_0_7() -> Vec<u8> {
    ipv4_frame(
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 1, 0, 7),
        64,
        17,
        &[0, 1, 0, 2, 0, 8, 0, 0],
        Oddity::NONE,
    )
}

/// The flow comparison objects to a missing event, an extra one, another
/// point or other bytes.
#[test]
fn negative_control_flow_events_that_differ_are_caught() {
    let mut lab = Lab {
        routes: Vec::new(),
        neighbours: Vec::new(),
        ports: BTreeMap::from([port(0, 1500), port(1, 1500)]),
        identities: BTreeMap::new(),
        config: Config::default(),
        pods: BTreeSet::new(),
    };
    let frame = udp_10_1_0_7();
    let verdict = Verdict {
        egress: Some(PortId(1)),
        ..reference(&lab.build().tables(), &frame, &mut Vec::new())
    };
    let verdict = Verdict {
        reason: Reason::Forwarded,
        ..verdict
    };
    let ip = verdict.observed_ip(&frame).to_vec();
    let event = |observation, bytes: &[u8]| Event {
        ktime: 1,
        ingress: INGRESS_IFINDEX,
        egress: Lab::ifindex(PortId(1)),
        reason: Reason::Forwarded,
        decapsulated: false,
        observation,
        len: ip.len() as u32,
        bytes: bytes.to_vec(),
    };
    let to_network = flow::observe(Side::Network, Some(Side::Network), Reason::Forwarded, false)
        .expect("a forward makes an event");
    let good = vec![Ok(event(to_network, &ip))];
    assert!(compare_flows(&lab, &verdict, &frame, good.clone()).is_ok());
    assert!(compare_flows(&lab, &verdict, &frame, Vec::new()).is_err());
    assert!(
        compare_flows(
            &lab,
            &verdict,
            &frame,
            [good.clone(), good.clone()].concat()
        )
        .is_err()
    );
    let mut other = ip.clone();
    other[8] ^= 1;
    assert!(compare_flows(&lab, &verdict, &frame, vec![Ok(event(to_network, &other))]).is_err());
    lab.pods.insert(PortId(1));
    assert!(
        compare_flows(&lab, &verdict, &frame, good).is_err(),
        "to-endpoint expected"
    );
}

/// Flow events are off until switched on; within the rate limit each CPU
/// sends its burst and counts the rest as lost.
#[test]
fn flow_events_are_off_by_default_and_rate_limited() {
    let Some(mut dp) = load() else { return };
    let gw = IpAddr::V4(Ipv4Addr::new(10, 255, 1, 2));
    let lab = Lab {
        routes: vec![(
            "10.1.0.0/16".parse().unwrap(),
            vec![Nexthop::gateway(gw, PortId(1))],
        )],
        neighbours: vec![(gw, mac_of(gw))],
        ports: BTreeMap::from([port(0, 1500), port(1, 1500)]),
        identities: BTreeMap::new(),
        config: Config::default(),
        pods: BTreeSet::from([PortId(0)]),
    };
    dp.sync(&lab.snapshot(&lab.build().tables()).unwrap())
        .unwrap();
    let frame = udp_10_1_0_7();
    let run = |dp: &mut Datapath, n: usize| {
        let mut out = Vec::new();
        for _ in 0..n {
            dp.test_run(&frame, &mut out).unwrap();
        }
        dp.flow_events().unwrap()
    };
    dp.set_flows(None).unwrap();
    let before = dp.flow_counters().unwrap();
    assert!(run(&mut dp, 10).is_empty(), "off: no events");
    assert_eq!(dp.flow_counters().unwrap(), before, "off: nothing counted");
    // One event a second, five at once: a test run is far quicker than a second.
    dp.set_flows(Some(Limit { rate: 1, burst: 5 })).unwrap();
    let events = run(&mut dp, 20);
    let after = dp.flow_counters().unwrap();
    // Test runs may move between CPUs, each with its own bucket.
    let cpus = aya::util::nr_cpus().unwrap() as u64;
    let sent = after.sent - before.sent;
    assert_eq!(events.len() as u64, sent);
    assert!((5..=5 * cpus).contains(&sent), "{sent} sent");
    assert_eq!(after.lost() - before.lost(), 20 - sent, "the rest are lost");
    assert_eq!(after.ring_full, before.ring_full);
    let first = events[0].as_ref().unwrap();
    assert_eq!(first.observation.point, Some(Point::ToNetwork));
    dp.set_flows(None).unwrap();
}

/// A frame encapsulated by one host and decapsulated by the next: both hops
/// agree with router-core, and the paths they take are the tunnel ones.
#[test]
fn tunnel_frames_encapsulate_then_decapsulate() {
    let Some(mut dp) = load() else { return };
    let endpoint = IpAddr::V4(Ipv4Addr::new(192, 168, 0, 10));
    let tunnel = |encap| Nexthop {
        kind: NexthopKind::Tunnel {
            endpoint,
            encap,
            vni: None,
        },
        weight: 1,
    };
    let pod = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7));
    let lab = |routes: Vec<(ipnet::IpNet, Vec<Nexthop>)>, pod_port: u16| Lab {
        routes: [routes, underlay()].concat(),
        neighbours: vec![(endpoint, mac_of(endpoint)), (pod, mac_of(pod))],
        ports: BTreeMap::from([port(0, 1500), port(1, 1500)]),
        identities: BTreeMap::from([(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4242)]),
        config: Config {
            hash_policy: HashPolicy::L4,
            hash_seed: 1,
            tunnel: Some(TunnelConfig::new(TUNNEL_LOCAL, INNER_MAC)),
        },
        pods: BTreeSet::from([PortId(pod_port)]),
    };
    let odd = Oddity::NONE;
    let payload = [0x30, 0x39, 0, 80, 0, 12, 0, 0, 1, 2, 3, 4];
    let inner = ipv4_frame(
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 1, 0, 7),
        64,
        17,
        &payload,
        odd,
    );
    for encap in [Encap::Vxlan, Encap::Geneve] {
        // The sender: the pod on port 0 sends into the tunnel.
        let sender = lab(
            vec![("10.1.0.0/16".parse().unwrap(), vec![tunnel(encap)])],
            0,
        );
        let events = compare(&mut dp, &sender, std::slice::from_ref(&inner), reference)
            .expect("encap agrees");
        assert_eq!(events.first().and_then(|o| o.point), Some(Point::ToOverlay));
        let built = sender.build();
        let mut encapsulated = Vec::new();
        let v = reference(&built.tables(), &inner, &mut encapsulated);
        assert_eq!(v.reason, Reason::Encapsulated);
        // The receiver: our endpoint is the frame's destination, the pod is on port 1.
        encapsulated[0..6].copy_from_slice(&port_mac(0).0);
        encapsulated[30..34].copy_from_slice(&TUNNEL_LOCAL.octets());
        let check = router_core::datapath::checksum::compute(&{
            let mut h = encapsulated[14..34].to_vec();
            h[10..12].fill(0);
            h
        });
        encapsulated[24..26].copy_from_slice(&check.to_be_bytes());
        let receiver = lab(
            vec![(
                "10.1.0.0/16".parse().unwrap(),
                vec![Nexthop::connected(PortId(1))],
            )],
            1,
        );
        let events = compare(
            &mut dp,
            &receiver,
            std::slice::from_ref(&encapsulated),
            reference,
        )
        .expect("decap agrees");
        assert_eq!(
            events.first().and_then(|o| o.point),
            Some(Point::ToEndpoint)
        );
        let mut out = Vec::new();
        let v = reference(&receiver.build().tables(), &encapsulated, &mut out);
        assert_eq!(v.reason, Reason::Forwarded, "{encap:?}");
    }
}
