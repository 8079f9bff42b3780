// SPDX-License-Identifier: Apache-2.0
//! Tests of domain XML import and export.

use super::*;
use crate::model::*;

/// A `virsh dumpxml` of a libvirt 9.x guest (virt-install, Debian 12), trimmed to the subset:
/// the runtime-only `id=`, `<alias>`, `<address>`, controllers, inputs, `<clock>`, `<cpu>`,
/// `<pm>`, `<memballoon>` and `<seclabel>` are removed.
const VIRSH_SAMPLE: &str = r#"<domain type='kvm'>
  <name>debian12</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <boot dev='hd'/>
    <boot dev='cdrom'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/debian12.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:6b:3c:58'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <video>
      <model type='vga'/>
    </video>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source>
        <address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
      </source>
    </hostdev>
  </devices>
</domain>
"#;

fn minimal(extra_domain: &str, extra_devices: &str) -> String {
    format!(
        "<domain type='kvm'>\n  <name>t</name>\n  <memory unit='MiB'>64</memory>\n  <os>\n    <type>hvm</type>\n  </os>\n{extra_domain}  <devices>\n{extra_devices}  </devices>\n</domain>\n"
    )
}

fn err_of(xml: &str) -> XmlError {
    from_xml(xml).expect_err("accepted")
}

fn full_pc() -> VmDef {
    let mut d = VmDef::new(VmName::new("full-pc").unwrap(), 4096, 4);
    d.os = Os::Pc { boot: vec![BootDevice::Cdrom, BootDevice::Disk, BootDevice::Network] };
    d.disks = vec![
        Disk {
            path: Some("/img/a b&c.qcow2".into()),
            format: DiskFormat::Qcow2,
            bus: DiskBus::Ide,
            device: DiskDevice::Disk,
            target: "hda".into(),
            readonly: false,
        },
        Disk {
            path: Some("/img/d.iso".into()),
            format: DiskFormat::Raw,
            bus: DiskBus::Ide,
            device: DiskDevice::Cdrom,
            target: "hdc".into(),
            readonly: true,
        },
        Disk {
            path: Some("/img/ro.raw".into()),
            format: DiskFormat::Raw,
            bus: DiskBus::Virtio,
            device: DiskDevice::Disk,
            target: "vdb".into(),
            readonly: true,
        },
    ];
    d.interfaces = vec![
        Interface { source: NetSource::Bridge("br0".into()), model: NicModel::E1000, mac: MacAddr::random() },
        Interface {
            source: NetSource::Network("nat".into()),
            model: NicModel::Virtio,
            mac: MacAddr::random(),
        },
    ];
    d.serial = Some(Serial { log: Some("/var/log/vm/full-pc.log".into()) });
    d.graphics = Graphics {
        video: Video::Vga,
        vnc: Some(Vnc { port: Some(5905), listen: "::1".parse().unwrap(), password: Some("p&s'<w".into()) }),
    };
    d.hostdevs = vec![
        HostDev { address: "0000:01:00.0".parse().unwrap(), managed: true },
        HostDev { address: "0001:af:1f.7".parse().unwrap(), managed: false },
    ];
    d.on_poweroff = LifecycleAction::Preserve;
    d.on_reboot = LifecycleAction::Destroy;
    d.on_crash = LifecycleAction::Restart;
    d.autostart = true;
    d.cputune = CpuTune { period_us: Some(50_000), quota_us: Some(25_000) };
    d
}

