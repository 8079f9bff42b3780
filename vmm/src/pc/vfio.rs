// SPDX-License-Identifier: Apache-2.0
//! Assigned host PCI devices on the PC machine (`--device vfio=ADDR`): the host is checked
//! through sysfs (IOMMU group, driver, the rest of the group), the device opened through one
//! VFIO container for the VM (guest RAM mapped for DMA once), put in the first free slot from
//! [`super::virtio::FIRST_VIRTIO_SLOT`], its MSI/MSI-X vectors taken from the interrupt
//! manager, and its INTx# wired to the PIIX3 PIRQ of its slot.
//!
//! INTx#: the host signals an eventfd when the device asserts the line (and masks it); a small
//! thread of the device's relays that to a KVM irqfd with resample on the ISA IRQ the PIRQ is
//! routed to now (registered again when the guest changed the route), so the guest's EOI
//! lowers the line and signals the resample eventfd, which the host takes as the unmask,
//! without the vmm. The relay is what lets the guest reprogram the PIIX3 routes at any time.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use api::hostdev::{HostDevConfig, PciAddress};
use devices::bus::lock;
use devices::interrupt::InterruptManager;
use devices::pci::piix3::PirqRouter;
use devices::pci::PciRoot;
use devices::vfio::{IntxEventfds, VfioHost, VfioPciDevice};
use hypervisor::Vm;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

use crate::board::Error;

/// Drivers a device of the same IOMMU group may have for the group to be assignable (as the
/// kernel's own viability check allows).
const GROUP_SAFE_DRIVERS: [&str; 3] = ["vfio-pci", "pci-stub", "pcieport"];

fn driver_of(dev: &Path) -> Option<String> {
    let link = std::fs::read_link(dev.join("driver")).ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Checks that `addr` can be handed to a guest, reading the sysfs tree at `sysfs` (`/sys`):
/// the device exists, has an IOMMU group (the IOMMU is on), is bound to vfio-pci, and every
/// other device of its group is bound to vfio-pci or to no driver. Returns the device's sysfs
/// directory and its group. Each error says how to fix it.
pub fn check_host_device(sysfs: &Path, addr: &PciAddress) -> Result<(PathBuf, u32), String> {
    let dev = sysfs.join("bus/pci/devices").join(addr.to_string());
    if !dev.exists() {
        return Err(format!("there is no PCI device {addr} on this host (see vmctl hostdev list)"));
    }
    let group = std::fs::read_link(dev.join("iommu_group"))
        .ok()
        .and_then(|l| l.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u32>().ok()))
        .ok_or_else(|| {
            format!(
                "{addr} has no IOMMU group: the IOMMU is off; enable VT-d (or AMD-Vi) in the firmware and boot \
                 the host with intel_iommu=on (or amd_iommu=on) (see vmctl host check)"
            )
        })?;
    match driver_of(&dev) {
        Some(d) if d == "vfio-pci" => {}
        Some(d) => return Err(format!("{addr} is bound to {d}, not vfio-pci: vmctl hostdev bind {addr}")),
        None => return Err(format!("{addr} is bound to no driver: vmctl hostdev bind {addr}")),
    }
    let members = sysfs.join("kernel/iommu_groups").join(group.to_string()).join("devices");
    let mut busy = Vec::new();
    for entry in std::fs::read_dir(&members).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == addr.to_string() {
            continue;
        }
        if let Some(d) = driver_of(&sysfs.join("bus/pci/devices").join(&name)) {
            if !GROUP_SAFE_DRIVERS.contains(&d.as_str()) {
                busy.push(format!("{name} ({d})"));
            }
        }
    }
    if !busy.is_empty() {
        busy.sort();
        return Err(format!(
            "{addr} shares IOMMU group {group} with devices still bound to host drivers: {}; bind them to \
             vfio-pci too (vmctl hostdev bind ADDR) or unbind them",
            busy.join(", ")
        ));
    }
    Ok((dev, group))
}

/// The INTx# relay of one device (see the module documentation).
struct IntxRelay {
    trigger: EventFd,
    resample: EventFd,
    stop: EventFd,
    route: Arc<Mutex<IntxRoute>>,
    thread: Option<JoinHandle<()>>,
}

/// Where the relay raises the guest's line now.
struct IntxRoute {
    vm: Arc<dyn Vm>,
    irqfd: EventFd,
    resample: EventFd,
    router: Arc<PirqRouter>,
    pirq: usize,
    gsi: Option<u32>,
    label: String,
}

