// SPDX-License-Identifier: Apache-2.0
//! `vmctld` with managed networks, run inside a named network namespace of the test's own
//! (`ip netns exec`), driven with `vmctl`, with the fake VMM of `examples/fake_vmm.rs`. The
//! machine's own interfaces and nftables ruleset are never touched.
//!
//! Needs root, `ip`, `nft` and `dnsmasq`; skipped with the reason printed otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vmctl::api::{NetInfo, VmInfo};

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    for (tool, arg) in [("ip", "-V"), ("nft", "--version"), ("dnsmasq", "--version")] {
        if Command::new(tool).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

fn fake_vmm() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join("fake_vmm")
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn in_ns(ns: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip").args(["netns", "exec", ns]).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn daemon(ns: &str, state: &Path) -> Child {
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(state.with_extension("log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_vmctld"), "--state-dir"])
        .arg(state)
        .arg("--vmm")
        .arg(fake_vmm())
        .stderr(log)
        .spawn()
        .unwrap();
    let sock = state.join("vmctld.sock");
    common::wait_for_socket(&sock);
    child
}

/// Runs vmctl; returns (exit code, stdout).
fn vmctl(state: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vmctl"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("VMCTL_SOCKET")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ok(state: &Path, args: &[&str]) -> String {
    let (code, out) = vmctl(state, args);
    assert_eq!(code, 0, "vmctl {args:?}: {out}");
    out
}

fn net_info(state: &Path) -> NetInfo {
    let nets: Vec<NetInfo> = serde_json::from_str(&ok(state, &["--json", "net", "list"])).unwrap();
    nets.into_iter().find(|n| n.name == "lan").unwrap()
}

