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
//!   random one of 65,536 addresses scattered over the table. Counted: frames
//!   received on dst's veth, where an XDP program drops them. Rounds alternate
//!   the datapath attached to rtr and Linux forwarding (program detached,
//!   `ip_forward=1`, the kernel holding the same routes), same generator.
//!
//! Tables are random but shaped like an Internet table (the IPv4 length mix of
//! `router-core/benches/fib.rs`), outside 10.0.0.0/8 where the test addresses live.
//! Traffic stays inside the namespaces this benchmark creates (deleted on drop).

#[path = "../tests/netns/mod.rs"]
mod netns;
#[path = "../../router-core/benches/support/prefixes.rs"]
mod prefixes;

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aya::programs::XdpMode;
use ipnet::{IpNet, Ipv4Net};
use nexthop_offload_bpf::datapath::{Attachment, Capacity, Datapath, privileged};
use nexthop_offload_bpf::snapshot::Snapshot;
use router_core::PortId;
use router_core::datapath::{
    Config, OwnedTables, PortConfig, Reason, Tables, TunnelConfig, process,
};
use router_core::ecmp::HashPolicy;
use router_core::fib::{Encap, Fib, Nexthop, NexthopKind, Protocol, Route};
use router_core::neighbour::{self, arp::PortAddrs};
use smoltcp::wire::EthernetAddress;

use netns::Lab;
use nexthop_testkit::{Entered, in_ns};
use prefixes::Rng;

/// Raw `bpf(2)` calls for what aya does not expose here: test runs with a
/// context, repeat and flags; the tiny programs and maps of this benchmark.
mod sys {
    use std::io;
    use std::os::fd::{FromRawFd, OwnedFd};

    const MAP_CREATE: i64 = 0;
    const MAP_UPDATE_ELEM: i64 = 2;
    const PROG_LOAD: i64 = 5;
    const PROG_TEST_RUN: i64 = 10;
    const LINK_CREATE: i64 = 28;
    const ATTACH_XDP: u32 = 37;
    const XDP_FLAGS_DRV_MODE: u32 = 4;
    const MAP_TYPE_ARRAY: u32 = 2;
    const MAP_TYPE_LPM_TRIE: u32 = 11;
    const PROG_TYPE_XDP: u32 = 6;
    const F_NO_PREALLOC: u32 = 1;
    /// `BPF_F_TEST_XDP_LIVE_FRAMES`.
    pub const LIVE_FRAMES: u32 = 2;

    /// A `union bpf_attr`, zeroed, written field by field.
    struct Attr([u8; 128]);

