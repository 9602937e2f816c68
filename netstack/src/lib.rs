//! Simulated and tap-bridged hosts: router-core forwarding plus a smoltcp
//! interface per port for the host's own traffic (BGP over TCP, ICMP, HTTP).
//!
//! Not yet built: this crate is a placeholder until the simulator issue lands.
//! It will own `phy::Device` implementations for simulated links and tun/tap,
//! and the "deliver locally or forward" decision, which it takes from router-core.
