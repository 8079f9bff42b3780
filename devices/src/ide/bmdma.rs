// SPDX-License-Identifier: Apache-2.0
//! Bus-master IDE DMA (SFF-8038i, PIIX3 datasheet section 2.7): the three registers of one
//! channel and the walk of its Physical Region Descriptor table in guest memory.
//!
//! Registers (offset within the channel's 8-byte block of BAR4):
//! - `+0` command: bit 0 start/stop, bit 3 direction (1 = the controller writes memory);
//! - `+2` status: bit 0 active (read-only), bit 1 error and bit 2 interrupt (write 1 to
//!   clear), bits 5 and 6 "drive 0/1 DMA capable" (scratch for the driver);
//! - `+4` PRD table address, dword aligned.
//!
//! A PRD entry is 8 bytes: a 32-bit physical address (bit 0 ignored), a 16-bit byte count
//! (bit 0 ignored, 0 meaning 64 KiB) and bit 31 of the second dword marking the last entry.
//! The walk stops after [`MAX_PRD_ENTRIES`] entries (a table may not cross a 64 KiB boundary,
//! so no valid table is longer); entries are read at ascending addresses, without wrapping
//! at the 64 KiB boundary. Every region is checked against guest memory before it is
//! touched; a bad one stops the transfer with the error bit set.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// Command: start the transfer.
pub const CMD_START: u8 = 0x01;
/// Command: the controller writes guest memory (a device-to-memory transfer).
pub const CMD_TO_MEMORY: u8 = 0x08;
/// Status: a transfer is active (the PRD table is not exhausted).
pub const STATUS_ACTIVE: u8 = 0x01;
/// Status: a guest memory access failed.
pub const STATUS_ERROR: u8 = 0x02;
/// Status: the drive raised its interrupt.
pub const STATUS_INTR: u8 = 0x04;
/// Status: the driver's "drive 0 / drive 1 can do DMA" scratch bits.
pub const STATUS_DRIVE_CAP: u8 = 0x60;
/// Longest PRD table walked: 64 KiB of 8-byte entries.
pub const MAX_PRD_ENTRIES: u32 = 8192;
const PRD_EOT: u32 = 0x8000_0000;

/// The registers of one channel's bus-master engine.
#[derive(Debug, Default, Clone)]
pub struct BmDma {
    /// Command register.
    pub command: u8,
    /// Status register.
    pub status: u8,
    /// PRD table address.
    pub prd: u32,
}

impl BmDma {
    /// Power-on state.
    pub fn reset(&mut self) {
        *self = BmDma::default();
    }

    /// True when the guest has started the engine.
    pub fn started(&self) -> bool {
        self.command & CMD_START != 0
    }

    fn read_byte(&self, offset: u64) -> u8 {
        match offset {
            0 => self.command,
            2 => self.status,
            4..=7 => (self.prd >> (8 * (offset - 4))) as u8,
            _ => 0,
        }
    }

    /// A guest read of the channel's block; each byte is its own register.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = offset.checked_add(i as u64).map_or(0xff, |o| self.read_byte(o));
        }
    }

    /// A guest write; returns true if it set the start bit (the caller then tries to run a
    /// pending transfer).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> bool {
        let mut started = false;
        for (i, &v) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(0) => {
                    let was = self.started();
                    // The direction bit may not change while the engine keeps running.
                    let dir = if was && v & CMD_START != 0 {
                        self.command & CMD_TO_MEMORY
                    } else {
                        v & CMD_TO_MEMORY
                    };
                    self.command = (v & CMD_START) | dir;
                    if v & CMD_START == 0 {
                        // Stopping aborts whatever is left of the transfer.
                        self.status &= !STATUS_ACTIVE;
                    } else if !was {
                        self.status |= STATUS_ACTIVE;
                        started = true;
                    }
                }
                Some(2) => {
                    let cleared = v & (STATUS_ERROR | STATUS_INTR);
                    self.status = (self.status & !cleared & !STATUS_DRIVE_CAP) | (v & STATUS_DRIVE_CAP);
                }
                Some(o @ 4..=7) => {
                    let shift = 8 * (o - 4);
                    self.prd = (self.prd & !(0xff << shift)) | (u32::from(v) << shift);
                    self.prd &= !0x3;
                }
                _ => {}
            }
        }
        started
    }
}

