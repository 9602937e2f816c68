//! A BGP route feeder for ingest benchmarks: an eBGP speaker built on
//! router-core's wire codec over blocking TCP. It completes OPEN/KEEPALIVE
//! with a target, then sends N unique IPv4 /24s — as few UPDATEs as fit
//! with one attribute set each, or a distinct AS_PATH per group of
//! prefixes — and End-of-RIB, and keeps the session up (KEEPALIVEs,
//! reading and discarding whatever the target sends).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use ipnet::Ipv4Net;
use router_core::bgp::wire::header::{HEADER_LEN, MAX_MESSAGE_LEN, MessageType};
use router_core::bgp::wire::{
    AsPath, Capability, DecodeContext, Family, Message, Open, Origin, PathAttributes, Update,
};

/// What a feeder announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feed {
    /// The feeder's AS.
    pub asn: u32,
    /// Its BGP Identifier.
    pub router_id: Ipv4Addr,
    /// The NEXT_HOP of every route (the feeder's address).
    pub next_hop: Ipv4Addr,
    /// The first /24's address; the others follow it.
    pub first: Ipv4Addr,
    /// How many /24s.
    pub count: u32,
    /// A distinct AS_PATH for each group of this many prefixes (one
    /// UPDATE per group); `None`: one AS_PATH for all, UPDATEs packed full.
    pub as_path_every: Option<u32>,
}

/// The hold time the feeder proposes (the target may lower it).
pub const HOLD_TIME: u16 = 180;

fn context() -> DecodeContext {
    DecodeContext::new(true, [Family::IPV4_UNICAST])
}

impl Feed {
    /// The feeder's OPEN: IPv4 unicast, 4-octet AS.
    pub fn open(&self) -> Vec<u8> {
        let open = Open::new(
            self.asn,
            HOLD_TIME,
            self.router_id,
            vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::FourOctetAs(self.asn),
            ],
        );
        Message::Open(open).to_bytes(&context()).expect("OPEN fits")
    }

    /// The `i`th /24.
    pub fn prefix(&self, i: u32) -> Ipv4Net {
        let base = u32::from(self.first) & 0xffff_ff00;
        Ipv4Net::new(Ipv4Addr::from(base + (i << 8)), 24).expect("/24")
    }

    fn attributes(&self, group: Option<u32>) -> PathAttributes {
        let mut path = vec![self.asn];
        path.extend(group.map(|g| 100_000 + g));
        PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(path)),
            next_hop: Some(self.next_hop),
            ..PathAttributes::default()
        }
    }

    /// Every UPDATE, then End-of-RIB, as one byte stream.
    pub fn updates(&self) -> Vec<u8> {
        let ctx = context();
        let mut out = Vec::new();
        let mut emit = |update: Update| {
            Message::Update(Box::new(update))
                .emit(&ctx, &mut out)
                .expect("UPDATE fits");
        };
        let update = |attributes: PathAttributes, nlri: Vec<Ipv4Net>| Update {
            attributes,
            nlri,
            ..Update::default()
        };
        match self.as_path_every {
            Some(every) => {
                let every = every.max(1);
                for (g, start) in (0..self.count).step_by(every as usize).enumerate() {
                    let end = (start + every).min(self.count);
                    let nlri = (start..end).map(|i| self.prefix(i)).collect();
                    emit(update(self.attributes(Some(g as u32)), nlri));
                }
            }
            None => {
                let attributes = self.attributes(None);
                let empty = Message::Update(Box::new(update(attributes.clone(), Vec::new())))
                    .to_bytes(&ctx)
                    .expect("UPDATE fits");
                let per_update = ((MAX_MESSAGE_LEN - empty.len()) / 4) as u32;
                let mut start = 0;
                while start < self.count {
                    let end = (start + per_update).min(self.count);
                    let nlri = (start..end).map(|i| self.prefix(i)).collect();
                    emit(update(attributes.clone(), nlri));
                    start = end;
                }
            }
        }
        emit(Update::end_of_rib(Family::IPV4_UNICAST).expect("IPv4 End-of-RIB"));
        out
    }
}

/// A KEEPALIVE.
pub fn keepalive() -> Vec<u8> {
    Message::Keepalive
        .to_bytes(&context())
        .expect("KEEPALIVE fits")
}

/// Read one message: its type and body.
pub fn read_message(stream: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header)?;
    let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad message length {len}"),
        ));
    }
    let mut body = vec![0u8; len - HEADER_LEN];
    stream.read_exact(&mut body)?;
    Ok((header[18], body))
}

