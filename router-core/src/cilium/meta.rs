//! Object metadata shared by every Kubernetes object, and the string-typed
//! fields (addresses, prefixes, communities, durations) Kubernetes and
//! Cilium write as text.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Display;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, de};

/// `apiVersion` and `kind`: which type a document holds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeMeta {
    /// `group/version`, or `v1` for the core group.
    pub api_version: String,
    /// The type's name, e.g. `CiliumBGPClusterConfig`.
    pub kind: String,
}

/// `metadata`: the fields nexthop uses (others are accepted and ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// The object's name, unique per kind (and namespace).
    pub name: String,
    /// The namespace of namespaced objects.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels, matched by label selectors.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations (LB-IPAM reads `lbipam.cilium.io/*` on services).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl ObjectMeta {
    /// Metadata with a name and no labels.
    pub fn named(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            ..ObjectMeta::default()
        }
    }
}

/// Parse a value Kubernetes writes as a string (an IP address, a prefix)
/// through its `FromStr`, so a bad value is an error at its field.
fn parse<T, E>(text: String) -> Result<T, E>
where
    T: FromStr,
    T::Err: Display,
    E: de::Error,
{
    text.parse()
        .map_err(|e| E::custom(format_args!("{text:?}: {e}")))
}

/// An optional string-typed field.
pub(crate) fn option_from_str<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    Option::<String>::deserialize(deserializer)?
        .map(parse)
        .transpose()
}

/// A list of string-typed values (a missing or null list is empty).
pub(crate) fn vec_from_str<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: Display,
{
    Option::<Vec<String>>::deserialize(deserializer)?
        .unwrap_or_default()
        .into_iter()
        .map(parse)
        .collect()
}

/// A duration as Helm values, Cilium's flags and lab files spell it:
/// `<number><unit>`, unit `us`, `ms`, `s` or `m`, the number with an
/// optional fraction (`100us`, `200ms`, `1.5s`, `2m`); at most 10^15 µs.
/// Digits beyond a microsecond are dropped.
pub fn parse_duration(text: &str) -> Result<smoltcp::time::Duration, String> {
    use alloc::format;
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration {s:?} needs a unit (us, ms, s, m)"))?;
    let (number, unit) = s.split_at(split);
    let scale: u64 = match unit {
        "us" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        _ => {
            return Err(format!(
                "duration {s:?}: unknown unit {unit:?} (us, ms, s, m)"
            ));
        }
    };
    let not_a_number = || format!("duration {s:?}: {number:?} is not a number");
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(not_a_number());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| not_a_number())?
    };
    let out_of_range = || format!("duration {s:?} is out of range");
    let mut micros = whole.checked_mul(scale).ok_or_else(out_of_range)?;
    let mut digit = scale;
    for d in fraction.bytes() {
        digit /= 10;
        micros += u64::from(d - b'0') * digit;
    }
    if micros > 1_000_000_000_000_000 {
        return Err(out_of_range());
    }
    Ok(smoltcp::time::Duration::from_micros(micros))
}
