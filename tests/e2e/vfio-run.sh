#!/usr/bin/env bash
# tests/e2e/vfio-run.sh - end-to-end tests of VFIO passthrough (issue 13).
#
# Usage: tests/e2e/vfio-run.sh
#   Builds the static vmm (or uses VMM_BIN) and the test-host fixtures, then boots an L1 test
#   host with QEMU's emulated VT-d (-device intel-iommu, intel_iommu=on), an emulated e1000 and
#   an e1000e (82574, MSI-X) on QEMU's user network (restrict=on), an emulated NVMe drive
#   (serial vfionvme, a fresh 256 MiB raw file), the vfio modules, no NIC driver but the nvme
#   driver in L1, and QEMU (for vfio-nvme's comparison), and runs tests/e2e/vfio-scenarios.sh
#   there: our vmm assigns those devices to L2 PC guests.
#   Last line: "e2e-vfio: N passed, M failed"; non-zero exit if any failed or none ran.
# Environment: VMM_BIN, VMCTL_BIN_DIR (static vmctld and vmctl), VFIO_ONLY=a,b, VFIO_L1_TIMEOUT (default 900), VFIO_L1_SILENCE (default
#   120, see l1_watch in lib.sh), VFIO_BOOT_TIMEOUT (per L2 boot, default 240),
#   VFIO_LOG (default .cache/testhost/logs/e2e-vfio.log).
set -euo pipefail
E2E_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/testhost/lib.sh
source "$E2E_DIR/../testhost/lib.sh"

L1_TIMEOUT=${VFIO_L1_TIMEOUT:-900}
LOG=${VFIO_LOG:-$CACHE/logs/e2e-vfio.log}
mkdir -p "$(dirname "$LOG")"
ensure_pkgs socat:socat

static_vmm
# vfio-vmctl-managed runs vmctld and vmctl too (static, like the vmm).
if [[ -n ${VMCTL_BIN_DIR:-} ]]; then
    BIN_DIR=$(realpath "$VMCTL_BIN_DIR")
