// SPDX-License-Identifier: Apache-2.0
//! A KVM vCPU: running it, and reading and writing its state.

use kvm_bindings::{kvm_xsave, CpuId, Msrs, Xsave, KVM_MAX_MSR_ENTRIES};
use kvm_ioctls::{Cap, VcpuFd, VmFd};

use super::translate_exit;
use crate::{
    CpuidEntry, Error, FpuState, LapicState, MsrEntry, Regs, Result, SpecialRegs, Vcpu, VcpuState, VmExit,
};

/// 32-bit words in the legacy, fixed-size part of `kvm_xsave`.
const XSAVE_LEGACY_WORDS: usize = std::mem::size_of::<kvm_xsave>() / std::mem::size_of::<u32>();

/// A KVM vCPU file descriptor.
pub struct KvmVcpu {
    fd: VcpuFd,
    /// Words KVM_GET_XSAVE2 writes past the legacy 4 KiB; `None` without KVM_CAP_XSAVE2.
    xsave_extra_words: Option<usize>,
    /// Whether the host has KVM_CAP_XCRS.
    has_xcrs: bool,
}

impl KvmVcpu {
    /// Wraps a vCPU of `vm`. The XSAVE size is fixed from here on: Linux locks the process's
    /// guest permissions for dynamic XSAVE features (`arch_prctl`) when it creates a vCPU.
    pub(super) fn new(fd: VcpuFd, vm: &VmFd) -> Self {
        let xsave2 = vm.check_extension_int(Cap::Xsave2);
        let xsave_extra_words = usize::try_from(xsave2).ok().filter(|&size| size > 0).map(|size| {
            size.saturating_sub(std::mem::size_of::<kvm_xsave>()).div_ceil(std::mem::size_of::<u32>())
        });
        KvmVcpu { fd, xsave_extra_words, has_xcrs: vm.check_extension(Cap::Xcrs) }
    }

    fn fpu(&self) -> Result<FpuState> {
        self.fd.get_fpu().map_err(Error::ioctl("KVM_GET_FPU"))
    }

    /// A zeroed XSAVE buffer with `extra_words` words past the legacy 4 KiB.
    fn xsave_buffer(extra_words: usize) -> Result<Xsave> {
        Xsave::new(extra_words).map_err(|_| Error::Ioctl {
            op: "KVM_GET_XSAVE2",
            source: std::io::Error::from_raw_os_error(libc::ENOMEM),
        })
    }

    fn xsave(&self) -> Result<Vec<u32>> {
        let Some(extra) = self.xsave_extra_words else {
            let xsave = self.fd.get_xsave().map_err(Error::ioctl("KVM_GET_XSAVE"))?;
            return Ok(xsave.region.to_vec());
        };
        let mut xsave = Self::xsave_buffer(extra)?;
        // SAFETY: the buffer holds the size KVM_CAP_XSAVE2 reported once this vCPU existed, and
        // that size cannot grow any more (the guest XSAVE permissions were locked by then).
        unsafe { self.fd.get_xsave2(&mut xsave) }.map_err(Error::ioctl("KVM_GET_XSAVE2"))?;
        let mut words = xsave.as_fam_struct_ref().xsave.region.to_vec();
        words.extend_from_slice(xsave.as_slice());
        Ok(words)
    }

    fn set_xsave(&self, words: &[u32]) -> Result<()> {
        let (head, tail) = words.split_at(words.len().min(XSAVE_LEGACY_WORDS));
        let extra = self.xsave_extra_words.unwrap_or(0).max(tail.len());
        let mut xsave = Self::xsave_buffer(extra)?;
        // SAFETY: only the fixed-size region is written; the FAM length stays as allocated.
        unsafe { xsave.as_mut_fam_struct() }.xsave.region[..head.len()].copy_from_slice(head);
        xsave.as_mut_slice()[..tail.len()].copy_from_slice(tail);
        // SAFETY: KVM_SET_XSAVE reads the KVM_CAP_XSAVE2 size (4 KiB without that capability),
        // and the buffer holds at least that much, as in `xsave`.
        unsafe { self.fd.set_xsave2(&xsave) }.map_err(Error::ioctl("KVM_SET_XSAVE"))
    }
}