impl IntxRoute {
    /// The device asserted INTx#: raise the line on the PIRQ's current route.
    fn fire(&mut self) {
        let want = self.router.route(self.pirq).map(|irq| irq as u32);
        if want != self.gsi {
            self.lower();
            if let Some(gsi) = want {
                match self.vm.register_irqfd_with_resample(&self.irqfd, &self.resample, gsi) {
                    Ok(()) => {
                        log::debug!("{}: INTx# on IRQ {gsi}", self.label);
                        self.gsi = Some(gsi);
                    }
                    Err(e) => devices::warn_limited!("{}: INTx# irqfd on IRQ {gsi}: {e}", self.label),
                }
            }
        }
        if self.gsi.is_none() {
            // Unrouted: the host keeps the line masked until the device is reset.
            devices::warn_limited!("{}: INTx# asserted while PIRQ{} is not routed", self.label, self.pirq);
            return;
        }
        if let Err(e) = self.irqfd.write(1) {
            devices::warn_limited!("{}: INTx# irqfd: {e}", self.label);
        }
    }

    /// Lowers the guest's line: removing the last resample irqfd of a GSI deasserts it.
    fn lower(&mut self) {
        if let Some(gsi) = self.gsi.take() {
            if let Err(e) = self.vm.unregister_irqfd(&self.irqfd, gsi) {
                log::debug!("{}: INTx# irqfd off IRQ {gsi}: {e}", self.label);
            }
        }
    }
}

impl IntxRelay {
    fn start(label: &str, vm: Arc<dyn Vm>, router: Arc<PirqRouter>, slot: u8) -> std::io::Result<Self> {
        let nonblock = libc::EFD_NONBLOCK;
        let (trigger, resample, stop, irqfd) = (
            EventFd::new(nonblock)?,
            EventFd::new(nonblock)?,
            EventFd::new(nonblock)?,
            EventFd::new(nonblock)?,
        );
        let route = Arc::new(Mutex::new(IntxRoute {
            vm,
            irqfd,
            resample: resample.try_clone()?,
            router,
            pirq: PirqRouter::pirq(slot, 1),
            gsi: None,
            label: label.to_string(),
        }));
        let (t, s, r) = (trigger.try_clone()?, stop.try_clone()?, route.clone());
        let thread = std::thread::Builder::new().name(format!("{label}-intx")).spawn(move || {
            devices::sandbox::enter_or_warn(devices::sandbox::ThreadRole::VfioIntx);
            relay(&t, &s, &r)
        })?;
        Ok(IntxRelay { trigger, resample, stop, route, thread: Some(thread) })
    }
}

