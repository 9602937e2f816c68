//! The socket-level balancer (the eBPF crate's `sock` programs on a cgroup)
//! against router-core's `Service::connect`, with real sockets.
//!
//! Generated service tables go into the maps; for each one, sockets made in
//! the test's own cgroup call `connect()` or `sendto()` to a frontend or to
//! an address that is none, with the random number given to both sides
//! (TCP) or the socket's cookie as the slot (UDP). What router-core decides
//! must be what the kernel did: the backend is the one a listener on it
//! sees the connection or datagram arrive at, the socket's peer and a
//! reply's source read as the frontend, a frontend without in-cluster
//! backends fails the call with `EHOSTUNREACH`, and traffic to anything
//! else goes untranslated. A negative control with a shifted slot must
//! disagree.
//!
//! Everything happens in a network namespace of the test's own where every
//! IPv4 address and every address of fd00::/16 is local (`local 0.0.0.0/0
//! dev lo`), so each backend address is reachable and nothing leaves. `harness = false`: one thread,
//! so the process itself moves into that namespace and cgroup.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use nexthop_offload_bpf::datapath::{Capacity, Datapath, cgroup2_mount, privileged};
use nexthop_offload_bpf::services::ServiceMaps;
use nexthop_offload_bpf::snapshot::Snapshot;
use nexthop_offload_bpf_common::service::{L3n4Key, SocketKey};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use router_core::datapath::pipeline::{Config, OwnedTables};
use router_core::fib::Fib;
use router_core::neighbour;
use router_core::service::Protocol;
use router_core::service::datapath::{self, Algorithm, Connect, Service};
use router_core::service::lookup::socket_slot;
use router_core::service::maglev;
use router_core::service::table::{
    BackendSpec, BackendState, FrontendKind, FrontendSpec, L3n4, ServiceTable,
};

const TABLES: u32 = 60;
const CALLS: usize = 40;
/// `EHOSTUNREACH`.
const EHOSTUNREACH: i32 = 113;
/// Backend ports (each has a TCP listener on every address).
const BACKEND_PORTS: [u16; 2] = [8080, 8081];
/// `ECONNREFUSED`.
const ECONNREFUSED: i32 = 111;

/// Backend host `host`'s address in the family `v6` says.
fn backend_ip(host: u8, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, host.into()))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 1, host))
    }
}

/// One generated service table and how it is served.
#[derive(Clone, Debug)]
struct Table {
    algorithm: Algorithm,
    frontends: BTreeMap<L3n4, FrontendSpec>,
}

/// One socket call: to the `index`-th frontend (modulo their number) or,
/// with `None`, to a backend's address directly or to a frontend's address
/// over the other protocol; over TCP or UDP; UDP connected or not.
#[derive(Clone, Debug)]
struct Call {
    frontend: Option<usize>,
    other: u8,
    udp: bool,
    connected: bool,
    random: u32,
}

fn backend(protocol: Protocol, v6: bool) -> impl Strategy<Value = BackendSpec> {
    (
        1u8..6,
        prop::sample::select(BACKEND_PORTS.to_vec()),
        prop::bool::weighted(0.8),
        any::<bool>(),
    )
        .prop_map(move |(host, port, active, local)| BackendSpec {
            addr: L3n4 {
                addr: backend_ip(host, v6),
                port,
                protocol,
            },
            state: if active {
                BackendState::Active
            } else {
                BackendState::Terminating
            },
            local,
            weight: 100,
            node: None,
        })
}

