//! Kubernetes label selectors (`matchLabels` and `matchExpressions`).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use serde::Deserialize;

/// A label selector. All of its terms must hold (they are ANDed); an empty
/// selector matches every object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default)]
    pub match_expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// How the label relates to `values`.
    pub operator: Operator,
    /// The values for `In` and `NotIn`.
    #[serde(default)]
    pub values: Vec<String>,
}

/// A `matchExpressions` operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Operator {
    /// The label is present with one of the values.
    In,
    /// The label is absent, or present with none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl LabelSelector {
    /// A selector requiring exactly these labels.
    pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> LabelSelector {
        LabelSelector {
            match_labels: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    /// Whether an object with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotIn => !value.is_some_and(|v| self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|&(k, v)| (k.into(), v.into())).collect()
    }

    fn expr(key: &str, operator: Operator, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: alloc::vec![Requirement {
                key: key.into(),
                operator,
                values: values.iter().map(|&v| v.into()).collect(),
            }],
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::default().matches(&labels(&[])));
        assert!(LabelSelector::default().matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_needs_every_pair() {
        let s = LabelSelector::labels([("enable-bgp", "true"), ("rack", "1")]);
        assert!(s.matches(&labels(&[
            ("enable-bgp", "true"),
            ("rack", "1"),
            ("x", "y")
        ])));
        assert!(!s.matches(&labels(&[("enable-bgp", "true")])));
        assert!(!s.matches(&labels(&[("enable-bgp", "false"), ("rack", "1")])));
    }

    #[test]
    fn operators() {
        let webpod = labels(&[("app", "webpod")]);
        let other = labels(&[("app", "other")]);
        let none = labels(&[]);
        let cases = [
            (expr("app", Operator::In, &["webpod"]), [true, false, false]),
            (
                expr("app", Operator::NotIn, &["webpod"]),
                [false, true, true],
            ),
            (expr("app", Operator::Exists, &[]), [true, true, false]),
            (
                expr("app", Operator::DoesNotExist, &[]),
                [false, false, true],
            ),
        ];
        for (selector, expected) in cases {
            let got = [&webpod, &other, &none].map(|l| selector.matches(l));
            assert_eq!(got, expected, "{selector:?}");
        }
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let mut s = expr("app", Operator::In, &["webpod"]);
        s.match_labels.insert("tier".into(), "web".into());
        assert!(s.matches(&labels(&[("app", "webpod"), ("tier", "web")])));
        assert!(!s.matches(&labels(&[("app", "webpod")])));
    }
}
