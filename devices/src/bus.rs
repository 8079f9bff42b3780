// SPDX-License-Identifier: Apache-2.0
//! Port-I/O and MMIO buses: address ranges mapped to devices.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// A device reachable through a bus.
pub trait BusDevice: Send {
    /// Short name for logs.
    fn debug_label(&self) -> &str;
    /// A guest read of `data.len()` bytes at `offset` from the device's base.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// A guest write of `data` at `offset` from the device's base.
    fn write(&mut self, offset: u64, data: &[u8]);
    /// Puts the device in the state a machine reset (the RESET# line) leaves it in, keeping
    /// its host side (open files, output sinks, threads). Views of another device (port
    /// blocks, BAR adapters) do nothing here: the device they show resets on its own.
    fn reset(&mut self);
}

/// Errors when building a bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The range is empty or wraps around the address space.
    #[error("invalid bus range {base:#x}+{len:#x}")]
    InvalidRange {
        /// First address.
        base: u64,
        /// Length.
        len: u64,
    },
    /// The range overlaps a device already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap {
        /// First address.
        base: u64,
        /// Length.
        len: u64,
    },
}

/// A shared device handle.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

#[derive(Clone)]
struct Entry {
    len: u64,
    device: SharedDevice,
}

/// Address ranges mapped to devices; lookups are `O(log n)`.
///
/// Clones share one map, so a range mapped or removed at run time (a PCI BAR the guest
/// moves) is seen by every vCPU. The map's lock is released before a device is called, so a
/// device may change the bus it sits on from inside an access.
#[derive(Clone, Default)]
pub struct Bus {
    ranges: Arc<RwLock<BTreeMap<u64, Entry>>>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `[base, base + len)` to `device`.
    pub fn insert(&self, base: u64, len: u64, device: SharedDevice) -> Result<(), Error> {
        let end = base.checked_add(len).filter(|_| len > 0).ok_or(Error::InvalidRange { base, len })?;
        let mut ranges = self.ranges.write().unwrap_or_else(|p| p.into_inner());
        if let Some((b, e)) = ranges.range(..end).next_back() {
            if b + e.len > base {
                return Err(Error::Overlap { base, len });
            }
        }
        ranges.insert(base, Entry { len, device });
        Ok(())
    }

    /// Unmaps the range that starts at `base`; returns whether one did.
    pub fn remove(&self, base: u64) -> bool {
        self.ranges.write().unwrap_or_else(|p| p.into_inner()).remove(&base).is_some()
    }

    /// Unmaps everything. A machine's buses must be cleared when it is torn down: devices
    /// such as the PCI configuration port hold clones of the bus they sit on (to map BARs),
    /// a reference cycle that would otherwise keep every device (and its open disk images and
    /// their locks) alive after the machine is gone.
    pub fn clear(&self) {
        let ranges = std::mem::take(&mut *self.ranges.write().unwrap_or_else(|p| p.into_inner()));
        // The devices are dropped here, outside the lock, so a device's Drop may use the bus.
        drop(ranges);
    }

    /// Resets every device on the bus once (a device mapped at several ranges is reset
    /// once), in address order. The map's lock is not held while a device resets, so a
    /// device may change the bus (unmap its BARs) from its reset.
    pub fn reset_devices(&self) {
        let devices: Vec<SharedDevice> = {
            let ranges = self.ranges.read().unwrap_or_else(|p| p.into_inner());
            let mut seen: Vec<SharedDevice> = Vec::new();
            for entry in ranges.values() {
                if !seen.iter().any(|d| Arc::ptr_eq(d, &entry.device)) {
                    seen.push(entry.device.clone());
                }
            }
            seen
        };
        for device in devices {
            lock(&device).reset();
        }
    }

    fn find(&self, addr: u64) -> Option<(u64, SharedDevice)> {
        let ranges = self.ranges.read().unwrap_or_else(|p| p.into_inner());
        let (base, entry) = ranges.range(..=addr).next_back()?;
        (addr - base < entry.len).then(|| (*base, entry.device.clone()))
    }

