// SPDX-License-Identifier: Apache-2.0
//! In-kernel PIC, IOAPIC and PIT state: read at power-on, changed, written back (what a
//! machine reset does), and through JSON (skipped without /dev/kvm).

mod common;

use hypervisor::PlatformState;

/// The IOAPIC's chip id in `kvm_irqchip`.
const CHIP_IOAPIC: usize = 2;

fn ioapic_redirection(state: &PlatformState, pin: usize) -> u64 {
    // SAFETY: chip 2 is the IOAPIC, so `ioapic` is the variant KVM filled in.
    unsafe { state.irqchips[CHIP_IOAPIC].chip.ioapic.redirtbl[pin].bits }
}

#[test]
fn writing_the_power_on_state_back_undoes_guest_programming() {
    let Some(hv) = common::kvm() else { return };
    let vm = common::pc_vm(&hv);
    let power_on = vm.platform_state().unwrap();
    assert_eq!(power_on.irqchips.len(), 3);
    assert_eq!(power_on.irqchips[CHIP_IOAPIC].chip_id, 2);
    // After KVM_CREATE_IRQCHIP every IOAPIC pin is masked.
    assert_ne!(ioapic_redirection(&power_on, 4) & (1 << 16), 0);

    // What a guest leaves behind: pin 4 unmasked to vector 0x24, PIT channel 0 reprogrammed.
    let mut programmed = power_on.clone();
    // SAFETY: as above, chip 2 is the IOAPIC.
    unsafe { programmed.irqchips[CHIP_IOAPIC].chip.ioapic.redirtbl[4].bits = 0x24 };
    programmed.pit.channels[0].count = 1193;
    programmed.pit.channels[0].mode = 2;
    vm.set_platform_state(&programmed).unwrap();
    let read = vm.platform_state().unwrap();
    assert_eq!(ioapic_redirection(&read, 4), 0x24);
    assert_eq!(read.pit.channels[0].count, 1193);

    // The reset: the power-on state again, after a trip through JSON (a snapshot file).
    let json = serde_json::to_string(&power_on).unwrap();
    let restored: PlatformState = serde_json::from_str(&json).unwrap();
    vm.set_platform_state(&restored).unwrap();
    let read = vm.platform_state().unwrap();
    assert_eq!(ioapic_redirection(&read, 4), ioapic_redirection(&power_on, 4));
    assert_eq!(read.pit.channels[0].count, power_on.pit.channels[0].count);
    assert_eq!(read.pit.channels[0].mode, power_on.pit.channels[0].mode);
}
