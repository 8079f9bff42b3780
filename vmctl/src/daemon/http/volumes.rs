// SPDX-License-Identifier: Apache-2.0
//! Handlers of `/v1/pools`: storage pools and their volumes (see `daemon::storage`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::{Res, MAX_BODY};
use crate::api::{CloneVolume, CreateVolume, ResizeVolume};
use crate::daemon::{Daemon, DaemonError};
use crate::pool::PoolDef;

/// Parses a JSON request body; `example` shows the expected shape in the error.
pub(super) fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], example: &str) -> Result<T, DaemonError> {
    if bytes.len() > MAX_BODY {
        return Err(DaemonError::BadInput(format!("the body is larger than {MAX_BODY} bytes")));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DaemonError::BadInput(format!("the body is empty; send JSON like {example}")));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| DaemonError::BadInput(format!("request body: {e}; send JSON like {example}")))
}

pub(super) async fn list_pools(State(d): State<Arc<Daemon>>) -> Res {
    Ok(Json(d.list_pools()?).into_response())
}

pub(super) async fn define_pool(State(d): State<Arc<Daemon>>, b: Bytes) -> Res {
    let def: PoolDef = body(&b, r#"{"name": "fast", "path": "/srv/images"}"#)?;
    Ok((StatusCode::CREATED, Json(d.define_pool(&def).await?)).into_response())
}

pub(super) async fn undefine_pool(State(d): State<Arc<Daemon>>, Path(pool): Path<String>) -> Res {
    d.undefine_pool(&pool).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn list(State(d): State<Arc<Daemon>>, Path(pool): Path<String>) -> Res {
    Ok(Json(d.list_volumes(&pool)?).into_response())
}

pub(super) async fn create(State(d): State<Arc<Daemon>>, Path(pool): Path<String>, b: Bytes) -> Res {
    let req: CreateVolume = body(&b, r#"{"name": "web.qcow2", "size": "10G", "format": "qcow2"}"#)?;
    let info = d.create_volume(&pool, &req.name, &req.size, req.format).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

pub(super) async fn get_one(State(d): State<Arc<Daemon>>, Path((pool, name)): Path<(String, String)>) -> Res {
    Ok(Json(d.volume(&pool, &name)?).into_response())
}

/// Query of volume deletion.
#[derive(Debug, Deserialize)]
pub(super) struct ForceQuery {
    /// `force`, `force=true` or `force=1`: delete a volume a VM names or that has overlays.
    force: Option<String>,
}

fn flag(value: Option<&str>) -> Result<bool, DaemonError> {
    match value {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("" | "true" | "1" | "yes") => Ok(true),
        Some(v) => Err(DaemonError::BadInput(format!("force: {v:?} is not a boolean; use true or false"))),
    }
}

pub(super) async fn delete_one(
    State(d): State<Arc<Daemon>>,
    Path((pool, name)): Path<(String, String)>,
    Query(q): Query<ForceQuery>,
) -> Res {
    d.delete_volume(&pool, &name, flag(q.force.as_deref())?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn action(
    State(d): State<Arc<Daemon>>,
    Path((pool, name, action)): Path<(String, String, String)>,
    b: Bytes,
) -> Res {
    match action.as_str() {
        "resize" => {
            let req: ResizeVolume = body(&b, r#"{"size": "20G"}"#)?;
            Ok(Json(d.resize_volume(&pool, &name, &req.size).await?).into_response())
        }
        "clone" => {
            let req: CloneVolume = body(&b, r#"{"name": "web.qcow2"}"#)?;
            let info = d.clone_volume(&pool, &name, &req.name).await?;
            Ok((StatusCode::CREATED, Json(info)).into_response())
        }
        "copy" => {
            let req: CloneVolume = body(&b, r#"{"name": "web-copy.qcow2"}"#)?;
            let info = d.copy_volume(&pool, &name, &req.name).await?;
            Ok((StatusCode::CREATED, Json(info)).into_response())
        }
        other => Err(DaemonError::Missing(format!(
            "There is no volume action {other}; use resize, clone or copy."
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::flag;

    #[test]
    fn force_flag_values() {
        assert!(!flag(None).unwrap());
        assert!(flag(Some("")).unwrap());
        assert!(flag(Some("true")).unwrap());
        assert!(flag(Some("1")).unwrap());
        assert!(!flag(Some("false")).unwrap());
        assert!(flag(Some("maybe")).unwrap_err().to_string().contains("force"));
    }
}
