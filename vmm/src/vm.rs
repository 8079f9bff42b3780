// SPDX-License-Identifier: Apache-2.0
//! The virtual machine: guest memory, the in-kernel interrupt controllers and timer, the
//! devices and the vCPU threads, built once and kept for the life of the process.
//!
//! A guest reset resets them in place, as the RESET# line of a PC does: every device goes
//! back to its power-on registers (keeping its open images, taps and threads), the in-kernel
//! PICs, IOAPIC and PIT get the state they had at power-on, each vCPU thread writes back the
//! state its vCPU had before its first instruction, the BIOS copy in shadow RAM is refreshed
//! (the direct machine loads its kernel and tables again), and the same threads run the next
//! boot. Guest RAM is not cleared, as on a PC. The machine itself is built in [`crate::pc`]
//! (SeaBIOS) or [`crate::direct`] (kernel boot).

use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arch::x86_64::{acpi, boot, cpuid, layout, msr, regs};
use hypervisor::{PlatformState, Vm};
use vm_memory::GuestMemoryMmap;

use crate::board::{Error, Machine};
use crate::event_loop::EventLoop;
use crate::hooks::{self, VcpuThreads};
use crate::pc_config::MachineKind;
use crate::registry::DeviceRegistry;
use crate::vcpu::{self, Buses, Outcome, RunState, VcpuSetup};
use crate::{direct, pc};

/// Creates and sets up the vCPUs (the boot processor at the kernel entry for a direct boot,
/// at the reset vector otherwise) and reads the state each will get back on a reset.
fn create_vcpus(
    vm: &dyn Vm,
    mem: &GuestMemoryMmap,
    m: &Machine<'_>,
    entry: Option<boot::KernelEntry>,
) -> Result<Vec<VcpuSetup>, Error> {
    let count = m.config.cpus;
    let msrs = msr::boot_msrs(m.msr_list);
    let mut reset_msrs: Option<Vec<u32>> = None;
    let mut vcpus = Vec::with_capacity(count as usize);
    for id in 0..count {
        let v = vm.create_vcpu(id)?;
        v.set_cpuid(&cpuid::vcpu_cpuid(m.supported_cpuid, id, count))?;
        v.set_msrs(&msrs)?;
        v.set_fpu(&regs::reset_fpu())?;
        v.set_lapic(&regs::wire_lint(v.lapic()?))?;
        // Without a kernel entry the vCPU keeps its reset state: the BIOS runs from 0xFFFFFFF0.
        if let (0, Some(entry)) = (id, entry) {
            let tables = |e: regs::Error| Error::Tables(e.to_string());
            let (sregs, gprs) = match entry.mode {
                boot::EntryMode::Long64 => {
                    (regs::setup_long_mode(mem, v.sregs()?).map_err(tables)?, regs::entry_regs(entry.entry))
                }
                boot::EntryMode::Pvh32 { start_info } => (
                    regs::setup_protected_mode(mem, v.sregs()?).map_err(tables)?,
                    regs::pvh_entry_regs(entry.entry, start_info),
                ),
            };
            v.set_sregs(&sregs)?;
            v.set_regs(&gprs)?;
        }
        let indices = match &reset_msrs {
            Some(i) => i,
            None => reset_msrs.insert(readable_msrs(v.as_ref(), msr::reset_msr_candidates(m.msr_list))),
        };
        let power_on = v.state(indices)?;
        vcpus.push(VcpuSetup { vcpu: v, cpu: id, count: count as usize, power_on });
    }
    Ok(vcpus)
}

