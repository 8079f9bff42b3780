// SPDX-License-Identifier: Apache-2.0
//! PCI passthrough with VFIO: a host PCI function, bound to the vfio-pci driver and behind
//! the host IOMMU (VT-d or AMD-Vi), handed to the guest with its own driver.
//!
//! - [`backend`]: what the device needs from the host, as a trait ([`VfioBackend`]), and the
//!   INTx eventfd pair the machine wires ([`IntxEventfds`]).
//! - [`host`]: the real backend on rust-vmm's vfio-ioctls: container, group, device, guest
//!   RAM mapped for DMA, region pread/pwrite/mmap.
//! - [`config`]: the virtualized configuration space (BARs, ROM, MSI, MSI-X emulated).
//! - [`msi`]: the MSI capability's vectors.
//! - [`device`]: the [`VfioPciDevice`] the machine puts on its PCI bus.
//!
//! Guest input: every configuration write goes through per-byte masks (emulated bytes into
//! the shadow registers with their write masks, the others to the kernel's vfio-pci, which
//! filters them again), every BAR access is checked against its region, and MSI-X table
//! accesses go through [`crate::pci::MsixTable`]'s checks. Bad accesses read all ones and are
//! logged at a rate limit.

pub mod backend;
pub mod config;
pub mod device;
pub mod host;
pub mod msi;
#[cfg(test)]
mod tests;

pub use backend::{IntxEventfds, IrqKind, RegionInfo, VfioBackend};
pub use device::{DeviceError, VfioPciDevice};
pub use host::{HostDevice, HostError, VfioHost};
