//! hearth: one binary for the homelab. The binary (`main.rs`) is the command line; this library holds everything
//! it runs, so that benchmarks and tests can reach the pure cores directly.
//!
//! Layout, lowest layer first (ARCHITECTURE.md; enforced by the `layers` test): `util`; `net` (shared network
//! vocabulary), `ratelimit`; `config` (hearth.toml), `storage` (SQLite); `supervisor`, `telemetry`, `logging`,
//! `sysdns`; `auth` (users, sessions, tokens, the one login), `tls` (certificates: internal CA, ACME); the
//! subsystems `dns`, `proxy`, `memory`; `http` (admin API + UI); `front` (the HTTP(S) front door); `app` (wiring).

pub mod app;
pub mod auth;
pub mod config;
pub mod dns;
pub mod front;
pub mod fuzzing;
pub mod http;
#[cfg(test)]
mod layers;
pub mod logging;
pub mod memory;
pub mod net;
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
