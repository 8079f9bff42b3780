// SPDX-License-Identifier: Apache-2.0
//! Translation of a [`VmDef`] into `vmm` command-line arguments.
//!
//! Everything the definition asks for is either translated or refused with an error naming
//! the device: nothing is silently dropped. Not supported by `vmm` yet (so `start` fails):
//! host PCI devices, an empty CD-ROM drive, more than one CD-ROM, a
//! virtio CD-ROM, more than three IDE disks, IDE disks or a CD-ROM on a direct-boot machine
//! without interfaces, and turning ACPI or the APIC off.
//!
//! Virtio disks are virtio-blk PCI functions (`--disk PATH,format=..,bus=virtio`), which both
//! machines have: a direct kernel boot with them stays on the direct machine, which then gets
//! a PCI bus. Network interfaces are e1000 or virtio-net NICs on the taps the daemon made
//! (`--nic tap=..,mac=..,model=..`), and the VNC server shows the standard VGA card; both
//! exist only on the PC machine: a direct kernel boot with interfaces or VNC becomes
//! `--machine pc --kernel K [--initramfs I] [--cmdline C]`, the PC machine booting the kernel
//! through fw_cfg. Like libvirt, which adds a video card to a domain with `<graphics>`, a VNC
//! server implies the VGA card.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use vmdef::model::{BootDevice, DiskBus, DiskDevice, DiskFormat, NicModel, Os, Video};
use vmdef::VmDef;

/// Most IDE hard disks `vmm` attaches (the CD-ROM takes the fourth position).
pub const MAX_IDE_DISKS: usize = 3;

/// A definition `vmm` cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{device}: {why}")]
pub struct Unsupported {
    /// The device or field, like `disks[1] (vda)`.
    pub device: String,
    /// Why and what to do.
    pub why: String,
}

/// Paths the daemon chooses for one run of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    /// `--control`: the VM's control socket.
    pub control: PathBuf,
    /// `--serial unix:`: the serial console socket.
    pub serial: PathBuf,
    /// `--exit-status-file`.
    pub exit_status: PathBuf,
}

fn unsupported(device: impl Into<String>, why: impl Into<String>) -> Unsupported {
    Unsupported { device: device.into(), why: why.into() }
}

fn path_arg(flag: &str, p: &Path) -> [OsString; 2] {
    [OsString::from(flag), p.as_os_str().to_owned()]
}

