//! `curl`: one HTTP/1.1 GET over TCP with curl's timeouts, as the labs use it
//! (`curl --connect-timeout 1 http://IP:PORT/`).
//!
//! Owns one TCP socket from connect to close and the result: the response's
//! status and body, or why there is none, and how long it took. The host picks
//! the source address and the ephemeral port and opens the connection.

use std::fmt;
use std::net::SocketAddr;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};

/// Socket buffer size.
const BUFFER: usize = 8192;

/// Timeouts of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CurlOptions {
    /// Give up if the connection is not established by then (`--connect-timeout`).
    pub connect_timeout: Duration,
    /// Give up if the whole exchange is not done by then (`--max-time`).
    pub max_time: Duration,
}

impl Default for CurlOptions {
    /// One second to connect, like the labs' `curl --connect-timeout 1`; ten in all.
    fn default() -> Self {
        CurlOptions {
            connect_timeout: Duration::from_secs(1),
            max_time: Duration::from_secs(10),
        }
    }
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurlError {
    /// No connection within the connect timeout (curl exit code 28).
    ConnectTimeout,
    /// The peer answered the SYN with a reset (curl exit code 7).
    Refused,
    /// Connected, but the response did not complete within the maximum time.
    Timeout,
    /// The connection was reset after it was established (curl exit code 56).
    Reset,
    /// The peer closed without a parseable HTTP response.
    BadResponse,
}

impl fmt::Display for CurlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CurlError::ConnectTimeout => "connection timed out",
            CurlError::Refused => "connection refused",
            CurlError::Timeout => "operation timed out",
            CurlError::Reset => "connection reset by peer",
            CurlError::BadResponse => "bad HTTP response",
        })
    }
}

/// A complete HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body (bytes after the header, lossily decoded as UTF-8).
    pub body: String,
}

/// The outcome of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurlResult {
    /// Where the request went.
    pub target: SocketAddr,
    /// The address and port it came from.
    pub local: SocketAddr,
    /// The response, or why there is none.
    pub outcome: Result<HttpResponse, CurlError>,
    /// From start to the outcome.
    pub elapsed: Duration,
}

impl CurlResult {
    /// Whether a response with a 2xx status arrived.
    pub fn ok(&self) -> bool {
        matches!(&self.outcome, Ok(r) if (200..300).contains(&r.status))
    }

    /// The response body, if a response arrived.
    pub fn body(&self) -> Option<&str> {
        self.outcome.as_ref().ok().map(|r| r.body.as_str())
    }
}

/// One request in flight (or done, with its socket still closing).
#[derive(Debug)]
pub struct HttpClient {
    handle: Option<SocketHandle>,
    target: SocketAddr,
    local: SocketAddr,
    options: CurlOptions,
    started: Instant,
    request: Vec<u8>,
    established: bool,
    response: Vec<u8>,
    result: Option<CurlResult>,
}

