// SPDX-License-Identifier: Apache-2.0
//! vCPU threads: set-up of each vCPU and the run loop that dispatches exits to the buses.

use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use devices::bus::Bus;
use hypervisor::{SystemEvent, Vcpu, VmExit};
use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

/// Why a boot of the VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest powered off.
    PowerOff,
    /// The guest asked for a reset.
    Reset,
    /// A vCPU triple-faulted.
    TripleFault {
        /// Which vCPU.
        cpu: u32,
    },
    /// The user or a signal stopped the VM.
    Stopped,
    /// The hypervisor failed or the guest did something the VMM cannot emulate.
    Error(String),
}

/// Shared between the vCPU threads, devices and the main thread: the first outcome of a
/// boot wins. The vCPU threads live as long as the VM: between two boots they wait here for
/// the main thread to reset the machine and start the next boot, or to end them.
#[derive(Default)]
pub struct RunState {
    outcome: Mutex<Option<Outcome>>,
    stopping: AtomicBool,
    pause: Mutex<PauseState>,
    pause_changed: Condvar,
    boots: Mutex<BootCycle>,
    boots_changed: Condvar,
    /// Written when an outcome is recorded: wakes the machine's event loop.
    outcome_notifier: Mutex<Option<vmm_sys_util::eventfd::EventFd>>,
}

/// Where the vCPU threads are between boots.
#[derive(Default)]
struct BootCycle {
    /// Counts boots started by [`RunState::next_boot`].
    boot: u64,
    /// vCPU threads out of the guest, waiting for the next boot.
    idle: usize,
    /// vCPU threads that restored their state for the current boot.
    restored: usize,
    /// The threads must end.
    exit: bool,
}

/// What a vCPU thread does after a boot ended.
#[derive(Debug, PartialEq, Eq)]
pub enum NextBoot {
    /// Restore the power-on state and run boot number `n`.
    Run(u64),
    /// End the thread.
    Exit,
}

/// Whether the vCPUs are asked to stay out of the guest, and how many already do.
#[derive(Default)]
struct PauseState {
    requested: bool,
    parked: usize,
}

impl RunState {
    /// Records `outcome` unless one is already recorded, and asks every vCPU to stop.
    pub fn finish(&self, outcome: Outcome) {
        let mut o = devices::bus::lock(&self.outcome);
        if o.is_none() {
            *o = Some(outcome);
        }
        self.stopping.store(true, Ordering::SeqCst);
        drop(o);
        if let Some(n) = devices::bus::lock(&self.outcome_notifier).as_ref() {
            let _ = n.write(1);
        }
        // Paused vCPU threads wake up and end.
        let _p = devices::bus::lock(&self.pause);
        self.pause_changed.notify_all();
    }

