// SPDX-License-Identifier: Apache-2.0
//! Keeps the buses in step with the BARs the guest programs: after every configuration write
//! the device's decoded ranges are compared with what is mapped, and moved ranges are
//! unmapped and mapped again. BARs backed by host memory (a framebuffer) are handed to a
//! [`RamBarHandler`], which maps them as guest RAM instead of trapping every access.

use std::collections::BTreeMap;
use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use super::config_io::SharedPciDevice;
use super::{BarKind, PciBarRange};
use crate::bus::{lock, Bus, BusDevice};
use crate::interrupt::{IoEventAddress, IoEventRegistrar};

/// One BAR of one device, as a bus sees it.
pub struct PciBarAdapter {
    dev: SharedPciDevice,
    index: usize,
    label: String,
}

impl BusDevice for PciBarAdapter {
    fn debug_label(&self) -> &str {
        &self.label
    }
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        lock(&self.dev).bar_read(self.index, offset, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        lock(&self.dev).bar_write(self.index, offset, data);
    }
    /// A view of another device, which resets on its own.
    fn reset(&mut self) {}
}

/// Maps BARs whose contents are host memory.
pub trait RamBarHandler: Send {
    /// `range` of device `slot` now decodes host memory at `host_addr` (`range.size` bytes).
    fn map(&mut self, slot: (u8, u8), range: PciBarRange, host_addr: u64);
    /// `range` of device `slot` no longer decodes.
    fn unmap(&mut self, slot: (u8, u8), range: PciBarRange);
}

/// Doorbells registered for one BAR.
type Doorbells = Vec<(IoEventAddress, EventFd)>;

/// The BARs mapped now, per device.
pub struct BarMapper {
    pio: Bus,
    mmio: Bus,
    ram: Option<Box<dyn RamBarHandler>>,
    ioevents: Option<Arc<dyn IoEventRegistrar>>,
    mapped: BTreeMap<(u8, u8), Vec<PciBarRange>>,
    doorbells: BTreeMap<((u8, u8), usize), Doorbells>,
}

impl BarMapper {
    /// Maps I/O BARs on `pio` and memory BARs on `mmio`.
    pub fn new(pio: Bus, mmio: Bus, ram: Option<Box<dyn RamBarHandler>>) -> Self {
        BarMapper { pio, mmio, ram, ioevents: None, mapped: BTreeMap::new(), doorbells: BTreeMap::new() }
    }

    /// Registers the devices' doorbells ([`super::PciDevice::ioeventfds`]) with `registrar`
    /// where their BARs decode, and moves them with the BARs.
    pub fn set_ioevents(&mut self, registrar: Arc<dyn IoEventRegistrar>) {
        self.ioevents = Some(registrar);
    }

    fn add_doorbells(&mut self, slot: (u8, u8), range: &PciBarRange, fds: Vec<(u64, EventFd)>) {
        let Some(reg) = &self.ioevents else { return };
        let mut done = Vec::new();
        for (offset, fd) in fds {
            let Some(addr) = range.address.checked_add(offset) else { continue };
            let addr = if range.kind == BarKind::Io {
                IoEventAddress::Pio(addr)
            } else {
                IoEventAddress::Mmio(addr)
            };
            match reg.register(addr, &fd) {
                Ok(()) => done.push((addr, fd)),
                // The write still reaches the device through the bus, only slower.
                Err(e) => crate::warn_limited!("pci {slot:?}: doorbell at {addr:?} not registered: {e}"),
            }
        }
        if !done.is_empty() {
            self.doorbells.insert((slot, range.index), done);
        }
    }

    fn remove_doorbells(&mut self, slot: (u8, u8), index: usize) {
        let (Some(reg), Some(done)) = (&self.ioevents, self.doorbells.remove(&(slot, index))) else { return };
        for (addr, fd) in done {
            if let Err(e) = reg.unregister(addr, &fd) {
                crate::warn_limited!("pci {slot:?}: doorbell at {addr:?} not unregistered: {e}");
            }
        }
    }

