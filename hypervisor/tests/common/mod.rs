// SPDX-License-Identifier: Apache-2.0
//! Helpers shared by the KVM integration tests.

use hypervisor::kvm::KvmHypervisor;
use hypervisor::{Error, Hypervisor, Vm};

/// Where the tests put KVM's TSS and identity-map pages (as the PC machine does).
const TSS_ADDR: u64 = 0xfeff_d000;
const IDENTITY_MAP_ADDR: u64 = 0xfeff_c000;

/// Opens KVM, or returns `None` after saying why the test is skipped.
pub fn kvm() -> Option<KvmHypervisor> {
    match KvmHypervisor::new() {
        Ok(hv) => Some(hv),
        Err(Error::OpenKvm(e)) => {
            eprintln!("skipped: cannot open /dev/kvm ({e})");
            None
        }
        Err(e) => panic!("KVM is unusable: {e}"),
    }
}

/// A VM with the in-kernel PC interrupt controllers and PIT.
pub fn pc_vm(hv: &KvmHypervisor) -> Box<dyn Vm> {
    let vm = hv.create_vm().expect("KVM_CREATE_VM");
    vm.create_pc_platform(TSS_ADDR, IDENTITY_MAP_ADDR).expect("create_pc_platform");
    vm
}
