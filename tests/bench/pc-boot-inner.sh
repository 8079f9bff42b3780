#!/bin/sh
# tests/bench/pc-boot-inner.sh - SeaBIOS-to-login-prompt time of the Debian image (runs in L1).
#
# For BENCH_RUNS rounds (default 2), boots /dev/vda (the Debian 12 image, raw) under our vmm
# (--disk, standard VGA) and under QEMU -M pc (-enable-kvm -cpu host, -vga std), each with
# 512 MiB and one vCPU, on the disk buses of BENCH_BUS (ide, virtio, or both; default ide), and
# prints the seconds from process start to "login:" on the serial console and the monitor's
# resident memory then: "BENCH-PC <vmm|qemu>-<bus> run=<n> login_s=<s> rss_kib=<k>". Each guest
# is killed at the prompt, so the image is never changed by a completed boot (the outer script
# gives L1 a throwaway overlay). Environment: VMM, BENCH_RUNS, BENCH_TIMEOUT (default 600),
# BENCH_BUS.
PATH=/bin:/sbin:/usr/bin:/usr/sbin:$PATH
now() { read -r _up _ </proc/uptime; echo "$_up"; }
boot() { # NAME CMD...
    _name=$1
    shift
    : >/tmp/bench-serial.log
    t0=$(now)
    "$@" </dev/null >/tmp/bench-serial.log 2>/tmp/bench-err.log &
    pid=$!
    res=timeout rss=-
    while kill -0 $pid 2>/dev/null; do
        if grep -aq 'login:' /tmp/bench-serial.log; then
            res=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
            rss=$(awk '/^VmRSS:/ { print $2 }' /proc/$pid/status 2>/dev/null)
            break
        fi
        if awk -v a="$t0" -v b="$(now)" -v t="${BENCH_TIMEOUT:-600}" 'BEGIN { exit !(b - a >= t) }'; then
            break
        fi
        sleep 0.2
    done
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    echo "BENCH-PC $_name run=$run login_s=$res rss_kib=${rss:--}"
    [ "$res" = timeout ] && tail -n 20 /tmp/bench-serial.log /tmp/bench-err.log
}
run=1
while [ $run -le "${BENCH_RUNS:-2}" ]; do
    for bus in $(echo "${BENCH_BUS:-ide}" | sed 's/both/ide virtio/'); do
        boot "vmm-$bus" "$VMM" --disk "/dev/vda,format=raw,bus=$bus" --memory 512M --serial stdio
        # QEMU's if=virtio is virtio-blk-pci served in user space (no vhost).
        boot "qemu-$bus" qemu-system-x86_64 -enable-kvm -cpu host -M pc -m 512 -smp 1 \
            -drive "file=/dev/vda,format=raw,if=$bus,cache=none" -serial stdio -display none -vga std \
            -nic none -no-reboot
    done
    run=$((run + 1))
done
echo "BENCH-PC-DONE"
