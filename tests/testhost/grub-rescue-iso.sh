#!/usr/bin/env bash
# tests/testhost/grub-rescue-iso.sh - fetch the GRUB rescue CD-ROM image of the SeaBIOS PC tests.
#
# Usage: tests/testhost/grub-rescue-iso.sh     (prints the ISO path on stdout)
#
# Downloads Debian's grub-rescue-pc package with `apt-get download` (cached in
# $REPO/.cache/images/debs/) and extracts usr/lib/grub-rescue/grub-rescue-cdrom.iso to
# $REPO/.cache/images/grub-rescue-cdrom.iso: a bootable El Torito CD (BIOS, i386-pc GRUB 2.06)
# that shows a GRUB menu without timeout ("GNU GRUB  version 2.06-...", entries GNU/Linux ...
# Memtest86+) on the VGA text console only (nothing on the serial port); 'c' gives "grub>".
# Idempotent: nothing is downloaded when the ISO is already there.
# Environment: IMAGES_CACHE=dir  output directory (default $REPO/.cache/images)
set -euo pipefail
# shellcheck source=tests/testhost/lib.sh
source "$(dirname "$0")/lib.sh"

IMAGES=${IMAGES_CACHE:-$REPO/.cache/images}
ISO=$IMAGES/grub-rescue-cdrom.iso
if [[ -f $ISO ]]; then
    log "cached: $ISO"
    echo "$ISO"
    exit 0
fi
ensure_pkgs apt-get:apt dpkg-deb:dpkg
mkdir -p "$IMAGES/debs"
deb=$(find "$IMAGES/debs" -maxdepth 1 -name 'grub-rescue-pc_*.deb' | sort -V | tail -n1)
if [[ -z $deb ]]; then
    log "downloading grub-rescue-pc"
    (cd "$IMAGES/debs" && apt-get download grub-rescue-pc >&2) ||
        { apt-get update >&2 && (cd "$IMAGES/debs" && apt-get download grub-rescue-pc >&2); }
    deb=$(find "$IMAGES/debs" -maxdepth 1 -name 'grub-rescue-pc_*.deb' | sort -V | tail -n1)
    [[ -n $deb ]] || die "apt-get download grub-rescue-pc produced no .deb"
fi
tmp=$(mktemp -d "$IMAGES/.iso.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp"
src=$(find "$tmp" -name grub-rescue-cdrom.iso -print -quit)
[[ -n $src ]] || die "$(basename "$deb") has no grub-rescue-cdrom.iso"
mv "$src" "$ISO.tmp"
mv "$ISO.tmp" "$ISO"
log "extracted $ISO ($(du -k "$ISO" | cut -f1) KiB) from $(basename "$deb")"
echo "$ISO"
