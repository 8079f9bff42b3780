// SPDX-License-Identifier: Apache-2.0
//! One virtio-blk request (virtio 1.2, 5.2.6): a 16-byte header the driver wrote (type,
//! reserved, sector), data buffers, and a status byte the device writes last.
//!
//! Everything here comes from the guest: the header's sector and the buffers' lengths are
//! checked against the medium with checked arithmetic, data moves in bounded chunks (a
//! chain may describe up to 4 GiB), and a malformed chain fails that request only.

use std::io::{Read, Write};

use block::DiskImage;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES,
};
use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_memory::GuestMemoryMmap;

use super::iovec::{self, Direction};
use crate::stats::{BlockOp, BlockStats};

/// Bytes in a virtio-blk sector, whatever the medium's block size.
pub const SECTOR_SIZE: u64 = 512;
/// Largest piece of data moved at once between the image and guest memory.
const CHUNK: usize = 1 << 20;
/// Size of a discard / write-zeroes segment.
const SEGMENT_SIZE: usize = 16;
/// Most segments in one discard or write-zeroes request (the `max_*_seg` the device offers).
pub const MAX_SEGMENTS: u32 = 32;
/// Most sectors one discard or write-zeroes segment may cover (the `max_*_sectors` offered).
pub const MAX_ZERO_SECTORS: u32 = 1 << 21;

/// What a request did, for the used ring and the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// Status written (`None`: the chain had no room for one; nothing was done).
    pub status: Option<u8>,
    /// Bytes written into the driver's buffers, status byte included.
    pub used_len: u32,
}

/// Why a request failed; logged at debug level (a guest can cause them at will).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("descriptor chain: {0}")]
    Chain(String),
    #[error("header shorter than 16 bytes")]
    ShortHeader,
    #[error(
        "{len} bytes at sector {sector} do not fit the medium of {size} bytes (or are not whole sectors)"
    )]
    Range { sector: u64, len: u64, size: u64 },
    #[error("write to a read-only disk")]
    ReadOnly,
    #[error("image: {0}")]
    Image(#[from] block::Error),
    #[error("guest memory: {0}")]
    Memory(#[from] std::io::Error),
    #[error("unsupported request type {0}")]
    Unsupported(u32),
    #[error("bad discard/write-zeroes segment list")]
    Segments,
}

/// The byte range of `len` bytes at `sector`, if it is whole sectors within a medium of
/// `size` bytes.
pub(crate) fn byte_range(sector: u64, len: u64, size: u64) -> Result<u64, RequestError> {
    let err = || RequestError::Range { sector, len, size };
    let offset = sector.checked_mul(SECTOR_SIZE).ok_or_else(err)?;
    let end = offset.checked_add(len).ok_or_else(err)?;
    if end > size || len % SECTOR_SIZE != 0 {
        return Err(err());
    }
    Ok(offset)
}

/// Executes the request in `chain` on `disk`; `id` answers GET_ID. With `writethrough` (a
/// driver that did not negotiate flushes) every write is made durable before it completes.
/// The request is counted in `stats`: by kind and size when it succeeds, as an error when
/// it fails or its chain is malformed.
pub fn execute(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    disk: &mut dyn DiskImage,
    id: &[u8],
    writethrough: bool,
    stats: &BlockStats,
) -> Completion {
    let head = chain.head_index();
    let (mut reader, mut writer) = match (Reader::new(mem, chain.clone()), Writer::new(mem, chain.clone())) {
        (Ok(r), Ok(w)) => (r, w),
        (Err(e), _) | (_, Err(e)) => {
            log::debug!("virtio-blk: request {head}: {}", RequestError::Chain(e.to_string()));
            stats.error();
            return Completion { status: None, used_len: 0 };
        }
    };
    let Some(data_len) = writer.available_bytes().checked_sub(1) else {
        log::debug!("virtio-blk: request {head}: no room for the status byte");
        stats.error();
        return Completion { status: None, used_len: 0 };
    };
    let mut status_writer = match writer.split_at(data_len) {
        Ok(w) => w,
        Err(e) => {
            log::debug!("virtio-blk: request {head}: {e}");
            stats.error();
            return Completion { status: None, used_len: 0 };
        }
    };
    let direct = Direct { mem, chain: &chain };
    let result = run(&mut reader, &mut writer, disk, id, writethrough, direct, stats);
    if result.is_err() {
        stats.error();
    }
    let status = match &result {
        Ok(_) => VIRTIO_BLK_S_OK,
        Err(RequestError::Unsupported(_)) => VIRTIO_BLK_S_UNSUPP,
        Err(_) => VIRTIO_BLK_S_IOERR,
    } as u8;
    let data_written = match result {
        Ok(n) => n,
        Err(e) => {
            log::debug!("virtio-blk: request {head}: {e}");
            writer.bytes_written()
        }
    };
    if let Err(e) = status_writer.write_all(&[status]) {
        log::debug!("virtio-blk: request {head}: status byte: {e}");
        return Completion { status: None, used_len: data_written as u32 };
    }
    Completion { status: Some(status), used_len: (data_written + 1) as u32 }
}

/// What the raw-image fast path needs: the chain's buffers in guest memory.
#[derive(Clone, Copy)]
struct Direct<'a> {
    mem: &'a GuestMemoryMmap,
    chain: &'a DescriptorChain<&'a GuestMemoryMmap>,
}

