// SPDX-License-Identifier: Apache-2.0
//! Translation of a [`VmDef`] into the VM configuration `vmm` runs: an
//! [`api::VmConfigFile`], written to `<run>/<name>.config.json` and passed as
//! `vmm --config FILE` (the only argument besides the daemon's `--vmm-arg`s).
//!
//! Everything the definition asks for is either translated or refused with an error naming
//! the device: nothing is silently dropped. Not supported by `vmm` yet (so `start` fails):
//! host PCI devices, an empty CD-ROM drive, more than one CD-ROM, a
//! virtio CD-ROM, more than three IDE disks, IDE disks or a CD-ROM on a direct-boot machine
//! without interfaces, and turning ACPI or the APIC off.
//!
//! Virtio disks are virtio-blk PCI functions (`bus: virtio`), which both machines have: a
//! direct kernel boot with them stays on the direct machine, which then gets a PCI bus.
//! Network interfaces are e1000 or virtio-net NICs on the taps the daemon made, and the VNC
//! server shows the standard VGA card; both exist only on the PC machine: a direct kernel boot
//! with interfaces or VNC becomes the PC machine booting the kernel (and initramfs and command
//! line) through fw_cfg. Like libvirt, which adds a video card to a domain with `<graphics>`, a
//! VNC server implies the VGA card.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use api::hostdev::HostDevConfig;
use api::machine::{self as vm, DiskConfig, MachineKind, NicConfig};
use api::vnc::{VncListen, VncPassword};
use api::{SeccompMode, SerialConfig, VmConfigFile};
use vmdef::model::{BootDevice, DiskBus, DiskDevice, DiskFormat, NicModel, Os, Video};
use vmdef::VmDef;

/// Most IDE hard disks `vmm` attaches (the CD-ROM takes the fourth position).
pub const MAX_IDE_DISKS: usize = vm::MAX_IDE_DISKS;

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
    /// The run's directory, holding all of the below (a jailed vmm's only writable one).
    pub dir: PathBuf,
    /// The VM configuration file (`vmm --config`).
    pub config: PathBuf,
    /// `control`: the VM's control socket.
    pub control: PathBuf,
    /// `serial: unix:PATH`: the serial console socket.
    pub serial: PathBuf,
    /// `exit_status_file`.
    pub exit_status: PathBuf,
    /// `vnc: unix:PATH`: the VNC socket of a VM without a VNC password.
    pub vnc: PathBuf,
}

fn unsupported(device: impl Into<String>, why: impl Into<String>) -> Unsupported {
    Unsupported { device: device.into(), why: why.into() }
}

