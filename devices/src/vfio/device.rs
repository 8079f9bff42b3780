// SPDX-License-Identifier: Apache-2.0
//! A host PCI function assigned to the guest: the [`PciDevice`] the machine puts on its bus.
//!
//! - Configuration space: [`VirtualConfig`] (BARs, ROM, MSI and MSI-X emulated, the rest the
//!   device's).
//! - BARs: mmapped into the guest ([`PciDevice::bar_host_memory`]) when the host allows it and
//!   the BAR holds neither the MSI-X table nor the PBA; trapped otherwise, each access a pread
//!   or pwrite on the VFIO region, except the MSI-X table and PBA, which are emulated by
//!   [`MsixTable`]. The expansion ROM is read-only.
//! - Interrupts: one kind at a time on the host, as VFIO requires: INTx (through the
//!   machine's [`IntxEventfds`]) until the guest enables MSI or MSI-X, whose vectors the host
//!   delivers straight to the irqfds of the VMM's [`MsiVectors`]. A vector the guest masks
//!   (MSI-X entry or function mask, MSI per-vector mask bit) is masked in the
//!   [`MsiVectors`]: the host's signals are held back as pending (the PBA and the MSI pending
//!   bits read them) and delivered when the guest unmasks it.
//! - Reset: VFIO_DEVICE_RESET when the device is opened, on every guest reset
//!   ([`PciDevice::reset`]; DMA mappings stay) and when it is dropped.

use std::sync::Arc;

use super::backend::{IntxEventfds, IrqKind, VfioBackend, ROM_REGION};
use super::config::{ConfigError, MsixCapInfo, VirtualConfig, NUM_BARS, ROM_INDEX};
use super::msi::{MsiChange, MsiState};
use crate::interrupt::{InterruptError, InterruptManager, MsiVectors};
use crate::pci::msix::MsixTable;
use crate::pci::{PciBarRange, PciDevice};

/// Errors while setting up an assigned device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Its configuration space cannot be virtualized.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No MSI vectors for it.
    #[error("MSI vectors")]
    Vectors(#[source] InterruptError),
}

/// The interrupt kind the host delivers now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IrqMode {
    None,
    Intx,
    Msi(u32),
    Msix,
}

/// The MSI-X capability and its emulated table.
struct Msix {
    cap: MsixCapInfo,
    table: MsixTable,
}

/// One assigned PCI function.
pub struct VfioPciDevice {
    label: String,
    dev: Box<dyn VfioBackend>,
    config: VirtualConfig,
    vectors: Arc<dyn MsiVectors>,
    msi: Option<MsiState>,
    msix: Option<Msix>,
    intx: Option<Arc<dyn IntxEventfds>>,
    mode: IrqMode,
    /// Host addresses of the BARs mapped for the guest.
    mapped: [Option<u64>; NUM_BARS],
}

impl VfioPciDevice {
    /// Resets the function, virtualizes its configuration space, maps the BARs that can be
    /// mapped, takes MSI vectors from `interrupts` (as many as MSI or MSI-X can use) and
    /// enables INTx through `intx` (if the device has INTx and the machine wires it).
    pub fn new(
        label: &str,
        mut dev: Box<dyn VfioBackend>,
        interrupts: &dyn InterruptManager,
        intx: Option<Arc<dyn IntxEventfds>>,
    ) -> Result<Self, DeviceError> {
        if !dev.reset() {
            log::info!("{label}: the device has no reset method; it starts as the host left it");
        }
        let config = VirtualConfig::new(dev.as_ref())?;
        let msi_count = config.msi().map_or(0, |m| m.max_vectors as usize);
        let msix_count = config.msix().map_or(0, |m| usize::from(m.vectors));
        let host_msi = dev.irq_count(IrqKind::Msi) as usize;
        let host_msix = dev.irq_count(IrqKind::Msix) as usize;
        let count = msi_count.min(host_msi).max(msix_count.min(host_msix));
        let vectors = interrupts.msi_vectors(count).map_err(DeviceError::Vectors)?;
        let msi = config.msi().filter(|_| host_msi > 0).map(|cap| MsiState::new(cap, vectors.clone()));
        let msix = config
            .msix()
            .filter(|_| host_msix > 0)
            .map(|cap| Msix { cap, table: MsixTable::new(cap.vectors, vectors.clone()) });
        let mut mapped = [None; NUM_BARS];
        for (index, slot) in mapped.iter_mut().enumerate() {
            let Some(bar) = config.bar(index) else { continue };
            let holds_msix =
                msix.as_ref().is_some_and(|m| m.cap.table_bar == index || m.cap.pba_bar == index);
            if bar.kind == crate::pci::BarKind::Io || holds_msix || bar.region_size != bar.size {
                continue;
            }
            let page = 4096;
            if bar.size % page == 0 && dev.region(index).is_some_and(|r| r.mmappable) {
                *slot = dev.mmap(index);
            }
        }
        let intx =
            intx.filter(|_| dev.irq_count(IrqKind::Intx) > 0 && config.read(dev.as_ref(), 15) & 0xff00 != 0);
        let mut d = VfioPciDevice {
            label: label.to_string(),
            dev,
            config,
            vectors,
            msi,
            msix,
            intx,
            mode: IrqMode::None,
            mapped,
        };
        d.switch_irq(IrqMode::Intx);
        log::info!(
            "{label}: assigned; BARs mapped: {:?}, trapped: {:?}, MSI: {}, MSI-X: {} vectors, INTx: {}",
            d.mapped_bars(),
            d.trapped_bars(),
            d.msi.is_some(),
            d.msix.as_ref().map_or(0, |m| m.table.len()),
            d.intx.is_some(),
        );
        Ok(d)
    }

