// SPDX-License-Identifier: Apache-2.0
//! The registry of handed-over descriptors: hits, misses, access modes, refused entries, and a
//! qcow2 backing chain opened through it after its directory is gone.
//!
//! The registry is process-wide: every test registers paths of its own scratch directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use super::*;
use crate::test_util::{pattern, TempDir};
use crate::{create_qcow2, open_image, ImageFormat};

/// A file at `path` holding `bytes`.
fn file_with(path: &Path, bytes: &[u8]) {
    File::create(path).unwrap().write_all(bytes).unwrap();
}

/// `e` and its sources, joined.
fn chain_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `path` opened with `options` and registered; the path is then removed, so only the
/// registry can reach the file.
fn register_then_unlink(path: &Path, options: &OpenOptions) {
    register(path, options.open(path).unwrap()).unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_hit_is_the_same_file_rewound_to_the_start() {
    let dir = TempDir::new("hit");
    let path = dir.join("kernel");
    file_with(&path, b"0123456789");
    let mut original = File::open(&path).unwrap();
    let (ino, dev) = (original.metadata().unwrap().ino(), original.metadata().unwrap().dev());
    let kept = original.try_clone().unwrap();
    register(&path, original.try_clone().unwrap()).unwrap();
    original.seek(SeekFrom::Start(7)).unwrap();
    drop(original);
    std::fs::remove_file(&path).unwrap();

    let mut f = open(&path, Access::Read).unwrap();
    let meta = f.metadata().unwrap();
    assert_eq!((meta.ino(), meta.dev()), (ino, dev), "the registered file, not another");
    assert_eq!(f.stream_position().unwrap(), 0, "rewound like a fresh open");
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    assert_eq!(text, "0123456789");
    assert_ne!(f.as_raw_fd(), kept.as_raw_fd(), "a new descriptor");
    // SAFETY: F_GETFD on a descriptor `f` owns.
    let fd_flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFD) };
    assert_eq!(fd_flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);

    // read() and metadata() do not depend on the shared offset.
    (&kept).seek(SeekFrom::End(0)).unwrap();
    assert_eq!(read(&path).unwrap(), b"0123456789");
    assert_eq!(metadata(&path).unwrap().ino(), ino);
    assert!(is_registered(&path));
    // `//` and `.` components name the same path.
    let spelled = PathBuf::from(format!("{}//./kernel", path.parent().unwrap().display()));
    assert_eq!(read(&spelled).unwrap(), b"0123456789");
}

#[test]
fn a_miss_opens_the_path() {
    let dir = TempDir::new("miss");
    let path = dir.join("plain.img");
    file_with(&path, b"abc");
    assert!(!is_registered(&path));
    assert_eq!(read(&path).unwrap(), b"abc");
    open(&path, Access::ReadWrite).unwrap().write_all(b"X").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"Xbc");
    assert_eq!(metadata(&path).unwrap().len(), 3);
    let gone = dir.join("absent");
    assert_eq!(open(&gone, Access::Read).unwrap_err().kind(), io::ErrorKind::NotFound);
    assert!(lookup(&gone, Access::Read).unwrap().is_none());
}

#[test]
fn the_access_mode_of_the_handed_descriptor_is_enforced() {
    let dir = TempDir::new("access");
    let ro = dir.join("base.img");
    file_with(&ro, b"base");
    register_then_unlink(&ro, OpenOptions::new().read(true));
    for access in [Access::ReadWrite, Access::Write] {
        let e = open(&ro, access).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let msg = e.to_string();
        assert!(msg.contains(&ro.display().to_string()) && msg.contains("was handed read-only"), "{msg}");
    }
    open(&ro, Access::Read).unwrap();

    let wo = dir.join("serial.log");
    file_with(&wo, b"");
    register_then_unlink(&wo, OpenOptions::new().append(true));
    let e = open(&wo, Access::Read).unwrap_err();
    assert!(e.to_string().contains("was handed write-only"), "{e}");
    open(&wo, Access::Write).unwrap().write_all(b"line\n").unwrap();

    let rw = dir.join("disk.img");
    file_with(&rw, b"disk");
    register_then_unlink(&rw, OpenOptions::new().read(true).write(true));
    for access in [Access::Read, Access::Write, Access::ReadWrite] {
        open(&rw, access).unwrap();
    }
}

#[test]
fn bad_entries_are_refused_and_nothing_is_taken() {
    let dir = TempDir::new("refused");
    let path = dir.join("a.img");
    file_with(&path, b"a");
    let other = dir.join("b.img");
    file_with(&other, b"b");
    let a = File::open(&path).unwrap();
    let b = File::open(&other).unwrap();
    let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
    let refuse = |entries: &[(PathBuf, RawFd)]| {
        // SAFETY: each entry is refused before anything is taken: `a` and `b` keep their
        // descriptors (checked below), and the other numbers are not open.
        unsafe { adopt_inherited(entries) }.unwrap_err()
    };
    let e = refuse(&[(PathBuf::from("images/a.img"), fa)]);
    assert!(matches!(e, Error::RelativePath { .. }) && e.to_string().contains("absolute"), "{e}");
    let e = refuse(&[(path.clone(), 2)]);
    assert!(matches!(e, Error::StdioFd { .. }) && e.to_string().contains("3 or above"), "{e}");
    let e = refuse(&[(path.clone(), RawFd::MAX - 1)]);
    assert!(matches!(e, Error::NotOpen { .. }) && e.to_string().contains("not open"), "{e}");
    let e = refuse(&[(path.clone(), fa), (path.clone(), fb)]);
    assert!(matches!(e, Error::DuplicatePath { .. }) && e.to_string().contains("twice"), "{e}");
    let e = refuse(&[(path.clone(), fa), (other.clone(), fa)]);
    assert!(matches!(e, Error::DuplicateFd { .. }), "{e}");
    // A valid entry before a bad one is not taken either.
    refuse(&[(path.clone(), fa), (other.clone(), RawFd::MAX - 1)]);
    assert!(!is_registered(&path) && !is_registered(&other));
    let o_path = OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(&path).unwrap();
    let e = register(&path, o_path).unwrap_err();
    assert!(matches!(e, Error::PathOnly { .. }), "{e}");
    // Both descriptors are still ours and open.
    assert_eq!(a.metadata().unwrap().len(), 1);
    assert_eq!(b.metadata().unwrap().len(), 1);
}