/// OPEN, then KEEPALIVEs both ways: the session is Established. Returns the
/// target's AS from its OPEN.
pub fn handshake(stream: &mut TcpStream, feed: &Feed) -> io::Result<u32> {
    stream.set_nodelay(true)?;
    stream.write_all(&feed.open())?;
    let mut peer_as = None;
    loop {
        let (kind, body) = read_message(stream)?;
        match MessageType::from_u8(kind) {
            Some(MessageType::Open) => {
                let open = Open::parse(&body).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("OPEN: {e:?}"))
                })?;
                peer_as = Some(open.asn());
                stream.write_all(&keepalive())?;
            }
            Some(MessageType::Keepalive) if peer_as.is_some() => {
                return Ok(peer_as.unwrap_or_default());
            }
            Some(MessageType::Notification) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("NOTIFICATION {body:02x?}"),
                ));
            }
            _ => {}
        }
    }
}

/// Keep the session up in the background: read and discard everything,
/// send a KEEPALIVE every `interval`.
pub fn keep_up(stream: &TcpStream, interval: Duration) -> io::Result<()> {
    let mut reader = stream.try_clone()?;
    std::thread::spawn(move || while read_message(&mut reader).is_ok() {});
    let mut writer = stream.try_clone()?;
    std::thread::spawn(move || {
        while writer.write_all(&keepalive()).is_ok() {
            std::thread::sleep(interval);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(as_path_every: Option<u32>) -> Feed {
        Feed {
            asn: 65101,
            router_id: Ipv4Addr::new(10, 255, 1, 1),
            next_hop: Ipv4Addr::new(10, 255, 1, 1),
            first: Ipv4Addr::new(16, 0, 0, 0),
            count: 2500,
            as_path_every,
        }
    }

    fn parse_all(mut bytes: &[u8]) -> Vec<Update> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
            match Message::parse(&bytes[..len], &context()).unwrap() {
                Message::Update(u) => out.push(*u),
                other => panic!("{other:?}"),
            }
            bytes = &bytes[len..];
        }
        out
    }

    #[test]
    fn packed_updates_carry_every_prefix_once_then_end_of_rib() {
        let updates = parse_all(&feed(None).updates());
        let (eor, routes) = updates.split_last().unwrap();
        assert_eq!(eor.end_of_rib_family(), Some(Family::IPV4_UNICAST));
        assert_eq!(routes.len(), 3);
        let prefixes: Vec<Ipv4Net> = routes.iter().flat_map(|u| u.nlri.clone()).collect();
        assert_eq!(prefixes.len(), 2500);
        assert_eq!(prefixes[0], "16.0.0.0/24".parse::<Ipv4Net>().unwrap());
        assert_eq!(prefixes[2499], "16.9.195.0/24".parse::<Ipv4Net>().unwrap());
        assert!(routes.iter().all(|u| u.attributes == routes[0].attributes));
    }

    #[test]
    fn a_distinct_as_path_per_group() {
        let updates = parse_all(&feed(Some(10)).updates());
        assert_eq!(updates.len(), 251);
        assert_eq!(updates[0].nlri.len(), 10);
        assert_ne!(updates[0].attributes.as_path, updates[1].attributes.as_path);
        assert_eq!(
            updates[1].attributes.as_path,
            Some(AsPath::sequence(vec![65101, 100_001]))
        );
    }

    #[test]
    fn handshake_and_feed_over_loopback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let target = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let target = Feed {
                asn: 65000,
                router_id: Ipv4Addr::new(10, 255, 0, 1),
                ..feed(None)
            };
            s.write_all(&target.open()).unwrap();
            s.write_all(&keepalive()).unwrap();
            let mut prefixes = 0;
            loop {
                let (kind, body) = read_message(&mut s).unwrap();
                if kind == MessageType::Update.to_u8() {
                    let u = Update::parse(&body, &context()).unwrap();
                    if u.end_of_rib_family().is_some() {
                        return prefixes;
                    }
                    prefixes += u.nlri.len();
                }
            }
        });
        let mut stream = TcpStream::connect(address).unwrap();
        let f = feed(None);
        assert_eq!(handshake(&mut stream, &f).unwrap(), 65000);
        stream.write_all(&f.updates()).unwrap();
        assert_eq!(target.join().unwrap(), 2500);
    }
}
