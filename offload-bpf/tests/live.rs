//! The XDP datapath attached to real veth ports in network namespaces that
//! each test creates (and deletes, even on failure): src — rtr — dst with the
//! program on rtr's ports, maps synced from a router-core FIB built for rtr
//! with the neighbours' MACs read from the namespaces. Kernel forwarding is off
//! on rtr, so whatever crosses it was forwarded by the program (and the
//! per-reason counters say so). Needs root; prints why and skips otherwise.
//! Traffic stays between addresses these tests assign inside their namespaces.

mod netns;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Output};
use std::time::Duration;

use aya::programs::XdpMode;
use nexthop_offload_bpf::datapath::{Capacity, Datapath, privileged};
use nexthop_offload_bpf::snapshot::Snapshot;
use router_core::PortId;
use router_core::datapath::{Config, OwnedTables, PortConfig, Reason, TunnelConfig, process};
use router_core::ecmp::HashPolicy;
use router_core::fib::{Encap, Fib, Nexthop, NexthopKind, Protocol, Route};
use router_core::neighbour::{self, arp::PortAddrs};
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;

use netns::Lab;
use nexthop_testkit::{Entered, in_ns, run};

/// One port of rtr: device name, owned address, announced addresses.
struct RtrPort {
    dev: &'static str,
    owned: Ipv4Addr,
    announced: Vec<Ipv4Addr>,
}

/// router-core tables for rtr.
fn rtr_tables(
    lab: &Lab,
    rtr: &str,
    ports: &[RtrPort],
    routes: Vec<(&str, Vec<Nexthop>)>,
    neighbours: &[(Ipv4Addr, EthernetAddress)],
    config: Config,
) -> OwnedTables {
    let mut fib = Fib::new();
    for (prefix, nexthops) in routes {
        fib.insert(
            prefix.parse().unwrap(),
            &Route::new(Protocol::Static, nexthops),
        );
    }
    let mut table = neighbour::Table::new(neighbour::Config::default());
    for &(addr, mac) in neighbours {
        table.insert_reachable(addr.into(), PortId(0), mac, Instant::from_secs(1_i64 << 40));
    }
    let ports = (0u16..)
        .zip(ports)
        .map(|(id, p)| {
            let config = PortConfig {
                addrs: PortAddrs {
                    mac: lab.mac(rtr, p.dev),
                    owned: vec![p.owned],
                    announced: p.announced.clone(),
                },
                ipv6: Default::default(),
                mtu: 1500,
            };
            (PortId(id), config)
        })
        .collect();
    OwnedTables {
        fib,
        neighbours: table,
        ports,
        identities: BTreeMap::new(),
        config,
    }
}

/// Load the datapath and [`bring_up`] with it.
fn start(
    lab: &Lab,
    rtr: &str,
    ports: &[RtrPort],
    peers: &[(&str, &str)],
    t: &OwnedTables,
) -> Datapath {
    let dp = Datapath::load(&Capacity::default()).expect("the XDP object loads");
    bring_up(dp, lab, rtr, ports, peers, t)
}

/// Sync `t` with rtr's ifindexes, attach the datapath natively to rtr's ports
/// and the pass program to their peers (which also turns off the peers'
/// transmit checksum offload); kernel forwarding off on rtr.
/// The map contents of rtr's tables.
fn snapshot(lab: &Lab, rtr: &str, ports: &[RtrPort], t: &OwnedTables) -> Snapshot {
    let ifindex: Vec<u32> = ports.iter().map(|p| lab.ifindex(rtr, p.dev)).collect();
    Snapshot::new(&t.tables(), |id| ifindex.get(usize::from(id.0)).copied())
        .expect("rtr's tables fit the maps")
}

