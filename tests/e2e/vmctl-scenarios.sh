#!/bin/sh
# shellcheck disable=SC2016,SC2015 # guest commands carry $((...)) unexpanded; a && b || fail
# tests/e2e/vmctl-scenarios.sh - end-to-end scenarios of vmctld + vmctl with the real vmm
# (POSIX sh; issue 5).
#
# Runs inside the L1 nested test host (busybox sh, started by tests/testhost/l1-init.sh) or
# directly on a host with real KVM. Started by tests/e2e/vmctl-run.sh.
#
# Usage: vmctl-scenarios.sh [--list | NAME...]
#   --list   print the scenario names (the list tests/e2e/vmctl-run.sh expects) and exit
#   NAME...  run only these (default: $VMCTL_ONLY, comma-separated, or all). Later scenarios
#            use the VMs the "define" scenario defines, which always runs first.
# Environment (required): VMM (vmm binary), KERNEL (bzImage), INITRD (L2 test initramfs of
#   tests/testhost/fixtures.sh: l2test=shell gives a shell on ttyS0 that powers off on the
#   ACPI power button, l2test=poweroff powers off at once). They are copied into the default
#   storage pool of each state directory (vmctld takes kernels, initramfs files and disks only
#   from pools); the Debian overlay is made there too. Without a `nobody` user (an L1 from an
#   initramfs) one is added to /etc/passwd and /etc/group, for dnsmasq.
# Optional: DEBIAN_DISK (the Debian 12 image of tests/testhost/debian-image.sh as a raw block
#   device or file, for debian-nat; it is never written: a qcow2 overlay goes on it; needs
#   qemu-img), VMCTLD, VMCTL (default: next to $VMM), VMCTL_BOOT_TIMEOUT (seconds for a guest to
#   reach its shell, default 120), VMCTL_BENCH_VMS (default 200), VMCTL_BENCH_RUNS (boots per
#   side in the start-to-init comparison, default 3), E2E_GUEST_EXTRA (default "quiet").
# Output: "E2E-RESULT <name> PASS|FAIL <reason>" per scenario, measurements as "E2E-TIME ...",
#   diagnostics (daemon log, vmm log, console) after a failure. Exit status 0 if all passed.
#
# Scenarios:
#   define          define from libvirt XML (direct kernel boot) and from JSON; list shows them;
#                   dumpxml -> undefine -> define gives the same VM (dumpjson compared)
#   console         start; `vmctl console` (stdin a FIFO) sees the shell and a command's output;
#                   Ctrl-] detaches with status 0
#   suspend         `vmctl suspend`: listed paused, a command typed on the console gives no
#                   output for 5 s; `vmctl resume`: listed running, the output comes
#   shutdown        `vmctl shutdown` (ACPI power button): shut off, vmm exit status 0
#   daemon-restart  two VMs run; SIGKILL vmctld; a new vmctld lists both running with the same
#                   pids; the console re-attaches (replay shows earlier output), input works;
#                   destroy both
#   net             `vmctl net define/start` a NAT network (bridge, dnsmasq, nftables) with a
#                   fixed address for a MAC and a port forward; a VM with a virtio-net NIC on it
#                   (PC machine, kernel through fw_cfg, l2test=net) gets that address by DHCP
#                   (seen on its console, driver virtio_net, and in `vmctl net leases`); the
#                   host reaches its HTTP server directly and through the forwarded port; a
#                   second VM with an e1000 gets an address from the range and serves its page
#                   too; destroy removes the taps; `net stop` leaves no bridge, table or dnsmasq
#   debian-nat      the Debian 12 image (DEBIAN_DISK, raw; a qcow2 overlay on it) defined from
#                   libvirt XML with a virtio disk and a virtio-net NIC on a `vmctl` NAT
#                   network: SeaBIOS boots it to login, / is /dev/vda1 on virtio_blk, the
#                   NIC (virtio_net) gets its fixed address by DHCP (dhclient) and reaches
#                   the host's bridge; `vmctl net leases` has it; the guest writes and reads
#                   8 MiB with O_DIRECT and `vmctl domstats` shows block.0 (vda) rd.bytes and
#                   wr.bytes grown by 8 MiB, fl.reqs, cpu.time, vcpu.0.time, balloon.rss > 0,
#                   `dominfo` a CPU time row, `domstats --json` sampled rates; `vmctl
#                   shutdown` powers it off (ACPI) and the VM is shut off
#   bad-input       malformed XML, malformed JSON and an unsupported XML element: exit 2, an
#                   error with line and column, the store unchanged
#   bench           `vmctl list` latency with 200 defined VMs (second daemon, own state dir);
#                   `vmctl start` to guest init against the bare vmm (measurements)
set -u

VMCTL_SCENARIOS="define console suspend shutdown daemon-restart net debian-nat bad-input bench"

if [ "${1:-}" = "--list" ]; then
    for s in $VMCTL_SCENARIOS; do echo "$s"; done
    exit 0
fi

VMM=${VMM:?VMM is required}
KERNEL=${KERNEL:?KERNEL is required}
INITRD=${INITRD:?INITRD is required}
BINDIR=$(dirname "$VMM")
VMCTLD=${VMCTLD:-$BINDIR/vmctld}
VMCTL=${VMCTL:-$BINDIR/vmctl}
BOOT_TIMEOUT=${VMCTL_BOOT_TIMEOUT:-120}
BENCH_VMS=${VMCTL_BENCH_VMS:-200}
BENCH_RUNS=${VMCTL_BENCH_RUNS:-3}
GUEST_EXTRA=${E2E_GUEST_EXTRA-quiet}
SHELL_CMDLINE="console=ttyS0 $GUEST_EXTRA l2test=shell"
OFF_CMDLINE="console=ttyS0 $GUEST_EXTRA l2test=poweroff"

if [ $# -gt 0 ]; then
    SELECTED="$*"
elif [ -n "${VMCTL_ONLY:-}" ]; then
    SELECTED=$(echo "$VMCTL_ONLY" | tr ',' ' ')
else
    SELECTED=$VMCTL_SCENARIOS
fi
case " $SELECTED " in
*" define "*) ;;
*) SELECTED="define $SELECTED" ;;
esac

# Unix socket paths are limited to 108 bytes: keep the state directories short.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vmctl-e2e.XXXXXX") || exit 1
S=$WORK/s
B=$WORK/b
TOKEN=t$$
DPID=
BPID=
PASSED=0
FAILED=0

for bin in "$VMM" "$VMCTLD" "$VMCTL"; do
    if [ ! -x "$bin" ]; then
        echo "vmctl-scenarios: $bin is missing or not executable"
        for s in $SELECTED; do echo "E2E-RESULT $s FAIL $bin missing"; done
        exit 1
    fi
done

