#!/bin/sh
# tests/bench/pc-boot-inner.sh - SeaBIOS-to-login-prompt time of the Debian image (runs in L1).
#
# For BENCH_RUNS rounds (default 2), boots /dev/vda (the Debian 12 image, raw) under our vmm
# (--disk, IDE, standard VGA) and under QEMU -M pc (-enable-kvm -cpu host, IDE, -vga std), each
# with 512 MiB and one vCPU, and prints the seconds from process start to "login:" on the serial
# console: "BENCH-PC <vmm|qemu> run=<n> login_s=<s>". Each guest is killed at the prompt, so
# the image is never changed by a completed boot (the outer script gives L1 a throwaway
# overlay). Environment: VMM, BENCH_RUNS, BENCH_TIMEOUT (default 600).
PATH=/bin:/sbin:/usr/bin:/usr/sbin:$PATH
now() { read -r _up _ </proc/uptime; echo "$_up"; }
boot() { # NAME CMD...
    _name=$1
    shift
    : >/tmp/bench-serial.log
    t0=$(now)
    "$@" </dev/null >/tmp/bench-serial.log 2>/tmp/bench-err.log &
    pid=$!
    res=timeout
    while kill -0 $pid 2>/dev/null; do
        if grep -aq 'login:' /tmp/bench-serial.log; then
            res=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
            break
        fi
        if awk -v a="$t0" -v b="$(now)" -v t="${BENCH_TIMEOUT:-600}" 'BEGIN { exit !(b - a >= t) }'; then
            break
        fi
        sleep 0.2
    done
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    echo "BENCH-PC $_name run=$run login_s=$res"
    [ "$res" = timeout ] && tail -n 20 /tmp/bench-serial.log /tmp/bench-err.log
}
run=1
while [ $run -le "${BENCH_RUNS:-2}" ]; do
    boot vmm "$VMM" --disk /dev/vda,format=raw --memory 512M --serial stdio
    boot qemu qemu-system-x86_64 -enable-kvm -cpu host -M pc -m 512 -smp 1 \
        -drive file=/dev/vda,format=raw,if=ide,cache=none -serial stdio -display none -vga std \
        -nic none -no-reboot
    run=$((run + 1))
done
echo "BENCH-PC-DONE"
