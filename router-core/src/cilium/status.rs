//! What a BGP control plane reports about its peers and routes, as the
//! agent's query socket sends it (JSON) and `bgp peers` / `bgp routes`
//! render it ([`super::table`]); the simulator fills the same types.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::bgp::wire::{NextHop, Origin, PathAttributes};

/// One peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The node's name.
    pub node: String,
    /// The BGP instance.
    pub instance: String,
    /// The peer's name.
    pub name: String,
    /// Our AS.
    pub local_asn: u32,
    /// The peer's AS (configured, else as its OPEN said).
    pub peer_asn: Option<u32>,
    /// The peer's address.
    pub peer_address: IpAddr,
    /// The FSM state, lower case.
    pub state: String,
    /// Seconds since Established.
    pub uptime_secs: Option<u64>,
    /// Per family counts.
    pub families: Vec<FamilyStatus>,
    /// Messages received, by type.
    pub messages_received: MessageCounts,
    /// Messages sent, by type.
    pub messages_sent: MessageCounts,
    /// The last NOTIFICATION, with its direction.
    pub last_notification: Option<String>,
    /// The hold time and keepalive interval negotiated, seconds.
    #[serde(default)]
    pub applied_timers: Option<(u16, u16)>,
}

/// Route counts of one family of a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyStatus {
    /// `ipv4` or `ipv6`.
    pub afi: String,
    /// `unicast`.
    pub safi: String,
    /// Prefixes in the Adj-RIB-In.
    pub received: usize,
    /// Prefixes advertised.
    pub advertised: usize,
}

/// Messages by type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCounts {
    /// OPEN.
    pub open: u64,
    /// UPDATE.
    pub update: u64,
    /// NOTIFICATION.
    pub notification: u64,
    /// KEEPALIVE.
    pub keepalive: u64,
    /// ROUTE-REFRESH.
    pub route_refresh: u64,
}

impl From<&crate::bgp::fsm::MessageCounts> for MessageCounts {
    fn from(c: &crate::bgp::fsm::MessageCounts) -> Self {
        MessageCounts {
            open: c.open,
            update: c.update,
            notification: c.notification,
            keepalive: c.keepalive,
            route_refresh: c.route_refresh,
        }
    }
}

/// What `CiliumBGPNodeConfig.status` holds for one node (the object
/// Cilium's agent writes back, `kubectl get ciliumbgpnodeconfig NODE -o
/// json`): per instance, per peer its state, route counts and applied
/// timers. Empty when `bgpControlPlane.statusReport.enabled` is false.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfigStatus {
    /// The instances, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bgp_instances: Vec<InstanceStatus>,
}

/// The part of a `CiliumBGPNodeConfig` both runtimes print: `{"status":
/// …}`, fields in Cilium's order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfigObject {
    /// The status.
    pub status: NodeConfigStatus,
}

/// One instance in [`NodeConfigStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// The instance's name.
    pub name: String,
    /// Its AS.
    #[serde(rename = "localASN")]
    pub local_asn: u32,
    /// Its peers.
    pub peers: Vec<NodeConfigPeer>,
}

/// One peer in [`InstanceStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfigPeer {
    /// The peer's name.
    pub name: String,
    /// Its address.
    pub peer_address: IpAddr,
    /// Its AS, configured or learnt.
    #[serde(rename = "peerASN", skip_serializing_if = "Option::is_none")]
    pub peer_asn: Option<u32>,
    /// The session state, lower case.
    pub peering_state: String,
    /// Route counts per family.
    pub route_count: Vec<RouteCount>,
    /// The timers in use, once negotiated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timers: Option<AppliedTimers>,
}

/// Route counts of one family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteCount {
    /// `ipv4` or `ipv6`.
    pub afi: String,
    /// `unicast`.
    pub safi: String,
    /// Prefixes advertised.
    pub advertised: usize,
    /// Prefixes received.
    pub received: usize,
}

/// Negotiated timers, seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedTimers {
    /// Hold time.
    pub applied_hold_time_seconds: u16,
    /// Keepalive interval.
    pub applied_keepalive_seconds: u16,
}

