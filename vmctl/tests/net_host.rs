// SPDX-License-Identifier: Apache-2.0
//! A managed network built for real, inside network namespaces of the test's own: the host
//! side is a thread moved into a new namespace (`unshare(CLONE_NEWNET)`), the guests and an
//! "outside" machine are named namespaces joined by veth pairs. The machine's own interfaces
//! and nftables ruleset are never touched.
//!
//! Needs root, `ip`, `nft`, `dnsmasq` and `busybox` (udhcpc, nc); without them the test is
//! skipped with the reason printed (`tests/testhost/lib.sh`'s `ensure_pkgs` in
//! `scripts/test.sh` installs them).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vmctl::net::config::{parse_leases, resolve_forwards, NetPaths};
use vmctl::net::host;
use vmdef::network::NetDef;

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    for tool in ["ip", "nft", "dnsmasq", "busybox"] {
        let found =
            Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
                || Command::new(tool).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// Runs a command, panicking with its output if it fails; returns stdout.
fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    sh(&v)
}

/// Named namespaces, deleted (with their processes killed) on drop.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    ;;
esac
exit 0
"#;

/// A guest: namespace `ns` with `g1` (MAC `mac`) whose peer `port` is a port of `bridge`;
/// gets an address with udhcpc and returns it.
fn dhcp_guest(ns: &str, port: &str, bridge: &str, mac: &str, script: &Path) -> Ipv4Addr {
    sh(&["ip", "netns", "add", ns]);
    sh(&["ip", "link", "add", port, "type", "veth", "peer", "name", "g1", "netns", ns]);
    sh(&["ip", "link", "set", "dev", port, "master", bridge, "up"]);
    in_ns(ns, &["ip", "link", "set", "dev", "lo", "up"]);
    in_ns(ns, &["ip", "link", "set", "dev", "g1", "address", mac, "up"]);
    let s = script.to_str().unwrap();
    in_ns(ns, &["busybox", "udhcpc", "-i", "g1", "-n", "-q", "-f", "-t", "10", "-T", "1", "-s", s]);
    let out = in_ns(ns, &["ip", "-4", "-o", "addr", "show", "dev", "g1"]);
    let cidr = out.split_whitespace().skip_while(|w| *w != "inet").nth(1).unwrap_or_else(|| panic!("{out}"));
    cidr.split('/').next().unwrap().parse().unwrap()
}

