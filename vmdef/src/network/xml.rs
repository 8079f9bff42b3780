// SPDX-License-Identifier: Apache-2.0
//! Import of the libvirt `<network>` XML subset that [`NetDef`] expresses.
//!
//! Strict like the domain import: anything outside the subset is an error naming it with its
//! line and column. The subset:
//! - `<network>`; `<name>`; `[<uuid>]`.
//! - `<forward mode='nat'|'route' [dev=…]>`, with an optional `<nat>` holding
//!   `<port start='1024' end='65535'/>` (accepted, not kept: masquerade picks ports itself).
//!   `dev` becomes `uplink` (NAT only). Without `<forward>` the network is isolated (guests and
//!   the host only). `mode='bridge'` is refused: a VM joins an existing host bridge with
//!   `<interface type='bridge'>` instead.
//! - `[<mac address=…/>]`: the bridge's own MAC address.
//! - `[<bridge name=… [stp=…] [delay=…]/>]` (STP settings are accepted, not kept).
//! - `[<dns enable='yes'|'no'/>]`.
//! - one `<ip address=… netmask=…|prefix=…>` with optional `<dhcp>`: `<range start end>`
//!   (with an optional `<lease expiry=… unit='seconds'|'minutes'|'hours'/>`) and
//!   `<host mac ip [name]/>`…
//!
//! Port forwards have no libvirt element; define them in JSON. Autostart is set with
//! `vmctl net autostart`, as with `virsh net-autostart`.

use std::net::Ipv4Addr;

use roxmltree::Node;
use uuid::Uuid;

use super::{DhcpHost, DhcpRange, Ipv4Cidr, NetDef};
use crate::model::MacAddr;
use crate::xml::read::{
    attr, attr_value_err, check_attrs, elements, empty, err, missing, name, once, parse_document,
    required_attr, required_choice, text, unsupported, value_err,
};
use crate::xml::{XmlError, XmlErrorKind};

type Result<T> = std::result::Result<T, XmlError>;

fn ip_attr(node: Node, a: &str) -> Result<Ipv4Addr> {
    let (v, off) = required_attr(node, a)?;
    v.parse().map_err(|_| attr_value_err(node, a, off, v, "an IPv4 address"))
}

fn ip_block(node: Node, def: &mut NetDef) -> Result<()> {
    check_attrs(node, &["address", "netmask", "prefix", "family"])?;
    if let Some((f, off)) = attr(node, "family").filter(|(f, _)| *f != "ipv4") {
        return Err(attr_value_err(node, "family", off, f, "'ipv4' (IPv6 is not supported)"));
    }
    let addr = ip_attr(node, "address")?;
    let prefix = match (attr(node, "netmask"), attr(node, "prefix")) {
        (Some((m, off)), None) => {
            let mask: Ipv4Addr =
                m.parse().map_err(|_| attr_value_err(node, "netmask", off, m, "a netmask"))?;
            let bits = u32::from(mask);
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return Err(attr_value_err(
                    node,
                    "netmask",
                    off,
                    m,
                    "a contiguous netmask like 255.255.255.0",
                ));
            }
            bits.leading_ones() as u8
        }
        (None, Some((p, off))) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| attr_value_err(node, "prefix", off, p, "0 to 32"))?,
        _ => return Err(missing(node, "exactly one of netmask= and prefix=")),
    };
    def.ipv4 = Ipv4Cidr { addr, prefix };
    let mut dhcp_seen = None;
    for c in elements(node)? {
        if name(c) != "dhcp" {
            return Err(unsupported(c));
        }
        once(&mut dhcp_seen, c, ())?;
        check_attrs(c, &[])?;
        for d in elements(c)? {
            match name(d) {
                "range" => {
                    check_attrs(d, &["start", "end"])?;
                    if def.dhcp.is_some() {
                        return Err(err(d, XmlErrorKind::Duplicate { element: "range".into() }));
                    }
                    let mut range =
                        DhcpRange { start: ip_attr(d, "start")?, end: ip_attr(d, "end")?, lease_secs: 3600 };
                    for l in elements(d)? {
                        if name(l) != "lease" {
                            return Err(unsupported(l));
                        }
                        check_attrs(l, &["expiry", "unit"])?;
                        empty(l)?;
                        let (e, off) = required_attr(l, "expiry")?;
                        let n: u32 =
                            e.parse().map_err(|_| attr_value_err(l, "expiry", off, e, "a number"))?;
                        let scale = match attr(l, "unit").map(|u| u.0) {
                            None | Some("minutes") => 60,
                            Some("seconds") => 1,
                            Some("hours") => 3600,
                            Some(u) => {
                                let off = attr(l, "unit").map_or(0, |a| a.1);
                                return Err(attr_value_err(
                                    l,
                                    "unit",
                                    off,
                                    u,
                                    "'seconds', 'minutes' or 'hours'",
                                ));
                            }
                        };
                        range.lease_secs = n.saturating_mul(scale);
                    }
                    def.dhcp = Some(range);
                }
                "host" => {
                    check_attrs(d, &["mac", "ip", "name"])?;
                    empty(d)?;
                    let (m, off) = required_attr(d, "mac")?;
                    let mac: MacAddr = m
                        .parse()
                        .map_err(|e: crate::ValueError| attr_value_err(d, "mac", off, m, &e.to_string()))?;
                    let host_name = attr(d, "name").map(|n| n.0.to_string());
                    def.hosts.push(DhcpHost { mac, ip: ip_attr(d, "ip")?, name: host_name });
                }
                _ => return Err(unsupported(d)),
            }
        }
    }
    Ok(())
}

