//! Cilium's `CiliumL2AnnouncementPolicy` (cilium.io/v2alpha1 and v2): which
//! services' addresses which nodes answer ARP and NDP for, on which
//! interfaces. What a node does with the policies is
//! [`super::l2announce`]'s.

use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;

use super::meta::ObjectMeta;
use super::selector::LabelSelector;

/// A `CiliumL2AnnouncementPolicy`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct L2AnnouncementPolicy {
    /// The policy's name (policies are cluster-scoped).
    pub metadata: ObjectMeta,
    /// Selectors, interfaces and address kinds.
    #[serde(default)]
    pub spec: L2AnnouncementPolicySpec,
}

/// `CiliumL2AnnouncementPolicy.spec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L2AnnouncementPolicySpec {
    /// The services announced; absent means every service.
    #[serde(default)]
    pub service_selector: Option<LabelSelector>,
    /// The nodes that may announce; absent means every node.
    #[serde(default)]
    pub node_selector: Option<LabelSelector>,
    /// Regular expressions (Go's syntax, unanchored) over interface names;
    /// empty means every interface.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Announce the services' `spec.externalIPs`.
    #[serde(default, rename = "externalIPs")]
    pub external_ips: bool,
    /// Announce the services' load-balancer ingress addresses.
    #[serde(default, rename = "loadBalancerIPs")]
    pub load_balancer_ips: bool,
}
