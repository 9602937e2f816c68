//! eBPF datapath benchmark: per-packet program cost of each path under
//! `BPF_PROG_TEST_RUN`, and packets per second forwarded through a
//! src — rtr — dst namespace topology by the XDP program and by Linux kernel
//! forwarding, in one run with one generator, at FIB sizes 1, 100k and 1M.
//!
//! Run: `cargo bench -p nexthop-offload-bpf --bench xdp` (add `-- --quick` to
//! skip the 1M table). Needs root; prints why and does nothing otherwise.
//! Prints figures, asserts nothing.
//!
//! - Program cost: the kernel-reported duration of test runs with the frame
//!   arriving on rtr's port. Paths whose frame the program leaves reusable
//!   (forward, ECMP, local pass) run `repeat` 254 with TTL 255 (each repeat
//!   decrements the TTL of the same buffer); encap, decap and ARP change the
//!   frame into another path's input, so they run `repeat` 1 per call, which
//!   adds the kernel's timer reads (the local-pass row shows both). Median over calls.
//! - Anchor, measured in the same run: a minimal program doing one BPF
//!   `LPM_TRIE` lookup on the destination address, the trie holding the same
//!   random table, and an empty program (the test-run floor).
//!   Then single runs to destinations scattered over the table (cold caches)
//!   through the datapath and through the `LPM_TRIE` program.
//! - Throughput: the generator is a tiny XDP program that rewrites a 60-byte
//!   UDP frame and returns `XDP_TX`, run with `BPF_F_TEST_XDP_LIVE_FRAMES` on
//!   src's veth (pinned to CPU 0; r0's NAPI is threaded so that forwarding
//!   runs on the other core): one flow, or (largest table) each frame to a
//!   random one of 65,536 addresses scattered over the table (where the
//!   kernel refuses live frames, the same frames go out of an `AF_PACKET`
//!   socket, and the table says so). Counted: frames
//!   received on dst's veth, where an XDP program drops them. Rounds alternate
//!   the datapath attached to rtr and Linux forwarding (program detached,
//!   `ip_forward=1`, the kernel holding the same routes), same generator.
//!
//! The topology, the generator and the measurement are in `support/live.rs`
//! (shared with `benches/lb.rs`).
//!
//! Tables are random but shaped like an Internet table (the IPv4 length mix of
//! `router-core/benches/fib.rs`), outside 10.0.0.0/8 where the test addresses live.
//! Traffic stays inside the namespaces this benchmark creates (deleted on drop).

#[path = "support/live.rs"]
mod live;
#[path = "../tests/netns/mod.rs"]
mod netns;
#[path = "../../router-core/benches/support/prefixes.rs"]
mod prefixes;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};
use std::time::Instant;

use ipnet::{IpNet, Ipv4Net};
use nexthop_offload_bpf::datapath::{Attachment, Capacity, Datapath, privileged};
use nexthop_offload_bpf::snapshot::Snapshot;
use router_core::PortId;
use router_core::datapath::{Config, OwnedTables, Reason, Tables, TunnelConfig, process};
use router_core::ecmp::HashPolicy;
use router_core::fib::{Encap, Fib, Nexthop, NexthopKind, Protocol, Route};
use router_core::neighbour;
use smoltcp::wire::EthernetAddress;

use live::{
    DST, Generator, R0, R1, Rates, SRC, Scatter, Topology, attach_rtr, attach_sink, blast,
    generator_kind, in_situ, mpps, pin_dst_neighbour, prog, sys, topology, udp,
};
use nexthop_testkit::{Entered, in_ns};
use prefixes::Rng;

/// What only this benchmark loads: the `LPM_TRIE` anchor (its map and
/// program), the redirect-only ceiling and the empty program.
mod anchor {
    use std::io;
    use std::os::fd::OwnedFd;

    use super::live::prog::*;
    use super::live::sys::{self, Attr, MAP_CREATE, insn};

    const MAP_TYPE_LPM_TRIE: u32 = 11;
    const F_NO_PREALLOC: u32 = 1;
    pub const XDP_PASS: i32 = 2;

