// SPDX-License-Identifier: Apache-2.0
//! Virtio 1.x devices (OASIS virtio v1.2) and their PCI transport.
//!
//! A device implements [`VirtioDevice`]: its features, configuration space and what it does
//! with its queues once the driver is ready. The transport ([`pci::VirtioPciDevice`]) owns
//! everything the PCI side of the specification defines (common configuration, notification,
//! ISR and MSI-X), so devices never see PCI. Split virtqueues come from the rust-vmm
//! `virtio-queue` crate, which checks every descriptor index, length and address it reads.

pub mod block;
pub mod net;
pub mod pci;
pub mod queue;

use std::sync::Arc;

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Feature bit: the device conforms to virtio 1.x (modern interface).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Feature bit: descriptors may point to indirect descriptor tables.
pub const VIRTIO_F_RING_INDIRECT_DESC: u64 = 1 << 28;
/// Feature bit: used and available event index fields suppress notifications.
pub const VIRTIO_F_RING_EVENT_IDX: u64 = 1 << 29;

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready: queues may be used.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 0x80;
}

/// Virtio device types (virtio 1.2, 5).
pub mod device_type {
    /// Network card.
    pub const NET: u32 = 1;
    /// Block device.
    pub const BLOCK: u32 = 2;
}

/// Which notification the driver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioInterruptKind {
    /// Buffers were used in queue `n`.
    Queue(u16),
    /// The device configuration changed.
    Config,
}

/// Notifies the driver; implemented by the transport (MSI-X vector or INTx with ISR bits).
pub trait VirtioInterrupt: Send + Sync {
    /// Signals `kind` to the driver.
    fn signal(&self, kind: VirtioInterruptKind);
    /// Marks the device as needing a reset (status bit 0x40) and signals a configuration
    /// change, as the specification asks of a device that met a fatal driver error.
    fn needs_reset(&self);
    /// An eventfd whose writes notify the driver of queue `queue` directly (the irqfd of
    /// its MSI-X vector), for agents that signal without calling [`VirtioInterrupt::signal`]
    /// (vhost in the kernel); `None` when there is none (MSI-X off, no vector for the
    /// queue), and such an agent must relay through [`VirtioInterrupt::signal`].
    fn queue_irqfd(&self, queue: u16) -> Option<EventFd> {
        let _ = queue;
        None
    }
}

/// One queue handed to a device at activation.
pub struct ActiveQueue {
    /// Queue number.
    pub index: u16,
    /// The queue, as configured and validated by the transport.
    pub queue: Queue,
    /// Signalled when the driver notifies the queue (an ioeventfd, or the transport's
    /// notification register).
    pub kick: EventFd,
}

/// What a device gets when the driver sets DRIVER_OK.
pub struct ActivateContext {
    /// Guest memory.
    pub mem: GuestMemoryMmap,
    /// The features the driver accepted.
    pub acked_features: u64,
    /// The queues the driver enabled.
    pub queues: Vec<ActiveQueue>,
    /// How to notify the driver.
    pub interrupt: Arc<dyn VirtioInterrupt>,
}

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver enabled no queue, or not the ones the device needs.
    #[error("the driver enabled {0} queues, which this device cannot work with")]
    BadQueues(usize),
    /// A host resource (thread, eventfd, epoll) could not be set up.
    #[error("{0}")]
    Host(String),
}

/// A virtio device behind a transport.
pub trait VirtioDevice: Send {
    /// Short name for logs.
    fn debug_label(&self) -> &str;
    /// The virtio device type (see [`device_type`]).
    fn device_type(&self) -> u32;
    /// The largest size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Every feature bit the device offers.
    fn features(&self) -> u64;
    /// Reads the device configuration space at `offset`; beyond it reads as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device configuration space (most fields are read-only; ignored then).
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let _ = (offset, data);
    }
    /// Starts serving the queues.
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError>;
    /// Stops serving the queues and returns to the state before activation; the host
    /// resources (open image, tap) stay. Returns when no work of the device is in flight.
    fn reset(&mut self);
    /// Where the device is in each active queue (`(queue, next_avail, next_used)`), read
    /// between two batches of work, for a snapshot of a paused machine; `None` if the device
    /// cannot tell (it cannot be snapshotted then).
    fn queue_positions(&self) -> Option<Vec<QueuePosition>> {
        None
    }
}

/// How far a device got in one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueuePosition {
    /// Queue number.
    pub index: u16,
    /// The next available-ring entry the device will take.
    pub next_avail: u16,
    /// The next used-ring entry the device will fill.
    pub next_used: u16,
}

/// Reads `data.len()` bytes at `offset` of a configuration structure `bytes`; bytes beyond
/// it read as zero.
pub fn read_config_bytes(bytes: &[u8], offset: u64, data: &mut [u8]) {
    for (i, out) in data.iter_mut().enumerate() {
        let at = usize::try_from(offset).ok().and_then(|o| o.checked_add(i));
        *out = at.and_then(|a| bytes.get(a)).copied().unwrap_or(0);
    }
}
