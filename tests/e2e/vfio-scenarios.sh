#!/bin/sh
# tests/e2e/vfio-scenarios.sh - VFIO passthrough scenarios (issue 13), POSIX sh.
#
# Runs inside an L1 test host started by tests/e2e/vfio-run.sh: QEMU's emulated intel-iommu
# (L1 booted with intel_iommu=on) and an emulated e1000 (8086:100e) on QEMU's user network,
# with the vfio modules loaded and no e1000 driver in L1.
#
# Usage: vfio-scenarios.sh [--list | NAME...]
#   vfio-unbound   the e1000 is in an IOMMU group of its own; assigning it while no driver is
#                  bound fails before the guest starts, with the fix (vmctl hostdev bind) in
#                  the message
#   vfio-e1000     bound to vfio-pci (driver_override + drivers_probe) and assigned to an L2 PC
#                  guest (SeaBIOS, kernel through fw_cfg, l2test=net): the guest's e1000 driver
#                  binds it, reads the MAC QEMU gave it, brings the link up and gets a DHCP
#                  lease from QEMU's user network through it (descriptor rings and packets by
#                  DMA through the IOMMU, INTx through the resample irqfd); then two guest
#                  resets (control socket) and the same again after each
#   vfio-vmctl-managed the e1000 (on no driver) in a vmctld definition with a managed
#                  hostdev: vmctld binds it to vfio-pci at start and runs the vmm jailed (own
#                  uid, /dev/vfio/N made in its root, /sys read-only, locked memory for the
#                  DMA maps); the guest gets a DHCP lease through it; after `vmctl destroy` the
#                  device is off vfio-pci again with no driver_override left
#   vfio-e1000e-msix the emulated e1000e (8086:10d3, MSI-X in its BAR 3) bound and assigned
#                  the same way to a guest whose init (tests/e2e/vfio-l2-init.sh, appended to
#                  the L2 initramfs as /guest/l2-e1000e-extra.cpio.gz) loads e1000e, which
#                  programs the emulated MSI-X table: a DHCP lease through it, and eth0's
#                  interrupts on PCI-MSI(X) vectors that fired
# Environment: VMM, KERNEL, INITRD (as set by l1-init.sh), VFIO_BOOT_TIMEOUT (seconds per boot,
#   default 240).
# Output: "E2E-RESULT <name> PASS|FAIL <reason>", "E2E-TIME <name> k=v ...".
set -u
PATH=/bin:/sbin:/usr/bin:/usr/sbin:$PATH

VFIO_SCENARIOS="vfio-unbound vfio-e1000 vfio-vmctl-managed vfio-e1000e-msix"
if [ "${1:-}" = "--list" ]; then
    for s in $VFIO_SCENARIOS; do echo "$s"; done
    exit 0
fi
VMM=${VMM:-/bin/vmm}
KERNEL=${KERNEL:-/guest/vmlinuz}
INITRD=${INITRD:-/guest/l2-initramfs.cpio.gz}
TMO=${VFIO_BOOT_TIMEOUT:-240}
SELECTED=$(echo "${*:-${VFIO_ONLY:-$VFIO_SCENARIOS}}" | tr ',' ' ')
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vfio-e2e.XXXXXX") || exit 1

now() { read -r _up _ </proc/uptime; echo "$_up"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
show() { # FILE N
    echo "---- last $2 lines of ${1##*/} ----"
    tr -d '\r' <"$1" | tail -n "$2" | sed 's/^/  | /'
    echo "---- end ----"
}

# The emulated e1000: its sysfs directory and address.
E1000=
for d in /sys/bus/pci/devices/*; do
    if [ "$(cat "$d/vendor")" = 0x8086 ] && [ "$(cat "$d/device")" = 0x100e ]; then
        E1000=$d
        break
    fi
done
ADDR=${E1000##*/}
GROUP=$(readlink "$E1000/iommu_group" 2>/dev/null)
GROUP=${GROUP##*/}
echo "E2E-INFO e1000 at ${ADDR:-none}, IOMMU group ${GROUP:-none} ($(ls /sys/kernel/iommu_groups 2>/dev/null | wc -l) groups)"

sc_vfio_unbound() {
    [ -n "$ADDR" ] || { REASON="no e1000 (8086:100e) in L1"; return 1; }
    [ -n "$GROUP" ] || { REASON="the e1000 has no IOMMU group (is intel_iommu=on on?)"; return 1; }
    members=$(ls "/sys/kernel/iommu_groups/$GROUP/devices" | wc -l)
    [ "$members" = 1 ] || { REASON="group $GROUP has $members devices"; return 1; }
    "$VMM" --machine pc --kernel "$KERNEL" --initramfs "$INITRD" --vga none --serial file:"$WORK/unbound.log" \
        --device "vfio=$ADDR" >"$WORK/unbound.out" 2>&1
    rc=$?
    msg=$(tr '\n' ' ' <"$WORK/unbound.out")
    echo "E2E-INFO vfio-unbound: exit $rc: $msg"
    case $msg in
    *"bound to no driver: vmctl hostdev bind $ADDR"*) ;;
    *) REASON="exit $rc without the expected message"; return 1 ;;
    esac
    [ "$rc" != 0 ] || { REASON="the vmm started"; return 1; }
}

