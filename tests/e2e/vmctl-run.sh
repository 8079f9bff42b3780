#!/usr/bin/env bash
# tests/e2e/vmctl-run.sh - end-to-end tests of the management daemon (vmctld + vmctl) with the
# real vmm booting real guests (issue 5).
#
# Usage: tests/e2e/vmctl-run.sh
#   1. Builds static vmm, vmctld and vmctl (RUSTFLAGS="-C target-feature=+crt-static" cargo
#      build --release -p vmm -p vmctl --bins --target x86_64-unknown-linux-gnu) unless
#      VMCTL_BIN_DIR names a directory holding prebuilt ones.
#   2. Runs tests/testhost/fixtures.sh (Debian kernel, L2 test initramfs; cached in .cache/) and
#      tests/testhost/debian-image.sh (the Debian 12 disk of the debian-nat scenario; cached).
#   3. With real hardware virtualization runs tests/e2e/vmctl-scenarios.sh here; otherwise
#      boots one L1 nested test host carrying the three binaries (/bin/vmm, /bin/vmctld,
#      /bin/vmctl) and runs the scenarios there.
#   4. Collects the "E2E-RESULT" lines; a scenario without a result counts as failed.
#   Last line: "vmctl-e2e: N passed, M failed". Exit status non-zero if M > 0, if no result
#   was found or if the run timed out.
# Environment:
#   VMCTL_BIN_DIR=dir     prebuilt static vmm, vmctld and vmctl
#   VMCTL_ONLY=a,b        run only these scenarios (names: vmctl-scenarios.sh --list)
#   E2E_MODE=auto|host|l1 where to run (default auto)
#   VMCTL_L1_TIMEOUT=1500 seconds for the whole L1 (or host) run
#   VMCTL_L1_SILENCE=300  an L1 silent this long has stalled: kicked, then stopped (l1_watch in lib.sh)
#   VMCTL_RETRY=1         up to two more L1 runs for scenarios that failed or gave no result
#   VMCTL_BOOT_TIMEOUT, VMCTL_BENCH_VMS, VMCTL_BENCH_RUNS, E2E_GUEST_EXTRA: see the scenarios
#   VMCTL_LOG=path        log file (default .cache/testhost/logs/e2e-vmctl.log)
set -euo pipefail
E2E_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/testhost/lib.sh
source "$E2E_DIR/../testhost/lib.sh"

L1_TIMEOUT=${VMCTL_L1_TIMEOUT:-1500}
LOG=${VMCTL_LOG:-$CACHE/logs/e2e-vmctl.log}
MODE=${E2E_MODE:-auto}
mkdir -p "$(dirname "$LOG")"

# ---- binaries ---------------------------------------------------------------------------
if [[ -n ${VMCTL_BIN_DIR:-} ]]; then
    BIN_DIR=$(realpath "$VMCTL_BIN_DIR")
    log "using prebuilt binaries in $BIN_DIR"
