// SPDX-License-Identifier: Apache-2.0
//! Requests on raw images move data straight between the image file and guest memory with
//! `preadv`/`pwritev` on the descriptors' guest-memory pieces, instead of through a buffer:
//! one copy (the host kernel's) instead of three, which matters most where every byte the
//! VMM itself touches is expensive (nested virtualization, large sequential I/O).
//!
//! Every piece comes from vm-memory's checked translation of the descriptor's address and
//! length, so a descriptor outside guest memory fails the request before any I/O.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use virtio_queue::desc::split::Descriptor;
use vm_memory::{Address, GuestMemory, GuestMemoryMmap, Permissions};

/// Most pieces one system call takes (the kernel's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// Which way the data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the image into guest memory (a guest read).
    ToGuest,
    /// From guest memory into the image (a guest write).
    FromGuest,
}

/// The guest-memory pieces of `len` bytes of `descs`' buffers after the first `skip` bytes;
/// `None` if a buffer is not guest memory, the buffers hold fewer bytes, or there are more
/// pieces than one system call takes. The pointers stay valid while `mem` (or a clone of it)
/// lives: the mapping outlasts any use of them.
pub(crate) fn guest_iovecs(
    mem: &GuestMemoryMmap,
    descs: impl Iterator<Item = Descriptor>,
    mut skip: usize,
    len: usize,
    access: Permissions,
) -> Option<Vec<libc::iovec>> {
    let mut iovs = Vec::new();
    let mut left = len;
    for d in descs {
        if left == 0 {
            break;
        }
        let dlen = d.len() as usize;
        if skip >= dlen {
            skip -= dlen;
            continue;
        }
        let addr = d.addr().checked_add(skip as u64)?;
        let take = (dlen - skip).min(left);
        skip = 0;
        for slice in mem.get_slices(addr, take, access).ok()? {
            let slice = slice.ok()?;
            // The pointer stays valid while `mem` (the mapping) lives, which outlasts the call.
            let ptr = slice.ptr_guard_mut().as_ptr();
            iovs.push(libc::iovec { iov_base: ptr.cast(), iov_len: slice.len() });
        }
        left -= take;
    }
    (left == 0 && iovs.len() <= IOV_MAX).then_some(iovs)
}

/// Moves `len` bytes between `file` at `offset` and the guest buffers `descs` (after `skip`
/// bytes). `Ok(false)` if the buffers cannot be used this way (the caller then copies).
pub fn transfer(
    file: &File,
    mem: &GuestMemoryMmap,
    descs: impl Iterator<Item = Descriptor>,
    skip: usize,
    len: usize,
    offset: u64,
    direction: Direction,
) -> io::Result<bool> {
    let access = match direction {
        Direction::ToGuest => Permissions::Write,
        Direction::FromGuest => Permissions::Read,
    };
    let Some(mut iovs) = guest_iovecs(mem, descs, skip, len, access) else { return Ok(false) };
    transfer_iovecs(file, &mut iovs, len, offset, direction)?;
    Ok(true)
}

/// Moves `len` bytes (the sum of the pieces' lengths) between `file` at `offset` and the
/// guest-memory pieces `iovs` from [`guest_iovecs`], resuming after short transfers; the
/// pieces are consumed on the way. An end of file before `len` bytes is an error.
pub(crate) fn transfer_iovecs(
    file: &File,
    iovs: &mut [libc::iovec],
    len: usize,
    offset: u64,
    direction: Direction,
) -> io::Result<()> {
    let mut done = 0usize;
    let mut first = 0usize;
    while done < len {
        let at = offset
            .checked_add(done as u64)
            .and_then(|o| libc::off_t::try_from(o).ok())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        let rest = iovs.get(first..).unwrap_or_default();
        if rest.is_empty() {
            // The pieces hold fewer than `len` bytes: a caller's mistake, never a guest's.
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: every iovec points into guest memory that vm-memory checked and that stays
        // mapped for the call; the kernel writes (or reads) at most `iov_len` bytes of each.
        let n = unsafe {
            match direction {
                Direction::ToGuest => libc::preadv(file.as_raw_fd(), rest.as_ptr(), rest.len() as i32, at),
                Direction::FromGuest => libc::pwritev(file.as_raw_fd(), rest.as_ptr(), rest.len() as i32, at),
            }
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        done += n as usize;
        first = advance(iovs, first, n as usize);
    }
    Ok(())
}

/// After a transfer of `n` bytes that started at piece `first` of `iovs`: skips the pieces it
/// finished and shortens the one it stopped in; returns the first piece left.
pub(crate) fn advance(iovs: &mut [libc::iovec], mut first: usize, mut n: usize) -> usize {
    while n > 0 && first < iovs.len() {
        let iov = &mut iovs[first];
        if n >= iov.iov_len {
            n -= iov.iov_len;
            first += 1;
        } else {
            // SAFETY: `n` is less than this piece's length, so the pointer stays inside it.
            iov.iov_base = unsafe { iov.iov_base.cast::<u8>().add(n) }.cast();
            iov.iov_len -= n;
            n = 0;
        }
    }
    first
}
