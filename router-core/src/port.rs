//! Port identifiers: how router-core names a host's interfaces.
//!
//! Owns only the identifier type. Names (`eth0`), MACs and addresses of ports
//! belong to the runtime that owns the interfaces (simulator, agent).

use core::fmt;

/// A port (interface) of the host, as an index chosen by the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port{}", self.0)
    }
}
