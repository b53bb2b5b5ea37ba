#!/usr/bin/env bash
# The SMAPI spec's appendix test script against the xapi emulator and the real plugins (issue 4):
# the file-SR variant (needs no root), and as root the script itself on a fresh loop device (ext;
# lvm too once that driver exists). Fails when any xe command exits non-zero, when a command is
# missing from the trace, or when a command's SMAPI calls differ from appendix A.
set -euo pipefail
cd "$(dirname "$0")/../../.."
command -v qemu-io >/dev/null || { echo "qemu-io missing (stage 10-deps installs qemu-utils)" >&2; exit 1; }
xapi-tests/demo/run
