#!/bin/sh
# tests/bench/boot-inner.sh - boot-to-init and memory benchmark body (POSIX sh).
#
# Runs inside the L1 nested test host (started by tests/bench/boot.sh) or directly on a host with
# real KVM. For each of BENCH_RUNS rounds (default 3) it boots the L2 test initramfs with
# l2test=poweroff, 1 vCPU, 256 MiB, under
#   vmm           $VMM --cpus 1 --memory 256M --serial stdio      (skipped if $VMM is missing)
#   vmm-pci       the same with a virtio disk, so the direct machine has its PCI bus
#   qemu-microvm  $QEMU -M microvm,rtc=on -bios qboot.rom -enable-kvm -cpu host ...
#   qemu-pc       $QEMU -M pc (SeaBIOS) -enable-kvm -cpu host ...
# and measures boot_to_init_s (process start to the first "L2-INIT" line of the serial output,
# timed with /proc/uptime by an awk filter on the output) and, sampled at that moment from
# /proc/PID/status, VmRSS, VmHWM, RssAnon and RssFile of the VMM process, and its overhead:
# VmRSS minus the resident part of its largest mapping (guest RAM), from /proc/PID/smaps.
# vmm-pvh and qemu-microvm-pvh boot $VMLINUX (the uncompressed ELF) through the PVH entry.
# Prints "BENCH <vmm> run=<i> boot_to_init_s=<x> vmrss_kib=<y> ..." per boot and
# "BENCH-MEDIAN <vmm> ..." at the end. A benchmark: it never fails on timings.
# Environment: KERNEL, INITRD (required); VMM, QEMU (default qemu-system-x86_64), QBOOT,
#   BENCH_RUNS, BENCH_TIMEOUT (s per boot, default 60), BENCH_APPEND (guest cmdline),
#   BENCH_ONLY (space/comma separated subset of: vmm vmm-pci qemu-microvm qemu-pc vmm-pvh
#   qemu-microvm-pvh).
set -u
RUNS=${BENCH_RUNS:-3}
TMO=${BENCH_TIMEOUT:-60}
APPEND=${BENCH_APPEND:-console=ttyS0 l2test=poweroff panic=-1}
QEMU=${QEMU:-qemu-system-x86_64}
VMM=${VMM:-}
KERNEL=${KERNEL:?KERNEL must be set}
INITRD=${INITRD:?INITRD must be set}
ONLY=$(echo "${BENCH_ONLY:-vmm qemu-microvm qemu-pc vmm-pvh qemu-microvm-pvh}" | tr ',' ' ')
VMLINUX=${VMLINUX:-}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX") || exit 1
# mawk buffers a pipe's input in blocks: make it read line by line.
AWK='awk'
if awk -W version 2>&1 </dev/null | head -n 1 | grep -qi mawk; then AWK="awk -W interactive"; fi
RESULTS=$WORK/results

QBOOT_FILE=
for f in ${QBOOT:-} /usr/share/qemu/qboot.rom /usr/share/qemu/bios-microvm.bin; do
    if [ -f "$f" ]; then
        QBOOT_FILE=$f
        break
    fi
done