impl Direct<'_> {
    /// Reads `len` bytes at `offset` of a raw image straight into the chain's writable
    /// buffers; false if this request cannot go that way.
    fn read(&self, disk: &dyn DiskImage, offset: u64, len: usize) -> Result<bool, RequestError> {
        let Some(file) = disk.raw_file() else { return Ok(false) };
        let descs = self.chain.clone().writable();
        Ok(iovec::transfer(file, self.mem, descs, 0, len, offset, Direction::ToGuest)?)
    }

    /// Writes `len` bytes of the chain's readable buffers (after the 16-byte header) at
    /// `offset` of a raw image; false if this request cannot go that way (also for writes to
    /// the image's first bytes, which only `write_at` checks).
    fn write(&self, disk: &dyn DiskImage, offset: u64, len: usize) -> Result<bool, RequestError> {
        let Some(file) = disk.raw_file().filter(|_| !disk.read_only() && offset >= block::RAW_GUARDED_BYTES)
        else {
            return Ok(false);
        };
        let descs = self.chain.clone().readable();
        Ok(iovec::transfer(file, self.mem, descs, 16, len, offset, Direction::FromGuest)?)
    }
}

fn run(
    reader: &mut Reader<'_>,
    writer: &mut Writer<'_>,
    disk: &mut dyn DiskImage,
    id: &[u8],
    writethrough: bool,
    direct: Direct<'_>,
    stats: &BlockStats,
) -> Result<usize, RequestError> {
    let mut header = [0u8; 16];
    reader.read_exact(&mut header).map_err(|_| RequestError::ShortHeader)?;
    let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let sector = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
    match kind {
        VIRTIO_BLK_T_IN => {
            let len = writer.available_bytes();
            let mut offset = byte_range(sector, len as u64, disk.size())?;
            if direct.read(disk, offset, len)? {
                stats.record(BlockOp::Read, len as u64);
                return Ok(len);
            }
            let mut buf = vec![0u8; len.min(CHUNK)];
            let mut left = len;
            while left > 0 {
                let n = left.min(CHUNK);
                disk.read_at(offset, &mut buf[..n])?;
                writer.write_all(&buf[..n])?;
                offset += n as u64;
                left -= n;
            }
            stats.record(BlockOp::Read, len as u64);
            Ok(len)
        }
        VIRTIO_BLK_T_OUT => {
            if disk.read_only() {
                return Err(RequestError::ReadOnly);
            }
            let len = reader.available_bytes();
            let mut offset = byte_range(sector, len as u64, disk.size())?;
            if !direct.write(disk, offset, len)? {
                let mut buf = vec![0u8; len.min(CHUNK)];
                let mut left = len;
                while left > 0 {
                    let n = left.min(CHUNK);
                    reader.read_exact(&mut buf[..n])?;
                    disk.write_at(offset, &buf[..n])?;
                    offset += n as u64;
                    left -= n;
                }
            }
            if writethrough {
                disk.flush()?;
            }
            stats.record(BlockOp::Write, len as u64);
            Ok(0)
        }
        VIRTIO_BLK_T_FLUSH => {
            disk.flush()?;
            stats.record(BlockOp::Flush, 0);
            Ok(0)
        }
        VIRTIO_BLK_T_GET_ID => {
            let n = writer.available_bytes().min(VIRTIO_BLK_ID_BYTES as usize);
            let mut bytes = [0u8; VIRTIO_BLK_ID_BYTES as usize];
            let len = id.len().min(bytes.len());
            bytes[..len].copy_from_slice(&id[..len]);
            writer.write_all(&bytes[..n])?;
            Ok(n)
        }
        VIRTIO_BLK_T_DISCARD | VIRTIO_BLK_T_WRITE_ZEROES => {
            if disk.read_only() {
                return Err(RequestError::ReadOnly);
            }
            zero_segments(reader, disk, kind == VIRTIO_BLK_T_WRITE_ZEROES).map(|()| 0)
        }
        other => Err(RequestError::Unsupported(other)),
    }
}

/// Discard and write-zeroes: a list of (sector u64, sectors u32, flags u32) segments. All
/// segments are checked before any is carried out. Write-zeroes writes zeroes; discard is
/// a hint the specification lets a device ignore, and is ignored (the image formats cannot
/// yet give space back).
fn zero_segments(
    reader: &mut Reader<'_>,
    disk: &mut dyn DiskImage,
    write_zeroes: bool,
) -> Result<(), RequestError> {
    let len = reader.available_bytes();
    if len == 0 || len % SEGMENT_SIZE != 0 || len / SEGMENT_SIZE > MAX_SEGMENTS as usize {
        return Err(RequestError::Segments);
    }
    let mut segments = Vec::with_capacity(len / SEGMENT_SIZE);
    for _ in 0..len / SEGMENT_SIZE {
        let mut seg = [0u8; SEGMENT_SIZE];
        reader.read_exact(&mut seg)?;
        let sector = u64::from_le_bytes(seg[0..8].try_into().unwrap_or_default());
        let sectors = u32::from_le_bytes(seg[8..12].try_into().unwrap_or_default());
        let flags = u32::from_le_bytes(seg[12..16].try_into().unwrap_or_default());
        // Only bit 0 (unmap, for write-zeroes) is defined.
        if sectors > MAX_ZERO_SECTORS || flags & !1 != 0 {
            return Err(RequestError::Segments);
        }
        let bytes = u64::from(sectors) * SECTOR_SIZE;
        segments.push((byte_range(sector, bytes, disk.size())?, bytes));
    }
    if !write_zeroes {
        return Ok(());
    }
    let zeroes = vec![0u8; CHUNK];
    for (mut offset, mut left) in segments {
        while left > 0 {
            let n = left.min(CHUNK as u64);
            disk.write_at(offset, &zeroes[..n as usize])?;
            offset += n;
            left -= n;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
