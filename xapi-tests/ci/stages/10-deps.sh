#!/usr/bin/env bash
# Host packages the host-side stages need. Idempotent: installs only what is missing.
set -euo pipefail
need=()
for c in qemu-img:qemu-utils qemu-nbd:qemu-utils qemu-io:qemu-utils mkfs.ext4:e2fsprogs losetup:mount \
         mount:mount blkid:util-linux wipefs:util-linux findmnt:util-linux python3:python3; do
    command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
done
if ((${#need[@]})); then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi
echo "deps ok: $(qemu-img --version | head -1)"
