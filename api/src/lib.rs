// SPDX-License-Identifier: Apache-2.0
//! Types shared by `vmm` and `vmctld`: what one VM is, how to talk to it, and how it ended.
//!
//! - [`config`]: [`VmConfigFile`], the VM configuration as `vmm --config FILE.json` reads it
//!   and as `vmctld` writes it (every `vmm` flag is one of its fields), and its parts in
//!   [`machine`] (machine kind, disks, NICs, boot order), [`hostdev`] (assigned host PCI
//!   devices) and [`vnc`] (the VNC address).
//! - [`control`]: the requests and responses of the control socket (`--control`).
//! - [`exit`]: the exit codes of `vmm` and its exit-status file.
//!
//! Nothing here touches the host: validation against files and KVM stays in `vmm`.

pub mod config;
pub mod control;
pub mod exit;
pub mod hostdev;
pub mod machine;
pub mod vnc;

pub use config::{ConfigError, PreopenedFile, SeccompMode, SerialConfig, VmConfigFile};
pub use exit::{ExitStatus, VmmExit};
