// SPDX-License-Identifier: Apache-2.0
//! The receive side of network devices, on the machine's event loop: [`NetRxEvents`] is an
//! `event-manager` subscriber that watches a device's backend descriptor and hands frames to
//! the device when one is waiting. No thread of its own: the loop's thread runs it.
//!
//! Contract:
//! - The device lives in an `Arc<Mutex<D>>` shared by the vCPU threads (register accesses,
//!   which also transmit) and the loop. Every call below takes the lock briefly; nothing
//!   blocks while holding it (backend reads are non-blocking).
//! - The backend's descriptor is in the loop's interest list only while
//!   [`NetRxDevice::wants_rx`] is true (receiver enabled, free descriptors, nothing held
//!   back), so a full guest ring leaves frames queued in the host instead of spinning.
//! - When the guest makes room (writes RDT) or enables the receiver, the device writes the
//!   eventfd it was given with [`NetRxDevice::set_rx_notifier`]; the subscriber wakes,
//!   rechecks `wants_rx` and watches the backend again.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::bus::lock;

/// What the receive subscriber needs from a network device.
pub trait NetRxDevice: Send {
    /// The backend's pollable descriptor.
    fn rx_fd(&self) -> RawFd;
    /// Whether the device can take a frame now.
    fn wants_rx(&self) -> bool;
    /// The backend is readable: move frames into the guest (a bounded number per call).
    fn rx_ready(&mut self);
    /// The eventfd to write when `wants_rx` may have become true.
    fn set_rx_notifier(&mut self, notifier: EventFd);
}

/// Receives frames for one device on the event loop.
pub struct NetRxEvents<D: NetRxDevice> {
    label: String,
    device: Arc<Mutex<D>>,
    wake: EventFd,
    /// The backend descriptor while it is in the loop's interest list.
    watching: Option<RawFd>,
}

impl<D: NetRxDevice> NetRxEvents<D> {
    /// A subscriber for `device` (named `label` in logs); gives the device its wake-up eventfd.
    pub fn new(label: &str, device: Arc<Mutex<D>>) -> io::Result<Self> {
        let wake = EventFd::new(libc::EFD_NONBLOCK)?;
        lock(&device).set_rx_notifier(wake.try_clone()?);
        Ok(NetRxEvents { label: label.to_string(), device, wake, watching: None })
    }

    /// Watches the backend exactly while the device wants frames.
    fn sync_interest(&mut self, ops: &mut EventOps) {
        let (fd, wants) = {
            let d = lock(&self.device);
            (d.rx_fd(), d.wants_rx())
        };
        match (wants, self.watching) {
            (true, None) => match ops.add(Events::new_raw(fd, EventSet::IN)) {
                Ok(()) => self.watching = Some(fd),
                Err(e) => crate::error_limited!("{}: cannot watch the backend: {e:?}", self.label),
            },
            (false, Some(old)) => {
                if let Err(e) = ops.remove(Events::new_raw(old, EventSet::IN)) {
                    crate::error_limited!("{}: cannot stop watching the backend: {e:?}", self.label);
                }
                self.watching = None;
            }
            _ => {}
        }
    }
}

impl<D: NetRxDevice> MutEventSubscriber for NetRxEvents<D> {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.wake, EventSet::IN)) {
            crate::error_limited!("{}: cannot watch its wake-up eventfd: {e:?}", self.label);
        }
        self.sync_interest(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.wake.as_raw_fd() {
            let _ = self.wake.read();
        } else if Some(events.fd()) == self.watching {
            lock(&self.device).rx_ready();
        }
        self.sync_interest(ops);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_manager::{EventManager, SubscriberOps};

    /// A device that takes frames while it has room and counts its calls.
    struct Dev {
        backend: EventFd,
        room: usize,
        received: usize,
        notifier: Option<EventFd>,
    }

    impl NetRxDevice for Dev {
        fn rx_fd(&self) -> RawFd {
            self.backend.as_raw_fd()
        }
        fn wants_rx(&self) -> bool {
            self.room > 0
        }
        fn rx_ready(&mut self) {
            // One frame per call; the backend's counter is the number of frames waiting.
            if let Ok(n) = self.backend.read() {
                self.received += 1;
                self.room -= 1;
                if n > 1 {
                    let _ = self.backend.write(n - 1);
                }
            }
        }
        fn set_rx_notifier(&mut self, notifier: EventFd) {
            self.notifier = Some(notifier);
        }
    }

    type Manager = EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>>;

    #[test]
    fn frames_flow_while_there_is_room_and_resume_when_the_guest_makes_some() {
        let backend = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let dev = Arc::new(Mutex::new(Dev { backend, room: 2, received: 0, notifier: None }));
        let mut em: Manager = EventManager::new().unwrap();
        em.add_subscriber(Arc::new(Mutex::new(NetRxEvents::new("test", dev.clone()).unwrap())));
        // Three frames waiting, room for two: two are taken, the third waits in the host.
        lock(&dev).backend.write(3).unwrap();
        for _ in 0..10 {
            em.run_with_timeout(10).unwrap();
        }
        assert_eq!(lock(&dev).received, 2);
        // The guest makes room and rings: the loop watches the backend again.
        {
            let mut d = lock(&dev);
            d.room = 4;
            d.notifier.as_ref().unwrap().write(1).unwrap();
        }
        for _ in 0..10 {
            em.run_with_timeout(10).unwrap();
        }
        assert_eq!(lock(&dev).received, 3, "the waiting frame arrived");
        // Nothing waiting: the loop sleeps (no event within the timeout).
        assert_eq!(em.run_with_timeout(10).unwrap(), 0);
    }
}
