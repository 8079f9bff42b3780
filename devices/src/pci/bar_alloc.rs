// SPDX-License-Identifier: Apache-2.0
//! BAR assignment for a machine without firmware: what SeaBIOS does on the PC machine, done
//! by the VMM before the guest runs on the direct machine.
//!
//! Every BAR of every function on the bus is sized the standard way through configuration
//! space (PCI Local Bus Specification 3.0, section 6.2.5.1: write all ones, read the mask
//! back, restore), then given a naturally aligned address from its window, largest first so
//! that alignment wastes nothing: I/O BARs from the I/O window, 32-bit memory BARs from the
//! 32-bit window, 64-bit memory BARs from the 32-bit window while they fit there and from the
//! 64-bit window (above RAM) after that. The BAR registers are programmed and the command
//! register enables memory decoding (and I/O decoding if the function has an I/O BAR) and
//! bus mastering. Mapping the BARs on the buses is the caller's job
//! ([`super::bar_map::BarMapper`]).

use std::ops::Range;

use super::config_io::PciRoot;
use super::{BarKind, PciDevice};
use crate::bus::lock;

/// Configuration register of BAR 0.
const BAR0_REG: usize = 4;
/// BARs of a type-0 header.
const NUM_BARS: usize = 6;
/// Command register bits: I/O space, memory space, bus master.
const COMMAND_IO: u32 = 0x1;
const COMMAND_MEMORY: u32 = 0x2;
const COMMAND_MASTER: u32 = 0x4;

/// Errors while assigning BARs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A BAR reads back a mask that is no power-of-two size, or a 64-bit BAR in the last slot.
    #[error("{device}: BAR {index} is malformed (size mask {mask:#x})")]
    BadBar {
        /// The function, like `vda (00:01.0)`.
        device: String,
        /// BAR number.
        index: usize,
        /// What the BAR read back after all ones were written.
        mask: u64,
    },
    /// No room is left in the window for a BAR.
    #[error("{device}: no room for BAR {index} ({size:#x} bytes of {kind:?} space) in the PCI window")]
    Exhausted {
        /// The function, like `vda (00:01.0)`.
        device: String,
        /// BAR number.
        index: usize,
        /// What the BAR decodes.
        kind: BarKind,
        /// Its size in bytes.
        size: u64,
    },
}

/// A result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The address windows BARs are placed in (each a half-open range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciWindows {
    /// I/O ports.
    pub io: Range<u64>,
    /// Memory below 4 GiB.
    pub mem32: Range<u64>,
    /// Memory above RAM for 64-bit BARs that do not fit below 4 GiB, if any.
    pub mem64: Option<Range<u64>>,
}

/// One BAR as sized through configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizedBar {
    /// BAR number (0..6).
    pub index: usize,
    /// What it decodes.
    pub kind: BarKind,
    /// Its size in bytes (a power of two).
    pub size: u64,
}

/// Where a BAR went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// The function's (device, function) address on bus 0.
    pub slot: (u8, u8),
    /// BAR number.
    pub index: usize,
    /// What it decodes.
    pub kind: BarKind,
    /// First address.
    pub address: u64,
    /// Size in bytes.
    pub size: u64,
}

/// A bump allocator over one window.
#[derive(Debug, Clone)]
struct Window {
    next: u64,
    end: u64,
}

impl Window {
    fn new(range: &Range<u64>) -> Self {
        Window { next: range.start, end: range.end }
    }

    /// A naturally aligned block of `size` (a power of two) bytes, if it fits.
    fn take(&mut self, size: u64) -> Option<u64> {
        let start = self.next.checked_next_multiple_of(size)?;
        let end = start.checked_add(size).filter(|&e| e <= self.end)?;
        self.next = end;
        Some(start)
    }
}

/// Hands out BAR addresses from the windows of one bus.
#[derive(Debug, Clone)]
pub struct BarAllocator {
    io: Window,
    mem32: Window,
    mem64: Option<Window>,
    /// Whether a BAR was placed in the 64-bit window.
    used_mem64: bool,
}

