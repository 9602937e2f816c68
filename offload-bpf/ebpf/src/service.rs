//! The service stage (router-core's `service::datapath::Service::translate`,
//! Cilium's kube-proxy replacement) over the maps, in its own tail-called
//! program ahead of the pipeline.
//!
//! Three programs, each with its own 512-byte stack: [`Step::TRACKED`]
//! handles packets of tracked connections and tail-calls [`Step::OPEN`] for
//! new flows; both leave a rewrite's target in per-CPU scratch space and
//! tail-call [`apply`], which rewrites the packet. Step for step as router-core decides, with router-core's own pieces:
//! `service::packet` reads the 5-tuple from a copy of the headers and
//! rewrites it with its checksums, `service::lifetime` folds each packet
//! into its connection's state, `service::lookup::select` picks a new
//! flow's backend (`random` or Maglev), `service::nat::PortRange` the SNAT
//! port. What router-core keeps in ordered maps lives here in LRU hash maps
//! (`CT`, `CT_REPLY`, `AFFINITY`), expired lazily: an entry whose deadline
//! passed counts as absent, as router-core's eager expiry removes it.
//!
//! ```text
//!  packet ─> CT_REPLY[tuple] ─> a live CT entry with that reply? ─> reply:
//!        │                                         rewrite from the frontend
//!        └─> CT[tuple] live ─> backend still there (terminating: no SYN)?
//!                 │               ─> rewrite to the tracked translation
//!                 └─> no / stale ─> SVC_FRONTENDS[dst, scope] ─> affinity or
//!                     select ─> SVC_IDS ─> SVC_BACKENDS ─> SNAT (outside
//!                     traffic to another node) ─> CT + CT_REPLY ─> rewrite
//! ```
//!
//! Load-balancing modes `snat`, `dsr` and `hybrid`: outside traffic to a
//! backend on another node is source-NATed, or (DSR) rewritten to the
//! backend and dispatched to its node in Geneve by the `nexthop_dispatch`
//! program (`forward::run_dispatch`, router-core's `pipeline::dispatch`).
//! Masquerading (router-core's `service::masquerade`): a new flow to no
//! frontend gets `masquerade::action`'s treatment, with this node's pod
//! CIDRs from the settings and the destinations never masqueraded from the
//! `MASQ_EXCLUDE` trie: a local pod's flow to the world is source-NATed to
//! the node's address like a service's, a flow from outside to a local pod
//! is tracked untranslated (`Connection::kind` tells them apart).
//! A packet that is not an unfragmented TCP or UDP packet, or matches no
//! connection, no frontend and no masquerading, goes on untouched.

use aya_ebpf::bindings::xdp_action::{XDP_ABORTED, XDP_DROP};
use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns};
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::programs::XdpContext;
use core::net::{IpAddr, Ipv4Addr};
use nexthop_offload_bpf_common::family;
use nexthop_offload_bpf_common::service::{
    AffinityEntry, AffinityKey, BackendKey, BackendSet, Connection, FlowKey, FrontendKey,
    HEADER_BUFFER, HEADERS, L3n4Key, MASQ_PODS, NO_MAGLEV, ServiceConfig, Work, counter, kind,
    masq_key, mode, scope,
};
use router_core::hash::splitmix64;
use router_core::service::lifetime::{Direction, Lifetime, State, TcpFlags};
use router_core::service::lookup::{self, Algorithm, Lut, NO_BACKEND};
use router_core::service::masquerade::{self, Action};
use router_core::service::nat::PortRange;
use router_core::service::packet::{self, Bytes};
use router_core::service::{Protocol, Tuple};
use router_core::wire::layout::ETHERNET_HEADER_LEN as ETH;

use crate::maps::{
    AFFINITY, CT, CT_REPLY, DISPATCH, FULL, Half, INNER, MASQ_EXCLUDE, PROGRAMS, SERVICE_APPLY,
    SERVICE_OPEN, SVC_BACKENDS, SVC_COUNTERS, SVC_FRONTENDS, SVC_INPUTS, SVC_WORK, V6,
};
use crate::packet::{read, write};

