// SPDX-License-Identifier: Apache-2.0
//! Host files handed over as open descriptors (`vmm --preopened PATH=FD`).
//!
//! A jailed vmm (an unprivileged uid in an empty root) cannot open the VM's disk images, ISO,
//! kernel, firmware or serial log by path. Its parent opens each of them and passes the
//! descriptor together with the path the configuration names. This module keeps those
//! descriptors for the life of the process. Every open of a host file by path in this crate
//! and in the vmm goes through [`open`] (or [`lookup`], [`read`], [`metadata`]): a registered
//! path gets a duplicate of its descriptor, and any other path is opened as usual, so a vmm
//! started by hand behaves as before.
//!
//! A duplicate (`F_DUPFD_CLOEXEC`) is the same open file description as the registered
//! descriptor: it shares the file offset, the status flags and `flock` locks. [`lookup`]
//! rewinds it to offset 0 so that it reads like a fresh open, and [`read`] and
//! [`crate::detect_format`] use `pread`, which does not depend on the offset. Because the locks
//! are shared, the image locks do not keep two users of one registered file apart inside the
//! vmm the way two separate opens would. The parent is expected to hand over each file once.
//!
//! Paths match as [`Path`] compares them: repeated `/` and `.` components do not count, `..`
//! is not resolved and symbolic links are not followed. A qcow2 backing file is looked up under
//! the name imago gives it: the header's name if it is absolute, otherwise that name joined to
//! the overlay's directory.

use std::collections::BTreeMap;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

/// A descriptor that cannot be registered. The messages say what to hand over instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path is relative.
    #[error("{}={fd}: the path must be absolute, as the configuration names the file", path.display())]
    RelativePath {
        /// The path given.
        path: PathBuf,
        /// The descriptor given.
        fd: RawFd,
    },
    /// Descriptors 0 to 2 are the standard streams.
    #[error(
        "{}={fd}: descriptors 0, 1 and 2 are stdin, stdout and stderr; hand the file over as \
         descriptor 3 or above", path.display()
    )]
    StdioFd {
        /// The path given.
        path: PathBuf,
        /// The descriptor given.
        fd: RawFd,
    },
    /// The descriptor is not open in this process.
    #[error(
        "{}={fd}: descriptor {fd} is not open; open the file and start the vmm with it open \
         (not close-on-exec)", path.display()
    )]
    NotOpen {
        /// The path given.
        path: PathBuf,
        /// The descriptor given.
        fd: RawFd,
        /// What `fcntl(F_GETFD)` said.
        #[source]
        source: io::Error,
    },
    /// An `O_PATH` descriptor, which can be neither read nor written.
    #[error(
        "{}={fd}: the descriptor was opened with O_PATH; open the file for reading (or reading \
         and writing) instead", path.display()
    )]
    PathOnly {
        /// The path given.
        path: PathBuf,
        /// The descriptor given.
        fd: RawFd,
    },
    /// The path is given twice (or was registered before).
    #[error("{} is given twice; hand each file over once", path.display())]
    DuplicatePath {
        /// The path.
        path: PathBuf,
    },
    /// One descriptor is given for two paths.
    #[error(
        "descriptor {fd} is given for both {} and {}; hand each file over as a descriptor of \
         its own", first.display(), path.display()
    )]
    DuplicateFd {
        /// The descriptor.
        fd: RawFd,
        /// The path it was given for first.
        first: PathBuf,
        /// The path it was given for again.
        path: PathBuf,
    },
}

/// What an open needs of a file: the access mode of the descriptor a registered path was
/// handed with must allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading only (`O_RDONLY` on a miss).
    Read,
    /// Writing only (`O_WRONLY` on a miss), e.g. a log.
    Write,
    /// Reading and writing (`O_RDWR` on a miss), e.g. a writable disk image.
    ReadWrite,
}

impl Access {
    /// `Read` or `ReadWrite`.
    pub fn read_write(writable: bool) -> Self {
        if writable {
            Access::ReadWrite
        } else {
            Access::Read
        }
    }

    fn reads(self) -> bool {
        self != Access::Write
    }

    fn writes(self) -> bool {
        self != Access::Read
    }
}

/// A registered descriptor and its access mode (`O_RDONLY`, `O_WRONLY` or `O_RDWR`).
#[derive(Debug)]
struct Entry {
    file: File,
    mode: libc::c_int,
}

/// Descriptors by path.
#[derive(Debug, Default)]
struct HostFiles {
    files: BTreeMap<PathBuf, Entry>,
}

/// The process's registry.
static REGISTRY: RwLock<HostFiles> = RwLock::new(HostFiles { files: BTreeMap::new() });

impl HostFiles {
    /// Checks `path` for registration with `fd` (what [`HostFiles::insert`] would refuse).
    fn check_path(&self, path: &Path, fd: RawFd) -> Result<(), Error> {
        if !path.is_absolute() {
            return Err(Error::RelativePath { path: path.to_path_buf(), fd });
        }
        if self.files.contains_key(path) {
            return Err(Error::DuplicatePath { path: path.to_path_buf() });
        }
        Ok(())
    }

    /// Registers `file` for `path`, refusing relative and known paths and `O_PATH` descriptors.
    fn insert(&mut self, path: &Path, file: File) -> Result<(), Error> {
        let fd = file.as_raw_fd();
        self.check_path(path, fd)?;
        let flags = get_fl(fd).map_err(|source| Error::NotOpen { path: path.to_path_buf(), fd, source })?;
        if flags & libc::O_PATH != 0 {
            return Err(Error::PathOnly { path: path.to_path_buf(), fd });
        }
        self.files.insert(path.to_path_buf(), Entry { file, mode: flags & libc::O_ACCMODE });
        Ok(())
    }

