//! Socket-level load-balancing (Cilium's socket LB, `bpf/bpf_sock.c`):
//! programs on a cgroup's `connect`, `sendmsg`, `recvmsg` and
//! `getpeername` hooks (IPv4 and IPv6) that translate a pod's socket to a service
//! *before* any packet exists, with router-core's
//! `service::datapath::Service::connect` decision.
//!
//! ```text
//!  connect()/sendmsg() to A:p ─> SVC_FRONTENDS[A:p, internal] ─> none: as given
//!        │                            └─> no active backend: EHOSTUNREACH
//!        └─> slot (TCP: random, UDP: socket cookie) % count ─> SVC_SLOTS ─>
//!            SVC_IDS ─> backend B:q; SOCK_REVNAT[cookie, B:q] = A:p; the
//!            call goes to B:q
//!  recvmsg()/getpeername() from B:q ─> SOCK_REVNAT[cookie, B:q] ─> A:p
//!            (while A:p is still a frontend; a stale entry is removed)
//! ```
//!
//! The socket then talks to the backend directly: no packet of it meets
//! the service stage's connection tracking.

use aya_ebpf::helpers::{bpf_get_socket_cookie, bpf_set_retval};
use aya_ebpf::programs::SockAddrContext;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use nexthop_offload_bpf_common::service::{FrontendKey, L3n4Key, SocketKey, scope};
use router_core::service::Protocol;
use router_core::service::lookup::{self, NO_BACKEND};

use crate::maps::{Half, SOCK_REVNAT, SVC_FRONTENDS};
use crate::service::{Slots, inputs};

/// Let the call go on (with whatever the program wrote).
const PROCEED: i32 = 1;
/// Fail the call (with the error set by `bpf_set_retval`).
const REJECT: i32 = 0;
/// `AF_INET`.
const AF_INET: u32 = 2;
/// `AF_INET6`.
const AF_INET6: u32 = 10;
/// `EHOSTUNREACH`.
const EHOSTUNREACH: i32 = 113;

/// The call's address as a key (`None`: not of the hook's family, `V6`,
/// or not TCP or UDP), and the socket's cookie. One family per program:
/// the verifier wants every context field read at a constant offset.
#[inline(always)]
fn address<const V6: bool>(ctx: &SockAddrContext) -> Option<(L3n4Key, u64)> {
    // SAFETY: the context the kernel ran us with.
    let sa = unsafe { &*ctx.sock_addr };
    let protocol = Protocol::from_number(u8::try_from(sa.protocol).ok()?)?;
    // Addresses and the port hold network byte order in their first bytes.
    let ip = match (V6, sa.user_family) {
        (false, AF_INET) => IpAddr::V4(Ipv4Addr::from(sa.user_ip4.to_ne_bytes())),
        (true, AF_INET6) => {
            let w = sa.user_ip6;
            let mut b = [0u8; 16];
            b[0..4].copy_from_slice(&w[0].to_ne_bytes());
            b[4..8].copy_from_slice(&w[1].to_ne_bytes());
            b[8..12].copy_from_slice(&w[2].to_ne_bytes());
            b[12..16].copy_from_slice(&w[3].to_ne_bytes());
            IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return None,
    };
    let port = u16::from_be(sa.user_port as u16);
    let key = L3n4Key::new(ip, port, protocol);
    // SAFETY: the helper reads the socket of the context it is given.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    Some((key, cookie))
}

/// Point the call at `to`, an address of the hook's family.
#[inline(always)]
fn set_address<const V6: bool>(ctx: &SockAddrContext, to: &L3n4Key) {
    // SAFETY: the context the kernel ran us with; these hooks may write these fields.
    let sa = unsafe { &mut *ctx.sock_addr };
    let word = |i: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&to.addr[i * 4..i * 4 + 4]);
        u32::from_ne_bytes(w)
    };
    if !V6 {
        sa.user_ip4 = word(0);
    } else {
        sa.user_ip6[0] = word(0);
        sa.user_ip6[1] = word(1);
        sa.user_ip6[2] = word(2);
        sa.user_ip6[3] = word(3);
    }
    sa.user_port = u32::from(to.port.to_be());
}

/// `connect4`/`6` and `sendmsg4`/`6`: a frontend becomes one of its in-cluster
/// backends (router-core's `Service::connect`).
#[inline(always)]
pub fn forward<const V6: bool>(ctx: &SockAddrContext) -> i32 {
    let half = Half::active();
    match half.service_config() {
        Some(c) if c.enabled != 0 => {}
        _ => return PROCEED,
    }
    let Some((frontend, cookie)) = address::<V6>(ctx) else {
        return PROCEED;
    };
    let key = FrontendKey {
        frontend,
        half: half.key(),
        scope: scope::INTERNAL,
        pad: [0; 2],
    };
    // SAFETY: copied out at once.
    let Some(set) = (unsafe { SVC_FRONTENDS.get(&key) }).copied() else {
        return PROCEED;
    };
    let (_, random) = inputs();
    let slot = lookup::socket_slot(frontend.protocol, random, cookie);
    let backend = match lookup::select_for_socket(&Slots { half, set }, slot) {
        NO_BACKEND => None,
        id => half.backend_addr(id),
    };
    let Some(backend) = backend.filter(|b| b.family == frontend.family) else {
        // SAFETY: a helper of cgroup programs, given an errno.
        unsafe { bpf_set_retval(-EHOSTUNREACH) };
        return REJECT;
    };
    let rev = SocketKey {
        cookie,
        backend,
        pad: [0; 4],
    };
    // A full map evicts its least recently used entry; insert never fails
    // for want of room, and a socket without its entry still talks to the
    // backend (only its peer address reads as the backend's).
    let _ = SOCK_REVNAT.insert(&rev, &frontend, 0);
    set_address::<V6>(ctx, &backend);
    PROCEED
}

/// `recvmsg4`/`6` and `getpeername4`/`6`: a backend the socket was sent to reads
/// as the frontend it asked for, while that is still a frontend.
#[inline(always)]
pub fn reverse<const V6: bool>(ctx: &SockAddrContext) -> i32 {
    let Some((backend, cookie)) = address::<V6>(ctx) else {
        return PROCEED;
    };
    let rev = SocketKey {
        cookie,
        backend,
        pad: [0; 4],
    };
    // SAFETY: copied out at once.
    let Some(frontend) = (unsafe { SOCK_REVNAT.get(&rev) }).copied() else {
        return PROCEED;
    };
    let key = FrontendKey {
        frontend,
        half: Half::active().key(),
        scope: scope::INTERNAL,
        pad: [0; 2],
    };
    // SAFETY: only presence is read.
    if unsafe { SVC_FRONTENDS.get(&key) }.is_none() {
        let _ = SOCK_REVNAT.remove(&rev);
        return PROCEED;
    }
    set_address::<V6>(ctx, &frontend);
    PROCEED
}
