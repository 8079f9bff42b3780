// SPDX-License-Identifier: Apache-2.0
//! A KVM VM: memory slots, the in-kernel PC platform, interrupt routing, irqfds and ioeventfds.

use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip, kvm_irq_routing_msi,
    kvm_irqchip, kvm_msi, kvm_pit_config, kvm_userspace_memory_region, KvmIrqRouting, KVM_IRQCHIP_IOAPIC,
    KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{IoEventAddress as KvmIoEventAddress, NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

use super::vcpu::KvmVcpu;
use crate::{Error, IoEventAddress, IrqChip, IrqRoute, PlatformState, Result, Vcpu, Vm};

/// A KVM VM file descriptor.
pub struct KvmVm {
    fd: VmFd,
}

impl KvmVm {
    pub(super) fn new(fd: VmFd) -> Self {
        KvmVm { fd }
    }
}

impl Vm for KvmVm {
    unsafe fn map_memory(
        &self,
        slot: u32,
        guest_addr: u64,
        size: u64,
        host_addr: u64,
        read_only: bool,
    ) -> Result<()> {
        let region = kvm_userspace_memory_region {
            slot,
            flags: if read_only { kvm_bindings::KVM_MEM_READONLY } else { 0 },
            guest_phys_addr: guest_addr,
            memory_size: size,
            userspace_addr: host_addr,
        };
        // SAFETY: the caller guarantees the host range stays valid for the VM's lifetime.
        unsafe { self.fd.set_user_memory_region(region) }.map_err(Error::ioctl("KVM_SET_USER_MEMORY_REGION"))
    }

    fn unmap_memory(&self, slot: u32) -> Result<()> {
        let region = kvm_userspace_memory_region { slot, ..Default::default() };
        // SAFETY: a zero-sized region deletes the slot; no host memory is referenced.
        unsafe { self.fd.set_user_memory_region(region) }.map_err(Error::ioctl("KVM_SET_USER_MEMORY_REGION"))
    }

    fn create_pc_platform(&self, tss_addr: u64, identity_map_addr: u64) -> Result<()> {
        self.fd
            .set_identity_map_address(identity_map_addr)
            .map_err(Error::ioctl("KVM_SET_IDENTITY_MAP_ADDR"))?;
        self.fd.set_tss_address(tss_addr as usize).map_err(Error::ioctl("KVM_SET_TSS_ADDR"))?;
        self.fd.create_irq_chip().map_err(Error::ioctl("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            // A dummy speaker port keeps port 0x61 reads consistent for guests that poll it.
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        self.fd.create_pit2(pit).map_err(Error::ioctl("KVM_CREATE_PIT2"))
    }

    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>> {
        let fd = self.fd.create_vcpu(u64::from(id)).map_err(Error::ioctl("KVM_CREATE_VCPU"))?;
        Ok(Box::new(KvmVcpu::new(fd, &self.fd)))
    }

    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()> {
        self.fd.register_irqfd(fd, gsi).map_err(Error::ioctl("KVM_IRQFD"))
    }

    fn set_irq_line(&self, irq: u32, level: bool) -> Result<()> {
        self.fd.set_irq_line(irq, level).map_err(Error::ioctl("KVM_IRQ_LINE"))
    }

    fn register_ioeventfd(&self, fd: &EventFd, addr: IoEventAddress, datamatch: Option<u64>) -> Result<()> {
        let addr = kvm_io_event_address(addr);
        match datamatch_u32(datamatch)? {
            None => self.fd.register_ioevent(fd, &addr, NoDatamatch),
            Some(value) => self.fd.register_ioevent(fd, &addr, value),
        }
        .map_err(Error::ioctl("KVM_IOEVENTFD"))
    }

    fn unregister_ioeventfd(&self, fd: &EventFd, addr: IoEventAddress, datamatch: Option<u64>) -> Result<()> {
        let addr = kvm_io_event_address(addr);
        match datamatch_u32(datamatch)? {
            None => self.fd.unregister_ioevent(fd, &addr, NoDatamatch),
            Some(value) => self.fd.unregister_ioevent(fd, &addr, value),
        }
        .map_err(Error::ioctl("KVM_IOEVENTFD (deassign)"))
    }

    fn register_irqfd_with_resample(&self, fd: &EventFd, resample: &EventFd, gsi: u32) -> Result<()> {
        self.fd.register_irqfd_with_resample(fd, resample, gsi).map_err(Error::ioctl("KVM_IRQFD (resample)"))
    }

    fn unregister_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()> {
        self.fd.unregister_irqfd(fd, gsi).map_err(Error::ioctl("KVM_IRQFD (deassign)"))
    }

    fn set_gsi_routing(&self, routes: &[IrqRoute]) -> Result<()> {
        let entries: Vec<kvm_irq_routing_entry> = routes.iter().map(kvm_route).collect();
        let table = KvmIrqRouting::from_entries(&entries).map_err(|_| Error::TooManyRoutes(routes.len()))?;
        self.fd.set_gsi_routing(&table).map_err(Error::ioctl("KVM_SET_GSI_ROUTING"))
    }

    fn signal_msi(&self, address: u64, data: u32) -> Result<()> {
        let msi = kvm_msi {
            address_lo: address as u32,
            address_hi: (address >> 32) as u32,
            data,
            ..Default::default()
        };
        // The ioctl returns 0 when the guest blocked the message, which is not an error.
        self.fd.signal_msi(msi).map(|_| ()).map_err(Error::ioctl("KVM_SIGNAL_MSI"))
    }

    fn platform_state(&self) -> Result<PlatformState> {
        let mut irqchips = Vec::with_capacity(3);
        for chip_id in [KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC] {
            let mut chip = kvm_irqchip { chip_id, ..Default::default() };
            self.fd.get_irqchip(&mut chip).map_err(Error::ioctl("KVM_GET_IRQCHIP"))?;
            irqchips.push(chip);
        }
        let pit = self.fd.get_pit2().map_err(Error::ioctl("KVM_GET_PIT2"))?;
        Ok(PlatformState { irqchips, pit })
    }

    fn set_platform_state(&self, state: &PlatformState) -> Result<()> {
        for chip in &state.irqchips {
            self.fd.set_irqchip(chip).map_err(Error::ioctl("KVM_SET_IRQCHIP"))?;
        }
        self.fd.set_pit2(&state.pit).map_err(Error::ioctl("KVM_SET_PIT2"))
    }
}

fn kvm_io_event_address(addr: IoEventAddress) -> KvmIoEventAddress {
    match addr {
        IoEventAddress::Pio(port) => KvmIoEventAddress::Pio(port),
        IoEventAddress::Mmio(gpa) => KvmIoEventAddress::Mmio(gpa),
    }
}

/// The 4-byte value a datamatch ioeventfd compares with (KVM matches only accesses of the
/// registered length, and a `u32` datamatch registers 4 bytes).
fn datamatch_u32(datamatch: Option<u64>) -> Result<Option<u32>> {
    datamatch.map(|v| u32::try_from(v).map_err(|_| Error::DatamatchTooWide(v))).transpose()
}

fn kvm_route(route: &IrqRoute) -> kvm_irq_routing_entry {
    match *route {
        IrqRoute::Irqchip { gsi, chip, pin } => {
            let irqchip = match chip {
                IrqChip::PicMaster => KVM_IRQCHIP_PIC_MASTER,
                IrqChip::PicSlave => KVM_IRQCHIP_PIC_SLAVE,
                IrqChip::Ioapic => KVM_IRQCHIP_IOAPIC,
            };
            kvm_irq_routing_entry {
                gsi,
                type_: KVM_IRQ_ROUTING_IRQCHIP,
                u: kvm_irq_routing_entry__bindgen_ty_1 { irqchip: kvm_irq_routing_irqchip { irqchip, pin } },
                ..Default::default()
            }
        }
        IrqRoute::Msi { gsi, address, data } => kvm_irq_routing_entry {
            gsi,
            type_: KVM_IRQ_ROUTING_MSI,
            u: kvm_irq_routing_entry__bindgen_ty_1 {
                msi: kvm_irq_routing_msi {
                    address_lo: address as u32,
                    address_hi: (address >> 32) as u32,
                    data,
                    ..Default::default()
                },
            },
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datamatch_must_fit_32_bits() {
        assert_eq!(datamatch_u32(None).unwrap(), None);
        assert_eq!(datamatch_u32(Some(0xffff_ffff)).unwrap(), Some(0xffff_ffff));
        assert!(matches!(datamatch_u32(Some(1 << 32)), Err(Error::DatamatchTooWide(0x1_0000_0000))));
    }

    #[test]
    fn msi_route_splits_the_address() {
        let entry = kvm_route(&IrqRoute::Msi { gsi: 24, address: 0x1_fee0_1000, data: 0x4031 });
        assert_eq!((entry.gsi, entry.type_), (24, KVM_IRQ_ROUTING_MSI));
        // SAFETY: the entry was built as an MSI route, so `msi` is the initialized variant.
        let msi = unsafe { entry.u.msi };
        assert_eq!((msi.address_lo, msi.address_hi, msi.data), (0xfee0_1000, 1, 0x4031));
    }

    #[test]
    fn irqchip_route_names_the_chip() {
        let entry = kvm_route(&IrqRoute::Irqchip { gsi: 9, chip: IrqChip::PicSlave, pin: 1 });
        assert_eq!((entry.gsi, entry.type_), (9, KVM_IRQ_ROUTING_IRQCHIP));
        // SAFETY: the entry was built as an irqchip route, so `irqchip` is the initialized variant.
        let irqchip = unsafe { entry.u.irqchip };
        assert_eq!((irqchip.irqchip, irqchip.pin), (KVM_IRQCHIP_PIC_SLAVE, 1));
    }
}
