// SPDX-License-Identifier: Apache-2.0
//! Host safety: the daemon's configuration file and the path policy of definitions.
//!
//! - [`Settings`]: `<state>/vmctld.json` (or `vmctld --config FILE`): where pools may be
//!   (`pool_roots`), how much of each VMM's log is kept, the jailer, the HTTPS listener. Read once at start, a regular
//!   file of at most [`SETTINGS_MAX_BYTES`], never through a symlink.
//! - The path policy: disk images, CD-ROM images, kernels and initramfs files come only from
//!   storage pools, and are opened beneath their pool without following a symlink out of it
//!   ([`crate::safefs::open_beneath`]); a console log is a plain file name in the state
//!   directory's `logs/`. [`Daemon::check_paths`] runs at define (every violation a problem
//!   naming its field) and again at start, where [`Daemon::resolve_paths`] gives `vmm` the
//!   paths the kernel resolved (so a symlink swapped in later is not followed either).
//!   At start, [`super::chain`] then follows every qcow2 disk's backing chain under the same
//!   rule: each backing file must lie in some pool and is opened beneath it.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use vmdef::model::Os;
use vmdef::validate::{Problem, ProblemKind};
use vmdef::VmDef;

use super::Daemon;
use crate::pool::Pool;

/// Largest configuration file accepted.
pub const SETTINGS_MAX_BYTES: u64 = 64 * 1024;
/// Default cap of a VMM's log before it is rotated (8 MiB).
pub const DEFAULT_VMM_LOG_MAX_BYTES: u64 = 8 << 20;
/// Default number of rotated VMM logs kept (`.1` to `.3`).
pub const DEFAULT_VMM_LOG_KEEP: u32 = 3;
/// The pool root every daemon allows besides its `images/`.
pub const DEFAULT_POOL_ROOT: &str = "/var/lib/rvmm";

/// The configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    pool_roots: Option<Vec<PathBuf>>,
    vmm_log_max_bytes: Option<u64>,
    vmm_log_keep: Option<u32>,
    jail: Option<JailFile>,
    https: Option<super::https::HttpsFile>,
}

/// `"jail"` of the configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JailFile {
    enabled: Option<bool>,
    uid_base: Option<u32>,
    uid_count: Option<u32>,
    cgroup_parent: Option<PathBuf>,
}

