// SPDX-License-Identifier: Apache-2.0
//! The `vmm` library: one virtual machine, from a validated configuration to its exit
//! status. The `vmm` binary (main.rs) is its command line; tests and other front ends can
//! drive [`run`] the same way.
//!
//! Exit status: 0 the guest powered off; 1 internal or hypervisor error; 2 bad user input;
//! 3 the guest rebooted under `--no-reboot`; 4 the guest triple-faulted; 5 the host cannot
//! run guests at useful speed (see `--accept-slow-kvm`); 130 stopped by a signal or Ctrl-A x.

mod board;
pub mod config;
pub mod control;
mod direct;
mod event_loop;
pub mod files;
mod hooks;
mod interrupts;
mod linuxboot;
mod memory;
mod pc;
pub mod pc_config;
pub mod preopened;
mod registry;
pub mod serial;
pub mod stats;
mod vcpu;
mod vm;
pub mod vnc;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use hypervisor::kvm::KvmHypervisor;
use hypervisor::Hypervisor;

use api::VmmExit;
use config::{ConfigError, VmConfig};
use vcpu::Outcome;

// The exit codes are the api crate's, shared with vmctld.
/// The guest powered off.
pub const EXIT_POWEROFF: u8 = VmmExit::PowerOff.code();
/// An internal or hypervisor error.
pub const EXIT_ERROR: u8 = VmmExit::Error.code();
/// Bad user input (flags, configuration file, images).
pub const EXIT_BAD_INPUT: u8 = VmmExit::BadInput.code();
/// The guest rebooted under `--no-reboot`.
pub const EXIT_REBOOT: u8 = VmmExit::Reboot.code();
/// A vCPU triple-faulted.
pub const EXIT_TRIPLE_FAULT: u8 = VmmExit::TripleFault.code();
/// The host cannot run guests at useful speed.
pub const EXIT_SLOW_HOST: u8 = VmmExit::SlowHost.code();
/// Stopped by a signal, a stop request or Ctrl-A x.
pub const EXIT_STOPPED: u8 = VmmExit::Stopped.code();

/// "vmm: error: " and the error with each of its sources.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = format!("vmm: error: {e}");
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// Stopped because a thread made a syscall its seccomp filter forbids (written by the SIGSYS
/// handler, which names the syscall on stderr).
pub const EXIT_SECCOMP: u8 = VmmExit::Seccomp.code();

fn seccomp_mode(mode: api::SeccompMode) -> devices::sandbox::Mode {
    match mode {
        api::SeccompMode::On => devices::sandbox::Mode::On,
        api::SeccompMode::Log => devices::sandbox::Mode::Log,
        api::SeccompMode::Off => devices::sandbox::Mode::Off,
    }
}

/// Installs the main thread's filter the first time it is called.
fn enter_main_role() -> Result<(), String> {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Ok(());
    }
    devices::sandbox::enter(devices::sandbox::ThreadRole::Main)
        .map_err(|e| error_chain(&e).trim_start_matches("vmm: error: ").to_string())
}

/// An exit status and the reason for the exit-status file.
pub type Exit = (u8, String);

/// Reports a configuration error (exit status 2).
pub fn bad_input(e: ConfigError) -> Exit {
    let msg = format!("vmm: invalid configuration: {e}");
    eprintln!("{msg}");
    (EXIT_BAD_INPUT, msg)
}

/// Reports an internal or hypervisor error (exit status 1).
pub fn error_exit(e: &dyn std::error::Error) -> Exit {
    let msg = error_chain(e);
    eprintln!("{msg}");
    (EXIT_ERROR, msg)
}

/// The exit status and message for a machine that could not be built (or reset).
fn start_error(e: board::Error) -> (u8, Option<String>) {
    match e {
        board::Error::Boot(e) => {
            let msg = format!(
                "{}\nvmm: invalid configuration: kernel/initramfs could not be loaded",
                error_chain(&e)
            );
            (EXIT_BAD_INPUT, Some(msg))
        }
        e @ board::Error::LinuxBoot(_) => {
            (EXIT_BAD_INPUT, Some(format!("{}\nvmm: invalid configuration: kernel", error_chain(&e))))
        }
        e @ (board::Error::Disk(..) | board::Error::Nic(..)) => {
            (EXIT_BAD_INPUT, Some(format!("{}\nvmm: invalid configuration: disk", error_chain(&e))))
        }
        e => (EXIT_ERROR, Some(error_chain(&e))),
    }
}

