// SPDX-License-Identifier: Apache-2.0
//! VNC through `vmctld` as processes, with the fake vmm (which serves VNC with the real
//! server of the `vmm` crate): a VM without a VNC password gets a unix socket and no TCP
//! port, reached with `vmctl vnc`; one with a password listens on TCP and checks it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{start_vmctld, vmctl, KilledOnDrop};

fn define_xml(state: &Path, name: &str, graphics: &str) -> (i32, String, String) {
    let xml = format!(
        "<domain type='kvm'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
         <os><type>hvm</type></os><devices>{graphics}</devices></domain>"
    );
    let file = state.join(format!("{name}.xml"));
    std::fs::write(&file, xml).unwrap();
    vmctl(state, &["define", file.to_str().unwrap()])
}

fn info(state: &Path, name: &str) -> serde_json::Value {
    let (code, out, err) = vmctl(state, &["info", name, "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// The RFB 3.8 handshake up to ServerInit, with VNC Authentication when `password` is
/// given: the desktop name, or the server's failure reason.
fn handshake(s: &mut TcpStream, password: Option<&[u8]>) -> Result<String, String> {
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut v = [0u8; 12];
    s.read_exact(&mut v).unwrap();
    assert_eq!(&v, b"RFB 003.008\n");
    s.write_all(b"RFB 003.008\n").unwrap();
    let mut n = [0u8; 1];
    s.read_exact(&mut n).unwrap();
    let mut types = vec![0u8; usize::from(n[0])];
    s.read_exact(&mut types).unwrap();
    match password {
        None => {
            assert_eq!(types, [1], "security type None alone");
            s.write_all(&[1]).unwrap();
        }
        Some(pw) => {
            assert_eq!(types, [2], "VNC Authentication alone");
            s.write_all(&[2]).unwrap();
            let mut challenge = [0u8; 16];
            s.read_exact(&mut challenge).unwrap();
            s.write_all(&vmm::vnc::auth::response(pw, &challenge)).unwrap();
        }
    }
    let mut result = [0u8; 4];
    s.read_exact(&mut result).unwrap();
    if result != [0; 4] {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut reason = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut reason).unwrap();
        return Err(String::from_utf8_lossy(&reason).into_owned());
    }
    s.write_all(&[1]).unwrap();
    let mut init = [0u8; 24];
    s.read_exact(&mut init).unwrap();
    let mut name = vec![0u8; u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize];
    s.read_exact(&mut name).unwrap();
    Ok(String::from_utf8_lossy(&name).into_owned())
}

/// `vmctl vnc NAME --listen 127.0.0.1:0` and the port it prints.
fn vmctl_vnc(state: &Path, name: &str) -> (KilledOnDrop, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmctl"))
        .arg("--state-dir")
        .arg(state)
        .args(["vnc", name, "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    // The rest of stdout is left unread in the pipe (vmctl must not die of a closed one).
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    drop(out);
    let port = line
        .trim()
        .strip_prefix("vnc://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("vmctl vnc printed {line:?}"));
    (KilledOnDrop(child), port)
}

/// Inodes of the TCP sockets in the listening state (`/proc/net/tcp{,6}`).
fn tcp_listeners() -> Vec<String> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.get(3) == Some(&"0A") {
                out.push(f[9].to_string());
            }
        }
    }
    out
}

/// Socket inodes the process `pid` holds.
fn sockets_of(pid: u64) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(String::from))
        .collect()
}

fn wait_exit(child: &mut Child, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// libvirt's stock `<graphics type='vnc' port='-1' autoport='yes'/>` defines (with a
/// warning), runs on a unix socket in the VM's run directory with no TCP port open, and
/// `vmctl vnc` forwards a viewer's RFB handshake to it until the VM stops.
#[test]
fn vnc_without_password_is_a_unix_socket_reached_with_vmctl_vnc() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, state) = start_vmctld(dir.path());
    let (code, out, err) = define_xml(&state, "p", "<graphics type='vnc' port='-1' autoport='yes'/>");
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("unix socket") && err.contains("vmctl vnc"), "the warning: {err}");
    let (code, _, err) = vmctl(&state, &["start", "p"]);
    assert_eq!(code, 0, "{err}");
    let i = info(&state, "p");
    assert!(i["info"]["vnc"].is_null(), "{i}");
    let sock = Path::new(i["info"]["vnc_socket"].as_str().unwrap()).to_path_buf();
    assert!(sock.ends_with("run/vm/p/vnc.sock"), "{}", sock.display());
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&sock).unwrap().file_type().is_socket());
    // The vmm listens on no TCP port.
    let pid = i["info"]["pid"].as_u64().unwrap();
    let listening = tcp_listeners();
    assert!(!sockets_of(pid).iter().any(|s| listening.contains(s)), "the vmm listens on TCP");
    let (code, out, _) = vmctl(&state, &["domdisplay", "p"]);
    assert_eq!((code, out.trim()), (0, format!("vnc+unix://{}", sock.display()).as_str()));
    let (code, _, err) = vmctl(&state, &["vncdisplay", "p"]);
    assert!(code != 0 && err.contains("vmctl vnc p"), "{err}");
    let (_, xml, _) = vmctl(&state, &["dumpxml", "p"]);
    assert!(xml.contains("<graphics type='vnc'/>"), "{xml}");

    // A viewer on the forwarded port gets the VM's server, twice (one connection each).
    let (mut fwd, port) = vmctl_vnc(&state, "p");
    for _ in 0..2 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert_eq!(handshake(&mut s, None).as_deref(), Ok("fake-vmm"));
    }
    // Another local user's connection is closed at once (as root the test can be nobody).
    if nix_is_root() {
        let out = Command::new("bash")
            .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; timeout 3 head -c 12 <&3")])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert!(out.stdout.is_empty(), "nobody got {:?}", String::from_utf8_lossy(&out.stdout));
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert_eq!(handshake(&mut s, None).as_deref(), Ok("fake-vmm"), "root still gets in");
    }
    // It ends when the VM stops.
    assert_eq!(vmctl(&state, &["destroy", "p"]).0, 0);
    assert!(wait_exit(&mut fwd.0, Duration::from_secs(10)), "vmctl vnc still runs after the VM stopped");
    let mut err = String::new();
    fwd.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains("p stopped"), "{err}");
    if nix_is_root() {
        assert!(
            err.contains("refused a connection from 127.0.0.1:") && err.contains("another user"),
            "{err}"
        );
    }
    let (code, _, err) = vmctl(&state, &["vnc", "p"]);
    assert!(code != 0 && err.contains("not running"), "{err}");
}

