// SPDX-License-Identifier: Apache-2.0
//! Message-signalled interrupts and doorbells as devices see them, behind traits, so that
//! `devices/` never sees KVM: the VMM implements [`InterruptManager`] with GSI routes and
//! irqfds, and [`IoEventRegistrar`] with ioeventfds.

use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

/// An MSI message as the guest programs it (an MSI capability or an MSI-X table entry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MsiMessage {
    /// Message address (the local APIC window, 0xFEExxxxx on x86, with the upper half).
    pub address: u64,
    /// Message data (vector and delivery mode on x86).
    pub data: u32,
}

/// Errors of the interrupt back end (a route or an eventfd the host refused).
#[derive(Debug, thiserror::Error)]
pub enum InterruptError {
    /// The vector number is beyond the group.
    #[error("MSI vector {0} is out of range")]
    NoSuchVector(usize),
    /// No more interrupt routes are available.
    #[error("no interrupt routes left for {0} vectors")]
    Exhausted(usize),
    /// The host refused a route, an irqfd or an eventfd write.
    #[error("{0}")]
    Host(String),
}

/// The MSI vectors of one device, each delivered through its own route.
///
/// A vector handed to [`MsiVectors::trigger`] is delivered: the device checks its own mask
/// bits first (the MSI-X table keeps mask and pending bits). Agents outside the vmm that signal
/// a vector's [`notifier`](MsiVectors::notifier) themselves (a VFIO device, a vhost worker)
/// do not see the guest's mask bits, so the device also tells the group which vectors are
/// masked ([`MsiVectors::set_masked`]): their signals are then held back as pending.
pub trait MsiVectors: Send + Sync {
    /// Number of vectors in the group.
    fn len(&self) -> usize;
    /// Whether the group has no vectors.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Routes `vector` to `msg` from now on.
    fn set_route(&self, vector: usize, msg: MsiMessage) -> Result<(), InterruptError>;
    /// Removes the route of `vector` (MSI-X turned off); triggering it then does nothing.
    fn clear_route(&self, vector: usize) -> Result<(), InterruptError>;
    /// Delivers `vector` to its route now.
    fn trigger(&self, vector: usize) -> Result<(), InterruptError>;
    /// The eventfd whose writes deliver `vector`, for agents that signal it themselves (a
    /// vhost worker in the kernel).
    fn notifier(&self, vector: usize) -> Option<&EventFd>;
    /// Masks or unmasks `vector` for signals of its notifier: while masked they are kept
    /// pending, not delivered; unmasking delivers a pending one. Setting the state it already
    /// has does nothing.
    fn set_masked(&self, vector: usize, masked: bool) -> Result<(), InterruptError>;
    /// Whether the notifier of masked `vector` was signalled since it was masked (the pending
    /// bit the guest reads). False for an unmasked vector.
    fn pending(&self, vector: usize) -> bool;
}

/// Hands out groups of MSI vectors.
pub trait InterruptManager: Send + Sync {
    /// A new group of `count` vectors, none routed yet.
    fn msi_vectors(&self, count: usize) -> Result<Arc<dyn MsiVectors>, InterruptError>;
}

/// Where a doorbell write lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IoEventAddress {
    /// An I/O port.
    Pio(u64),
    /// A guest-physical MMIO address.
    Mmio(u64),
}

/// Turns guest writes at an address into eventfd signals without a vCPU exit to user space
/// (KVM ioeventfd). A device keeps its eventfds; the machine registers them where the
/// device's BAR decodes now and moves them when the guest moves the BAR.
pub trait IoEventRegistrar: Send + Sync {
    /// Signals `fd` on every write (of any value and width) at `addr`.
    fn register(&self, addr: IoEventAddress, fd: &EventFd) -> Result<(), InterruptError>;
    /// Stops signalling `fd` for writes at `addr`.
    fn unregister(&self, addr: IoEventAddress, fd: &EventFd) -> Result<(), InterruptError>;
}

/// Test helpers: MSI vectors and doorbells that record what happened to them.
#[cfg(test)]
pub mod test_util {
    use std::sync::Mutex;

