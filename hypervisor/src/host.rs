// SPDX-License-Identifier: Apache-2.0
//! What kind of virtualization the host offers.
//!
//! Some hosts expose a `/dev/kvm` that works but cannot run guest kernel code at useful speed:
//! `kvm_pvm` (paravirtual KVM inside a VM without nested virtualization) emulates guest
//! kernel-mode code at 1-2 million instructions per second. Booting a kernel there takes hours,
//! so the VMM must say so up front instead of looking hung.

use std::path::Path;

/// The host's virtualization support as far as the VMM can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostVirt {
    /// The CPU has VT-x or AMD-V and KVM uses it.
    Hardware,
    /// `/dev/kvm` is provided by the `kvm_pvm` module.
    KvmPvm,
    /// The CPU flags show neither `vmx` nor `svm`.
    NoHardwareExtensions,
}

impl HostVirt {
    /// Probes `/sys/module` and `/proc/cpuinfo`.
    pub fn detect() -> HostVirt {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self::classify(Path::new("/sys/module/kvm_pvm").exists(), &cpuinfo)
    }

    /// Classifies from the presence of the kvm_pvm module and the text of `/proc/cpuinfo`.
    pub fn classify(kvm_pvm_loaded: bool, cpuinfo: &str) -> HostVirt {
        if kvm_pvm_loaded {
            return HostVirt::KvmPvm;
        }
        let has_flag = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        if has_flag {
            HostVirt::Hardware
        } else {
            HostVirt::NoHardwareExtensions
        }
    }

    /// One line for the user when the host cannot run guests at full speed, `None` otherwise.
    pub fn warning(self) -> Option<&'static str> {
        match self {
            HostVirt::Hardware => None,
            HostVirt::KvmPvm => Some(
                "this host's /dev/kvm is kvm_pvm: guest kernel code runs emulated at ~1-2 M \
                 instructions/s, so guests will not boot in useful time; run inside the nested \
                 test host (tests/testhost) or pass --accept-slow-kvm to go on anyway",
            ),
            HostVirt::NoHardwareExtensions => Some(
                "this CPU shows neither vmx nor svm: KVM cannot use hardware virtualization \
                 here, so guests will not boot in useful time; pass --accept-slow-kvm to go on \
                 anyway",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_hosts() {
        let svm = "processor\t: 0\nflags\t\t: fpu vme svm sse\n";
        let vmx = "flags\t\t: fpu vmx\n";
        let none = "flags\t\t: fpu sse2 hypervisor\n";
        assert_eq!(HostVirt::classify(false, svm), HostVirt::Hardware);
        assert_eq!(HostVirt::classify(false, vmx), HostVirt::Hardware);
        assert_eq!(HostVirt::classify(false, none), HostVirt::NoHardwareExtensions);
        assert_eq!(HostVirt::classify(true, svm), HostVirt::KvmPvm);
        // A flag name that merely contains "svm" does not count.
        assert_eq!(HostVirt::classify(false, "flags : svm_lock\n"), HostVirt::NoHardwareExtensions);
        assert!(HostVirt::Hardware.warning().is_none());
        assert!(HostVirt::KvmPvm.warning().unwrap().contains("kvm_pvm"));
    }
}
