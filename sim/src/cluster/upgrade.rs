//! Changing Cilium's values mid-run: `helm upgrade --set` stages new values,
//! `rollout restart ds/cilium` restarts every agent with them.
//!
//! Owns what a restarted agent redoes on its node: the routes it installs
//! (the old mode's go, the new mode's come), its tunnel endpoint (up or
//! down) and its service datapath's settings. What stays as it was: pods and
//! their interfaces (the CNI plugin sets their MTU when it creates them, so
//! a pod started before a switch to tunnel mode keeps 1500 until it is
//! recreated), connection tracking while the service datapath's settings
//! stay the same (Cilium's maps are pinned and outlive the agent; a changed
//! setting, such as the SNAT address of a switch to tunnel mode, starts the
//! node's table afresh), BGP sessions and L2 announcements (their keys
//! cannot change mid-run, [`crate::lab::values::UPGRADABLE`]).

use router_core::datapath::TunnelConfig;

use super::{Cluster, Role, underlay_ip};
use crate::lab::values::RoutingMode;

impl Cluster {
    /// `helm upgrade cilium --reuse-values --set KEY=VALUE …`: the new
    /// values wait for the agents' restart.
    pub fn helm_upgrade(&mut self, sets: &[(String, String)]) -> Result<(), String> {
        let base = self.pending_values.as_ref().unwrap_or(&self.lab.values);
        self.pending_values = Some(base.upgrade(sets)?);
        Ok(())
    }

    /// `kubectl rollout restart -n kube-system ds/cilium`: every agent
    /// starts again with the values of the last `helm upgrade`.
    pub fn restart_agents(&mut self) -> Result<(), String> {
        let Some(next) = self.pending_values.take() else {
            return Ok(());
        };
        let old = std::mem::replace(&mut self.lab.values, next);
        self.remove_agent_routes(&old);
        self.install_agent_routes();
        let tunnel_routing = self.lab.values.routing_mode == RoutingMode::Tunnel;
        let lb_mode = self.lab.values.services.mode;
        let nodes: Vec<_> = self.hosts.values().copied().collect();
        for id in nodes {
            let h = self.engine.node_mut(id);
            if h.role != Role::K8sNode {
                continue;
            }
            let tunnel = underlay_ip(&h.host)
                .and_then(|local| TunnelConfig::for_node(local, tunnel_routing, lb_mode));
            h.host.set_tunnel(tunnel);
            self.engine.wake_node(id);
        }
        self.settle()
    }
}

impl Cluster {
    /// The `Routing` and `Masquerading` lines of `cilium status` on `node`:
    /// what its agent runs with now.
    pub fn cilium_status(&self, node: &str) -> Result<Vec<String>, String> {
        let device = self.kube_proxy_replacement(node)?.direct_routing;
        let v = &self.lab.values;
        let network = match v.routing_mode {
            RoutingMode::Native => "Native".to_string(),
            RoutingMode::Tunnel => format!("Tunnel [{}]", v.config_view_value("tunnel-protocol")),
        };
        let masquerading = match (v.enable_ipv4_masquerade, v.bpf.masquerade) {
            (false, _) => "Disabled".to_string(),
            (true, false) => "IPTables [IPv4: Enabled, IPv6: Disabled]".to_string(),
            (true, true) => {
                let mut line = format!("BPF   [{}]", device.unwrap_or_default());
                if let Some(cidr) = v.ipv4_native_routing_cidr {
                    line.push_str(&format!("   {cidr}"));
                }
                line + " [IPv4: Enabled, IPv6: Disabled]"
            }
        };
        Ok(vec![
            format!("{:<25}Network: {network}   Host: BPF", "Routing:"),
            format!("{:<25}{masquerading}", "Masquerading:"),
        ])
    }
}
