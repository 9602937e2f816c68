//! FRR's `bgpd` on a simulated router: `router bgp` from an [`FrrConfig`]
//! run by the host's BGP speaker (router-core's sessions and RIB).
//!
//! Owns the translation of FRR's settings and defaults ("frr defaults
//! traditional": keepalive 60 s, hold 180 s, graceful restart time 120 s,
//! IPv4 unicast activated) into session, RIB and peer settings, and FRR's
//! import check for `network` statements (originated only while the FIB
//! holds a non-BGP route for exactly that prefix). Learned routes go into
//! the router's FIB at distance 20 (eBGP) with up to `maximum-paths` next
//! hops, which its datapath spreads by `multipath-hash-policy`.
//!
//! The router only accepts connections (port 179) and never dials: the
//! labs' peers (Cilium nodes) are the active side, as in the seed, so no
//! connection collision arises. TCP MD5 (`password`) is not simulated and
//! is refused with the neighbor named.

use std::net::{IpAddr, Ipv4Addr};

use nexthop_netstack::Host;
use nexthop_netstack::apps::bgp::BGP_PORT;
use router_core::bgp::fsm::{Config, GracefulRestartConfig, PeerAs};
use router_core::bgp::rib::policy::{Action, Policy};
use router_core::bgp::rib::{PeerConfig, RibConfig};
use router_core::bgp::speaker::{Input, PeerSpec, Transport};
use router_core::bgp::wire::{Family as BgpFamily, PathAttributes};
use router_core::fib::Protocol;
use router_core::hash::fnv1a;
use smoltcp::time::Instant;

use super::config::{BgpConfig, Family, FrrConfig, RemoteAs};

/// FRR's default keepalive and hold times ("frr defaults traditional").
const KEEPALIVE: u16 = 60;
const HOLD: u16 = 180;
/// FRR's weight of locally originated routes.
pub const LOCAL_WEIGHT: u32 = 32768;

/// The router ID bgpd uses: the configured one, else the highest IPv4
/// address of the router (zebra's choice when no loopback is preferred).
pub fn router_id(host: &Host, bgp: &BgpConfig) -> Ipv4Addr {
    bgp.router_id.unwrap_or_else(|| {
        host.addresses()
            .filter_map(|a| match a {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .max()
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    })
}

/// Whether FRR treats the neighbor as external.
pub fn is_ebgp(bgp: &BgpConfig, remote: RemoteAs) -> bool {
    match remote {
        RemoteAs::External => true,
        RemoteAs::Internal => false,
        RemoteAs::Asn(a) => a != bgp.asn,
    }
}

/// Whether `ebgp-requires-policy` keeps the neighbor's routes out and ours
/// in (no route-maps exist in this subset).
pub fn policy_blocked(bgp: &BgpConfig, remote: RemoteAs) -> bool {
    bgp.ebgp_requires_policy && is_ebgp(bgp, remote)
}

/// Start bgpd on `host` from `config` (`restarted`: again after a restart,
/// announcing graceful restart's R bit): a fresh speaker, every neighbor
/// waiting for its connection, the networks that pass the import check
/// originated. The previous speaker's connections are reset and its routes
/// leave the FIB until the sessions are back. Nothing happens without
/// `router bgp`.
pub fn start(
    host: &mut Host,
    now: Instant,
    config: &FrrConfig,
    restarted: bool,
) -> Result<(), String> {
    let Some(bgp) = &config.bgp else {
        return Ok(());
    };
    let id = router_id(host, bgp);
    let mut rib = RibConfig::new(bgp.asn, id);
    rib.maximum_paths = u8::try_from(bgp.maximum_paths(Family::Ipv4Unicast)).unwrap_or(u8::MAX);
    rib.multipath_relax = bgp.multipath_relax;
    host.bgp_start(now, rib);
    for (addr, _) in &bgp.neighbors {
        let settings = bgp.effective(*addr).expect("a configured neighbor");
        if settings.password.is_some() {
            return Err(format!(
                "neighbor {addr} password: TCP MD5 is not simulated (use the tap bridge with a real FRR)"
            ));
        }
        let remote = settings.remote_as.expect("checked when parsed");
        let peer_as = match remote {
            RemoteAs::External => PeerAs::External,
            RemoteAs::Internal => PeerAs::Exact(bgp.asn),
            RemoteAs::Asn(a) => PeerAs::Exact(a),
        };
        let ebgp = is_ebgp(bgp, remote);
        let mut session = Config::new(bgp.asn, peer_as, id);
        session.passive = true;
        session.hold_time = HOLD;
        session.keepalive_time = Some(KEEPALIVE);
        session.families = vec![BgpFamily::IPV4_UNICAST];
        if settings.activate.contains(&Family::Ipv6Unicast) {
            session.families.push(BgpFamily::IPV6_UNICAST);
        }
        session.graceful_restart = bgp.graceful_restart.then_some(GracefulRestartConfig {
            restarting: restarted,
            ..GracefulRestartConfig::default()
        });
        session.ttl = if ebgp {
            settings.ebgp_multihop.unwrap_or(1)
        } else {
            255
        };
        session.seed = fnv1a(format!("{}/{addr}", host.name()).as_bytes());
        let local_v4 = match host.source_address(*addr) {
            Some(IpAddr::V4(v4)) => Some(v4),
            _ => None,
        };
        let mut peer = PeerConfig::new(*addr, local_v4);
        let blocked = policy_blocked(bgp, remote);
        if blocked {
            peer.export = Policy {
                statements: Vec::new(),
                default: Action::Deny,
            };
        }
        host.bgp_input(
            now,
            Input::AddPeer(Box::new(PeerSpec {
                session,
                rib: peer,
                import: !blocked,
                transport: Transport {
                    port: BGP_PORT,
                    ..Transport::default()
                },
            })),
        );
    }
    for (_, prefix) in &bgp.networks {
        let present = host.fib().routes().any(|r| {
            r.prefix == *prefix && !matches!(r.route.protocol, Protocol::Ebgp | Protocol::Ibgp)
        });
        if present {
            let attributes = PathAttributes {
                med: Some(0),
                ..PathAttributes::default()
            };
            host.bgp_input(now, Input::Originate(*prefix, Box::new(attributes)));
        }
    }
    Ok(())
}
