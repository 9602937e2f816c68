//! The XDP object, built from `ebpf/` by `build.rs` and embedded in this crate.

/// The ELF object holding the `nexthop` XDP program and its maps.
pub fn object() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nexthop"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_a_bpf_elf_object() {
        let o = super::object();
        assert_eq!(&o[..4], b"\x7fELF");
        // e_machine (offset 18, little-endian) is EM_BPF (247).
        assert_eq!(u16::from_le_bytes([o[18], o[19]]), 247);
    }
}
