// SPDX-License-Identifier: Apache-2.0
//! Domain XML import: a strict walk over a roxmltree document.

use std::path::PathBuf;

use roxmltree::{Document, Node, NodeType};
use uuid::Uuid;

use super::import::{self, Ctx, Imported, XmlErrors};
use super::{XmlError, XmlErrorKind, METADATA_NS};
use crate::model::{
    BootDevice, Disk, DiskBus, DiskDevice, DiskFormat, Features, Graphics, HostDev, Interface,
    LifecycleAction, MacAddr, NetSource, NicModel, Os, PciAddress, Serial, Video, VmDef, VmName, Vnc,
};

type Result<T> = std::result::Result<T, XmlError>;

mod cputune;
mod devices;
use devices::devices;

pub(crate) fn at(doc: &Document, offset: usize, kind: XmlErrorKind) -> XmlError {
    let p = doc.text_pos_at(offset);
    XmlError { line: p.row, column: p.col, kind }
}

/// Parses `text` as an XML document whose root element is `<root_name>` in no namespace;
/// a syntax error or another root is an error with its line and column.
pub(crate) fn parse_document<'a>(text: &'a str, root_name: &str) -> Result<Document<'a>> {
    crate::limits::check_xml(text).map_err(|e| XmlError {
        line: e.line(),
        column: 1,
        kind: XmlErrorKind::Limit(e),
    })?;
    let doc = Document::parse(text).map_err(|e| {
        let p = e.pos();
        let msg = e.to_string();
        let msg = msg.strip_suffix(&format!(" at {p}")).unwrap_or(&msg).to_string();
        XmlError { line: p.row, column: p.col, kind: XmlErrorKind::Syntax(msg) }
    })?;
    let root = doc.root_element();
    if name(root) != root_name || root.tag_name().namespace().is_some() {
        return Err(err(
            root,
            XmlErrorKind::Element { element: name(root).into(), parent: "document".into() },
        ));
    }
    Ok(doc)
}

pub(crate) fn err(node: Node, kind: XmlErrorKind) -> XmlError {
    at(node.document(), node.range().start, kind)
}

pub(crate) fn name<'a>(node: Node<'a, '_>) -> &'a str {
    node.tag_name().name()
}

pub(crate) fn value_err(node: Node, what: &str, value: &str, expected: &str) -> XmlError {
    err(
        node,
        XmlErrorKind::Value {
            what: what.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        },
    )
}

/// Refuses any attribute not in `allowed` (and every namespaced attribute).
pub(crate) fn check_attrs(node: Node, allowed: &[&str]) -> Result<()> {
    for a in node.attributes() {
        if a.namespace().is_some() || !allowed.contains(&a.name()) {
            return Err(at(
                node.document(),
                a.range().start,
                XmlErrorKind::Attribute { element: name(node).to_string(), attribute: a.name().to_string() },
            ));
        }
    }
    Ok(())
}

/// An attribute's value and an error builder pointing at it.
pub(crate) fn attr<'a>(node: Node<'a, '_>, attr: &str) -> Option<(&'a str, usize)> {
    node.attribute_node(attr).map(|a| (a.value(), a.range().start))
}

pub(crate) fn attr_value_err(node: Node, attr: &str, offset: usize, value: &str, expected: &str) -> XmlError {
    at(
        node.document(),
        offset,
        XmlErrorKind::Value {
            what: format!("<{} {attr}=>", name(node)),
            value: value.to_string(),
            expected: expected.to_string(),
        },
    )
}

pub(crate) fn required_attr<'a>(node: Node<'a, '_>, a: &str) -> Result<(&'a str, usize)> {
    attr(node, a).ok_or_else(|| {
        err(
            node,
            XmlErrorKind::Missing { element: name(node).to_string(), what: format!("a {a}= attribute") },
        )
    })
}

/// Checks an optional attribute against fixed values; returns the index of the match.
pub(crate) fn choice(node: Node, a: &str, values: &[&str]) -> Result<Option<usize>> {
    let Some((v, off)) = attr(node, a) else { return Ok(None) };
    match values.iter().position(|x| *x == v) {
        Some(i) => Ok(Some(i)),
        None => {
            let expected = values.iter().map(|x| format!("'{x}'")).collect::<Vec<_>>().join(" or ");
            Err(attr_value_err(node, a, off, v, &expected))
        }
    }
}

