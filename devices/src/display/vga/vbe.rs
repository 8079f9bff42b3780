// SPDX-License-Identifier: Apache-2.0
//! The Bochs VBE ("DISPI") extension: an index register at port 0x1CE and a 16-bit data
//! register at 0x1CF (also reachable through the stdvga MMIO BAR at 0x500).
//!
//! Registers: 0 ID (0xB0C0-0xB0C5), 1 XRES, 2 YRES, 3 BPP, 4 ENABLE (bit 0 enabled, bit 1
//! GETCAPS, bit 5 8-bit DAC, bit 6 LFB, bit 7 no-clear), 5 BANK (64 KiB window at 0xA0000),
//! 6 VIRT_WIDTH, 7 VIRT_HEIGHT (read-only), 8 X_OFFSET, 9 Y_OFFSET, 0xA VIDEO_MEMORY_64K.
//! With GETCAPS set, XRES/YRES/BPP read the maxima. The interface cannot report errors, so
//! while enabled every geometry write is clamped to what fits: depth one of 4/8/15/16/24/32
//! (else 8), width a multiple of 8 in 8..=16000, height in 1..=12000 and within VRAM, the
//! virtual width at least the width, offsets moved back to zero when the panned screen would
//! run past the end of VRAM.

use super::memory::Vram;
use super::regs::VgaRegs;

/// Index of the ID register.
pub const INDEX_ID: u16 = 0;
/// Index of the horizontal resolution.
pub const INDEX_XRES: u16 = 1;
/// Index of the vertical resolution.
pub const INDEX_YRES: u16 = 2;
/// Index of the bits per pixel.
pub const INDEX_BPP: u16 = 3;
/// Index of the enable register.
pub const INDEX_ENABLE: u16 = 4;
/// Index of the bank register.
pub const INDEX_BANK: u16 = 5;
/// Index of the virtual (scan line) width.
pub const INDEX_VIRT_WIDTH: u16 = 6;
/// Index of the virtual height (read-only, derived).
pub const INDEX_VIRT_HEIGHT: u16 = 7;
/// Index of the horizontal panning offset.
pub const INDEX_X_OFFSET: u16 = 8;
/// Index of the vertical panning offset.
pub const INDEX_Y_OFFSET: u16 = 9;
/// Index of the video memory size in 64 KiB units (read-only).
pub const INDEX_VIDEO_MEMORY_64K: u16 = 0xa;
const NUM_REGS: usize = 10;

/// Oldest interface version.
pub const ID0: u16 = 0xb0c0;
/// Newest interface version implemented.
pub const ID5: u16 = 0xb0c5;

/// ENABLE: the extended mode is on.
pub const ENABLED: u16 = 0x01;
/// ENABLE: XRES/YRES/BPP read the maxima.
pub const GETCAPS: u16 = 0x02;
/// ENABLE: the DAC takes 8-bit components.
pub const DAC_8BIT: u16 = 0x20;
/// ENABLE: linear framebuffer in use (informational).
pub const LFB_ENABLED: u16 = 0x40;
/// ENABLE: do not clear video memory when enabling.
pub const NOCLEARMEM: u16 = 0x80;

/// Largest horizontal resolution.
pub const MAX_XRES: u16 = 16000;
/// Largest vertical resolution.
pub const MAX_YRES: u16 = 12000;
/// Largest depth.
pub const MAX_BPP: u16 = 32;

/// The VBE register file and the derived scan-out geometry.
#[derive(Clone)]
pub(super) struct Vbe {
    pub index: u16,
    regs: [u16; NUM_REGS],
    /// Bytes per scan line.
    pub line_offset: u32,
    /// Byte offset of the first displayed pixel.
    pub start_addr: u32,
    /// Byte offset the 64 KiB window at 0xA0000 starts at (GR6 memory map 1).
    pub bank_offset: u32,
    vram_size: u32,
}

impl Vbe {
    /// Disabled, with ID0 in the ID register.
    pub fn new(vram_size: u32) -> Self {
        let mut regs = [0; NUM_REGS];
        regs[usize::from(INDEX_ID)] = ID0;
        Vbe { index: 0, regs, line_offset: 0, start_addr: 0, bank_offset: 0, vram_size }
    }

