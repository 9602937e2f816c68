//! BGP-4: the wire codec now; the session machine and RIBs build on it.
//!
//! Owns the byte-level side of BGP in [`wire`]: every message, capability and
//! path attribute as a parsed representation with `parse` and `emit`, and the
//! RFC 4271 §6 / RFC 7606 verdict on malformed input. It leaves sessions,
//! timers and route selection to the modules that consume decoded messages.

pub mod fsm;
pub mod rib;
pub mod wire;

pub use wire::{DecodeContext, Error, Family, Message};
