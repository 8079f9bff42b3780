#!/bin/sh
# tests/e2e/vfio-l2-nvme-init.sh - /init of the L2 guest of the vfio-nvme scenario.
#
# Appended by tests/e2e/vfio-run.sh as a second cpio archive after the usual L2 test
# initramfs (whose busybox it uses), with the NVMe driver and its dependencies in
# /lib/modules (load order in /lib/modules/nvme.order). Loads them, waits for /dev/nvme0n1
# and acts on the kernel command-line parameter l2nvme= (l2nvme_mib=N sizes the benchmark,
# default 128, at most 192):
#   cycle  the boot counter block (byte 0: "VFIO-NVME boot=N") names the previous boot N; the
#          32 MiB pattern of seed N at 1 MiB must be there (md5sum); then the pattern of seed
#          N+1 and the counter N+1 are written and read back; on boot 1 the benchmark runs
#          too; boots 1 and 2 end with reboot -f, boot 3 with poweroff -f
#   bench  the pattern the counter names is verified (nothing written there), the benchmark
#          runs, poweroff -f
# Benchmark: sequential O_DIRECT writes of N MiB in 1 MiB requests at 64 MiB, then four
# sequential reads of the same N MiB (busybox dd oflag=direct / iflag=direct, one request at a
# time, timed with /proc/uptime: 10 ms steps, hence the repeated reads).
# Output: L2-NVME-DEV, L2-NVME-VERIFY, L2-NVME-WROTE, L2-NVME-BENCH write_mib_s= read_mib_s=,
# L2-NVME-IRQS modes=<msi|msix,...> lines=<nvme lines of /proc/interrupts, joined by ;>,
# L2-NVME-DONE boot=N (or
# L2-NVME-FAIL <why>, then poweroff -f).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
DEV=/dev/nvme0n1
PATTERN_MIB=32

mode='' mib=128
# shellcheck disable=SC2013 # words, not lines
for arg in $(cat /proc/cmdline); do
    case $arg in
    l2nvme=*) mode=${arg#l2nvme=} ;;
    l2nvme_mib=*) mib=${arg#l2nvme_mib=} ;;
    esac
done
echo "L2-INIT nvme mode=$mode"

now() { read -r _up _ </proc/uptime; echo "$_up"; }
# irqs: the kinds of the controller's vectors (msi_irqs/N: msi or msix; Linux 6.1 names both
# PCI-MSI in /proc/interrupts) and its /proc/interrupts lines.
irqs() {
    _modes=$(cat /sys/class/nvme/nvme0/device/msi_irqs/* 2>/dev/null | tr '\n' ',')
    echo "L2-NVME-IRQS modes=${_modes%,} lines=$(grep nvme /proc/interrupts | tr -s ' ' | tr '\n' ';')"
}
fail() {
    echo "L2-NVME-FAIL $*"
    irqs
    poweroff -f
}
# pattern SEED: the 32 MiB of seed SEED on stdout (1 MiB chunks of one repeated line each).
pattern() {
    _i=0
    while [ $_i -lt $PATTERN_MIB ]; do
        yes "vfio-nvme seed=$1 chunk=$_i" | head -c 1048576
        _i=$((_i + 1))
    done
}
pattern_sum() { pattern "$1" | md5sum | cut -d' ' -f1; }
disk_sum() { dd if=$DEV bs=1M skip=1 count=$PATTERN_MIB iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1; }
# counter: N of the counter block's "VFIO-NVME boot=N", empty without one.
counter() {
    dd if=$DEV bs=4096 count=1 iflag=direct 2>/dev/null | head -n 1 | tr -d '\0' |
        sed -n 's/^VFIO-NVME boot=\([0-9]*\)$/\1/p'
}
# verify N: the pattern of seed N is on the drive.
verify() {
    _want=$(pattern_sum "$1")
    _got=$(disk_sum)
    [ "$_got" = "$_want" ] || fail "boot $boot: pattern of seed $1 not on the drive (md5 $_got, want $_want)"
    echo "L2-NVME-VERIFY boot=$boot seed=$1 md5=$_got ok"
}
# rate MIB SECONDS
rate() { awk -v m="$1" -v s="$2" 'BEGIN { if (s <= 0) s = 0.01; printf "%.1f", m / s }'; }
bench() {
    _t0=$(now)
    dd if=/dev/zero of=$DEV bs=1M seek=64 count="$mib" conv=notrunc oflag=direct 2>/dev/null || fail "bench write"
    _t1=$(now)
    for _p in 1 2 3 4; do
        dd if=$DEV of=/dev/null bs=1M skip=64 count="$mib" iflag=direct 2>/dev/null || fail "bench read"
    done
    _t2=$(now)
    _ws=$(awk -v a="$_t0" -v b="$_t1" 'BEGIN { printf "%.2f", b - a }')
    _rs=$(awk -v a="$_t1" -v b="$_t2" 'BEGIN { printf "%.2f", b - a }')
    echo "L2-NVME-BENCH mib=$mib write_s=$_ws read_s=$_rs write_mib_s=$(rate "$mib" "$_ws") read_mib_s=$(rate $((mib * 4)) "$_rs")"
}

[ -f /lib/modules/nvme.order ] || fail "no /lib/modules/nvme.order"
while read -r m; do
    insmod "/lib/modules/$m.ko" || fail "insmod $m"
done </lib/modules/nvme.order
i=0
while [ ! -b $DEV ] && [ $i -lt 300 ]; do
    sleep 0.1
    i=$((i + 1))
done
[ -b $DEV ] || fail "no $DEV after 30 s ($(ls /sys/class/nvme 2>/dev/null | tr '\n' ' '))"
drv=$(readlink /sys/class/nvme/nvme0/device/driver)
echo "L2-NVME-DEV serial=$(tr -d ' ' </sys/class/nvme/nvme0/serial) model=$(tr -s ' ' </sys/class/nvme/nvme0/model) drv=${drv##*/} size_kib=$(($(cat /sys/block/nvme0n1/size) / 2))"

prev=$(counter)
[ -n "$prev" ] || fail "no counter block on the drive"
boot=$((prev + 1))
case $mode in
cycle)
    verify "$prev"
    pattern "$boot" | dd of=$DEV bs=1M seek=1 iflag=fullblock conv=notrunc oflag=direct 2>/dev/null || fail "boot $boot: pattern write"
    printf 'VFIO-NVME boot=%s\n' "$boot" | dd of=$DEV bs=4096 count=1 conv=sync,notrunc oflag=direct 2>/dev/null ||
        fail "boot $boot: counter write"
    [ "$(counter)" = "$boot" ] || fail "boot $boot: counter reads back as '$(counter)'"
    _want=$(pattern_sum "$boot")
    _got=$(disk_sum)
    [ "$_got" = "$_want" ] || fail "boot $boot: pattern of seed $boot reads back wrong (md5 $_got, want $_want)"
    echo "L2-NVME-WROTE boot=$boot seed=$boot md5=$_got"
    [ "$boot" = 1 ] && bench
    ;;
bench)
    boot=$prev
    verify "$prev"
    bench
    ;;
*) fail "unknown l2nvme mode '$mode'" ;;
esac
irqs
echo "L2-NVME-DONE boot=$boot"
if [ "$mode" = cycle ] && [ "$boot" -lt 3 ]; then
    reboot -f
fi
poweroff -f
