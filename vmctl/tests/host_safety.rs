// SPDX-License-Identifier: Apache-2.0
//! The attacks of issue 11 against `vmctld` as a process: each is refused at define (or at
//! the pool or volume operation), the error names the field, and nothing outside the state
//! directory and the pools changes. Also: a user outside the vmctl groups gets 403.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn fake_vmm() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join("fake_vmm")
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(state: &Path) -> Daemon {
    start_with_groups(state, None).unwrap()
}

/// Starts vmctld; with `group_file`, in a mount namespace of its own where that file is
/// bind-mounted over `/etc/group` (the host's stays as it is; needs root).
fn start_with_groups(state: &Path, group_file: Option<&Path>) -> std::io::Result<Daemon> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmctld"));
    cmd.arg("--state-dir")
        .arg(state)
        .arg("--vmm")
        .arg(fake_vmm())
        .stderr(std::fs::File::create(state.with_extension("daemon.log")).unwrap());
    if let Some(g) = group_file {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let src = CString::new(g.as_os_str().as_bytes()).unwrap();
        let dst = CString::new("/etc/group").unwrap();
        let root = CString::new("/").unwrap();
        // SAFETY: between fork and exec only unshare(2) and mount(2) run, on C strings made
        // before the fork; both are async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        std::ptr::null(),
                        root.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                    || libc::mount(
                        src.as_ptr(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let child = cmd.spawn()?;
    common::wait_for_socket(&state.join("vmctld.sock"));
    Ok(Daemon(child))
}

/// Runs vmctl (as `uid` if given, in the group of the same number); returns (exit code,
/// stdout, stderr).
fn vmctl_as(uid: Option<u32>, state: &Path, args: &[&str]) -> (i32, String, String) {
    vmctl_ids(uid.map(|u| (u, u)), state, args)
}

/// Runs vmctl as (uid, gid) if given (no supplementary groups); returns (exit code, stdout,
/// stderr).
fn vmctl_ids(ids: Option<(u32, u32)>, state: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vmctl"));
    cmd.arg("--state-dir").arg(state).args(args).stdin(Stdio::null()).env_remove("VMCTL_SOCKET");
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    let out = cmd.output().unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

fn vmctl(state: &Path, args: &[&str]) -> (i32, String, String) {
    vmctl_as(None, state, args)
}

/// Defines `json`; expects exit 2 with an error naming `field`.
fn refused(state: &Path, json: &str, field: &str) {
    let file = state.parent().unwrap().join("def.json");
    std::fs::write(&file, json).unwrap();
    let (code, out, err) = vmctl(state, &["define", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{json}: {out}{err}");
    assert!(err.contains(&format!("{field}:")), "{json}: the error does not name {field}: {err}");
}

/// Names and contents of every file under `dir` (not following symlinks).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            out.extend(snapshot(&p));
        } else if t.is_file() {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        } else {
            out.push((
                p.clone(),
                std::fs::read_link(&p).map(|l| l.into_os_string().into_encoded_bytes()).unwrap_or_default(),
            ));
        }
    }
    out.sort();
    out
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn attacks_are_refused_at_define_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host"); // stands for the rest of the host
    std::fs::create_dir_all(host.join("root/.ssh")).unwrap();
    std::fs::write(host.join("root/.ssh/authorized_keys"), "ssh-ed25519 AAAA admin\n").unwrap();
    std::fs::write(host.join("shadow"), "root:*:1:0:99999:7:::\n").unwrap();
    std::fs::write(host.join("vmlinuz"), "kernel").unwrap();
    std::fs::write(host.join("big.img"), vec![0u8; 4096]).unwrap();
    let state = dir.path().join("s");
    let _d = start(&state);
    let images = state.join("images");
    std::fs::write(images.join("ok.raw"), vec![0u8; 4096]).unwrap();
    std::os::unix::fs::symlink(host.join("shadow"), images.join("link.raw")).unwrap();
    std::os::unix::fs::symlink(&host, images.join("hostdir")).unwrap();
    let before = snapshot(&host);
    let ok = images.join("ok.raw");
    let ok = ok.to_str().unwrap();

    // The serial log named a root-owned authorized_keys.
    let keys = host.join("root/.ssh/authorized_keys");
    refused(
        &state,
        &format!(r#"{{"name":"a","memory_mib":64,"vcpus":1,"serial":{{"log":"{}"}}}}"#, keys.display()),
        "serial.log",
    );
    let escape = format!("{}/../../host/root/.ssh/authorized_keys", state.join("logs").display());
    refused(
        &state,
        &format!(r#"{{"name":"a","memory_mib":64,"vcpus":1,"serial":{{"log":"{escape}"}}}}"#),
        "serial.log",
    );
    // A disk naming any host file, a block device, or a symlink out of the pool.
    for (path, field) in [
        (host.join("shadow").display().to_string(), "disks[0].path"),
        ("/dev/null".to_string(), "disks[0].path"),
        (images.join("link.raw").display().to_string(), "disks[0].path"),
        (images.join("hostdir/big.img").display().to_string(), "disks[0].path"),
    ] {
        refused(
            &state,
            &format!(
                r#"{{"name":"a","memory_mib":64,"vcpus":1,"disks":[{{"path":"{path}","bus":"virtio"}}]}}"#
            ),
            field,
        );
    }
    // A kernel or initrd from outside the pools.
    let k = host.join("vmlinuz");
    refused(
        &state,
        &format!(
            r#"{{"name":"a","memory_mib":64,"vcpus":1,"os":{{"machine":"direct","kernel":"{}"}}}}"#,
            k.display()
        ),
        "os.kernel",
    );
    refused(
        &state,
        &format!(
            r#"{{"name":"a","memory_mib":64,"vcpus":1,"os":{{"machine":"direct","kernel":"{ok}","initrd":"{}"}}}}"#,
            k.display()
        ),
        "os.initrd",
    );
    // A bridge name that would end the nftables rule.
    refused(
        &state,
        r#"{"name":"a","memory_mib":64,"vcpus":1,"interfaces":[{"source":{"bridge":"br0\";accept"}}]}"#,
        "interfaces[0].source.bridge",
    );
    let net = dir.path().join("net.json");
    std::fs::write(&net, r#"{"name":"lan","bridge":"x\";accept","ipv4":"10.77.0.1/24"}"#).unwrap();
    let (code, _, err) = vmctl(&state, &["net", "define", net.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bridge:"), "{err}");
    // A VM name that reads as an option.
    let (code, _, err) = {
        let f = dir.path().join("dash.json");
        std::fs::write(&f, r#"{"name":"-rf","memory_mib":64,"vcpus":1}"#).unwrap();
        vmctl(&state, &["define", f.to_str().unwrap()])
    };
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("'-'"), "{err}");

    // What is in the pool is fine, and runs with the resolved path.
    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        format!(r#"{{"name":"good","memory_mib":64,"vcpus":1,"disks":[{{"path":"{ok}","bus":"virtio"}}]}}"#),
    )
    .unwrap();
    let (code, out, err) = vmctl(&state, &["define", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = vmctl(&state, &["list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("good") && !out.contains(" a "), "{out}");

    // Pools on system directories, outside the allowed roots, or in the state directory.
    for (path, want) in [
        ("/etc".to_string(), "system directory"),
        ("/".to_string(), "system directory"),
        ("/usr/lib".to_string(), "system directory"),
        (host.display().to_string(), "allowed pool root"),
        (state.join("vms").display().to_string(), "daemon's state"),
    ] {
        let (code, _, err) = vmctl(&state, &["pool", "define", "evil", &path]);
        assert_eq!(code, 2, "{path}: {err}");
        assert!(err.contains("path:") && err.contains(want), "{path}: {err}");
    }
    // A pool definition written by hand on such a directory is not used: vol delete and vol
    // resize cannot reach its files.
    std::fs::write(
        state.join("pools/evil.json"),
        format!(r#"{{"name":"evil","path":"{}"}}"#, host.display()),
    )
    .unwrap();
    let (code, _, err) = vmctl(&state, &["vol", "delete", "shadow", "--pool", "evil"]);
    assert_ne!(code, 0, "{err}");
    let (code, _, err) = vmctl(&state, &["vol", "resize", "big.img", "1G", "--pool", "evil"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("allowed pool root"), "{err}");
    let (code, _, err) = vmctl(&state, &["vol", "delete", "link.raw"]);
    assert_ne!(code, 0, "a symlink is not a volume: {err}");

    assert_eq!(snapshot(&host), before, "something outside the state directory changed");
}

#[test]
fn users_outside_the_groups_are_refused_and_audited() {
    if !root() {
        eprintln!("skipped: needs root to run vmctl as nobody");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("s");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _d = start(&state);
    let mode = std::fs::metadata(state.join("vmctld.sock")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "the socket is open to all; the peer's credentials decide");
    // 65534 is nobody: in neither vmctl group on a test host.
    let (code, out, err) = vmctl_as(Some(65534), &state, &["list"]);
    assert_eq!(code, 5, "{out}{err}");
    assert!(err.contains("(uid 65534) may not use vmctld"), "{err}");
    let (code, _, err) = vmctl_as(Some(65534), &state, &["--json", "vol", "create", "x.raw", "1M"]);
    assert_eq!(code, 5, "{err}");
    let e: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert!(e["error"].as_str().unwrap().ends_with('.'), "{e}");
    assert!(!state.join("images/x.raw").exists());
    // Root may.
    let (code, out, err) = vmctl(&state, &["vol", "create", "x.raw", "1M"]);
    assert_eq!(code, 0, "{out}{err}");
    let audit = std::fs::read_to_string(state.join("audit.log")).unwrap();
    let lines: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        lines.iter().any(|l| l["uid"] == 65534 && l["method"] == "POST" && l["status"] == 403),
        "{audit}"
    );
    assert!(
        lines.iter().any(|l| l["uid"] == 0 && l["path"] == "/v1/pools/default/volumes" && l["status"] == 201),
        "{audit}"
    );
    let mode = std::fs::metadata(state.join("audit.log")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn the_groups_vmctl_and_vmctl_admin_get_their_roles() {
    if !root() {
        eprintln!("skipped: needs root (a mount namespace with its own /etc/group, setuid)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let groups = dir.path().join("group");
    std::fs::write(&groups, "root:x:0:\nvmctl:x:4242:\nvmctl-admin:x:4243:\n").unwrap();
    let state = dir.path().join("s");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _d = match start_with_groups(&state, Some(&groups)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipped: no mount namespace for vmctld here: {e}");
            return;
        }
    };
    let def = dir.path().join("v.json");
    std::fs::write(&def, r#"{"name":"v","memory_mib":64,"vcpus":1}"#).unwrap();
    std::fs::set_permissions(&def, std::fs::Permissions::from_mode(0o644)).unwrap();
    let def = def.to_str().unwrap();
    let (operator, admin, other) = (Some((65534, 4242)), Some((65534, 4243)), Some((65534, 65534)));

    // The operator may read, but not define.
    let (code, out, err) = vmctl_ids(operator, &state, &["list"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = vmctl_ids(operator, &state, &["define", def]);
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("is in the group vmctl") && err.contains("vmctl-admin"), "{err}");
    // The admin may define; the operator may start and destroy it, not reset or undefine it.
    let (code, out, err) = vmctl_ids(admin, &state, &["define", def]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = vmctl_ids(operator, &state, &["start", "v"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(vmctl_ids(operator, &state, &["reset", "v"]).0, 5);
    assert_eq!(vmctl_ids(operator, &state, &["vol", "create", "x.raw", "1M"]).0, 5);
    let (code, out, err) = vmctl_ids(operator, &state, &["destroy", "v"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(vmctl_ids(operator, &state, &["undefine", "v"]).0, 5);
    assert_eq!(vmctl_ids(other, &state, &["list"]).0, 5);
    let (code, out, err) = vmctl_ids(admin, &state, &["undefine", "v"]);
    assert_eq!(code, 0, "{out}{err}");
    // The host's /etc/group was not touched.
    assert!(!std::fs::read_to_string("/etc/group").unwrap().contains(":4242:"));
}

#[test]
fn a_vmm_log_is_capped_and_rotated_as_configured() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("vmctld.json"), r#"{"vmm_log_max_bytes": 4096, "vmm_log_keep": 2}"#).unwrap();
    let _d = start(&state);
    let def = dir.path().join("chatty.json");
    // 78 MiB makes the fake VMM write about 21 KiB to its log at once.
    std::fs::write(&def, r#"{"name":"chatty","memory_mib":78,"vcpus":1}"#).unwrap();
    let (code, out, err) = vmctl(&state, &["define", def.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = vmctl(&state, &["start", "chatty"]);
    assert_eq!(code, 0, "{out}{err}");
    let log = state.join("logs/chatty.vmm.log");
    let rotated = state.join("logs/chatty.vmm.log.1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !rotated.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the log was not rotated: {:?} bytes; daemon log: {}",
            std::fs::metadata(&log).map(|m| m.len()),
            std::fs::read_to_string(state.with_extension("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(std::fs::metadata(&rotated).unwrap().len() > 20_000);
    assert!(std::fs::metadata(&log).unwrap().len() <= 4096, "the log is capped");
    vmctl(&state, &["destroy", "chatty"]);
}

#[test]
fn definitions_stored_before_the_rules_do_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("authorized_keys");
    std::fs::write(&keys, "ssh-ed25519 AAAA admin\n").unwrap();
    let state = dir.path().join("s");
    std::fs::create_dir_all(state.join("vms")).unwrap();
    std::fs::create_dir_all(state.join("networks")).unwrap();
    std::fs::write(
        state.join("vms/old.json"),
        r#"{"name":"old","uuid":"7f3c1a52-9d4e-4b6a-8e0f-0de70de70009","memory_mib":64,"vcpus":1,
            "interfaces":[{"source":{"bridge":"br0\";accept"},"mac":"52:54:00:00:00:09"}]}"#,
    )
    .unwrap();
    std::fs::write(
        state.join("vms/log.json"),
        format!(
            r#"{{"name":"log","uuid":"7f3c1a52-9d4e-4b6a-8e0f-0de70de7000a","memory_mib":64,"vcpus":1,
                "serial":{{"log":"{}"}}}}"#,
            keys.display()
        ),
    )
    .unwrap();
    std::fs::write(
        state.join("networks/evil.json"),
        r#"{"name":"evil","bridge":"x\";accept","ipv4":"10.79.0.1/24"}"#,
    )
    .unwrap();
    let _d = start(&state);
    let (code, out, err) = vmctl(&state, &["list"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("old") && out.contains("log"), "{out}");
    let (code, _, err) = vmctl(&state, &["start", "old"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("interfaces[0].source.bridge:"), "{err}");
    let (code, _, err) = vmctl(&state, &["start", "log"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("serial.log:"), "{err}");
    let (code, out, _) = vmctl(&state, &["net", "list"]);
    assert_eq!(code, 0);
    assert!(!out.contains("evil"), "a stored network with a bad bridge name is not used: {out}");
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), "ssh-ed25519 AAAA admin\n");
}