/// The MSRs of `wanted` the vCPU can read (KVM lists some it cannot read without the
/// matching CPUID bit, such as TSC_DEADLINE).
fn readable_msrs(v: &dyn hypervisor::Vcpu, mut wanted: Vec<u32>) -> Vec<u32> {
    // Each round drops one MSR; KVM names the first one it could not read.
    for _ in 0..=wanted.len() {
        match v.get_msrs(&wanted) {
            Err(hypervisor::Error::UnreadableMsr(index)) => wanted.retain(|&i| i != index),
            Err(e) => {
                log::warn!("cannot read the MSRs a reset restores ({e}); resets keep their values");
                return Vec::new();
            }
            Ok(_) => break,
        }
    }
    log::debug!("MSRs restored on reset: {wanted:#x?}");
    wanted
}

/// How long a boot may take to get every vCPU out of the guest once it ended; after that
/// the kicks go on, with a warning.
const IDLE_WARNING: Duration = Duration::from_secs(5);

/// The machine, across every boot of the guest.
pub struct VirtualMachine<'m> {
    m: &'m Machine<'m>,
    /// The vCPU threads, for the life of the VM.
    threads: Vec<JoinHandle<()>>,
    /// Their pthread ids, for kicks and pause (emptied, under its lock, before they are joined).
    running: VcpuThreads,
    state: Arc<RunState>,
    buses: Buses,
    /// Device work that does not block: run by the main thread while the guest runs.
    events: EventLoop,
    vga: Option<Arc<Mutex<devices::display::vga::StdVga>>>,
    layout: layout::MemoryLayout,
    /// The direct machine's PCI bus as its tables describe it (`None` without PCI or on pc).
    direct_pci: Option<acpi::PciHostBridge>,
    /// The in-kernel chips as created: what a reset writes back.
    platform_power_on: PlatformState,
    vm: Arc<dyn Vm>,
    /// The BIOS of the pc machine; mapped into the VM, so dropped after it.
    firmware: Option<pc::firmware::Firmware>,
    /// Guest RAM; mapped into the VM, so dropped last.
    mem: GuestMemoryMmap,
}

impl<'m> VirtualMachine<'m> {
    /// Builds the machine of `m.config` and starts its vCPUs on the first boot.
    pub fn start(m: &'m Machine<'m>) -> Result<Self, Error> {
        let layout = layout::MemoryLayout::new(m.config.memory);
        let pc = m.config.machine == MachineKind::Pc;
        let mem = crate::memory::allocate(&layout)?;
        let firmware = if pc { Some(pc::firmware::Firmware::load(&m.config.firmware)?) } else { None };
        let vm: Arc<dyn Vm> = Arc::from(m.hypervisor.create_vm()?);
        vm.create_pc_platform(layout::KVM_TSS_ADDR, layout::KVM_IDENTITY_MAP_ADDR)?;
        let platform_power_on = vm.platform_state()?;
        let state = Arc::new(RunState::default());
        let mut registry = DeviceRegistry::new();
        let (buses, pm, keyboard, vga, subscribers, direct_pci, entry) = match &firmware {
            None => {
                direct::map_memory(vm.as_ref(), &mem)?;
                let devs = direct::create_devices(&vm, m, &mem, &layout, &state, &mut registry)?;
                let entry = direct::load_guest(&mem, m, &layout, devs.pci.as_ref());
                (devs.buses, devs.acpi_pm, devs.keyboard, None, Vec::new(), devs.pci, Some(entry))
            }
            Some(fw) => {
                let devs = pc::create_machine(&vm, &mem, fw, m, &layout, &state, &mut registry)?;
                (devs.buses, devs.acpi_pm, devs.keyboard, devs.vga, devs.event_subscribers, None, None)
            }
        };
        let mut events = EventLoop::new().map_err(|e| Error::Devices(format!("event loop: {e}")))?;
        for subscriber in subscribers {
            events.add(subscriber);
        }
        let wakeup = events.wakeup().map_err(|e| Error::Devices(format!("event loop: {e}")))?;
        state.set_outcome_notifier(wakeup);
        let mut machine = VirtualMachine {
            m,
            threads: Vec::new(),
            running: Arc::new(Mutex::new(Vec::new())),
            state,
            buses,
            events,
            vga,
            layout,
            direct_pci,
            platform_power_on,
            vm,
            firmware,
            mem,
        };
        // From here on, `Drop` takes the machine apart on every path.
        let entry = entry.transpose()?;
        if let Some(vga) = &machine.vga {
            m.console.attach(vga.clone(), keyboard.clone());
        }
        m.control.set_devices(registry.list());
        m.control.stats().set_machine(m.config.memory, machine.running.clone(), registry.take_counters());
        hooks::install_control_hooks(
            m,
            &pm,
            &keyboard,
            machine.vga.as_ref(),
            &machine.state,
            &machine.running,
        );
        let vcpus = create_vcpus(machine.vm.as_ref(), &machine.mem, m, entry)?;
        for setup in vcpus {
            let cpu = setup.cpu;
            match vcpu::spawn(setup, machine.buses.clone(), machine.state.clone()) {
                Ok(t) => {
                    devices::bus::lock(&machine.running).push(t.as_pthread_t());
                    machine.threads.push(t);
                }
                Err(e) => {
                    machine
                        .state
                        .finish(Outcome::Error(format!("cannot start the thread of vCPU {cpu}: {e}")));
                    break;
                }
            }
        }
        m.control.boot_started();
        Ok(machine)
    }

