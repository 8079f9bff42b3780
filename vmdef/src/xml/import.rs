// SPDX-License-Identifier: Apache-2.0
//! The import rule for domain XML written by libvirt (`virsh dumpxml`, virt-install).
//!
//! libvirt writes much that does not change the guest's hardware or data: controllers it
//! implies, PCI and drive `<address>`es, PS/2 `<input>`s, a `<memballoon>`, `<clock>`,
//! `<pm>`, `<seclabel>`, channels for agents. Those are accepted; what is not kept or is
//! changed to fit becomes an [`XmlWarning`] returned with the definition. What would change
//! the guest and is not emulated (SPICE, sound, USB devices, SATA or SCSI disks, a TPM...) is
//! an error naming the element and why, and every such problem of a document is reported at
//! once ([`XmlErrors`]), not the first only.

use std::collections::HashSet;
use std::fmt;

use roxmltree::{Node, NodeType};

use super::read::{attr, name};
use super::{XmlError, XmlErrorKind};
use crate::model::{ClockOffset, VmDef};

/// Something in a document that was accepted and not kept, or changed to fit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct XmlWarning {
    /// 1-based line of the element.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// What was done with it, as a sentence.
    pub message: String,
}

impl fmt::Display for XmlWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// A definition read from domain XML with the warnings of its import.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    /// The definition.
    pub def: VmDef,
    /// What was ignored or adapted, in document order.
    pub warnings: Vec<XmlWarning>,
}

/// Every problem of a refused document (at least one), in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct XmlErrors(pub Vec<XmlError>);

impl XmlErrors {
    /// The first problem.
    pub fn first(&self) -> Option<&XmlError> {
        self.0.first()
    }
}

impl fmt::Display for XmlErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} problems:", all.len())?;
                for e in all {
                    write!(f, "\n  {e}")?;
                }
                Ok(())
            }
        }
    }
}

/// Warnings and errors gathered while reading one document.
#[derive(Default)]
pub(crate) struct Ctx {
    pub(crate) warnings: Vec<XmlWarning>,
    pub(crate) errors: Vec<XmlError>,
    once: HashSet<&'static str>,
}

impl Ctx {
    /// A warning at `node`.
    pub(crate) fn warn(&mut self, node: Node, message: impl Into<String>) {
        let p = node.document().text_pos_at(node.range().start);
        self.warnings.push(XmlWarning { line: p.row, column: p.col, message: message.into() });
    }

    /// A warning given once per document for `key` (the first occurrence's position).
    pub(crate) fn warn_once(&mut self, key: &'static str, node: Node, message: impl Into<String>) {
        if self.once.insert(key) {
            self.warn(node, message);
        }
    }

    /// Keeps `r`'s error for the report and goes on.
    pub(crate) fn collect<T>(&mut self, r: Result<T, XmlError>) -> Option<T> {
        r.map_err(|e| self.errors.push(e)).ok()
    }

    /// libvirt's per-device bookkeeping (`<address>`, `<alias>`): accepted, one warning each.
    pub(crate) fn bookkeeping(&mut self, c: Node) -> bool {
        match name(c) {
            "address" => self.warn_once(
                "address",
                c,
                "<address> elements are ignored: vmctld assigns PCI slots and drive positions itself",
            ),
            "alias" => self.warn_once("alias", c, "<alias> elements are ignored (libvirt's device names)"),
            _ => return false,
        }
        true
    }
}

/// A refusal: the element would change the guest and is not emulated.
pub(crate) fn refused(node: Node, why: &str) -> XmlError {
    let p = node.document().text_pos_at(node.range().start);
    XmlError {
        line: p.row,
        column: p.col,
        kind: XmlErrorKind::Refused { element: name(node).to_string(), why: why.to_string() },
    }
}

fn attr_is(node: Node, a: &str, v: &str) -> bool {
    attr(node, a).is_some_and(|(x, _)| x == v)
}