#[test]
fn round_trip_several_definitions() {
    let mut direct = VmDef::new(VmName::new("direct").unwrap(), 256, 1);
    direct.os = Os::Direct {
        kernel: "/boot/vmlinuz".into(),
        initrd: Some("/boot/initrd.img".into()),
        cmdline: Some("console=ttyS0 root=/dev/vda quote=\"x\" <&'>".into()),
    };
    direct.features = Features { acpi: true, apic: true };
    direct.serial = None;
    let mut kernel_only = direct.clone();
    kernel_only.name = VmName::new("k").unwrap();
    kernel_only.os = Os::Direct { kernel: "/k".into(), initrd: None, cmdline: Some(String::new()) };
    kernel_only.vcpus = 3;
    let mut empty_cd = VmDef::new(VmName::new("cd").unwrap(), 32, 254);
    empty_cd.disks.push(Disk {
        path: None,
        format: DiskFormat::Raw,
        bus: DiskBus::Ide,
        device: DiskDevice::Cdrom,
        target: "hdc".into(),
        readonly: false,
    });
    empty_cd.graphics.vnc = Some(Vnc { port: None, listen: "0.0.0.0".parse().unwrap(), password: None });
    let mut tuned = VmDef::new(VmName::new("tuned").unwrap(), 128, 2);
    tuned.cputune = CpuTune { period_us: Some(100_000), quota_us: Some(50_000) };
    let mut quota_only = tuned.clone();
    quota_only.name = VmName::new("quota-only").unwrap();
    quota_only.cputune = CpuTune { period_us: None, quota_us: Some(cputune::MAX_QUOTA_US) };
    let mut period_only = tuned.clone();
    period_only.name = VmName::new("period-only").unwrap();
    period_only.cputune = CpuTune { period_us: Some(1000), quota_us: None };
    let defs = [
        VmDef::new(VmName::new("min").unwrap(), 64, 1),
        full_pc(),
        direct,
        kernel_only,
        empty_cd,
        tuned,
        quota_only,
        period_only,
    ];
    for def in defs {
        let xml = to_xml(&def);
        let back = from_xml(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        assert_eq!(back, def, "{xml}");
        assert!(round_trips(&def));
        // Export is deterministic, so define → dump → define → dump is a fixed point.
        assert_eq!(to_xml(&back), xml);
    }
}

#[test]
fn virsh_sample_imports() {
    let d = from_xml(VIRSH_SAMPLE).unwrap();
    assert_eq!(d.name.as_str(), "debian12");
    assert_eq!(d.uuid.to_string(), "4dea22b3-1d52-d8f3-2516-782e98ab3fa0");
    assert_eq!((d.memory_mib, d.vcpus), (2048, 2));
    assert_eq!(d.os, Os::Pc { boot: vec![BootDevice::Disk, BootDevice::Cdrom] });
    assert_eq!(d.features, Features { acpi: true, apic: true });
    assert_eq!(d.disks.len(), 2);
    assert_eq!(
        d.disks[0].path.as_deref(),
        Some(std::path::Path::new("/var/lib/libvirt/images/debian12.qcow2"))
    );
    assert_eq!(
        (d.disks[0].format, d.disks[0].bus, d.disks[0].target.as_str()),
        (DiskFormat::Qcow2, DiskBus::Virtio, "vda")
    );
    assert_eq!(
        (d.disks[1].device, d.disks[1].path.as_ref(), d.disks[1].readonly),
        (DiskDevice::Cdrom, None, true)
    );
    assert_eq!(d.interfaces[0].source, NetSource::Network("default".into()));
    assert_eq!(d.interfaces[0].mac.to_string(), "52:54:00:6b:3c:58");
    assert_eq!(d.serial, Some(Serial { log: None }));
    assert_eq!(d.graphics.video, Video::Vga);
    assert_eq!(
        d.graphics.vnc,
        Some(Vnc { port: None, listen: "127.0.0.1".parse().unwrap(), password: None })
    );
    assert_eq!(d.hostdevs[0].address.to_string(), "0000:01:00.0");
    assert!(d.hostdevs[0].managed && !d.autostart);
    // Export and import again: the same VM; and the same through the JSON form.
    assert_eq!(from_xml(&to_xml(&d)).unwrap(), d);
    assert_eq!(VmDef::from_json(&d.to_json().unwrap()).unwrap(), d);
}

#[test]
fn memory_units_convert() {
    for (unit, value, mib) in [
        ("", "65536", 64),
        (" unit='KiB'", "65536", 64),
        (" unit='k'", "1048576", 1024),
        (" unit='MiB'", "512", 512),
        (" unit='GiB'", "3", 3072),
        (" unit='bytes'", "33554432", 32),
        (" unit='TiB'", "1", 1 << 20),
    ] {
        let xml = format!(
            "<domain type='kvm'><name>m</name><memory{unit}>{value}</memory><os><type>hvm</type></os></domain>"
        );
        assert_eq!(from_xml(&xml).unwrap().memory_mib, mib, "{unit} {value}");
    }
    let i =
        import("<domain type='kvm'><name>m</name><memory>1000</memory><os><type>hvm</type></os></domain>")
            .unwrap();
    assert_eq!(i.def.memory_mib, 1, "rounded up to the MiB");
    assert!(
        i.warnings.iter().any(|w| w.message.contains("1024000 bytes is rounded up to 1 MiB")),
        "{:?}",
        i.warnings
    );
    let e = err_of(
        "<domain type='kvm'><name>m</name><memory unit='MB'>1</memory><os><type>hvm</type></os></domain>",
    );
    assert!(matches!(&e.kind, XmlErrorKind::Value { value, .. } if value == "MB"), "{e}");
    let e = err_of("<domain type='kvm'><name>m</name><memory unit='TiB'>18446744073709551615</memory><os><type>hvm</type></os></domain>");
    assert!(e.to_string().contains("64 bits"), "{e}");
}

#[test]
fn current_memory_must_equal_memory() {
    let ok = minimal("  <currentMemory unit='KiB'>65536</currentMemory>\n", "");
    assert_eq!(from_xml(&ok).unwrap().memory_mib, 64);
    let bad = minimal("  <currentMemory unit='MiB'>32</currentMemory>\n", "");
    let e = err_of(&bad);
    assert_eq!((e.line, e.column), (7, 3));
    assert!(e.to_string().contains("ballooning"), "{e}");
}

#[test]
fn unsupported_element_named_with_position() {
    let e = err_of(&minimal("  <clockwork offset='utc'/>\n", ""));
    assert_eq!((e.line, e.column), (7, 3));
    assert_eq!(e.kind, XmlErrorKind::Element { element: "clockwork".into(), parent: "domain".into() });
    assert!(
        e.to_string().starts_with("line 7, column 3: unsupported element <clockwork> in <domain>"),
        "{e}"
    );

    let e = err_of(&minimal("", "    <sound model='ich9'/>\n"));
    assert_eq!((e.line, e.column), (8, 5));
    assert!(e.to_string().contains("<sound> is refused: sound devices are not emulated"), "{e}");

    let e = err_of(&minimal(
        "",
        "    <disk type='file'>\n      <source file='/a'/>\n      <target dev='vda'/>\n      <geometry cyls='1'/>\n    </disk>\n",
    ));
    assert_eq!((e.line, e.column), (11, 7));

    let e = err_of(&minimal("  <features>\n    <gic/>\n  </features>\n", ""));
    assert_eq!(e.kind, XmlErrorKind::Element { element: "gic".into(), parent: "features".into() });
}

#[test]
fn unsupported_attribute_named_with_position() {
    let e = err_of(&minimal("", "    <disk type='file' device='disk' rawio='no'>\n    </disk>\n"));
    assert_eq!((e.line, e.column), (8, 37));
    assert_eq!(e.kind, XmlErrorKind::Attribute { element: "disk".into(), attribute: "rawio".into() });

    let e = err_of(
        "<domain type='kvm' ids='3'><name>x</name><memory>65536</memory><os><type>hvm</type></os></domain>",
    );
    assert_eq!((e.line, e.column), (1, 20));
    assert!(e.to_string().contains("ids="), "{e}");

    let e = err_of(&minimal("", "    <interface type='bridge'>\n      <source bridge='b' network='n'/>\n      <model type='virtio'/>\n    </interface>\n"));
    assert!(matches!(&e.kind, XmlErrorKind::Attribute { attribute, .. } if attribute == "network"), "{e}");
}

#[test]
fn unsupported_values_rejected() {
    let cases = [
        ("<domain type='kvm'>", "<domain type='xen'>", "xen"),
        ("machine='pc'", "machine='q35'", "q35"),
        ("arch='x86_64'", "arch='aarch64'", "aarch64"),
        (">hvm<", ">xen<", "xen"),
        ("<on_crash>restart", "<on_crash>coredump-destroy", "coredump-destroy"),
        ("<model type='e1000'/>", "<model type='rtl8139'/>", "rtl8139"),
        ("type='qcow2'", "type='vmdk'", "vmdk"),
        ("<graphics type='vnc'", "<graphics type='vnx'", "vnx"),
        ("<boot dev='hd'/>", "<boot dev='fd'/>", "fd"),
        ("<serial type='pty'>", "<serial type='tcp'>", "tcp"),
        ("managed='yes'", "managed='maybe'", "maybe"),
        ("<model type='vga'/>", "<model type='vgx'/>", "vgx"),
        ("address='::1'", "address='localhost'", "localhost"),
    ];
    let base = to_xml(&full_pc());
    assert!(from_xml(&base).is_ok());
    for (from, to, value) in cases {
        assert!(base.contains(from), "{from}");
        let xml = base.replacen(from, to, 1);
        let e = err_of(&xml);
        assert!(matches!(&e.kind, XmlErrorKind::Value { value: v, .. } if v == value), "{to}: {e}");
        let line = xml.lines().position(|l| l.contains(to)).unwrap() + 1;
        assert_eq!(e.line as usize, line, "{to}: {e}");
    }
}

#[test]
fn missing_required_parts() {
    let e = err_of("<domain type='kvm'><memory>65536</memory><os><type>hvm</type></os></domain>");
    assert!(e.to_string().contains("<domain> needs a <name>"), "{e}");
    let e = err_of("<domain type='kvm'><name>a</name><memory>65536</memory></domain>");
    assert!(e.to_string().contains("<os>"), "{e}");
    let e = err_of(&minimal(
        "",
        "    <interface type='bridge'>\n      <source bridge='br0'/>\n    </interface>\n",
    ));
    assert_eq!((e.line, e.column), (8, 5));
    assert!(e.to_string().contains("<model type='e1000'|'virtio'/>"), "{e}");
    let e = err_of(&minimal(
        "",
        "    <disk type='file' device='disk'>\n      <target dev='vda'/>\n    </disk>\n",
    ));
    assert!(e.to_string().contains("only a CD-ROM may be empty"), "{e}");
    let e = err_of("<domain><name>a</name><memory>65536</memory><os><type>hvm</type></os></domain>");
    assert!(e.to_string().contains("type= attribute"), "{e}");
}

#[test]
fn duplicates_and_conflicts() {
    let e = err_of(&minimal("  <name>u</name>\n", ""));
    assert_eq!(
        (e.line, e.column, e.kind.clone()),
        (7, 3, XmlErrorKind::Duplicate { element: "name".into() })
    );
    let g = "    <graphics type='vnc'/>\n";
    let e = err_of(&minimal("", &format!("{g}{g}")));
    assert_eq!(e.line, 9);
    let e = err_of(
        "<domain type='kvm'><name>a</name><memory>65536</memory><os><type>hvm</type><kernel>/k</kernel><boot dev='hd'/></os></domain>",
    );
    assert!(matches!(e.kind, XmlErrorKind::Conflict(_)), "{e}");
    let e = err_of("<domain type='kvm'><name>a</name><memory>65536</memory><os><type>hvm</type><initrd>/i</initrd></os></domain>");
    assert!(e.to_string().contains("<kernel>"), "{e}");
    let s = "    <serial type='pty'/>\n";
    let e = err_of(&minimal("", &format!("{s}{s}")));
    assert!(e.to_string().contains("only one serial port"), "{e}");
    let e = err_of(&minimal("", "    <serial type='pty'>\n      <target port='1'/>\n    </serial>\n"));
    assert!(matches!(&e.kind, XmlErrorKind::Value { value, .. } if value == "1"), "{e}");
}

#[test]
fn syntax_errors_have_position() {
    let e = err_of("<domain type='kvm'>\n  <name>a</nme>\n</domain>");
    assert_eq!(e.line, 2);
    assert!(matches!(e.kind, XmlErrorKind::Syntax(_)));
    assert!(!e.to_string().contains(" at 2:"), "position printed twice: {e}");
    let e = err_of("<!DOCTYPE d [<!ENTITY x 'y'>]><domain type='kvm'/>");
    assert!(matches!(e.kind, XmlErrorKind::Limit(crate::limits::LimitError::Doctype(1))), "{e}");
    let e = err_of("<domain type='kvm'>stray<name>a</name></domain>");
    assert_eq!((e.line, e.column), (1, 20));
    let e = err_of("<vm/>");
    assert!(e.to_string().contains("<vm>"), "{e}");
}

#[test]
fn generated_and_implied_values() {
    let xml = minimal(
        "",
        "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n    <interface type='bridge'>\n      <source bridge='br0'/>\n      <model type='e1000'/>\n    </interface>\n    <console type='pty'/>\n",
    );
    let a = from_xml(&xml).unwrap();
    let b = from_xml(&xml).unwrap();
    assert_ne!(a.uuid, b.uuid);
    assert_eq!(&a.interfaces[0].mac.octets()[..3], &[0x52, 0x54, 0]);
    assert_ne!(a.interfaces[0].mac, b.interfaces[0].mac);
    assert_eq!(a.serial, Some(Serial::default()), "a console implies serial port 0");
    assert_eq!(a.os, Os::Pc { boot: vec![BootDevice::Disk] });
    assert_eq!(a.features, Features { acpi: true, apic: true }, "libvirt's guest has them too");
    assert_eq!((a.vcpus, a.autostart), (1, false));
    assert_eq!(a.graphics, Graphics::default());
}

#[test]
fn disk_bus_from_target_prefix_and_hostdev_numbers() {
    let xml = minimal(
        "",
        "    <disk type='file'>\n      <source file='/a'/>\n      <target dev='hdb'/>\n    </disk>\n    <hostdev mode='subsystem' type='pci'>\n      <source>\n        <address domain='0' bus='10' slot='0x1f' function='7'/>\n      </source>\n    </hostdev>\n",
    );
    let d = from_xml(&xml).unwrap();
    assert_eq!((d.disks[0].bus, d.disks[0].format), (DiskBus::Ide, DiskFormat::Raw));
    assert_eq!(d.hostdevs[0].address.to_string(), "0000:0a:1f.7");
    assert!(d.hostdevs[0].managed);
    let bad = xml.replace("slot='0x1f'", "slot='0x20'");
    let e = err_of(&bad);
    assert_eq!(e.line, 14);
    assert!(e.to_string().contains("slot"), "{e}");
    let bad = xml.replace("dev='hdb'", "dev='sdb'");
    assert!(err_of(&bad).to_string().contains("sdb"));
}

#[test]
fn metadata_carries_autostart_and_keeps_other_tools_elements() {
    let with = minimal(
        &format!(
            "  <metadata>\n    <vmctl:config xmlns:vmctl='{METADATA_NS}' autostart='yes'/>\n  </metadata>\n"
        ),
        "",
    );
    assert!(from_xml(&with).unwrap().autostart);
    let foreign = minimal(
        "  <metadata>\n    <libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'/>\n  </metadata>\n",
        "",
    );
    let i = import(&foreign).unwrap();
    assert_eq!(
        i.def.metadata,
        vec!["<libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'/>"
            .to_string()]
    );
    assert!(!i.def.autostart);
}

/// Checks exported XML against libvirt's own RelaxNG schema when `virt-xml-validate`
/// (Debian `libvirt-clients`) is installed; otherwise says so and checks nothing.
#[test]
fn export_passes_libvirt_schema() {
    let Ok(dir) = tempfile::tempdir() else { panic!("no temp dir") };
    let mut direct = VmDef::new(VmName::new("direct").unwrap(), 256, 1);
    direct.os = Os::Direct { kernel: "/k".into(), initrd: Some("/i".into()), cmdline: Some("a<b".into()) };
    let defs = [full_pc(), direct, from_xml(VIRSH_SAMPLE).unwrap()];
    for (i, def) in defs.iter().enumerate() {
        let path = dir.path().join(format!("{i}.xml"));
        std::fs::write(&path, to_xml(def)).unwrap();
        match std::process::Command::new("virt-xml-validate").arg(&path).arg("domain").output() {
            Err(_) => {
                eprintln!("virt-xml-validate not installed: libvirt schema check skipped");
                return;
            }
            Ok(out) => assert!(
                out.status.success(),
                "{}\n{}{}",
                to_xml(def),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

/// What `virt-install --osinfo debian12 --machine pc` and `virsh dumpxml` write for an
/// i440FX guest, as written: defines with warnings for what is not kept.
const VIRSH_DUMPXML_PC: &str = r#"<domain type='kvm' id='7'>
  <name>deb12</name>
  <uuid>6c5f2e7a-9b1e-4c1a-8d67-3e1f5d2b9a10</uuid>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory unit='KiB'>2097152</memory>
  <currentMemory unit='KiB'>2097152</currentMemory>
  <vcpu placement='static' cpuset='0-1'>2</vcpu>
  <resource>
    <partition>/machine</partition>
  </resource>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <vmport state='off'/>
  </features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <pm>
    <suspend-to-mem enabled='no'/>
    <suspend-to-disk enabled='no'/>
  </pm>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source file='/var/lib/libvirt/images/deb12.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='hda' bus='ide'/>
      <readonly/>
      <address type='drive' controller='0' bus='0' target='0' unit='0'/>
    </disk>
    <controller type='usb' index='0' model='piix3-uhci'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>
    </controller>
    <controller type='pci' index='0' model='pci-root'/>
    <controller type='ide' index='0'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x1'/>
    </controller>
    <controller type='virtio-serial' index='0'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>
    </controller>
    <interface type='network'>
      <mac address='52:54:00:3b:7e:12'/>
      <source network='default' portid='3c4f2d1e-0000-4000-8000-000000000001'/>
      <target dev='vnet3'/>
      <model type='virtio'/>
      <alias name='net0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>
    <serial type='pty'>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
    <input type='tablet' bus='usb'>
      <address type='usb' bus='0' port='1'/>
    </input>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <video>
      <model type='virtio' heads='1' primary='yes'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </video>
    <memballoon model='virtio'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x06' function='0x0'/>
    </memballoon>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'/>
</domain>
"#;

#[test]
fn virsh_dumpxml_defines_as_written_with_warnings() {
    let i = import(VIRSH_DUMPXML_PC).unwrap_or_else(|e| panic!("{e}"));
    let d = &i.def;
    assert_eq!((d.name.as_str(), d.memory_mib, d.vcpus), ("deb12", 2048, 2));
    assert_eq!(d.os, Os::Pc { boot: vec![BootDevice::Disk] });
    assert_eq!(d.disks.len(), 2);
    assert_eq!((d.disks[0].bus, d.disks[0].format), (DiskBus::Virtio, DiskFormat::Qcow2));
    assert_eq!((d.disks[1].device, d.disks[1].path.as_ref()), (DiskDevice::Cdrom, None));
    assert_eq!(d.interfaces[0].model, NicModel::Virtio);
    assert_eq!(d.interfaces[0].mac.to_string(), "52:54:00:3b:7e:12");
    assert_eq!(d.graphics.video, Video::Vga);
    let text: Vec<String> = i.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(d.metadata.len(), 1, "libosinfo's element kept");
    for expected in [
        "cpuset='0-1'",
        "<resource>",
        "<pm>",
        "discard='unmap'",
        "<address> elements are ignored",
        "<alias> elements are ignored",
        "type='usb'> is ignored",
        "type='virtio-serial'> is ignored",
        "<channel>",
        "<input type='tablet'>",
        "<video model='virtio'>",
        "<memballoon>",
        "<rng>",
        "<seclabel>",
        "<interface><target>",
        "listens on a unix socket",
    ] {
        assert!(text.iter().any(|w| w.contains(expected)), "no warning with {expected:?}: {text:#?}");
    }
    // Not warned: what the vmm does anyway.
    for quiet in ["<clock", "<cpu>", "vmport", "ps2", "pci-root", "type='ide'"] {
        assert!(!text.iter().any(|w| w.contains(quiet)), "warned about {quiet:?}: {text:#?}");
    }
    assert!(text.iter().all(|w| w.starts_with("line ")), "{text:#?}");
}

#[test]
fn every_refusal_of_a_document_is_reported_at_once() {
    let xml = VIRSH_DUMPXML_PC
        .replace("<target dev='vda' bus='virtio'/>", "<target dev='sda' bus='sata'/>")
        .replace(
            "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>",
            "<graphics type='spice' autoport='yes'>",
        )
        .replace("<rng model='virtio'>", "<sound model='ich9'/>\n    <rng model='virtio'>")
        .replace(
            "<memory unit='KiB'>2097152</memory>",
            "<memory unit='KiB'>2097152</memory>\n  <sysinfo type='smbios'/>",
        );
    let e = import(&xml).unwrap_err();
    let text = e.to_string();
    assert_eq!(e.0.len(), 4, "{text}");
    assert!(text.starts_with("4 problems:"), "{text}");
    for (n, expected) in [
        (0, "<sysinfo> is refused"),
        (1, "<target> is refused: bus='sata' is not emulated"),
        (2, "<graphics> is refused: graphics type='spice' is not supported; use type='vnc'"),
        (3, "<sound> is refused"),
    ] {
        assert!(e.0[n].to_string().contains(expected), "{n}: {}", e.0[n]);
    }
    let lines: Vec<u32> = e.0.iter().map(|e| e.line).collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "in document order: {lines:?}");
}

#[test]
fn foreign_metadata_is_kept_verbatim_and_round_trips() {
    let xml = VIRSH_DUMPXML_PC.replace(" id='7'", "");
    let i = import(&xml).unwrap();
    assert_eq!(i.def.metadata.len(), 1);
    assert!(i.def.metadata[0].starts_with(
        "<libosinfo:libosinfo xmlns:libosinfo=\"http://libosinfo.org/xmlns/libvirt/domain/1.0\">"
    ));
    assert!(i.def.metadata[0].ends_with("</libosinfo:libosinfo>"));
    assert!(!i.warnings.iter().any(|w| w.message.contains("libosinfo")), "{:?}", i.warnings);
    let out = to_xml(&i.def);
    assert!(out.contains("<libosinfo:os id=\"http://debian.org/debian/12\"/>"), "{out}");
    let mut auto = i.def.clone();
    auto.autostart = true;
    for def in [i.def, auto] {
        let back = from_xml(&to_xml(&def)).unwrap();
        assert_eq!(back, def);
        assert_eq!(to_xml(&back), to_xml(&def));
    }
    // A prefix declared on an ancestor cannot be kept verbatim: a warning instead.
    let ancestor = minimal("  <metadata xmlns:x='urn:x'>\n    <x:note>hi</x:note>\n  </metadata>\n", "");
    let i = import(
        &ancestor
            .replace("<metadata xmlns:x='urn:x'>", "<metadata>")
            .replace("<domain type='kvm'>", "<domain type='kvm' xmlns:x='urn:x'>"),
    );
    assert!(
        i.is_err()
            || i.as_ref()
                .is_ok_and(|i| i.def.metadata.is_empty()
                    && i.warnings.iter().any(|w| w.message.contains("not kept"))),
        "{i:?}"
    );
    for (bad, ok) in [
        ("<x:a xmlns:x='urn:x'/>", true),
        ("<a/>", false),
        ("<x:a xmlns:x='urn:x'/><x:b xmlns:x='urn:x'/>", false),
        (" <x:a xmlns:x='urn:x'/>", false),
        ("</metadata><sound/>", false),
    ] {
        assert_eq!(import::check_metadata_element(bad).is_ok(), ok, "{bad}");
    }
}

#[test]
fn clock_offset_localtime_is_kept_and_written_back() {
    let xml =
        minimal("  <clock offset='localtime'>\n    <timer name='hpet' present='no'/>\n  </clock>\n", "");
    let i = import(&xml).unwrap();
    assert_eq!(i.def.clock_offset, ClockOffset::Localtime);
    assert!(
        !i.warnings.iter().any(|w| w.message.contains("clock") || w.message.contains("timer")),
        "{:?}",
        i.warnings
    );
    let out = to_xml(&i.def);
    assert!(out.contains("<clock offset='localtime'/>"), "{out}");
    assert_eq!(from_xml(&out).unwrap(), i.def);
    assert_eq!(from_xml(&minimal("  <clock offset='utc'/>\n", "")).unwrap().clock_offset, ClockOffset::Utc);
    let i = import(&minimal("  <clock offset='variable' adjustment='30'/>\n", "")).unwrap();
    assert_eq!(i.def.clock_offset, ClockOffset::Utc);
    assert!(i.warnings.iter().any(|w| w.message.contains("offset='variable'")), "{:?}", i.warnings);
    assert!(!to_xml(&i.def).contains("<clock"), "UTC is libvirt's default: not written");
    let json = i.def.to_json().unwrap();
    assert!(!json.contains("clock_offset"), "{json}");
    let mut local = i.def.clone();
    local.clock_offset = ClockOffset::Localtime;
    assert!(local.to_json().unwrap().contains("\"clock_offset\": \"localtime\""));
}

mod cputune_xml;

/// `passwd=` is kept and written back; without it a TCP port or listen address is a unix
/// socket, with a warning; plain `<graphics type='vnc'/>` has none and is written back as is.
#[test]
fn vnc_passwd_and_unix_socket() {
    let dom = |g: &str| {
        format!(
            "<domain type='kvm'><name>v</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
             <os><type>hvm</type></os><features><acpi/><apic/></features><devices>{g}<video><model type='vga'/></video></devices></domain>"
        )
    };
    let plain = import(&dom("<graphics type='vnc'/>")).unwrap();
    assert!(plain.warnings.is_empty(), "{:?}", plain.warnings);
    let vnc = plain.def.graphics.vnc.clone().unwrap();
    assert!(!vnc.is_tcp() && vnc.password.is_none());
    assert!(to_xml(&plain.def).contains("<graphics type='vnc'/>"), "{}", to_xml(&plain.def));
    assert!(round_trips(&plain.def));

    let stock = import(&dom("<graphics type='vnc' port='-1' autoport='yes'/>")).unwrap();
    let w: Vec<String> = stock.warnings.iter().map(ToString::to_string).collect();
    assert!(w.len() == 1 && w[0].contains("unix socket") && w[0].contains("vmctl vnc"), "{w:?}");
    assert!(!stock.def.graphics.vnc.as_ref().unwrap().is_tcp());

    let pw =
        import(&dom("<graphics type='vnc' port='5901' autoport='no' listen='0.0.0.0' passwd='s&amp;cr3t'/>"))
            .unwrap();
    assert!(pw.warnings.is_empty(), "{:?}", pw.warnings);
    let vnc = pw.def.graphics.vnc.clone().unwrap();
    assert_eq!((vnc.port, vnc.password.as_deref()), (Some(5901), Some("s&cr3t")));
    assert!(vnc.is_tcp());
    assert!(!format!("{vnc:?}").contains("s&cr3t"), "Debug hides the password");
    let xml = to_xml(&pw.def);
    assert!(xml.contains("passwd='s&amp;cr3t'"), "{xml}");
    assert!(round_trips(&pw.def));
    // Without secrets (dumpxml without --security-info): no passwd.
    assert!(!to_xml(&pw.def.without_secrets()).contains("passwd"));
}
