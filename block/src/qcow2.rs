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
use std::sync::Arc;

use imago::file::File as ImagoFile;
use imago::format::PreallocateMode;
use imago::io_buffers::{IoVector, IoVectorMut};
use imago::qcow2::Qcow2;
use imago::{FormatAccess, FormatCreateBuilder, FormatDriverBuilder, StorageOpenOptions};

use crate::host_files::{self, Access};
use crate::lock::{lock_image, try_lock};
use crate::{check_range, DiskImage, Error, ImageFormat, SharedImage};

/// An open qcow2 image, possibly an overlay on a backing chain.
///
/// Metadata (L2 tables, refcount blocks) is cached in memory by imago. [`DiskImage::flush`]
/// writes the caches back and syncs the files; dropping the last reference to the image
/// does the same, so the file passes `qemu-img check` once it is closed.
///
/// [`DiskImage::shared`] hands out the same image as a [`SharedImage`]: imago's
/// `FormatAccess` takes `&self` for reads, writes and flushes and locks its metadata inside
/// (its qcow2 driver is built for concurrent requests), so I/O threads may run requests at
/// once, each straight on its guest-memory pieces.
pub struct Qcow2Image {
    shared: Arc<Qcow2Shared>,
    path: PathBuf,
}

/// What [`Qcow2Image`] shares with I/O threads.
struct Qcow2Shared {
    access: FormatAccess<ImagoFile>,
    path: PathBuf,
    size: u64,
    read_only: bool,
}

impl std::fmt::Debug for Qcow2Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2Image")
            .field("path", &self.path)
            .field("size", &self.shared.size)
            .field("read_only", &self.shared.read_only)
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
        let shared = Qcow2Shared { access, path: path.to_path_buf(), size, read_only };
        Ok(Qcow2Image { shared: Arc::new(shared), path: path.to_path_buf() })
    }

    /// The path the image was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Grows the virtual disk to `new_size` bytes; the new range reads as zeroes even if a
    /// backing file is longer than the old size. Fails while I/O threads share the image.
    pub(crate) fn grow(&mut self, new_size: u64) -> Result<(), Error> {
        let shared = Arc::get_mut(&mut self.shared).ok_or_else(|| {
            Error::Io(io::Error::new(io::ErrorKind::ResourceBusy, "the image is in use by I/O threads"))
        })?;
        if shared.read_only {
            return Err(Error::ReadOnly);
        }
        shared.access.resize_grow(new_size, PreallocateMode::Zero)?;
        shared.size = shared.access.size();
        self.flush()
    }
}

