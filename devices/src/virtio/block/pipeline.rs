// SPDX-License-Identifier: Apache-2.0
//! The asynchronous data path: the worker takes every available chain (up to the engine's
//! free entries), turns reads, writes and flushes into requests that point straight at the
//! chain's guest-memory pieces, hands them to the engine ([`Backend`]: an io_uring for raw
//! images, or the thread pool) and completes them when the engine reports on its eventfd.
//! Many requests of a queue (and of several queues) are then in flight at once.
//!
//! A chain that is not a plain read, write or flush of a raw image (GET_ID, discard,
//! write-zeroes, writes to the image's first bytes, malformed or out-of-range requests,
//! buffers the fast path cannot name) goes through [`request::execute`] on the worker, as
//! with the synchronous engine, so every check and status stays in one place.

use std::io::Read;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::{DescriptorChain, QueueOwnedT, QueueT, Reader, Writer};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap, Permissions};

use super::iovec::guest_iovecs;
use super::pool::Pool;
use super::request::{self, byte_range};
use super::uring::{Finished, Op, Request, Ring};
use super::worker::{positions_of, WorkerContext};
use crate::bus::lock;
use crate::stats::BlockOp;
use crate::virtio::queue::{notify, queue_broken};

/// What the fast path needs to know of the medium (fixed while the worker runs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Media {
    /// Size in bytes.
    pub size: u64,
    /// Writes refused.
    pub read_only: bool,
}

/// The guest address of the status byte: the byte after `data_len` bytes of the chain's
/// writable buffers.
fn status_address(chain: &DescriptorChain<&GuestMemoryMmap>, data_len: usize) -> Option<GuestAddress> {
    let mut skip = data_len as u64;
    for d in chain.clone().writable() {
        let len = u64::from(d.len());
        if skip < len {
            return d.addr().checked_add(skip);
        }
        skip -= len;
    }
    None
}

/// The engine request for `chain` of queue `queue`, or `None` if the chain must go through the
/// synchronous path (which also answers every malformed request).
pub(crate) fn prepare(
    mem: &GuestMemoryMmap,
    chain: &DescriptorChain<&GuestMemoryMmap>,
    media: Media,
    queue: usize,
) -> Option<Request> {
    let mut reader = Reader::new(mem, chain.clone()).ok()?;
    let writer = Writer::new(mem, chain.clone()).ok()?;
    let data_len = writer.available_bytes().checked_sub(1)?;
    let mut header = [0u8; 16];
    reader.read_exact(&mut header).ok()?;
    let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let sector = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let status = status_address(chain, data_len)?;
    let (op, iovecs, offset, len) = match kind {
        VIRTIO_BLK_T_IN if data_len > 0 => {
            let offset = byte_range(sector, data_len as u64, media.size).ok()?;
            let iovecs = guest_iovecs(mem, chain.clone().writable(), 0, data_len, Permissions::Write)?;
            (Op::Read, iovecs, offset, data_len)
        }
        VIRTIO_BLK_T_OUT if !media.read_only => {
            let len = reader.available_bytes();
            let offset = byte_range(sector, len as u64, media.size).ok()?;
            // Writes to the first bytes go through `write_at`, which refuses the qcow2 magic.
            if len == 0 || offset < block::RAW_GUARDED_BYTES {
                return None;
            }
            let iovecs = guest_iovecs(mem, chain.clone().readable(), 16, len, Permissions::Read)?;
            (Op::Write, iovecs, offset, len)
        }
        VIRTIO_BLK_T_FLUSH if !media.read_only => (Op::Flush, Vec::new(), 0, 0),
        _ => return None,
    };
    Some(Request { queue, head: chain.head_index(), status, op, iovecs, offset, len })
}

/// The engine requests go to: both take requests, report completions on an eventfd and can
/// be waited on until idle.
pub(crate) enum Backend {
    /// An io_uring (raw images).
    Uring(Ring),
    /// A few threads with blocking calls.
    Pool(Pool),
}

impl Backend {
    /// Signalled when completions arrive.
    pub fn event(&self) -> &vmm_sys_util::eventfd::EventFd {
        match self {
            Backend::Uring(r) => r.event(),
            Backend::Pool(p) => p.event(),
        }
    }

