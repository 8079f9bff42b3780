// SPDX-License-Identifier: Apache-2.0
//! Conventional PCI: configuration space, the 0xCF8/0xCFC configuration mechanism #1, the
//! i440FX host bridge and PIIX chipset functions, BAR mapping onto the buses, and BAR
//! assignment for the direct machine, which has no firmware to do it.

pub mod bar_alloc;
pub mod bar_map;
pub mod config_io;
pub mod config_space;
pub mod i440fx;
pub mod msix;
pub mod piix3;
pub mod piix4_pm;

pub use config_io::{PciConfigIo, PciConfigListener, PciRoot, SharedPciDevice};
pub use config_space::{BarKind, PciBarRange, PciConfigSpace};
pub use msix::{MsixState, MsixTable};

/// A device on the PCI bus, as configuration cycles see it.
pub trait PciDevice: Send {
    /// Short name for logs.
    fn debug_label(&self) -> &str;
    /// Reads the 32-bit configuration register `reg` (offset / 4, 0..64).
    fn config_read(&self, reg: usize) -> u32;
    /// Writes `data` (1, 2 or 4 bytes) at byte `offset` (0..4) of register `reg`.
    fn config_write(&mut self, reg: usize, offset: usize, data: &[u8]);
    /// The BAR ranges the device decodes now; the machine maps them on its buses after every
    /// configuration write.
    fn bar_ranges(&self) -> Vec<PciBarRange> {
        Vec::new()
    }
    /// Host address of the memory behind BAR `index` if the BAR is plain memory the guest
    /// may map directly (a framebuffer); `None` to trap accesses to `bar_read`/`bar_write`.
    /// The memory must stay valid for as long as the device exists.
    fn bar_host_memory(&self, index: usize) -> Option<u64> {
        let _ = index;
        None
    }
    /// A guest read of `data.len()` bytes at `offset` within BAR `index`.
    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        let _ = (index, offset);
        data.fill(0xff);
    }
    /// A guest write at `offset` within BAR `index`.
    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        let _ = (index, offset, data);
    }
    /// Doorbells in BAR `index`: eventfds the machine signals on guest writes at each offset
    /// without a trip through `bar_write` (KVM ioeventfds), registered where the BAR decodes
    /// now and moved with it. Each call returns new handles of the same eventfds.
    fn ioeventfds(&self, index: usize) -> Vec<(u64, vmm_sys_util::eventfd::EventFd)> {
        let _ = index;
        Vec::new()
    }
    /// The PCI reset (RST#): configuration space at its power-on values (BARs unassigned,
    /// decoding off, interrupts off), device state as after power-on, in-flight work finished
    /// or dropped; the host side (images, taps, framebuffer memory, threads) stays. The
    /// machine unmaps the BARs afterwards, seeing them disabled.
    fn reset(&mut self);
}
