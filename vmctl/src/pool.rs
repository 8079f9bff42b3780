// SPDX-License-Identifier: Apache-2.0
//! Directory storage pools: a pool is a host directory, its volumes are the image files in it.
//!
//! - [`Pool`]: one directory; creates, lists, resizes, clones and deletes volumes (raw or
//!   qcow2, through the `block` crate).
//! - [`Pools`]: the daemon's pools: `default` at `<state>/images/`, and one more per
//!   `<state>/pools/<name>.json` (`{"name": .., "path": ..}`).
//!
//! A clone is a qcow2 overlay whose backing file is the source, named relative to the pool
//! directory (the bare file name), so a pool can be moved as a whole. The source becomes a
//! template: a volume with overlays cannot be resized, nor deleted without `force` (its
//! clones would read garbage). Writes to a template would corrupt its clones; the daemon
//! refuses to start a VM that attaches one writable (see `Daemon::check_templates`).
//!
//! Creation is atomic: the image is built under a hidden temporary name in the pool directory
//! (`.NAME.tmp-PID-N`), fsynced, then linked to its name (never replacing an existing file)
//! and the directory fsynced; a failed creation removes the temporary file, and
//! [`Pool::remove_temp_files`] removes those a crash left behind. Hidden files (a leading
//! `.`) are never volumes.
//!
//! Which VMs use a volume is the daemon's business: this module knows only files.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use block::ImageFormat;
use serde::{Deserialize, Serialize};

/// Name of the pool every daemon has, at `<state>/images/`.
pub const DEFAULT_POOL: &str = "default";
/// Largest volume (64 TiB): beyond it qcow2 metadata and raw files get unwieldy.
pub const MAX_VOLUME_SIZE: u64 = 64 << 40;
/// Longest volume name, in bytes (leaves room for the temporary name's suffix).
pub const MAX_VOLUME_NAME: usize = 200;
/// Longest pool name.
pub const MAX_POOL_NAME: usize = 64;
/// Longest backing file name read from a qcow2 header (QEMU's limit).
const MAX_BACKING_NAME: u32 = 1023;

/// A failed pool operation, classed like the API's statuses.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Bad input: a name, size or path (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// No such pool or volume (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The name is taken, or the volume is a template or in use (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// The host failed (HTTP 500).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The image library failed (HTTP 500).
    #[error(transparent)]
    Image(block::Error),
}

/// Result of pool operations.
pub type Result<T, E = PoolError> = std::result::Result<T, E>;

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> PoolError {
    let what = what.to_string();
    move |source| PoolError::Io { what, source }
}

/// Classes an image error: growing by shrinking is bad input, a locked image is in use.
fn image_err(e: block::Error) -> PoolError {
    match e {
        block::Error::Shrink { size, new_size, .. } => PoolError::Invalid(format!(
            "size: {new_size} bytes is smaller than the volume's {size}; volumes can only grow"
        )),
        block::Error::Locked { path, .. } => PoolError::Conflict(format!(
            "{} is open in another process (a running VM?); stop it first",
            path.display()
        )),
        e => PoolError::Image(e),
    }
}

/// Checks a volume or pool name: 1 to `max` bytes of `[A-Za-z0-9_.-]`, not starting with
/// `.` (so never `.`, `..`, a hidden file or a path). `what` names the field in the error.
pub fn check_name(what: &str, name: &str, max: usize) -> Result<()> {
    let fix = "use letters, digits, '_', '-' and '.', not starting with '.'";
    if name.is_empty() {
        return Err(PoolError::Invalid(format!("{what}: empty; {fix}")));
    }
    if name.len() > max {
        return Err(PoolError::Invalid(format!("{what}: longer than {max} bytes")));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        return Err(PoolError::Invalid(format!("{what}: {name:?} contains {c:?}; {fix}")));
    }
    if name.starts_with('.') {
        return Err(PoolError::Invalid(format!("{what}: {name:?} starts with '.'; {fix}")));
    }
    Ok(())
}