impl HttpClient {
    /// Open a connection from `local` to `target` at `now` and prepare `GET /`.
    pub fn start(
        now: Instant,
        cx: &mut smoltcp::iface::Context,
        sockets: &mut SocketSet<'static>,
        local: SocketAddr,
        target: SocketAddr,
        options: CurlOptions,
    ) -> Self {
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; BUFFER]),
            tcp::SocketBuffer::new(vec![0; BUFFER]),
        );
        let connected = socket.connect(cx, target, local);
        let handle = sockets.add(socket);
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: nexthop-curl\r\nAccept: */*\r\n\r\n",
            target.ip()
        );
        let mut client = HttpClient {
            handle: Some(handle),
            target,
            local,
            options,
            started: now,
            request: request.into_bytes(),
            established: false,
            response: Vec::new(),
            result: None,
        };
        if connected.is_err() {
            client.finish(now, sockets, Err(CurlError::Refused));
        }
        client
    }

    /// The result, once the request is done.
    pub fn result(&self) -> Option<&CurlResult> {
        self.result.as_ref()
    }

    /// When the next timeout falls, while the request is running.
    pub fn poll_at(&self) -> Option<Instant> {
        if self.result.is_some() {
            return None;
        }
        Some(if self.established {
            self.started + self.options.max_time
        } else {
            self.started + self.options.connect_timeout
        })
    }

    /// Advance the exchange at `now`. Returns whether anything changed.
    pub fn poll(&mut self, now: Instant, sockets: &mut SocketSet<'static>) -> bool {
        let Some(handle) = self.handle else {
            return false;
        };
        let socket = sockets.get_mut::<tcp::Socket>(handle);
        if self.result.is_some() {
            // Done: the socket is closing; it goes once smoltcp had a chance to send its last segment.
            if socket.state() == tcp::State::Closed || socket.state() == tcp::State::TimeWait {
                sockets.remove(handle);
                self.handle = None;
                return true;
            }
            return false;
        }
        let mut acted = false;
        if !self.established && socket.may_send() {
            self.established = true;
            acted = true;
        }
        if self.established
            && !self.request.is_empty()
            && let Ok(n) = socket.send_slice(&self.request)
        {
            self.request.drain(..n);
            acted |= n > 0;
        }
        while socket.can_recv() {
            let _ = socket.recv(|data| {
                self.response.extend_from_slice(data);
                (data.len(), ())
            });
            acted = true;
        }
        let outcome = match socket.state() {
            tcp::State::Closed if !self.established => Some(Err(CurlError::Refused)),
            tcp::State::Closed => Some(Err(CurlError::Reset)),
            _ if self.established && !socket.may_recv() => {
                socket.close();
                Some(parse(&self.response).ok_or(CurlError::BadResponse))
            }
            _ if !self.established && now >= self.started + self.options.connect_timeout => {
                socket.abort();
                Some(Err(CurlError::ConnectTimeout))
            }
            _ if now >= self.started + self.options.max_time => {
                socket.abort();
                Some(Err(CurlError::Timeout))
            }
            _ => None,
        };
        if let Some(outcome) = outcome {
            self.finish(now, sockets, outcome);
            acted = true;
        }
        acted
    }

    fn finish(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'static>,
        outcome: Result<HttpResponse, CurlError>,
    ) {
        if let Some(handle) = self.handle.filter(|_| outcome == Err(CurlError::Refused)) {
            sockets.remove(handle);
            self.handle = None;
        }
        self.result = Some(CurlResult {
            target: self.target,
            local: self.local,
            outcome,
            elapsed: now - self.started,
        });
    }
}

/// Status and body of a complete response; the body ends at `Content-Length` if given.
fn parse(response: &[u8]) -> Option<HttpResponse> {
    let at = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&response[..at]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()?
        .strip_prefix("HTTP/1.")?
        .get(2..5)?
        .parse()
        .ok()?;
    let mut body = &response[at + 4..];
    let length = lines.filter_map(|l| l.split_once(':')).find_map(|(k, v)| {
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    if let Some(length) = length {
        body = body.get(..length)?;
    }
    Some(HttpResponse {
        status,
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "hello"));
        let r = parse(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "nope"));
    }

    #[test]
    fn rejects_incomplete_or_foreign_responses() {
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello"),
            None
        );
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(parse(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
    }

    #[test]
    fn ok_means_2xx() {
        let result = |status| CurlResult {
            target: "10.0.0.1:80".parse().unwrap(),
            local: "10.0.0.2:49152".parse().unwrap(),
            outcome: Ok(HttpResponse {
                status,
                body: String::new(),
            }),
            elapsed: Duration::ZERO,
        };
        assert!(result(200).ok());
        assert!(!result(500).ok());
        assert_eq!(result(200).body(), Some(""));
        assert_eq!(
            CurlError::ConnectTimeout.to_string(),
            "connection timed out"
        );
    }
}
