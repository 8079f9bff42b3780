// SPDX-License-Identifier: Apache-2.0
//! Tests of the define-time checks.

use super::*;
use crate::model::*;

const HOST: HostLimits = HostLimits { memory_mib: 8192, cpus: 8 };

fn def(name: &str) -> VmDef {
    VmDef::new(VmName::new(name).unwrap(), 512, 2)
}

fn disk(path: Option<&Path>, bus: DiskBus, device: DiskDevice, target: &str) -> Disk {
    Disk {
        path: path.map(Path::to_path_buf),
        format: DiskFormat::Raw,
        bus,
        device,
        target: target.into(),
        readonly: false,
    }
}

fn nic(mac: &str) -> Interface {
    Interface { source: NetSource::Bridge("br0".into()), model: NicModel::Virtio, mac: mac.parse().unwrap() }
}

/// The fields named by the problems, in order.
fn fields(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.field.as_str()).collect()
}

#[test]
fn a_complete_definition_passes() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("a.raw");
    std::fs::write(&img, [0u8; 512]).unwrap();
    let mut d = def("ok");
    d.disks.push(disk(Some(&img), DiskBus::Virtio, DiskDevice::Disk, "vda"));
    d.disks.push(disk(None, DiskBus::Ide, DiskDevice::Cdrom, "hdc"));
    d.interfaces.push(nic("52:54:00:00:00:01"));
    d.hostdevs.push(HostDev { address: "0000:01:00.0".parse().unwrap(), managed: true });
    let others = [def("other"), d.clone()];
    assert_eq!(validate_define(&d, &others, &HOST), Ok(()));
    assert!(redefines(&d, &others).is_some());
}

#[test]
fn ranges_and_host_limits() {
    let mut d = def("big");
    d.memory_mib = 16384;
    d.vcpus = 16;
    let p = check_host(&d, &HOST);
    assert_eq!(fields(&p), ["memory_mib", "vcpus"]);
    assert!(p.iter().all(|p| p.kind == ProblemKind::HostLimit));
    assert!(p[0].message.contains("8192 MiB"), "{}", p[0]);
    d.memory_mib = 8192;
    d.vcpus = 8;
    assert!(check_host(&d, &HOST).is_empty());

    d.memory_mib = 16;
    d.vcpus = 0;
    assert_eq!(fields(&check_definition(&d)), ["memory_mib", "vcpus"]);
    d.memory_mib = MIN_MEMORY_MIB;
    d.vcpus = MAX_VCPUS + 1;
    assert_eq!(fields(&check_definition(&d)), ["vcpus"]);
    d.vcpus = 4;
    d.features.apic = false;
    assert_eq!(fields(&check_definition(&d)), ["features.apic"]);
    d.vcpus = 1;
    assert!(check_definition(&d).is_empty());
    d.uuid = uuid::Uuid::nil();
    assert_eq!(fields(&check_definition(&d)), ["uuid"]);
}

#[test]
fn cputune_ranges_name_the_field_and_range() {
    let mut d = def("tuned");
    d.cputune = CpuTune { period_us: Some(100_000), quota_us: Some(50_000) };
    assert!(check_definition(&d).is_empty());
    d.cputune = CpuTune { period_us: Some(500), quota_us: Some(10) };
    let p = check_definition(&d);
    assert_eq!(fields(&p), ["cputune.period_us", "cputune.quota_us"]);
    assert!(p[0].message.contains("500 µs") && p[0].message.contains("1000 to 1000000"), "{}", p[0]);
    assert!(p[1].message.contains("10 µs") && p[1].message.contains("1000 to 17592186044415"), "{}", p[1]);
    assert!(p.iter().all(|p| p.kind == ProblemKind::Invalid));
}

#[test]
fn disk_layout_checks() {
    let mut d = def("disks");
    d.disks = vec![
        disk(None, DiskBus::Virtio, DiskDevice::Disk, "vda"),
        disk(Some(Path::new("/a")), DiskBus::Virtio, DiskDevice::Cdrom, "vdb"),
        disk(Some(Path::new("/b")), DiskBus::Ide, DiskDevice::Disk, "hde"),
        disk(Some(Path::new("/c")), DiskBus::Ide, DiskDevice::Disk, "vdc"),
        disk(Some(Path::new("rel.img")), DiskBus::Virtio, DiskDevice::Disk, "vdd"),
        disk(Some(Path::new("/e")), DiskBus::Virtio, DiskDevice::Disk, "vdd"),
        disk(Some(Path::new("/e")), DiskBus::Virtio, DiskDevice::Disk, "vdaa"),
        disk(None, DiskBus::Ide, DiskDevice::Cdrom, "hdc"),
    ];
    let p = check_definition(&d);
    assert_eq!(
        fields(&p),
        [
            "disks[0].path",
            "disks[1].bus",
            "disks[2].target",
            "disks[3].target",
            "disks[4].path",
            "disks[5].target",
            "disks[6].path"
        ],
        "{p:#?}"
    );
    assert!(p[0].message.contains("only a cdrom may be empty"));
    assert!(p[2].message.contains("hda, hdb, hdc or hdd"));
    assert!(p[4].message.contains("absolute"));
    assert!(p[5].message.contains("earlier disk"));
}