/// The arguments (without the program name) that run `def` with `paths`; `taps` are the
/// host taps of its interfaces, in order; `vnc` is the address the daemon chose for the VNC
/// server of a definition with one (its port fixed or the first free one).
pub fn vmm_args(
    def: &VmDef,
    paths: &RunPaths,
    taps: &[String],
    vnc: Option<SocketAddr>,
) -> Result<Vec<OsString>, Unsupported> {
    check_unsupported(def)?;
    if def.graphics.vnc.is_some() != vnc.is_some() {
        return Err(unsupported("graphics.vnc", "no address was chosen for the VNC server"));
    }
    if taps.len() != def.interfaces.len() {
        return Err(unsupported(
            "interfaces",
            format!("{} interfaces but {} taps were made for them", def.interfaces.len(), taps.len()),
        ));
    }
    let mut args: Vec<OsString> = vec![
        "--memory".into(),
        format!("{}M", def.memory_mib).into(),
        "--cpus".into(),
        def.vcpus.to_string().into(),
    ];
    match &def.os {
        Os::Direct { kernel, initrd, cmdline } if !def.interfaces.is_empty() || vnc.is_some() => {
            args.extend(["--machine".into(), "pc".into()]);
            kernel_args(&mut args, kernel, initrd.as_deref(), cmdline.as_deref());
            pc_args(def, &mut args)?;
            vga_arg(def, &mut args);
        }
        Os::Direct { kernel, initrd, cmdline } => {
            for (i, d) in def.disks.iter().enumerate() {
                let why = match (d.device, d.bus) {
                    (DiskDevice::Cdrom, _) => {
                        "a direct-boot machine has no CD-ROM drive; use os.machine \"pc\""
                    }
                    (_, DiskBus::Ide) => "a direct-boot machine has no IDE controller; use os.machine \"pc\"",
                    _ => continue,
                };
                return Err(unsupported(format!("disks[{i}] ({})", d.target), why));
            }
            args.extend(["--machine".into(), "direct".into()]);
            kernel_args(&mut args, kernel, initrd.as_deref(), cmdline.as_deref());
            // Only virtio disks are left: the direct machine puts them on its PCI bus.
            pc_args(def, &mut args)?;
        }
        Os::Pc { boot } => {
            args.extend(["--machine".into(), "pc".into()]);
            pc_args(def, &mut args)?;
            let order: Vec<&str> = boot
                .iter()
                .map(|b| match b {
                    BootDevice::Disk => "disk",
                    BootDevice::Cdrom => "cdrom",
                    BootDevice::Network => "net",
                })
                .collect();
            if !order.is_empty() {
                args.extend(["--boot".into(), order.join(",").into()]);
            }
            vga_arg(def, &mut args);
        }
    }
    for (nic, tap) in def.interfaces.iter().zip(taps) {
        let model = match nic.model {
            NicModel::E1000 => "e1000",
            NicModel::Virtio => "virtio",
        };
        args.extend(["--nic".into(), format!("tap={tap},mac={},model={model}", nic.mac).into()]);
    }
    if let Some(addr) = vnc {
        // The definition's listen address is the user's choice: an address other than
        // loopback is what they asked for, so vmm's guard against that is lifted.
        let remote = if addr.ip().is_loopback() { "" } else { ",allow-remote" };
        args.extend(["--vnc".into(), format!("{addr}{remote}").into()]);
    }
    let mut serial = OsString::from("unix:");
    match &def.serial {
        Some(_) => serial.push(paths.serial.as_os_str()),
        // No serial port in the definition: the UART's output goes nowhere.
        None => serial = OsString::from("file:/dev/null"),
    }
    args.extend(["--serial".into(), serial]);
    args.extend(path_arg("--control", &paths.control));
    args.extend(path_arg("--exit-status-file", &paths.exit_status));
    // The daemon applies on_reboot itself unless the guest should simply boot again.
    if def.on_reboot != vmdef::model::LifecycleAction::Restart {
        args.push("--no-reboot".into());
    }
    Ok(args)
}

fn kernel_args(args: &mut Vec<OsString>, kernel: &Path, initrd: Option<&Path>, cmdline: Option<&str>) {
    args.extend(path_arg("--kernel", kernel));
    if let Some(i) = initrd {
        args.extend(path_arg("--initramfs", i));
    }
    if let Some(c) = cmdline {
        args.extend(["--cmdline".into(), c.into()]);
    }
}

fn vga_arg(def: &VmDef, args: &mut Vec<OsString>) {
    let vga = match def.graphics.video {
        _ if def.graphics.vnc.is_some() => "std",
        Video::Vga => "std",
        Video::None => "none",
    };
    args.extend(["--vga".into(), vga.into()]);
}

/// Disks in target order (so `hd*` IDE disks come before `vd*` virtio ones and the first is
/// the one `<boot dev='hd'/>` boots), and the CD-ROM.
fn pc_args(def: &VmDef, args: &mut Vec<OsString>) -> Result<(), Unsupported> {
    let mut sorted: Vec<(usize, &vmdef::model::Disk)> = def.disks.iter().enumerate().collect();
    sorted.sort_by(|a, b| a.1.target.cmp(&b.1.target));
    let mut cdrom_seen = false;
    let mut disks = 0;
    for (i, d) in sorted {
        let name = || format!("disks[{i}] ({})", d.target);
        let Some(path) = &d.path else {
            return Err(unsupported(
                name(),
                "an empty CD-ROM drive is not supported by vmm yet; give a path",
            ));
        };
        if d.device == DiskDevice::Cdrom {
            if d.bus == DiskBus::Virtio {
                return Err(unsupported(name(), "a CD-ROM drive is on the IDE bus; use bus \"ide\""));
            }
            if cdrom_seen {
                return Err(unsupported(name(), "vmm has one CD-ROM drive; remove the others"));
            }
            cdrom_seen = true;
            args.extend(path_arg("--cdrom", path));
            continue;
        }
        disks += usize::from(d.bus == DiskBus::Ide);
        if disks > MAX_IDE_DISKS {
            return Err(unsupported(
                name(),
                "vmm attaches at most 3 IDE disks (the CD-ROM takes the 4th slot)",
            ));
        }
        let mut spec = path.as_os_str().to_owned();
        spec.push(match d.format {
            DiskFormat::Raw => ",format=raw",
            DiskFormat::Qcow2 => ",format=qcow2",
        });
        if d.bus == DiskBus::Virtio {
            spec.push(",bus=virtio");
        }
        if d.is_readonly() {
            spec.push(",readonly");
        }
        args.extend(["--disk".into(), spec]);
    }
    Ok(())
}

