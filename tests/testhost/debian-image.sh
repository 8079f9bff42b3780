#!/usr/bin/env bash
# tests/testhost/debian-image.sh - build the Debian 12 BIOS disk image of the SeaBIOS PC tests.
#
# Usage: tests/testhost/debian-image.sh        (root; no stdin needed; prints the image path)
#
# Output, cached under $REPO/.cache/images/ (git-ignored):
#   debian12.raw             3 GiB sparse raw disk: MBR partition table, one bootable ext4
#                            partition (type 83, from sector 2048) holding Debian 12 (bookworm);
#                            GRUB (i386-pc) in the MBR and the post-MBR gap.
#   debian12.raw.stamp       hash of this script and the rootfs inputs; the image is rebuilt
#                            only when it is missing or the stamp differs.
#   debian12.raw.info        facts about the image (root UUID, kernel version, sizes).
#   debian12-rootfs-<k>.tar.zst  the debootstrap result, cached so a rebuild skips debootstrap
#                            (<k>: hash of suite, mirror, variant and package list).
# Raw, not qcow2: the project's own VMM reads raw images without a qcow2 driver, losetup needs
# raw, and QEMU can still put a throwaway qcow2 overlay on it (qemu-img create -b ... -F raw).
#
# The guest: root password "root", hostname vmm-guest, /etc/fstab by UUID, serial getty on
# ttyS0, kernel command line "console=tty0 console=ttyS0,115200", GRUB menu on console and
# serial (115200 8N1) with a 2 s timeout, a small initramfs (MODULES=list: ata_piix, ata_generic,
# pata_acpi, ahci, sd_mod, sr_mod, virtio_blk, virtio_pci, virtio_scsi, nvme, ext4; the first six
# are checked to be in it).
#
# Needs loop devices (losetup -f) and mount/chroot rights. Host packages (debootstrap, fdisk,
# e2fsprogs, zstd, ...) are installed with apt-get when missing.
#
# Environment: DEBIAN_MIRROR=url     debootstrap mirror (default: the first .../debian URI in
#                                    the host's apt sources, else http://deb.debian.org/debian)
#              IMAGES_CACHE=dir      output directory (default $REPO/.cache/images)
#              IMAGE_SIZE=3G         disk size (2G..4G is what the tests expect)
#              IMAGE_REBUILD=1       rebuild the image even if the stamp matches
set -euo pipefail
# shellcheck source=tests/testhost/lib.sh
source "$(dirname "$0")/lib.sh"

IMAGES=${IMAGES_CACHE:-$REPO/.cache/images}
IMG=$IMAGES/debian12.raw
SIZE=${IMAGE_SIZE:-3G}
SUITE=bookworm
VARIANT=minbase
# minbase brings login, passwd, util-linux (agetty), e2fsprogs, apt; the rest is added here.
# dbus: systemd-logind needs it to act on the ACPI power button; isc-dhcp-client for ifupdown;
# fio and iperf3 for the disk and network benchmarks (tests/bench/), iputils-ping for tests.
INCLUDE=systemd-sysv,udev,kmod,initramfs-tools,linux-image-amd64,grub-pc,ifupdown,iproute2,e2fsprogs,procps,dbus,isc-dhcp-client,fio,iperf3,iputils-ping
# Modules the BIOS-disk tests need from the initramfs (disk on IDE/ATA, SCSI CD, virtio).
NEED_MODULES="ata_piix ata_generic sd_mod sr_mod virtio_blk virtio_pci"
# The initramfs module list (MODULES=list; dependencies are added by initramfs-tools).
INITRD_MODULES="$NEED_MODULES ext4 crc32c_generic pata_acpi ahci virtio_scsi nvme"

[[ $(id -u) == 0 ]] || die "must run as root (debootstrap, losetup, mount, chroot)"
ensure_pkgs debootstrap:debootstrap sfdisk:fdisk mkfs.ext4:e2fsprogs blkid:util-linux \
    losetup:mount partx:util-linux zstd:zstd sha256sum:coreutils

mirror() {
    local m
    if [[ -n ${DEBIAN_MIRROR:-} ]]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    m=$(
        {
            grep -hsE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources | sed 's/^[[:space:]]*URIs://'
            grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
                sed -E 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{ print $1 }'
        } | tr ' ' '\n' | grep -E '^https?://[^ ]+/debian/?$' | head -n1
    ) || true
    echo "${m:-http://deb.debian.org/debian}"
}
MIRROR=$(mirror)

