// SPDX-License-Identifier: Apache-2.0
//! Video memory and the legacy 0xA0000-0xBFFFF window.
//!
//! VRAM holds the four planes interleaved: plane `p` of planar offset `o` is byte `4 * o + p`.
//! That is the layout the linear framebuffer (BAR0) shows, so chain-4 (256-colour and VBE
//! packed-pixel) writes through the window land where the LFB reads them.
//!
//! The window decodes as graphics controller register 6 selects (128 KiB at 0xA0000, 64 KiB
//! at 0xA0000 plus the VBE bank, 32 KiB at 0xB0000 or 32 KiB at 0xB8000) and then as the
//! sequencer memory mode and graphics mode registers select:
//! - chain-4: byte `a` is VRAM byte `a` (plane `a & 3`), gated by the map mask;
//! - odd/even (GR5 bit 4): even bytes go to planes 0/2, odd to 1/3, at VRAM `(a & !1) * 2 +
//!   plane`: character codes of a text screen in plane 0, attributes in plane 1;
//! - otherwise planar: a read loads the four latches and returns one plane (read mode 0) or
//!   the colour-compare result (read mode 1); a write goes through write modes 0-3 (rotate,
//!   set/reset, logical operation, bit mask) into the planes the map mask enables.

use std::sync::Arc;

use vm_memory::{Bytes, MmapRegion, VolatileMemory};

use super::regs::VgaRegs;

/// Size of the window: 0xA0000-0xBFFFF.
pub const LEGACY_WINDOW_SIZE: u64 = 0x2_0000;

/// Each bit of a 4-bit plane mask widened to a byte lane.
const MASK16: [u32; 16] = {
    let mut m = [0u32; 16];
    let mut i = 0;
    while i < 16 {
        let mut v = 0u32;
        let mut p = 0;
        while p < 4 {
            if i & (1 << p) != 0 {
                v |= 0xff << (8 * p);
            }
            p += 1;
        }
        m[i] = v;
        i += 1;
    }
    m
};

/// Host memory shared with the guest's view through BAR0. Every access is volatile and
/// bounds-checked: out-of-range reads return all ones, writes are dropped.
#[derive(Clone)]
pub struct Vram {
    region: Arc<MmapRegion>,
}

impl Vram {
    /// Anonymous, zeroed memory of `size` bytes.
    pub fn new(size: usize) -> Result<Self, vm_memory::mmap::MmapRegionError> {
        Ok(Vram { region: Arc::new(MmapRegion::new(size)?) })
    }

    /// The mapping (for the machine to map as guest RAM).
    pub fn region(&self) -> Arc<MmapRegion> {
        self.region.clone()
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.region.size()
    }

    fn fits(&self, off: usize, len: usize) -> bool {
        off.checked_add(len).is_some_and(|end| end <= self.len())
    }

    /// Byte at `off`, 0xff past the end.
    pub fn read_u8(&self, off: usize) -> u8 {
        if off >= self.len() {
            return 0xff;
        }
        self.region.as_volatile_slice().read_obj::<u8>(off).unwrap_or(0xff)
    }

    /// Stores a byte; ignored past the end.
    pub fn write_u8(&self, off: usize, v: u8) {
        if off >= self.len() {
            return;
        }
        let _ = self.region.as_volatile_slice().write_obj(v, off);
    }

    /// Little-endian 32 bits at `off` (the four planes of planar offset `off / 4`).
    pub fn read_u32(&self, off: usize) -> u32 {
        if !self.fits(off, 4) {
            return u32::MAX;
        }
        self.region.as_volatile_slice().read_obj::<u32>(off).map(u32::from_le).unwrap_or(u32::MAX)
    }

    /// Stores little-endian 32 bits; ignored unless all four bytes are in range.
    pub fn write_u32(&self, off: usize, v: u32) {
        if !self.fits(off, 4) {
            return;
        }
        let _ = self.region.as_volatile_slice().write_obj(v.to_le(), off);
    }

    /// Copies VRAM from `off` into `buf`; bytes past the end read as zero.
    pub fn read_into(&self, off: usize, buf: &mut [u8]) {
        buf.fill(0);
        let len = self.len();
        if off >= len {
            return;
        }
        let n = buf.len().min(len - off);
        let _ = self.region.as_volatile_slice().read_slice(&mut buf[..n], off);
    }

    /// Zeroes `len` bytes from `off` (clipped to the end).
    pub fn clear(&self, off: usize, len: usize) {
        let end = off.saturating_add(len).min(self.len());
        let zeros = [0u8; 4096];
        let mut pos = off;
        while pos < end {
            let n = (end - pos).min(zeros.len());
            if let Ok(s) = self.region.get_slice(pos, n) {
                let _ = s.write_slice(&zeros[..n], 0);
            }
            pos += n;
        }
    }
}

