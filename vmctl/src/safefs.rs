// SPDX-License-Identifier: Apache-2.0
//! File operations that symlinks cannot lead astray, for a daemon that runs as root.
//!
//! - [`open_beneath`]: opens a path relative to a directory without leaving it, through
//!   `openat2(2)` with `RESOLVE_BENEATH` (symlinks inside the directory are followed, `..`
//!   or a symlink that leaves it fails with `EXDEV`). On a kernel without `openat2` (before
//!   5.6) every component is opened with `O_NOFOLLOW` instead, so no symlink is followed.
//! - [`open_append_nofollow`]: the daemon's own files (logs, the audit log): created or
//!   appended to, never through a symlink, never anything but a regular file.
//! - [`unlink_in`]: removes a name from a directory given by its descriptor (`unlinkat`).
//! - [`fd_path`]: the path the kernel gives an open file.
//! - [`lexical_abs`]: an absolute path without `.`, `..` or empty components.
//! - [`write_atomic`]: replaces a small file (the users file, a generated key) atomically,
//!   with a given mode.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Errors of these helpers are plain `io::Error`s; a path that would leave its directory is
/// `EXDEV` (as `openat2` reports it) and a symlink where none may be is `ELOOP`.
fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte"))
}

/// Opens `dir` as a directory, refusing a symlink as its last component.
pub fn open_dir(dir: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
}

/// Checks that `rel` is relative and has only normal components (no `..`, `.` or root).
fn check_relative(rel: &Path) -> io::Result<()> {
    let ok = rel.components().next().is_some() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(libc::EXDEV))
    }
}

/// `struct open_how` of `openat2(2)` (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `rel` beneath the directory `dir` with `flags` (`O_CLOEXEC` is added), never
/// resolving outside `dir`: `..` and absolute symlinks that leave it fail with `EXDEV`.
/// Without `openat2` (kernels before 5.6) no symlink is followed at all (`ELOOP`).
pub fn open_beneath(dir: &File, rel: &Path, flags: libc::c_int) -> io::Result<File> {
    check_relative(rel)?;
    let path = cstring(rel)?;
    let how = OpenHow {
        flags: u64::try_from(flags | libc::O_CLOEXEC)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `path` is a NUL-terminated string and `how` a properly initialised open_how
    // that outlive the call; the size passed is that of `how`. The kernel only reads them.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd >= 0 {
        let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        return Ok(unsafe { File::from_raw_fd(fd) });
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ENOSYS) {
        return Err(err);
    }
    open_nofollow_walk(dir, rel, flags)
}

/// The fallback of [`open_beneath`]: one `openat` per component, none of them a symlink.
fn open_nofollow_walk(dir: &File, rel: &Path, flags: libc::c_int) -> io::Result<File> {
    let comps: Vec<_> = rel.components().collect();
    let mut cur: Option<File> = None;
    for (i, c) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let name = cstring(Path::new(c.as_os_str()))?;
        let f =
            if last { flags | libc::O_NOFOLLOW } else { libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW };
        let at = cur.as_ref().unwrap_or(dir).as_raw_fd();
        // SAFETY: `name` is NUL-terminated and outlives the call; `at` is an open directory.
        let fd = unsafe { libc::openat(at, name.as_ptr(), f | libc::O_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        cur = Some(unsafe { File::from_raw_fd(fd) });
    }
    cur.ok_or_else(|| io::Error::from_raw_os_error(libc::EXDEV))
}

/// Opens (creating with `mode` if needed) `path` for appending, without following a symlink
/// as its last component, and refuses anything but a regular file (a FIFO, a device). The
/// open does not block on a FIFO.
pub fn open_append_nofollow(path: &Path, mode: u32) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    regular(&file, path)?;
    clear_nonblock(&file)?;
    Ok(file)
}

/// Opens `path` for writing, truncated (creating it with `mode`), like
/// [`open_append_nofollow`] otherwise.
pub fn create_truncate_nofollow(path: &Path, mode: u32) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    regular(&file, path)?;
    clear_nonblock(&file)?;
    file.set_len(0)?;
    Ok(file)
}

fn regular(file: &File, path: &Path) -> io::Result<()> {
    if file.metadata()?.is_file() {
        Ok(())
    } else {
        Err(io::Error::other(format!("{} is not a regular file", path.display())))
    }
}

/// Clears `O_NONBLOCK` on an open file (opened with it so that a FIFO could not block).
pub fn clear_nonblock(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if fl < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads a small regular file (at most `limit` bytes) without following a symlink as its
/// last component. `Ok(None)` if it does not exist.
pub fn read_small_file(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    regular(&file, path)?;
    if file.metadata()?.len() > limit {
        return Err(io::Error::other(format!("{} is larger than {limit} bytes", path.display())));
    }
    let mut buf = Vec::new();
    file.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::other(format!("{} is larger than {limit} bytes", path.display())));
    }
    Ok(Some(buf))
}

