// SPDX-License-Identifier: Apache-2.0
//! Emulated devices and the buses they sit on.
//!
//! Every device is a plain state machine behind [`bus::BusDevice`]: it sees reads and writes at
//! an offset within its range and raises interrupts through [`irq::IrqLine`]; none of them
//! knows about KVM, so each is unit-tested without `/dev/kvm`.

pub mod bus;
pub mod display;
pub mod ide;
pub mod interrupt;
pub mod irq;
pub mod legacy;
pub mod log_limit;
pub mod net;
pub mod pci;
pub mod persist;
pub mod sandbox;
pub mod stats;
pub mod vfio;
pub mod virtio;