fn bring_up(
    mut dp: Datapath,
    lab: &Lab,
    rtr: &str,
    ports: &[RtrPort],
    peers: &[(&str, &str)],
    t: &OwnedTables,
) -> Datapath {
    lab.sh(rtr, "sysctl -qw net.ipv4.ip_forward=0");
    dp.sync(&snapshot(lab, rtr, ports, t)).expect("maps sync");
    {
        let _inside = Entered::new(rtr);
        for p in ports {
            dp.attach(p.dev, XdpMode::Driver)
                .expect("attach to rtr's port");
        }
    }
    for &(ns, dev) in peers {
        let _inside = Entered::new(ns);
        dp.attach_peer(dev)
            .expect("attach the pass program to the peer");
    }
    dp
}

fn skip() -> bool {
    match privileged() {
        Ok(()) => false,
        Err(why) => {
            nexthop_testkit::skip(&format!("live XDP test: {why}"));
            true
        }
    }
}

fn count(dp: &Datapath, reason: Reason) -> u64 {
    dp.reason_counts().unwrap()[reason as usize]
}

/// src 10.71.1.2 — r0 10.71.1.1 [rtr] r1 10.71.2.1 — dst 10.71.2.2. r0 has
/// interface index 70001, past the datapath's ingress array: frames from src
/// find their port in the hash map, frames from dst in the array.
fn line(lab: &mut Lab) -> (String, String, String) {
    let (src, rtr, dst) = (lab.ns("src"), lab.ns("rtr"), lab.ns("dst"));
    lab.link_indexed(
        (&rtr, "r0", "10.71.1.1/24"),
        Some(70_001),
        (&src, "s0", "10.71.1.2/24"),
    );
    lab.link((&rtr, "r1", "10.71.2.1/24"), (&dst, "d0", "10.71.2.2/24"));
    lab.sh(&src, "ip route add default via 10.71.1.1");
    lab.sh(&dst, "ip route add default via 10.71.2.1");
    (src, rtr, dst)
}

fn rtr_ports() -> Vec<RtrPort> {
    vec![
        RtrPort {
            dev: "r0",
            owned: Ipv4Addr::new(10, 71, 1, 1),
            announced: vec![Ipv4Addr::new(10, 71, 1, 100)],
        },
        RtrPort {
            dev: "r1",
            owned: Ipv4Addr::new(10, 71, 2, 1),
            announced: vec![],
        },
    ]
}

#[test]
fn forwards_ping_and_tcp_with_kernel_forwarding_off() {
    if skip() {
        return;
    }
    let mut lab = Lab::new("fwd");
    let (src, rtr, dst) = line(&mut lab);
    let ports = rtr_ports();
    let t = rtr_tables(
        &lab,
        &rtr,
        &ports,
        vec![
            ("10.71.1.0/24", vec![Nexthop::connected(PortId(0))]),
            ("10.71.2.0/24", vec![Nexthop::connected(PortId(1))]),
        ],
        &[
            (Ipv4Addr::new(10, 71, 1, 2), lab.mac(&src, "s0")),
            (Ipv4Addr::new(10, 71, 2, 2), lab.mac(&dst, "d0")),
        ],
        Config::default(),
    );
    let dp = start(&lab, &rtr, &ports, &[(&src, "s0"), (&dst, "d0")], &t);

    lab.sh(&src, "ping -c 3 -i 0.2 -W 2 10.71.2.2");
    let after_ping = count(&dp, Reason::Forwarded);
    assert!(
        after_ping >= 6,
        "3 requests and 3 replies forwarded: {after_ping}"
    );

    let listener = in_ns(&dst, || TcpListener::bind("10.71.2.2:5001").unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut data = Vec::new();
        conn.read_to_end(&mut data).unwrap();
        conn.write_all(&data).unwrap();
    });
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
    let sent = data.clone();
    let echoed = in_ns(&src, move || {
        let addr: SocketAddr = "10.71.2.2:5001".parse().unwrap();
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(&sent).unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        conn.read_to_end(&mut back).unwrap();
        back
    });
    server.join().unwrap();
    assert!(echoed == data, "1 MiB echoed through rtr");
    let forwarded = count(&dp, Reason::Forwarded) - after_ping;
    eprintln!("TCP 1 MiB each way: {forwarded} frames forwarded by XDP");
    assert!(
        forwarded > 100,
        "TCP segments forwarded by XDP: {forwarded}"
    );
}

