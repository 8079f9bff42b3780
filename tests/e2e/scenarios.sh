#!/bin/sh
# tests/e2e/scenarios.sh - end-to-end scenarios for the vmm binary (POSIX sh).
#
# Runs inside the L1 nested test host (busybox sh, started by tests/testhost/l1-init.sh) or
# directly on a host with real KVM (bash/dash + coreutils). Uses only commands that busybox
# and coreutils both provide.
#
# Usage: scenarios.sh [--list | NAME...]
#   --list   print the scenario names (the single list tests/e2e/run.sh expects) and exit
#   NAME...  run only these scenarios (default: $E2E_ONLY, comma-separated, or all)
# Environment (required): VMM (vmm binary), KERNEL (bzImage), INITRD (L2 test initramfs built by
#   tests/testhost/fixtures.sh, whose /init obeys l2test=poweroff|reboot|echo|shell|blk).
#   VMLINUX: the same kernel as an uncompressed ELF (the pvh-vmlinux scenario).
# Optional: E2E_VMM_TIMEOUT (seconds per vmm invocation, default 60),
#   E2E_GUEST_EXTRA (extra guest kernel parameters, default "quiet"), E2E_KEEP=1 (keep workdir).
# Output: one line per scenario, "E2E-RESULT <name> PASS|FAIL <reason>", timings as
#   "E2E-TIME <name> boot_to_init_s=<s> total_s=<s>", and on failure the captured guest output.
#   Exit status: 0 if every selected scenario passed.
#
# vmm CLI under test: vmm --kernel PATH --initramfs PATH --cmdline STR --cpus N --memory SIZE
#   --serial stdio|file:PATH|unix:PATH [--no-reboot] [--config FILE] [--disk PATH,format=raw,bus=virtio];
#   exit codes: 0 guest powered
#   off, 3 guest rebooted under --no-reboot, 4 triple fault, 1 internal error, 2 bad user input.
set -u

# The one list of scenarios (tests/e2e/run.sh reads it through --list).
E2E_SCENARIOS="boot-1cpu boot-4cpu high-memory pvh-vmlinux config-file serial-echo reboot no-reboot serial-file rtc-localtime triple-fault bad-input direct-virtio-blk"

if [ "${1:-}" = "--list" ]; then
    for s in $E2E_SCENARIOS; do echo "$s"; done
    exit 0
fi

VMM=${VMM:-}
KERNEL=${KERNEL:-}
VMLINUX=${VMLINUX:-}
INITRD=${INITRD:-}
VMM_TIMEOUT=${E2E_VMM_TIMEOUT:-60}
GUEST_EXTRA=${E2E_GUEST_EXTRA-quiet}
MEM=256M

