#!/bin/sh
# tests/testhost/check-images-l1.sh - L1 scenario of check-images.sh (busybox sh, runs in L1).
#
# Boots the SeaBIOS PC fixtures with QEMU (-enable-kvm -cpu host -M pc) inside the L1 test
# host and prints markers on the L1 console:
#   CHECK-TIME <name> <seconds>        milestones, seconds since that QEMU was started
#   CHECK-RESULT <disk|iso> PASS|FAIL [reason]
# Order: iso, then disk.
# disk: /dev/vda (the Debian image, via a qcow2 overlay of the outer QEMU) as an IDE disk;
#   waits for "vmm-guest login:" on the serial port, logs in as root/root, runs
#   "echo hello > /root/proof; sync; systemctl poweroff", waits for QEMU to exit, then mounts
#   /dev/vda1 read-only and checks /root/proof.
# iso: /guest/grub-rescue-cdrom.iso with -cdrom; it shows a GRUB menu (no timeout) on VGA only,
#   so the VGA text buffer (0xb8000) is read with the monitor's pmemsave until "GNU GRUB" shows,
#   then 'c' is pressed (monitor sendkey) and the check waits for the "grub>" prompt.
# Environment (l1env): CHECK_ONLY=disk|iso   one check only
#                      CHECK_DISK_TIMEOUT=900 CHECK_ISO_TIMEOUT=180   seconds
#                      CHECK_GUEST_MEM=1024   MiB of the disk guest
#                      CHECK_DISK_IF=ide      QEMU if= of the disk guest (ide, virtio, ...)
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

now() { read -r _up _ </proc/uptime; echo "$_up"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
elapsed_ge() { awk -v a="$1" -v b="$(now)" -v t="$2" 'BEGIN { exit !(b - a >= t) }'; }
show_tail() { # show_tail FILE N: the guest output, readable
    echo "---- last $2 lines of $1 ----"
    tr -d '\r' <"$1" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' | tail -n "$2"
    echo "---- end ----"
}

show_l2() { # show_l2 FILE: the whole guest serial output, prefixed "L2| ", progress lines dropped
    echo "---- L2 serial console (disk guest) ----"
    tr -d '\r' <"$1" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' | grep -av 'running (.*/ no limit)' |
        sed 's/^/L2| /'
    echo "---- end ----"
}

check_disk() {
    tmo=${CHECK_DISK_TIMEOUT:-900}
    if [ ! -b /dev/vda ]; then
        echo "CHECK-RESULT disk FAIL no /dev/vda in L1 (virtio_blk loaded? disk passed?)"
        return
    fi
    d=/tmp/disk
    mkdir -p $d
    mkfifo $d/ser.in $d/ser.out
    log=$d/serial.log
    : >$log
    cat $d/ser.out >>$log &
    catpid=$!
    t0=$(now)
    qemu-system-x86_64 -enable-kvm -cpu host -M pc -m "${CHECK_GUEST_MEM:-1024}" -smp 1 \
        -drive file=/dev/vda,format=raw,if="${CHECK_DISK_IF:-ide}",cache=none \
        -serial pipe:$d/ser -display none -vga std -nic none -no-reboot >$d/qemu.log 2>&1 &
    qpid=$!
    exec 3<>$d/ser.in
    step=wait-login seen_grub='' seen_linux='' rc=''
    while :; do
        if ! kill -0 $qpid 2>/dev/null; then
            wait $qpid
            rc=$?
            break
        fi
        if elapsed_ge "$t0" "$tmo"; then
            echo "CHECK-RESULT disk FAIL timeout after ${tmo}s in step $step"
            show_l2 $log
            cat $d/qemu.log
            kill $qpid
            sleep 2
            kill -9 $qpid 2>/dev/null
            kill $catpid 2>/dev/null
            exec 3>&-
            return
        fi
        if [ -z "$seen_grub" ] && grep -aq 'GNU GRUB' $log; then
            seen_grub=1
            echo "CHECK-TIME disk-grub-menu $(since "$t0")"
        fi
        if [ -z "$seen_linux" ] && grep -aq 'Linux version' $log; then
            seen_linux=1
            echo "CHECK-TIME disk-kernel-start $(since "$t0")"
        fi
        case $step in
        wait-login)
            if grep -aq 'vmm-guest login:' $log; then
                echo "CHECK-TIME disk-login-prompt $(since "$t0")"
                sleep 1
                printf 'root\r' >&3
                step=wait-password
            fi
            ;;
        wait-password)
            if grep -aq 'Password:' $log; then
                sleep 1
                printf 'root\r' >&3
                step=wait-shell
            fi
            ;;
        wait-shell)
            if grep -aq 'root@vmm-guest:~#' $log; then
                echo "CHECK-TIME disk-shell $(since "$t0")"
                printf 'echo hello > /root/proof; sync; systemctl poweroff\r' >&3
                step=wait-poweroff
            elif grep -aq 'Login incorrect' $log; then
                echo "CHECK-RESULT disk FAIL login incorrect"
                show_tail $log 30
                step=login-failed
                kill $qpid
            fi
            ;;
        esac
        sleep 0.3
    done
    exec 3>&-
    kill $catpid 2>/dev/null
    echo "CHECK-TIME disk-qemu-exit $(since "$t0")"
    show_l2 $log
    [ "$step" = login-failed ] && return
    if [ "$step" != wait-poweroff ]; then
        echo "CHECK-RESULT disk FAIL QEMU exited (status $rc) in step $step"
        show_tail $log 60
        cat $d/qemu.log
        return
    fi
    mkdir -p /mnt
    if ! mount -t ext4 -o ro /dev/vda1 /mnt; then
        echo "CHECK-RESULT disk FAIL cannot mount /dev/vda1 read-only"
        return
    fi
    proof=$(cat /mnt/root/proof 2>/dev/null)
    umount /mnt
    if [ "$proof" = hello ]; then
        echo "CHECK-RESULT disk PASS login ok, /root/proof written, clean poweroff (QEMU status $rc)"
    else
        echo "CHECK-RESULT disk FAIL /root/proof is '$proof', not 'hello'"
        show_tail $log 40
    fi
}

