// SPDX-License-Identifier: Apache-2.0
//! Fuzzes an assigned (VFIO) PCI function's virtualized configuration space and BARs against
//! a fake host device whose own configuration space is the input's first 256 bytes (a hostile
//! or broken device: capability loops, MSI-X tables outside their BAR, odd BAR types), then
//! replays the rest as guest accesses: configuration reads and writes of every size and
//! offset (BAR sizing, ROM, MSI and MSI-X enables), BAR and ROM reads and writes (the MSI-X
//! table and PBA included), and resets.
#![no_main]

mod common;

use std::sync::{Arc, Mutex};

use devices::bus::BusDevice;
use devices::interrupt::{InterruptError, InterruptManager, MsiMessage, MsiVectors};
use devices::pci::PciDevice;
use devices::vfio::backend::{BackendError, IrqKind, RegionInfo, VfioBackend, CONFIG_REGION};
use devices::vfio::VfioPciDevice;
use libfuzzer_sys::fuzz_target;
use vmm_sys_util::eventfd::EventFd;

/// Region sizes of the fake device: BARs 0-5, ROM, configuration space.
const SIZES: [u64; 8] = [0x2_0000, 0x20, 0x4000, 0, 0x4000, 0x1000, 0x1_0000, 256];

struct Fake {
    config: Mutex<Vec<u8>>,
}

impl VfioBackend for Fake {
    fn region(&self, index: usize) -> Option<RegionInfo> {
        let size = *SIZES.get(index)?;
        (size > 0).then_some(RegionInfo { size, readable: true, writable: index != 6, mmappable: index == 0 })
    }
    fn read(&self, index: usize, offset: u64, data: &mut [u8]) -> Result<(), BackendError> {
        let size = SIZES.get(index).copied().unwrap_or(0);
        let out = BackendError::OutOfRange { index, offset, len: data.len() };
        let end = offset.checked_add(data.len() as u64).ok_or(out)?;
        if end > size {
            return Err(BackendError::OutOfRange { index, offset, len: data.len() });
        }
        if index == CONFIG_REGION {
            data.copy_from_slice(&self.config.lock().unwrap()[offset as usize..end as usize]);
        } else {
            data.fill(offset as u8);
        }
        Ok(())
    }
    fn write(&self, index: usize, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        let size = SIZES.get(index).copied().unwrap_or(0);
        let end = offset.checked_add(data.len() as u64).filter(|&e| e <= size);
        let Some(end) = end else { return Err(BackendError::OutOfRange { index, offset, len: data.len() }) };
        if index == CONFIG_REGION {
            self.config.lock().unwrap()[offset as usize..end as usize].copy_from_slice(data);
        }
        Ok(())
    }
    fn mmap(&mut self, index: usize) -> Option<u64> {
        Some(0x1000 * index as u64)
    }
    fn irq_count(&self, kind: IrqKind) -> u32 {
        match kind {
            IrqKind::Intx => 1,
            IrqKind::Msi => 32,
            IrqKind::Msix => 2048,
        }
    }
    fn enable_intx(&self, _: &EventFd, _: &EventFd) -> Result<(), BackendError> {
        Ok(())
    }
    fn enable_msi(&self, _: IrqKind, _: &[&EventFd]) -> Result<(), BackendError> {
        Ok(())
    }
    fn disable_irq(&self, _: IrqKind) -> Result<(), BackendError> {
        Ok(())
    }
    fn reset(&self) -> bool {
        true
    }
}

/// Vectors with one shared eventfd, routes dropped.
struct Vectors(usize, EventFd);

impl MsiVectors for Vectors {
    fn len(&self) -> usize {
        self.0
    }
    fn set_route(&self, v: usize, _: MsiMessage) -> Result<(), InterruptError> {
        if v < self.0 {
            Ok(())
        } else {
            Err(InterruptError::NoSuchVector(v))
        }
    }
    fn clear_route(&self, v: usize) -> Result<(), InterruptError> {
        self.set_route(v, MsiMessage::default())
    }
    fn trigger(&self, v: usize) -> Result<(), InterruptError> {
        self.set_route(v, MsiMessage::default())
    }
    fn notifier(&self, v: usize) -> Option<&EventFd> {
        (v < self.0).then_some(&self.1)
    }
    fn set_masked(&self, v: usize, _: bool) -> Result<(), InterruptError> {
        self.set_route(v, MsiMessage::default())
    }
    fn pending(&self, _: usize) -> bool {
        false
    }
}

struct Manager;

impl InterruptManager for Manager {
    fn msi_vectors(&self, count: usize) -> Result<Arc<dyn MsiVectors>, InterruptError> {
        Ok(Arc::new(Vectors(count, EventFd::new(0).map_err(|e| InterruptError::Host(e.to_string()))?)))
    }
}

/// The function as a bus device: an offset byte with bit 40 set is a configuration access
/// (register = low six bits, byte offset from bits 6-7); otherwise the top three bits pick
/// BAR 0-6 (6: the ROM) and the low five a spot near the start, the middle or the end.
struct Dev(VfioPciDevice);

const CONFIG: u64 = 1 << 40;

fn bar_target(offset: u64) -> (usize, u64) {
    let index = ((offset >> 5) & 7) as usize;
    let size = SIZES.get(index).copied().unwrap_or(0x1000);
    let spot = offset & 0x1f;
    let at = match spot >> 3 {
        0 => spot * 4,
        1 => size / 2 + (spot & 7) * 4,
        2 => 0x800 + (spot & 7) * 4,
        _ => size.saturating_sub(8) + (spot & 7),
    };
    (index.min(6), at)
}

impl BusDevice for Dev {
    fn debug_label(&self) -> &str {
        "vfio"
    }
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset & CONFIG != 0 {
            let v = self.0.config_read((offset & 0x3f) as usize).to_le_bytes();
            let n = data.len().min(4);
            data[..n].copy_from_slice(&v[..n]);
        } else {
            let (index, at) = bar_target(offset);
            self.0.bar_read(index, at, data);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset & CONFIG != 0 {
            let n = data.len().min(4);
            self.0.config_write((offset & 0x3f) as usize, (offset as usize >> 6) & 3, &data[..n]);
        } else {
            let (index, at) = bar_target(offset);
            self.0.bar_write(index, at, data);
        }
    }
    fn reset(&mut self) {
        self.0.reset();
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 256 {
        return;
    }
    let (config, accesses) = data.split_at(256);
    let fake = Fake { config: Mutex::new(config.to_vec()) };
    let Ok(dev) = VfioPciDevice::new("fuzz", Box::new(fake), &Manager, None) else { return };
    let mut dev = Dev(dev);
    for _ in dev.0.bar_ranges() {}
    common::replay(&mut dev, accesses, |d, kind| {
        if kind & 0x20 != 0 {
            d.reset();
        }
    });
});
