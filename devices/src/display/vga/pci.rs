// SPDX-License-Identifier: Apache-2.0
//! The card's PCI function: QEMU's "VGA" device identity (1234:1111, class 03 00 00,
//! subsystem 1af4:1100, revision 2), BAR0 the 16 MiB prefetchable framebuffer, BAR2 4 KiB of
//! MMIO registers laid out as QEMU's stdvga:
//! - 0x000-0x3FF: EDID (one 128-byte base block, the rest zero),
//! - 0x400-0x41F: VGA ports 0x3C0-0x3DF (multi-byte accesses split, low byte first),
//! - 0x500-0x515: VBE registers 0-0xA as 16-bit little-endian values (register = offset / 2;
//!   an access also sets the VBE index, as in QEMU),
//! - 0x600-0x607: QEMU extended registers: size of the block (8) and framebuffer byte order
//!   (0x1e1e1e1e = little endian; a big-endian request is refused).
//!
//! There is no expansion ROM BAR: the machine hands SeaBIOS the VGA BIOS through fw_cfg.

use super::{get_le, StdVga, VRAM_SIZE};
use crate::pci::{BarKind, PciBarRange, PciConfigSpace, PciDevice};

/// PCI vendor ID (QEMU).
pub const VENDOR_ID: u16 = 0x1234;
/// PCI device ID (standard VGA).
pub const DEVICE_ID: u16 = 0x1111;
/// Subsystem vendor ID (Red Hat / Qumranet, as QEMU).
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x1af4;
/// Subsystem ID (QEMU).
pub const SUBSYSTEM_ID: u16 = 0x1100;
/// Size of the MMIO register BAR.
pub const BAR2_SIZE: u64 = 0x1000;

const EDID_END: u64 = 0x400;
const VGA_MMIO: u64 = 0x400;
const VGA_MMIO_END: u64 = 0x420;
const VBE_MMIO: u64 = 0x500;
const VBE_MMIO_END: u64 = 0x516;
const QEXT: u64 = 0x600;
const QEXT_END: u64 = 0x608;
const QEXT_LITTLE_ENDIAN: u32 = 0x1e1e_1e1e;
const QEXT_BIG_ENDIAN: u32 = 0xbebe_bebe;

/// The configuration space of a new card.
pub(super) fn config_space() -> PciConfigSpace {
    let mut c = PciConfigSpace::new(VENDOR_ID, DEVICE_ID, [0x03, 0x00, 0x00], 2, 0);
    c.set_reg(11, u32::from(SUBSYSTEM_VENDOR_ID) | (u32::from(SUBSYSTEM_ID) << 16), 0);
    c.add_bar(0, VRAM_SIZE as u64, BarKind::Mem32, true);
    c.add_bar(2, BAR2_SIZE, BarKind::Mem32, false);
    c
}

