//! Prometheus remote write 1.0 (`[[metrics.remote_write]]`): the raw samples, sent from the store (not from a
//! memory queue) after a per-receiver cursor that only moves once the receiver accepted a batch, so an outage of the
//! receiver leaves no gap once it is back (as far back as `metrics.retention_raw`). Protobuf (`prost`) + snappy
//! (`snap`, block format), as the spec says.

use std::time::Duration;

use super::Metrics;
use super::model::Labels;

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// A compiled receiver.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Receiver {
    pub url: reqwest::Url,
    pub basic: Option<(String, String)>,
    pub bearer: Option<String>,
}

impl Receiver {
    /// The key its cursor is kept under (`metrics_meta`).
    pub(crate) fn cursor_key(&self) -> String {
        format!("remote_write:{}", self.url)
    }
}

/// Samples per request at most (the spec's receivers take a few thousand comfortably).
const MAX_SAMPLES: usize = 5_000;
/// How far one request reaches (a catch-up after an outage goes in such steps).
const MAX_SPAN_MS: i64 = 10 * 60_000;

/// The request body for these series (labels sorted, as the spec requires; `Labels` keeps them so).
pub(crate) fn encode(series: &[(Labels, Vec<(i64, f64)>)]) -> Vec<u8> {
    use prost::Message;
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|(l, pts)| TimeSeries {
                labels: l.pairs().iter().map(|(k, v)| Label { name: k.clone(), value: v.clone() }).collect(),
                samples: pts.iter().map(|&(t, v)| Sample { value: v, timestamp: t }).collect(),
            })
            .collect(),
    };
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy compresses any input")
}

/// One round for one receiver: send what was stored after its cursor, in batches, advancing the cursor after each
/// accepted batch. Returns the samples sent, or the error that stopped the round.
pub(crate) async fn push(
    client: &reqwest::Client,
    m: &std::sync::Arc<Metrics>,
    r: &Receiver,
    now: i64,
) -> Result<usize, String> {
    let key = r.cursor_key();
    let oldest = now - m.store.tiers()[0].retention_ms;
    let mut cursor = m.store.meta(&key).map_err(|e| e.to_string())?.unwrap_or(now - 60_000).max(oldest);
    // a little behind now, so samples of the current round are complete
    let until = now - 2_000;
    let mut sent = 0;
    while cursor < until {
        let end = (cursor + MAX_SPAN_MS).min(until);
        let (m2, from) = (m.clone(), cursor + 1);
        let series = tokio::task::spawn_blocking(move || m2.store.select(None, &|_| true, 0, from, end))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let series: Vec<(Labels, Vec<(i64, f64)>)> = series
            .into_iter()
            .map(|(l, pts)| (l, pts.into_iter().map(|p| (p.t, p.last)).collect::<Vec<_>>()))
            .collect();
        // batches of at most MAX_SAMPLES, whole series each (a series' samples stay in order)
        let mut batch: Vec<(Labels, Vec<(i64, f64)>)> = vec![];
        let mut n = 0;
        let mut batches = vec![];
        for s in series {
            if n + s.1.len() > MAX_SAMPLES && !batch.is_empty() {
                batches.push(std::mem::take(&mut batch));
                n = 0;
            }
            n += s.1.len();
            batch.push(s);
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        for b in batches {
            let count: usize = b.iter().map(|s| s.1.len()).sum();
            send(client, r, encode(&b)).await?;
            sent += count;
        }
        cursor = end;
        let (m2, key2) = (m.clone(), key.clone());
        tokio::task::spawn_blocking(move || m2.store.set_meta(&key2, end))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok(sent)
}

async fn send(client: &reqwest::Client, r: &Receiver, body: Vec<u8>) -> Result<(), String> {
    let mut req = client
        .post(r.url.clone())
        .timeout(Duration::from_secs(30))
        .header("content-encoding", "snappy")
        .header("content-type", "application/x-protobuf")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body);
    if let Some((u, p)) = &r.basic {
        req = req.basic_auth(u, Some(p));
    }
    if let Some(t) = &r.bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| crate::util::error_chain(&e))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text: String = resp.text().await.unwrap_or_default().chars().take(200).collect();
    Err(format!("HTTP {status}: {}", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn the_body_is_snappy_protobuf_with_sorted_labels() {
        let l = Labels::from_pairs("up", &[("job", "node"), ("instance", "a:1")]);
        let body = encode(&[(l, vec![(1000, 1.0), (2000, 0.0)])]);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = WriteRequest::decode(raw.as_slice()).unwrap();
        let names: Vec<&str> = req.timeseries[0].labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "instance", "job"]);
        assert_eq!(req.timeseries[0].samples[1], Sample { value: 0.0, timestamp: 2000 });
    }
}