#[test]
fn arp_responder_answers_arping_for_announced_only() {
    if skip() {
        return;
    }
    let mut lab = Lab::new("arp");
    let (src, rtr, dst) = line(&mut lab);
    let ports = rtr_ports();
    let t = rtr_tables(&lab, &rtr, &ports, vec![], &[], Config::default());
    let dp = start(&lab, &rtr, &ports, &[(&src, "s0"), (&dst, "d0")], &t);
    let mac = lab.mac(&rtr, "r0").to_string().replace('-', ":");
    let out = lab.sh(&src, "arping -c 2 -w 3 -i s0 10.71.1.100");
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.contains(&mac), "arping hears r0's MAC {mac}: {text}");
    assert!(count(&dp, Reason::ArpReply) >= 2);
    let silent = Command::new("ip")
        .args([
            "netns", "exec", &src, "arping", "-c", "2", "-w", "2", "-i", "s0",
        ])
        .arg("10.71.1.200")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&silent.stdout);
    assert!(
        !silent.status.success() && !text.contains("bytes from"),
        "{text}"
    );
    assert!(count(&dp, Reason::ArpOther) >= 2);
}

#[test]
fn ecmp_spreads_flows_as_router_core_predicts() {
    if skip() {
        return;
    }
    let mut lab = Lab::new("ecmp");
    let (src, rtr, dst) = line(&mut lab);
    lab.link((&rtr, "r2", "10.71.3.1/24"), (&dst, "d1", "10.71.3.2/24"));
    lab.sh(&dst, "ip addr add 10.71.9.1/32 dev lo");
    let mut ports = rtr_ports();
    ports.push(RtrPort {
        dev: "r2",
        owned: Ipv4Addr::new(10, 71, 3, 1),
        announced: vec![],
    });
    let gw = |a: [u8; 4], p: u16| Nexthop::gateway(IpAddr::from(a), PortId(p));
    let t = rtr_tables(
        &lab,
        &rtr,
        &ports,
        vec![
            ("10.71.1.0/24", vec![Nexthop::connected(PortId(0))]),
            (
                "10.71.9.0/24",
                vec![gw([10, 71, 2, 2], 1), gw([10, 71, 3, 2], 2)],
            ),
        ],
        &[
            (Ipv4Addr::new(10, 71, 1, 2), lab.mac(&src, "s0")),
            (Ipv4Addr::new(10, 71, 2, 2), lab.mac(&dst, "d0")),
            (Ipv4Addr::new(10, 71, 3, 2), lab.mac(&dst, "d1")),
        ],
        Config {
            hash_policy: HashPolicy::L4,
            hash_seed: 0x5eed,
            tunnel: None,
        },
    );
    let dp = start(
        &lab,
        &rtr,
        &ports,
        &[(&src, "s0"), (&dst, "d0"), (&dst, "d1")],
        &t,
    );
    lab.sh(&src, "ping -c 1 -W 2 10.71.1.1");
    let sink = in_ns(&dst, || UdpSocket::bind("10.71.9.1:7000").unwrap());
    let flows: Vec<u16> = (40000..40064).collect();
    let mut predicted = [0u64; 3];
    for &sport in &flows {
        let frame = udp_frame(sport);
        let v = process(&t.tables(), PortId(0), &frame, &mut Vec::new());
        predicted[usize::from(v.egress.expect("a transmit").0)] += PER_FLOW;
    }
    let before = [lab.rx_packets(&dst, "d0"), lab.rx_packets(&dst, "d1")];
    in_ns(&src, move || {
        for sport in flows {
            let s = UdpSocket::bind(("10.71.1.2", sport)).unwrap();
            for _ in 0..PER_FLOW {
                s.send_to(b"flow", "10.71.9.1:7000").unwrap();
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(sink);
    let got = [
        lab.rx_packets(&dst, "d0") - before[0],
        lab.rx_packets(&dst, "d1") - before[1],
    ];
    eprintln!(
        "ECMP: router-core predicts {predicted:?} frames on ports 0-2, XDP sent {got:?} on ports 1-2"
    );
    assert!(predicted[1] > 0 && predicted[2] > 0, "both paths used");
    assert!(count(&dp, Reason::Forwarded) >= predicted[1] + predicted[2]);
    assert_eq!(got, [predicted[1], predicted[2]]);
}

/// Datagrams per ECMP flow.
const PER_FLOW: u64 = 4;

/// The first frame of the ECMP test's flow from source port `sport` (only
/// the fields the flow hash and the checks read need to be right).
fn udp_frame(sport: u16) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + 4];
    f[0..6].fill(0xff);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&32u16.to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 71, 1, 2]);
    ip[16..20].copy_from_slice(&[10, 71, 9, 1]);
    let check = router_core::datapath::checksum::compute(ip);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&7000u16.to_be_bytes());
    f[38..40].copy_from_slice(&12u16.to_be_bytes());
    f
}