if [ $# -gt 0 ]; then
    SELECTED="$*"
elif [ -n "${E2E_ONLY:-}" ]; then
    SELECTED=$(echo "$E2E_ONLY" | tr ',' ' ')
else
    SELECTED=$E2E_SCENARIOS
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/e2e.XXXXXX") || exit 1
# mawk buffers a pipe's input in blocks: make it read line by line.
AWK='awk'
if awk -W version 2>&1 </dev/null | head -n 1 | grep -qi mawk; then AWK="awk -W interactive"; fi
VPID=

# ---- time (centiseconds of /proc/uptime; busybox date has no %N) --------------------------
now_cs() {
    read -r _up _rest </proc/uptime
    _i=${_up%%.*}
    _f=${_up#*.}
    _f=${_f#0}
    NOW=$((_i * 100 + _f))
}
secs() { # centiseconds -> "S.CC" in $SECS
    _c=$(($1 % 100))
    [ "$_c" -lt 10 ] && _c=0$_c
    SECS=$(($1 / 100)).$_c
}

# ---- vmm process handling (event driven: no polling while a guest boots) -------------------
# Waking L1 up while L2 runs is expensive (every wakeup preempts the nested guest), so nothing
# polls: the vmm's stdout goes through an awk filter that reports L2-INIT/L2-READY lines on an
# event FIFO, the shell blocks in read/wait, and a sleeping watchdog enforces the timeout.
alive() { # PID: running and not a zombie
    [ -r "/proc/$1/stat" ] || return 1
    read -r _p _comm _state _rest <"/proc/$1/stat" 2>/dev/null || return 1
    [ "$_state" != Z ]
}

# start_vmm TAG STDIN ARGS...: start "$VMM ARGS" in the background. Files: $WORK/TAG.out (stdout,
# i.e. the serial console with --serial stdio), .err (stderr), .cmd, .rc (exit status), .init
# (seconds from start to the first L2-INIT on stdout), .timeout (exists if the watchdog fired).
start_vmm() {
    _tag=$1 _in=$2
    shift 2
    _b=$WORK/$_tag
    OUT=$_b.out ERR=$_b.err
    rm -f "$_b.ev" "$_b.pid" "$_b.rc" "$_b.init" "$_b.timeout"
    : >"$OUT"
    : >"$ERR"
    echo "vmm $*" >"$_b.cmd"
    mkfifo "$_b.ev" || return 1
    exec 8<>"$_b.ev"
    TINIT='' RC='' TIMED_OUT=0 HARD_KILL=0 TEND=''
    now_cs
    T0=$NOW
    read -r _t0 _rest </proc/uptime
    # shellcheck disable=SC2016
    {
        "$VMM" "$@" <"$_in" 2>"$ERR" 3>&- 8>&- &
        echo $! >"$_b.pid"
        wait $!
        echo $? >"$_b.rc"
    } 2>/dev/null 3>&- 8>&- | $AWK -v ev="$_b.ev" -v initf="$_b.init" -v t0="$_t0" '
        { print }
        index($0, "L2-INIT") {
            n++
            if (n == 1) {
                getline up < "/proc/uptime"; close("/proc/uptime")
                split(up, u, " ")
                printf "%.2f\n", u[1] - t0 > initf; close(initf)
            }
            print "INIT " n > ev; close(ev)
        }
        index($0, "L2-READY") { print "READY" > ev; close(ev) }
        END { print "EOF" > ev; close(ev) }' >"$OUT" 3>&- 8>&- &
    APID=$!
    _n=0
    while [ ! -s "$_b.pid" ] && [ $_n -lt 500 ]; do
        sleep 0.02
        _n=$((_n + 1))
    done
    read -r VPID <"$_b.pid" || VPID=''
    # Watchdog: a separate sh (so that $! is the process holding the trap, in every shell),
    # cancelled with SIGUSR1 (a signal this shell does not trap).
    # shellcheck disable=SC2016
    sh -c 'trap '\''kill "$s" 2>/dev/null; exit 0'\'' USR1
        sleep "$1" & s=$!; wait "$s"
        : >"$2"; echo TIMEOUT >"$5"; kill -TERM "$3"
        sleep 5 & s=$!; wait "$s"
        kill -KILL "$3"
        sleep 5 & s=$!; wait "$s"
        kill -TERM "$4"' watchdog "$VMM_TIMEOUT" "$_b.timeout" "$VPID" "$APID" "$_b.ev" \
        </dev/null >/dev/null 2>&1 3>&- 8>&- &
    WDPID=$!
}

# wait_event READY | wait_event INIT N: block until the guest printed L2-READY / its N-th
# L2-INIT. Returns 1 if the vmm's output ended first (exit, or killed by the watchdog).
wait_event() {
    while read -r _ev _n <&8; do
        case $_ev in
        EOF | TIMEOUT) return 1 ;;
        "$1") [ "$1" = READY ] || [ "${_n:-0}" -ge "$2" ] && return 0 ;;
        esac
    done
    return 1
}

# wait_vmm: block until the vmm exited (the watchdog kills it at the timeout). Sets RC (exit
# status), TIMED_OUT, TINIT (seconds to the first L2-INIT on stdout, or empty), TEND.
wait_vmm() {
    wait "$APID" 2>/dev/null
    now_cs
    TEND=$((NOW - T0))
    kill -USR1 "$WDPID" 2>/dev/null
    wait "$WDPID" 2>/dev/null
    exec 8<&- # after the watchdog is gone: it may write TIMEOUT to the event FIFO
    RC=$(cat "$_b.rc" 2>/dev/null)
    [ -n "$RC" ] || RC=unknown
    TINIT=$(cat "$_b.init" 2>/dev/null)
    if [ -f "$_b.timeout" ]; then
        TIMED_OUT=1
        echo "E2E-INFO $_tag: timeout, vmm killed after ${VMM_TIMEOUT}s; the guest said:"
        tail -n 15 "$OUT" | tr -d '\r' | sed 's/^/  | /'
    fi
    VPID='' APID='' WDPID=''
}

# stop_vmm: SIGTERM, SIGKILL after 5 s (HARD_KILL=1), then wait_vmm.
stop_vmm() {
    kill -TERM "$VPID" 2>/dev/null
    _n=0
    while alive "$VPID" && [ $_n -lt 50 ]; do
        sleep 0.1
        _n=$((_n + 1))
    done
    if alive "$VPID"; then
        HARD_KILL=1
        kill -KILL "$VPID" 2>/dev/null
    fi
    wait_vmm
}

report_time() { # NAME
    _tt=-
    if [ -n "${TEND:-}" ]; then secs "$TEND" && _tt=$SECS; fi
    echo "E2E-TIME $1 boot_to_init_s=${TINIT:--} total_s=$_tt"
}

# finish_vmm: wait_vmm, report the time, and fail (return 1) if the watchdog had to kill it.
finish_vmm() {
    wait_vmm
    report_time "$SC"
    [ "$TIMED_OUT" = 0 ] || fail "timed out after ${VMM_TIMEOUT}s"
}

cmdline() { echo "console=ttyS0 l2test=$1 panic=-1${GUEST_EXTRA:+ $GUEST_EXTRA}"; }

fail() {
    REASON="${REASON:+$REASON; }$*"
    return 1
}

# ---- scenarios (each sets REASON on failure, NOTE on success; files prefixed by $SC) ------
boot_n() { # CPUS
    start_vmm "$SC" /dev/null --kernel "$KERNEL" --initramfs "$INITRD" \
        --cmdline "$(cmdline poweroff)" --cpus "$1" --memory "$MEM" --serial stdio
    finish_vmm || return 1
    grep -qE "L2-INIT cpus=$1([^0-9]|\$)" "$OUT" || fail "no 'L2-INIT cpus=$1' in guest output (exit $RC)" || return 1
    [ "$RC" = 0 ] || fail "exit code $RC, expected 0" || return 1
    NOTE="exit 0, init after ${TINIT:-?}s"
}

sc_boot_1cpu() { boot_n 1; }
sc_boot_4cpu() { boot_n 4; }

sc_serial_echo() {
    _fifo=$WORK/$SC.fifo
    rm -f "$_fifo"
    mkfifo "$_fifo" || fail "mkfifo failed" || return 1
    exec 3<>"$_fifo"
    start_vmm "$SC" "$_fifo" --kernel "$KERNEL" --initramfs "$INITRD" \
        --cmdline "$(cmdline echo)" --cpus 1 --memory "$MEM" --serial stdio
    if ! wait_event READY; then
        wait_vmm
        exec 3>&-
        report_time "$SC"
        if [ "$TIMED_OUT" = 1 ]; then
            fail "no L2-READY within ${VMM_TIMEOUT}s"
        else
            fail "vmm exited (code $RC) before the guest printed L2-READY"
        fi
        return 1
    fi
    _tok=$(od -An -N4 -tu4 /dev/urandom 2>/dev/null | tr -dc '0-9')
    [ -n "$_tok" ] || _tok=$$
    printf 'hello-e2e-%s\n' "$_tok" >&3
    wait_vmm
    exec 3>&-
    report_time "$SC"
    [ "$TIMED_OUT" = 0 ] || fail "timed out after ${VMM_TIMEOUT}s" || return 1
    grep -q "L2-ECHO:hello-e2e-$_tok" "$OUT" || fail "no 'L2-ECHO:hello-e2e-$_tok' in guest output (exit $RC)" || return 1
    [ "$RC" = 0 ] || fail "exit code $RC, expected 0" || return 1
    NOTE="guest echoed hello-e2e-$_tok"
}

sc_reboot() {
    start_vmm "$SC" /dev/null --kernel "$KERNEL" --initramfs "$INITRD" \
        --cmdline "$(cmdline reboot)" --cpus 1 --memory "$MEM" --serial stdio
    if wait_event INIT 2; then
        now_cs
        secs $((NOW - T0))
        NOTE="second boot after ${SECS}s"
        stop_vmm
        report_time "$SC"
        [ "$TIMED_OUT" = 0 ] || fail "timed out after ${VMM_TIMEOUT}s" || return 1
        [ "$HARD_KILL" = 1 ] && NOTE="$NOTE (vmm ignored SIGTERM, needed SIGKILL)"
        return 0
    fi
    wait_vmm
    report_time "$SC"
    _boots=$(grep -c L2-INIT "$OUT")
    if [ "$TIMED_OUT" = 1 ]; then
        fail "no second L2-INIT within ${VMM_TIMEOUT}s ($_boots seen)"
    else
        fail "vmm exited (code $RC) after $_boots boot(s); expected it to reboot the guest"
    fi
}

sc_no_reboot() {
    start_vmm "$SC" /dev/null --kernel "$KERNEL" --initramfs "$INITRD" \
        --cmdline "$(cmdline reboot)" --cpus 1 --memory "$MEM" --serial stdio --no-reboot
    finish_vmm || return 1
    _boots=$(grep -c 'L2-INIT' "$OUT")
    [ "$_boots" = 1 ] || fail "L2-INIT seen $_boots times, expected exactly 1" || return 1
    [ "$RC" = 3 ] || fail "exit code $RC, expected 3 (guest reboot under --no-reboot)" || return 1
    NOTE="exit 3 after one boot"
}

sc_serial_file() {
    _log=$WORK/$SC.serial.log
    rm -f "$_log"
    start_vmm "$SC" /dev/null --kernel "$KERNEL" --initramfs "$INITRD" \
        --cmdline "$(cmdline poweroff)" --cpus 1 --memory "$MEM" --serial "file:$_log"
    finish_vmm || return 1
    [ -f "$_log" ] || fail "serial file $_log was not created (exit $RC)" || return 1
    grep -q 'L2-INIT cpus=1' "$_log" || fail "no 'L2-INIT cpus=1' in $_log (exit $RC)" || return 1
    [ "$RC" = 0 ] || fail "exit code $RC, expected 0" || return 1
    NOTE="exit 0, serial file has L2-INIT"
}

# --rtc base=localtime with the host in a zone 5 h east of UTC (TZ=UTC-5): the guest's CMOS
# clock reads 18000 s ahead of the host's UTC seconds (within the boot's duration); the same
# boot without the flag reads UTC (sc_boot_1cpu prints L2-RTC too, not judged there).
sc_rtc_localtime() {
    # (start_vmm keeps its own _t0: this scenario's names are its own.)
    _rtc_host=$(date +%s)
    export TZ=UTC-5
    start_vmm "$SC" /dev/null --kernel "$KERNEL" --initramfs "$INITRD" \
        --cmdline "$(cmdline poweroff)" --cpus 1 --memory "$MEM" --serial stdio --rtc base=localtime
    unset TZ
    finish_vmm || return 1
    _rtc=$(sed -n 's/^L2-RTC \([0-9][0-9]*\).*/\1/p' "$OUT" | head -n 1)
    case "$_rtc:$_rtc_host" in
    *[!0-9:]* | :* | *:) fail "no L2-RTC seconds on the console, or no host time ('$_rtc', '$_rtc_host'; exit $RC)"; return 1 ;;
    esac
    _ahead=$((_rtc - _rtc_host))
    [ "$_ahead" -ge 17990 ] && [ "$_ahead" -le $((18000 + VMM_TIMEOUT + 10)) ] ||
        fail "guest RTC $_rtc is $_ahead s from the host's $_rtc_host, expected 18000 s ahead" || return 1
    NOTE="guest RTC ${_ahead} s ahead of UTC with TZ=UTC-5 (18000 + boot time)"
}

