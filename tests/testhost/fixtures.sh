#!/usr/bin/env bash
# tests/testhost/fixtures.sh - fetch and build the fixtures of the nested test host.
#
# Idempotent; everything is cached under $REPO/.cache/testhost/ (git-ignored):
#   vmlinuz               Debian 6.1 kernel (bzImage), used for both L1 and L2
#   vmlinux               the same kernel uncompressed (ELF with a PVH entry note), for L2
#   kernel/               the kernel .deb extracted with dpkg -x
#   modules               -> kernel/lib/modules/<version>
#   kernel.env            KPKG= KVER= KDEB= (sourced by the other scripts)
#   l2-initramfs.cpio.gz  L2 test guest: static busybox + tests/testhost/l2-init.sh as /init,
#                         the ACPI button and e1000 drivers as /lib/modules/{button,e1000}.ko,
#                         and virtio-blk and virtio-net over virtio-pci with their dependencies
#                         as /lib/modules/NAME.ko, listed in load order in /lib/modules/virtio.order
# Installs missing host packages with apt-get (qemu-system-x86, qemu-system-data (qboot, and
# linuxboot_dma.bin, the option ROM with which `vmm --machine pc --kernel` boots), qemu-utils,
# seabios, busybox-static, cpio, kmod, xz-utils, zstd). qemu-utils (qemu-img, qemu-io) is for the block
# crate's unit tests, which cross-check our qcow2 images with QEMU and skip without it.
# Prints the cache directory on stdout.
#
# Environment: TESTHOST_KERNEL_PKG=linux-image-...  use this kernel package
#              TESTHOST_REFRESH=1                   re-resolve the kernel package with apt
#              TESTHOST_CACHE=dir                   cache directory (default above)
set -euo pipefail
# shellcheck source=tests/testhost/lib.sh
source "$(dirname "$0")/lib.sh"

ensure_pkgs \
    qemu-system-x86_64:qemu-system-x86 \
    qemu-img:qemu-utils qemu-io:qemu-utils \
    /usr/share/seabios/bios-256k.bin:seabios \
    /usr/share/qemu/qboot.rom:qemu-system-data \
    /usr/share/qemu/linuxboot_dma.bin:qemu-system-data \
    /bin/busybox:busybox-static \
    cpio:cpio modinfo:kmod xz:xz-utils zstd:zstd gzip:gzip \
    apt-get:apt dpkg:dpkg ldd:libc-bin

# Debian's plain busybox package is dynamically linked and would not run in an initramfs.
if ldd /bin/busybox >/dev/null 2>&1; then
    log "/bin/busybox is dynamically linked: installing busybox-static in its place"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static >&2
fi

mkdir -p "$CACHE"

# .gitignore: the cache must stay out of git.
gi=$REPO/.gitignore
if [[ ! -e $gi ]]; then
    printf '/target\n.cache/\n' >"$gi"
    log "created $gi"
elif ! grep -qxE '/?\.cache/?' "$gi"; then
    printf '.cache/\n' >>"$gi"
    log "added .cache/ to $gi"
fi

# ---- kernel -----------------------------------------------------------------------------
resolve_kernel_pkg() {
    local pkg cand
    if [[ -n ${TESTHOST_KERNEL_PKG:-} ]]; then
        echo "$TESTHOST_KERNEL_PKG"
        return
    fi
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    if [[ -z $pkg ]]; then
        log "apt-cache knows no linux-image-amd64; running apt-get update"
        apt-get update >&2
        pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
            awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    fi
    [[ -n $pkg ]] || die "cannot resolve the kernel package of linux-image-amd64"
    # Prefer the signed image; fall back to -unsigned if only that one is downloadable.
    for cand in "$pkg" "$pkg-unsigned"; do
        if apt-cache show "$cand" >/dev/null 2>&1; then
            echo "$cand"
            return
        fi
    done
    die "neither $pkg nor $pkg-unsigned is available from apt"
}

have_kernel() {
    [[ -f $CACHE/kernel.env && -f $CACHE/vmlinuz && -d $CACHE/modules/kernel ]]
}