pub(crate) fn required_choice(node: Node, a: &str, values: &[&str]) -> Result<usize> {
    required_attr(node, a)?;
    choice(node, a, values).map(|c| c.unwrap_or(0))
}

/// The child elements; refuses non-blank text and foreign-namespace elements.
pub(crate) fn elements<'a, 'i>(node: Node<'a, 'i>) -> Result<Vec<Node<'a, 'i>>> {
    let mut out = Vec::new();
    for c in node.children() {
        match c.node_type() {
            NodeType::Element => {
                if c.tag_name().namespace().is_some() {
                    return Err(unsupported(c));
                }
                out.push(c);
            }
            NodeType::Text => {
                let t = c.text().unwrap_or("");
                if !t.trim().is_empty() {
                    return Err(value_err(
                        c,
                        &format!("text in <{}>", name(node)),
                        t.trim(),
                        "child elements only",
                    ));
                }
            }
            NodeType::Comment | NodeType::PI | NodeType::Root => {}
        }
    }
    Ok(out)
}

/// An element that must be empty (attributes only).
pub(crate) fn empty(node: Node) -> Result<()> {
    match elements(node)?.first() {
        Some(c) => Err(unsupported(*c)),
        None => Ok(()),
    }
}

/// The text of a value element: no child elements, text as written.
pub(crate) fn text(node: Node) -> Result<String> {
    let mut s = String::new();
    for c in node.children() {
        match c.node_type() {
            NodeType::Element => return Err(unsupported(c)),
            NodeType::Text => s.push_str(c.text().unwrap_or("")),
            _ => {}
        }
    }
    Ok(s)
}

pub(crate) fn unsupported(node: Node) -> XmlError {
    let parent = node.parent_element().map(|p| name(p).to_string()).unwrap_or_default();
    let element = match node.tag_name().namespace() {
        Some(ns) => format!("{} xmlns='{ns}'", name(node)),
        None => name(node).to_string(),
    };
    err(node, XmlErrorKind::Element { element, parent })
}

pub(crate) fn duplicate(node: Node) -> XmlError {
    err(node, XmlErrorKind::Duplicate { element: name(node).to_string() })
}

pub(crate) fn missing(node: Node, what: &str) -> XmlError {
    err(node, XmlErrorKind::Missing { element: name(node).to_string(), what: what.to_string() })
}

/// Sets `slot` once; a second occurrence of `node` is an error.
pub(crate) fn once<T>(slot: &mut Option<T>, node: Node, v: T) -> Result<()> {
    if slot.is_some() {
        return Err(duplicate(node));
    }
    *slot = Some(v);
    Ok(())
}

fn parse_u64(node: Node, s: &str, what: &str) -> Result<u64> {
    let t = s.trim();
    t.parse::<u64>().map_err(|_| value_err(node, what, t, "a decimal number"))
}

/// `<memory>`/`<currentMemory>` in MiB; a size that is not a whole number of MiB is rounded
/// up to one, with a warning.
fn memory_mib(node: Node, ctx: &mut Ctx) -> Result<u64> {
    check_attrs(node, &["unit"])?;
    let units: [(&[&str], u128); 6] = [
        (&["b", "bytes"], 1),
        (&["k", "KiB"], 1 << 10),
        (&["M", "MiB"], 1 << 20),
        (&["G", "GiB"], 1 << 30),
        (&["T", "TiB"], 1 << 40),
        (&[], 0),
    ];
    let scale = match attr(node, "unit") {
        None => 1 << 10,
        Some((u, off)) => {
            units.iter().find(|(names, _)| names.contains(&u)).map(|x| x.1).ok_or_else(|| {
                attr_value_err(node, "unit", off, u, "'KiB', 'MiB', 'GiB', 'TiB', 'bytes' (or k, M, G, T, b)")
            })?
        }
    };
    let n = parse_u64(node, &text(node)?, &format!("<{}>", name(node)))?;
    let bytes = n as u128 * scale;
    let mib = bytes.div_ceil(1 << 20);
    let what = format!("<{}>", name(node));
    if bytes & ((1 << 20) - 1) != 0 {
        ctx.warn(node, format!("{what} of {bytes} bytes is rounded up to {mib} MiB"));
    }
    if mib > u64::MAX as u128 {
        return Err(value_err(node, &what, &n.to_string(), "a size that fits in 64 bits of MiB"));
    }
    Ok(mib as u64)
}