#[test]
fn missing_files_reported() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinuz");
    std::fs::write(&kernel, b"k").unwrap();
    let mut d = def("files");
    d.disks = vec![
        disk(Some(&dir.path().join("nope.qcow2")), DiskBus::Virtio, DiskDevice::Disk, "vda"),
        disk(Some(dir.path()), DiskBus::Virtio, DiskDevice::Disk, "vdb"),
        disk(None, DiskBus::Ide, DiskDevice::Cdrom, "hdc"),
        disk(Some(&dir.path().join("gone.iso")), DiskBus::Ide, DiskDevice::Cdrom, "hdd"),
    ];
    d.os = Os::Direct { kernel: kernel.clone(), initrd: Some(dir.path().join("initrd")), cmdline: None };
    let p = check_files(&d);
    assert_eq!(fields(&p), ["disks[0].path", "disks[1].path", "disks[3].path", "os.initrd"], "{p:#?}");
    assert!(p.iter().all(|p| p.kind == ProblemKind::MissingFile));
    assert!(p[0].message.contains("nope.qcow2") && p[0].message.contains("vmctl vol create"), "{}", p[0]);
    assert!(p[1].message.contains("directory"));
    std::fs::remove_file(&kernel).unwrap();
    assert_eq!(fields(&check_files(&d))[3], "os.kernel");
}

#[test]
fn conflicts_with_other_definitions() {
    let mut a = def("a");
    a.interfaces.push(nic("52:54:00:00:00:0a"));
    a.disks.push(disk(Some(Path::new("/img/shared.raw")), DiskBus::Virtio, DiskDevice::Disk, "vda"));
    a.disks.push(disk(Some(Path::new("/img/install.iso")), DiskBus::Ide, DiskDevice::Cdrom, "hdc"));
    let existing = [a.clone(), def("b")];

    // Same name, other uuid; and same uuid, other name.
    let mut same_name = def("a");
    same_name.interfaces.push(nic("52:54:00:00:00:0a"));
    let p = check_conflicts(&same_name, &existing);
    assert_eq!(fields(&p), ["name", "interfaces[0].mac"]);
    assert!(p.iter().all(|p| p.kind == ProblemKind::Conflict));
    assert!(p[1].message.contains("VM a"), "{}", p[1]);
    let mut same_uuid = def("c");
    same_uuid.uuid = a.uuid;
    assert_eq!(fields(&check_conflicts(&same_uuid, &existing)), ["uuid"]);

    // Redefining a with a changed disk layout is not a conflict with itself.
    let mut again = a.clone();
    again.memory_mib = 1024;
    assert!(check_conflicts(&again, &existing).is_empty());
    assert_eq!(redefines(&again, &existing).map(|d| d.memory_mib), Some(512));

    // A writable image shared with another VM conflicts; the same ISO read-only does not.
    let mut d = def("d");
    d.disks.push(disk(Some(Path::new("/img/install.iso")), DiskBus::Ide, DiskDevice::Cdrom, "hdc"));
    assert!(check_conflicts(&d, &existing).is_empty());
    let mut ro = disk(Some(Path::new("/img/shared.raw")), DiskBus::Virtio, DiskDevice::Disk, "vda");
    ro.readonly = true;
    d.disks.push(ro);
    assert_eq!(fields(&check_conflicts(&d, &existing)), ["disks[1].path"], "a may write it");
}

#[test]
fn duplicates_inside_one_definition() {
    let mut d = def("dups");
    d.interfaces = vec![nic("52:54:00:00:00:01"), nic("52:54:00:00:00:02"), nic("52:54:00:00:00:01")];
    let pci: PciAddress = "0000:03:00.0".parse().unwrap();
    d.hostdevs = vec![HostDev { address: pci, managed: true }, HostDev { address: pci, managed: false }];
    d.os = Os::Pc { boot: vec![BootDevice::Disk, BootDevice::Cdrom, BootDevice::Disk] };
    let p = check_definition(&d);
    assert_eq!(fields(&p), ["os.boot[2]", "interfaces[2].mac", "hostdevs[1].address"], "{p:#?}");
    d.os = Os::Pc { boot: vec![] };
    assert_eq!(fields(&check_definition(&d))[0], "os.boot");
}