    impl Attr {
        fn new() -> Self {
            Attr([0; 128])
        }
        fn u32(&mut self, at: usize, v: u32) -> &mut Self {
            self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
            self
        }
        fn u64(&mut self, at: usize, v: u64) -> &mut Self {
            self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
            self
        }
        fn get(&self, at: usize) -> u32 {
            u32::from_ne_bytes(self.0[at..at + 4].try_into().unwrap())
        }
        fn call(&mut self, cmd: i64) -> io::Result<i64> {
            // SAFETY: the kernel reads and writes at most `len` bytes of the
            // attribute; the pointers in it outlive the call.
            let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, self.0.as_mut_ptr(), self.0.len()) };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r)
            }
        }
    }

    fn fd(raw: i64) -> OwnedFd {
        // SAFETY: a file descriptor the kernel just returned to us.
        unsafe { OwnedFd::from_raw_fd(raw as i32) }
    }

    /// One instruction: opcode, registers, offset, immediate.
    pub const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
        code as u64
            | ((dst | src << 4) as u64) << 8
            | (off as u16 as u64) << 16
            | (imm as u32 as u64) << 32
    }

    /// Load an XDP program from raw instructions.
    pub fn load_xdp(insns: &[u64]) -> io::Result<OwnedFd> {
        let license = b"GPL\0";
        let mut log = vec![0u8; 1 << 16];
        let mut attr = Attr::new();
        attr.u32(0, PROG_TYPE_XDP)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, 1)
            .u32(28, log.len() as u32)
            .u64(32, log.as_mut_ptr() as u64);
        attr.call(PROG_LOAD).map(fd).map_err(|e| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            io::Error::other(format!("{e}: {}", String::from_utf8_lossy(&log[..end])))
        })
    }

    /// An IPv4 `LPM_TRIE` map (key: prefix length + address, value: u32).
    pub fn lpm_trie(max_entries: u32) -> io::Result<OwnedFd> {
        Attr::new()
            .u32(0, MAP_TYPE_LPM_TRIE)
            .u32(4, 8)
            .u32(8, 4)
            .u32(12, max_entries)
            .u32(16, F_NO_PREALLOC)
            .call(MAP_CREATE)
            .map(fd)
    }

    /// An array map of `max_entries` 8-byte values.
    pub fn array(max_entries: u32) -> io::Result<OwnedFd> {
        Attr::new()
            .u32(0, MAP_TYPE_ARRAY)
            .u32(4, 4)
            .u32(8, 8)
            .u32(12, max_entries)
            .call(MAP_CREATE)
            .map(fd)
    }

    /// Write `key → value` (of the map's sizes) into `map`.
    pub fn update(map: i32, key: &[u8], value: &[u8]) -> io::Result<()> {
        Attr::new()
            .u32(0, map as u32)
            .u64(8, key.as_ptr() as u64)
            .u64(16, value.as_ptr() as u64)
            .call(MAP_UPDATE_ELEM)
            .map(drop)
    }

    /// Insert `addr/len → value` into an `lpm_trie` map.
    pub fn lpm_insert(map: i32, addr: [u8; 4], len: u8, value: u32) -> io::Result<()> {
        let mut key = [0u8; 8];
        key[..4].copy_from_slice(&u32::from(len).to_ne_bytes());
        key[4..].copy_from_slice(&addr);
        update(map, &key, &value.to_ne_bytes())
    }

    /// Attach XDP program `prog` natively to `ifindex` (of the calling
    /// thread's namespace) through a link that detaches when dropped.
    pub fn attach_xdp(prog: i32, ifindex: u32) -> io::Result<OwnedFd> {
        Attr::new()
            .u32(0, prog as u32)
            .u32(4, ifindex)
            .u32(8, ATTACH_XDP)
            .u32(12, XDP_FLAGS_DRV_MODE)
            .call(LINK_CREATE)
            .map(fd)
    }

    /// `BPF_PROG_TEST_RUN` of an XDP program on `frame` arriving on
    /// `ifindex` (of the calling thread's namespace): the return value and
    /// the kernel-reported mean duration in ns.
    pub fn test_run(
        prog: i32,
        frame: &[u8],
        ifindex: u32,
        repeat: u32,
        flags: u32,
    ) -> io::Result<(u32, u32)> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
        let ctx: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
        let mut attr = Attr::new();
        attr.u32(0, prog as u32)
            .u32(8, frame.len() as u32)
            .u64(16, frame.as_ptr() as u64)
            .u32(32, repeat)
            .u32(40, 24)
            .u64(48, ctx.as_ptr() as u64)
            .u32(64, flags);
        attr.call(PROG_TEST_RUN)?;
        Ok((attr.get(4), attr.get(36)))
    }
}

/// Instructions of the raw programs.
mod prog {
    use super::sys::insn;

    const LDX_W: u8 = 0x61;
    const ST_W: u8 = 0x62;
    const STX_W: u8 = 0x63;
    const LDX_H: u8 = 0x69;
    const STX_H: u8 = 0x6b;
    const AND_K: u8 = 0x57;
    const MOV_X: u8 = 0xbf;
    const MOV_K: u8 = 0xb7;
    const ADD_K: u8 = 0x07;
    const JLE_X: u8 = 0xbd;
    const JEQ_K: u8 = 0x15;
    const CALL: u8 = 0x85;
    const EXIT: u8 = 0x95;
    const LD_IMM64: u8 = 0x18;
    const PSEUDO_MAP_FD: u8 = 1;
    pub const XDP_DROP: i32 = 1;
    pub const XDP_PASS: i32 = 2;
    const XDP_TX: i32 = 3;

    /// r2 = data, r3 = data_end; `XDP_DROP` unless `len` bytes are there.
    fn prologue(len: i32) -> Vec<u64> {
        vec![
            insn(LDX_W, 2, 1, 0, 0),
            insn(LDX_W, 3, 1, 4, 0),
            insn(MOV_X, 4, 2, 0, 0),
            insn(ADD_K, 4, 0, 0, len),
            insn(JLE_X, 4, 3, 2, 0),
            insn(MOV_K, 0, 0, 0, XDP_DROP),
            insn(EXIT, 0, 0, 0, 0),
        ]
    }