    /// Asks the vCPUs to stay out of the guest; `kick` interrupts the ones inside it. Returns
    /// once all `vcpus` are parked, or an error after `timeout`.
    pub fn pause(&self, vcpus: usize, kick: &dyn Fn(), timeout: Duration) -> Result<(), String> {
        devices::bus::lock(&self.pause).requested = true;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            // A kick can land just before a thread enters KVM_RUN and be missed: repeat it.
            kick();
            let p = devices::bus::lock(&self.pause);
            let (p, _) = self
                .pause_changed
                .wait_timeout_while(p, Duration::from_millis(2), |p| p.parked < vcpus)
                .unwrap_or_else(|e| e.into_inner());
            if p.parked >= vcpus {
                return Ok(());
            }
            if self.stopping() {
                return Err("the VM is stopping".into());
            }
            if std::time::Instant::now() >= deadline {
                drop(p);
                self.resume();
                return Err(format!("the vCPUs did not stop within {} ms", timeout.as_millis()));
            }
        }
    }

    /// Lets paused vCPUs run the guest again.
    pub fn resume(&self) {
        devices::bus::lock(&self.pause).requested = false;
        self.pause_changed.notify_all();
    }

    /// Called by a vCPU thread between two runs: while a pause is requested (and the VM is
    /// not stopping), runs `on_park`, then counts itself parked and waits.
    pub fn park_while_paused(&self, on_park: impl FnOnce()) {
        if !devices::bus::lock(&self.pause).requested || self.stopping() {
            return;
        }
        // Before the thread counts as parked, so `pause` returns after it.
        on_park();
        let mut p = devices::bus::lock(&self.pause);
        p.parked += 1;
        self.pause_changed.notify_all();
        let mut p = self
            .pause_changed
            .wait_while(p, |p| p.requested && !self.stopping())
            .unwrap_or_else(|e| e.into_inner());
        p.parked -= 1;
    }

    /// Called by a vCPU thread whose boot ended: counts it idle and waits until the main
    /// thread starts a boot after `seen` or ends the VM.
    pub fn wait_next_boot(&self, seen: u64) -> NextBoot {
        let mut b = devices::bus::lock(&self.boots);
        b.idle += 1;
        self.boots_changed.notify_all();
        let mut b = self
            .boots_changed
            .wait_while(b, |b| b.boot == seen && !b.exit)
            .unwrap_or_else(|e| e.into_inner());
        b.idle -= 1;
        if b.exit {
            NextBoot::Exit
        } else {
            NextBoot::Run(b.boot)
        }
    }

    /// Kicks the vCPUs out of the guest until all `vcpus` threads are idle (their boot is
    /// over), or `timeout` passes.
    pub fn wait_idle(&self, vcpus: usize, kick: &dyn Fn(), timeout: Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            kick();
            let b = devices::bus::lock(&self.boots);
            let (b, _) = self
                .boots_changed
                .wait_timeout_while(b, Duration::from_millis(2), |b| b.idle < vcpus)
                .unwrap_or_else(|e| e.into_inner());
            if b.idle >= vcpus {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "{} of {vcpus} vCPUs left the guest within {} ms",
                    b.idle,
                    timeout.as_millis()
                ));
            }
        }
    }

    /// Starts the next boot: the outcome is cleared and the idle vCPU threads restore their
    /// state and run. Call it once every thread is idle and the machine is reset.
    pub fn next_boot(&self) {
        *devices::bus::lock(&self.outcome) = None;
        self.stopping.store(false, Ordering::SeqCst);
        let mut b = devices::bus::lock(&self.boots);
        b.boot += 1;
        b.restored = 0;
        self.boots_changed.notify_all();
    }

    /// Called by a vCPU thread once its state is restored for `boot`: waits until all `vcpus`
    /// did, so no vCPU runs (and sends INIT or SIPI) into one still being restored.
    pub fn restored(&self, boot: u64, vcpus: usize) {
        let mut b = devices::bus::lock(&self.boots);
        if b.boot != boot {
            return;
        }
        b.restored += 1;
        self.boots_changed.notify_all();
        let _b = self
            .boots_changed
            .wait_while(b, |b| b.boot == boot && b.restored < vcpus && !b.exit)
            .unwrap_or_else(|e| e.into_inner());
    }

    /// Ends the vCPU threads (after their boot is over).
    pub fn exit(&self) {
        self.finish(Outcome::Stopped);
        devices::bus::lock(&self.boots).exit = true;
        self.boots_changed.notify_all();
    }

    /// Whether vCPUs should stop.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Has `notifier` written whenever an outcome is recorded.
    pub fn set_outcome_notifier(&self, notifier: vmm_sys_util::eventfd::EventFd) {
        *devices::bus::lock(&self.outcome_notifier) = Some(notifier);
    }

    /// The outcome of the current boot, if it ended.
    pub fn outcome(&self) -> Option<Outcome> {
        devices::bus::lock(&self.outcome).clone()
    }
}

