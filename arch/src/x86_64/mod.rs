// SPDX-License-Identifier: Apache-2.0
//! x86_64 guests.

pub mod acpi;
pub mod boot;
pub mod cpuid;
pub mod layout;
pub mod mptable;
pub mod msr;
pub mod pc_acpi;
pub mod regs;
pub mod smbios;
