// SPDX-License-Identifier: Apache-2.0
//! The thread that serves a virtio-blk device's queues: it waits on the queues' kick
//! eventfds (KVM ioeventfds, so a guest notification never stops in a vCPU exit handler),
//! executes requests on the image, and signals completions through the transport's
//! interrupt (an irqfd write for MSI-X). Disk I/O runs here, off the vCPU threads and off
//! the machine's event loop.
//!
//! Three engines ([`EngineKind`]): raw images go through an io_uring (many requests in
//! flight, see [`super::pipeline`]) when the kernel allows one; otherwise, and for qcow2
//! images, the same pipeline hands the requests to a small thread pool ([`super::pool`]).
//! The synchronous engine, asked for explicitly or when no thread can be made, executes one
//! request after the other on the worker with blocking calls.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use block::DiskImage;
use virtio_queue::QueueT;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::pipeline::{Backend, Media, Pipeline};
use super::pool::{self, Pool, Target};
use super::request;
use super::uring::Ring;
use crate::bus::lock;
use crate::stats::BlockStats;
use crate::virtio::{queue, ActiveQueue, QueuePosition, VirtioInterrupt};

const KILL_TOKEN: u64 = u64::MAX;
const ENGINE_TOKEN: u64 = u64::MAX - 1;
/// Most ring entries (requests in flight) of one disk, whatever its queues add up to.
const MAX_RING_ENTRIES: u32 = 1024;

/// Which engines a disk may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IoEngine {
    /// io_uring for raw images when the kernel offers it, the thread pool otherwise.
    #[default]
    Auto,
    /// The thread pool even where io_uring works (tests, and hosts where io_uring misbehaves).
    ThreadPool,
    /// Always the synchronous path, one request at a time on the worker (tests).
    Sync,
}

/// The engine a running worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// An io_uring: many requests in flight.
    Uring,
    /// A few threads with blocking calls: several requests in flight for raw images, one at
    /// a time (off the worker) for images with metadata.
    ThreadPool,
    /// One request at a time, blocking calls on the worker.
    Sync,
}

impl EngineKind {
    /// The engine's name in logs.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Uring => "io_uring",
            EngineKind::ThreadPool => "thread pool",
            EngineKind::Sync => "synchronous",
        }
    }
}

/// A running worker; dropping it without [`BlockWorker::stop`] stops it too.
pub struct BlockWorker {
    kill: EventFd,
    handle: Option<JoinHandle<()>>,
    engine: EngineKind,
    why: String,
}

/// What the thread works with.
pub struct WorkerContext {
    /// Name for logs.
    pub label: String,
    /// Guest memory.
    pub mem: GuestMemoryMmap,
    /// The queues the driver enabled.
    pub queues: Vec<ActiveQueue>,
    /// The image.
    pub disk: Arc<Mutex<Box<dyn DiskImage>>>,
    /// The GET_ID answer.
    pub id: Vec<u8>,
    /// Completion notifications.
    pub interrupt: Arc<dyn VirtioInterrupt>,
    /// Make every write durable before it completes (the driver did not negotiate flushes).
    pub writethrough: bool,
    /// Where the worker is in each queue. The synchronous engine holds the lock for the whole
    /// of each batch of work, so a reader sees the positions between two batches; with the
    /// io_uring and thread-pool engines `next_avail` may run ahead of `next_used` by the
    /// requests in flight, and the positions are settled once the worker has stopped (it
    /// completes them first).
    pub positions: Arc<Mutex<Vec<QueuePosition>>>,
    /// Which engines the worker may use.
    pub engine: IoEngine,
    /// The disk's counters.
    pub stats: Arc<BlockStats>,
}

/// The positions of `queues` now.
pub fn positions_of(queues: &[ActiveQueue]) -> Vec<QueuePosition> {
    queues
        .iter()
        .map(|q| QueuePosition {
            index: q.index,
            next_avail: q.queue.next_avail(),
            next_used: q.queue.next_used(),
        })
        .collect()
}

impl BlockWorker {
    /// Starts serving `ctx.queues`.
    pub fn start(ctx: WorkerContext) -> std::io::Result<Self> {
        let kill = EventFd::new(libc::EFD_NONBLOCK)?;
        let epoll = Epoll::new()?;
        epoll.ctl(ControlOperation::Add, kill.as_raw_fd(), EpollEvent::new(EventSet::IN, KILL_TOKEN))?;
        for (i, q) in ctx.queues.iter().enumerate() {
            epoll.ctl(ControlOperation::Add, q.kick.as_raw_fd(), EpollEvent::new(EventSet::IN, i as u64))?;
        }
        let (pipeline, engine, why) = match make_backend(&ctx) {
            Ok((backend, media, why)) => {
                epoll.ctl(
                    ControlOperation::Add,
                    backend.event().as_raw_fd(),
                    EpollEvent::new(EventSet::IN, ENGINE_TOKEN),
                )?;
                let engine = match backend {
                    Backend::Uring(_) => EngineKind::Uring,
                    Backend::Pool(_) => EngineKind::ThreadPool,
                };
                (Some(Pipeline::new(backend, media, ctx.queues.len())), engine, why)
            }
            Err(why) => (None, EngineKind::Sync, why),
        };
        let name = ctx.label.clone();
        let handle = std::thread::Builder::new().name(name).spawn(move || {
            crate::sandbox::enter_or_warn(crate::sandbox::ThreadRole::BlockIo);
            match pipeline {
                Some(p) => run_pipeline(epoll, ctx, p),
                None => run(epoll, ctx),
            }
        })?;
        Ok(BlockWorker { kill, handle: Some(handle), engine, why })
    }

