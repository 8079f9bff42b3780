// SPDX-License-Identifier: Apache-2.0
//! The thread-pool engine: the io_uring engine's requests ([`Request`]) carried out by a few
//! threads with blocking calls, for hosts without an io_uring (`ENOSYS` on old kernels,
//! `EPERM` under seccomp or `kernel.io_uring_disabled`) and for images with metadata (qcow2),
//! which the ring cannot address. It has the ring's interface (push, reap on an eventfd,
//! wait until idle), so the worker's pipeline serves both the same way.
//!
//! Raw images: `preadv`/`pwritev` straight on the requests' guest-memory pieces, several at
//! once. qcow2 images ([`block::SharedImage`]): the same, through the image, which locks its
//! own metadata. Other images: one request at a time behind the image's lock, through a
//! buffer (the image API is synchronous and `&mut`), which still takes the I/O off the worker
//! thread.
//!
//! Ordering as with the ring's `IOSQE_IO_DRAIN`: a flush starts only once every request
//! pushed before it has completed, and requests pushed after it start only once it has
//! completed. Write-through (no negotiated flush): each write is followed by `fdatasync`
//! (or the image's flush) before it completes.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use block::{DiskImage, SharedImage};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use super::iovec::{advance, transfer_iovecs, Direction};
use super::uring::{Finished, Op, Request};
use crate::bus::lock;

/// Most threads of one disk's pool.
pub(crate) const MAX_THREADS: usize = 4;
/// Largest piece of data moved at once through the buffer of an image with metadata.
const CHUNK: usize = 1 << 20;

/// What the threads do the I/O on.
pub(crate) enum Target {
    /// A raw image's file: the medium byte for byte.
    Raw(File),
    /// An image with metadata (qcow2) that several threads may use at once, straight on
    /// the requests' guest-memory pieces.
    Shared(Arc<dyn SharedImage>),
    /// An image with metadata that takes one request at a time, shared with the worker's
    /// synchronous path (through a buffer).
    Image(Arc<Mutex<Box<dyn DiskImage>>>),
}

/// One disk's pool, with at most `capacity` requests taken and not reaped.
pub(crate) struct Pool {
    jobs: Option<Sender<Request>>,
    done: Receiver<Finished>,
    event: EventFd,
    threads: Vec<JoinHandle<()>>,
    capacity: usize,
    /// Requests handed to the threads and not reaped.
    running: usize,
    /// A flush is among them: nothing else starts until it is reaped.
    flushing: bool,
    /// Requests waiting for a flush to start or to finish.
    held: VecDeque<Request>,
    /// Requests that could not reach a thread (every thread gone), reported at the next reap.
    lost: Vec<Finished>,
    /// The mapping the requests' pieces point into, kept until the threads have stopped.
    _mem: GuestMemoryMmap,
}

