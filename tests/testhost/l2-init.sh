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
#   net       the NIC (e1000 from /lib/modules/e1000.ko, or virtio-net from the virtio modules
#             of /lib/modules/virtio.order) configured by DHCP (udhcpc), printing
#             "L2-NET mac=M addr=A/P gw=G drv=DRIVER" (or L2-NET-FAIL), an HTTP server on port
#             8080 answering "hello-from-l2 M", then the shell as above
#   blk       the virtio drivers (/lib/modules/virtio.order), then the first line of
#             /dev/vda printed as "L2-BLK read=<line>"; for a line "E2E-BLK-IN <token>" the
#             line "L2-BLK-OUT <token>" is written at byte 4096 (sector 8) and synced, printing
#             "L2-BLK wrote=L2-BLK-OUT <token> irq=<the virtio request queue's /proc/interrupts
#             line>" (or L2-BLK-FAIL); poweroff -f
#   (other)   poweroff -f
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

cpus=$(grep -c '^processor' /proc/cpuinfo)
echo "L2-INIT cpus=$cpus mem_kib=$(awk '/^MemTotal:/{print $2}' /proc/meminfo)"
# The CMOS clock as the guest reads it (seconds since the epoch, taken as UTC).
echo "L2-RTC $(cat /sys/class/rtc/rtc0/since_epoch 2>/dev/null || echo none)"

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

# load_virtio: the virtio modules in their load order (virtio-pci, virtio-blk, virtio-net);
# a driver without its device just stays loaded.
load_virtio() {
    while read -r _m; do
        insmod "/lib/modules/$_m.ko" || echo "L2-$1-FAIL insmod $_m"
    done </lib/modules/virtio.order
}

# net_up: load the NIC drivers (e1000, virtio-net), get an address by DHCP, serve HTTP on
# port 8080.
net_up() {
    insmod /lib/modules/e1000.ko 2>/dev/null
    load_virtio NET
    ip link set lo up
    _i=0
    while [ ! -e /sys/class/net/eth0 ] && [ $_i -lt 100 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    [ -e /sys/class/net/eth0 ] || { echo "L2-NET-FAIL no eth0"; return 1; }
    ip link set eth0 up
    # udhcpc's hook: configure what the server offered.
    cat >/bin/udhcpc-hook <<'HOOK'
#!/bin/sh
case $1 in
bound | renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface"; break; done
    echo "$router" >/tmp/router
    ;;
esac
HOOK
    chmod +x /bin/udhcpc-hook
    if ! udhcpc -i eth0 -n -q -t 10 -T 2 -s /bin/udhcpc-hook >/tmp/udhcpc.log 2>&1; then
        echo "L2-NET-FAIL no DHCP lease: $(tail -n 3 /tmp/udhcpc.log | tr '\n' ' ')"
        return 1
    fi
    _mac=$(cat /sys/class/net/eth0/address)
    mkdir -p /www
    echo "hello-from-l2 $_mac" >/www/index.html
    httpd -p 8080 -h /www
    _drv=$(readlink /sys/class/net/eth0/device/driver)
    echo "L2-NET mac=$_mac addr=$(ip -4 -o addr show eth0 | awk '{print $4}') gw=$(cat /tmp/router 2>/dev/null) drv=${_drv##*/}"
}

# blk_test: see "blk" above.
blk_test() {
    load_virtio BLK
    _i=0
    while [ ! -b /dev/vda ] && [ $_i -lt 100 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    if [ ! -b /dev/vda ]; then
        echo "L2-BLK-FAIL no /dev/vda; PCI functions: $(echo /sys/bus/pci/devices/*)"
        return 1
    fi
    _in=$(dd if=/dev/vda bs=512 count=1 2>/dev/null | head -n 1)
    echo "L2-BLK read=$_in"
    case $_in in
    "E2E-BLK-IN "*) ;;
    *) return 1 ;;
    esac
    _out="L2-BLK-OUT ${_in#E2E-BLK-IN }"
    if ! echo "$_out" | dd of=/dev/vda bs=512 seek=8 conv=notrunc 2>/dev/null; then
        echo "L2-BLK-FAIL write"
        return 1
    fi
    # poweroff -f does not sync: write the dirty block out (and flush the disk) first.
    sync
    _irq=$(grep -m 1 'virtio0-req' /proc/interrupts | tr -s ' ')
    echo "L2-BLK wrote=$_out irq=$_irq"
}

case $mode in
blk)
    blk_test
    poweroff -f
    ;;
reboot)
    reboot -f
    ;;
echo)
    echo "L2-READY"
    IFS= read -r line
    echo "L2-ECHO:$line"
    poweroff -f
    ;;
shell | net)
    [ "$mode" = net ] && net_up
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