else
    (cd "$REPO" && RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
        cargo build --release -p vmctl --bins --target x86_64-unknown-linux-gnu)
    BIN_DIR=${CARGO_TARGET_DIR:-target}
    [[ $BIN_DIR == /* ]] || BIN_DIR=$REPO/$BIN_DIR
    BIN_DIR=$BIN_DIR/x86_64-unknown-linux-gnu/release
fi
for b in vmctld vmctl; do
    [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b missing"
done
"$TESTHOST_DIR/fixtures.sh" >/dev/null
load_kernel_env

tmp=$(mktemp -d /tmp/e2e-vfio.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# unpack_ko SRC DEST: a module, decompressed.
unpack_ko() {
    case $1 in
    *.ko.xz) xz -dc "$1" >"$2" ;;
    *.ko.zst) zstd -qdc "$1" >"$2" ;;
    *.ko.gz) gzip -dc "$1" >"$2" ;;
    *) cp "$1" "$2" ;;
    esac
}
# The L2 guest of vfio-e1000e-msix: a second archive after the usual L2 initramfs with its own
# /init (tests/e2e/vfio-l2-init.sh) and the e1000e driver.
ko=$(find "$CACHE/modules/kernel/drivers/net/ethernet/intel/e1000e" -maxdepth 1 -name 'e1000e.ko*' -print -quit)
[[ -n $ko ]] || die "e1000e.ko not found under $CACHE/modules"
mkdir -p "$tmp/l2x/lib/modules"
install -m 0755 "$E2E_DIR/vfio-l2-init.sh" "$tmp/l2x/init"
unpack_ko "$ko" "$tmp/l2x/lib/modules/e1000e.ko"
make_initramfs "$tmp/l2x" "$tmp/l2-e1000e-extra.cpio.gz"

# The L2 guest of vfio-nvme: the same with tests/e2e/vfio-l2-nvme-init.sh and nvme.ko with its
# dependencies (modinfo, dependencies first; order in /lib/modules/nvme.order).
declare -A l2_seen=()
l2_order=()
add_l2_mod() { # module name (- and _ are interchangeable)
    local m=${1//-/_} f d
    [[ -n ${l2_seen[$m]:-} ]] && return 0
    l2_seen[$m]=1
    f=$(find "$CACHE/modules/kernel" \( -name "$m.ko*" -o -name "${m//_/-}.ko*" \) -print -quit)
    [[ -n $f ]] || die "module $m not found under $CACHE/modules"
    for d in $(modinfo -F depends "$f" | tr , ' '); do
        add_l2_mod "$d"
    done
    l2_order+=("$f")
}
add_l2_mod nvme
mkdir -p "$tmp/l2n/lib/modules"
install -m 0755 "$E2E_DIR/vfio-l2-nvme-init.sh" "$tmp/l2n/init"
for f in "${l2_order[@]}"; do
    m=$(basename "$f")
    m=${m%%.ko*}
    unpack_ko "$f" "$tmp/l2n/lib/modules/$m.ko"
    echo "$m" >>"$tmp/l2n/lib/modules/nvme.order"
done
log "vfio-nvme L2 modules: $(tr '\n' ' ' <"$tmp/l2n/lib/modules/nvme.order")"
make_initramfs "$tmp/l2n" "$tmp/l2-nvme-extra.cpio.gz"
# The drive of vfio-nvme: a fresh raw file, every block allocated (the write benchmark then
# does not measure the host's block allocation in one VMM's run and not in the other's).
dd if=/dev/zero of="$tmp/nvme.img" bs=1M count=256 status=none

# nvme: L1 drives the NVMe first, as a host does its own drive; QEMU for vfio-nvme's
# throughput comparison with QEMU's vfio-pci.
cpio=$(L1_NAME=vfio L1_MODULES="vfio vfio_iommu_type1 vfio_pci nvme" L1_WITH_QEMU=1 \
    "$TESTHOST_DIR/build-l1.sh" "$E2E_DIR/vfio-scenarios.sh" \
    "$tmp/l2-e1000e-extra.cpio.gz=/guest/l2-e1000e-extra.cpio.gz" \
    "$tmp/l2-nvme-extra.cpio.gz=/guest/l2-nvme-extra.cpio.gz" \
    "$BIN_DIR/vmctld=/bin/vmctld" "$BIN_DIR/vmctl=/bin/vmctl" \
    /usr/share/seabios/bios-256k.bin=/usr/share/seabios/bios-256k.bin \
    /usr/share/qemu/linuxboot_dma.bin=/usr/share/qemu/linuxboot_dma.bin)

# allow_unsafe_interrupts: type1 refuses an IOMMU without interrupt remapping otherwise (QEMU's
# intel-iommu offers it only in some configurations); l1-init.sh passes it to insmod.
append="intel_iommu=on vfio_iommu_type1.allow_unsafe_interrupts=1 idle=poll ${L1_EXTRA_APPEND:-}"
for v in VFIO_ONLY VFIO_BOOT_TIMEOUT; do
    [[ -n ${!v:-} ]] && append+=$(l1env "$v" "${!v}")
done
start=$(date +%s)
set +e
# intel-iommu before the devices it translates for.
L1_EXTRA_APPEND=$append \
    L1_QEMU_EXTRA="${L1_QEMU_EXTRA:-} -device intel-iommu -netdev user,id=n0,restrict=on -device e1000,netdev=n0 -netdev user,id=n1,restrict=on -device e1000e,netdev=n1,mac=52:54:00:12:34:57 -drive file=$tmp/nvme.img,if=none,id=nv0,format=raw,cache=unsafe -device nvme,drive=nv0,serial=vfionvme -monitor unix:$tmp/l1-monitor.sock,server,nowait" \
    "$TESTHOST_DIR/run-l1.sh" "$cpio" "$L1_TIMEOUT" "$LOG" &
l1_watch $! "$LOG" "$tmp/l1-monitor.sock" "${VFIO_L1_SILENCE:-120}"
rc=$?
set -e
elapsed=$(($(date +%s) - start))
if [[ -n ${VFIO_ONLY:-} ]]; then
    read -ra expected <<<"${VFIO_ONLY//,/ }"
else
    mapfile -t expected < <(sh "$E2E_DIR/vfio-scenarios.sh" --list)
fi
e2e_report e2e-vfio "$LOG" "l1, ${elapsed}s, status $rc" 0 "${expected[@]}"