fetch_kernel() {
    local pkg=$1 deb ver
    mkdir -p "$CACHE/debs"
    deb=$(find "$CACHE/debs" -maxdepth 1 -name "${pkg}_*_amd64.deb" | sort | tail -n1)
    if [[ -z $deb ]]; then
        log "downloading $pkg"
        (cd "$CACHE/debs" && apt-get download "$pkg" >&2) ||
            { apt-get update >&2 && (cd "$CACHE/debs" && apt-get download "$pkg" >&2); }
        deb=$(find "$CACHE/debs" -maxdepth 1 -name "${pkg}_*_amd64.deb" | sort | tail -n1)
        [[ -n $deb ]] || die "apt-get download $pkg produced no .deb"
    fi
    log "extracting $(basename "$deb")"
    rm -rf "$CACHE/kernel.tmp" "$CACHE/kernel"
    dpkg -x "$deb" "$CACHE/kernel.tmp"
    mv "$CACHE/kernel.tmp" "$CACHE/kernel"
    ver=$(find "$CACHE/kernel/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n1)
    [[ -n $ver && -f $CACHE/kernel/boot/vmlinuz-$ver ]] || die "unexpected layout in $deb"
    cp -f "$CACHE/kernel/boot/vmlinuz-$ver" "$CACHE/vmlinuz"
    ln -sfn "kernel/lib/modules/$ver" "$CACHE/modules"
    printf 'KPKG=%q\nKVER=%q\nKDEB=%q\n' "$pkg" "$ver" "$deb" >"$CACHE/kernel.env"
}

if have_kernel && [[ -z ${TESTHOST_REFRESH:-} && -z ${TESTHOST_KERNEL_PKG:-} ]]; then
    load_kernel_env
    log "kernel: cached $KPKG ($KVER)"
else
    pkg=$(resolve_kernel_pkg)
    cached_pkg=
    if have_kernel; then
        load_kernel_env
        cached_pkg=$KPKG
    fi
    if [[ $pkg != "$cached_pkg" ]]; then
        fetch_kernel "$pkg"
    fi
    load_kernel_env
    log "kernel: $KPKG ($KVER)"
fi

# ---- uncompressed vmlinux (PVH boot) ----------------------------------------------------
if [[ -f $CACHE/vmlinux && $CACHE/vmlinux -nt $CACHE/vmlinuz ]]; then
    log "vmlinux: cached $CACHE/vmlinux"
else
    ensure_pkgs xz:xz-utils
    "$TESTHOST_DIR/extract-vmlinux.sh" "$CACHE/vmlinuz" "$CACHE/vmlinux"
    log "vmlinux: extracted $CACHE/vmlinux ($(du -k "$CACHE/vmlinux" | cut -f1) KiB)"
fi

# ---- L2 initramfs -----------------------------------------------------------------------
# The ACPI button driver (a module in Debian's kernel): the guest acts on the power button
# only with it loaded (l2-init.sh, shell mode).
# The e1000 driver: l2test=net brings the PC machine's NIC up with it.
button_ko=$(find "$CACHE/modules/kernel/drivers/acpi" -maxdepth 1 -name 'button.ko*' -print -quit)
[[ -n $button_ko ]] || die "button.ko not found under $CACHE/modules/kernel/drivers/acpi"
e1000_ko=$(find "$CACHE/modules/kernel/drivers/net/ethernet/intel/e1000" -maxdepth 1 -name 'e1000.ko*' -print -quit)
[[ -n $e1000_ko ]] || die "e1000.ko not found under $CACHE/modules/kernel/drivers/net/ethernet/intel/e1000"
# virtio_blk and virtio_pci (l2test=blk), virtio_net (l2test=net on a virtio NIC; it needs
# net_failover and failover) with what they depend on, dependencies first: the
# kernel tree has no modules.dep (dpkg -x runs no depmod), so modinfo's "depends" is followed.
# Built-in modules are skipped. virtio_mods holds NAME:PATH in load order.
virtio_mods=()
declare -A mod_seen=()
add_module() { # NAME
    local name=${1//-/_} ko dep
    [[ -n ${mod_seen[$name]:-} ]] && return 0
    mod_seen[$name]=1
    ko=$(find "$CACHE/modules/kernel" -name "${name//_/[-_]}.ko*" -print -quit)
    if [[ -z $ko ]]; then
        grep -qE "/${name//_/[-_]}\.ko\$" "$CACHE/modules/modules.builtin" && return 0
        die "module $name not found under $CACHE/modules/kernel"
    fi
    for dep in $(modinfo -F depends "$ko" | tr ',' ' '); do
        add_module "$dep"
    done
    virtio_mods+=("$name:$ko")
}
add_module virtio_pci
add_module virtio_blk
add_module virtio_net
l2_inputs_hash() {
    cat "$TESTHOST_DIR/l2-init.sh" "$TESTHOST_DIR/lib.sh" "${BUSYBOX:-/bin/busybox}" "$button_ko" "$e1000_ko" \
        "${virtio_mods[@]#*:}" | sha256sum | cut -d' ' -f1
}
# l2_module KO NAME: the module, decompressed, as $stage/lib/modules/NAME.ko.
l2_module() {
    case $1 in
    *.ko.xz) xz -dc "$1" >"$stage/lib/modules/$2.ko" ;;
    *.ko.zst) zstd -qdc "$1" >"$stage/lib/modules/$2.ko" ;;
    *) cp "$1" "$stage/lib/modules/$2.ko" ;;
    esac
}
l2=$CACHE/l2-initramfs.cpio.gz
hash=$(l2_inputs_hash)
if [[ -f $l2 && -f $l2.stamp && $(cat "$l2.stamp") == "$hash" ]]; then
    log "L2 initramfs: cached $l2"
else
    stage=$CACHE/l2-stage
    rm -rf "$stage"
    install_busybox "$stage"
    install -m 0755 "$TESTHOST_DIR/l2-init.sh" "$stage/init"
    mkdir -p "$stage/lib/modules"
    l2_module "$button_ko" button
    l2_module "$e1000_ko" e1000
    for m in "${virtio_mods[@]}"; do
        l2_module "${m#*:}" "${m%%:*}"
        echo "${m%%:*}" >>"$stage/lib/modules/virtio.order"
    done
    make_initramfs "$stage" "$l2"
    rm -rf "$stage"
    echo "$hash" >"$l2.stamp"
    log "L2 initramfs: built $l2 ($(du -k "$l2" | cut -f1) KiB)"
fi

echo "$CACHE"
