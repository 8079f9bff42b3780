// SPDX-License-Identifier: Apache-2.0
//! The KVM backend, on kvm-ioctls.

mod vcpu;
mod vm;

use kvm_bindings::{
    KVM_MAX_CPUID_ENTRIES, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{Cap, Kvm, VcpuExit};

pub use vcpu::KvmVcpu;
pub use vm::KvmVm;

use crate::{CpuidEntry, Error, Hypervisor, Result, SystemEvent, Vm, VmExit};

/// Capabilities without which this VMM cannot build a PC guest.
const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::Pit2, "KVM_CAP_PIT2"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    (Cap::IrqRouting, "KVM_CAP_IRQ_ROUTING"),
    (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
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
        Ok(Box::new(KvmVm::new(fd)))
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
