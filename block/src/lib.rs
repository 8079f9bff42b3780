// SPDX-License-Identifier: Apache-2.0
//! Disk images as emulated storage controllers see them: a byte-addressed, fixed-size
//! medium that can be read, written (unless read-only) and flushed.
//!
//! Controllers (IDE, virtio-blk) work in sectors; images work in bytes so that one trait
//! serves 512-byte ATA disks and 2048-byte CD media alike.
//!
//! Backends: [`MemDisk`] (tests), [`RawFile`] and [`Qcow2Image`]; [`open_image`] picks one by
//! [`ImageFormat`]. [`create_raw`], [`create_qcow2`] and [`resize`] manage image files.
//!
//! Existing images (and every file of a qcow2 backing chain) are opened through
//! [`host_files`], so a file the process was handed as a descriptor is used instead of its
//! path. [`qcow2_backing`] reads the backing file a qcow2 header names from an open file,
//! opening nothing else, for callers that vet a chain before it is opened.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub mod host_files;
mod lock;
mod qcow2;
mod qcow2_header;
mod raw;
#[cfg(test)]
mod test_util;

pub use qcow2::Qcow2Image;
pub use qcow2_header::{
    detect_format_of, qcow2_backing, HeaderError, Qcow2Backing, EXT_BACKING_FORMAT, EXT_DATA_FILE,
    MAX_BACKING_NAME,
};
pub use raw::RawFile;

/// The first four bytes of every qcow2 image.
pub const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";

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
    /// An image file (or a file its header names) could not be opened.
    #[error("cannot open image {path}")]
    Open {
        /// The image.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An image file could not be created.
    #[error("cannot create image {path}")]
    Create {
        /// The image.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// An image file could not be resized.
    #[error("cannot resize image {path}")]
    Resize {
        /// The image.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Another process (or another open file in this one) holds a conflicting image lock.
    #[error("image {path} is in use: another process holds its lock (wanted {})",
        if *writable { "write access" } else { "shared read access" })]
    Locked {
        /// The image.
        path: PathBuf,
        /// True if write access was wanted.
        writable: bool,
    },
    /// The image is not in the format asked for.
    #[error("image {path} was given as {requested} but is {detected}")]
    WrongFormat {
        /// The image.
        path: PathBuf,
        /// The format asked for.
        requested: ImageFormat,
        /// The format found in the file.
        detected: ImageFormat,
    },
    /// An image format name that is not known.
    #[error("unknown image format '{0}' (valid: raw, qcow2)")]
    UnknownFormat(String),
    /// A resize that would shrink the image; only growing is supported.
    #[error("image {path} is {size} bytes; shrinking it to {new_size} is not supported")]
    Shrink {
        /// The image.
        path: PathBuf,
        /// Its current size.
        size: u64,
        /// The size asked for.
        new_size: u64,
    },
    /// A write that would put the qcow2 magic at the start of a raw image (see
    /// [`open_image`]).
    #[error("refusing to write the qcow2 magic to the first sector of a raw image")]
    RawQcow2Magic,
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Image file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// The medium byte for byte.
    Raw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
}

impl ImageFormat {
    /// The format's name as QEMU spells it.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ImageFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "raw" => Ok(ImageFormat::Raw),
            "qcow2" => Ok(ImageFormat::Qcow2),
            _ => Err(Error::UnknownFormat(s.to_string())),
        }
    }
}

/// Probes the format of the image at `path`: qcow2 if it starts with [`QCOW2_MAGIC`], raw
/// otherwise (including files shorter than the magic).
///
/// A guest could write the qcow2 magic to the first sector of its raw image and so make it
/// probe as qcow2, naming any host file as its backing file; [`open_image`] refuses such writes
/// ([`Error::RawQcow2Magic`]) to every raw image it opens, like QEMU does for probed images.
///
/// The file is opened through [`host_files`] and read with `pread`, so a handed-over
/// descriptor's offset does not matter.
pub fn detect_format(path: &Path) -> Result<ImageFormat> {
    let open_err = |source| Error::Open { path: path.to_path_buf(), source };
    let file = host_files::open(path, host_files::Access::Read).map_err(open_err)?;
    let mut head = [0u8; QCOW2_MAGIC.len()];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(open_err(e)),
        }
    }
    Ok(if head == QCOW2_MAGIC { ImageFormat::Qcow2 } else { ImageFormat::Raw })
}

