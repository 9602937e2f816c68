//! The deterministic simulator (`nexthop-sim`): whole cluster labs on virtual time.
//!
//! Not yet built: this crate is a placeholder until the simulator issue lands.
//! Until then the README's run command runs the router-core demo.
