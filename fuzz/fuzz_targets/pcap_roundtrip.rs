//! The simulator's pcap writer: arbitrary frames with arbitrary times,
//! written and read back. Must hold: no panic; the file reads back as a
//! classic pcap (LINKTYPE_ETHERNET) with every frame, byte for byte, at its
//! time to the microsecond, in order.
//!
//! Run from the workspace root:
//! `cargo +nightly fuzz run pcap_roundtrip -- -max_total_time=600`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexthop_sim::{Instant, PcapWriter};

fuzz_target!(|data: &[u8]| {
    // Frames: a length byte, a time step byte, then that many bytes.
    let mut frames = Vec::new();
    let mut rest = data;
    let mut micros = 0i64;
    while let [len, step, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        micros += i64::from(*step) * 997;
        frames.push((micros, tail[..n].to_vec()));
        rest = &tail[n..];
    }
    let mut w = PcapWriter::new(Vec::new()).expect("a Vec takes the header");
    for (at, f) in &frames {
        w.write_frame(Instant::from_micros(*at), f).expect("a Vec takes frames");
    }
    let bytes = w.into_inner();
    assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_le_bytes(), "classic pcap, microseconds");
    assert_eq!(u32::from_le_bytes(bytes[20..24].try_into().unwrap()), 1, "Ethernet");
    let mut at = 24;
    for (micros, frame) in &frames {
        let word = |i: usize| u32::from_le_bytes(bytes[at + i..at + i + 4].try_into().unwrap());
        let (secs, usecs, caplen, len) = (word(0), word(4), word(8) as usize, word(12) as usize);
        assert_eq!(i64::from(secs) * 1_000_000 + i64::from(usecs), *micros);
        assert_eq!((caplen, len), (frame.len(), frame.len()));
        assert_eq!(&bytes[at + 16..at + 16 + caplen], &frame[..]);
        at += 16 + caplen;
    }
    assert_eq!(at, bytes.len());
});
