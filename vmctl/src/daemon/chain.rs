// SPDX-License-Identifier: Apache-2.0
//! Backing chains of disk images, vetted and opened before a VM starts.
//!
//! A qcow2 image's header may name a backing file anywhere on the host (`/etc/shadow`,
//! another VM's disk), which the VMM would then open and show the guest. So before a VM
//! starts, the daemon walks every disk's chain itself ([`open_disk_chain`]):
//!
//! - the disk is opened beneath its pool (`openat2` with `RESOLVE_BENEATH`, see
//!   [`crate::safefs::open_beneath`]), read-write unless the disk is read-only;
//! - if it is qcow2, its backing file name is read from the open file
//!   ([`block::qcow2_backing`], which refuses external data files); a relative name is
//!   resolved against the directory of the image that names it, as QEMU and the VMM do, an
//!   absolute one is taken as is;
//! - the backing file must lie beneath one of the storage pools (the same rule as for disks)
//!   and is opened read-only beneath that pool the same way; a symlink out of the pool, a
//!   missing file, a loop (a file already in the chain) or more than [`MAX_BACKING_DEPTH`]
//!   backing files is refused;
//! - a backing file whose header gives its format as raw ends the chain; one given as qcow2,
//!   or without a format and starting with the qcow2 magic (probed, as the VMM does), is read
//!   in turn.
//!
//! [`definition_files`] does this for every disk and CD-ROM of a definition and opens its
//! kernel and initramfs the same way: the files a VM reads from the host, ready to be handed
//! to the VMM as descriptors.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use vmdef::model::Os;
use vmdef::validate::{Problem, ProblemKind};
use vmdef::VmDef;

use super::Daemon;
use crate::safefs;

/// Most backing files below a disk image (the chain has at most this many plus one files).
pub const MAX_BACKING_DEPTH: usize = 16;

/// One file a VM reads from the host, opened by the daemon beneath its storage pool.
#[derive(Debug)]
pub struct ChainFile {
    /// The file's path as the kernel resolved it when it was opened.
    pub path: PathBuf,
    /// The open file (close-on-exec; read-write if `writable`, read-only otherwise).
    pub file: File,
    /// True only for the top image of a disk the guest may write.
    pub writable: bool,
    /// The path the VMM asks for it by: the definition's path for a disk, kernel or
    /// initramfs; for a backing file the name in its overlay's header, joined to the
    /// directory of the overlay's own `lookup` path when relative, as written (the way the
    /// VMM's qcow2 library names it). The daemon hands the file over under this path.
    pub lookup: PathBuf,
}

/// Why a disk's chain (or a kernel or initramfs) cannot be used. Every message starts with
/// the file the definition names (`top`) and names the offending backing file.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The file is not inside the pool it was said to be in.
    #[error("{top} is not inside the storage pool {pool}")]
    NotInPool {
        /// The file the definition names.
        top: PathBuf,
        /// The pool directory given.
        pool: PathBuf,
    },
    /// A file of the chain could not be opened or read.
    #[error("{top}: cannot open {path}: {source}")]
    Open {
        /// The file the definition names.
        top: PathBuf,
        /// The file that failed.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file of the chain is a directory, device or FIFO.
    #[error("{top}: {path} is not a regular file")]
    NotRegular {
        /// The file the definition names.
        top: PathBuf,
        /// The offending file.
        path: PathBuf,
    },
    /// The file itself leads out of its pool through a symlink.
    #[error("{top} leads out of the storage pool {pool} through a symlink; name the file itself")]
    TopEscapes {
        /// The file the definition names.
        top: PathBuf,
        /// Its pool.
        pool: PathBuf,
    },
    /// An image's qcow2 header cannot be used (an external data file, a bad backing name).
    #[error("{top}: {image}: {source}")]
    Header {
        /// The file the definition names.
        top: PathBuf,
        /// The image whose header is at fault.
        image: PathBuf,
        /// What is wrong with it.
        #[source]
        source: block::HeaderError,
    },
    /// A backing file name that does not end in a file name (`..`, a trailing `/`).
    #[error("{top}: the backing file name {name:?} in {image} does not name a file")]
    NotAFile {
        /// The file the definition names.
        top: PathBuf,
        /// The image naming it.
        image: PathBuf,
        /// The name in its header.
        name: String,
    },
    /// A backing file outside every storage pool.
    #[error(
        "{top}: the backing file {path} (named {name:?} in {image}) is outside every storage pool ({}); \
         move it into a pool and rebase the image onto it (qemu-img rebase), or make the image \
         self-contained (qemu-img convert)",
        list(.pools)
    )]
    OutsidePools {
        /// The file the definition names.
        top: PathBuf,
        /// The image naming it.
        image: PathBuf,
        /// The name in its header.
        name: String,
        /// Where it resolves to.
        path: PathBuf,
        /// The pool directories allowed.
        pools: Vec<PathBuf>,
    },
    /// A backing file that leads out of its pool through a symlink.
    #[error(
        "{top}: the backing file {path} (named {name:?} in {image}) leads out of the storage pool \
         {pool} through a symlink; name the file itself"
    )]
    Escapes {
        /// The file the definition names.
        top: PathBuf,
        /// The image naming it.
        image: PathBuf,
        /// The name in its header.
        name: String,
        /// Where it resolves to.
        path: PathBuf,
        /// The pool it is in.
        pool: PathBuf,
    },
    /// A backing file that does not exist.
    #[error("{top}: the backing file {path} (named {name:?} in {image}) does not exist")]
    Missing {
        /// The file the definition names.
        top: PathBuf,
        /// The image naming it.
        image: PathBuf,
        /// The name in its header.
        name: String,
        /// Where it resolves to.
        path: PathBuf,
    },
    /// A backing file already in the chain.
    #[error(
        "{top}: the backing chain loops: {image} names {path} (as {name:?}) as its backing file, \
         which is already in the chain"
    )]
    Loop {
        /// The file the definition names.
        top: PathBuf,
        /// The image naming it.
        image: PathBuf,
        /// The name in its header.
        name: String,
        /// The file met again.
        path: PathBuf,
    },
    /// More than [`MAX_BACKING_DEPTH`] backing files.
    #[error(
        "{top}: the backing chain is longer than {MAX_BACKING_DEPTH} backing files ({image} names \
         one more); flatten it (qemu-img convert)"
    )]
    TooDeep {
        /// The file the definition names.
        top: PathBuf,
        /// The image naming one file too many.
        image: PathBuf,
    },
}

