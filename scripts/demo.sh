#!/usr/bin/env bash
# scripts/demo.sh - the demo: boot a Linux guest in our vmm to a busybox shell on its serial
# console, and hand that console to you.
#
# On a host with real VT-x/AMD-V the vmm runs directly. Where /dev/kvm cannot run guest kernels
# at useful speed (kvm_pvm, no vmx/svm), it runs inside the nested test host of
# tests/testhost (QEMU TCG with emulated AMD SVM, real KVM inside), built from Debian packages
# on first use and cached under .cache/.
#
# In the guest shell, `exit` powers the guest off (and the test host with it).
# Ctrl-A x quits at once (QEMU's escape in the test host, the vmm's own escape directly).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/testhost/lib.sh
source "$here/../tests/testhost/lib.sh"

cpus=${DEMO_CPUS:-2}
memory=${DEMO_MEMORY:-256M}
cmdline="console=ttyS0 quiet l2test=shell"

command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
log "building the static vmm binary"
(cd "$REPO" && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release -q -p vmm --target x86_64-unknown-linux-gnu)
VMM_BIN=$REPO/target/x86_64-unknown-linux-gnu/release/vmm
export VMM_BIN
bash "$TESTHOST_DIR/fixtures.sh" >&2

if host_has_real_kvm; then
    log "real hardware virtualization: running the vmm directly"
    exec "$VMM_BIN" --kernel "$CACHE/vmlinuz" --initramfs "$CACHE/l2-initramfs.cpio.gz" \
        --cmdline "$cmdline" --cpus "$cpus" --memory "$memory"
fi

scenario=$CACHE/demo-scenario.sh
cat >"$scenario" <<SCEN
#!/bin/sh
echo "DEMO: starting the vmm inside the test host (L1): $cpus vCPUs, $memory"
\$VMM --kernel \$KERNEL --initramfs \$INITRD --cmdline "$cmdline" --cpus $cpus --memory $memory
echo "DEMO: vmm exited with status \$?"
SCEN
cpio=$(L1_NAME=demo bash "$TESTHOST_DIR/build-l1.sh" "$scenario")
log "this host's /dev/kvm cannot run guest kernels at speed: booting the nested test host"
log "(about 30 s to the guest shell; Ctrl-A x quits)"
exec qemu-system-x86_64 -machine q35,accel=tcg -cpu max -m 5120 -smp 1 \
    -kernel "$CACHE/vmlinuz" -initrd "$cpio" -append "console=ttyS0 quiet panic=-1" \
    -nographic -no-reboot