fn frontend() -> impl Strategy<Value = (L3n4, FrontendSpec)> {
    (
        1u8..4,
        prop::sample::select(vec![80u16, 53]),
        any::<bool>(),
        prop::bool::weighted(0.3),
    )
        .prop_flat_map(|(host, port, udp, v6)| {
            let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
            let addr = if v6 {
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0x96, 0, 0, 0, 0, 0, host.into()))
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 96, 0, host))
            };
            (
                Just(L3n4 {
                    addr,
                    port,
                    protocol,
                }),
                prop::bool::weighted(0.2),
                prop::collection::vec(backend(protocol, v6), 0..5),
            )
        })
        .prop_map(|(addr, internal_local, backends)| {
            let spec = FrontendSpec {
                service: ("default".into(), "web".into()),
                kind: FrontendKind::ClusterIp,
                external_local: false,
                internal_local,
                affinity_seconds: None,
                backends,
            };
            (addr, spec)
        })
}

fn table() -> impl Strategy<Value = Table> {
    (
        prop_oneof![Just(Algorithm::Random), Just(Algorithm::Maglev)],
        prop::collection::vec(frontend(), 1..6),
    )
        .prop_map(|(algorithm, frontends)| Table {
            algorithm,
            frontends: frontends.into_iter().collect(),
        })
}

fn call() -> impl Strategy<Value = Call> {
    (
        prop_oneof![4 => any::<usize>().prop_map(Some), 1 => Just(None)],
        any::<u8>(),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(|(frontend, other, udp, connected, random)| Call {
            frontend,
            other,
            udp,
            connected,
            random,
        })
}

/// What one call did in the kernel.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Reached a listener on `at`; the socket's peer (`getpeername`) or
    /// the reply's source (`recvfrom`) read as `shown`.
    Reached { at: SocketAddr, shown: SocketAddr },
    /// Failed with this errno.
    Failed(i32),
    /// A datagram no listener received (nothing listens where it went).
    Lost,
}

/// The test's namespace, cgroup and listeners.
struct World {
    cgroup: PathBuf,
    /// The cgroup the process came from (it goes back there at the end).
    home: PathBuf,
    tcp: Vec<TcpListener>,
    /// A datagram listener on every backend address and port.
    udp: Vec<UdpSocket>,
}