mkdir -p "$IMAGES"
rootfs_key=$(printf '%s\n' "$SUITE" "$VARIANT" "$INCLUDE" "${MIRROR%/}" | sha256sum | cut -c1-16)
ROOTFS_TAR=$IMAGES/debian12-rootfs-$rootfs_key.tar.zst
stamp=$( (cat "$0" "$TESTHOST_DIR/lib.sh" && echo "$rootfs_key $SIZE") | sha256sum | cut -d' ' -f1)

# One build at a time (suites and benchmarks may start side by side): a second caller waits
# here and then finds the image the first one built.
exec 9>"$IMAGES/.build.lock"
flock 9
if [[ -f $IMG && -f $IMG.stamp && $(cat "$IMG.stamp") == "$stamp" && -z ${IMAGE_REBUILD:-} ]]; then
    log "cached: $IMG"
    echo "$IMG"
    exit 0
fi

# ---- cleanup on every exit path ---------------------------------------------------------
WORK=$(mktemp -d "$IMAGES/.work.XXXXXX")
MNT=$WORK/mnt
LOOP=
cleanup() {
    local rc=$?
    set +e
    if [[ -d $MNT ]]; then
        # innermost first (dev/pts before dev)
        for m in "$MNT/dev/pts" "$MNT/dev" "$MNT/proc" "$MNT/sys" "$MNT/run" "$MNT"; do
            mountpoint -q "$m" && { umount "$m" || umount -l "$m"; }
        done
    fi
    [[ -d $WORK/rootfs ]] && for m in proc sys dev/pts dev; do
        mountpoint -q "$WORK/rootfs/$m" && umount -l "$WORK/rootfs/$m"
    done
    [[ -n $LOOP ]] && losetup -d "$LOOP"
    rm -rf "$WORK"
    rm -f "$IMG.tmp"
    ((rc == 0)) || log "failed (status $rc); cleaned up mounts and loop devices"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---- loop devices: check before the long debootstrap ------------------------------------
if [[ ! -e /dev/loop-control ]] || ! losetup -f >/dev/null 2>&1; then
    die "loop devices are unavailable here (no /dev/loop-control or 'losetup -f' fails): in a" \
        "container, run it privileged (docker --privileged) or give it /dev/loop-control and" \
        "/dev/loopN; the image cannot be built without them"
fi

# ---- rootfs (debootstrap), cached as a tarball ------------------------------------------
if [[ -f $ROOTFS_TAR ]]; then
    log "rootfs: cached $ROOTFS_TAR"
else
    log "rootfs: debootstrap --variant=$VARIANT $SUITE from $MIRROR (a few minutes)"
    t0=$(date +%s)
    rfs=$WORK/rootfs
    export DEBIAN_FRONTEND=noninteractive
    if ! debootstrap --variant="$VARIANT" --include="$INCLUDE" "$SUITE" "$rfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
        tail -n 40 "$WORK/debootstrap.log" | sed 's/^/    | /' >&2
        [[ -f $rfs/debootstrap/debootstrap.log ]] && tail -n 40 "$rfs/debootstrap/debootstrap.log" | sed 's/^/    | /' >&2
        die "debootstrap failed"
    fi
    rm -f "$rfs"/var/cache/apt/archives/*.deb
    tar -C "$rfs" --numeric-owner --xattrs --acls -cf - . | zstd -q -T0 -3 -o "$ROOTFS_TAR.tmp"
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$rfs"
    # drop rootfs tarballs of other inputs
    find "$IMAGES" -maxdepth 1 -name 'debian12-rootfs-*.tar.zst' ! -name "${ROOTFS_TAR##*/}" -delete
    log "rootfs: $ROOTFS_TAR ($(du -m "$ROOTFS_TAR" | cut -f1) MiB) in $(($(date +%s) - t0)) s"
fi

