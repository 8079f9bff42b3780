// SPDX-License-Identifier: Apache-2.0
//! The virtio-pci transport, modern interface only (virtio 1.2, 4.1): a PCI function whose
//! vendor capabilities point into one 32-bit memory BAR holding the common configuration,
//! the ISR status, the device configuration, one doorbell per queue, and the MSI-X table and
//! pending bits (one vector per queue plus one for configuration changes).
//!
//! BAR 0 layout (each region at a 4 KiB boundary, so a guest can map them separately):
//!
//! | offset | region |
//! | --- | --- |
//! | 0x0000 | common configuration (0x38 bytes) |
//! | 0x1000 | ISR status (1 byte) |
//! | 0x2000 | device configuration |
//! | 0x3000 | notifications: queue `n` at `n * 4` |
//! | 0x4000 | MSI-X table |
//! | 0x5000 | MSI-X pending bits |
//!
//! A 32-bit BAR, so SeaBIOS (which runs in 32-bit mode) reaches it directly and needs no
//! `VIRTIO_PCI_CAP_PCI_CFG` window; that capability is not offered yet.

pub mod common_config;
pub mod interrupt;

use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::bus::lock;
use crate::interrupt::MsiVectors;
use crate::irq::IrqLine;
use crate::pci::msix::{MsixState, MsixTable, MSIX_CAP_ID};
use crate::pci::{BarKind, PciBarRange, PciConfigSpace, PciDevice};
use crate::persist::{Persist, PersistError};
use crate::virtio::{
    device_type, status, ActivateContext, ActiveQueue, QueuePosition, VirtioDevice, VirtioInterrupt,
    VIRTIO_F_RING_EVENT_IDX,
};
use common_config::{CommonConfig, CommonConfigState, Vectors, COMMON_CONFIG_LEN};
use interrupt::VirtioPciInterrupt;

/// The virtio PCI vendor ID.
pub const VIRTIO_PCI_VENDOR: u16 = 0x1af4;
/// Modern device IDs are this plus the virtio device type.
pub const VIRTIO_PCI_DEVICE_BASE: u16 = 0x1040;

const BAR_INDEX: usize = 0;
const BAR_SIZE: u64 = 0x8000;
const COMMON_OFFSET: u64 = 0x0000;
const ISR_OFFSET: u64 = 0x1000;
const DEVICE_OFFSET: u64 = 0x2000;
const DEVICE_LEN: u64 = 0x1000;
const NOTIFY_OFFSET: u64 = 0x3000;
const NOTIFY_MULTIPLIER: u32 = 4;
const MSIX_TABLE_OFFSET: u64 = 0x4000;
const MSIX_PBA_OFFSET: u64 = 0x5000;
const REGION_LEN: u64 = 0x1000;
/// Most queues a device may have (one 4 KiB notification page, one MSI-X table page).
pub const MAX_QUEUES: usize = 255;

/// Vendor-specific capability ID, used by every virtio structure.
const PCI_CAP_VENDOR: u8 = 0x09;
/// `cfg_type` of the virtio capabilities.
const CAP_COMMON: u8 = 1;
const CAP_NOTIFY: u8 = 2;
const CAP_ISR: u8 = 3;
const CAP_DEVICE: u8 = 4;

/// Errors building a virtio-pci function.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device has no queues or more than the transport supports.
    #[error("a virtio device needs 1 to {MAX_QUEUES} queues, not {0}")]
    QueueCount(usize),
    /// An eventfd could not be created.
    #[error("cannot create an eventfd")]
    EventFd(#[source] std::io::Error),
    /// The capabilities did not fit in configuration space.
    #[error("configuration space is full")]
    ConfigSpace,
}

/// A virtio device on the PCI bus.
pub struct VirtioPciDevice {
    label: String,
    config: PciConfigSpace,
    device: Box<dyn VirtioDevice>,
    common: CommonConfig,
    vectors: Arc<Vectors>,
    kicks: Vec<EventFd>,
    msix: Arc<Mutex<MsixTable>>,
    msix_cap: usize,
    interrupt: Arc<VirtioPciInterrupt>,
    mem: GuestMemoryMmap,
    active: bool,
}

/// The PCI class code for a device type (the classes QEMU uses, which guests' installers
/// and SeaBIOS are used to).
fn class_code(device_type: u32) -> [u8; 3] {
    match device_type {
        device_type::NET => [0x02, 0x00, 0x00],
        device_type::BLOCK => [0x01, 0x00, 0x00],
        _ => [0xff, 0x00, 0x00],
    }
}

