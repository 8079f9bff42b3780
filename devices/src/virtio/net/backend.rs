// SPDX-License-Identifier: Apache-2.0
//! The host end of one virtio-net queue pair: a descriptor that carries frames with a
//! 12-byte virtio-net header in front ([`VnetTap`]). A vnet-header [`Tap`] is the real one;
//! tests put a datagram socket pair behind the same trait to inject and capture frames.

use std::io;
use std::os::fd::RawFd;

use vm_memory::VolatileSlice;

use crate::net::tap::Tap;
use crate::net::NetBackend;

/// Most segments one transmitted frame may have (the kernel's `UIO_MAXIOV`).
pub const MAX_IOVECS: usize = 1024;

/// One queue of a tap opened with a virtio-net header (`IFF_VNET_HDR`, header size 12).
pub trait VnetTap: Send {
    /// Reads one frame, header first, without blocking: `Ok(None)` when none is waiting. A
    /// frame longer than `buf` is truncated.
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Writes one frame, header first, gathered from `bufs` (at most [`MAX_IOVECS`]).
    fn write_frame(&mut self, bufs: &[VolatileSlice<'_>]) -> io::Result<usize>;
    /// A descriptor that polls readable while [`VnetTap::read_frame`] has a frame.
    fn as_raw_fd(&self) -> RawFd;
    /// Sets the offloads frames read may use (`TUN_F_*` flags).
    fn set_offload(&mut self, flags: u32) -> io::Result<()>;
    /// Whether UDP fragmentation offload can be offered (the host kernel takes it).
    fn supports_ufo(&self) -> bool;
    /// Attaches or detaches this queue (frames are steered to attached queues only).
    fn set_queue_enabled(&mut self, enabled: bool) -> io::Result<()>;
}

/// `writev(2)` of guest memory slices on `fd`.
pub fn writev_slices(fd: RawFd, bufs: &[VolatileSlice<'_>]) -> io::Result<usize> {
    if bufs.len() > MAX_IOVECS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many segments"));
    }
    // The guards keep the slices' memory mapped until the call returns.
    let guards: Vec<_> = bufs.iter().map(|b| b.ptr_guard()).collect();
    let iovecs: Vec<libc::iovec> = guards
        .iter()
        .zip(bufs)
        .map(|(g, b)| libc::iovec { iov_base: g.as_ptr() as *mut libc::c_void, iov_len: b.len() })
        .collect();
    // SAFETY: every iovec describes a live guest memory slice (its guard is held), which the
    // kernel only reads; the count is bounded by MAX_IOVECS.
    let n = unsafe { libc::writev(fd, iovecs.as_ptr(), iovecs.len() as libc::c_int) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

impl VnetTap for Tap {
    fn read_frame(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.recv(buf)
    }

    fn write_frame(&mut self, bufs: &[VolatileSlice<'_>]) -> io::Result<usize> {
        writev_slices(NetBackend::as_raw_fd(self), bufs)
    }

    fn as_raw_fd(&self) -> RawFd {
        NetBackend::as_raw_fd(self)
    }

    fn set_offload(&mut self, flags: u32) -> io::Result<()> {
        Tap::set_offload(self, flags)
    }

    fn supports_ufo(&self) -> bool {
        Tap::supports_ufo(self)
    }

    fn set_queue_enabled(&mut self, enabled: bool) -> io::Result<()> {
        Tap::set_queue_enabled(self, enabled)
    }
}
