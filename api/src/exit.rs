// SPDX-License-Identifier: Apache-2.0
//! How `vmm` ends: its exit codes, and the exit-status file (`--exit-status-file`) that says
//! why, so a daemon can tell even if it was not watching when the process ended.

use serde::{Deserialize, Serialize};

/// The exit status of `vmm`; every other status (or a signal) is a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VmmExit {
    /// 0: the guest powered off.
    PowerOff = 0,
    /// 1: an internal or hypervisor error.
    Error = 1,
    /// 2: bad user input (flags, configuration file, images); nothing was run.
    BadInput = 2,
    /// 3: the guest rebooted under `--no-reboot` (`no_reboot`).
    Reboot = 3,
    /// 4: the guest triple-faulted (the CPU shut down).
    TripleFault = 4,
    /// 5: the host cannot run guests at useful speed (see `--accept-slow-kvm`).
    SlowHost = 5,
    /// 130: stopped by a signal, a `stop` request or Ctrl-A x on the console.
    Stopped = 130,
    /// 159 (128 + SIGSYS): a thread made a syscall its seccomp filter forbids; stderr names
    /// it. A bug in the vmm or a compromised one, never the guest's doing alone.
    Seccomp = 159,
}

impl VmmExit {
    /// Every exit code, in numeric order.
    pub const ALL: [VmmExit; 8] = [
        VmmExit::PowerOff,
        VmmExit::Error,
        VmmExit::BadInput,
        VmmExit::Reboot,
        VmmExit::TripleFault,
        VmmExit::SlowHost,
        VmmExit::Stopped,
        VmmExit::Seccomp,
    ];

    /// The process exit status.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The exit code with this status, if it is one.
    pub fn from_code(code: i32) -> Option<VmmExit> {
        Self::ALL.into_iter().find(|e| i32::from(e.code()) == code)
    }

    /// The guest or the user ended the VM on purpose (power off, reboot under
    /// `--no-reboot`, stop): not a failure.
    pub fn is_clean(self) -> bool {
        matches!(self, VmmExit::PowerOff | VmmExit::Reboot | VmmExit::Stopped)
    }
}

/// What `vmm` writes to its exit-status file: `{"code":N,"reason":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code (a [`VmmExit`]).
    pub code: i32,
    /// Why, in words (the error message for a failure).
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for e in VmmExit::ALL {
            assert_eq!(VmmExit::from_code(i32::from(e.code())), Some(e));
        }
        assert_eq!(VmmExit::Stopped.code(), 130);
        assert_eq!(VmmExit::Seccomp.code(), 159);
        assert_eq!(VmmExit::from_code(6), None);
        assert_eq!(VmmExit::from_code(-1), None);
        assert!(VmmExit::Reboot.is_clean() && !VmmExit::TripleFault.is_clean());
    }

    #[test]
    fn exit_status_file_format() {
        let s: ExitStatus = serde_json::from_str(r#"{"code":4,"reason":"triple fault"}"#).unwrap();
        assert_eq!(s, ExitStatus { code: 4, reason: "triple fault".into() });
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"code":4,"reason":"triple fault"}"#);
    }
}
