//! The BGP session settings of one desired peer: its `bgp::fsm::Config`
//! (timers, families, graceful restart, TTL, connect-retry jitter seed), the
//! same in the node agent and the simulator. Owns the mapping only; running
//! the session is `bgp::fsm`'s job.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use smoltcp::time::Duration;

use super::bgp::Afi;
use super::desired::DesiredPeer;
use crate::bgp::fsm::{Config, GracefulRestartConfig, PeerAs};
use crate::bgp::wire::Family;
use crate::hash::fnv1a;

/// A stable per-session seed for the connect-retry jitter: FNV-1a of `key`
/// (e.g. node, instance and peer names).
pub fn seed(key: &str) -> u64 {
    fnv1a(key.as_bytes())
}

impl DesiredPeer {
    /// The session settings for this peer of an instance with `local_asn`;
    /// `forwarding_preserved`: the graceful-restart F bit (forwarding survives
    /// our restart). Timer values that do not fit the protocol are an error
    /// naming the peer and the field.
    pub fn session_config(
        &self,
        local_asn: u32,
        router_id: Ipv4Addr,
        forwarding_preserved: bool,
        seed: u64,
    ) -> Result<Config, String> {
        let secs = |v: u32, what: &str| {
            u16::try_from(v).map_err(|_| format!("peer {}: {what} {v} is too large", self.name))
        };
        let peer_as = self.peer_asn.map_or(PeerAs::External, PeerAs::Exact);
        let mut config = Config::new(local_asn, peer_as, router_id);
        config.hold_time = secs(self.timers.hold, "holdTimeSeconds")?;
        config.keepalive_time = Some(secs(self.timers.keepalive, "keepAliveTimeSeconds")?);
        config.connect_retry_time = Duration::from_secs(u64::from(self.timers.connect_retry));
        config.idle_hold_time = config.connect_retry_time.min(config.idle_hold_time);
        let mut families: Vec<Family> = self
            .families
            .iter()
            .map(|f| match f.afi {
                Afi::Ipv4 => Family::IPV4_UNICAST,
                Afi::Ipv6 => Family::IPV6_UNICAST,
            })
            .collect();
        families.sort();
        families.dedup();
        config.families = families;
        config.graceful_restart = self
            .graceful_restart
            .map(|restart_time| GracefulRestartConfig {
                restart_time,
                forwarding_preserved,
                ..GracefulRestartConfig::default()
            });
        config.ttl = if self.peer_asn == Some(local_asn) {
            255
        } else {
            self.ebgp_multihop
        };
        config.seed = seed;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cilium::desired::{DesiredFamily, PeerTimers};
    use alloc::collections::BTreeMap;
    use alloc::string::ToString;
    use alloc::vec;

    fn peer(peer_asn: Option<u32>) -> DesiredPeer {
        DesiredPeer {
            name: "tor".to_string(),
            address: "192.168.10.200".parse().unwrap(),
            port: 179,
            local_address: None,
            peer_asn,
            timers: PeerTimers {
                connect_retry: 2,
                hold: 9,
                keepalive: 3,
            },
            ebgp_multihop: 2,
            graceful_restart: Some(15),
            password: None,
            families: vec![
                DesiredFamily {
                    afi: Afi::Ipv6,
                    safi: super::super::bgp::Safi::Unicast,
                    routes: BTreeMap::new(),
                },
                DesiredFamily {
                    afi: Afi::Ipv4,
                    safi: super::super::bgp::Safi::Unicast,
                    routes: BTreeMap::new(),
                },
            ],
        }
    }

    #[test]
    fn timers_families_restart_and_ttl() {
        let id = Ipv4Addr::new(192, 168, 10, 100);
        let c = peer(Some(65000))
            .session_config(65001, id, true, seed("n/i/tor"))
            .unwrap();
        assert_eq!((c.hold_time, c.keepalive_time), (9, Some(3)));
        assert_eq!(c.connect_retry_time, Duration::from_secs(2));
        assert_eq!(c.families, [Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
        let gr = c.graceful_restart.unwrap();
        assert_eq!((gr.restart_time, gr.forwarding_preserved), (15, true));
        assert_eq!(c.ttl, 2, "eBGP multihop");
        assert_eq!(c.seed, seed("n/i/tor"));
        let ibgp = peer(Some(65001))
            .session_config(65001, id, false, 0)
            .unwrap();
        assert_eq!(ibgp.ttl, 255);
        let mut big = peer(None);
        big.timers.hold = 70_000;
        let e = big.session_config(65001, id, false, 0).unwrap_err();
        assert_eq!(e, "peer tor: holdTimeSeconds 70000 is too large");
    }
}