fn lifecycle(node: Node) -> Result<LifecycleAction> {
    check_attrs(node, &[])?;
    let t = text(node)?;
    match t.trim() {
        "destroy" => Ok(LifecycleAction::Destroy),
        "restart" => Ok(LifecycleAction::Restart),
        "preserve" => Ok(LifecycleAction::Preserve),
        other => Err(value_err(node, &format!("<{}>", name(node)), other, "destroy, restart or preserve")),
    }
}

fn path_text(node: Node) -> Result<PathBuf> {
    check_attrs(node, &[])?;
    let t = text(node)?;
    if t.is_empty() {
        return Err(missing(node, "a path"));
    }
    Ok(PathBuf::from(t))
}

fn os(node: Node) -> Result<Os> {
    check_attrs(node, &[])?;
    let mut ty = None;
    let mut boot: Vec<BootDevice> = Vec::new();
    let mut first_boot = None;
    let (mut kernel, mut initrd, mut cmdline) = (None, None, None);
    for c in elements(node)? {
        match name(c) {
            "type" => {
                check_attrs(c, &["arch", "machine"])?;
                choice(c, "arch", &["x86_64"])?;
                if let Some((m, off)) = attr(c, "machine") {
                    if m != "pc" && !m.starts_with("pc-i440fx-") {
                        return Err(attr_value_err(
                            c,
                            "machine",
                            off,
                            m,
                            "'pc' or 'pc-i440fx-…' (an i440FX PC)",
                        ));
                    }
                }
                let t = text(c)?;
                if t.trim() != "hvm" {
                    return Err(value_err(c, "<os><type>", t.trim(), "hvm"));
                }
                once(&mut ty, c, ())?;
            }
            "boot" => {
                check_attrs(c, &["dev"])?;
                empty(c)?;
                let dev = [BootDevice::Disk, BootDevice::Cdrom, BootDevice::Network]
                    [required_choice(c, "dev", &["hd", "cdrom", "network"])?];
                if boot.contains(&dev) {
                    return Err(duplicate(c));
                }
                boot.push(dev);
                first_boot.get_or_insert(c);
            }
            "kernel" => once(&mut kernel, c, path_text(c)?)?,
            "initrd" => once(&mut initrd, c, path_text(c)?)?,
            "cmdline" => {
                check_attrs(c, &[])?;
                once(&mut cmdline, c, text(c)?)?;
            }
            _ => return Err(unsupported(c)),
        }
    }
    if ty.is_none() {
        return Err(missing(node, "a <type>hvm</type> child"));
    }
    match kernel {
        Some(kernel) => {
            if let Some(b) = first_boot {
                return Err(err(
                    b,
                    XmlErrorKind::Conflict(
                        "<boot> cannot be combined with <kernel>: a direct kernel boot has no firmware"
                            .into(),
                    ),
                ));
            }
            Ok(Os::Direct { kernel, initrd, cmdline })
        }
        None if initrd.is_some() || cmdline.is_some() => {
            Err(missing(node, "a <kernel> for its <initrd>/<cmdline>"))
        }
        None if boot.is_empty() => Ok(Os::default()),
        None => Ok(Os::Pc { boot }),
    }
}

/// `<features>`: `<acpi/>` and `<apic/>` are what the vmm always provides; an absent one is
/// turned on with a warning (libvirt's guest would run without it).
fn features(node: Node, ctx: &mut Ctx) -> Result<Features> {
    check_attrs(node, &[])?;
    let (mut acpi, mut apic) = (None, None);
    for c in elements(node)? {
        if import::feature_extra(c, ctx) {
            continue;
        }
        let slot = match name(c) {
            "acpi" => &mut acpi,
            "apic" => &mut apic,
            _ => return Err(unsupported(c)),
        };
        check_attrs(c, &["eoi"])?;
        empty(c)?;
        once(slot, c, ())?;
    }
    if acpi.is_none() || apic.is_none() {
        ctx.warn(node, "no <acpi/> or <apic/>: the vmm always gives the guest ACPI and APICs");
    }
    Ok(Features { acpi: true, apic: true })
}