/// Starts `echo TEXT | busybox nc -l -p PORT` in `ns`.
fn serve(ns: &str, port: u16, text: &str) -> std::process::Child {
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", &format!("echo {text} | busybox nc -l -p {port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Connects from `ns` to `addr port` until the server answers; returns what it sent.
fn fetch(ns: &str, addr: &str, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "busybox", "nc", "-w", "2", addr, &port.to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !text.is_empty() || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn read_ip_forward() -> String {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap().trim().to_string()
}

#[test]
fn nat_network_with_dhcp_and_a_port_forward_in_a_namespace() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let outer_forward = read_ip_forward();
    // A thread of its own: unshare moves only the calling thread, and the harness may run
    // tests on the main thread.
    std::thread::spawn(run_in_namespace).join().unwrap();
    assert_eq!(read_ip_forward(), outer_forward, "the machine's own ip_forward changed");
}

fn run_in_namespace() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    let id = std::process::id();
    let (outside, guest, guest2) = (format!("vmctl{id}o"), format!("vmctl{id}g"), format!("vmctl{id}h"));
    let _ns = Namespaces(vec![outside.clone(), guest.clone(), guest2.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("udhcpc.sh");
    std::fs::write(&script, UDHCPC_SCRIPT).unwrap();
    sh(&["chmod", "755", script.to_str().unwrap()]);

    // The host's uplink: 192.0.2.1 here, 192.0.2.2 outside (which has no route to the guests).
    sh(&["ip", "link", "set", "dev", "lo", "up"]);
    sh(&["ip", "netns", "add", &outside]);
    sh(&["ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1", "netns", &outside]);
    sh(&["ip", "addr", "add", "192.0.2.1/24", "dev", "up0"]);
    sh(&["ip", "link", "set", "dev", "up0", "up"]);
    in_ns(&outside, &["ip", "link", "set", "dev", "lo", "up"]);
    in_ns(&outside, &["ip", "addr", "add", "192.0.2.2/24", "dev", "up1"]);
    in_ns(&outside, &["ip", "link", "set", "dev", "up1", "up"]);

    let net = NetDef::from_json(
        r#"{"name": "t", "bridge": "vmbrt0", "ipv4": "10.77.0.1/24", "uplink": "up0",
            "dhcp": {"start": "10.77.0.100", "end": "10.77.0.150"},
            "hosts": [{"mac": "52:54:00:aa:00:01", "ip": "10.77.0.10", "name": "web"}],
            "forwards": [{"proto": "tcp", "host_port": 8080, "guest_ip": "10.77.0.10", "guest_port": 80}]}"#,
    )
    .unwrap();
    assert_eq!(vmdef::network::check_network(&net), vec![]);
    let paths = NetPaths::new(dir.path(), "t");
    let forwards = resolve_forwards(&net, &[]).unwrap();

    // A subnet overlapping an address of the host is refused before anything is made.
    let clash = NetDef { ipv4: "192.0.2.77/24".parse().unwrap(), ..net.clone() };
    let e = host::start(&clash, &forwards, &paths).unwrap_err();
    assert!(e.to_string().contains("overlaps the host's address 192.0.2.1/24 on up0"), "{e}");
    assert!(!host::link_exists("vmbrt0"));

    let pid = host::start(&net, &forwards, &paths).expect("start");
    assert!(host::is_bridge("vmbrt0"));
    assert!(sh(&["ip", "-4", "-o", "addr", "show", "dev", "vmbrt0"]).contains("inet 10.77.0.1/24"));
    assert!(host::table_exists("t"));
    assert!(sh(&["nft", "list", "table", "ip", "vmctl-t"]).contains("dnat to 10.77.0.10:80"));
    assert_eq!(host::dnsmasq_pid(&paths), Some(pid));
    // dnsmasq runs unprivileged (as nobody), the state directory stays root's.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid.split_whitespace().skip(1).all(|u| u == "65534"), "dnsmasq is not nobody: {uid}");
    assert_eq!(read_ip_forward(), "1");
    // Starting twice is a conflict on the bridge, and leaves the running network alone.
    let e = host::start(&net, &forwards, &paths).unwrap_err();
    assert!(e.to_string().starts_with("bridge:"), "{e}");
    assert_eq!(host::dnsmasq_pid(&paths), Some(pid));
    assert_eq!(host::adopt(&net, &forwards, &paths).unwrap(), host::Found::Running(pid));

    // Guests get their fixed and dynamic addresses.
    let ip = dhcp_guest(&guest, "gp0", "vmbrt0", "52:54:00:aa:00:01", &script);
    assert_eq!(ip, Ipv4Addr::new(10, 77, 0, 10));
    let ip2 = dhcp_guest(&guest2, "gp1", "vmbrt0", "52:54:00:aa:00:02", &script);
    assert!((100..=150).contains(&ip2.octets()[3]) && ip2.octets()[..3] == [10, 77, 0], "{ip2}");
    let leases = parse_leases(&std::fs::read_to_string(&paths.lease_file).unwrap());
    assert!(leases.iter().any(|l| l.ip == "10.77.0.10" && l.mac == "52:54:00:aa:00:01"), "{leases:?}");
    assert!(leases.iter().any(|l| l.ip == ip2.to_string()), "{leases:?}");

    // The port forward: outside -> 192.0.2.1:8080 -> guest :80.
    let mut server = serve(&guest, 80, "hello-from-guest");
    assert_eq!(fetch(&outside, "192.0.2.1", 8080), "hello-from-guest");
    let _ = server.kill();
    let _ = server.wait();
    // NAT: the guest reaches outside, which has no route back to 10.77.0.0/24.
    let mut server = serve(&outside, 9000, "hello-from-outside");
    assert_eq!(fetch(&guest2, "192.0.2.2", 9000), "hello-from-outside");
    let _ = server.kill();
    let _ = server.wait();

    // A VM tap plugs into the bridge and goes away.
    host::create_tap("vt-test-0", "vmbrt0", Some(64_123)).unwrap();
    // Owned by a jailed vmm's uid, which may then attach to it without CAP_NET_ADMIN.
    let shown =
        std::process::Command::new("ip").args(["-d", "link", "show", "dev", "vt-test-0"]).output().unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("user 64123") && shown.contains("group 64123"), "{shown}");
    assert!(sh(&["ip", "-o", "link", "show", "dev", "vt-test-0"]).contains("master vmbrt0"));
    host::create_tap("vt-test-0", "vmbrt0", None).expect("a stale tap is replaced");
    assert!(host::create_tap("vt-test-1", "up0", None).unwrap_err().to_string().contains("not a bridge"));
    host::delete_tap("vt-test-0").unwrap();
    host::delete_tap("vt-test-0").unwrap();
    assert!(!host::link_exists("vt-test-0"));

    // dnsmasq killed behind our back is restarted on adoption.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while host::dnsmasq_pid(&paths).is_some() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let found = host::adopt(&net, &forwards, &paths).unwrap();
    assert!(matches!(found, host::Found::Restarted(p) if p != pid), "{found:?}");

    // Stop leaves nothing: no bridge, table, dnsmasq or pid file; the leases stay.
    let pid = host::dnsmasq_pid(&paths).unwrap();
    host::stop(&net, &paths).unwrap();
    assert!(!host::link_exists("vmbrt0"));
    assert!(!host::table_exists("t"));
    assert!(sh(&["nft", "list", "ruleset"]).trim().is_empty());
    // Gone, or a zombie until init reaps it (no command line).
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(cmdline.is_empty(), "dnsmasq {pid} still runs");
    assert!(!paths.pid_file.exists() && paths.lease_file.exists());
    assert_eq!(host::adopt(&net, &forwards, &paths).unwrap(), host::Found::Gone);
    host::stop(&net, &paths).expect("stop again");
    let links = sh(&["ip", "-o", "link", "show"]);
    assert!(!links.contains("vmbrt0"), "{links}");

    // An isolated network (libvirt: no <forward>) with its bridge's own MAC: its guest gets
    // an address and reaches the host, and not the outside, which the NAT network reached.
    let iso = vmdef::network::xml::from_xml(
        "<network><name>i</name><bridge name='vmbri0'/><mac address='52:54:00:0a:cd:21'/>\
         <ip address='10.78.0.1' prefix='24'><dhcp><range start='10.78.0.100' end='10.78.0.150'/></dhcp></ip></network>",
    )
    .unwrap();
    assert!(iso.isolated);
    let ipaths = NetPaths::new(dir.path(), "i");
    host::start(&iso, &[], &ipaths).expect("start isolated");
    assert!(sh(&["ip", "-o", "link", "show", "dev", "vmbri0"]).contains("link/ether 52:54:00:0a:cd:21"));
    let iguest = format!("vmctl{id}i");
    let _ns2 = Namespaces(vec![iguest.clone()]);
    let ip = dhcp_guest(&iguest, "gp2", "vmbri0", "52:54:00:aa:00:03", &script);
    assert!(ip.octets()[..3] == [10, 78, 0], "{ip}");
    in_ns(&iguest, &["busybox", "ping", "-c", "1", "-W", "2", "10.78.0.1"]);
    let mut server = serve(&outside, 9001, "hello-from-outside");
    assert_eq!(fetch(&iguest, "192.0.2.2", 9001), "", "an isolated guest reached the outside");
    let _ = server.kill();
    let _ = server.wait();
    host::stop(&iso, &ipaths).unwrap();
    assert!(!host::link_exists("vmbri0"));
}
