//! What two OPENs agree on: hold and keepalive times (RFC 4271 §4.2,
//! §10), address families (RFC 4760 §8), 4-octet AS numbers (RFC 6793 §3),
//! route refresh (RFC 2918), extended next hop (RFC 8950 §3) and the peer's
//! graceful restart capability (RFC 4724 §3, RFC 8538 §2).
//!
//! Owns the OPEN this speaker sends and the comparison with the peer's. It
//! does not check the peer's AS or identifier against configuration: the
//! session does that before negotiating.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::net::Ipv4Addr;

use super::Config;
use crate::bgp::wire::{
    Afi, Capability, DecodeContext, ExtendedNextHop, Family, GracefulRestart,
    GracefulRestartFamily, Open,
};

/// Cisco's pre-standard route refresh capability code, still sent by FRR.
const ROUTE_REFRESH_OLD: u8 = 128;

/// The OPEN this speaker sends for `config`.
pub(super) fn local_open(config: &Config) -> Open {
    let mut caps: Vec<Capability> = config
        .families
        .iter()
        .map(|&f| Capability::Multiprotocol(f))
        .collect();
    caps.push(Capability::RouteRefresh);
    caps.push(Capability::FourOctetAs(config.local_as));
    if config.extended_next_hop {
        caps.push(Capability::ExtendedNextHop(alloc::vec![ExtendedNextHop {
            nlri: Family::IPV4_UNICAST,
            next_hop_afi: Afi::Ipv6,
        }]));
    }
    if let Some(gr) = &config.graceful_restart {
        caps.push(Capability::GracefulRestart(GracefulRestart {
            restarting: gr.restarting,
            notification: gr.notification,
            restart_time: gr.restart_time,
            families: config
                .families
                .iter()
                .map(|&family| GracefulRestartFamily {
                    family,
                    forwarding_preserved: gr.forwarding_preserved,
                })
                .collect(),
        }));
    }
    Open::new(config.local_as, config.hold_time, config.router_id, caps)
}

fn graceful_restart(open: &Open) -> Option<&GracefulRestart> {
    open.capabilities.iter().find_map(|c| match c {
        Capability::GracefulRestart(gr) => Some(gr),
        _ => None,
    })
}

fn families(open: &Open) -> BTreeSet<Family> {
    let announced: BTreeSet<Family> = open
        .capabilities
        .iter()
        .filter_map(|c| match c {
            Capability::Multiprotocol(f) => Some(*f),
            _ => None,
        })
        .collect();
    if announced.is_empty() {
        // RFC 4760 §8: a speaker without the capability does IPv4 unicast.
        [Family::IPV4_UNICAST].into()
    } else {
        announced
    }
}

