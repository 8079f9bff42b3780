// SPDX-License-Identifier: Apache-2.0
//! Hostile definitions sent to a running `vmctld`: each is refused with an error that says
//! why, and the daemon still answers afterwards (issue 12: a 21 KB XML of 3,000 nested
//! elements used to overflow a stack and take the API down).

mod common;

use std::process::Command;

use hyper::Method;
use vmctl::api::VmInfo;
use vmctl::client::{Client, ClientError};

use common::start_vmctld;

async fn refused(c: &Client, ctype: &str, body: Vec<u8>) -> (u16, String) {
    match c.request(Method::POST, "/v1/vms", Some(ctype), body).await {
        Err(ClientError::Api { status, message }) => (status, message),
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_definitions_are_refused_and_the_daemon_lives() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, state) = start_vmctld(dir.path());
    let c = Client::new(state.join("vmctld.sock"));

    let xml = "application/xml";
    let deep = format!("<domain type='kvm'>{}{}</domain>", "<a>".repeat(3000), "</a>".repeat(3000));
    let (status, msg) = refused(&c, xml, deep.into_bytes()).await;
    assert_eq!(status, 400);
    assert!(msg.contains("nesting deeper than 32 levels"), "{msg}");

    let bomb = "<?xml version='1.0'?>\n<!DOCTYPE d [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;'>]>\n<domain type='kvm'>&b;</domain>";
    let (status, msg) = refused(&c, xml, bomb.into()).await;
    assert_eq!(status, 400);
    assert!(msg.contains("line 2") && msg.contains("<!DOCTYPE>"), "{msg}");

    let many = format!("<domain type='kvm'>{}</domain>", "<x/>".repeat(20_000));
    let (status, msg) = refused(&c, xml, many.into_bytes()).await;
    assert_eq!(status, 400);
    assert!(msg.contains("more than 10000 elements"), "{msg}");

    let big = format!("<domain type='kvm'><name>{}</name></domain>", "a".repeat(10 << 20));
    let (status, msg) = refused(&c, xml, big.into_bytes()).await;
    assert!(status == 400 || status == 413, "{status} {msg}");
    assert!(msg.contains("larger than") && !msg.starts_with("HTTP "), "a JSON sentence: {msg}");

    let mut latin1 = b"<domain type='kvm'><name>caf".to_vec();
    latin1.extend_from_slice(&[0xe9]);
    latin1.extend_from_slice(b"</name></domain>");
    let (status, msg) = refused(&c, xml, latin1).await;
    assert_eq!(status, 400);
    assert!(msg.contains("not UTF-8"), "{msg}");

    let declared = "<?xml version='1.0' encoding='ISO-8859-1'?><domain type='kvm'/>";
    let (status, msg) = refused(&c, xml, declared.into()).await;
    assert_eq!(status, 400);
    assert!(msg.contains("ISO-8859-1") && msg.contains("UTF-8"), "{msg}");

    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, msg) = refused(&c, "application/json", deep_json.into_bytes()).await;
    assert_eq!(status, 400);
    assert!(msg.contains("nesting deeper"), "{msg}");

    // Still alive, and nothing was defined.
    let vms: Vec<VmInfo> = c.get_json("/v1/vms").await.unwrap();
    assert!(vms.is_empty());

    // libvirt's bookkeeping defines as written, each ignored part a warning on stderr.
    let file = dir.path().join("virsh.xml");
    std::fs::write(&file, LIBVIRT_XML).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vmctl"))
        .arg("--state-dir")
        .arg(&state)
        .arg("define")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "web defined");
    for w in ["line 7, column 3: <memballoon> is ignored", "<channel> is ignored", "<seclabel> is ignored"] {
        assert!(stderr.contains(&format!("warning: {w}")) || stderr.contains(w), "{w}: {stderr}");
    }
    // The same sent twice: one problem per refused element, all of them.
    let bad =
        LIBVIRT_XML.replace("<memballoon model='virtio'/>", "<sound model='ich9'/><tpm model='tpm-crb'/>");
    let (status, msg) = refused(&c, xml, bad.into_bytes()).await;
    assert_eq!(status, 400);
    assert!(msg.contains("2 problems") && msg.contains("<sound>") && msg.contains("<tpm>"), "{msg}");
}

const LIBVIRT_XML: &str = "<domain type='kvm'>
  <name>web</name>
  <memory unit='KiB'>262144</memory>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
  <features><acpi/><apic/></features>
  <devices>
  <memballoon model='virtio'/>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <input type='mouse' bus='ps2'/>
  </devices>
  <seclabel type='dynamic' model='apparmor'/>
</domain>
";