/// `<metadata>`: this stack's autostart, and other tools' elements kept verbatim in `kept`.
fn metadata(node: Node, ctx: &mut Ctx, kept: &mut Vec<String>) -> Result<bool> {
    check_attrs(node, &[])?;
    let mut autostart = None;
    for c in node.children() {
        match c.node_type() {
            NodeType::Element if c.tag_name().namespace() == Some(METADATA_NS) && name(c) == "config" => {
                check_attrs(c, &["autostart"])?;
                empty(c)?;
                let v = choice(c, "autostart", &["no", "yes"])? == Some(1);
                once(&mut autostart, c, v)?;
            }
            NodeType::Element if c.tag_name().namespace().is_some_and(|ns| ns != METADATA_NS) => {
                match import::verbatim_element(c) {
                    Some(text) => kept.push(text.to_string()),
                    None => import::foreign_metadata(c, ctx),
                }
            }
            NodeType::Element => return Err(unsupported(c)),
            NodeType::Text if !c.text().unwrap_or("").trim().is_empty() => {
                return Err(value_err(
                    c,
                    "text in <metadata>",
                    c.text().unwrap_or("").trim(),
                    "elements only",
                ));
            }
            _ => {}
        }
    }
    Ok(autostart.unwrap_or(false))
}

/// Parses a libvirt domain XML document within the supported subset (see [`super`]); the
/// first problem only. [`import()`] reports every problem and the warnings.
pub fn from_xml(text_in: &str) -> Result<VmDef> {
    import(text_in).map(|i| i.def).map_err(|mut e| e.0.swap_remove(0))
}

/// Imports a libvirt domain XML document by the rule of [`mod@super::import`]: bookkeeping is
/// accepted with warnings, and every problem of a refused document is reported.
///
/// A missing UUID or MAC is generated, and disks keep their `<target dev>`. Checks that need
/// the host or other VMs are left to [`crate::validate`].
pub fn import(text_in: &str) -> std::result::Result<Imported, XmlErrors> {
    let doc = parse_document(text_in, "domain").map_err(|e| XmlErrors(vec![e]))?;
    let mut ctx = Ctx::default();
    let def = domain(doc.root_element(), &mut ctx);
    match def {
        Ok(def) if ctx.errors.is_empty() => Ok(Imported { def, warnings: ctx.warnings }),
        Ok(_) => Err(XmlErrors(ctx.errors)),
        Err(e) => {
            ctx.errors.push(e);
            ctx.errors.sort_by_key(|e| (e.line, e.column));
            Err(XmlErrors(ctx.errors))
        }
    }
}