    /// Return `verdict`, nothing else: `XDP_PASS` is the floor of a test
    /// run, `XDP_DROP` the sink on dst.
    pub fn only(verdict: i32) -> Vec<u64> {
        vec![insn(MOV_K, 0, 0, 0, verdict), insn(EXIT, 0, 0, 0, 0)]
    }

    /// The generator: write `frame` (an IPv4 frame, length a multiple of 4)
    /// over the packet, `XDP_TX`. With `dsts` (an array map of
    /// `DESTINATIONS` entries: IPv4 destination, then the header checksum
    /// that goes with it), each frame goes to a random entry's destination.
    pub fn generator(frame: &[u8], dsts: Option<i32>) -> Vec<u64> {
        let mut p = prologue(frame.len() as i32);
        for (i, word) in frame.chunks(4).enumerate() {
            let imm = i32::from_ne_bytes(word.try_into().unwrap());
            p.push(insn(ST_W, 2, 0, 4 * i as i16, imm));
        }
        if let Some(map) = dsts {
            p.extend([
                insn(MOV_X, 6, 2, 0, 0),
                // bpf_get_prandom_u32
                insn(CALL, 0, 0, 0, 7),
                insn(AND_K, 0, 0, 0, super::DESTINATIONS as i32 - 1),
                insn(STX_W, 10, 0, -4, 0),
                insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map),
                0,
                insn(MOV_X, 2, 10, 0, 0),
                insn(ADD_K, 2, 0, 0, -4),
                insn(CALL, 0, 0, 0, 1),
                insn(JEQ_K, 0, 0, 4, 0),
                insn(LDX_W, 1, 0, 0, 0),
                insn(STX_W, 6, 1, 30, 0),
                insn(LDX_H, 1, 0, 4, 0),
                insn(STX_H, 6, 1, 24, 0),
            ]);
        }
        p.extend([insn(MOV_K, 0, 0, 0, XDP_TX), insn(EXIT, 0, 0, 0, 0)]);
        p
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

/// Addresses of the topology.
const SRC: [u8; 4] = [10, 71, 1, 2];
const R0: [u8; 4] = [10, 71, 1, 1];
const R1: [u8; 4] = [10, 71, 2, 1];
const DST: [u8; 4] = [10, 71, 2, 2];
/// The tunnel endpoint behind r1 (a neighbour entry only, for test runs).
const ENDPOINT: [u8; 4] = [10, 71, 2, 9];
/// Forwarded traffic goes here (rtr routes 10.71.9.0/24 to dst, which drops it).
const SINK: [u8; 4] = [10, 71, 9, 1];
const INNER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0x72, 1]);

/// Everything the benchmark needs to know about the topology.
struct Topology {
    lab: Lab,
    src: String,
    rtr: String,
    dst: String,
    s0: EthernetAddress,
    r0: EthernetAddress,
    r1: EthernetAddress,
    d0: EthernetAddress,
    /// Interface indexes of r0 and r1.
    ifindex: (u32, u32),
}

