// SPDX-License-Identifier: Apache-2.0
//! An io_uring for one disk's raw image: reads, writes and flushes the worker submits many
//! at a time and reaps when the ring's eventfd fires, so a driver's queue depth reaches the
//! host's storage instead of being served one request after the other.
//!
//! Why the `io-uring` crate: it is the maintained binding (tokio-rs) with safe ring setup and
//! typed submission-entry builders, and it needs no async runtime; the worker stays a plain
//! thread with an epoll loop. Only pushing an entry is `unsafe` (the kernel will use the
//! buffers it names until the completion), and this module is where that promise is kept.
//!
//! Ordering: a flush carries `IOSQE_IO_DRAIN`, so the kernel starts it only after every
//! entry submitted before it has completed (and starts later entries only after it): a
//! completed flush covers every write the driver had submitted before it. Without a
//! negotiated flush (write-through), writes carry `RWF_DSYNC` and are durable on completion.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use io_uring::{opcode, squeue, types, IoUring};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::EventFd;

use super::iovec;

/// How often an entry the kernel answered with `EAGAIN`/`EINTR` is submitted again.
const MAX_RETRIES: u8 = 16;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Image to guest memory.
    Read,
    /// Guest memory to image.
    Write,
    /// `fdatasync` after everything submitted before it.
    Flush,
}

/// A request for the ring: where it came from and what it moves.
pub(crate) struct Request {
    /// Index of its queue in the worker's list.
    pub queue: usize,
    /// Head of its descriptor chain.
    pub head: u16,
    /// Guest address of its status byte.
    pub status: GuestAddress,
    /// What it does.
    pub op: Op,
    /// Guest-memory pieces (vm-memory checked); empty for a flush.
    pub iovecs: Vec<libc::iovec>,
    /// Image offset.
    pub offset: u64,
    /// Bytes to move (the sum of `iovecs`' lengths).
    pub len: usize,
}

/// A request in flight: the request and how far it got.
struct InFlight {
    req: Request,
    first: usize,
    done: usize,
    retries: u8,
}

/// A request the ring finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Finished {
    /// Index of its queue in the worker's list.
    pub queue: usize,
    /// Head of its descriptor chain.
    pub head: u16,
    /// Guest address of its status byte.
    pub status: GuestAddress,
    /// What it did.
    pub op: Op,
    /// Bytes moved, or the error.
    pub result: Result<usize, i32>,
}

// SAFETY: the raw pointers in `Request::iovecs` point into guest memory, which is shared with
// the guest and other threads by design; the ring only moves between threads together with
// the worker that owns the memory mapping.
unsafe impl Send for Request {}

/// One disk's ring, with at most as many requests in flight as it has entries.
pub(crate) struct Ring {
    ring: IoUring,
    event: EventFd,
    file: File,
    writethrough: bool,
    slots: Vec<Option<InFlight>>,
    free: Vec<usize>,
}

impl Ring {
    /// A ring of `entries` entries for `file` whose completions signal an eventfd. Fails if
    /// the kernel has no io_uring (`ENOSYS`), forbids it (`EPERM`, seccomp, sysctl
    /// `kernel.io_uring_disabled`) or cannot make one.
    pub fn new(file: File, entries: u32, writethrough: bool) -> io::Result<Self> {
        let ring = IoUring::new(entries)?;
        let event = EventFd::new(libc::EFD_NONBLOCK)?;
        ring.submitter().register_eventfd(event.as_raw_fd())?;
        let n = ring.params().sq_entries() as usize;
        Ok(Ring {
            ring,
            event,
            file,
            writethrough,
            slots: (0..n).map(|_| None).collect(),
            free: (0..n).rev().collect(),
        })
    }

    /// Signalled when completions arrive.
    pub fn event(&self) -> &EventFd {
        &self.event
    }

    /// How many more requests may be pushed.
    pub fn room(&self) -> usize {
        self.free.len()
    }

    /// Requests pushed and not reaped yet.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Queues `req` (sent to the kernel by [`Ring::submit`]); gives it back if the ring is full.
    pub fn push(&mut self, req: Request) -> Result<(), Request> {
        let Some(slot) = self.free.pop() else { return Err(req) };
        let flight = InFlight { req, first: 0, done: 0, retries: 0 };
        match self.push_entry(slot, flight) {
            None => Ok(()),
            Some(flight) => {
                self.free.push(slot);
                Err(flight.req)
            }
        }
    }