    /// The BARs the guest reaches without exits.
    pub fn mapped_bars(&self) -> Vec<usize> {
        (0..NUM_BARS).filter(|&i| self.mapped[i].is_some()).collect()
    }

    /// The BARs whose accesses go through the VMM.
    pub fn trapped_bars(&self) -> Vec<usize> {
        (0..NUM_BARS).filter(|&i| self.config.bar(i).is_some() && self.mapped[i].is_none()).collect()
    }

    /// The virtualized configuration space.
    pub fn config(&self) -> &VirtualConfig {
        &self.config
    }

    /// Moves the host's interrupt delivery to `mode` (VFIO allows one kind at a time).
    fn switch_irq(&mut self, mode: IrqMode) {
        if self.mode == mode {
            return;
        }
        let off = match self.mode {
            IrqMode::None => None,
            IrqMode::Intx => Some(IrqKind::Intx),
            IrqMode::Msi(_) => Some(IrqKind::Msi),
            IrqMode::Msix => Some(IrqKind::Msix),
        };
        if let Some(kind) = off {
            if let Err(e) = self.dev.disable_irq(kind) {
                crate::warn_limited!("{}: cannot turn {kind:?} off on the host: {e}", self.label);
            }
        }
        self.mode = IrqMode::None;
        let result = match mode {
            IrqMode::None => Ok(()),
            IrqMode::Intx => match &self.intx {
                Some(intx) => self.dev.enable_intx(intx.trigger(), intx.resample()),
                None => return,
            },
            IrqMode::Msi(n) => self.enable_vectors(IrqKind::Msi, n as usize),
            IrqMode::Msix => {
                let n = self.msix.as_ref().map_or(0, |m| m.table.len());
                self.enable_vectors(IrqKind::Msix, n)
            }
        };
        match result {
            Ok(()) => self.mode = mode,
            Err(e) => crate::warn_limited!("{}: cannot deliver {mode:?} interrupts: {e}", self.label),
        }
    }

    fn enable_vectors(&self, kind: IrqKind, n: usize) -> Result<(), super::backend::BackendError> {
        let n = n.min(self.vectors.len()).min(self.dev.irq_count(kind) as usize);
        let fds: Option<Vec<_>> = (0..n).map(|i| self.vectors.notifier(i)).collect();
        match fds {
            Some(fds) if !fds.is_empty() => self.dev.enable_msi(kind, &fds),
            _ => Err(super::backend::BackendError::Irq(format!("no irqfds for {n} {kind:?} vectors"))),
        }
    }

    fn msi_written(&mut self) {
        let Some(msi) = self.msi.as_mut() else { return };
        match msi.update(&self.config) {
            MsiChange::None => {}
            MsiChange::Enable(n) => self.switch_irq(IrqMode::Msi(n)),
            MsiChange::Disable => self.switch_irq(IrqMode::Intx),
        }
    }

    fn msix_written(&mut self) {
        let Some(msix) = self.msix.as_mut() else { return };
        let control = self.config.shadow_bytes(msix.cap.offset + 2, 2) as u16;
        let was = msix.table.enabled();
        msix.table.set_control(control);
        match (was, msix.table.enabled()) {
            (false, true) => self.switch_irq(IrqMode::Msix),
            (true, false) => self.switch_irq(IrqMode::Intx),
            _ => {}
        }
    }

