// SPDX-License-Identifier: Apache-2.0
//! The PC machine: an i440FX host bridge, PIIX3 ISA bridge with IDE, PIIX4 power management,
//! standard VGA and the ISA devices, started by SeaBIOS at the reset vector. Nothing of the
//! Linux boot protocol is involved; the firmware finds RAM, CPUs, the boot order and option
//! ROMs through fw_cfg and the CMOS, as on QEMU's `pc` machine.
//!
//! PCI layout (QEMU's, which SeaBIOS and guests know): 00:00.0 i440FX, 00:01.0 PIIX3,
//! 00:01.1 IDE, 00:01.3 PIIX4 PM, 00:02.0 VGA, 00:03.0 onwards e1000 NICs, 00:07.0 onwards
//! virtio devices.

pub mod firmware;
pub mod fw_cfg_data;
pub mod vfio;
pub mod virtio;

use std::sync::{Arc, Mutex};

use arch::x86_64::layout::{self, MemoryLayout};
use arch::x86_64::pc_acpi::{pc_acpi_fw_cfg_files, pci_hole_below_4g, PcAcpiConfig};
use arch::x86_64::smbios::pc_smbios_fw_cfg_files;
use devices::bus::{lock, Bus};
use devices::display::vga::{
    StdVga, VbeIoPorts, VgaIoPorts, VgaLegacyWindow, LEGACY_WINDOW_BASE, LEGACY_WINDOW_SIZE, VBE_PORTS_BASE,
    VBE_PORTS_LEN, VGA_PORTS_BASE, VGA_PORTS_LEN,
};
use devices::ide::{IdeDrive, PiixIde};
use devices::irq::IrqLine;
use devices::legacy::acpi_pm::{self, AcpiPm};
use devices::legacy::debugcon::{Debugcon, DEBUGCON_PORT};
use devices::legacy::fw_cfg::{FwCfg, FW_CFG_BASE, FW_CFG_LEN};
use devices::legacy::port92::{Port92, PORT92};
use devices::legacy::PlatformControl;
use devices::net::e1000::E1000;
use devices::net::rx_events::NetRxEvents;
use devices::net::tap::Tap;
use devices::pci::bar_map::{BarMapper, RamBarHandler};
use devices::pci::config_io::{CONFIG_IO_BASE, CONFIG_IO_LEN};
use devices::pci::i440fx::I440fx;
use devices::pci::piix3::{Piix3, PirqRouter};
use devices::pci::piix4_pm::Piix4Pm;
use devices::pci::{PciBarRange, PciConfigIo, PciConfigListener, PciRoot, SharedPciDevice};
use hypervisor::Vm;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::board::{bus_err, create_legacy_devices, Error, KvmIrq, Machine, Platform};
use crate::interrupts::{GsiRouting, KvmIoEvents};
use crate::linuxboot;
use crate::pc_config::{DiskBus, NicModel};
use crate::registry::DeviceRegistry;
use crate::vcpu::{Buses, RunState};
use firmware::{Firmware, Pam, SHADOW_END, SLOT_FREE};

/// Memory slot of RAM below the VGA window.
const SLOT_LOW: u32 = 0;
/// Memory slot of RAM from 1 MiB to the PCI hole.
const SLOT_MID: u32 = 1;
/// Memory slot of RAM above 4 GiB.
const SLOT_HIGH: u32 = 2;

/// The devices of the PC machine.
pub struct PcMachine {
    /// The buses the vCPUs dispatch to.
    pub buses: Buses,
    /// The ACPI registers (power button, pressed through the control socket).
    pub acpi_pm: Arc<Mutex<AcpiPm>>,
    /// The display, if any.
    pub vga: Option<Arc<Mutex<StdVga>>>,
    /// The e1000s' receive sides, for the machine's event loop.
    pub event_subscribers: Vec<crate::event_loop::Subscriber>,
    /// The PS/2 keyboard controller (keys typed through the control socket).
    pub keyboard: Arc<Mutex<devices::legacy::i8042::I8042>>,
}