now_cs() {
    read -r _up _rest </proc/uptime
    _i=${_up%%.*}
    _f=${_up#*.}
    _f=${_f#0}
    NOW=$((_i * 100 + _f))
}

# measure TAG RUN CMD...: start CMD with stdout through the timestamping awk filter.
measure() {
    _tag=$1 _run=$2
    shift 2
    _b=$WORK/$_tag-$_run
    rm -f "$_b.res" "$_b.pid" "$_b.timeout"
    read -r _t0 _rest </proc/uptime
    now_cs
    _start=$NOW
    # The sh records its PID and execs the VMM, so the PID file names the VMM process.
    # shellcheck disable=SC2016
    sh -c 'echo $$ >"$0"; exec "$@"' "$_b.pid" "$@" </dev/null 2>"$_b.err" |
        $AWK -v t0="$_t0" -v pidf="$_b.pid" -v res="$_b.res" '
        !seen && index($0, "L2-INIT") {
            seen = 1
            getline up < "/proc/uptime"; close("/proc/uptime")
            split(up, u, " ")
            pid = ""; getline pid < pidf; close(pidf)
            st = "/proc/" pid "/status"
            rss = hwm = anon = file = "-"
            while ((getline l < st) > 0) {
                n = split(l, f, /[ \t]+/)
                if (f[1] == "VmRSS:") rss = f[2]
                else if (f[1] == "VmHWM:") hwm = f[2]
                else if (f[1] == "RssAnon:") anon = f[2]
                else if (f[1] == "RssFile:") file = f[2]
            }
            close(st)
            # Guest RAM is the largest mapping: the monitor overhead is the rest of VmRSS.
            sm = "/proc/" pid "/smaps"
            size = maxsize = 0; guest = "-"
            while ((getline l < sm) > 0) {
                n = split(l, f, /[ \t]+/)
                if (f[1] == "Size:") size = f[2] + 0
                else if (f[1] == "Rss:" && size > maxsize) { maxsize = size; guest = f[2] }
            }
            close(sm)
            over = (rss != "-" && guest != "-") ? rss - guest : "-"
            printf "%.2f %s %s %s %s %s\n", u[1] - t0, rss, hwm, anon, file, over > res
            close(res)
        }
        { print }' >"$_b.out" &
    _apid=$!
    # No polling while the guest boots (each L1 wakeup slows the nested guest down): block in
    # wait; a sleeping watchdog kills the VMM after BENCH_TIMEOUT seconds.
    while [ ! -s "$_b.pid" ]; do sleep 0.02; done
    read -r _vpid <"$_b.pid"
    # shellcheck disable=SC2016
    sh -c 'trap '\''kill "$s" 2>/dev/null; exit 0'\'' USR1
        sleep "$1" & s=$!; wait "$s"
        : >"$2"; kill -TERM "$3"
        sleep 2 & s=$!; wait "$s"
        kill -KILL "$3"
        sleep 5 & s=$!; wait "$s"
        kill -TERM "$4"' watchdog "$TMO" "$_b.timeout" "$_vpid" "$_apid" </dev/null >/dev/null 2>&1 &
    _wd=$!
    wait "$_apid" 2>/dev/null
    kill -USR1 "$_wd" 2>/dev/null
    wait "$_wd" 2>/dev/null
    _status=exited
    [ -f "$_b.timeout" ] && _status=killed-after-${TMO}s
    now_cs
    _total=$((NOW - _start))
    _tc=$((_total % 100))
    [ $_tc -lt 10 ] && _tc=0$_tc
    if [ -s "$_b.res" ]; then
        read -r _init _rss _hwm _anon _file _over <"$_b.res"
    else
        _init=- _rss=- _hwm=- _anon=- _file=- _over=-
        _status="$_status,no-L2-INIT"
    fi
    echo "BENCH $_tag run=$_run boot_to_init_s=$_init vmrss_kib=$_rss overhead_kib=$_over vmhwm_kib=$_hwm rss_anon_kib=$_anon rss_file_kib=$_file exit_s=$((_total / 100)).$_tc status=$_status"
    echo "$_tag $_init $_rss $_over" >>"$RESULTS"
    if [ "$_init" = - ]; then
        echo "---- $_tag run $_run: no L2-INIT; last output lines ----"
        tail -n 20 "$_b.out" | tr -d '\r' | sed 's/^/  | /'
        tail -n 5 "$_b.err" | sed 's/^/  ! /'
    fi
}

run_tag() { # TAG RUN
    case $1 in
    vmm)
        measure vmm "$2" "$VMM" --kernel "$KERNEL" --initramfs "$INITRD" --cmdline "$APPEND" \
            --cpus 1 --memory 256M --serial stdio
        ;;
    qemu-microvm)
        measure qemu-microvm "$2" "$QEMU" -M microvm,rtc=on -bios "$QBOOT_FILE" -enable-kvm -cpu host \
            -m 256 -nographic -no-reboot -nic none -kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND"
        ;;
    vmm-pci)
        # The direct machine with a PCI bus: a virtio disk (a 1 MiB raw file) gives it the
        # i440FX host bridge, the virtio-blk function and the PCI0 bridge in the DSDT, so the
        # guest's PCI probing through 0xCF8/0xCFC is in the figure.
        [ -f "$WORK/pci.raw" ] || dd if=/dev/zero of="$WORK/pci.raw" bs=1024 count=1024 2>/dev/null
        measure vmm-pci "$2" "$VMM" --kernel "$KERNEL" --initramfs "$INITRD" --cmdline "$APPEND" \
            --cpus 1 --memory 256M --serial stdio --disk "$WORK/pci.raw,format=raw,bus=virtio"
        ;;
    vmm-pvh)
        measure vmm-pvh "$2" "$VMM" --kernel "$VMLINUX" --initramfs "$INITRD" --cmdline "$APPEND" \
            --cpus 1 --memory 256M --serial stdio
        ;;
    qemu-microvm-pvh)
        measure qemu-microvm-pvh "$2" "$QEMU" -M microvm,rtc=on -bios "$QBOOT_FILE" -enable-kvm -cpu host \
            -m 256 -nographic -no-reboot -nic none -kernel "$VMLINUX" -initrd "$INITRD" -append "$APPEND"
        ;;
    qemu-pc)
        measure qemu-pc "$2" "$QEMU" -M pc -enable-kvm -cpu host \
            -m 256 -nographic -no-reboot -nic none -kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND"
        ;;
    esac
}

