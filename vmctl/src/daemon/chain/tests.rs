// SPDX-License-Identifier: Apache-2.0
//! Tests of backing chains in temporary pools: images made by the `block` crate, headers
//! patched to name what `create_qcow2` would refuse (loops, missing files, `/etc/shadow`).

use std::os::unix::fs::{symlink, FileExt};

use block::ImageFormat;
use vmdef::model::{Disk, DiskBus, DiskDevice, DiskFormat};
use vmdef::VmName;

use super::*;

/// Pools `a` and `b` and a directory `out` outside every pool, in one temporary directory.
struct Env {
    _t: tempfile::TempDir,
    root: PathBuf,
    a: PathBuf,
    b: PathBuf,
    out: PathBuf,
}

impl Env {
    fn new() -> Env {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let (a, b, out) = (root.join("a"), root.join("b"), root.join("out"));
        for d in [&a, &b, &out] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(out.join("secret.raw"), vec![7u8; 1 << 20]).unwrap();
        Env { _t: t, root, a, b, out }
    }

    fn pools(&self) -> Vec<PathBuf> {
        vec![self.a.clone(), self.b.clone()]
    }

    /// Opens `disk` of pool `a`, writable.
    fn open(&self, disk: &Path) -> Result<Vec<ChainFile>, ChainError> {
        open_disk_chain(disk, &self.a, &self.pools(), false)
    }
}

/// A 1 MiB qcow2 image at `path` backed by `backing` (as named in its header).
fn qcow(path: &Path, backing: Option<(&str, ImageFormat)>) -> PathBuf {
    block::create_qcow2(path, 1 << 20, backing.map(|(n, f)| (Path::new(n), f))).unwrap();
    path.to_path_buf()
}

/// Rewrites the backing file name in the header of the qcow2 image `img` (made without a
/// backing file, so the format is probed): what `create_qcow2` would not write.
fn point_at(img: &Path, name: &str) {
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(name.as_bytes(), 0x8000).unwrap();
    f.write_all_at(&0x8000u64.to_be_bytes(), 8).unwrap();
    f.write_all_at(&(name.len() as u32).to_be_bytes(), 16).unwrap();
}

fn paths(chain: &[ChainFile]) -> Vec<PathBuf> {
    chain.iter().map(|c| c.path.clone()).collect()
}

#[test]
fn an_overlay_in_the_same_pool_opens_two_files() {
    let e = Env::new();
    let base = qcow(&e.a.join("base.qcow2"), None);
    let web = qcow(&e.a.join("web.qcow2"), Some(("base.qcow2", ImageFormat::Qcow2)));
    let chain = e.open(&web).unwrap();
    assert_eq!(paths(&chain), [web.clone(), base.clone()]);
    assert_eq!(chain.iter().map(|c| c.writable).collect::<Vec<_>>(), [true, false]);
    // Handed to the VMM under the names its qcow2 library asks for.
    assert_eq!(chain.iter().map(|c| c.lookup.clone()).collect::<Vec<_>>(), [web.clone(), base.clone()]);
    // A relative name with `..` is joined as written, not resolved.
    std::fs::create_dir(e.a.join("sub")).unwrap();
    let deep = qcow(&e.a.join("sub/deep.qcow2"), Some(("../base.qcow2", ImageFormat::Qcow2)));
    let chain = e.open(&deep).unwrap();
    assert_eq!(paths(&chain), [deep.clone(), base.clone()]);
    assert_eq!(chain[1].lookup, e.a.join("sub/../base.qcow2"));
    assert!(chain[1].file.write_at(b"x", 1 << 20).is_err(), "backing files are opened read-only");
    // Read-only disk: nothing writable.
    let chain = open_disk_chain(&web, &e.a, &e.pools(), true).unwrap();
    assert!(chain.iter().all(|c| !c.writable));
    assert!(chain[0].file.write_at(b"x", 1 << 20).is_err());
    // A raw disk is one file, and a raw backing file ends the chain (its content is not read
    // as a header, even if it looks like one).
    let raw = e.a.join("data.raw");
    std::fs::write(&raw, vec![0u8; 4096]).unwrap();
    let chain = e.open(&raw).unwrap();
    assert_eq!(paths(&chain), std::slice::from_ref(&raw));
    chain[0].file.write_at(b"x", 100).unwrap();
    let fake = e.a.join("fake.raw");
    std::fs::copy(&web, &fake).unwrap();
    let over = qcow(&e.a.join("over.qcow2"), Some(("data.raw", ImageFormat::Raw)));
    std::fs::rename(&fake, &raw).unwrap();
    assert_eq!(paths(&e.open(&over).unwrap()), [over, raw]);
}

#[test]
fn a_backing_file_in_another_pool_is_allowed() {
    let e = Env::new();
    let base = qcow(&e.b.join("base.qcow2"), None);
    let abs = qcow(&e.a.join("abs.qcow2"), Some((base.to_str().unwrap(), ImageFormat::Qcow2)));
    assert_eq!(paths(&e.open(&abs).unwrap()), [abs.clone(), base.clone()]);
    let rel = qcow(&e.a.join("rel.qcow2"), Some(("../b/base.qcow2", ImageFormat::Qcow2)));
    assert_eq!(paths(&e.open(&rel).unwrap()), [rel.clone(), base.clone()]);
    // Only the pools given count: without b it is outside.
    let err = open_disk_chain(&abs, &e.a, std::slice::from_ref(&e.a), false).unwrap_err();
    assert!(matches!(err, ChainError::OutsidePools { .. }), "{err}");
}

