//! BGP connections over kernel TCP as tokio tasks that only move bytes: a
//! dial (bind, TTL, TCP MD5, [`crate::transport`]), a reader reporting what
//! arrives and a writer sending what it is given, in order, then a FIN. What
//! each connection reports is tagged with its key and generation, so reports
//! from a connection that was since dropped are recognised and ignored.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::transport::{self, Dial};

/// A connection: an instance's name and the peer's address.
pub type Key = (String, IpAddr);

/// What a connection task reports.
#[derive(Debug)]
pub enum Io {
    /// The dial completed.
    Connected(TcpStream),
    /// The dial failed.
    ConnectFailed(std::io::Error),
    /// Bytes arrived.
    Data(Vec<u8>),
    /// The peer closed the connection (or it broke).
    Closed(Option<std::io::Error>),
}

/// A report: which connection, which generation of it, what happened.
pub type Report = (Key, u64, Io);

/// An established connection's tasks.
#[derive(Debug)]
pub struct Connection {
    writer: mpsc::UnboundedSender<Vec<u8>>,
    reader: JoinHandle<()>,
    flushed: JoinHandle<()>,
    fd: RawFd,
    /// Our end's address.
    pub local: Option<IpAddr>,
}

/// Dial `dial` in a task; the outcome is reported on `reports`.
pub fn dial(
    key: Key,
    generation: u64,
    dial: Dial,
    reports: mpsc::UnboundedSender<Report>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let io = match transport::connect(&dial).await {
            Ok(stream) => Io::Connected(stream),
            Err(e) => Io::ConnectFailed(e),
        };
        let _ = reports.send((key, generation, io));
    })
}

/// The dial settings of a connect action.
pub fn dial_of(
    peer: IpAddr,
    port: u16,
    ttl: u8,
    bind: Option<IpAddr>,
    md5_key: Option<String>,
) -> Dial {
    Dial {
        peer: SocketAddr::new(peer, port),
        local: bind,
        md5_key,
        ttl,
    }
}

impl Connection {
    /// Start moving bytes on `stream`.
    pub fn start(
        stream: TcpStream,
        key: Key,
        generation: u64,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Connection {
        let fd = stream.as_raw_fd();
        let local = stream.local_addr().ok().map(|a| a.ip());
        let (mut read_half, mut write_half) = stream.into_split();
        let (writer, mut outbox) = mpsc::unbounded_channel::<Vec<u8>>();
        let flushed = tokio::spawn(async move {
            while let Some(bytes) = outbox.recv().await {
                if write_half.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            let _ = write_half.shutdown().await;
        });
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let io = match read_half.read(&mut buf).await {
                    Ok(0) => Io::Closed(None),
                    Ok(n) => Io::Data(buf[..n].to_vec()),
                    Err(e) => Io::Closed(Some(e)),
                };
                let last = matches!(io, Io::Closed(_));
                if reports.send((key.clone(), generation, io)).is_err() || last {
                    return;
                }
            }
        });
        Connection {
            writer,
            reader,
            flushed,
            fd,
            local,
        }
    }

    /// Queue bytes to write.
    pub fn send(&self, bytes: Vec<u8>) {
        let _ = self.writer.send(bytes);
    }

    /// Set the IP TTL of our packets to `peer`.
    pub fn set_ttl(&self, peer: IpAddr, ttl: u8) -> std::io::Result<()> {
        transport::set_ttl(self.fd, peer, ttl)
    }

    /// Stop reading; what was queued is still written, then a FIN. The
    /// returned task ends when that is done.
    pub fn close(self) -> JoinHandle<()> {
        self.reader.abort();
        self.flushed
    }
}
