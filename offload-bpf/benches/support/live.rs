//! What the throughput benchmarks share (included by path from
//! `benches/xdp.rs` and `benches/lb.rs`, beside `tests/netns` as `netns`):
//! raw `bpf(2)` calls, the generator (an XDP program run with live frames,
//! or an `AF_PACKET` socket where the kernel refuses those) and the sink
//! program, the src — rtr — dst topology on veths, and one measurement:
//! frames the generator sends from src, counted as they arrive on dst.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aya::programs::XdpMode;
use nexthop_offload_bpf::datapath::{Attachment, Datapath};
use nexthop_testkit::{Entered, in_ns};
use router_core::PortId;
use router_core::datapath::PortConfig;
use router_core::neighbour::arp::PortAddrs;
use smoltcp::wire::EthernetAddress;

use crate::netns::Lab;

/// Raw `bpf(2)` calls for what aya does not expose here: test runs with a
/// context, repeat and flags; the tiny programs and maps of the benchmarks.
pub mod sys {
    use std::io;
    use std::os::fd::{FromRawFd, OwnedFd};

    pub const MAP_CREATE: i64 = 0;
    const MAP_UPDATE_ELEM: i64 = 2;
    const PROG_LOAD: i64 = 5;
    const PROG_TEST_RUN: i64 = 10;
    const LINK_CREATE: i64 = 28;
    const ATTACH_XDP: u32 = 37;
    const XDP_FLAGS_DRV_MODE: u32 = 4;
    const MAP_TYPE_ARRAY: u32 = 2;
    const PROG_TYPE_XDP: u32 = 6;
    /// `BPF_F_TEST_XDP_LIVE_FRAMES`.
    pub const LIVE_FRAMES: u32 = 2;

    /// A `union bpf_attr`, zeroed, written field by field.
    pub struct Attr([u8; 128]);

