#!/bin/sh
# tests/testhost/l1-init.sh - /init of the L1 test host initramfs (busybox sh).
#
# Put into $CACHE/l1-<name>.cpio.gz by build-l1.sh. Mounts proc/sys/devtmpfs, insmods the
# modules listed in /etc/l1-modules (irqbypass ccp kvm kvm-amd, dependencies first), checks
# /dev/kvm (prints L1-NOKVM and powers off without it), prints L1-READY, runs the scenario
# named in /etc/l1-scenario with VMM=/bin/vmm KERNEL=/guest/vmlinuz
# INITRD=/guest/l2-initramfs.cpio.gz, prints L1-SCENARIO-EXIT rc=N and powers off.
# Kernel parameters l1env.NAME=VALUE are exported to the scenario as NAME=VALUE (%20 in VALUE
# stands for a space; see l1env in lib.sh). Module parameters on the kernel command line
# (MODULE.PARAM=VALUE, e.g. kvm_amd.vgif=0) are passed to insmod, as modprobe would.
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
# cgroup v2, as on a systemd host: vmctld puts each VM in a cgroup with memory.max,
# pids.max and cpu.max (the jailer, vmctl/src/daemon/jailing.rs).
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
exec </dev/console >/dev/console 2>&1
# Loopback, as on any host (VNC servers and port forwards listen on 127.0.0.1).
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null

uptime_s() { read -r _up _ </proc/uptime; echo "$_up"; }

echo "L1-INIT uptime=$(uptime_s) kernel=$(uname -r)"
# modparams NAME: the MODULE.PARAM=VALUE words of the kernel command line for module NAME
# (- and _ are the same in module names).
modparams() {
    _m=$(echo "$1" | tr - _)
    # shellcheck disable=SC2013 # words, not lines
    for _a in $(cat /proc/cmdline); do
        case $_a in
        *.*=*) [ "$(echo "${_a%%.*}" | tr - _)" = "$_m" ] && printf '%s ' "${_a#*.}" ;;
        esac
    done
}
while read -r ko; do
    [ -n "$ko" ] || continue
    _name=$(basename "$ko" .ko)
    # shellcheck disable=SC2046 # one word per parameter
    insmod "$ko" $(modparams "$_name") || echo "L1-INSMOD-FAIL $ko"
done </etc/l1-modules

# KVM's SVM features in use (module parameters), for the log.
if [ -d /sys/module/kvm_amd/parameters ]; then
    echo "L1-KVM-AMD $(cd /sys/module/kvm_amd/parameters && for p in npt vgif vls avic nested; do
        [ -r $p ] && printf '%s=%s ' $p "$(cat $p)"; done)"
fi
if [ ! -c /dev/kvm ]; then
    echo "L1-NOKVM (no /dev/kvm after loading modules; svm in cpuinfo: $(grep -c -w svm /proc/cpuinfo))"
    poweroff -f
fi

# shellcheck disable=SC2013 # words, not lines
for arg in $(cat /proc/cmdline); do
    case $arg in
    l1env.[A-Za-z_]*=*) export "$(echo "${arg#l1env.}" | sed 's/%20/ /g')" ;;
    esac
done
VMM=/bin/vmm KERNEL=/guest/vmlinuz VMLINUX=/guest/vmlinux INITRD=/guest/l2-initramfs.cpio.gz
TMPDIR=/tmp HOME=/root
export VMM KERNEL VMLINUX INITRD TMPDIR HOME

# The heartbeat on ttyS1 (run-l1.sh sends it to LOGFILE.hb): a line every 5 s while L1's timer
# interrupts are delivered. l1_watch (lib.sh) tells an L1 stall from a quiet scenario by it.
if [ -c /dev/ttyS1 ]; then
    (while :; do echo "hb $(uptime_s)"; sleep 5; done >/dev/ttyS1 2>/dev/null &)
fi

echo "L1-READY uptime=$(uptime_s) memfree_kib=$(awk '/^MemFree:/{print $2}' /proc/meminfo)"
scenario=$(cat /etc/l1-scenario)
cd /tmp || exit 1
sh "$scenario"
rc=$?
echo "L1-SCENARIO-EXIT rc=$rc uptime=$(uptime_s)"
sync
poweroff -f
sleep 10