/// Elements directly under `<domain>` that are libvirt's bookkeeping or tuning. Returns
/// `Ok(true)` when `c` was one of them (accepted, perhaps with a warning).
pub(crate) fn domain_extra(c: Node, ctx: &mut Ctx) -> Result<bool, XmlError> {
    match name(c) {
        "title" | "description" => ctx.warn(c, format!("<{}> is not kept", name(c))),
        "cpu" => {
            if !attr_is(c, "mode", "host-passthrough") || c.children().any(|n| n.is_element()) {
                ctx.warn(
                    c,
                    "<cpu> is ignored: the guest sees the host's CPU as KVM offers it (host-passthrough)",
                );
            }
        }
        "pm" => ctx.warn(c, "<pm> is ignored: the guest is not offered suspend to RAM or disk"),
        "seclabel" => ctx.warn_once(
            "seclabel",
            c,
            "<seclabel> is ignored: vmctld confines each vmm itself (no SELinux/AppArmor labels)",
        ),
        "resource" | "memoryBacking" | "iothreads" | "numatune" | "blkiotune" | "memtune" => {
            ctx.warn(c, format!("<{}> is ignored (host-side tuning not applied)", name(c)))
        }
        "sysinfo" | "idmap" | "launchSecurity" => {
            return Err(refused(c, "it changes what the guest sees and is not supported; remove it"))
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `<clock>`: the offset the RTC honours (`utc`, `localtime`); timers are the vmm's own.
pub(crate) fn clock(c: Node, ctx: &mut Ctx) -> ClockOffset {
    let offset = match attr(c, "offset").map(|(v, _)| v) {
        None | Some("utc") => ClockOffset::Utc,
        Some("localtime") => ClockOffset::Localtime,
        Some(other) => {
            ctx.warn(c, format!("<clock offset='{other}'> is ignored: the guest's RTC counts UTC"));
            ClockOffset::Utc
        }
    };
    // The vmm has an RTC, a PIT and no HPET; tick policies are KVM's.
    let differs = c
        .children()
        .filter(|n| n.is_element())
        .any(|t| !(name(t) == "timer" && attr_is(t, "name", "hpet") && attr_is(t, "present", "no")));
    if differs {
        ctx.warn(c, "<timer> settings are ignored: the guest gets an RTC, a PIT and kvmclock, no HPET");
    }
    offset
}

/// Elements under `<features>` other than `<acpi/>` and `<apic/>`.
pub(crate) fn feature_extra(c: Node, ctx: &mut Ctx) -> bool {
    match name(c) {
        "pae" => {}
        "vmport" if attr_is(c, "state", "off") => {}
        "vmport" | "hyperv" | "kvm" | "smm" | "pvspinlock" | "ioapic" | "vmcoreinfo" | "hap" => {
            ctx.warn(c, format!("<{}> is ignored (the guest gets the vmm's defaults)", name(c)))
        }
        _ => return false,
    }
    true
}

/// Devices libvirt adds or implies that the vmm provides differently or not at all, but
/// whose absence does not change the guest's data. `Ok(true)` when handled.
pub(crate) fn device_extra(c: Node, ctx: &mut Ctx) -> Result<bool, XmlError> {
    let ty = attr(c, "type").map(|(v, _)| v).unwrap_or("");
    match name(c) {
        "controller" => match ty {
            "pci" | "ide" => {}
            "usb" if attr_is(c, "model", "none") => {}
            "usb" => ctx.warn(c, "<controller type='usb'> is ignored: no USB controller is emulated"),
            _ => ctx.warn(c, format!("<controller type='{ty}'> is ignored: it is not emulated")),
        },
        "memballoon" if attr_is(c, "model", "none") => {}
        "memballoon" => {
            ctx.warn(c, "<memballoon> is ignored: no balloon device, the guest keeps all its memory")
        }
        "input" => match (ty, attr(c, "bus").map(|(v, _)| v)) {
            ("mouse" | "keyboard", None | Some("ps2")) => {}
            _ => ctx.warn(
                c,
                format!("<input type='{ty}'> is ignored: the guest gets the PS/2 keyboard and mouse"),
            ),
        },
        "channel" => ctx.warn(c, "<channel> is ignored: no guest agent or SPICE channel is provided"),
        "rng" => ctx.warn(c, "<rng> is ignored: no virtio-rng device (the guest seeds from RDRAND)"),
        "watchdog" | "panic" => ctx.warn(c, format!("<{}> is ignored: not emulated", name(c))),
        "sound" | "audio" => return Err(refused(c, "sound devices are not emulated; remove it")),
        "redirdev" | "hub" | "smartcard" => {
            return Err(refused(c, "USB devices are not emulated; remove it"))
        }
        "tpm" => return Err(refused(c, "a TPM is not emulated; remove it")),
        "filesystem" | "shmem" | "vsock" | "iommu" | "lease" | "parallel" => {
            return Err(refused(c, "not emulated; remove it"))
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The text of a `<metadata>` child that can be kept verbatim: an element whose start tag
/// declares its own namespace (as libosinfo's and virt-manager's do), so that the text means
/// the same written anywhere.
pub(crate) fn verbatim_element<'a>(c: Node<'a, '_>) -> Option<&'a str> {
    let text = c.document().input_text().get(c.range())?;
    let start_tag = &text[..text.find('>')?];
    let prefix = text[1..].split(|ch: char| ch.is_whitespace() || ch == '>' || ch == '/').next()?;
    let declared = match prefix.split_once(':') {
        Some((p, _)) => start_tag.contains(&format!("xmlns:{p}=")),
        None => start_tag.contains("xmlns="),
    };
    declared.then_some(text)
}

/// Checks a stored metadata element (JSON may carry any string): one element in a
/// namespace it declares itself, nothing around it.
pub fn check_metadata_element(text: &str) -> Result<(), String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("not one XML element: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().namespace().is_none() {
        return Err("the element needs a namespace of its own (xmlns:x='...')".into());
    }
    if root.range() != (0..text.len()) || verbatim_element(root).is_none() {
        return Err("give exactly one element that declares its own namespace, nothing around it".into());
    }
    Ok(())
}

/// `<metadata>` children in other namespaces than this stack's that cannot be kept verbatim.
pub(crate) fn foreign_metadata(c: Node, ctx: &mut Ctx) {
    if c.node_type() != NodeType::Element {
        return;
    }
    ctx.warn(
        c,
        format!(
            "<metadata> element <{}> ({}) is not kept: it does not declare its namespace itself",
            name(c),
            c.tag_name().namespace().unwrap_or("no namespace")
        ),
    );
}