impl DiskImage for Qcow2Image {
    fn size(&self) -> u64 {
        self.shared.size
    }
    fn read_only(&self) -> bool {
        self.shared.read_only
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.shared.readv(offset, vec![io::IoSliceMut::new(buf)])
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<(), Error> {
        self.shared.writev(offset, vec![io::IoSlice::new(buf)])
    }
    fn flush(&mut self) -> Result<(), Error> {
        SharedImage::flush(self.shared.as_ref())
    }
    fn shared(&self) -> Option<Arc<dyn SharedImage>> {
        Some(self.shared.clone())
    }
}

impl SharedImage for Qcow2Shared {
    fn size(&self) -> u64 {
        self.size
    }
    fn readv(&self, offset: u64, bufs: Vec<io::IoSliceMut<'_>>) -> Result<(), Error> {
        let mut vector = IoVectorMut::with_capacity(bufs.len());
        // imago wants no empty pieces.
        bufs.into_iter().filter(|b| !b.is_empty()).for_each(|b| vector.push_ioslice(b));
        check_range(offset, vector.len() as usize, self.size)?;
        self.access.readv(vector, offset)?;
        Ok(())
    }
    fn writev(&self, offset: u64, bufs: Vec<io::IoSlice<'_>>) -> Result<(), Error> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let mut vector = IoVector::with_capacity(bufs.len());
        bufs.into_iter().filter(|b| !b.is_empty()).for_each(|b| vector.push_ioslice(b));
        check_range(offset, vector.len() as usize, self.size)?;
        self.access.writev(vector, offset)?;
        Ok(())
    }
    fn flush(&self) -> Result<(), Error> {
        if !self.read_only {
            self.access.flush()?;
            self.access.sync()?;
        }
        Ok(())
    }
}

impl Drop for Qcow2Shared {
    fn drop(&mut self) {
        // imago flushes on drop too, but reports failures through `tracing`, which this project
        // does not collect.
        if let Err(e) = SharedImage::flush(self) {
            log::error!("{}: writing back the qcow2 metadata failed: {e}", self.path.display());
        }
    }
}

/// Opens `path` for imago (read-write if `writable`, through [`host_files`]) and takes the image
/// lock.
fn open_locked(path: &Path, writable: bool) -> Result<ImagoFile, Error> {
    let open_err = |source| Error::Open { path: path.to_path_buf(), source };
    let file = host_files::open(path, Access::read_write(writable)).map_err(open_err)?;
    lock_image(&file, path, writable)?;
    ImagoFile::from_open_file(file, StorageOpenOptions::new().filename(path).write(writable))
        .map_err(open_err)
}

/// Opens the files a qcow2 header refers to (backing images, an external data file) the way the
/// image itself is opened: through [`host_files`] (a backing file handed over as a descriptor
/// is found under the name imago resolves), with `flock`, shared for read-only files and exclusive for writable
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
        let file: File = host_files::open(&path, Access::read_write(writable))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{have, pattern, qemu_img_check, qemu_img_contents, run, TempDir};
    use crate::{create_qcow2, RawFile};

    const MIB: u64 = 1 << 20;

    /// Writes that cover a cluster boundary, a whole cluster, sub-sector pieces and the last
    /// byte, applied to both `img` and the expected contents `want`.
    fn write_mix(img: &mut dyn DiskImage, want: &mut [u8]) {
        let size = want.len() as u64;
        let writes: [(u64, Vec<u8>); 5] = [
            (0, pattern(512, 10)),
            (65536 - 100, pattern(300, 11)),
            (3 * 65536, pattern(65536, 12)),
            (777, pattern(3, 13)),
            (size - 1, vec![0x5a]),
        ];
        for (off, data) in writes {
            img.write_at(off, &data).unwrap();
            want[off as usize..off as usize + data.len()].copy_from_slice(&data);
        }
    }

    fn read_all(img: &mut dyn DiskImage) -> Vec<u8> {
        let mut buf = vec![0u8; img.size() as usize];
        img.read_at(0, &mut buf).unwrap();
        buf
    }

