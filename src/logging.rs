//! Logging: `tracing` to stdout, JSON when stdout is not a terminal (or `log.format = "json"`), readable text when it
//! is. The level filter can be swapped at run time (config changes); the format is fixed at start-up.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::{LogConfig, LogFormat};

/// Changes the level filter of the installed subscriber.
#[derive(Clone)]
pub(crate) struct LevelHandle(reload::Handle<EnvFilter, Registry>);

impl LevelHandle {
    pub(crate) fn set(&self, level: &str) -> Result<(), String> {
        let filter = EnvFilter::builder().parse(level).map_err(|e| e.to_string())?;
        self.0.reload(filter).map_err(|e| e.to_string())
    }
}

/// Install the global subscriber. `RUST_LOG`, when set, overrides `log.level` at start-up.
pub(crate) fn init(cfg: &LogConfig) -> LevelHandle {
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| cfg.level.clone());
    let filter = EnvFilter::builder().parse(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let json = match cfg.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(
                tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false).with_target(true),
            )
            .try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer().with_target(false)).try_init()
    };
    let _ = result;
    LevelHandle(handle)
}
