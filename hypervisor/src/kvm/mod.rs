// SPDX-License-Identifier: Apache-2.0
//! The KVM backend, on kvm-ioctls.

use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, CpuId, Msrs, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
    KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd, VmFd};
use vmm_sys_util::eventfd::EventFd;

use crate::{
    CpuidEntry, Error, FpuState, Hypervisor, LapicState, MsrEntry, Regs, Result, SpecialRegs, SystemEvent,
    Vcpu, Vm, VmExit,
};

/// Capabilities without which this VMM cannot build a PC guest.
const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::Pit2, "KVM_CAP_PIT2"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
];

/// `/dev/kvm`.
pub struct KvmHypervisor {
    kvm: Kvm,
}

impl KvmHypervisor {
    /// Opens `/dev/kvm` and checks the API version and the capabilities the VMM relies on.
    pub fn new() -> Result<Self> {
        let kvm = Kvm::new().map_err(|e| Error::OpenKvm(std::io::Error::from_raw_os_error(e.errno())))?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(Error::ApiVersion(version));
        }
        for (cap, name) in REQUIRED_CAPS {
            if !kvm.check_extension(*cap) {
                return Err(Error::MissingCapability(name));
            }
        }
        Ok(KvmHypervisor { kvm })
    }
}

impl Hypervisor for KvmHypervisor {
    fn create_vm(&self) -> Result<Box<dyn Vm>> {
        let fd = self.kvm.create_vm().map_err(Error::ioctl("KVM_CREATE_VM"))?;
        Ok(Box::new(KvmVm { fd }))
    }

    fn max_vcpus(&self) -> usize {
        self.kvm.get_max_vcpus()
    }

    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        let cpuid = self
            .kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(Error::ioctl("KVM_GET_SUPPORTED_CPUID"))?;
        Ok(cpuid.as_slice().to_vec())
    }

    fn msr_index_list(&self) -> Result<Vec<u32>> {
        let list = self.kvm.get_msr_index_list().map_err(Error::ioctl("KVM_GET_MSR_INDEX_LIST"))?;
        Ok(list.as_slice().to_vec())
    }
}

/// A KVM VM file descriptor.
pub struct KvmVm {
    fd: VmFd,
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
        Ok(Box::new(KvmVcpu { fd }))
    }

    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()> {
        self.fd.register_irqfd(fd, gsi).map_err(Error::ioctl("KVM_IRQFD"))
    }

    fn set_irq_line(&self, irq: u32, level: bool) -> Result<()> {
        self.fd.set_irq_line(irq, level).map_err(Error::ioctl("KVM_IRQ_LINE"))
    }
}

/// A KVM vCPU file descriptor.
pub struct KvmVcpu {
    fd: VcpuFd,
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
        let msrs = Msrs::from_entries(msrs).map_err(|_| Error::PartialMsrs { set: 0, wanted })?;
        let set = self.fd.set_msrs(&msrs).map_err(Error::ioctl("KVM_SET_MSRS"))?;
        if set != wanted {
            return Err(Error::PartialMsrs { set, wanted });
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
}

fn translate_exit(exit: VcpuExit<'_>) -> VmExit<'_> {
    match exit {
        VcpuExit::IoIn(port, data) => VmExit::PioIn { port, data },
        VcpuExit::IoOut(port, data) => VmExit::PioOut { port, data },
        VcpuExit::MmioRead(addr, data) => VmExit::MmioRead { addr, data },
        VcpuExit::MmioWrite(addr, data) => VmExit::MmioWrite { addr, data },
        VcpuExit::Hlt => VmExit::Hlt,
        VcpuExit::IoapicEoi(vector) => VmExit::IoapicEoi(vector),
        VcpuExit::Shutdown => VmExit::TripleFault,
        VcpuExit::SystemEvent(kind, _) => VmExit::System(match kind {
            KVM_SYSTEM_EVENT_SHUTDOWN => SystemEvent::Shutdown,
            KVM_SYSTEM_EVENT_RESET => SystemEvent::Reset,
            KVM_SYSTEM_EVENT_CRASH => SystemEvent::Crash,
            other => SystemEvent::Other(other),
        }),
        VcpuExit::Intr => VmExit::Interrupted,
        VcpuExit::FailEntry(reason, cpu) => VmExit::FailEntry { reason, cpu },
        VcpuExit::InternalError => VmExit::InternalError,
        VcpuExit::Exception => VmExit::Unhandled("KVM_EXIT_EXCEPTION"),
        VcpuExit::Debug(_) => VmExit::Unhandled("KVM_EXIT_DEBUG"),
        VcpuExit::Hypercall(_) => VmExit::Unhandled("KVM_EXIT_HYPERCALL"),
        VcpuExit::Unknown => VmExit::Unhandled("KVM_EXIT_UNKNOWN"),
        _ => VmExit::Unhandled("an exit this VMM does not expect"),
    }
}