# ---- helpers ---------------------------------------------------------------------------
now_cs() { # NOW = /proc/uptime in centiseconds
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

vc() { "$VMCTL" --state-dir "$S" "$@"; }

# wait_for FILE TEXT SECONDS: until FILE contains TEXT (fixed string); polls every 0.5 s.
wait_for() {
    _n=0
    while ! grep -qF -- "$2" "$1" 2>/dev/null; do
        [ $_n -ge $(($3 * 2)) ] && return 1
        sleep 0.5
        _n=$((_n + 1))
    done
}

# state_of NAME: "running PID", "shut off", "crashed"... from `vmctl list` ("" if absent).
state_of() {
    vc list 2>/dev/null | awk -v n="$1" '$1 == n { print $2, $3 }'
}
pid_of() { vc list 2>/dev/null | awk -v n="$1" '$1 == n && $2 == "running" { print $3 }'; }

alive() { # PID: running and not a zombie
    [ -r "/proc/$1/stat" ] || return 1
    read -r _p _comm _state _rest <"/proc/$1/stat" 2>/dev/null || return 1
    [ "$_state" != Z ]
}

# start_daemon DIR LOG: vmctld on DIR in the background (pid in $LAST_DAEMON); waits until it
# answers `vmctl list` (at most 30 s).
start_daemon() {
    mkdir -p "$1"
    "$VMCTLD" --state-dir "$1" --log info </dev/null >>"$2" 2>&1 &
    LAST_DAEMON=$!
    _n=0
    while ! "$VMCTL" --state-dir "$1" list >/dev/null 2>&1; do
        if [ $_n -ge 300 ] || ! alive "$LAST_DAEMON"; then
            echo "vmctld did not come up on $1; its log:"
            tail -n 20 "$2" | sed 's/^/    | /'
            return 1
        fi
        sleep 0.1
        _n=$((_n + 1))
    done
}

stop_daemon() { # PID: SIGTERM and reap
    [ -n "$1" ] || return 0
    kill -TERM "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

# Console sessions: `vmctl console NAME` with stdin from a FIFO this shell holds open on fd 7,
# output in $CON_OUT. con_close sends Ctrl-] (detach) and returns vmctl's exit status.
con_open() { # NAME TAG
    CON_OUT=$WORK/$2.con
    CON_ERR=$WORK/$2.conerr
    rm -f "$WORK/$2.fifo"
    mkfifo "$WORK/$2.fifo" || return 1
    exec 7<>"$WORK/$2.fifo"
    timeout 300 "$VMCTL" --state-dir "$S" console "$1" <"$WORK/$2.fifo" >"$CON_OUT" 2>"$CON_ERR" 7>&- &
    CON_PID=$!
}
con_send() { printf '%s\n' "$1" >&7; }
con_close() {
    printf '\035' >&7
    wait "$CON_PID"
    _rc=$?
    exec 7>&-
    return $_rc
}

# running_shell NAME SCENARIO: NAME runs (booted to its shell now if it was not running);
# otherwise SCENARIO fails with the reason and the diagnostics.
running_shell() {
    case $(state_of "$1") in
    running*) return 0 ;;
    esac
    boot_shell "$1" && return 0
    result "$2" FAIL "$WHY"
    diag "$1"
    return 1
}

# boot_shell NAME: start NAME (fresh console log) and wait for its shell banner.
boot_shell() {
    rm -f "$S/logs/$1.log" "$S/logs/$1.log.1"
    vc start "$1" >"$WORK/start-$1.out" 2>&1 || {
        WHY="vmctl start $1 failed: $(tr '\n' ' ' <"$WORK/start-$1.out")"
        return 1
    }
    wait_for "$S/logs/$1.log" "L2-SHELL: type" "$BOOT_TIMEOUT" || {
        WHY="$1 did not reach its shell within ${BOOT_TIMEOUT}s"
        return 1
    }
}

diag() { # VM names: what the daemon, the vmm and the console said
    echo "---- vmctld log (tail) ----"
    tail -n 25 "$WORK/vmctld.log" 2>/dev/null | sed 's/^/    | /'
    for _vm in "$@"; do
        echo "---- $_vm: vmm log (tail) ----"
        tail -n 15 "$S/logs/$_vm.vmm.log" 2>/dev/null | sed 's/^/    | /'
        echo "---- $_vm: console log (tail) ----"
        tail -n 15 "$S/logs/$_vm.log" 2>/dev/null | tr -d '\r' | sed 's/^/    | /'
    done
}

result() { # NAME PASS|FAIL REASON
    echo "E2E-RESULT $1 $2 $3"
    if [ "$2" = PASS ]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
}

# jail_report NAME: how vmctld confined NAME's running vmm, in $JAIL (empty and $WHY set if
# it is not jailed): its uid, pid 1 of its own pid namespace, no capabilities, no_new_privs,
# its cgroup's memory.max and pids.max, and the descriptors it was handed.
jail_report() {
    JAIL=
    _pid=$(pid_of "$1")
    [ -n "$_pid" ] || { WHY="$1 has no pid"; return 1; }
    _st=/proc/$_pid/status
    _uid=$(awk '/^Uid:/ { print $2 }' "$_st")
    _nspid=$(awk '/^NSpid:/ { print $NF }' "$_st")
    _cap=$(awk '/^CapEff:/ { print $2 }' "$_st")
    _nnp=$(awk '/^NoNewPrivs:/ { print $2 }' "$_st")
    _sec=$(awk '/^Seccomp:/ { print $2 }' "$_st")
    if [ "${_uid:-0}" -lt 2000000000 ] || [ "$_nspid" != 1 ] || [ "$_cap" != 0000000000000000 ] ||
        [ "$_nnp" != 1 ] || [ "$_sec" != 2 ]; then
        WHY="$1's vmm is not jailed: uid $_uid, pid $_nspid in its namespace, CapEff $_cap, NoNewPrivs $_nnp, Seccomp $_sec"
        return 1
    fi
    _cg=$(sed -n 's/^0:://p' /proc/"$_pid"/cgroup)
    _mem=$(cat /sys/fs/cgroup"$_cg"/memory.max 2>/dev/null)
    _pids=$(cat /sys/fs/cgroup"$_cg"/pids.max 2>/dev/null)
    case $_cg in
    /rvmm/"$1") ;;
    *) WHY="$1's vmm is in cgroup '$_cg', not /rvmm/$1"; return 1 ;;
    esac
    _fds=$(for f in /proc/"$_pid"/fd/3 /proc/"$_pid"/fd/4; do readlink "$f" 2>/dev/null; done | tr '\n' ' ')
    JAIL="uid $_uid, pid 1 of its namespace, no capabilities, seccomp filter, cgroup $_cg memory.max $_mem pids.max $_pids, handed ${_fds:-nothing}"
}

# ---- definitions -----------------------------------------------------------------------
write_defs() {
    cat >"$WORK/x1.xml" <<EOF
<domain type='kvm'>
  <name>x1</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>$KERNEL</kernel>
    <initrd>$INITRD</initrd>
    <cmdline>$SHELL_CMDLINE</cmdline>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='pty'/>
    <console type='pty'/>
  </devices>
</domain>
EOF
    cat >"$WORK/j1.json" <<EOF
{
  "name": "j1",
  "memory_mib": 256,
  "vcpus": 1,
  "os": { "machine": "direct", "kernel": "$KERNEL", "initrd": "$INITRD",
          "cmdline": "$SHELL_CMDLINE" }
}
EOF
}

