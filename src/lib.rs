//! hearth: one binary for the homelab. The binary (`main.rs`) calls the command line, [`cli`]; this library holds
//! everything it runs. Every module is private: outside the crate only [`cli`], the fuzz targets' [`fuzzing`] and the
//! few items the benchmarks and integration tests reach ([`testing`]) are visible, so an item no code uses is dead
//! code the compiler reports (`unreachable_pub` keeps `pub` for what is truly exported).
//!
//! Layout, lowest layer first (ARCHITECTURE.md; enforced by the `layers` test): `util`; `net` (shared network
//! vocabulary), `ratelimit`; `config` (hearth.toml), `storage` (SQLite); `supervisor`, `telemetry`, `logging`,
//! `sysdns`; `auth` (users, sessions, tokens, the one login), `tls` (certificates: internal CA, ACME); the
//! subsystems `dns`, `proxy`, `memory`; `http` (admin API + UI); `front` (the HTTP(S) front door); `app` (wiring).

#![warn(unreachable_pub)]

mod alerts;
mod app;
mod auth;
pub mod cli;
mod config;
mod dns;
mod docker;
mod front;
pub mod fuzzing;
mod http;
#[cfg(test)]
mod layers;
mod logging;
mod logs;
mod memory;
mod metrics;
mod net;
mod proxy;
mod ratelimit;
mod storage;
mod supervisor;
mod sysdns;
mod telemetry;
mod tls;
mod tracecontext;
mod traces;
mod util;

/// What the benchmarks and the integration tests reach inside the crate (nothing else outside it does).
#[doc(hidden)]
pub mod testing {
    pub use crate::app::migrations;
    pub use crate::auth::{SessionKind, create_session, find_user, hash_password};
    pub use crate::dns::blocklist::{Engine, ListInput, ListKind, ListSet, Verdict};
    pub use crate::logs::BenchLogs;
    pub use crate::metrics::{BenchStore, HostState, bench_collect_round};
    pub use crate::storage::Db;
    pub use crate::util::unix_now;
}

pub const BUILD_COMMIT: &str = env!("HEARTH_COMMIT");
pub const BUILD_DATE: &str = env!("HEARTH_BUILD_DATE");

/// The build time in Unix seconds: a clock that reads earlier than this is not plausible (DNSSEC).
pub fn build_epoch() -> u64 {
    env!("HEARTH_BUILD_EPOCH").parse().unwrap_or(0)
}
