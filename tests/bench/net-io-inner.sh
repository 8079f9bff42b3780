#!/bin/sh
# tests/bench/net-io-inner.sh - guest-visible TCP throughput of a virtio-net NIC on a tap (runs
# in L1, or on a host with real KVM).
#
# Boots the Debian image (/dev/vda, read through a qcow2 overlay in /tmp so it is never
# written) with one virtio-net NIC on tap btap0 (L1 side 10.0.2.1/24, guest 10.0.2.2/24), 1 GiB
# and two vCPUs, under our vmm and under QEMU -M pc; logs in on the serial console and runs
# iperf3 in the guest against `iperf3 -s` in L1: guest -> L1 (tx) and L1 -> guest (rx, -R),
# BENCH_IPERF_TIME (default 10) seconds each. Variants (BENCH_VARIANTS, default all four):
# vmm (vhost=off: the vmm's own data path on its event loop), vmm-vhost (vhost-net), qemu
# (vhost=off: QEMU's user-space virtio-net), qemu-vhost.
# Prints "BENCH-NET <variant> test=<tx|rx> mbit_s=<receiver's Mbit/s>", then BENCH-NET-DONE.
# Environment: VMM, BENCH_RUNS (default 1), BENCH_TIMEOUT (default 600 per boot).
PATH=/bin:/sbin:/usr/bin:/usr/sbin:$PATH
# The vmm logs its I/O engine and NIC data path at info level.
export RUST_LOG=info
now() { read -r _up _ </proc/uptime; echo "$_up"; }
ESC=$(printf '\033')
plain() { tr -d '\r' <"$1" | sed "s/$ESC\[[0-9;?]*[A-Za-z]//g"; }
count() { plain "$1" | grep -caE "$2"; }
wait_for() { # LOG PATTERN COUNT TIMEOUT PID
    _t=$(now)
    while [ "$(count "$1" "$2")" -lt "$3" ]; do
        kill -0 "$5" 2>/dev/null || return 1
        awk -v a="$_t" -v b="$(now)" -v t="$4" 'BEGIN { exit !(b - a >= t) }' && return 1
        sleep 0.5
    done
}
RT=${BENCH_IPERF_TIME:-10}
MAC=52:54:00:12:34:77
TAP=btap0
iperf3 -s -D -B 10.0.2.1 2>/dev/null || true
bench() { # NAME CMD...
    _name=$1
    shift
    rm -f /tmp/bench-in /tmp/bench-overlay.qcow2
    qemu-img create -q -f qcow2 -b /dev/vda -F raw /tmp/bench-overlay.qcow2
    mkfifo /tmp/bench-in
    exec 3<>/tmp/bench-in
    : >/tmp/bench-serial.log
    "$@" <&3 >/tmp/bench-serial.log 2>/tmp/bench-err.log &
    pid=$!
    _i=0
    while [ ! -e /sys/class/net/$TAP ] && [ $_i -lt 100 ] && kill -0 $pid 2>/dev/null; do
        sleep 0.1
        _i=$((_i + 1))
    done
    ip addr add 10.0.2.1/24 dev $TAP 2>/dev/null
    ip link set $TAP up 2>/dev/null
    # iperf3 -s binds 10.0.2.1, which exists only while a tap has it: start it (again) now.
    # (No pgrep in L1's busybox: iperf3's own pid file says whether it still runs.)
    kill -0 "$(cat /tmp/iperf3.pid 2>/dev/null)" 2>/dev/null || iperf3 -s -D -B 10.0.2.1 -I /tmp/iperf3.pid
    if ! wait_for /tmp/bench-serial.log 'login:' 1 "${BENCH_TIMEOUT:-600}" $pid; then
        echo "BENCH-NET $_name boot failed"
        tail -n 20 /tmp/bench-serial.log /tmp/bench-err.log
        kill -KILL $pid 2>/dev/null
        wait $pid 2>/dev/null
        exec 3>&-
        return
    fi
    sleep 1
    printf 'root\r' >&3
    wait_for /tmp/bench-serial.log 'Password:' 1 60 $pid
    sleep 1
    printf 'root\r' >&3
    wait_for /tmp/bench-serial.log 'root@vmm-guest:~#' 1 60 $pid
    # The interface by its MAC (its name is udev's).
    # shellcheck disable=SC2016 # the guest's shell expands these
    printf '%s\r' 'n=$(grep -l '"$MAC"' /sys/class/net/*/address | cut -d/ -f5); ip link set $n up; ip addr add 10.0.2.2/24 dev $n; ping -c 2 -W 2 10.0.2.1 >/dev/null; echo NET""UP rc=$? end' >&3
    wait_for /tmp/bench-serial.log 'NETUP rc=[0-9]+ end' 1 60 $pid
    plain /tmp/bench-serial.log | grep -aoE 'NETUP rc=[0-9]+' | sed "s/^/BENCH-NET $_name /"
    for t in tx rx; do
        case $t in tx) rev='' ;; rx) rev=-R ;; esac
        # iperf3's receiver line: "[  5]   0.00-10.00  sec  1.10 GBytes   944 Mbits/sec   receiver".
        # shellcheck disable=SC2016 # the awk program is the guest's
        printf 'iperf3 -c 10.0.2.1 %s -t %s -f m | awk "/receiver/ { print \\"IPERF-RESULT %s\\", \\$(NF-2) }"\r' \
            "$rev" "$RT" "$t" >&3
        if wait_for /tmp/bench-serial.log "IPERF-RESULT $t [0-9]" 1 $((RT + 60)) $pid; then
            plain /tmp/bench-serial.log | grep -aoE "IPERF-RESULT $t [0-9.]+" | tail -n 1 |
                awk -v n="$_name" '{ printf "BENCH-NET %s test=%s mbit_s=%s\n", n, $2, $3 }'
        else
            echo "BENCH-NET $_name test=$t failed"
            plain /tmp/bench-serial.log | tail -n 5
        fi
    done
    echo "BENCH-NET $_name rss_kib=$(awk '/^VmRSS:/ { print $2 }' /proc/$pid/status)"
    grep -a 'data path' /tmp/bench-err.log | sed "s/^/BENCH-NET $_name log: /"
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    exec 3>&-
    _i=0
    while [ -e /sys/class/net/$TAP ] && [ $_i -lt 50 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
}
vmm() { # NAME VHOST
    bench "$1" "$VMM" --disk /tmp/bench-overlay.qcow2,format=qcow2,bus=virtio \
        --nic "tap=$TAP,model=virtio,mac=$MAC,vhost=$2" --memory 1G --cpus 2 --vga none --serial stdio
}
qemu() { # NAME VHOST
    bench "$1" qemu-system-x86_64 -enable-kvm -cpu host -M pc -m 1024 -smp 2 \
        -drive file=/tmp/bench-overlay.qcow2,format=qcow2,if=virtio \
        -netdev "tap,id=n0,ifname=$TAP,script=no,downscript=no,vhost=$2" \
        -device "virtio-net-pci,netdev=n0,mac=$MAC" \
        -serial stdio -display none -vga none -no-reboot
}
run=1
while [ $run -le "${BENCH_RUNS:-1}" ]; do
    for v in ${BENCH_VARIANTS:-vmm qemu vmm-vhost qemu-vhost}; do
        case $v in
            vmm) vmm vmm off ;;
            vmm-vhost) vmm vmm-vhost on ;;
            qemu) qemu qemu off ;;
            qemu-vhost) qemu qemu-vhost on ;;
            *) echo "BENCH-NET $v: unknown variant" ;;
        esac
    done
    run=$((run + 1))
done
echo "BENCH-NET-DONE"