# ---- scenarios -------------------------------------------------------------------------
sc_define() {
    write_defs
    vc define "$WORK/x1.xml" >"$WORK/d.out" 2>&1 || {
        result define FAIL "define from XML: $(tr '\n' ' ' <"$WORK/d.out")"
        return
    }
    vc define "$WORK/j1.json" >"$WORK/d.out" 2>&1 || {
        result define FAIL "define from JSON: $(tr '\n' ' ' <"$WORK/d.out")"
        return
    }
    vc list >"$WORK/list.out" 2>&1
    cat "$WORK/list.out"
    for vm in x1 j1; do
        if [ "$(state_of $vm)" != "shut off" ]; then
            result define FAIL "vmctl list does not show $vm shut off"
            return
        fi
    done
    for vm in x1 j1; do
        vc dumpjson $vm >"$WORK/$vm.a.json" 2>&1 &&
            vc dumpxml $vm >"$WORK/$vm.dump.xml" 2>&1 &&
            vc undefine $vm >/dev/null 2>&1 &&
            [ -z "$(state_of $vm)" ] &&
            vc define "$WORK/$vm.dump.xml" >/dev/null 2>"$WORK/d.err" &&
            vc dumpjson $vm >"$WORK/$vm.b.json" 2>&1 || {
            result define FAIL "$vm: dumpxml/undefine/define failed: $(tr '\n' ' ' <"$WORK/d.err")"
            return
        }
        if ! cmp -s "$WORK/$vm.a.json" "$WORK/$vm.b.json"; then
            echo "---- $vm before:"
            cat "$WORK/$vm.a.json"
            echo "---- $vm after the XML round trip:"
            cat "$WORK/$vm.b.json"
            result define FAIL "$vm changed in the XML round trip"
            return
        fi
    done
    echo "---- x1 as dumped:"
    cat "$WORK/x1.dump.xml"
    result define PASS "XML and JSON definitions listed; dumpxml/undefine/define round trip identical"
}

sc_console() {
    if ! boot_shell x1; then
        result console FAIL "$WHY"
        diag x1
        return
    fi
    con_open x1 con1 || {
        result console FAIL "mkfifo failed"
        return
    }
    if ! wait_for "$CON_OUT" "L2-SHELL: type" 30; then
        con_close
        result console FAIL "vmctl console showed no shell banner (replay)"
        diag x1
        return
    fi
    # The echoed command line holds "$((20+3))"; only the shell's output holds "23".
    con_send 'echo hello-$((20+3))-'"$TOKEN"
    if ! wait_for "$CON_OUT" "hello-23-$TOKEN" 30; then
        con_close
        result console FAIL "no command output through vmctl console"
        echo "---- console:"
        tr -d '\r' <"$CON_OUT" | tail -n 10
        diag x1
        return
    fi
    con_close
    rc=$?
    tr -d '\r\033' <"$CON_OUT" | tail -n 4 | sed 's/^/    console| /'
    echo
    if [ $rc -ne 0 ]; then
        result console FAIL "vmctl console exited $rc after Ctrl-] ($(tr '\r\n' '  ' <"$CON_ERR"))"
        return
    fi
    if ! jail_report x1; then
        result console FAIL "$WHY"
        return
    fi
    result console PASS "shell banner and command output seen; Ctrl-] detached with status 0; jailed: $JAIL"
}

sc_suspend() {
    running_shell x1 suspend || return
    con_open x1 con2 || {
        result suspend FAIL "mkfifo failed"
        return
    }
    wait_for "$CON_OUT" "L2-SHELL: type" 30
    if ! vc suspend x1 >"$WORK/susp.out" 2>&1; then
        con_close
        result suspend FAIL "vmctl suspend failed: $(tr '\n' ' ' <"$WORK/susp.out")"
        return
    fi
    st=$(state_of x1)
    con_send 'echo resumed-$((40+2))-'"$TOKEN"
    sleep 5
    if grep -qF "resumed-42-$TOKEN" "$CON_OUT"; then
        con_close
        result suspend FAIL "the paused guest ran the command (state '$st')"
        return
    fi
    case $st in
    paused*) ;;
    *)
        con_close
        result suspend FAIL "vmctl list says '$st' after suspend, not paused"
        return
        ;;
    esac
    if ! vc resume x1 >"$WORK/res.out" 2>&1; then
        con_close
        result suspend FAIL "vmctl resume failed: $(tr '\n' ' ' <"$WORK/res.out")"
        return
    fi
    st=$(state_of x1)
    if ! wait_for "$CON_OUT" "resumed-42-$TOKEN" 30; then
        con_close
        result suspend FAIL "no output within 30 s of resume (state '$st')"
        diag x1
        return
    fi
    con_close
    case $st in
    running*) result suspend PASS "paused: no output for 5 s; resumed: the command's output came, listed running" ;;
    *) result suspend FAIL "vmctl list says '$st' after resume" ;;
    esac
}

# The managed network's tools (iproute2 ip, nft, dnsmasq) may sit in /usr/bin or /usr/sbin,
# ahead of busybox's ip in an L1 test host.
PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export PATH

