// SPDX-License-Identifier: Apache-2.0
//! `vmm`: runs one virtual machine. The command line and the configuration file are read
//! here; the machine is the `vmm` library's (see lib.rs for the exit statuses).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hypervisor::host::HostVirt;
use hypervisor::kvm::KvmHypervisor;
use hypervisor::Hypervisor;

use vmm::config::{self, HostLimits, SerialConfig, VmConfig, VmConfigFile};
use vmm::{bad_input, control, error_exit, pc_config, vnc, Exit, EXIT_BAD_INPUT, EXIT_ERROR, EXIT_SLOW_HOST};

#[derive(Parser, Debug)]
#[command(
    name = "vmm",
    version,
    about = "Run one KVM virtual machine: direct Linux boot, or a PC booted by SeaBIOS (from disk, \
             CD-ROM or a Linux kernel)",
    after_help = "Exit status: 0 guest powered off, 1 internal error, 2 bad input, 3 guest rebooted \
                  (--no-reboot), 4 guest triple fault, 5 host lacks hardware virtualization, \
                  130 stopped (signal or Ctrl-A x on the console), 159 a forbidden syscall \
                  (seccomp; stderr names it).\n\
                  On a terminal, Ctrl-A x quits and Ctrl-A Ctrl-A sends Ctrl-A."
)]
struct Cli {
    /// JSON file with every field of the VM configuration (the flags below but
    /// --accept-slow-kvm, with `_` for `-`); flags override it.
    #[arg(long, value_name = "FILE.json")]
    config: Option<PathBuf>,
    /// Linux kernel: a bzImage (vmlinuz), or an uncompressed ELF vmlinux (PVH entry, faster).
    /// With --machine pc, SeaBIOS boots it (a bzImage) through fw_cfg and --linuxboot-rom,
    /// as QEMU's -kernel does.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Initial ramdisk.
    #[arg(long, value_name = "PATH")]
    initramfs: Option<PathBuf>,
    /// Kernel command line [default: console=ttyS0].
    #[arg(long, value_name = "STR")]
    cmdline: Option<String>,
    /// Number of vCPUs [default: 1].
    #[arg(long, value_name = "N")]
    cpus: Option<u32>,
    /// Guest memory, e.g. 512M or 2G; a bare number is MiB [default: 256M].
    #[arg(long, value_name = "SIZE", value_parser = config::parse_size)]
    memory: Option<u64>,
    /// COM1 backend: stdio, file:PATH or unix:PATH [default: stdio].
    #[arg(long, value_name = "SPEC")]
    serial: Option<SerialConfig>,
    /// Exit with status 3 when the guest reboots instead of booting it again.
    #[arg(long)]
    no_reboot: bool,
    /// What the CMOS clock counts: base=utc, or base=localtime (the host's zone, for Windows)
    /// [default: base=utc].
    #[arg(long, value_name = "base=utc|localtime")]
    rtc: Option<api::machine::RtcBase>,
    /// Machine: pc (i440FX PC booted by SeaBIOS) or direct (kernel boot) [default: direct
    /// with --kernel, pc with --disk or --cdrom without --kernel].
    #[arg(long, value_name = "KIND")]
    machine: Option<pc_config::MachineKind>,
    /// BIOS image for --machine pc [default: /usr/share/seabios/bios-256k.bin].
    #[arg(long, value_name = "PATH")]
    firmware: Option<PathBuf>,
    /// Option ROM that boots --kernel on --machine pc (read by SeaBIOS from fw_cfg)
    /// [default: /usr/share/qemu/linuxboot_dma.bin, from Debian's qemu-system-data].
    #[arg(long, value_name = "PATH")]
    linuxboot_rom: Option<PathBuf>,
    /// Disk: PATH[,format=raw|qcow2][,bus=ide|virtio][,readonly][,serial=ID][,queues=N]
    /// [,aio=io_uring|threads]; repeat for more (up to 3 IDE and 16 virtio).
    #[arg(long = "disk", value_name = "SPEC")]
    disks: Vec<pc_config::DiskConfig>,
    /// ISO image for the IDE CD-ROM drive (read-only).
    #[arg(long, value_name = "PATH")]
    cdrom: Option<PathBuf>,
    /// Firmware boot order: disk, cdrom, net, comma-separated [default: disk,cdrom].
    #[arg(long, value_name = "ORDER", value_parser = pc_config::parse_boot_order)]
    // Fully qualified so clap takes the whole list as one value, not a list of values.
    boot: Option<::std::vec::Vec<pc_config::BootDevice>>,
    /// Display card for --machine pc: std (standard VGA with Bochs VBE) or none [default: std].
    #[arg(long, value_name = "KIND", value_parser = ["std", "none"])]
    vga: Option<String>,
    /// Intel e1000 NIC on a host tap device: tap=NAME[,mac=52:54:00:12:34:56]; repeat for more.
    #[arg(long = "nic", value_name = "SPEC")]
    nics: Vec<pc_config::NicConfig>,
    /// Host PCI device assigned with VFIO (bound to vfio-pci, behind the IOMMU):
    /// vfio=0000:00:02.0[,rom=off]; repeat for more (--machine pc).
    #[arg(long = "device", value_name = "SPEC")]
    devices: Vec<api::hostdev::HostDevConfig>,
    /// VNC server on the VGA screen, PS/2 keyboard and mouse: HOST:PORT, :N (127.0.0.1 port
    /// 5900+N) or unix:PATH. No authentication: only loopback TCP addresses unless
    /// ADDR,allow-remote.
    #[arg(long, value_name = "ADDR")]
    vnc: Option<vnc::VncListen>,
    /// Ask VNC clients for the password on the first line of this file (VNC Authentication:
    /// 1 to 8 printable ASCII characters); /dev/fd/N reads an inherited descriptor. In a
    /// --config file: "vnc_password".
    #[arg(long, value_name = "PATH")]
    vnc_password_file: Option<PathBuf>,
    /// On SIGUSR1, write the VGA screen as PREFIX.txt (text mode) and PREFIX.png.
    #[arg(long, value_name = "PREFIX")]
    screen_dump: Option<PathBuf>,
    /// Run even where KVM cannot use hardware virtualization (kvm_pvm, no vmx/svm).
    #[arg(long)]
    accept_slow_kvm: bool,
    /// Listen on this unix socket (mode 0600) for JSON-lines control requests (status,
    /// powerbutton, stop, reset, pause, resume, screendump) for the life of the process.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// On exit, write {"code":N,"reason":"..."} to this file (atomically).
    #[arg(long, value_name = "PATH")]
    exit_status_file: Option<PathBuf>,
    /// Per-thread seccomp filters: on (a syscall outside its thread's allowlist ends the vmm
    /// with status 159, naming the syscall), log (the kernel logs it, the call runs) or off
    /// [default: on].
    #[arg(long, value_name = "MODE")]
    seccomp: Option<api::SeccompMode>,
    /// A file the parent opened for the vmm (a jailed vmm cannot open it): PATH, absolute and
    /// named as the other flags name it, is used through descriptor FD (3 or above, open,
    /// inherited) instead of being opened; repeat for more. Covers disk images and every file
    /// of their qcow2 backing chains, --cdrom, --kernel, --initramfs, --firmware,
    /// --linuxboot-rom, the VGA ROM and a --serial file:PATH log; other paths open as usual.
    #[arg(long = "preopened", value_name = "PATH=FD")]
    preopened: Vec<api::PreopenedFile>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // `vmm control PATH REQUEST`: a client of another vmm's control socket (for scripts).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "control") {
        let (Some(path), Some(req)) = (args.get(2), args.get(3).and_then(|r| r.to_str())) else {
            eprintln!("usage: vmm control SOCKET '{{\"cmd\":\"status\"}}'");
            return ExitCode::from(EXIT_BAD_INPUT);
        };
        return match control::client(std::path::Path::new(path), req) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(EXIT_ERROR),
            Err(e) => {
                eprintln!("vmm: control: {}: {e}", std::path::Path::new(path).display());
                ExitCode::from(EXIT_ERROR)
            }
        };
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_BAD_INPUT } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let ((code, reason), exit_status_file) = vmm_main(&cli);
    if let Some(path) = &exit_status_file {
        if let Err(e) = control::write_exit_status(path, code, &reason) {
            eprintln!("vmm: warning: cannot write {}: {e}", path.display());
        }
    }
    ExitCode::from(code)
}

