// SPDX-License-Identifier: Apache-2.0
//! How a virtio-pci device notifies its driver: through the MSI-X vector the driver chose
//! for the queue (or the configuration), or, with MSI-X off, through the ISR status bits and
//! the INTx line (virtio 1.2, 4.1.4.5).
//!
//! Called from the device's worker threads; it takes the MSI-X table's lock but never the
//! device's own, so a vCPU that holds the device (and waits for its worker to stop) cannot
//! deadlock with a worker that is signalling.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use super::common_config::{Vectors, NO_VECTOR};
use crate::bus::lock;
use crate::interrupt::MsiVectors;
use crate::irq::IrqLine;
use crate::pci::msix::MsixTable;
use crate::virtio::{VirtioInterrupt, VirtioInterruptKind};

/// ISR bit: a queue was used.
pub const ISR_QUEUE: u8 = 1;
/// ISR bit: the device configuration changed.
pub const ISR_CONFIG: u8 = 2;

/// The notification path of one virtio-pci device.
pub struct VirtioPciInterrupt {
    msix: Arc<Mutex<MsixTable>>,
    /// The vectors behind `msix`, for their irqfds ([`VirtioInterrupt::queue_irqfd`]).
    msi: Arc<dyn MsiVectors>,
    vectors: Arc<Vectors>,
    isr: AtomicU8,
    intx: Arc<dyn IrqLine>,
    needs_reset: AtomicBool,
}

impl VirtioPciInterrupt {
    /// Signals through `msix` (when the driver enabled it; `msi` are its vectors) or `intx`.
    pub fn new(
        msix: Arc<Mutex<MsixTable>>,
        msi: Arc<dyn MsiVectors>,
        vectors: Arc<Vectors>,
        intx: Arc<dyn IrqLine>,
    ) -> Self {
        VirtioPciInterrupt {
            msix,
            msi,
            vectors,
            isr: AtomicU8::new(0),
            intx,
            needs_reset: AtomicBool::new(false),
        }
    }

    /// The driver read the ISR status: returns it, clears it and lowers INTx.
    pub fn read_isr(&self) -> u8 {
        let isr = self.isr.swap(0, Ordering::SeqCst);
        if isr != 0 {
            self.intx.set_level(false);
        }
        isr
    }

    /// Whether the device asked for a reset.
    pub fn reset_requested(&self) -> bool {
        self.needs_reset.load(Ordering::SeqCst)
    }

    /// The ISR bits and the reset request, for a snapshot.
    pub fn state(&self) -> (u8, bool) {
        (self.isr.load(Ordering::SeqCst), self.needs_reset.load(Ordering::SeqCst))
    }

    /// Takes saved ISR bits and reset request; INTx follows the ISR bits when MSI-X is off.
    pub fn restore(&self, isr: u8, needs_reset: bool) {
        self.isr.store(isr, Ordering::SeqCst);
        self.needs_reset.store(needs_reset, Ordering::SeqCst);
        let msix = lock(&self.msix).enabled();
        self.intx.set_level(isr != 0 && !msix);
    }

    /// A device reset: no pending ISR bits, INTx low, no reset request.
    pub fn reset(&self) {
        self.isr.store(0, Ordering::SeqCst);
        self.intx.set_level(false);
        self.needs_reset.store(false, Ordering::SeqCst);
    }
}

impl VirtioInterrupt for VirtioPciInterrupt {
    fn signal(&self, kind: VirtioInterruptKind) {
        let (vector, bit) = match kind {
            VirtioInterruptKind::Queue(q) => (
                self.vectors.queues.get(usize::from(q)).map_or(NO_VECTOR, |v| v.load(Ordering::SeqCst)),
                ISR_QUEUE,
            ),
            VirtioInterruptKind::Config => (self.vectors.config.load(Ordering::SeqCst), ISR_CONFIG),
        };
        {
            let mut msix = lock(&self.msix);
            if msix.enabled() {
                // With MSI-X on, a queue without a vector is not signalled at all.
                if vector != NO_VECTOR {
                    msix.trigger(vector);
                }
                return;
            }
        }
        self.isr.fetch_or(bit, Ordering::SeqCst);
        self.intx.set_level(true);
    }

    fn needs_reset(&self) {
        self.needs_reset.store(true, Ordering::SeqCst);
        self.signal(VirtioInterruptKind::Config);
    }

    /// The irqfd of the queue's MSI-X vector while MSI-X is on and the queue has a vector.
    /// The MSI-X table masks it in the interrupt back end while the guest masks the entry, so
    /// a vhost worker's signals are then held pending, as the device's own would be.
    fn queue_irqfd(&self, queue: u16) -> Option<EventFd> {
        let vector = self.vectors.queues.get(usize::from(queue))?.load(Ordering::SeqCst);
        if vector == NO_VECTOR || !lock(&self.msix).enabled() {
            return None;
        }
        self.msi.notifier(usize::from(vector))?.try_clone().ok()
    }
}