/// Parses a size: bytes (`1048576`) or a number with a binary unit `K`, `M`, `G`, `T`
/// (optionally followed by `iB` or `B`; case-insensitive): `10G` is 10 GiB. The result must
/// pass [`check_size`].
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = || {
        PoolError::Invalid(format!(
            "size: {text:?} is not a size; give bytes or a number with K, M, G or T (e.g. 10G)"
        ))
    };
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = t[..digits].parse().map_err(|_| bad())?;
    let unit = t[digits..].trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix("ib").or_else(|| unit.strip_suffix('b')).unwrap_or(&unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad()),
    };
    let size = n.checked_mul(1 << shift).ok_or_else(|| {
        PoolError::Invalid(format!("size: {text} is too large; the limit is {MAX_VOLUME_SIZE} bytes"))
    })?;
    check_size(size)
}

/// Checks a volume size: more than 0, a multiple of 512 (the sector size), at most
/// [`MAX_VOLUME_SIZE`].
pub fn check_size(size: u64) -> Result<u64> {
    if size == 0 {
        return Err(PoolError::Invalid("size: 0; give a size such as 10G".into()));
    }
    if size % 512 != 0 {
        return Err(PoolError::Invalid(format!(
            "size: {size} bytes is not a multiple of 512 (the sector size); round it up to {}",
            size.div_ceil(512) * 512
        )));
    }
    if size > MAX_VOLUME_SIZE {
        return Err(PoolError::Invalid(format!(
            "size: {size} bytes is more than the limit of {MAX_VOLUME_SIZE} (64T)"
        )));
    }
    Ok(size)
}

/// What an image file's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Format (probed).
    pub format: ImageFormat,
    /// Size the guest sees, in bytes.
    pub virtual_size: u64,
    /// The backing file as the qcow2 header names it (relative names are relative to the
    /// image's directory).
    pub backing_file: Option<String>,
}

/// Reads the format, virtual size and backing file of the image at `path` without opening
/// its backing chain or taking its lock (so it works while a VM runs on it). The header is
/// untrusted: a bad backing file reference is ignored with a warning.
pub fn inspect(path: &Path) -> Result<ImageInfo> {
    let format = block::detect_format(path).map_err(PoolError::Image)?;
    let file = fs::File::open(path).map_err(io_err(format!("open {}", path.display())))?;
    let len = file.metadata().map_err(io_err(format!("stat {}", path.display())))?.len();
    if format == ImageFormat::Raw {
        return Ok(ImageInfo { format, virtual_size: len, backing_file: None });
    }
    let mut head = [0u8; 32];
    file.read_exact_at(&mut head, 0).map_err(io_err(format!("read the header of {}", path.display())))?;
    let be64 = |at: usize| u64::from_be_bytes(head[at..at + 8].try_into().unwrap_or([0; 8]));
    let backing_offset = be64(8);
    let backing_len = u32::from_be_bytes(head[16..20].try_into().unwrap_or([0; 4]));
    let virtual_size = be64(24);
    let mut backing_file = None;
    if backing_offset != 0 && backing_len != 0 {
        let fits = backing_offset.checked_add(u64::from(backing_len)).is_some_and(|end| end <= len);
        if backing_len > MAX_BACKING_NAME || !fits {
            tracing::warn!("{}: ignoring a bad backing file reference in its header", path.display());
        } else {
            let mut name = vec![0u8; backing_len as usize];
            file.read_exact_at(&mut name, backing_offset)
                .map_err(io_err(format!("read the backing file name of {}", path.display())))?;
            backing_file = Some(String::from_utf8_lossy(&name).into_owned());
        }
    }
    Ok(ImageInfo { format, virtual_size, backing_file })
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(format!("fsync {}", dir.display())))
}

/// Creates `dir/name` atomically: `make` builds the file at a temporary path in `dir`, which
/// is then linked to `name` (failing if that exists) and removed; the directory is fsynced.
/// On any failure nothing is left behind.
pub fn create_atomically(dir: &Path, name: &str, make: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let target = dir.join(name);
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = make(&tmp).and_then(|()| {
        fs::hard_link(&tmp, &target).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                PoolError::Conflict(format!("a volume named {name} already exists; pick another name"))
            } else {
                io_err(format!("link {} to {}", tmp.display(), target.display()))(e)
            }
        })
    });
    let _ = fs::remove_file(&tmp);
    result?;
    sync_dir(dir)?;
    Ok(target)
}