/// What the stage decided, as a code (the rewrite target goes in an out
/// parameter, so the deciding functions stay calls of their own with their
/// own stack frames).
mod decided {
    /// Not service traffic.
    pub const NOT_SERVICE: u32 = 0;
    /// Rewrite to the tuple written out.
    pub const REWRITE: u32 = 1;
    /// A new flow: the open step decides.
    pub const OPEN: u32 = 2;
    /// Source NAT the destination-NATed tuple written out.
    pub const SNAT: u32 = 3;
    /// Rewrite to the tuple written out and dispatch the packet to the
    /// backend's node (DSR, `Work::dispatch`).
    pub const DISPATCH: u32 = 4;
    /// A new flow to no frontend: masquerading decides.
    pub const UNSERVED: u32 = 5;
    /// Drop, counted under `counter` `code - DROP`.
    pub const DROP: u32 = 16;
}

/// The packet's surroundings, passed by reference to the deciding steps.
struct Cx {
    config: &'static ServiceConfig,
    half: Half,
    now: u64,
    random: u32,
}

/// Which of the stage's deciding programs runs.
pub struct Step;

impl Step {
    /// Packets of tracked connections (the attached pipeline's first stop).
    pub const TRACKED: u8 = 0;
    /// New flows, tail-called by [`Step::TRACKED`] (a fresh stack).
    pub const OPEN: u8 = 1;
}

/// A packet's headers in the scratch buffer, every index masked into it;
/// bytes past the packet's `len` are absent.
struct Headers<'a> {
    buf: &'a mut [u8; HEADER_BUFFER],
    len: usize,
}

impl Bytes for Headers<'_> {
    #[inline(always)]
    fn byte(&self, at: usize) -> Option<u8> {
        (at < self.len).then(|| self.buf[at & (HEADER_BUFFER - 1)])
    }
    #[inline(always)]
    fn set_byte(&mut self, at: usize, value: u8) {
        if at < self.len {
            self.buf[at & (HEADER_BUFFER - 1)] = value;
        }
    }
}

/// The headers of a packet `packet::parse` accepted, for the rewrite: every
/// byte it touches lies inside the headers parse found, so the per-byte
/// length check (a branch the verifier would follow for each) is left out.
struct Parsed<'a>(&'a mut [u8; HEADER_BUFFER]);

impl Bytes for Parsed<'_> {
    #[inline(always)]
    fn byte(&self, at: usize) -> Option<u8> {
        Some(self.0[at & (HEADER_BUFFER - 1)])
    }
    #[inline(always)]
    fn set_byte(&mut self, at: usize, value: u8) {
        self.0[at & (HEADER_BUFFER - 1)] = value;
    }
}

/// This CPU's scratch space with the packet's headers copied in, and how
/// many bytes of them the packet has; `None` when they cannot be read.
#[inline(always)]
fn headers(ctx: &XdpContext) -> Option<(&'static mut Work, usize)> {
    let work = SVC_WORK.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch entry, used by one program run at a time.
    let work = unsafe { &mut *work };
    // All of them in one read when the packet has them (the common case);
    // else byte by byte, each read bounds-checked against the packet's end
    // (a variable-length `bpf_xdp_load_bytes` is one the verifier cannot follow).
    if let Some(all) = read::<[u8; HEADERS]>(ctx, ETH) {
        work.headers[..HEADERS].copy_from_slice(&all);
        return Some((work, HEADERS));
    }
    let mut len = 0;
    for i in 0..HEADERS {
        let Some(byte) = read::<u8>(ctx, ETH + i) else {
            break;
        };
        work.headers[i] = byte;
        len = i + 1;
    }
    (len > 0).then_some((work, len))
}

/// Keep what [`apply`] needs of the parsed headers in the scratch space.
#[inline(never)]
fn note(work: &mut Work, parsed: &packet::Parsed, len: usize) {
    work.len = len as u16;
    work.l4 = parsed.l4 as u16;
    work.key.set(&parsed.tuple);
}

/// Write the first `len` bytes of `headers` back over the packet's.
#[inline(always)]
fn store(ctx: &XdpContext, headers: &[u8; HEADER_BUFFER], len: usize) {
    if len == HEADERS {
        let mut all = [0u8; HEADERS];
        all.copy_from_slice(&headers[..HEADERS]);
        if write(ctx, ETH, all).is_some() {
            return;
        }
    }
    for (i, &byte) in headers.iter().take(HEADERS).enumerate() {
        if i >= len || write(ctx, ETH + i, byte).is_none() {
            break;
        }
    }
}

