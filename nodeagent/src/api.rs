//! The query socket: a Unix stream socket speaking line-delimited JSON, one
//! [`Request`] per line, one [`Response`] per line.

use std::io;
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, warn};

use crate::controller::Controller;
use crate::status::{Request, Response};

/// Listen on `path` (replacing a stale socket file) and answer queries.
pub async fn serve(path: &Path, controller: Controller) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let controller = controller.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, controller).await {
                debug!(error = %e, "query connection ended");
            }
        });
    }
}

async fn answer(stream: UnixStream, controller: Controller) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let response = match serde_json::from_str::<Request>(&line) {
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
            Err(e) => {
                warn!(error = %e, "bad query");
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        };
        let mut text = serde_json::to_string(&response)?;
        text.push('\n');
        write.write_all(text.as_bytes()).await?;
    }
    Ok(())
}

/// Send one query to the agent listening on `path`.
pub async fn query(path: &Path, request: &Request) -> io::Result<Response> {
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
    let line = BufReader::new(read)
        .lines()
        .next_line()
        .await?
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the agent closed the socket")
        })?;
    serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
