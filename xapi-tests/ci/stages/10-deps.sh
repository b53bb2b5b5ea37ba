#!/usr/bin/env bash
# Host packages the host-side stages need. Idempotent: installs only what is missing.
set -euo pipefail
need=()
for c in qemu-img:qemu-utils qemu-nbd:qemu-utils qemu-io:qemu-utils mkfs.ext4:e2fsprogs losetup:mount \
         mount:mount blkid:util-linux wipefs:util-linux findmnt:util-linux python3:python3; do
    command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
done
# qemu-system-x86 (QEMU as the pr-helper's real client in stage 30, the lab's guests in stage
# 50) replaces a newer preinstalled qemu-utils, so both go in at the same candidate version.
if ! command -v qemu-system-x86_64 >/dev/null; then
    need+=(qemu-system-x86)
fi
if ((${#need[@]})); then
    apt-get update -q
    if [[ " ${need[*]} " == *" qemu-system-x86 "* ]]; then
        v=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ { print $2 }')
        need=("${need[@]/qemu-system-x86/qemu-system-x86=$v}")
        need=("${need[@]/qemu-utils/}")
        need+=("qemu-utils=$v")
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --allow-downgrades ${need[@]}
fi
qemu-system-x86_64 --version | head -1
echo "deps ok: $(qemu-img --version | head -1)"