    impl Attr {
        pub fn new() -> Self {
            Attr([0; 128])
        }
        pub fn u32(&mut self, at: usize, v: u32) -> &mut Self {
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
        pub fn call(&mut self, cmd: i64) -> io::Result<i64> {
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

    pub fn fd(raw: i64) -> OwnedFd {
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
pub mod prog {
    use super::Scatter;
    use super::sys::insn;

    pub const LDX_W: u8 = 0x61;
    pub const ST_W: u8 = 0x62;
    pub const STX_W: u8 = 0x63;
    pub const LDX_H: u8 = 0x69;
    pub const STX_H: u8 = 0x6b;
    pub const AND_K: u8 = 0x57;
    pub const MOV_X: u8 = 0xbf;
    pub const MOV_K: u8 = 0xb7;
    pub const ADD_K: u8 = 0x07;
    pub const JLE_X: u8 = 0xbd;
    pub const JEQ_K: u8 = 0x15;
    pub const CALL: u8 = 0x85;
    pub const EXIT: u8 = 0x95;
    pub const LD_IMM64: u8 = 0x18;
    pub const PSEUDO_MAP_FD: u8 = 1;
    pub const XDP_DROP: i32 = 1;
    pub const XDP_TX: i32 = 3;

    /// r2 = data, r3 = data_end; `XDP_DROP` unless `len` bytes are there.
    pub fn prologue(len: i32) -> Vec<u64> {
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

    /// Return `verdict`, nothing else (`XDP_DROP`: the sink on dst).
    pub fn only(verdict: i32) -> Vec<u64> {
        vec![insn(MOV_K, 0, 0, 0, verdict), insn(EXIT, 0, 0, 0, 0)]
    }

    /// The generator: write `frame` (length a multiple of 4) over the
    /// packet, vary it by `scatter` (whose values are in array map `map`),
    /// `XDP_TX`.
    pub fn generator(frame: &[u8], scatter: Option<(&Scatter, i32)>) -> Vec<u64> {
        let mut p = prologue(frame.len() as i32);
        for (i, word) in frame.chunks(4).enumerate() {
            let imm = i32::from_ne_bytes(word.try_into().unwrap());
            p.push(insn(ST_W, 2, 0, 4 * i as i16, imm));
        }
        if let Some((s, map)) = scatter {
            p.extend([
                insn(MOV_X, 6, 2, 0, 0),
                // bpf_get_prandom_u32
                insn(CALL, 0, 0, 0, 7),
                insn(AND_K, 0, 0, 0, s.values.len() as i32 - 1),
                insn(STX_W, 10, 0, -4, 0),
                insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map),
                0,
                insn(MOV_X, 2, 10, 0, 0),
                insn(ADD_K, 2, 0, 0, -4),
                // bpf_map_lookup_elem
                insn(CALL, 0, 0, 0, 1),
                insn(JEQ_K, 0, 0, 4, 0),
                insn(LDX_W, 1, 0, 0, 0),
                insn(STX_W, 6, 1, s.word_at, 0),
                insn(LDX_H, 1, 0, 4, 0),
                insn(STX_H, 6, 1, s.half_at, 0),
            ]);
        }
        p.extend([insn(MOV_K, 0, 0, 0, XDP_TX), insn(EXIT, 0, 0, 0, 0)]);
        p
    }
}

/// Per-frame variation of a [`Generator`]'s frame: each frame carries a
/// random one of `values` (a power of two of them), its 4-byte word at
/// `word_at` and its 2-byte half at `half_at`.
pub struct Scatter {
    pub values: Vec<([u8; 4], [u8; 2])>,
    pub word_at: i16,
    pub half_at: i16,
}

/// Traffic from src's s0: a frame, varied per frame by a [`Scatter`].
/// Sent by an XDP program run with `BPF_F_TEST_XDP_LIVE_FRAMES`; where the
/// kernel refuses live frames (EPERM), by an `AF_PACKET` socket instead
/// ([`generator_kind`] says which ran).
pub struct Generator {
    frame: Vec<u8>,
    scatter: Option<Scatter>,
    program: OwnedFd,
    /// The scatter values as an array map, for the program.
    _values: Option<OwnedFd>,
}

/// Set once the kernel refused a live-frames run.
static LIVE_REFUSED: AtomicBool = AtomicBool::new(false);

/// What sends the generators' frames in this run.
pub fn generator_kind() -> &'static str {
    if LIVE_REFUSED.load(Ordering::Relaxed) {
        "AF_PACKET sendmmsg (this kernel refuses XDP live frames)"
    } else {
        "XDP live frames"
    }
}

impl Generator {
    pub fn new(frame: &[u8], scatter: Option<Scatter>) -> Generator {
        let values = scatter.as_ref().map(|s| {
            let map = sys::array(s.values.len() as u32).expect("an array map");
            for (i, (word, half)) in (0u32..).zip(&s.values) {
                let mut value = [0u8; 8];
                value[..4].copy_from_slice(word);
                value[4..6].copy_from_slice(half);
                sys::update(map.as_raw_fd(), &i.to_ne_bytes(), &value).expect("update");
            }
            map
        });
        let with_map = scatter.as_ref().zip(values.as_ref().map(|m| m.as_raw_fd()));
        let program =
            sys::load_xdp(&prog::generator(frame, with_map)).expect("the generator loads");
        Generator {
            frame: frame.to_vec(),
            scatter,
            program,
            _values: values,
        }
    }

    /// Send `frames` frames from `ifindex` (of the calling thread's
    /// namespace), live frames or, once refused, `AF_PACKET`.
    fn send(&self, ifindex: u32, frames: u32) {
        if !LIVE_REFUSED.load(Ordering::Relaxed) {
            let run = sys::test_run(
                self.program.as_raw_fd(),
                &self.frame,
                ifindex,
                frames,
                sys::LIVE_FRAMES,
            );
            match run {
                Ok(_) => return,
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    eprintln!("XDP live frames refused ({e}): sending with AF_PACKET instead");
                    LIVE_REFUSED.store(true, Ordering::Relaxed);
                }
                Err(e) => panic!("generator runs: {e}"),
            }
        }
        self.send_packets(ifindex, frames);
    }

    /// The frames the scatter makes (the frame alone without one).
    fn variants(&self) -> Vec<Vec<u8>> {
        let Some(s) = &self.scatter else {
            return vec![self.frame.clone()];
        };
        let (w, h) = (s.word_at as usize, s.half_at as usize);
        s.values
            .iter()
            .map(|(word, half)| {
                let mut f = self.frame.clone();
                f[w..w + 4].copy_from_slice(word);
                f[h..h + 2].copy_from_slice(half);
                f
            })
            .collect()
    }

    /// Send `frames` frames, each a random variant, through an `AF_PACKET`
    /// socket bound to `ifindex`, qdisc bypassed, `BATCH` per `sendmmsg`.
    fn send_packets(&self, ifindex: u32, frames: u32) {
        const BATCH: usize = 256;
        let variants = self.variants();
        // SAFETY: plain socket calls on a socket this function owns, with
        // pointers to locals (the address, the option, the messages and the
        // frames they point to) that outlive each call.
        unsafe {
            let raw = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(raw >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
            let socket = OwnedFd::from_raw_fd(raw);
            let one: libc::c_int = 1;
            let bypass = libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as u32,
            );
            assert_eq!(
                bypass,
                0,
                "PACKET_QDISC_BYPASS: {}",
                io::Error::last_os_error()
            );
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
            addr.sll_ifindex = ifindex as i32;
            let bound = libc::bind(
                raw,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(bound, 0, "bind to s0: {}", io::Error::last_os_error());
            let mut iov: Vec<libc::iovec> = vec![std::mem::zeroed(); BATCH];
            let mut msgs: Vec<libc::mmsghdr> = vec![std::mem::zeroed(); BATCH];
            let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
            let mut sent = 0;
            while sent < frames {
                let n = BATCH.min((frames - sent) as usize);
                for v in &mut iov[..n] {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let f = &variants[rng as usize & (variants.len() - 1)];
                    v.iov_base = f.as_ptr().cast_mut().cast();
                    v.iov_len = f.len();
                }
                let first = iov.as_mut_ptr();
                for (i, m) in msgs[..n].iter_mut().enumerate() {
                    m.msg_hdr.msg_iov = first.add(i);
                    m.msg_hdr.msg_iovlen = 1;
                }
                let r = libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0);
                if r < 0 {
                    let e = io::Error::last_os_error();
                    assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS), "sendmmsg: {e}");
                } else {
                    sent += r as u32;
                }
            }
        }
    }
}

/// Addresses of the topology.
pub const SRC: [u8; 4] = [10, 71, 1, 2];
pub const R0: [u8; 4] = [10, 71, 1, 1];
pub const R1: [u8; 4] = [10, 71, 2, 1];
pub const DST: [u8; 4] = [10, 71, 2, 2];

/// Everything the benchmarks need to know about the topology.
pub struct Topology {
    pub lab: Lab,
    pub src: String,
    pub rtr: String,
    pub dst: String,
    pub s0: EthernetAddress,
    pub r0: EthernetAddress,
    pub r1: EthernetAddress,
    pub d0: EthernetAddress,
    /// Interface indexes of r0 and r1.
    pub ifindex: (u32, u32),
}

/// src 10.71.1.2 — r0 10.71.1.1 [rtr] r1 10.71.2.1 — dst 10.71.2.2, in
/// namespaces named after `name` (and the process), deleted on drop.
pub fn topology(name: &str) -> Topology {
    let mut lab = Lab::new(name);
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

/// rtr's ports in router-core's terms: r0 (port 0) and r1 (port 1), their
/// MACs and addresses, MTU 1500.
pub fn rtr_ports(topo: &Topology) -> BTreeMap<PortId, PortConfig> {
    let port = |mac, owned: [u8; 4]| PortConfig {
        addrs: PortAddrs {
            mac,
            owned: vec![owned.into()],
            announced: vec![],
        },
        ipv6: Default::default(),
        mtu: 1500,
    };
    BTreeMap::from([
        (PortId(0), port(topo.r0, R0)),
        (PortId(1), port(topo.r1, R1)),
    ])
}

/// rtr's kernel knows dst's MAC for good: dst drops everything in XDP,
/// ARP requests included.
pub fn pin_dst_neighbour(topo: &Topology) {
    topo.lab.sh(
        &topo.rtr,
        &format!(
            "ip neigh replace 10.71.2.2 lladdr {} dev r1 nud permanent",
            topo.d0.to_string().replace('-', ":")
        ),
    );
}

/// Attach `drop_prog` (an `XDP_DROP` program) to dst's d0: what arrives
/// is counted in d0's rx_packets and costs dst's stack nothing. Detached
/// when the link is dropped.
pub fn attach_sink(topo: &Topology, drop_prog: i32) -> OwnedFd {
    let d0 = topo.lab.ifindex(&topo.dst, "d0");
    in_ns(&topo.dst, move || sys::attach_xdp(drop_prog, d0)).expect("attach the sink")
}

/// Attach the datapath natively to rtr's ports.
pub fn attach_rtr(dp: &mut Datapath, topo: &Topology) -> Vec<Attachment> {
    let _inside = Entered::new(&topo.rtr);
    ["r0", "r1"]
        .map(|dev| {
            dp.attach(dev, XdpMode::Driver)
                .expect("attach to rtr's port")
        })
        .into()
}

/// An Ethernet + IPv4 + UDP frame of `len` bytes (UDP checksum 0).
pub fn udp(
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

/// Offered and received packets per second.
pub type Rates = (f64, f64);

/// Send `frames` frames of `generator` from s0 and count what reaches d0:
/// (offered, received) pps.
pub fn blast(topo: &Topology, generator: &Generator, frames: u32) -> Rates {
    let s0 = topo.lab.ifindex(&topo.src, "s0");
    let before = topo.lab.rx_packets(&topo.dst, "d0");
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
        generator.send(s0, frames);
        start.elapsed()
    });
    std::thread::sleep(Duration::from_millis(100));
    let got = topo.lab.rx_packets(&topo.dst, "d0") - before;
    let secs = elapsed.as_secs_f64();
    (f64::from(frames) / secs, got as f64 / secs)
}

/// Blast once with `kernel.bpf_stats_enabled` on and return the mean
/// kernel-measured ns per run of the program attached to r0 (tail calls
/// included).
pub fn in_situ(topo: &Topology, generator: &Generator, frames: u32) -> f64 {
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
    blast(topo, generator, frames);
    let (time_after, runs_after) = stats();
    std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0").expect("disable bpf_stats");
    (time_after - time) / (runs_after - runs).max(1.0)
}

pub fn mpps(pps: f64) -> String {
    format!("{:.2}", pps / 1e6)
}
