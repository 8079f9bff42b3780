// SPDX-License-Identifier: Apache-2.0
//! The direct machine: no firmware, the VMM loads the kernel and writes the ACPI and MP
//! tables itself, and the devices are COM1, the i8042, the CMOS RTC, port 0x80 and the ACPI
//! PM block.
//!
//! It gets a PCI bus when it has virtio disks: the i440FX host bridge at 00:00.0 (Linux looks
//! for a host bridge before it trusts configuration mechanism #1) and a virtio-blk function
//! per disk from slot 1 on, their BARs placed by the VMM (there is no firmware to do it) in
//! the windows the DSDT describes, INTA# of slot `s` on IOAPIC input 16 + s mod 8
//! (`acpi::pci_intx_gsi`).

use std::sync::{Arc, Mutex};

use arch::x86_64::{acpi, boot, layout, mptable};
use devices::bus::Bus;
use devices::irq::IrqLine;
use devices::legacy::acpi_pm::{self, AcpiPm};
use devices::legacy::i8042::I8042;
use devices::legacy::PlatformControl;
use devices::pci::bar_alloc::{BarAllocator, PciWindows};
use devices::pci::bar_map::BarMapper;
use devices::pci::config_io::{CONFIG_IO_BASE, CONFIG_IO_LEN};
use devices::pci::i440fx::I440fx;
use devices::pci::{PciConfigIo, PciConfigListener, PciRoot, SharedPciDevice};
use hypervisor::Vm;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::board::{bus_err, create_legacy_devices, pm_ports, Error, KvmIrq, Machine, Platform};
use crate::interrupts::{GsiRouting, KvmIoEvents, SharedLevelLines};
use crate::pc;
use crate::pc_config::DiskBus;
use crate::registry::DeviceRegistry;
use crate::vcpu::{Buses, RunState};

pub(crate) fn map_memory(vm: &dyn Vm, mem: &GuestMemoryMmap) -> Result<(), Error> {
    for (slot, region) in mem.iter().enumerate() {
        let host = region.as_ptr() as u64;
        // SAFETY: the mapping belongs to `mem`, which `VirtualMachine` drops after the VM, so
        // on every path the VM (and every vCPU and device holding it) is dropped first.
        unsafe { vm.map_memory(slot as u32, region.start_addr().0, region.len(), host, false)? };
    }
    Ok(())
}

/// What `create_devices` builds for the direct machine.
pub(crate) struct DirectDevices {
    /// The buses the vCPUs dispatch to.
    pub(crate) buses: Buses,
    /// The ACPI registers (power button).
    pub(crate) acpi_pm: Arc<Mutex<AcpiPm>>,
    /// The PS/2 controller.
    pub(crate) keyboard: Arc<Mutex<I8042>>,
    /// The PCI bus for the ACPI tables, if the machine has one.
    pub(crate) pci: Option<acpi::PciHostBridge>,
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
struct BarListener(BarMapper, PciWindows);

impl PciConfigListener for BarListener {
    fn config_written(&mut self, slot: (u8, u8), _reg: usize, dev: &SharedPciDevice) {
        self.0.update(slot, dev);
    }

    /// A reset put every BAR back to zero with decoding off, which the guest could not
    /// work with on a machine without firmware: the VMM assigns them again, as at start.
    fn devices_reset(&mut self, root: &PciRoot) {
        let mut allocator = BarAllocator::new(&self.1);
        if let Err(e) = allocator.assign_bus(root) {
            log::error!("pci: cannot assign BARs again after the reset: {e}");
        }
        for (slot, dev) in root.devices() {
            self.0.update(slot, dev);
        }
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
    reg: &mut DeviceRegistry,
) -> Result<Option<acpi::PciHostBridge>, Error> {
    if !m.config.disks.iter().any(|d| d.bus == DiskBus::Virtio) {
        return Ok(None);
    }
    let mut root = PciRoot::new();
    root.add(0, 0, Arc::new(Mutex::new(I440fx::new())));
    reg.add("host-bridge", "i440fx", Some((0, 0)), "")?;
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
    let mut pci = pc::virtio::PciContext { root: &mut root, mem, interrupts: &interrupts, reg };
    pc::virtio::attach_virtio_disks(&mut pci, &m.config.disks, 1, &inta)?;

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
    config_io.set_listener(Box::new(BarListener(bars, windows.clone())));
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

/// Builds the direct machine's devices.
pub(crate) fn create_devices(
    vm: &Arc<dyn Vm>,
    m: &Machine<'_>,
    mem: &GuestMemoryMmap,
    layout: &layout::MemoryLayout,
    state: &Arc<RunState>,
    reg: &mut DeviceRegistry,
) -> Result<DirectDevices, Error> {
    let platform: Arc<dyn PlatformControl> = Arc::new(Platform(state.clone()));
    let sci: Arc<dyn IrqLine> = Arc::new(KvmIrq::new(vm.clone(), acpi_pm::SCI_IRQ)?);
    let buses = Buses { pio: Bus::new(), mmio: Bus::new() };
    let keyboard = create_legacy_devices(vm, m, layout, &platform, &buses.pio, reg)?.keyboard;
    let pci = create_direct_pci(vm, m, mem, layout, &platform, &buses, reg)?;
    let pm = Arc::new(Mutex::new(AcpiPm::new(sci, platform)));
    buses.pio.insert(u64::from(acpi_pm::PM_BASE), u64::from(acpi_pm::PM_LEN), pm.clone()).map_err(bus_err)?;
    reg.add(
        "acpi-pm",
        "acpi-pm",
        None,
        &format!("port {:#x}, SCI IRQ {}", acpi_pm::PM_BASE, acpi_pm::SCI_IRQ),
    )?;
    Ok(DirectDevices { buses, acpi_pm: pm, keyboard, pci })
}

/// Writes the firmware tables and loads the kernel and initramfs into guest memory: at the
/// first boot and again at every reset (the kernel decompressed itself over its image).
pub(crate) fn load_guest(
    mem: &GuestMemoryMmap,
    m: &Machine<'_>,
    layout: &layout::MemoryLayout,
    pci: Option<&acpi::PciHostBridge>,
) -> Result<boot::KernelEntry, Error> {
    let cfg = m.config;
    let rsdp =
        acpi::write_acpi_tables(mem, cfg.cpus, &pm_ports(), pci).map_err(|e| Error::Tables(e.to_string()))?;
    mptable::write_mptable(mem, cfg.cpus).map_err(|e| Error::Tables(e.to_string()))?;
    // Also at a reset, under the main thread's seccomp filter: a handed-over kernel is a dup
    // and an lseek (fcntl, lseek), a path an openat.
    let open = |p: &std::path::Path| {
        block::host_files::open(p, block::host_files::Access::Read)
            .map_err(|e| Error::Open(p.display().to_string(), e))
    };
    let kernel_path =
        cfg.kernel.as_deref().ok_or_else(|| Error::Devices("direct boot without a kernel".into()))?;
    let mut kernel = open(kernel_path)?;
    let mut initramfs = cfg.initramfs.as_deref().map(open).transpose()?;
    Ok(boot::load_linux(mem, layout, &mut kernel, initramfs.as_mut(), &cfg.cmdline, rsdp)?)
}
