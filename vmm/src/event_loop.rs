// SPDX-License-Identifier: Apache-2.0
//! The machine's event loop: one epoll set (rust-vmm's `event-manager`) run by the main
//! thread while the guest runs. Device work that never blocks waits here: the e1000s'
//! receive sides ([`devices::net::rx_events::NetRxEvents`]) and the end of a boot. Work that
//! must block has a thread of its own: each vCPU, each virtio-blk disk's I/O worker, the
//! userspace virtio-net worker, the control socket (a request may wait seconds for a pause
//! or type text for minutes) and the serial and VNC connections.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

/// A subscriber of the loop.
pub type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// The loop.
pub struct EventLoop {
    manager: EventManager<Subscriber>,
}

/// Drains an eventfd whose only purpose is to wake the loop (the boot's end).
struct Wakeup(EventFd);

impl MutEventSubscriber for Wakeup {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.0, EventSet::IN)) {
            devices::error_limited!("event loop: cannot watch its wake-up eventfd: {e:?}");
        }
    }
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.0.read();
    }
}

impl EventLoop {
    /// An empty loop.
    pub fn new() -> std::io::Result<Self> {
        let manager = EventManager::new().map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        Ok(EventLoop { manager })
    }

    /// Adds `subscriber` (its `init` registers its descriptors).
    pub fn add(&mut self, subscriber: Subscriber) {
        self.manager.add_subscriber(subscriber);
    }

    /// An eventfd that, written, makes [`EventLoop::run`] return at once.
    pub fn wakeup(&mut self) -> std::io::Result<EventFd> {
        let fd = EventFd::new(libc::EFD_NONBLOCK)?;
        let theirs = fd.try_clone()?;
        log::trace!("event loop wake-up eventfd {}", fd.as_raw_fd());
        self.add(Arc::new(Mutex::new(Wakeup(fd))));
        Ok(theirs)
    }

    /// Waits up to `timeout_ms` for events and handles them.
    pub fn run(&mut self, timeout_ms: i32) {
        if let Err(e) = self.manager.run_with_timeout(timeout_ms) {
            devices::warn_limited!("event loop: {e:?}");
            std::thread::sleep(std::time::Duration::from_millis(timeout_ms.max(0) as u64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wakeup_ends_the_wait_at_once() {
        let mut l = EventLoop::new().unwrap();
        let wake = l.wakeup().unwrap();
        wake.write(1).unwrap();
        let t = std::time::Instant::now();
        l.run(5_000);
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        // Drained: the next wait times out.
        let t = std::time::Instant::now();
        l.run(50);
        assert!(t.elapsed() >= std::time::Duration::from_millis(40));
    }
}
