//! Loki's push bodies (pure): JSON (`{"streams":[{"stream":{…},"values":[["<ns>","line"(,{metadata})]]}]}`) and
//! protobuf + snappy (`logproto.PushRequest`, labels as `{a="b"}` text), so Alloy, Promtail, Docker's Loki driver
//! and the Python/Go Loki handlers push to hearth unchanged. Every line gets `source="push"`, a `host` (its label,
//! else the client's address) and a `level` (its label, else found in the line, else `unknown`).

use super::logql;
use super::model::{Entry, Labels, level_of};

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StreamAdapter {
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPair>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(serde::Deserialize)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(serde::Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
}

/// The level a line says it has: `level=…`, `"level":"…"`, `lvl=…`, or a leading `ERROR`/`WARN`/….
pub(crate) fn detect_level(line: &str) -> &'static str {
    let head = super::model::cut(line, 512);
    for key in ["level=", "lvl=", "\"level\":\"", "\"level\": \"", "severity="] {
        if let Some(i) = head.find(key) {
            let v: String = head[i + key.len()..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            let l = level_of(&v);
            if l != "unknown" {
                return l;
            }
        }
    }
    let first: String = head.trim_start_matches(['[', ' ']).chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    if first.len() >= 4 && first.chars().all(|c| c.is_ascii_uppercase()) {
        return level_of(&first);
    }
    "unknown"
}

/// The labels a pushed stream is kept under.
fn stream_labels(pairs: impl IntoIterator<Item = (String, String)>, client: &str) -> Labels {
    let mut l = Labels::new(pairs);
    l.set("source", "push");
    if l.get("host").is_none() {
        let h = l.get("hostname").map(String::from).unwrap_or_else(|| client.to_string());
        l.set("host", &h);
    }
    l
}

fn entry(labels: &Labels, t_ns: i64, line: &str, metadata: &[(String, String)]) -> (Entry, bool) {
    let mut l = labels.clone();
    if l.get("level").is_none() {
        let lv =
            metadata.iter().find(|(k, _)| k == "level").map(|(_, v)| level_of(v)).unwrap_or_else(|| detect_level(line));
        l.set("level", lv);
    }
    Entry::new(t_ns, l, line)
}

/// Parse a JSON push; the error names what is wrong (Loki answers 400 with it).
pub(crate) fn from_json(body: &[u8], client: &str) -> Result<Vec<(Entry, bool)>, String> {
    let p: JsonPush = serde_json::from_slice(body).map_err(|e| format!("the push body is not Loki's JSON: {e}"))?;
    let mut out = vec![];
    for (i, s) in p.streams.into_iter().enumerate() {
        if s.stream.is_empty() {
            return Err(format!("streams[{i}]: a stream needs at least one label"));
        }
        let labels = stream_labels(s.stream, client);
        for (j, v) in s.values.iter().enumerate() {
            let bad = || format!("streams[{i}].values[{j}]: expected [\"<unix ns>\", \"<line>\"(, {{metadata}})]");
            let t: i64 = v.first().and_then(|t| t.as_str()).and_then(|t| t.parse().ok()).ok_or_else(bad)?;
            let line = v.get(1).and_then(|l| l.as_str()).ok_or_else(bad)?;
            let meta: Vec<(String, String)> = v
                .get(2)
                .and_then(|m| m.as_object())
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                .unwrap_or_default();
            out.push(entry(&labels, t, line, &meta));
        }
    }
    Ok(out)
}

/// Parse a protobuf push (already snappy-decoded).
pub(crate) fn from_proto(body: &[u8], client: &str) -> Result<Vec<(Entry, bool)>, String> {
    use prost::Message;
    let p = PushRequest::decode(body).map_err(|e| format!("the push body is not Loki's protobuf: {e}"))?;
    let mut out = vec![];
    for (i, s) in p.streams.into_iter().enumerate() {
        let pairs = parse_labels(&s.labels).map_err(|e| format!("streams[{i}].labels {:?}: {e}", s.labels))?;
        let labels = stream_labels(pairs, client);
        for e in &s.entries {
            let t = e.timestamp.as_ref().map(|t| t.seconds * 1_000_000_000 + t.nanos as i64).unwrap_or(0);
            let meta: Vec<(String, String)> =
                e.structured_metadata.iter().map(|p| (p.name.clone(), p.value.clone())).collect();
            out.push(entry(&labels, t, &e.line, &meta));
        }
    }
    Ok(out)
}

/// `{a="b", c="d"}` as Prometheus writes label sets.
pub(crate) fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    match logql::parse(text).map_err(|e| e.to_string())? {
        logql::Query::Log(q) if q.stages.is_empty() => q
            .selector
            .into_iter()
            .map(|m| {
                if m.op == logql::Op::Eq {
                    Ok((m.name, m.value))
                } else {
                    Err("labels are name=\"value\" pairs".to_string())
                }
            })
            .collect(),
        _ => Err("expected {name=\"value\", …}".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn json_pushes_keep_labels_and_fill_source_host_level() {
        let body = br#"{"streams":[{"stream":{"app":"web","level":"warn"},"values":[["1700000000000000000","slow"],["1700000000000000001","ok",{"trace_id":"x"}]]},
            {"stream":{"app":"db"},"values":[["1700000000500000000","level=error msg=\"disk full\""]]}]}"#;
        let got = from_json(body, "192.168.1.9").unwrap();
        assert_eq!(got.len(), 3);
        let (e, _) = &got[0];
        assert_eq!(e.t_ns, 1_700_000_000_000_000_000);
        assert_eq!(
            (e.labels.get("source"), e.labels.get("host"), e.labels.get("level")),
            (Some("push"), Some("192.168.1.9"), Some("warn"))
        );
        assert_eq!(got[2].0.labels.get("level"), Some("error"), "found in the line");
        assert!(
            from_json(br#"{"streams":[{"stream":{"a":"b"},"values":[["x","y"]]}]}"#, "c")
                .unwrap_err()
                .contains("values[0]")
        );
        assert!(from_json(b"nope", "c").is_err());
    }

    #[test]
    fn protobuf_pushes_as_promtail_sends_them() {
        let req = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{job="varlogs", host="nas"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(Timestamp { seconds: 1_700_000_000, nanos: 5 }),
                    line: "ERROR something".into(),
                    structured_metadata: vec![],
                }],
                hash: 0,
            }],
        };
        let got = from_proto(&req.encode_to_vec(), "10.0.0.2").unwrap();
        assert_eq!(got[0].0.t_ns, 1_700_000_000_000_000_005);
        assert_eq!(got[0].0.labels.get("host"), Some("nas"));
        assert_eq!(got[0].0.labels.get("level"), Some("error"));
        assert!(from_proto(b"\xff\xff", "c").is_err());
        assert!(parse_labels(r#"{a=~"b"}"#).is_err());
    }

    #[test]
    fn levels_found_in_lines() {
        assert_eq!(detect_level(r#"{"level":"warning","msg":"x"}"#), "warning");
        assert_eq!(detect_level("ts=1 lvl=debug"), "debug");
        assert_eq!(detect_level("[ERROR] failed"), "error");
        assert_eq!(detect_level("Error: not upper case"), "unknown");
    }
}
