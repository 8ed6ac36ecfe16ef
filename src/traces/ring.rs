//! The ring of recent traces (pure): spans gathered per trace until its root ends, then the finished trace kept
//! among the most recent, the slowest and the errored ones, each group bounded — so a user without Jaeger still
//! sees where a slow or failed request spent its time, and memory stays flat whatever the traffic.

use std::collections::{HashMap, VecDeque};

/// Traces whose root has not ended yet, at most; past it the oldest is dropped.
pub(crate) const MAX_PENDING: usize = 512;
/// Spans kept per trace, at most (a trace with more keeps its first ones and says how many it dropped).
pub(crate) const MAX_SPANS: usize = 256;
/// How many of each group the ring keeps.
pub(crate) const RECENT: usize = 100;
pub(crate) const SLOWEST: usize = 20;
pub(crate) const ERRORED: usize = 50;

/// A finished span. Kept as the tracer made it (ids as numbers, attributes as values): the ring moves spans and
/// never formats them; the API does when someone looks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpanRec {
    pub span_id: u64,
    /// 0 for a root span
    pub parent_id: u64,
    pub name: std::borrow::Cow<'static, str>,
    /// Unix time, ns
    pub start_ns: i64,
    pub end_ns: i64,
    pub attributes: Vec<opentelemetry::KeyValue>,
    /// the span's status was an error
    pub error: bool,
}

/// A finished trace.
#[derive(Debug, Clone)]
pub(crate) struct Trace {
    pub trace_id: u128,
    /// the root span's name and id
    pub root: std::borrow::Cow<'static, str>,
    pub root_span_id: u64,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub error: bool,
    /// whether it was sampled (and so exported, when `tracing.otlp_endpoint` is set)
    pub sampled: bool,
    pub spans: Vec<SpanRec>,
    /// spans past [`MAX_SPANS`] that were not kept
    pub dropped_spans: usize,
}

impl Trace {
    /// A root attribute's value.
    pub(crate) fn attr(&self, key: &str) -> Option<String> {
        let root = self.spans.iter().find(|s| s.span_id == self.root_span_id)?;
        root.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
    }
}

#[derive(Debug, Default)]
struct Pending {
    spans: Vec<SpanRec>,
    dropped: usize,
    seq: u64,
}

/// Pending spans and the kept traces.
#[derive(Debug, Default)]
pub(crate) struct Ring {
    pending: HashMap<u128, Pending>,
    seq: u64,
    recent: VecDeque<Trace>,
    /// sorted by duration, longest first
    slowest: Vec<Trace>,
    errored: VecDeque<Trace>,
    /// traces dropped while pending (their root never ended before [`MAX_PENDING`] newer ones)
    pub(crate) abandoned: u64,
}

impl Ring {
    /// Add a finished span; `root` says it has no parent in this process (its end finishes the trace).
    pub(crate) fn add(&mut self, trace_id: u128, span: SpanRec, root: bool, sampled: bool) {
        self.seq += 1;
        if !self.pending.contains_key(&trace_id)
            && self.pending.len() >= MAX_PENDING
            && let Some(oldest) = self.pending.iter().min_by_key(|(_, p)| p.seq).map(|(k, _)| *k)
        {
            self.pending.remove(&oldest);
            self.abandoned += 1;
        }
        let head = root.then(|| (span.span_id, span.name.clone(), span.start_ns, span.end_ns));
        let p = self.pending.entry(trace_id).or_default();
        p.seq = self.seq;
        if p.spans.len() < MAX_SPANS || root {
            p.spans.push(span);
        } else {
            p.dropped += 1;
        }
        let Some((root_span_id, name, start, end)) = head else { return };
        let Some(p) = self.pending.remove(&trace_id) else { return };
        let mut spans = p.spans;
        spans.sort_by_key(|s| s.start_ns);
        let error = spans.iter().any(|s| s.error);
        let t = Trace {
            trace_id,
            root: name,
            root_span_id,
            start_ns: start,
            duration_ns: end - start,
            error,
            sampled,
            spans,
            dropped_spans: p.dropped,
        };
        self.keep(t);
    }

