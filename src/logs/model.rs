//! What the log store keeps (pure): an entry is a time, a stream's labels and a line. Labels are sanitised and
//! bounded here, so every source goes through the same rules: names as Loki allows them, values and lines cut to a
//! size (and counted), invalid UTF-8 replaced.

use std::fmt::Write;

/// Longest line kept; longer ones are cut (with a marker) and counted.
pub(crate) const MAX_LINE: usize = 64 * 1024;
/// Longest label value kept.
pub(crate) const MAX_VALUE: usize = 256;
/// Most labels on one stream.
pub(crate) const MAX_LABELS: usize = 15;

/// A stream's labels: sorted by name, no empty values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub(crate) struct Labels(Vec<(String, String)>);

impl Labels {
    pub(crate) fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Labels {
        let mut v: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (sanitize_name(&k), cut(&v, MAX_VALUE).to_string()))
            .filter(|(k, _)| !k.is_empty())
            .collect();
        v.sort();
        v.dedup_by(|a, b| a.0 == b.0);
        v.truncate(MAX_LABELS);
        Labels(v)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub(crate) fn set(&mut self, name: &str, value: &str) {
        self.0.retain(|(k, _)| k != name);
        if !value.is_empty() {
            self.0.push((name.to_string(), value.to_string()));
            self.0.sort();
        }
    }

    /// Loki's form, `{a="1", b="2"}`; also the store's key for the stream.
    pub(crate) fn key(&self) -> String {
        let mut s = String::from("{");
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"));
        }
        s.push('}');
        s
    }

    pub(crate) fn to_map(&self) -> serde_json::Map<String, serde_json::Value> {
        self.0.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect()
    }
}

/// A label name as Loki accepts it: `[a-zA-Z_][a-zA-Z0-9_]*`, other characters replaced by `_`.
pub(crate) fn sanitize_name(n: &str) -> String {
    let mut s: String = n.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s.truncate(64);
    s
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One log line on its way in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// nanoseconds since the Unix epoch
    pub t_ns: i64,
    pub labels: Labels,
    pub line: String,
}

impl Entry {
    /// An entry with its line made safe to keep: cut at [`MAX_LINE`] (returns whether it was).
    pub(crate) fn new(t_ns: i64, labels: Labels, line: &str) -> (Entry, bool) {
        let kept = cut(line, MAX_LINE);
        let truncated = kept.len() < line.len();
        let line =
            if truncated { format!("{kept}… [truncated {} bytes]", line.len() - kept.len()) } else { kept.into() };
        (Entry { t_ns, labels, line }, truncated)
    }
}

/// The `level` label for what sources call a level or priority (journal priorities, tracing levels, words).
pub(crate) fn level_of(s: &str) -> &'static str {
    match s.trim().to_ascii_lowercase().as_str() {
        "0" | "1" | "2" | "emerg" | "alert" | "crit" | "critical" | "fatal" | "panic" => "critical",
        "3" | "err" | "error" | "eror" => "error",
        "4" | "warn" | "warning" => "warning",
        "5" | "6" | "notice" | "info" | "information" => "info",
        "7" | "debug" | "trace" | "dbug" => "debug",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sanitised_sorted_and_bounded() {
        let l = Labels::new([
            ("unit".into(), "nginx.service".into()),
            ("9bad-name".into(), "x".into()),
            ("empty".into(), String::new()),
            ("source".into(), "journal".into()),
            ("long".into(), "v".repeat(1000)),
        ]);
        assert_eq!(l.get("_9bad_name"), Some("x"));
        assert_eq!(l.get("empty"), None);
        assert_eq!(l.get("long").unwrap().len(), MAX_VALUE);
        assert_eq!(l.pairs()[0].0, "_9bad_name");
        let l = Labels::new((0..40).map(|i| (format!("k{i:02}"), "v".to_string())));
        assert_eq!(l.pairs().len(), MAX_LABELS);
        let l = Labels::new([("a".into(), "q\"uote".into()), ("b".into(), "2".into())]);
        assert_eq!(l.key(), r#"{a="q\"uote", b="2"}"#);
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary_and_marked() {
        let line = "é".repeat(MAX_LINE); // 2 bytes each
        let (e, cut) = Entry::new(0, Labels::default(), &line);
        assert!(cut);
        assert!(e.line.len() < MAX_LINE + 40);
        assert!(e.line.ends_with(&format!("[truncated {} bytes]", MAX_LINE)));
        let (e, cut) = Entry::new(0, Labels::default(), "short");
        assert!(!cut);
        assert_eq!(e.line, "short");
        assert_eq!(level_of("WARN"), "warning");
        assert_eq!(level_of("3"), "error");
        assert_eq!(level_of("?"), "unknown");
    }
}
