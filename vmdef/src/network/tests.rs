// SPDX-License-Identifier: Apache-2.0
use super::*;

fn net(name: &str, cidr: &str) -> NetDef {
    NetDef::from_json(&format!(r#"{{"name": "{name}", "bridge": "br-{name}", "ipv4": "{cidr}"}}"#)).unwrap()
}

fn fields(p: &[Problem]) -> Vec<String> {
    p.iter().map(|p| p.field.clone()).collect()
}

#[test]
fn cidr_parses_and_computes_the_subnet() {
    let c: Ipv4Cidr = "10.77.0.1/24".parse().unwrap();
    assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
    assert_eq!(c.network(), Ipv4Addr::new(10, 77, 0, 0));
    assert_eq!(c.broadcast(), Ipv4Addr::new(10, 77, 0, 255));
    assert_eq!(c.subnet(), "10.77.0.0/24");
    assert!(c.contains("10.77.0.200".parse().unwrap()));
    assert!(!c.contains("10.77.1.1".parse().unwrap()));
    assert!(!c.is_host("10.77.0.255".parse().unwrap()));
    assert!(c.overlaps(&"10.77.0.129/25".parse().unwrap()));
    assert!(c.overlaps(&"10.0.0.1/8".parse().unwrap()));
    assert!(!c.overlaps(&"10.77.1.1/24".parse().unwrap()));
    assert_eq!(c.to_string(), "10.77.0.1/24");
    let z: Ipv4Cidr = "1.2.3.4/0".parse().unwrap();
    assert_eq!(z.netmask(), Ipv4Addr::UNSPECIFIED);
    for bad in ["10.77.0.1", "10.77.0.1/33", "10.77.0/24", "x/8", "10.0.0.1/-1"] {
        assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
    }
}

#[test]
fn json_defaults_and_errors_with_position() {
    let n = NetDef::from_json(r#"{"name": "lan", "ipv4": "10.77.0.1/24"}"#).unwrap();
    assert!(n.nat && n.dns && !n.autostart);
    assert!(n.bridge.is_empty() && n.dhcp.is_none() && n.forwards.is_empty());
    let e = NetDef::from_json("{\"name\": \"lan\",\n \"ipv4\": \"10.77.0.1\"}").unwrap_err();
    assert_eq!((e.line, e.path.as_str()), (2, "ipv4"), "{e}");
    let e = NetDef::from_json(
        r#"{"name": "lan", "ipv4": "10.77.0.1/24", "forwards": [{"proto": "sctp", "host_port": 1}]}"#,
    )
    .unwrap_err();
    assert!(e.path.starts_with("forwards[0]"), "{e}");
    let e = NetDef::from_json(r#"{"name": "lan", "ipv4": "10.77.0.1/24", "colour": 1}"#).unwrap_err();
    assert!(e.message.contains("colour"), "{e}");
    let json = n.to_json().unwrap();
    assert_eq!(NetDef::from_json(&json).unwrap(), n);
}

#[test]
fn bridges_are_assigned_vmbr_n() {
    let a = net("a", "10.1.0.1/24");
    let mut b = NetDef { bridge: String::new(), ..net("b", "10.2.0.1/24") };
    let mut others = vec![NetDef { bridge: "vmbr0".into(), ..a }];
    b.assign_bridge(&others, |n| n == "vmbr1");
    assert_eq!(b.bridge, "vmbr2");
    others.push(b.clone());
    let mut c = NetDef { bridge: "mine".into(), ..net("c", "10.3.0.1/24") };
    c.assign_bridge(&others, |_| false);
    assert_eq!(c.bridge, "mine");
}

#[test]
fn a_full_network_is_valid() {
    let n = NetDef::from_json(
        r#"{"name": "lan", "bridge": "vmbr0", "ipv4": "10.77.0.1/24",
            "dhcp": {"start": "10.77.0.100", "end": "10.77.0.199"},
            "hosts": [{"mac": "52:54:00:00:00:01", "ip": "10.77.0.10", "name": "web"}],
            "uplink": "eth0",
            "forwards": [{"proto": "tcp", "host_port": 8080, "guest_ip": "10.77.0.10", "guest_port": 80},
                         {"proto": "udp", "host_port": 8080, "vm": "web"}]}"#,
    )
    .unwrap();
    assert_eq!(check_network(&n), vec![]);
    assert_eq!(n.forwards[1].to_port(), 8080);
    assert_eq!(n.host_ip("52:54:00:00:00:01".parse().unwrap()), Some(Ipv4Addr::new(10, 77, 0, 10)));
}

#[test]
fn every_problem_names_its_field() {
    let n = NetDef::from_json(
        r#"{"name": "-bad", "bridge": "a-bridge-name-too-long", "ipv4": "10.77.0.0/24",
            "dhcp": {"start": "10.77.0.199", "end": "10.77.1.5", "lease_secs": 60},
            "hosts": [{"mac": "52:54:00:00:00:01", "ip": "10.77.0.10", "name": "web_1"},
                      {"mac": "52:54:00:00:00:01", "ip": "10.77.0.10"}],
            "nat": false, "uplink": "eth0",
            "forwards": [{"proto": "tcp", "host_port": 0, "guest_ip": "10.77.0.10"},
                         {"proto": "tcp", "host_port": 22, "guest_port": 0, "guest_ip": "10.78.0.1"},
                         {"proto": "tcp", "host_port": 22, "vm": "web", "guest_ip": "10.77.0.10"}]}"#,
    )
    .unwrap();
    let f = fields(&check_network(&n));
    for want in [
        "name",
        "bridge",
        "ipv4",
        "dhcp.end",
        "dhcp.lease_secs",
        "hosts[1].mac",
        "hosts[1].ip",
        "hosts[0].name",
        "uplink",
        "forwards[0].host_port",
        "forwards[1].guest_port",
        "forwards[1].guest_ip",
        "forwards[2].host_port",
        "forwards[2]",
    ] {
        assert!(f.contains(&want.to_string()), "{want} missing from {f:?}");
    }
}

#[test]
fn gateway_in_the_range_and_bad_prefixes_are_refused() {
    let mut n = net("a", "10.77.0.1/24");
    n.dhcp = Some(DhcpRange {
        start: "10.77.0.1".parse().unwrap(),
        end: "10.77.0.9".parse().unwrap(),
        lease_secs: 3600,
    });
    assert_eq!(fields(&check_network(&n)), ["dhcp.start", "dhcp"]);
    n.dhcp = None;
    n.ipv4 = "10.77.0.1/31".parse().unwrap();
    assert_eq!(fields(&check_network(&n)), ["ipv4"]);
    n.ipv4 = "127.0.0.1/8".parse().unwrap();
    assert_eq!(fields(&check_network(&n)), ["ipv4"]);
}

#[test]
fn conflicts_with_other_networks() {
    let a = NetDef {
        forwards: vec![PortForward {
            proto: Proto::Tcp,
            host_port: 2222,
            guest_ip: Some("10.1.0.5".parse().unwrap()),
            vm: None,
            guest_port: Some(22),
        }],
        ..net("a", "10.1.0.1/16")
    };
    let mut b = net("b", "10.1.5.1/24");
    b.bridge = a.bridge.clone();
    b.uuid = a.uuid;
    b.forwards = a.forwards.clone();
    b.forwards[0].guest_ip = Some("10.1.5.5".parse().unwrap());
    let p = check_network_conflicts(&b, std::slice::from_ref(&a));
    assert!(p.iter().all(|p| p.kind == ProblemKind::Conflict));
    assert_eq!(fields(&p), ["uuid", "bridge", "ipv4", "forwards[0].host_port"]);
    // The same name and UUID is a replacement; another UUID is a conflict.
    assert_eq!(check_network_conflicts(&a, std::slice::from_ref(&a)), vec![]);
    let a2 = NetDef { uuid: Uuid::new_v4(), ..a.clone() };
    assert_eq!(fields(&check_network_conflicts(&a2, &[a])), ["name"]);
    let e = validate_network(&b, &[net("c", "10.0.0.1/8")]).unwrap_err();
    assert!(e.to_string().contains("ipv4: 10.1.5.0/24 overlaps 10.0.0.0/8 of network c"), "{e}");
}

#[test]
fn names_are_checked() {
    assert!(check_net_name("default").is_ok());
    assert!(check_net_name("lan-2_x").is_ok());
    for bad in ["", "_x", "a.b", "a/b", &"x".repeat(33)] {
        assert!(check_net_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn interface_names_are_limited_to_safe_characters() {
    for ok in ["br0", "vmbr77", "a", "br_lan.10", "x-y", &"b".repeat(15)] {
        assert!(ifname_ok(ok), "{ok:?} refused");
    }
    // The attack: a quote and a semicolon ended the nftables rule and added a bare accept.
    for bad in
        ["", ".", "..", "br0\";", "br0;accept", "br 0", "br/0", "br:0", "-br", "ü", "br0\n", &"b".repeat(16)]
    {
        assert!(!ifname_ok(bad), "{bad:?} accepted");
    }
    let mut d = net("lan", "10.77.0.1/24");
    d.bridge = "br\";accept".into();
    d.uplink = Some("eth0 ".into());
    let p = check_network(&d);
    assert!(fields(&p).contains(&"bridge".to_string()), "{p:?}");
    assert!(fields(&p).contains(&"uplink".to_string()), "{p:?}");
}
