// SPDX-License-Identifier: Apache-2.0
//! Hypervisor backends behind one small set of traits.
//!
//! The VMM sees a [`Hypervisor`] that creates a [`Vm`], which owns guest memory slots and the
//! in-kernel interrupt controllers and creates [`Vcpu`]s. A vCPU's `run` returns a [`VmExit`]
//! decoded once here, so no device or VMM code ever touches backend-specific exit structures.
//! The only backend today is KVM ([`kvm::KvmHypervisor`]).

pub mod host;
pub mod kvm;
mod state;

use vmm_sys_util::eventfd::EventFd;

pub use state::{PlatformState, VcpuState};

/// General purpose registers (the KVM layout, shared by every backend today).
pub type Regs = kvm_bindings::kvm_regs;
/// Segment, control and descriptor-table registers.
pub type SpecialRegs = kvm_bindings::kvm_sregs;
/// x87/SSE state.
pub type FpuState = kvm_bindings::kvm_fpu;
/// Local APIC register page.
pub type LapicState = kvm_bindings::kvm_lapic_state;
/// One CPUID leaf/subleaf as given to a vCPU.
pub type CpuidEntry = kvm_bindings::kvm_cpuid_entry2;
/// One MSR index and value.
pub type MsrEntry = kvm_bindings::kvm_msr_entry;
/// A segment register.
pub type Segment = kvm_bindings::kvm_segment;
/// The extended control registers (XCR0), as KVM_GET_XCRS returns them.
pub type Xcrs = kvm_bindings::kvm_xcrs;
/// The multiprocessing state (runnable, halted, waiting for INIT/SIPI).
pub type MpState = kvm_bindings::kvm_mp_state;
/// Pending exceptions, interrupts, NMIs and SMIs, and the interrupt shadow.
pub type VcpuEvents = kvm_bindings::kvm_vcpu_events;
/// The debug registers DR0-DR3, DR6 and DR7.
pub type DebugRegs = kvm_bindings::kvm_debugregs;

/// Errors from a hypervisor backend.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// KVM reports an API version other than 12.
    #[error("KVM API version {0} is not supported (need 12)")]
    ApiVersion(i32),
    /// An ioeventfd datamatch value does not fit the 4 bytes it is compared with.
    #[error("ioeventfd datamatch {0:#x} does not fit in 32 bits")]
    DatamatchTooWide(u64),
    /// A backend call failed.
    #[error("{op} failed")]
    Ioctl {
        /// What was being done.
        op: &'static str,
        /// The error the kernel returned.
        #[source]
        source: std::io::Error,
    },
    /// A capability the VMM needs is missing.
    #[error("KVM lacks the {0} capability")]
    MissingCapability(&'static str),
    /// `/dev/kvm` could not be opened.
    #[error("cannot open /dev/kvm (is the kvm module loaded and do you have access?)")]
    OpenKvm(#[source] std::io::Error),
    /// Some MSRs were not accepted by the backend.
    #[error("the hypervisor accepted {set} of {wanted} MSRs")]
    PartialMsrs {
        /// How many were written.
        set: usize,
        /// How many were asked for.
        wanted: usize,
    },
    /// A GSI routing table has more entries than the backend accepts.
    #[error("{0} GSI routes are more than the hypervisor accepts")]
    TooManyRoutes(usize),
    /// The backend cannot read this MSR (unknown to it, or absent from the vCPU's CPUID).
    #[error("MSR {0:#x} cannot be read")]
    UnreadableMsr(u32),
}

/// Result with the backend's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn ioctl(op: &'static str) -> impl FnOnce(vmm_sys_util::errno::Error) -> Error {
        move |e| Error::Ioctl { op, source: std::io::Error::from_raw_os_error(e.errno()) }
    }
}

/// Why a platform-level event stopped the guest, as reported by the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemEvent {
    /// The guest asked to power off (e.g. PSCI or a hypervisor-handled ACPI path).
    Shutdown,
    /// The guest asked to reset.
    Reset,
    /// The guest reported a crash.
    Crash,
    /// Another, unnamed event.
    Other(u32),
}

/// Why `Vcpu::run` returned.
#[derive(Debug)]
pub enum VmExit<'a> {
    /// `in` from an I/O port: fill `data` before running again.
    PioIn {
        /// The port.
        port: u16,
        /// Where the read value goes (1, 2 or 4 bytes).
        data: &'a mut [u8],
    },
    /// `out` to an I/O port.
    PioOut {
        /// The port.
        port: u16,
        /// The written value.
        data: &'a [u8],
    },
    /// A read from an unbacked guest-physical address: fill `data`.
    MmioRead {
        /// Guest-physical address.
        addr: u64,
        /// Where the read value goes.
        data: &'a mut [u8],
    },
    /// A write to an unbacked guest-physical address.
    MmioWrite {
        /// Guest-physical address.
        addr: u64,
        /// The written value.
        data: &'a [u8],
    },
    /// The vCPU halted with interrupts the backend does not deliver itself.
    Hlt,
    /// End of interrupt for a level-triggered IOAPIC vector (split irqchip only).
    IoapicEoi(u8),
    /// The guest triple-faulted (x86 shutdown condition).
    TripleFault,
    /// A platform event (power off, reset, crash).
    System(SystemEvent),
    /// The run was interrupted by a signal or an immediate-exit request.
    Interrupted,
    /// The hardware refused to enter the guest.
    FailEntry {
        /// Hardware-specific reason code.
        reason: u64,
        /// Host CPU on which it happened.
        cpu: u32,
    },
    /// The backend hit an internal emulation error (e.g. an instruction it cannot emulate).
    InternalError,
    /// Any exit this VMM does not handle, by name.
    Unhandled(&'static str),
}

