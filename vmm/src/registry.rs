// SPDX-License-Identifier: Apache-2.0
//! The machine's devices by id: filled while the machine is built (each device is added
//! where it is created, with its PCI address and what is behind it), answered on the control
//! socket (`{"cmd":"devices"}`), and the one place a device id is known to be unique. Disks
//! and NICs also leave their I/O counters here, for `{"cmd":"stats"}`.

use std::collections::BTreeMap;

use std::sync::Arc;

use api::control::DeviceInfo;
use devices::stats::{BlockStats, NetStats};

use crate::board::Error;
use crate::stats::DeviceCounters;

/// The devices of one machine.
#[derive(Default)]
pub struct DeviceRegistry {
    devices: BTreeMap<String, DeviceInfo>,
    counters: DeviceCounters,
}

impl DeviceRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds device `id` of `kind`, at PCI slot `pci` (device, function) if it is a PCI
    /// function; an id already taken is an error naming it.
    pub fn add(&mut self, id: &str, kind: &str, pci: Option<(u8, u8)>, detail: &str) -> Result<(), Error> {
        if self.devices.contains_key(id) {
            return Err(Error::Devices(format!("device id {id} is used twice")));
        }
        let info = DeviceInfo {
            id: id.to_string(),
            kind: kind.to_string(),
            pci: pci.map(|(d, f)| format!("00:{d:02x}.{f}")),
            detail: detail.to_string(),
        };
        self.devices.insert(id.to_string(), info);
        Ok(())
    }

    /// Registers the counters of disk `id` (added with [`DeviceRegistry::add`]).
    pub fn add_disk_stats(&mut self, id: &str, stats: Arc<BlockStats>) {
        let kind = self.devices.get(id).map_or("disk", |d| d.kind.as_str());
        self.counters.add_disk(id, kind, stats);
    }

    /// Registers the counters of NIC `id`; `in_kernel` when vhost-net moves its frames.
    pub fn add_nic_stats(&mut self, id: &str, in_kernel: bool, stats: Arc<NetStats>) {
        let kind = self.devices.get(id).map_or("nic", |d| d.kind.as_str());
        self.counters.add_nic(id, kind, in_kernel, stats);
    }

    /// Hands the counters over (to the control socket's `stats`).
    pub fn take_counters(&mut self) -> DeviceCounters {
        std::mem::take(&mut self.counters)
    }

    /// Every device, in id order.
    pub fn list(&self) -> Vec<DeviceInfo> {
        self.devices.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_listed_in_order() {
        let mut r = DeviceRegistry::new();
        r.add("vda", "virtio-blk", Some((7, 0)), "/d.qcow2").unwrap();
        r.add("com1", "uart16550", None, "0x3f8").unwrap();
        let e = r.add("vda", "virtio-blk", Some((8, 0)), "/e.raw").unwrap_err();
        assert!(e.to_string().contains("vda is used twice"), "{e}");
        let list = r.list();
        let ids: Vec<&str> = list.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["com1", "vda"]);
        assert_eq!(list[1].pci.as_deref(), Some("00:07.0"));
        assert_eq!(list[1].detail, "/d.qcow2", "the first vda stays");
    }
}