/// Parses a libvirt `<network>` document.
pub fn from_xml(text_in: &str) -> Result<NetDef> {
    let doc = parse_document(text_in, "network")?;
    let root = doc.root_element();
    check_attrs(root, &[])?;
    let mut def = NetDef {
        name: String::new(),
        uuid: Uuid::new_v4(),
        bridge: String::new(),
        ipv4: Ipv4Cidr { addr: Ipv4Addr::UNSPECIFIED, prefix: 0 },
        dhcp: None,
        hosts: Vec::new(),
        nat: true,
        isolated: false,
        mac: None,
        uplink: None,
        dns: true,
        forwards: Vec::new(),
        autostart: false,
    };
    let (mut name_seen, mut uuid_seen, mut forward_seen, mut bridge_seen, mut dns_seen, mut ip_seen) =
        (None, None, None, None, None, None);
    let mut mac_seen = None;
    for c in elements(root)? {
        match name(c) {
            "name" => {
                check_attrs(c, &[])?;
                let t = text(c)?;
                super::check_net_name(&t).map_err(|e| value_err(c, "<name>", &t, &e))?;
                once(&mut name_seen, c, ())?;
                def.name = t;
            }
            "uuid" => {
                check_attrs(c, &[])?;
                let t = text(c)?;
                def.uuid = t.trim().parse().map_err(|_| value_err(c, "<uuid>", &t, "a UUID"))?;
                once(&mut uuid_seen, c, ())?;
            }
            "forward" => {
                check_attrs(c, &["mode", "dev"])?;
                once(&mut forward_seen, c, ())?;
                if let Some((m @ ("bridge" | "open" | "passthrough" | "private" | "vepa" | "hostdev"), _)) =
                    attr(c, "mode")
                {
                    return Err(value_err(
                        c,
                        "<forward mode=>",
                        m,
                        "'nat', 'route', or no <forward> (isolated); a VM reaches an existing host bridge with <interface type='bridge'>",
                    ));
                }
                def.nat = required_choice(c, "mode", &["nat", "route"])? == 0;
                def.uplink = attr(c, "dev").map(|d| d.0.to_string());
                for n in elements(c)? {
                    if name(n) != "nat" || !def.nat {
                        return Err(unsupported(n));
                    }
                    check_attrs(n, &[])?;
                    for p in elements(n)? {
                        if name(p) != "port" {
                            return Err(unsupported(p));
                        }
                        check_attrs(p, &["start", "end"])?;
                        empty(p)?;
                    }
                }
            }
            "bridge" => {
                check_attrs(c, &["name", "stp", "delay"])?;
                empty(c)?;
                once(&mut bridge_seen, c, ())?;
                def.bridge = attr(c, "name").map(|n| n.0.to_string()).unwrap_or_default();
            }
            "mac" => {
                check_attrs(c, &["address"])?;
                empty(c)?;
                once(&mut mac_seen, c, ())?;
                let (v, off) = required_attr(c, "address")?;
                def.mac = Some(v.parse().map_err(|e: crate::model::ValueError| {
                    attr_value_err(c, "address", off, v, &e.to_string())
                })?);
            }
            "dns" => {
                check_attrs(c, &["enable"])?;
                empty(c)?;
                once(&mut dns_seen, c, ())?;
                def.dns = required_choice(c, "enable", &["yes", "no"])? == 0;
            }
            "ip" => {
                once(&mut ip_seen, c, ())?;
                ip_block(c, &mut def)?;
            }
            _ => return Err(unsupported(c)),
        }
    }
    if name_seen.is_none() {
        return Err(missing(root, "a <name>"));
    }
    if forward_seen.is_none() {
        // libvirt's isolated network: no way out, guests and host only.
        def.isolated = true;
        def.nat = false;
    }
    if ip_seen.is_none() {
        return Err(missing(root, "an <ip address=… prefix=…> element"));
    }
    Ok(def)
}

