// SPDX-License-Identifier: Apache-2.0
//! The console as a WebSocket, for browsers (which cannot make the raw `vmctl-console`
//! upgrade): `GET /v1/vms/{name}/console` with `Upgrade: websocket`. The replay and the
//! live output come as binary messages; binary or text messages from the client are the
//! guest's input. Authorization, the same-origin check and the audit log are the
//! middleware's, as for every console connection.

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use tokio::sync::broadcast::error::RecvError;

use crate::console::Viewer;

/// Most bytes of one message from the client (a paste, at most).
const MAX_MESSAGE: usize = 64 * 1024;

/// Whether a request asks for a WebSocket.
pub(super) fn wants_websocket(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Answers the upgrade and joins the socket to `viewer` of VM `name`.
pub(super) fn serve(ws: WebSocketUpgrade, viewer: Viewer, name: String) -> Response {
    ws.max_message_size(MAX_MESSAGE).on_upgrade(move |socket| pump(socket, viewer, name))
}

async fn pump(mut socket: WebSocket, viewer: Viewer, name: String) {
    let Viewer { replay, mut output, input } = viewer;
    if !replay.is_empty() && socket.send(Message::Binary(Bytes::from(replay))).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            out = output.recv() => {
                let msg = match out {
                    Ok(b) => Message::Binary(b),
                    Err(RecvError::Lagged(n)) => {
                        Message::Binary(Bytes::from(format!("\r\n[vmctld: {n} chunks of output skipped]\r\n")))
                    }
                    Err(RecvError::Closed) => {
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                };
                if socket.send(msg).await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => {
                let bytes = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Text(t))) => Bytes::copy_from_slice(t.as_str().as_bytes()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Err(e)) => {
                        tracing::debug!(vm = %name, "console WebSocket: {e}");
                        return;
                    }
                };
                if input.send(bytes).await.is_err() {
                    return;
                }
            }
        }
    }
}
