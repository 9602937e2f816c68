//! `nexthop-sim`: run a lab directory on virtual time and check its expectations.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nexthop_sim::EngineConfig;
use nexthop_sim::cluster::Cluster;
use nexthop_sim::explore::{self, FaultKind, Schedule};
use nexthop_sim::lab::{Dur, Lab};
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
        /// Write every flow the nodes observed to this file, one JSON object
        /// per line (`hubble observe -o json`'s layout).
        #[arg(long)]
        flows: Option<PathBuf>,
        /// Write the run as one self-contained HTML page: topology, steps,
        /// routing-table changes, BGP timeline, flows.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Read and check a lab's files without running it.
    Check {
        /// The lab directory.
        lab: PathBuf,
    },
    /// Run a lab many times, each with a random fault schedule, checking
    /// invariants (no loops, convergence back to the fault-free state, the
    /// lab's own expectations once the faults are over); exit 1 on a
    /// violation, printing its seed and shrunk schedule.
    Explore {
        /// The lab directory.
        lab: PathBuf,
        /// Runs.
        #[arg(long, default_value_t = 100)]
        runs: u32,
        /// The campaign's seed (every run's schedule derives from it).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Kinds of faults, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "link,loss,latency,partition,crash,restart,router-restart"
        )]
        faults: Vec<String>,
        /// Most faults per run.
        #[arg(long, default_value_t = 3)]
        max_faults: usize,
        /// Runs in parallel (default: the machine's cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// How long the network is left alone once the faults are over.
        #[arg(long, default_value = "300s")]
        quiet: String,
        /// Replay the run with this seed (printed with a failure) and print
        /// its report.
        #[arg(long)]
        replay: Option<u64>,
        /// With --replay: write one pcap file per segment into this directory.
        #[arg(long, requires = "replay")]
        pcap: Option<PathBuf>,
    },
}

/// Where a run writes besides its report.
#[derive(Default)]
struct Outputs<'a> {
    flows: Option<&'a std::path::Path>,
    html: Option<&'a std::path::Path>,
}

fn run_once(
    lab: &Lab,
    seed: u64,
    pcap: Option<PathBuf>,
    taps: &[TapSpec],
    outputs: Outputs,
) -> Result<Report, String> {
    let flows = outputs.flows;
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
    if flows.is_some() {
        cluster.flows.all = Some(Vec::new());
    }
    let report = match outputs.html {
        Some(path) => {
            let (report, recording) = nexthop_sim::html::run_recorded(&mut cluster, seed);
            let page = nexthop_sim::html::render(&report, &recording);
            std::fs::write(path, page).map_err(|e| format!("--report {}: {e}", path.display()))?;
            report
        }
        None => run::run(&mut cluster, seed),
    };
    cluster.engine.flush_captures().map_err(|e| e.to_string())?;
    if let (Some(path), Some(all)) = (flows, &cluster.flows.all) {
        let mut text = String::new();
        for o in all {
            let json = router_core::flow::hubble::Json::of(o);
            text.push_str(&serde_json::to_string(&json).expect("flows serialise"));
            text.push('\n');
        }
        std::fs::write(path, text).map_err(|e| format!("--flows {}: {e}", path.display()))?;
    }
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

/// `explore`: a campaign, or the replay of one run.
fn explore(command: Command) -> Result<bool, String> {
    let Command::Explore {
        lab,
        runs,
        seed,
        faults,
        max_faults,
        jobs,
        quiet,
        replay,
        pcap,
    } = command
    else {
        unreachable!("called for explore");
    };
    let lab = Lab::load(&lab).map_err(|e| e.to_string())?;
    let faults = (faults.iter())
        .map(|f| FaultKind::parse(f).map_err(|e| format!("--faults: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let quiet = Dur::parse(&quiet).map_err(|e| format!("--quiet: {e}"))?;
    let opts = explore::Options {
        runs,
        seed,
        lab_seed: lab.scenario.seed.unwrap_or(1),
        faults,
        max_faults,
        jobs: jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        quiet: quiet.0,
    };
    if let Some(run_seed) = replay {
        let baseline = explore::baseline(&lab, &opts)?;
        let schedule = Schedule::draw(&lab, run_seed, &opts.faults, opts.max_faults);
        let out = explore::run_schedule(&lab, &opts, &schedule, Some(&baseline), pcap)?;
        print!("{}", out.report.render());
        println!("\nschedule (seed {run_seed}):\n{schedule}");
        for v in &out.violations {
            println!("violated: {v}");
        }
        println!(
            "{} invariant checks, {} violated",
            out.checks,
            out.violations.len()
        );
        return Ok(out.violations.is_empty());
    }
    let started = std::time::Instant::now();
    let tty = std::io::stderr().is_terminal();
    let name = lab.topology.name.clone();
    let summary = explore::explore(&lab, &opts, |done, failed| {
        if tty {
            eprint!("\rexplore {name}: {done}/{runs} runs, {failed} failed");
        } else if done % (runs / 10).max(1) == 0 || done == runs {
            eprintln!("explore {name}: {done}/{runs} runs, {failed} failed");
        }
    })?;
    if tty {
        eprintln!();
    }
    print!("{}", summary.table(started.elapsed().as_secs_f64()));
    print!("{}", summary.failures());
    if !summary.failures.is_empty() {
        let kinds: Vec<&str> = opts.faults.iter().map(|k| k.name()).collect();
        println!(
            "replay one with: nexthop-sim explore LAB --replay SEED --faults {} --max-faults {} [--pcap DIR]",
            kinds.join(","),
            opts.max_faults
        );
    }
    Ok(summary.failures.is_empty())
}

fn main() -> ExitCode {
    match Cli::parse().command {
        command @ Command::Explore { .. } => match explore(command) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
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
            flows,
            report: html,
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
            let report = match run_once(
                &lab,
                seed,
                pcap.clone(),
                &tap,
                Outputs {
                    flows: flows.as_deref(),
                    html: html.as_deref(),
                },
            ) {
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
                match run_once(&lab, seed, pcap_again.clone(), &[], Outputs::default()) {
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
