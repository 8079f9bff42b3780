// SPDX-License-Identifier: Apache-2.0
//! A type-0 PCI configuration space (256 bytes) with per-bit write masks and BAR sizing.
//!
//! Only bits marked writable change on a guest write; the status register's error bits are
//! write-1-to-clear; a BAR reads back its size mask after the guest writes all ones, as the
//! PCI Local Bus Specification 3.0, section 6.2.5.1, describes. Capabilities (section 6.7) are
//! laid out from offset 0x40 up and chained from the pointer at 0x34 in the order added.
//!
//! Set-up calls ([`PciConfigSpace::set_reg`], [`PciConfigSpace::add_bar`],
//! [`PciConfigSpace::set_interrupt_pin`], [`PciConfigSpace::add_capability`],
//! [`PciConfigSpace::write_bytes_raw`]) also record the value [`PciConfigSpace::reset`] restores.

/// Number of 32-bit registers.
pub const NUM_REGS: usize = 64;
/// Size of the configuration space in bytes.
const CONFIG_SIZE: usize = NUM_REGS * 4;
const COMMAND_REG: usize = 1;
const BAR0_REG: usize = 4;
const NUM_BARS: usize = 6;
/// Command bits a guest may set: I/O, memory, bus master, parity, SERR, INTx disable.
const COMMAND_WRITABLE: u32 = 0x0547;
/// Status bits that are write-1-to-clear (parity, aborts, SERR) in the upper half of reg 1.
const STATUS_W1C: u32 = 0xf900_0000;
const INTERRUPT_REG: usize = 15;
/// Status bit 4 ("capabilities list"), in the upper half of reg 1.
const STATUS_CAP_LIST: u32 = 1 << 20;
/// Byte offset of the capabilities pointer.
const CAP_POINTER: usize = 0x34;
/// Byte offset of the first capability (the end of the type-0 header).
const FIRST_CAP: usize = 0x40;

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// I/O ports.
    Io,
    /// 32-bit memory.
    Mem32,
    /// 64-bit memory (uses this register and the next).
    Mem64,
}

/// One configuration space.
#[derive(Debug, Clone)]
pub struct PciConfigSpace {
    regs: [u32; NUM_REGS],
    writable: [u32; NUM_REGS],
    w1c: [u32; NUM_REGS],
    bars: [Option<(BarKind, u64)>; NUM_BARS],
    /// The registers as set up; restored by [`PciConfigSpace::reset`].
    initial: [u32; NUM_REGS],
    /// Where the next capability may start.
    cap_free: usize,
    /// Offset of the last capability added, whose next pointer links the one after.
    cap_last: Option<usize>,
}

/// A range a device decodes through one of its BARs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciBarRange {
    /// BAR number (0..6).
    pub index: usize,
    /// I/O or memory.
    pub kind: BarKind,
    /// First address.
    pub address: u64,
    /// Length in bytes.
    pub size: u64,
}

impl PciConfigSpace {
    /// A header-type-0 function with the given IDs and class code (class, subclass, prog-if).
    pub fn new(vendor: u16, device: u16, class: [u8; 3], revision: u8, header_type: u8) -> Self {
        let mut regs = [0u32; NUM_REGS];
        regs[0] = u32::from(vendor) | (u32::from(device) << 16);
        regs[2] = u32::from(revision)
            | (u32::from(class[2]) << 8)
            | (u32::from(class[1]) << 16)
            | (u32::from(class[0]) << 24);
        regs[3] = u32::from(header_type) << 16;
        let mut writable = [0u32; NUM_REGS];
        writable[COMMAND_REG] = COMMAND_WRITABLE;
        // Interrupt line is scratch for the OS; the pin stays read-only.
        writable[INTERRUPT_REG] = 0xff;
        // Cache line size and latency timer.
        writable[3] = 0x0000_ffff;
        let mut w1c = [0u32; NUM_REGS];
        w1c[COMMAND_REG] = STATUS_W1C;
        PciConfigSpace {
            regs,
            writable,
            w1c,
            bars: [None; NUM_BARS],
            initial: regs,
            cap_free: FIRST_CAP,
            cap_last: None,
        }
    }

    /// Reads register `reg`; out-of-range registers read as zero.
    pub fn read(&self, reg: usize) -> u32 {
        self.regs.get(reg).copied().unwrap_or(0)
    }