/// Runs the VM; also returns where the exit status goes (the flag, or the file's field once
/// the file is read).
fn vmm_main(cli: &Cli) -> (Exit, Option<PathBuf>) {
    let file = match &cli.config {
        Some(p) => match VmConfigFile::load(p) {
            Ok(f) => f,
            Err(e) => return (bad_input(e), cli.exit_status_file.clone()),
        },
        None => VmConfigFile::default(),
    };
    let mut over = flags(cli);
    if let Some(p) = &cli.vnc_password_file {
        match config::read_vnc_password(p) {
            Ok(pw) => over.vnc_password = Some(pw),
            Err(e) => return (bad_input(e), cli.exit_status_file.clone()),
        }
    }
    let merged = file.merge(over);
    let exit_status_file = merged.exit_status_file.clone();
    (vmm_run(cli, merged), exit_status_file)
}

/// The configuration the flags give (unset flags are `None`).
fn flags(cli: &Cli) -> VmConfigFile {
    VmConfigFile {
        kernel: cli.kernel.clone(),
        initramfs: cli.initramfs.clone(),
        cmdline: cli.cmdline.clone(),
        cpus: cli.cpus,
        memory: cli.memory,
        serial: cli.serial.clone(),
        no_reboot: cli.no_reboot.then_some(true),
        rtc: cli.rtc,
        machine: cli.machine,
        firmware: cli.firmware.clone(),
        linuxboot_rom: cli.linuxboot_rom.clone(),
        disks: (!cli.disks.is_empty()).then(|| cli.disks.clone()),
        cdrom: cli.cdrom.clone(),
        boot: cli.boot.clone(),
        vga: cli.vga.as_deref().map(|v| v == "std"),
        screen_dump: cli.screen_dump.clone(),
        nics: (!cli.nics.is_empty()).then(|| cli.nics.clone()),
        devices: (!cli.devices.is_empty()).then(|| cli.devices.clone()),
        vnc: cli.vnc.clone(),
        vnc_password: None,
        control: cli.control.clone(),
        exit_status_file: cli.exit_status_file.clone(),
        seccomp: cli.seccomp,
        preopened: (!cli.preopened.is_empty()).then(|| cli.preopened.clone()),
    }
}