    /// An IPv4 `LPM_TRIE` map (key: prefix length + address, value: u32).
    pub fn lpm_trie(max_entries: u32) -> io::Result<OwnedFd> {
        Attr::new()
            .u32(0, MAP_TYPE_LPM_TRIE)
            .u32(4, 8)
            .u32(8, 4)
            .u32(12, max_entries)
            .u32(16, F_NO_PREALLOC)
            .call(MAP_CREATE)
            .map(sys::fd)
    }

    /// Insert `addr/len → value` into an `lpm_trie` map.
    pub fn lpm_insert(map: i32, addr: [u8; 4], len: u8, value: u32) -> io::Result<()> {
        let mut key = [0u8; 8];
        key[..4].copy_from_slice(&u32::from(len).to_ne_bytes());
        key[4..].copy_from_slice(&addr);
        sys::update(map, &key, &value.to_ne_bytes())
    }

    /// Read the IPv4 destination (so the frame's first cache line is
    /// fetched, as any forwarder must), then `bpf_redirect(ifindex, 0)`.
    pub fn redirect(ifindex: u32) -> Vec<u64> {
        let mut p = prologue(34);
        p.extend([
            insn(LDX_W, 5, 2, 30, 0),
            insn(MOV_K, 1, 0, 0, ifindex as i32),
            insn(MOV_K, 2, 0, 0, 0),
            insn(CALL, 0, 0, 0, 23),
            insn(EXIT, 0, 0, 0, 0),
        ]);
        p
    }

    /// Look the IPv4 destination up in the `LPM_TRIE` map `map`: `XDP_TX` on a hit.
    pub fn lpm_lookup(map: i32) -> Vec<u64> {
        let mut p = prologue(34);
        p.extend([
            insn(LDX_W, 5, 2, 30, 0),
            insn(ST_W, 10, 0, -8, 32),
            insn(STX_W, 10, 5, -4, 0),
            insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map),
            0,
            insn(MOV_X, 2, 10, 0, 0),
            insn(ADD_K, 2, 0, 0, -8),
            insn(CALL, 0, 0, 0, 1),
            insn(JEQ_K, 0, 0, 2, 0),
            insn(MOV_K, 0, 0, 0, XDP_TX),
            insn(EXIT, 0, 0, 0, 0),
            insn(MOV_K, 0, 0, 0, XDP_PASS),
            insn(EXIT, 0, 0, 0, 0),
        ]);
        p
    }
}

/// `n` distinct random unicast prefixes outside 0/8, 10/8, 127/8 and 224/3.
fn random_table(n: usize) -> Vec<Ipv4Net> {
    let reserved = |a: Ipv4Addr| matches!(a.octets()[0], 0 | 10 | 127 | 224..);
    prefixes::v4_prefixes(n, &mut Rng(0x00ff_10ad), reserved)
        .into_iter()
        .collect()
}

/// The tunnel endpoint behind r1 (a neighbour entry only, for test runs).
const ENDPOINT: [u8; 4] = [10, 71, 2, 9];
/// Forwarded traffic goes here (rtr routes 10.71.9.0/24 to dst, which drops it).
const SINK: [u8; 4] = [10, 71, 9, 1];
const INNER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x72, 1]);

/// router-core tables for rtr: the paths benchmarked plus `table`.
struct RtrTables {
    /// Routes in the FIB.
    routes: usize,
    owned: OwnedTables,
}

