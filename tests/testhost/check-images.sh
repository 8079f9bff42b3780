#!/usr/bin/env bash
# tests/testhost/check-images.sh - prove the SeaBIOS PC fixtures boot, with QEMU in the test host.
#
# Usage: tests/testhost/check-images.sh      (root; CI-safe: no stdin, no tty needed)
#   1. Builds/fetches the fixtures: fixtures.sh (L1 kernel), debian-image.sh
#      (.cache/images/debian12.raw), grub-rescue-iso.sh (.cache/images/grub-rescue-cdrom.iso).
#   2. Puts a throwaway qcow2 overlay over the Debian image in a temporary directory (the cached
#      image is never written) and gives it to L1 as a virtio disk (/dev/vda).
#   3. Builds an L1 initramfs (L1_NAME=images) with QEMU, the virtio/ext4 modules, the ISO and
#      tests/testhost/check-images-l1.sh as the scenario, and boots it with run-l1.sh.
#      In L1, QEMU -M pc -enable-kvm -cpu host boots the disk (IDE), logs in on ttyS0 as
#      root/root, writes /root/proof and powers off; L1 then mounts /dev/vda1 read-only and
#      checks the file. Before that it boots the ISO (-cdrom), waits for the GRUB menu on the VGA
#      text screen (the rescue CD prints nothing on the serial port), presses 'c' and waits for
#      the "grub>" prompt.
#   4. Prints the CHECK-TIME/CHECK-RESULT lines and the L1 wall time; exits non-zero unless every
#      check passed.
# Environment: CHECK_ONLY=disk|iso    run one check only
#              CHECK_L1_TIMEOUT=1200  seconds for the whole L1 run
#              CHECK_DISK_TIMEOUT=900 CHECK_ISO_TIMEOUT=180   per-guest timeouts inside L1
#              CHECK_DISK_IF=ide      disk interface of the Debian guest (virtio to compare)
#              CHECK_KEEP=1           keep the temporary overlay (its path is printed)
#              CHECK_LOG=path         L1 log (default .cache/testhost/logs/check-images.log)
#              L1_MEMORY_MIB          L1 RAM (run-l1.sh default 5120)
set -euo pipefail
# shellcheck source=tests/testhost/lib.sh
source "$(dirname "$0")/lib.sh"

LOG=${CHECK_LOG:-$CACHE/logs/check-images.log}
L1_TIMEOUT=${CHECK_L1_TIMEOUT:-1200}
ensure_pkgs qemu-img:qemu-utils qemu-system-x86_64:qemu-system-x86

"$TESTHOST_DIR/fixtures.sh" >/dev/null
img=$("$TESTHOST_DIR/debian-image.sh")
iso=$("$TESTHOST_DIR/grub-rescue-iso.sh")

tmp=$(mktemp -d /tmp/check-images.XXXXXX)
if [[ ${CHECK_KEEP:-0} == 1 ]]; then
    trap 'log "kept $tmp"' EXIT
else
    trap 'rm -rf "$tmp"' EXIT
fi
qemu-img create -q -f qcow2 -b "$img" -F raw "$tmp/overlay.qcow2"

# virtio_pci pulls virtio, virtio_ring, virtio_pci_modern_dev and virtio_pci_legacy_dev;
# ext4 needs crc32c at mount time (the kernel would request_module it, L1 has no modprobe).
cpio=$(L1_NAME=images L1_WITH_QEMU=1 \
    L1_MODULES="${L1_MODULES:-} virtio_pci virtio_blk crc32c_generic ext4" \
    "$TESTHOST_DIR/build-l1.sh" "$TESTHOST_DIR/check-images-l1.sh" \
    "$iso=/guest/grub-rescue-cdrom.iso")

append=${L1_EXTRA_APPEND:-}
for v in CHECK_ONLY CHECK_DISK_TIMEOUT CHECK_ISO_TIMEOUT CHECK_GUEST_MEM CHECK_DISK_IF; do
    [[ -n ${!v:-} ]] && append+=$(l1env "$v" "${!v}")
done
start=$(date +%s.%N)
set +e
L1_EXTRA_APPEND=$append \
    L1_QEMU_EXTRA="${L1_QEMU_EXTRA:-} -drive file=$tmp/overlay.qcow2,format=qcow2,if=virtio,cache=unsafe" \
    "$TESTHOST_DIR/run-l1.sh" "$cpio" "$L1_TIMEOUT" "$LOG"
rc=$?
set -e
wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

echo
echo "==== check-images (L1 wall ${wall}s, status $rc, log $LOG) ===="
echo "disk: $img ($(du -m "$img" | cut -f1) MiB allocated, $(du -m --apparent-size "$img" | cut -f1) MiB apparent)"
echo "iso:  $iso"
tr -d '\r' <"$LOG" | grep -oE '(L1-READY|L1-SCENARIO-EXIT|CHECK-TIME|CHECK-NOTE) .*$' || true
mapfile -t results < <(tr -d '\r' <"$LOG" | grep -oE 'CHECK-RESULT [a-z]+ (PASS|FAIL).*$' || true)
case ${CHECK_ONLY:-} in
disk | iso) expected=("$CHECK_ONLY") ;;
*) expected=(disk iso) ;;
esac
failed=0
for name in "${expected[@]}"; do
    line=
    for r in "${results[@]}"; do
        [[ $r == "CHECK-RESULT $name "* ]] && line=$r
    done
    [[ -n $line ]] || line="CHECK-RESULT $name FAIL no result (L1 status $rc)"
    echo "$line"
    [[ $line == "CHECK-RESULT $name PASS"* ]] || failed=$((failed + 1))
done
((failed == 0)) || exit 1
