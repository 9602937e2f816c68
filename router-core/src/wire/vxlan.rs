//! VXLAN header (RFC 7348 §5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Followed by the inner Ethernet frame. Carried in UDP to port 4789 (IANA) or
//! 8472 (Linux and Cilium's default).

use super::Error;

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The "I" flag: the VNI is valid. RFC 7348 requires it set.
pub const FLAG_VNI: u8 = 0x08;
/// UDP port Linux and Cilium use by default.
pub const PORT_LINUX: u16 = 8472;
/// UDP port assigned by IANA.
pub const PORT_IANA: u16 = 4789;

/// A VXLAN header view over a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    /// Wrap `buffer` without checking it (for emitting into a buffer of the right size).
    pub fn new_unchecked(buffer: T) -> Self {
        Header { buffer }
    }
    /// Wrap `buffer`, checking it holds a whole header.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Header { buffer })
    }
    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[0]
    }
    /// The 24-bit VNI.
    pub fn vni(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([0, b[4], b[5], b[6]])
    }
    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    /// Set the flags byte.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[0] = flags;
    }
    /// Set the VNI (low 24 bits of `vni`) and clear the reserved bytes.
    pub fn set_vni(&mut self, vni: u32) {
        let v = vni.to_be_bytes();
        let b = self.buffer.as_mut();
        b[1..4].fill(0);
        b[4..7].copy_from_slice(&v[1..4]);
        b[7] = 0;
    }
}

/// A parsed VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// The 24-bit VXLAN network identifier.
    pub vni: u32,
}

impl Repr {
    /// Parse a header; the I flag must be set.
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>) -> Result<Self, Error> {
        if header.flags() & FLAG_VNI == 0 {
            return Err(Error::Invalid("VXLAN flags (I bit clear)"));
        }
        Ok(Repr { vni: header.vni() })
    }
    /// Write the header (flags 0x08, reserved fields zero).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        header.set_flags(FLAG_VNI);
        header.set_vni(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VNI 0x0000fa (250), as Wireshark shows a Cilium VXLAN frame's header.
    const BYTES: [u8; 8] = [0x08, 0, 0, 0, 0x00, 0x00, 0xfa, 0x00];

    #[test]
    fn parse_and_emit() {
        let h = Header::new_checked(&BYTES[..]).unwrap();
        assert_eq!(Repr::parse(&h), Ok(Repr { vni: 250 }));
        let mut buf = [0xffu8; 8];
        Repr { vni: 250 }.emit(&mut Header::new_checked(&mut buf[..]).unwrap());
        assert_eq!(buf, BYTES);
    }

    #[test]
    fn rejects_short_and_flagless() {
        assert_eq!(
            Header::new_checked(&BYTES[..7]).unwrap_err(),
            Error::Truncated
        );
        let mut b = BYTES;
        b[0] = 0;
        let h = Header::new_checked(&b[..]).unwrap();
        assert!(matches!(Repr::parse(&h), Err(Error::Invalid(_))));
    }
}
