// SPDX-License-Identifier: Apache-2.0
//! What every machine is built from: the errors of building one, what the process hands
//! it ([`Machine`]), interrupt lines of the in-kernel irqchip, the platform's reset and
//! power-off requests, and the legacy devices both machines have.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use api::machine::RtcBase;
use arch::x86_64::{acpi, boot, layout};
use devices::bus::Bus;
use devices::irq::IrqLine;
use devices::legacy::acpi_pm;
use devices::legacy::cmos_rtc::{CmosRtc, HostClock, CMOS_BASE, CMOS_IRQ, CMOS_LEN};
use devices::legacy::i8042::{I8042, I8042_BASE, I8042_LEN};
use devices::legacy::port80::Port80;
use devices::legacy::uart16550::{Uart16550, COM1_BASE, COM1_IRQ, UART_LEN};
use devices::legacy::{PlatformControl, PlatformRequest};
use hypervisor::{CpuidEntry, Hypervisor, Vm};
use vmm_sys_util::eventfd::EventFd;

use crate::config::VmConfig;
use crate::registry::DeviceRegistry;
use crate::serial::SerialBackend;
use crate::vcpu::{Outcome, RunState};

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
    LinuxBoot(#[from] crate::linuxboot::LinuxBootError),
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
    /// The control socket's state: the machine installs its power button and screen dump.
    pub control: &'a crate::control::Control,
    /// The VNC server's view of the machine: the machine attaches its VGA and keyboard.
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
                    devices::warn_limited!("irq {}: {e}", self.gsi);
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
            devices::warn_limited!("irq {}: {e}", self.gsi);
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

/// The ACPI PM registers both machines describe in their FADT (the `AcpiPm` block's layout).
pub(crate) fn pm_ports() -> acpi::PmIoPorts {
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

/// The devices every machine has: COM1, the i8042 with keyboard and mouse, the CMOS RTC and
/// port 0x80.
pub(crate) fn create_legacy_devices(
    vm: &Arc<dyn Vm>,
    m: &Machine<'_>,
    layout: &layout::MemoryLayout,
    platform: &Arc<dyn PlatformControl>,
    pio: &Bus,
    reg: &mut DeviceRegistry,
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
    let clock = HostClock::with_offset_secs(match m.config.rtc {
        RtcBase::Utc => 0,
        RtcBase::Localtime => local_utc_offset_secs(),
    });
    let mut cmos = CmosRtc::with_clock(Arc::new(clock), Some(Arc::new(KvmIrq::new(vm.clone(), CMOS_IRQ)?)));
    cmos.set_memory_fields(layout.low_ram_size(), layout.high_ram_size(), m.config.cpus.min(255) as u8);
    let cmos = Arc::new(Mutex::new(cmos));
    pio.insert(u64::from(CMOS_BASE), u64::from(CMOS_LEN), cmos.clone()).map_err(dev)?;
    pio.insert(0x80, 1, Arc::new(Mutex::new(Port80::default()))).map_err(dev)?;
    reg.add("com1", "uart16550", None, &format!("port {COM1_BASE:#x}, IRQ {COM1_IRQ}, {}", m.config.serial))?;
    reg.add(
        "i8042",
        "i8042",
        None,
        &format!("port {I8042_BASE:#x}, PS/2 keyboard (IRQ 1) and mouse (IRQ 12)"),
    )?;
    reg.add("rtc", "mc146818", None, &format!("port {CMOS_BASE:#x}, IRQ {CMOS_IRQ}"))?;
    Ok(LegacyDevices { cmos, keyboard: i8042 })
}

/// The host's offset from UTC now, in seconds east (`TZ`, else /etc/localtime, as libc reads
/// them); 0 if libc cannot tell.
pub(crate) fn local_utc_offset_secs() -> i64 {
    let now: libc::time_t = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as libc::time_t,
        Err(_) => return 0,
    };
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals of the right types; localtime_r writes only
    // `tm` and returns null on failure.
    let r = unsafe { libc::localtime_r(&now, &mut tm) };
    if r.is_null() {
        log::warn!("cannot read the host's time zone: the RTC counts UTC");
        return 0;
    }
    tm.tm_gmtoff
}
