// SPDX-License-Identifier: Apache-2.0
//! Display adapters.

pub mod vga;