/// A 128-byte EDID 1.4 base block for a digital display preferring 1024x768 at 60 Hz.
pub(super) fn edid() -> [u8; 128] {
    let mut e = [0u8; 128];
    e[0..8].copy_from_slice(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
    // Manufacturer "QEM" in three 5-bit letters, big endian; product 0x1111.
    let id = b"QEM".iter().fold(0u16, |v, c| (v << 5) | u16::from(c - b'A' + 1));
    e[8..10].copy_from_slice(&id.to_be_bytes());
    e[10..12].copy_from_slice(&0x1111u16.to_le_bytes());
    e[16] = 1; // week
    e[17] = 34; // 2024
    e[18] = 1; // version 1.4
    e[19] = 4;
    e[20] = 0x80; // digital input
    e[21] = 32; // 32 x 24 cm
    e[22] = 24;
    e[23] = 120; // gamma 2.2
    e[24] = 0x06; // sRGB default, preferred timing in the first descriptor
    e[25..35].copy_from_slice(&[0xee, 0x91, 0xa3, 0x54, 0x4c, 0x99, 0x26, 0x0f, 0x50, 0x54]);
    e[35] = 0x21; // 640x480@60, 800x600@60
    e[36] = 0x08; // 1024x768@60
    e[38..54].fill(0x01); // no standard timings
                          // Detailed timing: 65 MHz, 1024+320 x 768+38, sync 24/136 and 3/6, 320x240 mm.
    e[54..72].copy_from_slice(&[
        0x64, 0x19, 0x00, 0x40, 0x41, 0x00, 0x26, 0x30, 0x18, 0x88, 0x36, 0x00, 0x40, 0xf0, 0x10, 0x00, 0x00,
        0x18,
    ]);
    // Display name.
    e[72..77].copy_from_slice(&[0, 0, 0, 0xfc, 0]);
    e[77..90].copy_from_slice(b"QEMU Monitor\n");
    // Range limits: 50-125 Hz, 30-160 kHz, 150 MHz.
    e[90..108].copy_from_slice(&[
        0, 0, 0, 0xfd, 0, 50, 125, 30, 160, 15, 0x00, 0x0a, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    ]);
    // Dummy descriptor.
    e[111] = 0x10;
    let sum = e[..127].iter().fold(0u8, |s, b| s.wrapping_add(*b));
    e[127] = sum.wrapping_neg();
    e
}

impl StdVga {
    fn mmio_read_byte(&mut self, off: u64) -> u8 {
        match off {
            0..EDID_END => edid().get(off as usize).copied().unwrap_or(0),
            VGA_MMIO..VGA_MMIO_END => {
                let mut b = [0u8];
                self.io_read(0x3c0 + (off - VGA_MMIO) as u16, &mut b);
                b[0]
            }
            VBE_MMIO..VBE_MMIO_END => {
                self.vbe.index = ((off - VBE_MMIO) / 2) as u16;
                (self.vbe.read_data() >> (8 * (off & 1))) as u8
            }
            QEXT..QEXT_END => {
                let regs = [8u32.to_le_bytes(), QEXT_LITTLE_ENDIAN.to_le_bytes()].concat();
                regs[(off - QEXT) as usize]
            }
            _ => 0,
        }
    }

    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.mmio_read_byte(offset.saturating_add(i as u64));
        }
    }

    fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        let end = offset.saturating_add(data.len() as u64);
        if offset >= VGA_MMIO && end <= VGA_MMIO_END {
            self.io_write(0x3c0 + (offset - VGA_MMIO) as u16, data);
        } else if offset >= VBE_MMIO && end <= VBE_MMIO_END && offset % 2 == 0 {
            // 16-bit registers; a 32-bit write covers two.
            for (i, chunk) in data.chunks(2).enumerate() {
                self.vbe.index = ((offset - VBE_MMIO) / 2) as u16 + i as u16;
                self.vbe.write_data(get_le(chunk) as u16, &mut self.regs, &self.vram);
            }
        } else if offset == QEXT + 4 && data.len() == 4 {
            if get_le(data) == QEXT_BIG_ENDIAN {
                crate::warn_limited!(
                    "vga: guest asked for a big-endian framebuffer; only little endian is supported"
                );
            }
        } else {
            crate::warn_limited!("vga: ignored {}-byte MMIO write at {offset:#x}", data.len());
        }
    }
}

impl PciDevice for StdVga {
    fn debug_label(&self) -> &str {
        "stdvga"
    }

    fn config_read(&self, reg: usize) -> u32 {
        self.config.read(reg)
    }

