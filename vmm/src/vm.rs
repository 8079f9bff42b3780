// SPDX-License-Identifier: Apache-2.0
//! One boot of the VM: guest memory, interrupt controllers, devices, firmware tables, the
//! kernel, and the vCPU threads; torn down completely when the boot ends (a reset builds it
//! all again, as a power cycle would).
//!
//! The direct machine gets a PCI bus when it has virtio disks: the i440FX host bridge at
//! 00:00.0 (Linux looks for a host bridge before it trusts configuration mechanism #1) and a
//! virtio-blk function per disk from slot 1 on, their BARs placed by the VMM (there is no
//! firmware to do it) in the windows the DSDT describes, INTA# of slot `s` on IOAPIC input
//! 16 + s mod 8 (`acpi::pci_intx_gsi`).

use std::fs::File;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arch::x86_64::{acpi, boot, cpuid, layout, mptable, msr, regs};
use devices::bus::Bus;
use devices::irq::IrqLine;
use devices::legacy::acpi_pm::{self, AcpiPm};
use devices::legacy::cmos_rtc::{CmosRtc, CMOS_BASE, CMOS_IRQ, CMOS_LEN};
use devices::legacy::i8042::{I8042, I8042_BASE, I8042_LEN};
use devices::legacy::port80::Port80;
use devices::legacy::uart16550::{Uart16550, COM1_BASE, COM1_IRQ, UART_LEN};
use devices::legacy::{PlatformControl, PlatformRequest};
use devices::pci::bar_alloc::{BarAllocator, PciWindows};
use devices::pci::bar_map::BarMapper;
use devices::pci::config_io::{CONFIG_IO_BASE, CONFIG_IO_LEN};
use devices::pci::i440fx::I440fx;
use devices::pci::{PciConfigIo, PciConfigListener, PciRoot, SharedPciDevice};
use hypervisor::{CpuidEntry, Hypervisor, Vm};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::config::VmConfig;
use crate::interrupts::{GsiRouting, KvmIoEvents, SharedLevelLines};
use crate::pc;
use crate::pc_config::{DiskBus, MachineKind};
use crate::serial::SerialBackend;
use crate::vcpu::{self, Buses, Outcome, RunState};

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

fn map_memory(vm: &dyn Vm, mem: &GuestMemoryMmap) -> Result<(), Error> {
    for (slot, region) in mem.iter().enumerate() {
        let host = region.as_ptr() as u64;
        // SAFETY: the mapping belongs to `mem`, which `run_boot` declares before the VM, so on
        // every path the VM (and every vCPU and device holding it) is dropped first.
        unsafe { vm.map_memory(slot as u32, region.start_addr().0, region.len(), host, false)? };
    }
    Ok(())
}

