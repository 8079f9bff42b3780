// SPDX-License-Identifier: Apache-2.0
//! The HTTP/JSON API of `vmctld` (see `docs/vmctl.md` and `/openapi.json`).
//!
//! Every route is listed in [`ROUTES`], which the test of the OpenAPI document checks
//! against its `paths`.

use std::sync::Arc;
use std::time::Duration;

use crate::api::VmInfo;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vmdef::VmDef;

use super::{parse_name, Daemon, DaemonError};
use crate::api::{ErrorBody, CONSOLE_PROTOCOL};

/// The OpenAPI document served at `/openapi.json` (also `docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every route: (method, path in OpenAPI syntax).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/openapi.json"),
    ("get", "/v1/vms"),
    ("post", "/v1/vms"),
    ("get", "/v1/vms/{name}"),
    ("put", "/v1/vms/{name}"),
    ("delete", "/v1/vms/{name}"),
    ("get", "/v1/vms/{name}/xml"),
    ("get", "/v1/vms/{name}/console"),
    ("get", "/v1/vms/{name}/stats"),
    ("get", "/v1/vms/{name}/vnc"),
    ("post", "/v1/vms/{name}/start"),
    ("post", "/v1/vms/{name}/shutdown"),
    ("post", "/v1/vms/{name}/destroy"),
    ("post", "/v1/vms/{name}/reboot"),
    ("post", "/v1/vms/{name}/reset"),
    ("post", "/v1/vms/{name}/pause"),
    ("post", "/v1/vms/{name}/resume"),
    ("get", "/v1/events"),
    ("get", "/v1/pools"),
    ("post", "/v1/pools"),
    ("delete", "/v1/pools/{pool}"),
    ("get", "/v1/pools/{pool}/volumes"),
    ("post", "/v1/pools/{pool}/volumes"),
    ("get", "/v1/pools/{pool}/volumes/{name}"),
    ("delete", "/v1/pools/{pool}/volumes/{name}"),
    ("post", "/v1/pools/{pool}/volumes/{name}/resize"),
    ("post", "/v1/pools/{pool}/volumes/{name}/clone"),
    ("post", "/v1/pools/{pool}/volumes/{name}/copy"),
    ("get", "/v1/networks"),
    ("post", "/v1/networks"),
    ("get", "/v1/networks/{name}"),
    ("delete", "/v1/networks/{name}"),
    ("get", "/v1/networks/{name}/leases"),
    ("post", "/v1/networks/{name}/start"),
    ("post", "/v1/networks/{name}/stop"),
    ("post", "/v1/networks/{name}/autostart"),
    ("get", "/v1/session"),
    ("post", "/v1/session"),
    ("delete", "/v1/session"),
    ("get", "/v1/users"),
    ("post", "/v1/users"),
    ("delete", "/v1/users/{name}"),
    ("put", "/v1/users/{name}/password"),
    ("get", "/v1/tokens"),
    ("post", "/v1/tokens"),
    ("delete", "/v1/tokens/{name}"),
];

/// Largest definition body accepted.
const MAX_BODY: usize = 1024 * 1024;
/// Default `timeout` of shutdown and reboot, in seconds.
pub const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 60;

impl IntoResponse for DaemonError {
    fn into_response(self) -> Response {
        let status = match &self {
            DaemonError::BadInput(_) => StatusCode::BAD_REQUEST,
            DaemonError::NotFound(_) | DaemonError::Missing(_) => StatusCode::NOT_FOUND,
            DaemonError::Conflict(_) => StatusCode::CONFLICT,
            DaemonError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(ErrorBody { error: self.to_string() })).into_response()
    }
}

type Res = Result<Response, DaemonError>;

/// The API router.
pub fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .route("/v1/vms", get(list).post(define))
        .route("/v1/vms/{name}", get(detail).put(redefine).delete(undefine))
        .route("/v1/vms/{name}/xml", get(dump_xml))
        .route("/v1/vms/{name}/console", get(console))
        .route("/v1/vms/{name}/stats", get(stats))
        .route("/v1/vms/{name}/vnc", get(vnc::vnc))
        .route("/v1/vms/{name}/{action}", post(action))
        .route("/v1/events", get(events))
        .route("/v1/pools", get(volumes::list_pools).post(volumes::define_pool))
        .route("/v1/pools/{pool}", delete(volumes::undefine_pool))
        .route("/v1/pools/{pool}/volumes", get(volumes::list).post(volumes::create))
        .route("/v1/pools/{pool}/volumes/{name}", get(volumes::get_one).delete(volumes::delete_one))
        .route("/v1/pools/{pool}/volumes/{name}/{action}", post(volumes::action))
        .route("/v1/networks", get(networks::list).post(networks::define))
        .route("/v1/networks/{name}", get(networks::get_one).delete(networks::undefine))
        .route("/v1/networks/{name}/leases", get(networks::leases))
        .route("/v1/networks/{name}/{action}", post(networks::action))
        .route("/v1/session", get(accounts::whoami).post(accounts::login).delete(accounts::logout))
        .route("/v1/users", get(accounts::list_users).post(accounts::add_user))
        .route("/v1/users/{name}", delete(accounts::delete_user))
        .route("/v1/users/{name}/password", put(accounts::set_password))
        .route("/v1/tokens", get(accounts::list_tokens).post(accounts::add_token))
        .route("/v1/tokens/{name}", delete(accounts::delete_token))
        .fallback(|uri: axum::http::Uri| async move {
            DaemonError::Missing(format!("There is no API path {}; see /openapi.json.", uri.path()))
        })
        .with_state(d)
        .layer(axum::middleware::from_fn(json_errors))
}

