//! Human sizes in the config: `512KB`, `64MB`, `2GB` (powers of 1024, as `du -h` prints them), or a plain number
//! of bytes.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ByteSize(u64);

const UNITS: [(&str, u64); 5] = [("tb", 1 << 40), ("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10), ("b", 1)];

impl ByteSize {
    pub(crate) const fn mib(n: u64) -> Self {
        ByteSize(n << 20)
    }

    pub(crate) const fn bytes(&self) -> u64 {
        self.0
    }

    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid size {s:?}: expected e.g. \"512KB\", \"64MB\", \"2GB\" or a number of bytes");
        let t = s.trim().to_ascii_lowercase();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = t[..digits].parse().map_err(|_| bad())?;
        let unit = t[digits..].trim();
        let unit = unit.strip_suffix("ib").map(|u| format!("{u}b")).unwrap_or_else(|| unit.to_string());
        let mult = if unit.is_empty() {
            1
        } else {
            UNITS.iter().find(|(u, _)| *u == unit || u.trim_end_matches('b') == unit).ok_or_else(bad)?.1
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(bad)
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (u, m) in UNITS {
            if self.0 >= m && self.0.is_multiple_of(m) && m > 1 {
                return write!(f, "{}{}", self.0 / m, u.to_ascii_uppercase());
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn sizes_parse_and_print_back() {
        assert_eq!(ByteSize::parse("64MB").unwrap().bytes(), 64 << 20);
        assert_eq!(ByteSize::parse("64 mib").unwrap().bytes(), 64 << 20);
        assert_eq!(ByteSize::parse("2G").unwrap().bytes(), 2 << 30);
        assert_eq!(ByteSize::parse("1000").unwrap().bytes(), 1000);
        assert_eq!(ByteSize::parse("512KB").unwrap().to_string(), "512KB");
        assert_eq!(ByteSize::parse("1536KB").unwrap().to_string(), "1536KB");
        assert_eq!(ByteSize::mib(1024).to_string(), "1GB");
        assert!(ByteSize::parse("MB").is_err());
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert!(ByteSize::parse("99999999999999TB").is_err());
    }
}
