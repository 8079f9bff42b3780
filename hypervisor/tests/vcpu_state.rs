// SPDX-License-Identifier: Apache-2.0
//! vCPU state save and restore through JSON, between two VMs (skipped without /dev/kvm).

mod common;

use hypervisor::{Hypervisor, MsrEntry, Vcpu, VcpuState};

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;

const MSRS: &[(u32, u64)] = &[
    (MSR_IA32_SYSENTER_CS, 0x10),
    (MSR_IA32_SYSENTER_ESP, 0xffff_8880_0123_4000),
    (MSR_IA32_SYSENTER_EIP, 0xffff_ffff_8100_1000),
    (MSR_STAR, 0x0023_0010_0000_0000),
    (MSR_LSTAR, 0xffff_ffff_8100_2000),
    (MSR_KERNEL_GS_BASE, 0xffff_8880_0000_1000),
];

fn msr_indices() -> Vec<u32> {
    MSRS.iter().map(|&(index, _)| index).collect()
}

/// Gives `vcpu` values no reset state has.
fn make_distinctive(vcpu: &dyn Vcpu) {
    let mut regs = vcpu.regs().unwrap();
    regs.rax = 0x1111_2222_3333_4444;
    regs.rbx = 0x5555_6666_7777_8888;
    regs.r15 = 0x0f0f_0f0f_0f0f_0f0f;
    regs.rsp = 0x7000;
    regs.rip = 0x1234;
    regs.rflags = 0x2 | 0x200 | 0x4;
    vcpu.set_regs(&regs).unwrap();

    let mut sregs = vcpu.sregs().unwrap();
    sregs.cs.selector = 0x1000;
    sregs.cs.base = 0x10000;
    sregs.ds.selector = 0x2000;
    sregs.ds.base = 0x20000;
    sregs.cr2 = 0xdead_b000;
    sregs.gdt.base = 0x500;
    sregs.gdt.limit = 0x27;
    vcpu.set_sregs(&sregs).unwrap();

    let fpu = hypervisor::FpuState { fcw: 0x27f, mxcsr: 0x1f80, xmm: [[0xab; 16]; 16], ..Default::default() };
    vcpu.set_fpu(&fpu).unwrap();

    let msrs: Vec<MsrEntry> =
        MSRS.iter().map(|&(index, data)| MsrEntry { index, data, ..Default::default() }).collect();
    vcpu.set_msrs(&msrs).unwrap();
}

fn check_distinctive(state: &VcpuState, what: &str) {
    assert_eq!(state.regs.rax, 0x1111_2222_3333_4444, "{what}: rax");
    assert_eq!(state.regs.r15, 0x0f0f_0f0f_0f0f_0f0f, "{what}: r15");
    assert_eq!(state.regs.rip, 0x1234, "{what}: rip");
    assert_eq!((state.sregs.cs.selector, state.sregs.cs.base), (0x1000, 0x10000), "{what}: cs");
    assert_eq!(state.sregs.cr2, 0xdead_b000, "{what}: cr2");
    assert_eq!((state.sregs.gdt.base, state.sregs.gdt.limit), (0x500, 0x27), "{what}: gdt");
    assert_eq!(state.fpu.fcw, 0x27f, "{what}: fcw");
    assert_eq!(state.fpu.xmm[7], [0xab; 16], "{what}: xmm7");
    assert_eq!(state.debugregs.db[0], 0x1000, "{what}: dr0");
    let msrs: Vec<(u32, u64)> = state.msrs.iter().map(|m| (m.index, m.data)).collect();
    assert_eq!(msrs, MSRS, "{what}: MSRs");
}

#[test]
fn vcpu_state_survives_json_and_a_new_vm() {
    let Some(hv) = common::kvm() else { return };
    let cpuid = hv.supported_cpuid().unwrap();

    let vm = common::pc_vm(&hv);
    let vcpu = vm.create_vcpu(0).unwrap();
    vcpu.set_cpuid(&cpuid).unwrap();
    make_distinctive(vcpu.as_ref());
    let mut saved = vcpu.state(&msr_indices()).unwrap();
    assert!(saved.xsave.len() >= 1024, "XSAVE area of {} words", saved.xsave.len());
    // The debug registers are reachable only through the state.
    saved.debugregs.db[0] = 0x1000;
    vcpu.set_state(&saved).unwrap();
    let saved = vcpu.state(&msr_indices()).unwrap();
    check_distinctive(&saved, "source vCPU");

    let json = serde_json::to_string(&saved).unwrap();
    let loaded: VcpuState = serde_json::from_str(&json).unwrap();
    assert_eq!(loaded, saved, "JSON round trip");

    let vm2 = common::pc_vm(&hv);
    let vcpu2 = vm2.create_vcpu(0).unwrap();
    vcpu2.set_cpuid(&cpuid).unwrap();
    vcpu2.set_state(&loaded).unwrap();
    let restored = vcpu2.state(&msr_indices()).unwrap();
    check_distinctive(&restored, "restored vCPU");

    assert_eq!(restored.regs, saved.regs, "regs");
    assert_eq!(restored.sregs, saved.sregs, "sregs");
    assert_eq!(restored.fpu, saved.fpu, "fpu");
    assert_eq!(restored.msrs, saved.msrs, "msrs");
    assert_eq!(restored.lapic, saved.lapic, "lapic");
    assert_eq!(restored.xsave, saved.xsave, "xsave");
    assert_eq!(restored.xcrs, saved.xcrs, "xcrs");
    assert_eq!(restored.mp_state, saved.mp_state, "mp_state");
    assert_eq!(restored.events, saved.events, "events");
    assert_eq!(restored.debugregs, saved.debugregs, "debugregs");
}

#[test]
fn unreadable_msr_is_named() {
    let Some(hv) = common::kvm() else { return };
    let vm = common::pc_vm(&hv);
    let vcpu = vm.create_vcpu(0).unwrap();
    vcpu.set_cpuid(&hv.supported_cpuid().unwrap()).unwrap();
    // 0x4000_1234 is in the hypervisor range and means nothing to KVM.
    match vcpu.get_msrs(&[MSR_STAR, 0x4000_1234]) {
        Err(hypervisor::Error::UnreadableMsr(0x4000_1234)) => {}
        other => panic!("expected UnreadableMsr(0x40001234), got {other:?}"),
    }
}