/// Copies `src` to the new file `dst` in 1 MiB blocks, seeking over blocks of zeros (holes
/// in the copy), then syncs it.
fn sparse_copy(src: &Path, dst: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut from = fs::File::open(src).map_err(io_err(format!("open {}", src.display())))?;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(io_err(format!("create {}", dst.display())))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = from.read(&mut buf).map_err(io_err(format!("read {}", src.display())))?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|&b| b == 0) {
            to.seek(SeekFrom::Current(n as i64)).map_err(io_err(format!("seek {}", dst.display())))?;
        } else {
            to.write_all(&buf[..n]).map_err(io_err(format!("write {}", dst.display())))?;
        }
        len += n as u64;
    }
    to.set_len(len).map_err(io_err(format!("size {}", dst.display())))?;
    to.sync_all().map_err(io_err(format!("sync {}", dst.display())))
}

/// A pool definition: `<state>/pools/<name>.json`, and the body of `POST /v1/pools`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolDef {
    /// Pool name.
    pub name: String,
    /// Absolute path of an existing directory.
    pub path: PathBuf,
}

/// A volume: one image file in a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// File name.
    pub name: String,
    /// Absolute path.
    pub path: PathBuf,
    /// What its header says.
    pub image: ImageInfo,
    /// Bytes the file occupies on the host (its allocated blocks).
    pub allocated: u64,
    /// The backing file resolved against the pool directory (canonical when it exists).
    pub backing_path: Option<PathBuf>,
    /// Volumes of the same pool whose backing file this one is (its linked clones).
    pub overlays: Vec<String>,
}

/// One directory of volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    name: String,
    dir: PathBuf,
}

impl Pool {
    /// The pool `name` in the existing directory `dir` (made canonical).
    pub fn open(name: &str, dir: &Path) -> Result<Pool> {
        check_name("pool name", name, MAX_POOL_NAME)?;
        let dir = fs::canonicalize(dir).map_err(|e| {
            PoolError::Invalid(format!("path: {}: {e}; create the directory first", dir.display()))
        })?;
        if !dir.is_dir() {
            return Err(PoolError::Invalid(format!("path: {} is not a directory", dir.display())));
        }
        Ok(Pool { name: name.to_string(), dir })
    }

    /// Name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of volume `name` (checked, not required to exist).
    pub fn volume_path(&self, name: &str) -> Result<PathBuf> {
        check_name("volume name", name, MAX_VOLUME_NAME)?;
        Ok(self.dir.join(name))
    }

    fn not_found(&self, name: &str) -> PoolError {
        PoolError::NotFound(format!("no volume named {name} in pool {}; see vmctl vol list", self.name))
    }

