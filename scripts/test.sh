#!/usr/bin/env bash
# scripts/test.sh - every test: unit tests first, then end-to-end guest boots.
#
# Unit tests run with cargo-nextest when it is installed (cargo test otherwise). End-to-end
# tests boot real Linux guests in the vmm: directly on a host with real VT-x/AMD-V, otherwise
# inside the nested test host, which is built from Debian packages and cached under .cache/.
# Three suites in this order, none reading stdin: tests/e2e/run.sh (direct kernel boot),
# tests/e2e/pc-run.sh (SeaBIOS PC), tests/e2e/vmctl-run.sh (vmctld and vmctl managing real
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

echo "== unit tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi

if [[ ${SKIP_E2E:-0} == 1 ]]; then
    echo "== end-to-end tests skipped (SKIP_E2E=1)"
    exit 0
fi
echo "== end-to-end tests: direct kernel boot"
rc=0
bash tests/e2e/run.sh </dev/null || rc=1
echo "== end-to-end tests: SeaBIOS PC machine (IDE disk, CD-ROM, VGA)"
bash tests/e2e/pc-run.sh </dev/null || rc=1
echo "== end-to-end tests: management daemon (vmctld + vmctl with the real vmm)"
bash tests/e2e/vmctl-run.sh </dev/null || rc=1
exit $rc