/// A VNC password: TCP on loopback, wrong password refused with the reason, the right one
/// accepted, directly and through `vmctl vnc`; the password is in the vmm's config file but
/// not its arguments, and shown only with --security-info.
#[test]
fn vnc_with_password_listens_on_tcp_and_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, state) = start_vmctld(dir.path());
    let (code, out, err) = define_xml(&state, "s", "<graphics type='vnc' passwd='secret'/>");
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("unix socket"), "{err}");
    let (code, _, err) = vmctl(&state, &["start", "s"]);
    assert_eq!(code, 0, "{err}");
    let i = info(&state, "s");
    assert!(i["info"]["vnc_socket"].is_null(), "{i}");
    assert!(!i.to_string().contains("secret"), "info shows the password: {i}");
    let addr: SocketAddr = i["info"]["vnc"].as_str().unwrap().parse().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() >= 5900, "{addr}");
    let pid = i["info"]["pid"].as_u64().unwrap();
    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&argv).contains("secret"), "the password is on the vmm's argv");
    let config = std::fs::read_to_string(state.join("run/vm/s/config.json")).unwrap();
    assert!(config.contains(r#""vnc_password": "secret""#), "{config}");

    let start = Instant::now();
    let reason = handshake(&mut TcpStream::connect(addr).unwrap(), Some(b"guess")).unwrap_err();
    assert!(reason.contains("wrong password"), "{reason}");
    eprintln!("a wrong password was answered after {:?}", start.elapsed());
    assert!(start.elapsed() >= Duration::from_millis(900), "no delay after a wrong password");
    assert_eq!(handshake(&mut TcpStream::connect(addr).unwrap(), Some(b"secret")).as_deref(), Ok("fake-vmm"));
    // Security type None is not offered.
    let mut s = TcpStream::connect(addr).unwrap();
    let mut v = [0u8; 12];
    s.read_exact(&mut v).unwrap();
    s.write_all(b"RFB 003.008\n").unwrap();
    let mut types = [0u8; 2];
    s.read_exact(&mut types).unwrap();
    assert_eq!(types, [1, 2]);

    // Through vmctld as well: the viewer and the VM's server talk end to end.
    let (_fwd, port) = vmctl_vnc(&state, "s");
    let reason =
        handshake(&mut TcpStream::connect(("127.0.0.1", port)).unwrap(), Some(b"Secret")).unwrap_err();
    assert!(reason.contains("wrong password"), "{reason}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert_eq!(handshake(&mut s, Some(b"secret")).as_deref(), Ok("fake-vmm"));

    // The password only with --security-info.
    let (_, xml, _) = vmctl(&state, &["dumpxml", "s"]);
    assert!(!xml.contains("passwd") && !xml.contains("secret"), "{xml}");
    let (_, xml, _) = vmctl(&state, &["dumpxml", "s", "--security-info"]);
    assert!(xml.contains("passwd='secret'"), "{xml}");
    let (_, json, _) = vmctl(&state, &["dumpjson", "s"]);
    assert!(!json.contains("secret"), "{json}");
    let (code, out, _) = vmctl(&state, &["domdisplay", "s"]);
    assert_eq!((code, out.trim()), (0, format!("vnc://127.0.0.1:{}", addr.port() - 5900).as_str()));
    assert_eq!(vmctl(&state, &["destroy", "s"]).0, 0);
}

/// An address others can reach without a password is refused at define, naming the field
/// and the fix; a password longer than 8 characters too.
#[test]
fn vnc_definitions_that_would_expose_the_screen_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, state) = start_vmctld(dir.path());
    let (code, _, err) = define_xml(&state, "o", "<graphics type='vnc' listen='0.0.0.0'/>");
    assert_ne!(code, 0);
    assert!(
        err.contains("graphics.vnc.listen") && err.contains("password") && err.contains("vmctl vnc"),
        "{err}"
    );
    let (code, _, err) = define_xml(&state, "o", "<graphics type='vnc' passwd='123456789'/>");
    assert_ne!(code, 0);
    assert!(err.contains("graphics.vnc.password") && err.contains("1 to 8"), "{err}");
    let (code, _, err) = define_xml(&state, "o", "<graphics type='vnc' listen='0.0.0.0' passwd='12345678'/>");
    assert_eq!(code, 0, "{err}");
    // A JSON port without a password is not used: a warning says so.
    let file = state.join("j.json");
    std::fs::write(&file, r#"{"name":"j","memory_mib":64,"vcpus":1,"graphics":{"vnc":{"port":5901}}}"#)
        .unwrap();
    let (code, _, err) = vmctl(&state, &["define", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("graphics.vnc.port 5901 is not used") && err.contains("vmctl vnc j"), "{err}");
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
