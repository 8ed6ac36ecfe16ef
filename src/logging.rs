//! Logging: `tracing` to stdout, JSON when stdout is not a terminal (or `log.format = "json"`), readable text when it
//! is. The level filter can be swapped at run time (config changes); the format is fixed at start-up. A tap hands
//! every event that passes the filter, as one line with its request id, to a bounded channel the log store reads
//! (`logs`); when that channel is full, events are dropped there and counted, never waited for.

use std::fmt::Write;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::config::{LogConfig, LogFormat};

/// Changes the level filter of the installed subscriber (the filter of the log lines: stdout and the tap).
#[derive(Clone)]
pub(crate) struct LevelHandle(Arc<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>);

impl LevelHandle {
    pub(crate) fn set(&self, level: &str) -> Result<(), String> {
        let filter = EnvFilter::builder().parse(level).map_err(|e| e.to_string())?;
        (self.0)(filter)
    }
}

/// One of hearth's own events, for the log store.
#[derive(Debug)]
pub(crate) struct OwnEvent {
    pub t_ns: i64,
    pub level: &'static str,
    /// the module the event came from (`dns`, `proxy`, …; a dependency's crate name for theirs)
    pub subsystem: String,
    /// `message key=value …` (logfmt after the message), with `request_id=` when the event is inside a request
    pub text: String,
}

/// The receiving end of the tap, and how many events it had to drop.
pub(crate) struct OwnEvents {
    pub rx: tokio::sync::mpsc::Receiver<OwnEvent>,
    pub dropped: Arc<AtomicU64>,
}

struct Tap {
    tx: tokio::sync::mpsc::Sender<OwnEvent>,
    dropped: Arc<AtomicU64>,
}

/// A span's request id, kept in its extensions for the events inside it.
struct RequestId(String);

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    request_id: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, f: &Field, v: &str) {
        match f.name() {
            "message" => self.message.push_str(v),
            "request_id" => self.request_id = Some(v.to_string()),
            name => {
                if v.is_empty() || v.contains([' ', '"', '=']) {
                    let _ = write!(self.rest, " {name}={v:?}");
                } else {
                    let _ = write!(self.rest, " {name}={v}");
                }
            }
        }
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.record_str(f, &format!("{v:?}"));
    }
}

fn level_word(l: &tracing::Level) -> &'static str {
    match *l {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warning",
        tracing::Level::INFO => "info",
        _ => "debug",
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Tap {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let (Some(rid), Some(span)) = (f.request_id, ctx.span(id)) {
            span.extensions_mut().insert(RequestId(rid));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut f = Fields::default();
        event.record(&mut f);
        let rid = f.request_id.clone().or_else(|| {
            ctx.event_scope(event)?.find_map(|span| span.extensions().get::<RequestId>().map(|r| r.0.clone()))
        });
        let mut text = f.message;
        text.push_str(&f.rest);
        if let Some(r) = rid {
            let _ = write!(text, " request_id={r}");
        }
        let target = meta.target();
        let subsystem = target.strip_prefix("hearth::").unwrap_or(target).split("::").next().unwrap_or("").to_string();
        let t_ns =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        let ev = OwnEvent { t_ns, level: level_word(meta.level()), subsystem, text };
        if self.tx.try_send(ev).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Install the global subscriber. `RUST_LOG`, when set, overrides `log.level` at start-up. Returns the handle that
/// changes the level and the tap's receiving end (`capacity` events; the log store drains it). `tracer`, when
/// given, turns hearth's spans into OpenTelemetry spans (the traces subsystem's); it has its own filter (hearth's
/// spans at info and above, no events), so the log level never changes what is traced.
pub(crate) fn init(
    cfg: &LogConfig,
    capacity: usize,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> (LevelHandle, OwnEvents) {
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| cfg.level.clone());
    let filter = EnvFilter::builder().parse(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let json = match cfg.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    let dropped = Arc::new(AtomicU64::new(0));
    let tap = Tap { tx, dropped: dropped.clone() };
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = if json {
        Box::new(
            tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false).with_target(true),
        )
    } else {
        Box::new(tracing_subscriber::fmt::layer().with_target(false))
    };
    let lines = fmt.and_then(tap).with_filter(filter);
    let spans = tracer.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.is_span() && m.target().starts_with("hearth") && *m.level() <= tracing::Level::INFO
            }))
    });
    let _ = tracing_subscriber::registry().with(lines).with(spans).try_init();
    let reload = move |f: EnvFilter| handle.reload(f).map_err(|e| e.to_string());
    (LevelHandle(Arc::new(reload)), OwnEvents { rx, dropped })
}
