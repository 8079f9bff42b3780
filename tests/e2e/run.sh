#!/usr/bin/env bash
# tests/e2e/run.sh - end-to-end test entry point: boots real Linux guests with the vmm.
#
# Usage: tests/e2e/run.sh
#   1. Builds the static vmm (RUSTFLAGS="-C target-feature=+crt-static" cargo build --release
#      -p vmm --target x86_64-unknown-linux-gnu) unless VMM_BIN names a prebuilt binary.
#   2. Runs tests/testhost/fixtures.sh (Debian kernel, L2 test initramfs; cached in .cache/).
#   3. With real hardware virtualization (vmx/svm in /proc/cpuinfo, no kvm_pvm, /dev/kvm) runs
#      tests/e2e/scenarios.sh directly; otherwise boots it inside an L1 nested test host
#      (QEMU TCG with emulated AMD SVM, kvm-amd in L1; see TESTHOST.md).
#   4. Collects the "E2E-RESULT" lines; a scenario without a result counts as failed.
#   Last line: "e2e: N passed, M failed". Exit status non-zero if M > 0, if no result was found
#   or if L1 timed out.
# Environment:
#   VMM_BIN=path        prebuilt vmm (static binary; tests/e2e/qemu-vmm-shim.sh + L1_WITH_QEMU=1
#                       self-tests the bench with QEMU in place of the vmm)
#   E2E_ONLY=a,b        run only these scenarios (names: tests/e2e/scenarios.sh --list)
#   E2E_MODE=auto|host|l1   where to run (default auto)
#   E2E_L1_TIMEOUT=900  seconds for one L1 run (or the host run)
#   E2E_L1_SILENCE=150  an L1 silent this long has stalled: kicked, then stopped (l1_watch, tests/testhost/lib.sh)
#   E2E_RETRY=1         up to two more L1 runs for scenarios that failed or gave no result
#   E2E_VMM_TIMEOUT=60  seconds per vmm invocation
#   E2E_GUEST_EXTRA     extra guest kernel parameters (default "quiet")
#   E2E_LOG=path        log file (default .cache/testhost/logs/e2e.log)
set -euo pipefail
E2E_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/testhost/lib.sh
source "$E2E_DIR/../testhost/lib.sh"
ensure_pkgs socat:socat

L1_TIMEOUT=${E2E_L1_TIMEOUT:-900}
LOG=${E2E_LOG:-$CACHE/logs/e2e.log}
MODE=${E2E_MODE:-auto}
mkdir -p "$(dirname "$LOG")"

# ---- vmm binary -------------------------------------------------------------------------
if [[ -n ${VMM_BIN:-} ]]; then
    [[ -f $VMM_BIN ]] || die "VMM_BIN=$VMM_BIN does not exist"
    VMM_BIN=$(realpath "$VMM_BIN")
    log "using prebuilt vmm: $VMM_BIN"
else
    command -v cargo >/dev/null || die "cargo not found (or set VMM_BIN)"
    log "building the static vmm"
    (cd "$REPO" && RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
        cargo build --release -p vmm --target x86_64-unknown-linux-gnu)
    tdir=${CARGO_TARGET_DIR:-target}
    [[ $tdir == /* ]] || tdir=$REPO/$tdir
    VMM_BIN=$tdir/x86_64-unknown-linux-gnu/release/vmm
    [[ -f $VMM_BIN ]] || die "cargo build produced no $VMM_BIN"
fi
if is_dynamic "$VMM_BIN"; then
    log "warning: $VMM_BIN is dynamically linked; copying its libraries into L1"
fi
export VMM_BIN

# ---- fixtures ---------------------------------------------------------------------------
"$TESTHOST_DIR/fixtures.sh" >/dev/null

# ---- expected scenarios (the list lives in scenarios.sh) ---------------------------------
if [[ -n ${E2E_ONLY:-} ]]; then
    read -ra expected <<<"${E2E_ONLY//,/ }"
else
    mapfile -t expected < <(sh "$E2E_DIR/scenarios.sh" --list)
fi
((${#expected[@]})) || die "no scenarios selected"

# ---- run --------------------------------------------------------------------------------
if [[ $MODE == auto ]]; then
    if host_has_real_kvm; then MODE=host; else MODE=l1; fi
fi
timed_out=0
start=$(date +%s)
case $MODE in
host)
    log "real hardware virtualization: running the scenarios on this host (log $LOG)"
    set +e
    VMM=$VMM_BIN KERNEL=$CACHE/vmlinuz VMLINUX=$CACHE/vmlinux INITRD=$CACHE/l2-initramfs.cpio.gz \
        E2E_ONLY=$(
            IFS=,
            echo "${expected[*]}"
        ) \
        timeout -k 10 "$L1_TIMEOUT" sh "$E2E_DIR/scenarios.sh" </dev/null 2>&1 | tee "$LOG"
    rc=${PIPESTATUS[0]}
    set -e
    ((rc == 124 || rc == 137)) && timed_out=1
    ;;
l1)
    log "no usable hardware virtualization here: running the scenarios in an L1 nested test host"
    cpio=$(L1_NAME=${L1_NAME:-e2e} "$TESTHOST_DIR/build-l1.sh" "$E2E_DIR/scenarios.sh")
    mon=$(mktemp -u /tmp/e2e-l1-monitor.XXXXXX)
    run_e2e_l1() { # LOGFILE: one L1 run of $E2E_ONLY (or all), stopped if it stalls
        local append=${L1_EXTRA_APPEND:-}
        [[ -n ${E2E_ONLY:-} ]] && append+=$(l1env E2E_ONLY "$E2E_ONLY")
        [[ -n ${E2E_VMM_TIMEOUT:-} ]] && append+=$(l1env E2E_VMM_TIMEOUT "$E2E_VMM_TIMEOUT")
        [[ -n ${E2E_GUEST_EXTRA+set} ]] && append+=$(l1env E2E_GUEST_EXTRA "$E2E_GUEST_EXTRA")
        rm -f "$mon"
        L1_EXTRA_APPEND=$append L1_QEMU_EXTRA="${L1_QEMU_EXTRA:-} -monitor unix:$mon,server,nowait" \
            "$TESTHOST_DIR/run-l1.sh" "$cpio" "$L1_TIMEOUT" "$1" &
        # Each vmm run is limited to E2E_VMM_TIMEOUT (60 s) and prints as it goes: a longer
        # silence is the L1 stall of l1_watch.
        l1_watch $! "$1" "$mon" "${E2E_L1_SILENCE:-150}"
    }
    set +e
    run_e2e_l1 "$LOG"
    rc=$?
    # A stalled L1 leaves scenarios without a result: up to two more L1 runs for them.
    if ((${E2E_RETRY:-1})); then
        l1_retry "$LOG" 3 E2E_ONLY run_e2e_l1 "${expected[@]}"
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
e2e_report e2e "$LOG" "$MODE, ${elapsed}s" "$timed_out" "${expected[@]}"
