// SPDX-License-Identifier: Apache-2.0
//! GSI routing, irqfds, MSIs and ioeventfds on a real VM (skipped without /dev/kvm).

mod common;

use hypervisor::{pc_default_routes, Error, IoEventAddress, IrqRoute, LapicState, Vcpu};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const MSI_GSI: u32 = 24;
const MSI_ADDRESS: u64 = 0xfee0_0000;
const MSI_DATA: u32 = 0x31;

/// The LAPIC spurious-interrupt vector register, whose bit 8 enables the APIC.
const APIC_SVR: usize = 0xf0;
/// The first of the eight interrupt request registers (32 vectors each, 16 bytes apart).
const APIC_IRR: usize = 0x200;

fn lapic_reg(lapic: &LapicState, offset: usize) -> u32 {
    let bytes: Vec<u8> = lapic.regs[offset..offset + 4].iter().map(|&b| b as u8).collect();
    u32::from_le_bytes(bytes.try_into().unwrap())
}

fn set_lapic_reg(lapic: &mut LapicState, offset: usize, value: u32) {
    for (dst, src) in lapic.regs[offset..offset + 4].iter_mut().zip(value.to_le_bytes()) {
        *dst = src as _;
    }
}

fn requested(vcpu: &dyn Vcpu, vector: u32) -> bool {
    let irr = lapic_reg(&vcpu.lapic().unwrap(), APIC_IRR + (vector as usize / 32) * 0x10);
    irr & (1 << (vector % 32)) != 0
}

#[test]
fn msi_route_takes_an_irqfd() {
    let Some(hv) = common::kvm() else { return };
    let vm = common::pc_vm(&hv);
    let vcpu = vm.create_vcpu(0).unwrap();
    // vCPU 0 is the MSIs' destination (APIC ID 0); a software-disabled LAPIC would drop them.
    let mut lapic = vcpu.lapic().unwrap();
    set_lapic_reg(&mut lapic, APIC_SVR, 0x1ff);
    vcpu.set_lapic(&lapic).unwrap();

    let mut routes = pc_default_routes();
    routes.push(IrqRoute::Msi { gsi: MSI_GSI, address: MSI_ADDRESS, data: MSI_DATA });
    vm.set_gsi_routing(&routes).unwrap();

    let irqfd = EventFd::new(EFD_NONBLOCK).unwrap();
    vm.register_irqfd(&irqfd, MSI_GSI).unwrap();
    assert!(!requested(vcpu.as_ref(), MSI_DATA));
    irqfd.write(1).unwrap();
    assert!(requested(vcpu.as_ref(), MSI_DATA), "the irqfd's MSI reached the LAPIC");
    vm.unregister_irqfd(&irqfd, MSI_GSI).unwrap();

    vm.signal_msi(MSI_ADDRESS, MSI_DATA + 1).unwrap();
    assert!(requested(vcpu.as_ref(), MSI_DATA + 1), "KVM_SIGNAL_MSI reached the LAPIC");

    // A level-triggered legacy line with an EOI notification.
    let level = EventFd::new(EFD_NONBLOCK).unwrap();
    let resample = EventFd::new(EFD_NONBLOCK).unwrap();
    vm.register_irqfd_with_resample(&level, &resample, 10).unwrap();
    vm.unregister_irqfd(&level, 10).unwrap();
}

#[test]
fn routing_table_size_is_checked() {
    let Some(hv) = common::kvm() else { return };
    let vm = common::pc_vm(&hv);
    let routes: Vec<IrqRoute> =
        (0..4097).map(|gsi| IrqRoute::Msi { gsi, address: MSI_ADDRESS, data: MSI_DATA }).collect();
    assert!(matches!(vm.set_gsi_routing(&routes), Err(Error::TooManyRoutes(4097))));
}

#[test]
fn ioeventfds_register_and_unregister() {
    let Some(hv) = common::kvm() else { return };
    let vm = common::pc_vm(&hv);
    let fd = EventFd::new(EFD_NONBLOCK).unwrap();
    let pio = IoEventAddress::Pio(0x1000);
    let mmio = IoEventAddress::Mmio(0xd000_0000);

    vm.register_ioeventfd(&fd, pio, None).unwrap();
    vm.register_ioeventfd(&fd, mmio, Some(5)).unwrap();
    vm.unregister_ioeventfd(&fd, pio, None).unwrap();
    vm.unregister_ioeventfd(&fd, mmio, Some(5)).unwrap();

    assert!(matches!(vm.unregister_ioeventfd(&fd, pio, None), Err(Error::Ioctl { .. })));
    assert!(matches!(vm.unregister_ioeventfd(&fd, mmio, Some(5)), Err(Error::Ioctl { .. })));
    assert!(matches!(vm.register_ioeventfd(&fd, mmio, Some(1 << 32)), Err(Error::DatamatchTooWide(_))));
}
