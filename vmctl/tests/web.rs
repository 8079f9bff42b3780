// SPDX-License-Identifier: Apache-2.0
//! `vmctld`'s HTTPS listener as a process: the generated certificate (trusted by the test's
//! rustls client), users made with `vmctl user`, sessions with their cookie and CSRF token,
//! roles, API tokens, the console over TLS, the login rate limit and the audit log.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::{header, HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{fake_vmm, vmctl, KilledOnDrop};

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts vmctld on `state` with HTTPS on `port` (and `extra` fields in `"https"`); waits
/// for the socket and the port.
fn start(state: &Path, port: u16, extra: &str) -> KilledOnDrop {
    std::fs::create_dir_all(state).unwrap();
    let root = state.parent().unwrap().display().to_string();
    let cfg = format!(r#"{{"pool_roots": [{root:?}], "https": {{"listen": "127.0.0.1:{port}"{extra}}}}}"#);
    std::fs::write(state.join("vmctld.json"), cfg).unwrap();
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(state.with_extension("log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vmctld"))
        .arg("--state-dir")
        .arg(state)
        .arg("--vmm")
        .arg(fake_vmm())
        .stderr(log)
        .spawn()
        .unwrap();
    let d = KilledOnDrop(child);
    common::wait_for_socket(&state.join("vmctld.sock"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    d
}

/// Runs vmctl with `input` on stdin.
fn vmctl_stdin(state: &Path, args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmctl"))
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all_sync(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), s(&out.stdout), s(&out.stderr))
}

trait WriteAllSync {
    fn write_all_sync(self, b: &[u8]);
}

impl WriteAllSync for std::process::ChildStdin {
    fn write_all_sync(mut self, b: &[u8]) {
        use std::io::Write;
        let _ = self.write_all(b);
    }
}

/// An HTTPS client that trusts only `cert` (PEM).
struct Client {
    addr: SocketAddr,
    tls: tokio_rustls::TlsConnector,
}

/// An answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn error(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body).unwrap()["error"].as_str().unwrap().to_string()
    }
}

impl Client {
    fn new(cert: &Path, port: u16) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Client { addr: ([127, 0, 0, 1], port).into(), tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)) }
    }

    async fn send_raw(&self, req: Request<Full<Bytes>>) -> hyper::Response<hyper::body::Incoming> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let tls = self.tls.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        sender.send_request(req).await.unwrap()
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, format!("localhost:{}", self.addr.port()));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
    }

    async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let resp = self.send_raw(self.request(method, path, headers, body)).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    /// Opens a WebSocket to `path` with `cookie` and `origin`; the refusal's status otherwise.
    async fn websocket(&self, path: &str, cookie: &str, origin: &str) -> Result<Ws, StatusCode> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let tls = self.tls.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
        let mut req = format!("wss://localhost:{}{path}", self.addr.port()).into_client_request().unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        req.headers_mut().insert("origin", origin.parse().unwrap());
        match tokio_tungstenite::client_async(req, tls).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status()),
            Err(e) => panic!("WebSocket: {e}"),
        }
    }

    /// Logs in: the `Cookie` header value and the CSRF token.
    async fn login(&self, user: &str, password: &str) -> (String, String) {
        let t = Instant::now();
        let a = self.send(Method::POST, "/v1/session", &[], &login_body(user, password)).await;
        eprintln!("login of {user} took {:?}", t.elapsed());
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let set = a.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
        let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
        for want in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(attrs.contains(&want), "{set}");
        }
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["user"], user);
        (attrs[0].to_string(), v["csrf_token"].as_str().unwrap().to_string())
    }
}

fn login_body(user: &str, password: &str) -> String {
    serde_json::json!({"user": user, "password": password}).to_string()
}

fn cert_of(state: &Path) -> PathBuf {
    state.join("tls/cert.pem")
}