sc_net() {
    for tool in nft dnsmasq; do
        command -v $tool >/dev/null || {
            result net FAIL "$tool is not installed here"
            return
        }
    done
    # dnsmasq looks its user and group up.
    grep -q '^root:' /etc/passwd 2>/dev/null || echo 'root:x:0:0:root:/root:/bin/sh' >>/etc/passwd
    grep -q '^root:' /etc/group 2>/dev/null || echo 'root:x:0:' >>/etc/group
    grep -q '^dip:' /etc/group 2>/dev/null || echo 'dip:x:30:' >>/etc/group
    mac=52:54:00:77:00:10 mac2=52:54:00:77:00:11
    cat >"$WORK/net.json" <<EOF
{"name": "e2enet", "bridge": "vmbr77", "ipv4": "10.77.0.1/24",
 "dhcp": {"start": "10.77.0.100", "end": "10.77.0.150"},
 "hosts": [{"mac": "$mac", "ip": "10.77.0.10", "name": "xnet"}],
 "forwards": [{"proto": "tcp", "host_port": 18080, "vm": "xnet", "guest_port": 8080}]}
EOF
    # xnet: virtio-net (the model vmctl defaults to), VNC; xe1k: an e1000, no VNC.
    sed -e 's|<name>x1</name>|<name>xnet</name>|' -e 's|l2test=shell|l2test=net|' \
        -e "s|<console type='pty'/>|<console type='pty'/><interface type='network'><source network='e2enet'/><model type='virtio'/><mac address='$mac'/></interface><graphics type='vnc'/>|" \
        "$WORK/x1.xml" >"$WORK/xnet.xml"
    sed -e 's|<name>x1</name>|<name>xe1k</name>|' -e 's|l2test=shell|l2test=net|' \
        -e "s|<console type='pty'/>|<console type='pty'/><interface type='network'><source network='e2enet'/><model type='e1000'/><mac address='$mac2'/></interface>|" \
        "$WORK/x1.xml" >"$WORK/xe1k.xml"
    why=
    # The VM first: the port forward names it (its MAC's fixed address), resolved at net start.
    vc net define "$WORK/net.json" >"$WORK/n.out" 2>&1 || why="net define: $(tr '\n' ' ' <"$WORK/n.out")"
    [ -z "$why" ] && { vc define "$WORK/xnet.xml" >"$WORK/n.out" 2>&1 || why="define xnet: $(tr '\n' ' ' <"$WORK/n.out")"; }
    [ -z "$why" ] && { vc define "$WORK/xe1k.xml" >"$WORK/n.out" 2>&1 || why="define xe1k: $(tr '\n' ' ' <"$WORK/n.out")"; }
    [ -z "$why" ] && { vc net start e2enet >"$WORK/n.out" 2>&1 || why="net start: $(tr '\n' ' ' <"$WORK/n.out")"; }
    if [ -z "$why" ]; then
        [ -e /sys/class/net/vmbr77/bridge ] || why="no bridge vmbr77"
        nft list table ip vmctl-e2enet >/dev/null 2>&1 || why="${why:+$why; }no nft table vmctl-e2enet"
    fi
    if [ -n "$why" ]; then
        result net FAIL "$why"
        diag
        return
    fi
    now_cs
    t0=$NOW
    rm -f "$S/logs/xnet.log" "$S/logs/xe1k.log"
    if ! vc start xnet >"$WORK/n.out" 2>&1; then
        result net FAIL "start xnet: $(tr '\n' ' ' <"$WORK/n.out")"
        diag xnet
        vc net stop e2enet >/dev/null 2>&1
        return
    fi
    if wait_for "$S/logs/xnet.log" "L2-NET " "$BOOT_TIMEOUT"; then
        now_cs
        secs $((NOW - t0))
        echo "E2E-TIME vmctl-net start_to_dhcp_lease_s=$SECS"
        got=$(tr -d '\r' <"$S/logs/xnet.log" | grep -o 'L2-NET .*' | head -n 1)
        echo "    console| $got"
        case $got in
        *"addr=10.77.0.10/24 gw=10.77.0.1 drv=virtio_net"*) ;;
        *) why="the guest's address is not 10.77.0.10/24 via 10.77.0.1 on virtio_net: $got" ;;
        esac
    else
        why="no L2-NET line on the virtio VM's console: $(tr -d '\r' <"$S/logs/xnet.log" | grep -o 'L2-NET-FAIL.*' | head -n 1)"
    fi
    # The e1000 VM boots while xnet is checked; it gets an address from the range.
    now_cs
    t1=$NOW
    vc start xe1k >"$WORK/n2.out" 2>&1 || why="${why:+$why; }start xe1k: $(tr '\n' ' ' <"$WORK/n2.out")"
    # shellcheck disable=SC2012 # interface names are plain
    tap=$(ls /sys/class/net/vmbr77/brif 2>/dev/null | tr '\n' ' ')
    tap=${tap% }
    if [ -z "$why" ]; then
        # The VNC server of the definition's <graphics type='vnc'/> (no passwd): a unix socket
        # in the VM's run directory, no TCP port; domdisplay names the socket, and vmctl vnc
        # forwards a local port (the first free one from 5900) to it through vmctld.
        disp=$(vc domdisplay xnet 2>/dev/null)
        tcp_before=$(sleep 1 | timeout 3 nc 127.0.0.1 5900 2>/dev/null | head -c 12)
        # Not through vc (a function): $! must be vmctl itself.
        "$VMCTL" --state-dir "$S" vnc xnet >"$WORK/vnc.out" 2>"$WORK/vnc.err" &
        vncpid=$!
        port=
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            port=$(sed -n 's|^vnc://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$WORK/vnc.out")
            [ -n "$port" ] && break
            sleep 0.5
        done
        rfb=
        [ -n "$port" ] && rfb=$(sleep 2 | timeout 5 nc 127.0.0.1 "$port" 2>/dev/null | head -c 12)
        kill "$vncpid" 2>/dev/null
        wait "$vncpid" 2>/dev/null
        echo "    domdisplay| $disp; 5900 before vmctl vnc: '$tcp_before'; vmctl vnc port $port says: $rfb"
        case $disp in
        vnc+unix://*/vnc.sock) ;;
        *) why="vmctl domdisplay xnet gave '$disp', not vnc+unix://.../vnc.sock" ;;
        esac
        [ -z "$tcp_before" ] || why="${why:+$why; }a VM without a VNC password listens on TCP 5900 ('$tcp_before')"
        [ "$rfb" = "RFB 003.008" ] ||
            why="${why:+$why; }vmctl vnc xnet (port '$port') greeted with '$rfb', not RFB 003.008: $(tr '\n' ' ' <"$WORK/vnc.err")"
    fi
    if [ -z "$why" ]; then
        # Not wget -T: busybox 1.35's wget segfaults with it.
        direct=$(timeout 15 wget -q -O - http://10.77.0.10:8080/ 2>&1)
        fwd=$(timeout 15 wget -q -O - http://10.77.0.1:18080/ 2>&1)
        echo "    http direct| $direct"
        echo "    http forward| $fwd"
        [ "$direct" = "hello-from-l2 $mac" ] || why="HTTP to 10.77.0.10:8080 gave '$direct'"
        [ "$fwd" = "hello-from-l2 $mac" ] || why="${why:+$why; }HTTP to the forwarded port 10.77.0.1:18080 gave '$fwd'"
    fi
    addr2=
    if [ -z "$why" ]; then
        if wait_for "$S/logs/xe1k.log" "L2-NET " "$BOOT_TIMEOUT"; then
            now_cs
            secs $((NOW - t1))
            echo "E2E-TIME vmctl-net e1000_start_to_dhcp_lease_s=$SECS"
            got2=$(tr -d '\r' <"$S/logs/xe1k.log" | grep -o 'L2-NET .*' | head -n 1)
            echo "    console xe1k| $got2"
            case $got2 in
            *"addr=10.77.0.1"[0-5][0-9]"/24 gw=10.77.0.1 drv=e1000"*)
                addr2=${got2#*addr=}
                addr2=${addr2%%/*}
                ;;
            *) why="the e1000 guest's address is not in 10.77.0.100-150/24 via 10.77.0.1 on e1000: $got2" ;;
            esac
        else
            why="no L2-NET line on the e1000 VM's console: $(tr -d '\r' <"$S/logs/xe1k.log" | grep -o 'L2-NET-FAIL.*' | head -n 1)"
        fi
    fi
    if [ -z "$why" ]; then
        e1k=$(timeout 15 wget -q -O - "http://$addr2:8080/" 2>&1)
        echo "    http e1000| $e1k"
        [ "$e1k" = "hello-from-l2 $mac2" ] || why="HTTP to the e1000 guest $addr2:8080 gave '$e1k'"
        vc net leases e2enet >"$WORK/n.leases" 2>&1
        grep -q "10.77.0.10 " "$WORK/n.leases" || why="${why:+$why; }vmctl net leases lacks 10.77.0.10: $(tr '\n' ' ' <"$WORK/n.leases")"
        grep -q "$addr2 " "$WORK/n.leases" || why="${why:+$why; }vmctl net leases lacks the e1000 guest's $addr2: $(tr '\n' ' ' <"$WORK/n.leases")"
        sed 's/^/    leases| /' "$WORK/n.leases"
    fi
    # shellcheck disable=SC2086 # a word list
    set -- $tap
    [ $# = 2 ] || why="${why:+$why; }not two taps on vmbr77 while xnet and xe1k ran: '$tap'"
    vc destroy xnet >/dev/null 2>&1
    vc destroy xe1k >/dev/null 2>&1
    sleep 1
    for t in $tap; do
        [ -e "/sys/class/net/$t" ] && why="${why:+$why; }tap $t still exists after destroy"
    done
    vc net stop e2enet >"$WORK/n.out" 2>&1 || why="${why:+$why; }net stop: $(tr '\n' ' ' <"$WORK/n.out")"
    [ -e /sys/class/net/vmbr77 ] && why="${why:+$why; }bridge vmbr77 left after net stop"
    nft list table ip vmctl-e2enet >/dev/null 2>&1 && why="${why:+$why; }nft table left after net stop"
    if [ -n "$why" ]; then
        result net FAIL "$why"
        diag xnet xe1k
        return
    fi
    result net PASS "DHCP lease 10.77.0.10 for the virtio-net NIC (virtio_net; console and leases), HTTP direct and through tcp 18080 -> 8080, VNC on a unix socket reached through vmctl vnc; an e1000 VM leased $addr2 and served its page; taps ($tap) removed on destroy, nothing left after net stop"
}

# The Debian image with a virtio disk and NIC on a managed NAT network (see the header).
sc_debian_nat() {
    why=
    [ -n "${DEBIAN_DISK:-}" ] && [ -e "$DEBIAN_DISK" ] || why="no Debian image (DEBIAN_DISK=${DEBIAN_DISK:-unset})"
    for tool in qemu-img nft dnsmasq; do
        [ -z "$why" ] && ! command -v $tool >/dev/null && why="$tool is not installed here"
    done
    if [ -n "$why" ]; then
        result debian-nat FAIL "$why"
        return
    fi
    grep -q '^root:' /etc/passwd 2>/dev/null || echo 'root:x:0:0:root:/root:/bin/sh' >>/etc/passwd
    grep -q '^root:' /etc/group 2>/dev/null || echo 'root:x:0:' >>/etc/group
    grep -q '^dip:' /etc/group 2>/dev/null || echo 'dip:x:30:' >>/etc/group
    mac=52:54:00:78:00:20
    # The overlay is a volume of the default pool (disks come from pools), and so is its
    # backing file: vmctld follows the chain and hands the vmm both as descriptors. The image
    # is L1's block device /dev/vda, which the administrator (this script) puts into the pool
    # as a device node, as one would an LVM volume.
    rm -f "$S/images/deb1.qcow2" "$S/images/debian12.raw"
    base=$DEBIAN_DISK
    if [ -b "$DEBIAN_DISK" ]; then
        base=$S/images/debian12.raw
        # shellcheck disable=SC2046 # major and minor in hex, two words
        set -- $(stat -c '%t %T' "$DEBIAN_DISK")
        mknod "$base" b $((0x$1)) $((0x$2)) || why="mknod $base for $DEBIAN_DISK failed"
    elif [ -f "$DEBIAN_DISK" ]; then
        base=$S/images/debian12.raw
        ln "$DEBIAN_DISK" "$base" 2>/dev/null || cp --sparse=always "$DEBIAN_DISK" "$base" || why="cannot put $DEBIAN_DISK into the pool"
    fi
    qemu-img create -q -f qcow2 -b "$base" -F raw "$S/images/deb1.qcow2" >"$WORK/d.out" 2>&1 ||
        why="qemu-img create: $(tr '\n' ' ' <"$WORK/d.out")"
    cat >"$WORK/debnet.json" <<EOF
{"name": "e2edeb", "bridge": "vmbr78", "ipv4": "10.78.0.1/24",
 "dhcp": {"start": "10.78.0.100", "end": "10.78.0.150"},
 "hosts": [{"mac": "$mac", "ip": "10.78.0.20", "name": "deb1"}]}
EOF
    # The definition as virt-install and `virsh dumpxml` write one for an i440FX guest,
    # bookkeeping and all: it must define as written, what is not kept coming back as warnings.
    cat >"$WORK/deb1.xml" <<EOF
<domain type='kvm'>
  <name>deb1</name>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory unit='KiB'>524288</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <resource>
    <partition>/machine</partition>
  </resource>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <vmport state='off'/>
  </features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <pm>
    <suspend-to-mem enabled='no'/>
    <suspend-to-disk enabled='no'/>
  </pm>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='$S/images/deb1.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <controller type='usb' index='0' model='piix3-uhci'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>
    </controller>
    <controller type='pci' index='0' model='pci-root'/>
    <controller type='ide' index='0'/>
    <controller type='virtio-serial' index='0'/>
    <interface type='network'>
      <mac address='$mac'/>
      <source network='e2edeb'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>
    <serial type='pty'>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <input type='tablet' bus='usb'/>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <memballoon model='virtio'/>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'/>
</domain>
EOF
    [ -z "$why" ] && { vc net define "$WORK/debnet.json" >"$WORK/d.out" 2>&1 || why="net define: $(tr '\n' ' ' <"$WORK/d.out")"; }
    [ -z "$why" ] && { vc define "$WORK/deb1.xml" >"$WORK/d.out" 2>&1 || why="define deb1: $(tr '\n' ' ' <"$WORK/d.out")"; }
    nwarn=$(grep -c '^warning: line' "$WORK/d.out")
    [ -z "$why" ] && [ "$nwarn" -lt 8 ] &&
        why="define deb1: libvirt's bookkeeping should come back as warnings, got $nwarn: $(tr '\n' ' ' <"$WORK/d.out")"
    [ -z "$why" ] && { vc net start e2edeb >"$WORK/d.out" 2>&1 || why="net start: $(tr '\n' ' ' <"$WORK/d.out")"; }
    rm -f "$S/logs/deb1.log"
    now_cs
    t0=$NOW
    [ -z "$why" ] && { vc start deb1 >"$WORK/d.out" 2>&1 || why="start deb1: $(tr '\n' ' ' <"$WORK/d.out")"; }
    if [ -z "$why" ] && ! wait_for "$S/logs/deb1.log" "vmm-guest login:" "${VMCTL_DEBIAN_TIMEOUT:-600}"; then
        why="no login prompt on deb1's console within ${VMCTL_DEBIAN_TIMEOUT:-600}s"
    fi
    if [ -z "$why" ]; then
        now_cs
        secs $((NOW - t0))
        echo "E2E-TIME vmctl-debian-nat start_to_login_prompt_s=$SECS"
        con_open deb1 deb1
        sleep 1
        con_send root
        wait_for "$CON_OUT" "Password:" 60 || why="no password prompt"
        sleep 1
        [ -z "$why" ] && con_send root
        [ -z "$why" ] && { wait_for "$CON_OUT" "root@vmm-guest:~#" 60 || why="no shell prompt after login"; }
        if [ -z "$why" ]; then
            # The NIC by its MAC; dhclient leaves when it has a lease (or fails after its timeout).
            con_send 'n=$(grep -l '"$mac"' /sys/class/net/*/address | cut -d/ -f5); timeout 120 dhclient -1 $n; echo DEB""NET if=$n drv=$(basename $(readlink /sys/class/net/$n/device/driver)) addr=$(ip -4 -o addr show dev $n | awk "{print \$4}") root=$(findmnt -no SOURCE /) rootdrv=$(basename $(readlink -f /sys/block/vda/device/driver)) end'
            if wait_for "$CON_OUT" "DEBNET if=" 180; then
                got=$(tr -d '\r' <"$CON_OUT" | grep -ao 'DEBNET if=.* end' | tail -n 1)
                echo "    console| $got"
                case $got in
                *" drv=virtio_net addr=10.78.0.20/24 root=/dev/vda1 rootdrv=virtio_blk end") ;;
                *) why="expected 10.78.0.20/24 on virtio_net and / on /dev/vda1 (virtio_blk): $got" ;;
                esac
            else
                why="no DEBNET answer from the guest"
            fi
        fi
        if [ -z "$why" ]; then
            con_send 'ping -c 2 -W 2 10.78.0.1 >/dev/null 2>&1; echo DEB""PING rc=$? end'
            wait_for "$CON_OUT" "DEBPING rc=" 30 || why="no DEBPING answer"
            [ -z "$why" ] && ! grep -aq "DEBPING rc=0 end" "$CON_OUT" && why="the guest cannot ping the bridge 10.78.0.1"
        fi
        if [ -z "$why" ]; then
            # Disk I/O past the page cache (O_DIRECT both ways, then a flush), then the counters.
            vc domstats deb1 >"$WORK/d.stats0" 2>&1
            con_send 'dd if=/dev/urandom of=/root/st.bin bs=1M count=8 oflag=direct conv=fsync 2>/dev/null && dd if=/root/st.bin of=/dev/null bs=1M iflag=direct 2>/dev/null; echo DEB""IO rc=$? end'
            wait_for "$CON_OUT" "DEBIO rc=" 120 || why="no DEBIO answer"
            [ -z "$why" ] && ! grep -aq "DEBIO rc=0 end" "$CON_OUT" && why="dd in the guest failed"
        fi
        if [ -z "$why" ]; then
            vc domstats deb1 >"$WORK/d.stats" 2>&1 || why="domstats: $(tr '\n' ' ' <"$WORK/d.stats")"
            sed 's/^/    domstats| /' "$WORK/d.stats"
            stv() { sed -n "s/^  $1=//p" "$2" | head -n 1; }
            rd0=$(stv block.0.rd.bytes "$WORK/d.stats0")
            wr0=$(stv block.0.wr.bytes "$WORK/d.stats0")
            rd=$(stv block.0.rd.bytes "$WORK/d.stats")
            wr=$(stv block.0.wr.bytes "$WORK/d.stats")
            fl=$(stv block.0.fl.reqs "$WORK/d.stats")
            cpu=$(stv cpu.time "$WORK/d.stats")
            vcpu=$(stv vcpu.0.time "$WORK/d.stats")
            rss=$(stv balloon.rss "$WORK/d.stats")
            [ -z "$why" ] && [ "$(stv block.0.name "$WORK/d.stats")" != vda ] && why="domstats: block.0 is not vda"
            [ -z "$why" ] && [ "${rd:-0}" -le 0 ] && why="domstats: block.0.rd.bytes=${rd:-none} after the guest read its disk"
            [ -z "$why" ] && [ $((${wr:-0} - ${wr0:-0})) -lt 8388608 ] &&
                why="domstats: block.0.wr.bytes grew by $((${wr:-0} - ${wr0:-0})), not the 8 MiB the guest wrote"
            [ -z "$why" ] && [ $((${rd:-0} - ${rd0:-0})) -lt 8388608 ] &&
                why="domstats: block.0.rd.bytes grew by $((${rd:-0} - ${rd0:-0})), not the 8 MiB the guest read"
            [ -z "$why" ] && [ "${fl:-0}" -le 0 ] && why="domstats: block.0.fl.reqs=${fl:-none} after conv=fsync"
            [ -z "$why" ] && [ "${cpu:-0}" -le 0 ] && why="domstats: cpu.time=${cpu:-none}"
            [ -z "$why" ] && [ "${vcpu:-0}" -le 0 ] && why="domstats: vcpu.0.time=${vcpu:-none}"
            [ -z "$why" ] && [ "${rss:-0}" -le 0 ] && why="domstats: balloon.rss=${rss:-none}"
            vc dominfo deb1 >"$WORK/d.info" 2>&1
            [ -z "$why" ] && ! grep -q '^CPU time: ' "$WORK/d.info" && why="dominfo has no CPU time row"
            # The sampler's rates (a round every 10 s): wait for the first.
            _n=0
            while [ -z "$why" ] && ! vc --json domstats deb1 | grep -q '"rates"'; do
                [ $_n -ge 25 ] && { why="no sampled rates in domstats --json after 25 s"; break; }
                sleep 1
                _n=$((_n + 1))
            done
            echo "E2E-TIME vmctl-debian-nat domstats rd_bytes=$rd wr_bytes=$wr fl_reqs=$fl cpu_time_ns=$cpu rss_kib=$rss"
        fi
        con_close
        if [ -z "$why" ]; then
            vc net leases e2edeb >"$WORK/d.leases" 2>&1
            sed 's/^/    leases| /' "$WORK/d.leases"
            grep -q "10.78.0.20 " "$WORK/d.leases" || why="vmctl net leases lacks 10.78.0.20"
        fi
    fi
    if [ -z "$why" ]; then
        vc shutdown deb1 >"$WORK/d.out" 2>&1 || why="shutdown: $(tr '\n' ' ' <"$WORK/d.out")"
        _n=0
        while [ -z "$why" ] && [ "$(state_of deb1)" != "shut off" ]; do
            [ $_n -ge 240 ] && { why="deb1 not shut off 120 s after vmctl shutdown: $(state_of deb1)"; break; }
            sleep 0.5
            _n=$((_n + 1))
        done
    fi
    [ -n "$why" ] && diag deb1
    vc destroy deb1 >/dev/null 2>&1
    vc net stop e2edeb >/dev/null 2>&1
    if [ -n "$why" ]; then
        result debian-nat FAIL "$why"
        return
    fi
    result debian-nat PASS "defined from virsh-style XML as written ($nwarn warnings), Debian through SeaBIOS from virtio-blk (qcow2 overlay; / on /dev/vda1, virtio_blk), eth0 on virtio-net leased 10.78.0.20 from the vmctl NAT network (dhclient; in vmctl net leases), pinged the bridge; domstats counted 8 MiB written and read on vda (rd.bytes=$rd wr.bytes=$wr), cpu.time and rss; vmctl shutdown powered it off"
}

