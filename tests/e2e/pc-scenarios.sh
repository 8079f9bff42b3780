#!/bin/sh
# tests/e2e/pc-scenarios.sh - end-to-end scenarios of the SeaBIOS PC machine (POSIX sh).
#
# Runs inside the L1 nested test host (started by tests/e2e/pc-run.sh) or on a host with real
# KVM. Guests know nothing of the VMM: SeaBIOS, its VGA BIOS and the guests' own boot loaders.
#
# Usage: pc-scenarios.sh [--list | NAME...]
# Environment: VMM (vmm binary), KERNEL (L2 bzImage, default /guest/vmlinuz), INITRD (L2 test
#   initramfs, default /guest/l2-initramfs.cpio.gz), VMLINUX (optional ELF vmlinux), PC_DISK (the
#   Debian 12 image, raw: a block device it may write), PC_DISK_PART (its root partition, default
#   ${PC_DISK}1), PC_ISO (grub-rescue-cdrom.iso), PC_DEBIAN_TIMEOUT (default 480 s),
#   PC_ISO_TIMEOUT (default 180 s), PC_KERNEL_TIMEOUT (default 120 s), PC_KERNEL_COMPARE=1 (also
#   boot the kernel on the direct machine, for the time ratio), PC_GUEST_MEM (default 512M).
#   VNC_PROBE (vnc-probe client, default vnc-probe on PATH). pc-qcow2-reboot, pc-virtio-net and
#   pc-virtio-blk need qemu-img. pc-virtio-net: PC_NET_MIB (data each way, default 100),
#   PC_NET_XFER_TIMEOUT (seconds per direction, default 600); it needs ip, ping, busybox (its nc)
#   and sha256sum here, and the tap name vnet0 and 10.0.2.0/24 free. pc-virtio-net-user is the
#   same with vhost=off (frames through the vmm's event loop). direct-virtio-root mounts
#   PC_DISK_PART read-only (ext4) to copy the image's kernel and initramfs out of /boot.
# Output: "E2E-RESULT <name> PASS|FAIL <reason>", "E2E-TIME <name> k=v ...", guest output on
#   failure. Exit status 0 if every selected scenario passed.
set -u
PATH=/bin:/sbin:/usr/bin:/usr/sbin:$PATH

PC_SCENARIOS="pc-kernel pc-cdrom-grub pc-debian pc-qcow2-reboot pc-bad-input pc-virtio-net pc-virtio-net-user pc-virtio-blk direct-virtio-root"
if [ "${1:-}" = "--list" ]; then
    for s in $PC_SCENARIOS; do echo "$s"; done
    exit 0
fi
VMM=${VMM:-}
PC_DISK=${PC_DISK:-/dev/vda}
PC_DISK_PART=${PC_DISK_PART:-${PC_DISK}1}
PC_ISO=${PC_ISO:-/guest/grub-rescue-cdrom.iso}
KERNEL=${KERNEL:-/guest/vmlinuz}
INITRD=${INITRD:-/guest/l2-initramfs.cpio.gz}
VMLINUX=${VMLINUX:-/guest/vmlinux}
SELECTED=${*:-${PC_ONLY:-$PC_SCENARIOS}}
SELECTED=$(echo "$SELECTED" | tr ',' ' ')
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pc-e2e.XXXXXX") || exit 1