fn list(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "there are none".into();
    }
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Why a file could not be opened beneath its pool.
enum OpenFail {
    /// `..` or a symlink would leave the pool.
    Escapes,
    /// It does not exist.
    Missing,
    /// Not a regular file (nor a block device where one may be).
    NotRegular,
    /// Anything else.
    Io(io::Error),
}

/// Opens `rel` beneath the directory `pool` with `flags` (plus `O_NONBLOCK`, cleared again),
/// only if it is a regular file: it is first opened `O_PATH` and checked, so that a device or
/// FIFO is never opened for real, and the real open must find the same file.
fn open_regular(pool: &Path, rel: &Path, flags: libc::c_int, block_ok: bool) -> Result<File, OpenFail> {
    let dir = safefs::open_dir(pool).map_err(OpenFail::Io)?;
    let classify = |e: io::Error| match e.raw_os_error() {
        Some(libc::EXDEV | libc::ELOOP) => OpenFail::Escapes,
        Some(libc::ENOENT) => OpenFail::Missing,
        _ => OpenFail::Io(e),
    };
    let probe = safefs::open_beneath(&dir, rel, libc::O_PATH).map_err(classify)?;
    let before = probe.metadata().map_err(OpenFail::Io)?;
    let kind_ok = |m: &std::fs::Metadata| m.is_file() || (block_ok && m.file_type().is_block_device());
    if !kind_ok(&before) {
        return Err(OpenFail::NotRegular);
    }
    let file =
        safefs::open_beneath(&dir, rel, flags | libc::O_NONBLOCK | libc::O_NOCTTY).map_err(classify)?;
    let after = file.metadata().map_err(OpenFail::Io)?;
    if !kind_ok(&after) || (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err(OpenFail::Io(io::Error::other("the file was replaced while it was being opened")));
    }
    safefs::clear_nonblock(&file).map_err(OpenFail::Io)?;
    Ok(file)
}

/// `path` relative to `pool`: both absolute without `..`, `path` strictly inside `pool`.
fn inside(path: &Path, pool: &Path) -> Option<PathBuf> {
    let rel = safefs::lexical_abs(path)?.strip_prefix(pool).ok()?.to_path_buf();
    (!rel.as_os_str().is_empty()).then_some(rel)
}

