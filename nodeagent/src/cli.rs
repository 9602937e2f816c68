//! The command line: `run` (the daemon), the `bgp` queries, `datapath` and
//! `lease` (reading a lease store).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;
use router_core::cilium::Objects;
use router_core::cilium::ipcache::IpCache;
use tokio::sync::watch;
use tracing::{error, info, warn};

use aya::programs::XdpMode;
use nexthop_offload_bpf::datapath::{self, Capacity};
use nexthop_offload_bpf::flows::Limit;

use crate::api;
use crate::config::Directory;
use crate::controller::Controller;
use crate::controller::node_options;
use crate::endpoints::Endpoints;
use crate::hubble::{self, Hubble};
use crate::kube_source;
use crate::l2::{Announced, L2Config};
use crate::lease_store::{self, Clock, LeaseStore, StoreConfig};
use crate::offload;
use crate::output;
use crate::report::Setup;
use crate::routing::NodeRoutes;
use crate::services::{self, Served};
use crate::status::{NodeConfigObject, Request, Table};
use router_core::cilium::l2announce::Entry;
use router_core::cilium::node::NodeOptions;
use router_core::cilium::routing::RoutingMode;
use router_core::lease::Timings;
use router_core::service::datapath::{Algorithm, Mode};
use router_core::service::maglev;
use router_core::service::masquerade;
use std::sync::{Arc, Mutex};

/// The default query socket.
pub const DEFAULT_SOCKET: &str = "/run/nexthop/agent.sock";

#[derive(Debug, Parser)]
#[command(
    name = "nexthop-agent",
    version,
    about = "nexthop node agent: Cilium-style BGP control plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum EndpointQuery {
    /// Every endpoint of the node.
    List {
        #[command(flatten)]
        common: QueryArgs,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent.
    Run {
        /// Directory of Kubernetes/Cilium YAML (every document of every file).
        #[arg(long, required_unless_present_any = ["kubeconfig", "kubernetes"])]
        config_dir: Option<PathBuf>,
        /// Watch the Kubernetes API server of this kubeconfig instead.
        #[arg(long, conflicts_with_all = ["config_dir", "kubernetes"])]
        kubeconfig: Option<PathBuf>,
        /// Watch the Kubernetes API instead: the pod's service account, else
        /// $KUBECONFIG or ~/.kube/config.
        #[arg(long, conflicts_with = "config_dir")]
        kubernetes: bool,
        /// This node's name (its Node object).
        #[arg(long)]
        node: String,
        /// Query socket.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// BGP router ID (default: the Node's first IPv4 InternalIP).
        #[arg(long)]
        router_id: Option<Ipv4Addr>,
        /// Serve Prometheus metrics on this address.
        #[arg(long)]
        metrics: Option<SocketAddr>,
        /// Report each node's CiliumBGPNodeConfig status (Helm's
        /// `bgpControlPlane.statusReport.enabled`).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        bgp_status_report: bool,
        /// Where the L2 announcement leases are kept:
        /// `etcd:http://HOST:PORT[,http://HOST:PORT...]` or `kubernetes` (the
        /// API server of --kubeconfig, else in-cluster, $KUBECONFIG or
        /// ~/.kube/config).
        #[arg(long)]
        lease_store: Option<StoreConfig>,
        #[command(flatten)]
        lease_location: LeaseLocation,
        #[command(flatten)]
        l2: L2Args,
        #[command(flatten)]
        datapath: Box<AgentDatapath>,
    },
    /// The addresses a running agent answers ARP for, as Cilium's
    /// `cilium-dbg shell -- db/show l2-announce` prints them.
    L2Announce {
        #[command(flatten)]
        common: QueryArgs,
    },
    /// The node's flows, as `hubble observe` prints them: the flags are
    /// hubble's (`--pod`, `--namespace`, `--ip`, `--port`, each also as
    /// `--from-…`/`--to-…`, `--protocol`, `--verdict`, `--type`,
    /// `--last N`, `-f`/`--follow`, `-o json`, `--print-node-name`).
    /// Needs an agent run with `--enable-hubble`.
    Observe {
        /// The agent's query socket.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// `hubble observe`'s flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        flags: Vec<String>,
    },
    /// The agent's health as `cilium status` prints it (`--brief`: `OK`, or
    /// what is not, and a failing exit code).
    Status {
        /// The agent's query socket.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        /// `OK`, or the parts that are not.
        #[arg(long)]
        brief: bool,
        /// With the KubeProxyReplacement details.
        #[arg(long)]
        verbose: bool,
    },
    /// The pods the agent set up, as `cilium-dbg endpoint list` prints them.
    Endpoint {
        #[command(subcommand)]
        query: EndpointQuery,
    },
    /// Query a running agent's service table.
    Service {
        #[command(subcommand)]
        query: ServiceQuery,
    },
    /// Query a running agent's BGP state.
    Bgp {
        #[command(subcommand)]
        query: BgpQuery,
    },
    /// The XDP datapath: mirror the kernel's routes on interfaces, read its counters, remove it.
    Datapath {
        #[command(subcommand)]
        command: DatapathCommand,
    },
    /// Read the leases of a lease store (as the agent keeps them).
    Lease {
        #[command(subcommand)]
        command: LeaseCommand,
    },
}

#[derive(Debug, Subcommand)]
enum LeaseCommand {
    /// One lease: holder, duration, transitions, renew time, version.
    Get {
        /// The lease's name (e.g. cilium-l2announce-default-web).
        name: String,
        #[command(flatten)]
        store: LeaseStoreArgs,
    },
    /// Every lease of the namespace.
    List {
        #[command(flatten)]
        store: LeaseStoreArgs,
    },
}

