//! nexthop's XDP programs: router-core's datapath over eBPF maps.
//!
//! - [`maps`]: the maps the loader fills (layouts from the common crate).
//! - [`packet`]: bounds-checked packet access the verifier accepts.
//! - [`fib`]: poptrie lookup and ECMP member choice, router-core's own code.
//! - [`forward`]: the pipeline, exit reasons and XDP verdicts.
#![no_std]
#![no_main]

mod fib;
mod forward;
mod maps;
mod packet;

use aya_ebpf::macros::xdp;
use aya_ebpf::programs::XdpContext;

/// The datapath, attached to every port.
#[xdp]
pub fn nexthop(ctx: XdpContext) -> u32 {
    forward::run(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
