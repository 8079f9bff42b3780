// SPDX-License-Identifier: Apache-2.0
//! Advisory image locking, so that two processes never write one image (or one writes an image
//! another is reading).
//!
//! A writer takes `flock(LOCK_EX)`, a reader `flock(LOCK_SH)`, both non-blocking: any number of
//! readers may share an image (a qcow2 template under several overlays), a writer excludes
//! everyone else. The lock belongs to the open file description and goes away when the file is
//! closed. Like QEMU's image locking it is advisory and only stops cooperating processes.
//!
//! QEMU itself locks byte ranges with `F_OFD_SETLK`, which Linux keeps apart from `flock`, so
//! these locks do not see a running QEMU (nor does QEMU see them).

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::Error;

/// Takes the image lock on `file` (opened from `path`): exclusive for a writer, shared for a
/// reader. Fails with [`Error::Locked`] if another open file holds a conflicting lock.
pub(crate) fn lock_image(file: &File, path: &Path, writable: bool) -> Result<(), Error> {
    try_lock(file, writable).map_err(|source| {
        if source.kind() == io::ErrorKind::WouldBlock {
            Error::Locked { path: path.to_path_buf(), writable }
        } else {
            Error::Open { path: path.to_path_buf(), source }
        }
    })
}

/// `flock(LOCK_EX | LOCK_NB)` or `flock(LOCK_SH | LOCK_NB)`, retried on EINTR.
pub(crate) fn try_lock(file: &File, exclusive: bool) -> io::Result<()> {
    let op = if exclusive { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
    loop {
        // SAFETY: flock only reads its two integer arguments; the descriptor is owned by `file`,
        // which outlives the call.
        let ret = unsafe { libc::flock(file.as_raw_fd(), op) };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