impl Vcpu for KvmVcpu {
    fn run(&mut self) -> Result<VmExit<'_>> {
        match self.fd.run() {
            Ok(exit) => Ok(translate_exit(exit)),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Ok(VmExit::Interrupted),
            Err(e) => Err(Error::ioctl("KVM_RUN")(e)),
        }
    }

    fn regs(&self) -> Result<Regs> {
        self.fd.get_regs().map_err(Error::ioctl("KVM_GET_REGS"))
    }

    fn set_regs(&self, regs: &Regs) -> Result<()> {
        self.fd.set_regs(regs).map_err(Error::ioctl("KVM_SET_REGS"))
    }

    fn sregs(&self) -> Result<SpecialRegs> {
        self.fd.get_sregs().map_err(Error::ioctl("KVM_GET_SREGS"))
    }

    fn set_sregs(&self, sregs: &SpecialRegs) -> Result<()> {
        self.fd.set_sregs(sregs).map_err(Error::ioctl("KVM_SET_SREGS"))
    }

    fn set_fpu(&self, fpu: &FpuState) -> Result<()> {
        self.fd.set_fpu(fpu).map_err(Error::ioctl("KVM_SET_FPU"))
    }

    fn set_msrs(&self, msrs: &[MsrEntry]) -> Result<()> {
        let wanted = msrs.len();
        let mut done = 0;
        // KVM takes at most KVM_MAX_MSR_ENTRIES per call.
        for chunk in msrs.chunks(KVM_MAX_MSR_ENTRIES) {
            let buffer = Msrs::from_entries(chunk).map_err(|_| Error::PartialMsrs { set: done, wanted })?;
            let set = self.fd.set_msrs(&buffer).map_err(Error::ioctl("KVM_SET_MSRS"))?;
            done += set;
            if set != chunk.len() {
                return Err(Error::PartialMsrs { set: done, wanted });
            }
        }
        Ok(())
    }

    fn set_cpuid(&self, entries: &[CpuidEntry]) -> Result<()> {
        let cpuid = CpuId::from_entries(entries).map_err(|_| Error::Ioctl {
            op: "KVM_SET_CPUID2",
            source: std::io::Error::from_raw_os_error(libc::E2BIG),
        })?;
        self.fd.set_cpuid2(&cpuid).map_err(Error::ioctl("KVM_SET_CPUID2"))
    }

    fn lapic(&self) -> Result<LapicState> {
        self.fd.get_lapic().map_err(Error::ioctl("KVM_GET_LAPIC"))
    }

    fn set_lapic(&self, lapic: &LapicState) -> Result<()> {
        self.fd.set_lapic(lapic).map_err(Error::ioctl("KVM_SET_LAPIC"))
    }

    fn notify_paused(&self) -> Result<()> {
        self.fd.kvmclock_ctrl().map_err(Error::ioctl("KVM_KVMCLOCK_CTRL"))
    }

    fn get_msrs(&self, indices: &[u32]) -> Result<Vec<MsrEntry>> {
        let mut out = Vec::with_capacity(indices.len());
        // KVM takes at most KVM_MAX_MSR_ENTRIES per call.
        for chunk in indices.chunks(KVM_MAX_MSR_ENTRIES) {
            let entries: Vec<MsrEntry> =
                chunk.iter().map(|&index| MsrEntry { index, ..Default::default() }).collect();
            let mut buffer = Msrs::from_entries(&entries)
                .map_err(|_| Error::PartialMsrs { set: out.len(), wanted: indices.len() })?;
            let read = self.fd.get_msrs(&mut buffer).map_err(Error::ioctl("KVM_GET_MSRS"))?;
            // KVM stops at the first MSR it cannot read.
            if let Some(&index) = chunk.get(read) {
                return Err(Error::UnreadableMsr(index));
            }
            out.extend_from_slice(buffer.as_slice());
        }
        Ok(out)
    }

    // The order follows KVM's dependencies: KVM_GET_MP_STATE first because it may fold pending
    // INIT/SIPI events into the vCPU and LAPIC state, the events last because the other reads
    // may change them.
    fn state(&self, msr_indices: &[u32]) -> Result<VcpuState> {
        let mp_state = self.fd.get_mp_state().map_err(Error::ioctl("KVM_GET_MP_STATE"))?;
        let regs = self.regs()?;
        let sregs = self.sregs()?;
        let fpu = self.fpu()?;
        let xsave = self.xsave()?;
        let xcrs = if self.has_xcrs {
            Some(self.fd.get_xcrs().map_err(Error::ioctl("KVM_GET_XCRS"))?)
        } else {
            None
        };
        let debugregs = self.fd.get_debug_regs().map_err(Error::ioctl("KVM_GET_DEBUGREGS"))?;
        let lapic = self.lapic()?;
        let msrs = self.get_msrs(msr_indices)?;
        let events = self.fd.get_vcpu_events().map_err(Error::ioctl("KVM_GET_VCPU_EVENTS"))?;
        Ok(VcpuState { regs, sregs, fpu, msrs, lapic, xsave, xcrs, mp_state, events, debugregs })
    }

    // The order follows KVM's dependencies: the special registers restore the APIC base, which
    // the LAPIC (x2APIC mode) needs; the LAPIC must be set before the MSRs, since the TSC
    // deadline MSR only sticks in a LAPIC configured for it; setting the registers clears
    // pending exceptions, which the events, set last, restore.
    fn set_state(&self, state: &VcpuState) -> Result<()> {
        self.fd.set_mp_state(state.mp_state).map_err(Error::ioctl("KVM_SET_MP_STATE"))?;
        self.set_regs(&state.regs)?;
        self.set_sregs(&state.sregs)?;
        // The XSAVE area holds the FPU state too, so it goes second and has the last word.
        self.set_fpu(&state.fpu)?;
        self.set_xsave(&state.xsave)?;
        match (&state.xcrs, self.has_xcrs) {
            (Some(xcrs), true) => self.fd.set_xcrs(xcrs).map_err(Error::ioctl("KVM_SET_XCRS"))?,
            (Some(_), false) => return Err(Error::MissingCapability("KVM_CAP_XCRS")),
            (None, _) => {}
        }
        self.fd.set_debug_regs(&state.debugregs).map_err(Error::ioctl("KVM_SET_DEBUGREGS"))?;
        self.set_lapic(&state.lapic)?;
        self.set_msrs(&state.msrs)?;
        self.fd.set_vcpu_events(&state.events).map_err(Error::ioctl("KVM_SET_VCPU_EVENTS"))
    }
}