#[test]
fn a_backing_file_outside_every_pool_is_refused() {
    let e = Env::new();
    let secret = e.out.join("secret.raw");
    let web = qcow(&e.a.join("web.qcow2"), Some((secret.to_str().unwrap(), ImageFormat::Raw)));
    let err = e.open(&web).unwrap_err();
    assert!(matches!(err, ChainError::OutsidePools { .. }), "{err}");
    let msg = err.to_string();
    for part in
        [web.to_str().unwrap(), secret.to_str().unwrap(), "outside every storage pool", e.a.to_str().unwrap()]
    {
        assert!(msg.contains(part), "{part} not in: {msg}");
    }
    // The host's own files.
    let evil = qcow(&e.a.join("evil.qcow2"), None);
    point_at(&evil, "/etc/shadow");
    let msg = e.open(&evil).unwrap_err().to_string();
    assert!(msg.contains("/etc/shadow") && msg.contains("outside every storage pool"), "{msg}");
}

#[test]
fn a_relative_escape_with_dotdot_is_refused() {
    let e = Env::new();
    let web = qcow(&e.a.join("web.qcow2"), Some(("../out/secret.raw", ImageFormat::Raw)));
    let err = e.open(&web).unwrap_err();
    assert!(
        matches!(&err, ChainError::OutsidePools { path, .. } if *path == e.out.join("secret.raw")),
        "{err}"
    );
    assert!(err.to_string().contains("../out/secret.raw"), "{err}");
    // Up and back down into the pool is fine; up past the root is still outside.
    let base = qcow(&e.a.join("base.qcow2"), None);
    let fine = qcow(&e.a.join("fine.qcow2"), Some(("../a/base.qcow2", ImageFormat::Qcow2)));
    assert_eq!(paths(&e.open(&fine).unwrap()), [fine, base]);
    let deep = qcow(&e.a.join("deep.qcow2"), None);
    point_at(&deep, "../../../../../../../../etc/passwd");
    assert!(e.open(&deep).unwrap_err().to_string().contains("/etc/passwd"));
    for bad in ["..", "sub/..", "x/", "x/.", "."] {
        let img = qcow(&e.a.join("bad.qcow2"), None);
        point_at(&img, bad);
        let err = e.open(&img).unwrap_err();
        assert!(matches!(err, ChainError::NotAFile { .. } | ChainError::Missing { .. }), "{bad}: {err}");
        std::fs::remove_file(&img).unwrap();
    }
}

#[test]
fn symlink_escapes_are_refused() {
    let e = Env::new();
    symlink(e.out.join("secret.raw"), e.a.join("link.raw")).unwrap();
    let web = qcow(&e.a.join("web.qcow2"), Some(("link.raw", ImageFormat::Raw)));
    let err = e.open(&web).unwrap_err();
    assert!(matches!(err, ChainError::Escapes { .. }), "{err}");
    assert!(err.to_string().contains("link.raw") && err.to_string().contains("symlink"), "{err}");
    symlink(&e.out, e.a.join("sub")).unwrap();
    let web2 = qcow(&e.a.join("web2.qcow2"), Some(("sub/secret.raw", ImageFormat::Raw)));
    let err = e.open(&web2).unwrap_err();
    assert!(matches!(err, ChainError::OutsidePools { .. }), "{err}");
    assert!(err.to_string().contains(e.out.join("secret.raw").to_str().unwrap()), "{err}");
    // The disk itself through a symlink out of the pool.
    symlink(e.out.join("secret.raw"), e.a.join("disk.raw")).unwrap();
    let err = e.open(&e.a.join("disk.raw")).unwrap_err();
    assert!(matches!(err, ChainError::TopEscapes { .. }), "{err}");
    // Not a regular file.
    std::fs::create_dir(e.a.join("dir.qcow2")).unwrap();
    let web3 = qcow(&e.a.join("web3.qcow2"), None);
    point_at(&web3, "dir.qcow2");
    assert!(matches!(e.open(&web3).unwrap_err(), ChainError::NotRegular { .. }));
    assert!(e.root.join("out/secret.raw").exists());
}

#[test]
fn loops_are_refused() {
    let e = Env::new();
    let me = qcow(&e.a.join("me.qcow2"), None);
    point_at(&me, "me.qcow2");
    let err = e.open(&me).unwrap_err();
    assert!(matches!(err, ChainError::Loop { .. }), "{err}");
    assert!(err.to_string().contains("loops"), "{err}");
    let x = qcow(&e.a.join("x.qcow2"), None);
    let y = qcow(&e.b.join("y.qcow2"), Some((x.to_str().unwrap(), ImageFormat::Qcow2)));
    point_at(&x, "../b/y.qcow2");
    let err = e.open(&x).unwrap_err();
    assert!(matches!(&err, ChainError::Loop { path, .. } if *path == x), "{err}");
    let _ = y;
}