else
    command -v cargo >/dev/null || die "cargo not found (or set VMCTL_BIN_DIR)"
    log "building static vmm, vmctld and vmctl"
    (cd "$REPO" && RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
        cargo build --release -p vmm -p vmctl --bins --target x86_64-unknown-linux-gnu)
    tdir=${CARGO_TARGET_DIR:-target}
    [[ $tdir == /* ]] || tdir=$REPO/$tdir
    BIN_DIR=$tdir/x86_64-unknown-linux-gnu/release
fi
for b in vmm vmctld vmctl; do
    [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b missing"
    if is_dynamic "$BIN_DIR/$b"; then
        log "warning: $BIN_DIR/$b is dynamically linked; copying its libraries into L1"
    fi
done
export VMM_BIN=$BIN_DIR/vmm

# ---- fixtures ---------------------------------------------------------------------------
"$TESTHOST_DIR/fixtures.sh" >/dev/null
# debian-nat boots the Debian image (never written: a qcow2 overlay goes on it).
img=$("$TESTHOST_DIR/debian-image.sh")
ensure_pkgs qemu-img:qemu-utils
# The net scenario: managed networks need ip, nft and dnsmasq; its VM is a PC machine (SeaBIOS
# and the linuxboot option ROM boot the kernel through fw_cfg).
ensure_pkgs ip:iproute2 nft:nftables dnsmasq:dnsmasq-base socat:socat \
    /usr/share/seabios/bios-256k.bin:seabios /usr/share/qemu/linuxboot_dma.bin:qemu-system-data

if [[ -n ${VMCTL_ONLY:-} ]]; then
    read -ra expected <<<"define ${VMCTL_ONLY//,/ }"
    mapfile -t expected < <(printf '%s\n' "${expected[@]}" | awk '!seen[$0]++')
else
    mapfile -t expected < <(sh "$E2E_DIR/vmctl-scenarios.sh" --list)
fi

# ---- run --------------------------------------------------------------------------------
if [[ $MODE == auto ]]; then
    if host_has_real_kvm; then MODE=host; else MODE=l1; fi
fi
pass_env=(VMCTL_ONLY VMCTL_BOOT_TIMEOUT VMCTL_DEBIAN_TIMEOUT VMCTL_BENCH_VMS VMCTL_BENCH_RUNS E2E_GUEST_EXTRA)
timed_out=0
start=$(date +%s)
case $MODE in
host)
    log "real hardware virtualization: running the vmctl scenarios on this host (log $LOG)"
    set +e
    VMM=$BIN_DIR/vmm VMCTLD=$BIN_DIR/vmctld VMCTL=$BIN_DIR/vmctl KERNEL=$CACHE/vmlinuz \
        INITRD=$CACHE/l2-initramfs.cpio.gz DEBIAN_DISK=$img \
        timeout -k 10 "$L1_TIMEOUT" sh "$E2E_DIR/vmctl-scenarios.sh" </dev/null 2>&1 | tee "$LOG"
    rc=${PIPESTATUS[0]}
    set -e
    ((rc == 124 || rc == 137)) && timed_out=1
    ;;
l1)
    log "no usable hardware virtualization here: running the vmctl scenarios in an L1 test host"
    fw=()
    for f in /usr/share/seabios/bios-256k.bin /usr/share/seabios/vgabios-stdvga.bin \
        /usr/share/qemu/linuxboot_dma.bin; do
        fw+=("$(realpath "$f")=$f")
    done
    # crc32c_generic first: libcrc32c (under nf_conntrack and nf_tables) needs a crc32c.
    cpio=$(L1_NAME=vmctl L1_BINS="ip nft dnsmasq qemu-img" \
        L1_MODULES="${L1_MODULES:-} crc32c_generic tun bridge nf_tables nft_chain_nat nft_nat nft_masq nft_ct nft_fib_ipv4 nft_reject_ipv4 virtio_pci virtio_blk" \
        "$TESTHOST_DIR/build-l1.sh" "$E2E_DIR/vmctl-scenarios.sh" \
        "$BIN_DIR/vmctld=/bin/vmctld" "$BIN_DIR/vmctl=/bin/vmctl" "${fw[@]}")
    mon=$(mktemp -u /tmp/vmctl-l1-monitor.XXXXXX)
    # The Debian image reaches L1 as its /dev/vda, through a throwaway overlay per L1 boot.
    overlay=$(mktemp -u /tmp/vmctl-l1-debian.XXXXXX).qcow2
    trap 'rm -f "$overlay"' EXIT
    run_vmctl_l1() { # LOGFILE: one L1 run of $VMCTL_ONLY (or all), stopped if it stalls
        local append=${L1_EXTRA_APPEND:-} v
        for v in "${pass_env[@]}"; do
            [[ -n ${!v+set} ]] && append+=$(l1env "$v" "${!v}")
        done
        append+=$(l1env DEBIAN_DISK /dev/vda)
        rm -f "$mon" "$overlay"
        qemu-img create -q -f qcow2 -b "$img" -F raw "$overlay"
        L1_EXTRA_APPEND=$append \
            L1_QEMU_EXTRA="${L1_QEMU_EXTRA:-} -drive file=$overlay,format=qcow2,if=virtio,cache=unsafe -monitor unix:$mon,server,nowait" \
            "$TESTHOST_DIR/run-l1.sh" "$cpio" "$L1_TIMEOUT" "$1" &
        # Scenarios print at least every few minutes; silence is the L1 stall of l1_watch.
        l1_watch $! "$1" "$mon" "${VMCTL_L1_SILENCE:-300}"
    }
    set +e
    run_vmctl_l1 "$LOG"
    rc=$?
    # A stalled L1 (see l1_watch) leaves scenarios without a result: up to two more L1 runs
    # for the ones that failed or gave none (`define` runs first in every L1 anyway).
    if ((${VMCTL_RETRY:-1})); then
        mapfile -t names < <(printf '%s\n' "${expected[@]}" | grep -vx define)
        l1_retry "$LOG" 3 VMCTL_ONLY run_vmctl_l1 "${names[@]}"
        rc=$?
    fi
    set -e
    ((rc == 124)) && timed_out=1
    if grep -q 'L1-NOKVM' "$LOG"; then
        log "L1 has no /dev/kvm (kvm-amd did not load); see $LOG"
    elif ! grep -q 'L1-READY' "$LOG"; then
        log "L1 never reached L1-READY; see $LOG"
    fi
    ;;
*) die "E2E_MODE must be auto, host or l1 (got $MODE)" ;;
esac
elapsed=$(($(date +%s) - start))

# ---- results ----------------------------------------------------------------------------
e2e_report vmctl-e2e "$LOG" "$MODE, ${elapsed}s" "$timed_out" "${expected[@]}"
