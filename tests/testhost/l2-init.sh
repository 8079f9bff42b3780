#!/bin/sh
# tests/testhost/l2-init.sh - /init of the L2 test guest initramfs (busybox sh).
#
# Built into $CACHE/l2-initramfs.cpio.gz by fixtures.sh. Prints "L2-INIT cpus=N mem_kib=M" on the
# console (ttyS0 when the guest cmdline has console=ttyS0), then acts on the kernel
# command-line parameter l2test=:
#   poweroff  poweroff -f              reboot  reboot -f
#   echo      print L2-READY, read one console line, print L2-ECHO:<line>, poweroff -f
#   shell     interactive busybox sh with job control on ttyS0 (demo); poweroff when it exits
#   (other)   poweroff -f
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

cpus=$(grep -c '^processor' /proc/cpuinfo)
echo "L2-INIT cpus=$cpus mem_kib=$(awk '/^MemTotal:/{print $2}' /proc/meminfo)"

mode=
# shellcheck disable=SC2013 # words, not lines
for arg in $(cat /proc/cmdline); do
    case $arg in
    l2test=*) mode=${arg#l2test=} ;;
    esac
done

case $mode in
reboot)
    reboot -f
    ;;
echo)
    echo "L2-READY"
    IFS= read -r line
    echo "L2-ECHO:$line"
    poweroff -f
    ;;
shell)
    mkdir -p /dev/pts
    mount -t devpts devpts /dev/pts 2>/dev/null
    hostname l2
    export PS1='l2:\w# ' HOME=/root PATH=/bin:/sbin:/usr/bin:/usr/sbin
    echo "L2-SHELL: Linux $(uname -r) with busybox, $cpus vCPU(s), $(free -m | awk '/^Mem:/{print $2}') MiB."
    echo "L2-SHELL: type 'exit' (or Ctrl-D) to power off."
    setsid cttyhack sh -l
    poweroff -f
    ;;
*)
    poweroff -f
    ;;
esac
# reboot/poweroff -f do not return; if they fail, panic=-1 turns init exiting into a reboot.
sleep 5
