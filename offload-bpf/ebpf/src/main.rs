//! nexthop's XDP programs: router-core's datapath over eBPF maps.
//!
//! - [`maps`]: the maps the loader fills (layouts from the common crate).
//! - [`packet`]: bounds-checked packet access the verifier accepts.
//! - [`fib`]: poptrie lookup and ECMP member choice, router-core's own code.
//! - [`forward`]: the pipeline, exit reasons and XDP verdicts.
//! - [`flows`]: flow events of the exits, to the loader through a ring buffer.
//! - [`arp`]: replies to ARP requests for owned and announced addresses.
//! - [`ndp`]: replies to neighbour solicitations for owned and announced addresses.
//! - [`tunnel`]: VXLAN/Geneve decapsulation and outer headers.
//! - [`service`]: the service stage (load-balancing to backends, SNAT,
//!   connection tracking) ahead of the pipeline.
//! - [`sock`]: socket-level load-balancing on a cgroup's socket hooks.
#![no_std]
#![no_main]

mod arp;
mod fib;
mod flows;
mod forward;
mod maps;
mod ndp;
mod packet;
mod service;
mod sock;
mod tunnel;

use aya_ebpf::macros::{cgroup_sock_addr, xdp};
use aya_ebpf::programs::{SockAddrContext, XdpContext};
use forward::Part;

/// The datapath, attached to every port: routed IPv4 frames; ARP and tunnel
/// frames go to [`nexthop_full`], IPv6 frames to [`nexthop_v6`] (which hands
/// neighbour discovery to [`nexthop_ndp`]).
#[xdp]
pub fn nexthop(ctx: XdpContext) -> u32 {
    forward::run::<{ Part::FAST }>(&ctx)
}

/// ARP and IPv4 with tunnels, tail-called by [`nexthop`].
#[xdp]
pub fn nexthop_full(ctx: XdpContext) -> u32 {
    forward::run::<{ Part::FULL }>(&ctx)
}

/// IPv6 with tunnels, tail-called by [`nexthop`].
#[xdp]
pub fn nexthop_v6(ctx: XdpContext) -> u32 {
    forward::run::<{ Part::V6 }>(&ctx)
}

/// Neighbour discovery (the NDP responder), tail-called by [`nexthop_v6`]
/// (its own 512-byte stack).
#[xdp]
pub fn nexthop_ndp(ctx: XdpContext) -> u32 {
    forward::run::<{ Part::NDP }>(&ctx)
}

/// The service stage, tail-called by [`nexthop`] for IP frames when the
/// node serves services; it hands the frame on to [`nexthop_full`] or
/// [`nexthop_v6`], or drops it.
#[xdp]
pub fn nexthop_service(ctx: XdpContext) -> u32 {
    service::run::<{ service::Step::TRACKED }>(&ctx)
}

/// The service stage's new flows, tail-called by [`nexthop_service`] (its
/// own 512-byte stack).
#[xdp]
pub fn nexthop_service_open(ctx: XdpContext) -> u32 {
    service::run::<{ service::Step::OPEN }>(&ctx)
}

/// The service stage's rewrite of the packet to its translation,
/// tail-called by [`nexthop_service`] and [`nexthop_service_open`].
#[xdp]
pub fn nexthop_service_apply(ctx: XdpContext) -> u32 {
    service::apply(&ctx)
}

/// Socket-level load-balancing of `connect()` to a service address, in
/// the cgroups the loader attaches it to.
#[cgroup_sock_addr(connect4)]
pub fn nexthop_sock_connect4(ctx: SockAddrContext) -> i32 {
    sock::forward::<false>(&ctx)
}

/// [`nexthop_sock_connect4`] for IPv6 sockets.
#[cgroup_sock_addr(connect6)]
pub fn nexthop_sock_connect6(ctx: SockAddrContext) -> i32 {
    sock::forward::<true>(&ctx)
}

/// Socket-level load-balancing of `sendmsg()` (UDP) to a service address.
#[cgroup_sock_addr(sendmsg4)]
pub fn nexthop_sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    sock::forward::<false>(&ctx)
}

/// [`nexthop_sock_sendmsg4`] for IPv6 sockets.
#[cgroup_sock_addr(sendmsg6)]
pub fn nexthop_sock_sendmsg6(ctx: SockAddrContext) -> i32 {
    sock::forward::<true>(&ctx)
}

/// A datagram from a backend a socket was sent to reads as from the service.
#[cgroup_sock_addr(recvmsg4)]
pub fn nexthop_sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    sock::reverse::<false>(&ctx)
}

/// [`nexthop_sock_recvmsg4`] for IPv6 sockets.
#[cgroup_sock_addr(recvmsg6)]
pub fn nexthop_sock_recvmsg6(ctx: SockAddrContext) -> i32 {
    sock::reverse::<true>(&ctx)
}

/// A socket sent to a backend has the service as its peer.
#[cgroup_sock_addr(getpeername4)]
pub fn nexthop_sock_getpeername4(ctx: SockAddrContext) -> i32 {
    sock::reverse::<false>(&ctx)
}

/// [`nexthop_sock_getpeername4`] for IPv6 sockets.
#[cgroup_sock_addr(getpeername6)]
pub fn nexthop_sock_getpeername6(ctx: SockAddrContext) -> i32 {
    sock::reverse::<true>(&ctx)
}

/// A service request rewritten to a backend on another node, in Geneve to
/// that node with Cilium's DSR option, tail-called by
/// [`nexthop_service_apply`].
#[xdp]
pub fn nexthop_dispatch(ctx: XdpContext) -> u32 {
    forward::run_dispatch(&ctx)
}

/// A request dispatched to this node (DSR) tracked so that its replies
/// leave from the service address, tail-called by [`nexthop_inner`],
/// which it hands the frame back to.
#[xdp]
pub fn nexthop_service_accept(ctx: XdpContext) -> u32 {
    service::accept(&ctx)
}

/// The datapath's second pass over the inner frame of a decapsulated tunnel
/// frame, tail-called by [`nexthop_full`] (a fresh 512-byte stack).
#[xdp]
pub fn nexthop_inner(ctx: XdpContext) -> u32 {
    forward::run_inner(&ctx)
}

/// `XDP_PASS` for the peer end of a veth port: an XDP program gives the peer
/// the NAPI context that native `XDP_TX` and redirects into a veth need.
#[xdp]
pub fn nexthop_peer(_ctx: XdpContext) -> u32 {
    aya_ebpf::bindings::xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
