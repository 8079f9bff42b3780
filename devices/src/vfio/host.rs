// SPDX-License-Identifier: Apache-2.0
//! The host side of assigned devices on rust-vmm's vfio-ioctls: one VFIO container for the
//! VM (one IOMMU domain; every guest RAM region mapped for DMA at its guest-physical address,
//! done once, after the first group joined it), and per device its group and device fd.
//! Region accesses are pread/pwrite on a duplicate of the device fd; mmappable regions are
//! mmapped once and unmapped when the device goes.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use vfio_bindings::bindings::vfio::{
    VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP,
    VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_ioctls::{VfioContainer, VfioDevice, VfioError, VfioOps};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::backend::{BackendError, IrqKind, RegionInfo, VfioBackend};

/// Errors while opening an assigned device.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// /dev/vfio/vfio could not be opened or is not usable.
    #[error("cannot open the VFIO container: {0} (vmctl host check)")]
    Container(String),
    /// The device or its group could not be opened.
    #[error("{0}")]
    Device(String),
    /// Guest RAM could not be mapped for DMA.
    #[error("cannot map guest RAM for DMA through the IOMMU: {0}")]
    DmaMap(String),
}

/// The VM's VFIO container and the guest RAM mapped in it.
pub struct VfioHost {
    container: Arc<VfioContainer>,
    mem: GuestMemoryMmap,
    mapped: Mutex<bool>,
}

impl VfioHost {
    /// Opens /dev/vfio/vfio for a VM with guest RAM `mem`.
    pub fn new(mem: GuestMemoryMmap) -> Result<Self, HostError> {
        let container = VfioContainer::new(None).map_err(|e| {
            HostError::Container(match &e {
                VfioError::OpenContainer(io) if io.kind() == std::io::ErrorKind::NotFound => {
                    "/dev/vfio/vfio does not exist: load the modules with modprobe vfio-pci".to_string()
                }
                VfioError::OpenContainer(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                    "no permission to open /dev/vfio/vfio: run as root".to_string()
                }
                e => e.to_string(),
            })
        })?;
        Ok(VfioHost { container: Arc::new(container), mem, mapped: Mutex::new(false) })
    }

    /// Opens the device at `sysfs` (/sys/bus/pci/devices/DDDD:BB:DD.F) through its IOMMU
    /// group (/dev/vfio/N, opened by vfio-ioctls here: the one place the vmm opens it), and
    /// maps guest RAM for DMA if no earlier device did.
    pub fn open(&self, sysfs: &Path, group: u32) -> Result<HostDevice, HostError> {
        let ops: Arc<dyn VfioOps> = self.container.clone();
        let device =
            VfioDevice::new(sysfs, ops, false).map_err(|e| HostError::Device(explain(&e, sysfs, group)))?;
        let mut mapped = crate::bus::lock(&self.mapped);
        if !*mapped {
            // SAFETY: the mappings last as long as the container, which every device holds and
            // which is closed (removing them all) when the last device is dropped; the machine
            // drops its devices before guest RAM. The VMM touches guest RAM only through
            // vm-memory's volatile accesses.
            unsafe { self.container.vfio_map_guest_memory(&self.mem) }
                .map_err(|e| HostError::DmaMap(e.to_string()))?;
            *mapped = true;
            log::info!(
                "vfio: guest RAM mapped for DMA ({} regions, {} MiB)",
                self.mem.num_regions(),
                self.mem.iter().map(vm_memory::GuestMemoryRegion::len).sum::<u64>() >> 20
            );
        }
        HostDevice::new(device, sysfs.to_path_buf())
    }
}