/// The configuration that runs `def` with `paths`; `taps` are the host taps of its
/// interfaces, in order; `vnc` is the TCP address the daemon chose for the VNC server of a
/// definition with a VNC password (its port fixed or the first free one). A VNC server
/// without a password listens on the unix socket `paths.vnc`.
pub fn vmm_config(
    def: &VmDef,
    paths: &RunPaths,
    taps: &[String],
    vnc: Option<SocketAddr>,
) -> Result<VmConfigFile, Unsupported> {
    check_unsupported(def)?;
    let tcp = def.graphics.vnc.as_ref().is_some_and(vmdef::model::Vnc::is_tcp);
    if tcp != vnc.is_some() {
        return Err(unsupported("graphics.vnc", "no TCP address was chosen for the VNC server"));
    }
    if taps.len() != def.interfaces.len() {
        return Err(unsupported(
            "interfaces",
            format!("{} interfaces but {} taps were made for them", def.interfaces.len(), taps.len()),
        ));
    }
    let mut c = VmConfigFile {
        memory: Some(def.memory_mib.saturating_mul(1 << 20)),
        cpus: Some(def.vcpus),
        // Explicit, so a VM started by the daemon is filtered whatever vmm's default becomes.
        seccomp: Some(SeccompMode::On),
        ..Default::default()
    };
    match &def.os {
        // NICs, a display and assigned devices are the PC machine's: the kernel boots through
        // its firmware.
        Os::Direct { kernel, initrd, cmdline }
            if !def.interfaces.is_empty() || def.graphics.vnc.is_some() || !def.hostdevs.is_empty() =>
        {
            c.machine = Some(MachineKind::Pc);
            kernel_fields(&mut c, kernel, initrd.as_deref(), cmdline.as_deref());
            disk_fields(def, &mut c)?;
            c.vga = Some(vga(def));
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
            c.machine = Some(MachineKind::Direct);
            kernel_fields(&mut c, kernel, initrd.as_deref(), cmdline.as_deref());
            // Only virtio disks are left: the direct machine puts them on its PCI bus.
            disk_fields(def, &mut c)?;
        }
        Os::Pc { boot } => {
            c.machine = Some(MachineKind::Pc);
            disk_fields(def, &mut c)?;
            let order: Vec<vm::BootDevice> = boot
                .iter()
                .map(|b| match b {
                    BootDevice::Disk => vm::BootDevice::Disk,
                    BootDevice::Cdrom => vm::BootDevice::Cdrom,
                    BootDevice::Network => vm::BootDevice::Net,
                })
                .collect();
            if !order.is_empty() {
                c.boot = Some(order);
            }
            c.vga = Some(vga(def));
        }
    }
    let nics: Vec<NicConfig> = def
        .interfaces
        .iter()
        .zip(taps)
        .map(|(nic, tap)| NicConfig {
            tap: tap.clone(),
            mac: nic.mac.octets(),
            model: match nic.model {
                NicModel::E1000 => vm::NicModel::E1000,
                NicModel::Virtio => vm::NicModel::Virtio,
            },
            queues: 1,
            vhost: None,
        })
        .collect();
    c.nics = (!nics.is_empty()).then_some(nics);
    // Assigned host PCI devices (the machine is the PC one whenever there are any); vmctld
    // binds the managed ones to vfio-pci before it starts the vmm.
    let devices: Vec<HostDevConfig> = def.hostdevs.iter().map(|h| vfio_device(&h.address)).collect();
    c.devices = (!devices.is_empty()).then_some(devices);
    // The definition's listen address is the user's choice: an address other than loopback
    // is what they asked for, so vmm's guard against that is lifted.
    c.vnc = match vnc {
        Some(addr) => Some(VncListen::Tcp { addr, allow_remote: !addr.ip().is_loopback() }),
        None => def.graphics.vnc.as_ref().map(|_| VncListen::Unix(paths.vnc.clone())),
    };
    // The password goes in the file (0640, readable by the jailed vmm), never on argv.
    if let Some(pw) = def.graphics.vnc.as_ref().and_then(|v| v.password.as_deref()) {
        c.vnc_password = Some(VncPassword::new(pw).map_err(|e| unsupported("graphics.vnc.password", e))?);
    }
    c.serial = Some(match &def.serial {
        Some(_) => SerialConfig::Unix(paths.serial.clone()),
        // No serial port in the definition: the UART's output goes nowhere.
        None => SerialConfig::File("/dev/null".into()),
    });
    c.control = Some(paths.control.clone());
    c.exit_status_file = Some(paths.exit_status.clone());
    // The daemon applies on_reboot itself unless the guest should simply boot again.
    if def.on_reboot != vmdef::model::LifecycleAction::Restart {
        c.no_reboot = Some(true);
    }
    if def.clock_offset == vmdef::model::ClockOffset::Localtime {
        c.rtc = Some(vm::RtcBase::Localtime);
    }
    Ok(c)
}

/// The `vmm` arguments (without the program name) that run the configuration at `config`.
pub fn vmm_args(config: &Path) -> Vec<OsString> {
    vec!["--config".into(), config.as_os_str().to_owned()]
}