/// L2 announcements, with Cilium's agent flags.
#[derive(Debug, Clone, clap::Args)]
struct L2Args {
    /// Answer ARP for the LoadBalancer and external addresses of the
    /// services CiliumL2AnnouncementPolicies select, one leader per service
    /// elected through --lease-store; needs --datapath-interface (the XDP
    /// program answers).
    #[arg(long)]
    enable_l2_announcements: bool,
    /// How long a lease lasts unrenewed (Helm's `l2announcements.leaseDuration`).
    #[arg(long, default_value = "15s", value_parser = parse_go_duration)]
    l2_announcements_lease_duration: Duration,
    /// How long a leader goes on without renewing (`leaseRenewDeadline`).
    #[arg(long, default_value = "5s", value_parser = parse_go_duration)]
    l2_announcements_renew_deadline: Duration,
    /// How often followers try and leaders retry (`leaseRetryPeriod`).
    #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
    l2_announcements_retry_period: Duration,
}

/// The XDP datapath run inside the agent.
#[derive(Debug, Clone, clap::Args)]
struct AgentDatapath {
    /// Attach the XDP datapath to this interface (repeat for each): it
    /// mirrors the kernel's routes and answers ARP for the node's addresses
    /// and the ones L2 announcements lead.
    #[arg(long = "datapath-interface")]
    interfaces: Vec<String>,
    /// An interface facing this node's pods (repeatable), attached like
    /// `--datapath-interface`: traffic arriving on it is in-cluster
    /// (`internalTrafficPolicy`) and, with `--enable-bpf-masquerade`,
    /// masqueraded when it leaves the cluster.
    #[arg(long = "datapath-pod-interface")]
    pod_interfaces: Vec<String>,
    /// Where the datapath's maps and links are pinned (on a bpffs).
    #[arg(long = "datapath-pin-dir", default_value = offload::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// Attach in generic (skb) mode instead of the driver's native mode.
    #[arg(long = "datapath-generic")]
    generic: bool,
    /// Serve the node's services in the XDP datapath (Cilium's
    /// `kubeProxyReplacement`): LoadBalancer, NodePort and ExternalIP
    /// traffic arriving on the datapath's interfaces is load-balanced to
    /// the backends, source-NATed to the node's InternalIP when they run
    /// elsewhere.
    #[arg(long)]
    kube_proxy_replacement: bool,
    /// Route other nodes' pod CIDRs via those nodes when they share a
    /// subnet (Cilium's `autoDirectNodeRoutes`, native routing).
    #[arg(long)]
    auto_direct_node_routes: bool,
    /// Set up pods for the CNI plugin (`nexthop-cni`), keeping their
    /// endpoints' state in this directory: addresses from the node's pod
    /// CIDR, veth pairs, routes; the pods' interfaces join the XDP datapath.
    #[arg(long)]
    cni_state_dir: Option<PathBuf>,
    /// Record the datapath's flow events for `nexthop-agent observe`
    /// (Cilium's `hubble.enabled`); off by default.
    #[arg(long)]
    enable_hubble: bool,
    /// Flows the agent keeps for `observe` (oldest dropped first).
    #[arg(long, default_value_t = hubble::DEFAULT_CAPACITY)]
    hubble_event_buffer_capacity: usize,
    /// Flow events each CPU may send per second; the rest are counted as lost.
    #[arg(long, default_value_t = Limit::default().rate)]
    hubble_events_per_second: u32,
    /// Flow events each CPU may send at once after a quiet spell.
    #[arg(long, default_value_t = Limit::default().burst)]
    hubble_events_burst: u32,
    /// How new flows pick their backend: `random` or `maglev`.
    #[arg(long, default_value = "random", value_parser = parse_algorithm)]
    bpf_lb_algorithm: Algorithm,
    /// How a request reaches a backend on another node: `snat` (source-NATed
    /// to this node), `dsr` (dispatched to the backend's node in Geneve,
    /// which answers the client directly) or `hybrid` (TCP as dsr, the rest
    /// as snat).
    #[arg(long, default_value = "snat", value_parser = parse_lb_mode)]
    bpf_lb_mode: Mode,
    /// Maglev table size M, one of Cilium's primes.
    #[arg(long, default_value_t = maglev::DEFAULT_TABLE_SIZE)]
    bpf_lb_maglev_table_size: u32,
    /// Maglev hash seed: 12 bytes in base64, the same on every node.
    #[arg(long, default_value = maglev::DEFAULT_HASH_SEED)]
    bpf_lb_maglev_hash_seed: String,
    /// The cgroup (v2) directory whose processes' sockets are
    /// load-balanced at `connect()` with `--kube-proxy-replacement`
    /// (Cilium's socket LB, for ClusterIP); default: the root of the
    /// mounted cgroup2 hierarchy, every process of the node.
    #[arg(long)]
    cgroup_root: Option<PathBuf>,
    /// Masquerade pods' traffic leaving the cluster to the node's
    /// InternalIP in the XDP datapath (Cilium's `bpf.masquerade`; needs
    /// `--kube-proxy-replacement` and `--ipv4-native-routing-cidr`).
    #[arg(long)]
    enable_bpf_masquerade: bool,
    /// The natively routed range pods reach unmasqueraded.
    #[arg(long = "ipv4-native-routing-cidr")]
    ipv4_native_routing_cidr: Option<Ipv4Net>,
    /// Read ip-masq-agent's `nonMasqueradeCIDRs` (more destinations pods
    /// reach unmasqueraded) from `--ip-masq-agent-config-path`.
    #[arg(long)]
    enable_ip_masq_agent: bool,
    /// ip-masq-agent's configuration (YAML or JSON with `nonMasqueradeCIDRs`).
    #[arg(long, default_value = "/etc/config/ip-masq-agent")]
    ip_masq_agent_config_path: PathBuf,
}

