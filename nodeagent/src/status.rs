//! The agent's query socket: requests and answers (JSON). The peer and
//! route types are router-core's [`router_core::cilium::status`], shared
//! with the simulator.

use serde::{Deserialize, Serialize};

pub use router_core::cilium::status::*;

/// A query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "query")]
pub enum Request {
    /// Every peer.
    Peers,
    /// Every route of every table.
    Routes,
    /// The node's CiliumBGPNodeConfig status.
    #[serde(rename = "nodeconfig")]
    NodeConfig,
    /// The addresses the node answers ARP for.
    #[serde(rename = "l2-announce")]
    L2Announce,
    /// The node's service table.
    #[serde(rename = "service-list")]
    ServiceList,
    /// The node's flows, selected by `hubble observe`'s flags; with
    /// `--follow`, one more answer for every new flow selected.
    Observe {
        /// The flags, e.g. `["--pod", "curl-pod", "-o", "json"]`.
        flags: Vec<String>,
    },
    /// CNI ADD: set a pod up.
    #[serde(rename = "endpoint-add")]
    EndpointAdd(crate::endpoints::EndpointRequest),
    /// CNI DEL: tear a pod down.
    #[serde(rename = "endpoint-del")]
    EndpointDel(crate::endpoints::EndpointRequest),
    /// CNI CHECK: whether a pod is set up.
    #[serde(rename = "endpoint-check")]
    EndpointCheck(crate::endpoints::EndpointRequest),
    /// The node's endpoints (`endpoint list`).
    #[serde(rename = "endpoint-list")]
    EndpointList,
    /// CNI STATUS: whether pods can be added.
    #[serde(rename = "cni-status")]
    CniStatus,
    /// The agent's health, as `cilium status` reports it.
    Status {
        /// `OK`, or the parts that are not.
        brief: bool,
        /// With the KubeProxyReplacement details.
        verbose: bool,
    },
}

/// One row of `l2-announce`: an address led, on an interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct L2AnnounceEntry {
    /// The address.
    pub ip: std::net::IpAddr,
    /// The interface it is answered on.
    pub interface: String,
}

/// The answer to a query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// For [`Request::Peers`].
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
    /// For [`Request::Routes`].
    #[serde(default)]
    pub routes: Vec<RouteStatus>,
    /// For [`Request::NodeConfig`].
    #[serde(default)]
    pub node_config: Option<NodeConfigStatus>,
    /// For [`Request::L2Announce`].
    #[serde(default)]
    pub l2_announce: Vec<L2AnnounceEntry>,
    /// For [`Request::ServiceList`].
    #[serde(default)]
    pub services: Vec<router_core::cilium::table::ServiceRow>,
    /// For [`Request::Observe`]: flows, printed as the flags asked.
    #[serde(default)]
    pub flows: Vec<String>,
    /// For [`Request::EndpointAdd`] and [`Request::EndpointCheck`]: the pod's endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<crate::endpoints::Endpoint>,
    /// For [`Request::EndpointList`].
    #[serde(default)]
    pub endpoints: Vec<router_core::cilium::table::EndpointRow>,
    /// For [`Request::Status`]: the report's lines.
    #[serde(default)]
    pub status: Vec<String>,
    /// For [`Request::Status`]: whether every part is OK.
    #[serde(default)]
    pub healthy: bool,
    /// Why a CNI request failed, with the specification's code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni_error: Option<crate::cni::CniError>,
    /// Why the request was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json() {
        assert_eq!(
            serde_json::to_string(&Request::Peers).unwrap(),
            r#"{"query":"peers"}"#
        );
        let r: Request = serde_json::from_str(r#"{"query":"routes"}"#).unwrap();
        assert_eq!(r, Request::Routes);
        let observe = Request::Observe {
            flags: vec!["--last".into(), "5".into()],
        };
        assert_eq!(
            serde_json::to_string(&observe).unwrap(),
            r#"{"query":"observe","flags":["--last","5"]}"#
        );
    }
}