fn check_unsupported(def: &VmDef) -> Result<(), Unsupported> {
    if let Some(h) = def.hostdevs.first() {
        return Err(unsupported(
            format!("hostdevs[0] ({})", h.address),
            "PCI passthrough is not supported by vmm yet; remove the hostdev",
        ));
    }
    if !def.features.acpi {
        return Err(unsupported(
            "features.acpi",
            "vmm always provides ACPI; set acpi to true (XML: <acpi/>)",
        ));
    }
    if !def.features.apic {
        return Err(unsupported(
            "features.apic",
            "vmm always provides the APIC; set apic to true (XML: <apic/>)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmdef::model::{Disk, Interface, LifecycleAction, NetSource, NicModel};

    fn paths() -> RunPaths {
        RunPaths {
            control: "/s/run/a.sock".into(),
            serial: "/s/run/a.serial.sock".into(),
            exit_status: "/s/run/a.exit.json".into(),
        }
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    fn disk(path: &str, bus: DiskBus, device: DiskDevice, target: &str) -> Disk {
        Disk {
            path: Some(path.into()),
            format: DiskFormat::Raw,
            bus,
            device,
            target: target.into(),
            readonly: false,
        }
    }

    #[test]
    fn pc_machine_with_ide_disks_cdrom_and_boot_order() {
        let mut def = VmDef::new("a".parse().unwrap(), 512, 2);
        def.os = Os::Pc { boot: vec![BootDevice::Cdrom, BootDevice::Disk, BootDevice::Network] };
        def.disks.push(disk("/i/b.qcow2", DiskBus::Ide, DiskDevice::Disk, "hdb"));
        def.disks[0].format = DiskFormat::Qcow2;
        def.disks[0].readonly = true;
        def.disks.push(disk("/i/a.img", DiskBus::Ide, DiskDevice::Disk, "hda"));
        def.disks.push(disk("/i/x.iso", DiskBus::Ide, DiskDevice::Cdrom, "hdc"));
        def.graphics.video = Video::Vga;
        let args = strings(&vmm_args(&def, &paths(), &[], None).unwrap());
        assert_eq!(
            args.join(" "),
            "--memory 512M --cpus 2 --machine pc --disk /i/a.img,format=raw \
             --disk /i/b.qcow2,format=qcow2,readonly --cdrom /i/x.iso --boot cdrom,disk,net --vga std \
             --serial unix:/s/run/a.serial.sock --control /s/run/a.sock --exit-status-file /s/run/a.exit.json"
        );
    }

    #[test]
    fn virtio_disks_follow_ide_disks() {
        let mut def = VmDef::new("a".parse().unwrap(), 512, 1);
        def.os = Os::Pc { boot: vec![BootDevice::Disk] };
        def.disks.push(disk("/i/v2.qcow2", DiskBus::Virtio, DiskDevice::Disk, "vdb"));
        def.disks[0].format = DiskFormat::Qcow2;
        def.disks.push(disk("/i/v1.img", DiskBus::Virtio, DiskDevice::Disk, "vda"));
        def.disks[1].readonly = true;
        let args = strings(&vmm_args(&def, &paths(), &[], None).unwrap()).join(" ");
        assert!(
            args.contains(
                "--disk /i/v1.img,format=raw,bus=virtio,readonly --disk /i/v2.qcow2,format=qcow2,bus=virtio "
            ),
            "{args}"
        );
        def.disks.push(disk("/i/h.img", DiskBus::Ide, DiskDevice::Disk, "hda"));
        let args = strings(&vmm_args(&def, &paths(), &[], None).unwrap()).join(" ");
        assert!(args.contains("--machine pc --disk /i/h.img,format=raw --disk /i/v1.img"), "{args}");
        // A direct kernel boot with virtio disks stays on the direct machine, which has PCI.
        def.disks.truncate(2);
        def.os =
            Os::Direct { kernel: "/k/vmlinuz".into(), initrd: None, cmdline: Some("root=/dev/vda".into()) };
        let args = strings(&vmm_args(&def, &paths(), &[], None).unwrap()).join(" ");
        assert!(
            args.starts_with(
                "--memory 512M --cpus 1 --machine direct --kernel /k/vmlinuz --cmdline root=/dev/vda \
                 --disk /i/v1.img,format=raw,bus=virtio,readonly --disk /i/v2.qcow2,format=qcow2,bus=virtio \
                 --serial "
            ),
            "{args}"
        );
        assert!(!args.contains("--vga"), "{args}");
        // With an interface it moves to the PC machine, virtio disks and all.
        def.interfaces.push(nic("lan", "52:54:00:00:00:01"));
        let args = strings(&vmm_args(&def, &paths(), &["vt-a-0".into()], None).unwrap()).join(" ");
        assert!(
            args.contains("--machine pc --kernel /k/vmlinuz --cmdline root=/dev/vda --disk /i/v1.img"),
            "{args}"
        );
    }

    #[test]
    fn direct_machine_with_kernel_initrd_cmdline_and_no_reboot() {
        let mut def = VmDef::new("a".parse().unwrap(), 256, 1);
        def.os = Os::Direct {
            kernel: "/k/vmlinuz".into(),
            initrd: Some("/k/initrd".into()),
            cmdline: Some("console=ttyS0 quiet".into()),
        };
        def.on_reboot = LifecycleAction::Destroy;
        def.serial = None;
        let args = strings(&vmm_args(&def, &paths(), &[], None).unwrap());
        assert_eq!(
            args,
            [
                "--memory",
                "256M",
                "--cpus",
                "1",
                "--machine",
                "direct",
                "--kernel",
                "/k/vmlinuz",
                "--initramfs",
                "/k/initrd",
                "--cmdline",
                "console=ttyS0 quiet",
                "--serial",
                "file:/dev/null",
                "--control",
                "/s/run/a.sock",
                "--exit-status-file",
                "/s/run/a.exit.json",
                "--no-reboot"
            ]
        );
    }

    fn nic(net: &str, mac: &str) -> Interface {
        Interface {
            source: NetSource::Network(net.into()),
            model: NicModel::E1000,
            mac: mac.parse().unwrap(),
        }
    }

    #[test]
    fn nics_on_a_pc_machine() {
        let mut def = VmDef::new("a".parse().unwrap(), 512, 1);
        def.os = Os::Pc { boot: vec![BootDevice::Network] };
        def.interfaces.push(nic("lan", "52:54:00:00:00:01"));
        def.interfaces.push(nic("wan", "52:54:00:00:00:02"));
        def.interfaces[1].model = NicModel::Virtio;
        let taps = ["vt-a-0".to_string(), "vt-a-1".to_string()];
        let args = strings(&vmm_args(&def, &paths(), &taps, None).unwrap()).join(" ");
        assert!(
            args.contains(
                "--boot net --vga none --nic tap=vt-a-0,mac=52:54:00:00:00:01,model=e1000 --nic tap=vt-a-1,mac=52:54:00:00:00:02,model=virtio --serial"
            ),
            "{args}"
        );
        let e = vmm_args(&def, &paths(), &taps[..1], None).unwrap_err();
        assert_eq!(e.device, "interfaces");
    }

    #[test]
    fn a_kernel_with_nics_boots_on_the_pc_machine() {
        let mut def = VmDef::new("a".parse().unwrap(), 256, 1);
        def.os = Os::Direct {
            kernel: "/k/vmlinuz".into(),
            initrd: Some("/k/initrd".into()),
            cmdline: Some("console=ttyS0".into()),
        };
        def.interfaces.push(nic("lan", "52:54:00:00:00:01"));
        def.disks.push(disk("/i/a.img", DiskBus::Ide, DiskDevice::Disk, "hda"));
        let args = strings(&vmm_args(&def, &paths(), &["vt-a-0".into()], None).unwrap()).join(" ");
        assert!(
            args.starts_with(
                "--memory 256M --cpus 1 --machine pc --kernel /k/vmlinuz --initramfs /k/initrd \
                 --cmdline console=ttyS0 --disk /i/a.img,format=raw --vga none --nic tap=vt-a-0,mac=52:54:00:00:00:01,model=e1000"
            ),
            "{args}"
        );
    }

    #[test]
    fn vnc_on_a_kernel_boot_runs_the_pc_machine_with_vga() {
        let mut def = VmDef::new("a".parse().unwrap(), 256, 1);
        def.os = Os::Direct { kernel: "/k".into(), initrd: None, cmdline: None };
        def.graphics.vnc =
            Some(vmdef::model::Vnc { port: None, listen: std::net::Ipv4Addr::LOCALHOST.into() });
        let addr: SocketAddr = "127.0.0.1:5903".parse().unwrap();
        let args = strings(&vmm_args(&def, &paths(), &[], Some(addr)).unwrap()).join(" ");
        assert!(
            args.starts_with(
                "--memory 256M --cpus 1 --machine pc --kernel /k --vga std --vnc 127.0.0.1:5903 "
            ),
            "{args}"
        );
        // A listen address other than loopback is the user's explicit choice.
        let args =
            strings(&vmm_args(&def, &paths(), &[], Some("0.0.0.0:5900".parse().unwrap())).unwrap()).join(" ");
        assert!(args.contains(" --vnc 0.0.0.0:5900,allow-remote "), "{args}");
        // The PC machine keeps its boot order and gets the VGA card even if video says none.
        def.os = Os::Pc { boot: vec![BootDevice::Disk] };
        let args = strings(&vmm_args(&def, &paths(), &[], Some(addr)).unwrap()).join(" ");
        assert!(args.contains("--boot disk --vga std --vnc 127.0.0.1:5903 "), "{args}");
        // A chosen address without a VNC server in the definition is a daemon bug, refused.
        def.graphics.vnc = None;
        assert_eq!(vmm_args(&def, &paths(), &[], Some(addr)).unwrap_err().device, "graphics.vnc");
    }

    #[test]
    fn unsupported_devices_are_named() {
        let base = VmDef::new("a".parse().unwrap(), 256, 1);
        type Change = Box<dyn Fn(&mut VmDef)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|d| d.disks.push(disk("/v.iso", DiskBus::Virtio, DiskDevice::Cdrom, "vda"))),
                "disks[0] (vda)",
            ),
            (
                Box::new(|d| {
                    d.hostdevs
                        .push(vmdef::model::HostDev { address: "01:00.0".parse().unwrap(), managed: true })
                }),
                "hostdevs[0] (0000:01:00.0)",
            ),
            (
                Box::new(|d| {
                    d.graphics.vnc =
                        Some(vmdef::model::Vnc { port: None, listen: std::net::Ipv4Addr::LOCALHOST.into() })
                }),
                "graphics.vnc",
            ),
            (Box::new(|d| d.features.acpi = false), "features.acpi"),
            (Box::new(|d| d.features.apic = false), "features.apic"),
            (
                Box::new(|d| {
                    let mut c = disk("/x", DiskBus::Ide, DiskDevice::Cdrom, "hdc");
                    c.path = None;
                    d.disks.push(c)
                }),
                "disks[0] (hdc)",
            ),
            (
                Box::new(|d| {
                    for t in ["hda", "hdb", "hdc", "hdd"] {
                        d.disks.push(disk("/x", DiskBus::Ide, DiskDevice::Disk, t));
                    }
                }),
                "disks[3] (hdd)",
            ),
            (
                Box::new(|d| {
                    d.os = Os::Direct { kernel: "/k".into(), initrd: None, cmdline: None };
                    d.disks.push(disk("/x", DiskBus::Ide, DiskDevice::Disk, "hda"));
                }),
                "disks[0] (hda)",
            ),
            (
                Box::new(|d| {
                    d.os = Os::Direct { kernel: "/k".into(), initrd: None, cmdline: None };
                    d.disks.push(disk("/v", DiskBus::Virtio, DiskDevice::Disk, "vda"));
                    d.disks.push(disk("/x.iso", DiskBus::Ide, DiskDevice::Cdrom, "hdc"));
                }),
                "disks[1] (hdc)",
            ),
        ];
        for (change, device) in cases {
            let mut def = base.clone();
            change(&mut def);
            let e = vmm_args(&def, &paths(), &[], None).unwrap_err();
            assert_eq!(e.device, device, "{e}");
        }
    }
}
