// SPDX-License-Identifier: Apache-2.0
//! `<devices>` of a domain XML: disks, NICs, serial and console, graphics, video, host
//! devices, and (through [`super::import`]) the bookkeeping libvirt adds.

use std::path::PathBuf;

use roxmltree::Node;

use super::*;

fn disk(node: Node, ctx: &mut Ctx) -> Result<Disk> {
    check_attrs(node, &["type", "device", "snapshot"])?;
    if attr(node, "type").is_some_and(|(t, _)| t == "block") {
        return Err(import::refused(
            node,
            "disk type='block' (a host block device) is not supported yet; use a file in a storage pool",
        ));
    }
    required_choice(node, "type", &["file"])?;
    let device =
        [DiskDevice::Disk, DiskDevice::Cdrom][choice(node, "device", &["disk", "cdrom"])?.unwrap_or(0)];
    let (mut format, mut path, mut target, mut readonly) = (None, None, None, None);
    for c in elements(node)? {
        if ctx.bookkeeping(c) {
            continue;
        }
        match name(c) {
            "boot" | "serial" | "shareable" | "iotune" => {
                ctx.warn(c, format!("<disk><{}> is ignored", name(c)));
            }
            "driver" => {
                check_attrs(c, &["name", "type", "cache", "io", "discard", "detect_zeroes"])?;
                for a in ["cache", "io", "discard", "detect_zeroes"] {
                    if let Some((v, _)) = attr(c, a) {
                        ctx.warn(c, format!("<driver {a}='{v}'> is ignored: the vmm picks its own I/O mode"));
                    }
                }
                empty(c)?;
                choice(c, "name", &["qemu"])?;
                let f =
                    [DiskFormat::Raw, DiskFormat::Qcow2][choice(c, "type", &["raw", "qcow2"])?.unwrap_or(0)];
                once(&mut format, c, f)?;
            }
            "source" => {
                check_attrs(c, &["file"])?;
                empty(c)?;
                let (f, _) = required_attr(c, "file")?;
                once(&mut path, c, PathBuf::from(f))?;
            }
            "target" => {
                check_attrs(c, &["dev", "bus"])?;
                empty(c)?;
                let (dev, off) = required_attr(c, "dev")?;
                if let Some((b @ ("sata" | "scsi" | "usb" | "fdc" | "sd"), _)) = attr(c, "bus") {
                    return Err(import::refused(
                        c,
                        &format!("bus='{b}' is not emulated; use bus='virtio' (or 'ide')"),
                    ));
                }
                let bus = match choice(c, "bus", &["ide", "virtio"])? {
                    Some(i) => [DiskBus::Ide, DiskBus::Virtio][i],
                    None if dev.starts_with("hd") => DiskBus::Ide,
                    None if dev.starts_with("vd") => DiskBus::Virtio,
                    None => return Err(attr_value_err(c, "dev", off, dev, "hdX (IDE) or vdX (virtio)")),
                };
                once(&mut target, c, (dev.to_string(), bus))?;
            }
            "readonly" => {
                check_attrs(c, &[])?;
                empty(c)?;
                once(&mut readonly, c, ())?;
            }
            _ => return Err(unsupported(c)),
        }
    }
    let (target, bus) = target.ok_or_else(|| missing(node, "a <target dev=… bus=…/>"))?;
    if path.is_none() && device == DiskDevice::Disk {
        return Err(missing(node, "a <source file=…/> (only a CD-ROM may be empty)"));
    }
    Ok(Disk { path, format: format.unwrap_or_default(), bus, device, target, readonly: readonly.is_some() })
}

fn interface(node: Node, ctx: &mut Ctx) -> Result<Interface> {
    check_attrs(node, &["type"])?;
    if attr(node, "type").is_some_and(|(t, _)| t == "user") {
        return Err(import::refused(
            node,
            "interface type='user' is not supported yet; use type='network' with a vmctl network",
        ));
    }
    let kind = required_choice(node, "type", &["bridge", "network"])?;
    let (mut source, mut mac, mut model) = (None, None, None);
    for c in elements(node)? {
        if ctx.bookkeeping(c) {
            continue;
        }
        match name(c) {
            "target" | "driver" | "rom" | "boot" | "link" | "mtu" => {
                ctx.warn(c, format!("<interface><{}> is ignored", name(c)));
            }
            "mac" => {
                check_attrs(c, &["address"])?;
                empty(c)?;
                let (v, off) = required_attr(c, "address")?;
                let m: MacAddr = v.parse().map_err(|e: crate::model::ValueError| {
                    attr_value_err(c, "address", off, v, &e.to_string())
                })?;
                once(&mut mac, c, m)?;
            }
            "source" => {
                let a = ["bridge", "network"][kind];
                check_attrs(c, &[a, "portid"])?;
                empty(c)?;
                let (v, _) = required_attr(c, a)?;
                let s = if kind == 0 { NetSource::Bridge(v.into()) } else { NetSource::Network(v.into()) };
                once(&mut source, c, s)?;
            }
            "model" => {
                check_attrs(c, &["type"])?;
                empty(c)?;
                let m =
                    [NicModel::E1000, NicModel::Virtio][required_choice(c, "type", &["e1000", "virtio"])?];
                once(&mut model, c, m)?;
            }
            _ => return Err(unsupported(c)),
        }
    }
    Ok(Interface {
        source: source.ok_or_else(|| missing(node, "a <source …/>"))?,
        model: model.ok_or_else(|| missing(node, "a <model type='e1000'|'virtio'/>"))?,
        mac: mac.unwrap_or_else(MacAddr::random),
    })
}

