//! Simulator speed: simulated seconds per wall-clock second and events per second, for each
//! bundled lab under `examples/labs/` and for a generated native-routing cluster of 100 nodes
//! and 1,000 pods. Each figure covers loading the lab files, building the cluster and running
//! the scenario (`x realtime`: simulated seconds per wall second; `events/s`); load, build and
//! run times are also shown apart, with the speed of the run alone (`run x`, `run ev/s`). Prints
//! figures, asserts nothing.
//!
//! Run with `cargo bench -p nexthop-sim --bench sim_speed`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nexthop_sim::cluster::Cluster;
use nexthop_sim::lab::Lab;
use nexthop_sim::run::{self, Report};
use nexthop_sim::{EngineConfig, SimRng};

/// Timed repetitions per bundled lab; the median is shown.
const BUNDLED_RUNS: usize = 5;
/// Timed repetitions of the generated cluster.
const GENERATED_RUNS: usize = 3;

/// The generated cluster: racks of nodes, each rack a subnet behind its own ToR router.
const RACKS: usize = 10;
const NODES_PER_RACK: usize = 10;
/// `webpod` replicas; with one client pod per node, 1,000 pods in all.
const WEB_REPLICAS: usize = 900;
/// Scenario steps of each kind (curl to the service, ping to a pod on a random node).
const CURLS: usize = 20;
const PINGS: usize = 20;

/// One timed load + build + run.
struct Sample {
    load: Duration,
    build: Duration,
    run: Duration,
    report: Report,
}

impl Sample {
    fn total(&self) -> Duration {
        self.load + self.build + self.run
    }
}

