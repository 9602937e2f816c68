//! Cilium's BGP control-plane resources (cilium.io/v2 and v2alpha1):
//! `CiliumBGPClusterConfig`, `CiliumBGPPeerConfig`,
//! `CiliumBGPAdvertisement` and `CiliumBGPNodeConfigOverride`, with the
//! defaults Cilium's CRD schema applies.
//!
//! Fields nexthop does not use are accepted and ignored, as the API server
//! would store them; a field of the wrong type or a missing required field
//! is a deserialization error at that field.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr};
use core::str::FromStr;

use serde::Deserialize;

use super::meta::{ObjectMeta, option_from_str};
use super::selector::LabelSelector;
use crate::bgp::wire::{Community, LargeCommunity};

/// `CiliumBGPClusterConfig`: which nodes run which BGP instances and peers.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ClusterConfig {
    /// The config's name.
    pub metadata: ObjectMeta,
    /// Node selector and instances.
    pub spec: ClusterConfigSpec,
}

/// `CiliumBGPClusterConfig.spec`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfigSpec {
    /// Nodes this config applies to; absent means every node.
    #[serde(default)]
    pub node_selector: Option<LabelSelector>,
    /// The BGP instances each selected node runs.
    pub bgp_instances: Vec<Instance>,
}

/// One `bgpInstances` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// The instance's name.
    pub name: String,
    /// The local AS number.
    #[serde(rename = "localASN")]
    pub local_asn: Option<u32>,
    /// The peers.
    #[serde(default)]
    pub peers: Vec<Peer>,
}

/// One `peers` entry of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    /// The peer's name (shown by `bgp peers`, used in policy names).
    pub name: String,
    /// The peer's AS; absent or 0 accepts whatever AS its OPEN carries.
    #[serde(default, rename = "peerASN")]
    pub peer_asn: Option<u32>,
    /// The peer's address.
    #[serde(default, deserialize_with = "option_from_str")]
    pub peer_address: Option<IpAddr>,
    /// The `CiliumBGPPeerConfig` with this peer's settings.
    #[serde(default)]
    pub peer_config_ref: Option<PeerConfigRef>,
}

/// `peerConfigRef` (v2alpha1 also has `group` and `kind`, ignored).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PeerConfigRef {
    /// The `CiliumBGPPeerConfig`'s name.
    pub name: String,
}

/// `CiliumBGPPeerConfig`: how to talk to a peer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PeerConfig {
    /// The config's name.
    pub metadata: ObjectMeta,
    /// The settings (every field has a default).
    #[serde(default)]
    pub spec: PeerConfigSpec,
}

/// `CiliumBGPPeerConfig.spec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerConfigSpec {
    /// `transport`.
    #[serde(default)]
    pub transport: Transport,
    /// `timers`.
    #[serde(default)]
    pub timers: Timers,
    /// The `Secret` holding the TCP MD5 password.
    #[serde(default)]
    pub auth_secret_ref: Option<String>,
    /// `gracefulRestart`.
    #[serde(default)]
    pub graceful_restart: GracefulRestart,
    /// The IP TTL of eBGP sessions (1 when absent).
    #[serde(default)]
    pub ebgp_multihop: Option<u8>,
    /// Families and the advertisements each carries; absent or empty means
    /// IPv4 and IPv6 unicast with no advertisements.
    #[serde(default)]
    pub families: Vec<FamilyAdvertisements>,
}

/// `transport`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transport {
    /// The peer's TCP port (179 when absent).
    #[serde(default)]
    pub peer_port: Option<u16>,
}

/// `timers`, in seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timers {
    /// Connect-retry (120 when absent).
    #[serde(default)]
    pub connect_retry_time_seconds: Option<u32>,
    /// Hold time (90 when absent).
    #[serde(default)]
    pub hold_time_seconds: Option<u32>,
    /// Keepalive interval (30 when absent).
    #[serde(default)]
    pub keep_alive_time_seconds: Option<u32>,
}