/// The deciding program `STEP`: on a rewrite, the target goes to the
/// scratch space and [`apply`] carries it out; otherwise the frame goes on
/// to the pipeline's part for its family (a tail call), or is dropped.
#[inline(always)]
pub fn run<const STEP: u8>(ctx: &XdpContext) -> u32 {
    let half = Half::active();
    let Some(config) = half.service_config() else {
        return route(ctx);
    };
    let Some((work, len)) = headers(ctx) else {
        return route(ctx);
    };
    let headers = Headers {
        buf: &mut work.headers,
        len,
    };
    let ingress = half
        .ingress(ctx.ingress_ifindex() as u32)
        .unwrap_or(u16::MAX);
    let packet = Packet {
        parsed: match packet::parse(&headers) {
            Some(parsed) => parsed,
            None => return route(ctx),
        },
        external: !is_pod_port(config, ingress),
    };
    note(work, &packet.parsed, len);
    work.dispatch = [0; 4];
    let (now, random) = inputs();
    let cx = Cx {
        config,
        half,
        now,
        random,
    };
    let mut verdict = if STEP == Step::OPEN {
        open(&cx, &packet, work)
    } else {
        tracked(&cx, &packet, work)
    };
    if verdict == decided::UNSERVED {
        // Called from here rather than from `open`: a call less deep.
        verdict = unserved(&cx, &packet, work);
    }
    let next = match verdict {
        decided::NOT_SERVICE => return route(ctx),
        decided::OPEN => SERVICE_OPEN,
        decided::REWRITE => SERVICE_APPLY,
        decided::DISPATCH => {
            count(counter::DISPATCHED);
            SERVICE_APPLY
        }
        code => {
            count(code - decided::DROP);
            return XDP_DROP;
        }
    };
    // SAFETY: on success the call does not return; the context is the one we run with.
    unsafe { PROGRAMS.tail_call(ctx, next) };
    XDP_ABORTED
}

/// The rewriting program: the headers the deciding program copied and
/// parsed, rewritten to the target it left in the scratch space (checksums
/// included), written back over the packet's; then on to the pipeline.
#[inline(always)]
pub fn apply(ctx: &XdpContext) -> u32 {
    let Some(work) = SVC_WORK.get_ptr_mut(0) else {
        return XDP_ABORTED;
    };
    // SAFETY: this CPU's scratch entry, filled by the program that tail-called this one.
    let work = unsafe { &mut *work };
    let (Some(tuple), Some(to)) = (work.key.tuple(), work.to.tuple()) else {
        return XDP_ABORTED;
    };
    let parsed = packet::Parsed {
        tuple,
        flags: 0,
        l4: usize::from(work.l4),
    };
    packet::rewrite(&mut Parsed(&mut work.headers), &parsed, &to);
    store(ctx, &work.headers, usize::from(work.len));
    if work.dispatch != [0; 4] {
        // SAFETY: on success the call does not return; the context is the one we run with.
        unsafe { PROGRAMS.tail_call(ctx, DISPATCH) };
        return XDP_ABORTED;
    }
    route(ctx)
}

/// The tracking of a request dispatched to this node (DSR; router-core's
/// `Service::accept_dispatched`): the decapsulated frame's flow, tracked
/// with the service of the DSR option the decap left in the scratch space
/// as its frontend, so that the backend's replies leave from it. The frame
/// itself goes back, untouched, to the pipeline's second pass.
#[inline(always)]
pub fn accept(ctx: &XdpContext) -> u32 {
    if let Some((work, copied)) = headers(ctx) {
        work.accept_pending = 0;
        // Within the packet's own length, as router-core reads it.
        let available = (ctx.data_end() - ctx.data()).saturating_sub(ETH);
        let whole = Headers {
            buf: &mut work.headers,
            len: copied,
        };
        let len = packet::ip_len(&whole, available).map_or(0, |l| l.min(copied));
        let headers = Headers {
            buf: &mut work.headers,
            len,
        };
        if let (Some(parsed), Some(config)) =
            (packet::parse(&headers), Half::active().service_config())
        {
            let (now, _) = inputs();
            accept_dispatched(config, now, &parsed, work);
        }
    } else if let Some(work) = SVC_WORK.get_ptr_mut(0) {
        // SAFETY: this CPU's scratch entry, used by one program run at a time.
        unsafe { (*work).accept_pending = 0 };
    }
    // SAFETY: on success the call does not return; the context is the one we run with.
    unsafe { PROGRAMS.tail_call(ctx, INNER) };
    XDP_ABORTED
}

