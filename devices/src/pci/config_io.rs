// SPDX-License-Identifier: Apache-2.0
//! PCI configuration mechanism #1: the address register at 0xCF8 and the data window at
//! 0xCFC-0xCFF, routing configuration cycles to the devices of bus 0.
//!
//! Address register: bit 31 enable, bits 23-16 bus, 15-11 device, 10-8 function, 7-2
//! register. Cycles to an absent device, another bus, or with the enable bit clear read all
//! ones and drop writes. Only a 32-bit access to 0xCF8 touches the address register (byte
//! accesses there belong to the legacy mechanism #2 and are ignored), as on the PIIX.
//!
//! A byte at 0xCF9 is the PIIX reset control register: writing it with bit 2 (reset CPU) set
//! resets the machine (a soft reset of every CPU is as good as a machine reset for a VM);
//! bits 1-3 read back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::PciDevice;
use crate::bus::{lock, BusDevice};
use crate::legacy::{PlatformControl, PlatformRequest};

/// Base port.
pub const CONFIG_IO_BASE: u16 = 0xcf8;
/// Ports spanned (address and data).
pub const CONFIG_IO_LEN: u16 = 8;

/// A shared PCI device.
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// Bus 0: devices by (device, function).
#[derive(Default, Clone)]
pub struct PciRoot {
    devices: BTreeMap<(u8, u8), SharedPciDevice>,
}

impl PciRoot {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `dev` at slot `device` (0..32), function `function` (0..8); false if taken or invalid.
    pub fn add(&mut self, device: u8, function: u8, dev: SharedPciDevice) -> bool {
        if device >= 32 || function >= 8 || self.devices.contains_key(&(device, function)) {
            return false;
        }
        self.devices.insert((device, function), dev);
        true
    }

    /// The device at `device`.`function`, if any.
    pub fn get(&self, device: u8, function: u8) -> Option<&SharedPciDevice> {
        self.devices.get(&(device, function))
    }

    /// The first slot at or after `from` with no function in use (slot allocation for
    /// devices whose address the guest does not need to know in advance).
    pub fn free_slot(&self, from: u8) -> Option<u8> {
        (from..32).find(|&slot| !self.devices.keys().any(|&(d, _)| d == slot))
    }

    /// Every device with its (device, function) address, in address order.
    pub fn devices(&self) -> impl Iterator<Item = ((u8, u8), &SharedPciDevice)> {
        self.devices.iter().map(|(k, v)| (*k, v))
    }
}

/// Told about every configuration write, after the device has applied it: the machine maps
/// BARs the guest moved and acts on chipset registers (PAM).
pub trait PciConfigListener: Send {
    /// Device `slot` (device, function) was written at register `reg`.
    fn config_written(&mut self, slot: (u8, u8), reg: usize, dev: &SharedPciDevice);
    /// Every device of `root` was just reset: BARs and chipset registers are at their
    /// power-on values (BARs unassigned and decoding off).
    fn devices_reset(&mut self, root: &PciRoot);
}

/// The 0xCF8-0xCFF port block.
pub struct PciConfigIo {
    address: u32,
    root: PciRoot,
    listener: Option<Box<dyn PciConfigListener>>,
    reset: Option<Arc<dyn PlatformControl>>,
    reset_control: u8,
}

/// Offset of the reset control register (0xCF9) in the block.
const RESET_CONTROL: u64 = 1;

impl PciConfigIo {
    /// Configuration access to `root`.
    pub fn new(root: PciRoot) -> Self {
        PciConfigIo { address: 0, root, listener: None, reset: None, reset_control: 0 }
    }

    /// Sends every configuration write to `listener` too.
    pub fn set_listener(&mut self, listener: Box<dyn PciConfigListener>) {
        self.listener = Some(listener);
    }

    /// Makes the reset control register at 0xCF9 reset the machine through `platform`.
    pub fn set_reset_control(&mut self, platform: Arc<dyn PlatformControl>) {
        self.reset = Some(platform);
    }

