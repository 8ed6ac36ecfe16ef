//! Human durations in the config: `250ms`, `10s`, `5m`, `24h`, `7d`, and sums such as `1h30m`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Duration(std::time::Duration);

const UNITS: [(&str, u64); 6] = [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1), ("", 0)];

impl Duration {
    pub(crate) const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    pub(crate) const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    pub(crate) const fn as_std(&self) -> std::time::Duration {
        self.0
    }

    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid duration {s:?}: expected e.g. \"250ms\", \"10s\", \"5m\", \"24h\", \"7d\" or \"1h30m\"")
        };
        let s = s.trim();
        if s.is_empty() {
            return Err(bad());
        }
        let mut total: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let ms = match unit {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(bad()),
            };
            total = n.checked_mul(ms).and_then(|v| total.checked_add(v)).ok_or_else(bad)?;
        }
        Ok(Duration(std::time::Duration::from_millis(total)))
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ms = self.0.as_millis() as u64;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in UNITS.iter().take(5) {
            if ms >= *size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, ms, canonical) in [
            ("250ms", 250, "250ms"),
            ("10s", 10_000, "10s"),
            ("5m", 300_000, "5m"),
            ("24h", 86_400_000, "1d"),
            ("7d", 604_800_000, "7d"),
            ("1h30m", 5_400_000, "1h30m"),
            ("90s", 90_000, "1m30s"),
            ("0s", 0, "0s"),
        ] {
            let d = Duration::parse(text).unwrap();
            assert_eq!(d.as_std().as_millis() as u64, ms, "{text}");
            assert_eq!(d.to_string(), canonical, "{text}");
            assert_eq!(Duration::parse(&d.to_string()).unwrap(), d);
        }
    }

    #[test]
    fn rejects_junk() {
        for bad in ["", "10", "s", "10x", "1.5h", "-1s", "99999999999999999999d", "10 s"] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
    }
}