    use super::*;

    /// Records routes and triggers.
    #[derive(Default)]
    pub struct FakeMsi {
        /// The route of each vector (`None`: not routed).
        pub routes: Mutex<Vec<Option<MsiMessage>>>,
        /// Vectors triggered, in order.
        pub triggered: Mutex<Vec<usize>>,
        /// The vectors masked for their notifiers now.
        pub masked: Mutex<std::collections::BTreeSet<usize>>,
        /// Vectors signalled by an outside agent while masked (set by tests).
        pub held: Mutex<std::collections::BTreeSet<usize>>,
    }

    impl FakeMsi {
        /// A group of `count` vectors.
        pub fn new(count: usize) -> Arc<Self> {
            Arc::new(FakeMsi {
                routes: Mutex::new(vec![None; count]),
                triggered: Mutex::default(),
                masked: Mutex::default(),
                held: Mutex::default(),
            })
        }
        /// Takes the list of triggered vectors.
        pub fn take_triggered(&self) -> Vec<usize> {
            std::mem::take(&mut *self.triggered.lock().unwrap())
        }
        /// The route of `vector`.
        pub fn route(&self, vector: usize) -> Option<MsiMessage> {
            self.routes.lock().unwrap()[vector]
        }
    }

    impl MsiVectors for FakeMsi {
        fn len(&self) -> usize {
            self.routes.lock().unwrap().len()
        }
        fn set_route(&self, vector: usize, msg: MsiMessage) -> Result<(), InterruptError> {
            let mut r = self.routes.lock().unwrap();
            *r.get_mut(vector).ok_or(InterruptError::NoSuchVector(vector))? = Some(msg);
            Ok(())
        }
        fn clear_route(&self, vector: usize) -> Result<(), InterruptError> {
            let mut r = self.routes.lock().unwrap();
            *r.get_mut(vector).ok_or(InterruptError::NoSuchVector(vector))? = None;
            Ok(())
        }
        fn trigger(&self, vector: usize) -> Result<(), InterruptError> {
            if vector >= self.len() {
                return Err(InterruptError::NoSuchVector(vector));
            }
            self.triggered.lock().unwrap().push(vector);
            Ok(())
        }
        fn notifier(&self, _vector: usize) -> Option<&EventFd> {
            None
        }
        fn set_masked(&self, vector: usize, masked: bool) -> Result<(), InterruptError> {
            if vector >= self.len() {
                return Err(InterruptError::NoSuchVector(vector));
            }
            if masked {
                self.masked.lock().unwrap().insert(vector);
            } else if self.masked.lock().unwrap().remove(&vector) && self.held.lock().unwrap().remove(&vector)
            {
                // An outside agent's signal held while masked is delivered now.
                self.triggered.lock().unwrap().push(vector);
            }
            Ok(())
        }
        fn pending(&self, vector: usize) -> bool {
            self.masked.lock().unwrap().contains(&vector) && self.held.lock().unwrap().contains(&vector)
        }
    }

    /// Records registered doorbells.
    #[derive(Default)]
    pub struct FakeIoEvents {
        /// Addresses registered now, with the eventfd's raw descriptor.
        pub registered: Mutex<Vec<(IoEventAddress, i32)>>,
    }

    impl IoEventRegistrar for FakeIoEvents {
        fn register(&self, addr: IoEventAddress, fd: &EventFd) -> Result<(), InterruptError> {
            use std::os::fd::AsRawFd;
            self.registered.lock().unwrap().push((addr, fd.as_raw_fd()));
            Ok(())
        }
        fn unregister(&self, addr: IoEventAddress, fd: &EventFd) -> Result<(), InterruptError> {
            use std::os::fd::AsRawFd;
            let mut r = self.registered.lock().unwrap();
            let before = r.len();
            r.retain(|e| *e != (addr, fd.as_raw_fd()));
            if r.len() == before {
                return Err(InterruptError::Host(format!("{addr:?} was not registered")));
            }
            Ok(())
        }
    }
}
