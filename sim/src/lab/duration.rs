//! Durations as people write them in lab files: `100us`, `2ms`, `1.5s`, `2m`.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use smoltcp::time::Duration;

/// A duration read from a lab file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parse `<number><unit>` with unit `us`, `ms`, `s` or `m`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration {s:?} needs a unit (us, ms, s, m)"))?;
        let (num, unit) = s.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("duration {s:?}: {num:?} is not a number"))?;
        let micros = match unit {
            "us" => value,
            "ms" => value * 1e3,
            "s" => value * 1e6,
            "m" => value * 60e6,
            _ => {
                return Err(format!(
                    "duration {s:?}: unknown unit {unit:?} (us, ms, s, m)"
                ));
            }
        };
        if !(0.0..=1e15).contains(&micros) {
            return Err(format!("duration {s:?} is out of range"));
        }
        Ok(Dur(Duration::from_micros(micros.round() as u64)))
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
        assert_eq!(Dur::parse("250ms").unwrap().to_string(), "250ms");
    }
}
