// SPDX-License-Identifier: Apache-2.0
//! Test helpers: guest memory, split queues with chains laid out by hand, and a datagram
//! socket pair standing in for a tap.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_ring::VRING_DESC_F_NEXT;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{GuestAddress, GuestMemoryMmap, VolatileSlice};

use super::backend::{writev_slices, VnetTap};

/// Guest memory size: queues below 1 MiB, buffers above.
pub const MEM_SIZE: usize = 0x40_0000;

pub fn mem() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

/// A split queue in guest memory to which chains are added one by one.
pub struct Chains<'a> {
    pub mq: MockSplitQueue<'a, GuestMemoryMmap>,
    next: u16,
}

impl<'a> Chains<'a> {
    /// A queue of `size` entries whose rings start at `start`.
    pub fn new(mem: &'a GuestMemoryMmap, start: u64, size: u16) -> Self {
        Chains { mq: MockSplitQueue::create(mem, GuestAddress(start), size), next: 0 }
    }

    /// The device side of the queue.
    pub fn queue(&self) -> Queue {
        self.mq.create_queue().unwrap()
    }

    /// Makes the chain of `(addr, len, flags)` descriptors available; returns its head.
    pub fn add(&mut self, descs: &[(u64, u32, u16)]) -> u16 {
        let head = self.next;
        let raw: Vec<_> = descs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, flags))| {
                let idx = head + i as u16;
                let last = i + 1 == descs.len();
                let flags = if last { flags } else { flags | VRING_DESC_F_NEXT as u16 };
                RawDescriptor::from(SplitDescriptor::new(addr, len, flags, if last { 0 } else { idx + 1 }))
            })
            .collect();
        self.mq.add_desc_chains(&raw, head).unwrap();
        self.next += descs.len() as u16;
        head
    }

    /// The used ring entries so far: (head, length).
    pub fn used(&self) -> Vec<(u32, u32)> {
        let n = self.mq.used().idx().load();
        (0..n)
            .map(|i| {
                let e = self.mq.used().ring().ref_at(usize::from(i)).unwrap().load();
                (e.id(), e.len())
            })
            .collect()
    }
}

/// What was asked of a [`SockTap`].
#[derive(Debug, Default)]
pub struct TapLog {
    pub offloads: Vec<u32>,
    pub enabled: Vec<bool>,
}

/// One end of a datagram socket pair as a tap queue.
pub struct SockTap {
    sock: UnixDatagram,
    ufo: bool,
    pub log: Arc<Mutex<TapLog>>,
}

/// A tap and the socket on the host side of it (blocking, with a 5 s timeout).
pub fn sock_tap(ufo: bool) -> (SockTap, UnixDatagram, Arc<Mutex<TapLog>>) {
    let (a, b) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let log = Arc::new(Mutex::new(TapLog::default()));
    (SockTap { sock: a, ufo, log: log.clone() }, b, log)
}

impl VnetTap for SockTap {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.sock.recv(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_frame(&mut self, bufs: &[VolatileSlice<'_>]) -> io::Result<usize> {
        writev_slices(self.sock.as_raw_fd(), bufs)
    }

    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn set_offload(&mut self, flags: u32) -> io::Result<()> {
        self.log.lock().unwrap().offloads.push(flags);
        Ok(())
    }

    fn supports_ufo(&self) -> bool {
        self.ufo
    }

    fn set_queue_enabled(&mut self, enabled: bool) -> io::Result<()> {
        self.log.lock().unwrap().enabled.push(enabled);
        Ok(())
    }
}

/// A frame of `len` bytes (header included) whose bytes count up from `seed`.
pub fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8)).collect();
    // A plain header: no flags, no GSO, num_buffers 0.
    f[..12].fill(0);
    f
}