    /// The engine this worker uses.
    pub fn engine(&self) -> EngineKind {
        self.engine
    }

    /// Why it uses that engine, for the log (`raw image`, the io_uring error, ...).
    pub fn engine_reason(&self) -> &str {
        &self.why
    }

    /// Stops the thread and waits for it: no request is in flight afterwards.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(handle) = self.handle.take() {
            if let Err(e) = self.kill.write(1) {
                crate::error_limited!("virtio-blk: cannot stop the worker: {e}");
                return;
            }
            if handle.join().is_err() {
                crate::error_limited!("virtio-blk: the worker panicked");
            }
        }
    }
}

impl Drop for BlockWorker {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The engine for the image and why it was chosen: an io_uring if the disk is raw,
/// `ctx.engine` allows one and the kernel makes one; the thread pool otherwise (several
/// threads for raw images, one behind the image's lock for other formats); `Err` with the
/// reason for the synchronous path.
fn make_backend(ctx: &WorkerContext) -> Result<(Backend, Media, String), String> {
    if ctx.engine == IoEngine::Sync {
        return Err("synchronous engine asked for".into());
    }
    let disk = lock(&ctx.disk);
    let media = Media { size: disk.size(), read_only: disk.read_only() };
    let raw = disk.raw_file().map(|f| f.try_clone()).transpose();
    drop(disk);
    let raw = raw.map_err(|e| format!("cannot duplicate the image fd: {e}"))?;
    let entries: u32 = ctx.queues.iter().map(|q| u32::from(q.queue.size())).sum();
    let entries = entries.clamp(1, MAX_RING_ENTRIES);
    let capacity = entries as usize;
    let pool = |target, threads, why: String| {
        Pool::new(&ctx.label, target, threads, capacity, ctx.writethrough, &ctx.mem)
            .map(|p| (Backend::Pool(p), media, why.clone()))
            .map_err(|e| format!("{why}; cannot start the I/O threads: {e}"))
    };
    let threads = capacity.min(pool::MAX_THREADS);
    let Some(file) = raw else {
        let shared = lock(&ctx.disk).shared();
        return match shared {
            Some(image) => {
                pool(Target::Shared(image), threads, "image with metadata, requests at once".into())
            }
            None => {
                pool(Target::Image(ctx.disk.clone()), 1, "image with metadata, one request at a time".into())
            }
        };
    };
    if ctx.engine == IoEngine::ThreadPool {
        return pool(Target::Raw(file), threads, "raw image, thread pool asked for".into());
    }
    let ring = file.try_clone().and_then(|f| Ring::new(f, entries.next_power_of_two(), ctx.writethrough));
    match ring {
        Ok(ring) => Ok((Backend::Uring(ring), media, "raw image".into())),
        Err(e) => pool(Target::Raw(file), threads, format!("raw image, io_uring unavailable: {e}")),
    }
}

/// The io_uring and thread-pool engines' loop: kicks submit, engine completions complete; on
/// stop, every request in flight completes before the thread ends.
fn run_pipeline(epoll: Epoll, mut ctx: WorkerContext, mut pipeline: Pipeline) {
    let mut events = vec![EpollEvent::default(); ctx.queues.len() + 2];
    // Buffers made available before activation were announced by a kick the worker missed.
    for i in 0..ctx.queues.len() {
        pipeline.kick(&mut ctx, i);
    }
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                crate::error_limited!("{}: epoll: {e}", ctx.label);
                pipeline.finish(&mut ctx);
                return;
            }
        };
        for ev in &events[..n] {
            match ev.data() {
                KILL_TOKEN => {
                    pipeline.finish(&mut ctx);
                    return;
                }
                ENGINE_TOKEN => pipeline.completions(&mut ctx),
                token => {
                    let i = token as usize;
                    let Some(q) = ctx.queues.get(i) else { continue };
                    // Drain the counter; a failure only means it was already zero.
                    let _ = q.kick.read();
                    pipeline.kick(&mut ctx, i);
                }
            }
        }
    }
}

fn run(epoll: Epoll, mut ctx: WorkerContext) {
    let mut events = vec![EpollEvent::default(); ctx.queues.len() + 1];
    // Buffers made available before activation were announced by a kick the worker missed.
    let mut broken: Vec<bool> = (0..ctx.queues.len()).map(|i| !serve_queue(&mut ctx, i)).collect();
    loop {
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                crate::error_limited!("{}: epoll: {e}", ctx.label);
                return;
            }
        };
        for ev in &events[..n] {
            let token = ev.data();
            if token == KILL_TOKEN {
                return;
            }
            let i = token as usize;
            let Some(q) = ctx.queues.get(i) else { continue };
            // Drain the counter; a failure only means it was already zero.
            let _ = q.kick.read();
            if !broken[i] {
                broken[i] = !serve_queue(&mut ctx, i);
            }
        }
    }
}

/// Executes every available request of queue `i`; false if the queue is broken (the device
/// then asks the driver for a reset and ignores the queue until it gets one).
fn serve_queue(ctx: &mut WorkerContext, i: usize) -> bool {
    let WorkerContext { label, mem, queues, disk, id, interrupt, writethrough, positions, stats, .. } = ctx;
    let mut positions = lock(positions);
    let result = queue::drain_queue(label, mem, &mut queues[i], interrupt.as_ref(), |chain| {
        request::execute(mem, chain, lock(disk).as_mut(), id, *writethrough, stats).used_len
    })
    .is_some();
    if let Some(p) = positions.get_mut(i) {
        *p = positions_of(std::slice::from_ref(&queues[i]))[0];
    }
    result
}
