#!/usr/bin/env bash
# tests/testhost/extract-vmlinux.sh - the uncompressed ELF vmlinux inside a bzImage.
#
# Usage: extract-vmlinux.sh BZIMAGE OUT
#   Debian's kernels compress the payload with xz: find the first xz stream (magic
#   FD 37 7A 58 5A 00), decompress it, and check the result is an ELF file. The vmm boots it
#   through its PVH entry point, which skips the guest's own decompression.
set -euo pipefail
(($# == 2)) || { echo "usage: $0 BZIMAGE OUT" >&2; exit 2; }
in=$1 out=$2
offset=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$in" | head -n1 | cut -d: -f1)
[[ -n $offset ]] || { echo "$in: no xz stream found" >&2; exit 1; }
tail -c +$((offset + 1)) "$in" | xz -dc 2>/dev/null >"$out.tmp" || true
[[ $(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' ') == 7f454c46 ]] || {
    echo "$in: the xz stream at $offset is not an ELF vmlinux" >&2; rm -f "$out.tmp"; exit 1; }
mv -f "$out.tmp" "$out"