    /// A new descriptor for a registered `path`, at offset 0; `None` if `path` is not registered.
    fn lookup(&self, path: &Path, access: Access) -> io::Result<Option<File>> {
        let Some(entry) = self.files.get(path) else { return Ok(None) };
        if access.writes() && entry.mode == libc::O_RDONLY {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} was handed read-only; opening it for writing needs a descriptor opened \
                     read-write",
                    path.display()
                ),
            ));
        }
        if access.reads() && entry.mode == libc::O_WRONLY {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} was handed write-only; reading it needs a descriptor opened for reading",
                    path.display()
                ),
            ));
        }
        // try_clone is fcntl(F_DUPFD_CLOEXEC).
        let mut file = entry.file.try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        Ok(Some(file))
    }
}

/// `fcntl(fd, F_GETFL)`.
fn get_fl(fd: RawFd) -> io::Result<libc::c_int> {
    // SAFETY: F_GETFL reads the status flags of a descriptor number; no memory is passed, and
    // a number that is not open fails with EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(flags)
    }
}

fn registry() -> std::sync::RwLockReadGuard<'static, HostFiles> {
    REGISTRY.read().unwrap_or_else(PoisonError::into_inner)
}

/// Takes over the descriptors the process inherited for `entries` (path, descriptor): each
/// path must be absolute and given once, each descriptor 3 or above, open, given once and not
/// `O_PATH`. Nothing is taken unless every entry passes. The descriptors are marked
/// close-on-exec and owned by the registry until the process exits.
///
/// # Safety
///
/// Each descriptor must be one the process inherited and that nothing else in the process owns,
/// uses or will close: call this before the process opens files of its own (a descriptor
/// number it opened itself is open too, and would be taken from its owner).
pub unsafe fn adopt_inherited(entries: &[(PathBuf, RawFd)]) -> Result<(), Error> {
    let mut reg = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    for (i, (path, fd)) in entries.iter().enumerate() {
        let (path, fd) = (path.as_path(), *fd);
        reg.check_path(path, fd)?;
        if fd < 3 {
            return Err(Error::StdioFd { path: path.to_path_buf(), fd });
        }
        if entries[..i].iter().any(|(p, _)| p == path) {
            return Err(Error::DuplicatePath { path: path.to_path_buf() });
        }
        if let Some((first, _)) = entries[..i].iter().find(|(_, f)| *f == fd) {
            return Err(Error::DuplicateFd { fd, first: first.clone(), path: path.to_path_buf() });
        }
        // SAFETY: F_GETFD reads the descriptor flags of a number; a closed one fails with EBADF.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            let source = io::Error::last_os_error();
            return Err(Error::NotOpen { path: path.to_path_buf(), fd, source });
        }
        let flags = get_fl(fd).map_err(|source| Error::NotOpen { path: path.to_path_buf(), fd, source })?;
        if flags & libc::O_PATH != 0 {
            return Err(Error::PathOnly { path: path.to_path_buf(), fd });
        }
    }
    for (path, fd) in entries {
        // SAFETY: F_SETFD on a descriptor checked open above; no memory is passed.
        if unsafe { libc::fcntl(*fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            let source = io::Error::last_os_error();
            return Err(Error::NotOpen { path: path.clone(), fd: *fd, source });
        }
        // SAFETY: open (checked above), given once, and by the caller's contract owned by
        // nothing else in the process: the registry becomes its only owner.
        let file = File::from(unsafe { OwnedFd::from_raw_fd(*fd) });
        reg.insert(path, file)?;
    }
    Ok(())
}

/// Registers an open `file` for `path` (absolute, not registered yet) for the life of the
/// process.
pub fn register(path: &Path, file: File) -> Result<(), Error> {
    REGISTRY.write().unwrap_or_else(PoisonError::into_inner).insert(path, file)
}

/// True if `path` was handed over as a descriptor.
pub fn is_registered(path: &Path) -> bool {
    registry().files.contains_key(path)
}

/// A new descriptor (`F_DUPFD_CLOEXEC`) of the file registered for `path`, rewound to offset
/// 0; `None` if `path` is not registered. Fails if the descriptor was handed over without the
/// access `access` needs ("was handed read-only").
pub fn lookup(path: &Path, access: Access) -> io::Result<Option<File>> {
    registry().lookup(path, access)
}

/// Opens `path` for `access`: the registered descriptor (see [`lookup`]) if there is one,
/// else the path itself, with no other flags.
pub fn open(path: &Path, access: Access) -> io::Result<File> {
    match lookup(path, access)? {
        Some(file) => Ok(file),
        None => OpenOptions::new().read(access.reads()).write(access.writes()).open(path),
    }
}

/// The whole file at `path`, read with `pread` from the registered descriptor if there is
/// one (the shared offset is not used), else [`std::fs::read`].
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let Some(file) = lookup(path, Access::Read)? else { return std::fs::read(path) };
    let mut bytes = Vec::with_capacity(usize::try_from(file.metadata()?.len()).unwrap_or(0));
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match file.read_at(&mut chunk, bytes.len() as u64) {
            Ok(0) => return Ok(bytes),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The metadata of the file at `path`: `fstat` of the registered descriptor if there is one,
/// else [`std::fs::metadata`] (which follows symbolic links).
pub fn metadata(path: &Path) -> io::Result<Metadata> {
    match registry().files.get(path) {
        Some(entry) => entry.file.metadata(),
        None => std::fs::metadata(path),
    }
}

#[cfg(test)]
mod tests;