    /// Applies a guest write of `data` at byte `offset` of register `reg`.
    pub fn write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        if reg >= NUM_REGS || offset >= 4 || offset + data.len() > 4 || data.is_empty() {
            return;
        }
        let mut value = 0u32;
        let mut mask = 0u32;
        for (i, b) in data.iter().enumerate() {
            value |= u32::from(*b) << (8 * (offset + i));
            mask |= 0xff << (8 * (offset + i));
        }
        let writable = self.writable[reg] & mask;
        let cleared = self.w1c[reg] & mask & value;
        self.regs[reg] = ((self.regs[reg] & !writable) | (value & writable)) & !cleared;
    }

    /// Sets register `reg` to `value` with the guest-writable bits `writable` (device side,
    /// not a guest write). The value is also what [`PciConfigSpace::reset`] restores.
    pub fn set_reg(&mut self, reg: usize, value: u32, writable: u32) {
        if let Some(r) = self.regs.get_mut(reg) {
            *r = value;
            self.writable[reg] = writable;
            self.initial[reg] = value;
        }
    }

    /// Sets the interrupt pin (1 = INTA#).
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        let set = |r: u32| (r & !0xff00) | (u32::from(pin) << 8);
        self.regs[INTERRUPT_REG] = set(self.regs[INTERRUPT_REG]);
        self.initial[INTERRUPT_REG] = set(self.initial[INTERRUPT_REG]);
    }

    /// Appends a capability with ID `id` whose body (the bytes after the ID and next pointer)
    /// is `body`; `writable` is a per-byte write mask over the body (same length, bits set =
    /// guest-writable). Returns the capability's byte offset (dword aligned, from 0x40 up), or
    /// `None` if it does not fit in the 256 bytes or `writable` is not as long as `body`.
    ///
    /// Capabilities chain in the order added, the first from the pointer at 0x34, and status
    /// bit 4 (capabilities list) is set from the first one on.
    pub fn add_capability(&mut self, id: u8, body: &[u8], writable: &[u8]) -> Option<usize> {
        if writable.len() != body.len() {
            return None;
        }
        let start = self.cap_free.checked_next_multiple_of(4)?;
        let end = start.checked_add(2)?.checked_add(body.len())?;
        if end > CONFIG_SIZE {
            return None;
        }
        let mut bytes = vec![id, 0];
        bytes.extend_from_slice(body);
        self.write_bytes_raw(start, &bytes);
        for (i, mask) in writable.iter().enumerate() {
            self.set_writable_byte(start + 2 + i, *mask);
        }
        let link = self.cap_last.map_or(CAP_POINTER, |last| last + 1);
        // `start` is below 256, so it fits the pointer byte.
        self.write_bytes_raw(link, &[start as u8]);
        self.regs[COMMAND_REG] |= STATUS_CAP_LIST;
        self.initial[COMMAND_REG] |= STATUS_CAP_LIST;
        self.cap_last = Some(start);
        self.cap_free = end;
        Some(start)
    }

    /// Reads `len` (1..=4) bytes at byte `offset` as a little-endian value, for device code
    /// reading its capability registers. Other lengths and out-of-range bytes read 0.
    pub fn read_bytes(&self, offset: usize, len: usize) -> u32 {
        if !(1..=4).contains(&len) || offset.checked_add(len).is_none_or(|end| end > CONFIG_SIZE) {
            return 0;
        }
        (0..len).fold(0, |value, i| value | (u32::from(self.byte(offset + i)) << (8 * i)))
    }

    /// Sets the bytes at `offset` to `data` regardless of the write masks (device side, e.g.
    /// to update a read-only field). The bytes are also what [`PciConfigSpace::reset`]
    /// restores. A write reaching beyond the 256 bytes is ignored.
    pub fn write_bytes_raw(&mut self, offset: usize, data: &[u8]) {
        if offset.checked_add(data.len()).is_none_or(|end| end > CONFIG_SIZE) {
            return;
        }
        for (i, b) in data.iter().enumerate() {
            let (reg, shift) = ((offset + i) / 4, 8 * ((offset + i) % 4));
            let set = |r: u32| (r & !(0xff << shift)) | (u32::from(*b) << shift);
            self.regs[reg] = set(self.regs[reg]);
            self.initial[reg] = set(self.initial[reg]);
        }
    }

    /// A PCI function reset: every register (BARs, command, status, the writable fields of
    /// capabilities) goes back to the value set up by the device.
    pub fn reset(&mut self) {
        self.regs = self.initial;
    }

    /// The byte at `offset` (below 256).
    fn byte(&self, offset: usize) -> u8 {
        (self.regs[offset / 4] >> (8 * (offset % 4))) as u8
    }

    /// Sets the write mask of the byte at `offset` (below 256).
    fn set_writable_byte(&mut self, offset: usize, mask: u8) {
        let shift = 8 * (offset % 4);
        let w = &mut self.writable[offset / 4];
        *w = (*w & !(0xff << shift)) | (u32::from(mask) << shift);
    }

    /// Declares BAR `index` of `size` bytes (a power of two; at least 4 for I/O, 16 for memory).
    pub fn add_bar(&mut self, index: usize, size: u64, kind: BarKind, prefetchable: bool) -> bool {
        let regs_needed = if kind == BarKind::Mem64 { 2 } else { 1 };
        let min = if kind == BarKind::Io { 4 } else { 16 };
        if index + regs_needed > NUM_BARS || !size.is_power_of_two() || size < min {
            return false;
        }
        let reg = BAR0_REG + index;
        self.bars[index] = Some((kind, size));
        let mask = !(size - 1);
        let flags = match kind {
            BarKind::Io => 0x1,
            BarKind::Mem32 => u32::from(prefetchable) << 3,
            BarKind::Mem64 => 0x4 | (u32::from(prefetchable) << 3),
        };
        if kind == BarKind::Mem64 {
            self.set_reg(reg, flags, mask as u32 & !0xf);
            self.set_reg(reg + 1, 0, (mask >> 32) as u32);
        } else {
            // I/O BARs keep all 32 bits writable, as QEMU's do: firmware (SeaBIOS) sizes them
            // from the full register and would see a 4 GiB BAR if the upper half read 0.
            let low = if kind == BarKind::Io { !0x3u32 } else { !0xfu32 };
            self.set_reg(reg, flags, mask as u32 & low);
        }
        true
    }

    /// The address BAR `index` decodes now (flag bits removed).
    pub fn bar_address(&self, index: usize) -> u64 {
        let Some(&low) = self.regs.get(BAR0_REG + index).filter(|_| index < NUM_BARS) else { return 0 };
        if low & 1 == 1 {
            return u64::from(low & !0x3);
        }
        let high = if low & 0x6 == 0x4 { self.read(BAR0_REG + index + 1) } else { 0 };
        (u64::from(high) << 32) | u64::from(low & !0xf)
    }

    /// The BAR ranges decoded now: declared, programmed (non-zero) and enabled by the command
    /// register's I/O or memory bit.
    pub fn bar_ranges(&self) -> Vec<PciBarRange> {
        let command = self.command();
        let mut out = Vec::new();
        for (index, bar) in self.bars.iter().enumerate() {
            let Some((kind, size)) = *bar else { continue };
            let enabled = if kind == BarKind::Io { command & 0x1 != 0 } else { command & 0x2 != 0 };
            let address = self.bar_address(index);
            // An address still reading as the size mask (mid-sizing) or zero decodes nothing.
            let sizing = match kind {
                BarKind::Io => address == u64::from(!(size - 1) as u32 & !0x3),
                BarKind::Mem32 => address == u64::from(!(size - 1) as u32 & !0xf),
                BarKind::Mem64 => address == !(size - 1) & !0xf,
            };
            if enabled && address != 0 && !sizing {
                out.push(PciBarRange { index, kind, address, size });
            }
        }
        out
    }

    /// Every register as the guest sees it now (for snapshots).
    pub fn registers(&self) -> Vec<u32> {
        self.regs.to_vec()
    }

    /// Takes registers saved by [`PciConfigSpace::registers`]; false (and nothing changed) if
    /// there are not exactly 64 of them.
    pub fn set_registers(&mut self, regs: &[u32]) -> bool {
        if regs.len() != NUM_REGS {
            return false;
        }
        self.regs.copy_from_slice(regs);
        true
    }

    /// The command register (I/O, memory, bus master enables).
    pub fn command(&self) -> u16 {
        self.regs[COMMAND_REG] as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_save_and_restore() {
        let mut c = PciConfigSpace::new(1, 2, [2, 0, 0], 0, 0);
        c.add_bar(0, 0x1000, BarKind::Mem32, false);
        c.write(4, 0, &0xfe00_0000u32.to_le_bytes());
        c.write(1, 0, &[0x6]);
        let saved = c.registers();
        let mut d = PciConfigSpace::new(1, 2, [2, 0, 0], 0, 0);
        d.add_bar(0, 0x1000, BarKind::Mem32, false);
        assert!(d.set_registers(&saved));
        assert_eq!((d.bar_address(0), d.command()), (0xfe00_0000, 0x6));
        assert!(!d.set_registers(&saved[..10]));
    }

    #[test]
    fn ids_and_class_are_read_only() {
        let mut c = PciConfigSpace::new(0x8086, 0x1237, [0x06, 0x00, 0x00], 0x02, 0);
        assert_eq!(c.read(0), 0x1237_8086);
        assert_eq!(c.read(2), 0x0600_0002);
        c.write(0, 0, &[0xff, 0xff, 0xff, 0xff]);
        c.write(2, 0, &[0; 4]);
        assert_eq!((c.read(0), c.read(2)), (0x1237_8086, 0x0600_0002));
        assert_eq!(c.read(64), 0);
    }

    #[test]
    fn command_is_masked_and_status_is_write_one_to_clear() {
        let mut c = PciConfigSpace::new(1, 2, [1, 1, 0x80], 0, 0);
        c.write(1, 0, &[0xff, 0xff]);
        assert_eq!(c.command(), COMMAND_WRITABLE as u16);
        c.set_reg(1, 0x8000_0007 | (1 << 20), COMMAND_WRITABLE);
        c.write(1, 2, &[0x00, 0x80]); // clear "detected parity error"
        assert_eq!(c.read(1) >> 16, 1 << 4, "capability-list bit is read-only and kept");
        c.write(15, 0, &[11]);
        c.set_interrupt_pin(1);
        assert_eq!(c.read(15) & 0xffff, 0x010b);
        // Bad offsets and sizes are ignored.
        c.write(1, 3, &[1, 2]);
        c.write(99, 0, &[1]);
        c.write(1, 0, &[]);
    }

    #[test]
    fn bars_report_their_size_and_decode_addresses() {
        let mut c = PciConfigSpace::new(1, 2, [2, 0, 0], 0, 0);
        assert!(c.add_bar(0, 0x2_0000, BarKind::Mem32, false));
        assert!(c.add_bar(1, 0x40, BarKind::Io, false));
        assert!(c.add_bar(2, 0x1_0000_0000, BarKind::Mem64, true));
        assert!(!c.add_bar(5, 0x1000, BarKind::Mem64, false), "needs two registers");
        assert!(!c.add_bar(3, 0x1001, BarKind::Mem32, false));
        c.write(4, 0, &[0xff; 4]);
        assert_eq!(c.read(4), 0xfffe_0000);
        c.write(5, 0, &[0xff; 4]);
        assert_eq!(c.read(5), 0xffff_ffc1);
        c.write(6, 0, &[0xff; 4]);
        c.write(7, 0, &[0xff; 4]);
        assert_eq!((c.read(6), c.read(7)), (0x0000_000c, 0xffff_ffff));
        c.write(4, 0, &0xfebc_0000u32.to_le_bytes());
        c.write(5, 0, &0xc040u32.to_le_bytes());
        c.write(6, 0, &0u32.to_le_bytes());
        c.write(7, 0, &0x8u32.to_le_bytes());
        assert_eq!(c.bar_address(0), 0xfebc_0000);
        assert_eq!(c.bar_address(1), 0xc040);
        assert_eq!(c.bar_address(2), 0x8_0000_0000);
        assert_eq!(c.bar_address(9), 0);
        assert!(c.bar_ranges().is_empty(), "decoding disabled in the command register");
        c.write(1, 0, &[0x3]);
        assert_eq!(
            c.bar_ranges(),
            vec![
                PciBarRange { index: 0, kind: BarKind::Mem32, address: 0xfebc_0000, size: 0x2_0000 },
                PciBarRange { index: 1, kind: BarKind::Io, address: 0xc040, size: 0x40 },
                PciBarRange { index: 2, kind: BarKind::Mem64, address: 0x8_0000_0000, size: 0x1_0000_0000 },
            ]
        );
    }

    #[test]
    fn capabilities_chain_in_the_order_added() {
        let mut c = PciConfigSpace::new(1, 2, [2, 0, 0], 0, 0);
        assert_eq!(c.read(1) & STATUS_CAP_LIST, 0);
        assert_eq!(c.read_bytes(CAP_POINTER, 1), 0);
        assert_eq!(c.add_capability(0x11, &[1, 2, 3], &[0; 3]), Some(0x40));
        assert_eq!(c.add_capability(0x05, &[4, 5, 6, 7], &[0; 4]), Some(0x48), "dword aligned");
        assert_ne!(c.read(1) & STATUS_CAP_LIST, 0);
        assert_eq!(c.read_bytes(CAP_POINTER, 1), 0x40);
        assert_eq!(c.read_bytes(0x40, 4), 0x0201_4811, "ID, next, body");
        assert_eq!(c.read_bytes(0x44, 1), 3);
        assert_eq!(c.read_bytes(0x48, 4), 0x0504_0005, "last next pointer is 0");
        assert_eq!(c.read_bytes(0x4b, 4), 0x0007_0605, "unaligned read across registers");
        assert_eq!((c.read_bytes(0xff, 2), c.read_bytes(0x40, 0), c.read_bytes(0x40, 5)), (0, 0, 0));
        assert_eq!(c.read_bytes(usize::MAX, 4), 0);
        // Too big, or a mask of the wrong length: nothing changes.
        assert_eq!(c.add_capability(0x09, &[0; 200], &[0; 200]), None);
        assert_eq!(c.add_capability(0x09, &[0; 2], &[0; 1]), None);
        assert_eq!(c.read_bytes(0x49, 1), 0);
        // The last one fits exactly.
        assert_eq!(c.add_capability(0x09, &[0xaa; 174], &[0; 174]), Some(0x50));
        assert_eq!((c.read_bytes(0x49, 1), c.read_bytes(0xfe, 2)), (0x50, 0xaaaa));
        assert_eq!(c.add_capability(0x09, &[], &[]), None);
    }

    #[test]
    fn capability_bodies_obey_their_write_masks() {
        let mut c = PciConfigSpace::new(1, 2, [2, 0, 0], 0, 0);
        let at = c.add_capability(0x11, &[0x07, 0x00, 0x12, 0x34], &[0x00, 0xc0, 0xff, 0x0f]).unwrap();
        assert_eq!(at, 0x40);
        c.write(0x40 / 4, 0, &[0xff; 4]);
        assert_eq!(c.read(0x40 / 4), 0xc007_0011, "ID, next and read-only bits kept");
        c.write(0x44 / 4, 0, &[0xff, 0xff]);
        assert_eq!(c.read_bytes(0x44, 2), 0x3fff);
        c.write(0x40 / 4, 3, &[0x00]);
        assert_eq!(c.read_bytes(0x42, 2), 0x0007);
        // The device may still change read-only bytes.
        c.write_bytes_raw(0x42, &[0x09]);
        assert_eq!(c.read_bytes(0x42, 1), 9);
        c.write_bytes_raw(0xff, &[1, 2]);
        c.write_bytes_raw(usize::MAX, &[1]);
        assert_eq!(c.read_bytes(0xfc, 4), 0);
    }

    #[test]
    fn reset_restores_the_set_up_registers() {
        let mut c = PciConfigSpace::new(1, 2, [2, 0, 0], 0, 0);
        c.set_reg(11, 0x1234_5678, 0);
        assert!(c.add_bar(0, 0x1000, BarKind::Mem32, false));
        c.set_interrupt_pin(1);
        c.add_capability(0x11, &[0x01, 0x00], &[0x00, 0xc0]).unwrap();
        c.write_bytes_raw(0x41, &[0]);
        let set_up: Vec<u32> = (0..NUM_REGS).map(|r| c.read(r)).collect();
        c.write(1, 0, &[0x07, 0x00]);
        c.write(4, 0, &0xfebf_0000u32.to_le_bytes());
        c.write(15, 0, &[10]);
        c.write(0x40 / 4, 3, &[0xc0]);
        assert_eq!(c.bar_ranges().len(), 1);
        assert_eq!(c.read_bytes(0x42, 2), 0xc001);
        c.reset();
        assert_eq!((0..NUM_REGS).map(|r| c.read(r)).collect::<Vec<_>>(), set_up);
        assert_eq!((c.command(), c.bar_address(0), c.read(15)), (0, 0, 0x0100));
        assert!(c.bar_ranges().is_empty());
        // Write masks survive the reset.
        c.write(0x40 / 4, 3, &[0x80]);
        assert_eq!(c.read_bytes(0x42, 2), 0x8001);
    }
}
