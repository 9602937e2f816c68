//! Bounds-checked reads and writes of XDP packet data, in the form the
//! verifier follows: every access compares `data + offset + len` with `data_end`.
//! Fields after the 14-byte Ethernet header are only 2-byte aligned, so
//! multi-byte values are read unaligned.

use aya_ebpf::helpers::bpf_xdp_adjust_tail;
use aya_ebpf::programs::XdpContext;

/// A pointer to `T` at `offset` in the packet, if the packet is long enough.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    if start + offset + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Read a `T` (any alignment) at `offset`.
#[inline(always)]
pub fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes lie inside the packet.
    ptr_at::<T>(ctx, offset).map(|p| unsafe { p.read_unaligned() })
}

/// Write a `T` (any alignment) at `offset`; `None` if the packet is too short.
#[inline(always)]
pub fn write<T: Copy>(ctx: &XdpContext, offset: usize, value: T) -> Option<()> {
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes lie inside the packet.
    ptr_at::<T>(ctx, offset).map(|p| unsafe { p.write_unaligned(value) })
}

/// A big-endian `u16` at `offset`.
#[inline(always)]
pub fn be16(ctx: &XdpContext, offset: usize) -> Option<u16> {
    read::<[u8; 2]>(ctx, offset).map(u16::from_be_bytes)
}

/// Shrink the frame to its first `len` bytes (dropping Ethernet padding
/// before an in-place reply); false if the helper refused.
#[inline(always)]
pub fn trim_to(ctx: &XdpContext, len: usize) -> bool {
    let excess = (ctx.data_end() - ctx.data()) as i64 - len as i64;
    // SAFETY: only shrinks the frame; later accesses re-check bounds.
    excess <= 0 || unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(excess as i32)) } == 0
}