    /// Reads one volume, without its overlays.
    fn read(&self, name: &str) -> Result<Volume> {
        let path = self.volume_path(name)?;
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                return Err(PoolError::Invalid(format!("{} is not a regular file", path.display())));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.not_found(name)),
            Err(e) => return Err(io_err(format!("stat {}", path.display()))(e)),
        };
        let image = inspect(&path)?;
        let backing_path = image.backing_file.as_ref().map(|b| {
            let p = self.dir.join(b);
            fs::canonicalize(&p).unwrap_or(p)
        });
        Ok(Volume {
            name: name.to_string(),
            path,
            image,
            allocated: meta.blocks() * 512,
            backing_path,
            overlays: Vec::new(),
        })
    }

    /// Every volume, sorted by name, with its overlays. Hidden files, directories, symlinks
    /// and files that cannot be read are skipped (the last with a warning).
    pub fn list(&self) -> Result<Vec<Volume>> {
        let entries = fs::read_dir(&self.dir).map_err(io_err(format!("list {}", self.dir.display())))?;
        let mut vols = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(format!("list {}", self.dir.display())))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            if check_name("volume name", &name, MAX_VOLUME_NAME).is_err()
                || !entry.file_type().is_ok_and(|t| t.is_file())
            {
                continue;
            }
            match self.read(&name) {
                Ok(v) => vols.push(v),
                Err(e) => tracing::warn!(pool = %self.name, "skipping {name}: {e}"),
            }
        }
        vols.sort_by(|a, b| a.name.cmp(&b.name));
        let mut overlays: HashMap<PathBuf, Vec<String>> = HashMap::new();
        for v in &vols {
            if let Some(b) = &v.backing_path {
                overlays.entry(b.clone()).or_default().push(v.name.clone());
            }
        }
        for v in &mut vols {
            v.overlays = overlays.remove(&v.path).unwrap_or_default();
        }
        Ok(vols)
    }

    /// One volume, with its overlays.
    pub fn get(&self, name: &str) -> Result<Volume> {
        self.read(name)?;
        self.list()?.into_iter().find(|v| v.name == name).ok_or_else(|| self.not_found(name))
    }

    fn refuse_existing(&self, name: &str) -> Result<PathBuf> {
        let path = self.volume_path(name)?;
        if fs::symlink_metadata(&path).is_ok() {
            return Err(PoolError::Conflict(format!(
                "a volume named {name} already exists in pool {}; pick another name or delete it",
                self.name
            )));
        }
        Ok(path)
    }

    /// Creates an empty volume of `size` bytes (see [`check_size`]).
    pub fn create(&self, name: &str, size: u64, format: ImageFormat) -> Result<Volume> {
        self.refuse_existing(name)?;
        let size = check_size(size)?;
        create_atomically(&self.dir, name, |tmp| {
            match format {
                ImageFormat::Raw => block::create_raw(tmp, size),
                ImageFormat::Qcow2 => block::create_qcow2(tmp, size, None),
            }
            .map_err(image_err)
        })?;
        self.get(name)
    }

    /// Makes `new` a qcow2 overlay (a linked clone) of `src`, the same size, with `src` as
    /// its backing file; `src` becomes a template.
    pub fn clone_volume(&self, src: &str, new: &str) -> Result<Volume> {
        let source = self.read(src)?;
        self.refuse_existing(new)?;
        create_atomically(&self.dir, new, |tmp| {
            block::create_qcow2(tmp, source.image.virtual_size, Some((Path::new(src), source.image.format)))
                .map_err(image_err)
        })?;
        self.get(new)
    }

    /// Makes `new` a full copy of `src` (same format; a qcow2 overlay keeps its backing
    /// file). Runs of zeros are left as holes, so a sparse image stays sparse.
    pub fn copy_volume(&self, src: &str, new: &str) -> Result<Volume> {
        let source = self.read(src)?;
        self.refuse_existing(new)?;
        create_atomically(&self.dir, new, |tmp| sparse_copy(&source.path, tmp))?;
        self.get(new)
    }

    /// Grows a volume to `size` bytes; refused for a template (a volume with overlays).
    pub fn resize(&self, name: &str, size: u64) -> Result<Volume> {
        let vol = self.get(name)?;
        let size = check_size(size)?;
        if !vol.overlays.is_empty() {
            return Err(PoolError::Conflict(format!(
                "{name} is the template of {}; a template cannot be resized (delete its clones first)",
                vol.overlays.join(", ")
            )));
        }
        if size < vol.image.virtual_size {
            return Err(image_err(block::Error::Shrink {
                path: vol.path,
                size: vol.image.virtual_size,
                new_size: size,
            }));
        }
        // A child process forked elsewhere in this process holds copies of our descriptors
        // (and so their image locks) until it execs: a lock that goes away at once was that.
        let mut tries = 0;
        loop {
            match block::resize(&vol.path, size) {
                Err(block::Error::Locked { .. }) if tries < 5 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => break r.map_err(image_err)?,
            }
        }
        self.get(name)
    }

    /// Deletes a volume; a template (a volume with overlays) only with `force`, which leaves
    /// its clones unreadable.
    pub fn delete(&self, name: &str, force: bool) -> Result<()> {
        let vol = self.get(name)?;
        if !vol.overlays.is_empty() && !force {
            return Err(PoolError::Conflict(format!(
                "{name} is the backing file of {}; delete those first (or force, which breaks them)",
                vol.overlays.join(", ")
            )));
        }
        // Through the pool directory's descriptor: a path swapped meanwhile (a symlink put
        // in place of a directory) cannot make this remove a file elsewhere.
        let what = format!("remove {}", vol.path.display());
        let dir = crate::safefs::open_dir(&self.dir).map_err(io_err(&what))?;
        crate::safefs::unlink_in(&dir, name).map_err(io_err(&what))?;
        dir.sync_all().map_err(io_err(format!("fsync {}", self.dir.display())))
    }

    /// Removes temporary files left by creations a crash interrupted; returns them.
    pub fn remove_temp_files(&self) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(io_err(format!("list {}", self.dir.display())))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if is_temp_name(&name.to_string_lossy()) && entry.file_type().is_ok_and(|t| t.is_file()) {
                let p = entry.path();
                fs::remove_file(&p).map_err(io_err(format!("remove {}", p.display())))?;
                removed.push(p);
            }
        }
        Ok(removed)
    }
}

