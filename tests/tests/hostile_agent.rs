//! The agent under hostile but realistic use (robustness probes): a flood of
//! query clients past its file-descriptor limit, a second agent on the same
//! socket, oversized and garbage requests, and a configuration file nested
//! 100,000 levels deep. The agent must keep serving through all of it. Only
//! Unix sockets in the test's own directory are used; no network.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nexthop_testkit::{Process, wait_for};

const AGENT: &str = env!("CARGO_BIN_EXE_nexthop-agent-under-test");

/// A scratch directory for one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("nh-hostile-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("config")).unwrap();
        std::fs::write(
            dir.join("config/node.yaml"),
            "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus: {addresses: [{type: InternalIP, address: 127.0.0.1}]}\n",
        )
        .unwrap();
        Scratch(dir)
    }

    fn socket(&self) -> PathBuf {
        self.0.join("agent.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.0.join("agent.log")).unwrap_or_default()
    }

    /// Start an agent on the directory, optionally under `prlimit`.
    fn agent(&self, nofile: Option<u32>) -> Process {
        let log = std::fs::File::create(self.0.join("agent.log")).unwrap();
        let mut command = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(AGENT);
                c
            }
            None => Command::new(AGENT),
        };
        command
            .args(["run", "--node", "n1", "--config-dir"])
            .arg(self.0.join("config"))
            .arg("--socket")
            .arg(self.socket())
            .stdout(Stdio::null())
            .stderr(log);
        let process = Process(command.spawn().unwrap());
        let socket = self.socket();
        wait_for(
            "the agent's query socket",
            Duration::from_secs(10),
            || peers(&socket).ok(),
            || self.log(),
        );
        process
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `bgp peers` through the CLI, as an operator would ask.
fn peers(socket: &Path) -> Result<String, String> {
    let out = Command::new(AGENT)
        .args(["bgp", "peers", "--socket"])
        .arg(socket)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Send `request` on a fresh connection; the reply line and whether the
/// agent closed the connection afterwards.
fn ask(socket: &Path, request: &[u8]) -> (String, bool) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The agent may stop reading (and close) before all of it is written.
    let _ = stream.write_all(request);
    // No more requests: the agent closes once it has answered this one.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut rest = Vec::new();
    // A Unix socket closed with unread data in it (the rest of an oversized
    // request) reads as a reset on the client's side: closed all the same.
    let closed = match reader.read_to_end(&mut rest) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    (line, closed)
}

#[test]
fn a_client_flood_past_the_fd_limit_does_not_stop_the_agent() {
    let scratch = Scratch::new("flood");
    let mut agent = scratch.agent(Some(64));
    let clients: Vec<UnixStream> = (0..80)
        .filter_map(|_| UnixStream::connect(scratch.socket()).ok())
        .collect();
    assert!(clients.len() >= 64, "{} clients connected", clients.len());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        agent.0.try_wait().unwrap().is_none(),
        "the agent exited: {}",
        scratch.log()
    );
    drop(clients);
    let answer = wait_for(
        "an answer once the clients are gone",
        Duration::from_secs(10),
        || peers(&scratch.socket()).ok(),
        || scratch.log(),
    );
    assert!(answer.starts_with("Node"), "{answer}");
    assert!(
        scratch.log().contains("cannot accept a query connection"),
        "the failure was logged: {}",
        scratch.log()
    );
}

#[test]
fn a_second_agent_on_the_same_socket_refuses_to_start() {
    let scratch = Scratch::new("second");
    let _first = scratch.agent(None);
    let second = Command::new(AGENT)
        .args(["run", "--node", "n1", "--config-dir"])
        .arg(scratch.0.join("config"))
        .arg("--socket")
        .arg(scratch.socket())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another nexthop-agent answers on"),
        "{stderr}"
    );
    assert!(peers(&scratch.socket()).is_ok(), "the first still answers");
}