/// src 10.71.1.2 — r0 10.71.1.1 [rtr] r1 10.71.2.1 — dst 10.71.2.2.
fn topology() -> Topology {
    let mut lab = Lab::new("bench");
    let (src, rtr, dst) = (lab.ns("src"), lab.ns("rtr"), lab.ns("dst"));
    lab.link((&src, "s0", "10.71.1.2/24"), (&rtr, "r0", "10.71.1.1/24"));
    lab.link((&rtr, "r1", "10.71.2.1/24"), (&dst, "d0", "10.71.2.2/24"));
    // GRO gives r0 the NAPI context the generator's XDP_TX frames need when
    // no XDP program is attached to r0 (kernel forwarding).
    lab.sh(&rtr, "ethtool -K r0 gro on >/dev/null");
    Topology {
        s0: lab.mac(&src, "s0"),
        r0: lab.mac(&rtr, "r0"),
        r1: lab.mac(&rtr, "r1"),
        d0: lab.mac(&dst, "d0"),
        ifindex: (lab.ifindex(&rtr, "r0"), lab.ifindex(&rtr, "r1")),
        lab,
        src,
        rtr,
        dst,
    }
}

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
        let port = |mac, owned: [u8; 4]| PortConfig {
            addrs: PortAddrs {
                mac,
                owned: vec![owned.into()],
                announced: vec![],
            },
            ipv6: Default::default(),
            mtu: 1500,
        };
        let owned = OwnedTables {
            fib,
            neighbours,
            ports: BTreeMap::from([
                (PortId(0), port(topo.r0, R0)),
                (PortId(1), port(topo.r1, R1)),
            ]),
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

/// An Ethernet + IPv4 + UDP frame of `len` bytes (UDP checksum 0).
fn udp(
    dst_mac: EthernetAddress,
    src_mac: EthernetAddress,
    ip: ([u8; 4], [u8; 4]),
    ttl: u8,
    len: usize,
) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&src_mac.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let h = &mut f[14..34];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&ip_len.to_be_bytes());
    h[6] = 0x40;
    h[8] = ttl;
    h[9] = 17;
    h[12..16].copy_from_slice(&ip.0);
    h[16..20].copy_from_slice(&ip.1);
    let check = router_core::datapath::checksum::compute(h);
    h[10..12].copy_from_slice(&check.to_be_bytes());
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&9u16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f
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

/// Offered and received packets per second.
type Rates = (f64, f64);

/// Run the generator on s0 and count what reaches d0: (offered, received) pps.
fn blast(topo: &Topology, generator: i32, frame: &[u8]) -> Rates {
    let s0 = topo.lab.ifindex(&topo.src, "s0");
    let before = topo.lab.rx_packets(&topo.dst, "d0");
    let frame = frame.to_vec();
    // r0's NAPI in a kernel thread, so that the router does not run on the
    // generator's core in the generator's softirq.
    topo.lab
        .sh(&topo.rtr, "echo 1 > /sys/class/net/r0/threaded");
    let elapsed = in_ns(&topo.src, move || {
        // SAFETY: a zeroed cpu_set_t with CPU 0 set, for this thread only.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
        }
        let start = Instant::now();
        sys::test_run(generator, &frame, s0, GENERATED, sys::LIVE_FRAMES).expect("generator runs");
        start.elapsed()
    });
    std::thread::sleep(Duration::from_millis(100));
    let got = topo.lab.rx_packets(&topo.dst, "d0") - before;
    let secs = elapsed.as_secs_f64();
    (f64::from(GENERATED) / secs, got as f64 / secs)
}

/// Blast once with `kernel.bpf_stats_enabled` on and return the mean
/// kernel-measured ns per run of the program attached to r0.
fn in_situ(topo: &Topology, generator: i32, frame: &[u8]) -> f64 {
    let id = topo.lab.xdp_prog_id(&topo.rtr, "r0");
    let stats = || {
        let info = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|p| p.id() == id)
            .expect("r0's program is loaded");
        (info.run_time().as_nanos() as f64, info.run_count() as f64)
    };
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").expect("enable bpf_stats");
    let (time, runs) = stats();
    blast(topo, generator, frame);
    let (time_after, runs_after) = stats();
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0").expect("disable bpf_stats");
    (time_after - time) / (runs_after - runs).max(1.0)
}

/// Attach the datapath natively to rtr's ports.
fn attach_rtr(dp: &mut Datapath, topo: &Topology) -> Vec<Attachment> {
    let _inside = Entered::new(&topo.rtr);
    ["r0", "r1"]
        .map(|dev| {
            dp.attach(dev, XdpMode::Driver)
                .expect("attach to rtr's port")
        })
        .into()
}

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

