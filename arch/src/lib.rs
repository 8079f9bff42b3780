// SPDX-License-Identifier: Apache-2.0
//! x86_64 platform knowledge: the guest memory map, CPUID and MSR set-up, the 64-bit entry
//! state, the Linux boot protocol, and the firmware tables (MP table, ACPI) a guest reads to
//! find its CPUs and interrupt controllers.

pub mod fw_cfg_loader;
pub mod x86_64;
