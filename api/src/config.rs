// SPDX-License-Identifier: Apache-2.0
//! The VM configuration file: one serde type for `vmm`'s flags, `vmm --config FILE.json`
//! and the file `vmctld` writes for each VM it starts.
//!
//! Every field is optional; `vmm` merges flags over the file ([`VmConfigFile::merge`]),
//! fills defaults and checks the result against the host. Each JSON field is named like its
//! flag (`linuxboot_rom` for `--linuxboot-rom`) and takes the flag's value: a string in the
//! flag's syntax (`"memory": "1G"`, `"serial": "unix:/run/vm.sock"`, `"boot": "cdrom,disk"`),
//! a number or a boolean. Disks and NICs are lists whose items are `--disk`/`--nic` strings
//! or objects with the same fields (see [`crate::machine`]); `preopened` is a list of
//! `{"path": PATH, "fd": FD}` objects. Serialization writes what reads back: objects for
//! disks, NICs and preopened files, strings for the rest, absent fields left out.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hostdev::HostDevConfig;
use crate::machine::{BootDevice, DiskConfig, MachineKind, NicConfig};
use crate::vnc::{VncListen, VncPassword};

/// A user-input error: which field, what is wrong, how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// The flag or JSON field.
    pub field: String,
    /// What is wrong and what to do instead.
    pub problem: String,
}

impl ConfigError {
    /// An error for `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError { field: field.into(), problem: problem.into() }
    }
}

/// The per-thread seccomp filters of `vmm` (`--seccomp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeccompMode {
    /// Each thread may make only the syscalls of its role; any other kills the process
    /// (exit status 159, the syscall named on stderr).
    #[default]
    On,
    /// Syscalls outside the allowlists run and are logged by the kernel (its audit log).
    Log,
    /// No filters.
    Off,
}

impl std::str::FromStr for SeccompMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on" => Ok(SeccompMode::On),
            "log" => Ok(SeccompMode::Log),
            "off" => Ok(SeccompMode::Off),
            _ => Err(format!("unknown seccomp mode '{s}': on, log or off")),
        }
    }
}

impl fmt::Display for SeccompMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SeccompMode::On => "on",
            SeccompMode::Log => "log",
            SeccompMode::Off => "off",
        })
    }
}

/// Where the guest's COM1 goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SerialConfig {
    /// The VMM's own stdin and stdout (a raw-mode terminal when stdin is one).
    #[default]
    Stdio,
    /// Output appended to a file; no input.
    File(PathBuf),
    /// A unix socket the VMM listens on; a connected client reads output and writes input.
    Unix(PathBuf),
}

impl std::str::FromStr for SerialConfig {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let nonempty = |p: &str, kind: &str| {
            if p.is_empty() {
                Err(format!(
                    "'{kind}:' needs a path, e.g. {kind}:/tmp/vm.{}",
                    if kind == "file" { "log" } else { "sock" }
                ))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        match s.split_once(':') {
            None if s == "stdio" => Ok(SerialConfig::Stdio),
            Some(("file", p)) => nonempty(p, "file").map(SerialConfig::File),
            Some(("unix", p)) => nonempty(p, "unix").map(SerialConfig::Unix),
            _ => Err(format!("'{s}' is not one of stdio, file:PATH, unix:PATH")),
        }
    }
}

impl fmt::Display for SerialConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SerialConfig::Stdio => write!(f, "stdio"),
            SerialConfig::File(p) => write!(f, "file:{}", p.display()),
            SerialConfig::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A host file the vmm's parent opened for it (`--preopened PATH=FD`, JSON
/// `{"path": PATH, "fd": FD}`): the path the configuration names and the descriptor the file
/// is open on in the vmm. The vmm checks the values (an absolute path, given once; a
/// descriptor of 3 or above, open) when it takes the descriptors over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreopenedFile {
    /// The path as the configuration names it (a disk, the ISO, the kernel, a backing file...).
    pub path: PathBuf,
    /// The descriptor number in the vmm.
    pub fd: i32,
}