/// IDE positions (channel, unit) of the disks in `--disk` order; the CD-ROM is (1, 0).
pub const DISK_POSITIONS: [(usize, usize); 3] = [(0, 0), (0, 1), (1, 1)];
/// IDE position of the CD-ROM drive.
pub const CDROM_POSITION: (usize, usize) = (1, 0);

/// Opens the images and attaches them to the IDE controller.
fn attach_drives(ide: &mut PiixIde, m: &Machine<'_>, reg: &mut DeviceRegistry) -> Result<(), Error> {
    let cfg = m.config;
    let open = |path: &std::path::Path, format, ro| {
        block::open_image(path, format, ro).map_err(|e| Error::Disk(path.display().to_string(), e))
    };
    let ide_disks = cfg.disks.iter().filter(|d| d.bus == DiskBus::Ide);
    for (disk, (channel, unit)) in ide_disks.zip(DISK_POSITIONS) {
        let image = open(&disk.path, disk.format.map(crate::pc_config::image_format), disk.readonly)?;
        ide.attach(channel, unit, IdeDrive::Disk(image)).map_err(|e| Error::Devices(e.to_string()))?;
        let ro = if disk.readonly { ", read-only" } else { "" };
        let id = format!("ide{channel}-{unit}");
        reg.add(&id, "ide-disk", None, &format!("{}{ro}", disk.path.display()))?;
        if let Some(stats) = ide.stats(channel, unit) {
            reg.add_disk_stats(&id, stats);
        }
    }
    if let Some(iso) = &cfg.cdrom {
        let image = open(iso, Some(block::ImageFormat::Raw), true)?;
        let (channel, unit) = CDROM_POSITION;
        ide.attach(channel, unit, IdeDrive::Cdrom(image)).map_err(|e| Error::Devices(e.to_string()))?;
        let id = format!("ide{channel}-{unit}");
        reg.add(&id, "ide-cdrom", None, &iso.display().to_string())?;
        if let Some(stats) = ide.stats(channel, unit) {
            reg.add_disk_stats(&id, stats);
        }
    }
    Ok(())
}

/// Maps guest RAM around the legacy VGA window and the shadow area.
fn map_ram(vm: &dyn Vm, mem: &GuestMemoryMmap) -> Result<(), Error> {
    for region in mem.iter() {
        let (start, len, host) = (region.start_addr().0, region.len(), region.as_ptr() as u64);
        if start == 0 {
            // SAFETY: within `mem`, which `VirtualMachine` drops after the VM, so the VM and
            // everything holding it is dropped first.
            unsafe { vm.map_memory(SLOT_LOW, 0, layout::LEGACY_HOLE_START, host, false)? };
            // SAFETY: as above; `len` is at least the 32 MiB minimum, beyond SHADOW_END.
            unsafe { vm.map_memory(SLOT_MID, SHADOW_END, len - SHADOW_END, host + SHADOW_END, false)? };
        } else {
            // SAFETY: as above.
            unsafe { vm.map_memory(SLOT_HIGH, start, len, host, false)? };
        }
    }
    Ok(())
}

/// Maps RAM-backed BARs (the VGA framebuffer) as memory slots.
struct RamBars {
    vm: Arc<dyn Vm>,
    slots: Vec<((u8, u8), usize, u32)>,
    next: u32,
    /// Memory slots given back by unmapped BARs, used again first (a guest moving a BAR
    /// over and over must not run out of slots).
    free: Vec<u32>,
}