#[test]
fn daemon_networks_and_vm_taps_in_a_namespace() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    let ns = format!("vmctl{}d", std::process::id());
    assert!(Command::new("ip").args(["netns", "add", &ns]).status().unwrap().success());
    let _ns = Netns(ns.clone());
    in_ns(&ns, &["ip", "link", "set", "dev", "lo", "up"]);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    std::fs::create_dir(&state).unwrap();
    let mut d = daemon(&ns, &state);
    // Kernels come from a pool: the fake VMM never reads it.
    let kernel = state.join("images").join("vmlinuz");
    std::fs::write(&kernel, b"").unwrap();
    let kernel = kernel.to_str().unwrap().to_string();

    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let lan = file(
        "lan.json",
        r#"{"name": "lan", "ipv4": "10.77.0.1/24", "dhcp": {"start": "10.77.0.100", "end": "10.77.0.150"},
            "hosts": [{"mac": "52:54:00:aa:00:01", "ip": "10.77.0.10"}],
            "forwards": [{"proto": "tcp", "host_port": 2222, "vm": "web", "guest_port": 22}]}"#,
    );
    ok(&state, &["net", "define", &lan]);
    assert_eq!(net_info(&state).bridge, "vmbr0");
    // Overlapping subnet: conflict (4); a bad field: bad input (2).
    let clash = file(
        "clash.xml",
        "<network><name>clash</name><forward mode='nat'/><ip address='10.77.0.129' prefix='25'/></network>",
    );
    assert_eq!(vmctl(&state, &["net", "define", &clash]).0, 4);
    let bad = file("bad.json", r#"{"name": "bad", "bridge": "a-very-long-bridge", "ipv4": "10.9.0.1/24"}"#);
    assert_eq!(vmctl(&state, &["net", "define", &bad]).0, 2);
    assert_eq!(vmctl(&state, &["net", "start", "nosuch"]).0, 3);

    let web = file(
        "web.json",
        &r#"{"name": "web", "memory_mib": 64, "vcpus": 1,
            "os": {"machine": "direct", "kernel": "/dev/null"},
            "interfaces": [{"source": {"network": "lan"}, "model": "e1000", "mac": "52:54:00:aa:00:01"}]}"#
            .replace("/dev/null", &kernel),
    );
    ok(&state, &["define", &web]);
    // The forward names VM web: it resolves through hosts now that web is defined.
    assert_eq!(vmctl(&state, &["start", "web"]).0, 4, "the network is not started");
    ok(&state, &["net", "start", "lan"]);
    let info = net_info(&state);
    assert!(info.active && info.dnsmasq_pid.is_some() && info.used_by == ["web"], "{info:?}");
    assert!(in_ns(&ns, &["ip", "-4", "addr", "show", "dev", "vmbr0"]).1.contains("10.77.0.1/24"));
    assert!(in_ns(&ns, &["nft", "list", "table", "ip", "vmctl-lan"]).1.contains("dnat to 10.77.0.10:22"));

    ok(&state, &["start", "web"]);
    let link = in_ns(&ns, &["ip", "-o", "link", "show", "dev", "vt-web-0"]);
    assert!(link.0 && link.1.contains("master vmbr0"), "{link:?}");
    assert_eq!(vmctl(&state, &["net", "stop", "lan"]).0, 4, "in use by web");
    assert_eq!(vmctl(&state, &["net", "undefine", "lan"]).0, 4, "started");

    // The daemon dies and comes back: network and VM are adopted, the tap kept.
    let pid = info.dnsmasq_pid;
    d.kill().unwrap();
    d.wait().unwrap();
    let mut d = daemon(&ns, &state);
    let info = net_info(&state);
    assert!(info.active && info.dnsmasq_pid == pid, "{info:?}");
    assert!(in_ns(&ns, &["ip", "link", "show", "dev", "vt-web-0"]).0);

    ok(&state, &["destroy", "web"]);
    assert!(!in_ns(&ns, &["ip", "link", "show", "dev", "vt-web-0"]).0, "the tap is removed");

    // A virtio NIC (the default model) gets its tap on the bridge like an e1000.
    let v = file(
        "v.json",
        &r#"{"name": "v", "memory_mib": 64, "vcpus": 1, "os": {"machine": "direct", "kernel": "/dev/null"},
            "interfaces": [{"source": {"network": "lan"}, "model": "virtio"}]}"#
            .replace("/dev/null", &kernel),
    );
    ok(&state, &["define", &v]);
    ok(&state, &["start", "v"]);
    let link = in_ns(&ns, &["ip", "-o", "link", "show", "dev", "vt-v-0"]);
    assert!(link.0 && link.1.contains("master vmbr0"), "{link:?}");
    ok(&state, &["destroy", "v"]);
    assert!(!in_ns(&ns, &["ip", "link", "show", "dev", "vt-v-0"]).0, "the tap is removed");

    // dnsmasq died while the daemon was away: restarted on adoption.
    d.kill().unwrap();
    d.wait().unwrap();
    let _ = Command::new("kill").args(["-9", &pid.unwrap().to_string()]).status();
    std::thread::sleep(Duration::from_millis(200));
    let mut d = daemon(&ns, &state);
    let info = net_info(&state);
    assert!(info.active && info.dnsmasq_pid.is_some() && info.dnsmasq_pid != pid, "{info:?}");

    let leases: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&state, &["--json", "net", "leases", "lan"])).unwrap();
    assert!(leases.is_empty());
    ok(&state, &["net", "autostart", "lan"]);
    assert!(net_info(&state).autostart);
    ok(&state, &["net", "stop", "lan"]);
    assert!(!in_ns(&ns, &["ip", "link", "show", "dev", "vmbr0"]).0);
    assert!(in_ns(&ns, &["nft", "list", "ruleset"]).1.trim().is_empty());
    let vms: Vec<VmInfo> = serde_json::from_str(&ok(&state, &["--json", "list"])).unwrap();
    assert_eq!(vms.len(), 2);

    // Autostart: a restarted daemon starts the network.
    d.kill().unwrap();
    d.wait().unwrap();
    let mut d = daemon(&ns, &state);
    assert!(net_info(&state).active);
    ok(&state, &["net", "stop", "lan"]);
    ok(&state, &["net", "autostart", "lan", "--disable"]);
    ok(&state, &["undefine", "web"]);
    ok(&state, &["net", "undefine", "lan"]);
    assert_eq!(vmctl(&state, &["net", "info", "lan"]).0, 3);
    d.kill().unwrap();
    d.wait().unwrap();
}
