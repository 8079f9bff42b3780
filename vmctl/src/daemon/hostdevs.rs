// SPDX-License-Identifier: Apache-2.0
//! Managed host devices (`<hostdev managed='yes'>`): bound to vfio-pci before the VM's vmm
//! starts and given back to their host drivers after it stops (or when the start fails).
//! Unmanaged ones must be bound by the user (`vmctl hostdev bind`); the vmm checks them.

use vmdef::model::HostDev;
use vmdef::VmDef;

use super::{Daemon, DaemonError, Result};
use crate::hostdev::{self, HostdevError};

/// Managed devices bound for one start; released again on drop unless kept.
pub(crate) struct BoundDevs<'a> {
    d: &'a Daemon,
    addrs: Vec<String>,
}

impl BoundDevs<'_> {
    /// The VM runs: the devices stay bound until it stops.
    pub(crate) fn keep(mut self) {
        self.addrs.clear();
    }
}

impl Drop for BoundDevs<'_> {
    fn drop(&mut self) {
        for addr in &self.addrs {
            self.d.release_device(addr);
        }
    }
}

fn managed(def: &VmDef) -> impl Iterator<Item = (usize, &HostDev)> {
    def.hostdevs.iter().enumerate().filter(|(_, h)| h.managed)
}

impl Daemon {
    /// Binds the managed host devices of `def` to vfio-pci; on an error, those already bound
    /// are released and the error names the device and the fix.
    pub(crate) fn bind_managed(&self, def: &VmDef) -> Result<BoundDevs<'_>> {
        let mut bound = BoundDevs { d: self, addrs: Vec::new() };
        for (i, h) in managed(def) {
            let addr = h.address.to_string();
            match hostdev::bind(&self.cfg.host_sysfs, &self.cfg.host_procfs, &addr) {
                Ok(before) => {
                    tracing::info!(vm = %def.name, device = %addr, ?before, "bound to vfio-pci");
                    bound.addrs.push(addr);
                }
                Err(e) => {
                    let msg = format!("cannot start {}: hostdevs[{i}] ({addr}): {e}", def.name);
                    return Err(match e {
                        HostdevError::InUse { .. } => DaemonError::Conflict(msg),
                        HostdevError::NoDevice(_) => DaemonError::BadInput(msg),
                        _ => DaemonError::Internal(msg),
                    });
                }
            }
        }
        Ok(bound)
    }

    /// Gives the managed host devices of a stopped VM back to their host drivers.
    pub(crate) fn release_managed(&self, def: &VmDef) {
        for (_, h) in managed(def) {
            self.release_device(&h.address.to_string());
        }
    }

    fn release_device(&self, addr: &str) {
        match hostdev::unbind(&self.cfg.host_sysfs, &self.cfg.host_procfs, addr) {
            Ok(now) => tracing::info!(device = %addr, ?now, "released from vfio-pci"),
            Err(e) => tracing::warn!(device = %addr, "not released from vfio-pci: {e}"),
        }
    }
}
