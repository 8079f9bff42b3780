// SPDX-License-Identifier: Apache-2.0
//! Transmission (virtio 1.2, 5.1.6.2): each chain of a transmit queue holds a 12-byte
//! `virtio_net_hdr_v1` and an Ethernet frame, in as many device-readable descriptors as the
//! driver likes. The tap expects the same header, so the chain goes to it as is, in one
//! `writev` straight from guest memory.
//!
//! Everything here comes from the guest: the chain's total length is bounded while it is
//! walked (so a chain describing gigabytes is refused before any of it is mapped), its
//! buffers must lie in guest memory, and a chain that breaks a rule is dropped alone. The
//! tap's kernel code checks the header itself (a bad GSO request fails the write).

use std::io;

use virtio_queue::DescriptorChain;
use vm_memory::{GuestMemory, GuestMemoryMmap, Permissions, VolatileSlice};

use super::backend::{VnetTap, MAX_IOVECS};
use super::VNET_HDR_LEN;

/// Largest chain transmitted: the header and a 64 KiB frame (a TSO/UFO super-frame).
pub const MAX_TX_LEN: usize = VNET_HDR_LEN + 65536;
/// Shortest chain transmitted: the header and an Ethernet header.
pub const MIN_TX_LEN: usize = VNET_HDR_LEN + 14;

/// Why a chain was not transmitted; logged at debug level (a guest can cause them at will).
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// A buffer lies outside guest memory.
    #[error("a buffer lies outside guest memory")]
    Memory,
    /// The tap refused the frame (a malformed header, the interface gone).
    #[error("tap: {0}")]
    Tap(#[source] io::Error),
    /// More than [`MAX_TX_LEN`] bytes.
    #[error("chain longer than {MAX_TX_LEN} bytes")]
    TooLong,
    /// More than [`MAX_IOVECS`] memory segments.
    #[error("chain of more than {MAX_IOVECS} segments")]
    TooManySegments,
    /// Less than [`MIN_TX_LEN`] bytes.
    #[error("chain of {0} bytes, shorter than the headers")]
    TooShort(usize),
}

/// The guest memory slices holding the device-readable part of `chain`, header first;
/// zero-length descriptors are skipped and the writable ones ignored.
pub fn gather<'a>(
    mem: &'a GuestMemoryMmap,
    chain: DescriptorChain<&'a GuestMemoryMmap>,
) -> Result<Vec<VolatileSlice<'a>>, TxError> {
    let mut total = 0usize;
    let mut slices = Vec::new();
    for desc in chain.readable() {
        let len = desc.len() as usize;
        total = total.checked_add(len).filter(|t| *t <= MAX_TX_LEN).ok_or(TxError::TooLong)?;
        if len == 0 {
            continue;
        }
        let pieces = mem.get_slices(desc.addr(), len, Permissions::Read).map_err(|_| TxError::Memory)?;
        for piece in pieces {
            if slices.len() == MAX_IOVECS {
                return Err(TxError::TooManySegments);
            }
            slices.push(piece.map_err(|_| TxError::Memory)?);
        }
    }
    if total < MIN_TX_LEN {
        return Err(TxError::TooShort(total));
    }
    Ok(slices)
}

/// Sends the frame in `chain` to `tap`; returns the bytes written (header included). The
/// chain is completed with a used length of 0 whatever the result.
pub fn transmit(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    tap: &mut dyn VnetTap,
) -> Result<usize, TxError> {
    let slices = gather(mem, chain)?;
    tap.write_frame(&slices).map_err(TxError::Tap)
}

#[cfg(test)]
mod tests;
