//! Service load-balancing: Cilium's kube-proxy replacement, as the reference
//! datapath both runtimes follow.
//!
//! Owns what a node does with traffic to a Kubernetes service: which
//! frontends exist on this node and which backends each may reach, how a new
//! flow picks its backend (`random` or Maglev, exactly as Cilium computes
//! them), the connection tracking that keeps a flow on its backend, session
//! affinity, source NAT to the node address, and the reverse translation of
//! replies. Sans-IO like the rest of router-core: time and random numbers
//! come in as arguments.
//!
//! The stateful part takes a [`Tuple`] and hands one back; [`packet`] reads
//! and rewrites them in packets. Routing, encapsulation, DSR and the eBPF
//! maps are the runtimes' and later stages' business.
//!
//! - [`lookup`]: the allocation-free half shared with eBPF: Cilium's flow
//!   hash and the Maglev table lookup behind a small context trait.
//! - [`maglev`]: building a Maglev lookup table from backends and the
//!   cluster-wide hash seed.
//! - [`table`]: one node's service table: frontends → backends.
//! - [`lifetime`]: a connection's TCP state and which of Cilium's lifetimes
//!   it gets (allocation-free, shared with eBPF).
//! - [`conntrack`]: connection tracking with Cilium's per-state lifetimes;
//!   [`affinity`]: `sessionAffinity: ClientIP`.
//! - [`nat`]: source NAT to the node address and its port allocation (the
//!   order ports are tried in is allocation-free, shared with eBPF).
//! - [`masquerade`]: which pod traffic leaving the node is source-NATed to
//!   its address (the decision is allocation-free, shared with eBPF).
//! - [`packet`]: a packet's 5-tuple and rewriting it with its checksums
//!   (allocation-free, shared with eBPF).
//! - [`datapath`]: a flow's verdict: no service, translated, or dropped.
//! - `frontend` and `nodeport` (feature `serde`): the service table from
//!   Cilium's objects (`Service`, `EndpointSlice`), and NodePort allocation.

use core::net::IpAddr;

#[cfg(feature = "alloc")]
pub mod affinity;
#[cfg(feature = "alloc")]
pub mod conntrack;
#[cfg(feature = "alloc")]
pub mod datapath;
#[cfg(feature = "alloc")]
mod expiring;
#[cfg(feature = "serde")]
pub mod frontend;
pub mod lifetime;
pub mod lookup;
#[cfg(feature = "alloc")]
pub mod maglev;
pub mod masquerade;
pub mod nat;
#[cfg(feature = "serde")]
pub mod nodeport;
pub mod packet;
#[cfg(feature = "alloc")]
pub mod table;

/// A transport protocol a service port can use (Kubernetes' `TCP`, `UDP`,
/// `SCTP`). The discriminant is the IP protocol number.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (6).
    Tcp = 6,
    /// UDP (17).
    Udp = 17,
    /// SCTP (132).
    Sctp = 132,
}

impl Protocol {
    /// The protocol of an IP protocol number, if a service can use it.
    pub fn from_number(number: u8) -> Option<Protocol> {
        match number {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The protocol Kubernetes names `TCP`, `UDP` or `SCTP`.
    pub fn from_name(name: &str) -> Option<Protocol> {
        match name {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The name as Kubernetes and Cilium write it (`TCP`, `UDP`, `SCTP`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// A flow's 5-tuple as it appears in a packet's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
}

impl Tuple {
    /// The tuple of a packet going the other way (addresses and ports swapped).
    pub fn reversed(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            protocol: self.protocol,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_numbers_and_names_round_trip() {
        for p in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            assert_eq!(Protocol::from_number(p.number()), Some(p));
            assert_eq!(Protocol::from_name(p.name()), Some(p));
        }
        assert_eq!(Protocol::from_number(1), None);
        assert_eq!(Protocol::from_name("tcp"), None);
    }
}
