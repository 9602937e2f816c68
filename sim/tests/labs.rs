//! The bundled labs under `examples/labs/` pass their expectations for
//! every seed, run the same twice, change their random choices with the
//! seed, and write pcap files that tshark decodes.

use std::path::{Path, PathBuf};
use std::process::Command;

use nexthop_sim::EngineConfig;
use nexthop_sim::cluster::Cluster;
use nexthop_sim::lab::Lab;
use nexthop_sim::run::{self, Report};

fn labs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/labs");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("examples/labs exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.join("topology.yaml").exists())
        .collect();
    dirs.sort();
    dirs
}

fn run_lab(dir: &Path, seed: u64, pcap: Option<PathBuf>) -> Report {
    let lab = Lab::load(dir).unwrap_or_else(|e| panic!("{e}"));
    let config = EngineConfig {
        pcap_dir: pcap,
        ..EngineConfig::new(seed)
    };
    let mut cluster =
        Cluster::build(lab, config).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let report = run::run(&mut cluster, seed);
    cluster.engine.flush_captures().expect("captures written");
    report
}

#[test]
fn every_bundled_lab_passes_and_is_deterministic() {
    let dirs = labs();
    assert!(dirs.len() >= 3, "bundled labs: {dirs:?}");
    for dir in dirs {
        let first = run_lab(&dir, 1, None);
        assert!(
            first.passed(),
            "{} failed:\n{}",
            dir.display(),
            first.render()
        );
        let second = run_lab(&dir, 1, None);
        assert_eq!(
            first,
            second,
            "{} differs between two runs with seed 1",
            dir.display()
        );
    }
}

/// Who answered the curl steps: the lines naming backends and failures.
fn curl_lines(report: &Report) -> Vec<String> {
    report
        .steps
        .iter()
        .flat_map(|s| s.output.iter())
        .filter(|l| l.contains("Hostname:") || l.contains("failed:"))
        .cloned()
        .collect()
}

#[test]
fn another_seed_makes_other_random_choices() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/labs/native-routing-no-adr");
    let a = run_lab(&dir, 1, None);
    let b = run_lab(&dir, 2, None);
    assert_ne!(a.trace_hash, b.trace_hash);
    assert_ne!(
        curl_lines(&a),
        curl_lines(&b),
        "backend choices (and pod names) follow the seed"
    );
    assert!(a.passed() && b.passed());
}

