// SPDX-License-Identifier: Apache-2.0
//! The receive side of network devices: one host thread per device waits in poll(2) for
//! its backend to become readable and hands frames to the device.
//!
//! Threading contract:
//! - The device lives in an `Arc<Mutex<D>>` shared by the vCPU threads (register accesses,
//!   which also transmit) and this thread. Every call below takes the lock briefly; nothing
//!   blocks while holding it (backend reads are non-blocking).
//! - The thread polls the backend's descriptor only while [`NetRxDevice::wants_rx`] is true
//!   (receiver enabled, free descriptors, nothing held back), so a full guest ring leaves
//!   frames queued in the host instead of spinning.
//! - When the guest makes room (writes RDT) or enables the receiver, the device writes the
//!   eventfd it was given with [`NetRxDevice::set_rx_notifier`]; the thread wakes, rechecks
//!   `wants_rx` and resumes polling the backend.
//! - [`NetIoThread::stop`] (or drop) sets a flag, writes the same eventfd and joins.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vmm_sys_util::eventfd::EventFd;

use crate::bus::lock;

/// What the I/O thread needs from a network device.
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

/// A running receive thread.
pub struct NetIoThread {
    stop: Arc<AtomicBool>,
    wake: EventFd,
    handle: Option<JoinHandle<()>>,
}

impl NetIoThread {
    /// Starts the thread `name` serving `device`.
    pub fn start<D: NetRxDevice + 'static>(name: &str, device: Arc<Mutex<D>>) -> io::Result<NetIoThread> {
        let wake = EventFd::new(libc::EFD_NONBLOCK)?;
        lock(&device).set_rx_notifier(wake.try_clone()?);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_wake = wake.try_clone()?;
        let thread_stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(&device, &thread_wake, &thread_stop))?;
        Ok(NetIoThread { stop, wake, handle: Some(handle) })
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                log::error!("network I/O thread panicked");
            }
        }
    }
}

impl Drop for NetIoThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run<D: NetRxDevice>(device: &Mutex<D>, wake: &EventFd, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let (fd, wants) = {
            let d = lock(device);
            (d.rx_fd(), d.wants_rx())
        };
        let mut fds = [
            libc::pollfd { fd: wake.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd, events: libc::POLLIN, revents: 0 },
        ];
        let nfds = if wants { 2 } else { 1 };
        // SAFETY: `fds` holds `nfds` valid pollfd entries for the duration of the call.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), nfds, -1) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::error!("network I/O thread: poll failed: {err}");
            return;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            let _ = wake.read();
        }
        if wants && fds[1].revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0 {
            lock(device).rx_ready();
        }
    }
}