/// Where an ioeventfd listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoEventAddress {
    /// An I/O port.
    Pio(u64),
    /// A guest-physical MMIO address.
    Mmio(u64),
}

/// The interrupt controller chip of an irqchip route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqChip {
    /// The master 8259 PIC (IRQs 0-7).
    PicMaster,
    /// The slave 8259 PIC (IRQs 8-15).
    PicSlave,
    /// The IOAPIC (24 pins).
    Ioapic,
}

/// One GSI routing entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqRoute {
    /// GSI `gsi` drives `pin` of `chip`.
    Irqchip {
        /// The global system interrupt number.
        gsi: u32,
        /// The chip the GSI drives.
        chip: IrqChip,
        /// The input pin of `chip`.
        pin: u32,
    },
    /// GSI `gsi` sends an MSI message.
    Msi {
        /// The global system interrupt number.
        gsi: u32,
        /// The message address (on x86, 0xfee0_0000 plus destination and mode bits).
        address: u64,
        /// The message data (vector and delivery mode).
        data: u32,
    },
}

/// The number of IOAPIC pins, and so of the GSIs the default routing covers.
const IOAPIC_PINS: u32 = 24;
/// The number of ISA IRQs, which also reach the two 8259 PICs.
const ISA_IRQS: u32 = 16;

/// The routes KVM_CREATE_IRQCHIP installs on x86 (GSI 0-15 to both PICs and IOAPIC pins 0-15,
/// GSI 16-23 to IOAPIC pins 16-23), which a full routing table must repeat.
///
/// Like Linux's own table, each GSI below 16 lists its IOAPIC route first and its PIC route
/// (master for 0-7, slave for 8-15, pin `gsi % 8`) second.
pub fn pc_default_routes() -> Vec<IrqRoute> {
    let mut routes = Vec::with_capacity((ISA_IRQS + IOAPIC_PINS) as usize);
    for gsi in 0..IOAPIC_PINS {
        routes.push(IrqRoute::Irqchip { gsi, chip: IrqChip::Ioapic, pin: gsi });
        if gsi < ISA_IRQS {
            let chip = if gsi < 8 { IrqChip::PicMaster } else { IrqChip::PicSlave };
            routes.push(IrqRoute::Irqchip { gsi, chip, pin: gsi % 8 });
        }
    }
    routes
}

/// A virtualization backend: creates VMs and reports what the host supports.
pub trait Hypervisor: Send + Sync {
    /// Creates an empty VM.
    fn create_vm(&self) -> Result<Box<dyn Vm>>;
    /// The largest number of vCPUs one VM may have.
    fn max_vcpus(&self) -> usize;
    /// The CPUID leaves the host and backend can offer a guest.
    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>>;
    /// The MSRs the backend can save and restore.
    fn msr_index_list(&self) -> Result<Vec<u32>>;
}

