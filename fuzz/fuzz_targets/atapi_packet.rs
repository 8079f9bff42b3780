// SPDX-License-Identifier: Apache-2.0
//! Fuzzes ATAPI packet commands: each 16-byte record is a byte count limit, a DMA flag and a
//! 12-byte command packet sent with PACKET; the reply is drained by PIO (bounded) or by
//! bus-master DMA through a PRD table that the fuzzer's bytes also shape.
#![no_main]

mod common;

use block::MemDisk;
use devices::ide::{IdeDrive, PiixIde, PortKind};
use devices::pci::PciDevice;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const CH: usize = 1;

fn outb(ide: &mut PiixIde, reg: u64, v: u8) {
    ide.channel_write(CH, PortKind::Command, reg, &[v]);
}

fn inb(ide: &mut PiixIde, reg: u64) -> u8 {
    let mut b = [0u8];
    ide.channel_read(CH, PortKind::Command, reg, &mut b);
    b[0]
}

fuzz_target!(|data: &[u8]| {
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1_0000)]) else { return };
    let _ = mem.write_slice(&data[..data.len().min(0x1_0000)], GuestAddress(0));
    let mut ide = PiixIde::new(mem, common::irq(), common::irq());
    let image: Vec<u8> = (0..32 * 2048u32).map(|i| i as u8).collect();
    let _ = ide.attach(CH, 0, IdeDrive::Cdrom(Box::new(MemDisk::new(image, true))));
    ide.config_write(1, 0, &[0x05]);
    outb(&mut ide, 6, 0xa0);
    for rec in data.chunks(16) {
        if rec.len() < 16 {
            break;
        }
        let (limit, flags, cdb) = (u16::from_le_bytes([rec[0], rec[1]]), rec[2], &rec[4..16]);
        outb(&mut ide, 1, flags & 1);
        outb(&mut ide, 4, limit as u8);
        outb(&mut ide, 5, (limit >> 8) as u8);
        if flags & 2 != 0 {
            // PRD table somewhere in the fuzzer-filled memory (or outside it).
            ide.bar_write(4, 8 + 4, &u32::from(rec[3]).wrapping_mul(0x101).to_le_bytes());
            ide.bar_write(4, 8, &[0x09]);
        }
        outb(&mut ide, 7, if flags & 4 != 0 { rec[3] } else { 0xa0 });
        for w in cdb.chunks(2) {
            ide.channel_write(CH, PortKind::Command, 0, w);
        }
        // Drain at most 64 KiB of PIO data.
        let mut budget = 0x1_0000usize;
        while inb(&mut ide, 7) & 0x08 != 0 && budget > 0 {
            let mut d = [0u8; 4];
            ide.channel_read(CH, PortKind::Command, 0, &mut d);
            budget -= 4;
        }
        ide.bar_write(4, 8, &[0x00]);
        ide.bar_write(4, 10, &[0x06]);
        if flags & 8 != 0 {
            ide.channel_write(CH, PortKind::Control, 0, &[0x04]);
            ide.channel_write(CH, PortKind::Control, 0, &[0x00]);
            outb(&mut ide, 6, 0xa0);
        }
    }
});