    /// Builds the entry for `flight` (from where it got to) and queues it in `slot`; gives
    /// `flight` back if it cannot.
    fn push_entry(&mut self, slot: usize, flight: InFlight) -> Option<InFlight> {
        let fd = types::Fd(self.file.as_raw_fd());
        let rest = &flight.req.iovecs[flight.first.min(flight.req.iovecs.len())..];
        let Ok(count) = u32::try_from(rest.len()) else { return Some(flight) };
        let offset = flight.req.offset.saturating_add(flight.done as u64);
        let entry = match flight.req.op {
            Op::Read => opcode::Readv::new(fd, rest.as_ptr(), count).offset(offset).build(),
            Op::Write => {
                let flags = if self.writethrough { libc::RWF_DSYNC } else { 0 };
                opcode::Writev::new(fd, rest.as_ptr(), count).offset(offset).rw_flags(flags).build()
            }
            Op::Flush => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .flags(squeue::Flags::IO_DRAIN),
        }
        .user_data(slot as u64);
        // The iovec array lives in the slot (its heap buffer does not move with the Vec) until
        // the completion is reaped.
        self.slots[slot] = Some(flight);
        // SAFETY: the entry names the image fd (owned by this ring), the slot's iovec array
        // and the guest memory its pieces point into. The array stays in `self.slots[slot]`
        // until the entry's completion is reaped; the memory is vm-memory-checked guest memory
        // that the worker keeps mapped (it holds the GuestMemoryMmap) and never exits with
        // entries in flight (see `wait_idle`).
        let pushed = unsafe { self.ring.submission().push(&entry) };
        match pushed {
            Ok(()) => None,
            Err(_) => self.slots[slot].take(),
        }
    }

    /// Sends the queued entries to the kernel.
    pub fn submit(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves every available completion to `out`; a short transfer (or `EAGAIN`) goes back
    /// to the kernel for the rest instead.
    pub fn reap(&mut self, out: &mut Vec<Finished>) {
        // Drain the counter; a failure only means it was already zero.
        let _ = self.event.read();
        let done: Vec<(u64, i32)> = self.ring.completion().map(|c| (c.user_data(), c.result())).collect();
        let mut resubmit = false;
        for (data, res) in done {
            let Some(slot) = usize::try_from(data).ok().filter(|&s| s < self.slots.len()) else { continue };
            let Some(mut flight) = self.slots[slot].take() else { continue };
            let outcome = match res {
                n if n < 0 && (-n == libc::EAGAIN || -n == libc::EINTR) && flight.retries < MAX_RETRIES => {
                    flight.retries += 1;
                    None
                }
                n if n < 0 => Some(Err(-n)),
                0 if flight.done < flight.req.len => Some(Err(libc::EIO)),
                n => {
                    let n = n as usize;
                    flight.done = flight.done.saturating_add(n);
                    if flight.done >= flight.req.len || flight.req.op == Op::Flush {
                        Some(Ok(flight.done))
                    } else {
                        flight.first = iovec::advance(&mut flight.req.iovecs, flight.first, n);
                        None
                    }
                }
            };
            let flight = match outcome {
                Some(result) => {
                    self.finish(slot, flight, result, out);
                    continue;
                }
                None => flight,
            };
            match self.push_entry(slot, flight) {
                None => resubmit = true,
                Some(flight) => self.finish(slot, flight, Err(libc::EIO), out),
            }
        }
        if resubmit {
            if let Err(e) = self.submit() {
                crate::error_limited!("virtio-blk: io_uring submit: {e}");
            }
        }
    }

    fn finish(&mut self, slot: usize, flight: InFlight, result: Result<usize, i32>, out: &mut Vec<Finished>) {
        self.free.push(slot);
        let InFlight { req, .. } = flight;
        out.push(Finished { queue: req.queue, head: req.head, status: req.status, op: req.op, result });
    }

    /// Waits until nothing is in flight, moving the completions to `out`: the worker calls it
    /// before it exits, so the kernel never touches guest memory or iovec arrays afterwards.
    pub fn wait_idle(&mut self, out: &mut Vec<Finished>) {
        while self.in_flight() > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    crate::error_limited!(
                        "virtio-blk: io_uring wait: {e}; {} requests abandoned",
                        self.in_flight()
                    );
                    return;
                }
            }
            self.reap(out);
        }
    }
}
