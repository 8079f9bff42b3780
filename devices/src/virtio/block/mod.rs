// SPDX-License-Identifier: Apache-2.0
//! virtio-blk (virtio 1.2, 5.2) on the `block` crate's images: read, write, flush (durable
//! when it completes), get-id (the serial number), discard, write-zeroes, read-only media
//! and several queues. Requests run off the vCPU threads, on a worker thread
//! ([`worker::BlockWorker`]): through an io_uring for raw images where the kernel offers one,
//! through a small thread pool otherwise (and for qcow2 images).

#[doc(hidden)]
pub mod fuzzing;
pub mod iovec;
mod pipeline;
mod pool;
pub mod request;
mod uring;
pub mod worker;

use std::sync::{Arc, Mutex};

use block::DiskImage;

use crate::stats::BlockStats;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_ID_BYTES,
};

use super::{
    device_type, read_config_bytes, ActivateContext, ActivateError, QueuePosition, VirtioDevice,
    VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1,
};
use request::{MAX_SEGMENTS, MAX_ZERO_SECTORS, SECTOR_SIZE};
use worker::{BlockWorker, WorkerContext};
pub use worker::{EngineKind, IoEngine};

/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Most queues a disk may have.
pub const MAX_QUEUES: u16 = 64;

/// How the disk appears to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOptions {
    /// The serial number (GET_ID; `/sys/block/vdX/serial` in Linux), at most 20 bytes used.
    pub serial: String,
    /// Number of request queues (1 to [`MAX_QUEUES`]).
    pub queues: u16,
}

/// A virtio-blk device.
pub struct VirtioBlk {
    label: String,
    disk: Arc<Mutex<Box<dyn DiskImage>>>,
    features: u64,
    config: Vec<u8>,
    queue_sizes: Vec<u16>,
    id: Vec<u8>,
    worker: Option<(BlockWorker, Arc<Mutex<Vec<QueuePosition>>>)>,
    engine: IoEngine,
    /// The engine the last activation chose, logged at info level the first time and when it
    /// changes.
    logged_engine: Option<EngineKind>,
    /// Request counters, for the life of the device.
    stats: Arc<BlockStats>,
}

/// Errors building the device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The queue count is out of range.
    #[error("a virtio disk has 1 to {MAX_QUEUES} queues, not {0}")]
    Queues(u16),
}

fn bit(n: u32) -> u64 {
    1 << n
}

/// The `virtio_blk_config` structure (virtio 1.2, 5.2.4), little-endian.
fn config_space(capacity_sectors: u64, queues: u16) -> Vec<u8> {
    let mut c = vec![0u8; 60];
    c[0..8].copy_from_slice(&capacity_sectors.to_le_bytes());
    // seg_max: a chain holds the header and the status besides the data.
    c[12..16].copy_from_slice(&u32::from(QUEUE_SIZE - 2).to_le_bytes());
    // blk_size: 512-byte logical blocks.
    c[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
    c[34..36].copy_from_slice(&queues.to_le_bytes());
    // Discard: most sectors, most segments, alignment (in sectors).
    c[36..40].copy_from_slice(&MAX_ZERO_SECTORS.to_le_bytes());
    c[40..44].copy_from_slice(&MAX_SEGMENTS.to_le_bytes());
    c[44..48].copy_from_slice(&1u32.to_le_bytes());
    // Write zeroes: most sectors, most segments, may not unmap.
    c[48..52].copy_from_slice(&MAX_ZERO_SECTORS.to_le_bytes());
    c[52..56].copy_from_slice(&MAX_SEGMENTS.to_le_bytes());
    c
}

impl VirtioBlk {
    /// A disk backed by `disk`.
    pub fn new(label: &str, disk: Box<dyn DiskImage>, options: &BlockOptions) -> Result<Self, Error> {
        if options.queues == 0 || options.queues > MAX_QUEUES {
            return Err(Error::Queues(options.queues));
        }
        let mut features = VIRTIO_F_VERSION_1
            | VIRTIO_F_RING_INDIRECT_DESC
            | VIRTIO_F_RING_EVENT_IDX
            | bit(VIRTIO_BLK_F_SEG_MAX)
            | bit(VIRTIO_BLK_F_BLK_SIZE)
            | bit(VIRTIO_BLK_F_FLUSH);
        if disk.read_only() {
            features |= bit(VIRTIO_BLK_F_RO);
        } else {
            features |= bit(VIRTIO_BLK_F_DISCARD) | bit(VIRTIO_BLK_F_WRITE_ZEROES);
        }
        if options.queues > 1 {
            features |= bit(VIRTIO_BLK_F_MQ);
        }
        let config = config_space(disk.size() / SECTOR_SIZE, options.queues);
        let mut id = options.serial.as_bytes().to_vec();
        id.truncate(VIRTIO_BLK_ID_BYTES as usize);
        Ok(VirtioBlk {
            label: label.to_string(),
            disk: Arc::new(Mutex::new(disk)),
            features,
            config,
            queue_sizes: vec![QUEUE_SIZE; usize::from(options.queues)],
            id,
            worker: None,
            engine: IoEngine::default(),
            logged_engine: None,
            stats: Arc::default(),
        })
    }

    /// Chooses which engines the disk may use from its next activation on (the default,
    /// [`IoEngine::Auto`], prefers io_uring for raw images and falls back to the thread pool).
    pub fn set_io_engine(&mut self, engine: IoEngine) {
        self.engine = engine;
    }

    /// The disk's request counters (shared: they keep counting after this call).
    pub fn stats(&self) -> Arc<BlockStats> {
        self.stats.clone()
    }

    /// The engine of the running worker, if the device is active.
    pub fn active_engine(&self) -> Option<EngineKind> {
        self.worker.as_ref().map(|(w, _)| w.engine())
    }
}

impl VirtioDevice for VirtioBlk {
    fn debug_label(&self) -> &str {
        &self.label
    }

    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, ctx: ActivateContext) -> Result<(), ActivateError> {
        if ctx.queues.is_empty() {
            return Err(ActivateError::BadQueues(0));
        }
        let positions = Arc::new(Mutex::new(worker::positions_of(&ctx.queues)));
        let worker = BlockWorker::start(WorkerContext {
            label: self.label.clone(),
            mem: ctx.mem,
            positions: positions.clone(),
            queues: ctx.queues,
            disk: self.disk.clone(),
            id: self.id.clone(),
            interrupt: ctx.interrupt,
            writethrough: ctx.acked_features & bit(VIRTIO_BLK_F_FLUSH) == 0,
            engine: self.engine,
            stats: self.stats.clone(),
        })
        .map_err(|e| ActivateError::Host(format!("worker thread: {e}")))?;
        if self.logged_engine != Some(worker.engine()) {
            let kind = worker.engine().name();
            log::info!("{}: I/O engine {kind} ({})", self.label, worker.engine_reason());
            self.logged_engine = Some(worker.engine());
        }
        self.worker = Some((worker, positions));
        Ok(())
    }

    fn reset(&mut self) {
        if let Some((worker, _)) = self.worker.take() {
            worker.stop();
        }
    }

    fn queue_positions(&self) -> Option<Vec<QueuePosition>> {
        self.worker.as_ref().map(|(_, p)| crate::bus::lock(p).clone())
    }
}

#[cfg(test)]
mod tests;