/// The body of a `virtio_pci_cap` (after ID and next pointer): length, type, BAR, ID,
/// padding, offset, length; `extra` follows (the notify multiplier).
fn virtio_cap(cfg_type: u8, offset: u64, len: u64, extra: &[u8]) -> Vec<u8> {
    let cap_len = 16 + extra.len() as u8;
    let mut body = vec![cap_len, cfg_type, BAR_INDEX as u8, 0, 0, 0];
    body.extend_from_slice(&(offset as u32).to_le_bytes());
    body.extend_from_slice(&(len as u32).to_le_bytes());
    body.extend_from_slice(extra);
    body
}

impl VirtioPciDevice {
    /// Puts `device` on the PCI bus: its notifications go through `msi` (one vector per
    /// queue plus one) or `intx`; `mem` is the guest memory its queues live in.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        msi: Arc<dyn MsiVectors>,
        intx: Arc<dyn IrqLine>,
    ) -> Result<Self, Error> {
        let queues = device.queue_max_sizes().len();
        if queues == 0 || queues > MAX_QUEUES {
            return Err(Error::QueueCount(queues));
        }
        let msix_count = (queues + 1) as u16;
        let dtype = device.device_type();
        let mut config = PciConfigSpace::new(
            VIRTIO_PCI_VENDOR,
            VIRTIO_PCI_DEVICE_BASE + dtype as u16,
            class_code(dtype),
            1,
            0,
        );
        // Subsystem vendor and ID.
        config.set_reg(11, u32::from(VIRTIO_PCI_VENDOR) | (0x1100 << 16), 0);
        config.set_interrupt_pin(1);
        config.add_bar(BAR_INDEX, BAR_SIZE, BarKind::Mem32, false);
        let notify_len = queues as u64 * u64::from(NOTIFY_MULTIPLIER);
        let caps = [
            virtio_cap(CAP_COMMON, COMMON_OFFSET, COMMON_CONFIG_LEN, &[]),
            virtio_cap(CAP_ISR, ISR_OFFSET, 1, &[]),
            virtio_cap(CAP_DEVICE, DEVICE_OFFSET, DEVICE_LEN, &[]),
            virtio_cap(CAP_NOTIFY, NOTIFY_OFFSET, notify_len, &NOTIFY_MULTIPLIER.to_le_bytes()),
        ];
        for body in caps {
            config.add_capability(PCI_CAP_VENDOR, &body, &vec![0; body.len()]).ok_or(Error::ConfigSpace)?;
        }
        let msix = MsixTable::new(msix_count, msi.clone());
        let (body, mask) = msix.capability(
            BAR_INDEX as u8,
            MSIX_TABLE_OFFSET as u32,
            BAR_INDEX as u8,
            MSIX_PBA_OFFSET as u32,
        );
        let msix_cap = config.add_capability(MSIX_CAP_ID, &body, &mask).ok_or(Error::ConfigSpace)?;
        let msix = Arc::new(Mutex::new(msix));
        let vectors = Arc::new(Vectors::new(queues));
        let kicks = (0..queues)
            .map(|_| EventFd::new(libc::EFD_NONBLOCK).map_err(Error::EventFd))
            .collect::<Result<Vec<_>, _>>()?;
        let interrupt = Arc::new(VirtioPciInterrupt::new(msix.clone(), msi, vectors.clone(), intx));
        let common = CommonConfig::new(device.features(), device.queue_max_sizes(), msix_count);
        let label = format!("virtio-{}", device.debug_label());
        Ok(VirtioPciDevice {
            label,
            config,
            device,
            common,
            vectors,
            kicks,
            msix,
            msix_cap,
            interrupt,
            mem,
            active: false,
        })
    }

    /// A virtio reset: the device stops, queues and negotiation start over. The MSI-X table
    /// belongs to PCI and stays.
    fn reset_device(&mut self) {
        if self.active {
            self.device.reset();
            self.active = false;
        }
        self.common.reset();
        self.vectors.reset();
        self.interrupt.reset();
    }

    fn status_written(&mut self, new: u8) {
        if new == 0 {
            self.reset_device();
            return;
        }
        let old = self.common.status;
        let mut status = new | old;
        if new & status::FEATURES_OK != 0
            && old & status::FEATURES_OK == 0
            && !self.common.features_acceptable()
        {
            crate::warn_limited!(
                "{}: the driver accepted features {:#x} the device does not offer (or not VERSION_1)",
                self.label,
                self.common.driver_features
            );
            status &= !status::FEATURES_OK;
        }
        let driver_ok = status & status::DRIVER_OK != 0 && old & status::DRIVER_OK == 0;
        self.common.status = status;
        if driver_ok && !self.active {
            if status & status::FEATURES_OK == 0 {
                crate::warn_limited!("{}: DRIVER_OK without FEATURES_OK", self.label);
                self.interrupt.needs_reset();
                return;
            }
            self.activate(&[]);
        }
    }

    /// Hands the enabled queues to the device, each starting at its saved position if
    /// `positions` has one (a restored snapshot) or at the beginning.
    fn activate(&mut self, positions: &[QueuePosition]) {
        let acked = self.common.driver_features;
        let mut queues = Vec::new();
        for (index, q) in self.common.queues.iter_mut().enumerate() {
            if !q.ready() {
                continue;
            }
            if !q.is_valid(&self.mem) {
                crate::warn_limited!(
                    "{}: queue {index} lies outside guest memory or is malformed",
                    self.label
                );
                self.interrupt.needs_reset();
                return;
            }
            q.set_event_idx(acked & VIRTIO_F_RING_EVENT_IDX != 0);
            let kick = match self.kicks[index].try_clone() {
                Ok(k) => k,
                Err(e) => {
                    crate::error_limited!("{}: cannot share queue {index}'s eventfd: {e}", self.label);
                    self.interrupt.needs_reset();
                    return;
                }
            };
            // The device gets its own copy of the validated configuration (the transport's
            // stays frozen until a reset).
            let mut state = q.state();
            if let Some(p) = positions.iter().find(|p| usize::from(p.index) == index) {
                state.next_avail = p.next_avail;
                state.next_used = p.next_used;
            }
            let queue = match Queue::try_from(state) {
                Ok(queue) => queue,
                Err(e) => {
                    crate::warn_limited!("{}: queue {index}: {e}", self.label);
                    self.interrupt.needs_reset();
                    return;
                }
            };
            queues.push(ActiveQueue { index: index as u16, queue, kick });
        }
        let interrupt: Arc<dyn VirtioInterrupt> = self.interrupt.clone();
        let ctx = ActivateContext { mem: self.mem.clone(), acked_features: acked, queues, interrupt };
        match self.device.activate(ctx) {
            Ok(()) => self.active = true,
            Err(e) => {
                crate::warn_limited!("{}: cannot start: {e}", self.label);
                self.interrupt.needs_reset();
            }
        }
    }

    fn status_extra(&self) -> u8 {
        if self.interrupt.reset_requested() {
            status::DEVICE_NEEDS_RESET
        } else {
            0
        }
    }
}

