// SPDX-License-Identifier: Apache-2.0
//! What the VFIO PCI device needs from the host, behind a trait: the real one is
//! [`super::host::HostDevice`] (vfio-ioctls on /dev/vfio), the tests use a fake, so the
//! configuration-space virtualization and the MSI/MSI-X emulation run without hardware.
//!
//! Region indices are VFIO's for PCI: 0-5 the BARs, 6 the expansion ROM, 7 configuration space.

use vmm_sys_util::eventfd::EventFd;

/// VFIO region index of the expansion ROM.
pub const ROM_REGION: usize = 6;
/// VFIO region index of configuration space.
pub const CONFIG_REGION: usize = 7;

/// One VFIO region as the host describes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionInfo {
    /// Size in bytes (0: the region does not exist, e.g. the upper half of a 64-bit BAR).
    pub size: u64,
    /// Whether the region may be read.
    pub readable: bool,
    /// Whether the region may be written.
    pub writable: bool,
    /// Whether the region may be mmapped (then the guest can reach it without exits).
    pub mmappable: bool,
}

/// The interrupt kinds of a PCI function, as VFIO numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqKind {
    /// The legacy INTx# pin (level-triggered, masked by the host until unmasked).
    Intx,
    /// MSI (up to 32 vectors).
    Msi,
    /// MSI-X (up to 2048 vectors).
    Msix,
}

/// Errors of the host side of a device.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No such region, or an access beyond its end.
    #[error("region {index}: no access of {len} bytes at {offset:#x}")]
    OutOfRange {
        /// Region index.
        index: usize,
        /// Offset in the region.
        offset: u64,
        /// Length of the access.
        len: usize,
    },
    /// The host refused an access or an ioctl.
    #[error("{what}: {source}")]
    Host {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The host refused an interrupt set-up (VFIO_DEVICE_SET_IRQS).
    #[error("{0}")]
    Irq(String),
}

/// The host side of one assigned PCI function.
pub trait VfioBackend: Send {
    /// Region `index` (0..=7), if the device has it.
    fn region(&self, index: usize) -> Option<RegionInfo>;
    /// Reads `data.len()` bytes at `offset` of region `index` (pread on the device).
    fn read(&self, index: usize, offset: u64, data: &mut [u8]) -> Result<(), BackendError>;
    /// Writes `data` at `offset` of region `index` (pwrite on the device).
    fn write(&self, index: usize, offset: u64, data: &[u8]) -> Result<(), BackendError>;
    /// Maps the whole of region `index` into this process and returns its host address, for
    /// the guest to reach directly; `None` if the region cannot be mapped. The mapping lives
    /// as long as the backend; a second call returns the same address.
    fn mmap(&mut self, index: usize) -> Option<u64>;
    /// How many vectors of `kind` the device has (0: none).
    fn irq_count(&self, kind: IrqKind) -> u32;
    /// Delivers INTx through `trigger`; the host masks the interrupt when it fires and
    /// unmasks it when `resample` is signalled (the guest acknowledged it).
    fn enable_intx(&self, trigger: &EventFd, resample: &EventFd) -> Result<(), BackendError>;
    /// Delivers MSI or MSI-X vector `i` through `fds[i]`.
    fn enable_msi(&self, kind: IrqKind, fds: &[&EventFd]) -> Result<(), BackendError>;
    /// Stops delivering interrupts of `kind`.
    fn disable_irq(&self, kind: IrqKind) -> Result<(), BackendError>;
    /// Resets the function (VFIO_DEVICE_RESET: FLR, or a bus or power-management reset the
    /// kernel picks); false if the device has no reset method.
    fn reset(&self) -> bool;
}

/// The eventfd pair of an assigned device's INTx#, which the machine connects to its
/// interrupt controller (an irqfd with resample at the pin's current route).
pub trait IntxEventfds: Send + Sync {
    /// Signalled by the host when the device asserts INTx#.
    fn trigger(&self) -> &EventFd;
    /// Signalled by the machine when the guest acknowledged the interrupt; the host then
    /// unmasks INTx# (and signals `trigger` again if the device still asserts it).
    fn resample(&self) -> &EventFd;
    /// The device was reset: lower the guest's line if it is held high.
    fn deassert(&self) {}
}