now() { read -r _up _ </proc/uptime; echo "$_up"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
elapsed_ge() { awk -v a="$1" -v b="$(now)" -v t="$2" 'BEGIN { exit !(b - a >= t) }'; }
plain() { tr -d '\r' <"$1" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g'; }
show() { # FILE N
    echo "---- last $2 lines of ${1##*/} ----"
    plain "$1" | tail -n "$2" | sed 's/^/  | /'
    echo "---- end ----"
}
# stop PID: SIGTERM, then SIGKILL after 5 s.
stop() {
    kill -TERM "$1" 2>/dev/null
    _i=0
    while kill -0 "$1" 2>/dev/null && [ $_i -lt 50 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}
# dump PID PREFIX: ask the vmm for its screen and wait for PREFIX.txt to be renewed.
dump() {
    rm -f "$2.txt"
    kill -USR1 "$1" 2>/dev/null || return 1
    _i=0
    while [ ! -f "$2.txt" ] && [ $_i -lt 30 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    [ -f "$2.txt" ]
}

# run_kernel DIR ARGS...: "$VMM ARGS" with --serial stdio into DIR/serial.log, through an awk
# filter that stamps the first SeaBIOS line, "Booting from ROM" and L2-INIT with L1's uptime as
# they arrive (DIR/times, k=v lines), so the one-second polling loop does not blur the times.
# Sets RC (exit status), TIMED_OUT and TOTAL (seconds).
run_kernel() {
    _d=$1
    shift
    rm -f "$_d/fifo" "$_d/times"
    mkfifo "$_d/fifo" || return 1
    _t0=$(now)
    awk -v t0="$_t0" -v tf="$_d/times" '
        function stamp(name) {
            getline up < "/proc/uptime"; close("/proc/uptime")
            split(up, u, " ")
            printf "%s=%.2f\n", name, u[1] - t0 >> tf; close(tf)
        }
        { print; fflush() }
        !b && index($0, "SeaBIOS") { b = 1; stamp("bios_banner_s") }
        !r && index($0, "Booting from ROM") { r = 1; stamp("rom_boot_s") }
        !i && index($0, "L2-INIT") { i = 1; stamp("boot_to_init_s") }' <"$_d/fifo" >"$_d/serial.log" &
    _apid=$!
    "$VMM" "$@" --serial stdio </dev/null >"$_d/fifo" 2>"$_d/err" &
    _vpid=$!
    TIMED_OUT=''
    while kill -0 $_vpid 2>/dev/null; do
        if elapsed_ge "$_t0" "${PC_KERNEL_TIMEOUT:-120}"; then
            TIMED_OUT=1
            stop $_vpid
            break
        fi
        sleep 1
    done
    wait $_vpid
    RC=$?
    TOTAL=$(since "$_t0")
    wait $_apid
    touch "$_d/times"
}

# QEMU-style -kernel: SeaBIOS runs the linuxboot_dma option ROM, which loads the L2 kernel and
# test initramfs from fw_cfg; without VGA, SeaBIOS mirrors its screen on the serial console.
# The guest's init prints L2-INIT and powers off (vmm exit 0). With PC_KERNEL_COMPARE=1 the
# same kernel and initramfs also boot on the direct machine, for the time ratio.
sc_pc_kernel() {
    d=$WORK/kernel
    mkdir -p "$d"
    for f in "$KERNEL" "$INITRD"; do
        [ -f "$f" ] || { REASON="no $f"; return 1; }
    done
    line="console=ttyS0 l2test=poweroff panic=-1 quiet"
    run_kernel "$d" --machine pc --kernel "$KERNEL" --initramfs "$INITRD" --memory 256M --vga none \
        --cmdline "$line" || { REASON="mkfifo failed"; return 1; }
    times=$(tr '\n' ' ' <"$d/times")
    pc_rc=$RC pc_timed_out=$TIMED_OUT pc_total=$TOTAL
    direct=''
    if [ "${PC_KERNEL_COMPARE:-0}" = 1 ]; then
        mkdir -p "$d/direct"
        run_kernel "$d/direct" --kernel "$KERNEL" --initramfs "$INITRD" --memory 256M --cmdline "$line"
        direct=$(sed -n 's/^boot_to_init_s=/direct_boot_to_init_s=/p' "$d/direct/times")
        [ "$RC" = 0 ] || direct="$direct direct_exit=$RC"
    fi
    echo "E2E-TIME pc-kernel ${times}total_s=$pc_total${direct:+ $direct}"
    if [ -n "$pc_timed_out" ]; then
        REASON="timeout after ${PC_KERNEL_TIMEOUT:-120} s"
        show "$d/serial.log" 30
        show "$d/err" 20
        return 1
    fi
    fails=''
    plain "$d/serial.log" | grep -q 'SeaBIOS' || fails="$fails; no SeaBIOS banner on the serial console"
    plain "$d/serial.log" | grep -q 'Booting from ROM' || fails="$fails; SeaBIOS did not boot the option ROM"
    plain "$d/serial.log" | grep -q 'L2-INIT cpus=1' || fails="$fails; no 'L2-INIT cpus=1' from the guest"
    [ "$pc_rc" = 0 ] || fails="$fails; vmm exit status $pc_rc, expected 0"
    if [ -n "$fails" ]; then
        REASON=${fails#; }
        show "$d/serial.log" 30
        show "$d/err" 20
        return 1
    fi
    echo "---- pc-kernel serial console (first lines) ----"
    plain "$d/serial.log" | grep -av '^ *$' | head -n 12 | sed 's/^/  | /'
    echo "---- end ----"
    NOTE="SeaBIOS banner on ttyS0, 'Booting from ROM', L2 init reached, exit 0 (${times% })"
}

# The grub-rescue CD boots from the IDE CD-ROM to GRUB, which only draws on the VGA screen.
# With vnc-probe (VNC_PROBE, vmm/examples/vnc_probe.rs) the screen is also read over the VNC
# server (--vnc unix:...), must be 720x400 and not blank, and 'c' is typed over VNC; without
# it 'c' goes through the control socket. Either way 'c' (PS/2 keyboard) opens GRUB's command
# prompt; then the VNC frame must equal the PNG screen dump pixel for pixel, and GRUB's
# graphical terminal (typed over VNC) must resize the viewer to the VBE mode.
sc_pc_cdrom_grub() {
    d=$WORK/iso
    mkdir -p "$d"
    [ -f "$PC_ISO" ] || { REASON="no $PC_ISO"; return 1; }
    probe=${VNC_PROBE:-$(command -v vnc-probe 2>/dev/null)}
    [ -n "$probe" ] && [ -x "$probe" ] || probe=''
    t0=$(now)
    "$VMM" --cdrom "$PC_ISO" --memory 256M --serial file:"$d/serial.log" --screen-dump "$d/screen" \
        --control "$d/ctl" --vnc unix:"$d/vnc.sock" </dev/null >"$d/out" 2>"$d/err" &
    vpid=$!
    menu='' prompt='' banner='' vnc_menu='' vnc_compare='' vnc_resize='' typed_at='' again=''
    while kill -0 $vpid 2>/dev/null && ! elapsed_ge "$t0" "${PC_ISO_TIMEOUT:-180}"; do
        sleep 1
        dump $vpid "$d/screen" || continue
        grep -q 'SeaBIOS' "$d/screen.txt" && banner=1
        if [ -z "$menu" ] && grep -q 'GNU GRUB' "$d/screen.txt"; then
            menu=1
            echo "E2E-TIME pc-cdrom-grub grub_on_screen_s=$(since "$t0")"
            cp "$d/screen.txt" "$d/menu.txt"
            if [ -n "$probe" ]; then
                "$probe" unix:"$d/vnc.sock" --expect-size 720x400 --type c >"$d/sendkey.out" 2>&1 && vnc_menu=1
                cat "$d/sendkey.out"
            else
                "$VMM" control "$d/ctl" '{"cmd":"sendkey","keys":"c"}' >"$d/sendkey.out" 2>&1
            fi
            typed_at=$(now)
        fi
        if [ -n "$menu" ] && grep -q 'grub>' "$d/screen.txt"; then
            prompt=1
            echo "E2E-TIME pc-cdrom-grub grub_prompt_s=$(since "$t0")"
            break
        fi
        # A key that arrives while GRUB counts down may only stop the countdown (seen on a
        # slow host with the control socket too): one more 'c' after 15 s.
        if [ -n "$menu" ] && [ -z "$again" ] && elapsed_ge "$typed_at" 15; then
            again=1
            if [ -n "$probe" ]; then
                "$probe" unix:"$d/vnc.sock" --type c >>"$d/sendkey.out" 2>&1
            else
                "$VMM" control "$d/ctl" '{"cmd":"sendkey","keys":"c"}' >>"$d/sendkey.out" 2>&1
            fi
            echo "E2E-INFO pc-cdrom-grub: no grub> 15 s after c; typed c again"
        fi
    done
    if [ -n "$prompt" ] && [ -n "$probe" ]; then
        # GRUB waits at its prompt: the screen holds still, so both pictures must agree.
        sleep 1
        dump $vpid "$d/screen" && "$probe" unix:"$d/vnc.sock" --expect-size 720x400 --compare "$d/screen.png" \
            >"$d/compare.out" 2>&1 && vnc_compare=1
        cat "$d/compare.out"
        # A VBE mode: GRUB's graphical terminal, typed over VNC; the viewer must be resized
        # (DesktopSize) from 720x400 to the new mode.
        "$probe" unix:"$d/vnc.sock" --type 'insmod all_video\nloadfont unicode\nterminal_output gfxterm\n' \
            --wait-resize 120 >"$d/resize.out" 2>&1 && vnc_resize=$(grep -o 'resized from .*' "$d/resize.out")
        cat "$d/resize.out"
    fi
    alive=0
    kill -0 $vpid 2>/dev/null && alive=1
    stop $vpid
    echo "---- VGA text screen (pc-cdrom-grub) ----"
    grep -v '^$' "$d/screen.txt" 2>/dev/null | head -n 25 | sed 's/^/  | /'
    echo "---- end ----"
    if [ -z "$menu" ]; then
        REASON="no 'GNU GRUB' on the VGA text screen (vmm alive=$alive)"
        show "$d/err" 20
        return 1
    fi
    if [ -z "$prompt" ]; then
        REASON="GRUB menu shown, but no 'grub>' after typing c ($(tr '\n' ' ' <"$d/sendkey.out"))"
        show "$d/err" 20
        return 1
    fi
    [ -s "$d/screen.png" ] || { REASON="no PNG screen dump"; return 1; }
    if [ -n "$probe" ]; then
        [ -n "$vnc_menu" ] || { REASON="VNC frame of the GRUB menu wrong: $(tr '\n' ' ' <"$d/sendkey.out")"; return 1; }
        [ -n "$vnc_compare" ] || { REASON="VNC frame differs from the screen dump: $(tr '\n' ' ' <"$d/compare.out")"; return 1; }
        [ -n "$vnc_resize" ] || { REASON="no VNC resize after 'terminal_output gfxterm': $(tr '\n' ' ' <"$d/resize.out")"; return 1; }
        NOTE="GRUB menu on the VGA screen${banner:+ after the SeaBIOS banner}, read over VNC (720x400, not blank), 'c' typed over VNC gave the grub> prompt${again:+ (typed twice)}, VNC frame equal to the PNG screen dump, gfxterm typed over VNC: viewer $vnc_resize"
    else
        NOTE="GRUB menu on the VGA screen${banner:+ after the SeaBIOS banner}, 'c' typed via the control socket gave the grub> prompt${again:+ (typed twice)}, PNG $(wc -c <"$d/screen.png") bytes (no vnc-probe: VNC not checked)"
    fi
}

# Debian 12 from the IDE disk: BIOS and GRUB on VGA, login on the serial console, the e1000
# answering ping on a tap, a file written, ACPI poweroff, and the file found in the image.
sc_pc_debian() {
    d=$WORK/debian
    mkdir -p "$d"
    [ -e "$PC_DISK" ] || { REASON="no $PC_DISK"; return 1; }
    mkfifo "$d/in"
    exec 3<>"$d/in"
    log=$d/serial.log
    t0=$(now)
    "$VMM" --disk "$PC_DISK",format=raw --memory "${PC_GUEST_MEM:-512M}" --serial stdio \
        --nic tap=vmmtap0,mac=52:54:00:12:34:56 --screen-dump "$d/screen" <"$d/in" >"$log" 2>"$d/err" &
    vpid=$!
    # The guest's e1000 sits on tap vmmtap0 (the vmm creates it); its host side is 10.0.2.1/24.
    _i=0
    while [ ! -e /sys/class/net/vmmtap0 ] && [ $_i -lt 100 ]; do
        sleep 0.1
        _i=$((_i + 1))
    done
    ip addr add 10.0.2.1/24 dev vmmtap0
    ip link set vmmtap0 up
    step=wait-login banner='' grub='' net='' token=$$-$(od -An -N2 -tu2 /dev/urandom | tr -dc 0-9)
    n=0 rc=''
    while :; do
        if ! kill -0 $vpid 2>/dev/null; then
            wait $vpid
            rc=$?
            break
        fi
        if elapsed_ge "$t0" "${PC_DEBIAN_TIMEOUT:-480}"; then
            REASON="timeout in step $step"
            stop $vpid
            exec 3>&-
            show "$log" 40
            show "$d/err" 20
            return 1
        fi
        n=$((n + 1))
        if [ $((n % 60)) = 0 ]; then
            echo "E2E-PROGRESS pc-debian step=$step t=$(since "$t0") last: $(plain "$log" | grep -av '^ *$' | tail -n 1 | cut -c1-100)"
        fi
        # The VGA screen: every 0.5 s until the SeaBIOS banner was seen (on a quiet host GRUB
        # replaces it within a few seconds), then every 2 s until GRUB is there.
        if [ -z "$grub" ] && { [ -z "$banner" ] || [ $((n % 4)) = 0 ]; } && dump $vpid "$d/screen"; then
            if [ -z "$banner" ] && grep -q 'SeaBIOS' "$d/screen.txt"; then
                banner=1
                cp "$d/screen.txt" "$d/bios-screen.txt"
                echo "E2E-TIME pc-debian bios_banner_s=$(since "$t0")"
            fi
            if grep -q 'GNU GRUB\|Booting .Debian' "$d/screen.txt"; then
                grub=1
                cp "$d/screen.txt" "$d/grub-screen.txt"
                echo "E2E-TIME pc-debian grub_on_screen_s=$(since "$t0")"
            fi
        fi
        case $step in
        wait-login)
            if grep -aq 'login:' "$log"; then
                echo "E2E-TIME pc-debian bios_to_login_prompt_s=$(since "$t0")"
                sleep 1
                printf 'root\r' >&3
                step=wait-password
            fi
            ;;
        wait-password)
            if grep -aq 'Password:' "$log"; then
                sleep 1
                printf 'root\r' >&3
                step=wait-shell
            fi
            ;;
        wait-shell)
            if grep -aq 'root@vmm-guest:~#' "$log"; then
                echo "E2E-TIME pc-debian shell_s=$(since "$t0")"
                # Bring the e1000 up by its MAC (its name depends on udev's naming).
                printf '%s\r' "n=\$(grep -l 52:54:00:12:34:56 /sys/class/net/*/address | cut -d/ -f5); \
ip link set \$n up; ip addr add 10.0.2.15/24 dev \$n; echo NIC-UP-\$n-\$(cat /sys/class/net/\$n/device/vendor)" >&3
                step=wait-nic
            elif grep -aq 'Login incorrect' "$log"; then
                REASON="login incorrect"
                step=failed
                stop $vpid
            fi
            ;;
        wait-nic)
            if grep -aq 'NIC-UP-[a-z0-9]*-0x8086' "$log"; then
                sleep 2
                if ping -c 3 -W 2 10.0.2.15 >"$d/ping.log" 2>&1; then
                    net="e1000 answered ping from the host tap"
                else
                    net=''
                    REASON="no ping reply from the guest's e1000: $(tail -n 2 "$d/ping.log" | tr '\n' ' ')"
                fi
                printf 'echo proof-%s > /root/proof; sync; systemctl poweroff\r' "$token" >&3
                step=wait-poweroff
            elif grep -aq 'Login incorrect' "$log"; then
                REASON="login incorrect"
                step=failed
                stop $vpid
            fi
            ;;
        esac
        sleep 0.5
    done
    exec 3>&-
    echo "E2E-TIME pc-debian poweroff_s=$(since "$t0")"
    # The whole console, for the log (what the guest reported as missing or broken).
    echo "---- pc-debian serial console ----"
    plain "$log" | sed 's/^/L2| /'
    echo "---- end ----"
    # What the guest complained about, for the notes.
    plain "$log" | grep -aiE 'ACPI (BIOS )?Error|Invalid checksum|nobody cared|lost interrupt|timeout|timed out|FAILED|firmware bug' |
        head -n 20 | sed 's/^/E2E-GUEST-WARN pc-debian: /'
    plain "$log" | grep -aE 'ACPI: (PCI Root Bridge|PM-Timer|button)|LNK[A-DS].*(IRQ|Enabled)|ata[0-9].*(ATA|ATAPI)|e1000 .*Intel|rtc_cmos|i8042' |
        head -n 20 | sed 's/^/E2E-GUEST-INFO pc-debian: /'
    echo "---- VGA text screen with the BIOS banner ----"
    grep -v '^$' "$d/bios-screen.txt" 2>/dev/null | head -n 10 | sed 's/^/  | /'
    echo "---- VGA text screen with GRUB ----"
    grep -v '^$' "$d/grub-screen.txt" 2>/dev/null | head -n 10 | sed 's/^/  | /'
    echo "---- end ----"
    [ "$step" = failed ] && return 1
    if [ "$step" != wait-poweroff ]; then
        REASON="vmm exited (status $rc) in step $step"
        show "$log" 40
        show "$d/err" 20
        return 1
    fi
    [ "$rc" = 0 ] || { REASON="vmm exit status $rc after poweroff, expected 0"; show "$d/err" 20; return 1; }
    [ -n "$net" ] || REASON="${REASON:-no working e1000}"
    [ -n "$banner" ] || REASON="${REASON:+$REASON; }no SeaBIOS banner on the VGA screen"
    [ -n "$grub" ] || REASON="${REASON:+$REASON; }no GRUB on the VGA screen"
    mkdir -p /mnt
    if mount -t ext4 -o ro "$PC_DISK_PART" /mnt 2>/dev/null; then
        proof=$(cat /mnt/root/proof 2>/dev/null)
        umount /mnt
        [ "$proof" = "proof-$token" ] || REASON="${REASON:+$REASON; }/root/proof is '$proof', not 'proof-$token'"
    else
        REASON="${REASON:+$REASON; }cannot mount $PC_DISK_PART to check the file"
    fi
    [ -z "${REASON:-}" ] || return 1
    ip link del vmmtap0 2>/dev/null
    NOTE="BIOS banner and GRUB on VGA, root login on ttyS0, $net, /root/proof in the image after ACPI poweroff"
}

# wait_serial LOG PATTERN COUNT TIMEOUT PID STEP: until PATTERN (grep -E) occurs COUNT times in
# LOG. Fails (REASON set) if PID exits or TIMEOUT seconds pass; progress every 30 s.
wait_serial() {
    _t=$(now) _n=0
    while [ "$(plain "$1" | grep -caE "$2")" -lt "$3" ]; do
        if ! kill -0 "$5" 2>/dev/null; then
            REASON="vmm exited while waiting for '$2' ($6)"
            return 1
        fi
        if elapsed_ge "$_t" "$4"; then
            REASON="timeout ($4 s) waiting for '$2' ($6)"
            return 1
        fi
        _n=$((_n + 1))
        [ $((_n % 60)) = 0 ] &&
            echo "E2E-PROGRESS $6 t=$(since "$_t") last: $(plain "$1" | grep -av '^ *$' | tail -n 1 | cut -c1-100)"
        sleep 0.5
    done
}

# The Debian image through a qcow2 overlay (the vmm writes qcow2 clusters): root writes a
# file and reboots (the guest resets through the FADT reset register, 0xCF9; the vmm boots
# the machine again); after the second boot the file is there; an ACPI power-button press
# from the control socket powers the guest off (vmm exit 0); `qemu-img check` passes.
sc_pc_qcow2_reboot() {
    d=$WORK/qcow2
    mkdir -p "$d"
    command -v qemu-img >/dev/null || { REASON="no qemu-img in this host"; return 1; }
    qemu-img create -q -f qcow2 -b "$PC_DISK" -F raw "$d/disk.qcow2" ||
        { REASON="qemu-img create failed"; return 1; }
    mkfifo "$d/in"
    exec 3<>"$d/in"
    log=$d/serial.log token=$$-$(od -An -N2 -tu2 /dev/urandom | tr -dc 0-9)
    t0=$(now)
    RUST_LOG=info "$VMM" --disk "$d/disk.qcow2",format=qcow2 --memory "${PC_GUEST_MEM:-512M}" --serial stdio \
        --control "$d/ctl" <"$d/in" >"$log" 2>"$d/err" &
    vpid=$!
    tmo=${PC_DEBIAN_TIMEOUT:-480}
    login() { # N: the Nth login prompt of this run
        wait_serial "$log" 'vmm-guest login:' "$1" "$tmo" $vpid "pc-qcow2-reboot boot $1" || return 1
        echo "E2E-TIME pc-qcow2-reboot boot${1}_login_prompt_s=$(since "$t0")"
        sleep 1
        printf 'root\r' >&3
        wait_serial "$log" 'Password:' "$1" 60 $vpid "pc-qcow2-reboot password $1" || return 1
        # One shell prompt more than now: not the Nth, since the first boot's shell may print
        # one more after `systemctl reboot` returns (typing on before the new shell is up
        # loses the input to login).
        _prompts=$(plain "$log" | grep -caE 'root@vmm-guest:~#')
        sleep 1
        printf 'root\r' >&3
        wait_serial "$log" 'root@vmm-guest:~#' $((_prompts + 1)) 60 $vpid "pc-qcow2-reboot shell $1"
    }
    ok=''
    if login 1; then
        printf 'echo qproof-%s > /root/qproof; sync; systemctl reboot\r' "$token" >&3
        if login 2; then
            printf 'cat /root/qproof\r' >&3
            # The token is on the console twice: in the echo command of the first boot and
            # in cat's output now (a line start may carry terminal escapes, so no ^).
            if wait_serial "$log" "qproof-$token" 2 30 $vpid "pc-qcow2-reboot cat"; then
                sleep 2
                t1=$(now)
                if "$VMM" control "$d/ctl" '{"cmd":"powerbutton"}' >"$d/pb.out" 2>&1; then
                    ok=1
                else
                    REASON="control powerbutton failed: $(cat "$d/pb.out")"
                fi
            fi
        fi
    fi
    # The vmm ends by itself after the power button (or is stopped on failure).
    _i=0
    while [ -n "$ok" ] && kill -0 $vpid 2>/dev/null && [ $_i -lt 240 ]; do
        sleep 0.5
        _i=$((_i + 1))
    done
    if kill -0 $vpid 2>/dev/null; then
        [ -n "$ok" ] && REASON="the guest did not power off within 120 s of the power button"
        ok=''
        stop $vpid
    fi
    wait $vpid
    rc=$?
    exec 3>&-
    if [ -z "$ok" ]; then
        show "$log" 40
        show "$d/err" 20
        return 1
    fi
    echo "E2E-TIME pc-qcow2-reboot powerbutton_to_exit_s=$(since "$t1") total_s=$(since "$t0")"
    [ "$rc" = 0 ] || { REASON="vmm exit status $rc after the power button, expected 0"; show "$d/err" 20; return 1; }
    grep -q 'guest reset: booting again' "$d/err" ||
        { REASON="the vmm did not log the guest's reset"; show "$d/err" 20; return 1; }
    [ "$(plain "$log" | grep -c 'Power Button')" -ge 1 ] || echo "E2E-GUEST-WARN pc-qcow2-reboot: no 'Power Button' line on the console"
    if ! qemu-img check -q "$d/disk.qcow2" >"$d/check.out" 2>&1; then
        REASON="qemu-img check failed: $(head -c 300 "$d/check.out")"
        return 1
    fi
    alloc=$(qemu-img info "$d/disk.qcow2" | sed -n 's/^disk size: //p')
    NOTE="qcow2 overlay (grew to $alloc): file written, reboot via the guest's reset, file read back after the second boot, ACPI power button -> exit 0, qemu-img check clean"
}

# Bad disk options: exit status 2 and a message naming the field.
sc_pc_bad_input() {
    d=$WORK/bad
    mkdir -p "$d"
    fails=''
    check() { # NAME EXPECT-IN-STDERR ARGS...
        _n=$1 _want=$2
        shift 2
        "$VMM" "$@" </dev/null >"$d/$_n.out" 2>"$d/$_n.err"
        _rc=$?
        if [ $_rc != 2 ] || ! grep -q "$_want" "$d/$_n.err"; then
            fails="$fails $_n(rc=$_rc: $(head -c 200 "$d/$_n.err"))"
        fi
    }
    check missing-disk 'disk' --disk /nonexistent.img
    check bad-format 'format' --disk "$PC_ISO",format=vmdk
    printf 'QFI\373' >"$d/fake.qcow2"
    head -c 1048576 /dev/zero >>"$d/fake.qcow2"
    check wrong-format 'disk' --disk "$PC_ISO",format=qcow2
    check corrupt-qcow2 'disk' --disk "$d/fake.qcow2"
    check kernel-and-pc 'kernel' --machine pc --kernel "$PC_ISO"
    ncheck=6
    if [ -f "$VMLINUX" ]; then
        check vmlinux-on-pc 'ELF vmlinux' --machine pc --kernel "$VMLINUX"
        ncheck=$((ncheck + 1))
    fi
    if [ -f "$KERNEL" ]; then
        check pc-rom-missing 'linuxboot-rom' --machine pc --kernel "$KERNEL" --linuxboot-rom /nonexistent.bin
        dd if=/dev/zero of="$d/big.cpio" bs=1048576 count=0 seek=64 2>/dev/null
        check pc-initrd-too-big 'initramfs' --machine pc --kernel "$KERNEL" --initramfs "$d/big.cpio" --memory 32M
        ncheck=$((ncheck + 2))
    fi
    check bad-boot 'boot' --cdrom "$PC_ISO" --boot floppy
    [ -z "$fails" ] || { REASON="not rejected with status 2:$fails"; return 1; }
    NOTE="$ncheck bad inputs rejected with status 2"
}

# debian_login NAME N: the Nth login prompt of the Debian guest on $log (vmm $vpid, input on
# fd 3, timeout $tmo, times from $t0): logs in as root and waits for one more shell prompt.
debian_login() {
    wait_serial "$log" 'vmm-guest login:' "$2" "$tmo" "$vpid" "$1 boot $2" || return 1
    echo "E2E-TIME $1 boot${2}_login_prompt_s=$(since "$t0")"
    sleep 1
    printf 'root\r' >&3
    wait_serial "$log" 'Password:' "$2" 60 "$vpid" "$1 password $2" || return 1
    _prompts=$(plain "$log" | grep -caE 'root@vmm-guest:~#')
    sleep 1
    printf 'root\r' >&3
    wait_serial "$log" 'root@vmm-guest:~#' $((_prompts + 1)) 60 "$vpid" "$1 shell $2"
}
vmrss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
# overhead PID RAM_KIB: the vmm's resident memory beyond guest RAM (KiB): the Rss of every
# mapping but those exactly RAM_KIB long (guest RAM below the PCI hole is one mapping). Guest
# RAM stays resident across a reset (as on a PC, it is not cleared), so this is what must not
# grow from one boot to the next.
overhead() { awk -v ram="$2" '$1 == "Size:" { s = $2 } $1 == "Rss:" { t += $2; if (s == ram) g += $2 } END { print t - g }' "/proc/$1/smaps" 2>/dev/null; }
# overhead_parts PID RAM_KIB: the eight largest of those mappings, "name(size KiB)=rss KiB"
# (anonymous ones named by their size: the VGA's 16 MiB VRAM is one), for the log.
overhead_parts() {
    awk -v ram="$2" '/^[0-9a-f]+-[0-9a-f]+ / { n = $6; sub(/.*\//, "", n); if (n == "") n = "anon" }
        $1 == "Size:" { s = $2 } $1 == "Rss:" && s != ram && $2 > 0 { print $2, n "(" s ")=" $2 }' \
        "/proc/$1/smaps" 2>/dev/null | sort -rn | head -n 8 | cut -d' ' -f2 | tr '\n' ' '
}

# The Debian image (qcow2 overlay on a virtio-blk disk) with a virtio-net NIC on tap vnet0,
# `--nic tap=vnet0,model=virtio,mac=..`: the vmm creates the tap, L1 gives it 10.0.2.1/24. In
# the guest the interface with that MAC must be driven by virtio_net on a virtio 1.x PCI
# function (1af4:*); it gets 10.0.2.2/24; ping both ways; then PC_NET_MIB (100) MiB over TCP
# each way with equal sha256 on both ends: L1 -> guest (busybox `nc -l` in L1 sending a file,
# bash's /dev/tcp and dd in the guest) and guest -> L1 (a file of /dev/urandom in the guest's
# /dev/shm sent through /dev/tcp to `nc -l` in L1). The throughput of each direction (guest
# clock, MiB/s) is an E2E-INFO line, not judged. The guest then powers off (a vmm that does not
# exit with 0 within 120 s is a warning; pc-debian judges power-off).
# Data path: with VNET_VHOST unset (pc-virtio-net) the vmm must use vhost-net when
# /dev/vhost-net exists here and its own worker otherwise; VNET_VHOST=off (pc-virtio-net-user)
# must use the worker. The vmm's "data path:" log line is checked.
# mibps BYTES NANOSECONDS: MiB/s with one decimal.
mibps() { awk -v b="$1" -v ns="$2" 'BEGIN { if (ns > 0) printf "%.1f", b / 1048576 / (ns / 1e9); else print "?" }'; }
# stop_nc PID: a listening nc that is still there is killed.
stop_nc() {
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}
sc_pc_virtio_net_user() {
    VNET_VHOST=off sc_pc_virtio_net
}
sc_pc_virtio_net() {
    d=$WORK/vnet${VNET_VHOST:+-$VNET_VHOST}
    if [ "${VNET_VHOST:-}" = off ] || [ ! -c /dev/vhost-net ]; then
        want_path="the vmm's event loop"
    else
        want_path=vhost-net
    fi
    mkdir -p "$d"
    for t in qemu-img ip ping sha256sum; do
        command -v $t >/dev/null || { REASON="no $t in this host"; return 1; }
    done
    # busybox's nc (`nc -l -p PORT`, half-closes at the end of its input); other netcats
    # spell listening differently.
    if busybox --list 2>/dev/null | grep -qx nc; then
        nc="busybox nc"
    else
        nc=nc
        command -v nc >/dev/null || { REASON="no busybox nc in this host"; return 1; }
    fi
    qemu-img create -q -f qcow2 -b "$PC_DISK" -F raw "$d/disk.qcow2" ||
        { REASON="qemu-img create failed"; return 1; }
    mib=${PC_NET_MIB:-100} xtmo=${PC_NET_XFER_TIMEOUT:-600}
    bytes=$((mib * 1048576)) mac=52:54:00:12:34:99 tap=vnet0
    # What L1 sends, made before the guest runs.
    head -c $bytes /dev/urandom >"$d/tx"
    txsum=$(sha256sum "$d/tx" | cut -c1-64)
    mkfifo "$d/in"
    exec 3<>"$d/in"
    log=$d/serial.log tmo=${PC_DEBIAN_TIMEOUT:-480}
    : >"$log"
    t0=$(now)
    RUST_LOG=info "$VMM" --disk "$d/disk.qcow2",bus=virtio,format=qcow2 --memory "${PC_GUEST_MEM:-512M}" \
        --nic tap=$tap,model=virtio,mac=$mac${VNET_VHOST:+,vhost=$VNET_VHOST} --serial stdio --screen-dump "$d/screen" \
        <"$d/in" >"$log" 2>"$d/err" &
    vpid=$!
    _i=0
    while [ ! -e /sys/class/net/$tap ] && [ $_i -lt 100 ] && kill -0 $vpid 2>/dev/null; do
        sleep 0.1
        _i=$((_i + 1))
    done
    if [ ! -e /sys/class/net/$tap ]; then
        REASON="no tap $tap 10 s after the vmm started"
    elif ! ip addr add 10.0.2.1/24 dev $tap || ! ip link set $tap up; then
        REASON="cannot give $tap 10.0.2.1/24 or bring it up"
    fi
    _i=0
    while ! grep -q 'data path: ' "$d/err" && [ $_i -lt 50 ] && kill -0 $vpid 2>/dev/null; do
        sleep 0.1
        _i=$((_i + 1))
    done
    path=$(grep -o 'data path: .*' "$d/err" | head -n 1)
    echo "E2E-INFO pc-virtio-net: /dev/vhost-net $([ -c /dev/vhost-net ] && echo present || echo absent), vhost=${VNET_VHOST:-unset}: $path"
    case $path in
    "data path: $want_path "*) ;;
    *) REASON="${REASON:+$REASON; }expected the data path $want_path, the vmm logged: ${path:-nothing}" ;;
    esac
    # vnet_fail: the diagnostics of a failure after the guest's shell was up (Ctrl-C to a
    # command that hangs, then the guest's view of the NIC) and of L1's tap.
    vnet_fail() {
        printf '\003' >&3
        sleep 1
        # shellcheck disable=SC2016 # expanded by the guest's shell
        printf '%s\r' 'echo; ip -s link show ${n:-eth0}; grep -E "virtio|CPU" /proc/interrupts; echo DIAG""-END' >&3
        wait_serial "$log" 'DIAG-END' 1 30 $vpid "pc-virtio-net diagnostics" >/dev/null
        echo "---- L1: $tap ----"
        ip link show $tap 2>&1 | sed 's/^/  | /'
        for _s in rx_bytes rx_packets rx_dropped tx_bytes tx_packets tx_dropped; do
            printf '  | %s %s\n' $_s "$(cat /sys/class/net/$tap/statistics/$_s 2>/dev/null)"
        done
        echo "---- end ----"
    }
    ok='' nic='' gping='' hping='' rx='' tx='' rxrate='' txrate=''
    # shellcheck disable=SC2016 # the guest's shell expands these
    if [ -z "$REASON" ] && debian_login pc-virtio-net 1; then
        echo "E2E-TIME pc-virtio-net shell_s=$(since "$t0")"
        # The interface by its MAC (its name is udev's), what drives it and the features the
        # driver acked (virtio bit N is character N+1): CSUM 0, GUEST_CSUM 1, GUEST_TSO4 7,
        # HOST_TSO4 11, MRG_RXBUF 15, VERSION_1 32.
        printf '%s\r' 'n=$(grep -l '"$mac"' /sys/class/net/*/address | cut -d/ -f5); p=$(readlink -f /sys/class/net/$n/device); f=$p/features; ip link set $n up; ip addr add 10.0.2.2/24 dev $n; echo VNET if=${n:-none} drv=$(basename "$(readlink $p/driver)") pci=$(cat $p/../vendor):$(cat $p/../device) v1=$(cut -c33 $f) csum=$(cut -c1 $f) gcsum=$(cut -c2 $f) tso4=$(cut -c12 $f) gtso4=$(cut -c8 $f) mrg=$(cut -c16 $f) msi=$(ls $p/../msi_irqs | wc -l) end' >&3
        answer='VNET if=[^ $]+ drv=[^ $]* pci=[^ $]* v1=[0-9]* csum=[0-9]* gcsum=[0-9]* tso4=[0-9]* gtso4=[0-9]* mrg=[0-9]* msi=[0-9]+ end'
        if wait_serial "$log" "$answer" 1 60 $vpid "pc-virtio-net nic"; then
            nic=$(plain "$log" | grep -aoE "$answer" | tail -n 1)
            echo "E2E-INFO pc-virtio-net guest: $nic"
            case $nic in
            *" drv=virtio_net pci=0x1af4:"*" v1=1 "*) ;;
            *) REASON="the NIC with MAC $mac is not a virtio 1.x virtio_net device: $nic" ;;
            esac
        fi
        if [ -n "$nic" ] && [ -z "$REASON" ]; then
            sleep 1
            printf '%s\r' 'ping -c 3 -W 2 10.0.2.1 >/tmp/ping.out 2>&1; echo GPING rc=$? $(grep -E "transmitted|rtt" /tmp/ping.out | tr "\n" " ")end' >&3
            if wait_serial "$log" 'GPING rc=[0-9]+ .*end' 1 60 $vpid "pc-virtio-net guest ping"; then
                gping=$(plain "$log" | grep -aoE 'GPING rc=[0-9]+ .*end' | tail -n 1)
                echo "E2E-INFO pc-virtio-net guest -> L1: ${gping% end}"
                case $gping in
                "GPING rc=0 "*) ;;
                *) REASON="guest ping 10.0.2.1 failed: $gping" ;;
                esac
            fi
            ping -c 3 -W 2 10.0.2.2 >"$d/ping.out" 2>&1
            prc=$?
            hping=$(grep -E 'transmitted|round-trip' "$d/ping.out" | tr '\n' ' ')
            echo "E2E-INFO pc-virtio-net L1 -> guest: rc=$prc $hping"
            [ $prc = 0 ] || REASON="${REASON:+$REASON; }L1 ping 10.0.2.2 failed: $(tail -n 3 "$d/ping.out" | tr '\n' ' ')"
        fi
        if [ -n "$gping" ] && [ -z "$REASON" ]; then
            # L1 -> guest: nc sends the file and half-closes; dd reads to EOF.
            $nc -l -p 5000 <"$d/tx" >/dev/null 2>"$d/nc0.err" &
            ncpid=$!
            sleep 1
            printf '%s\r' 's=$(date +%s%N); dd bs=1M </dev/tcp/10.0.2.1/5000 2>/tmp/rx.dd | sha256sum >/tmp/rx.sum; e=$(date +%s%N); echo RX""DONE sum=$(cut -c1-64 /tmp/rx.sum) bytes=$(grep -o "^[0-9]* bytes" /tmp/rx.dd | cut -d" " -f1) ns=$((e-s)) end' >&3
            answer='RXDONE sum=[0-9a-f]* bytes=[0-9]* ns=[0-9]+ end'
            if wait_serial "$log" "$answer" 1 "$xtmo" $vpid "pc-virtio-net L1 -> guest $mib MiB"; then
                rx=$(plain "$log" | grep -aoE "$answer" | tail -n 1)
                # shellcheck disable=SC2086 # its words
                set -- $rx
                rsum=${2#sum=} rbytes=${3#bytes=} rns=${4#ns=}
                rxrate=$(mibps $bytes "$rns")
                echo "E2E-INFO pc-virtio-net L1 -> guest: $rbytes bytes in $(awk -v ns="$rns" 'BEGIN { printf "%.2f", ns / 1e9 }') s: $rxrate MiB/s"
                [ "$rsum" = "$txsum" ] && [ "$rbytes" = "$bytes" ] ||
                    REASON="L1 -> guest: the guest got $rbytes bytes with sha256 $rsum; L1 sent $bytes bytes with $txsum"
            else
                rx=''
            fi
            stop_nc $ncpid
        fi
        if [ -n "$rx" ] && [ -z "$REASON" ]; then
            printf '%s\r' 'head -c '"$bytes"' /dev/urandom >/dev/shm/tx && sha256sum /dev/shm/tx >/tmp/tx.sum; echo TX""SUM $(cut -c1-64 /tmp/tx.sum) end' >&3
            answer='TXSUM [0-9a-f]* end'
            if wait_serial "$log" "$answer" 1 300 $vpid "pc-virtio-net guest file"; then
                gsum=$(plain "$log" | grep -aoE "$answer" | tail -n 1 | cut -d' ' -f2)
                $nc -l -p 5001 </dev/null >"$d/rx" 2>"$d/nc1.err" &
                ncpid=$!
                sleep 1
                printf '%s\r' 's=$(date +%s%N); cat /dev/shm/tx >/dev/tcp/10.0.2.1/5001; r=$?; e=$(date +%s%N); rm -f /dev/shm/tx; echo TX""DONE rc=$r ns=$((e-s)) end' >&3
                answer='TXDONE rc=[0-9]+ ns=[0-9]+ end'
                if wait_serial "$log" "$answer" 1 "$xtmo" $vpid "pc-virtio-net guest -> L1 $mib MiB"; then
                    tx=$(plain "$log" | grep -aoE "$answer" | tail -n 1)
                    # shellcheck disable=SC2086 # its words
                    set -- $tx
                    trc=${2#rc=} tns=${3#ns=}
                    # nc ends when the guest's close arrives.
                    _i=0
                    while kill -0 $ncpid 2>/dev/null && [ $_i -lt 300 ]; do
                        sleep 0.1
                        _i=$((_i + 1))
                    done
                    stop_nc $ncpid
                    hbytes=$(wc -c <"$d/rx" | tr -d ' ')
                    hsum=$(sha256sum "$d/rx" | cut -c1-64)
                    txrate=$(mibps $bytes "$tns")
                    echo "E2E-INFO pc-virtio-net guest -> L1: $hbytes bytes in $(awk -v ns="$tns" 'BEGIN { printf "%.2f", ns / 1e9 }') s: $txrate MiB/s"
                    if [ "$trc" != 0 ]; then
                        REASON="guest -> L1: the guest's cat to /dev/tcp failed (status $trc)"
                    elif [ "$hsum" != "$gsum" ] || [ "$hbytes" != "$bytes" ]; then
                        REASON="guest -> L1: L1 got $hbytes bytes with sha256 $hsum; the guest sent $bytes bytes with $gsum"
                    else
                        ok=1
                    fi
                else
                    tx=''
                    stop_nc $ncpid
                fi
            fi
        fi
        [ -n "$ok" ] || vnet_fail
    fi
    [ -n "$ok" ] && printf 'systemctl poweroff\r' >&3
    t1=$(now) _i=0
    while [ -n "$ok" ] && kill -0 $vpid 2>/dev/null && [ $_i -lt 240 ]; do
        sleep 0.5
        _i=$((_i + 1))
    done
    alive='' t2=$(now)
    if kill -0 $vpid 2>/dev/null; then
        alive=1
        [ -n "$ok" ] || dump $vpid "$d/screen"
        stop $vpid
    fi
    wait $vpid
    rc=$?
    exec 3>&-
    rm -f "$d/tx" "$d/rx"
    ip link del $tap 2>/dev/null
    grep -iE 'warn|error' "$d/err" | head -n 10 | sed 's/^/E2E-GUEST-WARN pc-virtio-net vmm: /'
    grep -o 'vhost-net serves .*' "$d/err" | head -n 3 | sed 's/^/E2E-INFO pc-virtio-net vmm: /'
    if [ -z "$ok" ]; then
        REASON=${REASON:-failed}
        show "$log" 60
        show "$d/err" 30
        echo "---- VGA text screen (pc-virtio-net) ----"
        grep -v '^$' "$d/screen.txt" 2>/dev/null | head -n 25 | sed 's/^/  | /'
        echo "---- end ----"
        return 1
    fi
    if [ -n "$alive" ]; then
        echo "E2E-GUEST-WARN pc-virtio-net: the guest did not power off within 120 s of systemctl poweroff"
    elif [ "$rc" != 0 ]; then
        echo "E2E-GUEST-WARN pc-virtio-net: vmm exit status $rc after systemctl poweroff, expected 0"
    fi
    echo "E2E-TIME pc-virtio-net total_s=$(since "$t0") poweroff_to_exit_s=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", b - a }')"
    case $nic in *" msi=0 "*) echo "E2E-GUEST-WARN pc-virtio-net: no MSI-X vectors in use (INTx): $nic" ;; esac
    nic=${nic#VNET }
    gping=${gping#GPING rc=0 }
    NOTE="virtio-net via ${path#data path: }, ${nic% end}; ping both ways (guest: ${gping% end}; L1: ${hping% }); $mib MiB each way with equal sha256 (L1 -> guest $rxrate MiB/s, guest -> L1 $txrate MiB/s, guest clock)"
}

# The Debian image on a virtio-blk disk (virtio 1.x PCI, MSI-X) through a qcow2 overlay:
# SeaBIOS boots it, / is /dev/vda* under the virtio_blk driver; `systemctl reboot`, twice,
# boots it again in the same vmm process (its VmRSS at each boot is reported, not judged); then a
# file written and synced must be in the image after the vmm is SIGKILLed, and `qemu-img
# check` must be clean. Last in the list: no guest boots in this L1 after the kill.
sc_pc_virtio_blk() {
    d=$WORK/virtio
    mkdir -p "$d"
    command -v qemu-img >/dev/null || { REASON="no qemu-img in this host"; return 1; }
    qemu-img create -q -f qcow2 -b "$PC_DISK" -F raw "$d/disk.qcow2" ||
        { REASON="qemu-img create failed"; return 1; }
    mkfifo "$d/in"
    exec 3<>"$d/in"
    log=$d/serial.log tmo=${PC_DEBIAN_TIMEOUT:-480}
    token=$$-$(od -An -N4 -tu4 /dev/urandom | tr -dc 0-9)
    : >"$log"
    t0=$(now)
    RUST_LOG=info "$VMM" --disk "$d/disk.qcow2",bus=virtio,format=qcow2 --memory "${PC_GUEST_MEM:-512M}" \
        --serial stdio --screen-dump "$d/screen" <"$d/in" >"$log" 2>"$d/err" &
    vpid=$!
    # The disk as the guest sees it. The echoed command line does not match the answer's
    # pattern ($(...) where the answer has values).
    # shellcheck disable=SC2016 # expanded by the guest's shell
    vcheck='p=$(readlink -f /sys/block/vda/device); echo VBLK root=$(findmnt -no SOURCE /) drv=$(ls /sys/bus/virtio/drivers/virtio_blk | grep -c virtio) v1=$(cut -c33 $p/features) pci=$(cat $p/../vendor):$(cat $p/../device) msi=$(ls $p/../msi_irqs | wc -l) end'
    answer='VBLK root=[^ $]* drv=[0-9]+ v1=[0-9]* pci=[^ $]* msi=[0-9]+ end'
    # check_disk N: the Nth answer to vcheck must show / on vda under virtio_blk, VERSION_1.
    check_disk() {
        printf '%s\r' "$vcheck" >&3
        wait_serial "$log" "$answer" "$1" 30 "$vpid" "pc-virtio-blk disk check $1" || return 1
        disk=$(plain "$log" | grep -aoE "$answer" | tail -n 1)
        case $disk in
        "VBLK root=/dev/vda"*" drv="[1-9]*" v1=1 pci=0x1af4:"*) ;;
        *) REASON="boot $1: not / on a virtio 1.x vda: $disk"; return 1 ;;
        esac
    }
    ok='' rss1='' rss2='' rss3='' ov1='' ov2='' ov3=''
    ram_kib=$(($(echo "${PC_GUEST_MEM:-512M}" | tr -d 'M') * 1024))
    # Two guest reboots in the same vmm process (its VmRSS read at each shell), then the
    # durability check.
    if debian_login pc-virtio-blk 1 && check_disk 1; then
        rss1=$(vmrss $vpid) ov1=$(overhead $vpid $ram_kib) t1=$(now)
        printf 'systemctl reboot\r' >&3
        if debian_login pc-virtio-blk 2 && check_disk 2; then
            rss2=$(vmrss $vpid) ov2=$(overhead $vpid $ram_kib)
            echo "E2E-TIME pc-virtio-blk reboot_to_shell_s=$(since "$t1")"
            t1=$(now)
            printf 'systemctl reboot\r' >&3
            if debian_login pc-virtio-blk 3 && check_disk 3; then
                rss3=$(vmrss $vpid) ov3=$(overhead $vpid $ram_kib)
                echo "E2E-INFO pc-virtio-blk largest mappings beyond guest RAM at boot 3 (KiB): $(overhead_parts $vpid $ram_kib)"
                echo "E2E-TIME pc-virtio-blk reboot2_to_shell_s=$(since "$t1")"
                echo "E2E-INFO pc-virtio-blk vmm pid $vpid (same process) VmRSS at boots 1, 2, 3: ${rss1:-?}, ${rss2:-?}, ${rss3:-?} KiB; beyond guest RAM: ${ov1:-?}, ${ov2:-?}, ${ov3:-?} KiB"
                printf 'echo vproof-%s >/root/vproof && sync && echo SYNC""ED-OK\r' "$token" >&3
                wait_serial "$log" 'SYNCED-OK' 1 60 $vpid "pc-virtio-blk sync" && ok=1
            fi
        fi
    fi
    # The guest's sync has returned: SIGKILL now, no flush on the way out.
    [ -n "$ok" ] || dump $vpid "$d/screen"
    kill -KILL $vpid 2>/dev/null
    wait $vpid
    exec 3>&-
    if [ -z "$ok" ]; then
        show "$log" 40
        show "$d/err" 20
        echo "---- VGA text screen (pc-virtio-blk) ----"
        grep -v '^$' "$d/screen.txt" 2>/dev/null | head -n 25 | sed 's/^/  | /'
        echo "---- end ----"
        return 1
    fi
    echo "E2E-TIME pc-virtio-blk total_s=$(since "$t0")"
    # A leak per boot (devices, buffers, threads made again) shows here; 16 MiB is far above
    # the noise of allocator caches.
    if [ -n "$ov1" ] && [ -n "$ov3" ] && [ $((ov3 - ov1)) -gt 16384 ]; then
        REASON="the vmm's memory beyond guest RAM grew across two reboots: ${ov1} -> ${ov2} -> ${ov3} KiB"
        return 1
    fi
    case $disk in *" msi=0 "*) echo "E2E-GUEST-WARN pc-virtio-blk: no MSI-X vectors in use (INTx): $disk" ;; esac
    qemu-img check "$d/disk.qcow2" >"$d/check.out" 2>&1
    rc=$?
    if [ $rc != 0 ]; then
        REASON="qemu-img check after SIGKILL: status $rc (2: corrupt, 3: leaked clusters): $(grep -v '^$' "$d/check.out" | head -n 4 | tr '\n' ' ' | head -c 300)"
        return 1
    fi
    # The synced file must be reachable through the overlay's own cluster mapping (a data
    # cluster the vmm wrote but did not map would still be in the file): copied without the
    # backing image, the overlay's data is small enough to search (NULs dropped: busybox
    # grep -F stops at one).
    if ! qemu-img convert -O qcow2 "json:{\"driver\":\"qcow2\",\"backing\":null,\"file\":{\"driver\":\"file\",\"filename\":\"$d/disk.qcow2\"}}" \
        "$d/top.qcow2" >"$d/convert.out" 2>&1; then
        REASON="qemu-img convert of the overlay failed: $(head -c 300 "$d/convert.out")"
        return 1
    fi
    if ! tr -d '\000' <"$d/top.qcow2" | grep -Fq "vproof-$token"; then
        REASON="/root/vproof (written, synced) is not in the image after SIGKILL"
        return 1
    fi
    alloc=$(qemu-img info "$d/disk.qcow2" | sed -n 's/^disk size: //p')
    disk=${disk#VBLK }
    NOTE="virtio-blk ${disk% end} in all three boots, two systemctl reboots in the same vmm (VmRSS ${rss1:-?} -> ${rss2:-?} -> ${rss3:-?} KiB, beyond guest RAM ${ov1:-?} -> ${ov2:-?} -> ${ov3:-?} KiB), synced file in the qcow2 after SIGKILL (grew to $alloc), qemu-img check clean"
}

