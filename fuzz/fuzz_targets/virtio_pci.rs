// SPDX-License-Identifier: Apache-2.0
//! Fuzzes the virtio-pci transport's BAR (common configuration, ISR, device configuration,
//! doorbells, MSI-X table and pending bits) and its MSI-X enable bits in configuration space,
//! with a virtio-blk device behind it: feature negotiation, queue set-up with hostile
//! addresses and sizes, DRIVER_OK (which starts the disk's worker) and resets.
#![no_main]

mod common;

use std::sync::Arc;

use block::MemDisk;
use devices::bus::BusDevice;
use devices::interrupt::{InterruptError, MsiMessage, MsiVectors};
use devices::pci::PciDevice;
use devices::virtio::block::{BlockOptions, VirtioBlk};
use devices::virtio::pci::VirtioPciDevice;
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// MSI vectors that go nowhere.
struct NullMsi(usize);

impl MsiVectors for NullMsi {
    fn len(&self) -> usize {
        self.0
    }
    fn set_route(&self, _: usize, _: MsiMessage) -> Result<(), InterruptError> {
        Ok(())
    }
    fn clear_route(&self, _: usize) -> Result<(), InterruptError> {
        Ok(())
    }
    fn trigger(&self, _: usize) -> Result<(), InterruptError> {
        Ok(())
    }
    fn notifier(&self, _: usize) -> Option<&EventFd> {
        None
    }
    fn set_masked(&self, _: usize, _: bool) -> Result<(), InterruptError> {
        Ok(())
    }
    fn pending(&self, _: usize) -> bool {
        false
    }
}

/// The BAR as a bus device: the offset byte's top three bits pick a 4 KiB region, the rest
/// an offset within its first 64 bytes. Offsets with bit 40 set are configuration-space
/// accesses instead (register = the offset byte's low six bits), which reach the MSI-X
/// enable and function-mask bits.
struct Bar(VirtioPciDevice);

const CONFIG: u64 = 1 << 40;

fn bar_offset(offset: u64) -> u64 {
    ((offset >> 5) & 7) * 0x1000 + (offset & 0x1f) * 2
}

impl BusDevice for Bar {
    fn debug_label(&self) -> &str {
        "virtio-pci"
    }
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset & CONFIG != 0 {
            let v = self.0.config_read((offset & 0x3f) as usize).to_le_bytes();
            let n = data.len().min(4);
            data[..n].copy_from_slice(&v[..n]);
        } else {
            self.0.bar_read(0, bar_offset(offset), data);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset & CONFIG != 0 {
            let n = data.len().min(4);
            self.0.config_write((offset & 0x3f) as usize, (offset as usize >> 6) & 3, &data[..n]);
        } else {
            self.0.bar_write(0, bar_offset(offset), data);
        }
    }
    fn reset(&mut self) {
        PciDevice::reset(&mut self.0);
    }
}

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).unwrap();
    let disk = MemDisk::new(vec![0; 64 * 1024], false);
    let blk =
        VirtioBlk::new("vda", Box::new(disk), &BlockOptions { serial: "fuzz".into(), queues: 2 }).unwrap();
    let dev = VirtioPciDevice::new(Box::new(blk), mem, Arc::new(NullMsi(3)), common::irq()).unwrap();
    common::replay(&mut Bar(dev), data, |_, _| {});
});
