// SPDX-License-Identifier: Apache-2.0
//! Tests of the qcow2 header reader: images made by this crate and by `qemu-img`, and
//! hand-made hostile headers.

use std::path::Path;

use super::*;
use crate::create_qcow2;
use crate::test_util::{have, run, TempDir};

/// A hand-made qcow2 header: version 3 with 64 KiB clusters, the fixed header only and an
/// end marker, unless changed.
#[derive(Clone)]
struct Hdr {
    magic: [u8; 4],
    version: u32,
    cluster_bits: u32,
    /// Backing name offset, length field and the bytes written there.
    backing: Option<(u64, u32, Vec<u8>)>,
    incompat: u64,
    header_len: u32,
    exts: Vec<(u32, Vec<u8>)>,
    end_marker: bool,
    /// Length of the file (bytes beyond what is written are zero).
    file_len: usize,
}

impl Default for Hdr {
    fn default() -> Self {
        Hdr {
            magic: QCOW2_MAGIC,
            version: 3,
            cluster_bits: 16,
            backing: None,
            incompat: 0,
            header_len: 104,
            exts: Vec::new(),
            end_marker: true,
            file_len: 4096,
        }
    }
}

impl Hdr {
    fn with_backing(name: &str) -> Hdr {
        Hdr { backing: Some((1024, name.len() as u32, name.as_bytes().to_vec())), ..Hdr::default() }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.file_len.max(V3_HEADER_LEN)];
        let mut put = |at: usize, v: &[u8]| {
            if b.len() < at + v.len() {
                b.resize(at + v.len(), 0);
            }
            b[at..at + v.len()].copy_from_slice(v);
        };
        put(0, &self.magic);
        put(4, &self.version.to_be_bytes());
        put(20, &self.cluster_bits.to_be_bytes());
        put(24, &(1u64 << 20).to_be_bytes());
        if let Some((off, len, name)) = &self.backing {
            put(8, &off.to_be_bytes());
            put(16, &len.to_be_bytes());
            if let Ok(at) = usize::try_from(*off) {
                if at < 1 << 20 {
                    put(at, name);
                }
            }
        }
        if self.version == 3 {
            put(72, &self.incompat.to_be_bytes());
            put(96, &4u32.to_be_bytes());
            put(100, &self.header_len.to_be_bytes());
        }
        let mut at = self.header_len as usize;
        for (kind, data) in &self.exts {
            put(at, &kind.to_be_bytes());
            put(at + 4, &(data.len() as u32).to_be_bytes());
            put(at + 8, data);
            at += 8 + data.len().next_multiple_of(8);
        }
        if self.end_marker {
            put(at, &[0; 8]);
        }
        b.truncate(self.file_len);
        b
    }
}

fn read(dir: &TempDir, name: &str, bytes: &[u8]) -> Result<Option<Qcow2Backing>, HeaderError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    qcow2_backing(&File::open(&path).unwrap())
}

fn backing(name: &str, format: Option<ImageFormat>) -> Option<Qcow2Backing> {
    Some(Qcow2Backing { name: name.to_string(), format })
}

