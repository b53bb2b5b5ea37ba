#!/usr/bin/env bash
# The rules that enforce themselves: formatting and every clippy lint as an error, on every
# target of the workspace (the project's lints live in Cargo.toml's [workspace.lints] and the
# clippy.toml files: no println!/eprintln!, no process spawned outside the runner, no runner in a
# driver, no unwrap/expect outside tests).
set -euo pipefail
command -v cargo-clippy >/dev/null || rustup component add clippy
command -v rustfmt >/dev/null || rustup component add rustfmt
cargo fmt --all -- --check
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! cargo clippy --workspace --all-targets --locked -- -D warnings >"$log" 2>&1; then
    cat "$log"
    echo "lint: cargo clippy -D warnings failed" >&2
    exit 1
fi
echo "lint ok: cargo fmt --check and cargo clippy --all-targets -D warnings are clean"
