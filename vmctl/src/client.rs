// SPDX-License-Identifier: Apache-2.0
//! An HTTP/1.1 client for the `vmctld` API over its unix socket (one connection per request).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::api::{ErrorBody, CONSOLE_PROTOCOL, VNC_PROTOCOL};

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon could not be reached.
    #[error("cannot connect to vmctld at {path}: {source} (is vmctld running? see --socket)")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("vmctld: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("bad request: {0}")]
    Request(String),
    /// The daemon answered with an error status.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The daemon's message.
        message: String,
    },
}

impl ClientError {
    /// The `vmctl` exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Api { status, .. } => crate::api::exit_code_for_status(*status),
            _ => crate::api::exit::ERROR,
        }
    }
}

/// A client of one daemon socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client of the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client { socket: socket.into() }
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, ClientError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::Connect { path: self.socket.clone(), source })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(sender.send_request(req).await?)
    }

    /// Sends a request and returns the status and whole body; an error status becomes
    /// [`ClientError::Api`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let mut b = Request::builder().method(method).uri(path).header(header::HOST, "vmctld");
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        let req = b.body(Full::new(Bytes::from(body))).map_err(|e| ClientError::Request(e.to_string()))?;
        let resp = self.send(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
            return Err(ClientError::Api { status: status.as_u16(), message });
        }
        Ok((status, body))
    }

    /// GET and parse JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (_, body) = self.request(Method::GET, path, None, Vec::new()).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Request(format!("unexpected answer: {e}")))
    }

    /// POST without a body and parse JSON.
    pub async fn post_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (_, body) = self.request(Method::POST, path, None, Vec::new()).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Request(format!("unexpected answer: {e}")))
    }

    /// Opens the console of `name`: a raw byte stream (replay, then live output).
    pub async fn console(&self, name: &str) -> Result<TokioIo<hyper::upgrade::Upgraded>, ClientError> {
        self.upgrade(&format!("/v1/vms/{name}/console"), CONSOLE_PROTOCOL).await
    }

    /// Opens a connection to the VNC server of `name`: the raw RFB byte stream.
    pub async fn vnc(&self, name: &str) -> Result<TokioIo<hyper::upgrade::Upgraded>, ClientError> {
        self.upgrade(&format!("/v1/vms/{name}/vnc"), VNC_PROTOCOL).await
    }

    /// `GET path` upgraded to `protocol`: the raw byte stream after the 101 answer.
    async fn upgrade(
        &self,
        path: &str,
        protocol: &str,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, ClientError> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(header::HOST, "vmctld")
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, protocol)
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let resp = self.send(req).await?;
        let status = resp.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let body = resp.into_body().collect().await?.to_bytes();
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(ClientError::Api { status: status.as_u16(), message });
        }
        Ok(TokioIo::new(hyper::upgrade::on(resp).await?))
    }

    /// Opens the event stream; read it line by line.
    pub async fn events(&self) -> Result<Incoming, ClientError> {
        let req = Request::builder()
            .method(Method::GET)
            .uri("/v1/events")
            .header(header::HOST, "vmctld")
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Request(e.to_string()))?;
        let resp = self.send(req).await?;
        if !resp.status().is_success() {
            return Err(ClientError::Api {
                status: resp.status().as_u16(),
                message: "cannot follow events".into(),
            });
        }
        Ok(resp.into_body())
    }
}
