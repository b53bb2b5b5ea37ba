#!/usr/bin/env bash
# Fast tests: every crate's unit and fake-backed tests, no root, no devices.
set -euo pipefail
cargo build --workspace --all-targets --locked 2>&1 | tail -3
cargo test --workspace --locked 2>&1 | grep -E '^(test result|running|error|failures|---- )|panicked|FAILED' || true
cargo test --workspace --locked --quiet >/dev/null
# The pr-helper's protocol parser fuzzed with 10^6 random request streams (release build).
t0=$(date +%s)
PRH_FUZZ_CASES=1000000 cargo test --release --locked --quiet -p reservations --lib \
    prhelper::tests::fuzz_random_request_streams >/dev/null
echo "pr-helper fuzz: 10^6 request streams, no panic, every reply whole ($(($(date +%s) - t0))s)"
