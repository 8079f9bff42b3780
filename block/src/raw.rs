// SPDX-License-Identifier: Apache-2.0
//! Raw images: the medium byte for byte in a host file or block device.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::lock::lock_image;
use crate::{check_range, host_files, DiskImage, Error, QCOW2_MAGIC};

/// A raw image file (or host block device).
///
/// Opened `O_RDONLY` when read-only, `O_RDWR` otherwise, and locked against other processes
/// (see [`Error::Locked`]): exclusively when writable, shared when read-only.
///
/// The size is the file's size as it was at open, not rounded: a file whose size is not a
/// multiple of 512 is fine for CD media, which the ATAPI layer reads in 2048-byte blocks up to
/// the last whole block; a disk controller ignores the trailing partial sector.
#[derive(Debug)]
pub struct RawFile {
    file: File,
    path: PathBuf,
    size: u64,
    read_only: bool,
    refuse_magic: bool,
}

impl RawFile {
    /// Opens (through [`host_files`]) and locks the image at `path`.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, Error> {
        let open_err = |source| Error::Open { path: path.to_path_buf(), source };
        let access = host_files::Access::read_write(!read_only);
        let mut file = host_files::open(path, access).map_err(open_err)?;
        lock_image(&file, path, !read_only)?;
        // Seeking to the end sizes block devices as well, whose metadata length is 0.
        let size = file.seek(SeekFrom::End(0)).map_err(open_err)?;
        Ok(RawFile { file, path: path.to_path_buf(), size, read_only, refuse_magic: false })
    }

    /// The path the image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Refuses writes that would put the qcow2 header magic at byte 0, as QEMU does for raw
    /// images whose format it probed: a probe would then take guest data for qcow2 metadata
    /// (letting the guest name any host file as its backing file), and an open as raw would
    /// fail with [`Error::WrongFormat`]. [`crate::open_image`] sets this for every raw image.
    pub(crate) fn set_refuse_qcow2_magic(&mut self, refuse: bool) {
        self.refuse_magic = refuse;
    }

    /// True if a write of `buf` at `offset` would make the first bytes the qcow2 magic.
    fn writes_magic(&self, offset: u64, buf: &[u8]) -> Result<bool, Error> {
        let magic_len = QCOW2_MAGIC.len() as u64;
        if offset >= magic_len || self.size < magic_len {
            return Ok(false);
        }
        let mut head = [0u8; QCOW2_MAGIC.len()];
        self.file.read_exact_at(&mut head, 0)?;
        let start = offset as usize;
        let n = buf.len().min(head.len() - start);
        head[start..start + n].copy_from_slice(&buf[..n]);
        Ok(head == QCOW2_MAGIC)
    }
}

