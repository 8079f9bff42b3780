// SPDX-License-Identifier: Apache-2.0
//! The VM configuration: [`VmConfigFile`] (in the `api` crate: one serde type for
//! command-line flags, `--config FILE.json` and the file `vmctld` writes) checked into a
//! [`VmConfig`].
//!
//! Flags override the fields of the file. Every value is checked before anything is built, and
//! an error names the field and how to fix it (exit status 2).

use std::io::Read;
use std::path::{Path, PathBuf};

use block::host_files;

use crate::pc_config::{self, BootDevice, DiskConfig, MachineKind, NicConfig};
use crate::vnc::{VncListen, VncPassword};
pub use api::hostdev::{HostDevConfig, MAX_HOST_DEVICES};

pub use api::config::{parse_size, ConfigError, SerialConfig, VmConfigFile};

/// Default command line when none is given.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0";
/// Default guest memory.
pub const DEFAULT_MEMORY: u64 = 256 << 20;
/// Smallest guest memory accepted.
pub const MIN_MEMORY: u64 = arch::x86_64::layout::MemoryLayout::MIN_RAM;
/// Most vCPUs this VMM describes (8-bit APIC IDs with the IOAPIC after them).
pub const MAX_CPUS: u32 = 254;

/// What the host allows; checked against the configuration.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    /// Most vCPUs per VM the hypervisor allows.
    pub max_vcpus: u32,
    /// Host RAM in bytes.
    pub host_memory: u64,
}

/// A complete, validated VM configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct VmConfig {
    /// The machine.
    pub machine: MachineKind,
    /// Kernel path (exists, has a bzImage or ELF header); always set for direct boot, and on
    /// the pc machine (a bzImage there) when the BIOS is to boot it.
    pub kernel: Option<PathBuf>,
    /// initramfs path (exists).
    pub initramfs: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// vCPUs.
    pub cpus: u32,
    /// Guest memory in bytes.
    pub memory: u64,
    /// Serial backend.
    pub serial: SerialConfig,
    /// Exit when the guest resets.
    pub no_reboot: bool,
    /// What the CMOS clock counts.
    pub rtc: api::machine::RtcBase,
    /// BIOS image (pc machine).
    pub firmware: PathBuf,
    /// The option ROM that boots `kernel` through fw_cfg (pc machine with a kernel).
    pub linuxboot_rom: Option<PathBuf>,
    /// IDE disks in attach order (primary master, primary slave, secondary slave).
    pub disks: Vec<DiskConfig>,
    /// CD-ROM image (secondary master).
    pub cdrom: Option<PathBuf>,
    /// Boot order for the firmware.
    pub boot: Vec<BootDevice>,
    /// Standard VGA present.
    pub vga: bool,
    /// Prefix of the SIGUSR1 screen dump files.
    pub screen_dump: Option<PathBuf>,
    /// e1000 NICs (pc machine).
    pub nics: Vec<NicConfig>,
    /// Where the VNC server listens (pc machine with VGA).
    pub vnc: Option<VncListen>,
    /// The VNC Authentication password; without it the server asks for none.
    pub vnc_password: Option<VncPassword>,
    /// Host PCI devices assigned with VFIO (pc machine), in `--device` order.
    pub hostdevs: Vec<HostDevConfig>,
    /// The per-thread seccomp filters.
    pub seccomp: api::SeccompMode,
}