    /// Waits until the current boot ends (the guest powers off, resets or faults, or a stop
    /// is requested) and every vCPU is out of the guest; meanwhile serves screen dumps.
    pub fn wait_boot_end(&mut self) -> Outcome {
        let outcome = loop {
            if let Some(o) = self.state.outcome() {
                break o;
            }
            // Device work, until the boot ends (which wakes the loop) or 100 ms pass (for
            // the signal flags below).
            self.events.run(100);
            if self.m.stop_requested.load(Ordering::SeqCst) {
                self.state.finish(Outcome::Stopped);
            }
            if self.m.dump_requested.swap(false, Ordering::SeqCst) {
                hooks::dump_screen(self.vga.as_ref(), self.m.config.screen_dump.as_deref());
            }
        };
        let threads = devices::bus::lock(&self.running).clone();
        let live = self.threads.iter().filter(|t| !t.is_finished()).count();
        let kick = || vcpu::kick_all(&threads);
        if let Err(e) = self.state.wait_idle(live, &kick, IDLE_WARNING) {
            log::warn!("{e}; still waiting");
            while self.state.wait_idle(live, &kick, IDLE_WARNING).is_err() {}
        }
        outcome
    }

    /// Resets the machine in place and starts the next boot (call after
    /// [`VirtualMachine::wait_boot_end`]).
    pub fn reset_and_boot(&mut self) -> Result<(), Error> {
        self.buses.pio.reset_devices();
        self.buses.mmio.reset_devices();
        self.vm.set_platform_state(&self.platform_power_on)?;
        match &self.firmware {
            Some(fw) => fw.copy_shadow(&self.mem)?,
            None => {
                // The entry point is the same as at the first boot: the vCPUs' saved state has it.
                direct::load_guest(&self.mem, self.m, &self.layout, self.direct_pci.as_ref())?;
            }
        }
        // A pause requested before the reset does not hold the next boot.
        self.state.resume();
        self.m.control.boot_started();
        self.state.next_boot();
        Ok(())
    }
}

impl Drop for VirtualMachine<'_> {
    fn drop(&mut self) {
        self.m.control.clear_hooks();
        self.m.control.stats().clear_machine();
        self.m.console.detach();
        devices::bus::lock(&self.running).clear();
        vcpu::stop_all(&self.state, std::mem::take(&mut self.threads));
        // Devices that hold their own bus (the PCI configuration port, to map BARs) keep the
        // whole machine alive otherwise, open disk images and their locks included.
        self.buses.pio.clear();
        self.buses.mmio.clear();
        // The UART holds the VM through its interrupt line: detach it so the VM goes now.
        self.m.serial.detach();
    }
}
