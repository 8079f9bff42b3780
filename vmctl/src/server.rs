// SPDX-License-Identifier: Apache-2.0
//! Running `vmctld`: the state-directory lock, the API socket, the HTTPS listener (when
//! configured) and the serve loops.

use std::fs::{File, OpenOptions};
use std::future::IntoFuture;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use tokio::net::UnixListener;

use crate::daemon::{Config, Daemon};

/// The gid of group `name` in the text of an `/etc/group` file (`name:password:gid:members`).
///
/// The file is read directly, not through getgrnam(3): in a static build (the one the test
/// host and the demo use) glibc would load the host's NSS modules for it (e.g.
/// `libnss_systemd`), which crashes a static program. A group known only to another NSS
/// source (LDAP, systemd's dynamic users) is therefore not found.
pub fn group_gid(group_file: &str, name: &str) -> Option<u32> {
    group_file.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        fields.nth(1)?.trim().parse().ok()
    })
}

/// A failure to start the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another daemon holds the state directory.
    #[error("another vmctld uses {0} (its lock file is held)")]
    Locked(PathBuf),
    /// Another daemon answers on the socket.
    #[error("another vmctld listens on {0}")]
    SocketInUse(PathBuf),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The daemon could not open its state.
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    /// The HTTPS listener's certificate could not be made or used.
    #[error("HTTPS: {0}")]
    Https(#[from] crate::daemon::https::HttpsError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// A daemon bound to its socket, ready to serve.
pub struct Server {
    daemon: Arc<Daemon>,
    listener: UnixListener,
    socket: PathBuf,
    https: Option<(tokio::net::TcpListener, tokio_rustls::TlsAcceptor)>,
    _lock: Flock<File>,
}

impl Server {
    /// Takes the state directory's lock, opens the daemon, binds `socket` (mode 0666: every
    /// request is authorized from the peer's credentials, see `daemon::auth`), and re-adopts or
    /// autostarts VMs.
    pub async fn bind(cfg: Config, socket: &Path) -> Result<Server, ServeError> {
        // Searchable by every user (the socket is in it; the parts with data are 0750).
        crate::safefs::ensure_dir(&cfg.state_dir, 0o755)
            .map_err(io(format!("create {}", cfg.state_dir.display())))?;
        let lock_path = cfg.state_dir.join("vmctld.lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(format!("open {}", lock_path.display())))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| ServeError::Locked(cfg.state_dir.clone()))?;
        if socket.exists() {
            if std::os::unix::net::UnixStream::connect(socket).is_ok() {
                return Err(ServeError::SocketInUse(socket.to_path_buf()));
            }
            std::fs::remove_file(socket).map_err(io(format!("remove stale {}", socket.display())))?;
        }
        let daemon = Daemon::open(cfg)?;
        let listener = UnixListener::bind(socket).map_err(io(format!("listen on {}", socket.display())))?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666))
            .map_err(io(format!("chmod {}", socket.display())))?;
        let https = match daemon.cfg.settings.https.clone() {
            None => None,
            Some(h) => {
                let tls = crate::daemon::https::load_tls(&h, &daemon.cfg.state_dir)?;
                let tcp = tokio::net::TcpListener::bind(h.listen)
                    .await
                    .map_err(io(format!("listen on {} for HTTPS (https.listen)", h.listen)))?;
                let addr = tcp.local_addr().map_err(io("the HTTPS address"))?;
                tracing::info!(
                    "HTTPS on https://{addr}/ with the certificate {} (SHA-256 fingerprint {})",
                    tls.cert_path.display(),
                    tls.fingerprint
                );
                Some((tcp, tls.acceptor))
            }
        };
        daemon.recover().await;
        daemon.spawn_log_capper();
        daemon.spawn_stats_sampler();
        Ok(Server { daemon, listener, socket: socket.to_path_buf(), https, _lock: lock })
    }

    /// The daemon.
    pub fn daemon(&self) -> &Arc<Daemon> {
        &self.daemon
    }

    /// Serves until `shutdown` completes; the socket file is removed then. VMs keep running.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!("listening on {}", self.socket.display());
        let audit = Arc::new(crate::daemon::auth::Audit::new(self.daemon.cfg.state_dir.join("audit.log")));
        let app = crate::daemon::auth::secure(
            crate::daemon::http::router(self.daemon.clone()),
            audit,
            self.daemon.accounts().clone(),
        );
        let https = match self.https {
            Some((tcp, acceptor)) => futures_util::future::Either::Left(crate::daemon::https::serve(
                tcp,
                acceptor,
                app.clone(),
                Default::default(),
            )),
            None => futures_util::future::Either::Right(std::future::pending()),
        };
        let app = app.into_make_service_with_connect_info::<crate::daemon::auth::PeerInfo>();
        // Not a graceful shutdown: event streams would hold it open forever.
        let r = tokio::select! {
            r = axum::serve(self.listener, app).into_future() => r,
            () = https => Ok(()),
            _ = shutdown => Ok(()),
        };
        let _ = std::fs::remove_file(&self.socket);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_gid_reads_the_group_file() {
        let text = "root:x:0:\nvmctl-old:x:7:\nvmctl:x:998:alice,bob\n# comment\nbad:x:nan:\n";
        assert_eq!(group_gid(text, "vmctl"), Some(998));
        assert_eq!(group_gid(text, "root"), Some(0));
        assert_eq!(group_gid(text, "vmct"), None);
        assert_eq!(group_gid(text, "bad"), None);
        assert_eq!(group_gid(text, "nobody"), None);
        assert_eq!(group_gid("vmctl:x", "vmctl"), None);
    }
}