/// Runs the VM of `cfg` until it ends: installs the signal handlers, opens the serial
/// backend, the control socket and the VNC server, builds the machine and boots it again
/// after every guest reset (unless `--no-reboot`). Returns the exit status and its reason.
pub fn run(hv: &KvmHypervisor, cfg: &VmConfig, control_path: Option<&std::path::Path>) -> Exit {
    let fail = |msg: String| {
        eprintln!("{msg}");
        (EXIT_ERROR, msg)
    };
    // Before any thread starts: every thread installs its filter as it takes up its role.
    if let Err(e) = devices::sandbox::configure(seccomp_mode(cfg.seccomp)) {
        return fail(format!("vmm: error: seccomp: {}", error_chain(&e).trim_start_matches("vmm: error: ")));
    }
    // `stop` ends the current boot; `terminate` says the process exits rather than reboots.
    let stop = Arc::new(AtomicBool::new(false));
    let terminate = Arc::new(AtomicBool::new(false));
    let dump = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGUSR1, dump.clone()) {
        return fail(format!("vmm: error: cannot install signal handler: {e}"));
    }
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGHUP] {
        for flag in [&terminate, &stop] {
            if let Err(e) = signal_hook::flag::register(sig, flag.clone()) {
                return fail(format!("vmm: error: cannot install signal handler: {e}"));
            }
        }
    }
    if let Err(e) = vcpu::install_kick_handler() {
        return fail(format!("vmm: error: cannot install vCPU kick handler: {e}"));
    }
    let (supported_cpuid, msr_list) = match (hv.supported_cpuid(), hv.msr_index_list()) {
        (Ok(c), Ok(m)) => (c, m),
        (Err(e), _) | (_, Err(e)) => return error_exit(&e),
    };
    let control = control::Control::new(stop.clone(), terminate.clone());
    let (quit_stop, quit_term) = (stop.clone(), terminate.clone());
    let quit: serial::QuitHook = Arc::new(move || {
        quit_term.store(true, std::sync::atomic::Ordering::SeqCst);
        quit_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let mut serial = match serial::SerialBackend::open(&cfg.serial, quit) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("vmm: invalid configuration: serial: cannot open {}: {e}", cfg.serial);
            eprintln!("{msg}");
            return (EXIT_BAD_INPUT, msg);
        }
    };
    // Kept for the whole process, across reboots; the socket file goes with it.
    let _control_server = match control_path.map(|p| control::ControlServer::start(p, control.clone())) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => {
            let path = control_path.map(|p| p.display().to_string()).unwrap_or_default();
            let msg = format!("vmm: invalid configuration: control: cannot listen on {path}: {e}");
            eprintln!("{msg}");
            return (EXIT_BAD_INPUT, msg);
        }
    };
    // Clients stay connected across reboots; the machine attaches its screen and keyboard.
    let console = Arc::new(vnc::ConsoleHub::default());
    let _vnc_server = match &cfg.vnc {
        None => None,
        Some(listen) => {
            let name = format!("vmm {}", std::process::id());
            match vnc::VncServer::start(listen, cfg.vnc_password.clone(), console.clone(), &name) {
                Ok(s) => Some(s),
                Err(e) => {
                    let msg = format!(
                        "vmm: invalid configuration: vnc: {}",
                        error_chain(&e).trim_start_matches("vmm: error: ")
                    );
                    eprintln!("{msg}");
                    return (EXIT_BAD_INPUT, msg);
                }
            }
        }
    };
    let machine = board::Machine {
        console: &console,
        hypervisor: hv,
        supported_cpuid: &supported_cpuid,
        msr_list: &msr_list,
        config: cfg,
        serial: &serial,
        stop_requested: &stop,
        dump_requested: &dump,
        control: &control,
    };
    // The machine lives across guest resets; it is taken apart (vCPU threads joined, images
    // closed) at the end of this block, before the terminal is restored.
    let (code, message) = match vm::VirtualMachine::start(&machine) {
        Err(e) => start_error(e),
        Ok(mut vm) => loop {
            // The vCPU threads are running: the main thread takes up its role (once; a
            // second filter of the same role would change nothing but cost time).
            // Dropping `vm` stops and joins the vCPUs.
            if let Err(e) = enter_main_role() {
                break (EXIT_ERROR, Some(format!("vmm: error: seccomp: {e}")));
            }
            let outcome = vm.wait_boot_end();
            // A reset through the control socket ends the boot with the stop flag; boot again.
            let reset_requested =
                matches!(outcome, Outcome::Stopped | Outcome::Reset) && control.take_reset();
            // A stop request that arrives while the guest resets must not be lost to the reboot.
            let outcome = match outcome {
                Outcome::Reset if !reset_requested && stop.load(std::sync::atomic::Ordering::SeqCst) => {
                    Outcome::Stopped
                }
                other => other,
            };
            // The message is printed after the terminal is restored, so it reads normally.
            match outcome {
                _ if reset_requested => log::info!("reset requested: booting again"),
                Outcome::Reset if !cfg.no_reboot => log::info!("guest reset: booting again"),
                Outcome::Reset => break (EXIT_REBOOT, None),
                Outcome::PowerOff => break (EXIT_POWEROFF, None),
                Outcome::Stopped => break (EXIT_STOPPED, None),
                Outcome::TripleFault { cpu } => {
                    let msg = format!("vmm: guest triple fault on vCPU {cpu} (the CPU shut down); stopping");
                    break (EXIT_TRIPLE_FAULT, Some(msg));
                }
                Outcome::Error(msg) => break (EXIT_ERROR, Some(format!("vmm: error: {msg}"))),
            }
            if let Err(e) = vm.reset_and_boot() {
                break start_error(e);
            }
        },
    };
    serial.restore_terminal();
    if let Some(m) = &message {
        eprintln!("{m}");
    }
    let reason = message.unwrap_or_else(|| {
        match code {
            EXIT_POWEROFF => "guest powered off",
            EXIT_REBOOT => "guest rebooted (--no-reboot)",
            _ => "stopped by a signal or a stop request",
        }
        .to_string()
    });
    (code, reason)
}