    /// How many more requests may be pushed.
    pub fn room(&self) -> usize {
        match self {
            Backend::Uring(r) => r.room(),
            Backend::Pool(p) => p.room(),
        }
    }

    /// Requests pushed and not reaped yet.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        match self {
            Backend::Uring(r) => r.in_flight(),
            Backend::Pool(p) => p.in_flight(),
        }
    }

    fn push(&mut self, req: Request) -> Result<(), Request> {
        match self {
            Backend::Uring(r) => r.push(req),
            Backend::Pool(p) => p.push(req),
        }
    }

    /// Sends what was pushed (the pool starts requests as they are pushed).
    fn submit(&mut self) -> std::io::Result<()> {
        match self {
            Backend::Uring(r) => r.submit(),
            Backend::Pool(_) => Ok(()),
        }
    }

    fn reap(&mut self, out: &mut Vec<Finished>) {
        match self {
            Backend::Uring(r) => r.reap(out),
            Backend::Pool(p) => p.reap(out),
        }
    }

    fn wait_idle(&mut self, out: &mut Vec<Finished>) {
        match self {
            Backend::Uring(r) => r.wait_idle(out),
            Backend::Pool(p) => p.wait_idle(out),
        }
    }
}

/// The worker's state besides its context.
pub(crate) struct Pipeline {
    backend: Backend,
    media: Media,
    /// Queues the driver corrupted (ignored until a reset).
    broken: Vec<bool>,
    /// Queues left with available chains because the engine was full.
    starved: Vec<bool>,
    finished: Vec<Finished>,
}

impl Pipeline {
    /// A pipeline for `queues` queues over `backend`.
    pub fn new(backend: Backend, media: Media, queues: usize) -> Self {
        Pipeline {
            backend,
            media,
            broken: vec![false; queues],
            starved: vec![false; queues],
            finished: Vec::new(),
        }
    }

    /// Takes what queue `i` has available.
    pub fn kick(&mut self, ctx: &mut WorkerContext, i: usize) {
        if !self.broken.get(i).copied().unwrap_or(true) {
            self.submit_queue(ctx, i);
        }
    }

    /// Completes what the engine finished, then takes more from queues it was too full for.
    pub fn completions(&mut self, ctx: &mut WorkerContext) {
        let mut finished = std::mem::take(&mut self.finished);
        self.backend.reap(&mut finished);
        self.complete(ctx, &mut finished);
        self.finished = finished;
        for i in 0..self.starved.len() {
            if self.starved[i] {
                self.kick(ctx, i);
            }
        }
    }

    /// Waits for every request in flight and completes them (the worker is stopping).
    pub fn finish(&mut self, ctx: &mut WorkerContext) {
        let mut finished = std::mem::take(&mut self.finished);
        self.backend.wait_idle(&mut finished);
        self.complete(ctx, &mut finished);
    }

    fn mark_broken(&mut self, ctx: &WorkerContext, i: usize, e: &dyn std::fmt::Display) {
        if let Some(q) = ctx.queues.get(i) {
            queue_broken(&ctx.label, ctx.interrupt.as_ref(), q.index, e);
        }
        if let Some(b) = self.broken.get_mut(i) {
            *b = true;
        }
    }

