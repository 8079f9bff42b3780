// SPDX-License-Identifier: Apache-2.0
//! Who may do what, over the API socket and over HTTPS, and the audit log.
//!
//! The socket is mode 0666: the kernel's peer credentials of each connection (`SO_PEERCRED`
//! for the uid and gid, `SO_PEERGROUPS` for the supplementary groups) decide.
//!
//! | who | may |
//! | --- | --- |
//! | root, the daemon's own user, the group `vmctl-admin` | everything |
//! | the group `vmctl` | every `GET` but the users and tokens (lists, definitions without secrets, statistics, events, consoles, VNC) and the power operations `start`, `shutdown`, `reboot`, `destroy` (stop), `pause`, `resume` |
//! | anyone else | nothing (403) |
//!
//! Group membership is the peer's primary and supplementary groups, and the member lists of
//! `/etc/group` (read directly, like the socket group before: a static `vmctld` cannot load
//! NSS modules).
//!
//! Over HTTPS ([`HttpsClient`] set by `daemon::https`), a request carries an API token
//! (`Authorization: Bearer`) or a session cookie (see `daemon::accounts`); the web user's or
//! token's role (`admin` like `vmctl-admin`, `operator` like `vmctl`) goes through the same
//! [`allowed`]. Without either, only the login (`POST /v1/session`) is open (401 otherwise).
//! A session's requests other than `GET` must carry its CSRF token, and a browser's requests
//! that may change something must come from the same origin.
//!
//! Every request that may change something (any method but `GET` and `HEAD`, and console
//! and VNC connections) is appended to `<state>/audit.log`, one JSON line each: time, via (`socket` or
//! `https`), from (the HTTPS client's address), uid, user (Unix or web user), pid, token,
//! method, path, status; refused ones too.

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::UnixListener;

use super::accounts::{web, Accounts, SessionView};
use crate::api::{AccountRole, ErrorBody};

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

