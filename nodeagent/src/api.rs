//! The query socket: a Unix stream socket speaking line-delimited JSON, one
//! [`Request`] per line, one [`Response`] per line (an `observe --follow`
//! gets one more for every new flow, until the client closes). Requests are
//! bounded ([`MAX_REQUEST_BYTES`]); a bad one gets a response naming the
//! error, then the connection closes.

use std::io;
use std::path::Path;

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};

use crate::cni::{CniError, code};
use crate::controller::Controller;
use crate::endpoints::{Endpoint, Endpoints};
use crate::hubble::{self, Hubble};
use crate::report::{self, Setup};
use crate::status::{L2AnnounceEntry, Request, Response};
use router_core::flow::hubble::{Filter, Observed};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

/// The longest request line the socket reads; a longer one gets an error.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Longest pause between retries when accepting fails (e.g. out of file
/// descriptors): the agent keeps running and tries again.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Create the query socket at `path`. A socket file left by an agent that
/// is gone is replaced; one an agent still answers on is not: a second
/// agent refuses to start rather than make the first unreachable.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another nexthop-agent answers on {}; not starting a second one",
                path.display()
            ),
        ));
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    UnixListener::bind(path)
}

/// What the socket answers for besides the controller.
#[derive(Clone, Debug, Default)]
pub struct Parts {
    /// The flow buffer (`--enable-hubble`).
    pub flows: Option<Hubble>,
    /// The pods (`--cni-state-dir`).
    pub endpoints: Option<Endpoints>,
    /// How the agent was started.
    pub setup: Setup,
}

/// Answer queries on `listener` for as long as the agent runs. Failing to
/// accept a connection is logged and retried with backoff, never fatal.
pub async fn serve(listener: UnixListener, controller: Controller, parts: Parts) -> io::Result<()> {
    let mut backoff = Duration::from_millis(10);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                stream
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?backoff, "cannot accept a query connection");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                continue;
            }
        };
        let controller = controller.clone();
        let parts = parts.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, controller, parts).await {
                debug!(error = %e, "query connection ended");
            }
        });
    }
}

async fn answer(stream: UnixStream, controller: Controller, parts: Parts) -> io::Result<()> {
    let Parts {
        flows,
        endpoints,
        setup,
    } = parts;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = Vec::new();
        let limit = MAX_REQUEST_BYTES as u64 + 1;
        let n = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let request = if line.len() > MAX_REQUEST_BYTES {
            Err(format!("a request is at most {MAX_REQUEST_BYTES} bytes"))
        } else {
            serde_json::from_slice::<Request>(&line).map_err(|e| format!("bad query: {e}"))
        };
        let response = match request {
            Ok(Request::Peers) => Response {
                peers: controller.peers().await,
                ..Response::default()
            },
            Ok(Request::Routes) => Response {
                routes: controller.routes().await,
                ..Response::default()
            },
            Ok(Request::NodeConfig) => Response {
                node_config: Some(controller.node_config().await),
                ..Response::default()
            },
            Ok(Request::ServiceList) => Response {
                services: controller.services().await,
                ..Response::default()
            },
            Ok(Request::L2Announce) => Response {
                l2_announce: controller
                    .l2_announce()
                    .await
                    .into_iter()
                    .map(|e| L2AnnounceEntry {
                        ip: e.ip,
                        interface: e.interface,
                    })
                    .collect(),
                ..Response::default()
            },
            Ok(Request::EndpointAdd(r)) => {
                on_endpoints(&endpoints, move |e| e.add(&r).map(Some)).await
            }
            Ok(Request::EndpointDel(r)) => {
                on_endpoints(&endpoints, move |e| e.del(&r).map(|()| None)).await
            }
            Ok(Request::EndpointCheck(r)) => {
                on_endpoints(&endpoints, move |e| e.check(&r).map(Some)).await
            }
            Ok(Request::CniStatus) => on_endpoints(&endpoints, |e| e.ready().map(|()| None)).await,
            Ok(Request::Status { brief, verbose }) => {
                let parts =
                    report::parts(&setup, &controller, endpoints.as_ref(), flows.as_ref()).await;
                let details = if verbose {
                    report::details(&setup)
                } else {
                    None
                };
                Response {
                    healthy: parts.iter().all(|p| p.ok),
                    status: report::lines(&parts, brief, details),
                    ..Response::default()
                }
            }
            Ok(Request::EndpointList) => Response {
                endpoints: endpoints.as_ref().map(Endpoints::rows).unwrap_or_default(),
                ..Response::default()
            },
            Ok(Request::Observe { flags }) => match observe(flows.as_ref(), &flags) {
                Ok((filter, follow, lines)) => {
                    let response = Response {
                        flows: lines,
                        ..Response::default()
                    };
                    send(&mut write, &response).await?;
                    if let Some(rx) = follow {
                        return follow_flows(&mut write, rx, &filter).await;
                    }
                    continue;
                }
                Err(error) => Response {
                    error: Some(error),
                    ..Response::default()
                },
            },
            Err(error) => {
                warn!("{error}");
                let response = Response {
                    error: Some(error.clone()),
                    ..Response::default()
                };
                let mut text = serde_json::to_string(&response)?;
                text.push('\n');
                write.write_all(text.as_bytes()).await?;
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        };
        send(&mut write, &response).await?;
    }
}