impl PciDevice for VirtioPciDevice {
    fn debug_label(&self) -> &str {
        &self.label
    }

    fn config_read(&self, reg: usize) -> u32 {
        self.config.read(reg)
    }

    fn config_write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config.write(reg, offset, data);
        // The MSI-X message control word (enable, function mask) is 2 bytes into the capability.
        let start = reg * 4 + offset;
        let control = self.msix_cap + 2;
        if start < control + 2 && start + data.len() > control {
            let value = self.config.read_bytes(control, 2) as u16;
            lock(&self.msix).set_control(value);
        }
    }

    fn bar_ranges(&self) -> Vec<PciBarRange> {
        self.config.bar_ranges()
    }

    fn bar_read(&mut self, index: usize, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if index != BAR_INDEX {
            return;
        }
        match offset {
            o if o < COMMON_OFFSET + REGION_LEN => {
                self.common.read(o - COMMON_OFFSET, data, &self.vectors, self.status_extra())
            }
            o if o == ISR_OFFSET => {
                if let Some(first) = data.first_mut() {
                    *first = self.interrupt.read_isr();
                }
            }
            o if (DEVICE_OFFSET..DEVICE_OFFSET + DEVICE_LEN).contains(&o) => {
                self.device.read_config(o - DEVICE_OFFSET, data)
            }
            o if (MSIX_TABLE_OFFSET..MSIX_TABLE_OFFSET + REGION_LEN).contains(&o) => {
                lock(&self.msix).read_table(o - MSIX_TABLE_OFFSET, data)
            }
            o if (MSIX_PBA_OFFSET..MSIX_PBA_OFFSET + REGION_LEN).contains(&o) => {
                lock(&self.msix).read_pba(o - MSIX_PBA_OFFSET, data)
            }
            _ => {}
        }
    }

    fn bar_write(&mut self, index: usize, offset: u64, data: &[u8]) {
        if index != BAR_INDEX {
            return;
        }
        match offset {
            o if o < COMMON_OFFSET + REGION_LEN => {
                if let Some(new_status) = self.common.write(o - COMMON_OFFSET, data, &self.vectors) {
                    self.status_written(new_status);
                }
            }
            o if (DEVICE_OFFSET..DEVICE_OFFSET + DEVICE_LEN).contains(&o) => {
                self.device.write_config(o - DEVICE_OFFSET, data)
            }
            o if (NOTIFY_OFFSET..NOTIFY_OFFSET + REGION_LEN).contains(&o) => {
                // Reached only while no ioeventfd covers the doorbell (or a driver writes an
                // odd width): do what the ioeventfd would have done.
                let queue = (o - NOTIFY_OFFSET) / u64::from(NOTIFY_MULTIPLIER);
                match self.kicks.get(queue as usize) {
                    Some(kick) => {
                        if let Err(e) = kick.write(1) {
                            crate::warn_limited!("{}: queue {queue} notification: {e}", self.label);
                        }
                    }
                    None => {
                        log::debug!("{}: notification of queue {queue}, which does not exist", self.label)
                    }
                }
            }
            o if (MSIX_TABLE_OFFSET..MSIX_TABLE_OFFSET + REGION_LEN).contains(&o) => {
                lock(&self.msix).write_table(o - MSIX_TABLE_OFFSET, data)
            }
            _ => {}
        }
    }

    fn ioeventfds(&self, index: usize) -> Vec<(u64, EventFd)> {
        if index != BAR_INDEX {
            return Vec::new();
        }
        self.kicks
            .iter()
            .enumerate()
            .filter_map(|(q, kick)| {
                let offset = NOTIFY_OFFSET + q as u64 * u64::from(NOTIFY_MULTIPLIER);
                kick.try_clone().ok().map(|fd| (offset, fd))
            })
            .collect()
    }

    /// The device reset a driver asks for by writing 0 to the status (the workers stop, the
    /// queues are forgotten), and the transport's configuration space and MSI-X table too.
    fn reset(&mut self) {
        self.reset_device();
        self.config.reset();
        lock(&self.msix).reset();
    }
}

