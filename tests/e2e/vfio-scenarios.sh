#!/bin/sh
# tests/e2e/vfio-scenarios.sh - VFIO passthrough scenarios (issue 13), POSIX sh.
#
# Runs inside an L1 test host started by tests/e2e/vfio-run.sh: QEMU's emulated intel-iommu
# (L1 booted with intel_iommu=on), an emulated e1000 (8086:100e) and e1000e on QEMU's user
# network and an emulated NVMe drive, with the vfio and nvme modules loaded (no NIC driver)
# and qemu-system-x86_64 in L1.
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
#   vfio-nvme      QEMU's emulated NVMe (serial vfionvme), first L1's own drive (nvme driver:
#                  L1 writes a boot counter block 0 and the 32 MiB pattern of seed 0), then
#                  unbound, bound to vfio-pci and assigned to a guest whose init
#                  (tests/e2e/vfio-l2-nvme-init.sh, in /guest/l2-nvme-extra.cpio.gz) loads nvme
#                  and, in each of three boots (reboot -f twice; the vmm resets the device),
#                  verifies the previous boot's pattern and writes its own; its queues' MSI-X
#                  vectors must fire; after the vmm exits L1's nvme driver reads boot 3's data;
#                  then the throughput of sequential O_DIRECT 1 MiB writes and reads in the
#                  guest (boot 1, and a second vmm run after QEMU's) is compared with the same
#                  guest under QEMU's vfio-pci in this L1 (E2E-TIME ... ratio: the mean of
#                  the two vmm runs over QEMU's)
# Environment: VMM, KERNEL, INITRD (as set by l1-init.sh), VFIO_BOOT_TIMEOUT (seconds per boot,
#   default 240), VFIO_NVME_MIB (benchmark size, default 128).
# Output: "E2E-RESULT <name> PASS|FAIL <reason>", "E2E-TIME <name> k=v ...".
set -u
PATH=/bin:/sbin:/usr/bin:/usr/sbin:$PATH

VFIO_SCENARIOS="vfio-unbound vfio-e1000 vfio-vmctl-managed vfio-e1000e-msix vfio-nvme"
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