#[test]
fn oversized_and_garbage_requests_get_an_error_and_the_agent_goes_on() {
    let scratch = Scratch::new("requests");
    let _agent = scratch.agent(None);
    let mut huge = vec![b'x'; 1 << 20];
    huge.push(b'\n');
    let (reply, closed) = ask(&scratch.socket(), &huge);
    assert!(
        reply.contains("\"error\":\"a request is at most 65536 bytes\""),
        "{reply}"
    );
    assert!(closed);
    let (reply, closed) = ask(&scratch.socket(), b"hello\n");
    assert!(reply.contains("\"error\":\"bad query: "), "{reply}");
    assert!(closed);
    let (reply, _) = ask(&scratch.socket(), b"{\"query\":\"peers\"}\n");
    assert!(reply.starts_with("{\"peers\":[]"), "{reply}");
}

#[test]
fn a_file_nested_too_deep_is_refused_while_queries_keep_being_answered() {
    let scratch = Scratch::new("deep");
    let _agent = scratch.agent(None);
    let deep = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    std::fs::write(scratch.0.join("config/deep.yaml"), deep).unwrap();
    wait_for(
        "the deep file refused",
        Duration::from_secs(10),
        || {
            scratch
                .log()
                .contains("nested more than 64 levels deep")
                .then_some(())
        },
        || scratch.log(),
    );
    assert!(peers(&scratch.socket()).is_ok(), "{}", scratch.log());
}

/// A peer script on loopback that announces routes whose NEXT_HOP is
/// unusable (unspecified, then the agent's own address) between good ones:
/// the bad ones are ignored and logged (RFC 4271 §6.3), the session stays.
#[test]
fn a_peer_announcing_unusable_next_hops_has_those_routes_ignored() {
    use nexthop_tests::feeder::{Feed, handshake, keep_up};
    use std::net::{Ipv4Addr, TcpListener};

    let scratch = Scratch::new("next-hop");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::fs::write(
        scratch.0.join("config/bgp.yaml"),
        format!(
            "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata: {{name: c}}\nspec:\n  bgpInstances:\n  - name: i\n    localASN: 65001\n    peers: [{{name: script, peerASN: 65101, peerAddress: 127.0.0.1, peerConfigRef: {{name: p}}}}]\n---\napiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {{name: p}}\nspec:\n  transport: {{peerPort: {port}}}\n  timers: {{connectRetryTimeSeconds: 1, holdTimeSeconds: 30, keepAliveTimeSeconds: 10}}\n  families: [{{afi: ipv4, safi: unicast}}]\n"
        ),
    )
    .unwrap();
    let _agent = scratch.agent(None);
    listener.set_nonblocking(false).unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    let feed = |next_hop: Ipv4Addr, first: Ipv4Addr, count: u32| Feed {
        asn: 65101,
        router_id: Ipv4Addr::new(10, 255, 1, 1),
        next_hop,
        first,
        count,
        as_path_every: None,
    };
    let good = feed(Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(18, 0, 0, 0), 5);
    handshake(&mut stream, &good).unwrap();
    for bad in [
        feed(Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(16, 0, 0, 0), 10),
        feed(Ipv4Addr::LOCALHOST, Ipv4Addr::new(17, 0, 0, 0), 10),
    ] {
        stream.write_all(&bad.updates()).unwrap();
    }
    stream.write_all(&good.updates()).unwrap();
    keep_up(&stream, Duration::from_secs(5)).unwrap();
    let received = |s: &Scratch| {
        let out = Command::new(AGENT)
            .args(["bgp", "routes", "received", "ipv4", "unicast", "--socket"])
            .arg(s.socket())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let routes = wait_for(
        "the good routes received",
        Duration::from_secs(10),
        || {
            let r = received(&scratch);
            r.contains("18.0.4.0/24").then_some(r)
        },
        || scratch.log(),
    );
    assert!(
        !routes.contains("16.0.0.0/24") && !routes.contains("17.0.0.0/24"),
        "{routes}"
    );
    let log = scratch.log();
    assert_eq!(
        log.matches("semantically incorrect NEXT_HOP").count(),
        2,
        "{log}"
    );
    let peers = peers(&scratch.socket()).unwrap();
    assert!(peers.contains("established"), "{peers}");
}
