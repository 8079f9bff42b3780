// SPDX-License-Identifier: Apache-2.0
//! Network devices and the host side they talk to.
//!
//! A [`NetBackend`] carries whole Ethernet frames (no FCS, no virtio-net header) between a
//! device and the host: [`tap::Tap`] for a Linux tap interface, [`MemBackend`] for tests and
//! fuzzing. Sending happens on the vCPU thread that rang the device's doorbell; receiving is
//! driven by [`rx_events::NetRxEvents`] on the machine's event loop, which watches the
//! backend's file descriptor and calls the device when a frame is waiting (see that module
//! for the threading contract).

pub mod e1000;
pub mod rx_events;
pub mod tap;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

/// Largest frame a backend hands to a device (a 64 KiB tap read covers any MTU).
pub const MAX_FRAME: usize = 65536;

/// The host end of a network device.
pub trait NetBackend: Send {
    /// Sends one frame. Errors are the caller's to count; a full host queue is not retried.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// Receives one frame into `buf` without blocking: `Ok(None)` when nothing is waiting.
    /// A frame longer than `buf` is truncated to `buf.len()`.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// A file descriptor that polls readable (POLLIN) while [`NetBackend::recv`] has a frame.
    fn as_raw_fd(&self) -> RawFd;
}

/// The queues of a [`MemBackend`], shared with whoever holds its [`MemBackendHandle`].
#[derive(Default)]
struct MemQueues {
    sent: Vec<Vec<u8>>,
    to_receive: VecDeque<Vec<u8>>,
}

/// An in-memory backend: frames the device sends are recorded, frames pushed through the
/// handle are received. Its descriptor is an eventfd readable while frames are queued, so it
/// works with [`rx_events::NetRxEvents`] too.
pub struct MemBackend {
    queues: Arc<Mutex<MemQueues>>,
    readable: Arc<EventFd>,
}

/// The test side of a [`MemBackend`].
#[derive(Clone)]
pub struct MemBackendHandle {
    queues: Arc<Mutex<MemQueues>>,
    readable: Arc<EventFd>,
}

impl MemBackend {
    /// A backend and the handle that feeds and inspects it.
    pub fn new() -> io::Result<(MemBackend, MemBackendHandle)> {
        let queues = Arc::new(Mutex::new(MemQueues::default()));
        let readable = Arc::new(EventFd::new(libc::EFD_NONBLOCK)?);
        let handle = MemBackendHandle { queues: queues.clone(), readable: readable.clone() };
        Ok((MemBackend { queues, readable }, handle))
    }
}

impl MemBackendHandle {
    /// Queues a frame for the device to receive.
    pub fn push_rx(&self, frame: &[u8]) {
        crate::bus::lock(&self.queues).to_receive.push_back(frame.to_vec());
        // Counter overflow is the only error and cannot happen with one write per frame.
        let _ = self.readable.write(1);
    }

    /// Frames the device has sent so far (taken out of the backend).
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut crate::bus::lock(&self.queues).sent)
    }

    /// Frames still waiting to be received.
    pub fn pending_rx(&self) -> usize {
        crate::bus::lock(&self.queues).to_receive.len()
    }
}

impl NetBackend for MemBackend {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        crate::bus::lock(&self.queues).sent.push(frame.to_vec());
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut q = crate::bus::lock(&self.queues);
        let Some(frame) = q.to_receive.pop_front() else { return Ok(None) };
        if q.to_receive.is_empty() {
            // Drain the counter so the descriptor stops polling readable.
            let _ = self.readable.read();
        }
        let n = frame.len().min(buf.len());
        buf[..n].copy_from_slice(&frame[..n]);
        Ok(Some(n))
    }

    fn as_raw_fd(&self) -> RawFd {
        self.readable.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_backend_round_trip() {
        let (mut b, h) = MemBackend::new().unwrap();
        b.send(&[1, 2, 3]).unwrap();
        assert_eq!(h.take_sent(), vec![vec![1, 2, 3]]);
        assert!(h.take_sent().is_empty());
        let mut buf = [0u8; 4];
        assert_eq!(b.recv(&mut buf).unwrap(), None);
        h.push_rx(&[9; 6]);
        h.push_rx(&[7]);
        assert_eq!(h.pending_rx(), 2);
        assert_eq!(b.recv(&mut buf).unwrap(), Some(4), "truncated to the buffer");
        assert_eq!(buf, [9; 4]);
        let mut pfd = libc::pollfd { fd: b.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, zero timeout.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 1, "still readable");
        assert_eq!(b.recv(&mut buf).unwrap(), Some(1));
        // SAFETY: as above.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0, "drained");
    }
}
