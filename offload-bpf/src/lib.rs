//! The eBPF offload of the router-core datapath.
//!
//! Not yet built: this crate is a placeholder until the eBPF offload issue lands.
//! It will hold, in the aya-template layout, the shared `#[repr(C)]` map types,
//! the XDP/TC programs, the loader and map sync, and the differential harness.
