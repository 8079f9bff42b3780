// SPDX-License-Identifier: Apache-2.0
//! VM definitions for the management daemon `vmctld` and its `vmctl` command line.
//!
//! - [`model`]: the native definition ([`VmDef`]), parsed from and written as JSON.
//! - [`xml`]: import and export of the libvirt domain XML subset the model expresses.
//! - [`validate`]: the checks `define` runs against the host and the other definitions.
//! - [`network`]: managed network definitions (`vmctl net`).
//! - [`store`]: the state directory, every write atomic.
//! - [`limits`]: size, depth and element bounds checked before any document is parsed.
//!
//! Nothing here touches KVM or starts processes.

pub mod limits;
pub mod model;
pub mod network;
pub mod store;
pub mod validate;
pub mod xml;

pub use model::{JsonError, MacAddr, PciAddress, ValueError, VmDef, VmName};