/// Writes `config` to `path` atomically: a temporary file in the same directory (mode 0600),
/// The files a VM reads, as `preopened` entries (descriptors 3, 4, ... in order) and the
/// descriptors to hand over in that order. A file named twice under the same path (a base
/// image two disks share) is handed over once.
pub fn hand_over(
    files: Vec<crate::daemon::chain::ChainFile>,
) -> (Vec<api::config::PreopenedFile>, Vec<std::os::fd::OwnedFd>) {
    let mut entries: Vec<api::config::PreopenedFile> = Vec::new();
    let mut fds = Vec::new();
    for f in files {
        if entries.iter().any(|e| e.path == f.lookup) {
            continue;
        }
        let fd = 3 + i32::try_from(fds.len()).unwrap_or(i32::MAX - 3);
        entries.push(api::config::PreopenedFile { path: f.lookup, fd });
        fds.push(std::os::fd::OwnedFd::from(f.file));
    }
    (entries, fds)
}

/// fsynced, renamed over `path`, and the directory fsynced.
pub fn write_config(path: &Path, config: &VmConfigFile) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(config.to_json().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn kernel_fields(c: &mut VmConfigFile, kernel: &Path, initrd: Option<&Path>, cmdline: Option<&str>) {
    c.kernel = Some(kernel.to_path_buf());
    c.initramfs = initrd.map(Path::to_path_buf);
    c.cmdline = cmdline.map(str::to_string);
}

fn vga(def: &VmDef) -> bool {
    match def.graphics.video {
        _ if def.graphics.vnc.is_some() => true,
        Video::Vga => true,
        Video::None => false,
    }
}

/// Disks in target order (so `hd*` IDE disks come before `vd*` virtio ones and the first is
/// the one `<boot dev='hd'/>` boots), and the CD-ROM.
fn disk_fields(def: &VmDef, c: &mut VmConfigFile) -> Result<(), Unsupported> {
    let mut sorted: Vec<(usize, &vmdef::model::Disk)> = def.disks.iter().enumerate().collect();
    sorted.sort_by(|a, b| a.1.target.cmp(&b.1.target));
    let mut disks = Vec::new();
    let mut ide = 0;
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
            if c.cdrom.is_some() {
                return Err(unsupported(name(), "vmm has one CD-ROM drive; remove the others"));
            }
            c.cdrom = Some(path.clone());
            continue;
        }
        ide += usize::from(d.bus == DiskBus::Ide);
        if ide > MAX_IDE_DISKS {
            return Err(unsupported(
                name(),
                "vmm attaches at most 3 IDE disks (the CD-ROM takes the 4th slot)",
            ));
        }
        disks.push(DiskConfig {
            format: Some(match d.format {
                DiskFormat::Raw => vm::DiskFormat::Raw,
                DiskFormat::Qcow2 => vm::DiskFormat::Qcow2,
            }),
            bus: match d.bus {
                DiskBus::Ide => vm::DiskBus::Ide,
                DiskBus::Virtio => vm::DiskBus::Virtio,
            },
            readonly: d.is_readonly(),
            ..DiskConfig::new(path.clone())
        });
    }
    c.disks = (!disks.is_empty()).then_some(disks);
    Ok(())
}

/// The vmm's `--device vfio=ADDR` for a definition's host PCI address.
fn vfio_device(a: &vmdef::model::PciAddress) -> HostDevConfig {
    HostDevConfig {
        addr: api::hostdev::PciAddress {
            domain: a.domain(),
            bus: a.bus(),
            device: a.slot(),
            function: a.function(),
        },
        rom: true,
    }
}

