#!/usr/bin/env bash
# scripts/demo.sh - the demo: the management daemon vmctld runs a Linux guest in our vmm, and
# `vmctl console` hands you the guest's busybox shell on its serial console.
#
# On a host with real VT-x/AMD-V everything runs here: vmctld with the state directory
# .cache/demo-state (definitions, logs, sockets), `vmctl define` + `vmctl start` of the VM
# "demo", then `vmctl console demo`. Where /dev/kvm cannot run guest kernels at useful speed
# (kvm_pvm, no vmx/svm), the same steps run inside the nested test host of tests/testhost
# (QEMU TCG with emulated AMD SVM, real KVM inside; its state directory is vmctld's default,
# /var/lib/rvmm, inside the throwaway L1), built from Debian packages on first use and cached
# under .cache/.
#
# In the guest shell, `exit` powers the guest off and ends the demo. Ctrl-] detaches from the
# console, which also ends the demo (the VM is destroyed). In the test host, Ctrl-A x quits
# QEMU at once.
#
# Input that is not a terminal (`printf 'uname -a\nexit\n' | ./scripts/demo.sh`) is passed to
# the guest shell once it is ready, so the demo can be checked without a person.
# Environment: DEMO_CPUS (default 2 with real KVM, 1 in the one-CPU test host), DEMO_MEMORY_MIB (default 256), DEMO_TIMEOUT (seconds to
# the guest shell, default 180), DEMO_L1_TIMEOUT (seconds for a whole test-host run whose
# input is not a terminal, default 900).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/testhost/lib.sh
source "$here/../tests/testhost/lib.sh"

cpus=${DEMO_CPUS:-}
memory=${DEMO_MEMORY_MIB:-256}
boot_timeout=${DEMO_TIMEOUT:-180}
cmdline="console=ttyS0 quiet l2test=shell"
# A fixed UUID: defining the demo again replaces the stored definition.
uuid=7f3c1a52-9d4e-4b6a-8e0f-0de70de70001

# demo_json KERNEL INITRD: the VM definition.
demo_json() {
    cat <<EOF
{
  "name": "demo",
  "uuid": "$uuid",
  "memory_mib": $memory,
  "vcpus": $cpus,
  "os": { "machine": "direct", "kernel": "$1", "initrd": "$2", "cmdline": "$cmdline" },
  "on_poweroff": "destroy"
}
EOF
}

