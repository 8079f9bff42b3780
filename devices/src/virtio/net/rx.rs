// SPDX-License-Identifier: Apache-2.0
//! Reception (virtio 1.2, 5.1.6.3 and 5.1.6.4): a frame read from the tap, its 12-byte
//! `virtio_net_hdr_v1` first, goes into the chains of a receive queue.
//!
//! - Without `VIRTIO_NET_F_MRG_RXBUF`, one chain holds the whole frame; a frame that does not
//!   fit the next chain is dropped and the chain returned empty.
//! - With it, the frame spreads over as many chains as it needs and `num_buffers` in the
//!   first header says how many. If the chains available do not add up, nothing is consumed
//!   and the caller keeps the frame until the driver adds buffers (unless the driver's whole
//!   ring cannot hold it: then the frame is dropped).
//!
//! A chain that cannot take a header (no writable buffer, less than 12 bytes, memory outside
//! the guest) is returned empty, ahead of the frame's chains, so the driver sees it as a bad
//! packet and recycles it.

use std::io::Write;
use std::num::Wrapping;

use virtio_bindings::virtio_net::{
    VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE,
};
use virtio_queue::{Queue, QueueOwnedT, QueueT, Writer};
use vm_memory::GuestMemoryMmap;

use super::VNET_HDR_LEN;

/// Largest frame read from the tap: the size the specification asks drivers to give receive
/// buffers for segmentation offloads (header included).
pub const RX_BUF_LEN: usize = 65562;
/// Offset of `num_buffers` in the header.
const NUM_BUFFERS: usize = 10;
/// Offset of `gso_type` in the header.
const GSO_TYPE: usize = 1;

/// What happened to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxOutcome {
    /// The frame went into this many chains.
    Delivered(u16),
    /// There is not enough room yet: no chain of the frame was consumed; try again once the
    /// driver adds buffers.
    NoBuffers,
    /// The frame was dropped (it can never fit, or the chain given for it is too small).
    Dropped,
}

/// The result of [`deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// What happened to the frame.
    pub outcome: RxOutcome,
    /// Entries added to the used ring (the frame's chains and the malformed ones).
    pub used: usize,
}

/// Makes the header of `frame` one the driver may see given what it negotiated: no checksum
/// flags without `GUEST_CSUM`, no segmentation without a `GUEST_TSO`/`UFO` feature. False
/// if the frame must be dropped (too short, or segmented for a driver that cannot take it).
pub fn sanitize_header(frame: &mut [u8], guest_csum: bool, guest_gso: bool) -> bool {
    if frame.len() < VNET_HDR_LEN {
        return false;
    }
    if !guest_csum {
        if frame[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM as u8 != 0 {
            return false;
        }
        frame[0] = 0;
    } else {
        frame[0] &= (VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID) as u8;
    }
    guest_gso || frame[GSO_TYPE] == VIRTIO_NET_HDR_GSO_NONE as u8
}

/// Puts `frame` (header first, at least [`VNET_HDR_LEN`] bytes) into the receive `queue`,
/// over several chains when `mergeable`. Errors are the queue's (a corrupt available ring):
/// the queue is then unusable until a reset.
pub fn deliver(
    mem: &GuestMemoryMmap,
    queue: &mut Queue,
    frame: &mut [u8],
    mergeable: bool,
) -> Result<Delivery, virtio_queue::Error> {
    let len = frame.len();
    if len < VNET_HDR_LEN {
        return Ok(Delivery { outcome: RxOutcome::Dropped, used: 0 });
    }
    let start = Wrapping(queue.next_avail());
    let size = usize::from(queue.size());
    // Malformed chains before the frame's first chain (returned whatever happens), the frame's
    // chains, and malformed chains among those (returned only with the frame).
    let mut early_bad = Vec::new();
    let mut parts: Vec<(u16, Writer<'_>)> = Vec::new();
    let mut late_bad = Vec::new();
    let mut first_part = start;
    let mut popped = 0usize;
    let mut room = 0usize;
    {
        let mut chains = queue.iter(mem)?;
        while room < len {
            let Some(chain) = chains.next() else { break };
            let head = chain.head_index();
            popped += 1;
            match Writer::new(mem, chain) {
                Ok(w) if w.available_bytes() >= VNET_HDR_LEN => {
                    if parts.is_empty() {
                        first_part = start + Wrapping((popped - 1) as u16);
                    }
                    room = room.saturating_add(w.available_bytes());
                    parts.push((head, w));
                    if !mergeable {
                        break;
                    }
                }
                _ if parts.is_empty() => early_bad.push(head),
                _ => late_bad.push(head),
            }
        }
    }
    let mut used = 0;
    for head in early_bad {
        queue.add_used(mem, head, 0)?;
        used += 1;
    }
    if room < len {
        if !mergeable && !parts.is_empty() {
            // The one chain the frame may use is too small.
            for (head, _) in parts {
                queue.add_used(mem, head, 0)?;
                used += 1;
            }
            return Ok(Delivery { outcome: RxOutcome::Dropped, used });
        }
        // Give back the frame's chains; drop the frame only if the driver's whole ring
        // could not hold it.
        queue.set_next_avail(first_part.0);
        let outcome = if popped >= size { RxOutcome::Dropped } else { RxOutcome::NoBuffers };
        return Ok(Delivery { outcome, used });
    }
    let count = parts.len() as u16;
    frame[NUM_BUFFERS..VNET_HDR_LEN].copy_from_slice(&count.to_le_bytes());
    let mut offset = 0;
    let mut lens = Vec::with_capacity(parts.len());
    for (head, writer) in &mut parts {
        let n = (len - offset).min(writer.available_bytes());
        if let Err(e) = writer.write_all(&frame[offset..offset + n]) {
            log::debug!("virtio-net: receive buffer {head}: {e}");
        }
        lens.push((*head, writer.bytes_written() as u32));
        offset += n;
    }
    for head in late_bad {
        queue.add_used(mem, head, 0)?;
        used += 1;
    }
    for (head, n) in lens {
        queue.add_used(mem, head, n)?;
        used += 1;
    }
    Ok(Delivery { outcome: RxOutcome::Delivered(count), used })
}

#[cfg(test)]
mod tests;
