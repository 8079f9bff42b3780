// SPDX-License-Identifier: Apache-2.0
//! Fuzzes the e1000: register writes and reads through both BARs, PCI configuration writes,
//! and received frames, with guest memory (descriptor rings and buffers) filled from the
//! fuzzer's bytes so every descriptor field is hostile.
#![no_main]

mod common;

use devices::net::e1000::{E1000, IO_BAR, MMIO_BAR};
use devices::net::MemBackend;
use devices::pci::PciDevice;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM_SIZE: usize = 0x1_0000;

fuzz_target!(|data: &[u8]| {
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]) else { return };
    let split = data.len().min(MEM_SIZE / 2);
    let _ = mem.write_slice(&data[..split], GuestAddress(0));
    let _ = mem.write_slice(&data[..split], GuestAddress((MEM_SIZE / 2) as u64));
    let Ok((backend, net)) = MemBackend::new() else { return };
    let mut dev = E1000::new([0x52, 0x54, 0, 0x12, 0x34, 0x56], mem, common::irq(), Box::new(backend));
    dev.config_write(1, 0, &[0x07, 0x00]);
    // Each operation: kind, 2 offset bytes, 4 value bytes.
    let mut ops = data.chunks_exact(7);
    for op in &mut ops {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]])) << 1;
        let value = [op[3], op[4], op[5], op[6]];
        match op[0] % 8 {
            0..=2 => dev.bar_write(MMIO_BAR, offset & !3, &value),
            3 => {
                let mut b = [0u8; 4];
                dev.bar_read(MMIO_BAR, offset & !3, &mut b);
            }
            4 => dev.bar_write(IO_BAR, offset % 0x40, &value),
            5 => {
                let mut b = [0u8; 4];
                dev.bar_read(IO_BAR, offset % 0x40, &mut b);
            }
            6 => {
                let len = usize::from(op[3]) * 8 + usize::from(op[4]);
                let start = usize::from(op[1]) % data.len().max(1);
                let end = (start + len).min(data.len());
                net.push_rx(&data[start..end]);
                dev.rx_ready();
            }
            _ => dev.config_write(usize::from(op[1] % 64), usize::from(op[2] % 4), &value[..1]),
        }
        net.take_sent();
    }
});
