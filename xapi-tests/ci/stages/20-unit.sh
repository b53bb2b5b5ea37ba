#!/usr/bin/env bash
# Fast tests: every crate's unit and fake-backed tests, no root, no devices.
set -euo pipefail
cargo build --workspace --all-targets --locked 2>&1 | tail -3
cargo test --workspace --locked 2>&1 | grep -E '^(test result|running|error|failures|---- )|panicked|FAILED' || true
cargo test --workspace --locked --quiet >/dev/null