/// Translates a window offset (0..0x20000 from 0xA0000) to a VRAM address per GR6's memory
/// map select; None if the map does not decode it.
fn map_address(regs: &VgaRegs, bank_offset: u32, offset: u64) -> Option<usize> {
    let addr = (offset & 0x1_ffff) as u32;
    let a = match (regs.gr[6] >> 2) & 3 {
        0 => addr,
        1 => {
            if addr >= 0x1_0000 {
                return None;
            }
            addr + bank_offset
        }
        2 => addr.checked_sub(0x1_0000).filter(|a| *a < 0x8000)?,
        _ => addr.checked_sub(0x1_8000).filter(|a| *a < 0x8000)?,
    };
    Some(a as usize)
}

/// A guest byte read at `offset` in the window.
pub(super) fn window_read(regs: &mut VgaRegs, vram: &Vram, bank_offset: u32, offset: u64) -> u8 {
    let Some(addr) = map_address(regs, bank_offset, offset) else { return 0xff };
    if regs.sr[4] & 0x08 != 0 {
        return vram.read_u8(addr);
    }
    if regs.gr[5] & 0x10 != 0 {
        let plane = usize::from(regs.gr[4] & 2) | (addr & 1);
        return vram.read_u8(((addr & !1) << 1) | plane);
    }
    let Some(byte) = addr.checked_mul(4).filter(|b| b + 4 <= vram.len()) else { return 0xff };
    regs.latch = vram.read_u32(byte);
    if regs.gr[5] & 0x08 == 0 {
        (regs.latch >> (8 * u32::from(regs.gr[4] & 3))) as u8
    } else {
        // Colour compare: a 1 for each pixel whose planes (those enabled in "colour don't
        // care") all match "colour compare".
        let mut diff =
            (regs.latch ^ MASK16[usize::from(regs.gr[2] & 0xf)]) & MASK16[usize::from(regs.gr[7] & 0xf)];
        diff |= diff >> 16;
        diff |= diff >> 8;
        !(diff as u8)
    }
}

