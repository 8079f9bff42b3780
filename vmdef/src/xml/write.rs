// SPDX-License-Identifier: Apache-2.0
//! Domain XML export, laid out the way `virsh dumpxml` writes it.

use std::fmt::Write;
use std::path::Path;

use super::METADATA_NS;
use crate::model::{
    BootDevice, ClockOffset, Disk, DiskBus, DiskDevice, DiskFormat, HostDev, Interface, LifecycleAction,
    NetSource, NicModel, Os, Video, VmDef,
};

/// Escapes text for an XML attribute in single quotes or for element content.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A path as XML text. Paths that are not UTF-8 are refused by [`crate::validate`]; here they
/// would be written lossily.
fn path(p: &Path) -> String {
    esc(&p.to_string_lossy())
}

fn action(a: LifecycleAction) -> &'static str {
    match a {
        LifecycleAction::Destroy => "destroy",
        LifecycleAction::Restart => "restart",
        LifecycleAction::Preserve => "preserve",
    }
}

fn os(out: &mut String, o: &Os) {
    out.push_str("  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n");
    match o {
        Os::Pc { boot } => {
            for b in boot {
                let dev = match b {
                    BootDevice::Disk => "hd",
                    BootDevice::Cdrom => "cdrom",
                    BootDevice::Network => "network",
                };
                let _ = writeln!(out, "    <boot dev='{dev}'/>");
            }
        }
        Os::Direct { kernel, initrd, cmdline } => {
            let _ = writeln!(out, "    <kernel>{}</kernel>", path(kernel));
            if let Some(i) = initrd {
                let _ = writeln!(out, "    <initrd>{}</initrd>", path(i));
            }
            if let Some(c) = cmdline {
                let _ = writeln!(out, "    <cmdline>{}</cmdline>", esc(c));
            }
        }
    }
    out.push_str("  </os>\n");
}

fn disk(out: &mut String, d: &Disk) {
    let device = match d.device {
        DiskDevice::Disk => "disk",
        DiskDevice::Cdrom => "cdrom",
    };
    let format = match d.format {
        DiskFormat::Raw => "raw",
        DiskFormat::Qcow2 => "qcow2",
    };
    let bus = match d.bus {
        DiskBus::Ide => "ide",
        DiskBus::Virtio => "virtio",
    };
    let _ = writeln!(out, "    <disk type='file' device='{device}'>");
    let _ = writeln!(out, "      <driver name='qemu' type='{format}'/>");
    if let Some(p) = &d.path {
        let _ = writeln!(out, "      <source file='{}'/>", path(p));
    }
    let _ = writeln!(out, "      <target dev='{}' bus='{bus}'/>", esc(&d.target));
    if d.readonly {
        out.push_str("      <readonly/>\n");
    }
    out.push_str("    </disk>\n");
}

fn interface(out: &mut String, i: &Interface) {
    let (kind, source) = match &i.source {
        NetSource::Bridge(b) => ("bridge", format!("bridge='{}'", esc(b))),
        NetSource::Network(n) => ("network", format!("network='{}'", esc(n))),
    };
    let model = match i.model {
        NicModel::E1000 => "e1000",
        NicModel::Virtio => "virtio",
    };
    let _ = writeln!(out, "    <interface type='{kind}'>");
    let _ = writeln!(out, "      <mac address='{}'/>", i.mac);
    let _ = writeln!(out, "      <source {source}/>");
    let _ = writeln!(out, "      <model type='{model}'/>");
    out.push_str("    </interface>\n");
}

fn hostdev(out: &mut String, h: &HostDev) {
    let a = h.address;
    let managed = if h.managed { "yes" } else { "no" };
    let _ = writeln!(out, "    <hostdev mode='subsystem' type='pci' managed='{managed}'>");
    let _ = writeln!(
        out,
        "      <source>\n        <address domain='{:#06x}' bus='{:#04x}' slot='{:#04x}' function='{:#x}'/>\n      </source>",
        a.domain(),
        a.bus(),
        a.slot(),
        a.function()
    );
    out.push_str("    </hostdev>\n");
}