    fn keep(&mut self, t: Trace) {
        if t.error {
            if self.errored.len() >= ERRORED {
                self.errored.pop_front();
            }
            self.errored.push_back(t.clone());
        }
        let slow_enough =
            self.slowest.len() < SLOWEST || self.slowest.last().is_some_and(|s| s.duration_ns < t.duration_ns);
        if slow_enough {
            let at = self.slowest.partition_point(|s| s.duration_ns >= t.duration_ns);
            self.slowest.insert(at, t.clone());
            self.slowest.truncate(SLOWEST);
        }
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(t);
    }

    /// Every kept trace once, newest first.
    pub(crate) fn traces(&self) -> Vec<&Trace> {
        let mut seen = std::collections::HashSet::new();
        let mut all: Vec<&Trace> = self
            .recent
            .iter()
            .chain(self.slowest.iter())
            .chain(self.errored.iter())
            .filter(|t| seen.insert(t.trace_id))
            .collect();
        all.sort_by_key(|t| std::cmp::Reverse(t.start_ns));
        all
    }

    /// One kept trace.
    pub(crate) fn get(&self, trace_id: u128) -> Option<&Trace> {
        self.recent.iter().chain(self.slowest.iter()).chain(self.errored.iter()).find(|t| t.trace_id == trace_id)
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: u64, parent: u64, start: i64, end: i64, error: bool) -> SpanRec {
        SpanRec {
            span_id: id,
            parent_id: parent,
            name: format!("s{id}").into(),
            start_ns: start,
            end_ns: end,
            attributes: vec![opentelemetry::KeyValue::new("request_id", format!("r{id}"))],
            error,
        }
    }

    #[test]
    fn a_trace_is_kept_when_its_root_ends_with_its_children() {
        let mut r = Ring::default();
        r.add(1, span(2, 1, 20, 30, false), false, true);
        r.add(1, span(3, 2, 22, 25, false), false, true);
        assert!(r.traces().is_empty(), "the root has not ended");
        r.add(1, span(1, 0, 10, 40, false), true, true);
        let t = r.get(1).unwrap();
        assert_eq!((t.root.as_ref(), t.duration_ns, t.spans.len(), t.error), ("s1", 30, 3, false));
        assert_eq!(t.spans.iter().map(|s| s.span_id).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(t.attr("request_id").as_deref(), Some("r1"));
        assert_eq!(r.pending(), 0);
        // a root whose parent is in another process (a remote traceparent) ends its trace too
        r.add(2, span(9, 0xffff, 50, 60, true), true, false);
        let t = r.get(2).unwrap();
        assert!(t.error && !t.sampled);
        assert_eq!(t.attr("request_id").as_deref(), Some("r9"));
        assert_eq!(r.traces()[0].trace_id, 2, "newest first");
    }

    #[test]
    fn slow_and_errored_traces_outlive_the_recent_ones() {
        let mut r = Ring::default();
        r.add(1, span(1, 0, 0, 1_000_000, false), true, true);
        r.add(2, span(1, 0, 1, 2, true), true, true);
        for i in 0..(RECENT as i64 * 3) {
            r.add(100 + i as u128, span(1, 0, 10 + i, 11 + i, false), true, true);
        }
        assert!(r.get(1).is_some(), "among the slowest");
        assert!(r.get(2).is_some(), "among the errored");
        assert!(r.get(150).is_none(), "pushed out of the recent ones, and not among the slowest");
        assert!(r.traces().len() <= RECENT + SLOWEST + ERRORED);
        assert_eq!(r.slowest.len(), SLOWEST);
        assert!(r.slowest.windows(2).all(|w| w[0].duration_ns >= w[1].duration_ns));
    }

    #[test]
    fn pending_traces_and_spans_are_bounded() {
        let mut r = Ring::default();
        for i in 0..(MAX_PENDING + 10) {
            r.add(1000 + i as u128, span(2, 1, 0, 1, false), false, true);
        }
        assert_eq!((r.pending(), r.abandoned), (MAX_PENDING, 10));
        for i in 0..(MAX_SPANS + 5) {
            r.add(7, span(10 + i as u64, 1, 0, 1, false), false, true);
        }
        r.add(7, span(1, 0, 0, 9, false), true, true);
        let t = r.get(7).unwrap();
        assert_eq!((t.spans.len(), t.dropped_spans), (MAX_SPANS + 1, 5), "the root is always kept");
    }
}
