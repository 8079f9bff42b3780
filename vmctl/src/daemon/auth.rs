// SPDX-License-Identifier: Apache-2.0
//! Who may do what over the API socket, and the audit log.
//!
//! The socket is mode 0666: the kernel's peer credentials of each connection (`SO_PEERCRED`
//! for the uid and gid, `SO_PEERGROUPS` for the supplementary groups) decide.
//!
//! | who | may |
//! | --- | --- |
//! | root, the daemon's own user, the group `vmctl-admin` | everything |
//! | the group `vmctl` | every `GET` (lists, definitions without secrets, statistics, events, consoles, VNC) and the power operations `start`, `shutdown`, `reboot`, `destroy` (stop), `pause`, `resume` |
//! | anyone else | nothing (403) |
//!
//! Group membership is the peer's primary and supplementary groups, and the member lists of
//! `/etc/group` (read directly, like the socket group before: a static `vmctld` cannot load
//! NSS modules). Every request that may change something (any method but `GET` and `HEAD`,
//! and console and VNC connections) is appended to `<state>/audit.log`, one JSON line each: time,
//! uid, user, pid, method, path, status; refused ones too.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::UnixListener;

use crate::api::ErrorBody;

/// The group whose members may do everything.
pub const ADMIN_GROUP: &str = "vmctl-admin";
/// The group whose members may read, use consoles and run power operations.
pub const OPERATOR_GROUP: &str = "vmctl";
/// The group database.
const GROUP_FILE: &str = "/etc/group";
/// The user database (for names in messages and the audit log).
const PASSWD_FILE: &str = "/etc/passwd";
/// `SO_PEERGROUPS` (Linux 4.13; not in the libc crate).
const SO_PEERGROUPS: libc::c_int = 59;

/// The peer of one API connection, from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Process id, when the kernel gives one.
    pub pid: Option<i32>,
    /// Supplementary groups (empty when the kernel cannot tell).
    pub groups: Vec<u32>,
}

impl Peer {
    /// The credentials of the process at the other end of `stream`; `None` if the kernel
    /// does not say.
    pub fn of(stream: &tokio::net::UnixStream) -> Option<Peer> {
        let cred = stream.peer_cred().ok()?;
        Some(Peer { uid: cred.uid(), gid: cred.gid(), pid: cred.pid(), groups: peer_groups(stream) })
    }
}

/// The peer's supplementary groups (`SO_PEERGROUPS`); empty if the kernel lacks it.
fn peer_groups(stream: &tokio::net::UnixStream) -> Vec<u32> {
    let mut groups = vec![0 as libc::gid_t; 64];
    for _ in 0..2 {
        let mut len =
            libc::socklen_t::try_from(groups.len() * std::mem::size_of::<libc::gid_t>()).unwrap_or(0);
        // SAFETY: the buffer is `len` bytes of writable gid_t storage owned by this frame; the
        // kernel writes at most `len` bytes and stores the size it needs in `len`.
        let r = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n.min(groups.len()));
            return groups;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) || n <= groups.len() {
            return Vec::new();
        }
        groups.resize(n, 0);
    }
    Vec::new()
}

/// Connection info for `axum::serve`: the peer, or `None` when the kernel did not say (then
/// every request is refused).
#[derive(Debug, Clone)]
pub struct PeerInfo(pub Option<Peer>);

impl Connected<IncomingStream<'_, UnixListener>> for PeerInfo {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        PeerInfo(Peer::of(stream.io()))
    }
}

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: root and the group `vmctl-admin`.
    Admin,
    /// Read, consoles and power operations: the group `vmctl`.
    Operator,
    /// Nothing.
    None,
}

/// Whether `peer` (named `user` in the user database, if known) is in the group `group`,
/// according to the text of an `/etc/group` file.
fn in_group(peer: &Peer, user: Option<&str>, group_file: &str, group: &str) -> bool {
    group_file.lines().any(|line| {
        let mut f = line.split(':');
        if f.next() != Some(group) {
            return false;
        }
        let gid: Option<u32> = f.nth(1).and_then(|g| g.trim().parse().ok());
        let members = f.next().unwrap_or("");
        gid.is_some_and(|g| g == peer.gid || peer.groups.contains(&g))
            || user.is_some_and(|u| members.split(',').any(|m| m.trim() == u))
    })
}

/// The role of `peer` given the group database's text; `owner` is the daemon's own uid (a
/// daemon run by an unprivileged user serves that user fully).
pub fn role_of(peer: &Peer, user: Option<&str>, group_file: &str, owner: u32) -> Role {
    if peer.uid == 0 || peer.uid == owner || in_group(peer, user, group_file, ADMIN_GROUP) {
        Role::Admin
    } else if in_group(peer, user, group_file, OPERATOR_GROUP) {
        Role::Operator
    } else {
        Role::None
    }
}

/// The VM operations the group `vmctl` may run.
const POWER_ACTIONS: &[&str] = &["start", "shutdown", "reboot", "destroy", "pause", "resume"];