#[test]
fn chains_of_more_than_16_backing_files_are_refused() {
    let e = Env::new();
    let mut prev = qcow(&e.a.join("l0.qcow2"), None);
    for i in 1..=17 {
        let name = prev.file_name().unwrap().to_str().unwrap().to_string();
        prev = qcow(&e.a.join(format!("l{i}.qcow2")), Some((&name, ImageFormat::Qcow2)));
    }
    let chain = e.open(&e.a.join("l16.qcow2")).unwrap();
    assert_eq!(chain.len(), MAX_BACKING_DEPTH + 1);
    assert_eq!(chain.last().unwrap().path, e.a.join("l0.qcow2"));
    let err = e.open(&e.a.join("l17.qcow2")).unwrap_err();
    assert!(matches!(err, ChainError::TooDeep { .. }), "{err}");
    assert!(err.to_string().contains("16"), "{err}");
}

#[test]
fn missing_files_external_data_and_disks_outside_the_pool_are_refused() {
    let e = Env::new();
    let gone = qcow(&e.a.join("gone.qcow2"), None);
    point_at(&gone, "nothing.qcow2");
    let err = e.open(&gone).unwrap_err();
    assert!(matches!(err, ChainError::Missing { .. }) && err.to_string().contains("nothing.qcow2"), "{err}");
    point_at(&gone, "no/such/dir.qcow2");
    assert!(matches!(e.open(&gone).unwrap_err(), ChainError::Missing { .. }));
    // A version 3 header with the external data file bit.
    let ext = e.a.join("ext.qcow2");
    let mut h = vec![0u8; 4096];
    h[..4].copy_from_slice(&block::QCOW2_MAGIC);
    h[4..8].copy_from_slice(&3u32.to_be_bytes());
    h[20..24].copy_from_slice(&16u32.to_be_bytes());
    h[72..80].copy_from_slice(&4u64.to_be_bytes());
    h[100..104].copy_from_slice(&104u32.to_be_bytes());
    std::fs::write(&ext, &h).unwrap();
    let err = e.open(&ext).unwrap_err();
    assert!(
        matches!(err, ChainError::Header { .. }) && err.to_string().contains("external data file"),
        "{err}"
    );
    let err = e.open(&e.out.join("secret.raw")).unwrap_err();
    assert!(matches!(err, ChainError::NotInPool { .. }), "{err}");
    assert!(matches!(e.open(&e.a.join("../out/secret.raw")).unwrap_err(), ChainError::NotInPool { .. }));
    assert!(matches!(e.open(&e.a).unwrap_err(), ChainError::NotInPool { .. }));
}

fn disk(path: &Path, format: DiskFormat, device: DiskDevice) -> Disk {
    Disk {
        path: Some(path.to_path_buf()),
        format,
        bus: DiskBus::Ide,
        device,
        target: String::new(),
        readonly: false,
    }
}

#[test]
fn definition_files_open_disks_cdroms_kernel_and_initrd() {
    let e = Env::new();
    let base = qcow(&e.b.join("base.qcow2"), None);
    let web = qcow(&e.a.join("web.qcow2"), Some((base.to_str().unwrap(), ImageFormat::Qcow2)));
    let iso = e.b.join("boot.iso");
    let (kernel, initrd) = (e.a.join("vmlinuz"), e.a.join("initrd.img"));
    for f in [&iso, &kernel, &initrd] {
        std::fs::write(f, b"data").unwrap();
    }
    let mut def = VmDef::new(VmName::new("t").unwrap(), 64, 1);
    def.disks =
        vec![disk(&web, DiskFormat::Qcow2, DiskDevice::Disk), disk(&iso, DiskFormat::Raw, DiskDevice::Cdrom)];
    def.disks.push(Disk { path: None, ..disk(&iso, DiskFormat::Raw, DiskDevice::Cdrom) });
    def.os = Os::Direct { kernel: kernel.clone(), initrd: Some(initrd.clone()), cmdline: None };
    let files = definition_files(&def, &e.pools()).unwrap();
    let got: Vec<(PathBuf, bool)> = files.iter().map(|f| (f.path.clone(), f.writable)).collect();
    assert_eq!(got, [(web, true), (base, false), (iso, false), (kernel, false), (initrd, false)]);

    // Every bad file is a problem naming its field.
    let evil = qcow(&e.a.join("evil.qcow2"), None);
    point_at(&evil, "/etc/shadow");
    def.disks.push(disk(&evil, DiskFormat::Qcow2, DiskDevice::Disk));
    def.os = Os::Direct { kernel: e.out.join("secret.raw"), initrd: None, cmdline: None };
    let problems = definition_files(&def, &e.pools()).unwrap_err();
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(fields, ["disks[3].path", "os.kernel"]);
    assert!(problems[0].message.contains("/etc/shadow"), "{}", problems[0].message);
    assert!(problems[1].message.contains("not in a storage pool"), "{}", problems[1].message);
}