/// Largest plain-text error body rewritten by [`json_errors`].
const MAX_ERROR_TEXT: usize = 16 * 1024;

/// Makes every error a JSON sentence, `{"error": ...}`: the rejections of axum's extractors
/// (a bad query, an oversized or unreadable body) and its method router (405) answer in
/// plain text or with nothing otherwise.
async fn json_errors(req: Request, next: axum::middleware::Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().trim_end_matches('.').to_string();
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
            format!("{method} is not allowed on {path} (it takes {allow}); see /openapi.json.")
        }
        // axum's default limit for a buffered body (2 MiB) is the one met here.
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "The request body is larger than the 2097152 bytes the API accepts (a definition may have \
             at most {MAX_BODY} bytes)."
        ),
        _ if text.is_empty() => format!(
            "The request failed with status {} {}.",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ),
        _ => format!("Bad request: {text}."),
    };
    let mut out = (status, Json(ErrorBody { error })).into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

async fn list(State(d): State<Arc<Daemon>>) -> Res {
    Ok(Json(d.list()).into_response())
}

/// Query of the detail and the XML: `security_info=true` includes secrets (the VNC
/// password), as `virsh dumpxml --security-info`; only the admin role may ask (see
/// [`super::auth`]).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SecurityQuery {
    /// Include the VNC password.
    #[serde(default)]
    pub security_info: bool,
}

/// Query of `GET /v1/vms/{name}/stats`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    /// `hour` (10-second samples) or `day` (1-minute samples).
    history: Option<super::stats::HistoryRange>,
}

async fn stats(State(d): State<Arc<Daemon>>, Path(name): Path<String>, Query(q): Query<StatsQuery>) -> Res {
    Ok(Json(d.stats_report(&parse_name(&name)?, q.history).await?).into_response())
}

async fn detail(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(q): Query<SecurityQuery>,
) -> Res {
    Ok(Json(d.detail(&parse_name(&name)?, q.security_info)?).into_response())
}

async fn dump_xml(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
    Query(q): Query<SecurityQuery>,
) -> Res {
    let detail = d.detail(&parse_name(&name)?, q.security_info)?;
    Ok(([(header::CONTENT_TYPE, "application/xml")], vmdef::xml::to_xml(&detail.definition)).into_response())
}

/// A definition body's text and its syntax: XML when the content type says so, JSON
/// otherwise.
pub(crate) enum DefinitionBody<'a> {
    /// `application/xml` or `text/xml`.
    Xml(&'a str),
    /// `application/json` or no content type.
    Json(&'a str),
}

/// Checks a definition body's size, encoding and content type.
pub(crate) fn definition_body<'a>(
    headers: &HeaderMap,
    body: &'a [u8],
) -> Result<DefinitionBody<'a>, DaemonError> {
    if body.len() > MAX_BODY {
        return Err(DaemonError::BadInput(format!("the definition is larger than {MAX_BODY} bytes")));
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        DaemonError::BadInput(format!(
            "the definition is not UTF-8 (byte {} is not); convert it, e.g. iconv -f LATIN1 -t UTF-8",
            e.valid_up_to()
        ))
    })?;
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let mime = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/xml" | "text/xml" => Ok(DefinitionBody::Xml(text)),
        "application/json" | "" => Ok(DefinitionBody::Json(text)),
        other => Err(DaemonError::BadInput(format!(
            "unsupported content type {other}; send application/json or application/xml"
        ))),
    }
}