    /// Brings the mapping of device `slot` in line with the ranges it decodes now.
    pub fn update(&mut self, slot: (u8, u8), dev: &SharedPciDevice) {
        let before = self.mapped.remove(&slot).unwrap_or_default();
        let (now, host, mut fds) = {
            let d = lock(dev);
            let now = d.bar_ranges();
            let host: Vec<Option<u64>> = now.iter().map(|r| d.bar_host_memory(r.index)).collect();
            // Doorbells only for ranges about to be mapped (every call dups the eventfds).
            let fds: Vec<Vec<(u64, EventFd)>> = now
                .iter()
                .map(|r| {
                    if self.ioevents.is_some() && !before.contains(r) {
                        d.ioeventfds(r.index)
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            (now, host, fds)
        };
        for old in before.iter().filter(|r| !now.contains(r)) {
            if self.is_ram(dev, old.index) {
                if let Some(ram) = self.ram.as_mut() {
                    ram.unmap(slot, *old);
                }
            } else {
                self.bus(old.kind).remove(old.address);
                self.remove_doorbells(slot, old.index);
            }
        }
        let mut kept = Vec::new();
        for ((range, host), fds) in now.iter().zip(host).zip(fds.iter_mut()) {
            if before.contains(range) {
                kept.push(*range);
                continue;
            }
            if let Some(host_addr) = host {
                match self.ram.as_mut() {
                    Some(ram) => {
                        ram.map(slot, *range, host_addr);
                        kept.push(*range);
                    }
                    None => {
                        crate::warn_limited!("pci {slot:?}: no handler for memory-backed BAR {}", range.index)
                    }
                }
                continue;
            }
            let label = format!("pci-{:02x}.{}-bar{}", slot.0, slot.1, range.index);
            let adapter = PciBarAdapter { dev: dev.clone(), index: range.index, label };
            let size = if range.kind == BarKind::Io { range.size.min(0x1_0000) } else { range.size };
            match self.bus(range.kind).insert(
                range.address,
                size,
                std::sync::Arc::new(std::sync::Mutex::new(adapter)),
            ) {
                Ok(()) => {
                    kept.push(*range);
                    self.add_doorbells(slot, range, std::mem::take(fds));
                }
                // The guest may program overlapping BARs; the first one keeps the range.
                Err(e) => crate::warn_limited!("pci {slot:?}: BAR {} not mapped: {e}", range.index),
            }
        }
        if !kept.is_empty() {
            self.mapped.insert(slot, kept);
        }
    }

    fn is_ram(&self, dev: &SharedPciDevice, index: usize) -> bool {
        lock(dev).bar_host_memory(index).is_some()
    }

    fn bus(&self, kind: BarKind) -> &Bus {
        if kind == BarKind::Io {
            &self.pio
        } else {
            &self.mmio
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::pci::{PciConfigSpace, PciDevice};

    struct Dev {
        config: PciConfigSpace,
        writes: Vec<(usize, u64, Vec<u8>)>,
    }

    impl PciDevice for Dev {
        fn debug_label(&self) -> &str {
            "dev"
        }
        fn config_read(&self, reg: usize) -> u32 {
            self.config.read(reg)
        }
        fn config_write(&mut self, reg: usize, offset: usize, data: &[u8]) {
            self.config.write(reg, offset, data)
        }
        fn bar_ranges(&self) -> Vec<PciBarRange> {
            self.config.bar_ranges()
        }
        fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
            data.fill(index as u8 * 0x10 + offset as u8);
        }
        fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
            self.writes.push((index, offset, data.to_vec()));
        }
        fn bar_host_memory(&self, index: usize) -> Option<u64> {
            (index == 2).then_some(0x1000)
        }
        fn reset(&mut self) {
            self.config.reset()
        }
    }

    #[derive(Default)]
    struct Ram(Arc<Mutex<Vec<String>>>);
    impl RamBarHandler for Ram {
        fn map(&mut self, slot: (u8, u8), range: PciBarRange, host: u64) {
            self.0.lock().unwrap().push(format!("map {slot:?} {:#x} {host:#x}", range.address));
        }
        fn unmap(&mut self, slot: (u8, u8), range: PciBarRange) {
            self.0.lock().unwrap().push(format!("unmap {slot:?} {:#x}", range.address));
        }
    }

    #[test]
    fn bars_follow_the_guest() {
        let mut config = PciConfigSpace::new(1, 2, [2, 0, 0], 0, 0);
        config.add_bar(0, 0x100, BarKind::Mem32, false);
        config.add_bar(1, 0x20, BarKind::Io, false);
        config.add_bar(2, 0x1000, BarKind::Mem32, true);
        let dev: SharedPciDevice = Arc::new(Mutex::new(Dev { config, writes: vec![] }));
        let (pio, mmio) = (Bus::new(), Bus::new());
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut m = BarMapper::new(pio.clone(), mmio.clone(), Some(Box::new(Ram(log.clone()))));
        let program = |reg: usize, v: u32| lock(&dev).config_write(reg, 0, &v.to_le_bytes());
        program(4, 0xfe00_0000);
        program(5, 0xc000);
        program(6, 0xfd00_0000);
        m.update((3, 0), &dev);
        let mut b = [0u8; 1];
        assert!(!mmio.read(0xfe00_0000, &mut b), "decoding still disabled");
        program(1, 0x3);
        m.update((3, 0), &dev);
        assert!(mmio.read(0xfe00_0004, &mut b));
        assert_eq!(b[0], 0x04);
        assert!(pio.read(0xc001, &mut b));
        assert_eq!(b[0], 0x11);
        assert!(pio.write(0xc01f, &[7]));
        assert_eq!(lock(&dev).bar_ranges().len(), 3);
        assert_eq!(log.lock().unwrap().as_slice(), ["map (3, 0) 0xfd000000 0x1000"]);
        // Move BAR0, leave the others alone.
        program(4, 0xfe10_0000);
        m.update((3, 0), &dev);
        assert!(!mmio.read(0xfe00_0004, &mut b));
        assert!(mmio.read(0xfe10_00ff, &mut b));
        assert!(pio.read(0xc000, &mut b));
        assert_eq!(log.lock().unwrap().len(), 1, "RAM BAR untouched");
        // Disable decoding: everything goes.
        program(1, 0);
        m.update((3, 0), &dev);
        assert!(!mmio.read(0xfe10_0000, &mut b));
        assert!(!pio.read(0xc000, &mut b));
        assert_eq!(log.lock().unwrap().last().unwrap(), "unmap (3, 0) 0xfd000000");
    }

    /// A device with one doorbell at offset 0x10 of its memory BAR.
    struct Doorbell {
        config: PciConfigSpace,
        kick: EventFd,
    }

    impl PciDevice for Doorbell {
        fn debug_label(&self) -> &str {
            "doorbell"
        }
        fn config_read(&self, reg: usize) -> u32 {
            self.config.read(reg)
        }
        fn config_write(&mut self, reg: usize, offset: usize, data: &[u8]) {
            self.config.write(reg, offset, data)
        }
        fn bar_ranges(&self) -> Vec<PciBarRange> {
            self.config.bar_ranges()
        }
        fn ioeventfds(&self, index: usize) -> Vec<(u64, EventFd)> {
            if index == 0 {
                vec![(0x10, self.kick.try_clone().unwrap())]
            } else {
                Vec::new()
            }
        }
        fn reset(&mut self) {
            self.config.reset()
        }
    }

    #[test]
    fn a_moved_bar_takes_its_doorbells_along() {
        use std::os::fd::AsRawFd;

        use crate::interrupt::test_util::FakeIoEvents;
        let mut config = PciConfigSpace::new(1, 2, [2, 0, 0], 0, 0);
        config.add_bar(0, 0x1000, BarKind::Mem32, false);
        config.add_bar(1, 0x20, BarKind::Io, false);
        let kick = EventFd::new(0).unwrap();
        let raw = kick.as_raw_fd();
        let dev: SharedPciDevice = Arc::new(Mutex::new(Doorbell { config, kick }));
        let events = Arc::new(FakeIoEvents::default());
        let mut m = BarMapper::new(Bus::new(), Bus::new(), None);
        m.set_ioevents(events.clone());
        let program = |reg: usize, v: u32| lock(&dev).config_write(reg, 0, &v.to_le_bytes());
        let registered =
            || -> Vec<IoEventAddress> { events.registered.lock().unwrap().iter().map(|e| e.0).collect() };
        program(4, 0xfe00_0000);
        program(5, 0xc000);
        m.update((4, 0), &dev);
        assert!(registered().is_empty(), "decoding disabled");
        program(1, 0x3);
        m.update((4, 0), &dev);
        assert_eq!(registered(), [IoEventAddress::Mmio(0xfe00_0010)]);
        // The registered eventfd is the device's (a new handle of the same eventfd).
        assert_ne!(events.registered.lock().unwrap()[0].1, raw);
        program(4, 0xfe20_0000);
        m.update((4, 0), &dev);
        assert_eq!(registered(), [IoEventAddress::Mmio(0xfe20_0010)]);
        // Moving the I/O BAR leaves the doorbell alone.
        program(5, 0xd000);
        m.update((4, 0), &dev);
        assert_eq!(registered(), [IoEventAddress::Mmio(0xfe20_0010)]);
        program(1, 0);
        m.update((4, 0), &dev);
        assert!(registered().is_empty());
    }
}