/// Opens `path` for reading (through [`host_files`]: a handed-over descriptor if there is one)
/// and checks that it is a regular file.
fn check_readable(field: &str, path: &Path) -> Result<std::fs::File, ConfigError> {
    let f = host_files::open(path, host_files::Access::Read)
        .map_err(|e| ConfigError::new(field, format!("cannot open {}: {e}", path.display())))?;
    let meta = f.metadata().map_err(|e| ConfigError::new(field, format!("{}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(ConfigError::new(field, format!("{} is not a regular file", path.display())));
    }
    Ok(f)
}

/// Checks for an ELF header or the x86 boot-protocol signature ("HdrS" at 0x202), so a
/// wrong file is refused before anything is built. Reads with `pread`: a handed-over
/// descriptor's offset does not matter.
fn check_kernel(path: &Path, f: std::fs::File) -> Result<(), ConfigError> {
    use std::os::unix::fs::FileExt;
    let mut elf = [0u8; 4];
    let mut hdrs = [0u8; 4];
    let is_elf = f.read_exact_at(&mut elf, 0).is_ok() && &elf == b"\x7fELF";
    let is_bzimage = f.read_exact_at(&mut hdrs, 0x202).is_ok() && &hdrs == b"HdrS";
    if is_elf || is_bzimage {
        Ok(())
    } else {
        Err(ConfigError::new(
            "kernel",
            format!(
                "{} is not a Linux kernel (neither a bzImage nor an ELF vmlinux); pass a vmlinuz file",
                path.display()
            ),
        ))
    }
}

impl VmConfig {
    /// Fills defaults and validates every field against the host.
    pub fn validate(file: VmConfigFile, host: HostLimits) -> Result<VmConfig, ConfigError> {
        let machine = file.machine.unwrap_or(match file.kernel {
            Some(_) => MachineKind::Direct,
            None if file.disks.is_some() || file.cdrom.is_some() => MachineKind::Pc,
            None => MachineKind::Direct,
        });
        let kernel = match machine {
            MachineKind::Direct => {
                let kernel = file.kernel.clone().ok_or_else(|| {
                    ConfigError::new(
                        "kernel",
                        "no kernel given; pass --kernel PATH (a bzImage), or --machine pc with --disk or \
                         --cdrom to boot through the BIOS",
                    )
                })?;
                check_kernel(&kernel, check_readable("kernel", &kernel)?)?;
                Some(kernel)
            }
            MachineKind::Pc => match &file.kernel {
                Some(kernel) => {
                    check_kernel(kernel, check_readable("kernel", kernel)?)?;
                    Some(kernel.clone())
                }
                None if file.initramfs.is_some() => {
                    return Err(ConfigError::new("initramfs", "needs --kernel as well"))
                }
                None => None,
            },
        };
        if let Some(initramfs) = &file.initramfs {
            check_readable("initramfs", initramfs)?;
        }
        let (firmware, disks, cdrom, boot, vga) = Self::validate_pc(&file, machine)?;
        let vnc = Self::validate_vnc(&file, machine, vga)?;
        let max = host.max_vcpus.min(MAX_CPUS);
        let cpus = file.cpus.unwrap_or(1);
        if cpus == 0 || cpus > max {
            let why = if host.max_vcpus < MAX_CPUS {
                "this host's KVM limit"
            } else {
                "the most this VMM describes"
            };
            return Err(ConfigError::new("cpus", format!("{cpus} is out of range; use 1 to {max} ({why})")));
        }
        let memory = file.memory.unwrap_or(DEFAULT_MEMORY);
        if memory < MIN_MEMORY {
            return Err(ConfigError::new(
                "memory",
                format!("{} MiB is too small; use at least {} MiB", memory >> 20, MIN_MEMORY >> 20),
            ));
        }
        if memory > host.host_memory {
            return Err(ConfigError::new(
                "memory",
                format!(
                    "{} MiB is more than this host's {} MiB of RAM",
                    memory >> 20,
                    host.host_memory >> 20
                ),
            ));
        }
        if memory % 4096 != 0 {
            return Err(ConfigError::new("memory", "must be a multiple of 4 KiB"));
        }
        let cmdline = file.cmdline.clone().unwrap_or_else(|| DEFAULT_CMDLINE.to_string());
        if cmdline.len() >= arch::x86_64::layout::CMDLINE_MAX {
            return Err(ConfigError::new(
                "cmdline",
                format!(
                    "{} bytes is too long; Linux accepts at most {}",
                    cmdline.len(),
                    arch::x86_64::layout::CMDLINE_MAX - 1
                ),
            ));
        }
        // A log handed over as a descriptor needs no directory here.
        let serial_path = match &file.serial {
            Some(SerialConfig::File(p)) if host_files::is_registered(p) => None,
            Some(SerialConfig::File(p) | SerialConfig::Unix(p)) => Some(p),
            _ => None,
        };
        if let Some(p) = serial_path {
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(ConfigError::new(
                    "serial",
                    format!("directory {} does not exist", parent.display()),
                ));
            }
        }
        let linuxboot_rom = match (&kernel, machine) {
            (Some(k), MachineKind::Pc) => Some(Self::validate_pc_kernel(&file, k, memory, &cmdline)?),
            _ => None,
        };
        let nics = file.nics.clone().unwrap_or_default();
        if !nics.is_empty() && machine != MachineKind::Pc {
            return Err(ConfigError::new("nic", "needs the BIOS machine; add --machine pc"));
        }
        if nics.len() > pc_config::MAX_NICS {
            return Err(ConfigError::new("nic", format!("at most {} NICs", pc_config::MAX_NICS)));
        }
        for (i, a) in nics.iter().enumerate() {
            if nics[..i].iter().any(|b| b.mac == a.mac || b.tap == a.tap) {
                return Err(ConfigError::new(
                    "nic",
                    format!("tap {} or its MAC is used twice; give each NIC its own", a.tap),
                ));
            }
        }
        let hostdevs = Self::validate_hostdevs(&file, machine)?;
        if file.vnc_password.is_some() && vnc.is_none() {
            return Err(ConfigError::new(
                "vnc_password",
                "is set but there is no VNC server; add vnc (--vnc ADDR)",
            ));
        }
        Ok(VmConfig {
            vnc,
            vnc_password: file.vnc_password,
            nics,
            hostdevs,
            seccomp: file.seccomp.unwrap_or_default(),
            screen_dump: file.screen_dump,
            machine,
            firmware,
            linuxboot_rom,
            disks,
            cdrom,
            boot,
            vga,
            kernel,
            initramfs: file.initramfs,
            cmdline,
            cpus,
            memory,
            serial: file.serial.unwrap_or_default(),
            no_reboot: file.no_reboot.unwrap_or(false),
            rtc: file.rtc.unwrap_or_default(),
        })
    }
}

impl VmConfig {
    /// Assigned devices: PC machine only, each address once, at most [`MAX_HOST_DEVICES`].
    /// Whether the host can assign them is checked when the machine is built.
    fn validate_hostdevs(
        file: &VmConfigFile,
        machine: MachineKind,
    ) -> Result<Vec<HostDevConfig>, ConfigError> {
        let devs = file.devices.clone().unwrap_or_default();
        if !devs.is_empty() && machine != MachineKind::Pc {
            return Err(ConfigError::new("device", "vfio devices need the BIOS machine; add --machine pc"));
        }
        if devs.len() > MAX_HOST_DEVICES {
            return Err(ConfigError::new("device", format!("at most {MAX_HOST_DEVICES} assigned devices")));
        }
        for (i, d) in devs.iter().enumerate() {
            if devs[..i].iter().any(|e| e.addr == d.addr) {
                return Err(ConfigError::new(
                    "device",
                    format!("vfio={} is given twice; assign each host device once", d.addr),
                ));
            }
        }
        Ok(devs)
    }

    /// The VNC server needs a screen: the PC machine's standard VGA.
    fn validate_vnc(
        file: &VmConfigFile,
        machine: MachineKind,
        vga: bool,
    ) -> Result<Option<VncListen>, ConfigError> {
        let Some(vnc) = file.vnc.clone() else { return Ok(None) };
        if machine != MachineKind::Pc {
            return Err(ConfigError::new(
                "vnc",
                "needs the BIOS machine's VGA; add --machine pc (and drop --kernel), or use the serial console",
            ));
        }
        if !vga {
            return Err(ConfigError::new("vnc", "needs a display card; drop --vga none (or use --vga std)"));
        }
        if let VncListen::Unix(p) = &vnc {
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(ConfigError::new(
                    "vnc",
                    format!("directory {} does not exist", parent.display()),
                ));
            }
        }
        Ok(Some(vnc))
    }
}