    /// Dispatches a read; returns false (and leaves `data` untouched) if nothing is mapped.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((base, device)) => {
                lock(&device).read(addr - base, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a write; returns false if nothing is mapped.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((base, device)) => {
                lock(&device).write(addr - base, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a device, recovering it if a previous holder panicked (device state is still
/// consistent at the granularity of one register access).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo {
        last: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Echo {
        fn debug_label(&self) -> &str {
            "echo"
        }
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last.push((offset, data.to_vec()));
        }
        fn reset(&mut self) {
            self.last.clear();
        }
    }

    /// A device holding a clone of the bus it is mapped on, like the PCI configuration port.
    struct HoldsBus(#[allow(dead_code)] Bus);
    impl BusDevice for HoldsBus {
        fn debug_label(&self) -> &str {
            "holds-bus"
        }
        fn read(&mut self, _: u64, _: &mut [u8]) {}
        fn write(&mut self, _: u64, _: &[u8]) {}
        fn reset(&mut self) {}
    }

    #[test]
    fn clear_breaks_the_cycle_through_a_device_that_holds_its_bus() {
        let bus = Bus::new();
        let dev = Arc::new(Mutex::new(HoldsBus(bus.clone())));
        let weak = Arc::downgrade(&dev);
        bus.insert(0xcf8, 8, dev).unwrap();
        let echo = Arc::new(Mutex::new(Echo { last: vec![] }));
        bus.insert(0x3f8, 8, echo.clone()).unwrap();
        drop(bus.clone());
        assert!(weak.upgrade().is_some());
        bus.clear();
        assert!(weak.upgrade().is_none(), "the device is dropped");
        assert_eq!(Arc::strong_count(&echo), 1, "the bus holds no device any more");
        assert!(!bus.read(0x3f8, &mut [0]));
    }

    #[test]
    fn reset_devices_resets_each_device_once() {
        let bus = Bus::new();
        let echo = Arc::new(Mutex::new(Echo { last: vec![] }));
        // One device at two ranges, as a port block split around a hole.
        bus.insert(0x1f0, 8, echo.clone()).unwrap();
        bus.insert(0x3f6, 1, echo.clone()).unwrap();
        bus.write(0x1f0, &[1]);
        bus.write(0x3f6, &[2]);
        assert_eq!(lock(&echo).last.len(), 2);
        bus.reset_devices();
        assert!(lock(&echo).last.is_empty());
        assert!(bus.write(0x1f0, &[3]), "the device stays mapped");
    }

    #[test]
    fn dispatches_by_range_with_offsets() {
        let dev = Arc::new(Mutex::new(Echo { last: vec![] }));
        let bus = Bus::new();
        bus.insert(0x3f8, 8, dev.clone()).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.read(0x3fd, &mut b));
        assert_eq!(b[0], 5);
        assert!(bus.write(0x3f8, &[0x41]));
        assert!(!bus.read(0x400, &mut b));
        assert!(!bus.read(0x3f7, &mut b));
        assert!(!bus.write(0, &[1]));
        assert_eq!(dev.lock().unwrap().last, vec![(0, vec![0x41])]);
        // Clones share the map: a range removed through one is gone from all.
        let clone = bus.clone();
        assert!(clone.remove(0x3f8));
        assert!(!clone.remove(0x3f8));
        assert!(!bus.read(0x3fd, &mut b));
    }

    #[test]
    fn rejects_overlaps_and_bad_ranges() {
        let dev: SharedDevice = Arc::new(Mutex::new(Echo { last: vec![] }));
        let bus = Bus::new();
        bus.insert(0x10, 0x10, dev.clone()).unwrap();
        assert_eq!(bus.insert(0x18, 4, dev.clone()), Err(Error::Overlap { base: 0x18, len: 4 }));
        assert_eq!(bus.insert(0x8, 9, dev.clone()), Err(Error::Overlap { base: 0x8, len: 9 }));
        assert!(bus.insert(0x8, 8, dev.clone()).is_ok());
        assert!(bus.insert(0x20, 1, dev.clone()).is_ok());
        assert_eq!(bus.insert(0x30, 0, dev.clone()), Err(Error::InvalidRange { base: 0x30, len: 0 }));
        assert!(bus.insert(u64::MAX, 2, dev).is_err());
    }
}