/// What masquerading makes of a new flow to no frontend
/// (`masquerade::action` over this node's pod CIDRs and `MASQ_EXCLUDE`).
#[inline(never)]
fn unserved_action(cx: &Cx, p: &Packet) -> Action {
    let c = cx.config;
    if c.masquerade == 0 {
        return Action::Pass;
    }
    let half = cx.half.key();
    let t = p.tuple();
    let excluded = |a: Ipv4Addr| {
        let key = Key::new(8 + 32, masq_key(half, a));
        MASQ_EXCLUDE.get(&key).is_some()
    };
    masquerade::action(p.external, t.src, t.dst, |a| is_local_pod(c, a), excluded)
}

/// Whether `addr` lies in one of this node's pod CIDRs.
#[inline(always)]
fn is_local_pod(c: &ServiceConfig, addr: Ipv4Addr) -> bool {
    let a = u32::from(addr);
    for i in 0..MASQ_PODS {
        if i >= usize::from(c.masq_pod_count) {
            break;
        }
        let len = u32::from(c.masq_pod_lens[i]).min(32);
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        if a & mask == u32::from_be_bytes(c.masq_pods[i]) & mask {
            return true;
        }
    }
    false
}

/// A new flow to no frontend (router-core's `Service::unserved`):
/// masqueraded to the node's address, tracked untranslated, or passed on.
#[inline(never)]
fn unserved(cx: &Cx, p: &Packet, w: &mut Work) -> u32 {
    let conn_kind = match unserved_action(cx, p) {
        Action::Pass => return decided::NOT_SERVICE,
        Action::TrackInbound => {
            w.to = w.key;
            kind::INBOUND
        }
        Action::Masquerade => {
            w.to = w.key;
            let code = snat(cx, w, IpAddr::from(cx.config.masq_addr));
            if code != decided::REWRITE {
                return code;
            }
            kind::MASQUERADE
        }
    };
    let t = p.tuple();
    let (state, lifetime) = State::opened(t.protocol == Protocol::Tcp, p.flags());
    w.conn.reply = w.to.reversed();
    w.conn.frontend = l3n4(t.dst, t.dst_port, t);
    w.conn.state = state.0;
    w.conn.kind = conn_kind;
    w.conn.pad = [0; 2];
    w.conn.dispatch = [0; 4];
    w.conn.pad2 = [0; 4];
    w.conn.deadline = deadline(cx.config, cx.now, lifetime);
    if CT.insert(&w.key, &w.conn, 0).is_err() || CT_REPLY.insert(&w.conn.reply, &w.key, 0).is_err()
    {
        return decided::DROP + counter::OTHER_DROPS;
    }
    if conn_kind == kind::INBOUND {
        return decided::NOT_SERVICE;
    }
    count(counter::MASQUERADED);
    decided::REWRITE
}

/// Track the flow of `parsed`, dispatched here for the service in
/// `w.accept`, unless a live connection has it already (which the packet
/// then moves on, as router-core's conntrack lookup does).
#[inline(never)]
fn accept_dispatched(c: &ServiceConfig, now: u64, parsed: &packet::Parsed, w: &mut Work) {
    let t = &parsed.tuple;
    let flags = TcpFlags(parsed.flags);
    let tcp = t.protocol == Protocol::Tcp;
    w.key.set(t);
    w.original = w.key;
    let direction = if original_of(&w.key, now, &mut w.original) {
        Direction::Reply
    } else {
        Direction::Original
    };
    if let Some(conn) = live(&w.original, now) {
        // SAFETY: a map value, valid while this program runs; this CPU's update.
        let conn = unsafe { &mut *conn };
        let mut state = State(conn.state);
        if let Some(l) = state.packet(tcp, direction, flags) {
            conn.deadline = deadline(c, now, l);
        }
        conn.state = state.0;
        return;
    }
    let (state, lifetime) = State::opened(tcp, flags);
    let service = IpAddr::from(w.accept);
    w.conn.reply = w.key.reversed();
    w.conn.frontend = L3n4Key::new(service, w.accept_port, t.protocol);
    w.conn.state = state.0;
    w.conn.kind = kind::SERVICE;
    w.conn.pad = [0; 2];
    w.conn.dispatch = [0; 4];
    w.conn.pad2 = [0; 4];
    w.conn.deadline = deadline(c, now, lifetime);
    if CT.insert(&w.key, &w.conn, 0).is_err() || CT_REPLY.insert(&w.conn.reply, &w.key, 0).is_err()
    {
        count(counter::OTHER_DROPS);
    }
}

