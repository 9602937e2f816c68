//! `whoami`: an HTTP/1.1 server answering every GET with who served it and who asked,
//! like traefik/whoami (the server the seed labs deploy).
//!
//! Owns the server's TCP sockets: one always listening, one per connection until
//! it closes. Each connection gets one response and is closed by the server.

use std::fmt::Write;
use std::net::IpAddr;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

/// Socket buffer size of each connection.
const BUFFER: usize = 4096;

/// A whoami HTTP server on one TCP port.
#[derive(Debug)]
pub struct HttpServer {
    port: u16,
    hostname: String,
    addrs: Vec<IpAddr>,
    conns: Vec<Conn>,
    served: u64,
}

#[derive(Debug)]
struct Conn {
    handle: SocketHandle,
    request: Vec<u8>,
    response: Option<Vec<u8>>,
}

impl HttpServer {
    /// A server for `hostname` with addresses `addrs` (reported in each answer) on TCP `port`.
    pub fn new(hostname: &str, addrs: Vec<IpAddr>, port: u16) -> Self {
        HttpServer {
            port,
            hostname: hostname.to_owned(),
            addrs,
            conns: Vec::new(),
            served: 0,
        }
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served
    }

    /// Read requests, answer complete ones, drop closed connections and keep one
    /// socket listening. Returns whether anything changed.
    pub fn poll(&mut self, sockets: &mut SocketSet<'static>) -> bool {
        let mut acted = false;
        let mut i = 0;
        while i < self.conns.len() {
            let conn = &mut self.conns[i];
            let socket = sockets.get_mut::<tcp::Socket>(conn.handle);
            if socket.state() == tcp::State::Closed {
                sockets.remove(conn.handle);
                self.conns.swap_remove(i);
                acted = true;
                continue;
            }
            while socket.can_recv() {
                let _ = socket.recv(|data| {
                    conn.request.extend_from_slice(data);
                    (data.len(), ())
                });
            }
            if conn.response.is_none() && header_end(&conn.request).is_some() {
                let remote = socket
                    .remote_endpoint()
                    .map(|e| format!("{}:{}", e.addr, e.port))
                    .unwrap_or_default();
                conn.response = Some(self::response(
                    &self.hostname,
                    &self.addrs,
                    &remote,
                    &conn.request,
                ));
                self.served += 1;
                acted = true;
            }
            if let Some(response) = conn.response.as_mut().filter(|r| !r.is_empty()) {
                if let Ok(n) = socket.send_slice(response) {
                    response.drain(..n);
                    acted |= n > 0;
                }
                if response.is_empty() {
                    socket.close();
                }
            }
            i += 1;
        }
        let listening = self
            .conns
            .iter()
            .any(|c| sockets.get::<tcp::Socket>(c.handle).is_listening());
        if !listening {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; BUFFER]),
                tcp::SocketBuffer::new(vec![0; BUFFER]),
            );
            socket
                .listen(self.port)
                .expect("a fresh socket listens on a non-zero port");
            self.conns.push(Conn {
                handle: sockets.add(socket),
                request: Vec::new(),
                response: None,
            });
            acted = true;
        }
        acted
    }
}

/// Where the request's header ends (after the blank line), if it has.
fn header_end(request: &[u8]) -> Option<usize> {
    request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// The whoami answer: who we are, who asked, and the request's head echoed back.
fn response(hostname: &str, addrs: &[IpAddr], remote: &str, request: &[u8]) -> Vec<u8> {
    let head = &request[..header_end(request).unwrap_or(request.len())];
    let head = String::from_utf8_lossy(head);
    let mut body = format!("Hostname: {hostname}\n");
    for a in addrs {
        let _ = writeln!(body, "IP: {a}");
    }
    let _ = writeln!(body, "RemoteAddr: {remote}");
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let _ = writeln!(body, "{line}");
    }
    body.push('\n');
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_names_server_client_and_request() {
        let request = b"GET / HTTP/1.1\r\nHost: 10.0.2.10\r\nAccept: */*\r\n\r\n";
        let addrs = vec!["10.0.2.10".parse().unwrap()];
        let r = response("web", &addrs, "10.0.1.10:49152", request);
        let r = String::from_utf8(r).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(
            body,
            "Hostname: web\nIP: 10.0.2.10\nRemoteAddr: 10.0.1.10:49152\n\
             GET / HTTP/1.1\nHost: 10.0.2.10\nAccept: */*\n\n"
        );
    }

    #[test]
    fn header_end_needs_the_blank_line() {
        assert_eq!(header_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(header_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
    }

    #[test]
    fn always_keeps_one_socket_listening() {
        let mut sockets = SocketSet::new(Vec::new());
        let mut server = HttpServer::new("web", Vec::new(), 80);
        assert!(server.poll(&mut sockets));
        assert!(!server.poll(&mut sockets), "nothing more to do");
        assert_eq!(sockets.iter().count(), 1);
        assert_eq!(server.port(), 80);
        assert_eq!(server.served(), 0);
    }
}