/// Removes the file `name` (one component) from the directory `dir` (`unlinkat`), so a
/// path swapped meanwhile cannot make it remove something elsewhere.
pub fn unlink_in(dir: &File, name: &str) -> io::Result<()> {
    check_relative(Path::new(name))?;
    if Path::new(name).components().count() != 1 {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir).map_err(io::Error::from)
}

/// The path of an open file as the kernel names it (`/proc/self/fd/N`).
pub fn fd_path(file: &File) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// `path` if it is absolute and has no `.`, `..` or repeated separators that matter: the
/// components are rebuilt, and `None` is returned for relative paths or any `..`.
pub fn lexical_abs(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    let mut comps = path.components();
    if comps.next() != Some(Component::RootDir) {
        return None;
    }
    for c in comps {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Replaces `path` with `bytes` atomically and durably, the file getting `mode` (whatever
/// the umask): a temporary file `.<name>.tmp-<pid>-<n>` beside it is created (never through a
/// symlink), written, fsynced and renamed over `path`, then the directory is fsynced. A
/// reader sees the old content or the new, never a part; on failure the old file stays.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// Removes the temporary files [`write_atomic`] left in `dir` for `name` (a write that was
/// interrupted); returns their paths.
pub fn remove_atomic_leftovers(dir: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| std::fs::remove_file(e.path()).ok().map(|()| e.path()))
        .collect()
}

/// Makes a directory (and its parents) and sets its mode; an existing one keeps its mode.
pub fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    if std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn open_beneath_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let pool = t.path().join("pool");
        std::fs::create_dir_all(pool.join("sub")).unwrap();
        std::fs::write(pool.join("a.img"), b"a").unwrap();
        std::fs::write(pool.join("sub/b.img"), b"b").unwrap();
        std::fs::write(t.path().join("secret"), b"s").unwrap();
        symlink("a.img", pool.join("inside")).unwrap();
        symlink(t.path().join("secret"), pool.join("abs-out")).unwrap();
        symlink("../secret", pool.join("rel-out")).unwrap();
        symlink("/etc", pool.join("etc")).unwrap();
        let dir = open_dir(&pool).unwrap();
        let rd = libc::O_RDONLY;
        assert!(open_beneath(&dir, Path::new("a.img"), rd).is_ok());
        assert!(open_beneath(&dir, Path::new("sub/b.img"), rd).is_ok());
        for bad in ["abs-out", "rel-out", "etc/passwd", "../secret", "/etc/passwd", "sub/../a.img", ""] {
            assert!(open_beneath(&dir, Path::new(bad), rd).is_err(), "{bad} opened");
        }
        // A symlink within the directory is fine with openat2 (the fallback refuses it).
        if let Ok(f) = open_beneath(&dir, Path::new("inside"), rd) {
            assert_eq!(fd_path(&f).unwrap(), std::fs::canonicalize(pool.join("a.img")).unwrap());
        }
        let walked = open_nofollow_walk(&dir, Path::new("sub/b.img"), rd).unwrap();
        assert!(fd_path(&walked).unwrap().ends_with("pool/sub/b.img"));
        assert!(open_nofollow_walk(&dir, Path::new("inside"), rd).is_err());
        assert!(open_nofollow_walk(&dir, Path::new("etc/passwd"), rd).is_err());
    }

    #[test]
    fn append_and_create_refuse_symlinks_and_fifos() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("authorized_keys");
        std::fs::write(&victim, b"key\n").unwrap();
        let link = t.path().join("vm.log");
        symlink(&victim, &link).unwrap();
        assert!(open_append_nofollow(&link, 0o600).is_err());
        assert!(create_truncate_nofollow(&link, 0o600).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"key\n");
        let fifo = t.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(open_append_nofollow(&fifo, 0o600).is_err(), "a FIFO is not a log");
        let log = t.path().join("ok.log");
        use std::io::Write;
        open_append_nofollow(&log, 0o600).unwrap().write_all(b"x").unwrap();
        open_append_nofollow(&log, 0o600).unwrap().write_all(b"y").unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), b"xy");
        create_truncate_nofollow(&log, 0o600).unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), b"");
    }

    #[test]
    fn unlink_in_removes_one_name_only() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("v.img"), b"").unwrap();
        let dir = open_dir(t.path()).unwrap();
        for bad in ["../x", "/etc/passwd", "a/b", ".."] {
            assert!(unlink_in(&dir, bad).is_err(), "{bad}");
        }
        unlink_in(&dir, "v.img").unwrap();
        assert!(!t.path().join("v.img").exists());
    }

    #[test]
    fn small_files_and_lexical_paths() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("c.json");
        assert_eq!(read_small_file(&f, 10).unwrap(), None);
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_small_file(&f, 10).unwrap().unwrap(), b"12345");
        assert!(read_small_file(&f, 4).is_err());
        symlink(&f, t.path().join("l")).unwrap();
        assert!(read_small_file(&t.path().join("l"), 10).is_err());
        assert_eq!(lexical_abs(Path::new("/a/./b//c")), Some(PathBuf::from("/a/b/c")));
        assert_eq!(lexical_abs(Path::new("/a/../etc")), None);
        assert_eq!(lexical_abs(Path::new("a/b")), None);
    }
}