impl std::str::FromStr for PreopenedFile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // The descriptor is digits: the last '=' ends the path, which may hold one itself.
        let syntax = || format!("'{s}' is not PATH=FD (e.g. /var/lib/vmctl/images/a.qcow2=5)");
        let (path, fd) = s.rsplit_once('=').ok_or_else(syntax)?;
        if path.is_empty() {
            return Err(syntax());
        }
        let fd = fd.trim().parse().map_err(|_| syntax())?;
        Ok(PreopenedFile { path: PathBuf::from(path), fd })
    }
}

impl fmt::Display for PreopenedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.path.display(), self.fd)
    }
}

/// Parses sizes like `512M`, `2G`, `1GiB`, `268435456B`; a bare number is MiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size; use e.g. 512M or 2G"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "" | "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("'{s}' has an unknown unit; use K, M, G or T")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("'{s}' is too large"))
}

/// A size as [`parse_size`] reads it back: `512M`, or `N B` when not whole MiB.
pub fn format_size(bytes: u64) -> String {
    if bytes % (1 << 20) == 0 {
        format!("{}M", bytes >> 20)
    } else {
        format!("{bytes}B")
    }
}

/// `memory`: a number of MiB or a string with a unit.
mod size {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&format_size(*b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Size {
            Mib(u64),
            Text(String),
        }
        match Option::<Size>::deserialize(d)? {
            None => Ok(None),
            Some(Size::Mib(m)) => m
                .checked_mul(1 << 20)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("memory is too large")),
            Some(Size::Text(t)) => parse_size(&t).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// A field written as its flag's string (`FromStr` and `Display`).
mod as_string {
    use super::*;

    pub fn serialize<S: Serializer, T: fmt::Display>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: std::str::FromStr<Err = String>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        Option::<String>::deserialize(d)?.map(|s| s.parse().map_err(serde::de::Error::custom)).transpose()
    }
}

/// `boot`: `"cdrom,disk"`.
mod boot_order {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Vec<BootDevice>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(&crate::machine::format_boot_order(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<BootDevice>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| crate::machine::parse_boot_order(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The VM as given by the user; all fields optional until merged and validated.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VmConfigFile {
    /// Path of the kernel: a bzImage, or an ELF vmlinux with a PVH entry note (direct machine
    /// only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
    /// Path of the initramfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initramfs: Option<PathBuf>,
    /// Kernel command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Number of vCPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Guest memory in bytes; in JSON a number of MiB or a string with a unit ("1G").
    #[serde(default, with = "size", skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// Serial backend: "stdio", "file:PATH" or "unix:PATH".
    #[serde(default, with = "as_string", skip_serializing_if = "Option::is_none")]
    pub serial: Option<SerialConfig>,
    /// Exit instead of rebooting when the guest resets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_reboot: Option<bool>,
    /// What the CMOS clock counts: "utc" (default) or "localtime" (`--rtc base=...`).
    #[serde(default, with = "as_string", skip_serializing_if = "Option::is_none")]
    pub rtc: Option<crate::machine::RtcBase>,
    /// "pc" (SeaBIOS) or "direct" (kernel boot); direct when a kernel is given.
    #[serde(default, with = "as_string", skip_serializing_if = "Option::is_none")]
    pub machine: Option<MachineKind>,
    /// BIOS image for the pc machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<PathBuf>,
    /// Option ROM that boots `kernel` on the pc machine (QEMU's linuxboot_dma.bin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linuxboot_rom: Option<PathBuf>,
    /// Disks: `--disk` strings ("PATH[,format=raw|qcow2][,bus=ide|virtio][,readonly]...") or
    /// objects (`{"path": PATH, "format": "qcow2", "bus": "virtio", ...}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<DiskConfig>>,
    /// ISO image in the IDE CD-ROM drive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdrom: Option<PathBuf>,
    /// Boot order, e.g. "cdrom,disk".
    #[serde(default, with = "boot_order", skip_serializing_if = "Option::is_none")]
    pub boot: Option<Vec<BootDevice>>,
    /// Standard VGA card: true (default on pc) or false (firmware and console on serial only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vga: Option<bool>,
    /// On SIGUSR1, write the VGA screen to this path with .txt and .png extensions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen_dump: Option<PathBuf>,
    /// NICs: `--nic` strings ("tap=NAME[,mac=52:54:00:..][,model=e1000|virtio]...") or objects
    /// (`{"tap": NAME, "mac": "52:54:00:..", "model": "virtio", "queues": N}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nics: Option<Vec<NicConfig>>,
    /// Host PCI devices assigned with VFIO: `--device` strings ("vfio=0000:00:02.0[,rom=off]")
    /// or objects (`{"vfio": "0000:00:02.0", "rom": false}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<HostDevConfig>>,
    /// VNC server address, as `--vnc`: "127.0.0.1:5900", ":0", "unix:PATH" [",allow-remote"].
    #[serde(default, with = "as_string", skip_serializing_if = "Option::is_none")]
    pub vnc: Option<VncListen>,
    /// The VNC Authentication password (1 to 8 printable ASCII characters): clients must
    /// answer its DES challenge. Only in the file (`--vnc-password-file` for a hand-run vmm),
    /// never on the command line. Without it the server offers security type None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnc_password: Option<VncPassword>,
    /// The control socket to listen on (`--control`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<PathBuf>,
    /// Where to write `{"code":N,"reason":"..."}` on exit (`--exit-status-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status_file: Option<PathBuf>,
    /// Seccomp filters: "on" (default), "log" or "off" (`--seccomp`).
    #[serde(default, with = "as_string", skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<SeccompMode>,
    /// Files handed over as open descriptors, used instead of opening their paths
    /// (`--preopened PATH=FD`): `[{"path": "/abs/path", "fd": 5}, ...]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preopened: Option<Vec<PreopenedFile>>,
}

impl VmConfigFile {
    /// Reads and parses a JSON configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| ConfigError::new("--config", format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| ConfigError::new(format!("--config {}", path.display()), e))
    }

    /// Parses JSON text; the error carries the line, column and offending field.
    pub fn parse(text: &str) -> Result<Self, String> {
        // serde_json's message ends with "at line L column C".
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
    }

    /// The configuration as pretty-printed JSON that [`VmConfigFile::parse`] reads back.
    pub fn to_json(&self) -> String {
        // Only strings, numbers, booleans and lists: serialization cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Fields set in `over` replace those in `self`.
    pub fn merge(self, over: VmConfigFile) -> VmConfigFile {
        VmConfigFile {
            kernel: over.kernel.or(self.kernel),
            initramfs: over.initramfs.or(self.initramfs),
            cmdline: over.cmdline.or(self.cmdline),
            cpus: over.cpus.or(self.cpus),
            memory: over.memory.or(self.memory),
            serial: over.serial.or(self.serial),
            no_reboot: over.no_reboot.or(self.no_reboot),
            rtc: over.rtc.or(self.rtc),
            machine: over.machine.or(self.machine),
            firmware: over.firmware.or(self.firmware),
            linuxboot_rom: over.linuxboot_rom.or(self.linuxboot_rom),
            disks: over.disks.or(self.disks),
            cdrom: over.cdrom.or(self.cdrom),
            boot: over.boot.or(self.boot),
            vga: over.vga.or(self.vga),
            screen_dump: over.screen_dump.or(self.screen_dump),
            nics: over.nics.or(self.nics),
            devices: over.devices.or(self.devices),
            vnc: over.vnc.or(self.vnc),
            vnc_password: over.vnc_password.or(self.vnc_password),
            control: over.control.or(self.control),
            exit_status_file: over.exit_status_file.or(self.exit_status_file),
            seccomp: over.seccomp.or(self.seccomp),
            preopened: over.preopened.or(self.preopened),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{DiskBus, DiskFormat, NicModel};

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("256"), Ok(256 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096B"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert!(parse_size("").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(parse_size(&format_size(3 << 30)), Ok(3 << 30));
        assert_eq!(parse_size(&format_size((1 << 20) + 4096)), Ok((1 << 20) + 4096));
    }

    #[test]
    fn serial_specs_parse() {
        assert_eq!("stdio".parse(), Ok(SerialConfig::Stdio));
        assert_eq!("file:/tmp/a".parse(), Ok(SerialConfig::File("/tmp/a".into())));
        assert_eq!("unix:/tmp/s".parse(), Ok(SerialConfig::Unix("/tmp/s".into())));
        assert!("file:".parse::<SerialConfig>().is_err());
        assert!("tcp:1234".parse::<SerialConfig>().is_err());
        assert!("".parse::<SerialConfig>().is_err());
        assert_eq!(SerialConfig::File("/x".into()).to_string(), "file:/x");
    }

    #[test]
    fn json_config_parses_and_names_bad_fields() {
        let c =
            VmConfigFile::parse(r#"{"kernel": "/k", "cpus": 4, "memory": "1G", "serial": "file:/tmp/x"}"#)
                .unwrap();
        assert_eq!(c.cpus, Some(4));
        assert_eq!(c.memory, Some(1 << 30));
        assert_eq!(VmConfigFile::parse(r#"{"memory": 512}"#).unwrap().memory, Some(512 << 20));
        let e = VmConfigFile::parse("{\n  \"kernel\": \"/k\",\n  \"cpu\": 2\n}").unwrap_err();
        assert!(e.contains("line 3") && e.contains("unknown field `cpu`"), "{e}");
        let e = VmConfigFile::parse("{\"cpus\": \"four\"}").unwrap_err();
        assert!(e.contains("line 1") && e.contains("invalid type"), "{e}");
        let e = VmConfigFile::parse("{\"kernel\": ").unwrap_err();
        assert!(e.contains("EOF"), "{e}");
        let e = VmConfigFile::parse(r#"{"serial": "tcp:1"}"#).unwrap_err();
        assert!(e.contains("not one of"), "{e}");
        let e = VmConfigFile::parse(r#"{"machine": "q35"}"#).unwrap_err();
        assert!(e.contains("use pc") && e.contains("line 1"), "{e}");
        let e = VmConfigFile::parse(r#"{"disks": ["/a,bus=scsi"]}"#).unwrap_err();
        assert!(e.contains("bus=virtio") && e.contains("line 1"), "{e}");
        let j =
            VmConfigFile::parse(r#"{"machine": "pc", "disks": ["/a,format=qcow2"], "boot": "cdrom,disk"}"#)
                .unwrap();
        assert_eq!(j.boot, Some(vec![BootDevice::Cdrom, BootDevice::Disk]));
        assert_eq!(j.disks.unwrap()[0].format, Some(DiskFormat::Qcow2));
        let j = VmConfigFile::parse(r#"{"vnc": "unix:/run/v.sock"}"#).unwrap();
        assert_eq!(j.vnc, Some(VncListen::Unix("/run/v.sock".into())));
        let e = VmConfigFile::parse(r#"{"vnc": "0.0.0.0:5900"}"#).unwrap_err();
        assert!(e.contains("allow-remote") && e.contains("no authentication"), "{e}");
    }

    #[test]
    fn flags_override_file() {
        let file = VmConfigFile { cpus: Some(2), cmdline: Some("a".into()), ..Default::default() };
        let flags = VmConfigFile { cpus: Some(4), ..Default::default() };
        let m = file.merge(flags);
        assert_eq!((m.cpus, m.cmdline.as_deref()), (Some(4), Some("a")));
    }

    #[test]
    fn the_readme_example_parses() {
        let c = VmConfigFile::parse(
            r#"{ "machine": "pc", "memory": 2048, "boot": "disk,cdrom", "cdrom": "/srv/vm/debian.iso",
  "disks": ["/srv/vm/data.img,format=raw,bus=virtio",
            {"path": "/srv/vm/root.qcow2", "format": "qcow2", "bus": "ide", "readonly": false}],
  "nics": [{"tap": "tap0", "mac": "52:54:00:12:34:56", "model": "virtio", "queues": 2}],
  "vnc": "127.0.0.1:5901", "control": "/run/vm1.ctl", "exit_status_file": "/run/vm1.exit" }"#,
        )
        .unwrap();
        let disks = c.disks.unwrap();
        assert_eq!((disks[0].bus, disks[1].format), (DiskBus::Virtio, Some(DiskFormat::Qcow2)));
        assert_eq!(c.nics.unwrap()[0].queues, 2);
        assert_eq!(c.memory, Some(2 << 30));
    }

    #[test]
    fn every_field_writes_and_reads_back() {
        let full = VmConfigFile {
            kernel: Some("/k/vmlinuz".into()),
            initramfs: Some("/k/initrd".into()),
            cmdline: Some("console=ttyS0 root=/dev/vda".into()),
            cpus: Some(2),
            memory: Some(768 << 20),
            serial: Some(SerialConfig::Unix("/run/a.serial.sock".into())),
            no_reboot: Some(true),
            rtc: Some(crate::machine::RtcBase::Localtime),
            machine: Some(MachineKind::Pc),
            firmware: Some("/bios.bin".into()),
            linuxboot_rom: Some("/rom.bin".into()),
            disks: Some(vec![
                DiskConfig { format: Some(DiskFormat::Raw), readonly: true, ..DiskConfig::new("/i/a,1.img") },
                DiskConfig {
                    bus: DiskBus::Virtio,
                    queues: 4,
                    serial: Some("v1".into()),
                    ..DiskConfig::new("/v")
                },
            ]),
            cdrom: Some("/x.iso".into()),
            boot: Some(vec![BootDevice::Cdrom, BootDevice::Net]),
            vga: Some(true),
            screen_dump: Some("/tmp/screen".into()),
            nics: Some(vec![NicConfig {
                tap: "t0".into(),
                mac: [2, 0, 0, 0, 0, 1],
                model: NicModel::Virtio,
                queues: 2,
                vhost: None,
            }]),
            devices: Some(vec!["vfio=0000:00:02.0,rom=off".parse().unwrap()]),
            vnc: Some("0.0.0.0:5901,allow-remote".parse().unwrap()),
            vnc_password: Some(crate::vnc::VncPassword::new("pw").unwrap()),
            control: Some("/run/a.sock".into()),
            exit_status_file: Some("/run/a.exit".into()),
            seccomp: Some(SeccompMode::Log),
            preopened: Some(vec![PreopenedFile { path: "/i/a,1.img".into(), fd: 7 }]),
        };
        let text = full.to_json();
        assert_eq!(VmConfigFile::parse(&text).unwrap(), full, "{text}");
        assert!(text.contains(r#""memory": "768M""#) && text.contains(r#""boot": "cdrom,net""#), "{text}");
        assert_eq!(VmConfigFile::default().to_json(), "{}");
    }

    #[test]
    fn preopened_files_parse_from_the_flag_and_json() {
        let p: PreopenedFile = "/var/lib/a=b.qcow2=5".parse().unwrap();
        assert_eq!(p, PreopenedFile { path: "/var/lib/a=b.qcow2".into(), fd: 5 });
        assert_eq!(p.to_string().parse::<PreopenedFile>(), Ok(p));
        for bad in ["/a.img", "/a.img=", "/a.img=five", "=5", ""] {
            let e = bad.parse::<PreopenedFile>().unwrap_err();
            assert!(e.contains("is not PATH=FD"), "{bad}: {e}");
        }
        let c =
            VmConfigFile::parse(r#"{"preopened": [{"path": "/i/a.img", "fd": 5}, {"path": "/k", "fd": 6}]}"#)
                .unwrap();
        let list = c.preopened.unwrap();
        assert_eq!(list[1], PreopenedFile { path: "/k".into(), fd: 6 });
        let e = VmConfigFile::parse(r#"{"preopened": [{"path": "/i/a.img", "fd": "5"}]}"#).unwrap_err();
        assert!(e.contains("line 1") && e.contains("invalid type"), "{e}");
        let e = VmConfigFile::parse(r#"{"preopened": [{"path": "/i/a.img", "file": 5}]}"#).unwrap_err();
        assert!(e.contains("unknown field `file`"), "{e}");
        // Flags replace the file's list, as for disks.
        let file = VmConfigFile { preopened: Some(list.clone()), ..Default::default() };
        assert_eq!(file.clone().merge(VmConfigFile::default()).preopened.as_ref(), Some(&list));
        let over = VmConfigFile { preopened: Some(vec![list[0].clone()]), ..Default::default() };
        assert_eq!(file.merge(over).preopened, Some(vec![list[0].clone()]));
    }

    #[test]
    fn seccomp_modes_parse_and_default_on() {
        for m in [SeccompMode::On, SeccompMode::Log, SeccompMode::Off] {
            assert_eq!(m.to_string().parse::<SeccompMode>(), Ok(m));
        }
        assert!("strict".parse::<SeccompMode>().is_err());
        assert_eq!(SeccompMode::default(), SeccompMode::On);
        let c = VmConfigFile::parse(r#"{"seccomp": "off"}"#).unwrap();
        assert_eq!(c.seccomp, Some(SeccompMode::Off));
        assert!(VmConfigFile::parse(r#"{"seccomp": "maybe"}"#).is_err());
    }
}
