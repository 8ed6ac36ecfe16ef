//! The integration tests: one test crate (one link of the lancedb + candle binary instead of one per file), each
//! module driving the real `hearth` binary against real peers. `cargo test --test it <module>::` runs one module.

mod common;

mod acme;
mod alerts;
mod api;
mod contract;
mod dns;
mod dnssec;
mod lifecycle;
mod logs;
mod memory;
mod metrics;
mod onboarding;
mod openapi;
mod proxy;
mod traces;