/// One virtual machine.
pub trait Vm: Send + Sync {
    /// Maps `size` bytes of host memory at `host_addr` into the guest at `guest_addr` as memory
    /// slot `slot`. With `read_only`, guest writes to the range exit as MMIO writes (ROM).
    /// Mapping a slot that is in use replaces it only if nothing but its address changes;
    /// call [`Vm::unmap_memory`] first to change its size or flags.
    ///
    /// # Safety
    /// The host range must stay mapped and valid for as long as the VM exists.
    unsafe fn map_memory(
        &self,
        slot: u32,
        guest_addr: u64,
        size: u64,
        host_addr: u64,
        read_only: bool,
    ) -> Result<()>;
    /// Removes memory slot `slot`; guest accesses to its range exit as MMIO from now on.
    fn unmap_memory(&self, slot: u32) -> Result<()>;
    /// Creates the in-kernel PC interrupt controllers (2x 8259 PIC, IOAPIC, per-vCPU LAPIC)
    /// and the 8254 PIT, and reserves the guest-physical pages the backend needs.
    fn create_pc_platform(&self, tss_addr: u64, identity_map_addr: u64) -> Result<()>;
    /// Creates vCPU number `id` (its APIC ID).
    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>>;
    /// Makes every write to `fd` raise interrupt line `gsi` (edge).
    fn register_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()>;
    /// Sets interrupt line `irq` high or low.
    fn set_irq_line(&self, irq: u32, level: bool) -> Result<()>;
    /// Makes every guest write to `addr` signal `fd` instead of exiting to the VMM.
    ///
    /// With `datamatch` `None`, writes of any width match. With `Some(v)`, only 4-byte writes of
    /// exactly `v` match (other writes exit as usual), so `v` must fit in 32 bits.
    fn register_ioeventfd(&self, fd: &EventFd, addr: IoEventAddress, datamatch: Option<u64>) -> Result<()>;
    /// Removes an ioeventfd registered with the same `fd`, `addr` and `datamatch`; fails if there
    /// is none.
    fn unregister_ioeventfd(&self, fd: &EventFd, addr: IoEventAddress, datamatch: Option<u64>) -> Result<()>;
    /// Makes every write to `fd` assert interrupt line `gsi` (level): the line stays asserted
    /// until the guest acknowledges the interrupt (EOI), which signals `resample` so the device
    /// model can re-trigger `fd` if its interrupt is still pending.
    fn register_irqfd_with_resample(&self, fd: &EventFd, resample: &EventFd, gsi: u32) -> Result<()>;
    /// Detaches `fd` from interrupt line `gsi` (registered with or without resampling).
    fn unregister_irqfd(&self, fd: &EventFd, gsi: u32) -> Result<()>;
    /// Replaces the whole GSI routing table (KVM_SET_GSI_ROUTING).
    ///
    /// The table replaces the default one too, so start from [`pc_default_routes`] to keep the
    /// legacy interrupt lines working.
    fn set_gsi_routing(&self, routes: &[IrqRoute]) -> Result<()>;
    /// Injects one MSI now (KVM_SIGNAL_MSI).
    ///
    /// A message the guest blocks (e.g. a disabled local APIC) is dropped without an error.
    fn signal_msi(&self, address: u64, data: u32) -> Result<()>;
    /// Reads the state of the in-kernel PICs, IOAPIC and PIT (after `create_pc_platform`).
    fn platform_state(&self) -> Result<PlatformState>;
    /// Writes a state read by [`Vm::platform_state`]; a machine reset writes back the state
    /// read at power-on.
    fn set_platform_state(&self, state: &PlatformState) -> Result<()>;
}

/// One virtual CPU. Owned by the thread that runs it.
pub trait Vcpu: Send {
    /// Runs the guest until the next exit the VMM must handle.
    fn run(&mut self) -> Result<VmExit<'_>>;
    /// Reads the general purpose registers.
    fn regs(&self) -> Result<Regs>;
    /// Writes the general purpose registers.
    fn set_regs(&self, regs: &Regs) -> Result<()>;
    /// Reads the special registers.
    fn sregs(&self) -> Result<SpecialRegs>;
    /// Writes the special registers.
    fn set_sregs(&self, sregs: &SpecialRegs) -> Result<()>;
    /// Writes the FPU state.
    fn set_fpu(&self, fpu: &FpuState) -> Result<()>;
    /// Writes MSRs; every entry must be accepted.
    fn set_msrs(&self, msrs: &[MsrEntry]) -> Result<()>;
    /// Sets the CPUID leaves the guest sees.
    fn set_cpuid(&self, entries: &[CpuidEntry]) -> Result<()>;
    /// Reads the local APIC page.
    fn lapic(&self) -> Result<LapicState>;
    /// Writes the local APIC page.
    fn set_lapic(&self, lapic: &LapicState) -> Result<()>;
    /// Tells a guest with a paravirtual clock that the VMM paused it (so its watchdogs do not
    /// report the gap as a lockup). Call it on the vCPU's own thread while it is stopped.
    fn notify_paused(&self) -> Result<()>;
    /// Reads the MSRs `indices`, in that order; fails naming the first one that cannot be read.
    fn get_msrs(&self, indices: &[u32]) -> Result<Vec<MsrEntry>>;
    /// Reads everything the backend holds about this vCPU, with the MSRs `msr_indices` (for
    /// example [`Hypervisor::msr_index_list`] less the ones [`Vcpu::get_msrs`] refuses).
    ///
    /// Call it while no vCPU of the VM runs: reading the events and the local APIC of one vCPU
    /// while another sends it interrupts gives an inconsistent state.
    fn state(&self, msr_indices: &[u32]) -> Result<VcpuState>;
    /// Writes a state read by [`Vcpu::state`], in the order the backend needs. Set the CPUID
    /// first with [`Vcpu::set_cpuid`]: it is not part of the state.
    fn set_state(&self, state: &VcpuState) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pc_default_routes_match_kvm_create_irqchip() {
        let routes = pc_default_routes();
        assert_eq!(routes.len(), 16 * 2 + 8);
        for gsi in 0..24 {
            let of_gsi: Vec<_> = routes
                .iter()
                .filter_map(|r| match *r {
                    IrqRoute::Irqchip { gsi: g, chip, pin } if g == gsi => Some((chip, pin)),
                    _ => None,
                })
                .collect();
            let mut want = vec![(IrqChip::Ioapic, gsi)];
            match gsi {
                0..=7 => want.push((IrqChip::PicMaster, gsi)),
                8..=15 => want.push((IrqChip::PicSlave, gsi - 8)),
                _ => {}
            }
            assert_eq!(of_gsi, want, "GSI {gsi}");
        }
    }
}
