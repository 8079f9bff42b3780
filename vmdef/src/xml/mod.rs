// SPDX-License-Identifier: Apache-2.0
//! libvirt domain XML for the subset [`VmDef`] expresses: import ([`from_xml`]) and
//! export ([`to_xml`]).
//!
//! Import follows the rule of [`mod@import`]: libvirt's bookkeeping (controllers, addresses,
//! balloon, channels, `<clock>`, `<pm>`, `<seclabel>`...) is accepted and reported as
//! warnings; an element, attribute or value outside the subset below that would change the
//! guest is an error naming it with its line and column, and [`fn@import`] reports every
//! such error of a document. `<devices><emulator>` is accepted silently: it names QEMU, which
//! this stack replaces.
//!
//! The subset (attributes in brackets are optional):
//! - `<domain type='kvm'>`; `<name>`; `[<uuid>]` (generated if absent).
//! - `<memory [unit=…]>` with unit `b`/`bytes`, `k`/`KiB` (the default), `M`/`MiB`,
//!   `G`/`GiB`, `T`/`TiB`; the size must be a whole number of MiB. `[<currentMemory>]`
//!   must equal `<memory>` (no ballooning).
//! - `[<vcpu [placement='static']>]`, default 1.
//! - `[<cputune>]` with `[<period>]` (1000 to 1000000 µs) and `[<quota>]` (1000 to
//!   17592186044415 µs per vCPU, `-1` for none): the vCPUs' bandwidth limit
//!   ([`crate::model::CpuTune`]). Its other children (`<shares>`, `<vcpupin>`,
//!   `<emulatorpin>`, `<emulator_quota>`...) are accepted with a warning.
//! - `<os>` with `<type [arch='x86_64'] [machine='pc'|'pc-i440fx-…']>hvm</type>`, then
//!   either `<boot dev='hd'|'cdrom'|'network'/>`… (firmware boot, default `hd`) or
//!   `<kernel>`, `[<initrd>]`, `[<cmdline>]` (direct kernel boot, no firmware). The machine
//!   version is not kept: export writes `pc`.
//! - `[<features>]` with `<acpi/>`, `<apic/>`; the vmm always provides both, so an absent
//!   one is turned on with a warning.
//! - `<on_poweroff>`, `<on_reboot>`, `<on_crash>`: `destroy`, `restart` or `preserve`.
//! - `<devices>`:
//!   - `<disk type='file' [device='disk'|'cdrom']>` with `[<driver [name='qemu'] type='raw'|'qcow2'/>]`,
//!     `<source file=…/>` (optional for a CD-ROM), `<target dev=… [bus='ide'|'virtio']/>`
//!     (bus from the `hd`/`vd` prefix if absent), `[<readonly/>]`.
//!   - `<interface type='bridge'|'network'>` with `<source bridge=…/>` or `<source network=…/>`,
//!     `[<mac address=…/>]` (generated if absent), `<model type='e1000'|'virtio'/>` (required:
//!     libvirt's default model is not emulated).
//!   - `<serial type='pty'>` with `[<target [type='isa-serial'] port='0'>[<model name='isa-serial'/>]</target>]`
//!     and `[<log file=…/>]`; `<console type='pty'>` with `[<target [type='serial'] [port='0']/>]`
//!     (an alias of serial port 0, as in libvirt). One serial port.
//!   - `<graphics type='vnc' [port=…] [autoport='yes'|'no'] [listen=…] [passwd=…]>` with
//!     `[<listen type='address' address=…/>]`; `port='-1'` or `autoport='yes'` means automatic.
//!     Without `passwd` the server is a unix socket (a port, autoport or listen is warned
//!     about); written back as `<graphics type='vnc'/>` when nothing else is set.
//!   - `<video><model type='vga'|'none'/></video>`.
//!   - `<hostdev mode='subsystem' type='pci' [managed='yes'|'no']>` with
//!     `<source><address domain=… bus=… slot=… function=…/></source>` (hex `0x…` or decimal).
//!   - `[<emulator>]`, accepted and not kept (see above).
//! - `[<metadata>]` holding only this stack's `<vmctl:config xmlns:vmctl='urn:rvmm:vmctl:1'
//!   autostart='yes'|'no'/>`, which carries [`VmDef::autostart`] (libvirt keeps autostart
//!   outside the domain XML but preserves metadata).
//!
//! Comments are allowed anywhere; text only where a value is expected.

pub mod import;
pub(crate) mod read;
pub(crate) mod write;

#[cfg(test)]
mod tests;

use crate::model::VmDef;

pub use import::{Imported, XmlErrors, XmlWarning};
pub use read::{from_xml, import};
pub use write::to_xml;

/// Namespace of this stack's element inside `<metadata>`.
pub const METADATA_NS: &str = "urn:rvmm:vmctl:1";

/// What is wrong with a domain XML document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlErrorKind {
    /// Not well-formed XML (or a DTD, which is refused).
    #[error("malformed XML: {0}")]
    Syntax(String),
    /// An element outside the supported subset.
    #[error("unsupported element <{element}> in <{parent}>; remove it, it is outside the supported subset")]
    Element {
        /// The element's name.
        element: String,
        /// Its parent's name.
        parent: String,
    },
    /// An attribute outside the supported subset.
    #[error("unsupported attribute {attribute}= on <{element}>; remove it")]
    Attribute {
        /// The element's name.
        element: String,
        /// The attribute's name.
        attribute: String,
    },
    /// A value outside the supported subset or not parseable.
    #[error("unsupported value {value:?} for {what}; use {expected}")]
    Value {
        /// Element or `element/@attribute` holding it.
        what: String,
        /// The value given.
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// A required element or attribute is absent.
    #[error("<{element}> needs {what}")]
    Missing {
        /// The element lacking it.
        element: String,
        /// What it lacks.
        what: String,
    },
    /// An element that may appear once appears again.
    #[error("<{element}> appears more than once; keep one")]
    Duplicate {
        /// The element's name.
        element: String,
    },
    /// Beyond the bounds every document must respect ([`crate::limits`]).
    #[error("{0}")]
    Limit(crate::limits::LimitError),
    /// An element that would change the guest and is not emulated.
    #[error("<{element}> is refused: {why}")]
    Refused {
        /// The element's name.
        element: String,
        /// Why, and what to do instead.
        why: String,
    },
    /// Elements that are each valid but contradict each other.
    #[error("{0}")]
    Conflict(String),
}

/// An error in a domain XML document, with the 1-based position of the offending node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct XmlError {
    /// Line of the offending element, attribute or text.
    pub line: u32,
    /// Column.
    pub column: u32,
    /// What is wrong.
    pub kind: XmlErrorKind,
}

/// Checks that `def` survives export and import unchanged; for callers that want to refuse
/// a definition whose XML form would differ (none should, given [`crate::validate`]).
pub fn round_trips(def: &VmDef) -> bool {
    from_xml(&to_xml(def)).is_ok_and(|d| &d == def)
}
