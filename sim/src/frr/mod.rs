//! The FRR-style ToR router: its configuration language (and, with the BGP
//! control plane, its `show` commands).

pub mod config;