    /// The device, function and register the address register selects, if enabled on bus 0.
    fn target(&self) -> Option<(&SharedPciDevice, usize)> {
        let a = self.address;
        if a & 0x8000_0000 == 0 || (a >> 16) & 0xff != 0 {
            return None;
        }
        let device = ((a >> 11) & 0x1f) as u8;
        let function = ((a >> 8) & 0x7) as u8;
        self.root.get(device, function).map(|d| (d, ((a >> 2) & 0x3f) as usize))
    }
}

impl BusDevice for PciConfigIo {
    fn debug_label(&self) -> &str {
        "pci-config-io"
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset == 0 && data.len() == 4 {
            data.copy_from_slice(&self.address.to_le_bytes());
            return;
        }
        if offset == RESET_CONTROL && data.len() == 1 && self.reset.is_some() {
            data[0] = self.reset_control;
            return;
        }
        let Some(byte) = offset.checked_sub(4).map(|b| b as usize).filter(|b| b + data.len() <= 4) else {
            data.fill(0xff);
            return;
        };
        let value = self.target().map_or(u32::MAX, |(dev, reg)| lock(dev).config_read(reg));
        let bytes = value.to_le_bytes();
        data.copy_from_slice(&bytes[byte..byte + data.len()]);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 {
            if let Ok(v) = <[u8; 4]>::try_from(data) {
                // Bits 1-0 are reserved and read as zero.
                self.address = u32::from_le_bytes(v) & !0x3;
            }
            return;
        }
        if offset == RESET_CONTROL && data.len() == 1 {
            if let Some(platform) = &self.reset {
                self.reset_control = data[0] & 0x0e;
                if data[0] & 0x04 != 0 {
                    platform.request(PlatformRequest::Reset);
                }
            }
            return;
        }
        let Some(byte) = offset.checked_sub(4).map(|b| b as usize).filter(|b| b + data.len() <= 4) else {
            return;
        };
        let a = self.address;
        let slot = (((a >> 11) & 0x1f) as u8, ((a >> 8) & 0x7) as u8);
        if let Some((dev, reg)) = self.target() {
            let dev = dev.clone();
            lock(&dev).config_write(reg, byte, data);
            if let Some(listener) = self.listener.as_mut() {
                listener.config_written(slot, reg, &dev);
            }
        }
    }