impl AgentDatapath {
    /// The load-balancing settings the flags ask for; a bad table size or
    /// seed, or a mode the XDP datapath does not carry out, is an error
    /// naming the flag.
    fn service_options(&self) -> Result<services::Options, String> {
        let maglev =
            maglev::Config::new(self.bpf_lb_maglev_table_size, &self.bpf_lb_maglev_hash_seed)
                .map_err(|e| {
                    format!("--bpf-lb-maglev-table-size/--bpf-lb-maglev-hash-seed: {e}")
                })?;
        Ok(services::Options {
            algorithm: self.bpf_lb_algorithm,
            mode: self.bpf_lb_mode,
            maglev,
            masquerade: self.masquerade()?,
        })
    }

    /// Masquerading as the flags ask for it; a combination Cilium's agent
    /// refuses, or an unreadable ip-masq-agent file, is an error naming
    /// the flag.
    fn masquerade(&self) -> Result<Option<masquerade::Settings>, String> {
        if !self.enable_bpf_masquerade {
            return Ok(None);
        }
        if !self.kube_proxy_replacement {
            return Err(
                "--enable-bpf-masquerade needs --kube-proxy-replacement (the XDP service stage masquerades)"
                    .into(),
            );
        }
        let Some(native) = self.ipv4_native_routing_cidr else {
            return Err(
                "--enable-bpf-masquerade needs --ipv4-native-routing-cidr: the agent routes natively"
                    .into(),
            );
        };
        let non_masquerade = if self.enable_ip_masq_agent {
            services::non_masquerade_cidrs(&self.ip_masq_agent_config_path)?
        } else {
            Vec::new()
        };
        Ok(Some(masquerade::Settings {
            native_routing_cidr: Some(native),
            non_masquerade,
            tunnel: false,
        }))
    }

    /// The cgroup socket-level load-balancing attaches to, with
    /// `--kube-proxy-replacement`.
    fn socket_cgroup(&self) -> Result<Option<PathBuf>, String> {
        if !self.kube_proxy_replacement {
            return Ok(None);
        }
        match &self.cgroup_root {
            Some(path) => Ok(Some(path.clone())),
            None => datapath::cgroup2_mount().map(Some).ok_or_else(|| {
                "--kube-proxy-replacement: no cgroup2 hierarchy is mounted; mount one or give --cgroup-root"
                    .to_string()
            }),
        }
    }
}

/// `--bpf-lb-algorithm` as Cilium writes it.
fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    Algorithm::from_name(text).ok_or_else(|| format!("{text:?}: expected random or maglev"))
}

/// `--bpf-lb-mode` as Cilium writes it.
fn parse_lb_mode(text: &str) -> Result<Mode, String> {
    Mode::from_name(text).ok_or_else(|| format!("{text:?}: expected snat, dsr or hybrid"))
}

/// A duration as Cilium's flags write it (`15s`, `200ms`, `1.5s`), read by
/// router-core as the simulator reads lab durations.
fn parse_go_duration(text: &str) -> Result<Duration, String> {
    router_core::cilium::meta::parse_duration(text).map(|d| Duration::from_micros(d.total_micros()))
}

/// Which lease store to read.
#[derive(Debug, clap::Args)]
struct LeaseStoreArgs {
    /// `etcd:http://HOST:PORT[,http://HOST:PORT...]` or `kubernetes`.
    #[arg(long)]
    lease_store: StoreConfig,
    /// The kubeconfig for `--lease-store kubernetes` (default: in-cluster,
    /// else $KUBECONFIG or ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    location: LeaseLocation,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Table)]
    output: Format,
}

/// Where in the store the leases are.
#[derive(Debug, Clone, clap::Args)]
struct LeaseLocation {
    /// The namespace of the leases.
    #[arg(long, default_value = lease_store::DEFAULT_NAMESPACE)]
    lease_namespace: String,
    /// The etcd key prefix of the leases (keys are PREFIX/NAMESPACE/NAME).
    #[arg(long, default_value = lease_store::DEFAULT_ETCD_PREFIX)]
    lease_etcd_prefix: String,
}

