// SPDX-License-Identifier: Apache-2.0
//! The thread that serves a virtio-blk device's queues: it waits on the queues' kick
//! eventfds (KVM ioeventfds, so a guest notification never stops in a vCPU exit handler),
//! executes requests on the image, and signals completions through the transport's
//! interrupt (an irqfd write for MSI-X). Disk I/O runs here, off the vCPU threads and off
//! the machine's event loop.
//!
//! Two engines ([`EngineKind`]): raw images go through an io_uring (many requests in flight,
//! see [`super::pipeline`]) when the kernel allows one; otherwise, and for qcow2 images, the
//! worker executes one request after the other with blocking calls.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use block::DiskImage;
use virtio_queue::QueueT;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::pipeline::{Media, Pipeline};
use super::request;
use super::uring::Ring;
use crate::bus::lock;
use crate::virtio::{queue, ActiveQueue, QueuePosition, VirtioInterrupt};

const KILL_TOKEN: u64 = u64::MAX;
const RING_TOKEN: u64 = u64::MAX - 1;
/// Most ring entries (requests in flight) of one disk, whatever its queues add up to.
const MAX_RING_ENTRIES: u32 = 1024;

/// Which engines a disk may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IoEngine {
    /// io_uring for raw images when the kernel offers it, the synchronous path otherwise.
    #[default]
    Auto,
    /// Always the synchronous path (tests, and hosts where io_uring misbehaves).
    Sync,
}

/// The engine a running worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// An io_uring: many requests in flight.
    Uring,
    /// One request at a time, blocking calls on the worker.
    Sync,
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
    /// io_uring engine `next_avail` may run ahead of `next_used` by the requests in flight,
    /// and the positions are settled once the worker has stopped (it completes them first).
    pub positions: Arc<Mutex<Vec<QueuePosition>>>,
    /// Which engines the worker may use.
    pub engine: IoEngine,
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
        let (pipeline, why) = match make_ring(&ctx) {
            Ok((ring, media)) => {
                epoll.ctl(
                    ControlOperation::Add,
                    ring.event().as_raw_fd(),
                    EpollEvent::new(EventSet::IN, RING_TOKEN),
                )?;
                (Some(Pipeline::new(ring, media, ctx.queues.len())), "raw image".to_string())
            }
            Err(why) => (None, why),
        };
        let engine = if pipeline.is_some() { EngineKind::Uring } else { EngineKind::Sync };
        let name = ctx.label.clone();
        let handle = std::thread::Builder::new().name(name).spawn(move || match pipeline {
            Some(p) => run_uring(epoll, ctx, p),
            None => run(epoll, ctx),
        })?;
        Ok(BlockWorker { kill, handle: Some(handle), engine, why })
    }

    /// The engine this worker uses.
    pub fn engine(&self) -> EngineKind {
        self.engine
    }

    /// Why it uses that engine, for the log (`raw image`, `qcow2 image`, the io_uring error).
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
                log::error!("virtio-blk: cannot stop the worker: {e}");
                return;
            }
            if handle.join().is_err() {
                log::error!("virtio-blk: the worker panicked");
            }
        }
    }
}

impl Drop for BlockWorker {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// An io_uring for the image, if the disk is raw, `ctx.engine` allows one and the kernel makes
/// one; otherwise why not.
fn make_ring(ctx: &WorkerContext) -> Result<(Ring, Media), String> {
    if ctx.engine == IoEngine::Sync {
        return Err("synchronous engine asked for".into());
    }
    let disk = lock(&ctx.disk);
    let media = Media { size: disk.size(), read_only: disk.read_only() };
    let Some(file) = disk.raw_file() else { return Err("not a raw image".into()) };
    let file = file.try_clone().map_err(|e| format!("cannot duplicate the image fd: {e}"))?;
    drop(disk);
    let entries: u32 = ctx.queues.iter().map(|q| u32::from(q.queue.size())).sum();
    let entries = entries.clamp(1, MAX_RING_ENTRIES).next_power_of_two();
    let ring =
        Ring::new(file, entries, ctx.writethrough).map_err(|e| format!("io_uring unavailable: {e}"))?;
    Ok((ring, media))
}

/// The io_uring engine's loop: kicks submit, ring completions complete; on stop, every
/// request in flight completes before the thread ends.
fn run_uring(epoll: Epoll, mut ctx: WorkerContext, mut pipeline: Pipeline) {
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
                log::error!("{}: epoll: {e}", ctx.label);
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
                RING_TOKEN => pipeline.completions(&mut ctx),
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
                log::error!("{}: epoll: {e}", ctx.label);
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
    let WorkerContext { label, mem, queues, disk, id, interrupt, writethrough, positions, .. } = ctx;
    let mut positions = lock(positions);
    let result = serve_batch(label, mem, &mut queues[i], disk, id, interrupt.as_ref(), *writethrough);
    if let Some(p) = positions.get_mut(i) {
        *p = positions_of(std::slice::from_ref(&queues[i]))[0];
    }
    result
}

fn serve_batch(
    label: &str,
    mem: &GuestMemoryMmap,
    q: &mut ActiveQueue,
    disk: &Mutex<Box<dyn DiskImage>>,
    id: &[u8],
    interrupt: &dyn VirtioInterrupt,
    writethrough: bool,
) -> bool {
    queue::drain_queue(label, mem, q, interrupt, |chain| {
        request::execute(mem, chain, lock(disk).as_mut(), id, writethrough).used_len
    })
    .is_some()
}
