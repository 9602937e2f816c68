use super::hubble::{Endpoint, Filter, Json, Observed, compact, identity, rfc3339, timestamp};
use super::*;

use alloc::string::String;
use alloc::vec::Vec;

/// An IPv4 TCP packet's first 40 bytes.
fn tcp_packet(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8) -> Vec<u8> {
    let mut p = alloc::vec![0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[32] = 0x50;
    p[33] = flags;
    p
}

#[test]
fn packets_are_summarised_from_their_headers() {
    let p = tcp_packet(
        [172, 20, 0, 89],
        46490,
        [172, 20, 1, 217],
        80,
        tcp_flags::SYN,
    );
    let packet = Packet::parse(&p).unwrap();
    assert_eq!(packet.src, "172.20.0.89".parse::<IpAddr>().unwrap());
    assert_eq!(
        packet.l4,
        L4::Tcp {
            src: 46490,
            dst: 80,
            flags: tcp_flags::SYN
        }
    );
    // A transport header cut short is still a flow, of an unknown shape.
    assert_eq!(Packet::parse(&p[..30]).unwrap().l4, L4::Other(6));
    // A later fragment carries no transport header.
    let mut frag = p.clone();
    frag[7] = 0x10;
    assert_eq!(Packet::parse(&frag).unwrap().l4, L4::Other(6));
    assert_eq!(Packet::parse(&p[..19]), None);
    assert_eq!(Packet::parse(&[]), None);
    assert_eq!(Packet::parse(&[0x55; 40]), None);
}

#[test]
fn datapath_exits_map_to_hubbles_points_and_verdicts() {
    let seen =
        |from, to, reason, decap| observe(from, to, reason, decap).map(|o| (o.point, o.verdict));
    use Side::*;
    let fwd = |p| Some((Some(p), Verdict::Forwarded));
    assert_eq!(
        seen(Endpoint, Some(Network), Reason::Forwarded, false),
        fwd(Point::ToNetwork)
    );
    assert_eq!(
        seen(Network, Some(Endpoint), Reason::Forwarded, true),
        fwd(Point::ToEndpoint)
    );
    assert_eq!(
        seen(Endpoint, Some(Network), Reason::Encapsulated, false),
        fwd(Point::ToOverlay)
    );
    assert_eq!(
        seen(Endpoint, None, Reason::Local, false),
        fwd(Point::ToStack)
    );
    assert_eq!(
        seen(Endpoint, None, Reason::NoRoute, false),
        Some((None, Verdict::Dropped(DropReason::FibLookupFailed)))
    );
    assert_eq!(
        seen(Network, None, Reason::TtlExceeded, false),
        Some((None, Verdict::Dropped(DropReason::TtlExceeded)))
    );
    // The node's own traffic, link-layer exchanges and packets waiting for
    // their nexthop make no event.
    assert_eq!(seen(Host, Some(Network), Reason::Forwarded, false), None);
    assert_eq!(seen(Host, None, Reason::NoRoute, false), None);
    assert_eq!(seen(Network, None, Reason::Local, false), None);
    assert_eq!(seen(Network, None, Reason::ArpReply, false), None);
    assert_eq!(seen(Endpoint, None, Reason::NeighbourMiss, false), None);
}

fn pod(ns: &str, name: &str, id: u32) -> Endpoint {
    Endpoint {
        identity: id,
        namespace: ns.into(),
        pod: name.into(),
        labels: Vec::new(),
    }
}

/// 1970-08-09 05:38:54.615 UTC, the seed's hubble lines' time of day.
const AUG_9: i64 = ((220 * 86_400 + 5 * 3600 + 38 * 60 + 54) * 1_000_000) + 615_000;

fn flow(packet: Vec<u8>, point: Option<Point>, verdict: Verdict, reply: Option<bool>) -> Flow {
    Flow {
        micros: AUG_9,
        observation: Observation { point, verdict },
        packet: Packet::parse(&packet).unwrap(),
        reply,
    }
}

fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_compact_layout_matches_the_seeds_hubble_lines() {
    use tcp_flags::*;
    let curl = pod("default", "curl-pod", 21500);
    let web = pod("default", "webpod-697b545f57-66grn", 17081);
    let request = tcp_packet([172, 20, 0, 89], 46490, [172, 20, 1, 217], 80, ACK | FIN);
    let o = Observed {
        node: "k8s-ctr".into(),
        flow: flow(
            request,
            Some(Point::ToNetwork),
            Verdict::Forwarded,
            Some(false),
        ),
        source: curl.clone(),
        destination: web.clone(),
    };
    assert_eq!(
        normalise(&compact(&o, false)),
        "Aug 9 05:38:54.615: default/curl-pod:46490 (ID:21500) -> default/webpod-697b545f57-66grn:80 (ID:17081) to-network FORWARDED (TCP Flags: ACK, FIN)"
    );
    // A reply is printed from the client's side with `<-`.
    let reply = tcp_packet([172, 20, 1, 217], 80, [172, 20, 0, 89], 46490, SYN | ACK);
    let o = Observed {
        node: "k8s-ctr".into(),
        flow: flow(
            reply,
            Some(Point::ToEndpoint),
            Verdict::Forwarded,
            Some(true),
        ),
        source: web,
        destination: curl.clone(),
    };
    assert_eq!(
        normalise(&compact(&o, true)),
        "Aug 9 05:38:54.615 [k8s-ctr]: default/curl-pod:46490 (ID:21500) <- default/webpod-697b545f57-66grn:80 (ID:17081) to-endpoint FORWARDED (TCP Flags: SYN, ACK)"
    );
    // The socket balancer's events: no source port, direction unknown.
    let connect = tcp_packet([172, 20, 0, 89], 0, [10, 96, 129, 95], 80, 0);
    let o = Observed {
        node: "k8s-ctr".into(),
        flow: flow(connect, Some(Point::PreXlateFwd), Verdict::Traced, None),
        source: curl,
        destination: Endpoint::reserved(identity::WORLD),
    };
    assert_eq!(
        normalise(&compact(&o, false)),
        "Aug 9 05:38:54.615: default/curl-pod (ID:21500) <> 10.96.129.95:80 (world) pre-xlate-fwd TRACED (TCP)"
    );
    // A drop shows its reason in place of the observation point.
    let lost = tcp_packet([172, 20, 0, 89], 40000, [10, 9, 9, 9], 80, SYN);
    let o = Observed {
        node: "k8s-ctr".into(),
        flow: flow(
            lost,
            None,
            Verdict::Dropped(DropReason::FibLookupFailed),
            Some(false),
        ),
        source: pod("default", "curl-pod", 21500),
        destination: Endpoint::reserved(identity::WORLD),
    };
    assert!(
        compact(&o, false)
            .ends_with("-> 10.9.9.9:80 (world) FIB lookup failed DROPPED (TCP Flags: SYN)")
    );
}

#[test]
fn times_print_as_go_stamp_milli_and_rfc3339() {
    assert_eq!(timestamp(0), "Jan  1 00:00:00.000");
    assert_eq!(timestamp(AUG_9), "Aug  9 05:38:54.615");
    assert_eq!(rfc3339(5_123_456), "1970-01-01T00:00:05.123456Z");
    // 2000-03-01, past a leap day.
    assert_eq!(
        rfc3339(951_868_800 * 1_000_000),
        "2000-03-01T00:00:00.000000Z"
    );
}

fn observed(src: Endpoint, dst: Endpoint, packet: Vec<u8>, verdict: Verdict) -> Observed {
    let point = match verdict {
        Verdict::Dropped(_) => None,
        _ => Some(Point::ToNetwork),
    };
    Observed {
        node: "k8s-w1".into(),
        flow: flow(packet, point, verdict, Some(false)),
        source: src,
        destination: dst,
    }
}

#[test]
fn filters_select_like_hubble_observe() {
    let a = observed(
        pod("default", "curl-pod", 300),
        pod("default", "webpod-1", 301),
        tcp_packet([10, 0, 0, 1], 40000, [10, 0, 1, 1], 80, tcp_flags::SYN),
        Verdict::Forwarded,
    );
    let b = observed(
        pod("kube-system", "coredns-1", 302),
        Endpoint::reserved(identity::WORLD),
        tcp_packet([10, 0, 0, 2], 40001, [8, 8, 8, 8], 53, tcp_flags::SYN),
        Verdict::Dropped(DropReason::FibLookupFailed),
    );
    let flows = [a, b];
    // The source pods of the flows selected.
    let pick = |args: &str| -> Vec<String> {
        Filter::parse(args.split_whitespace())
            .unwrap()
            .select(&flows)
            .into_iter()
            .map(|o| o.source.pod.clone())
            .collect()
    };
    assert_eq!(pick("--pod curl-pod"), ["curl-pod"]);
    assert_eq!(pick("--pod webpod"), ["curl-pod"], "a prefix, either side");
    assert!(pick("--from-pod webpod").is_empty());
    assert_eq!(pick("--pod kube-system/coredns"), ["coredns-1"]);
    assert_eq!(pick("--namespace kube-system"), ["coredns-1"]);
    assert_eq!(pick("--verdict DROPPED"), ["coredns-1"]);
    assert_eq!(pick("--type drop"), ["coredns-1"]);
    assert_eq!(pick("--type trace:to-network"), ["curl-pod"]);
    assert_eq!(pick("--to-ip 8.8.8.0/24"), ["coredns-1"]);
    assert_eq!(
        pick("--port 53 --port 80"),
        ["curl-pod", "coredns-1"],
        "one of a family"
    );
    assert!(
        pick("--port 53 --verdict FORWARDED").is_empty(),
        "every family"
    );
    assert_eq!(pick("--protocol tcp --last 1"), ["coredns-1"]);
    assert!(pick("--node-name=k8s-w1 --protocol udp").is_empty());
    let json = Filter::parse(["-o", "json"]).unwrap();
    assert_eq!(json.output, hubble::Output::Json);
    for (args, error) in [
        ("--port http", "--port: \"http\" is not a port"),
        (
            "--verdict maybe",
            "--verdict: \"maybe\" is not FORWARDED, DROPPED, TRANSLATED or TRACED",
        ),
        (
            "--type trace:sideways",
            "--type: \"trace:sideways\" is not trace:POINT with a known observation point",
        ),
        ("--colour", "--colour: needs a value"),
        ("--colour red", "unknown flag --colour"),
        ("--pod", "--pod: needs a value"),
    ] {
        assert_eq!(
            Filter::parse(args.split_whitespace()).unwrap_err().0,
            error,
            "{args}"
        );
    }
}

#[cfg(feature = "serde")]
#[test]
fn json_records_carry_hubbles_field_names() {
    let o = observed(
        pod("default", "curl-pod", 300),
        Endpoint::reserved(identity::WORLD),
        tcp_packet([10, 0, 0, 1], 40000, [8, 8, 8, 8], 80, tcp_flags::SYN),
        Verdict::Dropped(DropReason::FibLookupFailed),
    );
    let json = serde_json::to_value(Json::of(&o)).unwrap();
    let f = &json["flow"];
    assert_eq!(f["verdict"], "DROPPED");
    assert_eq!(f["drop_reason"], 169);
    assert_eq!(f["drop_reason_desc"], "FIB_LOOKUP_FAILED");
    assert_eq!(f["IP"]["destination"], "8.8.8.8");
    assert_eq!(f["l4"]["TCP"]["destination_port"], 80);
    assert_eq!(f["l4"]["TCP"]["flags"]["SYN"], true);
    assert_eq!(f["source"]["pod_name"], "curl-pod");
    assert_eq!(f["destination"]["labels"][0], "reserved:world");
    assert_eq!(f["Summary"], "TCP Flags: SYN");
    assert_eq!(json["node_name"], "k8s-w1");
    assert_eq!(json["time"], "1970-08-09T05:38:54.615000Z");
}
