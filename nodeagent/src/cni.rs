//! The CNI plugin (`nexthop-cni`): the container runtime's side of the CNI
//! specification 1.0 (and 1.1's STATUS) — the command and container from
//! the environment, the network configuration on standard input, the result
//! or error as the specification's JSON on standard output.
//!
//! Owns the protocol: checking the environment and configuration, the
//! result and error layouts and codes, VERSION. Setting a pod up is the
//! agent's (`endpoints`), asked over its query socket; the plugin keeps no
//! state of its own.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::endpoints::{Endpoint, EndpointRequest};
use crate::status::{Request, Response};

/// The versions of the specification the plugin speaks.
pub const SUPPORTED_VERSIONS: [&str; 6] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", "1.1"];

/// The specification's error codes.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODE_FAILURE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// The plugin is not available (STATUS).
    pub const NOT_AVAILABLE: u32 = 50;
}

/// An error as the specification prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    /// One of [`code`].
    pub code: u32,
    /// What went wrong.
    pub msg: String,
    /// More about it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    /// An error with a code and a message.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }
}

/// The part of the network configuration the plugin reads.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetConf {
    cni_version: String,
    #[serde(default)]
    name: String,
    /// The agent's query socket (default [`crate::cli::DEFAULT_SOCKET`]).
    #[serde(default)]
    socket: Option<PathBuf>,
}

/// What the plugin was run with.
#[derive(Clone, Debug, Default)]
pub struct Invocation {
    /// The `CNI_*` environment variables.
    pub env: BTreeMap<String, String>,
    /// Standard input: the network configuration.
    pub stdin: Vec<u8>,
}

/// What the plugin prints and its exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Standard output.
    pub stdout: String,
    /// 0 on success.
    pub exit: i32,
}

impl Outcome {
    fn ok(stdout: String) -> Self {
        Outcome { stdout, exit: 0 }
    }

    fn error(version: &str, e: CniError) -> Self {
        let mut v = json!({"cniVersion": version, "code": e.code, "msg": e.msg});
        if !e.details.is_empty() {
            v["details"] = Value::String(e.details);
        }
        Outcome {
            stdout: v.to_string() + "\n",
            exit: 1,
        }
    }
}

/// Run one plugin command; `agent` carries a request to the agent (its
/// query socket) and brings back the answer.
pub fn run(
    inv: &Invocation,
    agent: impl FnOnce(&std::path::Path, Request) -> std::io::Result<Response>,
) -> Outcome {
    let env = |name: &str| inv.env.get(name).map(String::as_str).unwrap_or_default();
    let command = env("CNI_COMMAND");
    if command == "VERSION" {
        let version = serde_json::from_slice::<Value>(&inv.stdin)
            .ok()
            .and_then(|v| v["cniVersion"].as_str().map(String::from))
            .unwrap_or_else(|| "1.0.0".into());
        return Outcome::ok(
            json!({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS}).to_string()
                + "\n",
        );
    }
    let conf: NetConf = match serde_json::from_slice(&inv.stdin) {
        Ok(c) => c,
        Err(e) => {
            return Outcome::error(
                "1.0.0",
                CniError::new(
                    code::DECODE_FAILURE,
                    format!("the network configuration on stdin: {e}"),
                ),
            );
        }
    };
    let version = conf.cni_version.as_str();
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Outcome::error(
            version,
            CniError {
                code: code::INCOMPATIBLE_VERSION,
                msg: format!("cniVersion {version:?} is not supported"),
                details: format!("supported: {}", SUPPORTED_VERSIONS.join(", ")),
            },
        );
    }
    let socket = conf
        .socket
        .clone()
        .unwrap_or_else(|| crate::cli::DEFAULT_SOCKET.into());
    let request = match command {
        "STATUS" => Request::CniStatus,
        "ADD" | "DEL" | "CHECK" => match endpoint_request(&inv.env, command) {
            Ok(r) => match command {
                "ADD" => Request::EndpointAdd(r),
                "DEL" => Request::EndpointDel(r),
                _ => Request::EndpointCheck(r),
            },
            Err(e) => return Outcome::error(version, e),
        },
        "" => {
            return Outcome::error(
                version,
                CniError::new(code::INVALID_ENVIRONMENT, "CNI_COMMAND is not set"),
            );
        }
        other => {
            return Outcome::error(
                version,
                CniError::new(
                    code::INVALID_ENVIRONMENT,
                    format!("CNI_COMMAND {other:?} is not ADD, DEL, CHECK, STATUS or VERSION"),
                ),
            );
        }
    };
    let response = match agent(&socket, request) {
        Ok(r) => r,
        Err(e) => {
            let code = if command == "STATUS" {
                code::NOT_AVAILABLE
            } else {
                code::TRY_AGAIN_LATER
            };
            return Outcome::error(
                version,
                CniError::new(code, format!("network {}: {e}", conf.name)),
            );
        }
    };
    if let Some(e) = response.cni_error {
        let e = if command == "STATUS" {
            CniError {
                code: code::NOT_AVAILABLE,
                ..e
            }
        } else {
            e
        };
        return Outcome::error(version, e);
    }
    match (command, response.endpoint) {
        ("ADD", Some(endpoint)) => Outcome::ok(result(version, &endpoint).to_string() + "\n"),
        ("ADD", None) => Outcome::error(
            version,
            CniError::new(code::IO_FAILURE, "the agent answered without an endpoint"),
        ),
        _ => Outcome::ok(String::new()),
    }
}