impl RtrTables {
    fn new(topo: &Topology, table: &[Ipv4Net]) -> Self {
        let v4 = |a: [u8; 4]| IpAddr::from(a);
        let gw = |last: u8| Nexthop::gateway(v4([10, 71, 2, last]), PortId(1));
        let tunnel = Nexthop {
            kind: NexthopKind::Tunnel {
                endpoint: v4(ENDPOINT),
                encap: Encap::Vxlan,
                vni: Some(42),
            },
            weight: 1,
        };
        let mut fib = Fib::new();
        let mut add = |prefix: &str, nexthops: Vec<Nexthop>| {
            fib.insert(
                prefix.parse().unwrap(),
                &Route::new(Protocol::Static, nexthops),
            );
        };
        add("10.71.1.0/24", vec![Nexthop::connected(PortId(0))]);
        add("10.71.2.0/24", vec![Nexthop::connected(PortId(1))]);
        add("10.71.9.0/24", vec![gw(2)]);
        add("10.71.10.0/24", vec![gw(2), gw(3)]);
        add("10.71.11.0/24", vec![gw(2), gw(3), gw(4), gw(5)]);
        add("10.72.0.0/24", vec![tunnel]);
        for &p in table {
            fib.insert(IpNet::V4(p), &Route::new(Protocol::Static, vec![gw(2)]));
        }
        let mut neighbours = neighbour::Table::new(neighbour::Config::default());
        let forever = smoltcp::time::Instant::from_secs(1_i64 << 40);
        let mut known = vec![(v4(SRC), PortId(0), topo.s0), (v4(DST), PortId(1), topo.d0)];
        for last in [3, 4, 5, 9] {
            known.push((
                v4([10, 71, 2, last]),
                PortId(1),
                EthernetAddress([0x02, 0, 0, 0, 2, last]),
            ));
        }
        for (addr, port, mac) in known {
            neighbours.insert_reachable(addr, port, mac, forever);
        }
        let owned = OwnedTables {
            fib,
            neighbours,
            ports: live::rtr_ports(topo),
            identities: BTreeMap::new(),
            config: Config {
                hash_policy: HashPolicy::L4,
                hash_seed: 0x5eed,
                tunnel: Some(TunnelConfig::new(R1.into(), INNER_MAC)),
            },
        };
        RtrTables {
            routes: table.len() + 1,
            owned,
        }
    }

    fn tables(&self) -> Tables<'_> {
        self.owned.tables()
    }
}

/// One benchmarked path: name, ingress port, frame, whether it may repeat.
struct Path {
    name: &'static str,
    port: u16,
    frame: Vec<u8>,
    repeats: bool,
}

fn paths(topo: &Topology) -> Vec<Path> {
    let from_src = |dst, ttl| udp(topo.r0, topo.s0, (SRC, dst), ttl, 60);
    let mut decap = udp(topo.r1, topo.d0, (ENDPOINT, R1), 64, 14 + 20 + 8 + 8 + 60);
    decap[36..38].copy_from_slice(&8472u16.to_be_bytes());
    decap[42] = 0x08;
    decap[46..49].copy_from_slice(&[0, 0, 42]);
    let inner = udp(
        INNER_MAC,
        EthernetAddress([0x02, 0, 0, 0, 0x72, 2]),
        ([10, 72, 0, 5], SRC),
        64,
        60,
    );
    decap[50..].copy_from_slice(&inner);
    let mut arp = vec![0u8; 60];
    arp[0..6].fill(0xff);
    arp[6..12].copy_from_slice(&topo.s0.0);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    arp[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp[22..28].copy_from_slice(&topo.s0.0);
    arp[28..32].copy_from_slice(&SRC);
    arp[38..42].copy_from_slice(&R0);
    let path = |name, port, frame, repeats| Path {
        name,
        port,
        frame,
        repeats,
    };
    vec![
        path("forward", 0, from_src(SINK, 255), true),
        path(
            "forward+ECMP 2 (L4)",
            0,
            from_src([10, 71, 10, 1], 255),
            true,
        ),
        path(
            "forward+ECMP 4 (L4)",
            0,
            from_src([10, 71, 11, 1], 255),
            true,
        ),
        path("VXLAN encap", 0, from_src([10, 72, 0, 1], 255), false),
        path("VXLAN decap+forward", 1, decap, false),
        path("ARP reply", 0, arp, false),
        path("local pass", 0, from_src(R0, 255), true),
    ]
}

/// Calls of `repeat` 254 per repeatable path, of `repeat` 1 otherwise.
const CALLS_REPEAT: usize = 31;
const CALLS_SINGLE: usize = 301;
const REPEAT: u32 = 254;

fn median(mut v: Vec<u32>) -> u32 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Median kernel-reported ns per packet of `calls` runs of `repeat`, and the verdict.
fn cost(prog: i32, frame: &[u8], ifindex: u32, repeat: u32, calls: usize) -> (u32, u32) {
    let mut verdict = 0;
    let durations = (0..calls)
        .map(|_| {
            let (ret, ns) = sys::test_run(prog, frame, ifindex, repeat, 0).expect("test run");
            verdict = ret;
            ns
        })
        .collect();
    (median(durations), verdict)
}

fn verdict_name(v: u32) -> &'static str {
    ["ABORTED", "DROP", "PASS", "TX", "REDIRECT"]
        .get(v as usize)
        .copied()
        .unwrap_or("?")
}