impl RamBarHandler for RamBars {
    fn map(&mut self, slot: (u8, u8), range: PciBarRange, host_addr: u64) {
        let id = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        // SAFETY: `bar_host_memory` promises the memory lives as long as the device, which the
        // buses (and so the VM's users) hold until the VM is taken apart.
        match unsafe { self.vm.map_memory(id, range.address, range.size, host_addr, false) } {
            Ok(()) => self.slots.push((slot, range.index, id)),
            Err(e) => {
                self.free.push(id);
                devices::warn_limited!(
                    "pci {slot:?}: cannot map BAR {} at {:#x}: {e}",
                    range.index,
                    range.address
                )
            }
        }
    }
    fn unmap(&mut self, slot: (u8, u8), range: PciBarRange) {
        if let Some(pos) = self.slots.iter().position(|(s, i, _)| *s == slot && *i == range.index) {
            let (_, _, id) = self.slots.remove(pos);
            match self.vm.unmap_memory(id) {
                Ok(()) => self.free.push(id),
                Err(e) => devices::warn_limited!("pci {slot:?}: cannot unmap BAR {}: {e}", range.index),
            }
        }
    }
}

/// Acts on configuration writes: PAM changes on the host bridge, BAR moves elsewhere.
struct ChipsetListener {
    pam: Pam,
    bars: BarMapper,
}

impl PciConfigListener for ChipsetListener {
    fn config_written(&mut self, slot: (u8, u8), reg: usize, dev: &SharedPciDevice) {
        if slot == (0, 0) {
            if (0x58 / 4..=0x5c / 4).contains(&reg) {
                let pam = Pam::registers(|r| lock(dev).config_read(r));
                if let Err(e) = self.pam.apply(pam) {
                    devices::error_limited!("PAM update failed: {e}");
                }
            }
            return;
        }
        self.bars.update(slot, dev);
    }

    /// PAM back at zero maps the shadow area read-only again; BARs went back to zero with
    /// decoding off, so they are unmapped (SeaBIOS assigns them again).
    fn devices_reset(&mut self, root: &PciRoot) {
        for (slot, dev) in root.devices() {
            if slot == (0, 0) {
                let pam = Pam::registers(|r| lock(dev).config_read(r));
                if let Err(e) = self.pam.apply(pam) {
                    devices::error_limited!("PAM reset failed: {e}");
                }
            } else {
                self.bars.update(slot, dev);
            }
        }
    }
}

/// Puts the kernel, initramfs and command line in fw_cfg for the Linux loader option ROM, and
/// the ROM itself where SeaBIOS runs it from.
fn add_kernel(
    fw_cfg: &mut FwCfg,
    cfg: &crate::config::VmConfig,
    kernel: &std::path::Path,
    layout: &MemoryLayout,
) -> Result<(), Error> {
    let read =
        |p: &std::path::Path| block::host_files::read(p).map_err(|e| Error::Open(p.display().to_string(), e));
    let image = read(kernel)?;
    let initrd = cfg.initramfs.as_deref().map(read).transpose()?;
    let plan = linuxboot::plan(
        &image,
        initrd.as_ref().map(|i| i.len() as u64),
        &cfg.cmdline,
        layout.low_ram_size(),
    )?;
    log::info!(
        "kernel for the BIOS: boot protocol {:#x}, {} bytes of setup, {} of kernel, initramfs {:?}",
        plan.protocol,
        plan.setup.len(),
        plan.kernel_size,
        plan.initrd
    );
    for (key, data) in plan.into_items(image, initrd) {
        fw_cfg.add_item(key, data);
    }
    let rom_path =
        cfg.linuxboot_rom.as_deref().unwrap_or(std::path::Path::new(crate::pc_config::DEFAULT_LINUXBOOT_ROM));
    let rom = read(rom_path)?;
    linuxboot::check_rom(&rom).map_err(|e| Error::Devices(format!("{} {e}", rom_path.display())))?;
    fw_cfg.add_file(linuxboot::ROM_FILE, rom).map_err(|e| Error::Devices(e.to_string()))?;
    Ok(())
}