/// The relay thread: waits for the host's INTx# signal (or `stop`) and raises the line.
fn relay(trigger: &EventFd, stop: &EventFd, route: &Mutex<IntxRoute>) {
    loop {
        let mut fds = [
            libc::pollfd { fd: trigger.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: stop.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: `fds` is a valid array of two pollfds for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            devices::error_limited!("INTx# relay: poll: {}", std::io::Error::last_os_error());
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents != 0 && trigger.read().is_ok() {
            lock(route).fire();
        }
    }
}

impl IntxEventfds for IntxRelay {
    fn trigger(&self) -> &EventFd {
        &self.trigger
    }
    fn resample(&self) -> &EventFd {
        &self.resample
    }
    fn deassert(&self) {
        lock(&self.route).lower();
    }
}

impl Drop for IntxRelay {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        lock(&self.route).lower();
    }
}

/// Opens every `--device vfio=ADDR` and puts it on `root` in a free slot from `first_slot`,
/// INTx# through `router`. Guest RAM is mapped for DMA once, at the first device. The group
/// device /dev/vfio/N is opened only here, through [`VfioHost::open`]; when vmctld runs the
/// vmm unprivileged it will open the group and container itself and pass the descriptors.
pub fn attach_vfio_devices(
    root: &mut PciRoot,
    hostdevs: &[HostDevConfig],
    vm: &Arc<dyn Vm>,
    mem: &GuestMemoryMmap,
    interrupts: &dyn InterruptManager,
    router: &Arc<PirqRouter>,
    first_slot: u8,
) -> Result<(), Error> {
    if hostdevs.is_empty() {
        return Ok(());
    }
    let fail = |d: &HostDevConfig, why: String| Error::Devices(format!("device vfio={}: {why}", d.addr));
    // The host first (IOMMU, drivers, groups), for the most telling error.
    let mut found = Vec::new();
    for d in hostdevs {
        found.push(check_host_device(Path::new("/sys"), &d.addr).map_err(|e| fail(d, e))?);
    }
    let host = VfioHost::new(mem.clone()).map_err(|e| fail(&hostdevs[0], e.to_string()))?;
    for (i, (d, (sysfs, group))) in hostdevs.iter().zip(found).enumerate() {
        let mut dev = host.open(&sysfs, group).map_err(|e| fail(d, e.to_string()))?;
        if !d.rom {
            dev.hide_rom();
        }
        let slot = root.free_slot(first_slot).ok_or_else(|| fail(d, "no free PCI slot left".into()))?;
        let label = format!("hostdev{i}");
        let intx = IntxRelay::start(&label, vm.clone(), router.clone(), slot)
            .map_err(|e| fail(d, format!("INTx# relay: {e}")))?;
        let pci = VfioPciDevice::new(&label, Box::new(dev), interrupts, Some(Arc::new(intx)))
            .map_err(|e| fail(d, crate::error_chain(&e)))?;
        if !root.add(slot, 0, Arc::new(Mutex::new(pci))) {
            return Err(fail(d, format!("PCI slot {slot} taken")));
        }
        log::info!("{label}: host {} (IOMMU group {group}) at PCI 00:{slot:02x}.0", d.addr);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A sysfs tree: `devices` lists (address, group, driver).
    fn sysfs(name: &str, devices: &[(&str, Option<u32>, Option<&str>)]) -> PathBuf {
        let root = std::env::temp_dir().join(format!("vmm-vfio-sysfs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (addr, group, driver) in devices {
            let dev = root.join("bus/pci/devices").join(addr);
            std::fs::create_dir_all(&dev).unwrap();
            if let Some(g) = group {
                let gdir = root.join("kernel/iommu_groups").join(g.to_string()).join("devices");
                std::fs::create_dir_all(&gdir).unwrap();
                symlink(&dev, gdir.join(addr)).unwrap();
                symlink(root.join("kernel/iommu_groups").join(g.to_string()), dev.join("iommu_group"))
                    .unwrap();
            }
            if let Some(d) = driver {
                let ddir = root.join("bus/pci/drivers").join(d);
                std::fs::create_dir_all(&ddir).unwrap();
                symlink(&ddir, dev.join("driver")).unwrap();
            }
        }
        root
    }

    #[test]
    fn host_devices_are_checked_with_the_fix_in_the_message() {
        let root = sysfs(
            "check",
            &[
                ("0000:00:02.0", Some(3), Some("vfio-pci")),
                ("0000:00:03.0", Some(4), Some("e1000")),
                ("0000:00:04.0", None, Some("vfio-pci")),
                ("0000:00:05.0", Some(5), Some("vfio-pci")),
                ("0000:00:05.1", Some(5), Some("snd_hda_intel")),
                ("0000:00:06.0", Some(6), None),
                ("0000:00:07.0", Some(7), Some("vfio-pci")),
                ("0000:00:07.1", Some(7), None),
                ("0000:00:1c.0", Some(7), Some("pcieport")),
            ],
        );
        let check = |a: &str| check_host_device(&root, &a.parse().unwrap());
        let (dir, group) = check("0000:00:02.0").unwrap();
        assert_eq!((dir, group), (root.join("bus/pci/devices/0000:00:02.0"), 3));
        assert_eq!(check("00:07.0").unwrap().1, 7, "unbound and pcieport members are fine");
        let e = check("0000:00:03.0").unwrap_err();
        assert!(e.contains("bound to e1000") && e.contains("vmctl hostdev bind 0000:00:03.0"), "{e}");
        let e = check("0000:00:04.0").unwrap_err();
        assert!(e.contains("IOMMU is off") && e.contains("intel_iommu=on"), "{e}");
        let e = check("0000:00:05.0").unwrap_err();
        assert!(e.contains("shares IOMMU group 5") && e.contains("0000:00:05.1 (snd_hda_intel)"), "{e}");
        let e = check("0000:00:06.0").unwrap_err();
        assert!(e.contains("no driver"), "{e}");
        let e = check("0000:01:00.0").unwrap_err();
        assert!(e.contains("no PCI device 0000:01:00.0"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