impl World {
    fn enter(dp: &mut Datapath) -> World {
        // SAFETY: a plain syscall; this process has one thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            panic!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error());
        }
        for args in [
            &["link", "set", "lo", "up"][..],
            &["route", "add", "local", "0.0.0.0/0", "dev", "lo"][..],
            &["-6", "route", "add", "local", "fd00::/16", "dev", "lo"][..],
            &["addr", "add", "fd00:ffff::1/128", "dev", "lo", "nodad"][..],
        ] {
            let status = Command::new("ip").args(args).status().expect("ip runs");
            assert!(status.success(), "ip {args:?}");
        }
        // IPv6 binds an address only if it is assigned, or with this.
        std::fs::write("/proc/sys/net/ipv6/ip_nonlocal_bind", "1")
            .expect("net.ipv6.ip_nonlocal_bind of the test's namespace");
        let root = cgroup2_mount().expect("a cgroup2 hierarchy is mounted");
        let own = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("this process's cgroup2 path");
        let home = root.join(path.trim_start_matches('/'));
        let tcp = BACKEND_PORTS
            .iter()
            .map(|&p| {
                // Dual-stack: IPv4 connections arrive as mapped addresses.
                let l = TcpListener::bind(("::", p)).expect("a listener");
                l.set_nonblocking(true).unwrap();
                l
            })
            .collect();
        let udp = (1..6)
            .flat_map(|host| [backend_ip(host, false), backend_ip(host, true)])
            .flat_map(|ip| BACKEND_PORTS.map(|p| SocketAddr::new(ip, p)))
            .map(|at| {
                let l = UdpSocket::bind(at).expect("a datagram listener");
                l.set_nonblocking(true).unwrap();
                l
            })
            .collect();
        // Last, so that from its creation on the world's drop removes it.
        let cgroup = root.join(format!("nexthop-sockets-{}", std::process::id()));
        std::fs::create_dir(&cgroup).expect("a cgroup of the test's own");
        let world = World {
            cgroup,
            home,
            tcp,
            udp,
        };
        dp.attach_sockets(&world.cgroup)
            .expect("the socket programs attach");
        std::fs::write(world.cgroup.join("cgroup.procs"), "0").expect("into the test's cgroup");
        world
    }

    /// Make the call from a socket of this cgroup; its cookie and outcome.
    fn call(&self, to: SocketAddr, udp: bool, connected: bool) -> (u64, Outcome) {
        if udp {
            self.udp(to, connected)
        } else {
            self.tcp(to)
        }
    }

    fn tcp(&self, to: SocketAddr) -> (u64, Outcome) {
        let socket = Socket::new(to, libc::SOCK_STREAM);
        let cookie = socket.cookie();
        if let Err(e) = socket.connect(to) {
            return (cookie, Outcome::Failed(e.raw_os_error().unwrap_or(0)));
        }
        let stream = TcpStream::from(socket.0);
        let shown = stream.peer_addr().expect("a connected socket's peer");
        for _ in 0..1000 {
            for l in &self.tcp {
                match l.accept() {
                    Ok((accepted, _)) => {
                        let at = accepted.local_addr().unwrap();
                        let at = SocketAddr::new(at.ip().to_canonical(), at.port());
                        return (cookie, Outcome::Reached { at, shown });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("accept: {e}"),
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("a connection to {to} arrived at no listener");
    }

    fn udp(&self, to: SocketAddr, connected: bool) -> (u64, Outcome) {
        let socket = Socket::new(to, libc::SOCK_DGRAM);
        let cookie = socket.cookie();
        let udp = UdpSocket::from(socket.0);
        udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let sent = if connected {
            udp.connect(to).and_then(|()| udp.send(b"x"))
        } else {
            udp.send_to(b"x", to)
        };
        if let Err(e) = sent {
            return (cookie, Outcome::Failed(e.raw_os_error().unwrap_or(0)));
        }
        for _ in 0..200 {
            for l in &self.udp {
                match l.recv_from(&mut [0; 8]) {
                    Ok((_, from)) => {
                        l.send_to(b"y", from).expect("the reply leaves");
                        let (_, shown) = udp.recv_from(&mut [0; 8]).expect("the reply arrives");
                        let at = l.local_addr().unwrap();
                        return (cookie, Outcome::Reached { at, shown });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("recvfrom: {e}"),
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        (cookie, Outcome::Lost)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::write(self.home.join("cgroup.procs"), "0");
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

/// A socket made with `socket(2)` in this cgroup.
struct Socket(std::os::fd::OwnedFd);

impl Socket {
    /// A socket of `kind` for talking to `to`'s family.
    fn new(to: SocketAddr, kind: libc::c_int) -> Socket {
        let family = if to.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain syscall; the descriptor is owned from here on.
        let fd = unsafe { libc::socket(family, kind, 0) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor nobody else owns.
        Socket(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
    }

    fn cookie(&self) -> u64 {
        let mut cookie = 0u64;
        let mut len = size_of::<u64>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `cookie`.
        let rc = unsafe {
            libc::getsockopt(
                self.0.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_COOKIE,
                (&mut cookie as *mut u64).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "SO_COOKIE: {}", std::io::Error::last_os_error());
        cookie
    }

    fn connect(&self, to: SocketAddr) -> std::io::Result<()> {
        // SAFETY: connect reads a socket address of the length given.
        let rc = unsafe {
            match to {
                SocketAddr::V4(v4) => {
                    let sin = libc::sockaddr_in {
                        sin_family: libc::AF_INET as libc::sa_family_t,
                        sin_port: v4.port().to_be(),
                        sin_addr: libc::in_addr {
                            s_addr: u32::from_ne_bytes(v4.ip().octets()),
                        },
                        sin_zero: [0; 8],
                    };
                    libc::connect(
                        self.0.as_raw_fd(),
                        (&sin as *const libc::sockaddr_in).cast(),
                        size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                }
                SocketAddr::V6(v6) => {
                    let sin6 = libc::sockaddr_in6 {
                        sin6_family: libc::AF_INET6 as libc::sa_family_t,
                        sin6_port: v6.port().to_be(),
                        sin6_flowinfo: 0,
                        sin6_addr: libc::in6_addr {
                            s6_addr: v6.ip().octets(),
                        },
                        sin6_scope_id: 0,
                    };
                    libc::connect(
                        self.0.as_raw_fd(),
                        (&sin6 as *const libc::sockaddr_in6).cast(),
                        size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    )
                }
            }
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The service maps for `t` over otherwise empty tables.
fn serve(dp: &mut Datapath, t: &Table) -> Result<Service, String> {
    let config = datapath::Config {
        algorithm: t.algorithm,
        maglev: maglev::Config::new(maglev::DEFAULT_TABLE_SIZE, maglev::DEFAULT_HASH_SEED)
            .expect("the default size"),
        ..datapath::Config::default()
    };
    let table = ServiceTable::new(&config.maglev, t.frontends.clone());
    let tables = OwnedTables {
        fib: Fib::new(),
        neighbours: neighbour::Table::new(neighbour::Config::default()),
        ports: BTreeMap::new(),
        identities: BTreeMap::new(),
        config: Config::default(),
    };
    let mut snapshot = Snapshot::new(&tables.tables(), |_| None).map_err(|e| e.to_string())?;
    snapshot.services =
        Some(ServiceMaps::new(&config, &table, &BTreeSet::new()).map_err(|e| e.to_string())?);
    dp.sync(&snapshot).map_err(|e| e.to_string())?;
    Ok(Service::new(config, table))
}

/// Where `c` goes, and whether over UDP.
fn destination(c: &Call, frontends: &[L3n4]) -> (SocketAddr, bool) {
    let socket = |f: &L3n4| SocketAddr::new(f.addr, f.port);
    match c.frontend {
        Some(i) => {
            let f = &frontends[i % frontends.len()];
            (socket(f), f.protocol == Protocol::Udp)
        }
        None if c.other.is_multiple_of(2) => {
            let host = 1 + c.other / 2 % 5;
            let port = BACKEND_PORTS[usize::from(c.other / 10 % 2)];
            let v6 = c.other / 20 % 2 == 1;
            (SocketAddr::new(backend_ip(host, v6), port), c.udp)
        }
        None => {
            let f = &frontends[usize::from(c.other) % frontends.len()];
            (socket(f), f.protocol != Protocol::Udp)
        }
    }
}

/// What router-core says the call becomes, for the socket's slot shifted
/// by `shift` (the negative control's).
fn expected(service: &Service, to: SocketAddr, udp: bool, slot: u64) -> (Connect, Outcome) {
    let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
    let frontend = L3n4 {
        addr: to.ip(),
        port: to.port(),
        protocol,
    };
    let connect = service.connect(&frontend, slot);
    let outcome = match connect {
        Connect::Backend(b) => Outcome::Reached {
            at: SocketAddr::new(b.addr, b.port),
            shown: to,
        },
        Connect::Unreachable => Outcome::Failed(EHOSTUNREACH),
        Connect::NotService => {
            let listened = (1..6)
                .any(|h| [backend_ip(h, false), backend_ip(h, true)].contains(&to.ip()))
                && BACKEND_PORTS.contains(&to.port());
            if listened {
                Outcome::Reached { at: to, shown: to }
            } else if udp {
                Outcome::Lost
            } else {
                Outcome::Failed(ECONNREFUSED)
            }
        }
    };
    (connect, outcome)
}

/// Outcomes seen, by kind.
type Stats = BTreeMap<&'static str, u32>;

fn compare(
    dp: &mut Datapath,
    world: &World,
    t: &Table,
    calls: &[Call],
    shift: u64,
    stats: &mut Stats,
) -> Result<(), String> {
    let service = serve(dp, t)?;
    let frontends: Vec<L3n4> = t.frontends.keys().copied().collect();
    for (i, c) in calls.iter().enumerate() {
        let (to, udp) = destination(c, &frontends);
        dp.set_service_inputs(Some((0, c.random)))
            .map_err(|e| e.to_string())?;
        let (cookie, got) = world.call(to, udp, c.connected);
        let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
        let slot = socket_slot(protocol.number(), c.random, cookie).wrapping_add(shift);
        let (connect, want) = expected(&service, to, udp, slot);
        if got != want {
            return Err(format!(
                "call {i} ({c:?}) to {to} over {protocol:?}: router-core says {connect:?}, \
                 so {want:?}; the kernel did {got:?}"
            ));
        }
        let kind = match connect {
            Connect::Backend(b) => {
                let key = SocketKey {
                    cookie,
                    backend: L3n4Key::new(b.addr, b.port, protocol),
                    pad: [0; 4],
                };
                let remembered = dp.socket_translation(&key).map_err(|e| e.to_string())?;
                let asked = L3n4Key::new(to.ip(), to.port(), protocol);
                if remembered != Some(asked) {
                    return Err(format!(
                        "call {i}: SOCK_REVNAT holds {remembered:?} for {key:?}, not {asked:?}"
                    ));
                }
                match (udp, c.connected, to.is_ipv6()) {
                    (false, _, false) => "tcp to a backend",
                    (true, true, false) => "udp connected to a backend",
                    (true, false, false) => "udp sent to a backend",
                    (false, _, true) => "tcp over ipv6 to a backend",
                    (true, _, true) => "udp over ipv6 to a backend",
                }
            }
            Connect::Unreachable => "no backend: EHOSTUNREACH",
            Connect::NotService => "not a service",
        };
        *stats.entry(kind).or_default() += 1;
    }
    Ok(())
}

fn main() {
    if let Err(why) = privileged() {
        nexthop_testkit::skip(&format!("the socket-level balancer test: {why}"));
        return;
    }
    let mut dp = Datapath::load(&Capacity::default()).expect("the eBPF object loads");
    let world = World::enter(&mut dp);
    let dp = RefCell::new(dp);
    let cases = (table(), prop::collection::vec(call(), CALLS));
    let mut runner = TestRunner::new(RunnerConfig {
        cases: TABLES,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let stats = RefCell::new(Stats::new());
    let result = runner.run(&cases, |(t, calls)| {
        let (mut dp, mut stats) = (dp.borrow_mut(), stats.borrow_mut());
        compare(&mut dp, &world, &t, &calls, 0, &mut stats).map_err(TestCaseError::fail)
    });
    let stats = stats.into_inner();
    if let Err(e) = result {
        drop(world);
        panic!("the socket-level balancer disagrees with router-core: {e}");
    }
    println!("{} tables × {CALLS} calls agree: {stats:?}", TABLES);
    for kind in [
        "tcp to a backend",
        "udp connected to a backend",
        "udp sent to a backend",
        "tcp over ipv6 to a backend",
        "udp over ipv6 to a backend",
        "no backend: EHOSTUNREACH",
        "not a service",
    ] {
        assert!(
            stats.get(kind).copied().unwrap_or(0) > 0,
            "no call of kind {kind:?}"
        );
    }
    // Negative control: the comparison notices a slot off by one.
    let mut control = TestRunner::new(RunnerConfig {
        cases: TABLES,
        failure_persistence: None,
        max_shrink_iters: 0,
        ..RunnerConfig::default()
    });
    let noticed = control.run(&cases, |(t, calls)| {
        compare(
            &mut dp.borrow_mut(),
            &world,
            &t,
            &calls,
            1,
            &mut Stats::new(),
        )
        .map_err(TestCaseError::fail)
    });
    assert!(noticed.is_err(), "a shifted slot went unnoticed");
    println!("negative control (slot + 1) noticed");
}