/// Sizes the BARs of `dev` (decoding is off while it is done, and the command register and
/// BAR registers are left as they were).
pub fn size_bars(dev: &mut dyn PciDevice, device: &str) -> Result<Vec<SizedBar>> {
    let write = |dev: &mut dyn PciDevice, reg: usize, v: u32| dev.config_write(reg, 0, &v.to_le_bytes());
    let command = dev.config_read(1) & 0xffff;
    write(dev, 1, command & !(COMMAND_IO | COMMAND_MEMORY));
    // Each register is probed by itself, after the one before was restored.
    let probe = |dev: &mut dyn PciDevice, reg: usize| {
        let saved = dev.config_read(reg);
        write(dev, reg, u32::MAX);
        let mask = dev.config_read(reg);
        write(dev, reg, saved);
        mask
    };
    let mut bars = Vec::new();
    let mut index = 0;
    let mut result = Ok(());
    while index < NUM_BARS {
        let reg = BAR0_REG + index;
        let low = probe(dev, reg);
        let bad = |mask: u64| Error::BadBar { device: device.to_string(), index, mask };
        if low == 0 {
            index += 1;
            continue;
        }
        let (kind, mask, regs) = if low & 1 == 1 {
            // I/O: bits 31-2 name the size; a device may hardwire the upper 16 bits to 0.
            let mut m = low & !0x3;
            if m & 0xffff_0000 == 0 {
                m |= 0xffff_0000;
            }
            (BarKind::Io, u64::from(m) | 0xffff_ffff_0000_0000, 1)
        } else if (low >> 1) & 0x3 == 0x2 {
            if index + 1 >= NUM_BARS {
                result = Err(bad(u64::from(low)));
                break;
            }
            let high = probe(dev, reg + 1);
            (BarKind::Mem64, (u64::from(high) << 32) | u64::from(low & !0xf), 2)
        } else {
            (BarKind::Mem32, u64::from(low & !0xf) | 0xffff_ffff_0000_0000, 1)
        };
        let size = (!mask).wrapping_add(1);
        if size == 0 || !size.is_power_of_two() {
            result = Err(bad(mask));
            break;
        }
        bars.push(SizedBar { index, kind, size });
        index += regs;
    }
    write(dev, 1, command);
    result.map(|()| bars)
}

impl BarAllocator {
    /// An allocator over `windows`.
    pub fn new(windows: &PciWindows) -> Self {
        BarAllocator {
            io: Window::new(&windows.io),
            mem32: Window::new(&windows.mem32),
            mem64: windows.mem64.as_ref().map(Window::new),
            used_mem64: false,
        }
    }

    /// Whether a BAR went to the 64-bit window (which the firmware tables must then describe).
    pub fn used_mem64(&self) -> bool {
        self.used_mem64
    }

    /// An address for a BAR of `kind` and `size` bytes, if one is left.
    pub fn allocate(&mut self, kind: BarKind, size: u64) -> Option<u64> {
        if !size.is_power_of_two() {
            return None;
        }
        match kind {
            BarKind::Io => self.io.take(size),
            BarKind::Mem32 => self.mem32.take(size),
            BarKind::Mem64 => self.mem32.take(size).or_else(|| {
                let at = self.mem64.as_mut()?.take(size)?;
                self.used_mem64 = true;
                Some(at)
            }),
        }
    }

    /// Sizes, places and programs the BARs of every function on `root`, and enables decoding
    /// and bus mastering on the functions with BARs. Functions without BARs are left alone.
    pub fn assign_bus(&mut self, root: &PciRoot) -> Result<Vec<Assignment>> {
        let mut wanted = Vec::new();
        for (slot, dev) in root.devices() {
            let mut d = lock(dev);
            let name = format!("{} (00:{:02x}.{})", d.debug_label(), slot.0, slot.1);
            for bar in size_bars(&mut *d, &name)? {
                wanted.push((slot, name.clone(), bar));
            }
        }
        // Largest first (a stable sort, so bus order among equals): each block then starts
        // where the one before ended, already aligned.
        wanted.sort_by_key(|w| std::cmp::Reverse(w.2.size));
        let mut placed = Vec::with_capacity(wanted.len());
        for (slot, name, bar) in wanted {
            let address = self.allocate(bar.kind, bar.size).ok_or(Error::Exhausted {
                device: name,
                index: bar.index,
                kind: bar.kind,
                size: bar.size,
            })?;
            placed.push(Assignment { slot, index: bar.index, kind: bar.kind, address, size: bar.size });
        }
        placed.sort_by_key(|a| (a.slot, a.index));
        for (slot, dev) in root.devices() {
            let mine: Vec<&Assignment> = placed.iter().filter(|a| a.slot == slot).collect();
            if !mine.is_empty() {
                program(&mut *lock(dev), &mine);
            }
        }
        Ok(placed)
    }
}