/// Reads a VNC password from `path` (`--vnc-password-file`; `/dev/fd/N` reads an inherited
/// descriptor): the first line, without its line ending.
pub fn read_vnc_password(path: &Path) -> Result<VncPassword, ConfigError> {
    let field = "--vnc-password-file";
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|e| ConfigError::new(field, format!("cannot read {}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or_default();
    VncPassword::new(line).map_err(|e| ConfigError::new(field, format!("{}: {e}", path.display())))
}

type PcParts = (PathBuf, Vec<DiskConfig>, Option<PathBuf>, Vec<BootDevice>, bool);

impl VmConfig {
    /// At most 3 IDE and 16 virtio disks, each an image that can be opened.
    fn validate_disks(disks: &[DiskConfig]) -> Result<(), ConfigError> {
        let ide = disks.iter().filter(|d| d.bus == pc_config::DiskBus::Ide).count();
        if ide > pc_config::MAX_IDE_DISKS {
            return Err(ConfigError::new(
                "disk",
                format!(
                    "{ide} IDE disks given; IDE takes at most {} (attach more with bus=virtio)",
                    pc_config::MAX_IDE_DISKS
                ),
            ));
        }
        if disks.len() - ide > pc_config::MAX_VIRTIO_DISKS {
            return Err(ConfigError::new(
                "disk",
                format!(
                    "{} virtio disks given; at most {} fit",
                    disks.len() - ide,
                    pc_config::MAX_VIRTIO_DISKS
                ),
            ));
        }
        for d in disks {
            check_image("disk", &d.path)?;
        }
        Ok(())
    }
}

impl VmConfig {
    /// A kernel on the PC machine: the option ROM is there, and the kernel, initramfs and
    /// command line fit the BIOS boot (checked as the boot will do it); returns the ROM.
    fn validate_pc_kernel(
        file: &VmConfigFile,
        kernel: &Path,
        memory: u64,
        cmdline: &str,
    ) -> Result<PathBuf, ConfigError> {
        if file.linuxboot_rom.is_none()
            && host_files::metadata(Path::new(pc_config::DEFAULT_LINUXBOOT_ROM)).is_err()
        {
            return Err(ConfigError::new(
                "linuxboot-rom",
                format!(
                    "{} is missing; install Debian's qemu-system-data (apt-get install qemu-system-data) \
                     or pass --linuxboot-rom PATH",
                    pc_config::DEFAULT_LINUXBOOT_ROM
                ),
            ));
        }
        let rom =
            file.linuxboot_rom.clone().unwrap_or_else(|| PathBuf::from(pc_config::DEFAULT_LINUXBOOT_ROM));
        let mut bytes = Vec::new();
        check_readable("linuxboot-rom", &rom)?
            .take(0x1_0001)
            .read_to_end(&mut bytes)
            .map_err(|e| ConfigError::new("linuxboot-rom", format!("{}: {e}", rom.display())))?;
        crate::linuxboot::check_rom(&bytes)
            .map_err(|e| ConfigError::new("linuxboot-rom", format!("{} {e}", rom.display())))?;
        let image = host_files::read(kernel)
            .map_err(|e| ConfigError::new("kernel", format!("cannot read {}: {e}", kernel.display())))?;
        let initrd_len = match &file.initramfs {
            Some(p) => Some(
                check_readable("initramfs", p)?
                    .metadata()
                    .map_err(|e| ConfigError::new("initramfs", format!("{}: {e}", p.display())))?
                    .len(),
            ),
            None => None,
        };
        let low_ram = arch::x86_64::layout::MemoryLayout::new(memory).low_ram_size();
        crate::linuxboot::plan(&image, initrd_len, cmdline, low_ram).map_err(|e| {
            let what = match e.field() {
                "kernel" => format!("{}: ", kernel.display()),
                "initramfs" => {
                    file.initramfs.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default()
                }
                _ => String::new(),
            };
            ConfigError::new(e.field(), format!("{what}{e}"))
        })?;
        Ok(rom)
    }

    /// The PC-machine fields: refused on the direct machine (which takes virtio disks only),
    /// checked and defaulted on pc.
    fn validate_pc(file: &VmConfigFile, machine: MachineKind) -> Result<PcParts, ConfigError> {
        let disks = file.disks.clone().unwrap_or_default();
        if machine == MachineKind::Direct {
            let given = [
                ("firmware", file.firmware.is_some()),
                ("linuxboot-rom", file.linuxboot_rom.is_some()),
                ("disk", disks.iter().any(|d| d.bus == pc_config::DiskBus::Ide)),
                ("cdrom", file.cdrom.is_some()),
                ("boot", file.boot.is_some()),
                ("vga", file.vga == Some(true)),
            ];
            if let Some((field, _)) = given.iter().find(|(_, set)| *set) {
                return Err(ConfigError::new(*field, "needs the BIOS machine; add --machine pc"));
            }
            Self::validate_disks(&disks)?;
            return Ok((PathBuf::new(), disks, None, Vec::new(), false));
        }
        let firmware = file.firmware.clone().unwrap_or_else(|| PathBuf::from(pc_config::DEFAULT_FIRMWARE));
        let f = check_readable("firmware", &firmware)?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        if size == 0 || size % 0x1_0000 != 0 || size > 16 << 20 {
            return Err(ConfigError::new(
                "firmware",
                format!(
                    "{} is {size} bytes; a BIOS image is a multiple of 64 KiB up to 16 MiB \
                     (e.g. {})",
                    firmware.display(),
                    pc_config::DEFAULT_FIRMWARE
                ),
            ));
        }
        Self::validate_disks(&disks)?;
        if let Some(c) = &file.cdrom {
            check_image("cdrom", c)?;
        }
        let boot = match file.boot.clone() {
            Some(b) => b,
            None if disks.is_empty() && file.cdrom.is_some() => vec![BootDevice::Cdrom],
            None => vec![BootDevice::Disk, BootDevice::Cdrom],
        };
        Ok((firmware, disks, file.cdrom.clone(), boot, file.vga.unwrap_or(true)))
    }
}

/// Host RAM from `/proc/meminfo` (MemTotal), or `u64::MAX` if it cannot be read.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(u64::MAX)
}

/// Checks an image path: it exists (or was handed over as a descriptor) and is a file or a
/// block device.
pub fn check_image(field: &str, path: &Path) -> Result<(), ConfigError> {
    let meta = host_files::metadata(path)
        .map_err(|e| ConfigError::new(field, format!("cannot open {}: {e}", path.display())))?;
    use std::os::unix::fs::FileTypeExt;
    if !(meta.is_file() || meta.file_type().is_block_device()) {
        return Err(ConfigError::new(field, format!("{} is not a file or block device", path.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const HOST: HostLimits = HostLimits { max_vcpus: 64, host_memory: 8 << 30 };

    /// A new file per call: tests run in parallel and must not rewrite each other's files.
    fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("vmm-config-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    fn kernel() -> PathBuf {
        let mut k = vec![0u8; 0x300];
        k[0x202..0x206].copy_from_slice(b"HdrS");
        tmp("bzImage", &k)
    }

    fn with_kernel() -> VmConfigFile {
        VmConfigFile { kernel: Some(kernel()), ..Default::default() }
    }

    #[test]
    fn validation_fills_defaults() {
        let c = VmConfig::validate(with_kernel(), HOST).unwrap();
        assert_eq!(
            (c.cpus, c.memory, c.serial.clone(), c.no_reboot),
            (1, DEFAULT_MEMORY, SerialConfig::Stdio, false)
        );
        assert_eq!(c.cmdline, DEFAULT_CMDLINE);
    }

    #[test]
    fn validation_rejects_bad_values_naming_the_field() {
        let field = |f: VmConfigFile| VmConfig::validate(f, HOST).unwrap_err().field;
        assert_eq!(field(VmConfigFile::default()), "kernel");
        assert_eq!(
            field(VmConfigFile { kernel: Some("/nonexistent/k".into()), ..Default::default() }),
            "kernel"
        );
        assert_eq!(
            field(VmConfigFile { kernel: Some(tmp("text", b"hello")), ..Default::default() }),
            "kernel"
        );
        assert_eq!(
            field(VmConfigFile { kernel: Some(std::env::temp_dir()), ..Default::default() }),
            "kernel"
        );
        assert_eq!(field(VmConfigFile { cpus: Some(0), ..with_kernel() }), "cpus");
        assert_eq!(field(VmConfigFile { cpus: Some(65), ..with_kernel() }), "cpus");
        assert_eq!(field(VmConfigFile { memory: Some(16 << 20), ..with_kernel() }), "memory");
        assert_eq!(field(VmConfigFile { memory: Some(9 << 30), ..with_kernel() }), "memory");
        assert_eq!(field(VmConfigFile { memory: Some((64 << 20) + 1), ..with_kernel() }), "memory");
        assert_eq!(
            field(VmConfigFile { initramfs: Some("/nonexistent".into()), ..with_kernel() }),
            "initramfs"
        );
        assert_eq!(field(VmConfigFile { cmdline: Some("x".repeat(4000)), ..with_kernel() }), "cmdline");
        let serial = Some(SerialConfig::File("/nonexistent-dir/x.log".into()));
        assert_eq!(field(VmConfigFile { serial, ..with_kernel() }), "serial");
        let e = VmConfig::validate(VmConfigFile { cpus: Some(0), ..with_kernel() }, HOST).unwrap_err();
        assert!(e.to_string().contains("use 1 to 64"), "{e}");
    }

    #[test]
    fn pc_machine_fields() {
        let field = |f: VmConfigFile| VmConfig::validate(f, HOST).unwrap_err().field;
        let disk = tmp("disk.img", &[0; 512]);
        let d = || Some(vec![DiskConfig::new(disk.clone())]);
        let bios = tmp("bios.bin", &vec![0; 0x2_0000]);
        let pc = |disks| VmConfigFile { firmware: Some(bios.clone()), disks, ..Default::default() };
        let c = VmConfig::validate(pc(d()), HOST).unwrap();
        assert_eq!(c.machine, MachineKind::Pc, "disks without a kernel mean the BIOS machine");
        assert_eq!((c.kernel.as_ref(), c.vga), (None, true));
        assert_eq!(c.boot, vec![BootDevice::Disk, BootDevice::Cdrom]);
        let c = VmConfig::validate(VmConfigFile { cdrom: Some(disk.clone()), ..pc(None) }, HOST).unwrap();
        assert_eq!(c.boot, vec![BootDevice::Cdrom]);
        assert_eq!(field(VmConfigFile { disks: d(), ..with_kernel() }), "disk");
        let pc_kernel =
            VmConfigFile { machine: Some(MachineKind::Pc), firmware: Some(bios.clone()), ..with_kernel() };
        assert_eq!(field(pc_kernel), "kernel", "HdrS alone is not a bootable bzImage");
        assert_eq!(field(VmConfigFile { firmware: Some(tmp("short", &[0; 100])), ..pc(d()) }), "firmware");
        let missing = Some(vec![DiskConfig::new("/nonexistent.img")]);
        assert_eq!(field(pc(missing)), "disk");
        assert_eq!(field(VmConfigFile { cdrom: Some("/nonexistent.iso".into()), ..pc(None) }), "cdrom");
        let four = Some(vec![d().unwrap()[0].clone(); 4]);
        assert_eq!(field(pc(four)), "disk");
        let j =
            VmConfigFile::parse(r#"{"machine": "pc", "disks": ["/a,format=qcow2"], "boot": "cdrom,disk"}"#)
                .unwrap();
        assert_eq!(j.boot, Some(vec![BootDevice::Cdrom, BootDevice::Disk]));
        assert_eq!(j.disks.unwrap()[0].format, Some(crate::pc_config::DiskFormat::Qcow2));
    }

    #[test]
    fn assigned_devices_need_the_pc_machine_and_distinct_addresses() {
        let bios = tmp("bios-hostdev.bin", &vec![0; 0x2_0000]);
        let disk = tmp("disk-hostdev.img", &[0; 512]);
        let dev = |s: &str| -> HostDevConfig { s.parse().unwrap() };
        let pc = |devices: Vec<HostDevConfig>| VmConfigFile {
            firmware: Some(bios.clone()),
            disks: Some(vec![DiskConfig::new(disk.clone())]),
            devices: Some(devices),
            ..Default::default()
        };
        let c = VmConfig::validate(pc(vec![dev("vfio=0000:00:02.0"), dev("vfio=01:00.0,rom=off")]), HOST)
            .unwrap();
        assert_eq!(c.hostdevs.len(), 2);
        assert!(!c.hostdevs[1].rom);
        let e =
            VmConfig::validate(pc(vec![dev("vfio=00:02.0"), dev("vfio=0000:00:02.0")]), HOST).unwrap_err();
        assert!(e.field == "device" && e.problem.contains("twice"), "{e}");
        let nine = (0..9u8).map(|bus| dev(&format!("vfio=0000:{bus:02x}:00.0"))).collect();
        let e = VmConfig::validate(pc(nine), HOST).unwrap_err();
        assert!(e.problem.contains("at most 8"), "{e}");
        let direct = VmConfigFile { devices: Some(vec![dev("vfio=00:02.0")]), ..with_kernel() };
        let e = VmConfig::validate(direct, HOST).unwrap_err();
        assert!(e.field == "device" && e.problem.contains("--machine pc"), "{e}");
        let j =
            VmConfigFile::parse(r#"{"devices": ["vfio=0000:00:02.0", {"vfio": "00:03.0", "rom": false}]}"#)
                .unwrap();
        assert_eq!(j.devices.unwrap()[1], dev("vfio=00:03.0,rom=off"));
        let e = VmConfigFile::parse(r#"{"devices": ["vfio=00:02"]}"#).unwrap_err();
        assert!(e.contains("lspci -D") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn direct_machine_takes_virtio_disks_only() {
        let field = |f: VmConfigFile| VmConfig::validate(f, HOST).unwrap_err();
        let disk = tmp("vda.img", &[0; 512]);
        let virtio = |p: &Path| DiskConfig { bus: crate::pc_config::DiskBus::Virtio, ..DiskConfig::new(p) };
        let c = VmConfig::validate(VmConfigFile { disks: Some(vec![virtio(&disk)]), ..with_kernel() }, HOST)
            .unwrap();
        assert_eq!(c.machine, MachineKind::Direct, "--kernel still means the direct machine");
        assert_eq!((c.disks.len(), c.disks[0].bus), (1, crate::pc_config::DiskBus::Virtio));
        assert!(c.boot.is_empty() && c.cdrom.is_none() && !c.vga);
        // IDE disks and the CD-ROM need the BIOS machine, virtio disks or not.
        let mixed = Some(vec![virtio(&disk), DiskConfig::new(disk.clone())]);
        let e = field(VmConfigFile { disks: mixed, ..with_kernel() });
        assert_eq!(
            (e.field.as_str(), e.to_string().contains("needs the BIOS machine")),
            ("disk", true),
            "{e}"
        );
        let e = field(VmConfigFile {
            disks: Some(vec![virtio(&disk)]),
            cdrom: Some(disk.clone()),
            ..with_kernel()
        });
        assert_eq!(e.field, "cdrom");
        // The virtio limits and image checks of the PC machine.
        let e = field(VmConfigFile { disks: Some(vec![virtio(&disk); 17]), ..with_kernel() });
        assert!(e.field == "disk" && e.to_string().contains("at most 16"), "{e}");
        let e =
            field(VmConfigFile { disks: Some(vec![virtio(Path::new("/nonexistent.img"))]), ..with_kernel() });
        assert_eq!(e.field, "disk");
    }

    #[test]
    fn pc_machine_boots_a_bzimage_through_the_bios() {
        let field = |f: VmConfigFile| VmConfig::validate(f, HOST).unwrap_err();
        let bios = tmp("bios.bin", &vec![0; 0x2_0000]);
        let mut rom = vec![0u8; 1536];
        rom[..3].copy_from_slice(&[0x55, 0xaa, 3]);
        let rom = tmp("linuxboot_dma.bin", &rom);
        let bz = tmp("vmlinuz", &crate::linuxboot::test_bzimage(0x020f, 4, 1 << 20));
        let initrd = tmp("initrd", &[1; 4096]);
        let pc = || VmConfigFile {
            machine: Some(MachineKind::Pc),
            firmware: Some(bios.clone()),
            linuxboot_rom: Some(rom.clone()),
            kernel: Some(bz.clone()),
            initramfs: Some(initrd.clone()),
            ..Default::default()
        };
        let c = VmConfig::validate(pc(), HOST).unwrap();
        assert_eq!(
            (c.machine, c.kernel.as_ref(), c.linuxboot_rom.as_ref()),
            (MachineKind::Pc, Some(&bz), Some(&rom))
        );
        assert_eq!(c.initramfs.as_ref(), Some(&initrd));
        // From JSON too.
        let j = format!(
            r#"{{"machine": "pc", "kernel": "{}", "initramfs": "{}", "linuxboot_rom": "{}", "firmware": "{}"}}"#,
            bz.display(),
            initrd.display(),
            rom.display(),
            bios.display()
        );
        let c = VmConfig::validate(VmConfigFile::parse(&j).unwrap(), HOST).unwrap();
        assert_eq!(c.linuxboot_rom.as_ref(), Some(&rom));

        let elf = tmp("vmlinux", b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        let e = field(VmConfigFile { kernel: Some(elf), ..pc() });
        assert_eq!(e.field, "kernel");
        assert!(e.problem.contains("ELF vmlinux") && e.problem.contains("bzImage"), "{e}");
        let e = field(VmConfigFile { kernel: Some(kernel()), ..pc() });
        assert!(e.field == "kernel" && e.problem.contains("not a Linux bzImage"), "{e}");
        let e = field(VmConfigFile { kernel: None, ..pc() });
        assert_eq!(e.field, "initramfs");
        let e = field(VmConfigFile { linuxboot_rom: Some("/nonexistent/rom.bin".into()), ..pc() });
        assert_eq!(e.field, "linuxboot-rom");
        let e = field(VmConfigFile { linuxboot_rom: Some(initrd.clone()), ..pc() });
        assert!(e.field == "linuxboot-rom" && e.problem.contains("option ROM"), "{e}");
        let big = tmp("big-initrd", &[]);
        std::fs::File::options().write(true).open(&big).unwrap().set_len(40 << 20).unwrap();
        let e = field(VmConfigFile { initramfs: Some(big), memory: Some(32 << 20), ..pc() });
        assert!(e.field == "initramfs" && e.problem.contains("do not fit"), "{e}");
        let e = field(VmConfigFile { cmdline: Some("console=ttyS0 vga=huge".into()), ..pc() });
        assert!(e.field == "cmdline" && e.problem.contains("vga=huge"), "{e}");
        let e = field(VmConfigFile { initramfs: Some(tmp("empty", &[])), ..pc() });
        assert_eq!(e.field, "initramfs");
        // The ROM option belongs to the pc machine.
        let e = field(VmConfigFile { linuxboot_rom: Some(rom.clone()), ..with_kernel() });
        assert_eq!(e.field, "linuxboot-rom");
    }

    #[test]
    fn vnc_needs_the_pc_vga() {
        let field = |f: VmConfigFile| VmConfig::validate(f, HOST).unwrap_err();
        let disk = tmp("disk.img", &[0; 512]);
        let bios = tmp("bios.bin", &vec![0; 0x2_0000]);
        let vnc = |s: &str| Some(s.parse::<VncListen>().unwrap());
        let pc =
            VmConfigFile { firmware: Some(bios), cdrom: Some(disk), vnc: vnc(":1"), ..Default::default() };
        let c = VmConfig::validate(pc.clone(), HOST).unwrap();
        assert_eq!(c.vnc, vnc("127.0.0.1:5901"));
        let e = field(VmConfigFile { vga: Some(false), ..pc.clone() });
        assert!(e.field == "vnc" && e.problem.contains("--vga"), "{e}");
        let e = field(VmConfigFile { vnc: vnc(":0"), ..with_kernel() });
        assert!(e.field == "vnc" && e.problem.contains("--machine pc"), "{e}");
        let e = field(VmConfigFile { vnc: vnc("unix:/nonexistent-dir/v.sock"), ..pc });
        assert_eq!(e.field, "vnc");
        let j = VmConfigFile::parse(r#"{"vnc": "unix:/run/v.sock"}"#).unwrap();
        assert_eq!(j.vnc, Some(VncListen::Unix("/run/v.sock".into())));
        let e = VmConfigFile::parse(r#"{"vnc": "0.0.0.0:5900"}"#).unwrap_err();
        assert!(e.contains("allow-remote") && e.contains("no authentication"), "{e}");
        let j = VmConfigFile::parse(r#"{"vnc": "0.0.0.0:5900,allow-remote"}"#).unwrap();
        assert!(matches!(j.vnc, Some(VncListen::Tcp { allow_remote: true, .. })));
    }

    /// The password comes from the file (`vnc_password`) or `--vnc-password-file`; one longer
    /// than 8 bytes is refused with the reason; one without a VNC server too.
    #[test]
    fn vnc_password_from_the_file_or_a_password_file() {
        let disk = tmp("pw-disk.img", &[0; 512]);
        let bios = tmp("pw-bios.bin", &vec![0; 0x2_0000]);
        let j = VmConfigFile::parse(r#"{"vnc": ":1", "vnc_password": "secret"}"#).unwrap();
        let pc = VmConfigFile { firmware: Some(bios), cdrom: Some(disk), ..j };
        let c = VmConfig::validate(pc.clone(), HOST).unwrap();
        assert_eq!(c.vnc_password, Some(VncPassword::new("secret").unwrap()));
        assert!(!format!("{c:?}").contains("secret"), "Debug hides the password");
        let e = VmConfigFile::parse(r#"{"vnc": ":1", "vnc_password": "123456789"}"#).unwrap_err();
        assert!(e.contains("9 bytes long") && e.contains("at most 8"), "{e}");
        let e = VmConfig::validate(VmConfigFile { vnc: None, ..pc }, HOST).unwrap_err();
        assert!(e.field == "vnc_password" && e.problem.contains("add vnc"), "{e}");
        // A password file: its first line.
        let f = tmp("pw.txt", b"s3cret\nignored\n");
        assert_eq!(read_vnc_password(&f).unwrap(), VncPassword::new("s3cret").unwrap());
        let e = read_vnc_password(&tmp("pw-long.txt", b"much-too-long\n")).unwrap_err();
        assert!(e.field == "--vnc-password-file" && e.problem.contains("at most 8"), "{e}");
        let e = read_vnc_password(Path::new("/nonexistent/pw")).unwrap_err();
        assert!(e.problem.contains("cannot read"), "{e}");
    }

    #[test]
    fn host_memory_is_read() {
        assert!(host_memory() > 1 << 20);
    }
}