# More than 3 GiB: RAM is split around the 32-bit PCI hole, the rest above 4 GiB.
sc_high_memory() {
    start_vmm "$SC" /dev/null --kernel "$KERNEL" --initramfs "$INITRD" \
        --cmdline "$(cmdline poweroff)" --cpus 2 --memory 3584M --serial stdio
    finish_vmm || return 1
    _kib=$(sed -n 's/.*L2-INIT cpus=[0-9]* mem_kib=\([0-9]*\).*/\1/p' "$OUT" | head -n 1)
    [ -n "$_kib" ] || fail "no 'L2-INIT ... mem_kib=' in guest output (exit $RC)" || return 1
    # 3.5 GiB less what the kernel keeps for itself; 3 GiB would mean the high part is missing.
    [ "$_kib" -gt 3300000 ] || fail "guest sees MemTotal ${_kib} KiB, expected > 3300000" || return 1
    [ "$RC" = 0 ] || fail "exit code $RC, expected 0" || return 1
    NOTE="guest MemTotal ${_kib} KiB of 3584 MiB (RAM above 4 GiB in use)"
}

sc_pvh_vmlinux() {
    [ -f "$VMLINUX" ] || fail "VMLINUX '$VMLINUX' missing (tests/testhost/fixtures.sh extracts it)" || return 1
    start_vmm "$SC" /dev/null --kernel "$VMLINUX" --initramfs "$INITRD" \
        --cmdline "$(cmdline poweroff)" --cpus 2 --memory "$MEM" --serial stdio
    finish_vmm || return 1
    grep -q 'L2-INIT cpus=2' "$OUT" || fail "no 'L2-INIT cpus=2' in guest output (exit $RC)" || return 1
    [ "$RC" = 0 ] || fail "exit code $RC, expected 0" || return 1
    NOTE="ELF vmlinux through the PVH entry, 2 vCPUs, init after ${TINIT:-?}s"
}

