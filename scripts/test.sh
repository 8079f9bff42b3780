#!/usr/bin/env bash
# scripts/test.sh - every test: static checks (rustfmt, clippy), unit tests, a smoke run of
# every fuzz target, then end-to-end guest boots.
#
# Unit tests run with cargo-nextest when it is installed (cargo test otherwise). End-to-end
# tests boot real Linux guests in the vmm: directly on a host with real VT-x/AMD-V, otherwise
# inside the nested test host, which is built from Debian packages and cached under .cache/.
# Four suites in this order, none reading stdin: tests/e2e/run.sh (direct kernel boot),
# tests/e2e/pc-run.sh (SeaBIOS PC), tests/e2e/vfio-run.sh (PCI passthrough with QEMU's
# emulated VT-d, about 2.5 min), tests/e2e/vmctl-run.sh (vmctld and vmctl managing real
# VMs). Set SKIP_E2E=1 to run only the unit tests.
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
# Each suite's output goes to the terminal and to a file; the summary at the end repeats every
# suite's verdict and the result lines of failed scenarios, so the last lines of a long run
# (CI shows the tail) say what failed.
out=$(mktemp -d /tmp/vmm-tests.XXXXXX)
trap 'rm -rf "$out"' EXIT
rc=0 summary=()
suite() { # NAME TITLE SCRIPT
    local name=$1 title=$2 script=$3 status verdict
    echo "== end-to-end tests: $title"
    set +e
    bash "$script" </dev/null 2>&1 | tee "$out/$name"
    status=${PIPESTATUS[0]}
    set -e
    verdict=$(tr -d '\r' <"$out/$name" | { grep -E "^$name: [0-9]+ passed, [0-9]+ failed" || true; } | tail -n 1)
    ((status == 0)) || rc=1
    stage_done "e2e $name"
    summary+=("$(printf '%-10s %s' "$name" "${verdict:-no verdict}, exit status $status")")
    if ((status != 0)); then
        mapfile -t -O "${#summary[@]}" summary < <(tr -d '\r' <"$out/$name" |
            grep -E '^E2E-RESULT [^ ]+ FAIL|^E2E-INFO|run timed out|ERROR' | sed 's/^/    /' | tail -n 30)
    fi
}
suite e2e "direct kernel boot" tests/e2e/run.sh
suite e2e-pc "SeaBIOS PC machine (IDE disk, CD-ROM, VGA)" tests/e2e/pc-run.sh
suite e2e-vfio "VFIO passthrough (emulated VT-d; an e1000 and an e1000e assigned to guests)" tests/e2e/vfio-run.sh
suite vmctl-e2e "management daemon (vmctld + vmctl with the real vmm)" tests/e2e/vmctl-run.sh
echo
echo "== summary: unit tests passed; end-to-end suites:"
printf '%s\n' "${summary[@]}"
print_timings
exit $rc
