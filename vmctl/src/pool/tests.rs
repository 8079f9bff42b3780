// SPDX-License-Identifier: Apache-2.0
//! Tests of pools and volumes in temporary directories; images are cross-checked with
//! `qemu-img` when it is installed.

use std::process::Command;

use super::*;

/// Runs `qemu-img args` and returns its stdout, or `None` (with a SKIP note) when qemu-img
/// is not installed; a failing run panics with its output.
pub(crate) fn qemu_img(test: &str, args: &[&str]) -> Option<String> {
    let out = match Command::new("qemu-img").args(args).output() {
        Ok(o) => o,
        Err(_) => {
            println!("SKIP the qemu-img part of {test}: qemu-img not found (apt-get install qemu-utils)");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Opens an image writable, retrying while it is locked: a child process that another test
/// forks inherits our descriptors (and their `flock`) until it execs.
fn open_writable(path: &Path) -> Box<dyn block::DiskImage> {
    for _ in 0..100 {
        match block::open_image(path, None, false) {
            Err(block::Error::Locked { .. }) => std::thread::sleep(std::time::Duration::from_millis(10)),
            r => return r.unwrap(),
        }
    }
    panic!("{} stays locked", path.display());
}

fn pool() -> (tempfile::TempDir, Pool) {
    let dir = tempfile::tempdir().unwrap();
    let p = Pool::open("p", dir.path()).unwrap();
    (dir, p)
}

fn files(p: &Pool) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn names_are_checked() {
    for good in ["a", "web.qcow2", "A-1_b.raw", "x..y"] {
        check_name("volume name", good, MAX_VOLUME_NAME).unwrap();
    }
    for bad in ["", ".", "..", ".hidden", "a/b", "../x", "a b", "é", "a\0b"] {
        let e = check_name("volume name", bad, MAX_VOLUME_NAME).unwrap_err();
        assert!(matches!(e, PoolError::Invalid(_)), "{bad:?}");
        assert!(e.to_string().starts_with("volume name: "), "{e}");
    }
    assert!(check_name("n", &"a".repeat(MAX_VOLUME_NAME), MAX_VOLUME_NAME).is_ok());
    assert!(check_name("n", &"a".repeat(MAX_VOLUME_NAME + 1), MAX_VOLUME_NAME).is_err());
}

#[test]
fn sizes_parse_with_binary_units() {
    assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
    assert_eq!(parse_size("512").unwrap(), 512);
    assert_eq!(parse_size("64K").unwrap(), 64 << 10);
    assert_eq!(parse_size("10G").unwrap(), 10 << 30);
    assert_eq!(parse_size("10g").unwrap(), 10 << 30);
    assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
    assert_eq!(parse_size("10GB").unwrap(), 10 << 30);
    assert_eq!(parse_size(" 3 M ").unwrap(), 3 << 20);
    assert_eq!(parse_size("2T").unwrap(), 2 << 40);
    assert_eq!(parse_size("64T").unwrap(), MAX_VOLUME_SIZE);
    for bad in ["", "G", "-1G", "1.5G", "10X", "10 GG", "0x10"] {
        let e = parse_size(bad).unwrap_err();
        assert!(e.to_string().starts_with("size: "), "{bad:?}: {e}");
    }
    assert!(parse_size("0").unwrap_err().to_string().contains("size: 0"));
    assert!(parse_size("1000").unwrap_err().to_string().contains("1024"), "rounding hint");
    assert!(parse_size("65T").unwrap_err().to_string().contains("limit"));
    assert!(parse_size("99999999999999999999").is_err());
    assert!(parse_size("18446744073709551615K").is_err(), "overflow");
}

#[test]
fn create_raw_and_qcow2_and_list_them() {
    let (_d, p) = pool();
    let raw = p.create("a.raw", 3 << 20, ImageFormat::Raw).unwrap();
    assert_eq!(raw.image, ImageInfo { format: ImageFormat::Raw, virtual_size: 3 << 20, backing_file: None });
    assert!(raw.allocated < 3 << 20, "raw volumes are sparse");
    assert_eq!(raw.path, p.dir().join("a.raw"));
    let q = p.create("b.qcow2", 10 << 30, ImageFormat::Qcow2).unwrap();
    assert_eq!(q.image.format, ImageFormat::Qcow2);
    assert_eq!(q.image.virtual_size, 10 << 30);
    assert!(q.allocated > 0 && q.allocated < 1 << 20, "{}", q.allocated);
    // Not volumes: hidden files, directories, symlinks.
    fs::write(p.dir().join(".hidden"), b"x").unwrap();
    fs::create_dir(p.dir().join("sub")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", p.dir().join("link")).unwrap();
    let names: Vec<String> = p.list().unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["a.raw", "b.qcow2"]);
    assert!(matches!(p.get("link"), Err(PoolError::Invalid(_))));
    assert!(matches!(p.get("nope"), Err(PoolError::NotFound(_))));
    if let Some(info) = qemu_img("create", &["info", "--output=json", q.path.to_str().unwrap()]) {
        assert!(info.contains(&format!("\"virtual-size\": {}", 10u64 << 30)), "{info}");
        qemu_img("create", &["check", q.path.to_str().unwrap()]);
    }
}

#[test]
fn create_refuses_existing_names_and_bad_input_and_leaves_nothing() {
    let (_d, p) = pool();
    p.create("a", 1 << 20, ImageFormat::Raw).unwrap();
    let e = p.create("a", 2 << 20, ImageFormat::Qcow2).unwrap_err();
    assert!(matches!(e, PoolError::Conflict(_)), "{e}");
    assert_eq!(fs::metadata(p.dir().join("a")).unwrap().len(), 1 << 20, "the existing volume survives");
    assert!(matches!(p.create("b", 1000, ImageFormat::Raw), Err(PoolError::Invalid(_))));
    assert!(matches!(p.create("../b", 1 << 20, ImageFormat::Raw), Err(PoolError::Invalid(_))));
    assert!(matches!(p.create("b", MAX_VOLUME_SIZE + 512, ImageFormat::Qcow2), Err(PoolError::Invalid(_))));
    assert_eq!(files(&p), ["a"]);
}

#[test]
fn a_failed_creation_leaves_nothing_behind() {
    let (_d, p) = pool();
    let err = create_atomically(p.dir(), "x", |tmp| {
        assert!(tmp.file_name().unwrap().to_str().unwrap().starts_with(".x.tmp-"));
        fs::write(tmp, b"half an image").unwrap();
        Err(PoolError::Invalid("boom".into()))
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "boom");
    assert!(files(&p).is_empty(), "{:?}", files(&p));
    // A name taken while the image was being built: the other file wins, the temp goes.
    let err = create_atomically(p.dir(), "y", |tmp| {
        fs::write(p.dir().join("y"), b"theirs").unwrap();
        fs::write(tmp, b"ours").unwrap();
        Ok(())
    })
    .unwrap_err();
    assert!(matches!(err, PoolError::Conflict(_)), "{err}");
    assert_eq!(fs::read(p.dir().join("y")).unwrap(), b"theirs");
    assert_eq!(files(&p), ["y"]);
}

#[test]
fn temp_files_of_crashed_creations_are_removed() {
    let (_d, p) = pool();
    fs::write(p.dir().join(".web.qcow2.tmp-123-0"), b"x").unwrap();
    fs::write(p.dir().join(".keepme"), b"x").unwrap();
    let state = tempfile::tempdir().unwrap();
    let pools = Pools::open(state.path(), &[std::env::temp_dir()]).unwrap();
    fs::write(pools.def_path(".x").with_file_name(".x.json.tmp-1-2"), b"{").unwrap();
    fs::write(state.path().join("images/.v.tmp-1-3"), b"").unwrap();
    assert_eq!(pools.remove_temp_files().len(), 2);
    assert!(fs::read_dir(state.path().join("pools")).unwrap().next().is_none());
    p.create("v", 1 << 20, ImageFormat::Raw).unwrap();
    let removed = p.remove_temp_files().unwrap();
    assert_eq!(removed, [p.dir().join(".web.qcow2.tmp-123-0")]);
    assert_eq!(files(&p), [".keepme", "v"]);
}

#[test]
fn resize_grows_and_refuses_shrinking() {
    let (_d, p) = pool();
    for (name, f) in [("r", ImageFormat::Raw), ("q", ImageFormat::Qcow2)] {
        p.create(name, 1 << 20, f).unwrap();
        let v = p.resize(name, 4 << 20).unwrap();
        assert_eq!(v.image.virtual_size, 4 << 20, "{name}");
        let e = p.resize(name, 2 << 20).unwrap_err();
        assert!(matches!(e, PoolError::Invalid(_)) && e.to_string().contains("only grow"), "{e}");
        assert_eq!(p.get(name).unwrap().image.virtual_size, 4 << 20);
        assert!(matches!(p.resize(name, 100), Err(PoolError::Invalid(_))));
        // An image a VM holds open is locked.
        let busy = open_writable(&p.dir().join(name));
        assert!(matches!(p.resize(name, 8 << 20), Err(PoolError::Conflict(_))));
        drop(busy);
    }
    assert!(matches!(p.resize("none", 8 << 20), Err(PoolError::NotFound(_))));
    if let Some(info) = qemu_img("resize", &["info", p.dir().join("q").to_str().unwrap()]) {
        assert!(info.contains("4 MiB"), "{info}");
        qemu_img("resize", &["check", p.dir().join("q").to_str().unwrap()]);
    }
}

#[test]
fn clone_makes_an_overlay_and_the_source_a_template() {
    let (_d, p) = pool();
    for (base, f) in [("base.raw", ImageFormat::Raw), ("base.qcow2", ImageFormat::Qcow2)] {
        p.create(base, 2 << 20, f).unwrap();
        let mut img = open_writable(&p.dir().join(base));
        img.write_at(4096, b"template data").unwrap();
        img.flush().unwrap();
        drop(img);
        let clone = format!("clone-of-{base}");
        let c = p.clone_volume(base, &clone).unwrap();
        assert_eq!(c.image.format, ImageFormat::Qcow2);
        assert_eq!(c.image.virtual_size, 2 << 20);
        assert_eq!(c.image.backing_file.as_deref(), Some(base), "relative to the pool");
        assert_eq!(c.backing_path.as_deref(), Some(p.dir().join(base).as_path()));
        // The clone reads the template's data and writes to itself.
        let mut img = open_writable(&c.path);
        let mut buf = [0u8; 13];
        img.read_at(4096, &mut buf).unwrap();
        assert_eq!(&buf, b"template data");
        img.write_at(4096, b"clone's own  ").unwrap();
        img.flush().unwrap();
        drop(img);
        let mut img = block::open_image(&p.dir().join(base), None, true).unwrap();
        img.read_at(4096, &mut buf).unwrap();
        assert_eq!(&buf, b"template data", "the template is untouched");
        drop(img);
        assert_eq!(p.get(base).unwrap().overlays, std::slice::from_ref(&clone));
        // A template can be neither resized nor deleted (without force).
        let e = p.resize(base, 4 << 20).unwrap_err();
        assert!(matches!(e, PoolError::Conflict(_)) && e.to_string().contains(&clone), "{e}");
        let e = p.delete(base, false).unwrap_err();
        assert!(matches!(e, PoolError::Conflict(_)) && e.to_string().contains(&clone), "{e}");
        if let Some(info) = qemu_img("clone", &["info", c.path.to_str().unwrap()]) {
            assert!(info.contains(&format!("backing file: {base}")), "{info}");
            assert!(info.contains(&format!("backing file format: {}", f.name())), "{info}");
            qemu_img("clone", &["check", c.path.to_str().unwrap()]);
        }
    }
    // Clones of clones, name conflicts, missing sources.
    p.clone_volume("clone-of-base.raw", "grandchild").unwrap();
    assert_eq!(p.get("clone-of-base.raw").unwrap().overlays, ["grandchild"]);
    assert!(matches!(p.clone_volume("base.raw", "grandchild"), Err(PoolError::Conflict(_))));
    assert!(matches!(p.clone_volume("missing", "x"), Err(PoolError::NotFound(_))));
    assert!(matches!(p.clone_volume("base.raw", ".x"), Err(PoolError::Invalid(_))));
    // Deleting the clones frees the template.
    p.delete("grandchild", false).unwrap();
    p.delete("clone-of-base.raw", false).unwrap();
    assert!(p.get("base.raw").unwrap().overlays.is_empty());
    p.resize("base.raw", 4 << 20).unwrap();
    p.delete("base.raw", false).unwrap();
    // force deletes a template.
    p.delete("base.qcow2", true).unwrap();
    assert_eq!(files(&p), ["clone-of-base.qcow2"]);
    assert!(matches!(p.delete("base.qcow2", true), Err(PoolError::NotFound(_))));
}

#[test]
fn inspect_ignores_hostile_backing_references() {
    let (_d, p) = pool();
    p.create("q", 1 << 20, ImageFormat::Qcow2).unwrap();
    let path = p.dir().join("q");
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    // Offset far past the end, then a huge length.
    f.write_all_at(&u64::MAX.to_be_bytes(), 8).unwrap();
    f.write_all_at(&16u32.to_be_bytes(), 16).unwrap();
    assert_eq!(inspect(&path).unwrap().backing_file, None);
    f.write_all_at(&512u64.to_be_bytes(), 8).unwrap();
    f.write_all_at(&u32::MAX.to_be_bytes(), 16).unwrap();
    assert_eq!(inspect(&path).unwrap().backing_file, None);
    f.write_all_at(&5u32.to_be_bytes(), 16).unwrap();
    f.write_all_at(b"other", 512).unwrap();
    assert_eq!(inspect(&path).unwrap().backing_file.as_deref(), Some("other"));
    // A truncated header is an error, not a panic.
    fs::write(p.dir().join("short"), b"QFI\xfb\0\0").unwrap();
    assert!(inspect(&p.dir().join("short")).is_err());
    assert_eq!(p.list().unwrap().len(), 1, "the broken file is skipped");
}

#[test]
fn pools_default_define_list_undefine() {
    let state = tempfile::tempdir().unwrap();
    let pools = Pools::open(state.path(), &[std::env::temp_dir()]).unwrap();
    let all = pools.list().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].name(), DEFAULT_POOL);
    assert_eq!(all[0].dir(), fs::canonicalize(state.path().join("images")).unwrap());

    let elsewhere = tempfile::tempdir().unwrap();
    let def = PoolDef { name: "fast".into(), path: elsewhere.path().to_path_buf() };
    let fast = pools.define(&def).unwrap();
    assert_eq!(fast.dir(), fs::canonicalize(elsewhere.path()).unwrap());
    let stored: PoolDef = serde_json::from_slice(&fs::read(pools.def_path("fast")).unwrap()).unwrap();
    assert_eq!(stored.name, "fast");
    assert!(matches!(pools.define(&def), Err(PoolError::Conflict(_))), "name taken");
    let same_dir = PoolDef { name: "again".into(), path: elsewhere.path().to_path_buf() };
    assert!(matches!(pools.define(&same_dir), Err(PoolError::Conflict(_))), "directory taken");
    let default = PoolDef { name: "default".into(), path: elsewhere.path().to_path_buf() };
    assert!(matches!(pools.define(&default), Err(PoolError::Conflict(_))));
    let rel = PoolDef { name: "rel".into(), path: "images".into() };
    assert!(pools.define(&rel).unwrap_err().to_string().starts_with("path: "));
    let missing = PoolDef { name: "m".into(), path: elsewhere.path().join("nope") };
    assert!(pools.define(&missing).unwrap_err().to_string().contains("create the directory"));
    let bad = PoolDef { name: "a/b".into(), path: elsewhere.path().to_path_buf() };
    assert!(matches!(pools.define(&bad), Err(PoolError::Invalid(_))));

    // A broken definition is skipped by list, an error for get.
    fs::write(pools.def_path("broken"), "{\"name\": \"broken\"}").unwrap();
    let names: Vec<String> = pools.list().unwrap().iter().map(|p| p.name().to_string()).collect();
    assert_eq!(names, ["default", "fast"]);
    assert!(matches!(pools.get("broken"), Err(PoolError::Invalid(_))));
    assert!(matches!(pools.get("nope"), Err(PoolError::NotFound(_))));

    fast.create("v", 1 << 20, ImageFormat::Raw).unwrap();
    pools.undefine("fast").unwrap();
    assert!(elsewhere.path().join("v").exists(), "undefine keeps the files");
    assert!(matches!(pools.undefine("fast"), Err(PoolError::NotFound(_))));
    assert!(matches!(pools.undefine("default"), Err(PoolError::Conflict(_))));
}

#[test]
fn pool_directories_are_checked() {
    let state = Path::new("/var/lib/rvmm");
    let roots = [state.join("images"), state.to_path_buf(), PathBuf::from("/srv/vm")];
    for ok in ["/var/lib/rvmm/fast", "/var/lib/rvmm/images/iso", "/srv/vm", "/srv/vm/a/b"] {
        assert!(check_pool_dir(Path::new(ok), state, &roots).is_ok(), "{ok}");
    }
    for (bad, why) in [
        ("/", "system directory"),
        ("/etc", "system directory"),
        ("/etc/ssh", "system directory"),
        ("/usr/lib", "system directory"),
        ("/var/lib", "system directory"),
        ("/root/images", "system directory"),
        ("/var/lib/rvmm", "daemon's state"),
        ("/var/lib/rvmm/vms", "daemon's state"),
        ("/var/lib/rvmm/logs/x", "daemon's state"),
        ("/var/lib/rvmm/pools", "daemon's state"),
        ("/srv", "system directory"),
        ("/opt/vm", "allowed pool root"),
        ("/home/alice/vm", "allowed pool root"),
        ("/data/vm", "allowed pool root"),
    ] {
        let e = check_pool_dir(Path::new(bad), state, &roots).unwrap_err().to_string();
        assert!(e.starts_with("path: ") && e.contains(why), "{bad}: {e}");
    }
}