/// Parses a definition body: XML when the content type says so (libvirt's bookkeeping
/// accepted, with the warnings of [`vmdef::xml::import`]), JSON otherwise (with those of
/// [`vmdef::validate::warnings`]).
pub fn parse_definition(headers: &HeaderMap, body: &[u8]) -> Result<(VmDef, Vec<String>), DaemonError> {
    match definition_body(headers, body)? {
        DefinitionBody::Xml(text) => vmdef::xml::import(text)
            .map(|i| (i.def, i.warnings.iter().map(ToString::to_string).collect()))
            .map_err(|e| DaemonError::BadInput(format!("XML definition: {e}"))),
        DefinitionBody::Json(text) => VmDef::from_json(text)
            .map(|d| {
                let warnings = vmdef::validate::warnings(&d);
                (d, warnings)
            })
            .map_err(|e| DaemonError::BadInput(format!("JSON definition: {e}"))),
    }
}

async fn define(State(d): State<Arc<Daemon>>, headers: HeaderMap, body: Bytes) -> Res {
    let (def, warnings) = parse_definition(&headers, &body)?;
    let info = VmInfo { warnings, ..d.define(def).await? };
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn redefine(
    State(d): State<Arc<Daemon>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let name = parse_name(&name)?;
    let (def, warnings) = parse_definition(&headers, &body)?;
    if def.name != name {
        return Err(DaemonError::BadInput(format!(
            "the definition is named {}, not {name}; renaming is not supported",
            def.name
        )));
    }
    d.info(&name)?;
    Ok(Json(VmInfo { warnings, ..d.define(def).await? }).into_response())
}

async fn undefine(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> Res {
    d.undefine(&parse_name(&name)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Query of shutdown and reboot.
#[derive(Debug, Deserialize)]
struct TimeoutQuery {
    /// Seconds to wait for the guest before stopping it.
    timeout: Option<u64>,
}

async fn action(
    State(d): State<Arc<Daemon>>,
    Path((name, action)): Path<(String, String)>,
    Query(q): Query<TimeoutQuery>,
) -> Res {
    let name = parse_name(&name)?;
    let timeout = Duration::from_secs(q.timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT));
    let info = match action.as_str() {
        "start" => d.start(&name).await?,
        "shutdown" => d.shutdown(&name, timeout).await?,
        "destroy" => d.destroy(&name).await?,
        "reboot" => d.reboot(&name, timeout).await?,
        "reset" => d.reset(&name).await?,
        "pause" => d.pause(&name).await?,
        "resume" => d.resume(&name).await?,
        other => {
            return Err(DaemonError::Missing(format!(
                "There is no VM action {other}; use start, shutdown, destroy, reboot, reset, pause or resume."
            )))
        }
    };
    Ok(Json(info).into_response())
}

/// Newline-delimited JSON events, one per line, until the client goes.
async fn events(State(d): State<Arc<Daemon>>) -> Res {
    let rx = d.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    let line = format!("{}\n", serde_json::to_string(&e).unwrap_or_default());
                    return Some((Ok::<_, std::io::Error>(Bytes::from(line)), rx));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("an events client missed {n} events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(stream)).into_response())
}

/// Upgrades to a raw byte stream joined to the VM's console: the replay first, then live
/// output; bytes written go to the guest.
async fn console(State(d): State<Arc<Daemon>>, Path(name): Path<String>, mut req: Request) -> Res {
    let name = parse_name(&name)?;
    if wsconsole::wants_websocket(req.headers()) {
        let (mut parts, _) = req.into_parts();
        let ws =
            axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &()).await.map_err(|e| {
                DaemonError::BadInput(format!("the console's WebSocket upgrade: {}", e.body_text()))
            })?;
        let viewer = d.console(&name)?;
        return Ok(wsconsole::serve(ws, viewer, name.to_string()));
    }
    let wants = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()) == Some(CONSOLE_PROTOCOL);
    if !wants {
        return Err(DaemonError::BadInput(format!(
            "the console needs `Connection: Upgrade` and `Upgrade: {CONSOLE_PROTOCOL}` (or `Upgrade: \
             websocket` from a browser)"
        )));
    }
    let viewer = d.console(&name)?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::warn!(vm = %name, "console upgrade failed: {e}");
                return;
            }
        };
        let (mut rd, mut wr) = tokio::io::split(io);
        let mut output = viewer.output;
        let input = viewer.input;
        let out = async move {
            if wr.write_all(&viewer.replay).await.is_err() {
                return;
            }
            loop {
                match output.recv().await {
                    Ok(b) => {
                        if wr.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let note = format!("\r\n[vmctld: {n} chunks of output skipped]\r\n");
                        if wr.write_all(note.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => {
                        let _ = wr.shutdown().await;
                        return;
                    }
                }
            }
        };
        let inp = async move {
            let mut buf = vec![0u8; 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if input.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = out => {}
            _ = inp => {}
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, CONSOLE_PROTOCOL)
        .body(Body::empty())
        .map_err(|e| DaemonError::Internal(e.to_string()))
}

mod accounts;
pub mod networks;
mod vnc;
mod volumes;
mod wsconsole;

#[cfg(test)]
mod tests;