/// Go on with the pipeline: IPv4 in the full part, IPv6 in the IPv6 part.
#[inline(always)]
fn route(ctx: &XdpContext) -> u32 {
    let v6 = crate::packet::be16(ctx, 12) == Some(0x86dd);
    // SAFETY: on success the call does not return; the context is the one we run with.
    unsafe { PROGRAMS.tail_call(ctx, if v6 { V6 } else { FULL }) };
    XDP_ABORTED
}

/// Whether `port` faces this node's pods.
#[inline(always)]
fn is_pod_port(c: &ServiceConfig, port: u16) -> bool {
    // Constant offsets only: the verifier does not follow a bounded index here.
    let word = match port >> 6 {
        0 => c.pod_ports[0],
        1 => c.pod_ports[1],
        2 => c.pod_ports[2],
        3 => c.pod_ports[3],
        _ => return false,
    };
    word & (1 << (port & 63)) != 0
}

/// The time in nanoseconds and this packet's random number: given by the
/// loader (the differential harness replays router-core's), or the kernel's.
#[inline(always)]
pub(crate) fn inputs() -> (u64, u32) {
    match SVC_INPUTS.get(0) {
        Some(i) if i.given != 0 => (i.now, i.random),
        // SAFETY: helpers without arguments.
        _ => unsafe { (bpf_ktime_get_ns(), bpf_get_prandom_u32()) },
    }
}

#[inline(always)]
fn count(which: u32) {
    if let Some(c) = SVC_COUNTERS.get_ptr_mut(which) {
        // SAFETY: a per-CPU slot, written only by this CPU while this program runs.
        unsafe { *c += 1 };
    }
}

/// What the stage knows about a packet.
struct Packet {
    /// Its 5-tuple, TCP flags and where its transport header is.
    parsed: packet::Parsed,
    /// Arrived on an uplink (router-core's `Origin::External`), not from a pod.
    external: bool,
}

impl Packet {
    #[inline(always)]
    fn tuple(&self) -> &Tuple {
        &self.parsed.tuple
    }

    #[inline(always)]
    fn flags(&self) -> TcpFlags {
        TcpFlags(self.parsed.flags)
    }
}

/// `now` plus the lifetime `l` of the config.
#[inline(always)]
fn deadline(c: &ServiceConfig, now: u64, l: Lifetime) -> u64 {
    let seconds = match l {
        Lifetime::TcpSyn => c.lifetimes[0],
        Lifetime::TcpEstablished => c.lifetimes[1],
        Lifetime::TcpClosing => c.lifetimes[2],
        Lifetime::NonTcp => c.lifetimes[3],
    };
    now + u64::from(seconds) * 1_000_000_000
}

/// The live connection whose original tuple is `key`.
#[inline(always)]
fn live(key: &FlowKey, now: u64) -> Option<*mut Connection> {
    let conn = CT.get_ptr_mut(key)?;
    // SAFETY: a map value, valid while this program runs.
    (unsafe { (*conn).deadline } > now).then_some(conn)
}

/// Whether `key` is the reply tuple of a live connection; its original
/// tuple goes to `original`.
#[inline(never)]
fn original_of(key: &FlowKey, now: u64, original: &mut FlowKey) -> bool {
    // SAFETY: a map value, valid while this program runs.
    let Some(found) = (unsafe { CT_REPLY.get(key) }) else {
        return false;
    };
    let Some(conn) = live(found, now) else {
        return false;
    };
    // SAFETY: a map value, valid while this program runs.
    if unsafe { (*conn).reply } != *key {
        return false;
    }
    *original = *found;
    true
}

/// The address, port and protocol of `addr:port` on the protocol of `t`.
#[inline(always)]
fn l3n4(addr: IpAddr, port: u16, t: &Tuple) -> L3n4Key {
    L3n4Key::new(addr, port, t.protocol)
}