/// The buses a vCPU dispatches to.
#[derive(Clone)]
pub struct Buses {
    /// Port I/O.
    pub pio: Bus,
    /// Memory-mapped I/O.
    pub mmio: Bus,
}

/// Handles one exit; returns an outcome if the VM must stop.
pub fn handle_exit(exit: VmExit<'_>, cpu: u32, buses: &Buses) -> Option<Outcome> {
    match exit {
        VmExit::PioIn { port, data } => {
            if !buses.pio.read(u64::from(port), data) {
                data.fill(0xff);
                log::trace!("vcpu{cpu}: read of unmapped port {port:#x}");
            }
        }
        VmExit::PioOut { port, data } => {
            if !buses.pio.write(u64::from(port), data) {
                log::trace!("vcpu{cpu}: write to unmapped port {port:#x}");
            }
        }
        VmExit::MmioRead { addr, data } => {
            if !buses.mmio.read(addr, data) {
                data.fill(0xff);
                log::debug!("vcpu{cpu}: read of unmapped MMIO {addr:#x}");
            }
        }
        VmExit::MmioWrite { addr, data } => {
            if !buses.mmio.write(addr, data) {
                log::debug!("vcpu{cpu}: write to unmapped MMIO {addr:#x}");
            }
        }
        VmExit::Hlt | VmExit::Interrupted | VmExit::IoapicEoi(_) => {}
        VmExit::TripleFault => return Some(Outcome::TripleFault { cpu }),
        VmExit::System(SystemEvent::Shutdown) => return Some(Outcome::PowerOff),
        VmExit::System(SystemEvent::Reset) => return Some(Outcome::Reset),
        VmExit::System(other) => {
            return Some(Outcome::Error(format!("vCPU {cpu}: guest reported {other:?}")))
        }
        VmExit::FailEntry { reason, cpu: host_cpu } => {
            return Some(Outcome::Error(format!(
                "vCPU {cpu}: hardware refused to enter the guest (reason {reason:#x}, host CPU {host_cpu})"
            )))
        }
        VmExit::InternalError => {
            return Some(Outcome::Error(format!("vCPU {cpu}: KVM internal error (emulation failure)")))
        }
        VmExit::Unhandled(name) => {
            return Some(Outcome::Error(format!("vCPU {cpu}: unexpected exit {name}")))
        }
    }
    None
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// The signal that interrupts `KVM_RUN`.
pub fn kick_signal() -> i32 {
    SIGRTMIN()
}

/// Installs the no-op handler for [`kick_signal`] (once per process).
pub fn install_kick_handler() -> std::io::Result<()> {
    register_signal_handler(kick_signal(), kick_handler)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

/// A vCPU thread's part of the machine: what it runs and what it goes back to on a reset.
pub struct VcpuSetup {
    /// The vCPU.
    pub vcpu: Box<dyn Vcpu>,
    /// Its index (and APIC ID).
    pub cpu: u32,
    /// How many vCPUs the VM has.
    pub count: usize,
    /// The state it had before its first boot, written back before every later one.
    pub power_on: hypervisor::VcpuState,
}

/// Starts the thread of one vCPU. It runs the guest until the run state says stop, then
/// waits between boots: for the next boot it restores the power-on state and runs again;
/// when the VM ends (`RunState::exit`), the thread ends.
pub fn spawn(setup: VcpuSetup, buses: Buses, state: Arc<RunState>) -> std::io::Result<JoinHandle<()>> {
    let VcpuSetup { mut vcpu, cpu, count, power_on } = setup;
    std::thread::Builder::new().name(format!("vcpu{cpu}")).spawn(move || {
        if let Err(e) = devices::sandbox::enter(devices::sandbox::ThreadRole::Vcpu) {
            state.finish(Outcome::Error(format!("vCPU {cpu}: {e}: {}", error_source(&e))));
        }
        let mut boot = 0;
        loop {
            run_until_stopped(vcpu.as_mut(), cpu, &buses, &state);
            match state.wait_next_boot(boot) {
                NextBoot::Exit => return,
                NextBoot::Run(next) => boot = next,
            }
            if let Err(e) = vcpu.set_state(&power_on) {
                state.finish(Outcome::Error(format!("vCPU {cpu}: cannot reset: {e}: {}", error_source(&e))));
            }
            state.restored(boot, count);
        }
    })
}

fn run_until_stopped(vcpu: &mut dyn Vcpu, cpu: u32, buses: &Buses, state: &RunState) {
    while !state.stopping() {
        let outcome = match vcpu.run() {
            Ok(exit) => handle_exit(exit, cpu, buses),
            Err(e) => Some(Outcome::Error(format!("vCPU {cpu}: {e}: {}", error_source(&e)))),
        };
        if let Some(o) = outcome {
            state.finish(o);
        }
        state.park_while_paused(|| {
            // Only guests with kvmclock accept it; others need nothing.
            if let Err(e) = vcpu.notify_paused() {
                log::trace!("vcpu{cpu}: {e}");
            }
        });
    }
}

fn error_source(e: &dyn std::error::Error) -> String {
    e.source().map(|s| s.to_string()).unwrap_or_default()
}

/// Interrupts the vCPU threads once (a pause request repeats it until they are parked).
pub fn kick_all(threads: &[libc::pthread_t]) {
    for &t in threads {
        // SAFETY: pthread_kill only sends a signal whose handler does nothing; the caller
        // guarantees the threads are not joined yet (vm.rs empties its list under the same
        // lock before joining them).
        unsafe { libc::pthread_kill(t, kick_signal()) };
    }
}

/// Ends the vCPU threads and joins them: kicks them out of the guest until every one is
/// between boots, then tells them to exit.
pub fn stop_all(state: &RunState, threads: Vec<JoinHandle<()>>) {
    state.finish(Outcome::Stopped);
    let pthreads: Vec<libc::pthread_t> = threads.iter().map(|t| t.as_pthread_t()).collect();
    // A kick can land just before a thread enters KVM_RUN and be missed, so keep kicking.
    while state
        .wait_idle(
            threads.iter().filter(|t| !t.is_finished()).count(),
            &|| kick_all(&pthreads),
            Duration::from_secs(1),
        )
        .is_err()
    {}
    state.exit();
    for t in threads {
        let _ = t.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::bus::BusDevice;

    struct Reg(u8);
    impl BusDevice for Reg {
        fn debug_label(&self) -> &str {
            "reg"
        }
        fn read(&mut self, _: u64, d: &mut [u8]) {
            d.fill(self.0);
        }
        fn write(&mut self, _: u64, d: &[u8]) {
            self.0 = d[0];
        }
        fn reset(&mut self) {
            self.0 = 0;
        }
    }

    fn buses() -> Buses {
        let pio = Bus::new();
        pio.insert(0x80, 1, Arc::new(Mutex::new(Reg(7)))).unwrap();
        let mmio = Bus::new();
        mmio.insert(0xd000_0000, 0x1000, Arc::new(Mutex::new(Reg(9)))).unwrap();
        Buses { pio, mmio }
    }

    #[test]
    fn io_exits_reach_devices_and_unmapped_reads_float_high() {
        let b = buses();
        let mut d = [0u8; 1];
        assert_eq!(handle_exit(VmExit::PioIn { port: 0x80, data: &mut d }, 0, &b), None);
        assert_eq!(d[0], 7);
        assert_eq!(handle_exit(VmExit::PioOut { port: 0x80, data: &[3] }, 0, &b), None);
        handle_exit(VmExit::PioIn { port: 0x80, data: &mut d }, 0, &b);
        assert_eq!(d[0], 3);
        let mut w = [0u8; 4];
        handle_exit(VmExit::PioIn { port: 0xcfc, data: &mut w }, 0, &b);
        assert_eq!(w, [0xff; 4]);
        handle_exit(VmExit::MmioRead { addr: 0xd000_0010, data: &mut w }, 0, &b);
        assert_eq!(w, [9; 4]);
        handle_exit(VmExit::MmioRead { addr: 0xe000_0000, data: &mut w }, 0, &b);
        assert_eq!(w, [0xff; 4]);
        assert_eq!(handle_exit(VmExit::MmioWrite { addr: 0, data: &[1] }, 0, &b), None);
    }

    #[test]
    fn stop_exits_map_to_outcomes() {
        let b = buses();
        assert_eq!(handle_exit(VmExit::TripleFault, 2, &b), Some(Outcome::TripleFault { cpu: 2 }));
        assert_eq!(handle_exit(VmExit::System(SystemEvent::Reset), 0, &b), Some(Outcome::Reset));
        assert_eq!(handle_exit(VmExit::System(SystemEvent::Shutdown), 0, &b), Some(Outcome::PowerOff));
        assert!(matches!(handle_exit(VmExit::InternalError, 0, &b), Some(Outcome::Error(_))));
        assert!(matches!(
            handle_exit(VmExit::FailEntry { reason: 1, cpu: 0 }, 0, &b),
            Some(Outcome::Error(_))
        ));
        assert_eq!(handle_exit(VmExit::Hlt, 0, &b), None);
        assert_eq!(handle_exit(VmExit::Interrupted, 0, &b), None);
    }

    #[test]
    fn pause_waits_for_every_vcpu_and_stop_releases_them() {
        let s = Arc::new(RunState::default());
        let kicks = std::sync::atomic::AtomicUsize::new(0);
        // Nobody parks: the pause times out and is withdrawn.
        let err = s.pause(1, &|| _ = kicks.fetch_add(1, Ordering::SeqCst), Duration::from_millis(20));
        assert!(err.unwrap_err().contains("did not stop"));
        assert!(kicks.load(Ordering::SeqCst) > 1);
        let mut ran = false;
        s.park_while_paused(|| ran = true);
        assert!(!ran, "no pause is requested any more");

        // Two "vCPU threads" that park when asked; the pause returns once both are parked.
        let parked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let runs: Arc<[std::sync::atomic::AtomicUsize; 2]> = Arc::new(Default::default());
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let (s, parked, runs) = (s.clone(), parked.clone(), runs.clone());
                std::thread::spawn(move || {
                    while !s.stopping() {
                        s.park_while_paused(|| _ = parked.fetch_add(1, Ordering::SeqCst));
                        runs[i].fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        let total = || runs.iter().map(|r| r.load(Ordering::SeqCst)).collect::<Vec<_>>();
        s.pause(2, &|| {}, Duration::from_secs(10)).unwrap();
        assert_eq!(parked.load(Ordering::SeqCst), 2);
        let before = total();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(total(), before, "parked threads do not run");
        s.resume();
        // Both threads leave the pause (a thread still asleep when the next pause comes stays
        // parked, which is right, but would not call on_park again).
        while total().iter().zip(&before).any(|(now, was)| now <= was) {
            std::thread::sleep(Duration::from_millis(1));
        }
        s.pause(2, &|| {}, Duration::from_secs(10)).unwrap();
        assert_eq!(parked.load(Ordering::SeqCst), 4);
        // Stopping a paused VM ends the parked threads.
        s.finish(Outcome::Stopped);
        for t in threads {
            t.join().unwrap();
        }
        assert!(s.pause(2, &|| {}, Duration::from_millis(10)).is_err());
    }

    #[test]
    fn first_outcome_wins() {
        let s = RunState::default();
        assert_eq!(s.outcome(), None);
        s.finish(Outcome::PowerOff);
        s.finish(Outcome::Reset);
        assert!(s.stopping());
        assert_eq!(s.outcome(), Some(Outcome::PowerOff));
    }
}
