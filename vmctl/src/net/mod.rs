// SPDX-License-Identifier: Apache-2.0
//! Managed networks on the host (`vmctl net`): their store, and the bridge, nftables table
//! and dnsmasq that make a started one (see `docs/vmctl.md`, "Networks").
//!
//! - [`config`]: what a started network looks like, computed without touching the host.
//! - [`host`]: `ip`, `nft` and `dnsmasq` commands that build and remove it.
//! - [`NetStore`]: `networks/<name>.json` (definitions) and `netrun/` (whether a network was
//!   started, dnsmasq's pid, lease and log files), every write atomic.

pub mod config;
pub mod host;

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vmdef::network::{check_net_name, NetDef};
use vmdef::store::{remove_durable, write_atomic};

use config::NetPaths;

/// Runtime state of a network, `netrun/<name>.json`: present while it is started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetRuntime {
    /// dnsmasq's pid when last seen.
    pub dnsmasq_pid: Option<u32>,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum NetStoreError {
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// A stored file does not parse.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> NetStoreError + '_ {
    move |source| NetStoreError::Io { path: path.to_path_buf(), source }
}

/// The networks' files in a state directory.
#[derive(Debug, Clone)]
pub struct NetStore {
    defs: PathBuf,
    run: PathBuf,
}

impl NetStore {
    /// Opens (creating, mode 0750) `<state>/networks` and `<state>/netrun`.
    pub fn open(state_dir: &Path) -> Result<NetStore, NetStoreError> {
        let s = NetStore { defs: state_dir.join("networks"), run: state_dir.join("netrun") };
        for d in [&s.defs, &s.run] {
            fs::DirBuilder::new().recursive(true).mode(0o750).create(d).map_err(io_err(d))?;
        }
        Ok(s)
    }

    fn def_path(&self, name: &str) -> PathBuf {
        self.defs.join(format!("{name}.json"))
    }

    fn runtime_path(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.json"))
    }

    /// The dnsmasq files of `name`.
    pub fn paths(&self, name: &str) -> NetPaths {
        NetPaths::new(&self.run, name)
    }

    /// Writes a definition atomically.
    pub fn save(&self, def: &NetDef) -> Result<(), NetStoreError> {
        let path = self.def_path(&def.name);
        let json =
            def.to_json().map_err(|e| NetStoreError::Parse { path: path.clone(), message: e.to_string() })?;
        write_atomic(&path, format!("{json}\n").as_bytes()).map_err(io_err(&path))
    }

    /// Removes a definition and the network's lease file.
    pub fn remove(&self, name: &str) -> Result<(), NetStoreError> {
        let path = self.def_path(name);
        remove_durable(&path).map_err(io_err(&path))?;
        let p = self.paths(name);
        for f in [p.lease_file, p.log_file] {
            let _ = fs::remove_file(f);
        }
        Ok(())
    }

    /// Every readable definition, sorted by name, and a message per file skipped (a
    /// temporary file of an interrupted write is removed).
    pub fn list(&self) -> Result<(Vec<NetDef>, Vec<String>), NetStoreError> {
        let mut defs = Vec::new();
        let mut problems = Vec::new();
        for entry in fs::read_dir(&self.defs).map_err(io_err(&self.defs))? {
            let entry = entry.map_err(io_err(&self.defs))?;
            let path = entry.path();
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with('.') && file.contains(".tmp-") {
                let _ = remove_durable(&path);
                problems.push(format!("removed {} left by an interrupted write", path.display()));
                continue;
            }
            let Some(name) = file.strip_suffix(".json").filter(|n| check_net_name(n).is_ok()) else {
                problems.push(format!("skipping {}: not <network name>.json", path.display()));
                continue;
            };
            let parsed = fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| NetDef::from_json(&t).map_err(|e| e.to_string()));
            match parsed {
                // A definition stored before a check was tightened (a bridge name that could
                // break out of an nftables rule) is not used.
                Ok(d) if d.name == name && !vmdef::network::check_network(&d).is_empty() => {
                    let why: Vec<String> =
                        vmdef::network::check_network(&d).iter().map(ToString::to_string).collect();
                    problems.push(format!("skipping {}: {}", path.display(), why.join("; ")));
                }
                Ok(d) if d.name == name => defs.push(d),
                Ok(d) => problems.push(format!("skipping {}: holds network {}", path.display(), d.name)),
                Err(e) => problems.push(format!("skipping {}: {e}", path.display())),
            }
        }
        defs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((defs, problems))
    }

    /// Records a started network.
    pub fn save_runtime(&self, name: &str, rt: &NetRuntime) -> Result<(), NetStoreError> {
        let path = self.runtime_path(name);
        let json = serde_json::to_string(rt)
            .map_err(|e| NetStoreError::Parse { path: path.clone(), message: e.to_string() })?;
        write_atomic(&path, format!("{json}\n").as_bytes()).map_err(io_err(&path))
    }

    /// The runtime state of a network recorded as started.
    pub fn load_runtime(&self, name: &str) -> Result<Option<NetRuntime>, NetStoreError> {
        let path = self.runtime_path(name);
        match fs::read_to_string(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NetStoreError::Io { path, source: e }),
            Ok(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| NetStoreError::Parse { path, message: e.to_string() }),
        }
    }

    /// Records a stopped network.
    pub fn remove_runtime(&self, name: &str) -> Result<(), NetStoreError> {
        let path = self.runtime_path(name);
        match remove_durable(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r.map_err(io_err(&path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_and_runtime_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = NetStore::open(dir.path()).unwrap();
        let def = NetDef::from_json(r#"{"name": "lan", "bridge": "vmbr0", "ipv4": "10.77.0.1/24"}"#).unwrap();
        s.save(&def).unwrap();
        std::fs::write(dir.path().join("networks/.lan.json.tmp-1-2"), "x").unwrap();
        std::fs::write(dir.path().join("networks/other.json"), r#"{"name": "x", "ipv4": "10.1.0.1/24"}"#)
            .unwrap();
        let (defs, problems) = s.list().unwrap();
        assert_eq!(defs, vec![def.clone()]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(!dir.path().join("networks/.lan.json.tmp-1-2").exists());
        assert_eq!(s.load_runtime("lan").unwrap(), None);
        s.save_runtime("lan", &NetRuntime { dnsmasq_pid: Some(7) }).unwrap();
        assert_eq!(s.load_runtime("lan").unwrap(), Some(NetRuntime { dnsmasq_pid: Some(7) }));
        s.remove_runtime("lan").unwrap();
        s.remove_runtime("lan").unwrap();
        assert_eq!(s.load_runtime("lan").unwrap(), None);
        assert_eq!(s.paths("lan").lease_file, dir.path().join("netrun/lan.leases"));
        s.remove("lan").unwrap();
        assert!(s.list().unwrap().0.is_empty());
    }
}
