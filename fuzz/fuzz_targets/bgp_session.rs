//! Feed arbitrary bytes, as the peer's side of the TCP stream, to an
//! Established BGP session (router-core's `fsm::Session`, IPv4 and IPv6,
//! 4-octet AS, graceful restart) whose outputs go to a `rib::Rib` with a
//! second Established peer to export to: framing across reads, every
//! message type, RFC 7606 handling, the decision process and export. The
//! first byte sets the read size. Nothing may panic.
//!
//! Run from the workspace root: `cargo +nightly fuzz run bgp_session fuzz/corpus/bgp_session fuzz/seeds/bgp_session -- -max_total_time=60`.
#![no_main]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use router_core::bgp::fsm::{Config, Event, GracefulRestartConfig, Negotiated, PeerAs, Session};
use router_core::bgp::rib::{Output, PeerConfig, PeerId, Rib, RibConfig};
use router_core::bgp::wire::{
    Capability, DecodeContext, Family, GracefulRestart, GracefulRestartFamily, Message, Open,
};
use smoltcp::time::{Duration, Instant};

const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

fn families() -> [Family; 2] {
    [Family::IPV4_UNICAST, Family::IPV6_UNICAST]
}

/// The peer's OPEN and first KEEPALIVE.
fn peer_greeting() -> Vec<u8> {
    let mut capabilities: Vec<Capability> = families()
        .into_iter()
        .map(Capability::Multiprotocol)
        .collect();
    capabilities.push(Capability::RouteRefresh);
    capabilities.push(Capability::FourOctetAs(4_200_000_002));
    capabilities.push(Capability::GracefulRestart(GracefulRestart {
        restarting: false,
        notification: true,
        restart_time: 120,
        families: families()
            .into_iter()
            .map(|family| GracefulRestartFamily {
                family,
                forwarding_preserved: true,
            })
            .collect(),
    }));
    let ctx = DecodeContext::new(true, families());
    let mut bytes = Message::Open(Open::new(4_200_000_002, 90, PEER, capabilities))
        .to_bytes(&ctx)
        .expect("OPEN fits");
    bytes.extend(Message::Keepalive.to_bytes(&ctx).expect("KEEPALIVE fits"));
    bytes
}

struct Harness {
    session: Session,
    rib: Rib,
    peer: PeerId,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        let mut config = Config::new(65001, PeerAs::External, LOCAL);
        config.families = families().to_vec();
        config.graceful_restart = Some(GracefulRestartConfig::default());
        let mut rib_config = RibConfig::new(65001, LOCAL);
        rib_config.maximum_paths = 4;
        let mut rib = Rib::new(rib_config);
        let peer = rib.add_peer(PeerConfig::new(IpAddr::V4(PEER), Some(LOCAL)));
        let other = rib.add_peer(PeerConfig::new(IpAddr::V4(OTHER), Some(LOCAL)));
        rib.peer_up(
            other,
            &Negotiated {
                peer_as: 65003,
                peer_id: OTHER,
                hold_time: 90,
                keepalive_time: 30,
                families: families().into_iter().collect(),
                four_octet_as: true,
                route_refresh: true,
                extended_next_hop: BTreeSet::new(),
                peer_graceful_restart: None,
                notification_restart: false,
            },
        );
        rib.originate("10.244.0.0/24".parse().unwrap(), Default::default());
        let mut h = Harness {
            session: Session::new(config),
            rib,
            peer,
            now: Instant::from_millis(0),
        };
        h.event(Event::ManualStart);
        h.event(Event::Connected);
        h.event(Event::Received(peer_greeting()));
        h
    }

    fn event(&mut self, event: Event) {
        self.now += Duration::from_millis(10);
        for output in self.session.handle(self.now, event) {
            for out in self.rib.apply(self.peer, &output) {
                if let Output::Send { peer, update } = out
                    && peer == self.peer
                {
                    self.session.handle(self.now, Event::SendUpdate(update));
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&read, stream)) = data.split_first() else {
        return;
    };
    let mut h = Harness::new();
    for chunk in stream.chunks(usize::from(read).max(1) * 16) {
        h.event(Event::Received(chunk.to_vec()));
    }
});