#[derive(Debug, Subcommand)]
enum DatapathCommand {
    /// Load (or take over) the pinned datapath, mirror the kernel's routes,
    /// neighbours and addresses into it, attach it; exits leaving it attached.
    Run {
        /// Interface to attach to (repeat for each).
        #[arg(long = "interface", short = 'i', required = true)]
        interfaces: Vec<String>,
        /// Where maps and links are pinned (on a bpffs).
        #[arg(long, default_value = offload::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// How often the kernel state is read, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Attach in generic (skb) mode instead of the driver's native mode.
        #[arg(long)]
        generic: bool,
        /// FIB trie nodes per half (as the pinned datapath was created with).
        #[arg(long, default_value_t = Capacity::default().nodes)]
        fib_nodes: u32,
        /// FIB trie leaves per half (as the pinned datapath was created with).
        #[arg(long, default_value_t = Capacity::default().leaves)]
        fib_leaves: u32,
        /// Serve Prometheus metrics (packets per exit reason) on this address.
        #[arg(long)]
        metrics: Option<SocketAddr>,
    },
    /// Packets per exit reason of the pinned datapath.
    Stats {
        /// Where maps and links are pinned.
        #[arg(long, default_value = offload::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Detach the pinned datapath and free its maps.
    Remove {
        /// Where maps and links are pinned.
        #[arg(long, default_value = offload::DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ServiceQuery {
    /// The node's frontends and backends, like `cilium-dbg service list`.
    List {
        #[command(flatten)]
        common: QueryArgs,
    },
}

#[derive(Debug, Subcommand)]
enum BgpQuery {
    /// Sessions, like `cilium bgp peers`.
    Peers {
        #[command(flatten)]
        common: QueryArgs,
    },
    /// This node's CiliumBGPNodeConfig status (`kubectl get
    /// ciliumbgpnodeconfig NODE -o json`'s `status`).
    Nodeconfig {
        /// The agent's query socket.
        #[arg(long, default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
    },
    /// Routes, like `cilium bgp routes`: `[available|advertised|received] [ipv4|ipv6] [unicast]`.
    Routes {
        /// Table, address family and subsequent family.
        args: Vec<String>,
        #[command(flatten)]
        common: QueryArgs,
    },
}

#[derive(Debug, clap::Args)]
struct QueryArgs {
    /// The agent's query socket.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nexthop-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run {
            config_dir,
            kubeconfig,
            kubernetes: _,
            node,
            socket,
            router_id,
            metrics,
            bgp_status_report,
            lease_store,
            lease_location,
            l2,
            datapath,
        } => {
            init_logging();
            let leases = lease_store.map(|config| (config, lease_location, kubeconfig.clone()));
            let source = match config_dir {
                Some(dir) => Source::Directory(dir),
                None => Source::Kubernetes(kubeconfig),
            };
            let options = node_options(&node, router_id, bgp_status_report);
            runtime.block_on(async {
                let (announced, led) = watch::channel(Announced::new());
                let l2 = match (l2.enable_l2_announcements, leases) {
                    (false, _) => None,
                    (true, None) => {
                        return Err("--enable-l2-announcements needs --lease-store".into());
                    }
                    (true, Some(_)) if datapath.interfaces.is_empty() => {
                        return Err(
                            "--enable-l2-announcements needs --datapath-interface: the XDP program answers ARP"
                                .into(),
                        );
                    }
                    (true, Some((config, location, kubeconfig))) => Some(L2Config {
                        store: connect(&config, &location, kubeconfig.as_deref()).await?,
                        timings: Timings {
                            duration: l2.l2_announcements_lease_duration.into(),
                            renew_deadline: l2.l2_announcements_renew_deadline.into(),
                            retry_period: l2.l2_announcements_retry_period.into(),
                        },
                        interfaces: datapath.interfaces.clone(),
                        announced,
                    }),
                };
                // The datapath follows the announcements while L2 runs; it
                // withdraws them once the controller (and its sender) is gone.
                let led = l2.as_ref().map(|_| led);
                let service_options = datapath.service_options()?;
                let mut interfaces = datapath.interfaces.clone();
                interfaces.extend(datapath.pod_interfaces.iter().cloned());
                if datapath.kube_proxy_replacement && interfaces.is_empty() {
                    return Err("--kube-proxy-replacement needs --datapath-interface: the XDP program serves the services".into());
                }
                let cgroup = datapath.socket_cgroup()?;
                if datapath.enable_hubble && interfaces.is_empty() {
                    return Err("--enable-hubble needs --datapath-interface: the XDP program makes the flow events".into());
                }
                let hubble = datapath
                    .enable_hubble
                    .then(|| Hubble::new(&node, datapath.hubble_event_buffer_capacity));
                let flows = hubble.clone().map(|hubble| offload::Flows {
                    hubble,
                    limit: Limit {
                        rate: datapath.hubble_events_per_second,
                        burst: datapath.hubble_events_burst,
                    },
                });
                let datapath_args_routes = datapath.auto_direct_node_routes.then(|| {
                    let mode = RoutingMode::Native {
                        auto_direct_node_routes: true,
                    };
                    Arc::new(Mutex::new(NodeRoutes::new(&node, mode)))
                });
                let endpoints = datapath
                    .cni_state_dir
                    .as_deref()
                    .map(|dir| Endpoints::open(dir, &node))
                    .transpose()
                    .map_err(|e| format!("--cni-state-dir: {e}"))?;
                let (served, serving) = watch::channel(None);
                let served = datapath.kube_proxy_replacement.then_some(served);
                let datapath = (!interfaces.is_empty()).then(|| {
                    let opts = offload::RunOptions {
                        interfaces,
                        pod_interfaces: datapath.pod_interfaces,
                        pin_dir: datapath.pin_dir,
                        interval: Duration::from_secs(1),
                        mode: if datapath.generic {
                            XdpMode::Skb
                        } else {
                            XdpMode::Driver
                        },
                        capacity: Capacity {
                            maglev_size: service_options.maglev.table_size,
                            ..Capacity::default()
                        },
                        metrics: None,
                        cgroup,
                        flows,
                    };
                    let feeds = offload::Feeds {
                        announced: led,
                        services: served.as_ref().map(|_| serving),
                        pods: endpoints.as_ref().map(Endpoints::interfaces),
                    };
                    (opts, feeds)
                });
                let services = (service_options, served);
                let routes = datapath_args_routes;
                let setup = Setup {
                    datapath: Default::default(),
                    source: String::new(),
                    interfaces: datapath.as_ref().map(|(o, _)| o.interfaces.clone()).unwrap_or_default(),
                    kube_proxy_replacement: services.1.as_ref().map(|_| services.0.clone()),
                };
                let serving = Serving {
                    socket: &socket,
                    metrics,
                    hubble,
                    endpoints,
                    setup,
                    routes,
                };
                run(source, options, l2, services, datapath, serving).await
            })
        }
        Command::L2Announce { common } => runtime.block_on(l2_announce(common)),
        Command::Observe { socket, flags } => runtime.block_on(observe(&socket, flags)),
        Command::Endpoint {
            query: EndpointQuery::List { common },
        } => runtime.block_on(endpoint_list(common)),
        Command::Status {
            socket,
            brief,
            verbose,
        } => runtime.block_on(status(&socket, brief, verbose)),
        Command::Service {
            query: ServiceQuery::List { common },
        } => runtime.block_on(service_list(common)),
        Command::Bgp { query } => runtime.block_on(bgp(query)),
        Command::Datapath { command } => datapath(command, &runtime),
        Command::Lease { command } => {
            init_logging();
            runtime.block_on(lease(command))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nexthop-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn datapath(command: DatapathCommand, runtime: &tokio::runtime::Runtime) -> Result<(), String> {
    match command {
        DatapathCommand::Run {
            interfaces,
            pin_dir,
            interval_ms,
            generic,
            fib_nodes,
            fib_leaves,
            metrics,
        } => {
            init_logging();
            let opts = offload::RunOptions {
                interfaces,
                pod_interfaces: Vec::new(),
                pin_dir,
                interval: Duration::from_millis(interval_ms.max(10)),
                mode: if generic {
                    XdpMode::Skb
                } else {
                    XdpMode::Driver
                },
                capacity: Capacity {
                    nodes: fib_nodes,
                    leaves: fib_leaves,
                    ..Capacity::default()
                },
                metrics,
                cgroup: None,
                flows: None,
            };
            runtime.block_on(offload::run(&opts, offload::Feeds::default()))
        }
        DatapathCommand::Stats { pin_dir, output } => {
            print!("{}", offload::stats(&pin_dir, output == Format::Json)?);
            Ok(())
        }
        DatapathCommand::Remove { pin_dir } => offload::remove(&pin_dir),
    }
}

async fn connect(
    config: &StoreConfig,
    location: &LeaseLocation,
    kubeconfig: Option<&Path>,
) -> Result<LeaseStore, String> {
    LeaseStore::connect(
        config,
        &location.lease_namespace,
        &location.lease_etcd_prefix,
        kubeconfig,
        Clock::start(),
    )
    .await
}

async fn lease(command: LeaseCommand) -> Result<(), String> {
    let (name, args) = match command {
        LeaseCommand::Get { name, store } => (Some(name), store),
        LeaseCommand::List { store } => (None, store),
    };
    let store = connect(
        &args.lease_store,
        &args.location,
        args.kubeconfig.as_deref(),
    )
    .await?;
    let leases = match name {
        Some(name) => match store.call(&name, router_core::lease::Request::Get).await {
            router_core::lease::Response::Got(Some(lease)) => vec![(name, lease)],
            router_core::lease::Response::Got(None) => {
                return Err(format!(
                    "lease {name} not found ({}, namespace {})",
                    store.describe(),
                    args.location.lease_namespace
                ));
            }
            router_core::lease::Response::Unavailable(message) => return Err(message),
            other => return Err(format!("lease {name}: unexpected answer {other:?}")),
        },
        None => store.list().await?,
    };
    let clock = store.clock();
    match args.output {
        Format::Json => {
            let leases: Vec<_> = leases
                .iter()
                .map(|(name, lease)| {
                    serde_json::json!({
                        "name": name,
                        "version": lease.version,
                        "spec": lease_store::to_spec(&lease.record, &clock),
                    })
                })
                .collect();
            println!("{}", json(&leases)?);
        }
        Format::Table => print!("{}", lease_store::table(&leases, &clock)),
    }
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

/// Where `run` reads its objects from.
#[derive(Debug)]
enum Source {
    /// A configuration directory, read again when it changes.
    Directory(PathBuf),
    /// The Kubernetes API, with this kubeconfig (else in-cluster or inferred).
    Kubernetes(Option<PathBuf>),
}

/// What a running agent serves: its query socket, its metrics page, its
/// flows, its pods.
struct Serving<'a> {
    socket: &'a Path,
    metrics: Option<SocketAddr>,
    hubble: Option<Hubble>,
    endpoints: Option<Endpoints>,
    setup: Setup,
    routes: Option<Arc<Mutex<NodeRoutes>>>,
}

async fn run(
    source: Source,
    options: NodeOptions,
    l2: Option<L2Config>,
    (service_options, served): (services::Options, Option<watch::Sender<Option<Served>>>),
    datapath: Option<(offload::RunOptions, offload::Feeds)>,
    serving: Serving<'_>,
) -> Result<(), String> {
    let Serving {
        socket,
        metrics,
        hubble,
        endpoints,
        mut setup,
        routes,
    } = serving;
    let setup_failure = setup.datapath.clone();
    let node = options.name.clone();
    let listener =
        api::bind(socket).map_err(|e| format!("query socket {}: {e}", socket.display()))?;
    let mut datapath = datapath
        .map(|(opts, feeds)| offload::spawn(opts, feeds))
        .transpose()
        .map_err(|e| format!("cannot start the datapath's thread: {e}"))?;
    let (controller, driver) = Controller::spawn(options, l2, service_options, served);
    info!(node, ?source, socket = %socket.display(), "nexthop-agent starting");
    setup.source = match &source {
        Source::Directory(dir) => format!("directory {}", dir.display()),
        Source::Kubernetes(_) => "Kubernetes API".into(),
    };
    let (dir, mut snapshots) = match &source {
        Source::Directory(dir) => (Some(dir.as_path()), None),
        Source::Kubernetes(kubeconfig) => {
            let client = kube_source::client(kubeconfig.as_deref()).await?;
            (None, Some(kube_source::spawn(client)))
        }
    };
    // Flows are named by the cluster's objects as they are now.
    // Pods get addresses from the node's pod CIDR as it is now.
    let reconcile = |objects: Objects| {
        if let Some(h) = &hubble {
            h.set_ipcache(IpCache::of(&objects));
        }
        if let Some(e) = &endpoints {
            e.set_objects(&objects);
        }
        if let Some(r) = &routes {
            // `ip` runs off the task that keeps the sessions alive.
            let (r, objects) = (r.clone(), objects.clone());
            tokio::task::spawn_blocking(move || {
                r.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .reconcile(&objects)
            });
        }
        controller.reconcile(objects);
    };
    let mut directory = match dir {
        Some(dir) => {
            let (directory, read) = read_off_thread(Directory::new(dir)).await;
            let objects = read.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
            reconcile(objects.unwrap_or_default());
            Some(directory)
        }
        None => None,
    };
    let api = {
        let controller = controller.clone();
        let parts = api::Parts {
            flows: hubble.clone(),
            endpoints: endpoints.clone(),
            setup,
        };
        tokio::spawn(async move { api::serve(listener, controller, parts).await })
    };
    let metrics = metrics.map(|addr| {
        let controller = controller.clone();
        let (endpoints, hubble) = (endpoints.clone(), hubble.clone());
        tokio::spawn(
            async move { crate::metrics::serve(addr, controller, endpoints, hubble).await },
        )
    });
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    let mut stopped = false;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if let Some(current) = directory.take() {
                    let (current, read) = read_off_thread(current).await;
                    directory = Some(current);
                    match read {
                        Ok(Some(objects)) => reconcile(objects),
                        Ok(None) => {}
                        Err(e) => warn!(error = %e, "cannot read the configuration directory"),
                    }
                }
            }
            objects = snapshot(&mut snapshots) => {
                let Some(objects) = objects else {
                    stopped = true;
                    break;
                };
                info!(
                    nodes = objects.nodes.len(),
                    cluster_configs = objects.cluster_configs.len(),
                    peer_configs = objects.peer_configs.len(),
                    advertisements = objects.advertisements.len(),
                    "objects from the Kubernetes API"
                );
                reconcile(objects);
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
        if api.is_finished() {
            break;
        }
        if metrics.as_ref().is_some_and(|m| m.is_finished()) {
            break;
        }
        // A datapath that failed (a missing interface or kernel feature) is
        // reported; BGP and the pods the agent set up (kernel routing) go on.
        // A datapath that ends without failing does so on a signal: stop too.
        if datapath.as_ref().is_some_and(|d| d.is_finished())
            && let Some(d) = datapath.take()
        {
            let why = match d.join() {
                Ok(Ok(())) => break,
                Ok(Err(e)) => e,
                Err(_) => "its thread panicked".to_string(),
            };
            error!(error = %why, "the XDP datapath failed; the agent goes on without it");
            setup_failure.fail(why);
        }
    }
    info!("shutting down");
    controller.shutdown().await;
    let _ = driver.await;
    let _ = std::fs::remove_file(socket);
    if stopped {
        return Err("the Kubernetes API source stopped".into());
    }
    if api.is_finished() {
        return match api.await {
            Ok(Err(e)) => Err(format!("query socket {}: {e}", socket.display())),
            _ => Ok(()),
        };
    }
    if let Some(m) = metrics
        && m.is_finished()
        && let Ok(Err(e)) = m.await
    {
        return Err(format!("metrics: {e}"));
    }
    if let Some(d) = datapath {
        // With the controller gone, a datapath following L2 announcements
        // withdraws them and ends; give it the time that takes.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while !d.is_finished() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if d.is_finished()
            && let Ok(Err(e)) = d.join()
        {
            return Err(format!("datapath: {e}"));
        }
    }
    Ok(())
}

/// Read the directory on a blocking thread: parsing a large file never
/// delays the task that drives the sessions (keepalives, queries).
async fn read_off_thread(
    mut directory: Directory,
) -> (Directory, std::io::Result<Option<Objects>>) {
    let path = directory.path().to_path_buf();
    match tokio::task::spawn_blocking(move || {
        let read = directory.reload();
        (directory, read)
    })
    .await
    {
        Ok(done) => done,
        Err(e) => (
            Directory::new(&path),
            Err(std::io::Error::other(format!(
                "reading the directory failed: {e}"
            ))),
        ),
    }
}

/// The next snapshot of the Kubernetes API source (never, without one);
/// `None` when the source stopped.
async fn snapshot(snapshots: &mut Option<watch::Receiver<Option<Objects>>>) -> Option<Objects> {
    let Some(snapshots) = snapshots else {
        return std::future::pending().await;
    };
    loop {
        snapshots.changed().await.ok()?;
        if let Some(objects) = snapshots.borrow_and_update().clone() {
            return Some(objects);
        }
    }
}

async fn service_list(common: QueryArgs) -> Result<(), String> {
    let response = api::query(&common.socket, &Request::ServiceList)
        .await
        .map_err(|e| e.to_string())?;
    match common.output {
        Format::Json => println!("{}", json(&response.services)?),
        Format::Table => print!(
            "{}",
            router_core::cilium::table::service_list(&response.services)
        ),
    }
    Ok(())
}

async fn observe(socket: &Path, flags: Vec<String>) -> Result<(), String> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let follow = flags.iter().any(|f| f == "-f" || f == "--follow");
    api::query_each(socket, &Request::Observe { flags }, |response| {
        for line in &response.flows {
            // A closed pipe (`| head`) ends the loop below.
            if writeln!(stdout, "{line}").is_err() {
                return false;
            }
        }
        follow && stdout.flush().is_ok()
    })
    .await
    .map_err(|e| e.to_string())
}

async fn status(socket: &Path, brief: bool, verbose: bool) -> Result<(), String> {
    let response = api::query(socket, &Request::Status { brief, verbose })
        .await
        .map_err(|e| e.to_string())?;
    for line in &response.status {
        println!("{line}");
    }
    if response.healthy {
        Ok(())
    } else {
        Err("not every part of the agent is OK".into())
    }
}

async fn endpoint_list(common: QueryArgs) -> Result<(), String> {
    let response = api::query(&common.socket, &Request::EndpointList)
        .await
        .map_err(|e| e.to_string())?;
    match common.output {
        Format::Json => println!("{}", json(&response.endpoints)?),
        Format::Table => print!(
            "{}",
            router_core::cilium::table::endpoint_list(&response.endpoints)
        ),
    }
    Ok(())
}

async fn l2_announce(common: QueryArgs) -> Result<(), String> {
    let response = api::query(&common.socket, &Request::L2Announce)
        .await
        .map_err(|e| e.to_string())?;
    match common.output {
        Format::Json => println!("{}", json(&response.l2_announce)?),
        Format::Table => {
            let entries: Vec<Entry> = response
                .l2_announce
                .into_iter()
                .map(|e| Entry {
                    ip: e.ip,
                    interface: e.interface,
                })
                .collect();
            print!("{}", output::l2_announce(&entries));
        }
    }
    Ok(())
}

async fn bgp(query: BgpQuery) -> Result<(), String> {
    match query {
        BgpQuery::Peers { common } => {
            let response = api::query(&common.socket, &Request::Peers)
                .await
                .map_err(|e| e.to_string())?;
            match common.output {
                Format::Json => println!("{}", json(&response.peers)?),
                Format::Table => print!("{}", output::peers(&response.peers)),
            }
        }
        BgpQuery::Nodeconfig { socket } => {
            let response = api::query(&socket, &Request::NodeConfig)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.node_config.unwrap_or_default();
            println!("{}", json(&NodeConfigObject { status })?);
        }
        BgpQuery::Routes { args, common } => {
            let selection = RouteSelection::parse(&args)?;
            let response = api::query(&common.socket, &Request::Routes)
                .await
                .map_err(|e| e.to_string())?;
            let routes: Vec<_> = response
                .routes
                .iter()
                .filter(|r| r.table == selection.table && selection.afi_matches(&r.prefix))
                .collect();
            match common.output {
                Format::Json => println!("{}", json(&routes)?),
                Format::Table => {
                    if args.is_empty() {
                        println!(
                            "(Defaulting to `available ipv4 unicast` routes, please see help for more options)\n"
                        );
                    }
                    print!("{}", output::routes(selection.table, &routes));
                }
            }
        }
    }
    Ok(())
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string_pretty(value).map_err(|e| e.to_string())
}

/// The positional arguments of `bgp routes`.
#[derive(Debug, PartialEq, Eq)]
struct RouteSelection {
    table: Table,
    ipv6: bool,
}

impl RouteSelection {
    fn parse(args: &[String]) -> Result<RouteSelection, String> {
        let mut selection = RouteSelection {
            table: Table::Available,
            ipv6: false,
        };
        let mut args = args.iter().map(String::as_str).peekable();
        if let Some(table) = args.next_if(|a| matches!(*a, "available" | "advertised" | "received"))
        {
            selection.table = match table {
                "available" => Table::Available,
                "advertised" => Table::Advertised,
                _ => Table::Received,
            };
        }
        if let Some(afi) = args.next_if(|a| matches!(*a, "ipv4" | "ipv6")) {
            selection.ipv6 = afi == "ipv6";
        }
        args.next_if(|a| *a == "unicast");
        match args.next() {
            None => Ok(selection),
            Some(other) => Err(format!(
                "unexpected argument {other:?}: bgp routes [available|advertised|received] [ipv4|ipv6] [unicast]"
            )),
        }
    }

