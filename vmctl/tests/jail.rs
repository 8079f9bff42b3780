// SPDX-License-Identifier: Apache-2.0
//! The jailer (`vmctl::jail`) with a real program: a static busybox shell run in a jail reports
//! what it can see and do. Needs root (namespaces, mounts, uid change); skipped otherwise, and
//! without a static busybox.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use vmctl::jail::{spawn, Jail, Spawn};

const BUSYBOX: &str = "/bin/busybox";
const UID: u32 = 64_123;

fn usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: the jailer needs root");
    }
    let static_bb =
        std::process::Command::new("ldd").arg(BUSYBOX).output().map(|o| !o.status.success()).unwrap_or(false);
    if !static_bb {
        eprintln!("skipped: no static {BUSYBOX}");
    }
    root && static_bb
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vmctl-jail-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn jail(dir: &Path, run: &Path) -> Jail {
    Jail {
        uid: UID,
        gid: UID,
        root: dir.join("root"),
        hostname: "jailed-vm".into(),
        devices: vec![
            PathBuf::from("/dev/kvm"),
            PathBuf::from("/dev/net/tun"),
            PathBuf::from("/dev/no-such"),
        ],
        writable_dirs: vec![run.to_path_buf()],
        readonly_paths: vec![],
        rlimits: vec![(libc::RLIMIT_NOFILE as i32, 77), (libc::RLIMIT_CORE as i32, 0)],
        cgroup: None,
    }
}

async fn run_jailed(dir: &Path, j: &Jail, script: &str, fds: Vec<OwnedFd>) -> (i32, String) {
    std::fs::create_dir_all(&j.root).unwrap();
    let log_path = dir.join("log");
    let log = File::create(&log_path).unwrap();
    let args: Vec<OsString> = ["sh", "-c", script].iter().map(OsString::from).collect();
    let mut p = spawn(Spawn {
        program: Path::new(BUSYBOX),
        args: &args,
        env: Some(vec![("PATH".into(), "/exe-none".into())]),
        log,
        fds,
        jail: Some(j),
    })
    .expect("spawn");
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), p.wait()).await.unwrap().unwrap();
    (status.code().unwrap_or(-1), std::fs::read_to_string(&log_path).unwrap())
}

#[tokio::test]
async fn a_jailed_program_sees_only_its_jail() {
    if !usable() {
        return;
    }
    let dir = temp_dir("sees");
    let run = dir.join("run");
    std::fs::create_dir(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(UID), Some(UID)).unwrap();
    // A root-only file outside the jail, handed over as descriptor 3.
    let secret = dir.join("secret");
    let mut f = File::options().write(true).create_new(true).mode(0o600).open(&secret).unwrap();
    f.write_all(b"handed-over\n").unwrap();
    drop(f);
    let handed = File::open(&secret).unwrap();
    let j = jail(&dir, &run);
    let script = format!(
        "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); echo pid=$$; echo host=$(hostname); \
         echo nofile=$(ulimit -n) core=$(ulimit -c); echo root=$(ls / | tr '\\n' ' '); \
         echo dev=$(ls /dev | tr '\\n' ' '); \
         stat -c 'kvm=%u:%g:%a' /dev/kvm; \
         echo fd3=$(cat <&3); \
         echo daemon=$([ -e /proc/{me}/status ] && echo seen || echo hidden); echo maxpid=$(ls /proc | grep '^[0-9]' | sort -n | tail -n 1); \
         echo fds=$(ls /proc/self/fd | tr '\\n' ' '); \
         grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|SigBlk|SigIgn)' /proc/self/status | tr -s '\\t' ' '; \
         echo out > {run}/out && echo wrote-run; \
         (touch /new 2>/dev/null && echo wrote-root) || echo root-ro; \
         (cat {secret} 2>/dev/null && echo read-secret) || echo no-secret; \
         (cat /etc/shadow 2>/dev/null && echo read-shadow) || echo no-shadow",
        run = run.display(),
        secret = secret.display(),
        me = std::process::id(),
    );
    let (code, out) = run_jailed(&dir, &j, &script, vec![handed.into()]).await;
    println!("{out}");
    assert_eq!(code, 0, "{out}");
    for want in [
        &format!("uid={UID} gid={UID} groups={UID}"),
        "pid=1",
        "host=jailed-vm",
        "nofile=77 core=0",
        "fd3=handed-over",
        "CapEff: 0000000000000000",
        "CapPrm: 0000000000000000",
        "CapBnd: 0000000000000000",
        "NoNewPrivs: 1",
        "SigBlk: 0000000000000000",
        "wrote-run",
        "root-ro",
        "no-secret",
        "no-shadow",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // Only the jail's own entries in its root; only stdio and the handed descriptor open
    // (ls's own directory descriptor comes after them).
    let root_line = out.lines().find(|l| l.starts_with("root=")).unwrap();
    let mut entries: Vec<&str> = root_line["root=".len()..].split_whitespace().collect();
    entries.sort();
    for e in &entries {
        assert!(
            ["bin", "dev", "etc", "exe", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp", "usr"]
                .contains(e)
                || run.starts_with(format!("/{e}")),
            "unexpected /{e} in the jail: {root_line}"
        );
    }
    assert!(out.contains("fds=0 1 2 3 4"), "{out}");
    // Its /proc is its own pid namespace's: the shell and its few children, none of the host's.
    let maxpid: u32 = out.lines().find_map(|l| l.strip_prefix("maxpid=")).unwrap().trim().parse().unwrap();
    assert!(
        maxpid < 200 && out.contains("daemon=hidden"),
        "host processes visible in the jail's /proc: {out}"
    );
    let dev_line = out.lines().find(|l| l.starts_with("dev=")).unwrap();
    assert!(!dev_line.contains("no-such"), "{dev_line}");
    if Path::new("/dev/kvm").exists() {
        assert!(out.contains(&format!("kvm={UID}:{UID}:600")), "{out}");
    }
    assert_eq!(std::fs::read_to_string(run.join("out")).unwrap(), "out\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_failing_step_is_named() {
    if !usable() {
        return;
    }
    let dir = temp_dir("fails");
    let run = dir.join("run");
    std::fs::create_dir(&run).unwrap();
    let mut j = jail(&dir, &run);
    // A bind source that does not exist is left out; a root that is not a directory fails.
    j.root = dir.join("not-a-dir");
    File::create(&j.root).unwrap();
    std::fs::set_permissions(&j.root, std::fs::Permissions::from_mode(0o644)).unwrap();
    let args: Vec<OsString> = vec!["true".into()];
    let err = spawn(Spawn {
        program: Path::new(BUSYBOX),
        args: &args,
        env: None,
        log: File::create(dir.join("log")).unwrap(),
        fds: vec![],
        jail: Some(&j),
    })
    .unwrap_err();
    assert!(err.to_string().contains("mounting the root tmpfs"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unjailed_child_is_waited_for_and_killed() {
    let dir = temp_dir("plain");
    let args: Vec<OsString> = ["-c", "echo $$; exec sleep 30"].iter().map(OsString::from).collect();
    let mut p = spawn(Spawn {
        program: Path::new("/bin/sh"),
        args: &args,
        env: None,
        log: File::create(dir.join("log")).unwrap(),
        fds: vec![],
        jail: None,
    })
    .unwrap();
    assert!(p.try_wait().unwrap().is_none());
    p.start_kill().unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), p.wait()).await.unwrap().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let _ = std::fs::remove_dir_all(&dir);
}