/// `<target>` of a serial port or console: port 0 only.
fn serial_target(node: Node, type_name: &str) -> Result<()> {
    check_attrs(node, &["type", "port"])?;
    choice(node, "type", &[type_name])?;
    choice(node, "port", &["0"])?;
    for c in elements(node)? {
        if name(c) != "model" || type_name != "isa-serial" {
            return Err(unsupported(c));
        }
        check_attrs(c, &["name"])?;
        empty(c)?;
        required_choice(c, "name", &["isa-serial"])?;
    }
    Ok(())
}

fn serial(node: Node, ctx: &mut Ctx) -> Result<Serial> {
    check_attrs(node, &["type"])?;
    required_choice(node, "type", &["pty"])?;
    let (mut log, mut target) = (None, None);
    for c in elements(node)? {
        if ctx.bookkeeping(c) {
            continue;
        }
        match name(c) {
            "target" => {
                serial_target(c, "isa-serial")?;
                once(&mut target, c, ())?;
            }
            "log" => {
                check_attrs(c, &["file"])?;
                empty(c)?;
                once(&mut log, c, PathBuf::from(required_attr(c, "file")?.0))?;
            }
            _ => return Err(unsupported(c)),
        }
    }
    Ok(Serial { log })
}

fn console(node: Node, ctx: &mut Ctx) -> Result<()> {
    check_attrs(node, &["type"])?;
    required_choice(node, "type", &["pty"])?;
    let mut target = None;
    for c in elements(node)? {
        if ctx.bookkeeping(c) {
            continue;
        }
        if name(c) != "target" {
            return Err(unsupported(c));
        }
        serial_target(c, "serial")?;
        once(&mut target, c, ())?;
    }
    Ok(())
}

fn graphics(node: Node, ctx: &mut Ctx) -> Result<Vnc> {
    check_attrs(node, &["type", "port", "autoport", "listen", "passwd"])?;
    if let Some((t @ ("spice" | "sdl" | "rdp" | "egl-headless" | "dbus"), _)) = attr(node, "type") {
        return Err(import::refused(node, &format!("graphics type='{t}' is not supported; use type='vnc'")));
    }
    required_choice(node, "type", &["vnc"])?;
    let autoport = choice(node, "autoport", &["no", "yes"])?;
    let port = match attr(node, "port") {
        None | Some(("-1", _)) => None,
        Some((p, off)) => {
            Some(p.parse::<u16>().map_err(|_| attr_value_err(node, "port", off, p, "-1 or 0-65535"))?)
        }
    };
    let port = if autoport == Some(1) { None } else { port };
    let parse_ip = |n: Node, a: &str| -> Result<Option<std::net::IpAddr>> {
        match attr(n, a) {
            None => Ok(None),
            Some((v, off)) => v.parse().map(Some).map_err(|_| attr_value_err(n, a, off, v, "an IP address")),
        }
    };
    let mut listen = parse_ip(node, "listen")?;
    for c in elements(node)? {
        if matches!(name(c), "image" | "gl" | "audio") {
            ctx.warn(c, format!("<graphics><{}> is ignored", name(c)));
            continue;
        }
        if name(c) != "listen" {
            return Err(unsupported(c));
        }
        check_attrs(c, &["type", "address"])?;
        empty(c)?;
        required_choice(c, "type", &["address"])?;
        let ip = parse_ip(c, "address")?.ok_or_else(|| missing(c, "an address= attribute"))?;
        if listen.is_some_and(|l| l != ip) {
            return Err(err(
                c,
                XmlErrorKind::Conflict("<listen address=…> differs from <graphics listen=…>".into()),
            ));
        }
        listen = Some(ip);
    }
    let password = attr(node, "passwd").map(|(p, _)| p.to_string());
    let asks_tcp = ["port", "autoport", "listen"].iter().any(|a| attr(node, a).is_some()) || listen.is_some();
    if password.is_none() && asks_tcp {
        ctx.warn(
            node,
            "<graphics type='vnc'> has no passwd=, so its VNC server listens on a unix socket in the VM's \
             run directory, not on TCP: connect with `vmctl vnc NAME`, or add passwd='…' (1 to 8 \
             characters) to listen on TCP",
        );
    }
    Ok(Vnc { port, listen: listen.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)), password })
}