/// A user's message for a vfio-ioctls error while opening `sysfs` in group `group`.
fn explain(e: &VfioError, sysfs: &Path, group: u32) -> String {
    let addr = sysfs.file_name().map_or_else(|| sysfs.display().to_string(), |n| n.to_string_lossy().into());
    match e {
        VfioError::OpenGroup(io, _) if io.raw_os_error() == Some(libc::EBUSY) => format!(
            "{addr} is in use by another VM: IOMMU group {group} (/dev/vfio/{group}) is open in another process"
        ),
        VfioError::OpenGroup(io, _) if io.kind() == std::io::ErrorKind::NotFound => {
            format!("/dev/vfio/{group} does not exist: bind {addr} to vfio-pci first (vmctl hostdev bind {addr})")
        }
        VfioError::OpenGroup(io, _) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            format!("no permission to open /dev/vfio/{group}: run as root or give this user the group's device")
        }
        VfioError::GroupViable => format!(
            "IOMMU group {group} of {addr} is not viable: other devices in it are still bound to host drivers; \
             bind them to vfio-pci too or unbind them (vmctl hostdev list)"
        ),
        _ => format!("{addr}: {e}"),
    }
}

/// One opened device.
pub struct HostDevice {
    /// A duplicate of the device fd for pread/pwrite/mmap at region offsets. Declared (so
    /// dropped) before `device`: `VfioDevice`'s drop closes its fd and then takes the group out
    /// of the container (`VFIO_GROUP_UNSET_CONTAINER`), which the kernel refuses with EBUSY
    /// while any fd of the device is still open; the group would then stay attached.
    file: File,
    device: VfioDevice,
    sysfs: PathBuf,
    /// Mappings made by `mmap`: (region, host address, length).
    maps: Vec<(usize, usize, usize)>,
    /// The expansion ROM is not shown (`rom=off`).
    hide_rom: bool,
}

impl HostDevice {
    fn new(device: VfioDevice, sysfs: PathBuf) -> Result<Self, HostError> {
        // SAFETY: the device fd is open for as long as `device`, which outlives this borrow.
        let borrowed = unsafe { BorrowedFd::borrow_raw(device.as_raw_fd()) };
        let file = borrowed
            .try_clone_to_owned()
            .map(File::from)
            .map_err(|e| HostError::Device(format!("{}: dup of the device fd: {e}", sysfs.display())))?;
        Ok(HostDevice { file, device, sysfs, maps: Vec::new(), hide_rom: false })
    }

    /// Hides the expansion ROM from the guest (its firmware will not run it).
    pub fn hide_rom(&mut self) {
        self.hide_rom = true;
    }

    fn region_span(&self, index: usize, offset: u64, len: usize) -> Result<u64, BackendError> {
        let out = || BackendError::OutOfRange { index, offset, len };
        let i = u32::try_from(index).map_err(|_| out())?;
        let size = self.device.get_region_size(i);
        let end = offset.checked_add(len as u64).ok_or_else(out)?;
        if index > 8 || end > size {
            return Err(out());
        }
        self.device.get_region_offset(i).checked_add(offset).ok_or_else(out)
    }
}

fn irq_index(kind: IrqKind) -> u32 {
    match kind {
        IrqKind::Intx => VFIO_PCI_INTX_IRQ_INDEX,
        IrqKind::Msi => VFIO_PCI_MSI_IRQ_INDEX,
        IrqKind::Msix => VFIO_PCI_MSIX_IRQ_INDEX,
    }
}

fn irq_err(e: VfioError) -> BackendError {
    BackendError::Irq(e.to_string())
}

impl VfioBackend for HostDevice {
    fn region(&self, index: usize) -> Option<RegionInfo> {
        let i = u32::try_from(index).ok().filter(|&i| i <= 8)?;
        if self.hide_rom && index == super::backend::ROM_REGION {
            return None;
        }
        let size = self.device.get_region_size(i);
        let flags = self.device.get_region_flags(i);
        (size > 0).then_some(RegionInfo {
            size,
            readable: flags & VFIO_REGION_INFO_FLAG_READ != 0,
            writable: flags & VFIO_REGION_INFO_FLAG_WRITE != 0,
            mmappable: flags & VFIO_REGION_INFO_FLAG_MMAP != 0,
        })
    }