impl Pool {
    /// A pool of `threads` threads (at least one) on `target`, taking up to `capacity`
    /// requests; `mem` is the guest memory the requests point into. Fails if a thread
    /// cannot be made.
    pub fn new(
        label: &str,
        target: Target,
        threads: usize,
        capacity: usize,
        writethrough: bool,
        mem: &GuestMemoryMmap,
    ) -> io::Result<Self> {
        let event = EventFd::new(libc::EFD_NONBLOCK)?;
        let (jobs, queue) = mpsc::channel::<Request>();
        let (finished, done) = mpsc::channel();
        let queue = Arc::new(Mutex::new(queue));
        let target = Arc::new(target);
        let mut pool = Pool {
            jobs: Some(jobs),
            done,
            event,
            threads: Vec::new(),
            capacity: capacity.max(1),
            running: 0,
            flushing: false,
            held: VecDeque::new(),
            lost: Vec::new(),
            _mem: mem.clone(),
        };
        for i in 0..threads.max(1) {
            let (queue, target, finished) = (queue.clone(), target.clone(), finished.clone());
            let event = pool.event.try_clone()?;
            let name = format!("{label}-io{i}");
            let thread = std::thread::Builder::new().name(name).spawn(move || {
                crate::sandbox::enter_or_warn(crate::sandbox::ThreadRole::BlockIo);
                serve(&queue, &target, writethrough, &finished, &event)
            })?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Signalled when completions arrive.
    pub fn event(&self) -> &EventFd {
        &self.event
    }

    /// How many more requests may be pushed.
    pub fn room(&self) -> usize {
        self.capacity.saturating_sub(self.in_flight())
    }

    /// Requests pushed and not reaped yet.
    pub fn in_flight(&self) -> usize {
        self.running + self.held.len() + self.lost.len()
    }

    /// Takes `req` (a thread starts it as soon as the ordering allows); gives it back if the
    /// pool is full.
    pub fn push(&mut self, req: Request) -> Result<(), Request> {
        if self.room() == 0 {
            return Err(req);
        }
        self.held.push_back(req);
        self.start();
        Ok(())
    }

    /// Hands the held requests to the threads as far as flushes allow.
    fn start(&mut self) {
        while let Some(next) = self.held.front() {
            if self.flushing || (next.op == Op::Flush && self.running > 0) {
                return;
            }
            let Some(req) = self.held.pop_front() else { return };
            let op = req.op;
            let sent = match &self.jobs {
                Some(jobs) => jobs.send(req).map_err(|e| e.0),
                None => Err(req),
            };
            match sent {
                Ok(()) => {
                    self.running += 1;
                    self.flushing = op == Op::Flush;
                }
                Err(req) => {
                    crate::error_limited!("virtio-blk: the I/O threads are gone; request {} fails", req.head);
                    self.lost.push(finished(&req, Err(libc::EIO)));
                }
            }
        }
    }

    fn take(&mut self, f: Finished, out: &mut Vec<Finished>) {
        self.running = self.running.saturating_sub(1);
        if f.op == Op::Flush {
            self.flushing = false;
        }
        out.push(f);
    }

    /// Moves every available completion to `out` and starts what they held back.
    pub fn reap(&mut self, out: &mut Vec<Finished>) {
        // Drain the counter; a failure only means it was already zero.
        let _ = self.event.read();
        out.append(&mut self.lost);
        while let Ok(f) = self.done.try_recv() {
            self.take(f, out);
        }
        self.start();
    }

    /// Waits until nothing is in flight, moving the completions to `out`: the worker calls it
    /// before it exits, so no thread touches guest memory afterwards.
    pub fn wait_idle(&mut self, out: &mut Vec<Finished>) {
        out.append(&mut self.lost);
        while self.running > 0 {
            match self.done.recv() {
                Ok(f) => self.take(f, out),
                Err(_) => {
                    crate::error_limited!(
                        "virtio-blk: the I/O threads are gone; {} requests abandoned",
                        self.running
                    );
                    self.running = 0;
                    self.flushing = false;
                }
            }
            self.start();
            out.append(&mut self.lost);
        }
        // Drain the counter; a failure only means it was already zero.
        let _ = self.event.read();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Requests never started are dropped; the threads finish those they were sent, see
        // the channel closed and end before the memory mapping may go.
        self.held.clear();
        self.jobs = None;
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                crate::error_limited!("virtio-blk: an I/O thread panicked");
            }
        }
    }
}

fn finished(req: &Request, result: Result<usize, i32>) -> Finished {
    Finished { queue: req.queue, head: req.head, status: req.status, op: req.op, result }
}