/// Builds the machine: RAM and firmware mappings, chipset, devices, fw_cfg.
pub fn create_machine(
    vm: &Arc<dyn Vm>,
    mem: &GuestMemoryMmap,
    fw: &Firmware,
    m: &Machine<'_>,
    layout: &MemoryLayout,
    state: &Arc<RunState>,
    reg: &mut DeviceRegistry,
) -> Result<PcMachine, Error> {
    let cfg = m.config;
    map_ram(vm.as_ref(), mem)?;
    fw.install(vm.as_ref(), mem)?;
    let mut pam = Pam::new(vm.clone(), mem)?;
    pam.apply([0; 7])?;

    let platform: Arc<dyn PlatformControl> = Arc::new(Platform(state.clone()));
    let pio = Bus::new();
    let mmio = Bus::new();
    let legacy = create_legacy_devices(vm, m, layout, &platform, &pio, reg)?;
    let (cmos, keyboard) = (legacy.cmos, legacy.keyboard);
    let (boot1, boot2) = fw_cfg_data::cmos_boot_order(&cfg.boot);
    {
        let mut c = lock(&cmos);
        c.set_nvram(0x3d, boot1);
        c.set_nvram(0x38, boot2);
    }
    pio.insert(u64::from(PORT92), 1, Arc::new(Mutex::new(Port92::new(platform.clone())))).map_err(bus_err)?;
    pio.insert(u64::from(DEBUGCON_PORT), 1, Arc::new(Mutex::new(Debugcon::new(None)))).map_err(bus_err)?;

    // Chipset and PCI.
    let isa_irqs: Vec<Arc<dyn IrqLine>> =
        (0..16).map(|gsi| Arc::new(KvmIrq::level(vm.clone(), gsi)) as Arc<dyn IrqLine>).collect();
    let router = PirqRouter::new(isa_irqs);
    let sci: Arc<dyn IrqLine> = Arc::new(KvmIrq::level(vm.clone(), acpi_pm::SCI_IRQ));
    let acpi_pm = Arc::new(Mutex::new(AcpiPm::new(sci, platform.clone())));
    let mut root = PciRoot::new();
    let add = |root: &mut PciRoot, dev: u8, func: u8, d: SharedPciDevice| {
        if root.add(dev, func, d) {
            Ok(())
        } else {
            Err(Error::Devices(format!("PCI address 00:{dev:02x}.{func} taken")))
        }
    };
    add(&mut root, 0, 0, Arc::new(Mutex::new(I440fx::new())))?;
    add(&mut root, 1, 0, Arc::new(Mutex::new(Piix3::new(router.clone()))))?;
    add(&mut root, 1, 3, Arc::new(Mutex::new(Piix4Pm::new(acpi_pm.clone()))))?;
    reg.add("host-bridge", "i440fx", Some((0, 0)), "")?;
    reg.add("isa-bridge", "piix3", Some((1, 0)), "PIRQ routing")?;
    reg.add("acpi-pm", "piix4-pm", Some((1, 3)), &format!("SCI IRQ {}", acpi_pm::SCI_IRQ))?;

    let irq14: Arc<dyn IrqLine> = Arc::new(KvmIrq::level(vm.clone(), 14));
    let irq15: Arc<dyn IrqLine> = Arc::new(KvmIrq::level(vm.clone(), 15));
    let mut ide = PiixIde::new(mem.clone(), irq14, irq15);
    attach_drives(&mut ide, m, reg)?;
    let ide = Arc::new(Mutex::new(ide));
    for (base, len, ports) in PiixIde::legacy_ports(&ide) {
        pio.insert(u64::from(base), u64::from(len), ports).map_err(bus_err)?;
    }
    add(&mut root, fw_cfg_data::IDE_DEVFN.0, fw_cfg_data::IDE_DEVFN.1, ide)?;
    reg.add("ide", "piix3-ide", Some(fw_cfg_data::IDE_DEVFN), "ports 0x1f0 and 0x170, IRQs 14 and 15")?;

    let vga = if cfg.vga {
        let vga = Arc::new(Mutex::new(StdVga::new().map_err(|e| Error::Devices(format!("VGA: {e}")))?));
        pio.insert(
            u64::from(VGA_PORTS_BASE),
            u64::from(VGA_PORTS_LEN),
            Arc::new(Mutex::new(VgaIoPorts(vga.clone()))),
        )
        .map_err(bus_err)?;
        pio.insert(
            u64::from(VBE_PORTS_BASE),
            u64::from(VBE_PORTS_LEN),
            Arc::new(Mutex::new(VbeIoPorts(vga.clone()))),
        )
        .map_err(bus_err)?;
        mmio.insert(
            LEGACY_WINDOW_BASE,
            LEGACY_WINDOW_SIZE,
            Arc::new(Mutex::new(VgaLegacyWindow(vga.clone()))),
        )
        .map_err(bus_err)?;
        add(&mut root, 2, 0, vga.clone())?;
        reg.add("vga", "stdvga", Some((2, 0)), "Bochs VBE, 16 MiB")?;
        Some(vga)
    } else {
        None
    };

    let interrupts = GsiRouting::new(vm.clone());
    let mut event_subscribers: Vec<crate::event_loop::Subscriber> = Vec::new();
    for (i, nic) in cfg.nics.iter().enumerate() {
        let slot = fw_cfg_data::NIC_SLOT + i as u8;
        if nic.model == NicModel::Virtio {
            let intx = router.intx(slot, 1);
            let mut pci = virtio::PciContext { root: &mut root, mem, interrupts: &interrupts, reg };
            event_subscribers.push(virtio::attach_virtio_nic(&mut pci, slot, nic, intx, &format!("net{i}"))?);
            continue;
        }
        let tap = Tap::open(&nic.tap).map_err(|e| Error::Nic(nic.tap.clone(), e.to_string()))?;
        let e1000 = E1000::new(nic.mac, mem.clone(), router.intx(slot, 1), Box::new(tap));
        let stats = e1000.stats();
        let e1000 = Arc::new(Mutex::new(e1000));
        let rx = NetRxEvents::new(&format!("net-{}", nic.tap), e1000.clone())
            .map_err(|e| Error::Devices(format!("NIC {}: receive events: {e}", nic.tap)))?;
        event_subscribers.push(Arc::new(Mutex::new(rx)));
        add(&mut root, slot, 0, e1000)?;
        let mac = api::machine::format_mac(&nic.mac);
        reg.add(&format!("net{i}"), "e1000", Some((slot, 0)), &format!("tap {}, MAC {mac}", nic.tap))?;
        reg.add_nic_stats(&format!("net{i}"), false, stats);
    }

    let mut pci = virtio::PciContext { root: &mut root, mem, interrupts: &interrupts, reg };
    let virtio_disks =
        virtio::attach_virtio_disks(&mut pci, &cfg.disks, virtio::FIRST_VIRTIO_SLOT, &|slot| {
            Ok(router.intx(slot, 1))
        })?;

    vfio::attach_vfio_devices(
        &mut root,
        &cfg.hostdevs,
        vm,
        mem,
        &interrupts,
        &router,
        virtio::FIRST_VIRTIO_SLOT,
    )?;

    let mut fw_cfg = FwCfg::new(mem.clone());
    fw_cfg.add_item(fw_cfg_data::KEY_RAM_SIZE, layout.ram_size.to_le_bytes().to_vec());
    fw_cfg.add_item(fw_cfg_data::KEY_NB_CPUS, (cfg.cpus as u16).to_le_bytes().to_vec());
    fw_cfg.add_item(fw_cfg_data::KEY_MAX_CPUS, (cfg.cpus as u16).to_le_bytes().to_vec());
    fw_cfg.add_item(fw_cfg_data::KEY_NUMA, 0u64.to_le_bytes().to_vec());
    fw_cfg.add_item(fw_cfg_data::KEY_BOOT_MENU, 0u16.to_le_bytes().to_vec());
    let file = |e: devices::legacy::fw_cfg::Error| Error::Devices(e.to_string());
    fw_cfg.add_file("etc/e820", fw_cfg_data::e820(layout)).map_err(file)?;
    // Our ACPI tables, which SeaBIOS installs through the table loader (instead of its own).
    let acpi = PcAcpiConfig {
        cpus: cfg.cpus,
        pm: crate::board::pm_ports(),
        pci_hole: pci_hole_below_4g(layout.low_ram_size()),
        pci_hole64: None,
        irq0_to_gsi2: false,
    };
    for (name, data) in pc_acpi_fw_cfg_files(&acpi).map_err(|e| Error::Tables(e.to_string()))? {
        fw_cfg.add_file(&name, data).map_err(file)?;
    }
    // Our SMBIOS tables, which SeaBIOS installs (adding its own type 0) instead of its defaults.
    let cpuid1 = arch::x86_64::cpuid::vcpu_cpuid(m.supported_cpuid, 0, cfg.cpus)
        .iter()
        .find(|e| e.function == 1)
        .map_or((0, 0), |e| (e.eax, e.edx));
    let smbios = pc_smbios_fw_cfg_files(cfg.cpus, &layout.ram_ranges(), None, cpuid1)
        .map_err(|e| Error::Tables(e.to_string()))?;
    for (name, data) in smbios {
        fw_cfg.add_file(&name, data).map_err(file)?;
    }
    // The first --disk is the one `--boot disk` means, IDE or virtio.
    let disk = cfg.disks.first().and_then(|d| match d.bus {
        DiskBus::Ide => Some(fw_cfg_data::ide_path(DISK_POSITIONS[0].0, DISK_POSITIONS[0].1)),
        DiskBus::Virtio => {
            virtio_disks.iter().find(|v| v.index == 0).map(|v| fw_cfg_data::virtio_blk_path(v.slot))
        }
    });
    let cdrom = cfg.cdrom.as_ref().map(|_| fw_cfg_data::ide_path(CDROM_POSITION.0, CDROM_POSITION.1));
    fw_cfg
        .add_file("bootorder", fw_cfg_data::bootorder(&cfg.boot, disk, cdrom, cfg.kernel.is_some()))
        .map_err(file)?;
    if let Some(kernel) = &cfg.kernel {
        add_kernel(&mut fw_cfg, cfg, kernel, layout)?;
    }
    if vga.is_some() {
        // SeaBIOS runs a PCI device's option ROM from the fw_cfg file named after its IDs.
        let rom = block::host_files::read(std::path::Path::new(crate::pc_config::DEFAULT_VGA_ROM))
            .map_err(|e| Error::Open(crate::pc_config::DEFAULT_VGA_ROM.to_string(), e))?;
        fw_cfg.add_file("pci1234,1111.rom", rom).map_err(file)?;
    } else {
        // No display: SeaBIOS shows its screen on COM1 instead.
        fw_cfg.add_file("etc/sercon-port", 0x3f8u16.to_le_bytes().to_vec()).map_err(file)?;
    }
    pio.insert(u64::from(FW_CFG_BASE), u64::from(FW_CFG_LEN), Arc::new(Mutex::new(fw_cfg)))
        .map_err(bus_err)?;

    let ram_bars = RamBars { vm: vm.clone(), slots: Vec::new(), next: SLOT_FREE, free: Vec::new() };
    let mut bars = BarMapper::new(pio.clone(), mmio.clone(), Some(Box::new(ram_bars)));
    bars.set_ioevents(Arc::new(KvmIoEvents(vm.clone())));
    let listener = ChipsetListener { pam, bars };
    let mut config_io = PciConfigIo::new(root);
    config_io.set_listener(Box::new(listener));
    config_io.set_reset_control(platform);
    pio.insert(u64::from(CONFIG_IO_BASE), u64::from(CONFIG_IO_LEN), Arc::new(Mutex::new(config_io)))
        .map_err(bus_err)?;
    Ok(PcMachine { buses: Buses { pio, mmio }, acpi_pm, vga, event_subscribers, keyboard })
}
