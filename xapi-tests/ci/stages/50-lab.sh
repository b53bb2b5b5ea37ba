#!/usr/bin/env bash
# The storage lab (docs/lab.md): host packages (and blktap's build dependencies), the guest image
# (cached), then every lab test of the workspace, one-host group (lab_*) then two-host group
# (lab2_*), in qemu TCG guests.
set -euo pipefail
t0=$(date +%s)

# Host tools. qemu-system-x86 from the Debian suite replaces a newer preinstalled qemu-utils, so
# both are installed at the same candidate version and checked afterwards.
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v mke2fs >/dev/null || need+=(e2fsprogs)
command -v python3 >/dev/null || need+=(python3)
# What ../shared/blktap/build.sh needs to build tapdisk, tap-ctl and vhd-util (run-suite runs it).
for p in autoconf automake libtool make gcc pkg-config libaio-dev uuid-dev libxen-dev zlib1g-dev \
         libssl-dev libcmocka-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if ((${#need[@]})); then
    apt-get update -q >/dev/null
    if [[ " ${need[*]} " == *" qemu-system-x86 "* ]]; then
        v=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ { print $2 }')
        need=("${need[@]/qemu-system-x86/qemu-system-x86=$v}")
        need+=("qemu-utils=$v")
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --allow-downgrades "${need[@]}" >/dev/null
fi
qemu-img --version | head -1
qemu-nbd --version | head -1
qemu-system-x86_64 --version | head -1
echo "lab: host packages ready in $(($(date +%s) - t0))s"

CARGO_FLAGS=${CARGO_FLAGS:---locked} LAB_QUIET=${LAB_QUIET:-} xapi-tests/lab/run-suite all
echo "lab: stage done in $(($(date +%s) - t0))s"
