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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_supported_msrs_are_set() {
        let msrs = boot_msrs(&[MSR_IA32_TSC, MSR_IA32_MISC_ENABLE, 0x1234]);
        assert_eq!(msrs.len(), 2);
        assert_eq!(msrs[0].index, MSR_IA32_TSC);
        assert_eq!(msrs[1].data, MISC_ENABLE_FAST_STRING);
        assert_eq!(boot_msrs(&[]).len(), 0);
    }
}