sc_config_file() {
    _cfg=$WORK/$SC.json
    printf '{\n  "kernel": "%s",\n  "initramfs": "%s",\n  "cmdline": "%s",\n  "cpus": 2,\n  "memory": "192M",\n  "serial": "stdio"\n}\n' \
        "$KERNEL" "$INITRD" "$(cmdline poweroff)" >"$_cfg"
    # A flag given with --config overrides the file's field.
    start_vmm "$SC" /dev/null --config "$_cfg" --cpus 3
    finish_vmm || return 1
    grep -q 'L2-INIT cpus=3' "$OUT" || fail "no 'L2-INIT cpus=3' in guest output (exit $RC)" || return 1
    [ "$RC" = 0 ] || fail "exit code $RC, expected 0" || return 1
    NOTE="JSON config booted, --cpus 3 overrode the file's 2"
}

# A virtio-blk disk on the direct machine's PCI bus: the guest reads the host's token from
# sector 0 of /dev/vda and writes its own at sector 8; after power-off the image must hold it.
sc_direct_virtio_blk() {
    _img=$WORK/$SC.img
    _tok=$(od -An -N4 -tu4 /dev/urandom 2>/dev/null | tr -dc '0-9')
    [ -n "$_tok" ] || _tok=$$
    dd if=/dev/zero of="$_img" bs=1024 count=1024 2>/dev/null || fail "cannot create $_img" || return 1
    printf 'E2E-BLK-IN %s\n' "$_tok" | dd of="$_img" conv=notrunc 2>/dev/null
    start_vmm "$SC" /dev/null --kernel "$KERNEL" --initramfs "$INITRD" \
        --cmdline "$(cmdline blk)" --cpus 1 --memory "$MEM" --serial stdio \
        --disk "$_img,format=raw,bus=virtio"
    finish_vmm || return 1
    grep -q "L2-BLK read=E2E-BLK-IN $_tok" "$OUT" ||
        fail "the guest did not read 'E2E-BLK-IN $_tok' from /dev/vda (exit $RC)" || return 1
    _back=$(dd if="$_img" bs=512 skip=8 count=1 2>/dev/null | head -n 1)
    [ "$_back" = "L2-BLK-OUT $_tok" ] ||
        fail "sector 8 of the image holds '$_back', expected 'L2-BLK-OUT $_tok' (exit $RC)" || return 1
    [ "$RC" = 0 ] || fail "exit code $RC, expected 0" || return 1
    _irq=$(sed -n 's/.*L2-BLK wrote=.* irq=//p' "$OUT" | tr -d '\r' | head -n 1)
    NOTE="guest read token $_tok from /dev/vda and wrote its reply into the image (irq: ${_irq:-?}), init after ${TINIT:-?}s"
}

