#!/usr/bin/env bash
# tests/testhost/build-l1.sh - build the initramfs of an L1 nested test host.
#
# Usage: build-l1.sh SCENARIO_SCRIPT [EXTRA...]
#   Builds $CACHE/l1-<name>.cpio.gz (name: L1_NAME, default the scenario's basename without
#   .sh) and prints its path on stdout. Contents:
#     /init                         tests/testhost/l1-init.sh
#     /bin/busybox + applet links   static busybox
#     /lib/modules/<kver>/*.ko      irqbypass ccp kvm kvm-amd (+ L1_MODULES), dependencies
#                                   resolved with modinfo, decompressed; order in /etc/l1-modules
#     /guest/vmlinuz, /guest/vmlinux (if extracted), /guest/l2-initramfs.cpio.gz
#     /bin/vmm                      $VMM_BIN (static binary, or a script; shared libraries of a
#                                   dynamic binary are copied too); omitted if VMM_BIN is unset
#     /e2e/<scenario>               the scenario script, run by /init
#     EXTRA                         FILE -> /e2e/<basename>, or FILE=/abs/dest
#   L1_BINS: host programs (names on PATH, space-separated) copied to /usr/bin with their
#   shared libraries (e.g. qemu-img for the qcow2 checks).
#   With L1_WITH_QEMU=1 it also carries qemu-system-x86_64, its shared libraries and the
#   firmware it needs (SeaBIOS, qboot, option ROMs) at their usual paths (for the benchmark).
# Run tests/testhost/fixtures.sh first.
set -euo pipefail
# shellcheck source=tests/testhost/lib.sh
source "$(dirname "$0")/lib.sh"

(($# >= 1)) || die "usage: $0 SCENARIO_SCRIPT [EXTRA...]"
scenario=$1
shift
[[ -f $scenario ]] || die "no such scenario script: $scenario"
load_kernel_env
[[ -f $CACHE/vmlinuz && -f $CACHE/l2-initramfs.cpio.gz ]] || die "run fixtures.sh first"

name=${L1_NAME:-$(basename "$scenario" .sh)}
out=$CACHE/l1-$name.cpio.gz
stage=$CACHE/l1-$name.stage
rm -rf "$stage"
install_busybox "$stage"
install -m 0755 "$TESTHOST_DIR/l1-init.sh" "$stage/init"

# ---- kernel modules ---------------------------------------------------------------------
moddir=$CACHE/modules
declare -A seen=()
order=()
find_ko() { # module name (- and _ are interchangeable) -> path
    local m=$1 f
    f=$(find "$moddir/kernel" \( -name "${m//_/-}.ko*" -o -name "${m//-/_}.ko*" \) -print -quit)
    [[ -n $f ]] || die "module $m not found under $moddir"
    echo "$f"
}
add_mod() {
    local m=$1 key f deps d
    key=${m//-/_}
    [[ -n ${seen[$key]:-} ]] && return 0
    seen[$key]=1
    f=$(find_ko "$m")
    deps=$(modinfo -F depends "$f")
    for d in ${deps//,/ }; do
        add_mod "$d"
    done
    order+=("$f")
}
read -ra roots <<<"irqbypass ccp kvm kvm-amd ${L1_MODULES:-}"
for m in "${roots[@]}"; do
    add_mod "$m"
done
mkdir -p "$stage/lib/modules/$KVER"
: >"$stage/etc/l1-modules"
for f in "${order[@]}"; do
    base=$(basename "$f")
    dst=/lib/modules/$KVER/${base%%.ko*}.ko
    case $f in
    *.ko.xz) xz -dc "$f" >"$stage$dst" ;;
    *.ko.zst) zstd -qdc "$f" >"$stage$dst" ;;
    *.ko.gz) gzip -dc "$f" >"$stage$dst" ;;
    *) cp "$f" "$stage$dst" ;;
    esac
    echo "$dst" >>"$stage/etc/l1-modules"
done
log "modules: $(tr '\n' ' ' <"$stage/etc/l1-modules")"

# ---- files ------------------------------------------------------------------------------
# copy_bin SRC DEST: copy a program; for a dynamic ELF also its shared libraries (ldd).
copy_bin() {
    local src=$1 dst=$2 lib
    mkdir -p "$stage$(dirname "$dst")"
    cp -L "$src" "$stage$dst"
    chmod 0755 "$stage$dst"
    if ldd "$src" >/dev/null 2>&1; then
        while read -r lib; do
            [[ -e $stage$lib ]] && continue
            mkdir -p "$stage$(dirname "$lib")"
            cp -L "$lib" "$stage$lib"
        done < <(ldd "$src" | grep -oE '/[^ ]+' | grep -v '^/.*:$')
    fi
}

mkdir -p "$stage/guest" "$stage/e2e"
cp "$CACHE/vmlinuz" "$stage/guest/vmlinuz"
cp "$CACHE/l2-initramfs.cpio.gz" "$stage/guest/l2-initramfs.cpio.gz"
if [[ -f $CACHE/vmlinux ]]; then
    cp "$CACHE/vmlinux" "$stage/guest/vmlinux"
fi

if [[ -n ${VMM_BIN:-} ]]; then
    [[ -f $VMM_BIN ]] || die "VMM_BIN=$VMM_BIN does not exist"
    copy_bin "$VMM_BIN" /bin/vmm
else
    log "VMM_BIN unset: no /bin/vmm in this L1"
fi

for b in ${L1_BINS:-}; do
    p=$(command -v "$b") || die "L1_BINS: $b is not installed"
    copy_bin "$p" "/usr/bin/$b"
done

install -m 0755 "$scenario" "$stage/e2e/$(basename "$scenario")"
echo "/e2e/$(basename "$scenario")" >"$stage/etc/l1-scenario"
for extra in "$@"; do
    if [[ $extra == *=/* ]]; then
        src=${extra%%=/*} dst=/${extra#*=/}
    else
        src=$extra dst=/e2e/$(basename "$extra")
    fi
    [[ -e $src ]] || die "no such file: $src"
    mkdir -p "$stage$(dirname "$dst")"
    cp -a "$src" "$stage$dst"
done

if [[ ${L1_WITH_QEMU:-0} == 1 ]]; then
    qemu=$(command -v qemu-system-x86_64) || die "qemu-system-x86_64 not installed"
    copy_bin "$qemu" /usr/bin/qemu-system-x86_64
    # Firmware at the paths QEMU searches (-L help: /usr/share/qemu, /usr/share/seabios,
    # /usr/lib/ipxe/qemu).
    for fw in /usr/share/seabios/bios-256k.bin /usr/share/seabios/vgabios-stdvga.bin \
        /usr/share/qemu/qboot.rom /usr/share/qemu/bios-microvm.bin /usr/share/qemu/kvmvapic.bin \
        /usr/share/qemu/linuxboot.bin /usr/share/qemu/linuxboot_dma.bin /usr/share/qemu/pvh.bin \
        /usr/lib/ipxe/qemu/efi-e1000.rom; do
        if [[ -e $fw ]]; then
            mkdir -p "$stage$(dirname "$fw")"
            cp -L "$fw" "$stage$fw"
        else
            log "warning: firmware $fw not found"
        fi
    done
    log "QEMU included: $qemu"
fi

make_initramfs "$stage" "$out"
rm -rf "$stage"
log "built $out ($(du -k "$out" | cut -f1) KiB)"
echo "$out"