/// Whether `role` may send `method` to `path`.
pub fn allowed(role: Role, method: &Method, path: &str) -> bool {
    match role {
        Role::Admin => true,
        Role::None => false,
        Role::Operator => {
            if method == Method::GET || method == Method::HEAD {
                return true;
            }
            let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
            method == Method::POST
                && matches!(parts.as_slice(), ["", "v1", "vms", name, action]
                    if !name.is_empty() && POWER_ACTIONS.contains(action))
        }
    }
}

/// Whether a query asks for secrets (`security_info=true`: the VNC password), which only
/// the admin role may read.
pub fn asks_for_secrets(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv == "security_info=true" || kv == "security_info=1"))
}

/// The user name of `uid` in the text of an `/etc/passwd` file.
pub fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        (f.nth(1)?.trim().parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

/// Why `role` may not send `method` to `path`, as a sentence.
pub fn refusal(role: Role, who: &str, method: &Method, path: &str) -> String {
    match role {
        Role::Operator => format!(
            "{who} is in the group {OPERATOR_GROUP}, which may read, open consoles and start, shut down, \
             reboot, destroy, pause or resume VMs; {method} {path} needs root or the group {ADMIN_GROUP}."
        ),
        _ => format!(
            "{who} may not use vmctld; an administrator can add you to the group {OPERATOR_GROUP} (read, \
             consoles and power operations) or {ADMIN_GROUP} (everything)."
        ),
    }
}

/// One line of the audit log.
#[derive(Debug, Serialize)]
struct AuditLine<'a> {
    time: u64,
    uid: Option<u32>,
    user: Option<&'a str>,
    pid: Option<i32>,
    method: &'a str,
    path: &'a str,
    status: u16,
}

/// The audit log (`<state>/audit.log`) and the user and group databases.
#[derive(Debug)]
pub struct Audit {
    path: PathBuf,
    lock: Mutex<()>,
    group_file: PathBuf,
    passwd_file: PathBuf,
    owner: u32,
}

impl Audit {
    /// The audit log at `path` (created at the first entry, mode 0600), with the host's
    /// `/etc/group` and `/etc/passwd`.
    pub fn new(path: PathBuf) -> Audit {
        Audit::with_databases(path, GROUP_FILE.into(), PASSWD_FILE.into())
    }

    /// Like [`Audit::new`] with other group and user databases (for tests).
    pub fn with_databases(path: PathBuf, group_file: PathBuf, passwd_file: PathBuf) -> Audit {
        Audit { path, lock: Mutex::new(()), group_file, passwd_file, owner: nix::unistd::geteuid().as_raw() }
    }

    fn record(
        &self,
        peer: Option<&Peer>,
        user: Option<&str>,
        method: &Method,
        path: &str,
        status: StatusCode,
    ) {
        let line = AuditLine {
            time: super::now(),
            uid: peer.map(|p| p.uid),
            user,
            pid: peer.and_then(|p| p.pid),
            method: method.as_str(),
            path,
            status: status.as_u16(),
        };
        let Ok(mut text) = serde_json::to_vec(&line) else { return };
        text.push(b'\n');
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let r = crate::safefs::open_append_nofollow(&self.path, 0o600).and_then(|mut f| f.write_all(&text));
        if let Err(e) = r {
            tracing::error!("cannot write the audit log {}: {e}", self.path.display());
        }
    }
}

/// Whether a request is recorded in the audit log.
fn audited(method: &Method, path: &str) -> bool {
    !(method == Method::GET || method == Method::HEAD) || path.ends_with("/console") || path.ends_with("/vnc")
}

/// The middleware: decides from the connection's [`PeerInfo`] (missing: refused), records
/// what may change something, and passes the request on.
async fn authorize(State(audit): State<Arc<Audit>>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<PeerInfo>>().and_then(|c| c.0 .0.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let shown = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| path.clone());
    let passwd = std::fs::read_to_string(&audit.passwd_file).unwrap_or_default();
    let groups = std::fs::read_to_string(&audit.group_file).unwrap_or_default();
    let user = peer.as_ref().and_then(|p| user_name(&passwd, p.uid));
    let role = peer.as_ref().map_or(Role::None, |p| role_of(p, user.as_deref(), &groups, audit.owner));
    let secrets = asks_for_secrets(req.uri().query());
    let response = if allowed(role, &method, &path) && (role == Role::Admin || !secrets) {
        next.run(req).await
    } else {
        let who = match (&peer, &user) {
            (Some(p), Some(u)) => format!("User {u} (uid {})", p.uid),
            (Some(p), None) => format!("The user with uid {}", p.uid),
            (None, _) => "A client whose credentials the kernel did not give".to_string(),
        };
        let error = if role == Role::Operator && secrets {
            format!("{who} is in the group {OPERATOR_GROUP}, which may not read secrets (security_info); that needs root or the group {ADMIN_GROUP}.")
        } else {
            refusal(role, &who, &method, &path)
        };
        tracing::warn!("refused: {error}");
        (StatusCode::FORBIDDEN, Json(ErrorBody { error })).into_response()
    };
    if audited(&method, &path) {
        audit.record(peer.as_ref(), user.as_deref(), &method, &shown, response.status());
    }
    response
}

/// `router` behind the authorization and audit middleware; serve it with
/// `into_make_service_with_connect_info::<PeerInfo>()`.
pub fn secure(router: Router, audit: Arc<Audit>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(audit, authorize))
}

#[cfg(test)]
mod tests;
