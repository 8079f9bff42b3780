#!/usr/bin/env bash
# tests/bench/net-io.sh - virtio-net TCP throughput seen by a Debian guest (iperf3 both ways):
# our vmm (its own data path and vhost-net) against QEMU's user-space virtio-net and vhost-net,
# in one L1 test host (or on this host with real KVM), same image, same run
# (tests/bench/net-io-inner.sh does the measuring).
#
# Usage: tests/bench/net-io.sh   (a benchmark, not a test: it fails only if nothing ran)
# Environment: VMM_BIN (default: build the static vmm), BENCH_RUNS=1, BENCH_TIMEOUT=600,
#   BENCH_IPERF_TIME=10, BENCH_VARIANTS="vmm qemu vmm-vhost qemu-vhost", BENCH_L1_TIMEOUT=3000,
#   BENCH_LOG (default .cache/testhost/logs/bench-net.log)
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/testhost/lib.sh
source "$BENCH_DIR/../testhost/lib.sh"
LOG=${BENCH_LOG:-$CACHE/logs/bench-net.log}
mkdir -p "$(dirname "$LOG")"
ensure_pkgs qemu-img:qemu-utils iperf3:iperf3
static_vmm
"$TESTHOST_DIR/fixtures.sh" >/dev/null
img=$("$TESTHOST_DIR/debian-image.sh")
tmp=$(mktemp -d /tmp/bench-net.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
qemu-img create -q -f qcow2 -b "$img" -F raw "$tmp/overlay.qcow2"
if host_has_real_kvm; then
    qemu-img convert -O raw "$tmp/overlay.qcow2" "$tmp/disk.raw"
    loop=$(losetup -f --show "$tmp/disk.raw")
    trap 'losetup -d "$loop"; rm -rf "$tmp"' EXIT
    sed -e "s#/dev/vda#$loop#g" "$BENCH_DIR/net-io-inner.sh" >"$tmp/inner.sh"
    VMM=$VMM_BIN sh "$tmp/inner.sh" 2>&1 | tee "$LOG"
else
    cpio=$(L1_NAME=bench-net L1_WITH_QEMU=1 L1_BINS="qemu-img iperf3 ${L1_BINS:-}" \
        L1_MODULES="${L1_MODULES:-} virtio_pci virtio_blk tun vhost_net" \
        "$TESTHOST_DIR/build-l1.sh" "$BENCH_DIR/net-io-inner.sh")
    append="idle=poll ${L1_EXTRA_APPEND:-}"
    for v in BENCH_RUNS BENCH_TIMEOUT BENCH_IPERF_TIME BENCH_VARIANTS; do
        [[ -n ${!v:-} ]] && append+=$(l1env "$v" "${!v}")
    done
    L1_EXTRA_APPEND=$append \
        L1_QEMU_EXTRA="${L1_QEMU_EXTRA:-} -drive file=$tmp/overlay.qcow2,format=qcow2,if=virtio,cache=unsafe -monitor unix:$tmp/l1-monitor.sock,server,nowait" \
        "$TESTHOST_DIR/run-l1.sh" "$cpio" "${BENCH_L1_TIMEOUT:-3000}" "$LOG" &
    # A stalled L1 gets a new interrupt after 120 s of silence (see l1_watch); the figures
    # here are iperf3's, timed inside the guest.
    l1_watch $! "$LOG" "$tmp/l1-monitor.sock" "${BENCH_L1_SILENCE:-120}" || true
fi
echo "==== network: guest iperf3 over a virtio-net NIC on a tap ===="
tr -d '\r' <"$LOG" | grep -aE '^BENCH-NET ' | sort -k2
tr -d '\r' <"$LOG" | grep -q 'BENCH-NET-DONE'