    fn read(&self, index: usize, offset: u64, data: &mut [u8]) -> Result<(), BackendError> {
        let at = self.region_span(index, offset, data.len())?;
        self.file.read_exact_at(data, at).map_err(|source| BackendError::Host {
            what: format!("{}: read of region {index} at {offset:#x}", self.sysfs.display()),
            source,
        })
    }

    fn write(&self, index: usize, offset: u64, data: &[u8]) -> Result<(), BackendError> {
        let at = self.region_span(index, offset, data.len())?;
        self.file.write_all_at(data, at).map_err(|source| BackendError::Host {
            what: format!("{}: write of region {index} at {offset:#x}", self.sysfs.display()),
            source,
        })
    }

    fn mmap(&mut self, index: usize) -> Option<u64> {
        if let Some(&(_, addr, _)) = self.maps.iter().find(|m| m.0 == index) {
            return Some(addr as u64);
        }
        let info = self.region(index).filter(|r| r.mmappable)?;
        let len = usize::try_from(info.size).ok()?;
        let offset = libc::off_t::try_from(self.device.get_region_offset(index as u32)).ok()?;
        let mut prot = 0;
        if info.readable {
            prot |= libc::PROT_READ;
        }
        if info.writable {
            prot |= libc::PROT_WRITE;
        }
        // SAFETY: a new shared mapping of the device fd at the region's offset, at an address
        // the kernel picks; nothing else is touched. It is unmapped in `drop`.
        let addr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, self.file.as_raw_fd(), offset)
        };
        if addr == libc::MAP_FAILED {
            crate::warn_limited!(
                "{}: region {index} cannot be mmapped ({}); its accesses are trapped",
                self.sysfs.display(),
                std::io::Error::last_os_error()
            );
            return None;
        }
        self.maps.push((index, addr as usize, len));
        Some(addr as u64)
    }

    fn irq_count(&self, kind: IrqKind) -> u32 {
        self.device.get_irq_info(irq_index(kind)).map_or(0, |i| i.count)
    }

    fn enable_intx(&self, trigger: &EventFd, resample: &EventFd) -> Result<(), BackendError> {
        self.device.enable_irq(VFIO_PCI_INTX_IRQ_INDEX, vec![trigger]).map_err(irq_err)?;
        self.device.set_irq_resample_fd(VFIO_PCI_INTX_IRQ_INDEX, vec![resample]).map_err(irq_err)
    }

    fn enable_msi(&self, kind: IrqKind, fds: &[&EventFd]) -> Result<(), BackendError> {
        self.device.enable_irq(irq_index(kind), fds.to_vec()).map_err(irq_err)
    }

    fn disable_irq(&self, kind: IrqKind) -> Result<(), BackendError> {
        self.device.disable_irq(irq_index(kind)).map_err(irq_err)
    }

    fn reset(&self) -> bool {
        // VFIO_DEVICE_RESET: _IO(VFIO_TYPE, VFIO_BASE + 11).
        const VFIO_DEVICE_RESET: libc::c_ulong = (0x3b << 8) | (100 + 11);
        // SAFETY: an ioctl without arguments on the device fd we own.
        let ret = unsafe { libc::ioctl(self.file.as_raw_fd(), VFIO_DEVICE_RESET as _) };
        if ret < 0 {
            log::debug!("{}: VFIO_DEVICE_RESET: {}", self.sysfs.display(), std::io::Error::last_os_error());
        }
        ret == 0
    }
}

impl Drop for HostDevice {
    fn drop(&mut self) {
        for &(index, addr, len) in &self.maps {
            // SAFETY: a mapping made in `mmap` and not unmapped before; the guest no longer
            // runs (the device is dropped with the machine).
            if unsafe { libc::munmap(addr as *mut libc::c_void, len) } != 0 {
                log::debug!("{}: munmap of region {index} failed", self.sysfs.display());
            }
        }
    }
}