/// Frames the generator sends per measurement.
const GENERATED: u32 = 5_000_000;
/// Alternating XDP / kernel measurements per table size.
const ROUNDS: usize = 3;

/// Install `table` (and the sink route) in rtr's kernel FIB with `ip -batch`.
fn kernel_routes(topo: &Topology, table: &[Ipv4Net]) {
    let mut batch = String::from("route add 10.71.9.0/24 via 10.71.2.2 proto static\n");
    for p in table {
        batch.push_str(&format!("route add {p} via 10.71.2.2 proto static\n"));
    }
    let mut child = Command::new("ip")
        .args(["-n", &topo.rtr, "-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ip runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(batch.as_bytes())
        .unwrap();
    child.wait().unwrap();
}

/// One row of the program-cost table.
struct Cost {
    routes: usize,
    path: String,
    /// Median ns per packet at `repeat` 254, for paths that can repeat.
    repeated: Option<u32>,
    /// Median ns of single runs.
    single: u32,
    verdict: String,
}

/// One row of the throughput table: alternating (XDP, kernel) rounds.
struct Throughput {
    routes: usize,
    traffic: &'static str,
    rounds: Vec<Round>,
    /// Mean ns per run of the datapath and of the redirect-only program on
    /// r0 while forwarding, from `kernel.bpf_stats_enabled` (one extra run each).
    in_situ: (f64, f64),
}

/// One round: the datapath, kernel forwarding, and the topology's ceiling
/// (a program on r0 that reads the destination and redirects to r1, no
/// lookup), one after the other.
struct Round {
    xdp: Rates,
    kernel: Rates,
    redirect: Rates,
}

/// Entries of the generator's destination map (a power of two).
const DESTINATIONS: u32 = 1 << 16;

/// `count` addresses, each inside a random prefix of `table` (`SINK` if it is empty).
fn scattered(table: &[Ipv4Net], count: usize) -> Vec<[u8; 4]> {
    let mut rng = Rng(table.len() as u64);
    (0..count)
        .map(|_| {
            if table.is_empty() {
                return SINK;
            }
            let p = table[(rng.next() % table.len() as u64) as usize];
            let host = rng.next() as u32 & u32::from(p.hostmask());
            (p.network().to_bits() | host).to_be_bytes()
        })
        .collect()
}

/// The XDP program attached to rtr's r0, as a descriptor for test runs.
fn attached_program(topo: &Topology) -> aya::programs::ProgramFd {
    let id = topo.lab.xdp_prog_id(&topo.rtr, "r0");
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .expect("the attached program is loaded")
        .fd()
        .expect("a descriptor of the attached program")
}

/// Per-path program cost of `prog`, checked against router-core's verdict.
fn path_costs(topo: &Topology, t: &RtrTables, prog: i32, out: &mut Vec<Cost>) {
    let ifindex = [topo.ifindex.0, topo.ifindex.1];
    for path in paths(topo) {
        let reference = process(&t.tables(), PortId(path.port), &path.frame, &mut Vec::new());
        let ifindex = ifindex[usize::from(path.port)];
        let (frame, repeats) = (path.frame, path.repeats);
        let (repeated, (single, verdict)) = in_ns(&topo.rtr, move || {
            (
                repeats.then(|| cost(prog, &frame, ifindex, REPEAT, CALLS_REPEAT).0),
                cost(prog, &frame, ifindex, 1, CALLS_SINGLE),
            )
        });
        out.push(Cost {
            routes: t.routes,
            path: path.name.to_string(),
            repeated,
            single,
            verdict: format!("{} / {:?}", verdict_name(verdict), reference.reason),
        });
    }
}

/// The anchors over `table` (a program doing one `LPM_TRIE` lookup, and the
/// empty program), then single runs to scattered destinations through the
/// datapath `prog` and the lookup program.
fn anchor_costs(topo: &Topology, table: &[Ipv4Net], prog: i32, empty: i32, out: &mut Vec<Cost>) {
    let routes = table.len() + 1;
    let trie = anchor::lpm_trie(routes as u32).expect("an LPM trie");
    anchor::lpm_insert(trie.as_raw_fd(), [10, 71, 9, 0], 24, 1).expect("insert");
    for p in table {
        anchor::lpm_insert(trie.as_raw_fd(), p.addr().octets(), p.prefix_len(), 1).expect("insert");
    }
    let lookup =
        sys::load_xdp(&anchor::lpm_lookup(trie.as_raw_fd())).expect("the LPM program loads");
    let lookup = lookup.as_raw_fd();
    let r0 = topo.ifindex.0;
    let frame = udp(topo.r0, topo.s0, (SRC, SINK), 255, 60);
    let anchors = in_ns(&topo.rtr, move || {
        [lookup, empty].map(|p| {
            let (repeated, verdict) = cost(p, &frame, r0, REPEAT, CALLS_REPEAT);
            (
                Some(repeated),
                cost(p, &frame, r0, 1, CALLS_SINGLE).0,
                verdict,
            )
        })
    });
    // One run each (repeat 1): lookups that do not find the tables in cache.
    let frames: Vec<Vec<u8>> = scattered(table, CALLS_SINGLE)
        .into_iter()
        .map(|dst| udp(topo.r0, topo.s0, (SRC, dst), 255, 60))
        .collect();
    let cold = in_ns(&topo.rtr, move || {
        [prog, lookup].map(|p| {
            let runs: Vec<(u32, u32)> = frames
                .iter()
                .map(|f| sys::test_run(p, f, r0, 1, 0).expect("test run"))
                .collect();
            let verdict = runs.last().map_or(0, |r| r.0);
            (
                None,
                median(runs.into_iter().map(|r| r.1).collect()),
                verdict,
            )
        })
    });
    let names = [
        "anchor: LPM_TRIE lookup",
        "anchor: empty program",
        "forward, scattered dst",
        "anchor: LPM_TRIE, scattered",
    ];
    for ((repeated, single, verdict), name) in anchors.into_iter().chain(cold).zip(names) {
        out.push(Cost {
            routes,
            path: name.to_string(),
            repeated,
            single,
            verdict: verdict_name(verdict).to_string(),
        });
    }
}

/// Alternate XDP forwarding by `dp` and kernel forwarding over the same
/// routes, and the redirect-only program `redirect`, `ROUNDS` times per
/// generator of `generators`. Leaves `dp` detached.
fn throughput(
    topo: &Topology,
    dp: &mut Datapath,
    mut attached: Vec<Attachment>,
    (table, redirect): (&[Ipv4Net], i32),
    generators: &[(&'static str, &Generator)],
    out: &mut Vec<Throughput>,
) {
    kernel_routes(topo, table);
    pin_dst_neighbour(topo);
    for &(traffic, generator) in generators {
        let mut rounds = Vec::new();
        let mut in_situ_ns = (0.0, 0.0);
        for round in 0..ROUNDS {
            if attached.is_empty() {
                attached = attach_rtr(dp, topo);
            }
            topo.lab.sh(&topo.rtr, "sysctl -qw net.ipv4.ip_forward=0");
            let before = dp.reason_counts().unwrap()[Reason::Forwarded as usize];
            let xdp = blast(topo, generator, GENERATED);
            let counted = dp.reason_counts().unwrap()[Reason::Forwarded as usize] - before;
            if round == 0 {
                in_situ_ns.0 = in_situ(topo, generator, GENERATED);
            }
            for a in attached.drain(..) {
                dp.detach(a).expect("detach from rtr's port");
            }
            topo.lab.sh(&topo.rtr, "sysctl -qw net.ipv4.ip_forward=1");
            let kernel = blast(topo, generator, GENERATED);
            topo.lab.sh(&topo.rtr, "sysctl -qw net.ipv4.ip_forward=0");
            let r0 = topo.ifindex.0;
            let link = in_ns(&topo.rtr, move || sys::attach_xdp(redirect, r0))
                .expect("attach the redirect-only program");
            let ceiling = blast(topo, generator, GENERATED);
            if round == 0 {
                in_situ_ns.1 = in_situ(topo, generator, GENERATED);
            }
            drop(link);
            eprintln!(
                "{} routes, {traffic}: XDP {} Mpps ({counted} counted Forwarded by the program), kernel {} Mpps, redirect only {} Mpps",
                table.len() + 1,
                mpps(xdp.1),
                mpps(kernel.1),
                mpps(ceiling.1)
            );
            rounds.push(Round {
                xdp,
                kernel,
                redirect: ceiling,
            });
        }
        out.push(Throughput {
            routes: table.len() + 1,
            traffic,
            rounds,
            in_situ: in_situ_ns,
        });
    }
    topo.lab.sh(
        &topo.rtr,
        "sysctl -qw net.ipv4.ip_forward=0; ip route flush proto static",
    );
}

/// The generator's destinations: `DESTINATIONS` addresses scattered over
/// `table`, each with the IPv4 header checksum of the generator's frame to it.
fn destinations(topo: &Topology, table: &[Ipv4Net]) -> Vec<([u8; 4], [u8; 2])> {
    scattered(table, DESTINATIONS as usize)
        .into_iter()
        .map(|dst| {
            let frame = udp(topo.r0, topo.s0, (SRC, dst), 64, 60);
            (dst, [frame[24], frame[25]])
        })
        .collect()
}

fn report(costs: &[Cost], rates: &[Throughput]) {
    println!("\nProgram cost under BPF_PROG_TEST_RUN, kernel-reported ns per packet (median)");
    println!(
        "{:<9} {:<28} {:>10} {:>8}  verdict / router-core reason",
        "routes", "path", "repeat 254", "repeat 1"
    );
    for c in costs {
        let repeated = c.repeated.map_or("-".to_string(), |m| m.to_string());
        println!(
            "{:<9} {:<28} {repeated:>10} {:>8}  {}",
            c.routes, c.path, c.single, c.verdict
        );
    }
    println!(
        "\nForwarded 60-byte UDP frames, src — rtr — dst on veth (Mpps, median of {ROUNDS} alternating rounds); generator: {}, {GENERATED} per run",
        generator_kind()
    );
    println!(
        "{:<9} {:<10} {:>8} {:>6} {:>6} {:>6} {:>9} {:>12}  rounds XDP/kernel/redirect-only",
        "routes", "traffic", "offered", "XDP", "kernel", "ratio", "redirect", "ns/run x/r"
    );
    for r in rates {
        let med = |f: &dyn Fn(&Round) -> f64| {
            let mut v: Vec<f64> = r.rounds.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (xdp, kernel) = (med(&|r| r.xdp.1), med(&|r| r.kernel.1));
        let each: Vec<String> = r
            .rounds
            .iter()
            .map(|r| {
                format!(
                    "{}/{}/{}",
                    mpps(r.xdp.1),
                    mpps(r.kernel.1),
                    mpps(r.redirect.1)
                )
            })
            .collect();
        println!(
            "{:<9} {:<10} {:>8} {:>6} {:>6} {:>5.2}x {:>9} {:>12}  {}",
            r.routes,
            r.traffic,
            mpps(med(&|r| r.xdp.0)),
            mpps(xdp),
            mpps(kernel),
            xdp / kernel,
            mpps(med(&|r| r.redirect.1)),
            format!("{:.0}/{:.0}", r.in_situ.0, r.in_situ.1),
            each.join(" ")
        );
    }
    println!(
        "\nAnchor figures from shared/notes/ebpf-toolchain.md (an earlier session, not this run): minimal LPM-trie XDP forwarder 85 ns (1 route) / 176 ns (100k routes) in test-run; kernel forwarding ~0.97 Mpps, that forwarder ~3.1 Mpps (1 route) / ~1.5 Mpps (100k)."
    );
    let _ = io::stdout().flush();
}

fn main() {
    if let Err(why) = privileged() {
        println!("skipping the XDP benchmark: {why}");
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[usize] = if quick {
        &[1, 100_000]
    } else {
        &[1, 100_000, 1_000_000]
    };
    let topo = topology("bench");
    let full = random_table(*sizes.last().unwrap() - 1);
    let gen_frame = udp(topo.r0, topo.s0, (SRC, SINK), 64, 60);
    let one_flow = Generator::new(&gen_frame, None);
    let empty = sys::load_xdp(&prog::only(anchor::XDP_PASS)).expect("the empty program loads");
    let drop_prog = sys::load_xdp(&prog::only(prog::XDP_DROP)).expect("the drop program loads");
    let (r0, r1) = topo.ifindex;
    let redirect = sys::load_xdp(&anchor::redirect(r1)).expect("the redirect program loads");
    let mut costs = Vec::new();
    let mut rates = Vec::new();
    for &n in sizes {
        let table = &full[..n - 1];
        let started = Instant::now();
        let t = RtrTables::new(&topo, table);
        let snapshot = Snapshot::new(&t.tables(), |id| [r0, r1].get(usize::from(id.0)).copied())
            .expect("rtr's tables fit");
        let capacity = Capacity {
            nodes: (snapshot.v4.nodes.len() as u32 + 1).max(Capacity::default().nodes),
            leaves: (snapshot.v4.leaves.len() as u32 + 1).max(Capacity::default().leaves),
            ..Capacity::default()
        };
        let mut dp = Datapath::load(&capacity).expect("the XDP object loads");
        dp.sync(&snapshot).expect("maps sync");
        let attached = attach_rtr(&mut dp, &topo);
        {
            let _inside = Entered::new(&topo.src);
            dp.attach_peer("s0").expect("attach the pass program to s0");
        }
        // dst drops what arrives in XDP (still counted in rx_packets), so
        // dst's own stack costs nothing in either measurement.
        let sink = attach_sink(&topo, drop_prog.as_raw_fd());
        eprintln!(
            "{n} routes: FIB built, synced and attached in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let prog = attached_program(&topo);
        path_costs(&topo, &t, prog.as_fd().as_raw_fd(), &mut costs);
        anchor_costs(
            &topo,
            table,
            prog.as_fd().as_raw_fd(),
            empty.as_raw_fd(),
            &mut costs,
        );

        // Throughput at 1 route (one flow) and the largest table (one flow
        // and destinations scattered over the table).
        if n == 1 {
            throughput(
                &topo,
                &mut dp,
                attached,
                (table, redirect.as_raw_fd()),
                &[("one flow", &one_flow)],
                &mut rates,
            );
        } else if n == *sizes.last().unwrap() {
            // Each frame to a random entry's destination (IPv4 destination
            // at 30, the header checksum that goes with it at 24).
            let scatter = Scatter {
                values: destinations(&topo, table),
                word_at: 30,
                half_at: 24,
            };
            let spread = Generator::new(&gen_frame, Some(scatter));
            let generators = [("one flow", &one_flow), ("scattered", &spread)];
            throughput(
                &topo,
                &mut dp,
                attached,
                (table, redirect.as_raw_fd()),
                &generators,
                &mut rates,
            );
        }
        drop(sink);
    }
    report(&costs, &rates);
}
