// SPDX-License-Identifier: Apache-2.0
//! Helpers for the image tests: scratch directories and the `qemu-img` / `qemu-io` cross-checks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A scratch directory removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory named after the test.
    pub(crate) fn new(name: &str) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("block-test-{}-{seq}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// `file` inside the directory.
    pub(crate) fn join(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// True if `tool` (`qemu-img`, `qemu-io`) runs; prints why the caller skips otherwise.
pub(crate) fn have(tool: &str, test: &str) -> bool {
    let ok = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIP {test}: {tool} not found (apt-get install qemu-utils)");
    }
    ok
}

/// Runs `tool args`, panicking with its output unless it succeeds; returns stdout.
pub(crate) fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `qemu-img check` must find the image clean (exit 0: no corruption, no leaks).
pub(crate) fn qemu_img_check(path: &Path) {
    run("qemu-img", &["check", path.to_str().unwrap()]);
}

/// The guest-visible contents of `path` as QEMU reads them (`qemu-img convert -O raw`).
pub(crate) fn qemu_img_contents(path: &Path, format: &str) -> Vec<u8> {
    let out = path.with_extension("converted");
    let _ = std::fs::remove_file(&out);
    run("qemu-img", &["convert", "-f", format, "-O", "raw", path.to_str().unwrap(), out.to_str().unwrap()]);
    let data = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    data
}

/// A deterministic, position-dependent byte pattern.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(u32::from(seed)) as u8).collect()
}
