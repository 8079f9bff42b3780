// SPDX-License-Identifier: Apache-2.0
//! Virtio devices of both machines: each `--disk ...,bus=virtio` becomes a virtio-blk PCI
//! function in the first free slot and each `--nic ...,model=virtio` a virtio-net function in
//! its NIC slot, their MSI-X vectors on KVM GSI routes and their doorbells on ioeventfds. The machine says where the INTx pin of each slot goes (a PIIX3 PIRQ on the PC
//! machine, an IOAPIC input on the direct machine).

use std::sync::{Arc, Mutex};

use devices::interrupt::InterruptManager;
use devices::irq::IrqLine;
use devices::pci::PciRoot;
use devices::virtio::block::{BlockOptions, IoEngine, VirtioBlk};
use devices::virtio::net::vhost::{self, VhostPolicy};
use devices::virtio::net::{NetOptions, VirtioNet};
use devices::virtio::pci::VirtioPciDevice;
use vm_memory::GuestMemoryMmap;

use crate::board::Error;
use crate::pc_config::{DiskAio, DiskBus, DiskConfig, NicConfig};
use crate::registry::DeviceRegistry;

/// First slot tried for virtio devices on the PC machine (after the chipset, VGA and the
/// e1000s).
pub const FIRST_VIRTIO_SLOT: u8 = super::fw_cfg_data::NIC_SLOT + crate::pc_config::MAX_NICS as u8;

/// What putting a PCI function on the machine needs: the bus, guest memory (for DMA), the
/// interrupt manager (MSI-X vectors) and the device registry.
pub struct PciContext<'a> {
    /// Bus 0.
    pub root: &'a mut PciRoot,
    /// Guest memory.
    pub mem: &'a GuestMemoryMmap,
    /// Where MSI vectors come from.
    pub interrupts: &'a dyn InterruptManager,
    /// Where the device is registered by id.
    pub reg: &'a mut DeviceRegistry,
}

/// Where each virtio disk went: the index in `--disk` order and the PCI slot.
pub struct VirtioDisk {
    /// Position among all `--disk`s.
    pub index: usize,
    /// PCI device number.
    pub slot: u8,
}

/// Opens the virtio disks' images and puts a virtio-blk function for each on the bus, in the
/// free slots from `first_slot` on; `intx` gives the interrupt line of INTA# of a slot.
pub fn attach_virtio_disks(
    pci: &mut PciContext<'_>,
    disks: &[DiskConfig],
    first_slot: u8,
    intx: &dyn Fn(u8) -> Result<Arc<dyn IrqLine>, Error>,
) -> Result<Vec<VirtioDisk>, Error> {
    let (root, mem, interrupts) = (&mut *pci.root, pci.mem, pci.interrupts);
    let mut placed = Vec::new();
    for (index, disk) in disks.iter().enumerate().filter(|(_, d)| d.bus == DiskBus::Virtio) {
        let name = disk.path.display().to_string();
        let image =
            block::open_image(&disk.path, disk.format.map(crate::pc_config::image_format), disk.readonly)
                .map_err(|e| Error::Disk(name.clone(), e))?;
        let label = format!("vd{}", (b'a' + placed.len() as u8) as char);
        let options =
            BlockOptions { serial: disk.serial.clone().unwrap_or_default(), queues: disk.queues.max(1) };
        let mut blk =
            VirtioBlk::new(&label, image, &options).map_err(|e| Error::Devices(format!("{name}: {e}")))?;
        blk.set_io_engine(match disk.aio {
            DiskAio::IoUring => IoEngine::Auto,
            DiskAio::Threads => IoEngine::ThreadPool,
        });
        let slot = root
            .free_slot(first_slot)
            .ok_or_else(|| Error::Devices(format!("{name}: no free PCI slot left")))?;
        let vectors = interrupts
            .msi_vectors(usize::from(options.queues) + 1)
            .map_err(|e| Error::Devices(format!("{name}: MSI vectors: {e}")))?;
        let stats = blk.stats();
        let dev = VirtioPciDevice::new(Box::new(blk), mem.clone(), vectors, intx(slot)?)
            .map_err(|e| Error::Devices(format!("{name}: {e}")))?;
        if !root.add(slot, 0, Arc::new(Mutex::new(dev))) {
            return Err(Error::Devices(format!("{name}: PCI slot {slot} taken")));
        }
        log::info!("{label}: virtio-blk for {name} at PCI 00:{slot:02x}.0");
        let ro = if disk.readonly { ", read-only" } else { "" };
        pci.reg.add(
            &label,
            "virtio-blk",
            Some((slot, 0)),
            &format!("{name}, {} queue(s){ro}", options.queues),
        )?;
        pci.reg.add_disk_stats(&label, stats);
        placed.push(VirtioDisk { index, slot });
    }
    Ok(placed)
}