async fn send(write: &mut OwnedWriteHalf, response: &Response) -> io::Result<()> {
    let mut text = serde_json::to_string(response)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await
}

/// The answer to a CNI request, carried out by `f` off the async threads
/// (it runs `ip`); a refusal carries the specification's code.
async fn on_endpoints(
    endpoints: &Option<Endpoints>,
    f: impl FnOnce(&Endpoints) -> Result<Option<Endpoint>, CniError> + Send + 'static,
) -> Response {
    let Some(endpoints) = endpoints.clone() else {
        return Response {
            cni_error: Some(CniError::new(
                code::NOT_AVAILABLE,
                "this agent sets up no pods: start it with --cni-state-dir",
            )),
            ..Response::default()
        };
    };
    let result = tokio::task::spawn_blocking(move || f(&endpoints))
        .await
        .unwrap_or_else(|e| {
            Err(CniError::new(
                code::IO_FAILURE,
                format!("the agent failed: {e}"),
            ))
        });
    match result {
        Ok(endpoint) => Response {
            endpoint,
            ..Response::default()
        },
        Err(e) => Response {
            cni_error: Some(e),
            ..Response::default()
        },
    }
}

/// What an `observe` is answered with: its parsed flags, the new flows to
/// follow (with `--follow`) and the kept flows the flags select.
type Observation = (Filter, Option<Receiver<Observed>>, Vec<String>);

/// The answer to an `observe`, or why not.
fn observe(flows: Option<&Hubble>, flags: &[String]) -> Result<Observation, String> {
    let filter = Filter::parse(flags.iter().map(String::as_str)).map_err(|e| e.to_string())?;
    let hubble = flows.ok_or(
        "flow events are off: start the agent with --enable-hubble (and the XDP datapath)",
    )?;
    // Subscribed before the kept flows are read: a follower misses none.
    let follow = filter.follow.then(|| hubble.subscribe());
    let lines = hubble.lines(&filter);
    Ok((filter, follow, lines))
}

/// Send every new flow `filter` selects, one answer each, until the client
/// goes away.
async fn follow_flows(
    write: &mut OwnedWriteHalf,
    mut rx: Receiver<Observed>,
    filter: &Filter,
) -> io::Result<()> {
    let mut each = filter.clone();
    each.last = None;
    loop {
        match rx.recv().await {
            Ok(flow) => {
                let lines = hubble::print(&each, std::slice::from_ref(&flow));
                if !lines.is_empty() {
                    send(
                        write,
                        &Response {
                            flows: lines,
                            ..Response::default()
                        },
                    )
                    .await?;
                }
            }
            Err(RecvError::Lagged(n)) => {
                warn!(lost = n, "an observe --follow fell behind; flows skipped");
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

/// Send one query to the agent listening on `path` and hand its answers
/// to `each` for as long as it asks for more (an `observe --follow`
/// answers until the client closes) and the agent sends them.
pub async fn query_each(
    path: &Path,
    request: &Request,
    mut each: impl FnMut(Response) -> bool,
) -> io::Result<()> {
    let stream = UnixStream::connect(path).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot reach the agent at {}: {e}", path.display()),
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    loop {
        let line = lines.next_line().await?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the agent closed the socket")
        })?;
        let response: Response = serde_json::from_str(&line)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if let Some(error) = response.error {
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        if !each(response) {
            return Ok(());
        }
    }
}

/// Send one query to the agent listening on `path`; its answer.
pub async fn query(path: &Path, request: &Request) -> io::Result<Response> {
    let mut answer = None;
    query_each(path, request, |r| {
        answer = Some(r);
        false
    })
    .await?;
    Ok(answer.expect("query_each returns Ok only after an answer"))
}