fn vmm_run(cli: &Cli, merged: VmConfigFile) -> Exit {
    let control = merged.control.clone();
    // First, before the vmm opens anything that could hold one of the numbers (/dev/kvm
    // below): the handed-over descriptors, which validation already reads through.
    // SAFETY: nothing the process opened is open yet (the --config file was read and
    // closed), so every open descriptor number is inherited and owned by nothing here.
    if let Err(e) = unsafe { vmm::preopened::adopt(merged.preopened.as_deref().unwrap_or_default()) } {
        return bad_input(e);
    }

    // Input errors are reported before hypervisor errors, so a bad flag gets status 2 even on
    // a host without /dev/kvm; without KVM the vCPU limit is the VMM's own.
    let hv = KvmHypervisor::new();
    let max_vcpus = hv.as_ref().map(|h| h.max_vcpus() as u32).unwrap_or(config::MAX_CPUS);
    let limits = HostLimits { max_vcpus, host_memory: config::host_memory() };
    let cfg = match VmConfig::validate(merged, limits) {
        Ok(c) => c,
        Err(e) => return bad_input(e),
    };
    let hv = match hv {
        Ok(h) => h,
        Err(e) => return error_exit(&e),
    };
    if let Some(warning) = HostVirt::detect().warning() {
        if !cli.accept_slow_kvm {
            let msg = format!("vmm: {warning}");
            eprintln!("{msg}");
            return (EXIT_SLOW_HOST, msg);
        }
        eprintln!("vmm: warning: {warning}");
    }
    vmm::run(&hv, &cfg, control.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preopened_flags_parse_and_replace_the_files_list() {
        let cli =
            Cli::try_parse_from(["vmm", "--preopened", "/i/a=b.img=5", "--preopened=/k/vmlinuz=6"]).unwrap();
        let want = vec![
            api::PreopenedFile { path: "/i/a=b.img".into(), fd: 5 },
            api::PreopenedFile { path: "/k/vmlinuz".into(), fd: 6 },
        ];
        assert_eq!(flags(&cli).preopened.as_ref(), Some(&want));
        let file = VmConfigFile::parse(r#"{"preopened": [{"path": "/x.iso", "fd": 9}]}"#).unwrap();
        assert_eq!(file.clone().merge(flags(&cli)).preopened, Some(want));
        let none = Cli::try_parse_from(["vmm"]).unwrap();
        assert_eq!(flags(&none).preopened, None);
        let kept = file.clone().merge(flags(&none)).preopened;
        assert_eq!(kept, Some(vec![api::PreopenedFile { path: "/x.iso".into(), fd: 9 }]));
        let e = Cli::try_parse_from(["vmm", "--preopened", "/i/a.img"]).unwrap_err().to_string();
        assert!(e.contains("--preopened") && e.contains("is not PATH=FD"), "{e}");
    }
}
