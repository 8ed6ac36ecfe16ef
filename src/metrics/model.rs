//! The data model shared by the store, the collectors and the query engine: label sets and points.

use std::fmt::Write;
use std::sync::Arc;

/// A series' labels, sorted by name, `__name__` included. Two label sets are the same series exactly when equal.
/// Shared, so that the query engine hands the same set to every step of a range query without copying it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub(crate) struct Labels(Arc<Vec<(String, String)>>);

pub(crate) const NAME: &str = "__name__";

impl Labels {
    pub(crate) fn new(mut pairs: Vec<(String, String)>) -> Labels {
        pairs.retain(|(_, v)| !v.is_empty()); // an empty label value is the same as no label (Prometheus)
        pairs.sort();
        pairs.dedup_by(|a, b| a.0 == b.0);
        Labels(Arc::new(pairs))
    }

    pub(crate) fn from_pairs(name: &str, pairs: &[(&str, &str)]) -> Labels {
        let mut v: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        v.push((NAME.into(), name.into()));
        Labels::new(v)
    }

    /// Where this label set lives: equal for clones of one set (a cache key while the set is kept alive).
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn name(&self) -> &str {
        self.get(NAME).unwrap_or("")
    }

    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub(crate) fn set(&mut self, name: &str, value: &str) {
        let pairs = Arc::make_mut(&mut self.0);
        pairs.retain(|(k, _)| k != name);
        if !value.is_empty() {
            pairs.push((name.into(), value.into()));
            pairs.sort();
        }
    }

    pub(crate) fn without_name(&self) -> Labels {
        if self.get(NAME).is_none() {
            return self.clone();
        }
        Labels(Arc::new(self.0.iter().filter(|(k, _)| k != NAME).cloned().collect()))
    }

    /// Keep only `names` (or drop them when `keep` is false).
    pub(crate) fn project(&self, names: &[String], keep: bool) -> Labels {
        Labels(Arc::new(self.0.iter().filter(|(k, _)| names.iter().any(|n| n == k) == keep).cloned().collect()))
    }

    /// The canonical text form, `name{a="1",b="2"}`, used as the store's key.
    pub(crate) fn key(&self) -> String {
        let mut s = String::from(self.name());
        s.push('{');
        let mut first = true;
        for (k, v) in self.0.iter() {
            if k == NAME {
                continue;
            }
            if !first {
                s.push(',');
            }
            first = false;
            let _ = write!(s, "{k}=\"{}\"", escape(v));
        }
        s.push('}');
        s
    }

    /// Parse [`Labels::key`]'s form back.
    pub(crate) fn from_key(key: &str) -> Option<Labels> {
        let open = key.find('{')?;
        let mut pairs = vec![(NAME.to_string(), key[..open].to_string())];
        pairs.extend(super::expo::parse_label_list(key[open + 1..].strip_suffix('}')?).ok()?);
        Some(Labels::new(pairs))
    }

    pub(crate) fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        self.0.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect()
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One collected value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub labels: Labels,
    pub value: f64,
}

/// A point of one tier: a raw sample has `min = max = last = sum = value` and `count = 1`; a roll-up point
/// summarises the samples of one step and carries the time of its last sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub t: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: f64,
    pub last: f64,
}

impl Point {
    pub(crate) fn raw(t: i64, v: f64) -> Point {
        Point { t, min: v, max: v, sum: v, count: 1.0, last: v }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_round_trip_and_sort() {
        let l = Labels::from_pairs("up", &[("job", "node"), ("instance", "a:9100"), ("x", "q\"uo\\te\n")]);
        assert_eq!(l.key(), r#"up{instance="a:9100",job="node",x="q\"uo\\te\n"}"#);
        assert_eq!(Labels::from_key(&l.key()).unwrap(), l);
        assert_eq!(Labels::from_key("up{}").unwrap(), Labels::from_pairs("up", &[]));
        assert_eq!(Labels::from_pairs("up", &[("empty", "")]).pairs().len(), 1);
    }
}