/// Writes `def` as libvirt domain XML (see [`super`] for the mapping). The result parses
/// back with [`super::from_xml`] to an equal definition.
pub fn to_xml(def: &VmDef) -> String {
    let mut out = String::new();
    let kib = def.memory_mib.saturating_mul(1024);
    out.push_str("<domain type='kvm'>\n");
    let _ = writeln!(out, "  <name>{}</name>", esc(def.name.as_str()));
    let _ = writeln!(out, "  <uuid>{}</uuid>", def.uuid.hyphenated());
    if def.autostart || !def.metadata.is_empty() {
        out.push_str("  <metadata>\n");
        for m in &def.metadata {
            let _ = writeln!(out, "    {m}");
        }
        if def.autostart {
            let _ = writeln!(out, "    <vmctl:config xmlns:vmctl='{METADATA_NS}' autostart='yes'/>");
        }
        out.push_str("  </metadata>\n");
    }
    let _ = writeln!(out, "  <memory unit='KiB'>{kib}</memory>");
    let _ = writeln!(out, "  <currentMemory unit='KiB'>{kib}</currentMemory>");
    let _ = writeln!(out, "  <vcpu placement='static'>{}</vcpu>", def.vcpus);
    if !def.cputune.is_unset() {
        out.push_str("  <cputune>\n");
        if let Some(p) = def.cputune.period_us {
            let _ = writeln!(out, "    <period>{p}</period>");
        }
        if let Some(q) = def.cputune.quota_us {
            let _ = writeln!(out, "    <quota>{q}</quota>");
        }
        out.push_str("  </cputune>\n");
    }
    os(&mut out, &def.os);
    if def.clock_offset == ClockOffset::Localtime {
        out.push_str("  <clock offset='localtime'/>\n");
    }
    if def.features.acpi || def.features.apic {
        out.push_str("  <features>\n");
        if def.features.acpi {
            out.push_str("    <acpi/>\n");
        }
        if def.features.apic {
            out.push_str("    <apic/>\n");
        }
        out.push_str("  </features>\n");
    }
    let _ = writeln!(out, "  <on_poweroff>{}</on_poweroff>", action(def.on_poweroff));
    let _ = writeln!(out, "  <on_reboot>{}</on_reboot>", action(def.on_reboot));
    let _ = writeln!(out, "  <on_crash>{}</on_crash>", action(def.on_crash));
    out.push_str("  <devices>\n");
    for d in &def.disks {
        disk(&mut out, d);
    }
    for i in &def.interfaces {
        interface(&mut out, i);
    }
    if let Some(s) = &def.serial {
        out.push_str("    <serial type='pty'>\n");
        if let Some(log) = &s.log {
            let _ = writeln!(out, "      <log file='{}'/>", path(log));
        }
        out.push_str("      <target type='isa-serial' port='0'>\n        <model name='isa-serial'/>\n      </target>\n");
        out.push_str("    </serial>\n");
        out.push_str("    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>\n");
    }
    if let Some(v) = &def.graphics.vnc {
        let loopback = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        if v.password.is_none() && v.port.is_none() && v.listen == loopback {
            // A unix socket: no TCP address to show.
            out.push_str("    <graphics type='vnc'/>\n");
        } else {
            let port = match v.port {
                Some(p) => format!("port='{p}' autoport='no'"),
                None => "port='-1' autoport='yes'".to_string(),
            };
            let passwd = v.password.as_deref().map(|p| format!(" passwd='{}'", esc(p))).unwrap_or_default();
            let _ = writeln!(out, "    <graphics type='vnc' {port} listen='{}'{passwd}>", v.listen);
            let _ = writeln!(out, "      <listen type='address' address='{}'/>", v.listen);
            out.push_str("    </graphics>\n");
        }
    }
    if def.graphics.video == Video::Vga {
        out.push_str("    <video>\n      <model type='vga'/>\n    </video>\n");
    }
    for h in &def.hostdevs {
        hostdev(&mut out, h);
    }
    out.push_str("  </devices>\n</domain>\n");
    out
}