impl NodeConfigStatus {
    /// The status of one node's peers (as [`PeerStatus`] rows, instances
    /// in order).
    pub fn of(peers: &[PeerStatus]) -> NodeConfigStatus {
        let mut status = NodeConfigStatus::default();
        for p in peers {
            let peer = NodeConfigPeer {
                name: p.name.clone(),
                peer_address: p.peer_address,
                peer_asn: p.peer_asn,
                peering_state: p.state.clone(),
                route_count: p
                    .families
                    .iter()
                    .map(|f| RouteCount {
                        afi: f.afi.clone(),
                        safi: f.safi.clone(),
                        advertised: f.advertised,
                        received: f.received,
                    })
                    .collect(),
                timers: p.applied_timers.map(|(hold, keepalive)| AppliedTimers {
                    applied_hold_time_seconds: hold,
                    applied_keepalive_seconds: keepalive,
                }),
            };
            match status.bgp_instances.last_mut() {
                Some(i) if i.name == p.instance => i.peers.push(peer),
                _ => status.bgp_instances.push(InstanceStatus {
                    name: p.instance.clone(),
                    local_asn: p.local_asn,
                    peers: alloc::vec![peer],
                }),
            }
        }
        status
    }
}

/// Which table a route is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    /// Originated by this node (the Loc-RIB Cilium shows).
    Available,
    /// Sent to a peer.
    Advertised,
    /// Received from a peer (kept, never installed in the kernel).
    Received,
}

/// One route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// Which table.
    pub table: Table,
    /// The node's name.
    pub node: String,
    /// Our AS (Cilium's "VRouter").
    pub vrouter: u32,
    /// The peer, for advertised and received routes.
    pub peer: Option<IpAddr>,
    /// The prefix.
    pub prefix: IpNet,
    /// The next hop.
    pub next_hop: IpAddr,
    /// Seconds since the route entered the table.
    pub age_secs: u64,
    /// Attributes in Cilium's rendering, e.g. `{Origin: i}`.
    pub attrs: Vec<String>,
    /// Kept from a restarting peer until its End-of-RIB.
    #[serde(default)]
    pub stale: bool,
}

/// The attributes of a path as Cilium's CLI renders them:
/// `{Origin: i} {AsPath: 65001} {Nexthop: 192.168.10.100} ...`.
pub fn render_attributes(attrs: &PathAttributes, next_hop: IpAddr) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(origin) = attrs.origin {
        let o = match origin {
            Origin::Igp => "i",
            Origin::Egp => "e",
            Origin::Incomplete => "?",
        };
        out.push(format!("{{Origin: {o}}}"));
    }
    if let Some(path) = attrs.as_path.as_ref().filter(|p| !p.segments.is_empty()) {
        out.push(format!("{{AsPath: {path}}}"));
    }
    out.push(format!("{{Nexthop: {next_hop}}}"));
    if let Some(med) = attrs.med {
        out.push(format!("{{Med: {med}}}"));
    }
    if let Some(lp) = attrs.local_pref {
        out.push(format!("{{LocalPref: {lp}}}"));
    }
    if !attrs.communities.is_empty() {
        let list: Vec<String> = attrs
            .communities
            .iter()
            .map(|c| format!("{}:{}", c.0 >> 16, c.0 & 0xffff))
            .collect();
        out.push(format!("{{Communities: {}}}", list.join(", ")));
    }
    if !attrs.large_communities.is_empty() {
        let list: Vec<String> = attrs
            .large_communities
            .iter()
            .map(|c| format!("{}:{}:{}", c.global_admin, c.local_data_1, c.local_data_2))
            .collect();
        out.push(format!("{{LargeCommunity: {}}}", list.join(", ")));
    }
    out
}

/// The address of a received next hop (the global one for IPv6).
pub fn next_hop_address(next_hop: &NextHop) -> IpAddr {
    match next_hop {
        NextHop::Ipv4(v4) => IpAddr::V4(*v4),
        NextHop::Ipv6 { global, .. } => IpAddr::V6(*global),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::wire::{AsPath, Community};
    use alloc::vec;

    #[test]
    fn attributes_render_like_cilium() {
        let attrs = PathAttributes {
            origin: Some(Origin::Igp),
            ..PathAttributes::default()
        };
        let nh: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(
            render_attributes(&attrs, nh).join(" "),
            "{Origin: i} {Nexthop: 0.0.0.0}"
        );
        let attrs = PathAttributes {
            origin: Some(Origin::Incomplete),
            as_path: Some(AsPath::sequence(vec![65000, 65010])),
            communities: vec![Community::new(65000, 100)],
            ..PathAttributes::default()
        };
        let nh: IpAddr = "192.168.10.200".parse().unwrap();
        assert_eq!(
            render_attributes(&attrs, nh).join(" "),
            "{Origin: ?} {AsPath: 65000 65010} {Nexthop: 192.168.10.200} {Communities: 65000:100}"
        );
    }
}
