// SPDX-License-Identifier: Apache-2.0
use super::*;
use vmdef::model::{Interface, NicModel};

fn lan() -> NetDef {
    NetDef::from_json(
        r#"{"name": "lan", "bridge": "vmbr0", "ipv4": "10.77.0.1/24",
            "dhcp": {"start": "10.77.0.100", "end": "10.77.0.199"},
            "hosts": [{"mac": "52:54:00:00:00:01", "ip": "10.77.0.10", "name": "web"},
                      {"mac": "52:54:00:00:00:02", "ip": "10.77.0.11"}],
            "forwards": [{"proto": "tcp", "host_port": 8080, "vm": "web", "guest_port": 80},
                         {"proto": "udp", "host_port": 5353, "guest_ip": "10.77.0.11"}]}"#,
    )
    .unwrap()
}

fn vm(name: &str, net: &str, mac: &str) -> VmDef {
    let mut d = VmDef::new(name.parse().unwrap(), 128, 1);
    d.interfaces.push(Interface {
        source: NetSource::Network(net.into()),
        model: NicModel::E1000,
        mac: mac.parse().unwrap(),
    });
    d
}

#[test]
fn forwards_resolve_vm_names_through_hosts() {
    let f = resolve_forwards(&lan(), &[vm("web", "lan", "52:54:00:00:00:01")]).unwrap();
    assert_eq!(
        f,
        [
            Forward {
                proto: Proto::Tcp,
                host_port: 8080,
                guest_ip: "10.77.0.10".parse().unwrap(),
                guest_port: 80
            },
            Forward {
                proto: Proto::Udp,
                host_port: 5353,
                guest_ip: "10.77.0.11".parse().unwrap(),
                guest_port: 5353
            },
        ]
    );
    let e = resolve_forwards(&lan(), &[]).unwrap_err();
    assert!(e.starts_with("forwards[0].vm: no VM named web"), "{e}");
    let e = resolve_forwards(&lan(), &[vm("web", "other", "52:54:00:00:00:01")]).unwrap_err();
    assert!(e.contains("no interface on network lan"), "{e}");
    let e = resolve_forwards(&lan(), &[vm("web", "lan", "52:54:00:00:00:09")]).unwrap_err();
    assert!(e.contains("hosts"), "{e}");
}

#[test]
fn nft_ruleset_for_nat_with_forwards() {
    let f = resolve_forwards(&lan(), &[vm("web", "lan", "52:54:00:00:00:01")]).unwrap();
    let r = nft_ruleset(&lan(), &f);
    let want = r#"table ip vmctl-lan {}
delete table ip vmctl-lan
table ip vmctl-lan {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local tcp dport 8080 dnat to 10.77.0.10:80
    fib daddr type local udp dport 5353 dnat to 10.77.0.11:5353
  }
  chain output {
    type nat hook output priority -100; policy accept;
    fib daddr type local tcp dport 8080 dnat to 10.77.0.10:80
    fib daddr type local udp dport 5353 dnat to 10.77.0.11:5353
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.77.0.0/24 ip daddr != 10.77.0.0/24 masquerade
    oifname "vmbr0" ip saddr 10.77.0.0/24 ip daddr 10.77.0.0/24 ct status dnat masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "vmbr0" ip saddr 10.77.0.0/24 accept
    oifname "vmbr0" ip daddr 10.77.0.0/24 ct state established,related accept
    oifname "vmbr0" ip daddr 10.77.0.0/24 ct status dnat accept
    oifname "vmbr0" reject
    iifname "vmbr0" reject
  }
}
"#;
    assert_eq!(r, want);
}

#[test]
fn nft_ruleset_uplink_and_routed() {
    let mut n = lan();
    n.forwards.clear();
    n.uplink = Some("eth0".into());
    let r = nft_ruleset(&n, &[]);
    assert!(
        r.contains("    oifname \"eth0\" ip saddr 10.77.0.0/24 ip daddr != 10.77.0.0/24 masquerade\n"),
        "{r}"
    );
    assert!(!r.contains("dnat to") && !r.contains("ct status dnat masquerade"), "{r}");
    n.uplink = None;
    n.nat = false;
    let r = nft_ruleset(&n, &[]);
    assert!(!r.contains("masquerade"), "{r}");
    assert!(
        r.contains("oifname \"vmbr0\" ip daddr 10.77.0.0/24 accept\n    iifname \"vmbr0\" reject"),
        "{r}"
    );
    assert!(!r.contains("oifname \"vmbr0\" reject"), "{r}");
}

