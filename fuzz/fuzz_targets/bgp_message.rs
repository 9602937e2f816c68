//! Decode arbitrary bytes as one BGP message. The first byte picks the
//! session context (4-octet AS, families, extended next hop), the rest is
//! the message. Decoding must never panic, and whatever decodes cleanly
//! must re-encode and decode to the same value.
//!
//! Run from the workspace root: `cargo +nightly fuzz run bgp_message -- -max_total_time=300`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router_core::bgp::wire::{DecodeContext, Family, Message};

fn context(selector: u8) -> DecodeContext {
    let mut ctx = DecodeContext {
        four_octet_as: selector & 1 != 0,
        ..DecodeContext::default()
    };
    if selector & 2 != 0 {
        ctx.families.insert(Family::IPV4_UNICAST);
    }
    if selector & 4 != 0 {
        ctx.families.insert(Family::IPV6_UNICAST);
    }
    if selector & 8 != 0 {
        ctx.extended_next_hop.insert(Family::IPV4_UNICAST);
    }
    ctx
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let ctx = context(selector);
    let Ok(message) = Message::parse(bytes, &ctx) else {
        return;
    };
    if let Message::Update(update) = &message
        && !update.errors.is_empty()
    {
        return;
    }
    let mut again = Vec::new();
    message
        .emit(&ctx, &mut again)
        .expect("a decoded message re-encodes");
    let reparsed = Message::parse(&again, &ctx).expect("a re-encoded message decodes");
    assert_eq!(reparsed, message);
});
