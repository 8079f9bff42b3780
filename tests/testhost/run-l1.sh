#!/usr/bin/env bash
# tests/testhost/run-l1.sh - boot an L1 nested test host under QEMU TCG (emulated AMD SVM).
#
# Usage: run-l1.sh CPIO TIMEOUT_SECONDS LOGFILE
#   Runs the TESTHOST.md L1 command line
#     qemu-system-x86_64 -machine q35,accel=tcg -cpu max -m ${L1_MEMORY_MIB:-5120} -smp 1 -kernel $CACHE/vmlinuz
#       -initrd CPIO -append "console=ttyS0 quiet panic=-1" -nographic -no-reboot
#   with stdin from /dev/null (works without a tty, e.g. in CI), killed after TIMEOUT_SECONDS,
#   its serial output copied to LOGFILE (and to stdout unless RUN_L1_QUIET=1).
#   On timeout prints the tail of the log and exits 124; otherwise exits with QEMU's status.
# Environment: L1_MEMORY_MIB    L1 RAM (default 5120: room for an L2 guest above 4 GiB; TCG
#                                allocates it lazily)
#              L1_EXTRA_APPEND  extra L1 kernel parameters (e.g. "l1env.E2E_ONLY=boot-1cpu")
#              L1_QEMU_EXTRA    extra QEMU arguments (word-split)
#              L1_QEMU          the QEMU binary (default qemu-system-x86_64 on PATH)
#   L1's second serial port (ttyS1) goes to LOGFILE.hb: l1-init.sh writes a heartbeat line there
#   every 5 s, which stops when L1 stalls (l1_watch in lib.sh watches it).
set -euo pipefail
# shellcheck source=tests/testhost/lib.sh
source "$(dirname "$0")/lib.sh"

(($# == 3)) || die "usage: $0 CPIO TIMEOUT_SECONDS LOGFILE"
cpio=$1 tmo=$2 logf=$3
[[ -f $cpio ]] || die "no such initramfs: $cpio"
[[ -f $CACHE/vmlinuz ]] || die "$CACHE/vmlinuz missing: run fixtures.sh"
ensure_pkgs qemu-system-x86_64:qemu-system-x86 timeout:coreutils
mkdir -p "$(dirname "$logf")"

append="console=ttyS0 quiet panic=-1 ${L1_EXTRA_APPEND:-}"
read -ra extra <<<"${L1_QEMU_EXTRA:-}"
# shellcheck disable=SC2054 # commas are QEMU option syntax
cmd=("${L1_QEMU:-qemu-system-x86_64}" -machine q35,accel=tcg -cpu max -m "${L1_MEMORY_MIB:-5120}" -smp 1
    -kernel "$CACHE/vmlinuz" -initrd "$cpio" -append "${append% }"
    -nographic -no-reboot -serial mon:stdio -serial "file:$logf.hb" "${extra[@]}")
log "L1: ${cmd[*]} (timeout ${tmo}s, log $logf)"

start=$(date +%s.%N)
set +e
# Appending (O_APPEND) after one truncation: l1_watch (lib.sh) adds lines to the same log while
# L1 runs, and a writer with its own file offset would overwrite them.
: >"$logf"
: >"$logf.hb"
if [[ ${RUN_L1_QUIET:-0} == 1 ]]; then
    timeout -k 10 "$tmo" "${cmd[@]}" </dev/null >>"$logf" 2>&1
    rc=$?
else
    timeout -k 10 "$tmo" "${cmd[@]}" </dev/null 2>&1 | tee -a "$logf"
    rc=${PIPESTATUS[0]}
fi
set -e
end=$(date +%s.%N)
wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

if ((rc == 124 || rc == 137)); then
    log "TIMEOUT: L1 killed after ${tmo}s; last 40 lines of $logf:"
    tail -n 40 "$logf" | tr -d '\r' | sed 's/^/    | /' >&2
    exit 124
fi
log "L1 exited with status $rc after ${wall}s wall time"
exit "$rc"