    /// Register `index` as stored.
    pub fn reg(&self, index: u16) -> u16 {
        self.regs.get(usize::from(index)).copied().unwrap_or(0)
    }

    /// Whether an extended mode is on.
    pub fn enabled(&self) -> bool {
        self.reg(INDEX_ENABLE) & ENABLED != 0
    }

    /// The data register as a read at the current index sees it.
    pub fn read_data(&self) -> u16 {
        let caps = self.reg(INDEX_ENABLE) & GETCAPS != 0;
        match self.index {
            INDEX_XRES if caps => MAX_XRES,
            INDEX_YRES if caps => MAX_YRES,
            INDEX_BPP if caps => MAX_BPP,
            i if usize::from(i) < NUM_REGS => self.regs[usize::from(i)],
            INDEX_VIDEO_MEMORY_64K => (self.vram_size >> 16).min(0xffff) as u16,
            _ => 0,
        }
    }

    /// A guest write of the data register at the current index.
    pub fn write_data(&mut self, val: u16, vga: &mut VgaRegs, vram: &Vram) {
        match self.index {
            INDEX_ID => {
                if (ID0..=ID5).contains(&val) {
                    self.regs[0] = val;
                } else {
                    log::debug!("vbe: unsupported interface id {val:#x}");
                }
            }
            INDEX_XRES | INDEX_YRES | INDEX_BPP | INDEX_VIRT_WIDTH | INDEX_X_OFFSET | INDEX_Y_OFFSET => {
                self.regs[usize::from(self.index)] = val;
                self.fixup();
            }
            INDEX_BANK => {
                let mut mask = ((self.vram_size >> 16).max(1) - 1) as u16;
                if self.reg(INDEX_BPP) == 4 {
                    // Planar: a bank covers 64 KiB of each of the four planes.
                    mask >>= 2;
                }
                let bank = val & mask;
                self.regs[usize::from(INDEX_BANK)] = bank;
                self.bank_offset = u32::from(bank) << 16;
            }
            INDEX_ENABLE => self.write_enable(val, vga, vram),
            _ => log::debug!("vbe: write {val:#x} to read-only or unknown index {:#x}", self.index),
        }
    }

    fn write_enable(&mut self, val: u16, vga: &mut VgaRegs, vram: &Vram) {
        if val & ENABLED != 0 && !self.enabled() {
            self.regs[usize::from(INDEX_VIRT_WIDTH)] = 0;
            self.regs[usize::from(INDEX_X_OFFSET)] = 0;
            self.regs[usize::from(INDEX_Y_OFFSET)] = 0;
            self.regs[usize::from(INDEX_ENABLE)] |= ENABLED;
            self.fixup();
            if val & NOCLEARMEM == 0 {
                let len = u64::from(self.reg(INDEX_YRES)) * u64::from(self.line_offset);
                vram.clear(0, len.min(u64::from(self.vram_size)) as usize);
            }
            self.set_vga_mode(vga);
        } else if val & ENABLED == 0 {
            self.bank_offset = 0;
        }
        vga.dac_8bit = val & DAC_8BIT != 0;
        self.regs[usize::from(INDEX_ENABLE)] = val;
    }