fn video(node: Node, ctx: &mut Ctx) -> Result<Video> {
    check_attrs(node, &[])?;
    let mut model = None;
    for c in elements(node)? {
        if ctx.bookkeeping(c) {
            continue;
        }
        if name(c) != "model" {
            return Err(unsupported(c));
        }
        check_attrs(c, &["type", "vram", "heads", "primary", "ram", "vgamem"])?;
        if let Some((t @ ("cirrus" | "qxl" | "virtio" | "bochs" | "vmvga"), _)) = attr(c, "type") {
            ctx.warn(
                c,
                format!("<video model='{t}'> becomes a standard VGA (Bochs VBE), which every guest drives"),
            );
            once(&mut model, c, Video::Vga)?;
            continue;
        }
        if elements(c)?.iter().any(|a| name(*a) == "acceleration") {
            ctx.warn(c, "<acceleration> is ignored");
        }
        once(&mut model, c, [Video::Vga, Video::None][required_choice(c, "type", &["vga", "none"])?])?;
    }
    model.ok_or_else(|| missing(node, "a <model type='vga'|'none'/>"))
}

fn pci_number(node: Node, a: &str, max: u32) -> Result<u32> {
    let (v, off) = required_attr(node, a)?;
    let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    };
    n.filter(|n| *n <= max)
        .ok_or_else(|| attr_value_err(node, a, off, v, &format!("a number from 0 to {max:#x}")))
}

fn hostdev(node: Node, ctx: &mut Ctx) -> Result<HostDev> {
    check_attrs(node, &["mode", "type", "managed"])?;
    required_choice(node, "mode", &["subsystem"])?;
    required_choice(node, "type", &["pci"])?;
    let managed = choice(node, "managed", &["yes", "no"])?.unwrap_or(0) == 0;
    let mut address = None;
    for c in elements(node)? {
        if ctx.bookkeeping(c) {
            continue;
        }
        if name(c) == "rom" {
            ctx.warn(c, "<hostdev><rom> is ignored");
            continue;
        }
        if name(c) != "source" {
            return Err(unsupported(c));
        }
        check_attrs(c, &[])?;
        let children = elements(c)?;
        let a = match children.as_slice() {
            [] => return Err(missing(c, "an <address domain=… bus=… slot=… function=…/>")),
            [a, ..] if name(*a) != "address" => return Err(unsupported(*a)),
            [a] => *a,
            [_, b, ..] if name(*b) == "address" => return Err(duplicate(*b)),
            [_, b, ..] => return Err(unsupported(*b)),
        };
        check_attrs(a, &["domain", "bus", "slot", "function"])?;
        empty(a)?;
        let d = pci_number(a, "domain", 0xffff)?;
        let b = pci_number(a, "bus", 0xff)?;
        let s = pci_number(a, "slot", 0x1f)?;
        let f = pci_number(a, "function", 7)?;
        // Each number was bounded to its field's range above.
        let pci = PciAddress::new(d as u16, b as u8, s as u8, f as u8)
            .map_err(|e| value_err(a, "<address>", "", &e.to_string()))?;
        once(&mut address, c, pci)?;
    }
    Ok(HostDev {
        address: address.ok_or_else(|| missing(node, "a <source><address …/></source>"))?, managed
    })
}

/// The devices of a `<devices>` element.
#[derive(Default)]
pub(super) struct Devices {
    pub(super) disks: Vec<Disk>,
    pub(super) interfaces: Vec<Interface>,
    pub(super) serial: Option<Serial>,
    pub(super) serial_seen: bool,
    pub(super) console_seen: bool,
    pub(super) vnc: Option<Vnc>,
    pub(super) video: Option<Video>,
    pub(super) hostdevs: Vec<HostDev>,
}

/// `<devices>`: each child's problem is kept in `ctx` and the next child read.
pub(super) fn devices(node: Node, ctx: &mut Ctx) -> Result<Devices> {
    check_attrs(node, &[])?;
    let mut d = Devices::default();
    let mut emulator = None;
    for c in elements(node)? {
        let r = device(c, ctx, &mut d, &mut emulator);
        ctx.collect(r);
    }
    Ok(d)
}

fn device(c: Node, ctx: &mut Ctx, d: &mut Devices, emulator: &mut Option<String>) -> Result<()> {
    if import::device_extra(c, ctx)? {
        return Ok(());
    }
    {
        match name(c) {
            "emulator" => {
                check_attrs(c, &[])?;
                once(emulator, c, text(c)?)?;
            }
            "disk" => d.disks.push(disk(c, ctx)?),
            "interface" => d.interfaces.push(interface(c, ctx)?),
            "serial" => {
                let s = serial(c, ctx)?;
                if d.serial_seen {
                    return Err(err(
                        c,
                        XmlErrorKind::Conflict("only one serial port (port 0) is supported".into()),
                    ));
                }
                d.serial_seen = true;
                d.serial = Some(s);
            }
            "console" => {
                console(c, ctx)?;
                if d.console_seen {
                    return Err(duplicate(c));
                }
                d.console_seen = true;
                d.serial.get_or_insert_with(Serial::default);
            }
            "graphics" => {
                let v = graphics(c, ctx)?;
                once(&mut d.vnc, c, v)?;
            }
            "video" => {
                let v = video(c, ctx)?;
                once(&mut d.video, c, v)?;
            }
            "hostdev" => d.hostdevs.push(hostdev(c, ctx)?),
            _ => return Err(unsupported(c)),
        }
    }
    Ok(())
}