#[test]
fn images_we_create_name_their_backing_file_and_format() {
    let dir = TempDir::new("hdr-ours");
    let base = dir.join("base.raw");
    std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
    let plain = dir.join("plain.qcow2");
    let mid = dir.join("mid.qcow2");
    let top = dir.join("top.qcow2");
    create_qcow2(&plain, 1 << 20, None).unwrap();
    create_qcow2(&mid, 1 << 20, Some((Path::new("base.raw"), ImageFormat::Raw))).unwrap();
    create_qcow2(&top, 1 << 20, Some((&mid, ImageFormat::Qcow2))).unwrap();
    let open = |p: &Path| File::open(p).unwrap();
    assert_eq!(qcow2_backing(&open(&plain)).unwrap(), None);
    assert_eq!(qcow2_backing(&open(&mid)).unwrap(), backing("base.raw", Some(ImageFormat::Raw)));
    assert_eq!(qcow2_backing(&open(&top)).unwrap(), backing(mid.to_str().unwrap(), Some(ImageFormat::Qcow2)));
    assert_eq!(detect_format_of(&open(&top)).unwrap(), ImageFormat::Qcow2);
    assert_eq!(detect_format_of(&open(&base)).unwrap(), ImageFormat::Raw);
    assert!(matches!(qcow2_backing(&open(&base)), Err(HeaderError::NotQcow2)));
    // Positioned reads: the file's offset stays where it was.
    use std::io::{Seek, SeekFrom};
    let mut f = open(&mid);
    f.seek(SeekFrom::Start(7)).unwrap();
    qcow2_backing(&f).unwrap();
    detect_format_of(&f).unwrap();
    assert_eq!(f.stream_position().unwrap(), 7);
    // An image whose backing file is gone still names it (nothing is opened).
    std::fs::remove_file(&base).unwrap();
    assert_eq!(qcow2_backing(&open(&mid)).unwrap(), backing("base.raw", Some(ImageFormat::Raw)));
}

#[test]
fn qemu_img_images_agree() {
    if !have("qemu-img", "qemu_img_images_agree") {
        return;
    }
    let dir = TempDir::new("hdr-qemu");
    let base = dir.join("base.raw");
    std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
    let b = base.to_str().unwrap();
    let v3 = dir.join("v3.qcow2");
    let v2 = dir.join("v2.qcow2");
    let small = dir.join("small.qcow2");
    let ext = dir.join("ext.qcow2");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    run("qemu-img", &["create", "-q", "-f", "qcow2", "-b", b, "-F", "raw", &s(&v3)]);
    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "base.raw", "-F", "raw", &s(&v2)],
    );
    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "-b", &s(&v3), "-F", "qcow2", &s(&small)],
    );
    let data = dir.join("ext.data");
    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "-o", &format!("data_file={}", s(&data)), &s(&ext), "1M"],
    );
    let open = |p: &Path| File::open(p).unwrap();
    assert_eq!(qcow2_backing(&open(&v3)).unwrap(), backing(b, Some(ImageFormat::Raw)));
    // Version 2: the reader sees no extensions, so the format is probed.
    assert_eq!(qcow2_backing(&open(&v2)).unwrap(), backing("base.raw", None));
    assert_eq!(qcow2_backing(&open(&small)).unwrap(), backing(&s(&v3), Some(ImageFormat::Qcow2)));
    let err = qcow2_backing(&open(&ext)).unwrap_err();
    assert!(matches!(err, HeaderError::ExternalDataFile(_)), "{err}");
    assert!(err.to_string().contains("external data file"), "{err}");
}

#[test]
fn extensions_are_walked_to_their_end_marker() {
    let dir = TempDir::new("hdr-ext");
    let fmt = |f: &str| (EXT_BACKING_FORMAT, f.as_bytes().to_vec());
    let cases: Vec<(&str, Hdr, Option<Qcow2Backing>)> = vec![
        ("none", Hdr::default(), None),
        ("plain backing", Hdr::with_backing("a.img"), backing("a.img", None)),
        (
            "unknown extensions are skipped",
            Hdr {
                exts: vec![(0x6803_f857, vec![7; 13]), (0x1234_5678, vec![]), fmt("qcow2")],
                ..Hdr::with_backing("/abs/b.qcow2")
            },
            backing("/abs/b.qcow2", Some(ImageFormat::Qcow2)),
        ),
        (
            "file is raw",
            Hdr { exts: vec![fmt("file")], ..Hdr::with_backing("c") },
            backing("c", Some(ImageFormat::Raw)),
        ),
        (
            "the same format twice",
            Hdr { exts: vec![fmt("raw"), fmt("raw")], ..Hdr::with_backing("d") },
            backing("d", Some(ImageFormat::Raw)),
        ),
        (
            "a longer header",
            Hdr { header_len: 112, exts: vec![fmt("raw")], ..Hdr::with_backing("e") },
            backing("e", Some(ImageFormat::Raw)),
        ),
        (
            "version 2 has no extensions",
            Hdr {
                version: 2,
                exts: vec![(EXT_DATA_FILE, b"/x".to_vec())],
                header_len: 72,
                ..Hdr::with_backing("f")
            },
            backing("f", None),
        ),
        ("a format without a backing file", Hdr { exts: vec![fmt("raw")], ..Hdr::default() }, None),
        (
            "512-byte clusters",
            Hdr { cluster_bits: 9, backing: Some((400, 3, b"g.q".to_vec())), ..Hdr::default() },
            backing("g.q", None),
        ),
        (
            "a name at the cluster's very end",
            Hdr { cluster_bits: 9, backing: Some((511, 1, b"h".to_vec())), ..Hdr::default() },
            backing("h", None),
        ),
        ("longest name", Hdr::with_backing(&"n".repeat(1023)), backing(&"n".repeat(1023), None)),
    ];
    for (what, h, want) in cases {
        assert_eq!(read(&dir, "x", &h.bytes()).unwrap_or_else(|e| panic!("{what}: {e}")), want, "{what}");
    }
}