/// Whether `role` may send `method` to `path`. The one decision for every caller: socket
/// peers, web users and API tokens.
pub fn allowed(role: Role, method: &Method, path: &str) -> bool {
    match role {
        Role::Admin => true,
        Role::None => false,
        Role::Operator => {
            let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
            if matches!(parts.as_slice(), ["", "v1", "users" | "tokens", ..]) {
                return false;
            }
            if method == Method::GET || method == Method::HEAD {
                return true;
            }
            // Logging in and out.
            if parts.as_slice() == ["", "v1", "session"] {
                return method == Method::POST || method == Method::DELETE;
            }
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

/// A refusal for a web user or API token of role `role`.
fn web_refusal(who: &str, role: Role, method: &Method, path: &str) -> String {
    match role {
        Role::Operator => format!(
            "{who} has the role operator, which may read, open consoles and start, shut down, reboot, \
             destroy, pause or resume VMs; {method} {path} needs the role admin."
        ),
        _ => format!("{who} may not use vmctld."),
    }
}

impl From<AccountRole> for Role {
    fn from(r: AccountRole) -> Role {
        match r {
            AccountRole::Admin => Role::Admin,
            AccountRole::Operator => Role::Operator,
        }
    }
}

/// The client address of a request that came over HTTPS: a request extension the HTTPS
/// listener sets (requests on the socket have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpsClient(pub SocketAddr);

/// How a caller was identified.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The socket's kernel credentials (`None`: the kernel did not say).
    Peer(Option<Peer>),
    /// A login session (HTTPS).
    Session(SessionView),
    /// An API token (HTTPS), by name.
    Token(String),
    /// Nothing yet (HTTPS, `POST /v1/session` only).
    Anonymous,
}

/// Who sent a request, as [`secure`]'s middleware established it; handlers find it in the
/// request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    /// How.
    pub credential: Credential,
    /// The user: the Unix user (socket) or the web user (session); `None` for a token.
    pub user: Option<String>,
    /// What the caller may do.
    pub role: Role,
    /// The HTTPS client's address (`None` on the socket).
    pub from: Option<SocketAddr>,
}

impl Caller {
    /// The caller as a message names them.
    pub fn describe(&self) -> String {
        match (&self.credential, &self.user) {
            (Credential::Peer(Some(p)), Some(u)) => format!("User {u} (uid {})", p.uid),
            (Credential::Peer(Some(p)), None) => format!("The user with uid {}", p.uid),
            (Credential::Peer(None), _) => "A client whose credentials the kernel did not give".into(),
            (Credential::Session(s), _) => format!("The web user {}", s.user),
            (Credential::Token(t), _) => format!("The API token {t}"),
            (Credential::Anonymous, _) => "A client that has not logged in".into(),
        }
    }
}

/// A response extension: the user name a login attempt named, for the audit log.
#[derive(Debug, Clone)]
pub struct AuditUser(pub String);

/// One line of the audit log.
#[derive(Debug, Serialize)]
struct AuditLine<'a> {
    time: u64,
    /// `socket` or `https`.
    via: &'static str,
    /// The HTTPS client's address.
    from: Option<String>,
    uid: Option<u32>,
    user: Option<&'a str>,
    pid: Option<i32>,
    /// The API token's name.
    token: Option<&'a str>,
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

    fn record(&self, caller: &Caller, named: Option<&str>, method: &Method, path: &str, status: StatusCode) {
        let peer = match &caller.credential {
            Credential::Peer(p) => p.as_ref(),
            _ => None,
        };
        let line = AuditLine {
            time: super::now(),
            via: if caller.from.is_some() { "https" } else { "socket" },
            from: caller.from.map(|a| a.ip().to_string()),
            uid: peer.map(|p| p.uid),
            user: caller.user.as_deref().or(named),
            pid: peer.and_then(|p| p.pid),
            token: match &caller.credential {
                Credential::Token(t) => Some(t),
                _ => None,
            },
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

    /// The caller on the socket, from the connection's [`PeerInfo`].
    fn socket_caller(&self, req: &Request) -> Caller {
        let peer = req.extensions().get::<ConnectInfo<PeerInfo>>().and_then(|c| c.0 .0.clone());
        let passwd = std::fs::read_to_string(&self.passwd_file).unwrap_or_default();
        let groups = std::fs::read_to_string(&self.group_file).unwrap_or_default();
        let user = peer.as_ref().and_then(|p| user_name(&passwd, p.uid));
        let role = peer.as_ref().map_or(Role::None, |p| role_of(p, user.as_deref(), &groups, self.owner));
        Caller { credential: Credential::Peer(peer), user, role, from: None }
    }
}

/// Whether a request is recorded in the audit log.
fn audited(method: &Method, path: &str) -> bool {
    !(method == Method::GET || method == Method::HEAD) || path.ends_with("/console") || path.ends_with("/vnc")
}

fn is_login(method: &Method, path: &str) -> bool {
    method == Method::POST && path.trim_end_matches('/') == "/v1/session"
}

/// A request refused before it reached its handler.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    error: String,
}

impl Refusal {
    fn forbidden(error: String) -> Refusal {
        Refusal { status: StatusCode::FORBIDDEN, error }
    }

    fn unauthorized(error: String) -> Refusal {
        Refusal { status: StatusCode::UNAUTHORIZED, error }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(ErrorBody { error: self.error })).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"vmctld\""),
            );
        }
        r
    }
}

/// The caller of an HTTPS request: a bearer token, else a session cookie; the login needs
/// neither. Unknown credentials are refused (401).
fn https_caller(
    accounts: &Accounts,
    headers: &HeaderMap,
    from: SocketAddr,
    login: bool,
) -> Result<Caller, Refusal> {
    let anonymous =
        Caller { credential: Credential::Anonymous, user: None, role: Role::None, from: Some(from) };
    if login {
        return Ok(anonymous);
    }
    match web::bearer(headers) {
        Some(Ok(secret)) => {
            return match accounts.token(secret) {
                Some((name, role)) => Ok(Caller {
                    credential: Credential::Token(name),
                    user: None,
                    role: role.into(),
                    from: Some(from),
                }),
                None => Err(Refusal::unauthorized(
                    "The API token is not known (deleted, or mistyped); make one with vmctl token add."
                        .into(),
                )),
            };
        }
        Some(Err(())) => {
            return Err(Refusal::unauthorized(
                "The Authorization header is not `Bearer <token>`; send an API token (vmctl token add) or \
                 log in with POST /v1/session."
                    .into(),
            ))
        }
        None => {}
    }
    let cookies = web::session_cookies(headers);
    if let Some(s) = cookies.iter().find_map(|id| accounts.session(id)) {
        let role = s.role.into();
        return Ok(Caller {
            user: Some(s.user.clone()),
            credential: Credential::Session(s),
            role,
            from: Some(from),
        });
    }
    Err(Refusal::unauthorized(if cookies.is_empty() {
        "Log in first (POST /v1/session with {\"user\", \"password\"}) or send `Authorization: Bearer \
         <token>`."
            .into()
    } else {
        "The session has ended (logged out, idle for 8 hours, older than 24 hours, or the daemon \
         restarted); log in again."
            .into()
    }))
}