#[test]
fn inherited_descriptors_are_taken_over_close_on_exec() {
    let dir = TempDir::new("adopt");
    let path = dir.join("vmlinuz");
    file_with(&path, b"kernel");
    let fd = File::open(&path).unwrap().into_raw_fd();
    // SAFETY: F_SETFD on the descriptor just released by `into_raw_fd`.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0, "as a parent hands it over");
    // SAFETY: `fd` was released by `into_raw_fd` above; nothing else owns it.
    unsafe { adopt_inherited(&[(path.clone(), fd)]) }.unwrap();
    // SAFETY: F_GETFD on a descriptor the registry owns for the rest of the process.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(read(&path).unwrap(), b"kernel");
    let again = File::open(dir.join("..")).unwrap().into_raw_fd();
    // SAFETY: refused (the path is registered) before `again` is taken; closed below.
    let e = unsafe { adopt_inherited(&[(path.clone(), again)]) }.unwrap_err();
    assert!(matches!(e, Error::DuplicatePath { .. }), "{e}");
    // SAFETY: `again` was released by `into_raw_fd` and not taken.
    drop(unsafe { OwnedFd::from_raw_fd(again) });
}

/// A raw base, a qcow2 middle layer with data of its own and a qcow2 top in `dir`; returns
/// the paths (base, middle, top) and the contents the top should read.
fn chain(dir: &TempDir) -> ([PathBuf; 3], Vec<u8>) {
    const SIZE: usize = 1 << 20;
    let (base, mid, top) = (dir.join("base.raw"), dir.join("mid.qcow2"), dir.join("top.qcow2"));
    let mut want = pattern(SIZE, 3);
    std::fs::write(&base, &want).unwrap();
    create_qcow2(&mid, SIZE as u64, Some((Path::new("base.raw"), ImageFormat::Raw))).unwrap();
    let mid_data = pattern(4096, 9);
    open_image(&mid, None, false).unwrap().write_at(65536, &mid_data).unwrap();
    want[65536..65536 + 4096].copy_from_slice(&mid_data);
    create_qcow2(&top, SIZE as u64, Some((&mid, ImageFormat::Qcow2))).unwrap();
    ([base, mid, top], want)
}

#[test]
fn a_qcow2_backing_chain_opens_through_the_registry_once_its_paths_are_gone() {
    let dir = TempDir::new("chain");
    let ([base, mid, top], want) = chain(&dir);
    // As the parent hands them over: the backing files read-only, the top read-write.
    let read_only = OpenOptions::new().read(true).clone();
    register(&base, read_only.open(&base).unwrap()).unwrap();
    register(&mid, read_only.open(&mid).unwrap()).unwrap();
    register(&top, OpenOptions::new().read(true).write(true).open(&top).unwrap()).unwrap();
    let moved = TempDir::new("chain-moved");
    std::fs::remove_dir(moved.path()).unwrap();
    std::fs::rename(dir.path(), moved.path()).unwrap();
    assert!(!top.exists() && !base.exists());

    assert_eq!(crate::detect_format(&top).unwrap(), ImageFormat::Qcow2);
    let mut image = open_image(&top, Some(ImageFormat::Qcow2), false).unwrap();
    let mut got = vec![0u8; want.len()];
    image.read_at(0, &mut got).unwrap();
    assert!(got == want, "the top reads the base and the middle layer through the registry");
    image.write_at(0, b"top").unwrap();
    image.flush().unwrap();
    // The middle layer was handed read-only: it cannot be opened for writing.
    let e = open_image(&mid, None, false).err().expect("a writable open of a read-only handover");
    assert!(chain_text(&e).contains("was handed read-only"), "{e}");
}

#[test]
fn without_registration_a_chain_whose_paths_are_gone_does_not_open() {
    let dir = TempDir::new("unregistered");
    let ([_, mid, top], _) = chain(&dir);
    // Only the top is handed over: the backing files are looked up by path, in vain.
    register(&top, OpenOptions::new().read(true).write(true).open(&top).unwrap()).unwrap();
    let moved = TempDir::new("unregistered-moved");
    std::fs::remove_dir(moved.path()).unwrap();
    std::fs::rename(dir.path(), moved.path()).unwrap();
    let e = open_image(&top, None, true).err().expect("the backing files are out of reach");
    assert!(matches!(e, crate::Error::Open { .. }), "{e}");
    assert!(chain_text(&e).contains(&mid.display().to_string()), "{e}");
    // An image that was not handed over is not found at all.
    let e = open_image(&mid, None, true).err().expect("not handed over, not found");
    assert!(matches!(e, crate::Error::Open { .. }), "{e}");
}