#[test]
fn vxlan_interops_with_the_kernel_device() {
    if skip() {
        return;
    }
    let mut lab = Lab::new("vxlan");
    let (src, rtr, dst) = (lab.ns("src"), lab.ns("rtr"), lab.ns("dst"));
    lab.link((&src, "s0", "10.71.1.2/24"), (&rtr, "r0", "10.71.1.1/24"));
    lab.link(
        (&rtr, "r1", "192.168.50.1/24"),
        (&dst, "d0", "192.168.50.2/24"),
    );
    lab.sh(&src, "ip route add default via 10.71.1.1");
    // The kernel's VXLAN device on dst: VNI 42, port 8472, to rtr's endpoint.
    lab.sh(
        &dst,
        "ip link add vx0 type vxlan id 42 dstport 8472 local 192.168.50.2 remote 192.168.50.1 dev d0 \
         && ip addr add 10.72.0.2/24 dev vx0 && ip link set vx0 up \
         && ip neigh add 10.72.0.1 lladdr 02:00:00:00:72:01 dev vx0 nud permanent \
         && ip route add 10.71.1.0/24 via 10.72.0.1 dev vx0 onlink",
    );
    let ports = vec![
        RtrPort {
            dev: "r0",
            owned: Ipv4Addr::new(10, 71, 1, 1),
            announced: vec![],
        },
        RtrPort {
            dev: "r1",
            owned: Ipv4Addr::new(192, 168, 50, 1),
            announced: vec![],
        },
    ];
    let tunnel = Nexthop {
        kind: NexthopKind::Tunnel {
            endpoint: Ipv4Addr::new(192, 168, 50, 2).into(),
            encap: Encap::Vxlan,
            vni: Some(42),
        },
        weight: 1,
    };
    let t = rtr_tables(
        &lab,
        &rtr,
        &ports,
        vec![
            ("10.71.1.0/24", vec![Nexthop::connected(PortId(0))]),
            ("192.168.50.0/24", vec![Nexthop::connected(PortId(1))]),
            ("10.72.0.0/24", vec![tunnel]),
        ],
        &[
            (Ipv4Addr::new(10, 71, 1, 2), lab.mac(&src, "s0")),
            (Ipv4Addr::new(192, 168, 50, 2), lab.mac(&dst, "d0")),
        ],
        Config {
            tunnel: Some(TunnelConfig::new(
                Ipv4Addr::new(192, 168, 50, 1),
                lab.mac(&dst, "vx0"),
            )),
            ..Config::default()
        },
    );
    let dp = start(&lab, &rtr, &ports, &[(&src, "s0"), (&dst, "d0")], &t);
    lab.sh(&src, "ping -c 3 -i 0.2 -W 2 10.72.0.2");
    let (encapsulated, forwarded) = (
        count(&dp, Reason::Encapsulated),
        count(&dp, Reason::Forwarded),
    );
    eprintln!(
        "VXLAN: {encapsulated} requests encapsulated, {forwarded} decapsulated replies forwarded"
    );
    assert!(encapsulated >= 3 && forwarded >= 3);
    let vx = lab.read(&dst, "/sys/class/net/vx0/statistics/rx_packets");
    assert!(
        vx.parse::<u64>().unwrap() >= 3,
        "the vxlan device received {vx}"
    );
}

