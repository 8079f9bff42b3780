// SPDX-License-Identifier: Apache-2.0
//! End-to-end tests of `vmctld` and `vmctl` as processes, with the fake VMM of
//! `examples/fake_vmm.rs` (the real `vmm` cannot boot guests on hosts without fast KVM).

mod common;

use common::{fake_vmm, vmctl};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vmctl::api::VmInfo;
use vmctl::client::Client;
use vmdef::store::RunState;

struct Daemon {
    child: Child,
    state: PathBuf,
}

impl Daemon {
    fn start(state: &Path) -> Daemon {
        // Pools may be defined next to the state directory (the tests' temporary directory).
        std::fs::create_dir_all(state).unwrap();
        let root = state.parent().unwrap().display().to_string();
        std::fs::write(state.join("vmctld.json"), format!(r#"{{"pool_roots": [{root:?}]}}"#)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vmctld"))
            .arg("--state-dir")
            .arg(state)
            .arg("--vmm")
            .arg(fake_vmm())
            .arg("--log")
            .arg("debug")
            .stderr(std::fs::File::create(state.with_extension("daemon.log")).unwrap())
            .spawn()
            .unwrap();
        let sock = state.join("vmctld.sock");
        common::wait_for_socket(&sock);
        Daemon { child, state: state.to_path_buf() }
    }

    fn client(&self) -> Client {
        Client::new(self.state.join("vmctld.sock"))
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn define(state: &Path, json: &str) {
    let file = state.join("def.json");
    std::fs::write(&file, json).unwrap();
    let (code, out, err) = vmctl(state, &["define", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

async fn list(c: &Client) -> Vec<VmInfo> {
    c.get_json("/v1/vms").await.unwrap()
}

async fn info(c: &Client, name: &str) -> VmInfo {
    let d: vmctl::api::VmDetail = c.get_json(&format!("/v1/vms/{name}")).await.unwrap();
    d.info
}

async fn wait_state(c: &Client, name: &str, state: RunState) -> VmInfo {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = info(c, name).await;
        if info.state == state {
            return info;
        }
        assert!(Instant::now() < deadline, "{name} never became {state:?}: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads from the console until `want` appears; returns everything read.
async fn read_until<S: AsyncReadExt + Unpin>(s: &mut S, want: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(want) {
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {want:?} in {:?}", String::from_utf8_lossy(&got)))
            .unwrap();
        assert!(n > 0, "console closed before {want:?}");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn alive(pid: u32) -> bool {
    vmctl::process::is_alive(pid, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vms_survive_a_daemon_sigkill_and_are_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let mut d = Daemon::start(&state);
    define(&state, r#"{"name":"a","memory_mib":64,"vcpus":1}"#);
    define(&state, r#"{"name":"b","memory_mib":64,"vcpus":1}"#);
    let (code, out, err) = vmctl(&state, &["start", "a"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(vmctl(&state, &["start", "b"]).0, 0);
    let c = d.client();
    let before = list(&c).await;
    assert!(before.iter().all(|v| v.state == RunState::Running), "{before:?}");

    // Two viewers at once; input from one is seen by both.
    let mut v1 = c.console("a").await.unwrap();
    let mut v2 = c.console("a").await.unwrap();
    read_until(&mut v1, "login: ").await;
    read_until(&mut v2, "login: ").await;
    v2.write_all(b"root\r").await.unwrap();
    read_until(&mut v1, "root").await;
    read_until(&mut v2, "root").await;
    drop((v1, v2));

    d.kill9();
    for v in &before {
        assert!(alive(v.pid.unwrap()), "{} died with the daemon", v.name);
    }
    let d = Daemon::start(&state);
    let c = d.client();
    let after = list(&c).await;
    assert_eq!(
        after.iter().map(|v| (v.state, v.pid)).collect::<Vec<_>>(),
        before.iter().map(|v| (v.state, v.pid)).collect::<Vec<_>>()
    );
    // The console re-attaches, replays what the last daemon logged, and still carries input.
    let mut v = c.console("a").await.unwrap();
    let replay = read_until(&mut v, "root").await;
    assert!(replay.contains("login: "), "{replay:?}");
    v.write_all(b"again\r").await.unwrap();
    read_until(&mut v, "again").await;
    drop(v);
    assert!(std::fs::read_to_string(state.join("logs/a.log")).unwrap().contains("again"));

    // Graceful shutdown of an adopted VM; destroy of the other.
    let (code, out, err) = vmctl(&state, &["shutdown", "a", "--timeout", "10"]);
    assert_eq!(code, 0, "{out}{err}");
    let info = wait_state(&c, "a", RunState::Shutoff).await;
    assert!(info.exit_reason.unwrap().contains("powered off"));
    assert_eq!(vmctl(&state, &["destroy", "b"]).0, 0);
    wait_state(&c, "b", RunState::Shutoff).await;
    assert!(before.iter().all(|v| !alive(v.pid.unwrap())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_that_dies_while_the_daemon_is_down_is_reported_crashed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let mut d = Daemon::start(&state);
    define(&state, r#"{"name":"c","memory_mib":64,"vcpus":1}"#);
    define(&state, r#"{"name":"auto","memory_mib":64,"vcpus":1,"autostart":true}"#);
    assert_eq!(vmctl(&state, &["start", "c"]).0, 0);
    d.kill9();
    let sock = state.join("run/vm/c/control.sock");
    vmctl::process::control(&sock, serde_json::json!({"cmd": "crash"}), Duration::from_secs(5))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sock.exists() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let d = Daemon::start(&state);
    let c = d.client();
    let info = wait_state(&c, "c", RunState::Crashed).await;
    assert!(info.exit_reason.unwrap().contains("triple fault"));
    // Autostart happened when the daemon started.
    let auto = wait_state(&c, "auto", RunState::Running).await;
    assert_eq!(vmctl(&state, &["destroy", "auto"]).0, 0);
    assert!(
        !alive(auto.pid.unwrap()) || {
            tokio::time::sleep(Duration::from_millis(500)).await;
            !alive(auto.pid.unwrap())
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_timeouts_and_start_failures() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let d = Daemon::start(&state);
    let c = d.client();
    // on_crash restart: a new process comes up.
    define(&state, r#"{"name":"r","memory_mib":64,"vcpus":1,"on_crash":"restart"}"#);
    let first: VmInfo = c.post_json("/v1/vms/r/start").await.unwrap();
    vmctl::process::control(
        &state.join("run/vm/r/control.sock"),
        serde_json::json!({"cmd": "crash"}),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = info(&c, "r").await;
        if info.state == RunState::Running && info.pid != first.pid {
            break;
        }
        assert!(Instant::now() < deadline, "not restarted: {info:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(vmctl(&state, &["destroy", "r"]).0, 0);

    // A guest that ignores the power button is stopped after the timeout.
    define(&state, r#"{"name":"deaf","memory_mib":55,"vcpus":1}"#);
    assert_eq!(vmctl(&state, &["start", "deaf"]).0, 0);
    let t = Instant::now();
    let (code, out, err) = vmctl(&state, &["--json", "shutdown", "deaf", "--timeout", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(t.elapsed() >= Duration::from_secs(1));
    let info: VmInfo = serde_json::from_str(&out).unwrap();
    assert_eq!(info.state, RunState::Shutoff);

    // A VMM that fails at start: exit 1 and its reason.
    define(&state, r#"{"name":"bad","memory_mib":77,"vcpus":1}"#);
    let (code, _, err) = vmctl(&state, &["start", "bad"]);
    assert_eq!(code, 1);
    assert!(err.contains("simulated start failure"), "{err}");
}

#[test]
fn cli_exit_codes_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    // No daemon: exit 1.
    std::fs::create_dir_all(&state).unwrap();
    assert_eq!(vmctl(&state, &["list"]).0, 1);
    let _d = Daemon::start(&state);
    define(&state, r#"{"name":"x","memory_mib":64,"vcpus":1}"#);
    let (code, out, _) = vmctl(&state, &["list"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("NAME") && out.contains("x ") && out.contains("shut off"), "{out}");
    let (_, out, _) = vmctl(&state, &["--json", "list"]);
    let vms: Vec<VmInfo> = serde_json::from_str(&out).unwrap();
    assert_eq!(vms.len(), 1);
    let bad = state.join("bad.json");
    std::fs::write(&bad, "{\"name\": \"y\", \"memory_mib\": 64, \"vcpus\": 1, \"oops\": 1}").unwrap();
    let (code, _, err) = vmctl(&state, &["define", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("oops"), "{err}");
    assert_eq!(vmctl(&state, &["start", "nope"]).0, 3);
    assert_eq!(vmctl(&state, &["destroy", "x"]).0, 4);
    assert_eq!(vmctl(&state, &["start"]).0, 2);
    let (code, xml, _) = vmctl(&state, &["dumpxml", "x"]);
    assert_eq!(code, 0);
    assert!(xml.contains("<domain"));
    let (_, json, _) = vmctl(&state, &["dumpjson", "x"]);
    assert!(json.contains("\"memory_mib\": 64"));
    // edit: the editor doubles the memory; an invalid edit changes nothing (exit 2).
    let run_edit = |script: &str| {
        Command::new(env!("CARGO_BIN_EXE_vmctl"))
            .arg("--state-dir")
            .arg(&state)
            .args(["edit", "x"])
            .env("EDITOR", script)
            .output()
            .unwrap()
    };
    let out = run_edit("sed -i s/\\\"memory_mib\\\":\\ 64/\\\"memory_mib\\\":\\ 128/");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, json, _) = vmctl(&state, &["dumpjson", "x"]);
    assert!(json.contains("\"memory_mib\": 128"), "{json}");
    let out = run_edit("sed -i s/\\\"vcpus\\\"/\\\"cpus\\\"/");
    assert_eq!(out.status.code(), Some(2));
    let (_, info, _) = vmctl(&state, &["info", "x"]);
    assert!(info.contains("Memory:     128 MiB"), "{info}");
    assert_eq!(vmctl(&state, &["undefine", "x"]).0, 0);
    assert_eq!(vmctl(&state, &["undefine", "x"]).0, 3);
    let (code, comp, _) = vmctl(&state, &["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(comp.contains("vmctl"));
}

/// Runs `qemu-img args` if it is installed; `None` (and a SKIP note) otherwise.
fn qemu_img(args: &[&str]) -> Option<String> {
    let Ok(out) = Command::new("qemu-img").args(args).output() else {
        println!("SKIP the qemu-img checks: qemu-img not found (apt-get install qemu-utils)");
        return None;
    };
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "qemu-img {args:?}: {text}");
    Some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_create_list_clone_resize_delete_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let _d = Daemon::start(&state);
    assert!(state.join("images").is_dir(), "the default pool is made at start");
    let ok = |args: &[&str]| {
        let (code, out, err) = vmctl(&state, args);
        assert_eq!(code, 0, "vmctl {args:?}: {out}{err}");
        out
    };
    let fails = |args: &[&str], want_code: i32, want: &str| {
        let (code, out, err) = vmctl(&state, args);
        assert_eq!(code, want_code, "vmctl {args:?}: {out}{err}");
        assert!(err.contains(want), "vmctl {args:?}: {err}");
    };
    assert_eq!(ok(&["vol", "list"]).lines().count(), 1, "only the header");
    let out = ok(&["vol", "create", "base.qcow2", "64M", "--format", "qcow2"]);
    assert!(out.contains("base.qcow2 created (qcow2 64 MiB"), "{out}");
    ok(&["vol", "create", "data.raw", "1G"]);
    fails(&["vol", "create", "base.qcow2", "1M"], 4, "already exists");
    fails(&["vol", "create", "x", "10Q"], 2, "size");
    fails(&["vol", "create", ".x", "1M"], 2, "volume name");
    fails(&["vol", "create", "x", "1M", "--pool", "nope"], 3, "no pool named nope");
    let base = ok(&["vol", "path", "base.qcow2"]).trim().to_string();
    assert_eq!(Path::new(&base), std::fs::canonicalize(state.join("images/base.qcow2")).unwrap());
    fails(&["vol", "path", "nope"], 3, "no volume named nope");

    let out = ok(&["vol", "clone", "base.qcow2", "web.qcow2"]);
    assert!(out.contains("linked clone of base.qcow2"), "{out}");
    let web = ok(&["vol", "path", "web.qcow2"]).trim().to_string();
    let vols: Vec<vmctl::api::VolumeInfo> = serde_json::from_str(&ok(&["--json", "vol", "list"])).unwrap();
    let names: Vec<&str> = vols.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["base.qcow2", "data.raw", "web.qcow2"]);
    assert_eq!(vols[0].overlays, ["web.qcow2"]);
    assert_eq!(vols[1].virtual_size, 1 << 30);
    assert_eq!(vols[2].backing_file.as_deref(), Some("base.qcow2"));

    // A VM on the clone.
    define(
        &state,
        &format!(
            r#"{{"name":"web","memory_mib":64,"vcpus":1,"disks":[{{"path":"{web}","format":"qcow2","bus":"ide"}}]}}"#
        ),
    );
    let table = ok(&["vol", "list", "--pool", "default"]);
    let row = table.lines().find(|l| l.starts_with("default  web.qcow2")).unwrap();
    assert!(row.contains("base.qcow2") && row.ends_with("web"), "{table}");
    assert!(table.lines().any(|l| l.contains("base.qcow2 ") && l.contains("web.qcow2")), "{table}");
    ok(&["start", "web"]);
    // The vmm got the clone and its backing file as descriptors 3 and 4 (opened by the
    // daemon beneath the pool), named in its configuration's `preopened`.
    let rt: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("run/web.json")).unwrap()).unwrap();
    let pid = rt["pid"].as_u64().unwrap();
    let fd = |n: u32| std::fs::read_link(format!("/proc/{pid}/fd/{n}")).unwrap();
    assert_eq!(fd(3), PathBuf::from(&web));
    assert_eq!(fd(4), PathBuf::from(&base));
    let config = std::fs::read_to_string(state.join("run/vm/web/config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["preopened"][0]["path"], serde_json::json!(web));
    assert_eq!(config["preopened"][0]["fd"], 3);
    assert_eq!(config["preopened"][1]["fd"], 4);
    fails(&["vol", "resize", "web.qcow2", "128M"], 4, "running");
    fails(&["vol", "delete", "web.qcow2", "--force"], 4, "running");
    fails(&["vol", "delete", "base.qcow2", "--force"], 4, "running");
    fails(&["vol", "clone", "web.qcow2", "c2"], 4, "running");
    ok(&["destroy", "web"]);

    fails(&["vol", "resize", "base.qcow2", "128M"], 4, "template");
    fails(&["vol", "delete", "base.qcow2"], 4, "web.qcow2");
    let out = ok(&["vol", "resize", "web.qcow2", "128M"]);
    assert!(out.contains("128 MiB"), "{out}");
    fails(&["vol", "resize", "web.qcow2", "1M"], 2, "only grow");
    if let Some(info) = qemu_img(&["info", &web]) {
        assert!(info.contains("virtual size: 128 MiB"), "{info}");
        assert!(info.contains("backing file: base.qcow2"), "{info}");
        qemu_img(&["check", &web]);
        qemu_img(&["check", &base]);
    }
    fails(&["vol", "delete", "web.qcow2"], 4, "web");
    ok(&["vol", "delete", "web.qcow2", "--force"]);
    ok(&["vol", "delete", "base.qcow2"]);
    fails(&["vol", "delete", "base.qcow2"], 3, "no volume");

    // Another pool.
    let extra = dir.path().join("extra");
    std::fs::create_dir(&extra).unwrap();
    ok(&["pool", "define", "extra", extra.to_str().unwrap()]);
    fails(&["pool", "define", "again", extra.to_str().unwrap()], 4, "already uses");
    let pools = ok(&["pool", "list"]);
    assert!(pools.lines().nth(1).unwrap().starts_with("default") && pools.contains("extra"), "{pools}");
    ok(&["vol", "create", "e.raw", "1M", "--pool", "extra"]);
    assert!(extra.join("e.raw").exists());
    let all = ok(&["vol", "list"]);
    assert!(all.contains("extra    e.raw") && all.contains("default  data.raw"), "{all}");
    ok(&["pool", "undefine", "extra"]);
    fails(&["pool", "undefine", "default"], 4, "default");
    assert!(extra.join("e.raw").exists(), "undefine keeps the files");
    let leftovers: Vec<_> = std::fs::read_dir(state.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(leftovers, ["data.raw"]);
}

/// `vmctl console` whose input stays open but silent (a pipe, or a terminal nobody types on)
/// ends when the VM stops: a read of stdin still pending must not keep the process alive.
#[test]
fn console_ends_when_the_vm_stops_while_stdin_stays_open() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let _d = Daemon::start(&state);
    define(&state, r#"{"name":"k","memory_mib":64,"vcpus":1}"#);
    assert_eq!(vmctl(&state, &["start", "k"]).0, 0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmctl"))
        .arg("--state-dir")
        .arg(&state)
        .args(["console", "k"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("login: ") {
        seen.extend(rx.recv_timeout(Duration::from_secs(10)).expect("no console output"));
    }
    assert_eq!(vmctl(&state, &["destroy", "k"]).0, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("vmctl console still runs after the VM stopped");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    drop(stdin);
}

/// VMs with a VNC password listen on TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vnc_ports_are_chosen_reported_and_kept_across_a_daemon_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let mut d = Daemon::start(&state);
    define(&state, r#"{"name":"a","memory_mib":64,"vcpus":1,"graphics":{"vnc":{"password":"pw"}}}"#);
    define(&state, r#"{"name":"b","memory_mib":64,"vcpus":1,"graphics":{"vnc":{"password":"pw"}}}"#);
    assert_eq!(vmctl(&state, &["start", "a"]).0, 0);
    assert_eq!(vmctl(&state, &["start", "b"]).0, 0);
    let c = d.client();
    let (a, b) = (info(&c, "a").await.vnc.unwrap(), info(&c, "b").await.vnc.unwrap());
    // Automatic ports: the first free ones from 5900, different for the two VMs.
    assert!(a.ip().is_loopback() && a.port() >= 5900 && b.port() > a.port(), "{a} {b}");
    let (code, out, _) = vmctl(&state, &["vncdisplay", "b"]);
    assert_eq!((code, out.trim()), (0, format!("127.0.0.1:{}", b.port() - 5900).as_str()));
    let (_, out, _) = vmctl(&state, &["info", "a"]);
    assert!(
        out.contains(&format!("VNC:        {a} (display 127.0.0.1:{}, password)", a.port() - 5900)),
        "{out}"
    );
    // The VM's VNC server is there (the fake vmm runs vmm's server: the RFB version first).
    let mut s = tokio::net::TcpStream::connect(a).await.unwrap();
    let mut hello = [0u8; 12];
    s.read_exact(&mut hello).await.unwrap();
    assert_eq!(&hello, b"RFB 003.008\n");

    // A fixed port another running VM holds: refused (exit 4), naming the field and the VM.
    define(
        &state,
        &format!(
            r#"{{"name":"f","memory_mib":64,"vcpus":1,"graphics":{{"vnc":{{"port":{},"password":"pw"}}}}}}"#,
            a.port()
        ),
    );
    let (code, _, err) = vmctl(&state, &["start", "f"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("graphics.vnc.port") && err.contains("running VM a"), "{err}");
    // A fixed port something else on the host listens on: refused as well.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = other.local_addr().unwrap().port();
    define(
        &state,
        &format!(
            r#"{{"name":"h","memory_mib":64,"vcpus":1,"graphics":{{"vnc":{{"port":{taken},"password":"pw"}}}}}}"#
        ),
    );
    let (code, _, err) = vmctl(&state, &["start", "h"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("graphics.vnc: cannot listen on"), "{err}");
    drop(other);
    // An address the host does not have: refused at once, not after trying every port.
    define(
        &state,
        r#"{"name":"x","memory_mib":64,"vcpus":1,"graphics":{"vnc":{"listen":"192.0.2.1","password":"pw"}}}"#,
    );
    let (code, _, err) = vmctl(&state, &["start", "x"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("cannot listen on 192.0.2.1:") && err.contains("graphics.vnc.listen"), "{err}");
    assert_eq!(vmctl(&state, &["start", "h"]).0, 0);
    assert_eq!(info(&c, "h").await.vnc.unwrap().port(), taken);

    // A restarted daemon still knows the ports; a stopped VM has none.
    d.kill9();
    let d = Daemon::start(&state);
    let c = d.client();
    assert_eq!(info(&c, "a").await.vnc, Some(a));
    assert_eq!(vmctl(&state, &["destroy", "a"]).0, 0);
    wait_state(&c, "a", RunState::Shutoff).await;
    assert_eq!(info(&c, "a").await.vnc, None);
    let (code, _, err) = vmctl(&state, &["vncdisplay", "a"]);
    assert!(code != 0 && err.contains("a is not running"), "{code} {err}");
    // With `a` gone its port is free again for the next automatic choice.
    define(&state, r#"{"name":"g","memory_mib":64,"vcpus":1,"graphics":{"vnc":{"password":"pw"}}}"#);
    assert_eq!(vmctl(&state, &["start", "g"]).0, 0);
    assert_eq!(info(&c, "g").await.vnc, Some(a));
    for vm in ["b", "h", "g"] {
        assert_eq!(vmctl(&state, &["destroy", vm]).0, 0);
    }
}

/// As root the daemon runs each vmm jailed: its own uid (two VMs, two uids), no capabilities,
/// no_new_privs, pid 1 of its own pid namespace, in a mount namespace whose root is not the
/// host's; the uid is recorded in the runtime state and free again after the VM stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vmm_runs_jailed_with_a_uid_of_its_own() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the jailer needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let d = Daemon::start(&state);
    let c = d.client();
    define(&state, r#"{"name":"j1","memory_mib":64,"vcpus":1}"#);
    define(&state, r#"{"name":"j2","memory_mib":64,"vcpus":1}"#);
    assert_eq!(vmctl(&state, &["start", "j1"]).0, 0);
    assert_eq!(vmctl(&state, &["start", "j2"]).0, 0);
    let mut uids = Vec::new();
    for name in ["j1", "j2"] {
        let pid = wait_state(&c, name, RunState::Running).await.pid.unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.split_whitespace().collect::<Vec<_>>())
                .unwrap()
        };
        let uid: u32 = field("Uid:")[0].parse().unwrap();
        assert!(uid >= 2_000_000_000, "{name} runs as uid {uid}");
        assert!(field("Uid:").iter().all(|u| *u == uid.to_string()), "{status}");
        assert!(field("Gid:").iter().all(|g| *g == uid.to_string()), "{status}");
        assert_eq!(field("CapEff:"), ["0000000000000000"]);
        assert_eq!(field("CapBnd:"), ["0000000000000000"]);
        assert_eq!(field("NoNewPrivs:"), ["1"]);
        assert_eq!(field("NSpid:").last().copied(), Some("1"), "pid 1 of its own pid namespace: {status}");
        let ns = |p: &str, kind: &str| std::fs::read_link(format!("/proc/{p}/ns/{kind}")).unwrap();
        for kind in ["mnt", "pid", "ipc", "uts"] {
            assert_ne!(ns(&pid.to_string(), kind), ns("self", kind), "{name} shares our {kind} namespace");
        }
        let runtime = std::fs::read_to_string(state.join(format!("run/{name}.json"))).unwrap();
        assert!(runtime.contains(&format!("\"jail_uid\": {uid}")), "{runtime}");
        uids.push(uid);
    }
    assert_ne!(uids[0], uids[1], "two running VMs share a uid");
    // j1's uid is free again once it stops, and the next start takes the lowest free one.
    assert_eq!(vmctl(&state, &["destroy", "j1"]).0, 0);
    wait_state(&c, "j1", RunState::Shutoff).await;
    assert_eq!(vmctl(&state, &["start", "j1"]).0, 0);
    let pid = wait_state(&c, "j1", RunState::Running).await.pid.unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains(&format!("Uid:\t{}", uids[0].min(uids[1]))), "{status}");
    for name in ["j1", "j2"] {
        assert_eq!(vmctl(&state, &["destroy", name]).0, 0);
    }
}

/// `vmctl domstats` and `dominfo` through a real vmctld, whose sampler (a round every 10 s,
/// the first at its start) turns the fake vmm's growing counters into rates.
#[tokio::test]
async fn domstats_and_dominfo_show_the_vmm_counters_and_sampled_rates() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let d = Daemon::start(&state);
    define(&state, r#"{"name":"st","memory_mib":128,"vcpus":1}"#);
    let (code, out, _) = vmctl(&state, &["domstats", "st"]);
    assert_eq!((code, out.as_str()), (0, "Domain: 'st'\n  state.state=5\n"));
    assert_eq!(vmctl(&state, &["domstats", "nope"]).0, 3);
    assert_eq!(vmctl(&state, &["start", "st"]).0, 0);
    wait_state(&d.client(), "st", RunState::Running).await;
    let (code, out, err) = vmctl(&state, &["domstats", "st"]);
    assert_eq!(code, 0, "{err}");
    let value = |key: &str| -> u64 {
        let line = out.lines().find(|l| l.trim_start().starts_with(&format!("{key}="))).expect(key);
        line.split('=').nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(value("state.state"), 1);
    assert!(value("cpu.time") > 0 && value("vcpu.0.time") > 0, "{out}");
    assert!(value("block.0.rd.bytes") > 0 && value("block.0.wr.bytes") > 0, "{out}");
    assert_eq!(value("balloon.rss"), 64 << 10);
    assert!(out.contains("  block.0.name=vda\n") && out.contains("  net.0.name=net0\n"), "{out}");
    let (_, info, _) = vmctl(&state, &["dominfo", "st"]);
    assert!(info.contains("CPU time:") && info.contains("Used memory: 64 MiB"), "{info}");
    // The answers above were the baseline: the next sampler round (within 10 s) gives rates.
    let deadline = Instant::now() + Duration::from_secs(25);
    let rates = loop {
        let (_, json, _) = vmctl(&state, &["--json", "domstats", "st"]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        if !v["rates"].is_null() {
            break v["rates"].clone();
        }
        assert!(Instant::now() < deadline, "no rates sampled: {json}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // The fake vmm reads 1 MiB/s.
    let rd = rates["rd_bytes_per_s"].as_f64().unwrap();
    assert!(rd > 500_000.0 && rd < 2_000_000.0, "{rates}");
    let hour: serde_json::Value = d.client().get_json("/v1/vms/st/stats?history=hour").await.unwrap();
    assert_eq!(hour["interval"], 10);
    assert!(!hour["history"].as_array().unwrap().is_empty(), "{hour}");
    assert_eq!(vmctl(&state, &["destroy", "st"]).0, 0);
}