# A bzImage-shaped file whose 64-bit entry point (load address + 0x200, file offset 0x600) is
# ud2: with no usable IDT the #UD escalates to a triple fault.
make_triple_fault_kernel() { # OUT
    head -c 2048 /dev/zero >"$1"
    # shellcheck disable=SC2059 # the format carries the octal escapes
    _patch() { printf "$2" | dd of="$1" bs=1 seek="$3" conv=notrunc 2>/dev/null; }
    _patch "$1" '\001' 497                  # 0x1f1 setup_sects = 1
    _patch "$1" '\125\252' 510              # 0x1fe boot flag 0xaa55
    _patch "$1" 'HdrS' 514                  # 0x202 header magic
    _patch "$1" '\017\002' 518              # 0x206 boot protocol 2.15
    _patch "$1" '\001' 529                  # 0x211 loadflags: LOADED_HIGH
    _patch "$1" '\000\000\020\000' 532      # 0x214 code32_start 0x100000
    _patch "$1" '\001\000' 566              # 0x236 xloadflags: XLF_KERNEL_64
    _patch "$1" '\017\013' 1536             # 0x600: ud2
}

sc_triple_fault() {
    _k=$WORK/$SC.bzimage
    make_triple_fault_kernel "$_k"
    start_vmm "$SC" /dev/null --kernel "$_k" --cmdline "console=ttyS0" --cpus 1 --memory "$MEM" --serial stdio
    wait_vmm
    [ "$TIMED_OUT" = 0 ] || fail "timed out after ${VMM_TIMEOUT}s" || return 1
    [ "$RC" = 4 ] || fail "exit code $RC, expected 4 (triple fault); stderr: $(head -c 300 "$ERR" | tr '\n' ' ')" || return 1
    grep -qi 'triple fault' "$ERR" || fail "exit 4 but stderr does not say 'triple fault'" || return 1
    NOTE="exit 4: $(head -n 1 "$ERR" | tr -d '\r')"
}