/// Writes `def` as a libvirt `<network>` document that [`from_xml`] reads back to an equal
/// definition, port forwards excepted (libvirt has no element for them: JSON only) and the
/// autostart flag (set with `vmctl net autostart`, as with `virsh net-autostart`).
pub fn to_xml(def: &NetDef) -> String {
    use std::fmt::Write;
    let esc = crate::xml::write::esc;
    let mut out = String::from("<network>\n");
    let _ = writeln!(out, "  <name>{}</name>", esc(&def.name));
    let _ = writeln!(out, "  <uuid>{}</uuid>", def.uuid.hyphenated());
    if !def.isolated {
        let mode = if def.nat { "nat" } else { "route" };
        match &def.uplink {
            Some(dev) => {
                let _ = writeln!(out, "  <forward mode='{mode}' dev='{}'/>", esc(dev));
            }
            None => {
                let _ = writeln!(out, "  <forward mode='{mode}'/>");
            }
        }
    }
    let _ = writeln!(out, "  <bridge name='{}' stp='on' delay='0'/>", esc(&def.bridge));
    if let Some(mac) = def.mac {
        let _ = writeln!(out, "  <mac address='{mac}'/>");
    }
    if !def.dns {
        out.push_str("  <dns enable='no'/>\n");
    }
    let _ = write!(out, "  <ip address='{}' prefix='{}'", def.ipv4.addr, def.ipv4.prefix);
    if def.dhcp.is_none() && def.hosts.is_empty() {
        out.push_str("/>\n");
    } else {
        out.push_str(">\n    <dhcp>\n");
        if let Some(r) = &def.dhcp {
            let _ = writeln!(
                out,
                "      <range start='{}' end='{}'>\n        <lease expiry='{}' unit='seconds'/>\n      </range>",
                r.start, r.end, r.lease_secs
            );
        }
        for h in &def.hosts {
            let name = h.name.as_ref().map(|n| format!(" name='{}'", esc(n))).unwrap_or_default();
            let _ = writeln!(out, "      <host mac='{}'{name} ip='{}'/>", h.mac, h.ip);
        }
        out.push_str("    </dhcp>\n  </ip>\n");
    }
    out.push_str("</network>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = r#"<network>
  <name>default</name>
  <uuid>9a05da11-e96b-47f3-8253-a3a482e445f5</uuid>
  <forward mode='nat' dev='eth0'>
    <nat><port start='1024' end='65535'/></nat>
  </forward>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'><lease expiry='2' unit='hours'/></range>
      <host mac='52:54:00:6b:3c:58' name='web' ip='192.168.122.10'/>
    </dhcp>
  </ip>
</network>"#;

    #[test]
    fn libvirt_default_network_imports() {
        let n = from_xml(DEFAULT).unwrap();
        assert_eq!(n.name, "default");
        assert_eq!(n.uuid.to_string(), "9a05da11-e96b-47f3-8253-a3a482e445f5");
        assert_eq!(n.bridge, "virbr0");
        assert_eq!(n.ipv4.to_string(), "192.168.122.1/24");
        assert!(n.nat && n.dns);
        assert_eq!(n.uplink.as_deref(), Some("eth0"));
        let r = n.dhcp.as_ref().unwrap();
        assert_eq!(
            (r.start.to_string(), r.end.to_string(), r.lease_secs),
            ("192.168.122.2".into(), "192.168.122.254".into(), 7200)
        );
        assert_eq!(n.hosts[0].name.as_deref(), Some("web"));
        assert!(super::super::check_network(&n).is_empty());
    }

    #[test]
    fn routed_with_prefix_and_no_dns() {
        let n = from_xml(
            "<network><name>r</name><forward mode='route'/><dns enable='no'/><ip address='10.9.0.1' prefix='16'/></network>",
        )
        .unwrap();
        assert!(!n.nat && !n.dns && n.bridge.is_empty() && n.dhcp.is_none());
        assert_eq!(n.ipv4.prefix, 16);
    }

    #[test]
    fn errors_name_the_element_and_position() {
        let cases = [
            ("<network><name>x</name><forward mode='bridge'/></network>", "'nat', 'route', or no <forward>"),
            ("<network><name>x</name><forward mode='nat'/><mtu size='9000'/></network>", "<mtu>"),
            ("<network><name>x</name><forward mode='nat'/><ip address='10.0.0.1' netmask='255.0.255.0'/></network>", "contiguous"),
            ("<network><name>x</name><forward mode='nat'/><ip address='10.0.0.1'/></network>", "netmask"),
            ("<network><name>x</name><forward mode='nat'/><ip family='ipv6' address='fd00::1' prefix='64'/></network>", "IPv6"),
            ("<network><name>a b</name></network>", "<name>"),
            ("<domain/>", "<domain>"),
            ("<network><name>x</name>", "malformed"),
        ];
        for (xml, want) in cases {
            let e = from_xml(xml).unwrap_err();
            assert!(e.to_string().contains(want), "{xml}: {e}");
            assert!(e.line >= 1);
        }
    }

    /// libvirt's stock `default` network as Debian installs it (/usr/share/libvirt/networks).
    const STOCK_DEFAULT: &str = "<network>
  <name>default</name>
  <uuid>0b3a1e4c-5d6f-4a7b-8c9d-0e1f2a3b4c5d</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:0a:cd:21'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
";

    #[test]
    fn stock_default_network_with_its_mac_imports_and_dumps_back() {
        let n = from_xml(STOCK_DEFAULT).unwrap();
        assert_eq!(n.mac.map(|m| m.to_string()).as_deref(), Some("52:54:00:0a:cd:21"));
        assert!(n.nat && !n.isolated);
        let out = to_xml(&n);
        assert!(out.contains("<mac address='52:54:00:0a:cd:21'/>"), "{out}");
        assert_eq!(from_xml(&out).unwrap(), n, "{out}");
        let full = from_xml(DEFAULT).unwrap();
        assert_eq!(from_xml(&to_xml(&full)).unwrap(), full);
    }

    #[test]
    fn a_network_without_forward_is_isolated() {
        let n = from_xml(
            "<network><name>iso</name><bridge name='viso'/><ip address='10.8.0.1' prefix='24'><dhcp><range start='10.8.0.10' end='10.8.0.20'/></dhcp></ip></network>",
        )
        .unwrap();
        assert!(n.isolated && !n.nat);
        assert!(super::super::check_network(&n).is_empty());
        assert!(!to_xml(&n).contains("<forward"));
        assert_eq!(from_xml(&to_xml(&n)).unwrap(), n);
        let e = from_xml(
            "<network><name>b</name><forward mode='bridge'/><bridge name='br0'/><ip address='10.8.0.1' prefix='24'/></network>",
        )
        .unwrap_err();
        assert!(e.to_string().contains("<interface type='bridge'>"), "{e}");
    }
}
