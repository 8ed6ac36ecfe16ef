//! hearth: one binary for the homelab. The binary (`main.rs`) is the command line; this library holds everything
//! it runs, so that benchmarks and tests can reach the pure cores directly.
//!
//! Layout (see ARCHITECTURE.md): `config` (hearth.toml), `storage` (SQLite), `auth` (users, sessions, tokens),
//! `supervisor` (subsystem tasks), `http` (admin API + UI), `dns` (filtering resolver), `proxy` (HTTPS front), `tls` (certificates: internal CA, ACME), `memory` (embeddings + vector store), `sysdns` (port 53 vs systemd-resolved), `telemetry` (metrics),
//! `logging`, `app` (wiring).

pub mod app;
pub mod auth;
pub mod config;
pub mod dns;
pub mod fuzzing;
pub mod http;
pub mod logging;
pub mod memory;
pub mod proxy;
pub mod ratelimit;
pub mod storage;
pub mod supervisor;
pub mod sysdns;
pub mod telemetry;
pub mod tls;
pub mod util;

pub const BUILD_COMMIT: &str = env!("HEARTH_COMMIT");
pub const BUILD_DATE: &str = env!("HEARTH_BUILD_DATE");

/// The build time in Unix seconds: a clock that reads earlier than this is not plausible (DNSSEC).
pub fn build_epoch() -> u64 {
    env!("HEARTH_BUILD_EPOCH").parse().unwrap_or(0)
}