tags=
for t in $ONLY; do
    case $t in
    vmm | vmm-pvh | vmm-pci)
        if [ -z "$VMM" ] || [ ! -x "$VMM" ]; then
            echo "BENCH-SKIP $t: no vmm binary ('$VMM')"
            continue
        fi
        if [ "$t" = vmm-pvh ] && [ ! -f "$VMLINUX" ]; then
            echo "BENCH-SKIP $t: no vmlinux ('$VMLINUX')"
            continue
        fi
        ;;
    qemu-*)
        if ! command -v "$QEMU" >/dev/null 2>&1; then
            echo "BENCH-SKIP $t: $QEMU not found"
            continue
        fi
        case $t in qemu-microvm*) if [ -z "$QBOOT_FILE" ]; then
            echo "BENCH-SKIP $t: qboot.rom not found"
            continue
        fi ;; esac
        if [ "$t" = qemu-microvm-pvh ] && [ ! -f "$VMLINUX" ]; then
            echo "BENCH-SKIP $t: no vmlinux ('$VMLINUX')"
            continue
        fi
        ;;
    *)
        echo "BENCH-SKIP $t: unknown"
        continue
        ;;
    esac
    tags="$tags $t"
done

echo "BENCH-INFO runs=$RUNS timeout=${TMO}s kernel=$KERNEL initrd=$INITRD append='$APPEND' qboot=${QBOOT_FILE:-none} vmms:$tags"
i=1
while [ "$i" -le "$RUNS" ]; do
    for t in $tags; do
        run_tag "$t" "$i"
    done
    i=$((i + 1))
done

median() { # values on stdin, "-" ignored
    grep -v '^-$' | sort -n | awk '{ v[NR] = $1 }
        END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2];
              else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
for t in $tags; do
    m_init=$(awk -v t="$t" '$1 == t { print $2 }' "$RESULTS" | median)
    m_rss=$(awk -v t="$t" '$1 == t { print $3 }' "$RESULTS" | median)
    m_over=$(awk -v t="$t" '$1 == t { print $4 }' "$RESULTS" | median)
    n=$(awk -v t="$t" '$1 == t && $2 != "-"' "$RESULTS" | wc -l)
    echo "BENCH-MEDIAN $t boot_to_init_s=$m_init vmrss_kib=$m_rss overhead_kib=$m_over runs_reaching_init=$n/$RUNS"
done
rm -rf "$WORK"
exit 0