/// Opens one file beneath its pool (a kernel, an initramfs, a raw CD-ROM image), read-only
/// unless `writable`. `path` must be inside `pool_root` (canonical, as `Pool::dir` gives it).
pub fn open_pool_file(
    path: &Path,
    pool_root: &Path,
    writable: bool,
    block_ok: bool,
) -> Result<ChainFile, ChainError> {
    let top = || path.to_path_buf();
    let rel = inside(path, pool_root)
        .ok_or_else(|| ChainError::NotInPool { top: top(), pool: pool_root.into() })?;
    let flags = if writable { libc::O_RDWR } else { libc::O_RDONLY };
    let file = open_regular(pool_root, &rel, flags, block_ok).map_err(|e| match e {
        OpenFail::Escapes => ChainError::TopEscapes { top: top(), pool: pool_root.into() },
        OpenFail::NotRegular => ChainError::NotRegular { top: top(), path: top() },
        OpenFail::Missing => {
            ChainError::Open { top: top(), path: top(), source: io::ErrorKind::NotFound.into() }
        }
        OpenFail::Io(source) => ChainError::Open { top: top(), path: top(), source },
    })?;
    let real =
        safefs::fd_path(&file).map_err(|source| ChainError::Open { top: top(), path: top(), source })?;
    Ok(ChainFile { path: real, file, writable, lookup: path.to_path_buf() })
}

/// Opens the disk image `disk` (inside the pool directory `pool_root`) and its whole backing
/// chain, each file beneath its pool, and returns them in order: the image first (writable
/// unless `read_only`), then each backing file (always read-only).
///
/// Every backing file must lie beneath one of `pools` (canonical pool directories, as
/// `Pool::dir` gives them; the disk's own pool is allowed only if it is among them). Nothing
/// outside them is opened: a backing file is opened only after its location has been checked,
/// and beneath its pool, so that a symlink cannot lead elsewhere.
pub fn open_disk_chain(
    disk: &Path,
    pool_root: &Path,
    pools: &[PathBuf],
    read_only: bool,
) -> Result<Vec<ChainFile>, ChainError> {
    let top = || disk.to_path_buf();
    let first = open_pool_file(disk, pool_root, !read_only, true)?;
    // A relative backing name is resolved against the directory of the path the VMM opens
    // the image by: for the disk, the path the kernel resolved (what the daemon passes on).
    let mut base = first.path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    let mut seen = Vec::new();
    let id = |f: &File, path: &Path| {
        f.metadata().map(|m| (m.dev(), m.ino())).map_err(|source| ChainError::Open {
            top: top(),
            path: path.to_path_buf(),
            source,
        })
    };
    seen.push(id(&first.file, &first.path)?);
    let mut chain = vec![first];
    let mut format = None;
    // Each turn reads the last file's header; `break` when the chain ends.
    while let Some(cur) = chain.last() {
        let image = cur.path.clone();
        let cur_lookup = cur.lookup.clone();
        let read_err = |source| ChainError::Open { top: top(), path: image.clone(), source };
        let fmt = match format {
            Some(f) => f,
            None => block::detect_format_of(&cur.file).map_err(read_err)?,
        };
        if fmt == block::ImageFormat::Raw {
            break;
        }
        let backing = block::qcow2_backing(&cur.file).map_err(|source| ChainError::Header {
            top: top(),
            image: image.clone(),
            source,
        })?;
        let Some(backing) = backing else { break };
        if chain.len() > MAX_BACKING_DEPTH {
            return Err(ChainError::TooDeep { top: top(), image });
        }
        let name = backing.name;
        let named = Path::new(&name);
        let not_a_file = || ChainError::NotAFile { top: top(), image: image.clone(), name: name.clone() };
        // `a/.` and `a/` would be read as `a` by Path; the VMM would open a directory.
        if name.ends_with('/') || name.ends_with("/.") || name == "." {
            return Err(not_a_file());
        }
        let joined = if named.is_absolute() { named.to_path_buf() } else { base.join(named) };
        let (Some(parent), Some(Component::Normal(file_name))) =
            (joined.parent(), joined.components().next_back())
        else {
            return Err(not_a_file());
        };
        // Where the kernel would find the directory (`..` and symlinks resolved); the file
        // itself is then opened beneath the pool that holds it.
        let dir = match std::fs::canonicalize(parent) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ChainError::Missing { top: top(), image, name, path: joined });
            }
            Err(source) => return Err(ChainError::Open { top: top(), path: joined, source }),
        };
        let path = dir.join(file_name);
        let Some(pool) = pools.iter().filter(|p| dir.starts_with(p)).max_by_key(|p| p.as_os_str().len())
        else {
            return Err(ChainError::OutsidePools { top: top(), image, name, path, pools: pools.to_vec() });
        };
        let rel = match dir.strip_prefix(pool) {
            Ok(r) => r.join(file_name),
            Err(_) => {
                return Err(ChainError::OutsidePools { top: top(), image, name, path, pools: pools.to_vec() })
            }
        };
        let file = match open_regular(pool, &rel, libc::O_RDONLY, true) {
            Ok(f) => f,
            Err(OpenFail::Escapes) => {
                return Err(ChainError::Escapes { top: top(), image, name, path, pool: pool.clone() });
            }
            Err(OpenFail::Missing) => return Err(ChainError::Missing { top: top(), image, name, path }),
            Err(OpenFail::NotRegular) => return Err(ChainError::NotRegular { top: top(), path }),
            Err(OpenFail::Io(source)) => return Err(ChainError::Open { top: top(), path, source }),
        };
        let key = id(&file, &path)?;
        if seen.contains(&key) {
            return Err(ChainError::Loop { top: top(), image, name, path });
        }
        seen.push(key);
        let real = safefs::fd_path(&file).map_err(|source| ChainError::Open {
            top: top(),
            path: path.clone(),
            source,
        })?;
        // The next relative name is resolved against this name's directory, as the VMM
        // does (not the symlink target's, if the name is a symlink within the pool).
        base = dir;
        format = backing.format;
        let lookup = match cur_lookup.parent() {
            Some(parent) if !named.is_absolute() => parent.join(named),
            _ => named.to_path_buf(),
        };
        chain.push(ChainFile { path: real, file, writable: false, lookup });
    }
    Ok(chain)
}

