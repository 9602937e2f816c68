//! Geneve header (RFC 8926 §3.4) and its option TLVs (§3.5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Variable-Length Options                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Option TLV:
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Option Class         |      Type     |R|R|R| Length  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Variable-Length Option Data                   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Opt Len and option Length count 4-byte words; the high bit of an option's
//! Type marks it critical. Carried in UDP to port 6081.
//!
//! Cilium's DSR option ([`DsrOption`]; class 0x014B, type 0x81, critical)
//! carries the service address a request was sent to when a load-balancing
//! node dispatches it to the backend's node (`loadBalancer.dsrDispatch:
//! geneve`):
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      Option Class 0x014B      |  Type 0x81    |R|R|R|Length 2 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Service IPv4 address                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Service port          |            Padding            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use core::net::Ipv4Addr;

use super::Error;

/// Length of the fixed part of the header.
pub const HEADER_LEN: usize = 8;
/// UDP port assigned by IANA.
pub const PORT: u16 = 6081;
/// Protocol type of an Ethernet payload (Transparent Ethernet Bridging).
pub const PROTOCOL_ETHERNET: u16 = 0x6558;
/// The most option TLVs a header may carry before we stop reading (bounded loop).
pub const MAX_OPTIONS: usize = 16;

/// A Geneve header view over a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wrap `buffer` without checking it (for emitting into a buffer of the right size).
    pub fn new_unchecked(buffer: T) -> Self {
        Header { buffer }
    }
    /// Wrap `buffer`, checking it holds the fixed header and all its options.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let h = Header { buffer };
        if h.buffer.as_ref().len() < h.header_len() {
            return Err(Error::Truncated);
        }
        Ok(h)
    }
    /// Version (must be 0).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 6
    }
    /// Length of the options in bytes.
    pub fn options_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[0] & 0x3f) * 4
    }
    /// Whole header length including options.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }
    /// The O bit: an OAM (control) packet.
    pub fn oam(&self) -> bool {
        self.buffer.as_ref()[1] & 0x80 != 0
    }
    /// The C bit: at least one critical option is present.
    pub fn critical(&self) -> bool {
        self.buffer.as_ref()[1] & 0x40 != 0
    }
    /// Protocol type of the payload.
    pub fn protocol(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }
    /// The 24-bit VNI.
    pub fn vni(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[4], b[5], b[6]])
    }
    /// The option bytes.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
    /// The payload after the options.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
    /// Whether any option TLV has its critical bit set; malformed TLVs are an error.
    pub fn has_critical_option(&self) -> Result<bool, Error> {
        let mut opts = self.options();
        for _ in 0..MAX_OPTIONS {
            if opts.is_empty() {
                return Ok(false);
            }
            if opts.len() < 4 {
                return Err(Error::Truncated);
            }
            if opts[2] & 0x80 != 0 {
                return Ok(true);
            }
            let len = 4 + usize::from(opts[3] & 0x1f) * 4;
            if opts.len() < len {
                return Err(Error::Truncated);
            }
            opts = &opts[len..];
        }
        Err(Error::Invalid("Geneve options (too many)"))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Write version 0, no options, no flags, `protocol` and `vni`.
    pub fn set_fixed(&mut self, protocol: u16, vni: u32) {
        let b = self.buffer.as_mut();
        b[0] = 0;
        b[1] = 0;
        b[2..4].copy_from_slice(&protocol.to_be_bytes());
        b[4..7].copy_from_slice(&vni.to_be_bytes()[1..4]);
        b[7] = 0;
    }
}

/// Cilium's option class (IANA's Geneve option class registry).
pub const DSR_CLASS: u16 = 0x014B;
/// The DSR option's type: 1, critical.
pub const DSR_TYPE: u8 = 0x81;
/// The DSR option's whole length: header and 8 bytes of data.
pub const DSR_OPTION_LEN: usize = 12;

/// Cilium's DSR option: the service address and port of a dispatched
/// request, which the backend's node answers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DsrOption {
    /// The service address.
    pub addr: Ipv4Addr,
    /// The service port.
    pub port: u16,
}

impl DsrOption {
    /// The option TLV.
    pub fn emit(&self) -> [u8; DSR_OPTION_LEN] {
        let mut b = [0u8; DSR_OPTION_LEN];
        b[0..2].copy_from_slice(&DSR_CLASS.to_be_bytes());
        b[2] = DSR_TYPE;
        b[3] = ((DSR_OPTION_LEN - 4) / 4) as u8;
        b[4..8].copy_from_slice(&self.addr.octets());
        b[8..10].copy_from_slice(&self.port.to_be_bytes());
        b
    }

    /// The DSR option among `options` (a header's option bytes), if one is
    /// there whole; malformed TLVs are an error.
    pub fn find(mut options: &[u8]) -> Result<Option<DsrOption>, Error> {
        for _ in 0..MAX_OPTIONS {
            if options.is_empty() {
                return Ok(None);
            }
            if options.len() < 4 {
                return Err(Error::Truncated);
            }
            let len = 4 + usize::from(options[3] & 0x1f) * 4;
            if options.len() < len {
                return Err(Error::Truncated);
            }
            let class = u16::from_be_bytes([options[0], options[1]]);
            if class == DSR_CLASS && options[2] == DSR_TYPE && len == DSR_OPTION_LEN {
                let addr = Ipv4Addr::new(options[4], options[5], options[6], options[7]);
                let port = u16::from_be_bytes([options[8], options[9]]);
                return Ok(Some(DsrOption { addr, port }));
            }
            options = &options[len..];
        }
        Err(Error::Invalid("Geneve options (too many)"))
    }
}

