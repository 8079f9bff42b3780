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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arch::x86_64::{acpi, boot, cpuid, layout, msr, regs};
use devices::bus::Bus;
use devices::irq::IrqLine;
use devices::legacy::cmos_rtc::{CmosRtc, CMOS_BASE, CMOS_IRQ, CMOS_LEN};
use devices::legacy::i8042::{I8042, I8042_BASE, I8042_LEN};
use devices::legacy::port80::Port80;
use devices::legacy::uart16550::{Uart16550, COM1_BASE, COM1_IRQ, UART_LEN};
use devices::legacy::{PlatformControl, PlatformRequest};
use devices::net::io_thread::NetIoThread;
use hypervisor::{CpuidEntry, Hypervisor, PlatformState, Vm};
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use crate::config::VmConfig;
use crate::hooks::{self, VcpuThreads};
use crate::pc_config::MachineKind;
use crate::serial::SerialBackend;
use crate::vcpu::{self, Buses, Outcome, RunState, VcpuSetup};
use crate::{direct, pc};

/// Errors while building the VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A hypervisor call failed.
    #[error("hypervisor")]
    Hypervisor(#[from] hypervisor::Error),
    /// Guest memory could not be allocated.
    #[error("cannot allocate {0} MiB of guest memory")]
    Memory(u64),
    /// The kernel or initramfs could not be loaded (a user-input problem).
    #[error("cannot load the kernel")]
    Boot(#[from] boot::Error),
    /// The kernel cannot boot through the BIOS (a user-input problem).
    #[error("cannot boot the kernel through the BIOS: {}", .0.field())]
    LinuxBoot(#[from] pc::linuxboot::LinuxBootError),
    /// A file could not be opened.
    #[error("cannot open {0}")]
    Open(String, #[source] std::io::Error),
    /// Firmware tables could not be written.
    #[error("cannot write firmware tables: {0}")]
    Tables(String),
    /// A disk image could not be opened (a user-input problem).
    #[error("cannot open disk image {0}")]
    Disk(String, #[source] block::Error),
    /// A NIC's host side could not be opened (a user-input or permission problem).
    #[error("cannot open tap interface {0}: {1}")]
    Nic(String, String),
    /// Devices could not be set up.
    #[error("cannot set up devices: {0}")]
    Devices(String),
}

/// What one boot needs that outlives it.
pub struct Machine<'a> {
    /// The backend.
    pub hypervisor: &'a dyn Hypervisor,
    /// CPUID leaves the backend supports.
    pub supported_cpuid: &'a [CpuidEntry],
    /// MSRs the backend supports.
    pub msr_list: &'a [u32],
    /// The validated configuration.
    pub config: &'a VmConfig,
    /// The serial backend.
    pub serial: &'a SerialBackend,
    /// Set by signal handlers or the console escape to stop the VM.
    pub stop_requested: &'a AtomicBool,
    /// Set by SIGUSR1: write the screen to the `--screen-dump` files.
    pub dump_requested: &'a AtomicBool,
    /// The control socket's state: each boot installs its power button and screen dump.
    pub control: &'a crate::control::Control,
    /// The VNC server's view of the machine: each boot attaches its VGA and keyboard.
    pub console: &'a crate::vnc::ConsoleHub,
}

/// An interrupt line of the in-kernel irqchip: edges through an irqfd, levels through
/// `KVM_IRQ_LINE`.
pub(crate) struct KvmIrq {
    vm: Arc<dyn Vm>,
    gsi: u32,
    edge: Option<EventFd>,
}

impl KvmIrq {
    /// A line that can pulse (through an irqfd) and be held at a level.
    pub(crate) fn new(vm: Arc<dyn Vm>, gsi: u32) -> Result<Self, Error> {
        let edge = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| Error::Devices(format!("eventfd: {e}")))?;
        vm.register_irqfd(&edge, gsi)?;
        Ok(KvmIrq { vm, gsi, edge: Some(edge) })
    }

    /// A line driven by levels only (shared PCI interrupts); a pulse is a high-low pair.
    pub(crate) fn level(vm: Arc<dyn Vm>, gsi: u32) -> Self {
        KvmIrq { vm, gsi, edge: None }
    }
}

impl IrqLine for KvmIrq {
    fn pulse(&self) {
        match &self.edge {
            Some(edge) => {
                if let Err(e) = edge.write(1) {
                    log::warn!("irq {}: {e}", self.gsi);
                }
            }
            None => {
                self.set_level(true);
                self.set_level(false);
            }
        }
    }

    fn set_level(&self, high: bool) {
        if let Err(e) = self.vm.set_irq_line(self.gsi, high) {
            log::warn!("irq {}: {e}", self.gsi);
        }
    }
}

pub(crate) struct Platform(pub(crate) Arc<RunState>);

impl PlatformControl for Platform {
    fn request(&self, request: PlatformRequest) {
        self.0.finish(match request {
            PlatformRequest::PowerOff => Outcome::PowerOff,
            PlatformRequest::Reset => Outcome::Reset,
        });
    }
}

fn allocate_memory(layout: &layout::MemoryLayout) -> Result<GuestMemoryMmap, Error> {
    let ranges: Vec<(GuestAddress, usize)> =
        layout.ram_ranges().iter().map(|&(start, len)| (GuestAddress(start), len as usize)).collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(|_| Error::Memory(layout.ram_size >> 20))
}

/// Maps a bus error to a device set-up error.
pub(crate) fn bus_err(e: devices::bus::Error) -> Error {
    Error::Devices(e.to_string())
}

/// The legacy devices the machines keep a handle on.
pub(crate) struct LegacyDevices {
    /// The CMOS RTC (the PC machine fills in its boot-order bytes).
    pub(crate) cmos: Arc<Mutex<CmosRtc>>,
    /// The PS/2 controller (keys typed through the control socket).
    pub(crate) keyboard: Arc<Mutex<I8042>>,
}

/// The devices every machine has: COM1, the i8042 with keyboard and mouse, the CMOS RTC and
/// port 0x80.
pub(crate) fn create_legacy_devices(
    vm: &Arc<dyn Vm>,
    m: &Machine<'_>,
    layout: &layout::MemoryLayout,
    platform: &Arc<dyn PlatformControl>,
    pio: &Bus,
) -> Result<LegacyDevices, Error> {
    let com1_irq: Arc<dyn IrqLine> = Arc::new(KvmIrq::new(vm.clone(), COM1_IRQ)?);
    let out = m.serial.writer().map_err(|e| Error::Devices(format!("serial output: {e}")))?;
    let uart = Arc::new(Mutex::new(Uart16550::new(com1_irq, out)));
    m.serial.attach(uart.clone());
    let dev = bus_err;
    pio.insert(u64::from(COM1_BASE), u64::from(UART_LEN), uart).map_err(dev)?;
    let i8042 = Arc::new(Mutex::new(I8042::new(
        platform.clone(),
        Arc::new(KvmIrq::new(vm.clone(), 1)?),
        Arc::new(KvmIrq::new(vm.clone(), 12)?),
    )));
    pio.insert(u64::from(I8042_BASE), u64::from(I8042_LEN), i8042.clone()).map_err(dev)?;
    // ISA IRQ 8 is an edge at the in-kernel PIC and IOAPIC: the RTC pulses it through an irqfd.
    let mut cmos = CmosRtc::with_irq(Arc::new(KvmIrq::new(vm.clone(), CMOS_IRQ)?));
    cmos.set_memory_fields(layout.low_ram_size(), layout.high_ram_size(), m.config.cpus.min(255) as u8);
    let cmos = Arc::new(Mutex::new(cmos));
    pio.insert(u64::from(CMOS_BASE), u64::from(CMOS_LEN), cmos.clone()).map_err(dev)?;
    pio.insert(0x80, 1, Arc::new(Mutex::new(Port80::default()))).map_err(dev)?;
    Ok(LegacyDevices { cmos, keyboard: i8042 })
}

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
    /// Receive threads of the e1000 NICs.
    net_threads: Vec<NetIoThread>,
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
        let mem = allocate_memory(&layout)?;
        let firmware = if pc { Some(pc::firmware::Firmware::load(&m.config.firmware)?) } else { None };
        let vm: Arc<dyn Vm> = Arc::from(m.hypervisor.create_vm()?);
        vm.create_pc_platform(layout::KVM_TSS_ADDR, layout::KVM_IDENTITY_MAP_ADDR)?;
        let platform_power_on = vm.platform_state()?;
        let state = Arc::new(RunState::default());
        let (buses, pm, keyboard, vga, net_threads, direct_pci, entry) = match &firmware {
            None => {
                direct::map_memory(vm.as_ref(), &mem)?;
                let devs = direct::create_devices(&vm, m, &mem, &layout, &state)?;
                let entry = direct::load_guest(&mem, m, &layout, devs.pci.as_ref());
                (devs.buses, devs.acpi_pm, devs.keyboard, None, Vec::new(), devs.pci, Some(entry))
            }
            Some(fw) => {
                let devs = pc::create_machine(&vm, &mem, fw, m, &layout, &state)?;
                (devs.buses, devs.acpi_pm, devs.keyboard, devs.vga, devs.net_threads, None, None)
            }
        };
        let mut machine = VirtualMachine {
            m,
            threads: Vec::new(),
            running: Arc::new(Mutex::new(Vec::new())),
            state,
            buses,
            net_threads,
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
            if let Some(o) = self.state.wait(Duration::from_millis(100)) {
                break o;
            }
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
        self.m.console.detach();
        devices::bus::lock(&self.running).clear();
        vcpu::stop_all(&self.state, std::mem::take(&mut self.threads));
        for t in self.net_threads.drain(..) {
            t.stop();
        }
        // Devices that hold their own bus (the PCI configuration port, to map BARs) keep the
        // whole machine alive otherwise, open disk images and their locks included.
        self.buses.pio.clear();
        self.buses.mmio.clear();
        // The UART holds the VM through its interrupt line: detach it so the VM goes now.
        self.m.serial.detach();
    }
}