/// Directories no pool may be: the system's own, whose files a pool's `vol delete` or
/// `vol resize` would reach.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/var/cache",
    "/var/lib",
    "/var/log",
    "/var/mail",
    "/var/run",
    "/var/spool",
    "/var/tmp",
];
/// Trees no pool may be inside.
const SYSTEM_TREES: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
    "/sbin", "/sys", "/usr",
];

/// The state directory's own subdirectories, where no pool may be.
const STATE_PARTS: &[&str] = &["vms", "run", "logs", "pools", "networks", "netrun"];

/// Checks that the canonical directory `dir` may hold a pool: not a system directory, not
/// the state directory (nor a parent of it) or one of the daemon's own directories in it
/// (`vms/`, `run/`, `logs/`, ...), and under one of `roots` (canonical). The error names the
/// field `path`.
pub fn check_pool_dir(dir: &Path, state_dir: &Path, roots: &[PathBuf]) -> Result<()> {
    let shown = dir.display();
    if SYSTEM_DIRS.iter().any(|s| dir == Path::new(s)) || SYSTEM_TREES.iter().any(|s| dir.starts_with(s)) {
        return Err(PoolError::Invalid(format!(
            "path: {shown} is a system directory; a pool needs a directory of its own, such as /var/lib/rvmm/NAME"
        )));
    }
    if state_dir.starts_with(dir) || STATE_PARTS.iter().any(|p| dir.starts_with(state_dir.join(p))) {
        return Err(PoolError::Invalid(format!(
            "path: {shown} holds the daemon's state ({}); pick a directory of its own",
            state_dir.display()
        )));
    }
    if !roots.iter().any(|r| dir.starts_with(r)) {
        let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        return Err(PoolError::Invalid(format!(
            "path: {shown} is not under an allowed pool root ({}); add a root to pool_roots in the \
             daemon's configuration file (vmctld.json) to allow it",
            if list.is_empty() { "none exists".to_string() } else { list.join(", ") }
        )));
    }
    Ok(())
}

/// The pools of a state directory.
#[derive(Debug, Clone)]
pub struct Pools {
    images: PathBuf,
    defs: PathBuf,
    /// The state directory (canonical).
    state_dir: PathBuf,
    /// Where pools may be (canonical; roots that do not exist are left out).
    roots: Vec<PathBuf>,
}

