// SPDX-License-Identifier: Apache-2.0
//! Caps each VMM's own log (`logs/<name>.vmm.log`, its stdout and stderr).
//!
//! The VMM holds the file open (`O_APPEND`) and outlives the daemon, so the log is rotated
//! the way logrotate's `copytruncate` does it: past `vmm_log_max_bytes` the rotated copies
//! move up (`.1` to `.2` ..., the oldest beyond `vmm_log_keep` dropped), the log is copied
//! to `.1` and truncated in place; the VMM's next write lands at the start. Output written
//! between the copy and the truncation is lost. The daemon checks every running VM's log
//! every [`CHECK_INTERVAL`] and before each start; a log may overshoot the cap by what the
//! VMM writes in that time. Every file is opened without following symlinks.

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Daemon;

/// How often the logs of running VMs are checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

fn numbered(log: &Path, n: u32) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// Rotates `log` if it is a regular file larger than `max` bytes, keeping `keep` rotated
/// copies; returns whether it did.
pub fn rotate_if_needed(log: &Path, max: u64, keep: u32) -> io::Result<bool> {
    let meta = match std::fs::symlink_metadata(log) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !meta.is_file() || meta.len() <= max {
        return Ok(false);
    }
    if keep > 0 {
        match std::fs::remove_file(numbered(log, keep)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for n in (1..keep).rev() {
            match std::fs::rename(numbered(log, n), numbered(log, n + 1)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let mut src = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(log)?;
        let mut dst = crate::safefs::create_truncate_nofollow(&numbered(log, 1), 0o640)?;
        io::copy(&mut src, &mut dst)?;
    }
    let f =
        std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(log)?;
    f.set_len(0)?;
    Ok(true)
}

impl Daemon {
    /// Rotates the VMM log of `name` if it is past the cap (logged, never fatal).
    pub(crate) fn cap_vmm_log(&self, name: &vmdef::VmName) {
        let s = &self.cfg.settings;
        let log = self.vmm_log_path(name);
        match rotate_if_needed(&log, s.vmm_log_max_bytes, s.vmm_log_keep) {
            Ok(true) => tracing::info!(vm = %name, "rotated {}", log.display()),
            Ok(false) => {}
            Err(e) => tracing::warn!(vm = %name, "cannot rotate {}: {e}", log.display()),
        }
    }

    /// Checks the VMM logs of the running VMs every [`CHECK_INTERVAL`], for as long as the
    /// daemon lives.
    pub fn spawn_log_capper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHECK_INTERVAL).await;
                let Some(d) = weak.upgrade() else { return };
                let names: Vec<vmdef::VmName> =
                    d.table().values().filter(|s| s.is_active()).map(|s| s.def.name.clone()).collect();
                let _ = tokio::task::spawn_blocking(move || {
                    for n in &names {
                        d.cap_vmm_log(n);
                    }
                })
                .await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_past_the_cap_keeping_n_copies() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("a.vmm.log");
        assert!(!rotate_if_needed(&log, 10, 3).unwrap(), "no log yet");
        // The VMM's descriptor: appending after the truncation lands at the start.
        let mut vmm = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        use std::io::Write;
        for round in 0..5u8 {
            vmm.write_all(&[b'a' + round; 20]).unwrap();
            assert!(rotate_if_needed(&log, 10, 3).unwrap());
            assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        }
        vmm.write_all(b"tail").unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), b"tail");
        assert!(!rotate_if_needed(&log, 10, 3).unwrap(), "under the cap");
        assert_eq!(std::fs::read(numbered(&log, 1)).unwrap(), [b'e'; 20]);
        assert_eq!(std::fs::read(numbered(&log, 2)).unwrap(), [b'd'; 20]);
        assert_eq!(std::fs::read(numbered(&log, 3)).unwrap(), [b'c'; 20]);
        assert!(!numbered(&log, 4).exists());
    }

    #[test]
    fn keep_zero_truncates_and_symlinks_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("b.vmm.log");
        std::fs::write(&log, [0u8; 100]).unwrap();
        assert!(rotate_if_needed(&log, 10, 0).unwrap());
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        assert!(!numbered(&log, 1).exists());
        // A symlink planted as the log, or as the rotated copy, is not written through.
        let victim = t.path().join("victim");
        std::fs::write(&victim, [1u8; 100]).unwrap();
        let link = t.path().join("c.vmm.log");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(!rotate_if_needed(&link, 10, 3).unwrap());
        std::fs::write(t.path().join("d.vmm.log"), [2u8; 100]).unwrap();
        std::os::unix::fs::symlink(&victim, numbered(&t.path().join("d.vmm.log"), 1)).unwrap();
        let _ = rotate_if_needed(&t.path().join("d.vmm.log"), 10, 1);
        assert_eq!(std::fs::read(&victim).unwrap(), [1u8; 100]);
    }
}
