// SPDX-License-Identifier: Apache-2.0
//! PCI configuration mechanism #1: the address register at 0xCF8 and the data window at
//! 0xCFC-0xCFF, routing configuration cycles to the devices of bus 0.
//!
//! Address register: bit 31 enable, bits 23-16 bus, 15-11 device, 10-8 function, 7-2
//! register. Cycles to an absent device, another bus, or with the enable bit clear read all
//! ones and drop writes. Only a 32-bit access to 0xCF8 touches the address register (byte
//! accesses there belong to the legacy mechanism #2 and are ignored), as on the PIIX.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::PciDevice;
use crate::bus::{lock, BusDevice};

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

    fn get(&self, device: u8, function: u8) -> Option<&SharedPciDevice> {
        self.devices.get(&(device, function))
    }
}

/// The 0xCF8-0xCFF port block.
pub struct PciConfigIo {
    address: u32,
    root: PciRoot,
}

impl PciConfigIo {
    /// Configuration access to `root`.
    pub fn new(root: PciRoot) -> Self {
        PciConfigIo { address: 0, root }
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
        let Some(byte) = offset.checked_sub(4).map(|b| b as usize).filter(|b| b + data.len() <= 4) else {
            return;
        };
        if let Some((dev, reg)) = self.target() {
            lock(dev).config_write(reg, byte, data);
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
}
