//! Classic libpcap capture files: `LINKTYPE_ETHERNET`, microsecond timestamps from virtual time.
//!
//! Because the timestamps are virtual, two runs of the same lab write byte-identical files, which
//! Wireshark and tshark open like any capture. The engine writes one file per segment; this
//! module only knows the format (little-endian, version 2.4, as libpcap writes on x86).

use std::io::{self, Write};

use smoltcp::time::Instant;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const VERSION_MAJOR: u16 = 2;
const VERSION_MINOR: u16 = 4;
/// libpcap's default snapshot length; every frame a segment accepts fits.
pub const SNAPLEN: u32 = 262_144;
/// `LINKTYPE_ETHERNET`.
const LINKTYPE_ETHERNET: u32 = 1;

/// Writes a pcap stream to `W`: the file header on creation, then one record per frame.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header and returns a writer ready for frames.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&MAGIC_MICROS.to_le_bytes());
        header.extend_from_slice(&VERSION_MAJOR.to_le_bytes());
        header.extend_from_slice(&VERSION_MINOR.to_le_bytes());
        header.extend_from_slice(&0i32.to_le_bytes()); // thiszone: timestamps are UTC
        header.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        header.extend_from_slice(&SNAPLEN.to_le_bytes());
        header.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&header)?;
        Ok(Self { out })
    }

    /// Appends `frame` stamped `at`. Refuses (as `InvalidInput`) a negative time, one past the
    /// format's 32-bit seconds, or a frame longer than [`SNAPLEN`].
    pub fn write_frame(&mut self, at: Instant, frame: &[u8]) -> io::Result<()> {
        let micros = at.total_micros();
        let secs = u32::try_from(micros.div_euclid(1_000_000))
            .ok()
            .filter(|_| micros >= 0)
            .ok_or_else(|| invalid(format!("time {at} does not fit a pcap timestamp")))?;
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|&len| len <= SNAPLEN)
            .ok_or_else(|| {
                invalid(format!(
                    "frame of {} bytes exceeds the snapshot length {SNAPLEN}",
                    frame.len()
                ))
            })?;
        // In 0..1_000_000, so it fits.
        let usecs = micros.rem_euclid(1_000_000) as u32;
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&secs.to_le_bytes());
        header[4..8].copy_from_slice(&usecs.to_le_bytes());
        header[8..12].copy_from_slice(&len.to_le_bytes());
        header[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&header)?;
        self.out.write_all(frame)
    }

    /// Flushes buffered output.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use smoltcp::time::Instant;
    use smoltcp::wire::{
        ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
        EthernetRepr, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
    };

    use super::PcapWriter;

    const MAC_A: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0a]);
    const MAC_B: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x0b]);
    const IP_A: Ipv4Address = Ipv4Address::new(192, 168, 10, 100);
    const IP_B: Ipv4Address = Ipv4Address::new(192, 168, 10, 101);

    /// A broadcast ARP request from A for B.
    pub(crate) fn arp_request() -> Vec<u8> {
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: MAC_A,
            source_protocol_addr: IP_A,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: IP_B,
        };
        let eth = EthernetRepr {
            src_addr: MAC_A,
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        };
        let mut buf = vec![0u8; eth.buffer_len() + arp.buffer_len()];
        let mut frame = EthernetFrame::new_unchecked(&mut buf);
        eth.emit(&mut frame);
        arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        buf
    }

    /// A UDP datagram from A to B carrying `payload`, with correct checksums.
    pub(crate) fn udp(payload: &[u8]) -> Vec<u8> {
        let udp = UdpRepr {
            src_port: 40000,
            dst_port: 8080,
        };
        let ip = Ipv4Repr {
            src_addr: IP_A,
            dst_addr: IP_B,
            next_header: IpProtocol::Udp,
            payload_len: udp.header_len() + payload.len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: MAC_A,
            dst_addr: MAC_B,
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = vec![0u8; eth.buffer_len() + ip.buffer_len() + ip.payload_len];
        let mut frame = EthernetFrame::new_unchecked(&mut buf);
        eth.emit(&mut frame);
        let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
        let checksums = smoltcp::phy::ChecksumCapabilities::default();
        ip.emit(&mut packet, &checksums);
        udp.emit(
            &mut UdpPacket::new_unchecked(packet.payload_mut()),
            &IP_A.into(),
            &IP_B.into(),
            payload.len(),
            |buf| buf.copy_from_slice(payload),
            &checksums,
        );
        buf
    }

    /// A fresh, empty scratch directory for one test.
    pub(crate) fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nexthop-sim-{}-{name}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs `tshark -r FILE` and asserts it decodes `frames` frames with no error or malformed
    /// packet; returns tshark's one-line summaries. `None` (with a printed reason) when tshark is
    /// not installed.
    pub(crate) fn tshark_decodes(file: &Path, frames: usize) -> Option<String> {
        let output = match Command::new("tshark").arg("-r").arg(file).output() {
            Ok(output) => output,
            Err(e) => {
                nexthop_testkit::skip(&format!(
                    "tshark check: cannot run tshark ({e}); apt-get install tshark"
                ));
                return None;
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "tshark failed on {}: {stderr}",
            file.display()
        );
        let stderr_lower = stderr.to_lowercase();
        assert!(
            !stdout.contains("Malformed")
                && !stderr_lower.contains("error")
                && !stderr_lower.contains("corrupt"),
            "tshark reports problems in {}:\n{stdout}\n{stderr}",
            file.display()
        );
        assert_eq!(stdout.lines().count(), frames, "tshark output:\n{stdout}");
        Some(stdout)
    }

    #[test]
    fn header_and_record_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_frame(Instant::from_micros(2_000_123), &[0xaa; 20])
            .unwrap();
        let bytes = w.into_inner();
        assert_eq!(bytes.len(), 24 + 16 + 20);
        assert_eq!(&bytes[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&bytes[4..8], &[2, 0, 4, 0]);
        assert_eq!(&bytes[16..20], &262_144u32.to_le_bytes());
        assert_eq!(&bytes[20..24], &1u32.to_le_bytes());
        assert_eq!(&bytes[24..28], &2u32.to_le_bytes());
        assert_eq!(&bytes[28..32], &123u32.to_le_bytes());
        assert_eq!(&bytes[32..36], &20u32.to_le_bytes());
        assert_eq!(&bytes[36..40], &20u32.to_le_bytes());
        assert_eq!(&bytes[40..], &[0xaa; 20]);
    }

    #[test]
    fn refuses_what_the_format_cannot_hold() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let negative = w.write_frame(Instant::from_micros(-1), &[0; 14]);
        assert_eq!(
            negative.unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        let huge = w.write_frame(Instant::ZERO, &vec![0; 262_145]);
        assert!(huge.unwrap_err().to_string().contains("snapshot length"));
        assert_eq!(w.into_inner().len(), 24);
    }

    #[test]
    fn tshark_reads_the_file() {
        let dir = scratch_dir("pcap-writer");
        let path = dir.join("frames.pcap");
        let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        w.write_frame(Instant::from_micros(0), &arp_request())
            .unwrap();
        w.write_frame(Instant::from_micros(1_500), &udp(b"hello"))
            .unwrap();
        w.write_frame(Instant::from_secs(3), &udp(&[7; 1000]))
            .unwrap();
        w.flush().unwrap();
        if let Some(summary) = tshark_decodes(&path, 3) {
            assert!(summary.contains("ARP"), "{summary}");
            assert!(summary.contains("UDP"), "{summary}");
            assert!(summary.contains("Who has 192.168.10.101"), "{summary}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