/// The daemon's configuration file (`vmctld.json`), with defaults for what it leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Directories under which pools may be defined (absolute). Default: the state
    /// directory's `images/` and `/var/lib/rvmm`.
    pub pool_roots: Vec<PathBuf>,
    /// A VMM's log is rotated when it grows past this many bytes (at least 4096).
    pub vmm_log_max_bytes: u64,
    /// Rotated VMM logs kept (`<name>.vmm.log.1` ...), 0 to 20.
    pub vmm_log_keep: u32,
    /// The jailer (`"jail": {"enabled", "uid_base", "uid_count", "cgroup_parent"}`).
    pub jail: super::jailing::JailSettings,
    /// The HTTPS listener (`"https": {"listen", "cert", "key"}`); `None`: off.
    pub https: Option<super::https::HttpsSettings>,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// It could not be read (or is a symlink, not a regular file, or too large).
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its content is wrong; the message names the field.
    #[error("the configuration file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Settings {
    /// The defaults for `state_dir`.
    pub fn defaults(state_dir: &Path) -> Settings {
        Settings {
            pool_roots: vec![state_dir.join("images"), PathBuf::from(DEFAULT_POOL_ROOT)],
            vmm_log_max_bytes: DEFAULT_VMM_LOG_MAX_BYTES,
            vmm_log_keep: DEFAULT_VMM_LOG_KEEP,
            jail: super::jailing::JailSettings::defaults(),
            https: None,
        }
    }

    /// Reads `path` if it exists (defaults otherwise).
    pub fn load(path: &Path, state_dir: &Path) -> Result<Settings, SettingsError> {
        let bytes = crate::safefs::read_small_file(path, SETTINGS_MAX_BYTES)
            .map_err(|source| SettingsError::Read { path: path.to_path_buf(), source })?;
        match bytes {
            None => Ok(Settings::defaults(state_dir)),
            Some(b) => Settings::parse(&b, state_dir)
                .map_err(|message| SettingsError::Invalid { path: path.to_path_buf(), message }),
        }
    }

    /// Parses the text of a configuration file; the error names the field.
    pub fn parse(bytes: &[u8], state_dir: &Path) -> Result<Settings, String> {
        let f: SettingsFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let mut s = Settings::defaults(state_dir);
        if let Some(roots) = f.pool_roots {
            for (i, r) in roots.iter().enumerate() {
                if crate::safefs::lexical_abs(r).is_none() {
                    return Err(format!(
                        "pool_roots[{i}]: {} is not an absolute path without `..`",
                        r.display()
                    ));
                }
            }
            s.pool_roots = roots;
        }
        if let Some(n) = f.vmm_log_max_bytes {
            if n < 4096 {
                return Err(format!("vmm_log_max_bytes: {n} is less than 4096"));
            }
            s.vmm_log_max_bytes = n;
        }
        if let Some(n) = f.vmm_log_keep {
            if n > 20 {
                return Err(format!("vmm_log_keep: {n} is more than 20"));
            }
            s.vmm_log_keep = n;
        }
        if let Some(j) = f.jail {
            if let Some(e) = j.enabled {
                // SAFETY: geteuid has no preconditions.
                if e && unsafe { libc::geteuid() } != 0 {
                    return Err(
                        "jail.enabled: the jailer needs root; run vmctld as root or set it to false".into()
                    );
                }
                s.jail.enabled = e;
            }
            if let Some(b) = j.uid_base {
                if b < 1000 {
                    return Err(format!(
                        "jail.uid_base: {b} is below 1000, among system users; choose an unused range"
                    ));
                }
                s.jail.uid_base = b;
            }
            if let Some(n) = j.uid_count {
                if n == 0 || s.jail.uid_base.checked_add(n).is_none_or(|end| end > u32::MAX - 1) {
                    return Err(format!(
                        "jail.uid_count: {n} must be at least 1 and end below uid 4294967295"
                    ));
                }
                s.jail.uid_count = n;
            }
            if let Some(c) = j.cgroup_parent {
                if crate::safefs::lexical_abs(&c).is_none() || !c.starts_with("/sys/fs/cgroup/") {
                    return Err(format!(
                        "jail.cgroup_parent: {} is not a directory under /sys/fs/cgroup/ without `..`",
                        c.display()
                    ));
                }
                s.jail.cgroup_parent = c;
            }
        }
        if let Some(h) = f.https {
            s.https = Some(super::https::HttpsSettings::parse(h)?);
        }
        Ok(s)
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem { kind: ProblemKind::Invalid, field: field.into(), message: message.into() }
}

/// Resolves `path` to a regular file inside one of `pools` (or, if `block_ok`, a block device
/// node the administrator put into a pool, such as an LVM volume: API users cannot make
/// device nodes): its directory (canonical) must be a pool's directory or below it, and the
/// file is opened beneath that pool without leaving it. Returns the path the kernel
/// resolved; the error says why not.
pub fn resolve_in_pools(pools: &[Pool], path: &Path, block_ok: bool) -> Result<PathBuf, String> {
    let lex = crate::safefs::lexical_abs(path)
        .ok_or_else(|| format!("{} is not an absolute path without `..`", path.display()))?;
    let not_in_pool = || {
        let dirs: Vec<String> = pools.iter().map(|p| p.dir().display().to_string()).collect();
        format!(
            "{} is not in a storage pool; put the file into a pool ({}) and name it there (vmctl vol path)",
            path.display(),
            dirs.join(", ")
        )
    };
    let (Some(parent), Some(file)) = (lex.parent(), lex.file_name()) else { return Err(not_in_pool()) };
    let parent = std::fs::canonicalize(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let pool = pools
        .iter()
        .filter(|p| parent.starts_with(p.dir()))
        .max_by_key(|p| p.dir().as_os_str().len())
        .ok_or_else(not_in_pool)?;
    let rel = parent.strip_prefix(pool.dir()).map_err(|_| not_in_pool())?.join(file);
    let dir = crate::safefs::open_dir(pool.dir()).map_err(|e| format!("pool {}: {e}", pool.name()))?;
    let f = crate::safefs::open_beneath(&dir, &rel, libc::O_PATH).map_err(|e| match e.raw_os_error() {
        Some(libc::EXDEV | libc::ELOOP) => format!(
            "{} leads out of the pool {} through a symlink; name the file itself",
            path.display(),
            pool.name()
        ),
        _ => format!("{}: {e}", path.display()),
    })?;
    let meta = f.metadata().map_err(|e| format!("{}: {e}", path.display()))?;
    let block = block_ok && std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type());
    if !meta.is_file() && !block {
        return Err(format!(
            "{} is not a regular file{} (directories, character devices and FIFOs cannot be pool volumes)",
            path.display(),
            if block_ok { " or block device" } else { "" }
        ));
    }
    crate::safefs::fd_path(&f).map_err(|e| format!("{}: {e}", path.display()))
}