fn mpps(pps: f64) -> String {
    format!("{:.2}", pps / 1e6)
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
    let trie = sys::lpm_trie(routes as u32).expect("an LPM trie");
    sys::lpm_insert(trie.as_raw_fd(), [10, 71, 9, 0], 24, 1).expect("insert");
    for p in table {
        sys::lpm_insert(trie.as_raw_fd(), p.addr().octets(), p.prefix_len(), 1).expect("insert");
    }
    let lookup = sys::load_xdp(&prog::lpm_lookup(trie.as_raw_fd())).expect("the LPM program loads");
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
    generators: &[(&'static str, i32)],
    out: &mut Vec<Throughput>,
) {
    kernel_routes(topo, table);
    topo.lab.sh(
        &topo.rtr,
        &format!(
            "ip neigh replace 10.71.2.2 lladdr {} dev r1 nud permanent",
            topo.d0.to_string().replace('-', ":")
        ),
    );
    let frame = udp(topo.r0, topo.s0, (SRC, SINK), 64, 60);
    for &(traffic, generator) in generators {
        let mut rounds = Vec::new();
        let mut in_situ_ns = (0.0, 0.0);
        for round in 0..ROUNDS {
            if attached.is_empty() {
                attached = attach_rtr(dp, topo);
            }
            topo.lab.sh(&topo.rtr, "sysctl -qw net.ipv4.ip_forward=0");
            let before = dp.reason_counts().unwrap()[Reason::Forwarded as usize];
            let xdp = blast(topo, generator, &frame);
            let counted = dp.reason_counts().unwrap()[Reason::Forwarded as usize] - before;
            if round == 0 {
                in_situ_ns.0 = in_situ(topo, generator, &frame);
            }
            for a in attached.drain(..) {
                dp.detach(a).expect("detach from rtr's port");
            }
            topo.lab.sh(&topo.rtr, "sysctl -qw net.ipv4.ip_forward=1");
            let kernel = blast(topo, generator, &frame);
            topo.lab.sh(&topo.rtr, "sysctl -qw net.ipv4.ip_forward=0");
            let r0 = topo.ifindex.0;
            let link = in_ns(&topo.rtr, move || sys::attach_xdp(redirect, r0))
                .expect("attach the redirect-only program");
            let ceiling = blast(topo, generator, &frame);
            if round == 0 {
                in_situ_ns.1 = in_situ(topo, generator, &frame);
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

/// The generator's destination map: `DESTINATIONS` addresses scattered over
/// `table`, each with the IPv4 header checksum of the generator's frame to it.
fn destinations(topo: &Topology, table: &[Ipv4Net]) -> std::os::fd::OwnedFd {
    let map = sys::array(DESTINATIONS).expect("an array map");
    for (i, dst) in (0u32..).zip(scattered(table, DESTINATIONS as usize)) {
        let frame = udp(topo.r0, topo.s0, (SRC, dst), 64, 60);
        let mut value = [0u8; 8];
        value[..4].copy_from_slice(&dst);
        value[4..6].copy_from_slice(&frame[24..26]);
        sys::update(map.as_raw_fd(), &i.to_ne_bytes(), &value).expect("update");
    }
    map
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
        "\nForwarded 60-byte UDP frames, src — rtr — dst on veth (Mpps, median of {ROUNDS} alternating rounds); generator: XDP live frames, {GENERATED} per run"
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
    let topo = topology();
    let full = random_table(*sizes.last().unwrap() - 1);
    let gen_frame = udp(topo.r0, topo.s0, (SRC, SINK), 64, 60);
    let one_flow = sys::load_xdp(&prog::generator(&gen_frame, None)).expect("the generator loads");
    let empty = sys::load_xdp(&prog::only(prog::XDP_PASS)).expect("the empty program loads");
    let drop_prog = sys::load_xdp(&prog::only(prog::XDP_DROP)).expect("the drop program loads");
    let (r0, r1) = topo.ifindex;
    let redirect = sys::load_xdp(&prog::redirect(r1)).expect("the redirect program loads");
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
        let d0 = topo.lab.ifindex(&topo.dst, "d0");
        let sink_fd = drop_prog.as_raw_fd();
        let sink = in_ns(&topo.dst, move || sys::attach_xdp(sink_fd, d0)).expect("attach the sink");
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
                &[("one flow", one_flow.as_raw_fd())],
                &mut rates,
            );
        } else if n == *sizes.last().unwrap() {
            let dsts = destinations(&topo, table);
            let spread = sys::load_xdp(&prog::generator(&gen_frame, Some(dsts.as_raw_fd())))
                .expect("the scattering generator loads");
            let generators = [
                ("one flow", one_flow.as_raw_fd()),
                ("scattered", spread.as_raw_fd()),
            ];
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