    /// Puts the VGA registers into a graphics mode matching the extended mode, so the
    /// 0xA0000 window and scan-out agree with it.
    fn set_vga_mode(&self, vga: &mut VgaRegs) {
        // Graphics, memory map 1 (64 KiB at 0xA0000 + bank).
        vga.gr[6] = (vga.gr[6] & !0x0c) | 0x05;
        vga.cr[0x17] |= 3; // no CGA address wrapping
        vga.cr[0x13] = (self.line_offset >> 3) as u8;
        vga.cr[1] = ((self.reg(INDEX_XRES) >> 3).wrapping_sub(1)) as u8;
        let h = self.reg(INDEX_YRES).wrapping_sub(1);
        vga.cr[0x12] = h as u8;
        vga.cr[7] = (vga.cr[7] & !0x42) | (((h >> 7) & 0x02) as u8) | (((h >> 3) & 0x40) as u8);
        // Line compare out of reach.
        vga.cr[0x18] = 0xff;
        vga.cr[7] |= 0x10;
        vga.cr[9] |= 0x40;
        let shift_control = if self.reg(INDEX_BPP) == 4 {
            vga.sr[1] &= !0x08;
            0
        } else {
            vga.sr[4] |= 0x08; // chain-4
            vga.sr[2] |= 0x0f;
            2
        };
        vga.gr[5] = (vga.gr[5] & !0x60) | (shift_control << 5);
        vga.cr[9] &= !0x9f; // no double scan
    }

    /// Clamps the geometry registers to valid values and derives the scan-out geometry.
    fn fixup(&mut self) {
        if !self.enabled() {
            return;
        }
        let r = &mut self.regs;
        let bits = match r[usize::from(INDEX_BPP)] {
            b @ (4 | 8 | 16 | 24 | 32) => u32::from(b),
            15 => 16,
            _ => {
                r[usize::from(INDEX_BPP)] = 8;
                8
            }
        };
        let xres = &mut r[usize::from(INDEX_XRES)];
        *xres = (*xres & !7).clamp(8, MAX_XRES);
        let xres = *xres;
        let vw = &mut r[usize::from(INDEX_VIRT_WIDTH)];
        *vw = (*vw & !7).min(MAX_XRES).max(xres);
        let linelength = u32::from(*vw) * bits / 8;
        let maxy = self.vram_size / linelength;
        let yres = &mut r[usize::from(INDEX_YRES)];
        *yres = (*yres).clamp(1, MAX_YRES).min(maxy.min(0xffff) as u16);
        let yres = u32::from(*yres);
        let xo = &mut r[usize::from(INDEX_X_OFFSET)];
        *xo = (*xo).min(MAX_XRES);
        let xo = u32::from(*xo);
        let yo = &mut r[usize::from(INDEX_Y_OFFSET)];
        *yo = (*yo).min(MAX_YRES);
        let screen = yres * linelength;
        let mut offset = xo * bits / 8 + u32::from(*yo) * linelength;
        if offset + screen > self.vram_size {
            *yo = 0;
            offset = xo * bits / 8;
            if offset + screen > self.vram_size {
                r[usize::from(INDEX_X_OFFSET)] = 0;
                offset = 0;
            }
        }
        r[usize::from(INDEX_VIRT_HEIGHT)] = maxy.min(0xffff) as u16;
        self.line_offset = linelength;
        // Scan-out starts on a 4-byte boundary, as the CRTC start address does.
        self.start_addr = offset & !3;
    }