fn measure(dir: &Path) -> Sample {
    let start = Instant::now();
    let lab = Lab::load(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let seed = lab.scenario.seed.unwrap_or(1);
    let loaded = Instant::now();
    let mut cluster = Cluster::build(lab, EngineConfig::new(seed))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let built = Instant::now();
    let report = run::run(&mut cluster, seed);
    Sample {
        load: loaded - start,
        build: built - loaded,
        run: built.elapsed(),
        report,
    }
}

/// Times `runs` repetitions after an untimed warm-up and prints the median one as a table row.
fn bench(name: &str, dir: &Path, runs: usize) {
    measure(dir);
    let mut samples: Vec<Sample> = (0..runs).map(|_| measure(dir)).collect();
    samples.sort_by_key(Sample::total);
    let s = &samples[samples.len() / 2];
    let r = &s.report;
    let passed = r.steps.iter().filter(|step| step.passed()).count();
    let total = s.total().as_secs_f64();
    println!(
        "{name:<22} {:>5}/{:<3} {:>9.3} {:>7} {:>8.1} {:>8.1} {:>8.2} {:>10.0} {:>10.0} {:>10.0} {:>10.0}",
        passed,
        r.steps.len(),
        r.virtual_seconds,
        r.events,
        s.load.as_secs_f64() * 1e3,
        s.build.as_secs_f64() * 1e3,
        s.run.as_secs_f64() * 1e3,
        r.virtual_seconds / total,
        r.events as f64 / total,
        r.virtual_seconds / s.run.as_secs_f64(),
        r.events as f64 / s.run.as_secs_f64(),
    );
}

/// Writes the generated cluster's lab files into `dir`.
fn generate(dir: &Path) -> std::io::Result<()> {
    let node = |k: usize| format!("k8s-r{}-n{}", k / NODES_PER_RACK, k % NODES_PER_RACK);
    let node_ip = |k: usize| format!("192.168.{}.{}", k / NODES_PER_RACK, k % NODES_PER_RACK + 1);
    let tor_uplink = |r: usize| format!("10.0.0.{}", r + 1);
    let nodes = RACKS * NODES_PER_RACK;

    let mut topo = String::from(
        "name: generated-100-nodes\ndefaults: { latency: 100us, mtu: 1500 }\nnodes:\n  spine: { kind: bridge }\n",
    );
    for r in 0..RACKS {
        let _ = writeln!(topo, "  rack{r}: {{ kind: bridge }}");
        let _ = writeln!(
            topo,
            "  tor{r}:\n    kind: router\n    interfaces:\n      eth1: {{ ipv4: 192.168.{r}.254/24 }}\n      eth2: {{ ipv4: {}/24 }}\n    routes:",
            tor_uplink(r)
        );
        for s in (0..RACKS).filter(|&s| s != r) {
            let _ = writeln!(
                topo,
                "      - {{ dst: 192.168.{s}.0/24, via: {} }}",
                tor_uplink(s)
            );
        }
        for k in 0..nodes {
            let rack = k / NODES_PER_RACK;
            let via = if rack == r {
                node_ip(k)
            } else {
                tor_uplink(rack)
            };
            let _ = writeln!(topo, "      - {{ dst: 172.20.{k}.0/24, via: {via} }}");
        }
    }
    for k in 0..nodes {
        let tor = format!("192.168.{}.254", k / NODES_PER_RACK);
        let _ = writeln!(
            topo,
            "  {}:\n    kind: k8s-node\n    interfaces:\n      eth1: {{ ipv4: {}/24 }}\n    routes:",
            node(k),
            node_ip(k)
        );
        for dst in ["192.168.0.0/16", "172.20.0.0/16", "10.0.0.0/24"] {
            let _ = writeln!(topo, "      - {{ dst: {dst}, via: {tor} }}");
        }
    }
    topo.push_str("links:\n");
    for r in 0..RACKS {
        let _ = writeln!(topo, "  - endpoints: [\"tor{r}:eth1\", \"rack{r}:p0\"]");
        let _ = writeln!(topo, "  - endpoints: [\"tor{r}:eth2\", \"spine:p{r}\"]");
    }
    for k in 0..nodes {
        let _ = writeln!(
            topo,
            "  - endpoints: [\"{}:eth1\", \"rack{}:p{}\"]",
            node(k),
            k / NODES_PER_RACK,
            k % NODES_PER_RACK + 1
        );
    }

    let values = "ipam:\n  mode: cluster-pool\n  operator:\n    clusterPoolIPv4PodCIDRList: [\"172.20.0.0/16\"]\n\
                  ipv4NativeRoutingCIDR: 172.20.0.0/16\nroutingMode: native\nautoDirectNodeRoutes: true\n";

    // Node objects in order, so node k joins k-th and gets 172.20.k.0/24.
    let mut node_objects = String::new();
    for k in 0..nodes {
        let _ = writeln!(
            node_objects,
            "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {}",
            node(k)
        );
    }
    let mut apps = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: webpod\nspec:\n  replicas: {WEB_REPLICAS}\n  \
         selector:\n    matchLabels:\n      app: webpod\n  template:\n    metadata:\n      labels:\n        \
         app: webpod\n    spec:\n      containers:\n      - name: webpod\n        image: traefik/whoami\n\
         ---\napiVersion: v1\nkind: Service\nmetadata:\n  name: webpod\nspec:\n  selector:\n    app: webpod\n  \
         ports:\n  - port: 80\n"
    );
    for k in 0..nodes {
        let _ = writeln!(
            apps,
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: curl-{k}\n  labels:\n    app: curl\nspec:\n  \
             nodeName: {}\n  containers:\n  - name: curl\n    image: nicolaka/netshoot",
            node(k)
        );
    }

    let mut rng = SimRng::new(1);
    let mut pick = || rng.below(nodes as u64) as usize;
    let mut scenario = String::from("steps:\n  - converge: 1s\n");
    for _ in 0..CURLS {
        let _ = writeln!(
            scenario,
            "  - curl: curl-{} webpod --count 5\n    expect: {{ ok: 5 }}",
            pick()
        );
    }
    for _ in 0..PINGS {
        let (from, to) = (pick(), pick());
        let _ = writeln!(
            scenario,
            "  - ping: curl-{from} webpod@{} --count 2\n    expect: {{ received: 2 }}",
            node(to)
        );
    }

    std::fs::create_dir_all(dir.join("k8s"))?;
    std::fs::write(dir.join("topology.yaml"), topo)?;
    std::fs::write(dir.join("values.yaml"), values)?;
    std::fs::write(dir.join("k8s/00-nodes.yaml"), node_objects)?;
    std::fs::write(dir.join("k8s/10-apps.yaml"), apps)?;
    std::fs::write(dir.join("scenario.yaml"), scenario)
}

fn main() {
    let labs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/labs");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&labs)
        .expect("examples/labs is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("topology.yaml").is_file())
        .collect();
    dirs.sort();

    println!(
        "{:<22} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "lab",
        "steps ok",
        "virtual s",
        "events",
        "load ms",
        "build ms",
        "run ms",
        "x realtime",
        "events/s",
        "run x",
        "run ev/s",
    );
    for dir in &dirs {
        let name = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        bench(&name, dir, BUNDLED_RUNS);
    }

    let generated = std::env::temp_dir().join(format!("nexthop-sim-bench-{}", std::process::id()));
    generate(&generated).expect("the generated lab is written");
    bench("generated 100n/1000p", &generated, GENERATED_RUNS);
    let _ = std::fs::remove_dir_all(&generated);
}
