// SPDX-License-Identifier: Apache-2.0
//! Disk images as emulated storage controllers see them: a byte-addressed, fixed-size
//! medium that can be read, written (unless read-only) and flushed.
//!
//! Controllers (IDE, virtio-blk) work in sectors; images work in bytes so that one trait
//! serves 512-byte ATA disks and 2048-byte CD media alike.

use std::io;

/// Errors from disk images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request reaches past the end of the medium.
    #[error("access at {offset:#x}+{len:#x} is beyond the end of the {size:#x}-byte image")]
    OutOfRange {
        /// First byte.
        offset: u64,
        /// Length.
        len: u64,
        /// Size of the medium.
        size: u64,
    },
    /// A write to a read-only image.
    #[error("the image is read-only")]
    ReadOnly,
    /// The host failed the request.
    #[error("image I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// A disk image.
pub trait DiskImage: Send {
    /// Size of the medium in bytes.
    fn size(&self) -> u64;
    /// True if writes are refused.
    fn read_only(&self) -> bool;
    /// Fills `buf` from byte `offset`; the whole range must lie within the medium.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error>;
    /// Writes `buf` at byte `offset`; the whole range must lie within the medium.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Error>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), Error>;
}

/// Checks that `[offset, offset + len)` lies within a medium of `size` bytes.
pub fn check_range(offset: u64, len: usize, size: u64) -> Result<(), Error> {
    let len64 = len as u64;
    match offset.checked_add(len64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(Error::OutOfRange { offset, len: len64, size }),
    }
}

/// An image held in memory: for tests and fuzzing of the controllers.
#[derive(Debug, Clone)]
pub struct MemDisk {
    data: Vec<u8>,
    read_only: bool,
    /// Number of flushes seen.
    pub flushes: u64,
}

impl MemDisk {
    /// An image with the given contents.
    pub fn new(data: Vec<u8>, read_only: bool) -> Self {
        MemDisk { data, read_only, flushes: 0 }
    }

    /// The current contents.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

impl DiskImage for MemDisk {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        check_range(offset, buf.len(), self.size())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.data[start..start + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        check_range(offset, buf.len(), self.size())?;
        let start = offset as usize;
        self.data[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Error> {
        self.flushes += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_disk_checks_ranges_and_read_only() {
        let mut d = MemDisk::new(vec![0; 1024], false);
        d.write_at(512, &[1, 2, 3]).unwrap();
        let mut b = [0u8; 3];
        d.read_at(512, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3]);
        assert!(matches!(d.read_at(1023, &mut b), Err(Error::OutOfRange { .. })));
        assert!(matches!(d.read_at(u64::MAX, &mut b), Err(Error::OutOfRange { .. })));
        let mut ro = MemDisk::new(vec![0; 16], true);
        assert!(matches!(ro.write_at(0, &[1]), Err(Error::ReadOnly)));
        ro.flush().unwrap();
        assert_eq!(ro.flushes, 1);
    }
}
