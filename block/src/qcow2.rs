// SPDX-License-Identifier: Apache-2.0
//! qcow2 images, through the `imago` crate (built with its fully synchronous `sync` feature, so
//! no async runtime is involved).
//!
//! A backing file named in the image header (raw or qcow2, any depth) is opened implicitly,
//! read-only, with a shared lock; the image itself is locked exclusively when writable. Every
//! file goes through [`LockingGate`], so a chain can never be opened while another process writes
//! any of its members.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use imago::file::File as ImagoFile;
use imago::format::PreallocateMode;
use imago::qcow2::Qcow2;
use imago::{FormatAccess, FormatCreateBuilder, FormatDriverBuilder, StorageOpenOptions};

use crate::lock::{lock_image, try_lock};
use crate::{check_range, DiskImage, Error, ImageFormat};

/// An open qcow2 image, possibly an overlay on a backing chain.
///
/// Metadata (L2 tables, refcount blocks) is cached in memory by imago. [`DiskImage::flush`]
/// writes the caches back and syncs the files; dropping the image does the same, so the file
/// passes `qemu-img check` once it is closed.
pub struct Qcow2Image {
    access: FormatAccess<ImagoFile>,
    path: PathBuf,
    size: u64,
    read_only: bool,
}

impl std::fmt::Debug for Qcow2Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2Image")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl Qcow2Image {
    /// Opens the qcow2 image at `path` and its backing chain.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, Error> {
        let open_err = |source| Error::Open { path: path.to_path_buf(), source };
        let storage = open_locked(path, !read_only)?;
        let qcow2 =
            Qcow2::<ImagoFile>::builder(storage).write(!read_only).open(LockingGate).map_err(open_err)?;
        let access = FormatAccess::new(qcow2);
        let size = access.size();
        Ok(Qcow2Image { access, path: path.to_path_buf(), size, read_only })
    }

    /// The path the image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Grows the virtual disk to `new_size` bytes; the new range reads as zeroes even if a
    /// backing file is longer than the old size.
    pub(crate) fn grow(&mut self, new_size: u64) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        self.access.resize_grow(new_size, PreallocateMode::Zero)?;
        self.size = self.access.size();
        self.flush()
    }
}

impl DiskImage for Qcow2Image {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        check_range(offset, buf.len(), self.size)?;
        self.access.read(buf, offset)?;
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        check_range(offset, buf.len(), self.size)?;
        self.access.write(buf, offset)?;
        Ok(())
    }
    fn flush(&mut self) -> Result<(), Error> {
        if !self.read_only {
            self.access.flush()?;
            self.access.sync()?;
        }
        Ok(())
    }
}

impl Drop for Qcow2Image {
    fn drop(&mut self) {
        // imago flushes on drop too, but reports failures through `tracing`, which this project
        // does not collect.
        if let Err(e) = self.flush() {
            log::error!("{}: writing back the qcow2 metadata failed: {e}", self.path.display());
        }
    }
}

/// Opens `path` for imago (read-write if `writable`) and takes the image lock.
fn open_locked(path: &Path, writable: bool) -> Result<ImagoFile, Error> {
    let open_err = |source| Error::Open { path: path.to_path_buf(), source };
    let file = OpenOptions::new().read(true).write(writable).open(path).map_err(open_err)?;
    lock_image(&file, path, writable)?;
    ImagoFile::from_open_file(file, StorageOpenOptions::new().filename(path).write(writable)).map_err(open_err)
}

/// Opens the files a qcow2 header refers to (backing images, an external data file) the way the
/// image itself is opened: with `flock`, shared for read-only files and exclusive for writable
/// ones, so that a template cannot be rewritten under its overlays.
#[derive(Debug, Clone, Copy, Default)]
struct LockingGate;

impl imago::format::gate::ImplicitOpenGate<ImagoFile> for LockingGate {
    fn open_format<F: FormatDriverBuilder<ImagoFile>>(
        &mut self,
        builder: F,
    ) -> io::Result<FormatAccess<ImagoFile>> {
        Ok(FormatAccess::new(builder.open(LockingGate)?))
    }

    fn open_storage(&mut self, opts: StorageOpenOptions) -> io::Result<ImagoFile> {
        let Some(path) = opts.get_filename().map(Path::to_path_buf) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a storage object without a file name"));
        };
        if opts.get_direct() {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "O_DIRECT is not used"));
        }
        let writable = opts.get_writable();
        let file: File = OpenOptions::new().read(true).write(writable).open(&path)?;
        try_lock(&file, writable).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is locked by another process", path.display()),
                )
            } else {
                e
            }
        })?;
        ImagoFile::from_open_file(file, opts)
    }
}

/// Creates a qcow2 image of `size` bytes at `path`, which must not exist yet, with 64 KiB
/// clusters and 16-bit refcounts (QEMU's defaults). `backing` is written into the header as
/// given (a relative name is relative to the image's directory) with its format.
pub(crate) fn create(path: &Path, size: u64, backing: Option<(&str, ImageFormat)>) -> Result<(), Error> {
    let create_err = |source| Error::Create { path: path.to_path_buf(), source };
    let file = OpenOptions::new().read(true).write(true).create_new(true).open(path).map_err(create_err)?;
    let result = (|| {
        lock_image(&file, path, true)?;
        let storage = ImagoFile::from_open_file(file, StorageOpenOptions::new().filename(path).write(true))
            .map_err(create_err)?;
        let mut builder = Qcow2::<ImagoFile>::create_builder(storage).size(size);
        if let Some((name, format)) = backing {
            builder = builder.backing(name.to_string(), format.to_string());
        }
        builder.create().map_err(create_err)
    })();
    if result.is_err() {
        // Do not leave a half-written image behind; the file is ours since create_new succeeded.
        let _ = std::fs::remove_file(path);
    }
    result
}
