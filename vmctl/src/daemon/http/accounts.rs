// SPDX-License-Identifier: Apache-2.0
//! Handlers of `/v1/session`, `/v1/users` and `/v1/tokens`: logging in and out of the HTTPS
//! listener, and managing its users and API tokens (see `daemon::accounts`). Who may call
//! them is decided by `daemon::auth` like for every route.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::volumes::body;
use super::Res;
use crate::api::{ErrorBody, Login, NewPassword, NewToken, NewUser, SessionInfo};
use crate::daemon::accounts::{web, LoginError};
use crate::daemon::auth::{AuditUser, Caller, Credential, Role};
use crate::daemon::{Daemon, DaemonError};

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Admin => "admin",
        Role::Operator => "operator",
        Role::None => "none",
    }
}

/// The caller the middleware found (none when the router runs without it, in tests).
fn caller(c: Option<Extension<Caller>>) -> Result<Caller, DaemonError> {
    c.map(|Extension(c)| c)
        .ok_or_else(|| DaemonError::Internal("the request has no identified caller".into()))
}

fn over_socket(what: &str) -> DaemonError {
    DaemonError::BadInput(format!(
        "{what} is for the HTTPS listener; on the socket the kernel's credentials say who you are"
    ))
}

/// `GET /v1/session`: who the caller is.
pub(super) async fn whoami(c: Option<Extension<Caller>>) -> Res {
    let c = caller(c)?;
    let (auth, user, csrf) = match &c.credential {
        Credential::Peer(p) => {
            let user = c.user.clone().or_else(|| p.as_ref().map(|p| format!("uid {}", p.uid)));
            ("peer", user.unwrap_or_default(), None)
        }
        Credential::Session(s) => ("session", s.user.clone(), Some(s.csrf.clone())),
        Credential::Token(t) => ("token", t.clone(), None),
        Credential::Anonymous => return Err(DaemonError::BadInput("log in first".into())),
    };
    Ok(Json(SessionInfo { user, role: role_name(c.role).into(), auth: auth.into(), csrf_token: csrf })
        .into_response())
}

fn refused(status: StatusCode, error: String) -> Response {
    (status, Json(ErrorBody { error })).into_response()
}

/// `POST /v1/session`: checks the password (rate limited) and sets the session cookie.
pub(super) async fn login(State(d): State<Arc<Daemon>>, c: Option<Extension<Caller>>, b: Bytes) -> Res {
    let c = caller(c)?;
    let Some(from) = c.from else { return Err(over_socket("logging in")) };
    let req: Login = body(&b, r#"{"user": "alice", "password": "..."}"#)?;
    let named = AuditUser(req.user.chars().take(64).collect());
    let mut resp = match d.accounts.login(&req.user, &req.password, from.ip()).await {
        Ok(l) => {
            tracing::info!("web user {} logged in from {}", l.session.user, from.ip());
            let info = SessionInfo {
                user: l.session.user.clone(),
                role: l.session.role.name().into(),
                auth: "session".into(),
                csrf_token: Some(l.session.csrf.clone()),
            };
            let cookie = web::set_session_cookie(&l.id, crate::daemon::accounts::SESSION_MAX.as_secs());
            let mut r = Json(info).into_response();
            let v = HeaderValue::from_str(&cookie).map_err(|e| DaemonError::Internal(e.to_string()))?;
            r.headers_mut().insert(header::SET_COOKIE, v);
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(LoginError::Wrong) => {
            tracing::warn!("failed login as {:?} from {}", named.0, from.ip());
            refused(StatusCode::UNAUTHORIZED, "Wrong user name or password.".into())
        }
        Err(LoginError::Limited(wait)) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            tracing::warn!(
                "login as {:?} from {} refused: too many failures (retry in {secs} s)",
                named.0,
                from.ip()
            );
            let mut r = refused(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many failed logins for this user or from this address; try again in {secs} seconds."
                ),
            );
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        Err(LoginError::Internal(e)) => return Err(DaemonError::Internal(format!("login: {e}"))),
    };
    resp.extensions_mut().insert(named);
    Ok(resp)
}

/// `DELETE /v1/session`: ends the session and clears the cookie.
pub(super) async fn logout(State(d): State<Arc<Daemon>>, c: Option<Extension<Caller>>) -> Res {
    let c = caller(c)?;
    let Credential::Session(s) = &c.credential else { return Err(over_socket("logging out")) };
    d.accounts.logout(&s.key);
    tracing::info!("web user {} logged out", s.user);
    let mut r = StatusCode::NO_CONTENT.into_response();
    let v = HeaderValue::from_str(&web::clear_session_cookie())
        .map_err(|e| DaemonError::Internal(e.to_string()))?;
    r.headers_mut().insert(header::SET_COOKIE, v);
    Ok(r)
}

/// `GET /v1/users`.
pub(super) async fn list_users(State(d): State<Arc<Daemon>>) -> Res {
    Ok(Json(d.accounts.users()).into_response())
}

/// `POST /v1/users`.
pub(super) async fn add_user(State(d): State<Arc<Daemon>>, b: Bytes) -> Res {
    let req: NewUser = body(&b, r#"{"name": "alice", "role": "operator", "password": "..."}"#)?;
    let info = d.accounts.add_user(&req.name, req.role, &req.password).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// `PUT /v1/users/{name}/password`.
pub(super) async fn set_password(State(d): State<Arc<Daemon>>, Path(name): Path<String>, b: Bytes) -> Res {
    let req: NewPassword = body(&b, r#"{"password": "..."}"#)?;
    d.accounts.set_password(&name, &req.password).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v1/users/{name}`.
pub(super) async fn delete_user(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> Res {
    d.accounts.delete_user(&name)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/tokens`.
pub(super) async fn list_tokens(State(d): State<Arc<Daemon>>) -> Res {
    Ok(Json(d.accounts.tokens()).into_response())
}

/// `POST /v1/tokens`: the answer holds the secret, shown this once.
pub(super) async fn add_token(State(d): State<Arc<Daemon>>, b: Bytes) -> Res {
    let req: NewToken = body(&b, r#"{"name": "ci", "role": "operator"}"#)?;
    let mut r = (StatusCode::CREATED, Json(d.accounts.add_token(&req.name, req.role)?)).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `DELETE /v1/tokens/{name}`.
pub(super) async fn delete_token(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> Res {
    d.accounts.delete_token(&name)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