/// The verdict for a packet of a tracked connection (router-core's
/// `Service::decide` up to `open`): [`decided::OPEN`] when it opens a new
/// flow (no live connection, or a stale one now forgotten).
#[inline(never)]
fn tracked(cx: &Cx, p: &Packet, w: &mut Work) -> u32 {
    w.original = w.key;
    let direction = if original_of(&w.key, cx.now, &mut w.original) {
        Direction::Reply
    } else {
        Direction::Original
    };
    let Some(conn) = live(&w.original, cx.now) else {
        return if is_frontend(cx, p) || unserved_action(cx, p) != Action::Pass {
            decided::OPEN
        } else {
            // What the open step would decide, without its tail call.
            decided::NOT_SERVICE
        };
    };
    // SAFETY: a map value, valid while this program runs; this CPU's update.
    let conn = unsafe { &mut *conn };
    let mut state = State(conn.state);
    let tcp = p.tuple().protocol == Protocol::Tcp;
    if let Some(l) = state.packet(tcp, direction, p.flags()) {
        conn.deadline = deadline(cx.config, cx.now, l);
    }
    conn.state = state.0;
    if conn.kind == kind::INBOUND {
        return decided::NOT_SERVICE;
    }
    if direction == Direction::Reply {
        count(counter::REPLIES);
        w.to = w.original;
        w.to.src = conn.frontend.addr;
        w.to.src_port = conn.frontend.port;
        w.to.dst = w.original.src;
        w.to.dst_port = w.original.src_port;
        return decided::REWRITE;
    }
    if conn.kind == kind::MASQUERADE || keeps(cx, p, conn) {
        w.to = conn.reply.reversed();
        if conn.dispatch != [0; 4] {
            w.dispatch = conn.dispatch;
            w.conn.frontend = conn.frontend;
            return decided::DISPATCH;
        }
        return decided::REWRITE;
    }
    forget(&w.original, &conn.reply);
    decided::OPEN
}

/// Whether the packet's destination is a frontend (in any scope).
#[inline(always)]
fn is_frontend(cx: &Cx, p: &Packet) -> bool {
    let t = p.tuple();
    let key = FrontendKey {
        frontend: l3n4(t.dst, t.dst_port, t),
        half: cx.half.key(),
        scope: scope::INTERNAL,
        pad: [0; 2],
    };
    // SAFETY: only presence is read.
    unsafe { SVC_FRONTENDS.get(&key) }.is_some()
}

/// Whether a tracked request keeps its backend: the frontend is still
/// there and so is the backend (a terminating one keeps its packets but
/// not a new SYN). Refreshes the client's affinity when it does.
#[inline(never)]
fn keeps(cx: &Cx, p: &Packet, conn: &Connection) -> bool {
    let internal = FrontendKey {
        frontend: conn.frontend,
        half: cx.half.key(),
        scope: scope::INTERNAL,
        pad: [0; 2],
    };
    // SAFETY: a map value, valid while this program runs.
    let Some(set) = (unsafe { SVC_FRONTENDS.get(&internal) }) else {
        return false;
    };
    let backend = L3n4Key {
        addr: conn.reply.src,
        port: conn.reply.src_port,
        family: conn.reply.family,
        protocol: conn.reply.protocol,
    };
    let key = BackendKey {
        backend,
        half: cx.half.key(),
        pad: [0; 3],
    };
    // SAFETY: only a byte is read.
    let keep = match unsafe { SVC_BACKENDS.get(&key) }.map(|b| b.terminating) {
        Some(0) => true,
        Some(_) => !p.flags().contains(TcpFlags::SYN),
        None => false,
    };
    if keep {
        remember(cx.now, set, &conn.frontend, p.tuple(), &backend);
    }
    keep
}

/// Stop tracking the connection `original` with reply tuple `reply`.
#[inline(never)]
fn forget(original: &FlowKey, reply: &FlowKey) {
    // SAFETY: copied out at once.
    if unsafe { CT_REPLY.get(reply) }.copied() == Some(*original) {
        let _ = CT_REPLY.remove(reply);
    }
    let _ = CT.remove(original);
}

/// Refresh or record the client's affinity to `backend`, if the frontend has it.
#[inline(never)]
fn remember(now: u64, set: &BackendSet, frontend: &L3n4Key, t: &Tuple, backend: &L3n4Key) {
    if set.affinity == 0 {
        return;
    }
    let entry = AffinityEntry {
        backend: *backend,
        pad: [0; 4],
        deadline: now + u64::from(set.affinity) * 1_000_000_000,
    };
    let _ = AFFINITY.insert(&affinity_key(frontend, t), &entry, 0);
}

#[inline(always)]
fn affinity_key(frontend: &L3n4Key, t: &Tuple) -> AffinityKey {
    let client = L3n4Key::new(t.src, 0, t.protocol);
    AffinityKey {
        frontend: *frontend,
        client: client.addr,
        family: client.family,
        pad: [0; 3],
    }
}

/// A set's active backend IDs in `SVC_SLOTS`.
pub(crate) struct Slots {
    pub(crate) half: Half,
    pub(crate) set: BackendSet,
}

impl Lut for Slots {
    #[inline(always)]
    fn size(&self) -> u32 {
        self.set.count
    }
    #[inline(always)]
    fn entry(&self, index: u32) -> Option<u32> {
        if index >= self.set.count {
            return None;
        }
        self.half.slot(self.set.first + index)
    }
}

