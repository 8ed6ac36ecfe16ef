#!/usr/bin/env bash
# The test command (README, .ci/run): formatting, lints, unit + integration tests against the real binary,
# the supply-chain gate (cargo-deny), and the browser tests in Debian's Chromium. Needs: cargo, cargo-deny, node/npm,
# promtool, chromium (`.ci/deps` installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/hearth-target}
# the Python with the `openai` client and schemathesis (.ci/deps makes this venv)
export HEARTH_TEST_PYTHON=${HEARTH_TEST_PYTHON:-$HOME/.cache/hearth-venv/bin/python}

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --check

step "web: dependencies and type check"
if [ ! -f web/node_modules/.package-lock.json ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then
  (cd web && npm ci --no-audit --no-fund)
fi
(cd web && npm run --silent typecheck)

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo deny check licenses bans sources (supply chain: deny.toml)"
cargo deny --locked check licenses bans sources

step "cargo test (unit + integration tests against the real binary; includes the fuzz targets' smoke runs)"
cargo test -- --skip openapi::

# alone: schemathesis and the embedding model would compete for the two cores with the other integration tests
step "the API answers what its OpenAPI document says (schemathesis against the real binary: tests/it/openapi.rs)"
cargo test --test it openapi::

step "packaging: the .deb is lintian-clean, systemd-analyze accepts the unit"
# the binary `cargo test` just built for the integration tests (a plain `cargo build` would compile every crate
# under tokio again without the dev-only `test-util` feature: ~20 minutes and ~10 GB for the same program)
cargo test --no-run --quiet
packaging/deb/check.sh "$CARGO_TARGET_DIR/debug/hearth"

step "browser tests (Chromium via playwright-core; screenshots in web/test-artifacts/)"
(cd web && HEARTH_BIN="$CARGO_TARGET_DIR/debug/hearth" node --test tests/)
