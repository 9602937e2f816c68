//! Flow events: every exit router-core's `flow::observe` makes an event of
//! goes to the `FLOWS` ring buffer, when the loader switched events on,
//! within the per-CPU rate limit, with the start of the packet it is about.
//!
//! The steps that send a frame on leave where it goes (and, after an
//! encapsulation, where the inner packet starts) in the CPU's `FLOW_STATE`
//! for the exit to read: the exit itself only knows its reason.

use aya_ebpf::helpers::{bpf_ktime_get_ns, bpf_xdp_load_bytes};
use aya_ebpf::programs::XdpContext;
use nexthop_offload_bpf_common::flow::{FLOW_BYTES, FlowEvent, counter, side};
use router_core::datapath::Reason;
use router_core::flow::{self, Side};
use router_core::wire::layout::ETHERNET_HEADER_LEN as ETH;

use crate::maps::{FLOW_COUNTERS, FLOW_SETTINGS, FLOW_STATE, FLOWS, Half};

/// The frame in flight leaves by interface `ifindex`.
#[inline(always)]
pub fn sent_to(ifindex: u32) {
    if let Some(state) = FLOW_STATE.get_ptr_mut(0) {
        // SAFETY: this CPU's entry, used by one program run at a time.
        unsafe { (*state).egress = ifindex };
    }
}

/// The frame in flight was encapsulated: its inner IP packet starts at `at`.
#[inline(always)]
pub fn encapsulated(at: usize) {
    if let Some(state) = FLOW_STATE.get_ptr_mut(0) {
        // SAFETY: as in `sent_to`.
        unsafe { (*state).inner_at = at as u32 };
    }
}

/// Send the event of the exit `reason`, if it makes one and events are on.
#[inline(always)]
pub fn exit(ctx: &XdpContext, reason: Reason, decapsulated: bool) {
    let Some(settings) = FLOW_SETTINGS.get(0) else {
        return;
    };
    if settings.enabled == 0 {
        return;
    }
    let Some(state) = FLOW_STATE.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's entry, used by one program run at a time.
    let state = unsafe { &mut *state };
    let half = Half::active();
    let side_of = |ifindex: u32| {
        let port = half.ingress(ifindex)?;
        Some(if half.is_pod_port(port) {
            Side::Endpoint
        } else {
            Side::Network
        })
    };
    let ingress = ctx.ingress_ifindex() as u32;
    let Some(from) = side_of(ingress) else {
        return;
    };
    let sends = matches!(reason, Reason::Forwarded | Reason::Encapsulated);
    let (egress, to) = if sends {
        (state.egress, side_of(state.egress))
    } else {
        (0, None)
    };
    if flow::observe(from, to, reason, decapsulated).is_none() {
        return;
    }
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if !state.take(now, settings) {
        return counted(counter::RATE_LIMITED);
    }
    let Some(mut entry) = FLOWS.reserve::<FlowEvent>(0) else {
        return counted(counter::RING_FULL);
    };
    let at = if reason == Reason::Encapsulated {
        state.inner_at as usize
    } else {
        ETH
    };
    let frame_len = ctx.data_end() - ctx.data();
    let len = frame_len.saturating_sub(at);
    let event = entry.as_mut_ptr();
    // SAFETY: the entry is ours until submitted; every field is written
    // before it is, the bytes by the helper (or zeroed).
    unsafe {
        (*event).ktime = now;
        (*event).ingress = ingress;
        (*event).egress = egress;
        (*event).reason = reason as u8;
        (*event).from = side_code(Some(from));
        (*event).to = side_code(to);
        (*event).decapsulated = u8::from(decapsulated);
        (*event).len = len as u32;
        (*event).pad = [0; 6];
        let bytes = (*event).bytes.as_mut_ptr().cast();
        // The length passed must be provably 1..=FLOW_BYTES: the last
        // index, read back through the stack (the compiler knows nothing of
        // it, so it keeps the check on the register the verifier needs), + 1.
        let last = len.min(FLOW_BYTES).saturating_sub(1) as u32;
        let last = core::ptr::read_volatile(&last);
        let n = last + 1;
        let captured = len > 0
            && last < FLOW_BYTES as u32
            && bpf_xdp_load_bytes(ctx.ctx, at as u32, bytes, n) == 0;
        (*event).captured = if captured { n as u16 } else { 0 };
    }
    entry.submit(0);
    counted(counter::SENT);
}

#[inline(always)]
fn side_code(s: Option<Side>) -> u8 {
    match s {
        None => side::NONE,
        Some(Side::Endpoint) => side::ENDPOINT,
        Some(Side::Network | Side::Host) => side::NETWORK,
    }
}

#[inline(always)]
fn counted(which: u32) {
    if let Some(n) = FLOW_COUNTERS.get_ptr_mut(which) {
        // SAFETY: a per-CPU slot, written only by this CPU while this program runs.
        unsafe { *n += 1 };
    }
}