    /// Eight threads write, through the shared image, pieces that fill clusters never
    /// allocated, share clusters with each other and straddle cluster boundaries, then read
    /// them back with scattered buffers; the image is then what was written and passes
    /// `qemu-img check`.
    #[test]
    fn concurrent_writes_and_reads_through_the_shared_image() {
        let dir = TempDir::new("qcow2-shared");
        let path = dir.join("disk.qcow2");
        let size = 16 * MIB;
        create_qcow2(&path, size, None).unwrap();
        let img = Qcow2Image::open(&path, false).unwrap();
        let shared = img.shared().expect("qcow2 is shared");
        // Thread t writes 48 KiB pieces at 40 KiB * (8 * i + t): neighbours share clusters.
        let piece = 48 * 1024;
        let at = |t: usize, i: usize| ((8 * i + t) * 40 * 1024) as u64;
        let mut want = vec![0u8; size as usize];
        std::thread::scope(|scope| {
            for t in 0..8 {
                let shared = shared.clone();
                scope.spawn(move || {
                    for i in 0..40 {
                        let data = pattern(piece, (8 * i + t) as u8);
                        // Only the first 40 KiB of each piece (no overlap between writers).
                        let (a, b) = data[..40 * 1024].split_at(1000);
                        shared.writev(at(t, i), vec![io::IoSlice::new(a), io::IoSlice::new(b)]).unwrap();
                    }
                });
            }
        });
        for i in 0..40 {
            for t in 0..8 {
                let o = at(t, i) as usize;
                want[o..o + 40 * 1024].copy_from_slice(&pattern(piece, (8 * i + t) as u8)[..40 * 1024]);
            }
        }
        std::thread::scope(|scope| {
            for t in 0..8 {
                let (shared, want) = (shared.clone(), &want);
                scope.spawn(move || {
                    for i in (t..40).step_by(3) {
                        let o = at(t, i);
                        let (mut a, mut b) = (vec![0u8; 7], vec![0u8; piece - 7]);
                        shared
                            .readv(o, vec![io::IoSliceMut::new(&mut a), io::IoSliceMut::new(&mut b)])
                            .unwrap();
                        a.extend_from_slice(&b);
                        assert_eq!(a, want[o as usize..o as usize + piece], "thread {t} piece {i}");
                    }
                });
            }
        });
        // Checked like the exclusive interface: beyond the end, and read-only.
        assert!(shared.readv(size - 1, vec![io::IoSliceMut::new(&mut [0u8; 2])]).is_err());
        drop(shared);
        drop(img);
        if have("qemu-img", "concurrent_writes_and_reads_through_the_shared_image") {
            qemu_img_check(&path);
            assert_eq!(qemu_img_contents(&path, "qcow2"), want);
        }
        let ro = Qcow2Image::open(&path, true).unwrap();
        let err = ro.shared().unwrap().writev(0, vec![io::IoSlice::new(b"x")]).unwrap_err();
        assert!(matches!(err, Error::ReadOnly), "{err}");
    }

    #[test]
    fn round_trip_in_an_image_we_create() {
        let dir = TempDir::new("qcow2-rt");
        let path = dir.join("disk.qcow2");
        create_qcow2(&path, 2 * MIB, None).unwrap();
        let mut want = vec![0u8; 2 * MIB as usize];
        {
            let mut img = Qcow2Image::open(&path, false).unwrap();
            assert_eq!(img.size(), 2 * MIB);
            assert_eq!(read_all(&mut img), want, "a new image reads as zeroes");
            write_mix(&mut img, &mut want);
            assert_eq!(read_all(&mut img), want);
        }
        let mut img = Qcow2Image::open(&path, true).unwrap();
        assert_eq!(read_all(&mut img), want, "data survives close and reopen");
        drop(img);
        if have("qemu-img", "round_trip_in_an_image_we_create") {
            qemu_img_check(&path);
            assert_eq!(qemu_img_contents(&path, "qcow2"), want);
        }
    }

    #[test]
    fn qemu_img_sees_our_writes_and_we_see_its() {
        if !have("qemu-img", "qemu_img_sees_our_writes_and_we_see_its")
            || !have("qemu-io", "qemu_img_sees_our_writes_and_we_see_its")
        {
            return;
        }
        let dir = TempDir::new("qcow2-qemu");
        let path = dir.join("disk.qcow2");
        let p = path.to_str().unwrap();
        run("qemu-img", &["create", "-q", "-f", "qcow2", p, "4M"]);
        run("qemu-io", &["-f", "qcow2", "-c", "write -P 0xab 1M 64k", p]);
        let mut want = vec![0u8; 4 * MIB as usize];
        want[MIB as usize..MIB as usize + 65536].fill(0xab);
        {
            let mut img = Qcow2Image::open(&path, false).unwrap();
            assert_eq!(read_all(&mut img), want);
            write_mix(&mut img, &mut want);
            // Overwrite part of QEMU's cluster in place.
            img.write_at(MIB + 10, b"ours").unwrap();
            want[MIB as usize + 10..MIB as usize + 14].copy_from_slice(b"ours");
            img.flush().unwrap();
        }
        qemu_img_check(&path);
        assert_eq!(qemu_img_contents(&path, "qcow2"), want);
        let expected = dir.join("expected.raw");
        std::fs::write(&expected, &want).unwrap();
        run("qemu-img", &["compare", "-q", "-f", "qcow2", "-F", "raw", p, expected.to_str().unwrap()]);
    }

