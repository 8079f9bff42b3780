// SPDX-License-Identifier: Apache-2.0
//! Entry points for the fuzz targets in `fuzz/` (not an API): the step from a guest's chain to
//! an engine request, and the thread pool's code carrying it out, without threads.

use std::fs::File;
use std::sync::{Arc, Mutex};

use block::DiskImage;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, GuestMemoryMmap};

use super::pipeline::{prepare, Media};
use super::pool::{execute, Target};
use super::uring::Op;

/// What the engines made of one chain, and what the thread pool's code did with it.
#[derive(Debug)]
pub struct Prepared {
    /// `VIRTIO_BLK_T_IN`, `VIRTIO_BLK_T_OUT` or `VIRTIO_BLK_T_FLUSH`.
    pub kind: u32,
    /// Image offset.
    pub offset: u64,
    /// Bytes to move.
    pub len: usize,
    /// Host address and length of each guest-memory piece.
    pub pieces: Vec<(usize, usize)>,
    /// Guest address of the status byte.
    pub status: u64,
    /// Bytes moved, or the errno.
    pub result: Result<usize, i32>,
}

/// Prepares `chain` as the io_uring and thread-pool engines do for a medium of `size` bytes
/// and, if it goes to an engine, carries it out as a pool thread would: on `file` (a raw
/// image), or through `image` (behind its lock) if given. `None`: the chain is for
/// `request::execute`.
pub fn prepare_and_execute(
    mem: &GuestMemoryMmap,
    chain: &DescriptorChain<&GuestMemoryMmap>,
    file: &File,
    image: Option<&Arc<Mutex<Box<dyn DiskImage>>>>,
    size: u64,
    read_only: bool,
    writethrough: bool,
) -> Option<Prepared> {
    let mut req = prepare(mem, chain, Media { size, read_only }, 0)?;
    let kind = match req.op {
        Op::Read => virtio_bindings::virtio_blk::VIRTIO_BLK_T_IN,
        Op::Write => virtio_bindings::virtio_blk::VIRTIO_BLK_T_OUT,
        Op::Flush => virtio_bindings::virtio_blk::VIRTIO_BLK_T_FLUSH,
    };
    let pieces = req.iovecs.iter().map(|v| (v.iov_base as usize, v.iov_len)).collect();
    let target = match image {
        Some(image) => Target::Image(image.clone()),
        None => Target::Raw(file.try_clone().ok()?),
    };
    let result = execute(&target, writethrough, &mut req);
    Some(Prepared { kind, offset: req.offset, len: req.len, pieces, status: req.status.raw_value(), result })
}
