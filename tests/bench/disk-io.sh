#!/usr/bin/env bash
# tests/bench/disk-io.sh - virtio-blk throughput seen by a Debian guest: our vmm against QEMU's
# user-space virtio-blk, in one L1 test host (or on this host with real KVM), same images,
# same run (tests/bench/disk-io-inner.sh does the measuring).
#
# Usage: tests/bench/disk-io.sh   (a benchmark, not a test: it fails only if nothing ran)
# Environment: VMM_BIN (default: build the static vmm), BENCH_RUNS=1, BENCH_TIMEOUT=600,
#   BENCH_FIO_RUNTIME=20, BENCH_VARIANTS="vmm qemu" (see disk-io-inner.sh), BENCH_L1_TIMEOUT=3000,
#   BENCH_LOG (default .cache/testhost/logs/bench-disk.log)
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/testhost/lib.sh
source "$BENCH_DIR/../testhost/lib.sh"
LOG=${BENCH_LOG:-$CACHE/logs/bench-disk.log}
mkdir -p "$(dirname "$LOG")"
ensure_pkgs qemu-img:qemu-utils
static_vmm
"$TESTHOST_DIR/fixtures.sh" >/dev/null
img=$("$TESTHOST_DIR/debian-image.sh")
tmp=$(mktemp -d /tmp/bench-disk.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
qemu-img create -q -f qcow2 -b "$img" -F raw "$tmp/overlay.qcow2"
# The data disk: 1 GiB, written with data once so reads do not hit holes.
dd if=/dev/urandom of="$tmp/data.raw" bs=1M count=1024 status=none
if host_has_real_kvm; then
    qemu-img convert -O raw "$tmp/overlay.qcow2" "$tmp/disk.raw"
    loop=$(losetup -f --show "$tmp/disk.raw")
    loop2=$(losetup -f --show "$tmp/data.raw")
    trap 'losetup -d "$loop" "$loop2"; rm -rf "$tmp"' EXIT
    sed -e "s#/dev/vda#$loop#g" -e "s#/dev/vdb#$loop2#g" "$BENCH_DIR/disk-io-inner.sh" >"$tmp/inner.sh"
    VMM=$VMM_BIN sh "$tmp/inner.sh" 2>&1 | tee "$LOG"
else
    cpio=$(L1_NAME=bench-disk L1_WITH_QEMU=1 L1_BINS="qemu-img ${L1_BINS:-}" \
        L1_MODULES="${L1_MODULES:-} virtio_pci virtio_blk" \
        "$TESTHOST_DIR/build-l1.sh" "$BENCH_DIR/disk-io-inner.sh")
    append="idle=poll ${L1_EXTRA_APPEND:-}"
    for v in BENCH_RUNS BENCH_TIMEOUT BENCH_FIO_RUNTIME BENCH_VARIANTS; do
        [[ -n ${!v:-} ]] && append+=$(l1env "$v" "${!v}")
    done
    L1_EXTRA_APPEND=$append \
        L1_QEMU_EXTRA="${L1_QEMU_EXTRA:-} -drive file=$tmp/overlay.qcow2,format=qcow2,if=virtio,cache=unsafe -drive file=$tmp/data.raw,format=raw,if=virtio,cache=none -monitor unix:$tmp/l1-monitor.sock,server,nowait" \
        "$TESTHOST_DIR/run-l1.sh" "$cpio" "${BENCH_L1_TIMEOUT:-3000}" "$LOG" &
    # A stalled L1 gets a new interrupt after 120 s of silence (see l1_watch): the stalls
    # seen so far hit guest boots, and the figures here are fio's, timed inside the guest.
    l1_watch $! "$LOG" "$tmp/l1-monitor.sock" "${BENCH_L1_SILENCE:-120}" || true
fi
echo "==== disk I/O: guest fio on a virtio-blk data disk ===="
tr -d '\r' <"$LOG" | grep -aE '^BENCH-DISK ' | sort -k2
tr -d '\r' <"$LOG" | grep -q 'BENCH-DISK-DONE'