    /// Moves the available chains of queue `i` into the engine (or executes them at once if
    /// they cannot go there), as `drain_queue` does for the synchronous engine: with
    /// EVENT_IDX, it asks to be kicked for the next chain and then looks once more.
    fn submit_queue(&mut self, ctx: &mut WorkerContext, i: usize) {
        let WorkerContext { mem, queues, disk, id, writethrough, stats, .. } = ctx;
        let Some(q) = queues.get_mut(i) else { return };
        let event_idx = q.queue.event_idx_enabled();
        let mut completed = 0usize;
        let mut broken: Option<String> = None;
        self.starved[i] = false;
        'take: loop {
            let room = self.backend.room();
            if room == 0 {
                // The chains left wait for completions (see `completions`), not for a kick.
                self.starved[i] = true;
                break;
            }
            let chains: Vec<_> = match q.queue.iter(&*mem) {
                Ok(iter) => iter.take(room).collect(),
                Err(e) => {
                    broken = Some(e.to_string());
                    break;
                }
            };
            if chains.is_empty() && !event_idx {
                break;
            }
            for chain in chains {
                let head = chain.head_index();
                let used_len = match prepare(mem, &chain, self.media, i).map(|r| self.backend.push(r)) {
                    Some(Ok(())) => continue,
                    // Cannot happen (room was checked); the driver sees an I/O error.
                    Some(Err(req)) => {
                        stats.error();
                        write_status(mem, req.status, VIRTIO_BLK_S_IOERR as u8, 0)
                    }
                    None => {
                        request::execute(mem, chain, lock(disk).as_mut(), id, *writethrough, stats).used_len
                    }
                };
                if let Err(e) = q.queue.add_used(&*mem, head, used_len) {
                    broken = Some(e.to_string());
                    break 'take;
                }
                completed += 1;
            }
            if !event_idx {
                continue;
            }
            match q.queue.enable_notification(&*mem) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    broken = Some(e.to_string());
                    break;
                }
            }
        }
        if let Err(e) = self.backend.submit() {
            crate::warn_limited!("{}: I/O submit: {e}", ctx.label);
        }
        // The positions first: whoever the signal wakes sees them up to date.
        update_position(ctx, i);
        if let Some(e) = broken {
            self.mark_broken(ctx, i, &e);
        } else if completed > 0 {
            notify(&ctx.label, ctx.interrupt.as_ref(), &mut ctx.queues[i], &ctx.mem);
        }
    }

    /// Writes the status bytes and used entries of `finished` and notifies their queues.
    fn complete(&mut self, ctx: &mut WorkerContext, finished: &mut Vec<Finished>) {
        let mut touched = vec![false; ctx.queues.len()];
        for f in finished.drain(..) {
            if self.broken.get(f.queue).copied().unwrap_or(true) {
                continue;
            }
            let (status, data) = match f.result {
                Ok(n) if f.op == Op::Read => {
                    ctx.stats.record(BlockOp::Read, n as u64);
                    (VIRTIO_BLK_S_OK, n)
                }
                Ok(n) => {
                    let op = if f.op == Op::Write { BlockOp::Write } else { BlockOp::Flush };
                    ctx.stats.record(op, n as u64);
                    (VIRTIO_BLK_S_OK, 0)
                }
                Err(errno) => {
                    ctx.stats.error();
                    let e = std::io::Error::from_raw_os_error(errno);
                    log::debug!("{}: request {}: {:?}: {e}", ctx.label, f.head, f.op);
                    (VIRTIO_BLK_S_IOERR, 0)
                }
            };
            let used_len = write_status(&ctx.mem, f.status, status as u8, data);
            let Some(q) = ctx.queues.get_mut(f.queue) else { continue };
            if let Err(e) = q.queue.add_used(&ctx.mem, f.head, used_len) {
                self.mark_broken(ctx, f.queue, &e);
                continue;
            }
            touched[f.queue] = true;
        }
        for (i, t) in touched.into_iter().enumerate() {
            if t && !self.broken[i] {
                update_position(ctx, i);
                notify(&ctx.label, ctx.interrupt.as_ref(), &mut ctx.queues[i], &ctx.mem);
            }
        }
    }
}

/// Writes `status` at `addr`; the used length for `data` bytes written before it.
fn write_status(mem: &GuestMemoryMmap, addr: GuestAddress, status: u8, data: usize) -> u32 {
    let data = u32::try_from(data).unwrap_or(u32::MAX);
    match mem.write_obj(status, addr) {
        Ok(()) => data.saturating_add(1),
        Err(e) => {
            log::debug!("virtio-blk: status byte at {:#x}: {e}", addr.raw_value());
            data
        }
    }
}

fn update_position(ctx: &WorkerContext, i: usize) {
    let Some(q) = ctx.queues.get(i) else { return };
    if let Some(p) = lock(&ctx.positions).get_mut(i) {
        *p = positions_of(std::slice::from_ref(q))[0];
    }
}

#[cfg(test)]
mod tests;