#[test]
fn names_paths_and_text() {
    let mut d = def("net");
    d.interfaces = vec![
        Interface {
            source: NetSource::Bridge("a-very-long-bridge".into()),
            model: NicModel::E1000,
            mac: MacAddr::random(),
        },
        Interface {
            source: NetSource::Bridge("br/0".into()),
            model: NicModel::E1000,
            mac: MacAddr::random(),
        },
        Interface {
            source: NetSource::Network("my net".into()),
            model: NicModel::E1000,
            mac: MacAddr::random(),
        },
        Interface {
            source: NetSource::Bridge("virbr0".into()),
            model: NicModel::E1000,
            mac: MacAddr::random(),
        },
    ];
    d.serial = Some(Serial { log: Some("logs/x.log".into()) });
    d.graphics.vnc = Some(Vnc { port: Some(5800), listen: "127.0.0.1".parse().unwrap(), password: None });
    d.os = Os::Direct { kernel: "/k".into(), initrd: None, cmdline: Some("a\nb".into()) };
    let p = check_definition(&d);
    assert_eq!(
        fields(&p),
        [
            "os.cmdline",
            "interfaces[0].source.bridge",
            "interfaces[1].source.bridge",
            "interfaces[2].source.network",
            "serial.log",
            "graphics.vnc.port"
        ],
        "{p:#?}"
    );
    d.os = Os::Direct { kernel: "/k".into(), initrd: None, cmdline: Some("x".repeat(CMDLINE_MAX)) };
    assert!(check_definition(&d)[0].message.contains("2047"));
    use std::os::unix::ffi::OsStrExt;
    d.os = Os::Direct { kernel: std::ffi::OsStr::from_bytes(b"/k\xff").into(), initrd: None, cmdline: None };
    assert!(check_definition(&d)[0].message.contains("UTF-8"));
}

#[test]
fn all_problems_reported_at_once() {
    let mut d = def("many");
    d.memory_mib = 1 << 20;
    d.vcpus = 0;
    d.disks.push(disk(
        Some(Path::new("/nonexistent/vmdef-test.img")),
        DiskBus::Virtio,
        DiskDevice::Disk,
        "vda",
    ));
    let e = validate_define(&d, &[def("many")], &HOST).unwrap_err();
    assert_eq!(fields(&e.problems), ["vcpus", "memory_mib", "disks[0].path", "name"]);
    let shown = e.to_string();
    assert!(shown.starts_with("invalid definition\n  vcpus: 0 is out of range"), "{shown}");
    assert_eq!(shown.lines().count(), 5);
}

#[test]
fn host_limits_from_meminfo() {
    let text = "MemTotal:       16318540 kB\nMemFree:         1000 kB\n";
    assert_eq!(HostLimits::from_meminfo(text, 4), Some(HostLimits { memory_mib: 15936, cpus: 4 }));
    assert_eq!(HostLimits::from_meminfo("MemFree: 1 kB\n", 4), None);
    assert_eq!(HostLimits::from_meminfo("MemTotal: x kB\n", 4), None);
    let here = HostLimits::detect().unwrap();
    assert!(here.memory_mib > 0 && here.cpus > 0);
}

#[test]
fn a_bridge_name_with_quotes_is_refused_naming_the_field() {
    let mut d = def("nic");
    let mut n = nic("52:54:00:00:00:01");
    n.source = NetSource::Bridge("br0\";".into());
    d.interfaces.push(n);
    let p = check_definition(&d);
    assert_eq!(fields(&p), ["interfaces[0].source.bridge"]);
    assert!(p[0].message.contains("A-Z a-z 0-9 _ . -"), "{}", p[0].message);
}

/// A VNC password is 1 to 8 printable ASCII characters; an address others can reach needs
/// one; a port without one is valid but gets a warning.
#[test]
fn vnc_password_rules() {
    let mut d = VmDef::new(VmName::new("v").unwrap(), 64, 1);
    let vnc = |listen: &str, port: Option<u16>, password: Option<&str>| {
        Some(Vnc { port, listen: listen.parse().unwrap(), password: password.map(String::from) })
    };
    d.graphics.vnc = vnc("127.0.0.1", None, None);
    assert!(check_definition(&d).is_empty() && warnings(&d).is_empty());
    d.graphics.vnc = vnc("0.0.0.0", None, Some("secret"));
    assert!(check_definition(&d).is_empty());
    d.graphics.vnc = vnc("0.0.0.0", None, Some("123456789"));
    let p = check_definition(&d);
    assert_eq!(fields(&p), ["graphics.vnc.password"]);
    assert!(p[0].message.contains("9 characters") && p[0].message.contains("1 to 8"), "{p:?}");
    d.graphics.vnc = vnc("127.0.0.1", None, Some(""));
    assert_eq!(fields(&check_definition(&d)), ["graphics.vnc.password"]);
    d.graphics.vnc = vnc("127.0.0.1", None, Some("tab\there"));
    assert!(check_definition(&d)[0].message.contains("printable ASCII"));
    d.graphics.vnc = vnc("0.0.0.0", None, None);
    let p = check_definition(&d);
    assert_eq!(fields(&p), ["graphics.vnc.listen"]);
    assert!(p[0].message.contains("password") && p[0].message.contains("vmctl vnc"), "{p:?}");
    d.graphics.vnc = vnc("::1", Some(5901), None);
    assert!(check_definition(&d).is_empty());
    let w = warnings(&d);
    assert!(w.len() == 1 && w[0].contains("5901 is not used") && w[0].contains("vmctl vnc v"), "{w:?}");
    d.graphics.vnc = vnc("::1", Some(5901), Some("pw"));
    assert!(warnings(&d).is_empty());
}