fn strings(a: &[OsString]) -> Vec<String> {
    a.iter().map(|s| s.to_string_lossy().into_owned()).collect()
}

#[test]
fn dnsmasq_argv() {
    let p = NetPaths::new(Path::new("/s/netrun"), "lan");
    let a = strings(&dnsmasq_args(&lan(), &p, Some("nogroup")));
    assert_eq!(
        a,
        [
            "--conf-file=/dev/null",
            "--pid-file=/s/netrun/lan.pid",
            "--dhcp-leasefile=/s/netrun/lan.leases",
            "--log-facility=/s/netrun/lan.dnsmasq.log",
            "--interface=vmbr0",
            "--bind-interfaces",
            "--except-interface=lo",
            "--listen-address=10.77.0.1",
            "--no-hosts",
            "--strict-order",
            "--user=nobody",
            "--group=nogroup",
            "--dhcp-authoritative",
            "--dhcp-no-override",
            "--log-dhcp",
            "--dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,3600",
            "--dhcp-option=option:router,10.77.0.1",
            "--dhcp-option=option:dns-server,10.77.0.1",
            "--dhcp-host=52:54:00:00:00:01,10.77.0.10,web",
            "--dhcp-host=52:54:00:00:00:02,10.77.0.11",
        ]
    );
    let mut n = lan();
    n.dhcp = None;
    n.dns = false;
    let a = strings(&dnsmasq_args(&n, &p, None));
    assert!(a.contains(&"--port=0".to_string()));
    assert!(a.contains(&"--dhcp-range=10.77.0.0,static,255.255.255.0,3600".to_string()), "{a:?}");
    assert!(!a.iter().any(|s| s.contains("dns-server")));
    n.hosts.clear();
    let a = strings(&dnsmasq_args(&n, &p, None));
    assert!(!a.iter().any(|s| s.starts_with("--dhcp-range") || s.starts_with("--dhcp-option")), "{a:?}");
}

#[test]
fn tap_names_fit_in_15_characters() {
    assert_eq!(tap_name("web", 0), "vt-web-0");
    assert_eq!(tap_name("abcdefghi", 1), "vt-abcdefghi-1");
    let a = tap_name("a-very-long-vm-name-1", 0);
    let b = tap_name("a-very-long-vm-name-2", 0);
    assert!(a.len() <= 15 && b.len() <= 15, "{a} {b}");
    assert_ne!(a, b);
    assert!(a.starts_with("vt-a-ve") && a.ends_with("-0"), "{a}");
    assert!(tap_name(&"x".repeat(64), 12).len() <= 15);
}

#[test]
fn leases_parse() {
    let text = "1700000000 52:54:00:12:34:56 10.77.0.150 guest1 01:52:54:00:12:34:56\n\
                0 52:54:00:00:00:01 10.77.0.10 * *\n\
                duid 00:01:00:01\n\
                garbage\n";
    let l = parse_leases(text);
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].hostname.as_deref(), Some("guest1"));
    assert_eq!(l[0].ip, "10.77.0.150");
    assert_eq!(
        l[1],
        Lease {
            expiry: 0,
            mac: "52:54:00:00:00:01".into(),
            ip: "10.77.0.10".into(),
            hostname: None,
            client_id: None
        }
    );
}

#[test]
fn dnsmasq_runs_as_nobody_in_its_group() {
    let passwd = "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    assert_eq!(dnsmasq_group(passwd, "root:x:0:\nnogroup:x:65534:\n").unwrap().as_deref(), Some("nogroup"));
    assert_eq!(dnsmasq_group(passwd, "nobody:x:65534:\n").unwrap().as_deref(), Some("nobody"));
    assert_eq!(dnsmasq_group(passwd, "").unwrap(), None);
    let e = dnsmasq_group("root:x:0:0::/root:/bin/sh\n", "").unwrap_err();
    assert!(e.contains("lacks") && e.ends_with('.'), "{e}");
}

#[test]
fn nft_ruleset_for_an_isolated_network() {
    let mut n = lan();
    n.forwards.clear();
    n.isolated = true;
    n.nat = false;
    let r = nft_ruleset(&n, &[]);
    assert!(r.contains("iifname \"vmbr0\" reject\n    oifname \"vmbr0\" reject"), "{r}");
    assert!(
        !r.contains("masquerade")
            && !r.contains("dnat")
            && !r.contains("accept;\n    iifname \"vmbr0\" ip saddr"),
        "{r}"
    );
}