/// `gracefulRestart`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GracefulRestart {
    /// Whether graceful restart is negotiated.
    #[serde(default)]
    pub enabled: bool,
    /// The restart time announced (120 when absent).
    #[serde(default)]
    pub restart_time_seconds: Option<u16>,
}

/// One `families` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FamilyAdvertisements {
    /// `ipv4` or `ipv6`.
    pub afi: Afi,
    /// `unicast` (`multicast` is accepted and never advertised).
    pub safi: Safi,
    /// Selects `CiliumBGPAdvertisement`s by label; absent selects none.
    #[serde(default)]
    pub advertisements: Option<LabelSelector>,
}

/// An address family as Cilium spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Afi {
    /// `ipv4`.
    Ipv4,
    /// `ipv6`.
    Ipv6,
}

/// A subsequent address family as Cilium spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Safi {
    /// `unicast`.
    Unicast,
    /// `multicast`.
    Multicast,
}

impl Afi {
    /// Whether `ip` belongs to this family.
    pub fn contains(self, ip: IpAddr) -> bool {
        matches!(
            (self, ip),
            (Afi::Ipv4, IpAddr::V4(_)) | (Afi::Ipv6, IpAddr::V6(_))
        )
    }
}

impl fmt::Display for Afi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Afi::Ipv4 => "ipv4",
            Afi::Ipv6 => "ipv6",
        })
    }
}

impl fmt::Display for Safi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Safi::Unicast => "unicast",
            Safi::Multicast => "multicast",
        })
    }
}

/// `CiliumBGPNodeConfigOverride`: per-node settings of the instances a
/// cluster config gives the node named like the object.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct NodeConfigOverride {
    /// Its name: the node's.
    pub metadata: ObjectMeta,
    /// The overrides.
    pub spec: NodeConfigOverrideSpec,
}

/// `CiliumBGPNodeConfigOverride.spec`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfigOverrideSpec {
    /// Per instance, by name.
    #[serde(default)]
    pub bgp_instances: Vec<InstanceOverride>,
}

/// One instance's overrides.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceOverride {
    /// The instance it applies to.
    pub name: String,
    /// The BGP identifier, instead of the node's InternalIP.
    #[serde(default, rename = "routerID", deserialize_with = "option_from_str")]
    pub router_id: Option<Ipv4Addr>,
    /// The port the instance listens on.
    #[serde(default)]
    pub local_port: Option<u16>,
    /// The local AS, instead of the cluster config's.
    #[serde(default, rename = "localASN")]
    pub local_asn: Option<u32>,
    /// Per peer, by name.
    #[serde(default)]
    pub peers: Vec<PeerOverride>,
}

/// One peer's overrides.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerOverride {
    /// The peer it applies to.
    pub name: String,
    /// The source address of the session.
    #[serde(default, deserialize_with = "option_from_str")]
    pub local_address: Option<IpAddr>,
}

/// `CiliumBGPAdvertisement`: what to announce.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Advertisement {
    /// Name and the labels peer-config families select by.
    pub metadata: ObjectMeta,
    /// The advertisements.
    pub spec: AdvertisementSpec,
}

/// `CiliumBGPAdvertisement.spec`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct AdvertisementSpec {
    /// The entries.
    pub advertisements: Vec<AdvertisementEntry>,
}

/// One `advertisements` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdvertisementEntry {
    /// What kind of prefixes.
    pub advertisement_type: AdvertisementType,
    /// Which service addresses, for `Service`.
    #[serde(default)]
    pub service: Option<ServiceAddresses>,
    /// Which objects (services, pools); absent selects none.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    /// Path attributes attached to these prefixes.
    #[serde(default)]
    pub attributes: Attributes,
}

