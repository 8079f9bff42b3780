#!/bin/sh
# tests/e2e/qemu-vmm-shim.sh - stand-in for the vmm binary, built on QEMU (test-bench self-test).
#
# Accepts the vmm command line (--kernel --initramfs --cmdline --cpus --memory --serial
# --no-reboot, --disk PATH,format=raw,bus=virtio) and runs the guest with qemu-system-x86_64 -M pc -enable-kvm -cpu host, mapping
# results to the vmm exit codes (0 powered off, 3 rebooted under --no-reboot, 2 bad input).
# It exists only to validate tests/e2e/scenarios.sh and the nested test host before the real
# vmm exists:
#   VMM_BIN=tests/e2e/qemu-vmm-shim.sh L1_WITH_QEMU=1 tests/e2e/run.sh
# Known gap: --config is not implemented (always exit 2 without a line number), so the
# bad-input scenario fails by design with the shim.
set -u
QEMU=${QEMU:-qemu-system-x86_64}

bad() {
    echo "qemu-vmm-shim: $*" >&2
    exit 2
}

kernel='' initrd='' cmdline='' cpus=1 mem=256M serial=stdio noreboot=0 disks=''
while [ $# -gt 0 ]; do
    case $1 in
    --no-reboot)
        noreboot=1
        shift
        continue
        ;;
    --kernel | --initramfs | --cmdline | --cpus | --memory | --serial | --config | --disk)
        [ $# -ge 2 ] || bad "$1 needs a value"
        ;;
    *) bad "unknown argument '$1'" ;;
    esac
    case $1 in
    --kernel) kernel=$2 ;;
    --initramfs) initrd=$2 ;;
    --cmdline) cmdline=$2 ;;
    --cpus) cpus=$2 ;;
    --memory) mem=$2 ;;
    --serial) serial=$2 ;;
    --config) bad "--config is not supported by the QEMU shim" ;;
    --disk)
        case $2 in
        *,format=raw,bus=virtio) disks="$disks ${2%,format=raw,bus=virtio}" ;;
        *) bad "the QEMU shim takes --disk PATH,format=raw,bus=virtio only" ;;
        esac
        ;;
    esac
    shift 2
done

case $cpus in '' | *[!0-9]*) bad "--cpus must be a number, got '$cpus'" ;; esac
if [ "$cpus" -lt 1 ] || [ "$cpus" -gt 255 ]; then bad "--cpus must be 1..255, got $cpus"; fi
case $mem in *[0-9] | *[0-9][MmGg]) ;; *) bad "bad --memory '$mem'" ;; esac
[ -n "$kernel" ] || bad "--kernel is required"
[ -f "$kernel" ] || bad "kernel '$kernel' not found"
magic=$(dd if="$kernel" bs=1 skip=514 count=4 2>/dev/null)
[ "$magic" = HdrS ] || bad "'$kernel' is not a bzImage (no HdrS signature)"
if [ -n "$initrd" ] && [ ! -f "$initrd" ]; then bad "initramfs '$initrd' not found"; fi
case $serial in
stdio) ser=stdio ;;
file:?*) ser=$serial ;;
unix:?*) ser="$serial,server=on,wait=off" ;;
*) bad "bad --serial '$serial'" ;;
esac

set -- -M pc -enable-kvm -cpu host -smp "$cpus" -m "$mem" -display none -monitor none \
    -nic none -serial "$ser" -kernel "$kernel" -append "$cmdline"
[ -n "$initrd" ] && set -- "$@" -initrd "$initrd"
for d in $disks; do
    set -- "$@" -drive "file=$d,format=raw,if=virtio"
done

if [ "$noreboot" = 0 ]; then
    exec "$QEMU" "$@"
fi

# --no-reboot: QEMU exits 0 on both poweroff and reset; tell them apart by the QMP SHUTDOWN
# event's reason (guest-reset vs guest-shutdown), read through a pipe chardev.
d=$(mktemp -d "${TMPDIR:-/tmp}/shim.XXXXXX") || exit 1
mkfifo "$d/qmp.in" "$d/qmp.out" || exit 1
exec 4<>"$d/qmp.in" 5<>"$d/qmp.out"
cat <&5 >"$d/qmp.log" &
catpid=$!
printf '{"execute":"qmp_capabilities"}\n' >&4
exec 6<&0 # a background job gets /dev/null as stdin unless redirected explicitly
"$QEMU" "$@" -no-reboot -chardev "pipe,id=qmp0,path=$d/qmp" -mon chardev=qmp0,mode=control <&6 4>&- 5>&- 6<&- &
qpid=$!
trap 'kill -TERM $qpid 2>/dev/null' TERM INT
wait "$qpid"
rc=$?
while [ -d "/proc/$qpid" ] && ! grep -q '^State:.*Z' "/proc/$qpid/status" 2>/dev/null; do
    wait "$qpid"
    rc=$?
done
sleep 0.3
kill "$catpid" 2>/dev/null
if grep -q '"guest-reset"' "$d/qmp.log"; then
    rc=3
fi
rm -rf "$d"
exit "$rc"