/// Checks a console log path: a file directly in `logs` (the state directory's `logs/`,
/// given as written and canonical) with a name of `[A-Za-z0-9_.-]` not ending in `.vmm.log`.
pub fn check_log_path(logs: &[PathBuf], path: &Path) -> Result<(), String> {
    let wrong = || {
        format!(
            "{} is outside the daemon's log directory; console logs live in {} (or leave serial.log out)",
            path.display(),
            logs.first().map(|l| l.display().to_string()).unwrap_or_default()
        )
    };
    let lex = crate::safefs::lexical_abs(path).ok_or_else(wrong)?;
    let (Some(parent), Some(name)) = (lex.parent(), lex.file_name().and_then(|n| n.to_str())) else {
        return Err(wrong());
    };
    if !logs.iter().any(|l| l == parent) {
        return Err(wrong());
    }
    crate::pool::check_name("the log's file name", name, crate::pool::MAX_VOLUME_NAME)
        .map_err(|e| e.to_string())?;
    if name.ends_with(".vmm.log") || name.contains(".vmm.log.") {
        return Err(format!("{name} is the name of a VMM's own log; pick another"));
    }
    Ok(())
}

impl Daemon {
    /// The state directory's `logs/`, as configured and canonical.
    fn log_dirs(&self) -> Vec<PathBuf> {
        let logs = self.store.log_dir();
        let mut v = vec![logs.clone()];
        if let Ok(c) = std::fs::canonicalize(&logs) {
            if c != logs {
                v.push(c);
            }
        }
        v
    }

    /// Every violation of the path policy in `def`, each naming its field.
    pub fn check_paths(&self, def: &VmDef) -> Vec<Problem> {
        match self.resolve_paths(def) {
            Ok(_) => Vec::new(),
            Err(p) => p,
        }
    }

