// SPDX-License-Identifier: Apache-2.0
//! Display adapters, and the RFB (VNC) protocol that shows them remotely.

pub mod rfb;
pub mod vga;