/// A thread's loop: the next request, its I/O, its completion and a signal, until the
/// channel closes.
fn serve(
    queue: &Mutex<Receiver<Request>>,
    target: &Target,
    writethrough: bool,
    done: &Sender<Finished>,
    event: &EventFd,
) {
    loop {
        let next = lock(queue).recv();
        let Ok(mut req) = next else { return };
        let result = execute(target, writethrough, &mut req);
        if done.send(finished(&req, result)).is_err() {
            return;
        }
        if let Err(e) = event.write(1) {
            crate::error_limited!("virtio-blk: I/O completion signal: {e}");
        }
    }
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Carries out `req` on `target` with blocking calls: the bytes moved, or an errno. The
/// request's pieces are consumed.
pub(crate) fn execute(target: &Target, writethrough: bool, req: &mut Request) -> Result<usize, i32> {
    match target {
        Target::Raw(file) => execute_raw(file, writethrough, req).map_err(|e| errno(&e)),
        Target::Shared(image) => execute_shared(image.as_ref(), writethrough, req).map_err(|e| match e {
            block::Error::Io(e) => errno(&e),
            _ => libc::EIO,
        }),
        Target::Image(disk) => {
            let mut disk = lock(disk);
            execute_image(disk.as_mut(), writethrough, req).map_err(|e| match e {
                block::Error::Io(e) => errno(&e),
                _ => libc::EIO,
            })
        }
    }
}

fn execute_raw(file: &File, writethrough: bool, req: &mut Request) -> io::Result<usize> {
    match req.op {
        Op::Read => transfer_iovecs(file, &mut req.iovecs, req.len, req.offset, Direction::ToGuest)?,
        Op::Write => {
            transfer_iovecs(file, &mut req.iovecs, req.len, req.offset, Direction::FromGuest)?;
            if writethrough {
                file.sync_data()?;
            }
        }
        Op::Flush => file.sync_data()?,
    }
    Ok(req.len)
}

fn execute_shared(image: &dyn SharedImage, writethrough: bool, req: &mut Request) -> block::Result<usize> {
    let pieces = || {
        req.iovecs.iter().map(|iov| {
            // SAFETY: each piece is `iov_len` bytes of vm-memory-checked guest memory that stays
            // mapped while the pool lives (it holds the mapping). The slice lives only for this
            // call, and guest memory is shared with the guest by design: like a `preadv` into it,
            // the image copies into (or from) it and keeps no reference.
            unsafe { std::slice::from_raw_parts_mut(iov.iov_base.cast::<u8>(), iov.iov_len) }
        })
    };
    match req.op {
        Op::Read => image.readv(req.offset, pieces().map(io::IoSliceMut::new).collect())?,
        Op::Write => {
            image.writev(req.offset, pieces().map(|p| io::IoSlice::new(p)).collect())?;
            if writethrough {
                image.flush()?;
            }
        }
        Op::Flush => image.flush()?,
    }
    Ok(if req.op == Op::Flush { 0 } else { req.len })
}

fn execute_image(disk: &mut dyn DiskImage, writethrough: bool, req: &mut Request) -> block::Result<usize> {
    if req.op == Op::Flush {
        disk.flush()?;
        return Ok(0);
    }
    let mut buf = vec![0u8; req.len.min(CHUNK)];
    let mut first = 0;
    let mut done = 0;
    while done < req.len {
        let n = (req.len - done).min(CHUNK);
        let offset =
            req.offset.checked_add(done as u64).ok_or(io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        let chunk = &mut buf[..n];
        if req.op == Op::Read {
            disk.read_at(offset, chunk)?;
            first = copy_pieces(&mut req.iovecs, first, chunk, Direction::ToGuest);
        } else {
            first = copy_pieces(&mut req.iovecs, first, chunk, Direction::FromGuest);
            disk.write_at(offset, chunk)?;
        }
        done += n;
    }
    if req.op == Op::Write && writethrough {
        disk.flush()?;
    }
    Ok(req.len)
}

/// Copies `buf` into the pieces from `first` on (`ToGuest`) or fills it from them
/// (`FromGuest`); the pieces are consumed. Returns the first piece left.
fn copy_pieces(iovs: &mut [libc::iovec], mut first: usize, buf: &mut [u8], direction: Direction) -> usize {
    let mut at = 0;
    while at < buf.len() {
        let Some(iov) = iovs.get(first).copied() else { break };
        let n = iov.iov_len.min(buf.len() - at);
        if n == 0 {
            first += 1;
            continue;
        }
        let piece = iov.iov_base.cast::<u8>();
        // SAFETY: the piece is `iov_len` (>= n) bytes of vm-memory-checked guest memory that
        // stays mapped while the pool lives (it holds the mapping); `buf[at..at + n]` is in
        // bounds. Guest memory is never a Rust reference, so no aliasing rule is broken.
        unsafe {
            match direction {
                Direction::ToGuest => std::ptr::copy_nonoverlapping(buf[at..].as_ptr(), piece, n),
                Direction::FromGuest => std::ptr::copy_nonoverlapping(piece, buf[at..].as_mut_ptr(), n),
            }
        }
        at += n;
        first = advance(iovs, first, n);
    }
    first
}