# bind_vfio: the e1000 to vfio-pci, as vmctl hostdev bind does.
bind_vfio() {
    echo vfio-pci >"$E1000/driver_override" || return 1
    echo "$ADDR" >/sys/bus/pci/drivers_probe 2>/dev/null
    _drv=$(readlink "$E1000/driver")
    [ "${_drv##*/}" = vfio-pci ] && [ -c "/dev/vfio/$GROUP" ]
}

# wait_count FILE PATTERN N: until FILE has N lines with PATTERN (or TMO seconds, or the vmm exits).
wait_count() {
    _t=$(now)
    while [ "$(tr -d '\r' <"$1" | grep -c "$2")" -lt "$3" ]; do
        kill -0 "$VPID" 2>/dev/null || return 1
        awk -v a="$_t" -v b="$(now)" -v t="$TMO" 'BEGIN { exit !(b - a >= t) }' && return 1
        sleep 1
    done
}

sc_vfio_e1000() {
    [ -n "$ADDR" ] && [ -n "$GROUP" ] || { REASON="no e1000 with an IOMMU group"; return 1; }
    bind_vfio || { REASON="cannot bind $ADDR to vfio-pci (driver: $(readlink "$E1000/driver"))"; return 1; }
    d=$WORK/e1000
    mkdir -p "$d"
    t0=$(now)
    RUST_LOG=info "$VMM" --machine pc --kernel "$KERNEL" --initramfs "$INITRD" --memory 256M --vga none \
        --cmdline "console=ttyS0 l2test=net panic=-1 quiet" --device "vfio=$ADDR" --control "$d/ctl" \
        --serial stdio </dev/null >"$d/serial.log" 2>"$d/err" &
    VPID=$!
    boots=''
    ok=1
    for n in 1 2 3; do
        if ! wait_count "$d/serial.log" 'L2-NET' "$n"; then
            REASON="boot $n: no L2-NET line"
            ok=0
            break
        fi
        boots="$boots boot${n}_s=$(since "$t0")"
        if [ "$n" -lt 3 ]; then
            t0=$(now)
            "$VMM" control "$d/ctl" '{"cmd":"reset"}' >/dev/null || { REASON="reset $n refused"; ok=0; break; }
        fi
    done
    "$VMM" control "$d/ctl" '{"cmd":"stop"}' >/dev/null 2>&1
    sleep 2
    kill "$VPID" 2>/dev/null
    wait "$VPID"
    net=$(tr -d '\r' <"$d/serial.log" | grep 'L2-NET')
    echo "$net" | sed 's/^/E2E-INFO vfio-e1000 guest: /'
    grep -E 'hostdev0|vfio' "$d/err" | head -n 5 | sed 's/^/E2E-INFO vfio-e1000 vmm: /'
    echo "E2E-TIME vfio-e1000$boots"
    if [ "$ok" = 1 ]; then
        bad=$(echo "$net" | grep -v 'drv=e1000' | grep -v 'mac=52:54:00:12:34:56' | head -n 1)
        if echo "$net" | grep -q 'L2-NET-FAIL'; then
            REASON="$(echo "$net" | grep 'L2-NET-FAIL' | head -n 1)"
            ok=0
        elif [ "$(echo "$net" | grep -c 'drv=e1000 *$')" != 3 ] || [ "$(echo "$net" | grep -c 'mac=52:54:00:12:34:56 addr=10.0.2.15/24')" != 3 ]; then
            REASON="unexpected guest network: $bad"
            ok=0
        fi
    fi
    if [ "$ok" = 0 ]; then
        show "$d/serial.log" 40
        show "$d/err" 20
        return 1
    fi
}

