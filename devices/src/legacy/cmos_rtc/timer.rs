// SPDX-License-Identifier: Apache-2.0
//! The RTC's timer thread: sleeps until the next periodic, update or alarm event of an
//! enabled interrupt source, applies it and pulses the IRQ.
//!
//! The thread shares the register file with the vCPUs through a mutex; the device wakes it
//! through the condition variable whenever the guest changes something that moves the next
//! deadline (registers A/B, the time, the alarm) or reads register C (which re-arms IRQF).
//! With no enabled source, or while IRQF is already 1, it waits without a timeout. Wake-ups
//! for periodic interrupts are at most 1024 per second (see `MIN_PERIODIC_WAKE_NS`).

use std::io;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::state::Rtc;
use crate::bus::lock;

/// State shared by the device and its timer thread.
pub(super) struct Shared {
    pub(super) state: Mutex<Rtc>,
    pub(super) wake: Condvar,
}

impl Shared {
    pub(super) fn new(rtc: Rtc) -> Self {
        Shared { state: Mutex::new(rtc), wake: Condvar::new() }
    }
}

/// Starts the timer thread.
pub(super) fn spawn(shared: Arc<Shared>) -> io::Result<JoinHandle<()>> {
    thread::Builder::new().name("cmos-rtc".into()).spawn(move || {
        crate::sandbox::enter_or_warn(crate::sandbox::ThreadRole::RtcTimer);
        run(&shared)
    })
}

/// Asks the thread to exit and waits for it.
pub(super) fn stop(shared: &Shared, handle: JoinHandle<()>) {
    lock(&shared.state).stop = true;
    shared.wake.notify_all();
    if handle.join().is_err() {
        crate::warn_limited!("cmos: timer thread panicked");
    }
}

/// Applies events only when a deadline has come: a wake-up by the device just recomputes the
/// deadline, so the thread's own rate stays capped however often the guest pokes the RTC.
fn run(shared: &Shared) {
    let mut rtc = lock(&shared.state);
    while !rtc.stop {
        let now = rtc.clock_now();
        rtc = match rtc.next_wakeup() {
            Some(at) if at <= now => {
                rtc.sync();
                rtc.timer_synced = rtc.mono_now;
                continue;
            }
            Some(at) => match shared.wake.wait_timeout(rtc, Duration::from_nanos(at - now)) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            },
            None => shared.wake.wait(rtc).unwrap_or_else(PoisonError::into_inner),
        };
    }
}
