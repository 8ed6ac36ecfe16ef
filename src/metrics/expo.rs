//! The Prometheus text exposition format (0.0.4) and OpenMetrics text, parsed tolerantly into samples (pure).
//!
//! What a scrape needs: metric names, labels (with escapes), values (`NaN`, `±Inf`), optional timestamps and
//! OpenMetrics exemplars (ignored), `# TYPE` / `# HELP` / `# EOF`. A malformed line fails the whole scrape with its
//! line number, as Prometheus does, so half a target is never stored as if it were the whole.

use super::model::{Labels, NAME, Sample};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub(crate) struct ExpoError {
    pub line: usize,
    pub reason: String,
}

/// Parse an exposition text. `extra` labels (e.g. `job`, `instance`) are added to every sample; a sample's own
/// label of the same name is kept as `exported_<name>`, as Prometheus does without `honor_labels`.
pub(crate) fn parse(text: &str, extra: &[(String, String)]) -> Result<Vec<Sample>, ExpoError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            if line == "# EOF" {
                break;
            }
            continue;
        }
        let err = |reason: String| ExpoError { line: i + 1, reason };
        let (mut pairs, rest) = parse_series(line).map_err(err)?;
        // value, optional timestamp, optional OpenMetrics exemplar after " # "
        let rest = rest.split(" # ").next().unwrap_or("").trim();
        let mut fields = rest.split_ascii_whitespace();
        let value = fields.next().ok_or_else(|| err("a value is missing".into()))?;
        let value = parse_value(value).ok_or_else(|| err(format!("invalid value {value:?}")))?;
        if let Some(ts) = fields.next()
            && ts.parse::<f64>().is_err()
        {
            return Err(err(format!("invalid timestamp {ts:?}")));
        }
        if fields.next().is_some() {
            return Err(err("unexpected text after the timestamp".into()));
        }
        for (k, v) in extra {
            if let Some(p) = pairs.iter_mut().find(|(n, _)| n == k) {
                p.0 = format!("exported_{k}");
            }
            pairs.push((k.clone(), v.clone()));
        }
        out.push(Sample { labels: Labels::new(pairs), value });
    }
    Ok(out)
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

type Pairs = Vec<(String, String)>;

/// `name{labels}` at the start of a line; returns the pairs (with `__name__`) and the rest.
fn parse_series(line: &str) -> Result<(Pairs, &str), String> {
    let end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
    let name = &line[..end];
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(format!("expected a metric name at {:?}", truncate(line)));
    }
    let mut pairs = vec![(NAME.to_string(), name.to_string())];
    let rest = &line[end..];
    if let Some(body) = rest.trim_start().strip_prefix('{') {
        let close = find_close(body).ok_or_else(|| "unterminated label set".to_string())?;
        pairs.extend(parse_label_list(&body[..close])?);
        let rest = &body[close + 1..];
        if !rest.starts_with([' ', '\t']) {
            return Err("expected a space after the labels".into());
        }
        Ok((pairs, rest))
    } else if rest.starts_with([' ', '\t']) {
        Ok((pairs, rest))
    } else {
        Err(format!("invalid character in metric name at {:?}", truncate(line)))
    }
}

/// The index of the `}` closing a label set (quotes and escapes respected).
fn find_close(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// `a="1",b="x\"y",` → pairs.
pub(crate) fn parse_label_list(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        let name = &rest[..end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("invalid label name at {:?}", truncate(rest)));
        }
        rest = rest[end..].trim_start();
        rest = rest.strip_prefix('=').ok_or_else(|| format!("expected '=' after label {name}"))?.trim_start();
        rest = rest.strip_prefix('"').ok_or_else(|| format!("expected a quoted value for label {name}"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let mut closed = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => break,
                },
                '"' => {
                    closed = Some(i);
                    break;
                }
                _ => value.push(c),
            }
        }
        let close = closed.ok_or_else(|| format!("unterminated value of label {name}"))?;
        if out.iter().any(|(k, _)| k == name) {
            return Err(format!("label {name} appears twice"));
        }
        out.push((name.to_string(), value));
        rest = rest[close + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("expected ',' after label {name}"));
        }
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Sample {
        let v = parse(text, &[]).unwrap();
        assert_eq!(v.len(), 1, "{text}");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn parses_the_text_format() {
        let text = "# HELP x_total A counter.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"two words\"} 42\n\
                    up 1 1700000000000\nnan_gauge NaN\ninf_bucket{le=\"+Inf\"} +Inf\nneg -1.5e3\n\
                    trailing{a=\"1\",} 3\nspaced { a = \"1\" } 4\n";
        let v = parse(text, &[]).unwrap();
        assert_eq!(v.len(), 7);
        assert_eq!(v[0].labels.key(), r#"x_total{a="1",b="two words"}"#);
        assert_eq!(v[0].value, 42.0);
        assert_eq!(v[1].value, 1.0);
        assert!(v[2].value.is_nan());
        assert_eq!(v[3].value, f64::INFINITY);
        assert_eq!(v[4].value, -1500.0);
        assert_eq!(v[5].labels.get("a"), Some("1"));
        assert_eq!(v[6].value, 4.0);
    }

    #[test]
    fn escapes_and_openmetrics() {
        let s = one(r#"m{path="C:\\dir",q="say \"hi\"",n="a\nb"} 1"#);
        assert_eq!(s.labels.get("path"), Some("C:\\dir"));
        assert_eq!(s.labels.get("q"), Some("say \"hi\""));
        assert_eq!(s.labels.get("n"), Some("a\nb"));
        // an exemplar, then # EOF ends the text
        let v = parse("c_total 5 # {trace_id=\"abc\"} 1.0\n# EOF\nignored 1\n", &[]).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].value, 5.0);
        // braces inside a quoted value
        assert_eq!(one(r#"m{v="}{"} 2"#).labels.get("v"), Some("}{"));
    }

    #[test]
    fn target_labels_win_and_the_exporters_are_kept() {
        let extra = vec![("job".to_string(), "node".to_string()), ("instance".to_string(), "a:1".to_string())];
        let v = parse("m{job=\"theirs\"} 1\n", &extra).unwrap();
        assert_eq!(v[0].labels.get("job"), Some("node"));
        assert_eq!(v[0].labels.get("exported_job"), Some("theirs"));
        assert_eq!(v[0].labels.get("instance"), Some("a:1"));
    }

    #[test]
    fn bad_lines_name_their_number() {
        for (text, line) in [
            ("ok 1\nm{a=\"1\" 2\n", 2),
            ("m 1\n\nm{a=1} 2\n", 3),
            ("m one\n", 1),
            ("1m 1\n", 1),
            ("m\n", 1),
            ("m{a=\"1\",a=\"2\"} 1\n", 1),
            ("m 1 notatime\n", 1),
            ("m{a=\"unterminated} 1\n", 1),
        ] {
            let e = parse(text, &[]).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text, &[]);
        }
    }
}