/// Writes the BAR registers and turns on decoding and bus mastering.
fn program(dev: &mut dyn PciDevice, bars: &[&Assignment]) {
    let write = |dev: &mut dyn PciDevice, reg: usize, v: u32| dev.config_write(reg, 0, &v.to_le_bytes());
    let mut enable = COMMAND_MASTER;
    for bar in bars {
        let reg = BAR0_REG + bar.index;
        // The flag bits are read-only, so writing the bare address keeps them.
        write(dev, reg, bar.address as u32);
        if bar.kind == BarKind::Mem64 {
            write(dev, reg + 1, (bar.address >> 32) as u32);
        }
        enable |= if bar.kind == BarKind::Io { COMMAND_IO } else { COMMAND_MEMORY };
    }
    let command = dev.config_read(1) & 0xffff;
    write(dev, 1, command | enable);
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::pci::i440fx::I440fx;
    use crate::pci::{PciBarRange, PciConfigSpace};

    struct Dev(PciConfigSpace);

    impl PciDevice for Dev {
        fn debug_label(&self) -> &str {
            "dev"
        }
        fn config_read(&self, reg: usize) -> u32 {
            self.0.read(reg)
        }
        fn config_write(&mut self, reg: usize, offset: usize, data: &[u8]) {
            self.0.write(reg, offset, data)
        }
        fn bar_ranges(&self) -> Vec<PciBarRange> {
            self.0.bar_ranges()
        }
        fn reset(&mut self) {
            self.0.reset()
        }
    }

    fn dev(bars: &[(usize, u64, BarKind)]) -> Dev {
        let mut c = PciConfigSpace::new(0x1af4, 0x1042, [1, 0, 0], 1, 0);
        for &(index, size, kind) in bars {
            assert!(c.add_bar(index, size, kind, false));
        }
        Dev(c)
    }

    const WINDOWS: PciWindows =
        PciWindows { io: 0x1000..0x1_0000, mem32: 0xc000_0000..0xfec0_0000, mem64: None };

    #[test]
    fn sizes_every_kind_and_restores_the_registers() {
        let mut d = dev(&[
            (0, 0x8000, BarKind::Mem32),
            (1, 0x40, BarKind::Io),
            (2, 0x2_0000_0000, BarKind::Mem64),
            (5, 0x10, BarKind::Mem32),
        ]);
        d.config_write(1, 0, &[0x03, 0x00]);
        d.config_write(5, 0, &0xc040u32.to_le_bytes());
        let before: Vec<u32> = (0..16).map(|r| d.config_read(r)).collect();
        let bars = size_bars(&mut d, "d").unwrap();
        assert_eq!(
            bars,
            [
                SizedBar { index: 0, kind: BarKind::Mem32, size: 0x8000 },
                SizedBar { index: 1, kind: BarKind::Io, size: 0x40 },
                SizedBar { index: 2, kind: BarKind::Mem64, size: 0x2_0000_0000 },
                SizedBar { index: 5, kind: BarKind::Mem32, size: 0x10 },
            ]
        );
        assert_eq!((0..16).map(|r| d.config_read(r)).collect::<Vec<_>>(), before);
        assert!(size_bars(&mut dev(&[]), "none").unwrap().is_empty());
    }

    /// Config space as a device might get it wrong: a BAR whose mask has a hole in it.
    struct Broken;
    impl PciDevice for Broken {
        fn debug_label(&self) -> &str {
            "broken"
        }
        fn config_read(&self, reg: usize) -> u32 {
            match reg {
                4 => 0xfff0_f000,
                9 => 0x4,
                _ => 0,
            }
        }
        fn config_write(&mut self, _reg: usize, _offset: usize, _data: &[u8]) {}
        fn reset(&mut self) {}
    }

    #[test]
    fn malformed_bars_are_refused() {
        let e = size_bars(&mut Broken, "x (00:03.0)").unwrap_err();
        assert!(matches!(e, Error::BadBar { index: 0, .. }), "{e}");
        assert!(e.to_string().starts_with("x (00:03.0): BAR 0"), "{e}");
    }

    #[test]
    fn allocations_are_naturally_aligned() {
        let mut a = BarAllocator::new(&WINDOWS);
        assert_eq!(a.allocate(BarKind::Mem32, 0x10), Some(0xc000_0000));
        assert_eq!(a.allocate(BarKind::Mem32, 0x8000), Some(0xc000_8000));
        assert_eq!(a.allocate(BarKind::Mem32, 0x100_0000), Some(0xc100_0000));
        assert_eq!(a.allocate(BarKind::Io, 0x4), Some(0x1000));
        assert_eq!(a.allocate(BarKind::Io, 0x100), Some(0x1100));
        assert_eq!(a.allocate(BarKind::Io, 0x1_0000), None, "larger than the window");
        assert_eq!(a.allocate(BarKind::Mem32, 0x3000), None, "not a power of two");
        // 64-bit BARs use the 32-bit window while they fit, and there is no other here.
        assert_eq!(a.allocate(BarKind::Mem64, 0x1000_0000), Some(0xd000_0000));
        assert_eq!(a.allocate(BarKind::Mem64, 0x1_0000_0000), None);
        assert!(!a.used_mem64());
    }

    #[test]
    fn large_64_bit_bars_go_above_ram() {
        let mut a = BarAllocator::new(&PciWindows { mem64: Some(0x2_0000_0000..0x40_0000_0000), ..WINDOWS });
        assert_eq!(a.allocate(BarKind::Mem64, 0x2000_0000), Some(0xc000_0000));
        assert!(!a.used_mem64());
        // 0xe000_0000 + 512 MiB would reach the IOAPIC.
        assert_eq!(a.allocate(BarKind::Mem64, 0x2000_0000), Some(0x2_0000_0000));
        assert!(a.used_mem64());
        assert_eq!(a.allocate(BarKind::Mem64, 0x1_0000_0000), Some(0x3_0000_0000));
        assert_eq!(a.allocate(BarKind::Mem64, 0x1000), Some(0xe000_0000), "small ones still fit below");
        assert_eq!(a.allocate(BarKind::Mem32, 0x4000_0000), None, "32-bit BARs stay below 4 GiB");
    }

    fn shared(d: Dev) -> Arc<Mutex<dyn PciDevice>> {
        Arc::new(Mutex::new(d))
    }

    #[test]
    fn a_bus_is_assigned_programmed_and_enabled() {
        let mut root = PciRoot::new();
        assert!(root.add(0, 0, Arc::new(Mutex::new(I440fx::new()))));
        let small = shared(dev(&[(0, 0x1000, BarKind::Mem32), (1, 0x20, BarKind::Io)]));
        let big = shared(dev(&[(0, 0x8000, BarKind::Mem32), (2, 0x10_0000, BarKind::Mem64)]));
        assert!(root.add(1, 0, small.clone()));
        assert!(root.add(2, 0, big.clone()));
        let host_command = lock(root.get(0, 0).unwrap()).config_read(1);
        let placed = BarAllocator::new(&WINDOWS).assign_bus(&root).unwrap();
        let at = |slot: u8, index: usize| {
            placed.iter().find(|a| a.slot == (slot, 0) && a.index == index).map(|a| a.address)
        };
        // Largest first: the 1 MiB BAR, then 32 KiB, then 4 KiB.
        assert_eq!(at(2, 2), Some(0xc000_0000));
        assert_eq!(at(2, 0), Some(0xc010_0000));
        assert_eq!(at(1, 0), Some(0xc010_8000));
        assert_eq!(at(1, 1), Some(0x1000));
        assert_eq!(placed.len(), 4);
        assert_eq!(lock(root.get(0, 0).unwrap()).config_read(1), host_command, "no BARs: untouched");
        assert_eq!(lock(&small).config_read(1) & 0x7, 0x7, "I/O, memory, bus master");
        assert_eq!(lock(&big).config_read(1) & 0x7, 0x6, "memory, bus master; no I/O BAR");
        assert_eq!(
            lock(&big).bar_ranges(),
            [
                PciBarRange { index: 0, kind: BarKind::Mem32, address: 0xc010_0000, size: 0x8000 },
                PciBarRange { index: 2, kind: BarKind::Mem64, address: 0xc000_0000, size: 0x10_0000 },
            ]
        );
        assert_eq!(lock(&small).bar_ranges().len(), 2);
    }

    #[test]
    fn exhaustion_names_the_device() {
        let mut root = PciRoot::new();
        for slot in 1..4 {
            assert!(root.add(slot, 0, shared(dev(&[(0, 0x8000, BarKind::Mem32)]))));
        }
        let tight = PciWindows { mem32: 0xc000_0000..0xc001_0000, ..WINDOWS };
        let e = BarAllocator::new(&tight).assign_bus(&root).unwrap_err();
        assert_eq!(
            e,
            Error::Exhausted { device: "dev (00:03.0)".into(), index: 0, kind: BarKind::Mem32, size: 0x8000 }
        );
        assert!(e.to_string().starts_with("dev (00:03.0): no room for BAR 0"), "{e}");
        let no_io = PciWindows { io: 0x1000..0x1000, ..WINDOWS };
        let mut root = PciRoot::new();
        assert!(root.add(5, 0, shared(dev(&[(4, 0x100, BarKind::Io)]))));
        let e = BarAllocator::new(&no_io).assign_bus(&root).unwrap_err();
        assert!(matches!(e, Error::Exhausted { kind: BarKind::Io, index: 4, .. }), "{e}");
    }
}