sc_vfio_vmctl_managed() {
    [ -n "$ADDR" ] && [ -n "$GROUP" ] || { REASON="no e1000 with an IOMMU group"; return 1; }
    [ -x /bin/vmctld ] && [ -x /bin/vmctl ] || { REASON="no vmctld and vmctl in L1"; return 1; }
    # From no driver at all (the earlier scenario left it on vfio-pci), as on a host where
    # the administrator unloaded the NIC driver.
    [ -e "$E1000/driver" ] && echo "$ADDR" >"$E1000/driver/unbind"
    echo >"$E1000/driver_override"
    [ -e "$E1000/driver" ] && { REASON="cannot unbind $ADDR from $(readlink "$E1000/driver")"; return 1; }
    vs=$WORK/vmctl
    mkdir -p "$vs/images"
    cp "$KERNEL" "$vs/images/vmlinuz" && cp "$INITRD" "$vs/images/initrd.img" || { REASON="cannot fill the pool"; return 1; }
    /bin/vmctld --state-dir "$vs" --log info </dev/null >"$WORK/vmctld.log" 2>&1 &
    DPID=$!
    _n=0
    while ! /bin/vmctl --state-dir "$vs" list >/dev/null 2>&1; do
        _n=$((_n + 1))
        [ $_n -lt 100 ] || { REASON="vmctld did not come up"; show "$WORK/vmctld.log" 20; kill "$DPID"; return 1; }
        sleep 0.2
    done
    printf '%s\n' '{"name": "pt", "memory_mib": 256, "vcpus": 1,' \
        " \"os\": {\"machine\": \"direct\", \"kernel\": \"$vs/images/vmlinuz\", \"initrd\": \"$vs/images/initrd.img\"," \
        '        "cmdline": "console=ttyS0 l2test=net panic=-1 quiet"},' \
        " \"hostdevs\": [{\"address\": \"$ADDR\", \"managed\": true}]}" >"$WORK/pt.json"
    ok=1
    t0=$(now)
    if ! /bin/vmctl --state-dir "$vs" define "$WORK/pt.json" >"$WORK/pt.out" 2>&1 ||
        ! /bin/vmctl --state-dir "$vs" start pt >>"$WORK/pt.out" 2>&1; then
        REASON="define/start: $(tr '\n' ' ' <"$WORK/pt.out")"
        ok=0
    fi
    drv_running=$(readlink "$E1000/driver")
    VPID=$(/bin/vmctl --state-dir "$vs" list 2>/dev/null | awk '$1 == "pt" { print $3 }')
    if [ "$ok" = 1 ] && ! wait_count "$vs/logs/pt.log" 'L2-NET' 1; then
        REASON="no L2-NET line on the console"
        ok=0
    fi
    lease_s=$(since "$t0")
    jail=
    if [ "$ok" = 1 ]; then
        st=/proc/$VPID/status
        uid=$(awk '/^Uid:/ { print $2 }' "$st")
        nspid=$(awk '/^NSpid:/ { print $NF }' "$st")
        vfio_fd=$(ls -l /proc/"$VPID"/fd 2>/dev/null | grep -c "/dev/vfio/$GROUP")
        memlock=$(awk '/^Max locked memory/ { print $4 }' /proc/"$VPID"/limits)
        jail="uid $uid, pid $nspid in its namespace, /dev/vfio/$GROUP open $vfio_fd time(s), locked memory limit $memlock"
        if [ "${uid:-0}" -lt 2000000000 ] || [ "$nspid" != 1 ] || [ "$vfio_fd" -lt 1 ]; then
            REASON="not jailed as expected: $jail"
            ok=0
        fi
        net=$(tr -d '\r' <"$vs/logs/pt.log" | grep 'L2-NET' | head -n 1)
        echo "E2E-INFO vfio-vmctl-managed guest: $net"
        case $net in
        *"mac=52:54:00:12:34:56 addr=10.0.2.15/24"*) ;;
        *) REASON="unexpected guest network: $net"; ok=0 ;;
        esac
    fi
    /bin/vmctl --state-dir "$vs" destroy pt >/dev/null 2>&1
    _n=0
    while [ -e "$E1000/driver" ] && [ $_n -lt 50 ]; do
        sleep 0.2
        _n=$((_n + 1))
    done
    drv_after=$(readlink "$E1000/driver")
    override=$(cat "$E1000/driver_override")
    kill "$DPID" 2>/dev/null
    wait "$DPID" 2>/dev/null
    echo "E2E-INFO vfio-vmctl-managed: while running on ${drv_running##*/}; $jail; after destroy on '${drv_after##*/}', driver_override '$override'"
    echo "E2E-TIME vfio-vmctl-managed start_to_lease_s=$lease_s"
    if [ "$ok" = 1 ] && [ "${drv_running##*/}" != vfio-pci ]; then
        REASON="vmctld did not bind $ADDR to vfio-pci (driver: ${drv_running:-none})"
        ok=0
    fi
    if [ "$ok" = 1 ] && [ -n "$drv_after" ]; then
        REASON="still on ${drv_after##*/} after destroy"
        ok=0
    fi
    if [ "$ok" = 1 ] && [ -n "$override" ] && [ "$override" != "(null)" ]; then
        REASON="driver_override '$override' left after destroy"
        ok=0
    fi
    if [ "$ok" = 0 ]; then
        show "$WORK/vmctld.log" 20
        [ -f "$vs/logs/pt.vmm.log" ] && show "$vs/logs/pt.vmm.log" 20
        [ -f "$vs/logs/pt.log" ] && show "$vs/logs/pt.log" 30
        return 1
    fi
}