# bad_case LABEL ARGS...: the vmm must exit 2 quickly with a message on stderr.
bad_case() {
    _label=$1
    shift
    start_vmm "$SC-$_label" /dev/null "$@"
    wait_vmm
    if [ "$TIMED_OUT" = 1 ]; then
        fail "$_label: still running after ${VMM_TIMEOUT}s"
        return 1
    fi
    [ "$RC" = 2 ] || fail "$_label: exit code $RC, expected 2" || return 1
    [ -s "$ERR" ] || fail "$_label: exit 2 but no message on stderr" || return 1
    BAD_OK="$BAD_OK $_label"
}

sc_bad_input() {
    BAD_OK=
    _ok=0
    _base_cmdline=$(cmdline poweroff)
    bad_case cpus0 --kernel "$KERNEL" --initramfs "$INITRD" --cmdline "$_base_cmdline" \
        --cpus 0 --memory "$MEM" --serial stdio || _ok=1
    bad_case nokernel --kernel /nonexistent/vmlinuz --initramfs "$INITRD" \
        --cmdline "$_base_cmdline" --cpus 1 --memory "$MEM" --serial stdio || _ok=1
    _txt=$WORK/not-a-kernel.txt
    echo "this is a small text file, not a kernel" >"$_txt"
    bad_case notkernel --kernel "$_txt" --initramfs "$INITRD" --cmdline "$_base_cmdline" \
        --cpus 1 --memory "$MEM" --serial stdio || _ok=1
    bad_case cpusmax --kernel "$KERNEL" --initramfs "$INITRD" --cmdline "$_base_cmdline" \
        --cpus 100000 --memory "$MEM" --serial stdio || _ok=1
    bad_case memhost --kernel "$KERNEL" --initramfs "$INITRD" --cmdline "$_base_cmdline" \
        --cpus 1 --memory 64T --serial stdio || _ok=1
    bad_case noinitrd --kernel "$KERNEL" --initramfs /nonexistent/initrd --cmdline "$_base_cmdline" \
        --cpus 1 --memory "$MEM" --serial stdio || _ok=1
    _unk=$WORK/unknown-field.json
    printf '{"kernel": "%s", "vcpus": 2}\n' "$KERNEL" >"$_unk"
    if bad_case unknownfield --config "$_unk"; then
        grep -q 'vcpus' "$ERR" || { fail "unknownfield: stderr does not name the field 'vcpus'"; _ok=1; }
    else
        _ok=1
    fi
    # Malformed JSON: the missing comma after line 3 is reported at line 4.
    _cfg=$WORK/bad-config.json
    printf '{\n  "kernel": "%s",\n  "cpus": 1\n  "memory": "256M"\n}\n' "$KERNEL" >"$_cfg"
    if bad_case badjson --config "$_cfg"; then
        if ! grep -qiE 'line[ :]*4([^0-9]|$)|:4:[0-9]' "$ERR"; then
            fail "badjson: stderr does not mention line 4: $(head -c 200 "$ERR" | tr '\n' ' ')"
            _ok=1
        fi
    else
        _ok=1
    fi
    NOTE="exit 2 for:$BAD_OK"
    return $_ok
}