/// A virtio-pci function's state, for snapshots.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VirtioPciState {
    /// Configuration space registers.
    pub config: Vec<u32>,
    /// Common configuration: negotiation, status, queues, vectors.
    pub common: CommonConfigState,
    /// ISR status bits.
    pub isr: u8,
    /// The device asked for a reset.
    pub needs_reset: bool,
    /// MSI-X table and pending bits.
    pub msix: MsixState,
    /// The device was serving its queues.
    pub active: bool,
    /// Where the device was in each active queue.
    pub positions: Vec<QueuePosition>,
}

impl Persist for VirtioPciDevice {
    type State = VirtioPciState;

    fn save(&self) -> Result<VirtioPciState, PersistError> {
        let positions = if self.active {
            self.device.queue_positions().ok_or_else(|| PersistError::Unsupported(self.label.clone()))?
        } else {
            Vec::new()
        };
        let (isr, needs_reset) = self.interrupt.state();
        Ok(VirtioPciState {
            config: self.config.registers(),
            common: self.common.save(&self.vectors),
            isr,
            needs_reset,
            msix: lock(&self.msix).state(),
            active: self.active,
            positions,
        })
    }

    fn restore(&mut self, s: &VirtioPciState) -> Result<(), PersistError> {
        let mismatch = |why: String| PersistError::Mismatch { device: self.label.clone(), why };
        if s.config.len() != self.config.registers().len() {
            return Err(mismatch(format!("{} configuration registers", s.config.len())));
        }
        if s.msix.entries.len() != lock(&self.msix).len() {
            return Err(mismatch(format!("{} MSI-X entries", s.msix.entries.len())));
        }
        if self.active {
            self.device.reset();
            self.active = false;
        }
        self.common.restore(&s.common, &self.vectors).map_err(mismatch)?;
        self.config.set_registers(&s.config);
        lock(&self.msix).restore(&s.msix);
        self.interrupt.restore(s.isr, s.needs_reset);
        if s.active {
            self.activate(&s.positions);
            if !self.active {
                return Err(PersistError::Resume { device: self.label.clone(), why: "see the log".into() });
            }
        }
        Ok(())
    }
}

impl Drop for VirtioPciDevice {
    fn drop(&mut self) {
        if self.active {
            self.device.reset();
        }
    }
}

#[cfg(test)]
mod tests;
