// SPDX-License-Identifier: Apache-2.0
//! Fuzzes the PIIX3 IDE function: task-file, data, control and bus-master register accesses
//! plus PCI configuration writes, with an ATA disk and a CD-ROM on the primary channel and a
//! read-only disk on the secondary. The fuzzer's bytes also fill guest memory, so PRD tables
//! and their addresses and lengths are hostile too.
#![no_main]

mod common;

use block::MemDisk;
use devices::bus::BusDevice;
use devices::ide::{IdeDrive, PiixIde, PortKind};
use devices::pci::PciDevice;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Lays the function's surfaces side by side: 0x00-0x07 primary command block, 0x08 primary
/// control, 0x10-0x17 and 0x18 the secondary ones, 0x20-0x2f BAR4, 0x40-0x13f configuration.
struct Surfaces(PiixIde);

impl BusDevice for Surfaces {
    fn debug_label(&self) -> &str {
        "ide-fuzz"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            0x00..=0x07 => self.0.channel_read(0, PortKind::Command, offset, data),
            0x08 => self.0.channel_read(0, PortKind::Control, 0, data),
            0x10..=0x17 => self.0.channel_read(1, PortKind::Command, offset - 0x10, data),
            0x18 => self.0.channel_read(1, PortKind::Control, 0, data),
            0x20..=0x2f => self.0.bar_read(4, offset - 0x20, data),
            0x40..=0x13f => {
                let v = self.0.config_read(((offset - 0x40) / 4) as usize);
                data.iter_mut().enumerate().for_each(|(i, b)| *b = (v >> (8 * (i % 4))) as u8);
            }
            _ => self.0.channel_read(2, PortKind::Command, offset, data),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            0x00..=0x07 => self.0.channel_write(0, PortKind::Command, offset, data),
            0x08 => self.0.channel_write(0, PortKind::Control, 0, data),
            0x10..=0x17 => self.0.channel_write(1, PortKind::Command, offset - 0x10, data),
            0x18 => self.0.channel_write(1, PortKind::Control, 0, data),
            0x20..=0x2f => self.0.bar_write(4, offset - 0x20, data),
            0x40..=0x13f => {
                let o = (offset - 0x40) as usize;
                self.0.config_write(o / 4, o % 4, data);
            }
            _ => self.0.bar_write((offset % 7) as usize, offset, data),
        }
    }

    fn reset(&mut self) {
        PciDevice::reset(&mut self.0);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1_0000)]) else { return };
    let _ = mem.write_slice(&data[..data.len().min(0x1_0000)], GuestAddress(0));
    let mut ide = PiixIde::new(mem, common::irq(), common::irq());
    let _ = ide.attach(0, 0, IdeDrive::Disk(Box::new(MemDisk::new(vec![0x5a; 64 * 512], false))));
    let _ = ide.attach(0, 1, IdeDrive::Cdrom(Box::new(MemDisk::new(vec![0xa5; 8 * 2048], true))));
    let _ = ide.attach(1, 0, IdeDrive::Disk(Box::new(MemDisk::new(vec![0; 16 * 512 + 100], true))));
    // Bus mastering on, so DMA paths are reachable.
    ide.config_write(1, 0, &[0x05]);
    let mut dev = Surfaces(ide);
    common::replay(&mut dev, data, |d, kind| {
        // Extra operation: toggle the command register's bus-master/I/O bits.
        d.write(0x44, &[kind & 0x05]);
    });
});