sc_shutdown() {
    running_shell x1 shutdown || return
    pid=$(pid_of x1)
    now_cs
    t0=$NOW
    vc shutdown x1 --timeout 60 >"$WORK/sd.out" 2>&1
    rc=$?
    now_cs
    secs $((NOW - t0))
    echo "E2E-TIME vmctl-shutdown s=$SECS"
    st=$(state_of x1)
    code=$(sed -n 's/.*"code":[ ]*\([0-9-]*\).*/\1/p' "$S/run/vm/x1/exit.json" 2>/dev/null)
    if [ $rc -ne 0 ]; then
        result shutdown FAIL "vmctl shutdown exited $rc: $(tr '\n' ' ' <"$WORK/sd.out")"
        diag x1
    elif [ "$st" != "shut off" ]; then
        result shutdown FAIL "state after shutdown: '$st'"
        diag x1
    elif [ "$code" != 0 ]; then
        result shutdown FAIL "vmm exit status '$code' (0 is a guest power-off): $(cat "$S/run/vm/x1/exit.json" 2>/dev/null)"
        diag x1
    elif [ -n "$pid" ] && alive "$pid"; then
        result shutdown FAIL "vmm pid $pid still alive"
    elif ! grep -q "L2-POWERBUTTON" "$S/logs/x1.log"; then
        result shutdown FAIL "the guest did not report the power button"
        diag x1
    else
        result shutdown PASS "power button -> guest powered off in ${SECS}s, vmm exit 0, state shut off"
    fi
}

