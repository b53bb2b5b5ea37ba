#!/bin/bash
# Runs the appendix test script's run_ops for the SR types given, in order.
#
# The script (kept verbatim in test-script.sh) ends by calling run_ops for 'lvm' and then 'ext',
# which are sm's types on a real host; ours are named apart (xsmlvm, xsmext). This wrapper
# sources the script's definitions - every
# line before its first top-level `SR_TYPE=` line, i.e. the script minus its last five lines -
# and calls run_ops itself for each type named. Nothing of the script's text is changed.
#
# Usage: run-types.sh <script> <sr-type>...
script=$1
shift
# shellcheck source=/dev/null
source <(sed '/^SR_TYPE=/,$d' "$script")
for SR_TYPE in "$@"; do
    run_ops
done
