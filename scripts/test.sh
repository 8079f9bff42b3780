#!/usr/bin/env bash
# scripts/test.sh - every test: static checks (rustfmt, clippy), unit tests, a smoke run of
# every fuzz target, then end-to-end guest boots.
#
# Unit tests run with cargo-nextest when it is installed (cargo test otherwise). End-to-end
# tests boot real Linux guests in the vmm: directly on a host with real VT-x/AMD-V, otherwise
# inside the nested test host, which is built from Debian packages and cached under .cache/.
# Four suites, none reading stdin: tests/e2e/run.sh (direct kernel boot), tests/e2e/pc-run.sh
# (SeaBIOS PC), tests/e2e/vfio-run.sh (PCI passthrough with QEMU's emulated VT-d, about
# 9 min, 4-5 of them vfio-nvme), tests/e2e/vmctl-run.sh (vmctld and vmctl managing real VMs);
# in nested test hosts they run in two lanes side by side (see below). Set SKIP_E2E=1 to run
# only the unit tests.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust first" >&2; exit 1; }

# The network tests (vmctl/tests/net_*.rs) build bridges, nftables tables and dnsmasq inside
# network namespaces of their own; they need these tools and root, and skip without them. The
# PC-machine reboot test (vmm/tests/tiny_guests.rs) needs SeaBIOS and the Linux loader ROM.
if [[ $(id -u) == 0 ]]; then
    # shellcheck source=tests/testhost/lib.sh
    source tests/testhost/lib.sh
    ensure_pkgs ip:iproute2 nft:nftables dnsmasq:dnsmasq-base /bin/busybox:busybox-static \
        /usr/share/seabios/bios-256k.bin:seabios /usr/share/qemu/linuxboot_dma.bin:qemu-system-data
else
    echo "== not root: the network namespace tests will be skipped" >&2
fi

# Each stage's wall time goes into the summary, so a slow CI run says where its time went.
timings=()
stage_start=$SECONDS
stage_done() { # NAME: record the time since the previous stage ended
    timings+=("$(printf '%-28s %4d s' "$1" $((SECONDS - stage_start)))")
    stage_start=$SECONDS
}
print_timings() {
    echo "== time per stage (total $((SECONDS / 60)) min $((SECONDS % 60)) s):"
    printf '    %s\n' "${timings[@]}"
}

# CI gates: formatting and lints fail the run before anything else is built.
echo "== static checks: cargo fmt --check (workspace and fuzz/), cargo clippy -D warnings"
cargo fmt --all --check
(cd fuzz && cargo fmt --check)
cargo clippy --workspace --all-targets -- -D warnings
stage_done "static checks"

echo "== unit tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
stage_done "unit tests"

echo "== fuzz targets: built and run briefly (scripts/fuzz-smoke.sh)"
bash scripts/fuzz-smoke.sh
stage_done "fuzz smoke"

if [[ ${SKIP_E2E:-0} == 1 ]]; then
    echo "== end-to-end tests skipped (SKIP_E2E=1)"
    print_timings
    exit 0
fi
# ---- end-to-end suites ------------------------------------------------------------------
# tests/testhost/lib.sh: host_has_real_kvm, ensure_pkgs, CACHE.
# shellcheck source=tests/testhost/lib.sh
source tests/testhost/lib.sh
# What every suite shares is built once, before any suite starts: the static binaries and the
# cached test-host fixtures (Debian kernel, L2 initramfs, Debian disk image, GRUB rescue ISO).
# The suites then only read them, so two may run at the same time.
echo "== end-to-end fixtures: static vmm, vmctld, vmctl, vnc_probe; test-host images (cached)"
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
    cargo build --release -p vmm -p vmctl --bins --example vnc_probe --target x86_64-unknown-linux-gnu