/// Opens the image at `path` in `format`, probed with [`detect_format`] if `None`; an image
/// that is not in the given format is an [`Error::WrongFormat`]. The image (and a qcow2
/// image's backing chain) is locked, see [`Error::Locked`].
///
/// A raw image opened here refuses writes that would put the qcow2 magic at byte 0
/// ([`Error::RawQcow2Magic`]): otherwise the guest could make its disk probe as qcow2, or fail
/// to open as raw the next time.
pub fn open_image(path: &Path, format: Option<ImageFormat>, read_only: bool) -> Result<Box<dyn DiskImage>> {
    let detected = detect_format(path)?;
    if let Some(requested) = format {
        if requested != detected {
            return Err(Error::WrongFormat { path: path.to_path_buf(), requested, detected });
        }
    }
    Ok(match detected {
        ImageFormat::Raw => {
            let mut raw = RawFile::open(path, read_only)?;
            raw.set_refuse_qcow2_magic(true);
            Box::new(raw)
        }
        ImageFormat::Qcow2 => Box::new(Qcow2Image::open(path, read_only)?),
    })
}

/// Creates a sparse raw image of `size` bytes at `path`, which must not exist yet.
pub fn create_raw(path: &Path, size: u64) -> Result<()> {
    let create_err = |source| Error::Create { path: path.to_path_buf(), source };
    let file = OpenOptions::new().write(true).create_new(true).open(path).map_err(create_err)?;
    let result = file.set_len(size).and_then(|()| file.sync_all()).map_err(create_err);
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// Creates a qcow2 image of `size` bytes at `path`, which must not exist yet (64 KiB clusters,
/// 16-bit refcounts, as QEMU makes them).
///
/// With `backing`, the image is an overlay: unwritten clusters read from the backing image,
/// which must exist and be in the given format. Its path is stored in the header as given; a
/// relative path is relative to the directory of `path` (as in QEMU). `size` may differ from
/// the backing image's size.
pub fn create_qcow2(path: &Path, size: u64, backing: Option<(&Path, ImageFormat)>) -> Result<()> {
    let backing = match backing {
        None => None,
        Some((file, format)) => {
            let resolved = match path.parent() {
                Some(dir) if file.is_relative() => dir.join(file),
                _ => file.to_path_buf(),
            };
            let detected = detect_format(&resolved)?;
            if detected != format {
                return Err(Error::WrongFormat { path: resolved, requested: format, detected });
            }
            let Some(name) = file.to_str() else {
                let source = io::Error::new(io::ErrorKind::InvalidInput, "backing file name is not UTF-8");
                return Err(Error::Create { path: path.to_path_buf(), source });
            };
            Some((name, format))
        }
    };
    qcow2::create(path, size, backing)
}

/// Grows the image at `path` (raw or qcow2, probed) to `new_size` bytes; the new range reads
/// as zeroes. Shrinking is refused ([`Error::Shrink`]): it would drop guest data. Takes the
/// image lock, so an image in use by a VM cannot be resized.
pub fn resize(path: &Path, new_size: u64) -> Result<()> {
    let resize_err = |source| Error::Resize { path: path.to_path_buf(), source };
    let shrink = |size| Error::Shrink { path: path.to_path_buf(), size, new_size };
    match detect_format(path)? {
        ImageFormat::Raw => {
            let raw = RawFile::open(path, false)?;
            let size = raw.size();
            if new_size < size {
                return Err(shrink(size));
            }
            raw.file().set_len(new_size).and_then(|()| raw.file().sync_all()).map_err(resize_err)
        }
        ImageFormat::Qcow2 => {
            let mut image = Qcow2Image::open(path, false)?;
            let size = image.size();
            if new_size < size {
                return Err(shrink(size));
            }
            image.grow(new_size).map_err(|e| match e {
                Error::Io(source) => resize_err(source),
                e => e,
            })
        }
    }
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
    /// The file behind an image that maps medium offsets 1:1 to file offsets (raw), for I/O
    /// straight between the file and guest memory (`preadv`/`pwritev`) instead of through a
    /// buffer; `None` for formats with metadata (qcow2). Writes through it skip the checks of
    /// [`DiskImage::write_at`]: callers send writes that touch the first
    /// [`RAW_GUARDED_BYTES`] bytes, or any write to a read-only image, through `write_at`.
    fn raw_file(&self) -> Option<&std::fs::File> {
        None
    }
    /// The image as a [`SharedImage`], for formats with metadata whose reads and writes may
    /// run from several threads at once straight on the caller's buffers (qcow2); `None` for
    /// the others (raw images have [`DiskImage::raw_file`] instead).
    fn shared(&self) -> Option<std::sync::Arc<dyn SharedImage>> {
        None
    }
}

/// An image that several threads may read, write and flush at once (`&self`), moving data
/// straight between the image and the caller's buffers: the metadata it keeps (qcow2 L2
/// tables, refcounts) is locked inside it, so requests to different clusters overlap.
/// Requests are checked like [`DiskImage`]'s: within the medium, no writes to a read-only
/// image.
pub trait SharedImage: Send + Sync {
    /// Size of the medium in bytes.
    fn size(&self) -> u64;
    /// Fills `bufs`, in order, from byte `offset`.
    fn readv(&self, offset: u64, bufs: Vec<io::IoSliceMut<'_>>) -> Result<(), Error>;
    /// Writes `bufs`, in order, at byte `offset`.
    fn writev(&self, offset: u64, bufs: Vec<io::IoSlice<'_>>) -> Result<(), Error>;
    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), Error>;
}

/// Bytes at the start of a raw image that only [`DiskImage::write_at`] may write (it refuses
/// the qcow2 magic there).
pub const RAW_GUARDED_BYTES: u64 = QCOW2_MAGIC.len() as u64;

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
    use crate::test_util::{have, pattern, run, TempDir};

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

    #[test]
    fn format_names_parse_and_print() {
        assert_eq!("raw".parse::<ImageFormat>().unwrap(), ImageFormat::Raw);
        assert_eq!("qcow2".parse::<ImageFormat>().unwrap(), ImageFormat::Qcow2);
        assert_eq!(ImageFormat::Qcow2.to_string(), "qcow2");
        assert_eq!(ImageFormat::Raw.to_string(), "raw");
        let err = "vmdk".parse::<ImageFormat>().unwrap_err();
        assert!(matches!(&err, Error::UnknownFormat(n) if n == "vmdk"));
        let msg = err.to_string();
        assert!(msg.contains("vmdk") && msg.contains("raw") && msg.contains("qcow2"), "{msg}");
        assert!("QCOW2".parse::<ImageFormat>().is_err());
    }

    #[test]
    fn detect_format_reads_the_magic() {
        let dir = TempDir::new("detect");
        let cases: [(&str, &[u8], ImageFormat); 5] = [
            ("empty", b"", ImageFormat::Raw),
            ("short", b"QFI", ImageFormat::Raw),
            ("zeroes", &[0; 512], ImageFormat::Raw),
            ("magic", b"QFI\xfb\0\0\0\x03", ImageFormat::Qcow2),
            ("almost", b"QFI\xfa\0\0\0\x03", ImageFormat::Raw),
        ];
        for (name, data, want) in cases {
            let path = dir.join(name);
            std::fs::write(&path, data).unwrap();
            assert_eq!(detect_format(&path).unwrap(), want, "{name}");
        }
        let qcow = dir.join("made.qcow2");
        create_qcow2(&qcow, 1 << 20, None).unwrap();
        assert_eq!(detect_format(&qcow).unwrap(), ImageFormat::Qcow2);
        let err = detect_format(&dir.join("missing")).unwrap_err();
        assert!(matches!(err, Error::Open { .. }) && err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn open_image_checks_the_format() {
        let dir = TempDir::new("open-format");
        let raw = dir.join("disk.raw");
        let qcow = dir.join("disk.qcow2");
        create_raw(&raw, 1 << 20).unwrap();
        create_qcow2(&qcow, 1 << 20, None).unwrap();

        let err = open_image(&raw, Some(ImageFormat::Qcow2), true).err().unwrap();
        assert!(matches!(
            &err,
            Error::WrongFormat { path, requested: ImageFormat::Qcow2, detected: ImageFormat::Raw } if *path == raw
        ));
        let msg = err.to_string();
        assert!(msg.contains("disk.raw") && msg.contains("is raw"), "{msg}");
        let err = open_image(&qcow, Some(ImageFormat::Raw), true).err().unwrap();
        assert!(err.to_string().contains("disk.qcow2") && err.to_string().contains("is qcow2"), "{err}");

        for (path, format) in
            [(&raw, None), (&raw, Some(ImageFormat::Raw)), (&qcow, None), (&qcow, Some(ImageFormat::Qcow2))]
        {
            let mut img = open_image(path, format, false).unwrap();
            assert_eq!(img.size(), 1 << 20);
            img.write_at(4096, b"hello").unwrap();
            img.flush().unwrap();
            drop(img);
            let mut img = open_image(path, format, true).unwrap();
            assert!(img.read_only());
            let mut buf = [0u8; 5];
            img.read_at(4096, &mut buf).unwrap();
            assert_eq!(&buf, b"hello");
        }
        let err = open_image(&dir.join("none"), None, true).err().unwrap();
        assert!(matches!(err, Error::Open { .. }));
    }

    #[test]
    fn open_image_raw_refuses_the_qcow2_magic() {
        let dir = TempDir::new("open-magic");
        let raw = dir.join("disk.raw");
        create_raw(&raw, 4096).unwrap();
        let mut img = open_image(&raw, None, false).unwrap();
        assert!(matches!(img.write_at(0, &QCOW2_MAGIC), Err(Error::RawQcow2Magic)));
        img.write_at(512, &QCOW2_MAGIC).unwrap();
        drop(img);
        assert_eq!(detect_format(&raw).unwrap(), ImageFormat::Raw);
    }

    #[test]
    fn create_raw_is_sparse_sized_and_exclusive() {
        let dir = TempDir::new("create-raw");
        let path = dir.join("disk.raw");
        create_raw(&path, 3 << 20).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 << 20);
        let err = create_raw(&path, 1 << 20).unwrap_err();
        assert!(matches!(&err, Error::Create { path: p, .. } if *p == path), "{err:?}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 << 20);
        let err = create_qcow2(&path, 1 << 20, None).unwrap_err();
        assert!(matches!(err, Error::Create { .. }));
        assert_eq!(detect_format(&path).unwrap(), ImageFormat::Raw, "the existing file must survive");
    }

    #[test]
    fn resize_grows_raw_and_refuses_shrinking_and_busy_images() {
        let dir = TempDir::new("resize-raw");
        let path = dir.join("disk.raw");
        std::fs::write(&path, pattern(4096, 9)).unwrap();
        resize(&path, 8192).unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 8192);
        assert_eq!(data[..4096], pattern(4096, 9)[..]);
        assert!(data[4096..].iter().all(|&b| b == 0));
        assert!(matches!(resize(&path, 4096), Err(Error::Shrink { size: 8192, new_size: 4096, .. })));
        resize(&path, 8192).unwrap();
        let busy = open_image(&path, None, true).unwrap();
        assert!(matches!(resize(&path, 1 << 20), Err(Error::Locked { .. })));
        drop(busy);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
    }

    #[test]
    fn resize_grows_qcow2() {
        let dir = TempDir::new("resize-qcow2");
        let path = dir.join("disk.qcow2");
        create_qcow2(&path, 1 << 20, None).unwrap();
        {
            let mut img = open_image(&path, None, false).unwrap();
            img.write_at((1 << 20) - 4, b"tail").unwrap();
        }
        resize(&path, 5 << 20).unwrap();
        assert!(matches!(resize(&path, 1 << 20), Err(Error::Shrink { .. })));
        let mut img = open_image(&path, None, true).unwrap();
        assert_eq!(img.size(), 5 << 20);
        let mut buf = vec![0xffu8; 8];
        img.read_at((1 << 20) - 4, &mut buf).unwrap();
        assert_eq!(&buf, b"tail\0\0\0\0");
        drop(img);
        if have("qemu-img", "resize_grows_qcow2") {
            crate::test_util::qemu_img_check(&path);
            let info = run("qemu-img", &["info", "--output=json", path.to_str().unwrap()]);
            assert!(info.contains(&format!("\"virtual-size\": {}", 5 << 20)), "{info}");
        }
    }
}