    /// `def` with every file path resolved inside its pool, or every violation.
    pub fn resolve_paths(&self, def: &VmDef) -> Result<VmDef, Vec<Problem>> {
        let pools =
            self.pools.list().map_err(|e| vec![invalid("disks", format!("cannot list pools: {e}"))])?;
        let mut out = def.clone();
        let mut problems = Vec::new();
        let mut resolve =
            |field: String, p: &mut PathBuf, block_ok: bool| match resolve_in_pools(&pools, p, block_ok) {
                Ok(r) => *p = r,
                Err(m) => problems.push(invalid(field, m)),
            };
        for (i, d) in out.disks.iter_mut().enumerate() {
            if let Some(p) = d.path.as_mut() {
                resolve(format!("disks[{i}].path"), p, true);
            }
        }
        if let Os::Direct { kernel, initrd, .. } = &mut out.os {
            resolve("os.kernel".into(), kernel, false);
            if let Some(i) = initrd.as_mut() {
                resolve("os.initrd".into(), i, false);
            }
        }
        if let Some(log) = out.serial.as_ref().and_then(|s| s.log.as_ref()) {
            if let Err(m) = check_log_path(&self.log_dirs(), log) {
                problems.push(invalid("serial.log", m));
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }

    /// Whether `def`'s own console log path passes the policy (a definition stored before
    /// it may not): otherwise the default log is used.
    pub(crate) fn log_path_allowed(&self, log: &Path) -> bool {
        check_log_path(&self.log_dirs(), log).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_defaults_and_fields() {
        let st = Path::new("/s");
        let d = Settings::parse(b"{}", st).unwrap();
        assert_eq!(d, Settings::defaults(st));
        assert_eq!(d.pool_roots, [PathBuf::from("/s/images"), PathBuf::from("/var/lib/rvmm")]);
        let s = Settings::parse(
            br#"{"pool_roots": ["/srv/vm"], "vmm_log_max_bytes": 65536, "vmm_log_keep": 1}"#,
            st,
        )
        .unwrap();
        assert_eq!((s.pool_roots.len(), s.vmm_log_max_bytes, s.vmm_log_keep), (1, 65536, 1));
        for (bad, field) in [
            (r#"{"pool_roots": ["srv"]}"#, "pool_roots[0]"),
            (r#"{"pool_roots": ["/a/../etc"]}"#, "pool_roots[0]"),
            (r#"{"vmm_log_max_bytes": 10}"#, "vmm_log_max_bytes"),
            (r#"{"vmm_log_keep": 99}"#, "vmm_log_keep"),
            (r#"{"pool_root": []}"#, "pool_root"),
        ] {
            let e = Settings::parse(bad.as_bytes(), st).unwrap_err();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }

    #[test]
    fn settings_file_must_be_small_and_regular() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("vmctld.json");
        assert_eq!(Settings::load(&f, t.path()).unwrap(), Settings::defaults(t.path()));
        std::fs::write(&f, vec![b' '; SETTINGS_MAX_BYTES as usize + 1]).unwrap();
        assert!(Settings::load(&f, t.path()).unwrap_err().to_string().contains("larger"));
        std::fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &f).unwrap();
        assert!(Settings::load(&f, t.path()).is_err());
    }

    #[test]
    fn paths_resolve_only_inside_pools() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("pool");
        std::fs::create_dir_all(dir.join("kernels")).unwrap();
        std::fs::write(dir.join("a.raw"), b"").unwrap();
        std::fs::write(dir.join("kernels/vmlinuz"), b"").unwrap();
        std::fs::write(t.path().join("outside"), b"").unwrap();
        std::os::unix::fs::symlink(t.path().join("outside"), dir.join("escape")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("etc")).unwrap();
        let pool = Pool::open("p", &dir).unwrap();
        let pools = [pool.clone()];
        let canon = pool.dir().to_path_buf();
        assert_eq!(resolve_in_pools(&pools, &dir.join("a.raw"), false).unwrap(), canon.join("a.raw"));
        assert_eq!(
            resolve_in_pools(&pools, &dir.join("kernels/vmlinuz"), false).unwrap(),
            canon.join("kernels/vmlinuz")
        );
        let e = resolve_in_pools(&pools, &t.path().join("outside"), false).unwrap_err();
        assert!(e.contains("not in a storage pool"), "{e}");
        let e = resolve_in_pools(&pools, &dir.join("escape"), false).unwrap_err();
        assert!(e.contains("symlink"), "{e}");
        let e = resolve_in_pools(&pools, &dir.join("etc/passwd"), false).unwrap_err();
        assert!(e.contains("not in a storage pool"), "{e}");
        let e = resolve_in_pools(&pools, &dir.join("kernels"), false).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        for bad in ["/dev/sda", "/etc/shadow", "relative.img"] {
            assert!(resolve_in_pools(&pools, Path::new(bad), false).is_err(), "{bad}");
        }
        let e = resolve_in_pools(&pools, &dir.join("../outside"), false).unwrap_err();
        assert!(e.contains("`..`"), "{e}");
    }

    #[test]
    fn block_device_nodes_an_administrator_put_into_a_pool_may_be_disks_only() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // mknod of a block device needs root
        }
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("pool");
        std::fs::create_dir(&dir).unwrap();
        let pools = [Pool::open("p", &dir).unwrap()];
        let node = dir.join("lv0");
        let c = std::ffi::CString::new(node.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mknod with a valid path; a block device node of the loop driver (7, 0).
        assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(7, 0)) }, 0);
        let canon = std::fs::canonicalize(&dir).unwrap();
        assert_eq!(resolve_in_pools(&pools, &node, true).unwrap(), canon.join("lv0"));
        let e = resolve_in_pools(&pools, &node, false).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = resolve_in_pools(&pools, &fifo, true).unwrap_err();
        assert!(e.contains("not a regular file or block device"), "{e}");
    }

    #[test]
    fn console_logs_stay_in_the_log_directory() {
        let logs = [PathBuf::from("/s/logs")];
        assert!(check_log_path(&logs, Path::new("/s/logs/web-console.log")).is_ok());
        for bad in [
            "/root/.ssh/authorized_keys",
            "/s/logs/../vms/web.json",
            "/s/logs/sub/x.log",
            "/s/logs/.hidden",
            "/s/logs/web.vmm.log",
            "/s/logs/web.vmm.log.1",
            "logs/x.log",
        ] {
            assert!(check_log_path(&logs, Path::new(bad)).is_err(), "{bad}");
        }
    }
}