fn invalid(field: String, e: &ChainError) -> Problem {
    Problem { kind: ProblemKind::Invalid, field, message: e.to_string() }
}

/// The pool directory among `pools` holding `path` (the longest that does).
fn pool_of<'a>(pools: &'a [PathBuf], path: &Path) -> Option<&'a PathBuf> {
    pools.iter().filter(|p| inside(path, p).is_some()).max_by_key(|p| p.as_os_str().len())
}

/// Every host file the VM `def` reads, opened beneath its storage pool: each disk's and
/// CD-ROM's chain in the order of `def.disks` (see [`open_disk_chain`]), then the kernel and
/// the initramfs (read-only). `def`'s paths must already be resolved inside `pools` (as
/// `Daemon::resolve_paths` gives them); `pools` are the canonical pool directories. Every
/// failure is a problem naming its field (`disks[1].path`, `os.kernel`).
pub fn definition_files(def: &VmDef, pools: &[PathBuf]) -> Result<Vec<ChainFile>, Vec<Problem>> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let not_in_pool = |field: String, path: &Path| Problem {
        kind: ProblemKind::Invalid,
        field,
        message: format!("{} is not in a storage pool ({})", path.display(), list(pools)),
    };
    let mut pending = Vec::new();
    for (i, d) in def.disks.iter().enumerate() {
        let Some(path) = d.path.as_deref() else { continue };
        let field = format!("disks[{i}].path");
        match pool_of(pools, path) {
            None => problems.push(not_in_pool(field, path)),
            Some(pool) => match open_disk_chain(path, pool, pools, d.is_readonly()) {
                Ok(chain) => files.extend(chain),
                Err(e) => problems.push(invalid(field, &e)),
            },
        }
    }
    if let Os::Direct { kernel, initrd, .. } = &def.os {
        pending.push(("os.kernel".to_string(), kernel.as_path()));
        if let Some(i) = initrd {
            pending.push(("os.initrd".to_string(), i.as_path()));
        }
    }
    for (field, path) in pending {
        match pool_of(pools, path) {
            None => problems.push(not_in_pool(field, path)),
            Some(pool) => match open_pool_file(path, pool, false, false) {
                Ok(f) => files.push(f),
                Err(e) => problems.push(invalid(field, &e)),
            },
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(problems)
    }
}

impl Daemon {
    /// [`definition_files`] with the daemon's pools: every file the VM `def` (with paths as
    /// [`Daemon::resolve_paths`] gives them) reads from the host, opened beneath its pool,
    /// each disk's backing chain vetted.
    pub fn definition_files(&self, def: &VmDef) -> Result<Vec<ChainFile>, Vec<Problem>> {
        let pools = self.pools.list().map_err(|e| {
            vec![Problem {
                kind: ProblemKind::Invalid,
                field: "disks".into(),
                message: format!("cannot list pools: {e}"),
            }]
        })?;
        let dirs: Vec<PathBuf> = pools.iter().map(|p| p.dir().to_path_buf()).collect();
        definition_files(def, &dirs)
    }
}

#[cfg(test)]
mod tests;