/// A guest byte write of `val` at `offset` in the window.
pub(super) fn window_write(regs: &mut VgaRegs, vram: &Vram, bank_offset: u32, offset: u64, val: u8) {
    let Some(addr) = map_address(regs, bank_offset, offset) else { return };
    let map_mask = regs.sr[2] & 0x0f;
    if regs.sr[4] & 0x08 != 0 {
        if map_mask & (1 << (addr & 3)) != 0 {
            vram.write_u8(addr, val);
        }
        return;
    }
    if regs.gr[5] & 0x10 != 0 {
        let plane = usize::from(regs.gr[4] & 2) | (addr & 1);
        if map_mask & (1 << plane) != 0 {
            vram.write_u8(((addr & !1) << 1) | plane, val);
        }
        return;
    }
    let Some(byte) = addr.checked_mul(4).filter(|b| b + 4 <= vram.len()) else { return };
    let latch = regs.latch;
    let rotate = |v: u8| v.rotate_right(u32::from(regs.gr[3] & 7));
    let value = match regs.gr[5] & 3 {
        1 => latch,
        mode => {
            let (v, bit_mask) = match mode {
                0 => {
                    let v = u32::from(rotate(val)) * 0x0101_0101;
                    let set_mask = MASK16[usize::from(regs.gr[1] & 0xf)];
                    ((v & !set_mask) | (MASK16[usize::from(regs.gr[0] & 0xf)] & set_mask), regs.gr[8])
                }
                2 => (MASK16[usize::from(val & 0xf)], regs.gr[8]),
                _ => (MASK16[usize::from(regs.gr[0] & 0xf)], regs.gr[8] & rotate(val)),
            };
            let v = match (regs.gr[3] >> 3) & 3 {
                1 => v & latch,
                2 => v | latch,
                3 => v ^ latch,
                _ => v,
            };
            let bit_mask = u32::from(bit_mask) * 0x0101_0101;
            (v & bit_mask) | (latch & !bit_mask)
        }
    };
    let write_mask = MASK16[usize::from(map_mask)];
    let old = vram.read_u32(byte);
    vram.write_u32(byte, (old & !write_mask) | (value & write_mask));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (VgaRegs, Vram) {
        let mut r = VgaRegs::new();
        r.gr[6] = 0x05; // graphics, 64K at 0xA0000
        r.sr[2] = 0x0f;
        r.sr[4] = 0x06;
        (r, Vram::new(1 << 20).unwrap())
    }

    #[test]
    fn vram_accessors_are_bounded() {
        let v = Vram::new(4096).unwrap();
        v.write_u32(4092, 0x1122_3344);
        assert_eq!(v.read_u8(4092), 0x44);
        assert_eq!(v.read_u32(4092), 0x1122_3344);
        v.write_u32(4094, 1);
        v.write_u8(4096, 1);
        assert_eq!(v.read_u8(4096), 0xff);
        assert_eq!(v.read_u32(4094), u32::MAX);
        let mut b = [7u8; 8];
        v.read_into(4092, &mut b);
        assert_eq!(b, [0x44, 0x33, 0x22, 0x11, 0, 0, 0, 0]);
        v.read_into(usize::MAX, &mut b);
        v.clear(4090, usize::MAX);
        assert_eq!(v.read_u32(4092), 0);
    }

    #[test]
    fn memory_map_select_decodes_windows() {
        let (mut r, v) = setup();
        r.sr[4] |= 0x08; // chain-4 for byte addressing
        r.gr[6] = 0x01; // 128K
        window_write(&mut r, &v, 0, 0x1_2345, 0xaa);
        assert_eq!(v.read_u8(0x1_2345), 0xaa);
        r.gr[6] = 0x05; // 64K + bank
        window_write(&mut r, &v, 0x3_0000, 0x10, 0xbb);
        assert_eq!(v.read_u8(0x3_0010), 0xbb);
        assert_eq!(window_read(&mut r, &v, 0x3_0000, 0x10), 0xbb);
        assert_eq!(window_read(&mut r, &v, 0, 0x1_0000), 0xff, "0xB0000 not decoded");
        r.gr[6] = 0x09; // 32K at 0xB0000
        window_write(&mut r, &v, 0, 0x1_0004, 0xcc);
        assert_eq!(v.read_u8(4), 0xcc);
        assert_eq!(window_read(&mut r, &v, 0, 0x1_8000), 0xff);
        assert_eq!(window_read(&mut r, &v, 0, 0x0), 0xff);
        r.gr[6] = 0x0d; // 32K at 0xB8000
        window_write(&mut r, &v, 0, 0x1_8008, 0xdd);
        assert_eq!(v.read_u8(8), 0xdd);
        assert_eq!(window_read(&mut r, &v, 0, 0x1_7fff), 0xff);
        // A bank past the end of VRAM neither panics nor writes.
        r.gr[6] = 0x05;
        window_write(&mut r, &v, 0xff_0000, 0x10, 1);
        assert_eq!(window_read(&mut r, &v, 0xff_0000, 0x10), 0xff);
        r.sr[4] &= !0x08;
        window_write(&mut r, &v, 0xff_0000, 0x10, 1);
        assert_eq!(window_read(&mut r, &v, 0xff_0000, 0x10), 0xff);
    }

    #[test]
    fn chain4_respects_map_mask() {
        let (mut r, v) = setup();
        r.sr[4] |= 0x08;
        r.sr[2] = 0x05; // planes 0 and 2
        for a in 0..4 {
            window_write(&mut r, &v, 0, a, 0x10 + a as u8);
        }
        assert_eq!(v.read_u32(0), 0x0012_0010);
        assert_eq!(window_read(&mut r, &v, 0, 2), 0x12);
    }

    #[test]
    fn odd_even_text_writes_land_in_planes_0_and_1() {
        let (mut r, v) = setup();
        r.gr[6] = 0x0e; // text, 0xB8000, chain odd/even
        r.gr[5] = 0x10;
        r.sr[4] = 0x02;
        r.sr[2] = 0x03;
        window_write(&mut r, &v, 0, 0x1_8000, b'A');
        window_write(&mut r, &v, 0, 0x1_8001, 0x1f);
        window_write(&mut r, &v, 0, 0x1_8002, b'B');
        window_write(&mut r, &v, 0, 0x1_8003, 0x07);
        assert_eq!(v.read_u32(0), u32::from_le_bytes([b'A', 0x1f, 0, 0]));
        assert_eq!(v.read_u32(4), u32::from_le_bytes([b'B', 0x07, 0, 0]));
        assert_eq!(window_read(&mut r, &v, 0, 0x1_8003), 0x07);
        // Read map select bit 1 picks planes 2/3.
        r.gr[4] = 2;
        v.write_u8(2, 0x99);
        assert_eq!(window_read(&mut r, &v, 0, 0x1_8000), 0x99);
        // Map mask without plane 0: the character write is dropped.
        r.gr[4] = 0;
        r.sr[2] = 0x02;
        window_write(&mut r, &v, 0, 0x1_8000, b'Z');
        assert_eq!(v.read_u8(0), b'A');
    }

    #[test]
    fn read_mode_0_loads_latches_and_selects_a_plane() {
        let (mut r, v) = setup();
        v.write_u32(40, 0x4433_2211);
        r.gr[4] = 2;
        assert_eq!(window_read(&mut r, &v, 0, 10), 0x33);
        assert_eq!(r.latch, 0x4433_2211);
        r.gr[4] = 3;
        assert_eq!(window_read(&mut r, &v, 0, 10), 0x44);
    }

    #[test]
    fn read_mode_1_compares_colours() {
        let (mut r, v) = setup();
        // Pixel 7 (bit 7) colour 0b0101, pixel 0 colour 0b1111, others 0.
        v.write_u32(0, u32::from_le_bytes([0x81, 0x01, 0x81, 0x01]));
        r.gr[5] = 0x08;
        r.gr[2] = 0x05;
        r.gr[7] = 0x0f;
        assert_eq!(window_read(&mut r, &v, 0, 0), 0x80);
        r.gr[7] = 0x05; // only planes 0 and 2 matter: pixel 0 matches too
        assert_eq!(window_read(&mut r, &v, 0, 0), 0x81);
        r.gr[7] = 0; // nothing matters: all match
        assert_eq!(window_read(&mut r, &v, 0, 0), 0xff);
    }

    #[test]
    fn write_mode_0_rotate_set_reset_logic_and_bit_mask() {
        let (mut r, v) = setup();
        r.gr[8] = 0xff;
        window_write(&mut r, &v, 0, 0, 0x81);
        assert_eq!(v.read_u32(0), 0x8181_8181);
        r.gr[3] = 0x01; // rotate right by one
        window_write(&mut r, &v, 0, 1, 0x03);
        assert_eq!(v.read_u32(4), 0x8181_8181);
        r.gr[3] = 0;
        r.gr[0] = 0x05; // set/reset value
        r.gr[1] = 0x03; // enabled for planes 0, 1
        window_write(&mut r, &v, 0, 2, 0x3c);
        assert_eq!(v.read_u32(8), u32::from_le_bytes([0xff, 0x00, 0x3c, 0x3c]));
        // Latch then XOR with bit mask.
        r.gr[1] = 0;
        window_read(&mut r, &v, 0, 2);
        r.gr[3] = 0x18; // XOR
        r.gr[8] = 0x0f;
        window_write(&mut r, &v, 0, 2, 0xff);
        assert_eq!(v.read_u32(8), u32::from_le_bytes([0xf0, 0x0f, 0x33, 0x33]));
        // AND and OR with the latch.
        window_read(&mut r, &v, 0, 2);
        r.gr[3] = 0x08;
        r.gr[8] = 0xff;
        window_write(&mut r, &v, 0, 2, 0x3c);
        assert_eq!(v.read_u32(8), u32::from_le_bytes([0x30, 0x0c, 0x30, 0x30]));
        window_read(&mut r, &v, 0, 2);
        r.gr[3] = 0x10;
        window_write(&mut r, &v, 0, 2, 0x03);
        assert_eq!(v.read_u32(8), u32::from_le_bytes([0x33, 0x0f, 0x33, 0x33]));
        // Map mask limits the planes.
        r.gr[3] = 0;
        r.sr[2] = 0x08;
        window_write(&mut r, &v, 0, 3, 0xee);
        assert_eq!(v.read_u32(12), 0xee00_0000);
    }

    #[test]
    fn write_mode_1_copies_latches() {
        let (mut r, v) = setup();
        v.write_u32(0, 0xdead_beef);
        window_read(&mut r, &v, 0, 0);
        r.gr[5] = 1;
        window_write(&mut r, &v, 0, 5, 0x00);
        assert_eq!(v.read_u32(20), 0xdead_beef);
    }

    #[test]
    fn write_mode_2_expands_colour_through_bit_mask() {
        let (mut r, v) = setup();
        v.write_u32(0, 0xffff_ffff);
        window_read(&mut r, &v, 0, 0);
        r.gr[5] = 2;
        r.gr[8] = 0xf0;
        window_write(&mut r, &v, 0, 0, 0x06);
        assert_eq!(v.read_u32(0), u32::from_le_bytes([0x0f, 0xff, 0xff, 0x0f]));
    }

    #[test]
    fn write_mode_3_uses_rotated_data_as_bit_mask() {
        let (mut r, v) = setup();
        window_read(&mut r, &v, 0, 0); // latches zero
        r.gr[5] = 3;
        r.gr[0] = 0x09;
        r.gr[8] = 0x3c;
        r.gr[3] = 0x04; // rotate by 4
        window_write(&mut r, &v, 0, 0, 0x0f); // rotated: 0xf0, & 0x3c = 0x30
        assert_eq!(v.read_u32(0), u32::from_le_bytes([0x30, 0, 0, 0x30]));
    }
}
