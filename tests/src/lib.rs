//! Cross-crate integration tests (BGP interop with FRR/BIRD/GoBGP in network
//! namespaces, VXLAN interop with the kernel, agent labs). None yet: they land
//! with the BGP speaker, eBPF offload and simulator issues.
