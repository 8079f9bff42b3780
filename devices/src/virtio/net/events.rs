// SPDX-License-Identifier: Apache-2.0
//! virtio-net on the machine's event loop: [`NetEvents`] is the `event-manager` subscriber
//! that serves a device's queues (kicks and taps) from the loop's thread, instead of the
//! device's own worker thread ([`super::worker::NetWorker`], which serves devices built
//! without a loop).
//!
//! The subscriber is made once per device, before the machine starts, and stays in the loop
//! for the device's life. The running queues ([`NetQueues`]) sit in a slot the device and the
//! subscriber share: activation puts them there and writes the reconfigure eventfd, on which
//! the subscriber watches the new kicks and taps; a reset takes them out under the slot's
//! lock (so nothing touches guest memory for that activation afterwards) and writes the
//! eventfd again, on which the subscriber forgets the old descriptors. An event that comes
//! in between finds the slot empty and does nothing.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use super::worker::{NetQueues, RxPoll, CTRL_TOKEN};
use crate::bus::lock;

/// Event data of the reconfigure eventfd.
const RECONFIGURE: u32 = u32::MAX;
/// Event data of the control queue's kick (`CTRL_TOKEN` does not fit 32 bits).
const CTRL: u32 = u32::MAX - 1;

/// The running queues, shared by the device and its subscriber.
pub type QueueSlot = Arc<Mutex<Option<NetQueues>>>;

/// Serves one virtio-net device's queues on the event loop.
pub struct NetEvents {
    label: String,
    slot: QueueSlot,
    reconfigure: EventFd,
    /// Copies of the kick eventfds in the loop's interest list (kept open until they leave
    /// it, whatever the activation they came from does with its own).
    kicks: Vec<EventFd>,
    /// The taps in the loop's interest list, by pair.
    taps: Vec<Option<RawFd>>,
}

/// The device's side: where activation puts the queues and how it tells the subscriber.
pub struct NetEventsHandle {
    /// The running queues.
    pub slot: QueueSlot,
    /// Written after the slot changes.
    pub reconfigure: EventFd,
}

impl NetEventsHandle {
    /// Tells the subscriber the slot changed.
    pub fn notify(&self) {
        if let Err(e) = self.reconfigure.write(1) {
            crate::error_limited!("virtio-net: cannot wake the event loop: {e}");
        }
    }
}

/// A subscriber for the device labelled `label`, and the device's handle on it.
pub fn new(label: &str) -> std::io::Result<(NetEvents, NetEventsHandle)> {
    let reconfigure = EventFd::new(libc::EFD_NONBLOCK)?;
    let slot: QueueSlot = Arc::new(Mutex::new(None));
    let handle = NetEventsHandle { slot: slot.clone(), reconfigure: reconfigure.try_clone()? };
    Ok((
        NetEvents { label: label.to_string(), slot, reconfigure, kicks: Vec::new(), taps: Vec::new() },
        handle,
    ))
}

fn token_of(data: u32) -> u64 {
    if data == CTRL {
        CTRL_TOKEN
    } else {
        u64::from(data)
    }
}

impl NetEvents {
    /// Forgets the descriptors of the last activation and watches those of the queues in the
    /// slot now, serving what they already hold.
    fn resync(&mut self, ops: &mut EventOps) {
        for kick in self.kicks.drain(..) {
            if let Err(e) = ops.remove(Events::empty(&kick)) {
                crate::warn_limited!("{}: event loop: {e:?}", self.label);
            }
        }
        for fd in self.taps.drain(..).flatten() {
            if let Err(e) = ops.remove(Events::empty_raw(fd)) {
                crate::warn_limited!("{}: event loop: {e:?}", self.label);
            }
        }
        let slot = self.slot.clone();
        let mut slot = lock(&slot);
        let Some(q) = slot.as_mut() else { return };
        for (token, kick) in q.kicks() {
            let data = if token == CTRL_TOKEN { CTRL } else { token as u32 };
            match kick.try_clone() {
                Ok(copy) => match ops.add(Events::with_data(&copy, data, EventSet::IN)) {
                    Ok(()) => self.kicks.push(copy),
                    Err(e) => crate::error_limited!("{}: cannot watch a queue: {e:?}", self.label),
                },
                Err(e) => crate::error_limited!("{}: cannot watch a queue: {e}", self.label),
            }
        }
        self.taps = vec![None; q.pair_count()];
        let changes = q.start();
        self.watch_taps(ops, q, changes);
    }

    /// Watches each pair's tap exactly while its receive queue wants frames.
    fn watch_taps(&mut self, ops: &mut EventOps, q: &NetQueues, changes: Vec<(usize, RxPoll)>) {
        for (i, poll) in changes {
            let (Some(watched), Some((token, fd))) = (self.taps.get_mut(i), q.tap(i)) else { continue };
            match (poll, *watched) {
                (RxPoll::Poll, None) => {
                    match ops.add(Events::with_data_raw(fd, token as u32, EventSet::IN)) {
                        Ok(()) => *watched = Some(fd),
                        Err(e) => crate::error_limited!("{}: tap queue {i}: cannot watch: {e:?}", self.label),
                    }
                }
                (RxPoll::Wait, Some(old)) => {
                    if let Err(e) = ops.remove(Events::empty_raw(old)) {
                        crate::error_limited!("{}: tap queue {i}: cannot stop watching: {e:?}", self.label);
                    }
                    *watched = None;
                }
                _ => {}
            }
        }
    }
}

impl MutEventSubscriber for NetEvents {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::with_data(&self.reconfigure, RECONFIGURE, EventSet::IN)) {
            crate::error_limited!("{}: cannot watch its reconfigure eventfd: {e:?}", self.label);
        }
        self.resync(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.data() == RECONFIGURE {
            let _ = self.reconfigure.read();
            self.resync(ops);
            return;
        }
        let slot = self.slot.clone();
        let mut slot = lock(&slot);
        // Empty: the device was reset; the reconfigure event that follows drops the watch.
        let Some(q) = slot.as_mut() else { return };
        let changes = q.handle(token_of(events.data()));
        self.watch_taps(ops, q, changes);
    }
}