    /// Where an access of `len` bytes at `offset` of BAR `index` goes: the MSI-X table or PBA
    /// (with the offset within it), or the region.
    fn msix_target(&self, index: usize, offset: u64) -> Option<(bool, u64)> {
        let m = self.msix.as_ref()?;
        let within = |bar: usize, start: u64, size: u64| {
            (bar == index && offset >= start && offset - start < size).then(|| offset - start)
        };
        within(m.cap.table_bar, m.cap.table_offset, m.cap.table_size())
            .map(|o| (true, o))
            .or_else(|| within(m.cap.pba_bar, m.cap.pba_offset, m.cap.pba_size()).map(|o| (false, o)))
    }

    /// The region size behind BAR or ROM `index`, if an access of `len` bytes at `offset`
    /// stays within it.
    fn region_access(&self, index: usize, offset: u64, len: usize) -> bool {
        let size = if index == ROM_INDEX {
            self.dev.region(ROM_REGION).map_or(0, |r| r.size)
        } else {
            self.config.bar(index).map_or(0, |b| b.region_size)
        };
        offset.checked_add(len as u64).is_some_and(|end| end <= size)
    }
}

impl PciDevice for VfioPciDevice {
    fn debug_label(&self) -> &str {
        &self.label
    }

    fn config_read(&self, reg: usize) -> u32 {
        let value = self.config.read(self.dev.as_ref(), reg);
        match &self.msi {
            Some(msi) if msi.pending_reg() == Some(reg) => value | msi.pending_bits(),
            _ => value,
        }
    }

    fn config_write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        let effect = self.config.write(self.dev.as_ref(), reg, offset, data);
        if effect.msi {
            self.msi_written();
        }
        if effect.msix {
            self.msix_written();
        }
    }

    fn bar_ranges(&self) -> Vec<PciBarRange> {
        self.config.bar_ranges()
    }

    fn bar_host_memory(&self, index: usize) -> Option<u64> {
        self.mapped.get(index).copied().flatten()
    }

    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        if let Some((table, o)) = self.msix_target(index, offset) {
            if let Some(m) = self.msix.as_ref() {
                if table {
                    m.table.read_table(o, data);
                } else {
                    m.table.read_pba(o, data);
                }
            }
            return;
        }
        if !self.region_access(index, offset, data.len()) {
            crate::warn_limited!(
                "{}: read of {} bytes at {offset:#x} is outside BAR {index}",
                self.label,
                data.len()
            );
            data.fill(0xff);
            return;
        }
        if let Err(e) = self.dev.read(index, offset, data) {
            crate::warn_limited!("{}: BAR {index} read at {offset:#x}: {e}", self.label);
            data.fill(0xff);
        }
    }

    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        if let Some((table, o)) = self.msix_target(index, offset) {
            if let (true, Some(m)) = (table, self.msix.as_mut()) {
                m.table.write_table(o, data);
            }
            return;
        }
        if index == ROM_INDEX || !self.region_access(index, offset, data.len()) {
            crate::warn_limited!(
                "{}: write of {} bytes at {offset:#x} of BAR {index} ignored",
                self.label,
                data.len()
            );
            return;
        }
        if let Err(e) = self.dev.write(index, offset, data) {
            crate::warn_limited!("{}: BAR {index} write at {offset:#x}: {e}", self.label);
        }
    }

    /// Interrupts off on the host, the function reset (VFIO_DEVICE_RESET), the emulated
    /// registers at their power-on values, INTx delivered again. DMA mappings stay.
    fn reset(&mut self) {
        self.switch_irq(IrqMode::None);
        if let Some(msi) = self.msi.as_mut() {
            msi.reset();
        }
        if let Some(m) = self.msix.as_mut() {
            m.table.reset();
        }
        if !self.dev.reset() {
            log::debug!("{}: no reset method; only its command register is cleared", self.label);
        }
        self.config.reset();
        if let Err(e) = self.dev.write(super::backend::CONFIG_REGION, 4, &[0, 0]) {
            crate::warn_limited!("{}: command register not cleared: {e}", self.label);
        }
        if let Some(intx) = &self.intx {
            intx.deassert();
        }
        self.switch_irq(IrqMode::Intx);
    }
}

impl Drop for VfioPciDevice {
    /// The VM stops: interrupts off and the function reset, so the next user (a host driver
    /// or another VM) finds it quiet.
    fn drop(&mut self) {
        self.switch_irq(IrqMode::None);
        if !self.dev.reset() {
            let _ = self.dev.write(super::backend::CONFIG_REGION, 4, &[0, 0]);
        }
    }
}