    fn config_write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config.write(reg, offset, data);
    }

    fn bar_ranges(&self) -> Vec<PciBarRange> {
        self.config.bar_ranges()
    }

    /// BAR0 is VRAM itself: the machine maps it as guest memory.
    fn bar_host_memory(&self, index: usize) -> Option<u64> {
        (index == 0).then(|| self.vram_region().as_ptr() as u64)
    }

    /// BAR0 reads VRAM (for a machine that traps the framebuffer instead of mapping it);
    /// BAR2 the MMIO registers.
    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        match index {
            0 => match usize::try_from(offset) {
                Ok(off) => self.vram.read_into(off, data),
                Err(_) => data.fill(0),
            },
            2 if offset < BAR2_SIZE => self.mmio_read(offset, data),
            _ => data.fill(0xff),
        }
    }

    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        match index {
            0 => {
                for (i, &b) in data.iter().enumerate() {
                    if let Some(off) = usize::try_from(offset).ok().and_then(|o| o.checked_add(i)) {
                        self.vram.write_u8(off, b);
                    }
                }
            }
            2 if offset < BAR2_SIZE => self.mmio_write(offset, data),
            _ => crate::warn_limited!("vga: write to BAR {index} offset {offset:#x} ignored"),
        }
    }

    /// Registers, VBE mode and configuration space to power-on values; video memory keeps
    /// its contents and its host mapping (the machine may still have it mapped as a BAR
    /// until it sees the BAR disabled).
    fn reset(&mut self) {
        self.regs = super::regs::VgaRegs::new();
        self.vbe = super::vbe::Vbe::new(VRAM_SIZE as u32);
        self.config.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::super::vbe;
    use super::*;

    #[test]
    fn identity_and_bars() {
        let mut v = StdVga::new().unwrap();
        assert_eq!(v.config_read(0), 0x1111_1234);
        assert_eq!(v.config_read(2), 0x0300_0002);
        assert_eq!(v.config_read(11), 0x1100_1af4);
        v.config_write(4, 0, &[0xff; 4]);
        assert_eq!(v.config_read(4), 0xff00_0008, "16 MiB, 32-bit, prefetchable");
        v.config_write(6, 0, &[0xff; 4]);
        assert_eq!(v.config_read(6), 0xffff_f000, "4 KiB, 32-bit, not prefetchable");
        v.config_write(5, 0, &[0xff; 4]);
        assert_eq!(v.config_read(5), 0, "BAR1 unimplemented");
        v.config_write(4, 0, &0xfd00_0000u32.to_le_bytes());
        v.config_write(6, 0, &0xfebf_0000u32.to_le_bytes());
        v.config_write(1, 0, &[0x02]);
        assert_eq!(
            v.bar_ranges(),
            vec![
                PciBarRange { index: 0, kind: BarKind::Mem32, address: 0xfd00_0000, size: 16 << 20 },
                PciBarRange { index: 2, kind: BarKind::Mem32, address: 0xfebf_0000, size: 0x1000 },
            ]
        );
    }

    #[test]
    fn edid_is_valid() {
        let e = edid();
        assert_eq!(&e[..8], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
        assert_eq!(e.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        let mut v = StdVga::new().unwrap();
        let mut b = [0u8; 4];
        v.bar_read(2, 0, &mut b);
        assert_eq!(b, [0, 0xff, 0xff, 0xff]);
        v.bar_read(2, 0x80, &mut b);
        assert_eq!(b, [0; 4], "no extension blocks");
    }

    #[test]
    fn bar2_mirrors_vga_ports() {
        let mut v = StdVga::new().unwrap();
        v.bar_write(2, 0x402, &[0x67]); // misc output
        assert_eq!(v.regs.msr, 0x67);
        v.bar_write(2, 0x404, &[0x02, 0x0f]); // 16-bit: SR index 2, map mask 0x0f
        assert_eq!(v.regs.sr[2], 0x0f);
        let mut w = [0u8; 2];
        v.bar_read(2, 0x404, &mut w);
        assert_eq!(w, [0x02, 0x0f]);
        v.bar_write(2, 0x414, &[0x0e, 0x12]); // CRTC 0x3D4/5
        assert_eq!(v.regs.cr[0x0e], 0x12);
        let mut b = [0u8];
        v.bar_read(2, 0x40c, &mut b);
        assert_eq!(b[0], 0x67);
        let first = {
            v.bar_read(2, 0x41a, &mut b);
            b[0]
        };
        v.bar_read(2, 0x41a, &mut b);
        assert_ne!(first, b[0], "input status toggles through MMIO too");
    }

    #[test]
    fn bar2_vbe_registers_and_qext() {
        let mut v = StdVga::new().unwrap();
        let mut w = [0u8; 2];
        v.bar_read(2, 0x500, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0xb0c0);
        v.bar_write(2, 0x502, &800u16.to_le_bytes());
        v.bar_write(2, 0x504, &[0x58, 0x02, 32, 0]); // YRES 600 and BPP 32 in one 32-bit write
        v.bar_write(2, 0x508, &(vbe::ENABLED | vbe::NOCLEARMEM).to_le_bytes());
        assert_eq!(v.vbe_mode(), Some((800, 600, 32)));
        v.bar_read(2, 0x514, &mut w);
        assert_eq!(u16::from_le_bytes(w), 256);
        assert_eq!(v.vbe.index, 0x0a, "MMIO access sets the index");
        let mut q = [0u8; 8];
        v.bar_read(2, 0x600, &mut q);
        assert_eq!(q, [8, 0, 0, 0, 0x1e, 0x1e, 0x1e, 0x1e]);
        v.bar_write(2, 0x604, &QEXT_BIG_ENDIAN.to_le_bytes());
        v.bar_read(2, 0x604, &mut q[..4]);
        assert_eq!(&q[..4], &[0x1e; 4]);
        // Odd, unaligned and out-of-range accesses are harmless.
        v.bar_write(2, 0x501, &[1, 2]);
        v.bar_write(2, 0x515, &[1, 2]);
        v.bar_write(2, 0xfff, &[1, 2, 3, 4]);
        v.bar_write(2, u64::MAX, &[1]);
        v.bar_read(2, u64::MAX - 1, &mut q);
        v.bar_read(7, 0, &mut q);
        assert_eq!(q, [0xff; 8]);
        assert_eq!(v.vbe_mode(), Some((800, 600, 32)));
    }

    #[test]
    fn bar0_reads_and_writes_vram() {
        let mut v = StdVga::new().unwrap();
        v.bar_write(0, 0x10, &[1, 2, 3, 4]);
        let mut b = [0u8; 4];
        v.bar_read(0, 0x10, &mut b);
        assert_eq!(b, [1, 2, 3, 4]);
        assert_eq!(v.vram.read_u32(0x10), 0x0403_0201);
        v.bar_write(0, (VRAM_SIZE - 2) as u64, &[9, 9, 9, 9]);
        v.bar_read(0, (VRAM_SIZE - 2) as u64, &mut b);
        assert_eq!(b, [9, 9, 0, 0]);
        v.bar_write(0, u64::MAX, &[1, 2]);
    }
}