/// The checks after identification: same origin for browsers, a login for HTTPS, the role
/// (and secrets for admins only), and the CSRF token of a session.
fn check(caller: &Caller, req: &Request) -> Result<(), Refusal> {
    let (method, path, headers, query) = (req.method(), req.uri().path(), req.headers(), req.uri().query());
    let browser = matches!(caller.credential, Credential::Session(_) | Credential::Anonymous);
    if browser && caller.from.is_some() && audited(method, path) {
        web::check_same_origin(headers).map_err(|e| {
            tracing::warn!("refused {method} {path}: {e}");
            Refusal::forbidden(format!("Refused: {e}."))
        })?;
    }
    if matches!(caller.credential, Credential::Anonymous) {
        return Ok(());
    }
    if !allowed(caller.role, method, path) {
        let who = caller.describe();
        let e = match caller.credential {
            Credential::Peer(_) => refusal(caller.role, &who, method, path),
            _ => web_refusal(&who, caller.role, method, path),
        };
        tracing::warn!("refused: {e}");
        return Err(Refusal::forbidden(e));
    }
    if caller.role != Role::Admin && asks_for_secrets(query) {
        let who = caller.describe();
        let e = match caller.credential {
            Credential::Peer(_) => format!(
                "{who} is in the group {OPERATOR_GROUP}, which may not read secrets (security_info); that \
                 needs root or the group {ADMIN_GROUP}."
            ),
            _ => format!("{who} has the role operator, which may not read secrets (security_info); that needs the role admin."),
        };
        tracing::warn!("refused: {e}");
        return Err(Refusal::forbidden(e));
    }
    if let Credential::Session(s) = &caller.credential {
        if !(method == Method::GET || method == Method::HEAD) {
            let sent = headers.get(web::CSRF_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
            if !web::same_secret(sent, s.csrf.as_bytes()) {
                let e = format!(
                    "{method} {path} needs the header X-CSRF-Token with the session's csrf_token (from \
                     POST /v1/session or GET /v1/session); it was {}.",
                    if sent.is_empty() { "missing" } else { "wrong" }
                );
                tracing::warn!("refused for the web user {}: {e}", s.user);
                return Err(Refusal::forbidden(e));
            }
        }
    }
    Ok(())
}

/// What the middleware needs.
#[derive(Debug)]
struct Guard {
    audit: Arc<Audit>,
    accounts: Arc<Accounts>,
}

/// The middleware: identifies the caller (socket: [`PeerInfo`]; HTTPS: a token or a session),
/// decides with [`allowed`], records what may change something, and passes the request on
/// with the [`Caller`] in its extensions.
async fn authorize(State(g): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let shown = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| path.clone());
    let caller = match req.extensions().get::<HttpsClient>().copied() {
        None => Ok(g.audit.socket_caller(&req)),
        Some(HttpsClient(from)) => https_caller(&g.accounts, req.headers(), from, is_login(&method, &path))
            .map_err(|resp| {
                let anonymous = Caller {
                    credential: Credential::Anonymous,
                    user: None,
                    role: Role::None,
                    from: Some(from),
                };
                (anonymous, resp)
            }),
    };
    let (caller, response) = match caller {
        Err((caller, refusal)) => (caller, refusal.into_response()),
        Ok(caller) => match check(&caller, &req) {
            Err(refusal) => (caller, refusal.into_response()),
            Ok(()) => {
                req.extensions_mut().insert(caller.clone());
                (caller, next.run(req).await)
            }
        },
    };
    if audited(&method, &path) {
        let named = response.extensions().get::<AuditUser>().map(|u| u.0.clone());
        g.audit.record(&caller, named.as_deref(), &method, &shown, response.status());
    }
    response
}

/// `router` behind the authorization and audit middleware; serve it on the socket with
/// `into_make_service_with_connect_info::<PeerInfo>()`, and over HTTPS with an
/// [`HttpsClient`] extension on each request.
pub fn secure(router: Router, audit: Arc<Audit>, accounts: Arc<Accounts>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(Arc::new(Guard { audit, accounts }), authorize))
}

#[cfg(test)]
mod https_tests;
#[cfg(test)]
mod tests;