/// The container of an ADD, DEL or CHECK, from the environment.
fn endpoint_request(
    env: &BTreeMap<String, String>,
    command: &str,
) -> Result<EndpointRequest, CniError> {
    let need = |name: &str| {
        env.get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| CniError::new(code::INVALID_ENVIRONMENT, format!("{name} is not set")))
    };
    let container_id = need("CNI_CONTAINERID")?;
    let ifname = need("CNI_IFNAME")?;
    // DEL may come without a namespace (it is gone): nothing to enter then.
    let netns = match (command, need("CNI_NETNS")) {
        ("DEL", Err(_)) => PathBuf::from("/"),
        (_, netns) => PathBuf::from(netns?),
    };
    let args: BTreeMap<&str, &str> = env
        .get("CNI_ARGS")
        .map(String::as_str)
        .unwrap_or_default()
        .split(';')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    Ok(EndpointRequest {
        container_id,
        netns,
        ifname,
        namespace: args.get("K8S_POD_NAMESPACE").map(|s| s.to_string()),
        pod: args.get("K8S_POD_NAME").map(|s| s.to_string()),
    })
}

/// The ADD result: both interfaces, the pod's address and default route.
fn result(version: &str, e: &Endpoint) -> Value {
    json!({
        "cniVersion": version,
        "interfaces": [
            {"name": e.host_interface, "mac": e.host_mac},
            {"name": e.request.ifname, "mac": e.mac, "sandbox": e.request.netns},
        ],
        "ips": [{"address": format!("{}/32", e.ip), "gateway": e.gateway.to_string(), "interface": 1}],
        "routes": [{"dst": "0.0.0.0/0", "gw": e.gateway.to_string()}],
        "dns": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invocation(command: &str, stdin: &str) -> Invocation {
        let mut env = BTreeMap::new();
        env.insert("CNI_COMMAND".to_string(), command.to_string());
        env.insert("CNI_CONTAINERID".into(), "abc".into());
        env.insert("CNI_NETNS".into(), "/var/run/netns/pod".into());
        env.insert("CNI_IFNAME".into(), "eth0".into());
        env.insert(
            "CNI_ARGS".into(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=curl-pod".into(),
        );
        Invocation {
            env,
            stdin: stdin.as_bytes().to_vec(),
        }
    }

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"cilium","type":"nexthop-cni"}"#;

    fn unreachable(_: &std::path::Path, _: Request) -> std::io::Result<Response> {
        Err(std::io::Error::other("cannot reach the agent"))
    }

    fn error_code(out: &Outcome) -> u64 {
        assert_eq!(out.exit, 1, "{}", out.stdout);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert!(v["msg"].is_string());
        v["code"].as_u64().unwrap()
    }

    #[test]
    fn version_needs_no_agent() {
        let out = run(&invocation("VERSION", CONF), unreachable);
        assert_eq!(out.exit, 0);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert!(
            v["supportedVersions"]
                .as_array()
                .unwrap()
                .contains(&json!("0.4.0"))
        );
    }

    #[test]
    fn bad_input_gets_the_specifications_codes() {
        let out = run(&invocation("ADD", "{not json"), unreachable);
        assert_eq!(error_code(&out), code::DECODE_FAILURE as u64);
        let old = r#"{"cniVersion":"0.1.0","name":"x","type":"nexthop-cni"}"#;
        let out = run(&invocation("ADD", old), unreachable);
        assert_eq!(error_code(&out), code::INCOMPATIBLE_VERSION as u64);
        assert!(out.stdout.contains("0.1.0"));
        let mut inv = invocation("ADD", CONF);
        inv.env.remove("CNI_IFNAME");
        let out = run(&inv, unreachable);
        assert_eq!(error_code(&out), code::INVALID_ENVIRONMENT as u64);
        assert!(out.stdout.contains("CNI_IFNAME"), "{}", out.stdout);
        let out = run(&invocation("FROB", CONF), unreachable);
        assert_eq!(error_code(&out), code::INVALID_ENVIRONMENT as u64);
        let out = run(&invocation("ADD", CONF), unreachable);
        assert_eq!(error_code(&out), code::TRY_AGAIN_LATER as u64);
        let out = run(&invocation("STATUS", CONF), unreachable);
        assert_eq!(error_code(&out), code::NOT_AVAILABLE as u64);
    }

    #[test]
    fn add_asks_the_agent_for_the_pod_and_prints_the_result() {
        let out = run(&invocation("ADD", CONF), |socket, request| {
            assert_eq!(socket, std::path::Path::new(crate::cli::DEFAULT_SOCKET));
            let Request::EndpointAdd(r) = request else {
                panic!("{request:?}")
            };
            assert_eq!(r.pod.as_deref(), Some("curl-pod"));
            assert_eq!(r.namespace.as_deref(), Some("default"));
            Ok(Response {
                endpoint: Some(Endpoint {
                    id: 7,
                    request: r,
                    ip: "10.244.1.9".parse().unwrap(),
                    gateway: "10.244.1.1".parse().unwrap(),
                    host_interface: "lxc0000abcd".into(),
                    host_mac: "02:00:00:00:00:01".into(),
                    mac: "02:00:00:00:00:02".into(),
                }),
                ..Response::default()
            })
        });
        assert_eq!(out.exit, 0, "{}", out.stdout);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["ips"][0]["address"], "10.244.1.9/32");
        assert_eq!(v["ips"][0]["interface"], 1);
        assert_eq!(v["interfaces"][1]["sandbox"], "/var/run/netns/pod");
        assert_eq!(v["routes"][0]["gw"], "10.244.1.1");
    }

    #[test]
    fn the_agents_refusal_is_printed_with_its_code() {
        let out = run(&invocation("ADD", CONF), |_, _| {
            Ok(Response {
                cni_error: Some(CniError::new(code::TRY_AGAIN_LATER, "no pod CIDR")),
                ..Response::default()
            })
        });
        assert_eq!(error_code(&out), code::TRY_AGAIN_LATER as u64);
        let mut inv = invocation("DEL", CONF);
        inv.env.remove("CNI_NETNS");
        let out = run(&inv, |_, request| {
            assert!(matches!(request, Request::EndpointDel(_)));
            Ok(Response::default())
        });
        assert_eq!(out, Outcome::ok(String::new()), "DEL without a namespace");
    }
}
