// SPDX-License-Identifier: Apache-2.0
//! Handlers of `/v1/networks`: managed networks (see `daemon::networks`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use vmdef::network::NetDef;

use super::{definition_body, DefinitionBody, Res};
use crate::daemon::{Daemon, DaemonError};

/// Body of `POST /v1/networks/{name}/autostart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autostart {
    /// Start the network when the daemon starts.
    pub autostart: bool,
}

/// Parses a network definition: libvirt `<network>` XML when the content type says so,
/// JSON otherwise.
pub fn parse_network(headers: &HeaderMap, body: &[u8]) -> Result<NetDef, DaemonError> {
    match definition_body(headers, body)? {
        DefinitionBody::Xml(text) => vmdef::network::xml::from_xml(text)
            .map_err(|e| DaemonError::BadInput(format!("XML network: {e}"))),
        DefinitionBody::Json(text) => {
            NetDef::from_json(text).map_err(|e| DaemonError::BadInput(format!("JSON network: {e}")))
        }
    }
}

pub(super) async fn list(State(d): State<Arc<Daemon>>) -> Res {
    Ok(Json(d.list_networks()).into_response())
}

pub(super) async fn define(State(d): State<Arc<Daemon>>, headers: HeaderMap, b: Bytes) -> Res {
    let def = parse_network(&headers, &b)?;
    Ok((StatusCode::CREATED, Json(d.define_network(def).await?)).into_response())
}

pub(super) async fn get_one(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> Res {
    Ok(Json(d.network(&name)?).into_response())
}

pub(super) async fn undefine(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> Res {
    d.undefine_network(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn leases(State(d): State<Arc<Daemon>>, Path(name): Path<String>) -> Res {
    Ok(Json(d.network_leases(&name)?).into_response())
}

pub(super) async fn action(
    State(d): State<Arc<Daemon>>,
    Path((name, action)): Path<(String, String)>,
    b: Bytes,
) -> Res {
    let info = match action.as_str() {
        "start" => d.start_network(&name).await?,
        "stop" => d.stop_network(&name).await?,
        "autostart" => {
            let req: Autostart = serde_json::from_slice(&b).map_err(|e| {
                DaemonError::BadInput(format!("request body: {e}; send JSON like {{\"autostart\": true}}"))
            })?;
            d.set_network_autostart(&name, req.autostart).await?
        }
        other => {
            return Err(DaemonError::Missing(format!(
                "There is no network action {other}; use start, stop or autostart."
            )))
        }
    };
    Ok(Json(info).into_response())
}