sc_vfio_e1000e_msix() {
    dev=''
    for x in /sys/bus/pci/devices/*; do
        if [ "$(cat "$x/vendor")" = 0x8086 ] && [ "$(cat "$x/device")" = 0x10d3 ]; then
            dev=$x
            break
        fi
    done
    [ -n "$dev" ] || { REASON="no e1000e (8086:10d3) in L1"; return 1; }
    addr=${dev##*/}
    group=$(readlink "$dev/iommu_group")
    group=${group##*/}
    [ -n "$group" ] || { REASON="the e1000e has no IOMMU group"; return 1; }
    echo vfio-pci >"$dev/driver_override" && echo "$addr" >/sys/bus/pci/drivers_probe 2>/dev/null
    drv=$(readlink "$dev/driver")
    [ "${drv##*/}" = vfio-pci ] || { REASON="cannot bind $addr to vfio-pci"; return 1; }
    d=$WORK/e1000e
    mkdir -p "$d"
    cat "$INITRD" /guest/l2-e1000e-extra.cpio.gz >"$d/initrd.cpio.gz" || { REASON="no extra initramfs"; return 1; }
    t0=$(now)
    RUST_LOG=info "$VMM" --machine pc --kernel "$KERNEL" --initramfs "$d/initrd.cpio.gz" --memory 256M --vga none \
        --cmdline "console=ttyS0 panic=-1 quiet" --device "vfio=$addr" \
        --serial stdio </dev/null >"$d/serial.log" 2>"$d/err" &
    VPID=$!
    wait_count "$d/serial.log" 'L2-MSIX' 1
    sleep 2
    kill "$VPID" 2>/dev/null
    wait "$VPID"
    rc=$?
    line=$(tr -d '\r' <"$d/serial.log" | grep 'L2-MSIX' | head -n 1)
    echo "E2E-INFO vfio-e1000e-msix guest: $line"
    grep -E 'hostdev0' "$d/err" | head -n 3 | sed 's/^/E2E-INFO vfio-e1000e-msix vmm: /'
    echo "E2E-TIME vfio-e1000e-msix lease_s=$(since "$t0") vmm_exit=$rc"
    case $line in
    "L2-MSIX mac=52:54:00:12:34:57 addr=10.0.2.15/24 drv=e1000e irqs="*MSI*) ;;
    *)
        REASON="unexpected: ${line:-no L2-MSIX line}"
        show "$d/serial.log" 40
        show "$d/err" 20
        return 1
        ;;
    esac
    # Every eth0 vector's count on the one CPU: the receive vector must have fired.
    fired=$(echo "$line" | sed 's/.*irqs=//' | tr ';' '\n' | awk '$2 > 0 { n++ } END { print n + 0 }')
    [ "$fired" -gt 0 ] || { REASON="no eth0 MSI-X vector fired: $line"; return 1; }
}

failed=0
for s in $SELECTED; do
    REASON=''
    fn=sc_$(echo "$s" | tr '-' '_')
    echo "E2E-START $s uptime=$(now)"
    if "$fn"; then
        echo "E2E-RESULT $s PASS"
    else
        echo "E2E-RESULT $s FAIL ${REASON:-failed}"
        failed=$((failed + 1))
    fi
done
rm -rf "$WORK"
exit $((failed > 0))
