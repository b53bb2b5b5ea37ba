#!/usr/bin/env bash
# The main job (README): a `file` SR lifecycle driven through the XSMFileSR plugin exactly as xapi
# calls it, printing each methodCall, the XenAPI calls the plugin makes, and each response.
# Needs cargo and qemu-utils (qemu-img, qemu-nbd, qemu-io); no root.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v qemu-img >/dev/null && command -v qemu-nbd >/dev/null && command -v qemu-io >/dev/null || {
    echo "file-lifecycle: needs qemu-utils (apt-get install qemu-utils)" >&2
    exit 1
}
cargo build --release --locked -q -p xsm --bin xsm --example file_lifecycle
target=${CARGO_TARGET_DIR:-target}
exec "$target/release/examples/file_lifecycle" "$target/release/xsm"