#[test]
fn pcap_files_decode_in_tshark() {
    if Command::new("tshark").arg("--version").output().is_err() {
        nexthop_testkit::skip("tshark is not installed (scripts/test-all.sh installs it)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("nexthop-sim-pcap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/labs/native-routing-static");
    let report = run_lab(&lab, 1, Some(dir.clone()));
    assert!(report.passed());
    let mut decoded = 0;
    for entry in std::fs::read_dir(&dir).expect("pcap dir") {
        let path = entry.expect("entry").path();
        let out = Command::new("tshark")
            .arg("-n")
            .arg("-r")
            .arg(&path)
            .output()
            .expect("tshark runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "tshark failed on {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("Malformed"), "{}:\n{text}", path.display());
        decoded += text.lines().count();
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
    assert!(decoded > 100, "only {decoded} frames decoded");
}

#[test]
fn pod_cidrs_follow_node_join_order() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/labs/native-routing");
    let report = run_lab(&dir, 1, None);
    let nodes = &report.steps[1].output;
    assert!(nodes[0].starts_with("NAME"), "{nodes:?}");
    for (node, ip, cidr) in [
        ("k8s-ctr", "192.168.10.100", "172.20.0.0/24"),
        ("k8s-w1", "192.168.10.101", "172.20.1.0/24"),
        ("k8s-w0", "192.168.20.100", "172.20.2.0/24"),
    ] {
        let line = nodes
            .iter()
            .find(|l| l.starts_with(node))
            .expect("node listed");
        assert!(line.contains(ip) && line.ends_with(cidr), "{line}");
    }
    let pods = &report.steps[2].output;
    assert_eq!(
        pods.len(),
        1 + 4,
        "header, curl-pod and three webpods: {pods:?}"
    );
}

/// Seeds every bundled lab is run with by
/// [`every_bundled_lab_holds_for_every_seed`].
const SEEDS: u64 = 50;

/// Every bundled lab's expectations are properties of the network, not of
/// one seed's random choices (which node wins an election, which backends
/// the flows pick, pod names and placement, message counters): each lab
/// passes for seeds 0 to 49. The labs run side by side, one thread each.
#[test]
fn every_bundled_lab_holds_for_every_seed() {
    std::thread::scope(|scope| {
        for dir in labs() {
            scope.spawn(move || {
                for seed in 0..SEEDS {
                    let report = run_lab(&dir, seed, None);
                    assert!(
                        report.passed(),
                        "{}, seed {seed}:\n{}",
                        dir.display(),
                        report.render()
                    );
                }
            });
        }
    });
}

/// Every bundled lab's full report (every step's output, the checks, the
/// trace hash) at the seed `nexthop-sim run` uses is checked in as
/// `report.golden` beside the lab, so a change in behaviour shows up as a
/// reviewable diff. `NEXTHOP_BLESS=1` rewrites them.
#[test]
fn reports_match_their_golden_files() {
    let bless = std::env::var_os("NEXTHOP_BLESS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for dir in labs() {
        let lab = Lab::load(&dir).unwrap_or_else(|e| panic!("{e}"));
        let seed = lab.scenario.seed.unwrap_or(1);
        let report = run_lab(&dir, seed, None).render();
        let golden = dir.join("report.golden");
        if bless {
            std::fs::write(&golden, &report).expect("golden written");
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if want != report {
            let first = want
                .lines()
                .zip(report.lines())
                .position(|(w, h)| w != h)
                .unwrap_or(want.lines().count().min(report.lines().count()));
            stale.push(format!(
                "{}: line {}:\n  golden: {:?}\n  now:    {:?}",
                golden.display(),
                first + 1,
                want.lines().nth(first).unwrap_or("(end)"),
                report.lines().nth(first).unwrap_or("(end)")
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "reports differ from their golden files (review, then rewrite with NEXTHOP_BLESS=1):\n{}",
        stale.join("\n")
    );
}

/// The seed 002 lab switches native → VXLAN → Geneve mid-run: on the
/// underlay between the nodes UDP 8472 frames carry VXLAN, then UDP 6081
/// frames carry Geneve, each with the source pod's security identity as VNI.
#[test]
fn seed_002_goes_from_native_to_vxlan_to_geneve_on_the_wire() {
    if Command::new("tshark").arg("--version").output().is_err() {
        nexthop_testkit::skip("tshark is not installed (scripts/test-all.sh installs it)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("nexthop-sim-seed-002-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/labs/seed-002");
    let report = run_lab(&lab, 1, Some(dir.clone()));
    assert!(report.passed(), "{}", report.render());
    let out = Command::new("tshark")
        .args(["-n", "-d", "udp.port==8472,vxlan", "-r"])
        .arg(dir.join("upper.pcap"))
        .args(["-Y", "vxlan || geneve", "-T", "fields"])
        .args(["-e", "frame.number", "-e", "udp.dstport"])
        .args(["-e", "vxlan.vni", "-e", "geneve.vni"])
        .output()
        .expect("tshark runs");
    std::fs::remove_dir_all(&dir).expect("clean up");
    let text = String::from_utf8_lossy(&out.stdout);
    let frames: Vec<(u64, u16, u32)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let vni = match f[1] {
                "8472" => f[2].parse().expect("a VXLAN VNI"),
                _ => u32::from_str_radix(f[3].trim_start_matches("0x"), 16).expect("a Geneve VNI"),
            };
            (
                f[0].parse().expect("frame"),
                f[1].parse().expect("port"),
                vni,
            )
        })
        .collect();
    let vxlan: Vec<_> = frames.iter().filter(|f| f.1 == 8472).collect();
    let geneve: Vec<_> = frames.iter().filter(|f| f.1 == 6081).collect();
    assert!(vxlan.len() > 10 && geneve.len() > 10, "{text}");
    assert_eq!(vxlan.len() + geneve.len(), frames.len(), "{text}");
    assert!(
        vxlan.last().unwrap().0 < geneve.first().unwrap().0,
        "VXLAN before Geneve:\n{text}"
    );
    assert!(
        frames.iter().all(|f| f.2 >= 256),
        "VNIs are pods' identities, not reserved ones:\n{text}"
    );
}
