//! Scraping `[[metrics.scrape]]` targets: one HTTP GET of Prometheus text or OpenMetrics, parsed, labelled with
//! `job` (the scrape's name) and `instance` (the URL's host:port), plus the synthetic series Prometheus adds
//! (`up`, `scrape_duration_seconds`, `scrape_samples_scraped`). A failed scrape stores `up 0` and its error.

use std::time::{Duration, Instant};

use super::expo;
use super::model::{Labels, Sample};

/// Largest exposition body accepted (a runaway exporter cannot fill the store or the memory).
const MAX_BODY: usize = 16 << 20;

/// A compiled scrape target.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    pub name: String,
    pub url: reqwest::Url,
    pub interval: Duration,
    pub timeout: Duration,
    pub bearer: Option<String>,
}

impl Target {
    pub(crate) fn instance(&self) -> String {
        let host = self.url.host_str().unwrap_or("");
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
        format!("{host}:{}", self.url.port_or_known_default().unwrap_or(80))
    }

    fn target_labels(&self) -> Vec<(String, String)> {
        vec![("job".into(), self.name.clone()), ("instance".into(), self.instance())]
    }
}

pub(crate) struct Scraped {
    pub samples: Vec<Sample>,
    pub duration: Duration,
    pub error: Option<String>,
}

pub(crate) async fn scrape(client: &reqwest::Client, t: &Target) -> Scraped {
    let started = Instant::now();
    let result = fetch(client, t).await;
    let duration = started.elapsed();
    let (mut samples, error) = match result {
        Ok(text) => match expo::parse(&text, &t.target_labels()) {
            Ok(s) => (s, None),
            Err(e) => (vec![], Some(format!("invalid exposition text: {e}"))),
        },
        Err(e) => (vec![], Some(e)),
    };
    let n = samples.len();
    let tl = t.target_labels();
    let synth = |name: &str, v: f64| {
        let mut pairs = tl.clone();
        pairs.push((model_name(), name.to_string()));
        Sample { labels: Labels::new(pairs), value: v }
    };
    samples.push(synth("up", if error.is_none() { 1.0 } else { 0.0 }));
    samples.push(synth("scrape_duration_seconds", duration.as_secs_f64()));
    samples.push(synth("scrape_samples_scraped", n as f64));
    Scraped { samples, duration, error }
}

fn model_name() -> String {
    super::model::NAME.to_string()
}

async fn fetch(client: &reqwest::Client, t: &Target) -> Result<String, String> {
    let mut req = client
        .get(t.url.clone())
        .timeout(t.timeout)
        .header("accept", "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1")
        .header("x-prometheus-scrape-timeout-seconds", format!("{}", t.timeout.as_secs_f64()));
    if let Some(b) = &t.bearer {
        req = req.bearer_auth(b);
    }
    let mut resp = req.send().await.map_err(|e| crate::util::error_chain(&e))?;
    if !resp.status().is_success() {
        return Err(format!("server returned HTTP status {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| crate::util::error_chain(&e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("the response is larger than {} MB", MAX_BODY >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "the response is not UTF-8 text".to_string())
}
