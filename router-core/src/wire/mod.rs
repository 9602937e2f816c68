//! Wire formats smoltcp does not have: the tunnel headers of the overlay
//! (`vxlan`, `geneve`), and the header lengths and offsets of the frames the
//! datapath handles (`layout`).
//!
//! Each header module is a typed view over bytes (`Header<T: AsRef<[u8]>>`, checked
//! once by `new_checked`) plus a parsed representation (`Repr`) with `parse`
//! and `emit`, in the style of smoltcp's `wire`. Allocation-free, so the eBPF
//! programs use the same layouts. Ethernet, ARP, IP, UDP come from smoltcp.

pub mod geneve;
pub mod layout;
pub mod vxlan;

/// A buffer too short for the header, or a field with a value the format forbids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The buffer ends before the header (or its options) does.
    Truncated,
    /// A field holds a value the format does not allow; the field's name.
    Invalid(&'static str),
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated => f.write_str("header truncated"),
            Error::Invalid(field) => write!(f, "invalid {field}"),
        }
    }
}