impl Slots {
    /// Whether `id` is one of the set's (the slots ascend: a binary search).
    #[inline(always)]
    fn contains(&self, id: u32) -> bool {
        let (mut lo, mut hi) = (0u32, self.set.count);
        for _ in 0..32 {
            if lo >= hi {
                break;
            }
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid) {
                Some(x) if x == id => return true,
                Some(x) if x < id => lo = mid + 1,
                Some(_) => hi = mid,
                None => return false,
            }
        }
        false
    }
}

/// A set's Maglev table in `SVC_MAGLEV`.
struct Maglev {
    half: Half,
    base: u32,
    size: u32,
}

impl Lut for Maglev {
    #[inline(always)]
    fn size(&self) -> u32 {
        self.size
    }
    #[inline(always)]
    fn entry(&self, index: u32) -> Option<u32> {
        if index >= self.size {
            return None;
        }
        self.half.maglev(self.base + index)
    }
}

/// A new flow: find its frontend, pick a backend, translate and track it
/// (router-core's `Service::open`), in three steps of their own.
#[inline(never)]
fn open(cx: &Cx, p: &Packet, w: &mut Work) -> u32 {
    let t = p.tuple();
    let mut fkey = FrontendKey {
        frontend: l3n4(t.dst, t.dst_port, t),
        half: cx.half.key(),
        scope: scope::INTERNAL,
        pad: [0; 2],
    };
    // SAFETY: only presence is read.
    if unsafe { SVC_FRONTENDS.get(&fkey) }.is_none() {
        return decided::UNSERVED;
    }
    if p.external {
        fkey.scope = scope::EXTERNAL;
    }
    // SAFETY: a map value, valid while this program runs.
    let Some(set) = (unsafe { SVC_FRONTENDS.get(&fkey) }) else {
        return decided::NOT_SERVICE;
    };
    let id = choose(cx, p, set);
    if id == NO_BACKEND {
        return decided::DROP + counter::NO_BACKEND;
    }
    let mut code = translate(cx, p, id, w);
    if code == decided::SNAT {
        code = match w.to.tuple().map(|t| t.dst) {
            Some(IpAddr::V4(_)) if cx.config.has_snat_v4 != 0 => {
                snat(cx, w, IpAddr::from(cx.config.snat_v4))
            }
            Some(IpAddr::V6(_)) if cx.config.has_snat_v6 != 0 => {
                snat(cx, w, IpAddr::from(cx.config.snat_v6))
            }
            _ => decided::DROP + counter::OTHER_DROPS,
        };
    }
    match code {
        decided::REWRITE | decided::DISPATCH => track(cx, p, set, w),
        code => code,
    }
}

/// The backend ID for a new flow to a frontend with backend set `set`: the
/// one affinity remembers if still in the set, else `random` or Maglev.
#[inline(never)]
fn choose(cx: &Cx, p: &Packet, set: &BackendSet) -> u32 {
    let (c, half, now) = (cx.config, cx.half, cx.now);
    let t = p.tuple();
    let slots = Slots { half, set: *set };
    if set.affinity != 0 {
        let akey = affinity_key(&l3n4(t.dst, t.dst_port, t), t);
        if let Some(entry) = AFFINITY.get_ptr_mut(&akey) {
            // SAFETY: a map value, valid while this program runs; this CPU's update.
            let entry = unsafe { &mut *entry };
            if entry.deadline > now {
                entry.deadline = now + u64::from(set.affinity) * 1_000_000_000;
                let bkey = BackendKey {
                    backend: entry.backend,
                    half: half.key(),
                    pad: [0; 3],
                };
                // SAFETY: copied out at once.
                if let Some(b) = unsafe { SVC_BACKENDS.get(&bkey) } {
                    if slots.contains(b.id) {
                        return b.id;
                    }
                }
            }
        }
    }
    let algorithm = if c.algorithm == 1 {
        Algorithm::Maglev
    } else {
        Algorithm::Random
    };
    let maglev = Maglev {
        half,
        base: set.maglev.wrapping_mul(c.maglev_size),
        size: if set.maglev == NO_MAGLEV || set.count == 0 {
            0
        } else {
            c.maglev_size
        },
    };
    let flow = lookup::Flow {
        client: t.src,
        client_port: t.src_port,
        service_port: t.dst_port,
        protocol: t.protocol.number(),
        affinity: set.affinity != 0,
    };
    lookup::select(algorithm, &slots, &maglev, c.seeds, &flow, cx.random)
}