/// A frame the program encapsulates in Geneve (this kernel has no geneve
/// module to receive it) decodes cleanly in tshark: header, VNI, inner packet.
#[test]
fn geneve_frames_decode_in_tshark() {
    if skip() {
        return;
    }
    if Command::new("tshark").arg("--version").output().is_err() {
        nexthop_testkit::skip("the Geneve decode test: tshark is not installed");
        return;
    }
    let endpoint = IpAddr::V4(Ipv4Addr::new(192, 168, 50, 2));
    let mut fib = Fib::new();
    let tunnel = Nexthop {
        kind: NexthopKind::Tunnel {
            endpoint,
            encap: Encap::Geneve,
            vni: Some(0x4d2),
        },
        weight: 1,
    };
    fib.insert(
        "10.72.0.0/24".parse().unwrap(),
        &Route::new(Protocol::Static, vec![tunnel]),
    );
    fib.insert(
        "192.168.50.0/24".parse().unwrap(),
        &Route::new(Protocol::Static, vec![Nexthop::connected(PortId(0))]),
    );
    let mut neighbours = neighbour::Table::new(neighbour::Config::default());
    let peer = EthernetAddress([0x02, 0, 0, 0, 0x50, 2]);
    neighbours.insert_reachable(endpoint, PortId(0), peer, Instant::from_secs(1_i64 << 40));
    let mac = EthernetAddress([0x02, 0, 0, 0, 0x50, 1]);
    let ports = BTreeMap::from([(
        PortId(0),
        PortConfig {
            addrs: PortAddrs {
                mac,
                owned: vec![Ipv4Addr::new(192, 168, 50, 1)],
                announced: vec![],
            },
            ipv6: Default::default(),
            mtu: 1500,
        },
    )]);
    let config = Config {
        tunnel: Some(TunnelConfig::new(
            Ipv4Addr::new(192, 168, 50, 1),
            EthernetAddress([0x02, 0, 0, 0, 0xee, 1]),
        )),
        ..Config::default()
    };
    let owned = OwnedTables {
        fib,
        neighbours,
        ports,
        identities: BTreeMap::new(),
        config,
    };
    let t = owned.tables();
    let mut dp = Datapath::load(&Capacity::default()).expect("the XDP object loads");
    // Port 0 is the loopback test runs arrive on.
    dp.sync(&Snapshot::new(&t, |_| Some(1)).unwrap()).unwrap();
    let mut frame = udp_frame(40000);
    frame[0..6].copy_from_slice(&mac.0);
    frame[30..34].copy_from_slice(&[10, 72, 0, 2]);
    frame[24..26].fill(0);
    let check = router_core::datapath::checksum::compute(&frame[14..34]);
    frame[24..26].copy_from_slice(&check.to_be_bytes());
    let mut out = Vec::new();
    assert_eq!(dp.test_run(&frame, &mut out).unwrap(), 3, "XDP_TX");
    let mut want = Vec::new();
    let v = process(&t, PortId(0), &frame, &mut want);
    assert_eq!((v.reason, &out), (Reason::Encapsulated, &want));

    let path = std::env::temp_dir().join(format!("nexthop-geneve-{}.pcap", std::process::id()));
    // pcap 2.4, Ethernet link type, then one record.
    let mut pcap = Vec::new();
    pcap.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, 65535, 1] {
        pcap.extend_from_slice(&word.to_le_bytes());
    }
    for word in [0u32, 0, out.len() as u32, out.len() as u32] {
        pcap.extend_from_slice(&word.to_le_bytes());
    }
    pcap.extend_from_slice(&out);
    std::fs::write(&path, &pcap).unwrap();
    let decoded = run(Command::new("tshark").arg("-r").arg(&path).args([
        "-d",
        "udp.port==6081,geneve",
        "-V",
    ]));
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&decoded.stdout);
    for needle in [
        "Generic Network Virtualization Encapsulation",
        "Virtual Network Identifier (VNI): 0x0004d2",
        "Protocol Type: Transparent Ethernet bridging (0x6558)",
        "Src: 192.168.50.1, Dst: 192.168.50.2",
        "Src: 10.71.1.2, Dst: 10.72.0.2",
        "Dst Port: 7000",
    ] {
        assert!(text.contains(needle), "tshark shows {needle:?}:\n{text}");
    }
    assert!(
        !text.contains("Malformed") && !text.contains("Expert Info (Error"),
        "{text}"
    );
}