    #[test]
    fn overlay_on_raw_base_leaves_the_base_alone() {
        let dir = TempDir::new("qcow2-overlay");
        let base = dir.join("base.raw");
        let overlay = dir.join("overlay.qcow2");
        let base_data = pattern(MIB as usize, 20);
        std::fs::write(&base, &base_data).unwrap();
        // A relative backing name resolves against the overlay's directory.
        create_qcow2(&overlay, MIB, Some((Path::new("base.raw"), ImageFormat::Raw))).unwrap();
        let mut want = base_data.clone();
        {
            let mut img = Qcow2Image::open(&overlay, false).unwrap();
            assert_eq!(read_all(&mut img), base_data);
            // The base is shared-locked: no writer may open it, readers may.
            assert!(matches!(RawFile::open(&base, false), Err(Error::Locked { .. })));
            RawFile::open(&base, true).unwrap();
            write_mix(&mut img, &mut want);
            assert_eq!(read_all(&mut img), want);
        }
        assert_eq!(std::fs::read(&base).unwrap(), base_data, "the base must not change");
        let mut img = Qcow2Image::open(&overlay, true).unwrap();
        assert_eq!(read_all(&mut img), want);
        drop(img);
        if have("qemu-img", "overlay_on_raw_base_leaves_the_base_alone") {
            qemu_img_check(&overlay);
            assert_eq!(qemu_img_contents(&overlay, "qcow2"), want);
            let info = run("qemu-img", &["info", overlay.to_str().unwrap()]);
            assert!(
                info.contains("backing file: base.raw") && info.contains("backing file format: raw"),
                "{info}"
            );
        }
    }

    #[test]
    fn overlay_made_by_qemu_img_on_a_qcow2_chain() {
        if !have("qemu-img", "overlay_made_by_qemu_img_on_a_qcow2_chain") {
            return;
        }
        let dir = TempDir::new("qcow2-chain");
        let base = dir.join("base.raw");
        let mid = dir.join("mid.qcow2");
        let top = dir.join("top.qcow2");
        let base_data = pattern(2 * MIB as usize, 30);
        std::fs::write(&base, &base_data).unwrap();
        let (b, m, t) = (base.to_str().unwrap(), mid.to_str().unwrap(), top.to_str().unwrap());
        run("qemu-img", &["create", "-q", "-f", "qcow2", "-b", b, "-F", "raw", m]);
        {
            let mut img = Qcow2Image::open(&mid, false).unwrap();
            img.write_at(MIB, &[0x77; 4096]).unwrap();
        }
        run("qemu-img", &["create", "-q", "-f", "qcow2", "-b", m, "-F", "qcow2", t]);
        let mut want = base_data.clone();
        want[MIB as usize..MIB as usize + 4096].fill(0x77);
        let mid_before = std::fs::read(&mid).unwrap();
        {
            let mut img = Qcow2Image::open(&top, false).unwrap();
            assert_eq!(read_all(&mut img), want);
            // Partial writes into clusters the chain provides: copy-on-write from below.
            img.write_at(MIB + 100, b"top").unwrap();
            img.write_at(5, b"top").unwrap();
            want[MIB as usize + 100..MIB as usize + 103].copy_from_slice(b"top");
            want[5..8].copy_from_slice(b"top");
            assert_eq!(read_all(&mut img), want);
        }
        assert_eq!(std::fs::read(&mid).unwrap(), mid_before, "the middle layer must not change");
        assert_eq!(std::fs::read(&base).unwrap(), base_data);
        qemu_img_check(&top);
        qemu_img_check(&mid);
        assert_eq!(qemu_img_contents(&top, "qcow2"), want);
    }