/// `advertisementType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum AdvertisementType {
    /// The node's pod CIDRs.
    PodCIDR,
    /// Service addresses.
    Service,
    /// Multi-pool IPAM pools (nexthop has no multi-pool IPAM).
    CiliumPodIPPool,
    /// Interface addresses (cilium.io/v2; not modelled).
    Interface,
}

/// `service`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ServiceAddresses {
    /// Which addresses of a selected service.
    pub addresses: Vec<ServiceAddressType>,
}

/// One `service.addresses` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum ServiceAddressType {
    /// `status.loadBalancer.ingress[].ip`.
    LoadBalancerIP,
    /// `spec.clusterIP(s)`.
    ClusterIP,
    /// `spec.externalIPs`.
    ExternalIP,
}

impl fmt::Display for ServiceAddressType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceAddressType::LoadBalancerIP => "LoadBalancerIP",
            ServiceAddressType::ClusterIP => "ClusterIP",
            ServiceAddressType::ExternalIP => "ExternalIP",
        })
    }
}

/// `attributes`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attributes {
    /// `communities`.
    #[serde(default)]
    pub communities: Communities,
    /// LOCAL_PREF (sent to iBGP peers only).
    #[serde(default)]
    pub local_preference: Option<u32>,
}

/// `communities`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Communities {
    /// `"AS:value"` or a decimal 32-bit value.
    #[serde(default)]
    pub standard: Vec<StandardCommunity>,
    /// `no-export`, `no-advertise`, `no-export-subconfed`, `no-peer`, ...
    #[serde(default)]
    pub well_known: Vec<WellKnownCommunity>,
    /// `"global:local1:local2"`.
    #[serde(default)]
    pub large: Vec<Large>,
}

/// A standard community written as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct StandardCommunity(pub Community);

/// A well-known community name (RFC 1997, RFC 3765, RFC 7999, RFC 8326).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct WellKnownCommunity(pub Community);

/// A large community written as text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Large(pub LargeCommunity);

impl TryFrom<String> for StandardCommunity {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bad = || alloc::format!("{text:?} is not a community (AS:value or a 32-bit number)");
        match text.split_once(':') {
            Some((asn, value)) => {
                let asn = u16::from_str(asn).map_err(|_| bad())?;
                let value = u16::from_str(value).map_err(|_| bad())?;
                Ok(StandardCommunity(Community::new(asn, value)))
            }
            None => u32::from_str(&text)
                .map(|v| StandardCommunity(Community(v)))
                .map_err(|_| bad()),
        }
    }
}

impl TryFrom<String> for WellKnownCommunity {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let value = match text.as_str() {
            "internet" => 0,
            "planned-shut" => 0xffff_0000,
            "accept-own" => 0xffff_0001,
            "route-filter-translated-v4" => 0xffff_0002,
            "route-filter-v4" => 0xffff_0003,
            "route-filter-translated-v6" => 0xffff_0004,
            "route-filter-v6" => 0xffff_0005,
            "llgr-stale" => 0xffff_0006,
            "no-llgr" => 0xffff_0007,
            "blackhole" => 0xffff_029a,
            "no-export" => Community::NO_EXPORT.0,
            "no-advertise" => Community::NO_ADVERTISE.0,
            "no-export-subconfed" => Community::NO_EXPORT_SUBCONFED.0,
            "no-peer" => 0xffff_ff04,
            _ => {
                return Err(alloc::format!(
                    "{text:?} is not a well-known community name"
                ));
            }
        };
        Ok(WellKnownCommunity(Community(value)))
    }
}

impl TryFrom<String> for Large {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let mut parts = text.split(':').map(u32::from_str);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(g)), Some(Ok(l1)), Some(Ok(l2)), None) => Ok(Large(LargeCommunity {
                global_admin: g,
                local_data_1: l1,
                local_data_2: l2,
            })),
            _ => Err(alloc::format!(
                "{text:?} is not a large community (global:local1:local2)"
            )),
        }
    }
}