/// Whether an error is the one a case expects.
type Check = fn(&HeaderError) -> bool;

#[test]
fn hostile_headers_are_refused() {
    let dir = TempDir::new("hdr-hostile");
    let fmt = |f: &[u8]| (EXT_BACKING_FORMAT, f.to_vec());
    let with =
        |name: &[u8], off: u64, len: u32| Hdr { backing: Some((off, len, name.to_vec())), ..Hdr::default() };
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("empty file", vec![], |e| matches!(e, HeaderError::NotQcow2)),
        ("no magic", Hdr { magic: *b"QFI\xfa", ..Hdr::default() }.bytes(), |e| {
            matches!(e, HeaderError::NotQcow2)
        }),
        ("the magic alone", QCOW2_MAGIC.to_vec(), |e| matches!(e, HeaderError::Truncated { .. })),
        ("v3 cut at 80", Hdr { file_len: 80, ..Hdr::default() }.bytes(), |e| {
            matches!(e, HeaderError::Truncated { .. })
        }),
        ("version 1", Hdr { version: 1, ..Hdr::default() }.bytes(), |e| matches!(e, HeaderError::Version(1))),
        ("version 4", Hdr { version: 4, ..Hdr::default() }.bytes(), |e| matches!(e, HeaderError::Version(4))),
        ("cluster_bits 8", Hdr { cluster_bits: 8, ..Hdr::default() }.bytes(), |e| {
            matches!(e, HeaderError::ClusterBits(8))
        }),
        ("cluster_bits 22", Hdr { cluster_bits: 22, ..Hdr::default() }.bytes(), |e| {
            matches!(e, HeaderError::ClusterBits(22))
        }),
        ("cluster_bits max", Hdr { cluster_bits: u32::MAX, ..Hdr::default() }.bytes(), |e| {
            matches!(e, HeaderError::ClusterBits(_))
        }),
        ("name too long", with(&[b'a'; 1024], 1024, 1024).bytes(), |e| {
            matches!(e, HeaderError::BackingNameTooLong(1024))
        }),
        ("name length u32::MAX", with(b"a", 1024, u32::MAX).bytes(), |e| {
            matches!(e, HeaderError::BackingNameTooLong(_))
        }),
        ("name offset u64::MAX", with(b"a", u64::MAX, 10).bytes(), |e| {
            matches!(e, HeaderError::BackingNameOutside { .. })
        }),
        ("name past the cluster", with(b"a", 65530, 10).bytes(), |e| {
            matches!(e, HeaderError::BackingNameOutside { .. })
        }),
        ("name past the file", with(b"", 8000, 10).bytes(), |e| matches!(e, HeaderError::Truncated { .. })),
        ("empty name", with(b"", 1024, 0).bytes(), |e| matches!(e, HeaderError::BackingName(_))),
        ("NUL in the name", with(b"/etc/sha\0dow", 1024, 12).bytes(), |e| {
            matches!(e, HeaderError::BackingName(_))
        }),
        ("not UTF-8", with(b"\xff\xfe", 1024, 2).bytes(), |e| matches!(e, HeaderError::BackingName(_))),
        ("incompatible data file bit", Hdr { incompat: 1 << 2, ..Hdr::with_backing("a") }.bytes(), |e| {
            matches!(e, HeaderError::ExternalDataFile(None))
        }),
        (
            "data file extension",
            Hdr { exts: vec![(EXT_DATA_FILE, b"/dev/sda".to_vec())], ..Hdr::default() }.bytes(),
            |e| matches!(e, HeaderError::ExternalDataFile(Some(n)) if n == "/dev/sda"),
        ),
        ("header_length 103", Hdr { header_len: 103, ..Hdr::default() }.bytes(), |e| {
            matches!(e, HeaderError::HeaderLength { .. })
        }),
        (
            "header_length past the cluster",
            Hdr { cluster_bits: 9, header_len: 1000, ..Hdr::default() }.bytes(),
            |e| matches!(e, HeaderError::HeaderLength { .. }),
        ),
        (
            "extension length u32::MAX",
            {
                let mut b = Hdr { end_marker: false, ..Hdr::default() }.bytes();
                b[104..112].copy_from_slice(&[0x12, 0x34, 0x56, 0x78, 0xff, 0xff, 0xff, 0xff]);
                b
            },
            |e| matches!(e, HeaderError::ExtensionOutside { offset: 104, .. }),
        ),
        (
            "no end marker in a full cluster",
            {
                let mut h = Hdr { cluster_bits: 9, end_marker: false, file_len: 4096, ..Hdr::default() };
                h.exts = (0..51).map(|_| (0x1111_1111, vec![])).collect();
                h.bytes()
            },
            |e| matches!(e, HeaderError::ExtensionOutside { .. }),
        ),
        (
            "no end marker before the file ends",
            Hdr { end_marker: false, file_len: 104, ..Hdr::default() }.bytes(),
            |e| matches!(e, HeaderError::Truncated { .. }),
        ),
        (
            "extension data past the file",
            {
                let mut b = Hdr { end_marker: false, file_len: 200, ..Hdr::default() }.bytes();
                b[104..112].copy_from_slice(&[0x12, 0x34, 0x56, 0x78, 0, 0, 1, 0]);
                b
            },
            |e| matches!(e, HeaderError::Truncated { .. }),
        ),
        (
            "unknown backing format",
            Hdr { exts: vec![fmt(b"vmdk")], ..Hdr::with_backing("a") }.bytes(),
            |e| matches!(e, HeaderError::BackingFormat(f) if f == "vmdk"),
        ),
        (
            "host_device format",
            Hdr { exts: vec![fmt(b"host_device")], ..Hdr::with_backing("a") }.bytes(),
            |e| matches!(e, HeaderError::BackingFormat(_)),
        ),
        (
            "conflicting formats",
            Hdr { exts: vec![fmt(b"raw"), fmt(b"qcow2")], ..Hdr::with_backing("a") }.bytes(),
            |e| matches!(e, HeaderError::ConflictingBackingFormats(..)),
        ),
    ];
    for (what, bytes, ok) in cases {
        match read(&dir, "x", &bytes) {
            Err(e) => {
                assert!(ok(&e), "{what}: the wrong error: {e:?}");
                assert!(!e.to_string().is_empty());
            }
            Ok(v) => panic!("{what}: accepted as {v:?}"),
        }
    }
    // A long format name is cut short in the message.
    let long = Hdr { exts: vec![fmt(&[b'x'; 3000])], ..Hdr::with_backing("a") }.bytes();
    let e = read(&dir, "x", &long).unwrap_err();
    assert!(e.to_string().len() < 200, "{e}");
}
