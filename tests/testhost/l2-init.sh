#!/bin/sh
# tests/testhost/l2-init.sh - /init of the L2 test guest initramfs (busybox sh).
#
# Built into $CACHE/l2-initramfs.cpio.gz by fixtures.sh. Prints "L2-INIT cpus=N mem_kib=M" on the
# console (ttyS0 when the guest cmdline has console=ttyS0), then acts on the kernel
# command-line parameter l2test=:
#   poweroff  poweroff -f              reboot  reboot -f
#   echo      print L2-READY, read one console line, print L2-ECHO:<line>, poweroff -f
#   shell     interactive busybox sh with job control on ttyS0 (demo); poweroff when it exits,
#             or when the ACPI power button is pressed (prints L2-POWERBUTTON first)
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

# powerbutton_watch: power off when the ACPI power button is pressed. Linux enables the
# fixed-feature power button event only with the button driver loaded (/lib/modules/button.ko,
# added by fixtures.sh), and then merely reports it as a key press; busybox has no handler
# for that (no acpid configured here), so a background loop polls the event counter once a
# second. The counter is read before this returns: a press after that is never missed.
powerbutton_watch() {
    insmod /lib/modules/button.ko 2>/dev/null
    _f=/sys/firmware/acpi/interrupts/ff_pwr_btn
    [ -r $_f ] || { echo "L2-NOPOWERBUTTON (no $_f)"; return; }
    read -r _n0 _rest <$_f
    while sleep 1; do
        read -r _n _rest <$_f
        if [ "$_n" != "$_n0" ]; then
            echo "L2-POWERBUTTON: powering off"
            poweroff -f
        fi
    done &
}

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
    powerbutton_watch
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