impl DiskImage for RawFile {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        check_range(offset, buf.len(), self.size)?;
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        check_range(offset, buf.len(), self.size)?;
        if self.refuse_magic && self.writes_magic(offset, buf)? {
            log::warn!(
                "{}: refused a write of the qcow2 magic to sector 0 of a raw image",
                self.path.display()
            );
            return Err(Error::RawQcow2Magic);
        }
        self.file.write_all_at(buf, offset)?;
        Ok(())
    }
    fn raw_file(&self) -> Option<&File> {
        Some(&self.file)
    }
    fn flush(&mut self) -> Result<(), Error> {
        if !self.read_only {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{pattern, TempDir};

    /// The access mode (`O_RDONLY`, `O_RDWR`) the file was opened with.
    fn access_mode(raw: &RawFile) -> u32 {
        use std::os::unix::io::AsRawFd;
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", raw.file.as_raw_fd())).unwrap();
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim();
        u32::from_str_radix(flags, 8).unwrap() & libc::O_ACCMODE as u32
    }

    #[test]
    fn read_write_round_trip_reaches_the_file() {
        let dir = TempDir::new("raw-rw");
        let path = dir.join("disk.raw");
        std::fs::write(&path, pattern(8192, 1)).unwrap();
        let mut raw = RawFile::open(&path, false).unwrap();
        assert_eq!(access_mode(&raw), libc::O_RDWR as u32);
        assert_eq!(raw.size(), 8192);
        assert!(!raw.read_only());
        let mut buf = vec![0u8; 1000];
        raw.read_at(100, &mut buf).unwrap();
        assert_eq!(buf, pattern(8192, 1)[100..1100]);
        raw.write_at(4000, &[0xaa; 300]).unwrap();
        raw.flush().unwrap();
        raw.read_at(3999, &mut buf[..302]).unwrap();
        assert_eq!(buf[0], pattern(8192, 1)[3999]);
        assert_eq!(&buf[1..301], &[0xaa; 300][..]);
        drop(raw);
        let mut want = pattern(8192, 1);
        want[4000..4300].fill(0xaa);
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[test]
    fn read_only_opens_o_rdonly_and_refuses_writes() {
        let dir = TempDir::new("raw-ro");
        let path = dir.join("disk.raw");
        std::fs::write(&path, pattern(4096, 2)).unwrap();
        let mut raw = RawFile::open(&path, true).unwrap();
        assert_eq!(access_mode(&raw), libc::O_RDONLY as u32);
        assert!(raw.read_only());
        assert!(matches!(raw.write_at(0, &[1]), Err(Error::ReadOnly)));
        raw.flush().unwrap();
        let mut buf = [0u8; 16];
        raw.read_at(4080, &mut buf).unwrap();
        assert_eq!(buf[..], pattern(4096, 2)[4080..]);
        assert_eq!(std::fs::read(&path).unwrap(), pattern(4096, 2));
    }

    #[test]
    fn odd_sized_file_keeps_its_size() {
        let dir = TempDir::new("raw-odd");
        let path = dir.join("cd.iso");
        std::fs::write(&path, pattern(2049, 3)).unwrap();
        let mut raw = RawFile::open(&path, true).unwrap();
        assert_eq!(raw.size(), 2049);
        let mut last = [0u8; 1];
        raw.read_at(2048, &mut last).unwrap();
        assert_eq!(last[0], pattern(2049, 3)[2048]);
    }

    #[test]
    fn out_of_range_requests_fail_without_touching_the_file() {
        let dir = TempDir::new("raw-range");
        let path = dir.join("disk.raw");
        std::fs::write(&path, vec![0u8; 1024]).unwrap();
        let mut raw = RawFile::open(&path, false).unwrap();
        let mut buf = [0u8; 2];
        assert!(matches!(
            raw.read_at(1023, &mut buf),
            Err(Error::OutOfRange { offset: 1023, len: 2, size: 1024 })
        ));
        assert!(matches!(raw.read_at(u64::MAX, &mut buf), Err(Error::OutOfRange { .. })));
        assert!(matches!(raw.write_at(1023, &[1, 2]), Err(Error::OutOfRange { .. })));
        assert!(matches!(raw.write_at(u64::MAX - 1, &[1, 2]), Err(Error::OutOfRange { .. })));
        raw.read_at(1024, &mut []).unwrap();
        drop(raw);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1024);
        assert!(std::fs::read(&path).unwrap().iter().all(|&b| b == 0));
    }

    #[test]
    fn locks_exclude_writers_and_share_readers() {
        let dir = TempDir::new("raw-lock");
        let path = dir.join("disk.raw");
        std::fs::write(&path, vec![0u8; 512]).unwrap();
        let rw = RawFile::open(&path, false).unwrap();
        let err = RawFile::open(&path, false).unwrap_err();
        assert!(matches!(&err, Error::Locked { path: p, writable: true } if *p == path), "{err:?}");
        assert!(err.to_string().contains(path.to_str().unwrap()), "{err}");
        assert!(matches!(RawFile::open(&path, true), Err(Error::Locked { writable: false, .. })));
        drop(rw);
        let ro1 = RawFile::open(&path, true).unwrap();
        let ro2 = RawFile::open(&path, true).unwrap();
        assert!(matches!(RawFile::open(&path, false), Err(Error::Locked { writable: true, .. })));
        drop((ro1, ro2));
        RawFile::open(&path, false).unwrap();
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = TempDir::new("raw-missing");
        let path = dir.join("nope.raw");
        let err = RawFile::open(&path, true).unwrap_err();
        assert!(matches!(&err, Error::Open { path: p, .. } if *p == path));
        assert!(err.to_string().contains("nope.raw"), "{err}");
    }

    #[test]
    fn qcow2_magic_at_byte_0_is_refused_when_asked() {
        let dir = TempDir::new("raw-magic");
        let path = dir.join("disk.raw");
        std::fs::write(&path, vec![0u8; 1024]).unwrap();
        let mut raw = RawFile::open(&path, false).unwrap();
        raw.set_refuse_qcow2_magic(true);
        assert!(matches!(raw.write_at(0, b"QFI\xfb rest"), Err(Error::RawQcow2Magic)));
        // Piecewise: the last piece completing the magic is the one refused.
        raw.write_at(0, b"QF").unwrap();
        assert!(matches!(raw.write_at(2, b"I\xfb"), Err(Error::RawQcow2Magic)));
        raw.write_at(2, b"I\xfa").unwrap();
        raw.write_at(4, b"\xfb").unwrap();
        drop(raw);
        assert_eq!(&std::fs::read(&path).unwrap()[..5], b"QFI\xfa\xfb");
        let mut plain = RawFile::open(&path, false).unwrap();
        plain.write_at(0, &QCOW2_MAGIC).unwrap();
    }
}
