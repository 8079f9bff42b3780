// SPDX-License-Identifier: Apache-2.0
//! Files the vmm writes by path (the exit-status file, screen dumps, a serial log), written so
//! that a symlink planted at the path or at its temporary name cannot redirect the write to
//! another file: temporaries are created exclusively (`O_EXCL`) without following symlinks
//! (`O_NOFOLLOW`) and renamed over the path (a rename replaces a symlink itself, never its
//! target); a log is opened with `O_NOFOLLOW` (unless it was handed over as a descriptor) and
//! must be a regular file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `bytes` (mode 0640): a new temporary file beside it, synced, renamed
/// over it, and the directory synced when `durable`. A reader never sees half a file.
pub fn replace(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.tmp-{}-{n}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Opens `path` for appending (created 0640 if absent) without following a symlink; anything
/// but a regular file or a character device (`/dev/null`, a serial line) is refused: a FIFO,
/// a socket, a block device, a directory. A log handed over as a descriptor
/// ([`block::host_files`]) is used instead of the path; it must have been opened for writing.
pub fn open_log(path: &Path) -> io::Result<File> {
    let f = match block::host_files::lookup(path, block::host_files::Access::Write)? {
        Some(f) => f,
        None => open_log_path(path)?,
    };
    let ft = f.metadata()?.file_type();
    if !ft.is_file() && !ft.is_char_device() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file (or a character device such as /dev/null)", path.display()),
        ));
    }
    // O_NONBLOCK was only for the open (a FIFO without a reader): writes block as usual.
    // SAFETY: F_SETFL on a descriptor this function owns; no memory is passed.
    if unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_SETFL, libc::O_APPEND) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}

/// The open of [`open_log`] by path.
fn open_log_path(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ELOOP) => io::Error::new(
                    e.kind(),
                    format!("{} is a symbolic link; name the file itself", path.display()),
                ),
                // O_NONBLOCK: a FIFO without a reader fails at once instead of blocking.
                Some(libc::ENXIO) => io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a regular file", path.display()),
                ),
                _ => e,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_never_writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("authorized_keys");
        fs::write(&victim, "ssh-ed25519 AAAA\n").unwrap();
        let path = dir.path().join("screen.txt");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        replace(&path, b"guest text\n", false).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "ssh-ed25519 AAAA\n", "the target is untouched");
        assert_eq!(fs::read_to_string(&path).unwrap(), "guest text\n");
        assert!(!fs::symlink_metadata(&path).unwrap().file_type().is_symlink(), "the link was replaced");
        replace(&path, b"again\n", true).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "again\n");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).collect();
        assert_eq!(leftovers.len(), 2, "no temporary files left");
    }

    #[test]
    fn logs_are_regular_files_opened_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "root only\n").unwrap();
        let link = dir.path().join("serial.log");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = open_log(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let fifo = dir.path().join("fifo");
        nix_mkfifo(&fifo);
        assert!(open_log(&fifo).unwrap_err().to_string().contains("not a regular file"));
        open_log(Path::new("/dev/null")).unwrap().write_all(b"discarded").unwrap();
        assert!(open_log(dir.path()).is_err(), "a directory");
        let log = dir.path().join("ok.log");
        open_log(&log).unwrap().write_all(b"a").unwrap();
        open_log(&log).unwrap().write_all(b"b").unwrap();
        assert_eq!(fs::read_to_string(&log).unwrap(), "ab");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "root only\n");
    }

    #[test]
    fn a_handed_over_log_is_used_instead_of_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let (log, kept) = (dir.path().join("serial.log"), dir.path().join("kept.log"));
        fs::write(&log, "boot\n").unwrap();
        block::host_files::register(&log, OpenOptions::new().append(true).open(&log).unwrap()).unwrap();
        fs::rename(&log, &kept).unwrap();
        open_log(&log).unwrap().write_all(b"more\n").unwrap();
        assert_eq!(fs::read_to_string(&kept).unwrap(), "boot\nmore\n", "appended through the descriptor");
        assert!(!log.exists(), "nothing created at the path");
        let ro = dir.path().join("ro.log");
        fs::write(&ro, "").unwrap();
        block::host_files::register(&ro, File::open(&ro).unwrap()).unwrap();
        let e = open_log(&ro).unwrap_err();
        assert!(e.to_string().contains("was handed read-only"), "{e}");
    }

    fn nix_mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
}
