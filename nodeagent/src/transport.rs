//! Kernel TCP for BGP: connect to a peer from an optional local address,
//! with the IP TTL the session asks for and an optional TCP MD5 key
//! (RFC 2385, Linux `TCP_MD5SIG`).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use tokio::net::{TcpSocket, TcpStream};

/// Linux `TCP_MD5SIG` (include/uapi/linux/tcp.h).
const TCP_MD5SIG: libc::c_int = 14;
/// Linux `TCP_MD5SIG_MAXKEYLEN`.
pub const MD5_MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig`.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefix_len: u8,
    key_len: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY_LEN],
}

/// How to reach one peer.
#[derive(Clone, Debug)]
pub struct Dial {
    /// The peer's address and port.
    pub peer: SocketAddr,
    /// Bind to this local address first.
    pub local: Option<IpAddr>,
    /// TCP MD5 key for the peer's address.
    pub md5_key: Option<String>,
    /// IP TTL (hop limit) of our packets.
    pub ttl: u8,
}

/// Connect as `dial` says.
pub async fn connect(dial: &Dial) -> io::Result<TcpStream> {
    let socket = match dial.peer {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(key) = &dial.md5_key {
        set_md5_key(socket.as_raw_fd(), dial.peer.ip(), key.as_bytes())?;
    }
    set_ttl(socket.as_raw_fd(), dial.peer.ip(), dial.ttl)?;
    if let Some(local) = dial.local {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    socket.set_nodelay(true)?;
    socket.connect(dial.peer).await
}

/// Set the IP TTL (IPv4) or unicast hop limit (IPv6) of a socket.
pub fn set_ttl(fd: RawFd, peer: IpAddr, ttl: u8) -> io::Result<()> {
    let (level, name) = match peer {
        IpAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_TTL),
        IpAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS),
    };
    let value = libc::c_int::from(ttl);
    setsockopt(fd, level, name, &value)
}

/// Install the TCP MD5 key for `peer` on a socket.
fn set_md5_key(fd: RawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TCP MD5 key longer than {MD5_MAX_KEY_LEN} bytes"),
        ));
    }
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    match peer {
        IpAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned
            // for sockaddr_in.
            let sin = unsafe { &mut *(&raw mut sig.addr).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
        }
        IpAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&raw mut sig.addr).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = v6.octets();
        }
    }
    sig.key_len = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt(fd, libc::IPPROTO_TCP, TCP_MD5SIG, &sig)
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_struct_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 128 + 1 + 1 + 2 + 4 + 80);
    }

    #[tokio::test]
    async fn connects_with_ttl_and_md5_over_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
        let dial = Dial {
            peer,
            local: Some("127.0.0.1".parse().unwrap()),
            md5_key: None,
            ttl: 2,
        };
        let stream = connect(&dial).await.unwrap();
        assert_eq!(stream.ttl().unwrap(), 2);
        accept.await.unwrap().unwrap();
        let sock = TcpSocket::new_v4().unwrap();
        set_md5_key(sock.as_raw_fd(), peer.ip(), b"secret").unwrap();
        let long = [b'x'; MD5_MAX_KEY_LEN + 1];
        assert!(set_md5_key(sock.as_raw_fd(), peer.ip(), &long).is_err());
    }
}
