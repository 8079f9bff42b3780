#!/bin/sh
# tests/e2e/vfio-l2-init.sh - /init of the L2 guest of the vfio-e1000e-msix scenario.
#
# Appended by tests/e2e/vfio-run.sh as a second cpio archive after the usual L2 test
# initramfs (whose busybox it uses), with /lib/modules/e1000e.ko. Loads e1000e (which uses
# MSI-X on QEMU's 82574), brings eth0 up, gets a DHCP lease, prints
#   L2-MSIX mac=M addr=A/P drv=DRIVER irqs=<eth0's /proc/interrupts lines, joined by ;>
# (or L2-MSIX-FAIL <why>) and powers off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo "L2-INIT e1000e"
insmod /lib/modules/e1000e.ko || echo "L2-MSIX-FAIL insmod e1000e"
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ ! -e /sys/class/net/eth0 ]; then
    echo "L2-MSIX-FAIL no eth0"
    poweroff -f
fi
ip link set lo up
ip link set eth0 up
cat >/bin/udhcpc-hook <<'HOOK'
#!/bin/sh
case $1 in
bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    ;;
esac
HOOK
chmod +x /bin/udhcpc-hook
if udhcpc -i eth0 -n -q -t 10 -T 2 -s /bin/udhcpc-hook >/tmp/udhcpc.log 2>&1; then
    drv=$(readlink /sys/class/net/eth0/device/driver)
    irqs=$(grep eth0 /proc/interrupts | tr -s ' ' | tr '\n' ';')
    echo "L2-MSIX mac=$(cat /sys/class/net/eth0/address) addr=$(ip -4 -o addr show eth0 | awk '{print $4}') drv=${drv##*/} irqs=$irqs"
else
    echo "L2-MSIX-FAIL no DHCP lease: $(tail -n 3 /tmp/udhcpc.log | tr '\n' ' ')"
fi
poweroff -f