# ---- driver -------------------------------------------------------------------------------
cleanup() {
    # Only the main shell cleans up (a forked child that has not exec'd yet inherits the trap).
    # shellcheck disable=SC2016
    [ "$(sh -c 'echo $PPID')" = "$$" ] || return 0
    if [ -n "$VPID" ] && alive "$VPID"; then kill -KILL "$VPID" 2>/dev/null; fi
    if [ -n "${WDPID:-}" ]; then kill -USR1 "$WDPID" 2>/dev/null; fi
    if [ "${E2E_KEEP:-0}" = 1 ] || [ "${FAILED:-0}" -gt 0 ]; then
        echo "E2E-INFO work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

dump_outputs() { # SC: print what the guest and the vmm said
    for _f in "$WORK/$1".* "$WORK/$1"-*; do
        [ -f "$_f" ] || continue
        case $_f in *.pid | *.ev) continue ;; esac
        echo "---- ${_f##*/} (last 60 lines) ----"
        tail -n 60 "$_f" | tr -d '\r' | sed 's/^/  | /'
    done
    echo "---- end of ${1} output ----"
}

PASSED=0 FAILED=0
echo "E2E-INFO vmm=$VMM kernel=$KERNEL initrd=$INITRD timeout=${VMM_TIMEOUT}s scenarios: $SELECTED"
for SC in $SELECTED; do
    REASON='' NOTE='' TEND=''
    fn=sc_$(echo "$SC" | tr '-' '_')
    echo "E2E-START $SC"
    case " $E2E_SCENARIOS " in
    *" $SC "*) ;;
    *)
        echo "E2E-RESULT $SC FAIL unknown scenario"
        FAILED=$((FAILED + 1))
        continue
        ;;
    esac
    if [ -z "$VMM" ] || [ ! -x "$VMM" ]; then
        ok=1 REASON="VMM '$VMM' is not an executable file"
    elif [ ! -f "$KERNEL" ] || [ ! -f "$INITRD" ]; then
        ok=1 REASON="KERNEL '$KERNEL' or INITRD '$INITRD' missing"
    else
        $fn
        ok=$?
        if [ -n "$VPID" ]; then stop_vmm; fi
        for _e in "$WORK/$SC".err "$WORK/$SC"-*.err; do
            [ -f "$_e" ] || continue
            if grep -q 'panicked at' "$_e"; then
                ok=1
                REASON="${REASON:+$REASON; }panic message in ${_e##*/}"
            fi
        done
    fi
    if [ "$ok" = 0 ]; then
        PASSED=$((PASSED + 1))
        echo "E2E-RESULT $SC PASS ${NOTE:-ok}"
    else
        FAILED=$((FAILED + 1))
        echo "E2E-RESULT $SC FAIL ${REASON:-failed}"
        dump_outputs "$SC"
    fi
done
echo "E2E-SUMMARY passed=$PASSED failed=$FAILED"
[ "$FAILED" = 0 ]