/// A pin directory on the bpf filesystem (mounted at /sys/fs/bpf if it is
/// not), removed with everything pinned in it on drop.
struct Pins(std::path::PathBuf);

impl Pins {
    /// The directory called `name` (unique to the test: its router's namespace).
    fn new(name: &str) -> Option<Pins> {
        let root = std::path::Path::new("/sys/fs/bpf");
        if let Err(why) = nexthop_offload_bpf::datapath::mount_bpffs(root) {
            nexthop_testkit::skip(&why.to_string());
            return None;
        }
        Some(Pins(root.join(name)))
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = nexthop_offload_bpf::datapath::remove_pins(&self.0);
    }
}

/// Packet loss `ping` reported, in percent.
fn loss(ping: &Output) -> f64 {
    let text = String::from_utf8_lossy(&ping.stdout);
    text.split(", ")
        .find_map(|part| part.strip_suffix("% packet loss"))
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("no loss figure in {text}"))
}

#[test]
fn pinned_datapath_forwards_while_its_owner_restarts() {
    if skip() {
        return;
    }
    let mut lab = Lab::new("pin");
    let (src, rtr, dst) = line(&mut lab);
    let Some(pins) = Pins::new(&rtr) else { return };
    let ports = rtr_ports();
    let routes = |extra: bool| {
        let mut routes = vec![
            ("10.71.1.0/24", vec![Nexthop::connected(PortId(0))]),
            ("10.71.2.0/24", vec![Nexthop::connected(PortId(1))]),
        ];
        if extra {
            routes.push((
                "10.71.9.0/24",
                vec![Nexthop::gateway("10.71.2.2".parse().unwrap(), PortId(1))],
            ));
        }
        routes
    };
    let neighbours = [
        (Ipv4Addr::new(10, 71, 1, 2), lab.mac(&src, "s0")),
        (Ipv4Addr::new(10, 71, 2, 2), lab.mac(&dst, "d0")),
    ];
    let first = rtr_tables(
        &lab,
        &rtr,
        &ports,
        routes(false),
        &neighbours,
        Config::default(),
    );
    let peers = [(src.as_str(), "s0"), (dst.as_str(), "d0")];
    let capacity = Capacity::default();
    let dp = Datapath::load_pinned(&capacity, &pins.0).expect("a pinned datapath loads");
    let dp = bring_up(dp, &lab, &rtr, &ports, &peers, &first);
    lab.sh(&src, "ping -c 2 -i 0.2 -W 2 10.71.2.2");
    let half = dp.active_half();
    let program = lab.xdp_prog_id(&rtr, "r0");
    let before = count(&dp, Reason::Forwarded);

    // The owner goes away while a ping runs; another loads from the pins,
    // replaces the program on the pinned links and syncs new tables.
    let pinger = Command::new("ip")
        .args([
            "netns",
            "exec",
            &src,
            "ping",
            "-q",
            "-c",
            "300",
            "-i",
            "0.01",
            "-W",
            "1",
            "10.71.2.2",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(dp);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        lab.xdp_prog_id(&rtr, "r0"),
        program,
        "the pinned link keeps the program"
    );
    let wrong = Capacity {
        nodes: capacity.nodes * 2,
        ..capacity
    };
    let refused = Datapath::load_pinned(&wrong, &pins.0)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("V4_NODES") && refused.contains("capacity"),
        "{refused}"
    );
    let dp = Datapath::load_pinned(&capacity, &pins.0).expect("the pinned maps are reused");
    assert_eq!(
        dp.active_half(),
        half,
        "the new owner reads which half is live"
    );
    let forwarded_meanwhile = count(&dp, Reason::Forwarded) - before;
    assert!(
        forwarded_meanwhile > 20,
        "XDP forwarded {forwarded_meanwhile} frames with no owner"
    );
    let second = rtr_tables(
        &lab,
        &rtr,
        &ports,
        routes(true),
        &neighbours,
        Config::default(),
    );
    let dp = bring_up(dp, &lab, &rtr, &ports, &peers, &second);
    assert_ne!(dp.active_half(), half, "the new tables went in by a flip");
    assert_ne!(
        lab.xdp_prog_id(&rtr, "r0"),
        program,
        "the new program replaced the old one"
    );
    let ping = pinger.wait_with_output().unwrap();
    assert_eq!(
        loss(&ping),
        0.0,
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    lab.sh(&dst, "ip addr add 10.71.9.1/32 dev lo");
    lab.sh(&src, "ping -c 2 -i 0.2 -W 2 10.71.9.1");
    eprintln!(
        "300 pings across the restart, 0 lost; {forwarded_meanwhile} frames forwarded while no process owned the datapath"
    );

    // Removing the pins detaches the program: with kernel forwarding off, nothing crosses rtr.
    drop(dp);
    nexthop_offload_bpf::datapath::remove_pins(&pins.0).unwrap();
    let gone = Command::new("ip")
        .args([
            "netns",
            "exec",
            &src,
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "1",
            "10.71.2.2",
        ])
        .output()
        .unwrap();
    assert!(
        !gone.status.success(),
        "rtr still forwards after the pins are removed"
    );
}

/// A TCP server on `addr` in `ns` that answers every connection with what
/// it read, after a line naming the peer it saw (`RemoteAddr: IP:PORT`),
/// for `connections` connections.
fn whoami(ns: &str, addr: &str, connections: usize) -> std::thread::JoinHandle<()> {
    let listener = in_ns(ns, || TcpListener::bind(addr).unwrap());
    std::thread::spawn(move || {
        for _ in 0..connections {
            let (mut conn, peer) = listener.accept().unwrap();
            let mut data = Vec::new();
            conn.read_to_end(&mut data).unwrap();
            conn.write_all(format!("RemoteAddr: {peer}\n").as_bytes())
                .unwrap();
            conn.write_all(&data).unwrap();
        }
    })
}

/// Send `data` to `addr` from `ns`, half-close, read the answer.
fn exchange(ns: &str, addr: &str, data: Vec<u8>) -> Vec<u8> {
    let addr: SocketAddr = addr.parse().unwrap();
    in_ns(ns, move || {
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn.write_all(&data).unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        conn.read_to_end(&mut back).unwrap();
        back
    })
}

#[test]
fn service_stage_balances_tcp_to_a_backend_behind_another_port_with_snat() {
    use nexthop_offload_bpf::services::ServiceMaps;
    use router_core::service::Protocol as L4;
    use router_core::service::datapath;
    use router_core::service::table::{
        BackendSpec, BackendState, FrontendKind, FrontendSpec, L3n4, ServiceTable,
    };
    if skip() {
        return;
    }
    let mut lab = Lab::new("svc");
    let (src, rtr, dst) = line(&mut lab);
    let ports = rtr_ports();
    let t = rtr_tables(
        &lab,
        &rtr,
        &ports,
        vec![
            ("10.71.1.0/24", vec![Nexthop::connected(PortId(0))]),
            ("10.71.2.0/24", vec![Nexthop::connected(PortId(1))]),
        ],
        &[
            (Ipv4Addr::new(10, 71, 1, 2), lab.mac(&src, "s0")),
            (Ipv4Addr::new(10, 71, 2, 2), lab.mac(&dst, "d0")),
        ],
        Config::default(),
    );
    let dp = start(&lab, &rtr, &ports, &[(&src, "s0"), (&dst, "d0")], &t);

    // A LoadBalancer address rtr's kernel knows nothing of, and a NodePort
    // on r0's own address, both to the backend on dst (another node's pod:
    // outside traffic to it is source-NATed to r1's address).
    let frontend = |addr: [u8; 4], port, kind| {
        let backend = BackendSpec {
            addr: L3n4 {
                addr: IpAddr::from([10, 71, 2, 2]),
                port: 5001,
                protocol: L4::Tcp,
            },
            state: BackendState::Active,
            local: false,
            weight: 100,
            node: Some(IpAddr::from([10, 71, 2, 2])),
        };
        let spec = FrontendSpec {
            service: ("default".into(), "whoami".into()),
            kind,
            external_local: false,
            internal_local: false,
            affinity_seconds: None,
            backends: vec![backend],
        };
        let addr = L3n4 {
            addr: IpAddr::from(addr),
            port,
            protocol: L4::Tcp,
        };
        (addr, spec)
    };
    let config = datapath::Config {
        snat_v4: Some(Ipv4Addr::new(10, 71, 2, 1)),
        ..datapath::Config::default()
    };
    let table = ServiceTable::new(
        &config.maglev,
        [
            frontend([172, 16, 1, 1], 80, FrontendKind::LoadBalancer),
            frontend([10, 71, 1, 1], 30080, FrontendKind::NodePort),
        ]
        .into_iter()
        .collect(),
    );
    let mut with_services = snapshot(&lab, &rtr, &ports, &t);
    with_services.services = Some(
        ServiceMaps::new(&config, &table, &Default::default()).expect("the table fits the maps"),
    );
    let mut dp = dp;
    dp.sync(&with_services).expect("maps sync");

    let connections = 10;
    let server = whoami(&dst, "10.71.2.2:5001", connections + 1);
    for i in 0..connections {
        let to = if i % 2 == 0 {
            "172.16.1.1:80"
        } else {
            "10.71.1.1:30080"
        };
        let back = exchange(&src, to, b"hello".to_vec());
        let text = String::from_utf8_lossy(&back);
        assert!(
            text.starts_with("RemoteAddr: 10.71.2.1:") && text.ends_with("hello"),
            "the backend sees rtr's SNAT address, the client its answer: {text}"
        );
    }
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
    let back = exchange(&src, "172.16.1.1:80", data.clone());
    server.join().unwrap();
    assert!(back.ends_with(&data), "1 MiB echoed through the LB address");
    let counts = dp.service_counts().unwrap();
    let conns = dp.connections().unwrap();
    eprintln!(
        "service stage: opened {} snat {} replies {}; {} connections tracked; {} frames forwarded",
        counts[0],
        counts[1],
        counts[4],
        conns.len(),
        count(&dp, Reason::Forwarded)
    );
    assert_eq!(
        counts[0],
        connections as u64 + 1,
        "one flow opened per connection"
    );
    assert_eq!(counts[1], counts[0], "every flow source-NATed");
    assert!(counts[4] > 100, "replies translated back: {}", counts[4]);
    assert_eq!(conns.len(), connections + 1);
}
