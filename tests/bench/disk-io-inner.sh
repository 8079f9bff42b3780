#!/bin/sh
# tests/bench/disk-io-inner.sh - guest-visible disk throughput of a virtio-blk data disk (runs
# in L1, or on a host with real KVM).
#
# Boots the Debian image (/dev/vda, raw, read through a qcow2 overlay in /tmp so it is never
# written) with /dev/vdb (a raw scratch disk) as a second virtio disk, under our vmm
# (--disk ..,bus=virtio) and under QEMU -M pc (if=virtio: virtio-blk-pci served in user space,
# aio=threads, through the host page cache like ours: QEMU's default cache=writeback), 1 GiB
# and two vCPUs each; logs in on the serial console and runs
# fio on the data disk in the guest: sequential read and write with 1 MiB blocks and 4 KiB
# random reads at queue depth 32, direct I/O, BENCH_FIO_RUNTIME (default 20) seconds each.
# Prints "BENCH-DISK <vmm|qemu> test=<name> bw_kib=<KiB/s> iops=<n>", then BENCH-DISK-DONE.
# Environment: VMM, BENCH_RUNS (default 1), BENCH_TIMEOUT (default 600 per boot),
# BENCH_VARIANTS (default "vmm qemu"; also vmm-threads: our thread pool, qemu-io_uring, and
# vmm-qcow2 / qemu-qcow2: the data disk through a qcow2 overlay on it).
# Each variant starts with /dev/vdb in L1's page cache, and L1 syncs before each fio test.
PATH=/bin:/sbin:/usr/bin:/usr/sbin:$PATH
# The vmm logs its I/O engine and NIC data path at info level.
export RUST_LOG=info
now() { read -r _up _ </proc/uptime; echo "$_up"; }
ESC=$(printf '\033')
# The console without carriage returns and terminal escapes (busybox sed knows no \x1b).
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
RT=${BENCH_FIO_RUNTIME:-20}
# name rw bs iodepth
TESTS="seqread:read:1M:4 seqwrite:write:1M:4 randread:randread:4k:32"
bench() { # NAME CMD...
    _name=$1
    shift
    rm -f /tmp/bench-in /tmp/bench-overlay.qcow2
    qemu-img create -q -f qcow2 -b /dev/vda -F raw /tmp/bench-overlay.qcow2
    mkfifo /tmp/bench-in
    # Every variant starts with the data disk in L1's page cache and no dirty pages: the first
    # variant would otherwise read a cold disk (through L1's own virtio disk, under TCG) and the
    # next ones a warm one.
    sync
    cat /dev/vdb >/dev/null
    exec 3<>/tmp/bench-in
    : >/tmp/bench-serial.log
    "$@" <&3 >/tmp/bench-serial.log 2>/tmp/bench-err.log &
    pid=$!
    if ! wait_for /tmp/bench-serial.log 'login:' 1 "${BENCH_TIMEOUT:-600}" $pid; then
        echo "BENCH-DISK $_name boot failed"
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
    for t in $TESTS; do
        IFS=: read -r tname rw bs qd <<T
$t
T
        # The previous test's writes leave L1 with dirty pages to write back: not this test's cost.
        sync
        # fio --minimal: field 7/8 read KiB/s and IOPS, 48/49 write KiB/s and IOPS; the
        # awk program is for the guest's shell, so its $ stay unexpanded here.
        # shellcheck disable=SC2016
        printf 'fio --name=%s --filename=/dev/vdb --rw=%s --bs=%s --iodepth=%s --ioengine=libaio --direct=1 --size=900M --runtime=%s --time_based --minimal | awk -F";" "{ print \\"FIO-RESULT %s\\", \\$7, \\$8, \\$48, \\$49 }"\r' \
            "$tname" "$rw" "$bs" "$qd" "$RT" "$tname" >&3
        # Not anchored: a prompt's escapes may precede it; the echoed command line has a quote
        # after the name, not a digit.
        if wait_for /tmp/bench-serial.log "FIO-RESULT $tname [0-9]" 1 $((RT + 120)) $pid; then
            plain /tmp/bench-serial.log | grep -aoE "FIO-RESULT $tname [0-9 ]+" | tail -n 1 |
                awk -v n="$_name" '{ bw = $3 + $5; io = $4 + $6; printf "BENCH-DISK %s test=%s bw_kib=%d iops=%d\n", n, $2, bw, io }'
        else
            echo "BENCH-DISK $_name test=$tname failed"
            plain /tmp/bench-serial.log | tail -n 5
        fi
    done
    echo "BENCH-DISK $_name rss_kib=$(awk '/^VmRSS:/ { print $2 }' /proc/$pid/status)"
    grep -a 'I/O engine' /tmp/bench-err.log | sed "s/^/BENCH-DISK $_name log: /"
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    exec 3>&-
}
# data FORMAT: the data disk's path: /dev/vdb itself (raw), or a fresh qcow2 overlay on it
# (qcow2: reads of unwritten clusters go through to /dev/vdb, writes allocate clusters).
data() {
    case $1 in
        raw) echo /dev/vdb ;;
        qcow2)
            rm -f /tmp/bench-data.qcow2
            qemu-img create -q -f qcow2 -b /dev/vdb -F raw /tmp/bench-data.qcow2
            echo /tmp/bench-data.qcow2
            ;;
    esac
}
vmm() { # NAME AIO FORMAT
    _data=$(data "$3")
    bench "$1" "$VMM" --disk /tmp/bench-overlay.qcow2,format=qcow2,bus=virtio \
        --disk "$_data,format=$3,bus=virtio,aio=$2" --memory 1G --cpus 2 --vga none --serial stdio
}
qemu() { # NAME AIO FORMAT
    _data=$(data "$3")
    bench "$1" qemu-system-x86_64 -enable-kvm -cpu host -M pc -m 1024 -smp 2 \
        -drive file=/tmp/bench-overlay.qcow2,format=qcow2,if=virtio \
        -drive "file=$_data,format=$3,if=virtio,aio=$2" \
        -serial stdio -display none -vga none -nic none -no-reboot
}
run=1
while [ $run -le "${BENCH_RUNS:-1}" ]; do
    for v in ${BENCH_VARIANTS:-vmm qemu}; do
        case $v in
            vmm) vmm vmm io_uring raw ;;
            vmm-threads) vmm vmm-threads threads raw ;;
            vmm-qcow2) vmm vmm-qcow2 io_uring qcow2 ;;
            qemu) qemu qemu threads raw ;;
            qemu-io_uring) qemu qemu-io_uring io_uring raw ;;
            qemu-qcow2) qemu qemu-qcow2 threads qcow2 ;;
            *) echo "BENCH-DISK $v: unknown variant" ;;
        esac
    done
    run=$((run + 1))
done
echo "BENCH-DISK-DONE"