# pci_find ATTR VALUE [ATTR VALUE]: the sysfs directory of the first PCI device whose sysfs
# attribute files hold these values (nothing if none does).
pci_find() {
    for _d in /sys/bus/pci/devices/*; do
        if [ "$(cat "$_d/$1")" = "$2" ] && { [ $# -lt 4 ] || [ "$(cat "$_d/$3")" = "$4" ]; }; then
            echo "$_d"
            return 0
        fi
    done
}

# The emulated e1000: its sysfs directory and address.
E1000=$(pci_find vendor 0x8086 device 0x100e)
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
    dev=$(pci_find vendor 0x8086 device 0x10d3)
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

# The pattern of vfio-nvme, as tests/e2e/vfio-l2-nvme-init.sh writes it (keep the two alike):
# 32 MiB at 1 MiB, 1 MiB chunks of one repeated line each.
nvme_pattern() {
    _i=0
    while [ $_i -lt 32 ]; do
        yes "vfio-nvme seed=$1 chunk=$_i" | head -c 1048576
        _i=$((_i + 1))
    done
}
# nvme_host DEV: bind the NVMe function (sysfs directory DEV) to L1's nvme driver and print its
# namespace's block device.
nvme_host() {
    [ -e "$1/driver" ] && echo "${1##*/}" >"$1/driver/unbind"
    echo >"$1/driver_override"
    echo "${1##*/}" >/sys/bus/pci/drivers_probe 2>/dev/null
    _n=0
    while [ $_n -lt 100 ]; do
        for _c in "$1"/nvme/nvme*; do
            [ -b "/dev/${_c##*/}n1" ] && { echo "/dev/${_c##*/}n1"; return 0; }
        done
        sleep 0.2
        _n=$((_n + 1))
    done
    return 1
}
# nvme_vfio DEV: the same to vfio-pci.
nvme_vfio() {
    [ -e "$1/driver" ] && echo "${1##*/}" >"$1/driver/unbind"
    echo vfio-pci >"$1/driver_override" && echo "${1##*/}" >/sys/bus/pci/drivers_probe 2>/dev/null
    _drv=$(readlink "$1/driver")
    [ "${_drv##*/}" = vfio-pci ]
}
# nvme_check BLK SEED: the counter block and the pattern of SEED on block device BLK (L1).
nvme_check() {
    _c=$(dd if="$1" bs=4096 count=1 iflag=direct 2>/dev/null | head -n 1 | tr -d '\0')
    [ "$_c" = "VFIO-NVME boot=$2" ] || { echo "counter block '$_c', want 'VFIO-NVME boot=$2'"; return 1; }
    _want=$(nvme_pattern "$2" | md5sum | cut -d' ' -f1)
    _got=$(dd if="$1" bs=1M skip=1 count=32 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
    [ "$_got" = "$_want" ] || { echo "pattern of seed $2: md5 $_got, want $_want"; return 1; }
    echo "counter $2, pattern md5 $_got"
}
# nvme_irqs_ok LINE: an L2-NVME-IRQS line whose vectors are all MSI-X, an I/O queue's fired.
nvme_irqs_ok() {
    _m=$(echo "$1" | sed -n 's/.* modes=\([a-z,]*\) .*/\1/p')
    [ -n "$_m" ] && [ -z "$(echo "$_m" | tr ',' '\n' | grep -vx msix)" ] || return 1
    echo "${1#* lines=}" | tr ';' '\n' | awk '/nvme0q[1-9]/ && $2 > 0 { n++ } END { exit !(n > 0) }'
}

sc_vfio_nvme() {
    dev=$(pci_find class 0x010802)
    [ -n "$dev" ] || { REASON="no NVMe controller (class 010802) in L1"; return 1; }
    addr=${dev##*/}
    group=$(readlink "$dev/iommu_group")
    group=${group##*/}
    [ -n "$group" ] || { REASON="the NVMe has no IOMMU group"; return 1; }
    mib=${VFIO_NVME_MIB:-128}
    d=$WORK/nvme
    mkdir -p "$d"
    cat "$INITRD" /guest/l2-nvme-extra.cpio.gz >"$d/initrd.cpio.gz" || { REASON="no extra initramfs"; return 1; }
    # L1's own drive first: boot counter 0 and the pattern of seed 0.
    blk=$(nvme_host "$dev") || { REASON="L1's nvme driver did not bind $addr (driver: $(readlink "$dev/driver"))"; return 1; }
    echo "E2E-INFO vfio-nvme: $addr (group $group) is L1's $blk, serial $(cat "$dev"/nvme/nvme*/serial | tr -d ' ')"
    nvme_pattern 0 | dd of="$blk" bs=1M seek=1 iflag=fullblock conv=notrunc oflag=direct 2>/dev/null &&
        printf 'VFIO-NVME boot=0\n' | dd of="$blk" bs=4096 count=1 conv=sync,notrunc oflag=direct 2>/dev/null ||
        { REASON="L1 cannot write $blk"; return 1; }
    out=$(nvme_check "$blk" 0) || { REASON="L1 reads back its own data wrong: $out"; return 1; }
    nvme_vfio "$dev" || { REASON="cannot bind $addr to vfio-pci (driver: $(readlink "$dev/driver"))"; return 1; }

    # Our vmm: three boots, two guest reboots.
    t0=$(now)
    RUST_LOG=info "$VMM" --machine pc --kernel "$KERNEL" --initramfs "$d/initrd.cpio.gz" --memory 256M --vga none \
        --cmdline "console=ttyS0 panic=-1 quiet l2nvme=cycle l2nvme_mib=$mib" --device "vfio=$addr" \
        --serial stdio </dev/null >"$d/serial.log" 2>"$d/err" &
    VPID=$!
    ok=1
    boots=''
    for n in 1 2 3; do
        if ! wait_count "$d/serial.log" 'L2-NVME-DONE' "$n"; then
            ok=0
            fl=$(tr -d '\r' <"$d/serial.log" | grep -m 1 'L2-NVME-FAIL')
            REASON="boot $n: ${fl:-no L2-NVME-DONE line (vmm $(kill -0 $VPID 2>/dev/null && echo running || echo exited))}"
            break
        fi
        boots="$boots boot${n}_s=$(since "$t0")"
        t0=$(now)
    done
    _n=0
    while kill -0 "$VPID" 2>/dev/null && [ $_n -lt 30 ]; do
        sleep 1
        _n=$((_n + 1))
    done
    kill "$VPID" 2>/dev/null
    wait "$VPID"
    rc=$?
    log=$(tr -d '\r' <"$d/serial.log" | grep 'L2-NVME')
    echo "$log" | sed 's/^/E2E-INFO vfio-nvme guest: /'
    grep -E 'hostdev0|guest reset' "$d/err" | head -n 8 | sed 's/^/E2E-INFO vfio-nvme vmm: /'
    if [ "$ok" = 1 ]; then
        if [ "$rc" != 0 ]; then
            REASON="the vmm exited with $rc after the third boot's poweroff"
            ok=0
        elif [ "$(echo "$log" | grep -c 'L2-NVME-DEV serial=vfionvme .*drv=nvme ')" != 3 ]; then
            REASON="the guest's nvme driver did not find the drive in each boot: $(echo "$log" | grep -m 1 'L2-NVME-DEV')"
            ok=0
        elif [ "$(echo "$log" | grep -c 'L2-NVME-VERIFY .* ok')" != 3 ] || [ "$(echo "$log" | grep -c 'L2-NVME-WROTE')" != 3 ]; then
            REASON="data not verified and written in each boot"
            ok=0
        else
            echo "$log" | grep 'L2-NVME-IRQS' >"$d/irqs"
            [ "$(wc -l <"$d/irqs")" = 3 ] || { REASON="$(wc -l <"$d/irqs") L2-NVME-IRQS lines for 3 boots"; ok=0; }
            while read -r l; do
                nvme_irqs_ok "$l" || { REASON="nvme queues not on MSI-X vectors that fired: $l"; ok=0; }
            done <"$d/irqs"
        fi
    fi
    # The group left the container at the vmm's exit (all the device's fds closed first).
    if [ "$ok" = 1 ] && grep -q 'Could not unbind VFIO group' "$d/err"; then
        REASON="the vmm's exit left IOMMU group $group attached: $(grep -m 1 'VFIO_GROUP_UNSET_CONTAINER' "$d/err")"
        ok=0
    fi
    vbench=$(echo "$log" | grep -m 1 'L2-NVME-BENCH')
    if [ "$ok" = 0 ]; then
        show "$d/serial.log" 40
        show "$d/err" 20
        return 1
    fi

    # L1 reads what the guest's third boot wrote.
    blk=$(nvme_host "$dev") || { REASON="L1's nvme driver did not bind $addr again after the vmm"; return 1; }
    out=$(nvme_check "$blk" 3) || { REASON="L1 after the vmm: $out"; return 1; }
    echo "E2E-INFO vfio-nvme: L1's $blk after the vmm: $out"

    # The same guest under QEMU's vfio-pci, one boot, benchmark only.
    nvme_vfio "$dev" || { REASON="cannot bind $addr to vfio-pci for QEMU"; return 1; }
    q=$(command -v qemu-system-x86_64) || { REASON="no QEMU in L1"; return 1; }
    t0=$(now)
    "$q" -M pc -enable-kvm -cpu host -m 256 -smp 1 -nodefaults -display none -no-reboot \
        -kernel "$KERNEL" -initrd "$d/initrd.cpio.gz" -serial stdio \
        -append "console=ttyS0 panic=-1 quiet l2nvme=bench l2nvme_mib=$mib" \
        -device "vfio-pci,host=$addr" </dev/null >"$d/qemu.log" 2>&1 &
    VPID=$!
    wait_count "$d/qemu.log" 'L2-NVME-DONE' 1
    qs=$(since "$t0")
    kill "$VPID" 2>/dev/null
    wait "$VPID"
    qlog=$(tr -d '\r' <"$d/qemu.log" | grep 'L2-NVME')
    echo "$qlog" | sed 's/^/E2E-INFO vfio-nvme QEMU guest: /'
    qbench=$(echo "$qlog" | grep -m 1 'L2-NVME-BENCH')
    if [ -z "$qbench" ] || ! echo "$qlog" | grep -q 'L2-NVME-VERIFY boot=3 seed=3 .* ok'; then
        REASON="QEMU's guest: $(echo "$qlog" | grep -m 1 'L2-NVME-FAIL' || echo no benchmark line)"
        show "$d/qemu.log" 40
        return 1
    fi

    # Our vmm once more, benchmark only: its two figures bracket QEMU's, so a change of the
    # host's load between the runs shows.
    t0=$(now)
    "$VMM" --machine pc --kernel "$KERNEL" --initramfs "$d/initrd.cpio.gz" --memory 256M --vga none \
        --cmdline "console=ttyS0 panic=-1 quiet l2nvme=bench l2nvme_mib=$mib" --device "vfio=$addr" \
        --serial stdio </dev/null >"$d/serial2.log" 2>"$d/err2" &
    VPID=$!
    wait_count "$d/serial2.log" 'L2-NVME-DONE' 1
    kill "$VPID" 2>/dev/null
    wait "$VPID"
    v2log=$(tr -d '\r' <"$d/serial2.log" | grep 'L2-NVME')
    echo "$v2log" | sed 's/^/E2E-INFO vfio-nvme vmm again: /'
    v2bench=$(echo "$v2log" | grep -m 1 'L2-NVME-BENCH')
    if [ -z "$v2bench" ] || ! echo "$v2log" | grep -q 'L2-NVME-VERIFY boot=3 seed=3 .* ok'; then
        REASON="our vmm's second run: $(echo "$v2log" | grep -m 1 'L2-NVME-FAIL' || echo no benchmark line)"
        show "$d/serial2.log" 40
        show "$d/err2" 20
        return 1
    fi

    field() { echo "$2" | sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
    vw=$(field write_mib_s "$vbench") vr=$(field read_mib_s "$vbench")
    v2w=$(field write_mib_s "$v2bench") v2r=$(field read_mib_s "$v2bench")
    qw=$(field write_mib_s "$qbench") qr=$(field read_mib_s "$qbench")
    # ratio VMM1 VMM2 QEMU: the mean of our two runs over QEMU's.
    ratio() { awk -v a="$1" -v b="$2" -v q="$3" 'BEGIN { if (q > 0) printf "%.2f", (a + b) / 2 / q; else print "nan" }'; }
    echo "E2E-TIME vfio-nvme$boots qemu_boot_s=$qs mib=$mib vmm_write_mib_s=$vw,$v2w vmm_read_mib_s=$vr,$v2r" \
        "qemu_write_mib_s=$qw qemu_read_mib_s=$qr write_ratio=$(ratio "$vw" "$v2w" "$qw") read_ratio=$(ratio "$vr" "$v2r" "$qr")"
    [ -n "$vw" ] && [ -n "$vr" ] && [ -n "$v2w" ] && [ -n "$v2r" ] ||
        { REASON="no benchmark figures from our vmm's guest: $vbench / $v2bench"; return 1; }
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
