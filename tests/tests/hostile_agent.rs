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
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let mut rest = Vec::new();
    let closed = matches!(reader.read_to_end(&mut rest), Ok(0));
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