fn domain(root: Node, ctx: &mut Ctx) -> Result<VmDef> {
    check_attrs(root, &["type", "id"])?;
    if attr(root, "type").is_some_and(|(t, _)| t == "qemu") {
        ctx.warn(root, "domain type='qemu' (emulation) runs with KVM here");
    } else {
        required_choice(root, "type", &["kvm"])?;
    }

    let (mut vm_name, mut uuid, mut memory, mut current, mut vcpus) = (None, None, None, None, None);
    let (mut os_def, mut feats, mut devs, mut autostart) = (None, None, None, None);
    let (mut on_poweroff, mut on_reboot, mut on_crash) = (None, None, None);
    let (mut kept_metadata, mut clock, mut tune) = (Vec::new(), None, None);
    for c in elements(root)? {
        let r = (|| -> Result<()> {
            if import::domain_extra(c, ctx)? {
                return Ok(());
            }
            match name(c) {
                "name" => {
                    check_attrs(c, &[])?;
                    let t = text(c)?;
                    let n =
                        VmName::new(t.as_str()).map_err(|e| value_err(c, "<name>", &t, &e.to_string()))?;
                    once(&mut vm_name, c, n)?;
                }
                "uuid" => {
                    check_attrs(c, &[])?;
                    let t = text(c)?;
                    let u = Uuid::parse_str(t.trim()).map_err(|_| {
                        value_err(c, "<uuid>", t.trim(), "a UUID like 4dea22b3-1d52-d8f3-2516-782e98ab3fa0")
                    })?;
                    once(&mut uuid, c, u)?;
                }
                "memory" => once(&mut memory, c, (memory_mib(c, ctx)?, c))?,
                "currentMemory" => once(&mut current, c, (memory_mib(c, ctx)?, c))?,
                "maxMemory" => ctx.warn(c, "<maxMemory> is ignored: memory hotplug is not supported"),
                "vcpu" => {
                    check_attrs(c, &["placement", "cpuset", "current"])?;
                    choice(c, "placement", &["static", "auto"])?;
                    let n = parse_u64(c, &text(c)?, "<vcpu>")?;
                    if let Some((set, _)) = attr(c, "cpuset") {
                        ctx.warn(c, format!("<vcpu cpuset='{set}'> is ignored: vCPU threads are not pinned"));
                    }
                    if let Some((cur, _)) = attr(c, "current").filter(|(v, _)| v.trim() != n.to_string()) {
                        ctx.warn(
                            c,
                            format!("<vcpu current='{cur}'> is ignored: all {n} vCPUs are online at boot"),
                        );
                    }
                    once(&mut vcpus, c, n)?;
                }
                "cputune" => once(&mut tune, c, cputune::cputune(c, ctx)?)?,
                "os" => once(&mut os_def, c, os(c)?)?,
                "clock" => once(&mut clock, c, import::clock(c, ctx))?,
                "features" => once(&mut feats, c, features(c, ctx)?)?,
                "on_poweroff" => once(&mut on_poweroff, c, lifecycle(c)?)?,
                "on_reboot" => once(&mut on_reboot, c, lifecycle(c)?)?,
                "on_crash" => once(&mut on_crash, c, lifecycle(c)?)?,
                "devices" => once(&mut devs, c, devices(c, ctx)?)?,
                "metadata" => once(&mut autostart, c, metadata(c, ctx, &mut kept_metadata)?)?,
                _ => return Err(unsupported(c)),
            }
            Ok(())
        })();
        ctx.collect(r);
    }
    if !ctx.errors.is_empty() {
        // An element with a problem may be one of those checked below: report the problems
        // found, not their consequences.
        return Err(ctx.errors.remove(0));
    }
    if feats.is_none() {
        ctx.warn(root, "no <features>: the vmm always gives the guest ACPI and APICs");
    }
    let vm_name = vm_name.ok_or_else(|| missing(root, "a <name>"))?;
    let (memory_mib, _) = memory.ok_or_else(|| missing(root, "a <memory>"))?;
    if let Some((cur, node)) = current {
        if cur != memory_mib {
            return Err(err(
                node,
                XmlErrorKind::Conflict(format!(
                    "<currentMemory> ({cur} MiB) differs from <memory> ({memory_mib} MiB); ballooning is not supported, make them equal"
                )),
            ));
        }
    }
    let vcpus = vcpus.unwrap_or(1);
    let vcpus = u32::try_from(vcpus).map_err(|_| missing(root, "a <vcpu> count below 2^32"))?;
    let os_def = os_def.ok_or_else(|| missing(root, "an <os>"))?;
    let devs = devs.unwrap_or_default();
    Ok(VmDef {
        name: vm_name,
        uuid: uuid.unwrap_or_else(Uuid::new_v4),
        memory_mib,
        vcpus,
        cputune: tune.unwrap_or_default(),
        os: os_def,
        features: feats.unwrap_or(Features { acpi: true, apic: true }),
        disks: devs.disks,
        interfaces: devs.interfaces,
        serial: devs.serial,
        graphics: Graphics { video: devs.video.unwrap_or_default(), vnc: devs.vnc },
        hostdevs: devs.hostdevs,
        on_poweroff: on_poweroff.unwrap_or(LifecycleAction::Destroy),
        on_reboot: on_reboot.unwrap_or(LifecycleAction::Restart),
        on_crash: on_crash.unwrap_or(LifecycleAction::Destroy),
        autostart: autostart.unwrap_or(false),
        clock_offset: clock.unwrap_or_default(),
        metadata: kept_metadata,
    })
}
