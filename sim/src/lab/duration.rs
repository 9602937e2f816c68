//! Durations as people write them in lab files: `100us`, `2ms`, `1.5s`, `2m`.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use smoltcp::time::Duration;

/// A duration read from a lab file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parse `<number><unit>` with unit `us`, `ms`, `s` or `m`, as
    /// router-core reads durations for both runtimes.
    pub fn parse(s: &str) -> Result<Self, String> {
        router_core::cilium::meta::parse_duration(s).map(Dur)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.total_micros();
        match us {
            us if us % 1_000_000 == 0 => write!(f, "{}s", us / 1_000_000),
            us if us % 1_000 == 0 => write!(f, "{}ms", us / 1_000),
            us => write!(f, "{us}us"),
        }
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 100us, 2ms or 1.5s")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                Dur::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(Dur::parse("100us").unwrap().0, Duration::from_micros(100));
        assert_eq!(Dur::parse("1.5s").unwrap().0, Duration::from_millis(1500));
        assert_eq!(Dur::parse("2m").unwrap().0, Duration::from_secs(120));
        assert!(Dur::parse("5").is_err());
        assert!(Dur::parse("5h").is_err());
        assert!(Dur::parse(".s").is_err());
        assert!(Dur::parse("1.2.3s").is_err());
        assert!(Dur::parse("99999999999999999999s").is_err());
        assert_eq!(Dur::parse(".25s").unwrap().0, Duration::from_millis(250));
        assert_eq!(Dur::parse("250ms").unwrap().to_string(), "250ms");
    }
}