    /// Resets every function on the bus (PCI RST#), then tells the listener, which unmaps
    /// their BARs and puts the chipset's mappings back.
    fn reset(&mut self) {
        self.address = 0;
        self.reset_control = 0;
        for (_, dev) in self.root.devices() {
            lock(dev).reset();
        }
        if let Some(listener) = self.listener.as_mut() {
            listener.devices_reset(&self.root);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::i440fx::I440fx;
    use super::*;

    fn io() -> PciConfigIo {
        let mut root = PciRoot::new();
        assert!(root.add(0, 0, Arc::new(Mutex::new(I440fx::new()))));
        assert!(!root.add(0, 0, Arc::new(Mutex::new(I440fx::new()))), "slot taken");
        assert!(!root.add(32, 0, Arc::new(Mutex::new(I440fx::new()))));
        PciConfigIo::new(root)
    }

    fn select(io: &mut PciConfigIo, bus: u32, dev: u32, func: u32, reg_byte: u32) {
        io.write(0, &(0x8000_0000 | bus << 16 | dev << 11 | func << 8 | reg_byte).to_le_bytes());
    }

    fn read32(io: &mut PciConfigIo) -> u32 {
        let mut b = [0u8; 4];
        io.read(4, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn free_slots() {
        let mut root = PciRoot::new();
        let dev = || -> SharedPciDevice { Arc::new(Mutex::new(I440fx::new())) };
        assert!(root.add(0, 0, dev()));
        assert!(root.add(1, 3, dev()));
        assert!(root.add(3, 0, dev()));
        assert_eq!(root.free_slot(0), Some(2));
        assert_eq!(root.free_slot(3), Some(4));
        for slot in 4..32 {
            assert!(root.add(slot, 0, dev()));
        }
        assert_eq!(root.free_slot(3), None);
        assert_eq!(root.free_slot(40), None);
    }

    #[test]
    fn reads_the_host_bridge_and_floats_elsewhere() {
        let mut io = io();
        select(&mut io, 0, 0, 0, 0);
        assert_eq!(read32(&mut io), 0x1237_8086);
        let mut w = [0u8; 2];
        io.read(6, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x1237, "byte offset within the data window");
        select(&mut io, 0, 1, 0, 0);
        assert_eq!(read32(&mut io), u32::MAX, "empty slot");
        select(&mut io, 1, 0, 0, 0);
        assert_eq!(read32(&mut io), u32::MAX, "other bus");
        io.write(0, &0u32.to_le_bytes()); // enable bit clear
        assert_eq!(read32(&mut io), u32::MAX);
    }

    #[test]
    fn address_register_reads_back_and_ignores_byte_access() {
        let mut io = io();
        io.write(0, &0x8000_0003u32.to_le_bytes());
        let mut b = [0u8; 4];
        io.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x8000_0000);
        io.write(0, &[0x55]);
        io.read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x8000_0000);
        let mut one = [0u8];
        io.read(0, &mut one);
        assert_eq!(one[0], 0xff);
        io.read(7, &mut b);
        assert_eq!(b, [0xff; 4], "access past the window");
    }

    #[test]
    fn writes_reach_the_device() {
        let mut io = io();
        select(&mut io, 0, 0, 0, 0x58);
        io.write(5, &[0x30]); // PAM0 at 0x59
        select(&mut io, 0, 0, 0, 0x58);
        assert_eq!((read32(&mut io) >> 8) & 0xff, 0x30);
        select(&mut io, 0, 3, 0, 0);
        io.write(4, &[1, 2, 3, 4]); // absent: dropped
        io.write(6, &[1, 2, 3]); // crosses the window: dropped
    }

    type Writes = Arc<Mutex<Vec<((u8, u8), usize)>>>;
    struct Seen(Writes);
    impl PciConfigListener for Seen {
        fn config_written(&mut self, slot: (u8, u8), reg: usize, _dev: &SharedPciDevice) {
            self.0.lock().unwrap().push((slot, reg));
        }
        fn devices_reset(&mut self, root: &PciRoot) {
            self.0.lock().unwrap().push(((0xff, 0xff), root.devices().count()));
        }
    }

    #[test]
    fn reset_resets_every_function_then_tells_the_listener() {
        let mut io = io();
        let seen = Arc::new(Mutex::new(Vec::new()));
        io.set_listener(Box::new(Seen(seen.clone())));
        select(&mut io, 0, 0, 0, 0x58);
        io.write(5, &[0x30]); // PAM0
        io.reset();
        let mut address = [0xffu8; 4];
        io.read(0, &mut address);
        assert_eq!(address, [0; 4], "the address register is cleared");
        select(&mut io, 0, 0, 0, 0x58);
        assert_eq!((read32(&mut io) >> 8) & 0xff, 0, "PAM0 back to its power-on value");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.last(), Some(&((0xff, 0xff), 1)), "the listener hears of the reset");
    }

    #[test]
    fn listener_sees_writes_to_present_devices() {
        let mut io = io();
        let seen = Arc::new(Mutex::new(Vec::new()));
        io.set_listener(Box::new(Seen(seen.clone())));
        select(&mut io, 0, 0, 0, 0x58);
        io.write(5, &[0x30]);
        select(&mut io, 0, 5, 0, 0x10);
        io.write(4, &[0; 4]);
        assert_eq!(*seen.lock().unwrap(), vec![((0, 0), 0x16)]);
    }

    #[test]
    fn reset_control_register() {
        let mut io = io();
        let mut one = [0u8];
        io.read(1, &mut one);
        assert_eq!(one[0], 0xff, "no reset control without a platform");
        let rec = Arc::new(crate::legacy::test_util::Recorder::default());
        io.set_reset_control(rec.clone());
        io.write(1, &[0x02]); // system reset selected, no CPU reset yet
        io.read(1, &mut one);
        assert_eq!(one[0], 0x02);
        assert!(rec.seen().is_empty());
        io.write(1, &[0x06]);
        assert_eq!(rec.seen(), vec![PlatformRequest::Reset]);
        io.write(1, &[0x04]); // soft reset
        assert_eq!(rec.seen().len(), 2);
    }
}
