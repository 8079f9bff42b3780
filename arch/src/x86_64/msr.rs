// SPDX-License-Identifier: Apache-2.0
//! Model-specific registers set before the first instruction of each vCPU.

use hypervisor::MsrEntry;

/// IA32_SYSENTER_CS.
pub const MSR_IA32_SYSENTER_CS: u32 = 0x174;
/// IA32_SYSENTER_ESP.
pub const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
/// IA32_SYSENTER_EIP.
pub const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
/// STAR (SYSCALL segments).
pub const MSR_STAR: u32 = 0xc000_0081;
/// LSTAR (64-bit SYSCALL target).
pub const MSR_LSTAR: u32 = 0xc000_0082;
/// CSTAR (compat SYSCALL target).
pub const MSR_CSTAR: u32 = 0xc000_0083;
/// SYSCALL flag mask.
pub const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
/// Kernel GS base (SWAPGS).
pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// Time-stamp counter.
pub const MSR_IA32_TSC: u32 = 0x10;
/// IA32_MISC_ENABLE.
pub const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
/// MTRR default type.
pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;

/// IA32_MISC_ENABLE bit 0: fast string operations.
const MISC_ENABLE_FAST_STRING: u64 = 1;
/// MTRRs enabled (bit 11), default memory type write-back (6).
const MTRR_ENABLE_WRITEBACK: u64 = (1 << 11) | 6;

/// The MSRs every vCPU starts with, limited to those the backend can set (`supported`).
pub fn boot_msrs(supported: &[u32]) -> Vec<MsrEntry> {
    let wanted = [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        (MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITEBACK),
    ];
    wanted
        .iter()
        .filter(|(index, _)| supported.contains(index))
        .map(|&(index, data)| MsrEntry { index, data, ..Default::default() })
        .collect()
}

/// MSRs a guest changes that a machine reset must put back to their power-on values, on
/// top of [`boot_msrs`]: KVM's paravirtual MSRs above all (a kvmclock or steal-time area left
/// enabled across a reset would have KVM keep writing into memory the next boot uses), then
/// PAT, the MTRRs, the TSC deadline and adjust registers, TSC_AUX and SPEC_CTRL.
pub fn reset_msr_candidates(supported: &[u32]) -> Vec<u32> {
    const KVM_PV: [u32; 10] = [
        0x11,        // MSR_KVM_WALL_CLOCK
        0x12,        // MSR_KVM_SYSTEM_TIME
        0x4b56_4d00, // MSR_KVM_WALL_CLOCK_NEW
        0x4b56_4d01, // MSR_KVM_SYSTEM_TIME_NEW
        0x4b56_4d02, // MSR_KVM_ASYNC_PF_EN
        0x4b56_4d03, // MSR_KVM_STEAL_TIME
        0x4b56_4d04, // MSR_KVM_PV_EOI_EN
        0x4b56_4d05, // MSR_KVM_POLL_CONTROL
        0x4b56_4d06, // MSR_KVM_ASYNC_PF_INT
        0x4b56_4d07, // MSR_KVM_ASYNC_PF_ACK
    ];
    const OTHERS: [u32; 6] = [
        0x277,       // IA32_PAT
        0x6e0,       // IA32_TSC_DEADLINE
        0x3b,        // IA32_TSC_ADJUST
        0xc000_0103, // TSC_AUX
        0x48,        // IA32_SPEC_CTRL
        0x250,       // MTRR fixed 64K_00000
    ];
    // Variable MTRR base/mask pairs and the other fixed-range MTRRs.
    let mtrrs = (0x200..0x210).chain([0x258, 0x259]).chain(0x268..0x270);
    let mut wanted: Vec<u32> = boot_msrs(supported).iter().map(|e| e.index).collect();
    wanted.extend(KVM_PV.iter().chain(OTHERS.iter()).copied().chain(mtrrs));
    wanted.retain(|index| supported.contains(index));
    wanted.dedup();
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_msrs_are_the_supported_ones_with_kvmclock_first_class() {
        let supported = [MSR_IA32_TSC, 0x4b56_4d01, 0x277, 0x205, 0x9999];
        let msrs = reset_msr_candidates(&supported);
        assert_eq!(msrs, vec![MSR_IA32_TSC, 0x4b56_4d01, 0x277, 0x205]);
    }

    #[test]
    fn only_supported_msrs_are_set() {
        let msrs = boot_msrs(&[MSR_IA32_TSC, MSR_IA32_MISC_ENABLE, 0x1234]);
        assert_eq!(msrs.len(), 2);
        assert_eq!(msrs[0].index, MSR_IA32_TSC);
        assert_eq!(msrs[1].data, MISC_ENABLE_FAST_STRING);
        assert_eq!(boot_msrs(&[]).len(), 0);
    }
}