impl Pools {
    /// The pools of `state_dir`, creating `images/` (the default pool) and `pools/`. Pools
    /// other than `default` may only be under `roots` (see [`check_pool_dir`]).
    pub fn open(state_dir: &Path, roots: &[PathBuf]) -> Result<Pools> {
        let images = state_dir.join("images");
        let defs = state_dir.join("pools");
        for dir in [&images, &defs] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(io_err(format!("create {}", dir.display())))?;
        }
        let state =
            fs::canonicalize(state_dir).map_err(io_err(format!("resolve {}", state_dir.display())))?;
        let roots = roots.iter().filter_map(|r| fs::canonicalize(r).ok()).collect();
        Ok(Pools { images, defs, state_dir: state, roots })
    }

    /// The canonical directories pools may be under.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Where the definition of pool `name` is stored.
    pub fn def_path(&self, name: &str) -> PathBuf {
        self.defs.join(format!("{name}.json"))
    }

    fn load(&self, name: &str) -> Result<Pool> {
        check_name("pool name", name, MAX_POOL_NAME)?;
        if name == DEFAULT_POOL {
            return Pool::open(DEFAULT_POOL, &self.images);
        }
        let file = self.def_path(name);
        let text = match fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PoolError::NotFound(format!("no pool named {name}; see vmctl pool list")));
            }
            Err(e) => return Err(io_err(format!("read {}", file.display()))(e)),
        };
        let def: PoolDef = serde_json::from_str(&text)
            .map_err(|e| PoolError::Invalid(format!("{}: {e}", file.display())))?;
        if def.name != name {
            return Err(PoolError::Invalid(format!(
                "{}: its name is {:?}, not {name:?}",
                file.display(),
                def.name
            )));
        }
        let pool =
            Pool::open(name, &def.path).map_err(|e| PoolError::Invalid(format!("pool {name}: {e}")))?;
        check_pool_dir(&pool.dir, &self.state_dir, &self.roots)
            .map_err(|e| PoolError::Invalid(format!("pool {name} ({}): {e}", file.display())))?;
        Ok(pool)
    }

    /// Pool `name`.
    pub fn get(&self, name: &str) -> Result<Pool> {
        self.load(name)
    }

    /// Every pool: `default` first, then the defined ones by name. A definition that does
    /// not load (bad JSON, a missing directory) is skipped with a warning.
    pub fn list(&self) -> Result<Vec<Pool>> {
        let mut names = Vec::new();
        let entries = fs::read_dir(&self.defs).map_err(io_err(format!("list {}", self.defs.display())))?;
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = file.strip_suffix(".json") {
                if check_name("pool name", stem, MAX_POOL_NAME).is_ok() && stem != DEFAULT_POOL {
                    names.push(stem.to_string());
                }
            }
        }
        names.sort();
        let mut pools = vec![self.load(DEFAULT_POOL)?];
        for n in names {
            match self.load(&n) {
                Ok(p) => pools.push(p),
                Err(e) => tracing::warn!("skipping pool {n}: {e}"),
            }
        }
        Ok(pools)
    }

    /// Stores a new pool definition. The path must be an absolute, existing directory that
    /// no other pool uses.
    pub fn define(&self, def: &PoolDef) -> Result<Pool> {
        check_name("name", &def.name, MAX_POOL_NAME)?;
        if def.name == DEFAULT_POOL || self.def_path(&def.name).exists() {
            return Err(PoolError::Conflict(format!(
                "a pool named {} already exists; pick another name",
                def.name
            )));
        }
        if !def.path.is_absolute() {
            return Err(PoolError::Invalid(format!(
                "path: {} is relative; give an absolute path",
                def.path.display()
            )));
        }
        let pool = Pool::open(&def.name, &def.path)?;
        check_pool_dir(&pool.dir, &self.state_dir, &self.roots)?;
        if let Some(other) = self.list()?.into_iter().find(|p| p.dir == pool.dir) {
            return Err(PoolError::Conflict(format!(
                "path: pool {} already uses {}",
                other.name,
                pool.dir.display()
            )));
        }
        let stored = PoolDef { name: def.name.clone(), path: pool.dir.clone() };
        let json = serde_json::to_vec_pretty(&stored).map_err(|e| PoolError::Invalid(e.to_string()))?;
        let file = self.def_path(&def.name);
        vmdef::store::write_atomic(&file, &json).map_err(io_err(format!("write {}", file.display())))?;
        Ok(pool)
    }

    /// Removes a pool definition; its directory and volumes stay. `default` cannot go.
    pub fn undefine(&self, name: &str) -> Result<()> {
        check_name("pool name", name, MAX_POOL_NAME)?;
        if name == DEFAULT_POOL {
            return Err(PoolError::Conflict("the default pool cannot be undefined".into()));
        }
        let file = self.def_path(name);
        match vmdef::store::remove_durable(&file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(PoolError::NotFound(format!("no pool named {name}; see vmctl pool list")))
            }
            Err(e) => Err(io_err(format!("remove {}", file.display()))(e)),
        }
    }

    /// Removes the temporary files interrupted creations left in every pool, and those of
    /// interrupted pool definitions.
    pub fn remove_temp_files(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        for entry in fs::read_dir(&self.defs).into_iter().flatten().flatten() {
            if is_temp_name(&entry.file_name().to_string_lossy()) && fs::remove_file(entry.path()).is_ok() {
                removed.push(entry.path());
            }
        }
        for pool in self.list().unwrap_or_default() {
            match pool.remove_temp_files() {
                Ok(r) => removed.extend(r),
                Err(e) => tracing::warn!(pool = %pool.name, "{e}"),
            }
        }
        removed
    }
}

#[cfg(test)]
pub(crate) mod tests;