/// How a transfer through the PRD table ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaEnd {
    /// All bytes moved; `exhausted` is true if that used up the whole table.
    Done {
        /// The table ended exactly with the transfer.
        exhausted: bool,
    },
    /// The table ended first; this many bytes moved.
    Short(u64),
    /// A descriptor or buffer lay outside guest memory.
    MemoryError,
    /// The device side failed (disk I/O error).
    DeviceError,
}

/// Moves `len` bytes between the device and the buffers the PRD table at `table` describes.
///
/// `device` is called once per region with the byte offset within the transfer and a bounce
/// buffer of at most 64 KiB: when `to_memory`, it fills the buffer (which then goes to guest
/// memory); otherwise the buffer holds guest memory and it consumes it. It returns false on
/// an I/O error.
pub fn transfer(
    mem: &GuestMemoryMmap,
    table: u32,
    len: u64,
    to_memory: bool,
    mut device: impl FnMut(u64, &mut [u8]) -> bool,
) -> DmaEnd {
    let mut done = 0u64;
    let mut bounce = Vec::new();
    for i in 0..MAX_PRD_ENTRIES {
        let entry_addr = u64::from(table) + 8 * u64::from(i);
        let mut entry = [0u8; 8];
        if mem.read_slice(&mut entry, GuestAddress(entry_addr)).is_err() {
            crate::warn_limited!("ide: PRD entry at {entry_addr:#x} is outside guest memory");
            return DmaEnd::MemoryError;
        }
        let addr = u64::from(u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]) & !1);
        let flags = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
        let count = match flags & 0xfffe {
            0 => 0x1_0000u64,
            n => u64::from(n),
        };
        let eot = flags & PRD_EOT != 0;
        let seg = count.min(len - done);
        if seg > 0 {
            let n = seg as usize; // at most 64 KiB
            if !mem.check_range(GuestAddress(addr), n) {
                crate::warn_limited!("ide: PRD buffer {addr:#x}+{n:#x} is outside guest memory");
                return DmaEnd::MemoryError;
            }
            bounce.resize(n, 0);
            let ok = if to_memory {
                device(done, &mut bounce) && mem.write_slice(&bounce, GuestAddress(addr)).is_ok()
            } else {
                mem.read_slice(&mut bounce, GuestAddress(addr)).is_ok() && device(done, &mut bounce)
            };
            if !ok {
                return DmaEnd::DeviceError;
            }
            done += seg;
        }
        if done == len {
            return DmaEnd::Done { exhausted: eot && seg == count };
        }
        if eot {
            return DmaEnd::Short(done);
        }
    }
    crate::warn_limited!("ide: PRD table at {table:#x} has no end marker in {MAX_PRD_ENTRIES} entries");
    DmaEnd::Short(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x2_0000)]).unwrap()
    }

    fn prd(mem: &GuestMemoryMmap, at: u64, entries: &[(u32, u32, bool)]) {
        for (i, &(addr, count, eot)) in entries.iter().enumerate() {
            let flags = (count & 0xffff) | if eot { PRD_EOT } else { 0 };
            mem.write_obj(addr, GuestAddress(at + 8 * i as u64)).unwrap();
            mem.write_obj(flags, GuestAddress(at + 8 * i as u64 + 4)).unwrap();
        }
    }

    #[test]
    fn registers_mask_and_clear() {
        let mut b = BmDma::default();
        assert!(b.write(0, &[0xff]));
        assert_eq!(b.command, CMD_START | CMD_TO_MEMORY);
        assert_eq!(b.status & STATUS_ACTIVE, STATUS_ACTIVE);
        assert!(!b.write(0, &[CMD_START]), "already started");
        assert_eq!(b.command, CMD_START | CMD_TO_MEMORY, "direction is frozen while active");
        b.write(0, &[0]);
        assert_eq!(b.status & STATUS_ACTIVE, 0);
        b.status |= STATUS_ERROR | STATUS_INTR;
        b.write(2, &[STATUS_INTR | 0x60 | STATUS_ACTIVE]);
        assert_eq!(b.status, STATUS_ERROR | 0x60, "INTR cleared, ACTIVE read-only, cap bits kept");
        b.write(4, &0x1234_5677u32.to_le_bytes());
        assert_eq!(b.prd, 0x1234_5674);
        let mut d = [0u8; 8];
        b.read(0, &mut d);
        assert_eq!(d, [0, 0, STATUS_ERROR | 0x60, 0, 0x74, 0x56, 0x34, 0x12]);
        b.write(6, &[0xab]);
        assert_eq!(b.prd, 0x12ab_5674);
        let mut x = [0u8; 2];
        b.read(u64::MAX, &mut x);
        assert_eq!(x, [0, 0xff], "past the end of the address space reads all ones");
        b.reset();
        assert_eq!((b.command, b.status, b.prd), (0, 0, 0));
    }

    #[test]
    fn walks_entries_in_both_directions() {
        let m = mem();
        prd(&m, 0x100, &[(0x1000, 0x200, false), (0x3001, 0x400, true)]);
        let end = transfer(&m, 0x100, 0x600, true, |off, buf| {
            buf.fill((off / 0x200) as u8 + 1);
            true
        });
        assert_eq!(end, DmaEnd::Done { exhausted: true });
        assert_eq!(m.read_obj::<u8>(GuestAddress(0x11ff)).unwrap(), 1);
        assert_eq!(m.read_obj::<u8>(GuestAddress(0x3000)).unwrap(), 2, "address bit 0 ignored");
        let mut seen = Vec::new();
        let end = transfer(&m, 0x100, 0x300, false, |off, buf| {
            seen.push((off, buf.len(), buf[0]));
            true
        });
        assert_eq!(end, DmaEnd::Done { exhausted: false });
        assert_eq!(seen, vec![(0, 0x200, 1), (0x200, 0x100, 2)]);
    }

    #[test]
    fn short_tables_bad_addresses_and_device_errors() {
        let m = mem();
        prd(&m, 0x100, &[(0x1000, 0x200, true)]);
        assert_eq!(transfer(&m, 0x100, 0x400, true, |_, _| true), DmaEnd::Short(0x200));
        prd(&m, 0x100, &[(0x1_f000, 0, true)]);
        assert_eq!(
            transfer(&m, 0x100, 0x1_0000, true, |_, _| true),
            DmaEnd::MemoryError,
            "64 KiB past the end"
        );
        assert_eq!(transfer(&m, 0x1_fffc, 0x10, true, |_, _| true), DmaEnd::MemoryError);
        assert_eq!(transfer(&m, 0xffff_fff8, 0x10, true, |_, _| true), DmaEnd::MemoryError);
        prd(&m, 0x100, &[(0x1000, 0x200, true)]);
        assert_eq!(transfer(&m, 0x100, 0x200, true, |_, _| false), DmaEnd::DeviceError);
        // A table with no end marker stops after MAX_PRD_ENTRIES.
        let big = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x4_0000)]).unwrap();
        let mut n = 0;
        for i in 0..MAX_PRD_ENTRIES as u64 {
            big.write_obj(0x2_0000u32, GuestAddress(i * 8)).unwrap();
            big.write_obj(2u32, GuestAddress(i * 8 + 4)).unwrap();
        }
        assert_eq!(
            transfer(&big, 0, u64::MAX, true, |_, _| {
                n += 1;
                true
            }),
            DmaEnd::Short(2 * u64::from(MAX_PRD_ENTRIES))
        );
        assert_eq!(n, MAX_PRD_ENTRIES);
    }
}
