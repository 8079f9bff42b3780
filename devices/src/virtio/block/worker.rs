// SPDX-License-Identifier: Apache-2.0
//! The thread that serves a virtio-blk device's queues: it waits on the queues' kick
//! eventfds (KVM ioeventfds, so a guest notification never stops in a vCPU exit handler),
//! executes requests on the image, and signals completions through the transport's
//! interrupt (an irqfd write for MSI-X). Disk I/O blocks, so it runs here, off the vCPU
//! threads and off the machine's event loop.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use block::DiskImage;
use virtio_queue::QueueT;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::request;
use crate::bus::lock;
use crate::virtio::{queue, ActiveQueue, QueuePosition, VirtioInterrupt};

const KILL_TOKEN: u64 = u64::MAX;

/// A running worker; dropping it without [`BlockWorker::stop`] stops it too.
pub struct BlockWorker {
    kill: EventFd,
    handle: Option<JoinHandle<()>>,
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
    /// Where the worker is in each queue; locked for the whole of each batch of work, so a
    /// reader sees the positions between two batches.
    pub positions: Arc<Mutex<Vec<QueuePosition>>>,
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
        let handle = std::thread::Builder::new().name(ctx.label.clone()).spawn(move || run(epoll, ctx))?;
        Ok(BlockWorker { kill, handle: Some(handle) })
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
    let WorkerContext { label, mem, queues, disk, id, interrupt, writethrough, positions } = ctx;
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