    fn afi_matches(&self, prefix: &ipnet::IpNet) -> bool {
        matches!(prefix, ipnet::IpNet::V6(_)) == self.ipv6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<RouteSelection, String> {
        RouteSelection::parse(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn route_arguments() {
        let default = RouteSelection {
            table: Table::Available,
            ipv6: false,
        };
        assert_eq!(parse(&[]), Ok(default));
        assert_eq!(
            parse(&["advertised", "ipv6", "unicast"]),
            Ok(RouteSelection {
                table: Table::Advertised,
                ipv6: true
            })
        );
        assert_eq!(parse(&["received"]).unwrap().table, Table::Received);
        assert!(
            parse(&["ipv4", "multicast"])
                .unwrap_err()
                .contains("\"multicast\"")
        );
    }

    #[test]
    fn run_reads_one_source() {
        let run = |args: &[&str]| {
            let common = ["nexthop-agent", "run", "--node", "k8s-w0"];
            Cli::try_parse_from(common.iter().chain(args)).map(|cli| cli.command)
        };
        assert!(matches!(
            run(&["--kubeconfig", "/etc/kubeconfig"]),
            Ok(Command::Run {
                config_dir: None,
                kubeconfig: Some(_),
                kubernetes: false,
                ..
            })
        ));
        assert!(matches!(
            run(&["--kubernetes"]),
            Ok(Command::Run {
                config_dir: None,
                kubernetes: true,
                ..
            })
        ));
        assert!(matches!(
            run(&["--config-dir", "/etc/nexthop"]),
            Ok(Command::Run {
                config_dir: Some(_),
                kubeconfig: None,
                kubernetes: false,
                ..
            })
        ));
        assert!(run(&[]).is_err());
        assert!(run(&["--config-dir", "/etc/nexthop", "--kubernetes"]).is_err());
        assert!(run(&["--config-dir", "/etc/nexthop", "--kubeconfig", "k"]).is_err());
        assert!(run(&["--kubernetes", "--kubeconfig", "k"]).is_err());
    }

    #[test]
    fn lease_store_option_parses() {
        let run = |args: &[&str]| {
            let common = [
                "nexthop-agent",
                "run",
                "--node",
                "n1",
                "--config-dir",
                "/etc/nexthop",
            ];
            Cli::try_parse_from(common.iter().chain(args)).map(|cli| cli.command)
        };
        assert!(matches!(
            run(&[]),
            Ok(Command::Run {
                lease_store: None,
                ..
            })
        ));
        match run(&["--lease-store", "etcd:http://127.0.0.1:2379"]) {
            Ok(Command::Run {
                lease_store: Some(StoreConfig::Etcd(endpoints)),
                lease_location,
                ..
            }) => {
                assert_eq!(endpoints, ["http://127.0.0.1:2379"]);
                assert_eq!(lease_location.lease_namespace, "kube-system");
                assert_eq!(lease_location.lease_etcd_prefix, "nexthop/leases");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(&["--lease-store", "kubernetes", "--lease-namespace", "l2"]),
            Ok(Command::Run {
                lease_store: Some(StoreConfig::Kubernetes),
                ..
            })
        ));
        let err = run(&["--lease-store", "zookeeper:127.0.0.1:2181"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected etcd:http://HOST:PORT"), "{err}");
        let lease = |args: &[&str]| {
            Cli::try_parse_from(["nexthop-agent", "lease"].iter().chain(args))
                .map(|cli| cli.command)
        };
        assert!(matches!(
            lease(&[
                "list",
                "--lease-store",
                "kubernetes",
                "--kubeconfig",
                "k",
                "-o",
                "json"
            ]),
            Ok(Command::Lease {
                command: LeaseCommand::List { .. }
            })
        ));
        assert!(matches!(
            lease(&["get", "web", "--lease-store", "etcd:http://[::1]:2379"]),
            Ok(Command::Lease {
                command: LeaseCommand::Get { .. }
            })
        ));
        assert!(lease(&["list"]).is_err(), "the store is required");
    }

    #[test]
    fn command_line_parses() {
        let cli = Cli::try_parse_from([
            "nexthop-agent",
            "run",
            "--config-dir",
            "/etc/nexthop",
            "--node",
            "k8s-w0",
            "--router-id",
            "10.0.0.1",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Run {
                router_id: Some(_),
                ..
            }
        ));
        let cli = Cli::try_parse_from([
            "nexthop-agent",
            "bgp",
            "routes",
            "available",
            "ipv4",
            "unicast",
            "-o",
            "json",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Bgp {
                query: BgpQuery::Routes { .. }
            }
        ));
    }

    #[test]
    fn masquerade_flags_are_checked_as_ciliums_agent_checks_them() {
        let masquerade = |args: &[&str]| {
            let common = [
                "nexthop-agent",
                "run",
                "--node",
                "n1",
                "--kubernetes",
                "--enable-bpf-masquerade",
            ];
            match Cli::try_parse_from(common.iter().chain(args))
                .unwrap()
                .command
            {
                Command::Run { datapath, .. } => datapath.masquerade(),
                _ => unreachable!("a run command"),
            }
        };
        let e = masquerade(&["--ipv4-native-routing-cidr", "10.0.0.0/16"]).unwrap_err();
        assert!(e.contains("--kube-proxy-replacement"), "{e}");
        let e = masquerade(&["--kube-proxy-replacement"]).unwrap_err();
        assert!(e.contains("--ipv4-native-routing-cidr"), "{e}");
        let dir = std::env::temp_dir().join(format!("nexthop-ipmasq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config");
        std::fs::write(&file, "nonMasqueradeCIDRs: [10.1.0.0/16, 192.0.2.0/24]\n").unwrap();
        let path = file.to_str().unwrap();
        let base = [
            "--kube-proxy-replacement",
            "--ipv4-native-routing-cidr",
            "10.0.0.0/16",
            "--enable-ip-masq-agent",
            "--ip-masq-agent-config-path",
        ];
        let settings = masquerade(&[&base[..], &[path]].concat()).unwrap().unwrap();
        assert_eq!(
            settings.native_routing_cidr,
            Some("10.0.0.0/16".parse().unwrap())
        );
        assert_eq!(settings.non_masquerade.len(), 2);
        std::fs::write(&file, "nonMasqueradeCIDRs: [10.1.0.0/33]\n").unwrap();
        let e = masquerade(&[&base[..], &[path]].concat()).unwrap_err();
        assert!(e.contains(path), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        let e = masquerade(&[&base[..], &["/nonexistent/ip-masq-agent"]].concat()).unwrap_err();
        assert!(e.contains("/nonexistent/ip-masq-agent"), "{e}");
    }
}