sc_daemon_restart() {
    for vm in x1 j1; do
        case $(state_of $vm) in running*) vc destroy $vm >/dev/null 2>&1 ;; esac
    done
    if ! boot_shell x1 || ! boot_shell j1; then
        result daemon-restart FAIL "$WHY"
        diag x1 j1
        return
    fi
    con_open x1 pre || {
        result daemon-restart FAIL "mkfifo failed"
        return
    }
    con_send 'echo before-$((40+2))-'"$TOKEN"
    wait_for "$CON_OUT" "before-42-$TOKEN" 30
    ok=$?
    con_close
    if [ $ok -ne 0 ]; then
        result daemon-restart FAIL "no command output before the restart"
        diag x1
        return
    fi
    p1=$(pid_of x1)
    p2=$(pid_of j1)
    echo "before: x1 pid $p1, j1 pid $p2, vmctld pid $DPID"
    kill -KILL "$DPID"
    wait "$DPID" 2>/dev/null
    DPID=
    for p in $p1 $p2; do
        if ! alive "$p"; then
            result daemon-restart FAIL "vmm $p died with the daemon"
            diag x1 j1
            return
        fi
    done
    if ! start_daemon "$S" "$WORK/vmctld.log"; then
        result daemon-restart FAIL "vmctld did not restart"
        return
    fi
    DPID=$LAST_DAEMON
    vc list
    q1=$(pid_of x1)
    q2=$(pid_of j1)
    if [ "$q1" != "$p1" ] || [ "$q2" != "$p2" ]; then
        result daemon-restart FAIL "after the restart: x1 '$(state_of x1)' (was pid $p1), j1 '$(state_of j1)' (was pid $p2)"
        diag x1 j1
        return
    fi
    for vm in x1 j1; do
        con_open $vm post-$vm || {
            result daemon-restart FAIL "mkfifo failed"
            return
        }
        if [ $vm = x1 ] && ! wait_for "$CON_OUT" "before-42-$TOKEN" 20; then
            con_close
            result daemon-restart FAIL "x1: the replay after the restart lacks the earlier output"
            diag x1
            return
        fi
        con_send 'echo after-$((50+5))-'"$vm-$TOKEN"
        if ! wait_for "$CON_OUT" "after-55-$vm-$TOKEN" 30; then
            con_close
            result daemon-restart FAIL "$vm: no command output through the re-attached console"
            diag $vm
            return
        fi
        con_close || {
            result daemon-restart FAIL "$vm: vmctl console did not detach cleanly"
            return
        }
    done
    for vm in x1 j1; do
        if ! vc destroy $vm >"$WORK/ds.out" 2>&1; then
            result daemon-restart FAIL "destroy $vm: $(tr '\n' ' ' <"$WORK/ds.out")"
            diag $vm
            return
        fi
    done
    sleep 0.5
    for p in $p1 $p2; do
        if alive "$p"; then
            result daemon-restart FAIL "vmm $p still alive after destroy"
            return
        fi
    done
    if [ "$(state_of x1)" != "shut off" ] || [ "$(state_of j1)" != "shut off" ]; then
        result daemon-restart FAIL "after destroy: x1 '$(state_of x1)', j1 '$(state_of j1)'"
        return
    fi
    result daemon-restart PASS "both VMs adopted with pids $p1 $p2; replay and input work; destroyed"
}

