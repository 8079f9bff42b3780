// SPDX-License-Identifier: Apache-2.0
//! The CPUID leaves each vCPU sees.
//!
//! Starts from what the host and KVM support (`KVM_GET_SUPPORTED_CPUID`, already filtered to
//! features KVM can virtualize), then describes the guest's own topology: one package with
//! `count` cores of one thread each, APIC ID = vCPU index. The KVM paravirtual leaves
//! (0x4000_0000 signature, 0x4000_0001 features such as kvmclock) are kept, or added if the
//! backend left them out, so the guest uses kvmclock and the other PV features.

use hypervisor::CpuidEntry;

/// CPUID.1:ECX bit 31: running under a hypervisor.
const ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:EDX bit 28: more than one logical processor per package.
const EDX_HTT: u32 = 1 << 28;
/// The flag on an entry whose subleaf (ECX input) matters.
const KVM_CPUID_FLAG_SIGNIFCANT_INDEX: u32 = 1;
/// Hypervisor signature leaf.
pub const KVM_SIGNATURE_LEAF: u32 = 0x4000_0000;
/// KVM paravirtual feature leaf.
pub const KVM_FEATURES_LEAF: u32 = 0x4000_0001;
/// "KVMKVMKVM\0\0\0" as EBX, ECX, EDX.
const KVM_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];
/// Base kvmclock features offered if the backend listed none: KVM_FEATURE_CLOCKSOURCE,
/// KVM_FEATURE_NOP_IO_DELAY, KVM_FEATURE_CLOCKSOURCE2, KVM_FEATURE_CLOCKSOURCE_STABLE_BIT.
const KVM_BASE_FEATURES: u32 = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 24);