fn fingerprint_of(pem: &Path) -> String {
    use sha2::Digest;
    let der = CertificateDer::from_pem_file(pem).unwrap();
    sha2::Sha256::digest(der.as_ref()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

const VM: &str = r#"{"name":"web","memory_mib":64,"vcpus":1}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_api_to_users_sessions_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let port = free_port();
    let _d = start(&state, port, "");

    // The generated certificate: its key private, its fingerprint in the log.
    let key = state.join("tls/key.pem");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let log = std::fs::read_to_string(state.with_extension("log")).unwrap();
    assert!(log.contains(&fingerprint_of(&cert_of(&state))), "{log}");
    let c = Client::new(&cert_of(&state), port);

    // No credentials: 401, for reads too.
    let a = c.send(Method::GET, "/v1/vms", &[], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(a.headers.get("x-frame-options").unwrap(), "DENY");

    // Users, made over the socket.
    let (code, out, err) = vmctl_stdin(
        &state,
        &["user", "add", "alice", "--role", "admin", "--password-stdin"],
        "correct horse\n",
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = vmctl_stdin(
        &state,
        &["user", "add", "bob", "--role", "operator", "--password-stdin"],
        "battery staple\n",
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) =
        vmctl_stdin(&state, &["user", "add", "carol", "--role", "operator", "--password-stdin"], "short\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("password: it has 5 characters; choose one of at least 8"), "{err}");
    let (code, _, err) = vmctl_stdin(
        &state,
        &["user", "add", "Carol", "--role", "admin", "--password-stdin"],
        "long enough\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("name: \"Carol\" is not a valid name"), "{err}");
    let (code, _, err) = vmctl_stdin(
        &state,
        &["user", "add", "alice", "--role", "admin", "--password-stdin"],
        "long enough\n",
    );
    assert_eq!(code, 4, "{err}");
    let (code, out, _) = vmctl(&state, &["user", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("alice") && out.contains("admin") && out.contains("bob") && out.contains("operator"),
        "{out}"
    );
    assert!(!out.contains("argon2"), "{out}");
    let (_, out, _) = vmctl(&state, &["--json", "user", "list"]);
    assert!(!out.contains("argon2") && !out.contains("hash"), "{out}");
    let users = state.join("users.json");
    assert_eq!(std::fs::metadata(&users).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(text.contains("$argon2id$") && !text.contains("correct horse"), "{text}");
    let temps = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .count();
    assert_eq!(temps, 0, "a temporary file was left");

    // Wrong password: 401.
    let a = c.send(Method::POST, "/v1/session", &[], &login_body("alice", "wrong horse")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // An admin's session: reads with the cookie; writes need the CSRF token.
    let (cookie, csrf) = c.login("alice", "correct horse").await;
    let ck = ("cookie", cookie.as_str());
    assert_eq!(c.send(Method::GET, "/v1/vms", &[ck], "").await.status, StatusCode::OK);
    let a = c.send(Method::POST, "/v1/vms", &[ck], VM).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.error().contains("X-CSRF-Token"), "{}", a.body);
    let with = [ck, ("x-csrf-token", csrf.as_str())];
    let a =
        c.send(Method::POST, "/v1/vms", &[with[0], with[1], ("origin", "https://evil.example")], VM).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    let a = c.send(Method::POST, "/v1/vms", &with, VM).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);

    // An operator may start and stop, not define.
    let (bcookie, bcsrf) = c.login("bob", "battery staple").await;
    let b = [("cookie", bcookie.as_str()), ("x-csrf-token", bcsrf.as_str())];
    let a = c.send(Method::POST, "/v1/vms/web/start", &b, "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let a = c.send(Method::POST, "/v1/vms", &b, r#"{"name":"other","memory_mib":64,"vcpus":1}"#).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.error().contains("role operator") && a.error().contains("needs the role admin"), "{}", a.body);

    // The console is an upgrade: it works over TLS too.
    let req = c.request(
        Method::GET,
        "/v1/vms/web/console",
        &[b[0], ("connection", "Upgrade"), ("upgrade", "vmctl-console")],
        "",
    );
    let resp = c.send_raw(req).await;
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
    read_until(&mut io, "login: ").await;
    io.write_all(b"root\r").await.unwrap();
    read_until(&mut io, "root").await;
    drop(io);

    // The same console as a WebSocket, as a browser opens it: with the cookie and the page's
    // origin; from another origin it is refused.
    let origin = format!("https://localhost:{port}");
    let mut ws = c.websocket("/v1/vms/web/console", &bcookie, &origin).await.unwrap();
    ws_read_until(&mut ws, "login: ").await;
    ws.send(tokio_tungstenite::tungstenite::Message::text("admin\r")).await.unwrap();
    ws_read_until(&mut ws, "admin").await;
    drop(ws);
    let refused = c.websocket("/v1/vms/web/console", &bcookie, "https://evil.example").await.err().unwrap();
    assert_eq!(refused, StatusCode::FORBIDDEN);

    let a = c.send(Method::POST, "/v1/vms/web/destroy", &b, "").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    // A token: no cookie, no CSRF token; refused once deleted.
    let (code, secret, err) = vmctl(&state, &["token", "add", "ci", "--role", "operator"]);
    assert_eq!(code, 0, "{err}");
    let secret = secret.trim().to_string();
    assert!(secret.starts_with("rvmm_"), "{secret}");
    assert!(!std::fs::read_to_string(&users).unwrap().contains(&secret));
    let bearer = format!("Bearer {secret}");
    let t = [("authorization", bearer.as_str())];
    assert_eq!(c.send(Method::GET, "/v1/vms", &t, "").await.status, StatusCode::OK);
    assert_eq!(c.send(Method::POST, "/v1/vms/web/start", &t, "").await.status, StatusCode::OK);
    assert_eq!(c.send(Method::POST, "/v1/vms/web/destroy", &t, "").await.status, StatusCode::OK);
    let (_, out, _) = vmctl(&state, &["token", "list"]);
    assert!(out.contains("ci") && !out.contains(&secret), "{out}");
    assert_eq!(vmctl(&state, &["token", "del", "ci"]).0, 0);
    assert_eq!(c.send(Method::GET, "/v1/vms", &t, "").await.status, StatusCode::UNAUTHORIZED);

    // A deleted user's session ends; a logged-out one too.
    assert_eq!(vmctl(&state, &["user", "del", "bob"]).0, 0);
    assert_eq!(c.send(Method::GET, "/v1/vms", &b[..1], "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(c.send(Method::DELETE, "/v1/session", &with, "").await.status, StatusCode::NO_CONTENT);
    assert_eq!(c.send(Method::GET, "/v1/vms", &[ck], "").await.status, StatusCode::UNAUTHORIZED);

    // Five quick failures, then 429 with Retry-After, even with the right password.
    for _ in 0..5 {
        let a = c.send(Method::POST, "/v1/session", &[], &login_body("alice", "guess guess")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }
    let a = c.send(Method::POST, "/v1/session", &[], &login_body("alice", "correct horse")).await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    let retry: u64 = a.headers.get(header::RETRY_AFTER).unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry), "{retry}");

    // The audit log names who did what from where.
    let audit = std::fs::read_to_string(state.join("audit.log")).unwrap();
    let lines: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let has = |f: &dyn Fn(&serde_json::Value) -> bool| lines.iter().any(f);
    assert!(has(&|l| l["via"] == "https"
        && l["user"] == "alice"
        && l["path"] == "/v1/vms"
        && l["status"] == 201));
    assert!(has(&|l| l["user"] == "bob" && l["path"] == "/v1/vms/web/start" && l["from"] == "127.0.0.1"));
    assert!(has(&|l| l["token"] == "ci" && l["path"] == "/v1/vms/web/destroy" && l["status"] == 200));
    assert!(has(&|l| l["via"] == "socket" && l["path"] == "/v1/users" && l["uid"] == 0));
    assert!(has(&|l| l["path"] == "/v1/session" && l["user"] == "alice" && l["status"] == 429));
    assert!(!audit.contains("correct horse") && !audit.contains(&secret));
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn ws_read_until(ws: &mut Ws, want: &str) {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(want) {
        let msg = tokio::time::timeout_at(deadline.into(), ws.next()).await.expect("console output");
        match msg.expect("the WebSocket closed").unwrap() {
            tokio_tungstenite::tungstenite::Message::Binary(b) => got.extend_from_slice(&b),
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn read_until<S: AsyncReadExt + Unpin>(s: &mut S, want: &str) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(want) {
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut buf))
            .await
            .expect("console output")
            .unwrap();
        assert!(n > 0, "console closed before {want:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_kept_across_restarts_and_a_given_one_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let port = free_port();
    let d = start(&state, port, "");
    let pem = std::fs::read(cert_of(&state)).unwrap();
    let c = Client::new(&cert_of(&state), port);
    assert_eq!(c.send(Method::GET, "/v1/vms", &[], "").await.status, StatusCode::UNAUTHORIZED);
    drop(d);

    let _d = start(&state, port, "");
    assert_eq!(std::fs::read(cert_of(&state)).unwrap(), pem, "a new certificate was made");
    assert_eq!(c.send(Method::GET, "/v1/vms", &[], "").await.status, StatusCode::UNAUTHORIZED);
    drop(_d);

    // The administrator's own certificate and key.
    let own = dir.path().join("own");
    std::fs::create_dir(&own).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(own.join("c.pem"), ck.cert.pem()).unwrap();
    std::fs::write(own.join("k.pem"), ck.key_pair.serialize_pem()).unwrap();
    let extra = format!(r#", "cert": {:?}, "key": {:?}"#, own.join("c.pem"), own.join("k.pem"));
    let _d = start(&state, port, &extra);
    let c = Client::new(&own.join("c.pem"), port);
    assert_eq!(c.send(Method::GET, "/v1/vms", &[], "").await.status, StatusCode::UNAUTHORIZED);
    let log = std::fs::read_to_string(state.with_extension("log")).unwrap();
    assert!(log.contains(&fingerprint_of(&own.join("c.pem"))), "{log}");
}

#[test]
fn a_bad_https_setting_stops_the_daemon_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("vmctld.json"), r#"{"https": {"listen": "localhost"}}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vmctld")).arg("--state-dir").arg(&state).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("https.listen: \"localhost\" is not an address and port"), "{err}");
}
