#!/usr/bin/env bash
# Host root tests (tier "host root" in docs/conventions.md): every test named root_* marked
# #[ignore = "root: loop devices"], e.g. the ext SR on loop devices. Needs root. Loop devices are
# backed by files in a scratch directory of this stage (SM_TEST_LOOP_DIR); whatever a failed test
# left behind there (mounts, loop devices, files) is torn down on exit.
set -euo pipefail
if [[ $(id -u) != 0 ]]; then
    echo "30-root-host: needs root (loop devices, mkfs, mount)" >&2
    exit 1
fi
scratch=$(mktemp -d /tmp/xsm-root-ci.XXXXXX)
cleanup() {
    local dev file target
    while read -r dev file; do
        [[ $file == "$scratch"/* ]] || continue
        for target in $(findmnt -nro TARGET -S "$dev" 2>/dev/null); do umount -l "$target" || true; done
        losetup -d "$dev" || true
        echo "30-root-host: cleaned up leftover $dev"
    done < <(losetup -n -O NAME,BACK-FILE 2>/dev/null)
    rm -rf "$scratch"
}
trap cleanup EXIT
export SM_TEST_LOOP_DIR=$scratch
modprobe loop 2>/dev/null || true
truncate -s 1M "$scratch/probe"
dev=$(losetup --find --show "$scratch/probe") || { echo "30-root-host: no loop devices on this host" >&2; exit 1; }
losetup -d "$dev"
rm -f "$scratch/probe"
cargo build --workspace --all-targets --locked 2>&1 | tail -2
cargo test --workspace --locked -- --ignored root_ --test-threads=1 2>&1 \
    | grep -E '^(test |test result|running|error|failures|---- )|panicked|FAILED' || true
cargo test --workspace --locked --quiet -- --ignored root_ --test-threads=1 >/dev/null