fn extended_next_hop(open: &Open) -> BTreeSet<ExtendedNextHop> {
    open.capabilities
        .iter()
        .filter_map(|c| match c {
            Capability::ExtendedNextHop(e) => Some(e.iter().copied()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// What the session runs with once the peer's OPEN is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's AS (from the 4-octet AS capability when present).
    pub peer_as: u32,
    /// The peer's BGP Identifier.
    pub peer_id: Ipv4Addr,
    /// Hold time in seconds: the smaller of both proposals; 0 disables the
    /// hold and keepalive timers.
    pub hold_time: u16,
    /// Keepalive interval in seconds: the configured one or a third of the
    /// hold time, whichever is smaller (0 when the hold time is 0).
    pub keepalive_time: u16,
    /// Families both sides announced.
    pub families: BTreeSet<Family>,
    /// Both sides announced 4-octet AS numbers.
    pub four_octet_as: bool,
    /// The peer accepts ROUTE-REFRESH.
    pub route_refresh: bool,
    /// Families that may carry IPv6 next hops (RFC 8950), announced by both.
    pub extended_next_hop: BTreeSet<Family>,
    /// The peer's graceful restart capability, if it sent one.
    pub peer_graceful_restart: Option<GracefulRestart>,
    /// Both sides set the N bit (RFC 8538): NOTIFICATIONs other than Hard
    /// Reset keep routes too.
    pub notification_restart: bool,
}

impl Negotiated {
    /// Compare the OPEN sent with the OPEN received.
    pub fn new(local: &Open, remote: &Open, keepalive_time: Option<u16>) -> Negotiated {
        let hold_time = local.hold_time.min(remote.hold_time);
        let keepalive_time = match hold_time {
            0 => 0,
            hold => keepalive_time.unwrap_or(hold / 3).min(hold / 3).max(1),
        };
        let four = |o: &Open| {
            o.capabilities
                .iter()
                .any(|c| matches!(c, Capability::FourOctetAs(_)))
        };
        let route_refresh = remote.capabilities.iter().any(|c| {
            matches!(c, Capability::RouteRefresh)
                || matches!(c, Capability::Unknown { code, .. } if *code == ROUTE_REFRESH_OLD)
        });
        let ours = extended_next_hop(local);
        let extended_next_hop = extended_next_hop(remote)
            .intersection(&ours)
            .map(|e| e.nlri)
            .collect();
        let local_gr = graceful_restart(local);
        let peer_graceful_restart = graceful_restart(remote).cloned();
        let notification_restart = local_gr.is_some_and(|g| g.notification)
            && peer_graceful_restart
                .as_ref()
                .is_some_and(|g| g.notification);
        Negotiated {
            peer_as: remote.asn(),
            peer_id: remote.bgp_identifier,
            hold_time,
            keepalive_time,
            families: families(local)
                .intersection(&families(remote))
                .copied()
                .collect(),
            four_octet_as: four(local) && four(remote),
            route_refresh,
            extended_next_hop,
            peer_graceful_restart,
            notification_restart,
        }
    }

    /// The context UPDATEs are encoded and decoded with.
    pub fn decode_context(&self) -> DecodeContext {
        DecodeContext {
            four_octet_as: self.four_octet_as,
            families: self.families.clone(),
            extended_next_hop: self.extended_next_hop.clone(),
        }
    }

    /// Families whose routes the peer asked to be kept across its restarts,
    /// among those negotiated.
    pub fn restart_families(&self) -> BTreeSet<Family> {
        self.peer_graceful_restart
            .iter()
            .flat_map(|gr| gr.families.iter())
            .map(|f| f.family)
            .filter(|f| self.families.contains(f))
            .collect()
    }

    /// Families the peer says it kept forwarding state for (the F bit).
    pub fn forwarding_preserved(&self) -> BTreeSet<Family> {
        self.peer_graceful_restart
            .iter()
            .flat_map(|gr| gr.families.iter())
            .filter(|f| f.forwarding_preserved)
            .map(|f| f.family)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::fsm::{Config, GracefulRestartConfig, PeerAs};
    use crate::bgp::wire::AS_TRANS;
    use alloc::vec;

    fn open(asn: u32, hold: u16, caps: Vec<Capability>) -> Open {
        Open::new(asn, hold, Ipv4Addr::new(10, 0, 0, 2), caps)
    }

    #[test]
    fn local_open_announces_configuration() {
        let mut config = Config::new(4_200_000_001, PeerAs::External, Ipv4Addr::new(1, 1, 1, 1));
        config.families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
        config.extended_next_hop = true;
        config.graceful_restart = Some(GracefulRestartConfig::default());
        let o = local_open(&config);
        assert_eq!(o.my_as, AS_TRANS);
        assert_eq!(o.asn(), 4_200_000_001);
        assert_eq!(o.hold_time, 90);
        let gr = graceful_restart(&o).unwrap();
        assert_eq!(gr.families.len(), 2);
        assert!(gr.notification);
        assert_eq!(families(&o).len(), 2);
    }

    #[test]
    fn hold_keepalive_and_families() {
        let local = open(
            65000,
            90,
            vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::Multiprotocol(Family::IPV6_UNICAST),
                Capability::FourOctetAs(65000),
            ],
        );
        let remote = open(
            65001,
            30,
            vec![Capability::Multiprotocol(Family::IPV6_UNICAST)],
        );
        let n = Negotiated::new(&local, &remote, None);
        assert_eq!((n.hold_time, n.keepalive_time), (30, 10));
        assert_eq!(n.families, [Family::IPV6_UNICAST].into());
        assert!(!n.four_octet_as && !n.route_refresh);
        // Configured keepalive is kept when below hold / 3.
        let n = Negotiated::new(&local, &remote, Some(3));
        assert_eq!(n.keepalive_time, 3);
        // Hold 0 disables keepalives.
        let n = Negotiated::new(&local, &open(65001, 0, vec![]), Some(30));
        assert_eq!((n.hold_time, n.keepalive_time), (0, 0));
        // No MP capability at all means IPv4 unicast.
        assert_eq!(n.families, [Family::IPV4_UNICAST].into());
    }

    #[test]
    fn optional_capabilities() {
        let enh = Capability::ExtendedNextHop(vec![ExtendedNextHop {
            nlri: Family::IPV4_UNICAST,
            next_hop_afi: Afi::Ipv6,
        }]);
        let gr = |n| {
            Capability::GracefulRestart(GracefulRestart {
                restarting: false,
                notification: n,
                restart_time: 120,
                families: vec![GracefulRestartFamily {
                    family: Family::IPV4_UNICAST,
                    forwarding_preserved: true,
                }],
            })
        };
        let local = open(
            65000,
            90,
            vec![enh.clone(), gr(true), Capability::FourOctetAs(65000)],
        );
        let remote = open(
            65001,
            90,
            vec![
                enh,
                gr(false),
                Capability::Unknown {
                    code: 128,
                    value: vec![],
                },
                Capability::FourOctetAs(65001),
            ],
        );
        let n = Negotiated::new(&local, &remote, None);
        assert!(n.route_refresh && n.four_octet_as);
        assert_eq!(n.extended_next_hop, [Family::IPV4_UNICAST].into());
        assert!(!n.notification_restart);
        assert_eq!(n.restart_families(), [Family::IPV4_UNICAST].into());
        assert_eq!(n.forwarding_preserved(), [Family::IPV4_UNICAST].into());
        let ctx = n.decode_context();
        assert!(ctx.four_octet_as && ctx.extended_next_hop.contains(&Family::IPV4_UNICAST));
    }
}
