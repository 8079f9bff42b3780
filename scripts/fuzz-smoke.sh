#!/usr/bin/env bash
# scripts/fuzz-smoke.sh - builds every fuzz target (fuzz/) and runs each briefly: a smoke run
# that catches a target that no longer builds or crashes at once, not a fuzzing campaign
# (fuzz/README.md has those and their figures).
#
# Usage: scripts/fuzz-smoke.sh   Environment: FUZZ_SECONDS (default 5 per target).
# cargo-fuzz is installed under .cache/tools when missing; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take the sanitizer flags cargo-fuzz passes.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-5}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz under .cache/tools"
    cargo install --locked --quiet --root .cache/tools cargo-fuzz
    export PATH=$PWD/.cache/tools/bin:$PATH
fi
export RUSTC_BOOTSTRAP=1
mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
cargo fuzz build --fuzz-dir fuzz
failed=()
for t in "${targets[@]}"; do
    log=$(mktemp)
    # virtio_blk_engine's rings start beyond libFuzzer's default input length.
    if cargo fuzz run --fuzz-dir fuzz "$t" -- -max_total_time="$secs" -max_len=24576 >"$log" 2>&1; then
        echo "fuzz $t: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -n 1)"
    else
        echo "fuzz $t: FAILED"
        tail -n 40 "$log"
        failed+=("$t")
    fi
    rm -f "$log"
done
if ((${#failed[@]})); then
    echo "fuzz smoke: ${#failed[@]} of ${#targets[@]} failed: ${failed[*]}"
    exit 1
fi
echo "fuzz smoke: ${#targets[@]} targets built and ran ${secs} s each, no crash"