/// The request's tuple to backend `id` (destination NAT) into `w.to`;
/// [`decided::SNAT`] when it is outside traffic to another node, which is
/// source-NATed to the node's address as well.
#[inline(never)]
fn translate(cx: &Cx, p: &Packet, id: u32, w: &mut Work) -> u32 {
    let half = cx.half;
    let Some(backend) = half.backend_addr(id) else {
        return decided::DROP + counter::NO_BACKEND;
    };
    let key = BackendKey {
        backend,
        half: half.key(),
        pad: [0; 3],
    };
    // SAFETY: copied out at once.
    let Some(b) = (unsafe { SVC_BACKENDS.get(&key) }).copied() else {
        return decided::DROP + counter::NO_BACKEND;
    };
    let Some(addr) = backend.ip() else {
        return decided::DROP + counter::NO_BACKEND;
    };
    let dnat = Tuple {
        dst: addr,
        dst_port: backend.port,
        ..*p.tuple()
    };
    w.to.set(&dnat);
    if !p.external || b.local != 0 {
        return decided::REWRITE;
    }
    let dsr = match cx.config.mode {
        mode::DSR => true,
        mode::HYBRID => dnat.protocol == Protocol::Tcp,
        _ => false,
    };
    if !dsr {
        return decided::SNAT;
    }
    // Cilium's DSR option and its Geneve underlay carry IPv4 only.
    if b.node_family != family::V4 || !matches!(dnat.src, IpAddr::V4(_)) {
        return decided::DROP + counter::OTHER_DROPS;
    }
    w.dispatch = [b.node[0], b.node[1], b.node[2], b.node[3]];
    decided::DISPATCH
}

/// Source NAT of `w.to` to the node's address `node`: the first free
/// port, as router-core's `nat::PortRange` orders them.
#[inline(never)]
fn snat(cx: &Cx, w: &mut Work, node: IpAddr) -> u32 {
    let Some(dnat) = w.to.tuple() else {
        return decided::DROP + counter::OTHER_DROPS;
    };
    let mut state = u64::from(cx.random);
    let nat_random = splitmix64(&mut state) as u32;
    let now = cx.now;
    let probe = &mut w.original;
    let in_use = |reply: &Tuple| {
        probe.set(reply);
        is_reply(probe, now)
    };
    match PortRange::default().allocate(&dnat, node, nat_random, in_use) {
        Ok(translated) => {
            w.to.set(&translated);
            decided::REWRITE
        }
        Err(_) => decided::DROP + counter::OTHER_DROPS,
    }
}

/// Whether `key` is the reply tuple of a live connection.
#[inline(never)]
fn is_reply(key: &FlowKey, now: u64) -> bool {
    // SAFETY: a map value, valid while this program runs.
    let Some(original) = (unsafe { CT_REPLY.get(key) }) else {
        return false;
    };
    // SAFETY: a map value, valid while this program runs.
    live(original, now).is_some_and(|conn| unsafe { (*conn).reply } == *key)
}

/// Track the new flow translated to `w.to`: its connection, its reply
/// index, the client's affinity.
#[inline(never)]
fn track(cx: &Cx, p: &Packet, set: &BackendSet, w: &mut Work) -> u32 {
    let t = p.tuple();
    let (state, lifetime) = State::opened(t.protocol == Protocol::Tcp, p.flags());
    w.conn.reply = w.to.reversed();
    w.conn.frontend = l3n4(t.dst, t.dst_port, t);
    w.conn.state = state.0;
    w.conn.kind = kind::SERVICE;
    w.conn.pad = [0; 2];
    w.conn.dispatch = w.dispatch;
    w.conn.pad2 = [0; 4];
    w.conn.deadline = deadline(cx.config, cx.now, lifetime);
    if CT.insert(&w.key, &w.conn, 0).is_err() || CT_REPLY.insert(&w.conn.reply, &w.key, 0).is_err()
    {
        return decided::DROP + counter::OTHER_DROPS;
    }
    let backend = L3n4Key {
        addr: w.to.dst,
        port: w.to.dst_port,
        family: w.to.family,
        protocol: w.to.protocol,
    };
    remember(cx.now, set, &w.conn.frontend, t, &backend);
    count(counter::OPENED);
    if w.to.src != w.key.src {
        count(counter::SNAT);
    }
    if w.dispatch != [0; 4] {
        return decided::DISPATCH;
    }
    decided::REWRITE
}