sc_bad_input() {
    vc list >"$WORK/bi.before" 2>&1
    (cd "$S/vms" && ls -l && cat ./*) >"$WORK/bi.store.before" 2>&1
    # An unclosed tag on line 4; a missing value on line 4; an element we do not support.
    printf '%s\n' "<domain type='kvm'>" "  <name>bad</name>" "  <memory unit='MiB'>256</memory>" \
        "  <vcpu>1</vcpu" "</domain>" >"$WORK/bad1.xml"
    printf '%s\n' '{' '  "name": "badj",' '  "memory_mib": 256,' '  "vcpus": ,' '  "os": {}' '}' \
        >"$WORK/bad2.json"
    sed 's|<serial type=.pty./>|<sound model="ich9"/>|' "$WORK/x1.xml" | sed 's|<name>x1<|<name>bad3<|' \
        >"$WORK/bad3.xml"
    why=
    for f in bad1.xml bad2.json bad3.xml; do
        vc define "$WORK/$f" >"$WORK/bi.out" 2>"$WORK/bi.err"
        rc=$?
        msg=$(tr '\n' ' ' <"$WORK/bi.err")
        echo "$f: exit $rc: $msg"
        [ $rc -eq 2 ] || why="$why $f: exit $rc (want 2);"
        echo "$msg" | grep -qE 'line [0-9]+, column [0-9]+' || why="$why $f: no line and column;"
    done
    echo "$msg" | grep -q "sound" || why="$why bad3.xml: the error does not name <sound>;"
    vc list >"$WORK/bi.after" 2>&1
    (cd "$S/vms" && ls -l && cat ./*) >"$WORK/bi.store.after" 2>&1
    cmp -s "$WORK/bi.before" "$WORK/bi.after" || why="$why vmctl list changed;"
    cmp -s "$WORK/bi.store.before" "$WORK/bi.store.after" || why="$why the store changed;"
    if [ -n "$why" ]; then
        result bad-input FAIL "$why"
    else
        result bad-input PASS "3 bad inputs: exit 2, line and column given, list and store unchanged"
    fi
}

# median of the arguments (numbers like 5.23)
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# init_watch T0 OUT: stdin is a console stream; writes the seconds from T0 (uptime) to the
# first L2-INIT line into OUT.
init_watch() {
    awk -v t0="$1" -v out="$2" 'index($0, "L2-INIT") && !done {
        getline up < "/proc/uptime"; close("/proc/uptime")
        split(up, u, " ")
        printf "%.2f\n", u[1] - t0 > out; close(out)
        done = 1
    }'
}

# start_to_init DIR: `vmctl start bt` on the daemon of state directory DIR, then the guest's
# first line (L2-INIT) read through `vmctl console`, then until bt is shut off again. Sets
# CALL_S (the start call's seconds) and INIT_S (start to init, empty without one); fails,
# with vmctl's output in $WORK/bt.start, if the start does.
start_to_init() {
    INIT_S=
    CALL_S=
    rm -f "$WORK/bt.init"
    read -r t0 _rest </proc/uptime
    now_cs
    c0=$NOW
    "$VMCTL" --state-dir "$1" start bt >"$WORK/bt.start" 2>&1 || return 1
    now_cs
    secs $((NOW - c0))
    CALL_S=$SECS
    timeout 120 "$VMCTL" --state-dir "$1" console bt </dev/null 2>/dev/null | init_watch "$t0" "$WORK/bt.init"
    _n=0
    while [ "$("$VMCTL" --state-dir "$1" list 2>/dev/null | awk '$1 == "bt" { print $2, $3 }')" != "shut off" ] &&
        [ $_n -lt 100 ]; do
        sleep 0.2
        _n=$((_n + 1))
    done
    [ -s "$WORK/bt.init" ] && INIT_S=$(cat "$WORK/bt.init")
    return 0
}

sc_bench() {
    why=
    # -- vmctl list with $BENCH_VMS defined VMs, on a daemon of its own, which runs its VMs
    # without the jailer (for the start time with and without it, below).
    mkdir -p "$B"
    echo '{"jail": {"enabled": false}}' >"$B/vmctld.json"
    if ! start_daemon "$B" "$WORK/vmctld-bench.log"; then
        result bench FAIL "the bench daemon did not start"
        return
    fi
    BPID=$LAST_DAEMON
    now_cs
    t0=$NOW
    i=1
    while [ $i -le "$BENCH_VMS" ]; do
        printf '{"name":"b%03d","memory_mib":256,"vcpus":1,"os":{"machine":"direct","kernel":"%s","initrd":"%s","cmdline":"%s"}}\n' \
            $i "$B/images/vmlinuz" "$B/images/l2-initramfs.img" "$OFF_CMDLINE" >"$WORK/b.json"
        if ! "$VMCTL" --state-dir "$B" define "$WORK/b.json" >/dev/null 2>"$WORK/b.err"; then
            why="define b$i: $(cat "$WORK/b.err")"
            break
        fi
        i=$((i + 1))
    done
    now_cs
    secs $((NOW - t0))
    echo "E2E-TIME vmctl-define-$BENCH_VMS s=$SECS (one vmctl process per VM)"
    n=$("$VMCTL" --state-dir "$B" list | grep -c '^b[0-9]')
    [ "$n" = "$BENCH_VMS" ] || why="$why list shows $n VMs, not $BENCH_VMS;"
    runs=20
    now_cs
    t0=$NOW
    i=0
    while [ $i -lt $runs ]; do
        "$VMCTL" --state-dir "$B" list >/dev/null
        i=$((i + 1))
    done
    now_cs
    list_ms=$(((NOW - t0) * 10 / runs))
    echo "E2E-TIME vmctl-list-$BENCH_VMS ms=$list_ms (mean of $runs runs, process start included)"
    now_cs
    t0=$NOW
    i=0
    while [ $i -lt $runs ]; do
        "$VMCTL" --state-dir "$B" --json list >/dev/null
        i=$((i + 1))
    done
    now_cs
    echo "E2E-TIME vmctl-list-json-$BENCH_VMS ms=$(((NOW - t0) * 10 / runs)) (mean of $runs runs)"
    now_cs
    t0=$NOW
    i=0
    while [ $i -lt $runs ]; do
        "$VMCTL" --state-dir "$B" list --help >/dev/null
        i=$((i + 1))
    done
    now_cs
    echo "E2E-TIME vmctl-process-only ms=$(((NOW - t0) * 10 / runs)) (vmctl --help, no daemon call)"

    # -- vmctl start -> guest init, against the bare vmm (same kernel, initramfs, cmdline).
    cat >"$WORK/bt.json" <<EOF
{"name": "bt", "memory_mib": 256, "vcpus": 1,
 "os": {"machine": "direct", "kernel": "$KERNEL", "initrd": "$INITRD", "cmdline": "$OFF_CMDLINE"}}
EOF
    vc define "$WORK/bt.json" >/dev/null 2>&1 || why="$why define bt failed;"
    sed "s|\"kernel\": \"[^\"]*\"|\"kernel\": \"$B/images/vmlinuz\"|; s|\"initrd\": \"[^\"]*\"|\"initrd\": \"$B/images/l2-initramfs.img\"|" \
        "$WORK/bt.json" >"$WORK/bt-nojail.json"
    "$VMCTL" --state-dir "$B" define "$WORK/bt-nojail.json" >/dev/null 2>&1 || why="$why define bt (no jail) failed;"
    nojail=
    via_vmctl=
    bare=
    calls=
    r=1
    while [ $r -le "$BENCH_RUNS" ]; do
        # vmctl: the time counts from `vmctl start` to the guest's first line on the console.
        if start_to_init "$S"; then
            calls="$calls $CALL_S"
            if [ -n "$INIT_S" ]; then
                via_vmctl="$via_vmctl $INIT_S"
                echo "E2E-TIME vmctl-start-to-init run=$r s=$INIT_S"
            else
                why="$why run $r: no L2-INIT through vmctl;"
                diag bt
            fi
        else
            why="$why vmctl start bt: $(tr '\n' ' ' <"$WORK/bt.start");"
        fi
        # The same through the bench daemon, whose jailer is off.
        if start_to_init "$B"; then
            if [ -n "$INIT_S" ]; then
                nojail="$nojail $INIT_S"
                echo "E2E-TIME vmctl-nojail-start-to-init run=$r s=$INIT_S"
            else
                why="$why run $r: no L2-INIT through vmctl without the jailer;"
            fi
        else
            why="$why vmctl start bt (no jail): $(tr '\n' ' ' <"$WORK/bt.start");"
        fi
        # The bare vmm, started by hand with the console on stdout.
        rm -f "$WORK/bare.init"
        read -r t0 _rest </proc/uptime
        timeout 120 "$VMM" --kernel "$KERNEL" --initramfs "$INITRD" --cmdline "$OFF_CMDLINE" \
            --cpus 1 --memory 256M </dev/null 2>"$WORK/bare.err" | init_watch "$t0" "$WORK/bare.init"
        if [ -s "$WORK/bare.init" ]; then
            bare="$bare $(cat "$WORK/bare.init")"
            echo "E2E-TIME vmm-start-to-init run=$r s=$(cat "$WORK/bare.init")"
        else
            why="$why run $r: no L2-INIT from the bare vmm ($(tail -n 3 "$WORK/bare.err" | tr '\n' ' '));"
        fi
        r=$((r + 1))
    done
    # shellcheck disable=SC2086 # word lists
    if [ -n "$via_vmctl" ] && [ -n "$bare" ]; then
        echo "E2E-TIME start-to-init-median vmctl_s=$(median $via_vmctl) vmctl_nojail_s=$(median ${nojail:-0}) vmm_s=$(median $bare) vmctl_start_call_s=$(median $calls) runs=$BENCH_RUNS"
    fi
    stop_daemon "$BPID"
    BPID=
    if [ -n "$why" ]; then
        result bench FAIL "$why"
    else
        result bench PASS "measured (figures above)"
    fi
}

# ---- run -------------------------------------------------------------------------------
echo "vmctl-scenarios: $SELECTED (work dir $WORK)"
echo "vmctl-scenarios: vmm $VMM, vmctld $VMCTLD, vmctl $VMCTL"
# vmctld's path policy: kernels, initramfs files and disk images come from storage pools.
# The fixtures are copied into the default pool (images/) of both state directories, and the
# definitions name those copies ($KERNEL and $INITRD from here on; the bench's bare vmm
# boots the same files).
for _d in "$S" "$B"; do
    if ! mkdir -p "$_d/images" || ! cp "$KERNEL" "$_d/images/vmlinuz" ||
        ! cp "$INITRD" "$_d/images/l2-initramfs.img"; then
        for s in $SELECTED; do echo "E2E-RESULT $s FAIL cannot copy the kernel and initramfs into $_d/images"; done
        exit 1
    fi
done
KERNEL=$S/images/vmlinuz
INITRD=$S/images/l2-initramfs.img
# dnsmasq runs as nobody (vmctld passes --user=nobody and nobody's group): an L1 made from
# an initramfs has no user database, so add the two entries (a real host has them already).
grep -q '^nobody:' /etc/passwd 2>/dev/null ||
    echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >>/etc/passwd
grep -q '^[^:]*:[^:]*:65534:' /etc/group 2>/dev/null || echo 'nogroup:x:65534:' >>/etc/group
if ! start_daemon "$S" "$WORK/vmctld.log"; then
    for s in $SELECTED; do echo "E2E-RESULT $s FAIL vmctld did not start"; done
    exit 1
fi
DPID=$LAST_DAEMON
for s in $SELECTED; do
    now_cs
    t_start=$NOW
    echo "==== scenario $s"
    case $s in
    define) sc_define ;;
    console) sc_console ;;
    suspend) sc_suspend ;;
    shutdown) sc_shutdown ;;
    daemon-restart) sc_daemon_restart ;;
    net) sc_net ;;
    debian-nat) sc_debian_nat ;;
    bad-input) sc_bad_input ;;
    bench) sc_bench ;;
    *) result "$s" FAIL "unknown scenario" ;;
    esac
    now_cs
    secs $((NOW - t_start))
    echo "E2E-TIME scenario-$s total_s=$SECS"
done
# Leave nothing running: stop every VM, then the daemons.
vc list 2>/dev/null | awk '$2 == "running" || $2 == "paused" { print $1 }' | while read -r vm; do
    vc destroy "$vm" >/dev/null 2>&1
done
stop_daemon "$BPID"
stop_daemon "$DPID"
echo "vmctl-scenarios: $PASSED passed, $FAILED failed"
[ "${VMCTL_KEEP:-0}" = 1 ] || rm -rf "$WORK"
[ $FAILED -eq 0 ]
