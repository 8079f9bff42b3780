// SPDX-License-Identifier: Apache-2.0
//! `GET /v1/vms/{name}/vnc`: the connection upgraded to a raw byte stream joined to the VM's
//! VNC server (RFB, spoken end to end by the viewer and the vmm), as the console route does
//! for the serial console. It lasts until either side closes; the VM stopping closes it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;

use super::super::{parse_name, vnc, Daemon, DaemonError};
use super::Res;
use crate::api::VNC_PROTOCOL;

/// Connects to the VM's VNC server first (so a failure is an HTTP error), then answers 101
/// and copies bytes both ways.
pub(super) async fn vnc(State(d): State<Arc<Daemon>>, Path(name): Path<String>, mut req: Request) -> Res {
    let name = parse_name(&name)?;
    let wants = req.headers().get(header::UPGRADE).and_then(|v| v.to_str().ok()) == Some(VNC_PROTOCOL);
    if !wants {
        return Err(DaemonError::BadInput(format!(
            "the VNC stream needs `Connection: Upgrade` and `Upgrade: {VNC_PROTOCOL}`; use vmctl vnc {name}"
        )));
    }
    let target = d.vnc_target(&name)?;
    let mut server = vnc::connect(&target).await.map_err(|e| {
        DaemonError::Conflict(format!("cannot reach the VNC server of {name} on {target}: {e}"))
    })?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let mut io = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                tracing::warn!(vm = %name, "VNC upgrade failed: {e}");
                return;
            }
        };
        match tokio::io::copy_bidirectional(&mut io, &mut server).await {
            Ok((up, down)) => {
                tracing::debug!(vm = %name, "VNC connection closed ({up} bytes in, {down} out)")
            }
            Err(e) => tracing::debug!(vm = %name, "VNC connection ended: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, VNC_PROTOCOL)
        .body(Body::empty())
        .map_err(|e| DaemonError::Internal(e.to_string()))
}