# vga_text FILE: the characters of a VGA text-mode buffer dump (80 columns), one row a line.
vga_text() {
    od -An -v -tu1 "$1" | awk '
        { for (i = 1; i <= NF; i++) { n++; if (n % 2 == 1) {
            c = $i; line = line (c >= 32 && c < 127 ? sprintf("%c", c) : " ")
            if (length(line) == 80) { sub(/ +$/, "", line); print line; line = "" } } } }'
}

check_iso() {
    tmo=${CHECK_ISO_TIMEOUT:-180}
    iso=/guest/grub-rescue-cdrom.iso
    if [ ! -f $iso ]; then
        echo "CHECK-RESULT iso FAIL $iso not in this L1"
        return
    fi
    d=/tmp/iso
    mkdir -p $d
    mkfifo $d/mon.in $d/mon.out
    : >$d/mon.log
    cat $d/mon.out >>$d/mon.log &
    catpid=$!
    t0=$(now)
    # run in $d: pmemsave gets a file name without "/" (the monitor would parse "4000 /tmp/..."
    # as a division)
    (cd $d && exec qemu-system-x86_64 -enable-kvm -cpu host -M pc -m 256 -smp 1 -cdrom $iso \
        -boot d -display none -vga std -nic none -serial file:serial.log -monitor pipe:mon \
        -no-reboot >qemu.log 2>&1) &
    qpid=$!
    exec 4<>$d/mon.in
    # stage menu: wait for the GRUB menu; then press 'c' (monitor sendkey) and wait for grub>
    stage=menu ok=''
    n=0
    while kill -0 $qpid 2>/dev/null && ! elapsed_ge "$t0" "$tmo"; do
        sleep 1
        n=$((n + 1))
        rm -f $d/vga.bin
        echo "pmemsave 0xb8000 4000 vga.bin" >&4
        i=0
        while [ ! -s $d/vga.bin ] && [ $i -lt 20 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        [ -s $d/vga.bin ] || continue
        # pmemsave may still be writing: give it a moment before reading
        sleep 0.1
        if [ $stage = menu ] && vga_text $d/vga.bin | grep -q 'GNU GRUB'; then
            echo "CHECK-TIME iso-grub-menu $(since "$t0")"
            echo "sendkey c" >&4
            stage=prompt
        elif [ $stage = prompt ] && vga_text $d/vga.bin | grep -q 'grub>'; then
            ok=1
            echo "CHECK-TIME iso-grub-prompt $(since "$t0")"
            break
        fi
    done
    echo "---- VGA text screen of the grub-rescue CD ----"
    [ -s $d/vga.bin ] && vga_text $d/vga.bin | grep -v '^$'
    echo "---- end ----"
    echo quit >&4
    i=0
    while kill -0 $qpid 2>/dev/null && [ $i -lt 50 ]; do
        sleep 0.2
        i=$((i + 1))
    done
    kill -9 $qpid 2>/dev/null
    exec 4>&-
    kill $catpid 2>/dev/null
    if [ -n "$ok" ]; then
        echo "CHECK-RESULT iso PASS GRUB menu, then the grub> prompt after 'c', on the VGA text screen"
    else
        echo "CHECK-RESULT iso FAIL stage $stage not passed within ${tmo}s ($n polls of the VGA text screen)"
        cat $d/qemu.log
    fi
}

for m in virtio_blk ext4; do
    grep -q "^$m " /proc/modules || echo "CHECK-NOTE module $m not loaded"
done
case ${CHECK_ONLY:-} in
disk) check_disk ;;
iso) check_iso ;;
*)
    # the small, quick guest first: a hung disk guest then still leaves the ISO result
    check_iso
    check_disk
    ;;
esac