fn check_unsupported(def: &VmDef) -> Result<(), Unsupported> {
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
            dir: "/s/run/vm/a".into(),
            config: "/s/run/a.config.json".into(),
            control: "/s/run/a.sock".into(),
            serial: "/s/run/a.serial.sock".into(),
            exit_status: "/s/run/a.exit.json".into(),
            vnc: "/s/run/vm/a/vnc.sock".into(),
        }
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

    /// A configured disk from its `--disk` spec.
    fn spec(s: &str) -> DiskConfig {
        s.parse().unwrap()
    }

    /// The configured disks as `--disk` specs would name them: `path,bus`.
    fn disk_paths(c: &VmConfigFile) -> Vec<String> {
        c.disks.iter().flatten().map(|d| format!("{},{:?}", d.path.display(), d.bus).to_lowercase()).collect()
    }

    #[test]
    fn hostdevs_become_vfio_devices_on_the_pc_machine() {
        let mut def = VmDef::new("a".parse().unwrap(), 256, 1);
        def.os = Os::Direct { kernel: "/k".into(), initrd: None, cmdline: None };
        for (a, managed) in [("0000:01:00.0", true), ("0001:af:1f.7", false)] {
            def.hostdevs.push(vmdef::model::HostDev { address: a.parse().unwrap(), managed });
        }
        let c = vmm_config(&def, &paths(), &[], None).unwrap();
        assert_eq!(c.machine, Some(MachineKind::Pc), "the kernel boots through the PC firmware");
        let devices: Vec<String> = c.devices.iter().flatten().map(|d| d.to_string()).collect();
        assert_eq!(devices, ["vfio=0000:01:00.0", "vfio=0001:af:1f.7"]);
        assert_eq!(
            vmm_config(&VmDef::new("b".parse().unwrap(), 256, 1), &paths(), &[], None).unwrap().devices,
            None
        );
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
        let c = vmm_config(&def, &paths(), &[], None).unwrap();
        assert_eq!(
            c,
            VmConfigFile {
                memory: Some(512 << 20),
                cpus: Some(2),
                machine: Some(MachineKind::Pc),
                disks: Some(vec![spec("/i/a.img,format=raw"), spec("/i/b.qcow2,format=qcow2,readonly")]),
                cdrom: Some("/i/x.iso".into()),
                boot: Some(vec![vm::BootDevice::Cdrom, vm::BootDevice::Disk, vm::BootDevice::Net]),
                vga: Some(true),
                serial: Some(SerialConfig::Unix("/s/run/a.serial.sock".into())),
                control: Some("/s/run/a.sock".into()),
                exit_status_file: Some("/s/run/a.exit.json".into()),
                seccomp: Some(SeccompMode::On),
                ..Default::default()
            }
        );
        // What the daemon writes, vmm reads back.
        assert_eq!(VmConfigFile::parse(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn virtio_disks_follow_ide_disks() {
        let mut def = VmDef::new("a".parse().unwrap(), 512, 1);
        def.os = Os::Pc { boot: vec![BootDevice::Disk] };
        def.disks.push(disk("/i/v2.qcow2", DiskBus::Virtio, DiskDevice::Disk, "vdb"));
        def.disks[0].format = DiskFormat::Qcow2;
        def.disks.push(disk("/i/v1.img", DiskBus::Virtio, DiskDevice::Disk, "vda"));
        def.disks[1].readonly = true;
        let c = vmm_config(&def, &paths(), &[], None).unwrap();
        let virtio = vec![
            spec("/i/v1.img,format=raw,bus=virtio,readonly"),
            spec("/i/v2.qcow2,format=qcow2,bus=virtio"),
        ];
        assert_eq!(c.disks.as_ref(), Some(&virtio));
        def.disks.push(disk("/i/h.img", DiskBus::Ide, DiskDevice::Disk, "hda"));
        let c = vmm_config(&def, &paths(), &[], None).unwrap();
        assert_eq!(c.machine, Some(MachineKind::Pc));
        assert_eq!(disk_paths(&c), ["/i/h.img,ide", "/i/v1.img,virtio", "/i/v2.qcow2,virtio"]);
        // A direct kernel boot with virtio disks stays on the direct machine, which has PCI.
        def.disks.truncate(2);
        def.os =
            Os::Direct { kernel: "/k/vmlinuz".into(), initrd: None, cmdline: Some("root=/dev/vda".into()) };
        let c = vmm_config(&def, &paths(), &[], None).unwrap();
        assert_eq!(
            (c.machine, c.kernel.as_deref(), c.cmdline.as_deref(), c.disks.as_ref()),
            (Some(MachineKind::Direct), Some(Path::new("/k/vmlinuz")), Some("root=/dev/vda"), Some(&virtio))
        );
        assert_eq!(c.vga, None);
        // With an interface it moves to the PC machine, virtio disks and all.
        def.interfaces.push(nic("lan", "52:54:00:00:00:01"));
        let c = vmm_config(&def, &paths(), &["vt-a-0".into()], None).unwrap();
        assert_eq!(
            (c.machine, c.kernel.as_deref(), c.cmdline.as_deref(), c.disks.as_ref()),
            (Some(MachineKind::Pc), Some(Path::new("/k/vmlinuz")), Some("root=/dev/vda"), Some(&virtio))
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
        let c = vmm_config(&def, &paths(), &[], None).unwrap();
        assert_eq!(
            c,
            VmConfigFile {
                memory: Some(256 << 20),
                cpus: Some(1),
                machine: Some(MachineKind::Direct),
                kernel: Some("/k/vmlinuz".into()),
                initramfs: Some("/k/initrd".into()),
                cmdline: Some("console=ttyS0 quiet".into()),
                serial: Some(SerialConfig::File("/dev/null".into())),
                control: Some("/s/run/a.sock".into()),
                exit_status_file: Some("/s/run/a.exit.json".into()),
                no_reboot: Some(true),
                seccomp: Some(SeccompMode::On),
                ..Default::default()
            }
        );
        assert_eq!(vmm_args(&paths().config), ["--config", "/s/run/a.config.json"]);
        def.clock_offset = vmdef::model::ClockOffset::Localtime;
        let c = vmm_config(&def, &paths(), &[], None).unwrap();
        assert_eq!(c.rtc, Some(vm::RtcBase::Localtime), "<clock offset='localtime'> reaches the RTC");
        assert!(c.to_json().contains("\"rtc\": \"localtime\""), "{}", c.to_json());
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
        let c = vmm_config(&def, &paths(), &taps, None).unwrap();
        assert_eq!((c.boot, c.vga), (Some(vec![vm::BootDevice::Net]), Some(false)));
        let nics: Vec<NicConfig> =
            ["tap=vt-a-0,mac=52:54:00:00:00:01,model=e1000", "tap=vt-a-1,mac=52:54:00:00:00:02,model=virtio"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect();
        assert_eq!(c.nics, Some(nics));
        let e = vmm_config(&def, &paths(), &taps[..1], None).unwrap_err();
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
        let c = vmm_config(&def, &paths(), &["vt-a-0".into()], None).unwrap();
        assert_eq!(c.machine, Some(MachineKind::Pc));
        assert_eq!(
            (c.kernel.as_deref(), c.initramfs.as_deref(), c.cmdline.as_deref()),
            (Some(Path::new("/k/vmlinuz")), Some(Path::new("/k/initrd")), Some("console=ttyS0"))
        );
        assert_eq!(c.disks, Some(vec![spec("/i/a.img,format=raw")]));
        assert_eq!(c.vga, Some(false));
        assert_eq!(c.nics, Some(vec!["tap=vt-a-0,mac=52:54:00:00:00:01,model=e1000".parse().unwrap()]));
    }

    #[test]
    fn vnc_on_a_kernel_boot_runs_the_pc_machine_with_vga() {
        let mut def = VmDef::new("a".parse().unwrap(), 256, 1);
        def.os = Os::Direct { kernel: "/k".into(), initrd: None, cmdline: None };
        let vnc = |password: Option<&str>| {
            Some(vmdef::model::Vnc {
                port: None,
                listen: std::net::Ipv4Addr::LOCALHOST.into(),
                password: password.map(String::from),
            })
        };
        // Without a password: the unix socket in the run directory, no password.
        def.graphics.vnc = vnc(None);
        let c = vmm_config(&def, &paths(), &[], None).unwrap();
        assert_eq!(
            (c.machine, c.kernel.as_deref(), c.vga),
            (Some(MachineKind::Pc), Some(Path::new("/k")), Some(true))
        );
        assert_eq!(c.vnc, Some("unix:/s/run/vm/a/vnc.sock".parse().unwrap()));
        assert_eq!(c.vnc_password, None);
        // A TCP address for a VM without a password is a daemon bug, refused.
        let addr: SocketAddr = "127.0.0.1:5903".parse().unwrap();
        assert_eq!(vmm_config(&def, &paths(), &[], Some(addr)).unwrap_err().device, "graphics.vnc");
        // With one: TCP, and the password in the file (never in the arguments).
        def.graphics.vnc = vnc(Some("secret"));
        let c = vmm_config(&def, &paths(), &[], Some(addr)).unwrap();
        assert_eq!(c.vnc, Some("127.0.0.1:5903".parse().unwrap()));
        assert_eq!(c.vnc_password, Some(VncPassword::new("secret").unwrap()));
        assert!(c.to_json().contains("\"vnc_password\": \"secret\""));
        assert!(!vmm_args(&paths().config).iter().any(|a| a.to_string_lossy().contains("secret")));
        assert_eq!(vmm_config(&def, &paths(), &[], None).unwrap_err().device, "graphics.vnc");
        // A listen address other than loopback is the user's explicit choice.
        let c = vmm_config(&def, &paths(), &[], Some("0.0.0.0:5900".parse().unwrap())).unwrap();
        assert_eq!(c.vnc, Some("0.0.0.0:5900,allow-remote".parse().unwrap()));
        // The PC machine keeps its boot order and gets the VGA card even if video says none.
        def.os = Os::Pc { boot: vec![BootDevice::Disk] };
        let c = vmm_config(&def, &paths(), &[], Some(addr)).unwrap();
        assert_eq!((c.boot, c.vga), (Some(vec![vm::BootDevice::Disk]), Some(true)));
        assert_eq!(c.vnc, Some("127.0.0.1:5903".parse().unwrap()));
        // A password the definition checks let through (stored before the rule) is refused.
        def.graphics.vnc = vnc(Some("muchtoolong"));
        assert_eq!(vmm_config(&def, &paths(), &[], Some(addr)).unwrap_err().device, "graphics.vnc.password");
        // A chosen address without a VNC server in the definition is a daemon bug, refused.
        def.graphics.vnc = None;
        assert_eq!(vmm_config(&def, &paths(), &[], Some(addr)).unwrap_err().device, "graphics.vnc");
    }

    #[test]
    fn the_config_file_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.config.json");
        let def = VmDef::new("a".parse().unwrap(), 256, 1);
        let c = vmm_config(&def, &paths(), &[], None).unwrap();
        write_config(&path, &VmConfigFile::default()).unwrap();
        write_config(&path, &c).unwrap();
        assert_eq!(VmConfigFile::load(&path).unwrap(), c);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(write_config(&dir.path().join("absent/a.json"), &c).is_err());
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
                    // With a password, but no TCP address chosen.
                    d.graphics.vnc = Some(vmdef::model::Vnc {
                        port: None,
                        listen: std::net::Ipv4Addr::LOCALHOST.into(),
                        password: Some("pw".into()),
                    })
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
            let e = vmm_config(&def, &paths(), &[], None).unwrap_err();
            assert_eq!(e.device, device, "{e}");
        }
    }
}
