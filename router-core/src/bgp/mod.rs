//! BGP-4, sans-IO.
//!
//! - [`wire`]: every message, capability and path attribute as a parsed
//!   representation with `parse` and `emit`, and the RFC 4271 §6 / RFC 7606
//!   verdict on malformed input.
//! - [`fsm`]: one session's RFC 4271 §8 state machine, `(now, Event) -> Outputs`.
//! - [`rib`]: Adj-RIBs-In/Out, Loc-RIB, the decision process, multipath, export
//!   policy and the graceful-restart helper.
//! - [`speaker`]: one BGP instance — its sessions and RIB with one owner,
//!   `(now, Input) -> Actions`; what both runtimes drive.
//!
//! Transports (kernel TCP in the agent, smoltcp in the simulator) live in the
//! runtimes: they carry out the speaker's actions and report their sockets'
//! events, nothing more.

pub mod fsm;
pub mod rib;
pub mod speaker;
pub mod wire;

pub use wire::{DecodeContext, Error, Family, Message};