/// Bits needed to hold `n - 1` (the APIC-ID shift for `n` cores).
fn id_bits(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

fn entry(function: u32, index: u32, regs: [u32; 4]) -> CpuidEntry {
    CpuidEntry {
        function,
        index,
        flags: if matches!(function, 0x4 | 0xb | 0x1f | 0xd | 0x7 | 0x8000_001d) {
            KVM_CPUID_FLAG_SIGNIFCANT_INDEX
        } else {
            0
        },
        eax: regs[0],
        ebx: regs[1],
        ecx: regs[2],
        edx: regs[3],
        ..Default::default()
    }
}

/// The CPUID for vCPU `cpu_id` of `cpu_count`, from the backend's supported leaves.
pub fn vcpu_cpuid(supported: &[CpuidEntry], cpu_id: u32, cpu_count: u32) -> Vec<CpuidEntry> {
    let apic_id = cpu_id;
    let core_bits = id_bits(cpu_count);
    let mut out: Vec<CpuidEntry> = Vec::with_capacity(supported.len() + 4);
    for e in supported {
        let mut e = *e;
        match e.function {
            0x1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | (apic_id << 24) | ((cpu_count.min(255)) << 16);
                e.ecx |= ECX_HYPERVISOR;
                if cpu_count > 1 {
                    e.edx |= EDX_HTT;
                } else {
                    e.edx &= !EDX_HTT;
                }
            }
            0x4 => {
                // Deterministic cache parameters: cores per package and threads per cache.
                let cache_level = (e.eax >> 5) & 0x7;
                let sharing = if cache_level >= 3 { cpu_count } else { 1 };
                e.eax = (e.eax & 0x3ff)
                    | ((sharing.saturating_sub(1) & 0xfff) << 14)
                    | ((cpu_count.saturating_sub(1) & 0x3f) << 26);
            }
            // Rebuilt below from the topology.
            0xb | 0x1f => continue,
            0x8000_0008 => {
                e.ecx = (e.ecx & !0xf0ff) | (core_bits << 12) | (cpu_count.saturating_sub(1) & 0xff);
            }
            0x8000_001e => {
                e.eax = apic_id;
                e.ebx = (e.ebx & !0xff) | (cpu_id & 0xff);
                e.ecx = 0;
            }
            _ => {}
        }
        out.push(e);
    }
    // Extended topology: SMT level with one thread, core level with cpu_count cores.
    out.push(entry(0xb, 0, [0, 1, 1 << 8, apic_id]));
    out.push(entry(0xb, 1, [core_bits, cpu_count, 1 | (2 << 8), apic_id]));
    out.push(entry(0xb, 2, [0, 0, 2, apic_id]));
    if let Some(leaf0) = out.iter_mut().find(|e| e.function == 0) {
        leaf0.eax = leaf0.eax.max(0xb);
    }
    if !out.iter().any(|e| e.function == KVM_SIGNATURE_LEAF) {
        let [b, c, d] = KVM_SIGNATURE;
        out.push(entry(KVM_SIGNATURE_LEAF, 0, [KVM_FEATURES_LEAF, b, c, d]));
    }
    if !out.iter().any(|e| e.function == KVM_FEATURES_LEAF) {
        out.push(entry(KVM_FEATURES_LEAF, 0, [KVM_BASE_FEATURES, 0, 0, 0]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(v: &[CpuidEntry], f: u32, i: u32) -> CpuidEntry {
        *v.iter().find(|e| e.function == f && e.index == i).unwrap()
    }

    fn host() -> Vec<CpuidEntry> {
        vec![
            entry(0, 0, [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65]),
            entry(1, 0, [0x800f12, 0xff08_0800, 0x0, 1 << 28]),
            entry(4, 3, [(3 << 5) | 0x3 | (7 << 26), 0, 0, 0]),
            entry(0xb, 0, [9, 9, 9, 9]),
            entry(0x8000_0008, 0, [0x3030, 0, 0xffff, 0]),
            entry(KVM_SIGNATURE_LEAF, 0, [KVM_FEATURES_LEAF, 1, 2, 3]),
        ]
    }

    #[test]
    fn leaf1_carries_apic_id_count_and_hypervisor_bit() {
        let v = vcpu_cpuid(&host(), 3, 4);
        let l1 = find(&v, 1, 0);
        assert_eq!(l1.ebx >> 24, 3);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_eq!(l1.ebx & 0xffff, 0x0800);
        assert_ne!(l1.ecx & ECX_HYPERVISOR, 0);
        assert_ne!(l1.edx & EDX_HTT, 0);
        let single = vcpu_cpuid(&host(), 0, 1);
        assert_eq!(find(&single, 1, 0).edx & EDX_HTT, 0);
    }

    #[test]
    fn topology_leaves_describe_one_package() {
        let v = vcpu_cpuid(&host(), 2, 4);
        let smt = find(&v, 0xb, 0);
        let core = find(&v, 0xb, 1);
        assert_eq!((smt.eax, smt.ebx, smt.edx), (0, 1, 2));
        assert_eq!((core.eax, core.ebx, (core.ecx >> 8) & 0xff, core.edx), (2, 4, 2, 2));
        assert_eq!(find(&v, 0xb, 2).ecx, 2);
        // The host's own 0xb leaf is replaced, not kept beside ours.
        assert_eq!(v.iter().filter(|e| e.function == 0xb).count(), 3);
        assert_eq!(find(&v, 4, 3).eax >> 26, 3);
        assert_eq!(find(&v, 0x8000_0008, 0).ecx & 0xff, 3);
        assert_eq!(id_bits(1), 0);
        assert_eq!(id_bits(2), 1);
        assert_eq!(id_bits(5), 3);
        assert_eq!(id_bits(8), 3);
    }

    #[test]
    fn kvm_leaves_are_present() {
        let v = vcpu_cpuid(&host(), 0, 1);
        assert_eq!(find(&v, KVM_SIGNATURE_LEAF, 0).ebx, 1, "backend's leaf kept");
        assert_eq!(find(&v, KVM_FEATURES_LEAF, 0).eax, KVM_BASE_FEATURES);
        let mut bare = host();
        bare.retain(|e| e.function != KVM_SIGNATURE_LEAF);
        let v = vcpu_cpuid(&bare, 0, 1);
        assert_eq!(find(&v, KVM_SIGNATURE_LEAF, 0).ebx, KVM_SIGNATURE[0]);
    }
}