# Direct kernel boot (the direct machine: no firmware, the vmm loads the kernel and writes the
# ACPI tables, PCI devices placed by the vmm) with root on virtio-blk: the Debian image's own
# kernel and initramfs, copied from its /boot, boot it from a qcow2 overlay on a virtio disk
# (Debian's initramfs loads virtio_pci, virtio_blk and ext4 and mounts root=/dev/vda1) to the
# login prompt on ttyS0; / must be /dev/vda1 under virtio_blk; then a reboot in the same vmm
# (the machine reset in place: the kernel and tables loaded again) and poweroff (exit 0).
sc_direct_virtio_root() {
    d=$WORK/direct-root
    mkdir -p "$d/mnt"
    command -v qemu-img >/dev/null || { REASON="no qemu-img in this host"; return 1; }
    mount -t ext4 -o ro "$PC_DISK_PART" "$d/mnt" 2>"$d/mount.err" ||
        { REASON="cannot mount $PC_DISK_PART: $(head -c 200 "$d/mount.err")"; return 1; }
    k='' i=''
    for f in "$d/mnt"/boot/vmlinuz-*; do [ -f "$f" ] && k=$f; done
    for f in "$d/mnt"/boot/initrd.img-*; do [ -f "$f" ] && i=$f; done
    [ -n "$k" ] && [ -n "$i" ] && cp "$k" "$d/vmlinuz" && cp "$i" "$d/initrd"
    got=$?
    umount "$d/mnt"
    [ "$got" = 0 ] || { REASON="no kernel and initramfs in the image's /boot (${k:-no vmlinuz}, ${i:-no initrd})"; return 1; }
    qemu-img create -q -f qcow2 -b "$PC_DISK" -F raw "$d/disk.qcow2" ||
        { REASON="qemu-img create failed"; return 1; }
    mkfifo "$d/in"
    exec 3<>"$d/in"
    log=$d/serial.log tmo=${PC_DEBIAN_TIMEOUT:-480}
    : >"$log"
    t0=$(now)
    RUST_LOG=info "$VMM" --kernel "$d/vmlinuz" --initramfs "$d/initrd" \
        --cmdline "root=/dev/vda1 ro console=ttyS0,115200" --disk "$d/disk.qcow2,bus=virtio,format=qcow2" \
        --memory "${PC_GUEST_MEM:-512M}" --serial stdio <"$d/in" >"$log" 2>"$d/err" &
    vpid=$!
    # shellcheck disable=SC2016 # expanded by the guest's shell
    rcheck='echo DROOT root=$(findmnt -no SOURCE /) drv=$(basename $(readlink -f /sys/block/vda/device/driver)) end'
    answer='DROOT root=[^ $]* drv=[^ $]* end'
    root_check() { # N
        printf '%s\r' "$rcheck" >&3
        wait_serial "$log" "$answer" "$1" 30 "$vpid" "direct-virtio-root check $1" || return 1
        root=$(plain "$log" | grep -aoE "$answer" | tail -n 1)
        [ "$root" = "DROOT root=/dev/vda1 drv=virtio_blk end" ] ||
            { REASON="boot $1: / is not /dev/vda1 on virtio_blk: $root"; return 1; }
    }
    ok=''
    if debian_login direct-virtio-root 1 && root_check 1; then
        t1=$(now)
        printf 'systemctl reboot\r' >&3
        if debian_login direct-virtio-root 2 && root_check 2; then
            echo "E2E-TIME direct-virtio-root reboot_to_shell_s=$(since "$t1")"
            printf 'systemctl poweroff\r' >&3
            ok=1
        fi
    fi
    if [ -z "$ok" ]; then
        kill -KILL $vpid 2>/dev/null
        wait $vpid
        exec 3>&-
        show "$log" 40
        show "$d/err" 20
        return 1
    fi
    _w=0
    while kill -0 $vpid 2>/dev/null && [ $_w -lt 120 ]; do
        sleep 1
        _w=$((_w + 1))
    done
    kill -0 $vpid 2>/dev/null && { stop $vpid; REASON="the vmm did not exit within 120 s of poweroff"; }
    wait $vpid
    rc=$?
    exec 3>&-
    [ -z "$REASON" ] || return 1
    [ "$rc" = 0 ] || { REASON="vmm exit status $rc after poweroff, expected 0"; show "$d/err" 20; return 1; }
    echo "E2E-TIME direct-virtio-root total_s=$(since "$t0")"
    NOTE="Debian's kernel and initramfs booted directly, root=/dev/vda1 on virtio_blk (qcow2 overlay) at both boots, systemctl reboot in the same vmm, poweroff exit 0"
}

PASSED=0 FAILED=0
echo "E2E-INFO vmm=$VMM disk=$PC_DISK iso=$PC_ISO scenarios: $SELECTED"
for SC in $SELECTED; do
    REASON='' NOTE=''
    echo "E2E-START $SC"
    case " $PC_SCENARIOS " in
    *" $SC "*) "sc_$(echo "$SC" | tr '-' '_')" ;;
    *) REASON="unknown scenario"; false ;;
    esac
    if [ $? = 0 ]; then
        PASSED=$((PASSED + 1))
        echo "E2E-RESULT $SC PASS ${NOTE:-ok}"
    else
        FAILED=$((FAILED + 1))
        echo "E2E-RESULT $SC FAIL ${REASON:-failed}"
    fi
done
rm -rf "$WORK"
echo "E2E-SUMMARY pc: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