fn pm_ports() -> acpi::PmIoPorts {
    acpi::PmIoPorts {
        pm1a_evt: acpi_pm::PM1A_EVT,
        pm1a_cnt: acpi_pm::PM1A_CNT,
        pm_tmr: acpi_pm::PM_TMR,
        sci_irq: acpi_pm::SCI_IRQ as u8,
        s5_sleep_type: acpi_pm::S5_SLEEP_TYPE,
    }
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

/// What `create_devices` builds for the direct machine.
struct DirectDevices {
    buses: Buses,
    acpi_pm: Arc<Mutex<AcpiPm>>,
    keyboard: Arc<Mutex<I8042>>,
    /// The PCI bus for the ACPI tables, if the machine has one.
    pci: Option<acpi::PciHostBridge>,
}

/// I/O ports BARs may take on the direct machine (below are the legacy devices).
const PCI_IO_WINDOW: std::ops::Range<u64> = 0x1000..0x1_0000;
/// Size of the window above RAM for 64-bit BARs that do not fit below 4 GiB.
const PCI_MEM64_SIZE: u64 = 64 << 30;

/// The direct machine's BAR windows: I/O from 0x1000, memory from the PCI hole up to the
/// IOAPIC, and 64-bit memory from the first GiB boundary above RAM (and 4 GiB).
fn direct_pci_windows(layout: &layout::MemoryLayout) -> PciWindows {
    let high = layout.ram_end().max(layout::RAM_ABOVE_4G_START).next_multiple_of(1 << 30);
    PciWindows {
        io: PCI_IO_WINDOW,
        mem32: layout::PCI_HOLE_START..layout::IOAPIC_ADDR,
        mem64: Some(high..high + PCI_MEM64_SIZE),
    }
}

/// Moves BARs on the buses when the guest reprograms them.
struct BarListener(BarMapper);

impl PciConfigListener for BarListener {
    fn config_written(&mut self, slot: (u8, u8), _reg: usize, dev: &SharedPciDevice) {
        self.0.update(slot, dev);
    }
}

/// The direct machine's PCI bus, if it has virtio disks: devices, BARs assigned and mapped,
/// the configuration ports at 0xCF8. Returns what the DSDT describes.
fn create_direct_pci(
    vm: &Arc<dyn Vm>,
    m: &Machine<'_>,
    mem: &GuestMemoryMmap,
    layout: &layout::MemoryLayout,
    platform: &Arc<dyn PlatformControl>,
    buses: &Buses,
) -> Result<Option<acpi::PciHostBridge>, Error> {
    if !m.config.disks.iter().any(|d| d.bus == DiskBus::Virtio) {
        return Ok(None);
    }
    let mut root = PciRoot::new();
    root.add(0, 0, Arc::new(Mutex::new(I440fx::new())));
    let inputs = (0..acpi::PCI_INTX_GSIS)
        .map(|i| Arc::new(KvmIrq::level(vm.clone(), acpi::PCI_INTX_FIRST_GSI + i)) as Arc<dyn IrqLine>)
        .collect();
    let intx = SharedLevelLines::new(inputs);
    let inta = |slot: u8| {
        let input = acpi::pci_intx_gsi(slot, 0) - acpi::PCI_INTX_FIRST_GSI;
        intx.source(input as usize)
            .ok_or_else(|| Error::Devices(format!("no interrupt input for slot {slot}")))
    };
    let interrupts = GsiRouting::new(vm.clone());
    pc::virtio::attach_virtio_disks(&mut root, &m.config.disks, mem, &interrupts, 1, &inta)?;

    let windows = direct_pci_windows(layout);
    let mut allocator = BarAllocator::new(&windows);
    let placed = allocator.assign_bus(&root).map_err(|e| Error::Devices(e.to_string()))?;
    for a in &placed {
        log::debug!("pci 00:{:02x}.{} BAR {}: {:#x} + {:#x}", a.slot.0, a.slot.1, a.index, a.address, a.size);
    }
    let mut bars = BarMapper::new(buses.pio.clone(), buses.mmio.clone(), None);
    bars.set_ioevents(Arc::new(KvmIoEvents(vm.clone())));
    for (slot, dev) in root.devices() {
        bars.update(slot, dev);
    }
    let mut config_io = PciConfigIo::new(root);
    config_io.set_listener(Box::new(BarListener(bars)));
    config_io.set_reset_control(platform.clone());
    buses
        .pio
        .insert(u64::from(CONFIG_IO_BASE), u64::from(CONFIG_IO_LEN), Arc::new(Mutex::new(config_io)))
        .map_err(bus_err)?;
    // The windows fit their descriptors: the I/O window is below 64 KiB and the 32-bit one
    // below the IOAPIC.
    let (io, mem32) = (&windows.io, &windows.mem32);
    Ok(Some(acpi::PciHostBridge {
        io: io.start as u16..=(io.end - 1) as u16,
        mem32: mem32.start as u32..=(mem32.end - 1) as u32,
        mem64: windows.mem64.filter(|_| allocator.used_mem64()).map(|w| w.start..=w.end - 1),
    }))
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

fn create_devices(
    vm: &Arc<dyn Vm>,
    m: &Machine<'_>,
    mem: &GuestMemoryMmap,
    layout: &layout::MemoryLayout,
    state: &Arc<RunState>,
) -> Result<DirectDevices, Error> {
    let platform: Arc<dyn PlatformControl> = Arc::new(Platform(state.clone()));
    let sci: Arc<dyn IrqLine> = Arc::new(KvmIrq::new(vm.clone(), acpi_pm::SCI_IRQ)?);
    let buses = Buses { pio: Bus::new(), mmio: Bus::new() };
    let keyboard = create_legacy_devices(vm, m, layout, &platform, &buses.pio)?.keyboard;
    let pci = create_direct_pci(vm, m, mem, layout, &platform, &buses)?;
    let pm = Arc::new(Mutex::new(AcpiPm::new(sci, platform)));
    buses.pio.insert(u64::from(acpi_pm::PM_BASE), u64::from(acpi_pm::PM_LEN), pm.clone()).map_err(bus_err)?;
    Ok(DirectDevices { buses, acpi_pm: pm, keyboard, pci })
}

fn load_guest(
    mem: &GuestMemoryMmap,
    m: &Machine<'_>,
    layout: &layout::MemoryLayout,
    pci: Option<&acpi::PciHostBridge>,
) -> Result<boot::KernelEntry, Error> {
    let cfg = m.config;
    let rsdp =
        acpi::write_acpi_tables(mem, cfg.cpus, &pm_ports(), pci).map_err(|e| Error::Tables(e.to_string()))?;
    mptable::write_mptable(mem, cfg.cpus).map_err(|e| Error::Tables(e.to_string()))?;
    let open = |p: &std::path::Path| File::open(p).map_err(|e| Error::Open(p.display().to_string(), e));
    let kernel_path =
        cfg.kernel.as_deref().ok_or_else(|| Error::Devices("direct boot without a kernel".into()))?;
    let mut kernel = open(kernel_path)?;
    let mut initramfs = cfg.initramfs.as_deref().map(open).transpose()?;
    Ok(boot::load_linux(mem, layout, &mut kernel, initramfs.as_mut(), &cfg.cmdline, rsdp)?)
}

fn create_vcpus(
    vm: &dyn Vm,
    mem: &GuestMemoryMmap,
    m: &Machine<'_>,
    entry: Option<boot::KernelEntry>,
) -> Result<Vec<Box<dyn hypervisor::Vcpu>>, Error> {
    let count = m.config.cpus;
    let msrs = msr::boot_msrs(m.msr_list);
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
        vcpus.push(v);
    }
    Ok(vcpus)
}

/// pthread ids of a boot's vCPU threads.
type VcpuThreads = Arc<Mutex<Vec<libc::pthread_t>>>;

/// How long `pause` waits for every vCPU to leave the guest.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Gives the control socket this boot's power button, pause/resume and screen.
fn install_control_hooks(
    m: &Machine<'_>,
    pm: &Arc<Mutex<AcpiPm>>,
    keyboard: &Arc<Mutex<I8042>>,
    vga: Option<&Arc<Mutex<devices::display::vga::StdVga>>>,
    state: &Arc<RunState>,
    running: &VcpuThreads,
) {
    let (st, threads) = (state.clone(), running.clone());
    let pause: crate::control::Hook = Arc::new(move || {
        let threads = devices::bus::lock(&threads);
        st.pause(threads.len(), &|| vcpu::kick_all(&threads), PAUSE_TIMEOUT)
    });
    let st = state.clone();
    let resume: crate::control::Hook = Arc::new(move || {
        st.resume();
        Ok(())
    });
    let kbd = keyboard.clone();
    let sendkey: crate::control::SendkeyHook = Arc::new(move |text: &str| type_text(&kbd, text));
    let pm = pm.clone();
    let power_button: crate::control::Hook = Arc::new(move || {
        devices::bus::lock(&pm).press_power_button();
        Ok(())
    });
    let screendump = vga.map(|vga| {
        let vga = vga.clone();
        let hook: crate::control::ScreendumpHook = Arc::new(move |path: &std::path::Path| {
            let prefix = path.with_extension("");
            dump_screen(Some(&vga), Some(&prefix));
            Ok(())
        });
        hook
    });
    m.control.set_hooks(crate::control::ControlHooks {
        power_button: Some(power_button),
        pause: Some(pause),
        resume: Some(resume),
        screendump,
        sendkey: Some(sendkey),
    });
}

/// Types `text` on the PS/2 keyboard, one key at a time with a pause after each, so that
/// the guest (often a BIOS or boot loader polling the controller) can drain its buffer.
fn type_text(kbd: &Arc<Mutex<I8042>>, text: &str) -> Result<(), String> {
    use devices::legacy::i8042::keymap::{key_for_char, LEFT_SHIFT};
    use devices::legacy::i8042::Key;
    if let Some(c) = text.chars().find(|c| key_for_char(*c).is_none()) {
        return Err(format!("no key types {c:?} on a US keyboard"));
    }
    if text.chars().count() > 4096 {
        return Err("at most 4096 characters per request".into());
    }
    for c in text.chars() {
        let Some((key, shift)) = key_for_char(c) else { continue };
        for (k, pressed) in [(shift.then_some(Key::Plain(LEFT_SHIFT)), true), (Some(key), true)] {
            if let Some(k) = k {
                devices::bus::lock(kbd).key_event(k, pressed);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        devices::bus::lock(kbd).key_event(key, false);
        if shift {
            devices::bus::lock(kbd).key_event(Key::Plain(LEFT_SHIFT), false);
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    Ok(())
}

/// Writes the text screen to `PREFIX.txt` and the picture to `PREFIX.png`, each through a
/// temporary file and a rename so a reader never sees half a file.
fn dump_screen(vga: Option<&Arc<Mutex<devices::display::vga::StdVga>>>, prefix: Option<&std::path::Path>) {
    let (Some(vga), Some(prefix)) = (vga, prefix) else {
        log::warn!("screen dump requested, but there is no VGA or no --screen-dump path");
        return;
    };
    let (text, png) = {
        let v = devices::bus::lock(vga);
        (v.text_dump().unwrap_or_else(|| "(graphics mode)\n".into()), v.screenshot_png())
    };
    let write = |ext: &str, bytes: &[u8]| {
        let path = prefix.with_extension(ext);
        let tmp = prefix.with_extension(format!("{ext}.tmp"));
        if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path)) {
            log::warn!("screen dump {}: {e}", path.display());
        }
    };
    write("txt", text.as_bytes());
    match png {
        Ok(png) => write("png", &png),
        Err(e) => log::warn!("screen dump: cannot render: {e}"),
    }
}

/// Builds the VM, runs it until the guest powers off, resets, faults or is stopped, and
/// tears it down.
pub fn run_boot(m: &Machine<'_>) -> Result<Outcome, Error> {
    let layout = layout::MemoryLayout::new(m.config.memory);
    let pc = m.config.machine == MachineKind::Pc;
    // Declared before the VM, so dropped after it, whichever way this function returns.
    let mem = allocate_memory(&layout)?;
    let firmware = if pc { Some(pc::firmware::Firmware::load(&m.config.firmware)?) } else { None };
    let vm: Arc<dyn Vm> = Arc::from(m.hypervisor.create_vm()?);
    vm.create_pc_platform(layout::KVM_TSS_ADDR, layout::KVM_IDENTITY_MAP_ADDR)?;
    let state = Arc::new(RunState::default());
    let mut vga = None;
    let mut net_threads = Vec::new();
    let pm;
    let keyboard;
    let (buses, vcpus) = match &firmware {
        None => {
            map_memory(vm.as_ref(), &mem)?;
            let devs = create_devices(&vm, m, &mem, &layout, &state)?;
            pm = devs.acpi_pm;
            keyboard = devs.keyboard;
            let buses = devs.buses;
            let vcpus = load_guest(&mem, m, &layout, devs.pci.as_ref())
                .and_then(|entry| create_vcpus(vm.as_ref(), &mem, m, Some(entry)));
            (buses, vcpus)
        }
        Some(fw) => {
            let devs = pc::create_machine(&vm, &mem, fw, m, &layout, &state)?;
            vga = devs.vga;
            pm = devs.acpi_pm;
            keyboard = devs.keyboard;
            if let Some(vga) = &vga {
                m.console.attach(vga.clone(), keyboard.clone());
            }
            net_threads = devs.net_threads;
            (devs.buses, create_vcpus(vm.as_ref(), &mem, m, None))
        }
    };
    // The running vCPU threads, for pause: emptied (under its lock) before they are joined.
    let running: VcpuThreads = Arc::new(Mutex::new(Vec::new()));
    install_control_hooks(m, &pm, &keyboard, vga.as_ref(), &state, &running);
    let vcpus = vcpus.inspect_err(|_| m.serial.detach())?;

    let mut threads = Vec::with_capacity(vcpus.len());
    for (id, v) in vcpus.into_iter().enumerate() {
        match vcpu::spawn(v, id as u32, buses.clone(), state.clone()) {
            Ok(t) => {
                devices::bus::lock(&running).push(t.as_pthread_t());
                threads.push(t);
            }
            Err(e) => {
                state.finish(Outcome::Error(format!("cannot start vCPU thread: {e}")));
                break;
            }
        }
    }
    let outcome = loop {
        if let Some(o) = state.wait(Duration::from_millis(100)) {
            break o;
        }
        if m.stop_requested.load(Ordering::SeqCst) {
            state.finish(Outcome::Stopped);
        }
        if m.dump_requested.swap(false, Ordering::SeqCst) {
            dump_screen(vga.as_ref(), m.config.screen_dump.as_deref());
        }
    };
    devices::bus::lock(&running).clear();
    vcpu::stop_all(threads);
    for t in net_threads.drain(..) {
        t.stop();
    }
    // Devices that hold their own bus (the PCI configuration port, to map BARs) keep the
    // whole machine alive otherwise, open disk images and their locks included, and the
    // next boot of a reset could not open them again.
    buses.pio.clear();
    buses.mmio.clear();
    // The UART holds the VM through its interrupt line: detach it so the VM goes now.
    m.serial.detach();
    Ok(outcome)
}
