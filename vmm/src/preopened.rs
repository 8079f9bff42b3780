// SPDX-License-Identifier: Apache-2.0
//! `--preopened PATH=FD` (JSON `preopened`): files the parent opened for the vmm, taken over
//! into [`block::host_files`] before anything else is opened. From then on, every open of a
//! host file by path goes through the registry: disk images and their qcow2 backing chains,
//! the ISO, the kernel and initramfs, the firmware and option ROMs, and a `--serial file:` log.

use std::os::fd::RawFd;
use std::path::PathBuf;

use api::config::PreopenedFile;
use block::host_files;

use crate::config::ConfigError;

/// The field named in errors (the flag is `--preopened`).
pub const FIELD: &str = "preopened";

/// Checks `files` and takes their descriptors over: each path absolute and given once, each
/// descriptor 3 or above, open and given once. On an error, nothing is taken and the error
/// names the field and what to hand over instead.
///
/// # Safety
///
/// The descriptors must be inherited ones that nothing else in the process owns: call this
/// before the process opens files of its own (see [`host_files::adopt_inherited`]).
pub unsafe fn adopt(files: &[PreopenedFile]) -> Result<(), ConfigError> {
    let entries: Vec<(PathBuf, RawFd)> = files.iter().map(|f| (f.path.clone(), f.fd)).collect();
    // SAFETY: the caller's contract is this function's.
    unsafe { host_files::adopt_inherited(&entries) }.map_err(|e| ConfigError::new(FIELD, e.to_string()))?;
    for f in files {
        log::debug!("{} is descriptor {}", f.path.display(), f.fd);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write;
    use std::os::fd::{AsRawFd, IntoRawFd};

    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        File::create(&path).unwrap().write_all(bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        let (_dir, path) = temp_file("disk.img", b"disk");
        let held = File::open(&path).unwrap();
        let fd = held.as_raw_fd();
        let entry = |path: &str, fd| PreopenedFile { path: path.into(), fd };
        let abs = path.to_str().unwrap();
        let cases = [
            (vec![entry("disk.img", fd)], "must be absolute"),
            (vec![entry(abs, 1)], "3 or above"),
            (vec![entry(abs, RawFd::MAX - 1)], "is not open"),
            (vec![entry(abs, fd), entry(abs, fd)], "given twice"),
            (vec![entry(abs, fd), entry("/other.iso", fd)], "a descriptor of its own"),
        ];
        for (files, want) in cases {
            // SAFETY: every case is refused before a descriptor is taken: `held` keeps its own.
            let e = unsafe { adopt(&files) }.unwrap_err();
            assert_eq!(e.field, FIELD);
            assert!(e.problem.contains(want), "{e}");
            assert!(e.to_string().starts_with("preopened: "), "{e}");
        }
        assert!(!host_files::is_registered(&path));
        assert_eq!(held.metadata().unwrap().len(), 4, "still open and ours");
    }

    #[test]
    fn a_taken_over_kernel_validates_after_its_path_is_gone() {
        let mut k = vec![0u8; 0x300];
        k[0x202..0x206].copy_from_slice(b"HdrS");
        let (dir, path) = temp_file("bzImage", &k);
        let fd = File::open(&path).unwrap().into_raw_fd();
        // SAFETY: `fd` was released by `into_raw_fd`; nothing else owns it.
        unsafe { adopt(&[PreopenedFile { path: path.clone(), fd }]) }.unwrap();
        drop(dir);
        assert!(!path.exists());
        let file = api::VmConfigFile { kernel: Some(path.clone()), ..Default::default() };
        let limits = crate::config::HostLimits { max_vcpus: 1, host_memory: 1 << 30 };
        let c = crate::config::VmConfig::validate(file, limits).unwrap();
        assert_eq!(c.kernel, Some(path));
    }
}
