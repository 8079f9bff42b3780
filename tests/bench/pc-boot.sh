#!/usr/bin/env bash
# tests/bench/pc-boot.sh - SeaBIOS-to-login-prompt time of the Debian 12 image: our vmm against
# QEMU -M pc, in one L1 test host (or on this host with real KVM), same image, same run.
#
# Usage: tests/bench/pc-boot.sh   (a benchmark, not a test: it fails only if nothing ran)
# Environment: VMM_BIN (default: build the static vmm), BENCH_RUNS=2, BENCH_TIMEOUT=600, BENCH_BUS=ide|virtio|both,
#   BENCH_L1_TIMEOUT=3000, BENCH_LOG (default .cache/testhost/logs/bench-pc.log)
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/testhost/lib.sh
source "$BENCH_DIR/../testhost/lib.sh"
LOG=${BENCH_LOG:-$CACHE/logs/bench-pc.log}
mkdir -p "$(dirname "$LOG")"
ensure_pkgs qemu-img:qemu-utils socat:socat
static_vmm
"$TESTHOST_DIR/fixtures.sh" >/dev/null
img=$("$TESTHOST_DIR/debian-image.sh")
tmp=$(mktemp -d /tmp/bench-pc.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
qemu-img create -q -f qcow2 -b "$img" -F raw "$tmp/overlay.qcow2"
if host_has_real_kvm; then
    qemu-img convert -O raw "$tmp/overlay.qcow2" "$tmp/disk.raw"
    loop=$(losetup -f --show "$tmp/disk.raw")
    trap 'losetup -d "$loop"; rm -rf "$tmp"' EXIT
    sed "s#/dev/vda#$loop#g" "$BENCH_DIR/pc-boot-inner.sh" >"$tmp/inner.sh"
    VMM=$VMM_BIN sh "$tmp/inner.sh" 2>&1 | tee "$LOG"
else
    cpio=$(L1_NAME=bench-pc L1_WITH_QEMU=1 L1_MODULES="${L1_MODULES:-} virtio_pci virtio_blk" \
        "$TESTHOST_DIR/build-l1.sh" "$BENCH_DIR/pc-boot-inner.sh")
    append="idle=poll ${L1_EXTRA_APPEND:-}"
    for v in BENCH_RUNS BENCH_TIMEOUT BENCH_BUS; do
        [[ -n ${!v:-} ]] && append+=$(l1env "$v" "${!v}")
    done
    # The L1 stall of l1_watch (lib.sh): an L1 silent for BENCH_L1_SILENCE (420) s, longer
    # than one guest boot, is stopped; the figures it printed before still count.
    L1_EXTRA_APPEND=$append \
        L1_QEMU_EXTRA="${L1_QEMU_EXTRA:-} -drive file=$tmp/overlay.qcow2,format=qcow2,if=virtio,cache=unsafe -monitor unix:$tmp/l1-monitor.sock,server,nowait" \
        "$TESTHOST_DIR/run-l1.sh" "$cpio" "${BENCH_L1_TIMEOUT:-3000}" "$LOG" &
    # No new interrupts for a stalled L1 here (L1_UNSTICK=0): a boot time with a stall in it
    # would not measure the VMM.
    L1_UNSTICK=0 l1_watch $! "$LOG" "$tmp/l1-monitor.sock" "${BENCH_L1_SILENCE:-420}" || true
fi
echo "==== pc boot: seconds from process start to the serial login prompt ===="
tr -d '\r' <"$LOG" | grep -oE 'BENCH-PC [a-z-]+ run=[0-9]+ login_s=[0-9.a-z]+ rss_kib=[0-9-]+' | sort -k2
tr -d '\r' <"$LOG" | grep -q 'BENCH-PC-DONE'