    #[test]
    fn read_only_locks_and_ranges() {
        let dir = TempDir::new("qcow2-ro");
        let path = dir.join("disk.qcow2");
        create_qcow2(&path, MIB, None).unwrap();
        let before = std::fs::read(&path).unwrap();
        {
            let mut ro = Qcow2Image::open(&path, true).unwrap();
            assert!(ro.read_only());
            assert!(matches!(ro.write_at(0, &[1]), Err(Error::ReadOnly)));
            ro.flush().unwrap();
            let _ro2 = Qcow2Image::open(&path, true).unwrap();
            let err = Qcow2Image::open(&path, false).unwrap_err();
            assert!(matches!(&err, Error::Locked { path: p, writable: true } if *p == path), "{err:?}");
            let mut buf = [0u8; 2];
            assert!(matches!(ro.read_at(MIB - 1, &mut buf), Err(Error::OutOfRange { .. })));
            assert!(matches!(ro.read_at(u64::MAX, &mut buf), Err(Error::OutOfRange { .. })));
        }
        assert_eq!(std::fs::read(&path).unwrap(), before, "read-only use must not touch the file");
        let mut rw = Qcow2Image::open(&path, false).unwrap();
        assert!(matches!(Qcow2Image::open(&path, true), Err(Error::Locked { writable: false, .. })));
        assert!(matches!(rw.write_at(MIB - 1, &[1, 2]), Err(Error::OutOfRange { .. })));
        assert!(matches!(rw.write_at(u64::MAX, &[1]), Err(Error::OutOfRange { .. })));
    }

    #[test]
    fn broken_backing_references_fail_to_open() {
        let dir = TempDir::new("qcow2-badbacking");
        let base = dir.join("base.raw");
        let overlay = dir.join("overlay.qcow2");
        std::fs::write(&base, vec![0u8; 65536]).unwrap();
        let qbase = dir.join("base.qcow2");
        create_qcow2(&qbase, MIB, None).unwrap();
        let err = create_qcow2(&overlay, MIB, Some((&base, ImageFormat::Qcow2))).unwrap_err();
        assert!(matches!(&err, Error::WrongFormat { path, detected: ImageFormat::Raw, .. } if *path == base));
        let err = create_qcow2(&overlay, MIB, Some((&qbase, ImageFormat::Raw))).unwrap_err();
        assert!(matches!(err, Error::WrongFormat { detected: ImageFormat::Qcow2, .. }));
        assert!(!overlay.exists());
        assert!(matches!(
            create_qcow2(&overlay, MIB, Some((&dir.join("gone"), ImageFormat::Raw))),
            Err(Error::Open { .. })
        ));

        create_qcow2(&overlay, MIB, Some((&base, ImageFormat::Raw))).unwrap();
        // A writer on the base keeps the overlay from opening.
        let writer = RawFile::open(&base, false).unwrap();
        let err = Qcow2Image::open(&overlay, true).unwrap_err();
        assert!(matches!(&err, Error::Open { path, .. } if *path == overlay), "{err:?}");
        let chain = format!("{:?}", std::error::Error::source(&err));
        assert!(chain.contains("locked"), "{chain}");
        drop(writer);
        Qcow2Image::open(&overlay, true).unwrap();
        std::fs::remove_file(&base).unwrap();
        assert!(matches!(Qcow2Image::open(&overlay, true), Err(Error::Open { .. })));
    }

    #[test]
    fn garbage_after_the_magic_is_an_open_error() {
        let dir = TempDir::new("qcow2-garbage");
        let path = dir.join("bad.qcow2");
        let mut data = b"QFI\xfb".to_vec();
        data.extend(pattern(4096, 40));
        std::fs::write(&path, &data).unwrap();
        let err = Qcow2Image::open(&path, true).unwrap_err();
        assert!(matches!(&err, Error::Open { path: p, .. } if *p == path), "{err:?}");
    }
}
