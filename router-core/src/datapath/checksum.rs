//! Internet checksum arithmetic (RFC 1071) and incremental update (RFC 1624).
//!
//! Owns only the ones'-complement arithmetic, allocation-free and loop-bounded,
//! so the eBPF programs compute the very same values. Where checksums live in
//! which header is the pipeline's business.

/// Ones'-complement sum of `data` as big-endian 16-bit words (odd tail padded), not complemented.
#[inline(always)]
pub fn sum(data: &[u8]) -> u32 {
    let mut acc = 0u32;
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        acc += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

/// Fold a 32-bit ones'-complement accumulator into 16 bits.
#[inline(always)]
pub fn fold(mut acc: u32) -> u16 {
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// The checksum to store for a header whose checksum field is zero: `!fold(sum)`.
#[inline(always)]
pub fn compute(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word changed from `old` to `new`.
#[inline(always)]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!check) + u32::from(!old) + u32::from(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv4 header example of RFC 1071-style worked examples: checksum 0xb861.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn computes_the_known_header_checksum() {
        assert_eq!(compute(&HEADER), 0xb861);
        let mut h = HEADER;
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(fold(sum(&h)), 0xffff);
    }

    #[test]
    fn incremental_update_matches_recompute() {
        let mut h = HEADER;
        h[10..12].copy_from_slice(&compute(&HEADER).to_be_bytes());
        for ttl in (1..=0x40u8).rev() {
            let old = u16::from_be_bytes([h[8], h[9]]);
            h[8] = ttl - 1;
            let new = u16::from_be_bytes([h[8], h[9]]);
            let check = update16(u16::from_be_bytes([h[10], h[11]]), old, new);
            h[10..12].copy_from_slice(&check.to_be_bytes());
            assert_eq!(fold(sum(&h)), 0xffff, "ttl {}", ttl - 1);
        }
    }

    #[test]
    fn odd_length_is_padded() {
        assert_eq!(sum(&[0x01]), 0x0100);
    }
}