bins=${CARGO_TARGET_DIR:-target}
[[ $bins == /* ]] || bins=$PWD/$bins
bins=$bins/x86_64-unknown-linux-gnu/release
export VMM_BIN=$bins/vmm VNC_PROBE_BIN=$bins/examples/vnc_probe VMCTL_BIN_DIR=$bins
ensure_pkgs qemu-img:qemu-utils socat:socat qemu-system-x86_64:qemu-system-x86 \
    nft:nftables dnsmasq:dnsmasq-base
tests/testhost/fixtures.sh >/dev/null
tests/testhost/debian-image.sh >/dev/null
tests/testhost/grub-rescue-iso.sh >/dev/null
stage_done "e2e fixtures"

# Each suite's output goes to the terminal and to a file; the summary at the end repeats every
# suite's verdict and the result lines of failed scenarios, so the last lines of a long run
# (CI shows the tail) say what failed.
out=$(mktemp -d /tmp/vmm-tests.XXXXXX)
trap 'rm -rf "$out"' EXIT
suite() { # NAME TITLE SCRIPT: runs SCRIPT; its verdict goes to $out/NAME.summary
    local name=$1 title=$2 script=$3 status verdict t0=$SECONDS
    echo "== end-to-end tests: $title"
    set +e
    if [[ -n ${LANE:-} ]]; then
        # Two lanes share the terminal: each line says which suite it is from.
        bash "$script" </dev/null 2>&1 | tee "$out/$name" | sed -u "s/^/[$name] /"
    else
        bash "$script" </dev/null 2>&1 | tee "$out/$name"
    fi
    status=${PIPESTATUS[0]}
    set -e
    verdict=$(tr -d '\r' <"$out/$name" | { grep -E "^$name: [0-9]+ passed, [0-9]+ failed" || true; } | tail -n 1)
    {
        printf '%-18s %s\n' "$name${LANE:+ ($LANE)}" "${verdict:-no verdict}, exit status $status"
        if ((status != 0)); then
            tr -d '\r' <"$out/$name" |
                grep -E '^E2E-RESULT [^ ]+ FAIL|^E2E-INFO|run timed out|ERROR' | sed 's/^/    /' | tail -n 30
        fi
    } >"$out/$name.summary"
    printf '%-28s %4d s\n' "e2e $name${LANE:+ ($LANE)}" $((SECONDS - t0)) >"$out/$name.time"
    return "$status"
}
# The PC suite is the longest. Without real VT-x/AMD-V every suite boots a nested test host
# (QEMU TCG: one host core each), so on two or more cores the suites run in two lanes side by
# side: lane 1 the first half of the PC scenarios, lane 2 the other suites and the second
# half (E2E_LANES=1: one lane, in order; PC_LANE1 / PC_LANE2: the halves). With real
# hardware virtualization the suites share the host's tap and addresses: one lane.
pc_lane1=${PC_LANE1:-pc-virtio-blk,pc-virtio-net,pc-virtio-net-user,pc-debian,pc-qcow2-reboot,pc-kernel,pc-cdrom-grub}
pc_lane2=${PC_LANE2:-pc-bad-input,direct-virtio-root}
pc_title="SeaBIOS PC machine (IDE disk, CD-ROM, VGA, virtio)"
rc=0
if [[ ${E2E_LANES:-2} == 1 ]] || host_has_real_kvm || (($(nproc) < 2)); then
    suite e2e "direct kernel boot" tests/e2e/run.sh || rc=1
    suite e2e-pc "$pc_title" tests/e2e/pc-run.sh || rc=1
    suite e2e-vfio "VFIO passthrough (emulated VT-d; an e1000, an e1000e and an NVMe drive assigned to guests)" tests/e2e/vfio-run.sh || rc=1
    suite vmctl-e2e "management daemon (vmctld + vmctl with the real vmm)" tests/e2e/vmctl-run.sh || rc=1
else
    echo "== end-to-end suites in two lanes (one nested test host each): lane 1 PC scenarios $pc_lane1;" \
        "lane 2 the direct, VFIO and vmctl suites, then PC scenarios $pc_lane2"
    # The two halves of the PC suite: their own L1 initramfs and log. pc-run.sh's verdict line
    # is "e2e-pc: ..."; each half's is read from its own output file.
    lane1() {
        LANE=lane1 PC_ONLY=$pc_lane1 PC_L1_NAME=pc-lane1 PC_LOG=$CACHE/logs/e2e-pc-lane1.log \
            suite e2e-pc "$pc_title, first half" tests/e2e/pc-run.sh
    }
    lane2() {
        local r=0
        export LANE=lane2
        suite e2e "direct kernel boot" tests/e2e/run.sh || r=1
        suite e2e-vfio "VFIO passthrough (emulated VT-d)" tests/e2e/vfio-run.sh || r=1
        suite vmctl-e2e "management daemon (vmctld + vmctl with the real vmm)" tests/e2e/vmctl-run.sh || r=1
        out=$out/lane2 PC_ONLY=$pc_lane2 PC_L1_NAME=pc-lane2 PC_LOG=$CACHE/logs/e2e-pc-lane2.log \
            suite e2e-pc "$pc_title, second half" tests/e2e/pc-run.sh || r=1
        return $r
    }
    mkdir -p "$out/lane2"
    lane2 &
    lane2_pid=$!
    lane1 || rc=1
    wait "$lane2_pid" || rc=1
fi
summary=()
for f in "$out"/*.summary "$out"/lane2/*.summary; do
    [[ -f $f ]] && mapfile -t -O "${#summary[@]}" summary <"$f"
done
for f in "$out"/*.time "$out"/lane2/*.time; do
    [[ -f $f ]] && timings+=("$(cat "$f")")
done
stage_start=$SECONDS
echo
echo "== summary: unit tests passed; end-to-end suites:"
printf '%s\n' "${summary[@]}"
print_timings
exit $rc
