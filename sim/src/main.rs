//! `nexthop-sim`: run a lab directory on virtual time and check its expectations.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nexthop_sim::EngineConfig;
use nexthop_sim::cluster::Cluster;
use nexthop_sim::lab::Lab;
use nexthop_sim::run::{self, Report};
use nexthop_sim::tap::{self, TapSpec};

#[derive(Parser)]
#[command(
    name = "nexthop-sim",
    version,
    about = "Deterministic simulator for Cilium-style cluster labs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a lab's scenario and check its expectations (exit 1 if one fails).
    Run {
        /// The lab directory (topology.yaml, scenario.yaml, values.yaml, k8s/).
        lab: PathBuf,
        /// Seed for every random choice (default: the scenario's, else 1).
        #[arg(long)]
        seed: Option<u64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Write one pcap file per segment into this directory.
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// Run twice and fail if the report or trace differ.
        #[arg(long)]
        check_determinism: bool,
        /// Attach an unlinked topology interface to a Linux tap device and run in real time
        /// (not deterministic); repeatable.
        #[arg(long, value_name = "HOST:PORT=TAPNAME")]
        tap: Vec<TapSpec>,
    },
    /// Read and check a lab's files without running it.
    Check {
        /// The lab directory.
        lab: PathBuf,
    },
}

fn run_once(
    lab: &Lab,
    seed: u64,
    pcap: Option<PathBuf>,
    taps: &[TapSpec],
) -> Result<Report, String> {
    let config = EngineConfig {
        pcap_dir: pcap,
        ..EngineConfig::new(seed)
    };
    let mut cluster = Cluster::build(lab.clone(), config)?;
    if !taps.is_empty() {
        tap::attach(&mut cluster, taps)?;
        for t in taps {
            eprintln!(
                "tap: {} bridged to {}; running in real time (not deterministic)",
                t.interface_name(),
                t.device
            );
        }
    }
    let report = run::run(&mut cluster, seed);
    cluster.engine.flush_captures().map_err(|e| e.to_string())?;
    Ok(report)
}

/// Load the lab, build it (seed 1) and check its steps without running
/// them: everything `run` would refuse that can be found statically.
fn check(dir: &std::path::Path) -> Result<String, String> {
    let lab = Lab::load(dir).map_err(|e| e.to_string())?;
    let summary = format!(
        "{}: {} nodes, {} links, {} manifests, {} steps",
        dir.display(),
        lab.topology.nodes.len(),
        lab.topology.links.len(),
        lab.manifests.len(),
        lab.scenario.steps.len()
    );
    let cluster = Cluster::build(lab, EngineConfig::new(1))?;
    run::check(&cluster)?;
    Ok(summary)
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { lab } => match check(&lab) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run {
            lab,
            seed,
            json,
            pcap,
            check_determinism,
            tap,
        } => {
            if check_determinism && !tap.is_empty() {
                eprintln!("error: --check-determinism cannot be used with --tap (real time)");
                return ExitCode::from(2);
            }
            if let Some(dir) = pcap.as_ref().filter(|d| d.exists() && !d.is_dir()) {
                eprintln!(
                    "error: --pcap {}: exists and is not a directory (the capture files go into a directory, one per segment)",
                    dir.display()
                );
                return ExitCode::from(2);
            }
            let lab = match Lab::load(&lab) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let seed = seed.or(lab.scenario.seed).unwrap_or(1);
            let report = match run_once(&lab, seed, pcap.clone(), &tap) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e} (seed {seed})");
                    return ExitCode::from(2);
                }
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("reports serialise")
                );
            } else {
                print!("{}", report.render());
            }
            let mut ok = report.passed();
            if check_determinism {
                let pcap_again = pcap.as_ref().map(|p| p.join("second-run"));
                match run_once(&lab, seed, pcap_again.clone(), &[]) {
                    Ok(again)
                        if again == report && same_captures(pcap.as_ref(), pcap_again.as_ref()) =>
                    {
                        println!(
                            "determinism: second run identical (trace hash {})",
                            again.trace_hash
                        );
                    }
                    Ok(again) => {
                        println!(
                            "determinism: FAILED, second run differs (trace hash {} vs {}, seed {seed})",
                            report.trace_hash, again.trace_hash
                        );
                        ok = false;
                    }
                    Err(e) => {
                        eprintln!("error in second run: {e} (seed {seed})");
                        ok = false;
                    }
                }
            }
            if !ok {
                eprintln!("seed {seed}: some expectations failed");
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Whether the pcap files of two runs are byte-identical (true when not capturing).
fn same_captures(first: Option<&PathBuf>, second: Option<&PathBuf>) -> bool {
    let (Some(a), Some(b)) = (first, second) else {
        return true;
    };
    let Ok(entries) = std::fs::read_dir(a) else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "pcap"))
        .all(|e| {
            let other = b.join(e.file_name());
            matches!((std::fs::read(e.path()), std::fs::read(other)), (Ok(x), Ok(y)) if x == y)
        })
}