command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
log "building static vmm, vmctld and vmctl"
(cd "$REPO" && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release -q -p vmm -p vmctl --bins --target x86_64-unknown-linux-gnu)
tdir=${CARGO_TARGET_DIR:-target}
[[ $tdir == /* ]] || tdir=$REPO/$tdir
BIN=$tdir/x86_64-unknown-linux-gnu/release
for b in vmm vmctld vmctl; do
    [[ -x $BIN/$b ]] || die "cargo build produced no $BIN/$b"
done
export VMM_BIN=$BIN/vmm
bash "$TESTHOST_DIR/fixtures.sh" >&2

# ---- real KVM: vmctld and the VM on this host -------------------------------------------
if host_has_real_kvm; then
    # vmctld refuses more vCPUs than the host has.
    ((cpus > 0)) 2>/dev/null || cpus=$(($(nproc) >= 2 ? 2 : 1))
    state=$REPO/.cache/demo-state
    # Unix socket paths hold at most 108 bytes; the VM's sockets live under run/.
    if ((${#state} > 80)); then
        state=$(mktemp -d /tmp/rvmm-demo.XXXXXX)
    fi
    mkdir -p "$state"
    vmctl() { "$BIN/vmctl" --state-dir "$state" "$@"; }
    dpid=
    if ! vmctl list >/dev/null 2>&1; then
        log "real hardware virtualization: starting vmctld (state directory $state)"
        "$BIN/vmctld" --state-dir "$state" --log warn </dev/null 2>>"$state/vmctld.log" &
        dpid=$!
        for _ in $(seq 100); do
            vmctl list >/dev/null 2>&1 && break
            kill -0 "$dpid" 2>/dev/null || die "vmctld failed: see $state/vmctld.log"
            sleep 0.1
        done
    fi
    # shellcheck disable=SC2317 # called by the trap
    cleanup() {
        vmctl destroy demo >/dev/null 2>&1 || true
        if [[ -n $dpid ]]; then
            kill "$dpid" 2>/dev/null || true
            wait "$dpid" 2>/dev/null || true
        fi
    }
    trap cleanup EXIT
    vmctl destroy demo >/dev/null 2>&1 || true
    # vmctld takes kernels and initramfs files only from its storage pools: copy them into
    # the default pool, images/.
    mkdir -p "$state/images"
    cp "$CACHE/vmlinuz" "$state/images/vmlinuz"
    cp "$CACHE/l2-initramfs.cpio.gz" "$state/images/l2-initramfs.cpio.gz"
    demo_json "$state/images/vmlinuz" "$state/images/l2-initramfs.cpio.gz" >"$state/demo.json"
    vmctl define "$state/demo.json" >&2
    rm -f "$state/logs/demo.log"
    vmctl start demo >&2
    log "waiting for the guest's shell (vmctl console demo: Ctrl-] detaches)"
    for _ in $(seq $((boot_timeout * 5))); do
        grep -qF "L2-SHELL: type" "$state/logs/demo.log" 2>/dev/null && break
        sleep 0.2
    done
    vmctl console demo
    vmctl list >&2
    exit 0
fi

# ---- no usable KVM here: the same inside the nested test host (L1) ----------------------
# The test host has one CPU (see TESTHOST.md), and vmctld refuses more vCPUs than its host has.
[[ -n $cpus ]] || cpus=1
# In L1 the kernel and initramfs are copied into vmctld's default pool before the define.
demo_json /var/lib/rvmm/images/vmlinuz /var/lib/rvmm/images/l2-initramfs.cpio.gz >"$CACHE/demo.json"
scenario=$CACHE/demo-scenario.sh
cat >"$scenario" <<SCEN
#!/bin/sh
# The demo inside the L1 test host (written by scripts/demo.sh). vmctld uses its default state
# directory, /var/lib/rvmm, and finds the vmm next to itself (/bin/vmm).
echo "DEMO: starting vmctld in the test host (L1); the VM demo: $cpus vCPUs, $memory MiB"
# Kernels and initramfs files come from a storage pool: the default one, images/.
mkdir -p /var/lib/rvmm/images
cp /guest/vmlinuz /guest/l2-initramfs.cpio.gz /var/lib/rvmm/images/ || exit 1
vmctld --log warn </dev/null 2>/tmp/vmctld.log &
n=0
until vmctl list >/dev/null 2>&1; do
    n=\$((n + 1))
    [ \$n -lt 300 ] || { echo "DEMO: vmctld did not start:"; cat /tmp/vmctld.log; exit 1; }
    sleep 0.1
done
vmctl define /e2e/demo.json && vmctl start demo || { cat /tmp/vmctld.log; exit 1; }
echo "DEMO: waiting for the guest's shell"
n=0
until grep -qF "L2-SHELL: type" /var/lib/rvmm/logs/demo.log 2>/dev/null; do
    n=\$((n + 1))
    [ \$n -lt $((boot_timeout * 2)) ] || { echo "DEMO: no shell in time:"; tail -n 20 /var/lib/rvmm/logs/demo.vmm.log; break; }
    sleep 0.5
done
# Input typed (or piped) before the console is attached stays queued in L1's terminal; do not
# echo it there as well.
stty -echo 2>/dev/null
echo "DEMO-CONSOLE-READY: vmctl console demo (Ctrl-] detaches; 'exit' in the guest powers it off)"
vmctl console demo
stty echo 2>/dev/null
vmctl destroy demo >/dev/null 2>&1
vmctl list
echo "DEMO: done"
SCEN
cpio=$(L1_NAME=demo bash "$TESTHOST_DIR/build-l1.sh" "$scenario" "$CACHE/demo.json" \
    "$BIN/vmctld=/bin/vmctld" "$BIN/vmctl=/bin/vmctl")
log "this host's /dev/kvm cannot run guest kernels at speed: booting the nested test host"
log "(about 40 s to the guest shell; Ctrl-A x quits)"
# shellcheck disable=SC2054 # commas are QEMU option syntax
qemu=(qemu-system-x86_64 -machine q35,accel=tcg -cpu max -m 5120 -smp 1
    -kernel "$CACHE/vmlinuz" -initrd "$cpio" -append "console=ttyS0 quiet panic=-1"
    -nographic -no-reboot)
if [[ -t 0 ]]; then
    exec "${qemu[@]}"
fi

# Not a terminal: hold the input back until the guest shell is on the console (the L1 prints
# DEMO-CONSOLE-READY), so nothing is lost while the kernels boot.
work=$(mktemp -d /tmp/rvmm-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkfifo "$work/in"
exec 3<>"$work/in"
timeout -k 10 "${DEMO_L1_TIMEOUT:-900}" "${qemu[@]}" <"$work/in" 2>&1 | tee "$work/out" &
qpid=$!
until grep -q 'DEMO-CONSOLE-READY' "$work/out" 2>/dev/null; do
    kill -0 "$qpid" 2>/dev/null || break
    sleep 0.5
done
if kill -0 "$qpid" 2>/dev/null; then
    cat >&3 || true
fi
wait "$qpid"
grep -q 'DEMO-CONSOLE-READY' "$work/out" || die "the demo VM did not reach its shell (output above)"