/// Opens the tap of `nic` (one queue per queue pair, with virtio-net headers) and puts a
/// virtio-net function on the bus at `slot`, registered as device `id`. Its frames go through
/// vhost-net (one instance per queue pair) unless `vhost=off` or, with `vhost` unset,
/// /dev/vhost-net does not open; otherwise the machine's event loop serves its queues, through
/// the subscriber returned.
pub fn attach_virtio_nic(
    pci: &mut PciContext<'_>,
    slot: u8,
    nic: &NicConfig,
    intx: Arc<dyn IrqLine>,
    id: &str,
) -> Result<crate::event_loop::Subscriber, Error> {
    let (root, mem, interrupts) = (&mut *pci.root, pci.mem, pci.interrupts);
    let label = format!("net-{}", nic.tap);
    let mut net = VirtioNet::with_tap(&label, &nic.tap, nic.queues, &NetOptions { mac: nic.mac, mtu: None })
        .map_err(|e| Error::Nic(nic.tap.clone(), e.to_string()))?;
    // The one place the vhost-net instances come from (see `vhost::open_vhost_net`).
    let (fds, why) = vhost::choose(VhostPolicy::from(nic.vhost), nic.queues, vhost::open_vhost_net)
        .map_err(|e| Error::Nic(nic.tap.clone(), vhost::error_chain(&e)))?;
    let path = match fds {
        Some(fds) => {
            net.set_vhost(fds).map_err(|e| Error::Nic(nic.tap.clone(), e.to_string()))?;
            "vhost-net"
        }
        None => "the vmm's event loop",
    };
    let (stats, in_kernel) = (net.stats(), net.has_vhost());
    let subscriber =
        net.event_subscriber().map_err(|e| Error::Devices(format!("{label}: event loop: {e}")))?;
    log::info!("{label}: data path: {path} ({why})");
    // A vector per receive and transmit queue, one for the control queue, one for configuration.
    let vectors = interrupts
        .msi_vectors(2 * usize::from(nic.queues) + 2)
        .map_err(|e| Error::Devices(format!("{label}: MSI vectors: {e}")))?;
    let dev = VirtioPciDevice::new(Box::new(net), mem.clone(), vectors, intx)
        .map_err(|e| Error::Devices(format!("{label}: {e}")))?;
    if !root.add(slot, 0, Arc::new(Mutex::new(dev))) {
        return Err(Error::Devices(format!("{label}: PCI slot {slot} taken")));
    }
    log::info!("{label}: virtio-net with {} queue pairs at PCI 00:{slot:02x}.0", nic.queues);
    let mac = api::machine::format_mac(&nic.mac);
    let detail = format!("tap {}, MAC {mac}, {} queue pair(s), data path {path}", nic.tap, nic.queues);
    pci.reg.add(id, "virtio-net", Some((slot, 0)), &detail)?;
    pci.reg.add_nic_stats(id, in_kernel, stats);
    Ok(Arc::new(Mutex::new(subscriber)))
}
