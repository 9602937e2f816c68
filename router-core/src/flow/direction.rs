//! Which packets of a connection are replies, as Hubble's `->` and `<-` show.
//!
//! Owns a bounded memory of who opened each connection: a TCP SYN, the first
//! UDP datagram of a pair, an ICMP echo request. Cilium reads the same from
//! its conntrack entry; this table exists for observation only and never
//! changes a verdict. Does not own the datapath's conntrack
//! ([`crate::service::conntrack`]).

use alloc::collections::{BTreeSet, VecDeque};
use core::net::IpAddr;

use super::{Flow, L4, Observation, Packet, tcp_flags};

/// A connection as its opener sent it: protocol, source, destination.
type Key = (u8, IpAddr, u16, IpAddr, u16);

/// Connections' openers, oldest forgotten first beyond a capacity.
#[derive(Clone, Debug)]
pub struct Directions {
    openers: BTreeSet<Key>,
    order: VecDeque<Key>,
    capacity: usize,
}

impl Directions {
    /// Remember at most `capacity` connections.
    pub fn new(capacity: usize) -> Self {
        Directions {
            openers: BTreeSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The flow event of an observation of the IP packet `ip` (its start
    /// is enough), made at `micros`, with its direction; `None` when `ip`
    /// is no IP packet.
    pub fn flow(&mut self, micros: i64, observation: Observation, ip: &[u8]) -> Option<Flow> {
        let packet = Packet::parse(ip)?;
        Some(Flow {
            micros,
            observation,
            packet,
            reply: Some(self.reply(&packet)),
        })
    }

    /// Whether `packet` is a reply of its connection, learning openers as
    /// they are seen. A TCP packet of a connection whose SYN was not seen
    /// counts as a reply when it comes from the lower port (the server's).
    pub fn reply(&mut self, packet: &Packet) -> bool {
        let (proto, sport, dport) = match packet.l4 {
            L4::Tcp { src, dst, flags } => {
                let syn = flags & tcp_flags::SYN != 0;
                let ack = flags & tcp_flags::ACK != 0;
                if syn && !ack {
                    self.learn((6, packet.src, src, packet.dst, dst));
                    return false;
                }
                (6, src, dst)
            }
            L4::Udp { src, dst } => (17, src, dst),
            // Echo replies, and errors about a packet that went the other way.
            L4::Icmp4 { kind, .. } => return kind != 8,
            L4::Icmp6 { kind, .. } => return kind != 128,
            L4::Other(_) => return false,
        };
        let forward = (proto, packet.src, sport, packet.dst, dport);
        let reverse = (proto, packet.dst, dport, packet.src, sport);
        if self.openers.contains(&forward) {
            false
        } else if self.openers.contains(&reverse) {
            true
        } else if proto == 6 {
            sport < dport
        } else {
            self.learn(forward);
            false
        }
    }

    fn learn(&mut self, key: Key) {
        if self.openers.insert(key) {
            self.order.push_back(key);
            if self.order.len() > self.capacity
                && let Some(old) = self.order.pop_front()
            {
                self.openers.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> Packet {
        Packet {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            l4: L4::Tcp {
                src: sport,
                dst: dport,
                flags,
            },
        }
    }

    #[test]
    fn a_connection_opened_by_syn_has_its_server_side_as_replies() {
        use tcp_flags::*;
        let mut d = Directions::new(8);
        assert!(!d.reply(&tcp("10.0.0.1", 40000, "10.0.0.2", 80, SYN)));
        assert!(d.reply(&tcp("10.0.0.2", 80, "10.0.0.1", 40000, SYN | ACK)));
        assert!(!d.reply(&tcp("10.0.0.1", 40000, "10.0.0.2", 80, ACK | PSH)));
        assert!(d.reply(&tcp("10.0.0.2", 80, "10.0.0.1", 40000, ACK | FIN)));
    }

    #[test]
    fn udp_openers_are_learnt_and_forgotten_beyond_capacity() {
        let udp = |src: &str, sport, dst: &str, dport| Packet {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            l4: L4::Udp {
                src: sport,
                dst: dport,
            },
        };
        let mut d = Directions::new(1);
        assert!(!d.reply(&udp("10.0.0.1", 5000, "10.0.0.2", 53)));
        assert!(d.reply(&udp("10.0.0.2", 53, "10.0.0.1", 5000)));
        // A second connection pushes the first out: its reply now looks
        // like an opener.
        assert!(!d.reply(&udp("10.0.0.3", 6000, "10.0.0.2", 53)));
        assert!(!d.reply(&udp("10.0.0.2", 53, "10.0.0.1", 5000)));
    }

    #[test]
    fn unseen_tcp_connections_fall_back_to_the_lower_port_as_server() {
        let mut d = Directions::new(8);
        assert!(d.reply(&tcp("10.0.0.2", 80, "10.0.0.1", 40000, tcp_flags::ACK)));
        assert!(!d.reply(&tcp("10.0.0.1", 40000, "10.0.0.2", 80, tcp_flags::ACK)));
    }
}