# ---- disk: MBR, one ext4 partition ------------------------------------------------------
t0=$(date +%s)
rm -f "$IMG.tmp"
truncate -s "$SIZE" "$IMG.tmp"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$IMG.tmp"
LOOP=$(losetup -f --show -P "$IMG.tmp")
PART=${LOOP}p1
# Some kernels (or containers without udev) do not create the partition device from -P;
# partx adds it with the BLKPG ioctl from a userspace reading of the table.
for _ in 1 2 3 4 5; do
    [[ -b $PART ]] && break
    partx -a "$LOOP" 2>/dev/null || true
    sleep 0.2
done
if [[ ! -b $PART ]]; then
    if [[ -e /sys/class/block/${PART#/dev/}/dev ]]; then
        IFS=: read -r maj min <"/sys/class/block/${PART#/dev/}/dev"
        mknod "$PART" b "$maj" "$min"
    fi
fi
[[ -b $PART ]] || die "no partition device $PART after losetup -P and partx -a"

ROOT_UUID=$(cat /proc/sys/kernel/random/uuid)
mkfs.ext4 -q -L debian-root -U "$ROOT_UUID" "$PART"
mkdir -p "$MNT"
mount "$PART" "$MNT"
log "disk: $SIZE, $LOOP, root $PART UUID=$ROOT_UUID; unpacking rootfs"
zstd -q -dc "$ROOTFS_TAR" | tar -C "$MNT" --numeric-owner --xattrs --acls -xpf -

# ---- configuration ----------------------------------------------------------------------
echo vmm-guest >"$MNT/etc/hostname"
cat >"$MNT/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	vmm-guest
::1		localhost ip6-localhost ip6-loopback
EOF
cat >"$MNT/etc/fstab" <<EOF
# <file system>	<mount point>	<type>	<options>	<dump>	<pass>
UUID=$ROOT_UUID	/	ext4	errors=remount-ro	0	1
EOF
cat >"$MNT/etc/network/interfaces" <<'EOF'
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback
EOF
# systemd starts a getty on the last console= device by itself; enabling it explicitly keeps
# the login prompt on ttyS0 even if the command line is edited.
mkdir -p "$MNT/etc/systemd/system/getty.target.wants"
ln -sfn /lib/systemd/system/serial-getty@.service \
    "$MNT/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"
# systemd gives up on a device unit after 90 s; in the nested test host udev can take longer
# to announce ttyS0 on a loaded machine, and serial-getty@ttyS0 (which waits for it) then never
# starts: no login prompt (pc-virtio-blk timed out so twice in one run). Wait up to 10 minutes.
mkdir -p "$MNT/etc/systemd/system.conf.d"
printf '[Manager]\nDefaultDeviceTimeoutSec=600s\n' >"$MNT/etc/systemd/system.conf.d/10-slow-test-host.conf"
# Units that only cost boot time in a throwaway test VM (e2scrub_reap ran for 4 minutes in the
# nested test host; there is no LVM to scrub): masked.
for u in e2scrub_reap.service e2scrub_all.timer apt-daily.timer apt-daily-upgrade.timer \
    fstrim.timer; do
    ln -sfn /dev/null "$MNT/etc/systemd/system/$u"
done
# initramfs: MODULES=list with the storage drivers of the PC machines, not Debian's default
# MODULES=most: GRUB reads the kernel and initrd through SeaBIOS's int 13h, which in the nested
# test host moves only ~150 KiB/s over IDE PIO, and the MODULES=most initrd is 37 MB (~250 s)
# against ~6 MB for this list. COMPRESS=gzip: zstd is not installed in this minimal system.
sed -i -E 's/^#?MODULES=.*/MODULES=list/; s/^#?COMPRESS=.*/COMPRESS=gzip/' \
    "$MNT/etc/initramfs-tools/initramfs.conf"
cat >>"$MNT/etc/initramfs-tools/modules" <<EOF
# added by tests/testhost/debian-image.sh (MODULES=list)
${INITRD_MODULES// /$'\n'}
EOF

g=$MNT/etc/default/grub
setgrub() { # setgrub KEY VALUE: set or add KEY=VALUE (value already quoted) in /etc/default/grub
    if grep -qE "^#?$1=" "$g"; then
        sed -i -E "s|^#?$1=.*|$1=$2|" "$g"
    else
        echo "$1=$2" >>"$g"
    fi
}
setgrub GRUB_TIMEOUT 2
setgrub GRUB_TIMEOUT_STYLE menu
setgrub GRUB_CMDLINE_LINUX_DEFAULT '""'
setgrub GRUB_CMDLINE_LINUX '"console=tty0 console=ttyS0,115200"'
setgrub GRUB_TERMINAL '"console serial"'
setgrub GRUB_SERIAL_COMMAND '"serial --unit=0 --speed=115200"'
setgrub GRUB_DISABLE_OS_PROBER true

for m in dev dev/pts proc sys; do
    mkdir -p "$MNT/$m"
done
# A private /dev (tmpfs) rather than a bind mount of the host's: it gets the udev-style
# /dev/disk/by-uuid link that update-grub needs to write root=UUID=... (containers have no
# udev), and nothing is left behind in the host's /dev.
mount -t tmpfs -o mode=0755,size=1m devtmpfs-chroot "$MNT/dev"
for n in null zero full random urandom tty "$LOOP" "$PART"; do
    cp -a "/dev/${n#/dev/}" "$MNT/dev/"
done
mkdir -p "$MNT/dev/pts" "$MNT/dev/disk/by-uuid" "$MNT/dev/shm"
ln -s "../../${PART#/dev/}" "$MNT/dev/disk/by-uuid/$ROOT_UUID"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$MNT/dev/pts"
ln -s pts/ptmx "$MNT/dev/ptmx"
mount -t proc proc "$MNT/proc"
mount -t sysfs sysfs "$MNT/sys"
mount -t tmpfs tmpfs "$MNT/run"

inchroot() { LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive chroot "$MNT" "$@"; }
echo root:root | inchroot chpasswd
KVER=$(find "$MNT/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
[[ -n $KVER ]] || die "no kernel modules in the rootfs"
inchroot update-initramfs -u -k "$KVER" >&2
inchroot grub-install --target=i386-pc --modules="part_msdos ext2" "$LOOP" >&2
inchroot update-grub >&2

# ---- checks -----------------------------------------------------------------------------
cfg=$MNT/boot/grub/grub.cfg
grep -q "root=UUID=$ROOT_UUID" "$cfg" || die "grub.cfg does not boot root=UUID=$ROOT_UUID"
grep -q 'console=ttyS0,115200' "$cfg" || die "grub.cfg lacks console=ttyS0,115200"
grep -q 'serial --unit=0 --speed=115200' "$cfg" || die "grub.cfg lacks the serial terminal"
[[ -f $MNT/boot/initrd.img-$KVER ]] || die "no initrd for $KVER"
initrd_list=$(inchroot lsinitramfs "/boot/initrd.img-$KVER")
initrd_kib=$(du -k "$MNT/boot/initrd.img-$KVER" | cut -f1)
for m in $NEED_MODULES; do
    if ! grep -qE "/$m\.ko(\.[a-z]+)?$" <<<"$initrd_list"; then
        # built into the kernel is fine too
        grep -qE "/$m\.ko" "$MNT/lib/modules/$KVER/modules.builtin" ||
            die "module $m is neither in the initramfs nor built in"
    fi
done
# boot.img in the MBR (GRUB's signature string) and the partition table still intact
head -c 512 "$LOOP" | grep -aq GRUB || die "no GRUB boot code in the MBR of $LOOP"
used_mib=$(df -m --output=used "$MNT" | tail -n1 | tr -d ' ')

# ---- finish -----------------------------------------------------------------------------
for m in "$MNT/dev/pts" "$MNT/dev" "$MNT/proc" "$MNT/sys" "$MNT/run"; do
    umount "$m"
done
umount "$MNT"
e2fsck -fn "$PART" >/dev/null 2>&1 || die "e2fsck found problems on the new filesystem"
losetup -d "$LOOP"
LOOP=
mv -f "$IMG.tmp" "$IMG"
cat >"$IMG.info" <<EOF
IMAGE=$IMG
FORMAT=raw
SIZE=$SIZE
ROOT_PART=1
ROOT_UUID=$ROOT_UUID
ROOT_START_SECTOR=2048
KERNEL=$KVER
MIRROR=$MIRROR
USED_MIB=$used_mib
INITRD_KIB=$initrd_kib
EOF
echo "$stamp" >"$IMG.stamp"
log "built $IMG in $(($(date +%s) - t0)) s (kernel $KVER, $used_mib MiB used, $(du -m "$IMG" | cut -f1) MiB allocated)"
echo "$IMG"