/// A parsed Geneve header (options are checked, not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// Protocol type of the payload.
    pub protocol: u16,
    /// The 24-bit VNI.
    pub vni: u32,
    /// Whether this is an OAM packet.
    pub oam: bool,
}

impl Repr {
    /// Parse a header: version 0, and no critical option (we understand none, so
    /// RFC 8926 §3.5.1 says drop).
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>) -> Result<Self, Error> {
        if header.version() != 0 {
            return Err(Error::Invalid("Geneve version"));
        }
        if header.critical() || header.has_critical_option()? {
            return Err(Error::Invalid("Geneve option (unknown critical option)"));
        }
        Ok(Repr {
            protocol: header.protocol(),
            vni: header.vni(),
            oam: header.oam(),
        })
    }
    /// Parse a header that may carry Cilium's DSR option: as [`Repr::parse`],
    /// except that the DSR option is understood, so a header whose only
    /// critical option it is is accepted.
    pub fn parse_with_dsr<T: AsRef<[u8]>>(
        header: &Header<T>,
    ) -> Result<(Self, Option<DsrOption>), Error> {
        let dsr = DsrOption::find(header.options())?;
        let mut critical = 0;
        let mut opts = header.options();
        while opts.len() >= 4 {
            let len = 4 + usize::from(opts[3] & 0x1f) * 4;
            if opts[2] & 0x80 != 0 {
                critical += 1;
            }
            opts = opts.get(len..).unwrap_or_default();
        }
        if header.version() != 0 {
            return Err(Error::Invalid("Geneve version"));
        }
        if critical > usize::from(dsr.is_some()) {
            return Err(Error::Invalid("Geneve option (unknown critical option)"));
        }
        let repr = Repr {
            protocol: header.protocol(),
            vni: header.vni(),
            oam: header.oam(),
        };
        Ok((repr, dsr))
    }

    /// Header length this representation emits (no options).
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Write the header without options. OAM is never set on data packets.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        header.set_fixed(self.protocol, self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_then_parse() {
        let mut buf = [0xffu8; 8];
        let repr = Repr {
            protocol: PROTOCOL_ETHERNET,
            vni: 0x1234,
            oam: false,
        };
        repr.emit(&mut Header::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0, 0, 0x65, 0x58, 0x00, 0x12, 0x34, 0]);
        let h = Header::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&h), Ok(repr));
    }

    #[test]
    fn the_dsr_option_is_understood_only_where_asked_for() {
        let dsr = DsrOption {
            addr: Ipv4Addr::new(172, 16, 1, 1),
            port: 80,
        };
        let mut buf = [0u8; HEADER_LEN + DSR_OPTION_LEN + 1];
        Repr {
            protocol: PROTOCOL_ETHERNET,
            vni: 2,
            oam: false,
        }
        .emit(&mut Header::new_unchecked(&mut buf[..]));
        buf[0] = (DSR_OPTION_LEN / 4) as u8;
        buf[1] = 0x40; // C: a critical option is present
        buf[HEADER_LEN..HEADER_LEN + DSR_OPTION_LEN].copy_from_slice(&dsr.emit());
        assert_eq!(
            &buf[HEADER_LEN..HEADER_LEN + 4],
            &[0x01, 0x4b, 0x81, 0x02],
            "Cilium's class, type and length"
        );
        let h = Header::new_checked(&buf[..]).unwrap();
        assert!(matches!(Repr::parse(&h), Err(Error::Invalid(_))));
        let (repr, found) = Repr::parse_with_dsr(&h).unwrap();
        assert_eq!((repr.vni, found), (2, Some(dsr)));
        // Another critical option beside it is still refused.
        let mut two = [0u8; HEADER_LEN + DSR_OPTION_LEN + 4];
        two[..HEADER_LEN + DSR_OPTION_LEN].copy_from_slice(&buf[..HEADER_LEN + DSR_OPTION_LEN]);
        two[0] = ((DSR_OPTION_LEN + 4) / 4) as u8;
        two[HEADER_LEN + DSR_OPTION_LEN..].copy_from_slice(&[0x01, 0x02, 0x85, 0]);
        let h = Header::new_checked(&two[..]).unwrap();
        assert!(Repr::parse_with_dsr(&h).is_err());
    }

    #[test]
    fn options_are_bounded_and_critical_ones_rejected() {
        // One non-critical option (class 0x0102, type 0x01, 4 bytes of data).
        let ok = [
            0x02, 0, 0x65, 0x58, 0, 0, 1, 0, 0x01, 0x02, 0x01, 0x01, 1, 2, 3, 4, 0xaa,
        ];
        let h = Header::new_checked(&ok[..]).unwrap();
        assert_eq!(h.header_len(), 16);
        assert_eq!(h.payload(), &[0xaa]);
        assert!(Repr::parse(&h).is_ok());
        let mut crit = ok;
        crit[10] = 0x81;
        let h = Header::new_checked(&crit[..]).unwrap();
        assert!(matches!(Repr::parse(&h), Err(Error::Invalid(_))));
        // Option length runs past the declared options.
        let mut long = ok;
        long[11] = 0x02;
        let h = Header::new_checked(&long[..]).unwrap();
        assert_eq!(Repr::parse(&h), Err(Error::Truncated));
        // Options declared longer than the buffer.
        assert_eq!(
            Header::new_checked(&ok[..12]).unwrap_err(),
            Error::Truncated
        );
    }
}
