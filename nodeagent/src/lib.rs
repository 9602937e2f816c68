//! The node agent (`nexthop-agent`): BGP sessions over kernel TCP, Cilium-style
//! configuration, IPAM, and datapath programming through offload-bpf.
//!
//! Not yet built: this crate is a placeholder until the BGP speaker issue lands.
