// SPDX-License-Identifier: Apache-2.0
//! virsh's everyday definition verbs through `vmctl` and a running `vmctld`: autostart,
//! dominfo, domblklist, domiflist, setmem, setvcpus, attach/detach-disk and -interface.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{start_vmctld, vmctl};

fn ok(state: &Path, args: &[&str]) -> String {
    let (code, out, err) = vmctl(state, args);
    assert_eq!(code, 0, "vmctl {args:?}: {out}{err}");
    out
}

#[test]
fn definition_verbs_change_the_stored_definition() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, state) = start_vmctld(dir.path());

    let def = dir.path().join("web.json");
    std::fs::write(&def, r#"{"name": "web", "memory_mib": 256, "vcpus": 1}"#).unwrap();
    ok(&state, &["define", def.to_str().unwrap()]);
    ok(&state, &["vol", "create", "data.qcow2", "64M", "--format", "qcow2"]);
    let data = ok(&state, &["vol", "path", "data.qcow2"]).trim().to_string();

    assert_eq!(ok(&state, &["autostart", "web"]).trim(), "web will be started with the daemon");
    assert!(ok(&state, &["dominfo", "web"]).contains("Autostart:  yes"));
    ok(&state, &["autostart", "web", "--disable"]);
    assert!(ok(&state, &["dominfo", "web"]).contains("Autostart:  no"));

    let (code, _, err) = vmctl(&state, &["setmem", "web", "1G"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("add --config"), "{err}");
    ok(&state, &["setmem", "web", "1G", "--config"]);
    ok(&state, &["setvcpus", "web", "2", "--config"]);
    let info = ok(&state, &["dominfo", "web"]);
    assert!(info.contains("Memory:     1024 MiB") && info.contains("vCPUs:      2"), "{info}");

    ok(&state, &["attach-disk", "web", &data, "vdb", "--config"]);
    let list = ok(&state, &["domblklist", "web"]);
    assert!(list.contains(&format!("vdb     virtio  disk    {data}")), "{list}");
    let (code, _, err) = vmctl(&state, &["attach-disk", "web", &data, "vdb", "--config"]);
    assert_eq!(code, 2, "{err}");
    ok(&state, &["attach-interface", "web", "bridge", "br0", "--mac", "52:54:00:12:34:56", "--config"]);
    let list = ok(&state, &["domiflist", "web"]);
    assert!(list.contains("bridge  br0     virtio  52:54:00:12:34:56"), "{list}");

    ok(&state, &["detach-interface", "web", "--mac", "52:54:00:12:34:56", "--config"]);
    assert_eq!(ok(&state, &["domiflist", "web"]).lines().count(), 1, "the header only");
    ok(&state, &["detach-disk", "web", "vdb", "--config"]);
    assert_eq!(ok(&state, &["domblklist", "web"]).lines().count(), 1);
    let (code, _, err) = vmctl(&state, &["detach-disk", "web", "vdz", "--config"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("has no disk vdz"), "{err}");
    // clone: a full copy (sparse stays sparse) and a linked clone; new UUID and MACs.
    ok(&state, &["attach-disk", "web", &data, "vdb", "--config"]);
    ok(&state, &["attach-interface", "web", "network", "default", "--config"]);
    let out = ok(&state, &["clone", "web", "web2"]);
    assert!(out.contains("web2 cloned from web (1 disk(s) as a copy"), "{out}");
    let list = ok(&state, &["domblklist", "web2"]);
    let copy = state.join("images/web2.qcow2");
    assert!(list.contains(copy.to_str().unwrap()), "{list}");
    let (a, b) = (std::fs::read(&data).unwrap(), std::fs::read(&copy).unwrap());
    assert_eq!(a, b, "the copy has the same bytes");
    use std::os::unix::fs::MetadataExt;
    let blocks = std::fs::metadata(&copy).unwrap().blocks();
    assert!(blocks * 512 < 1 << 20, "a 64 MiB qcow2 copy stays small: {} blocks", blocks);
    let mac = |vm: &str| {
        ok(&state, &["domiflist", vm]).lines().nth(1).unwrap().split_whitespace().last().unwrap().to_string()
    };
    assert_ne!(mac("web"), mac("web2"));
    let info = |vm: &str| ok(&state, &["dumpjson", vm]);
    let uuid = |j: String| j.lines().find(|l| l.contains("\"uuid\"")).unwrap().to_string();
    assert_ne!(uuid(info("web")), uuid(info("web2")));
    let out = ok(&state, &["clone", "web", "web3", "--linked"]);
    assert!(out.contains("as a linked clone"), "{out}");
    let vols = ok(&state, &["vol", "list"]);
    assert!(vols.contains("web3.qcow2"), "{vols}");
    // The linked clone starts: the daemon follows its backing file (the template, in the
    // same pool) before it runs the VMM. Without its NIC, whose network is not defined here.
    ok(&state, &["detach-interface", "web3", "--mac", &mac("web3"), "--config"]);
    let out = ok(&state, &["start", "web3"]);
    assert!(out.contains("web3"), "{out}");
    ok(&state, &["destroy", "web3"]);
    let (code, _, err) = vmctl(&state, &["clone", "web", "web2"]);
    assert_ne!(code, 0, "the name is taken: {err}");
    assert!(!ok(&state, &["vol", "list"]).contains("web2-"), "nothing half-made left");
    ok(&state, &["vol", "copy", "web2.qcow2", "web4.qcow2"]);
    assert_eq!(std::fs::read(state.join("images/web4.qcow2")).unwrap(), b);
    ok(&state, &["detach-disk", "web", "vdb", "--config"]);

    // A change the daemon refuses leaves the definition as it was.
    let (code, _, err) = vmctl(&state, &["setvcpus", "web", "100000", "--config"]);
    assert_eq!(code, 2, "{err}");
    assert!(ok(&state, &["dominfo", "web"]).contains("vCPUs:      2"));
}

/// `vmctl completions bash | head`: the reader closing the pipe early is a normal end (exit
/// 0, no panic). The bash script (~100 KB) is larger than a pipe's buffer (64 KiB), so the
/// writer meets the closed pipe.
#[test]
fn completions_end_quietly_on_a_closed_pipe() {
    use std::io::Read;
    let verb = ["completions", "bash"];
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmctl"))
        .args(verb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is dropped here, before the writer is done.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{verb:?}: {:?} {err}", out.status);
    assert!(!err.contains("panicked"), "{verb:?}: {err}");
}

/// On a host whose KVM is too slow (vmm exit 5), `vmctl start` names the daemon's setting that
/// accepts it, not only the vmm's flag.
#[test]
fn a_slow_host_start_failure_names_the_daemon_setting() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, state) = start_vmctld(dir.path());
    let def = dir.path().join("slow.json");
    std::fs::write(&def, r#"{"name": "slow", "memory_mib": 79, "vcpus": 1}"#).unwrap();
    ok(&state, &["define", def.to_str().unwrap()]);
    let (code, out, err) = vmctl(&state, &["start", "slow"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("start vmctld with --vmm-arg=--accept-slow-kvm"), "{err}");
}
