#!/usr/bin/env bash
# tests/bench/boot.sh - boot-time and memory benchmark: our vmm against QEMU microvm and pc.
#
# Usage: tests/bench/boot.sh
#   In one L1 nested test host (or directly on a host with real KVM) boots the L2 test initramfs
#   BENCH_RUNS times (default 3) under each of: our vmm (1 vCPU, 256M), QEMU -M microvm,rtc=on
#   with qboot, QEMU -M pc with SeaBIOS (both -enable-kvm -cpu host -m 256), and reports for each
#   boot the time from process start to the guest's first "L2-INIT" line and the VMM's VmRSS,
#   VmHWM, RssAnon, RssFile at that moment (tests/bench/boot-inner.sh does the measuring), then
#   the medians. A benchmark, not a test: it fails only if L1 itself does not work.
# Environment:
#   VMM_BIN=path   vmm binary (default target/x86_64-unknown-linux-gnu/release/vmm; the vmm rows
#                  are skipped when it does not exist; BENCH_BUILD=1 builds it first)
#   BENCH_RUNS=3, BENCH_TIMEOUT=60 (per boot),
#   BENCH_ONLY="vmm qemu-microvm qemu-pc vmm-pvh qemu-microvm-pvh" (also vmm-pci: a virtio disk, so
#   the direct machine has its PCI bus),
#   BENCH_APPEND (guest cmdline, default "console=ttyS0 l2test=poweroff panic=-1"; add "quiet"
#   to take the cost of printing the kernel log on the emulated UART out of the figures),
#   BENCH_MODE=auto|host|l1, BENCH_L1_TIMEOUT=1200, BENCH_LOG=path
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/testhost/lib.sh
source "$BENCH_DIR/../testhost/lib.sh"

RUNS=${BENCH_RUNS:-3}
MODE=${BENCH_MODE:-auto}
LOG=${BENCH_LOG:-$CACHE/logs/bench-boot.log}
mkdir -p "$(dirname "$LOG")"

"$TESTHOST_DIR/fixtures.sh" >/dev/null

default_vmm=$REPO/target/x86_64-unknown-linux-gnu/release/vmm
if [[ -z ${VMM_BIN:-} && ${BENCH_BUILD:-0} == 1 ]]; then
    (cd "$REPO" && RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
        cargo build --release -p vmm --target x86_64-unknown-linux-gnu)
fi
VMM_BIN=${VMM_BIN:-$default_vmm}
if [[ -f $VMM_BIN ]]; then
    VMM_BIN=$(realpath "$VMM_BIN")
    export VMM_BIN
    log "vmm: $VMM_BIN"
else
    log "no vmm binary at $VMM_BIN: benchmarking QEMU only"
    unset VMM_BIN
fi

qboot=$(dpkg -L qemu-system-data 2>/dev/null | grep -m1 '/qboot\.rom$' || true)
[[ -n $qboot ]] || qboot=/usr/share/qemu/qboot.rom
[[ -f $qboot ]] || log "warning: qboot.rom not found; the microvm rows will be skipped"

if [[ $MODE == auto ]]; then
    if host_has_real_kvm; then MODE=host; else MODE=l1; fi
fi
start=$(date +%s)
case $MODE in
host)
    log "real hardware virtualization: benchmarking on this host (log $LOG)"
    VMM=${VMM_BIN:-} KERNEL=$CACHE/vmlinuz VMLINUX=$CACHE/vmlinux INITRD=$CACHE/l2-initramfs.cpio.gz QBOOT=$qboot \
        BENCH_RUNS=$RUNS sh "$BENCH_DIR/boot-inner.sh" </dev/null 2>&1 | tee "$LOG"
    ;;
l1)
    log "benchmarking inside an L1 nested test host (log $LOG)"
    extra=()
    [[ -f $qboot && $qboot != /usr/share/qemu/qboot.rom ]] && extra+=("$qboot=$qboot")
    cpio=$(L1_WITH_QEMU=1 L1_NAME=bench "$TESTHOST_DIR/build-l1.sh" "$BENCH_DIR/boot-inner.sh" "${extra[@]}")
    append="${L1_EXTRA_APPEND:-}$(l1env QBOOT "$qboot")$(l1env BENCH_RUNS "$RUNS")"
    [[ -n ${BENCH_TIMEOUT:-} ]] && append+=$(l1env BENCH_TIMEOUT "$BENCH_TIMEOUT")
    [[ -n ${BENCH_ONLY:-} ]] && append+=$(l1env BENCH_ONLY "$BENCH_ONLY")
    [[ -n ${BENCH_APPEND:-} ]] && append+=$(l1env BENCH_APPEND "$BENCH_APPEND")
    L1_EXTRA_APPEND=$append "$TESTHOST_DIR/run-l1.sh" "$cpio" "${BENCH_L1_TIMEOUT:-1200}" "$LOG" ||
        die "the L1 run failed (status $?); see $LOG"
    ;;
*) die "BENCH_MODE must be auto, host or l1 (got $MODE)" ;;
esac

echo
echo "==== boot benchmark ($MODE, $(($(date +%s) - start))s, log $LOG) ===="
tr -d '\r' <"$LOG" | grep -oE '(L1-READY|BENCH-INFO|BENCH-SKIP|BENCH|BENCH-MEDIAN) .*$' || true
