# shellcheck shell=bash
# tests/testhost/lib.sh - helpers shared by the nested-test-host scripts.
#
# Sourced (not executed) by the other test-host scripts, the tests/e2e/*-run.sh runners and the
# benchmarks. Defines REPO (repository root), CACHE ($REPO/.cache/testhost), logging,
# host package installation (apt-get), real-KVM detection and a cpio writer that needs no root.
# See /work/shared/TESTHOST.md (copied into the brief of these scripts) for the recipe.

TESTHOST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=${REPO:-$(cd "$TESTHOST_DIR/../.." && pwd)}
CACHE=${TESTHOST_CACHE:-$REPO/.cache/testhost}
export REPO CACHE

log() { printf '[%s] %s\n' "${0##*/}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ensure_pkgs "cmd-or-/abs/path:package" ... : apt-get install the packages whose probe is missing.
ensure_pkgs() {
    local spec probe pkg missing=()
    for spec in "$@"; do
        probe=${spec%%:*} pkg=${spec#*:}
        if [[ $probe == /* ]]; then
            [[ -e $probe ]] && continue
        else
            command -v "$probe" >/dev/null 2>&1 && continue
        fi
        missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    # dedupe
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    log "installing host packages: ${missing[*]}"
    [[ $(id -u) == 0 ]] || die "need root to apt-get install ${missing[*]} (or install them yourself)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
        apt-get update >&2
        apt-get install -y --no-install-recommends "${missing[@]}" >&2
    fi
}

# host_has_real_kvm: hardware virtualization usable by a VMM directly (not kvm_pvm).
# is_dynamic FILE: FILE is a dynamically linked program (ldd lists libraries). Not just ldd's
# status: for a static-pie binary ldd says "statically linked" and still exits 0.
is_dynamic() {
    ldd "$1" 2>/dev/null | grep -q '=>'
}

host_has_real_kvm() {
    grep -qwE 'vmx|svm' /proc/cpuinfo && [[ ! -e /sys/module/kvm_pvm ]] && [[ -e /dev/kvm ]]
}

# _cpio_newc_node NAME MODE(octal) RDEVMAJ RDEVMIN INO: one data-less newc entry on stdout.
_cpio_newc_node() {
    local name=$1 mode=$((8#$2)) maj=$3 min=$4 ino=$5
    local namesize=$((${#name} + 1))
    printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
        "$ino" "$mode" 0 0 1 0 0 0 0 "$maj" "$min" "$namesize" 0
    printf '%s\0' "$name"
    head -c $(((4 - (110 + namesize) % 4) % 4)) /dev/zero
}

# make_initramfs STAGEDIR OUT.cpio.gz: newc archive of STAGEDIR, all files owned by root,
# plus /dev/console and /dev/null device nodes (written by hand, so no mknod/root is needed;
# the kernel accepts concatenated cpio archives).
make_initramfs() {
    local stage=$1 out=$2
    {
        (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0)
        _cpio_newc_node dev 040755 0 0 900001
        _cpio_newc_node dev/console 020600 5 1 900002
        _cpio_newc_node dev/null 020666 1 3 900003
        _cpio_newc_node 'TRAILER!!!' 0 0 0 0
    } | gzip -6 -n >"$out.tmp"
    mv -f "$out.tmp" "$out"
}

# install_busybox STAGEDIR: static busybox as /bin/busybox plus applet symlinks.
install_busybox() {
    local stage=$1 bb=${BUSYBOX:-/bin/busybox} applet
    [[ -x $bb ]] || die "busybox not found at $bb"
    if ldd "$bb" >/dev/null 2>&1; then
        die "$bb is dynamically linked; install busybox-static"
    fi
    mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,etc,root}
    cp "$bb" "$stage/bin/busybox"
    while read -r applet; do
        [[ $applet == bin/busybox ]] && continue
        mkdir -p "$stage/$(dirname "$applet")"
        ln -sf /bin/busybox "$stage/$applet"
    done < <("$bb" --list-full)
}

# l1env NAME VALUE: L1 kernel parameter that l1-init.sh exports to the scenario as NAME=VALUE.
l1env() {
    local v=${2// /%20}
    printf ' l1env.%s=%s' "$1" "$v"
}

# load kernel facts written by fixtures.sh
load_kernel_env() {
    [[ -f $CACHE/kernel.env ]] || die "$CACHE/kernel.env missing: run tests/testhost/fixtures.sh"
    # shellcheck disable=SC1091
    source "$CACHE/kernel.env"
}

# l1_watch PID LOGFILE MONITOR_SOCKET SILENCE: waits for PID (an L1 run started with
# `-monitor unix:MONITOR_SOCKET,server,nowait` in L1_QEMU_EXTRA, logging to LOGFILE); if
# L1 is silent for SILENCE seconds, the L1 vCPU's state goes to LOGFILE.stall and to
# the log (L1-STALL lines) and L1 gets a new interrupt through its monitor: a key press on its
# PS/2 keyboard, and if it stays silent, an NMI (L1_UNSTICK=0 turns this off; at most 6 per
# run). If it is still silent after that, it is stopped through its monitor. Returns PID's
# status.
#
# Why: in about a third of the L1 runs that boot a Debian guest, L1 stalls for good, mostly
# when the guest's kernel starts: L1 idle in its kernel with interrupts enabled and its LAPIC
# timer vector pending in the IRR, never delivered. Seen with QEMU 7.2 and 10.0, with and
# without idle=poll, with kvm_amd.vgif=0 too. SVM's global interrupt flag is set at such a
# stall (read from QEMU's memory, L1-HFLAGS line) and nothing in the CPU state masks the
# interrupt; a `stop`/`cont` of the L1 does not deliver it either: QEMU's APIC holds the vector
# without having told its CPU (cause in QEMU not found). Any new interrupt makes it look again:
# a key press, or an NMI, unstuck both stalls they were tried on (the L1 kernel then reports a
# soft lockup, or "NMI received for unknown reason"). Silence: once L1's heartbeat
# (LOGFILE.hb, a line every 5 s from l1-init.sh; see run-l1.sh) has started, L1 is silent when
# the heartbeat stops for L1_HB_SILENCE (default 40) seconds, so a stall costs well under a
# minute; before that (L1 booting), when LOGFILE does not grow for SILENCE seconds. The callers
# retry scenarios of an L1 that had to be stopped.
l1_watch() {
    local pid=$1 logf=$2 sock=$3 silence=$4 last=-1 quiet=0 size kicks=0 total=0 kicked='' how
    local hb=$logf.hb step=10 watched
    while kill -0 "$pid" 2>/dev/null; do
        watched=$logf
        if [[ -s $hb ]]; then
            watched=$hb silence=${L1_HB_SILENCE:-40} step=5
        fi
        sleep $step
        size=$(stat -c %s "$watched" 2>/dev/null || echo 0)
        if [[ $size == "$last" ]]; then quiet=$((quiet + step)); else quiet=0 last=$size; fi
        if [[ -n $kicked ]] && ((quiet == 0)); then
            log "L1 runs again after: $kicked"
            echo "E2E-INFO L1 runs again after: $kicked" >>"$logf"
            kicked='' kicks=0
        fi
        ((quiet >= silence)) || continue
        l1_monitor_dump "$sock" >"$logf.stall"
        sed 's/^/L1-STALL /' "$logf.stall" >>"$logf"
        if [[ ${L1_UNSTICK:-1} == 1 ]] && ((kicks < 2 && total < 6)); then
            kicks=$((kicks + 1)) total=$((total + 1))
            if ((kicks == 1)); then how='sendkey shift'; else how=nmi; fi
            # The dump left L1 stopped.
            printf 'cont\n%s\n' "$how" | timeout 10 socat -t 2 - "UNIX-CONNECT:$sock" >/dev/null 2>&1
            kicked="$how (kick $total)"
            log "L1 silent for $quiet s: giving it a new interrupt ($how)"
            echo "E2E-INFO L1 printed nothing for $quiet s; new interrupt: $how" >>"$logf"
            last=$(stat -c %s "$watched" 2>/dev/null || echo 0) quiet=0
            continue
        fi
        log "L1 silent for $quiet s: stopping it"
        echo "E2E-INFO L1 printed nothing for $quiet s and was stopped (its registers: L1-STALL lines)" >>"$logf"
        # Through its own monitor: another checkout's test host may share the initramfs
        # path, so no pkill on that.
        echo quit | timeout 10 socat -t 2 - "UNIX-CONNECT:$sock" >/dev/null 2>&1 ||
            pkill -f -- "-monitor unix:$sock" || true
        quiet=0
    done
    wait "$pid"
}

# scenario_passed LOGFILE NAME: LOGFILE holds "E2E-RESULT NAME PASS".
scenario_passed() {
    # Not `tr | grep -q`: grep -q stops at the first match, tr dies of SIGPIPE and pipefail
    # turns a found PASS into a failure.
    grep -q "E2E-RESULT $2 PASS" "$1"
}

# l1_retry LOGFILE ATTEMPTS ONLY_VAR RUN_FN SCENARIO...: the fallback for a stalled L1 (see
# l1_watch). After a first L1 run logged to LOGFILE, the SCENARIOs without a PASS there run
# again in up to ATTEMPTS-1 more L1 boots: `RUN_FN LOGFILE.retry` with the variable named by
# ONLY_VAR (e.g. PC_ONLY) exported as their comma-separated list. Each retry's log is appended
# to LOGFILE with its PASS lines marked "(attempt N)", so the last result line of a scenario is
# its final one. Returns the status of the last L1 run (0 if none was needed).
l1_retry() {
    # Locals are prefixed: RUN_FN sees them (bash scoping is dynamic).
    local _r_log=$1 _r_max=$2 _r_var=$3 _r_fn=$4 _r_n _r_try _r_rc=0 _r_list
    shift 4
    local _r_again=() _r_left=()
    for _r_n in "$@"; do scenario_passed "$_r_log" "$_r_n" || _r_again+=("$_r_n"); done
    for ((_r_try = 2; _r_try <= _r_max && ${#_r_again[@]} > 0; _r_try++)); do
        log "attempt $_r_try in a new L1: ${_r_again[*]}"
        echo "E2E-INFO attempt $_r_try of: ${_r_again[*]}" >>"$_r_log"
        _r_list=$(IFS=,; echo "${_r_again[*]}")
        local -x "$_r_var=$_r_list"
        "$_r_fn" "$_r_log.retry" && _r_rc=0 || _r_rc=$?
        sed "s/E2E-RESULT \([^ ]*\) PASS/E2E-RESULT \1 PASS (attempt $_r_try)/" "$_r_log.retry" >>"$_r_log"
        _r_left=()
        for _r_n in "${_r_again[@]}"; do scenario_passed "$_r_log.retry" "$_r_n" || _r_left+=("$_r_n"); done
        _r_again=(${_r_left[@]+"${_r_left[@]}"})
    done
    return "$_r_rc"
}

# e2e_report SUITE LOGFILE HEADER TIMED_OUT SCENARIO...: the result section of an e2e runner:
# the E2E-TIME and guest warning lines of LOGFILE, one result line per SCENARIO (its last in
# LOGFILE; none is a failure), result lines of scenarios not asked for, and the verdict line
# "SUITE: N passed, M failed". Fails if any failed, none passed or TIMED_OUT is 1.
e2e_report() {
    local suite=$1 logf=$2 header=$3 timed_out=$4 name line r passed=0 failed=0
    shift 4
    local results=()
    mapfile -t results < <(tr -d '\r' <"$logf" | grep -oE 'E2E-RESULT [^ ]+ (PASS|FAIL)( .*)?$' || true)
    echo
    echo "==== $suite results ($header, log $logf) ===="
    tr -d '\r' <"$logf" | grep -oE 'E2E-(TIME|GUEST-WARN|GUEST-INFO) .*$' || true
    for name in "$@"; do
        line=
        for r in ${results[@]+"${results[@]}"}; do
            [[ $r == "E2E-RESULT $name "* ]] && line=$r
        done
        if [[ -z $line ]]; then
            line="E2E-RESULT $name FAIL no result (run $( ((timed_out)) && echo "timed out" || echo "ended early"))"
        fi
        echo "$line"
        if [[ $line == "E2E-RESULT $name PASS"* ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
    done
    for r in ${results[@]+"${results[@]}"}; do
        name=${r#E2E-RESULT }
        name=${name%% *}
        [[ " $* " == *" $name "* ]] || echo "(unexpected) $r"
    done
    ((timed_out)) && echo "$suite: the run timed out"
    ((${#results[@]})) || echo "$suite: no E2E-RESULT lines found in $logf"
    echo "$suite: $passed passed, $failed failed"
    ((failed == 0 && passed > 0 && !timed_out))
}

# l1_monitor_dump SOCKET [SAMPLES]: what a stalled L1 is doing, from its QEMU's HMP monitor
# (run-l1.sh callers add `-monitor unix:SOCKET,server,nowait`): SAMPLES (default 3) snapshots,
# 2 s apart, of the vCPU registers, the instructions at RIP and the local APIC. Printed to
# stdout; nothing if the socket is gone.
l1_monitor_dump() {
    local sock=$1 n=${2:-3} i
    [[ -S $sock ]] || return 0
    command -v socat >/dev/null 2>&1 || return 0
    for ((i = 1; i <= n; i++)); do
        echo "---- L1 monitor sample $i ----"
        # shellcheck disable=SC2016 # $pc is the monitor's, not the shell's
        printf 'info registers\nx/6i $pc\ninfo lapic\ninfo cpus\n' |
            timeout 10 socat -t 3 - "UNIX-CONNECT:$sock" 2>&1 | tr -d '\r' |
            grep -v '^(qemu)\|^QEMU [0-9].*monitor' || true
        sleep 2
    done
    l1_hidden_flags "$sock"
}

# l1_hidden_flags SOCKET: stops the L1 behind SOCKET and prints its vCPU's hidden flags (GIF
# and friends, see qemu-hflags.pl) as one "L1-HFLAGS" line, also to stderr (the CI log).
l1_hidden_flags() {
    local sock=$1 pid regs line
    pid=$(l1_qemu_pid "$sock" | head -n 1)
    [[ -n $pid ]] || return 0
    regs=$(printf 'stop\ninfo registers\n' | timeout 10 socat -t 3 - "UNIX-CONNECT:$sock" 2>/dev/null |
        tr -d '\r' | grep -oE 'R(8 |9 |10|11|12|13|14|15)=[0-9a-f]+' | cut -d= -f2 | tr '\n' ' ')
    # shellcheck disable=SC2086 # eight words
    line=$(timeout 60 perl "$TESTHOST_DIR/qemu-hflags.pl" "$pid" $regs 2>&1 | head -n 3 | tr '\n' ' ')
    echo "L1-HFLAGS $line"
    log "stalled L1's hidden CPU flags: $line"
}

# l1_qemu_pid SOCKET: the QEMU process whose monitor is SOCKET.
l1_qemu_pid() {
    local p
    for p in $(pgrep -f -- "-monitor unix:$1" 2>/dev/null); do
        [[ $(cat "/proc/$p/comm" 2>/dev/null) == qemu-system* ]] && echo "$p"
    done
}

# static_vmm: builds the static vmm (release, crt-static) unless VMM_BIN names one, and exports
# VMM_BIN as an absolute path; dies if there is no binary.
static_vmm() {
    if [[ -z ${VMM_BIN:-} ]]; then
        (cd "$REPO" && RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
            cargo build --release -p vmm --target x86_64-unknown-linux-gnu)
        local tdir=${CARGO_TARGET_DIR:-target}
        [[ $tdir == /* ]] || tdir=$REPO/$tdir
        VMM_BIN=$tdir/x86_64-unknown-linux-gnu/release/vmm
    fi
    VMM_BIN=$(realpath "$VMM_BIN") || die "no vmm binary at $VMM_BIN"
    export VMM_BIN
}