    /// The displayed mode (width, height, bits per pixel as programmed: 15 stays 15).
    pub fn mode(&self) -> (u32, u32, u16) {
        (u32::from(self.reg(INDEX_XRES)), u32::from(self.reg(INDEX_YRES)), self.reg(INDEX_BPP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VRAM: u32 = 16 << 20;

    fn setup() -> (Vbe, VgaRegs, Vram) {
        (Vbe::new(VRAM), VgaRegs::new(), Vram::new(VRAM as usize).unwrap())
    }

    fn w(vbe: &mut Vbe, vga: &mut VgaRegs, vram: &Vram, index: u16, val: u16) {
        vbe.index = index;
        vbe.write_data(val, vga, vram);
    }

    fn r(vbe: &mut Vbe, index: u16) -> u16 {
        vbe.index = index;
        vbe.read_data()
    }

    #[test]
    fn id_accepts_known_versions_only() {
        let (mut b, mut g, v) = setup();
        assert_eq!(r(&mut b, INDEX_ID), ID0);
        w(&mut b, &mut g, &v, INDEX_ID, ID5);
        assert_eq!(r(&mut b, INDEX_ID), 0xb0c5);
        w(&mut b, &mut g, &v, INDEX_ID, 0xb0c6);
        w(&mut b, &mut g, &v, INDEX_ID, 0x1234);
        assert_eq!(r(&mut b, INDEX_ID), 0xb0c5);
        assert_eq!(r(&mut b, INDEX_VIDEO_MEMORY_64K), 256);
        assert_eq!(r(&mut b, 0xb), 0);
        assert_eq!(r(&mut b, 0xffff), 0);
        w(&mut b, &mut g, &v, 0xffff, 1);
        w(&mut b, &mut g, &v, INDEX_VIDEO_MEMORY_64K, 1);
        assert_eq!(r(&mut b, INDEX_VIDEO_MEMORY_64K), 256);
    }

    #[test]
    fn getcaps_reports_maxima() {
        let (mut b, mut g, v) = setup();
        w(&mut b, &mut g, &v, INDEX_XRES, 1024);
        w(&mut b, &mut g, &v, INDEX_ENABLE, GETCAPS);
        assert_eq!(r(&mut b, INDEX_XRES), MAX_XRES);
        assert_eq!(r(&mut b, INDEX_YRES), MAX_YRES);
        assert_eq!(r(&mut b, INDEX_BPP), MAX_BPP);
        w(&mut b, &mut g, &v, INDEX_ENABLE, 0);
        assert_eq!(r(&mut b, INDEX_XRES), 1024);
    }

    #[test]
    fn enable_sets_geometry_clears_memory_and_programs_vga() {
        let (mut b, mut g, v) = setup();
        v.write_u8(100, 0x55);
        v.write_u8(1024 * 768 * 4 + 8, 0x66);
        w(&mut b, &mut g, &v, INDEX_XRES, 1024);
        w(&mut b, &mut g, &v, INDEX_YRES, 768);
        w(&mut b, &mut g, &v, INDEX_BPP, 32);
        w(&mut b, &mut g, &v, INDEX_ENABLE, ENABLED | LFB_ENABLED | DAC_8BIT);
        assert!(b.enabled());
        assert_eq!(r(&mut b, INDEX_ENABLE), 0x61);
        assert_eq!(b.mode(), (1024, 768, 32));
        assert_eq!(r(&mut b, INDEX_VIRT_WIDTH), 1024);
        assert_eq!(r(&mut b, INDEX_VIRT_HEIGHT), (VRAM / 4096) as u16);
        assert_eq!(b.line_offset, 4096);
        assert_eq!(v.read_u8(100), 0, "cleared");
        assert_eq!(v.read_u8(1024 * 768 * 4 + 8), 0x66, "only the screen is cleared");
        assert!(g.dac_8bit);
        assert_eq!(g.gr[6] & 0x0d, 0x05);
        assert_eq!(g.sr[4] & 0x08, 0x08, "chain-4");
        assert_eq!(g.cr[1], 127);
        assert_eq!(g.vertical_display_end(), 767);
        // NOCLEARMEM keeps memory.
        w(&mut b, &mut g, &v, INDEX_ENABLE, 0);
        v.write_u8(100, 0x55);
        w(&mut b, &mut g, &v, INDEX_ENABLE, ENABLED | NOCLEARMEM);
        assert_eq!(v.read_u8(100), 0x55);
        assert!(!g.dac_8bit);
    }

    #[test]
    fn geometry_is_clamped_while_enabled() {
        let (mut b, mut g, v) = setup();
        w(&mut b, &mut g, &v, INDEX_ENABLE, ENABLED | NOCLEARMEM);
        w(&mut b, &mut g, &v, INDEX_BPP, 7);
        assert_eq!(r(&mut b, INDEX_BPP), 8);
        w(&mut b, &mut g, &v, INDEX_BPP, 15);
        assert_eq!(r(&mut b, INDEX_BPP), 15);
        w(&mut b, &mut g, &v, INDEX_XRES, 0xffff);
        assert_eq!(r(&mut b, INDEX_XRES), MAX_XRES);
        w(&mut b, &mut g, &v, INDEX_XRES, 3);
        assert_eq!(r(&mut b, INDEX_XRES), 8);
        w(&mut b, &mut g, &v, INDEX_XRES, 1027);
        assert_eq!(r(&mut b, INDEX_XRES), 1024);
        w(&mut b, &mut g, &v, INDEX_YRES, 0);
        assert_eq!(r(&mut b, INDEX_YRES), 1);
        w(&mut b, &mut g, &v, INDEX_BPP, 32);
        w(&mut b, &mut g, &v, INDEX_XRES, 16000);
        w(&mut b, &mut g, &v, INDEX_YRES, 12000);
        // 16000 * 4 bytes per line: 262 lines fit in 16 MiB.
        assert_eq!(r(&mut b, INDEX_YRES), (VRAM / 64000) as u16);
        assert_eq!(r(&mut b, INDEX_VIRT_HEIGHT), (VRAM / 64000) as u16);
        // Virtual width never below the width.
        w(&mut b, &mut g, &v, INDEX_XRES, 800);
        w(&mut b, &mut g, &v, INDEX_YRES, 600);
        assert_eq!(r(&mut b, INDEX_VIRT_WIDTH), 16000, "kept from the wider mode");
        assert_eq!(r(&mut b, INDEX_YRES), 262, "still limited by the virtual width");
        w(&mut b, &mut g, &v, INDEX_VIRT_WIDTH, 640);
        assert_eq!(r(&mut b, INDEX_VIRT_WIDTH), 800);
        w(&mut b, &mut g, &v, INDEX_YRES, 600);
        assert_eq!(r(&mut b, INDEX_YRES), 600);
        // Panning within VRAM is kept; past it resets.
        w(&mut b, &mut g, &v, INDEX_Y_OFFSET, 600);
        assert_eq!(r(&mut b, INDEX_Y_OFFSET), 600);
        assert_eq!(b.start_addr, 600 * 3200);
        w(&mut b, &mut g, &v, INDEX_Y_OFFSET, 5000);
        assert_eq!(r(&mut b, INDEX_Y_OFFSET), 0);
        w(&mut b, &mut g, &v, INDEX_X_OFFSET, 0xffff);
        assert_eq!(r(&mut b, INDEX_X_OFFSET), MAX_XRES);
        assert!(b.start_addr as u64 + 600 * 3200 <= u64::from(VRAM));
        w(&mut b, &mut g, &v, INDEX_VIRT_HEIGHT, 1);
        assert_eq!(r(&mut b, INDEX_VIRT_HEIGHT), (VRAM / 3200) as u16, "read-only");
    }

    #[test]
    fn bank_is_masked_to_vram() {
        let (mut b, mut g, v) = setup();
        w(&mut b, &mut g, &v, INDEX_BPP, 8);
        w(&mut b, &mut g, &v, INDEX_BANK, 3);
        assert_eq!((r(&mut b, INDEX_BANK), b.bank_offset), (3, 0x3_0000));
        w(&mut b, &mut g, &v, INDEX_BANK, 0x1ff);
        assert_eq!((r(&mut b, INDEX_BANK), b.bank_offset), (0xff, 0xff_0000));
        w(&mut b, &mut g, &v, INDEX_BPP, 4);
        w(&mut b, &mut g, &v, INDEX_BANK, 0xff);
        assert_eq!(r(&mut b, INDEX_BANK), 0x3f);
        w(&mut b, &mut g, &v, INDEX_ENABLE, 0);
        assert_eq!(b.bank_offset, 0, "disabling resets the window");
    }

    #[test]
    fn planar_vbe_mode_keeps_planar_access() {
        let (mut b, mut g, v) = setup();
        g.sr[4] = 0x06;
        w(&mut b, &mut g, &v, INDEX_BPP, 4);
        w(&mut b, &mut g, &v, INDEX_XRES, 800);
        w(&mut b, &mut g, &v, INDEX_YRES, 600);
        w(&mut b, &mut g, &v, INDEX_ENABLE, ENABLED);
        assert_eq!(b.line_offset, 400);
        assert_eq!(g.sr[4] & 0x08, 0);
        assert_eq!(g.gr[5] & 0x60, 0);
    }
}
