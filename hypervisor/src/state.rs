// SPDX-License-Identifier: Apache-2.0
//! The saved state of one vCPU, for snapshots.
//!
//! The KVM structures serialize through kvm-bindings' `serde` feature, as opaque byte arrays
//! that tolerate a kernel growing a structure at its end. `kvm_fpu` has no serde support there,
//! so [`FpuDef`] mirrors it field by field.

use serde::{Deserialize, Serialize};

use crate::{DebugRegs, FpuState, LapicState, MpState, MsrEntry, Regs, SpecialRegs, VcpuEvents, Xcrs};

/// Everything KVM holds about one vCPU.
///
/// The CPUID is not part of it: the VMM derives it from the configuration and sets it before
/// restoring the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VcpuState {
    /// General purpose registers, RIP and RFLAGS.
    pub regs: Regs,
    /// Segment, control and descriptor-table registers, EFER and the APIC base.
    pub sregs: SpecialRegs,
    /// x87 and SSE state (also contained in `xsave`, which is restored after it).
    #[serde(with = "FpuDef")]
    pub fpu: FpuState,
    /// The MSRs asked for when the state was read, in that order.
    pub msrs: Vec<MsrEntry>,
    /// The local APIC register page.
    pub lapic: LapicState,
    /// The XSAVE area as KVM_GET_XSAVE/KVM_GET_XSAVE2 return it, in 32-bit words: at least the
    /// legacy 1,024 words (4 KiB), more when the host enables large dynamic features.
    pub xsave: Vec<u32>,
    /// The extended control registers; `None` where the host lacks KVM_CAP_XCRS.
    pub xcrs: Option<Xcrs>,
    /// The multiprocessing state.
    pub mp_state: MpState,
    /// Pending exceptions, interrupts, NMIs and SMIs.
    pub events: VcpuEvents,
    /// The debug registers.
    pub debugregs: DebugRegs,
}

/// The VM-wide interrupt and timer chips the backend emulates: both 8259 PICs, the IOAPIC
/// and the 8254 PIT.
///
/// Read once right after the chips are created, it is their power-on state: writing it back
/// is how a machine reset resets them in place (KVM has no reset call for them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformState {
    /// The master PIC (chip 0), the slave PIC (chip 1) and the IOAPIC (chip 2).
    pub irqchips: Vec<kvm_bindings::kvm_irqchip>,
    /// The PIT's channels and flags.
    pub pit: kvm_bindings::kvm_pit_state2,
}

/// A field-by-field serde mirror of `kvm_fpu`.
#[derive(Serialize, Deserialize)]
#[serde(remote = "kvm_bindings::kvm_fpu")]
struct FpuDef {
    fpr: [[u8; 16]; 8],
    fcw: u16,
    fsw: u16,
    ftwx: u8,
    pad1: u8,
    last_opcode: u16,
    last_ip: u64,
    last_dp: u64,
    xmm: [[u8; 16]; 16],
    mxcsr: u32,
    pad2: u32,
}
