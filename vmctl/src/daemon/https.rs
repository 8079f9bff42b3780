// SPDX-License-Identifier: Apache-2.0
//! The HTTPS listener: `"https"` of `vmctld.json`, its certificate (the administrator's, or
//! a self-signed one made at the first start), and the accept loop that serves the same
//! router as the socket over TLS.
//!
//! Each connection gets [`HANDSHAKE_TIMEOUT`] for its TLS handshake and [`HEADER_TIMEOUT`]
//! for each request's headers (also while idle between requests); at most [`MAX_CONNECTIONS`]
//! connections are open, [`MAX_PER_ADDRESS`] from one address. Beyond, new connections are
//! closed at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::auth::HttpsClient;

/// Time for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a request's headers, and most idle time between requests.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most HTTPS connections at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Most HTTPS connections from one address at once.
pub const MAX_PER_ADDRESS: usize = 32;
/// Where the generated certificate and key are kept, in the state directory.
pub const GENERATED_DIR: &str = "tls";

/// `"https"` of the configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsFile {
    listen: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// The HTTPS listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsSettings {
    /// Address and port, e.g. `127.0.0.1:8443`.
    pub listen: SocketAddr,
    /// The certificate chain and key files (PEM); `None`: generated.
    pub cert: Option<(PathBuf, PathBuf)>,
}

impl HttpsSettings {
    /// Checks `"https"` of the configuration file; the error names the field.
    pub fn parse(f: HttpsFile) -> Result<HttpsSettings, String> {
        let listen =
            f.listen.ok_or("https.listen: missing; give an address and port such as 127.0.0.1:8443")?;
        let listen: SocketAddr = listen.parse().map_err(|_| {
            format!("https.listen: {listen:?} is not an address and port; write e.g. 127.0.0.1:8443 or [::1]:8443")
        })?;
        let abs = |field: &str, p: PathBuf| {
            crate::safefs::lexical_abs(&p)
                .map(|_| p.clone())
                .ok_or_else(|| format!("https.{field}: {} is not an absolute path without `..`", p.display()))
        };
        let cert = match (f.cert, f.key) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((abs("cert", c)?, abs("key", k)?)),
            (Some(_), None) => {
                return Err("https.key: missing; give the certificate's key too, or neither".into())
            }
            (None, Some(_)) => {
                return Err("https.cert: missing; give the key's certificate too, or neither".into())
            }
        };
        Ok(HttpsSettings { listen, cert })
    }
}

/// The HTTPS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    /// A certificate or key file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key is not usable; the message says which and why.
    #[error("{0}")]
    Certificate(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HttpsError {
    let what = what.into();
    move |source| HttpsError::Io { what, source }
}

/// The SHA-256 fingerprint of a DER certificate, as `openssl x509 -fingerprint -sha256` and
/// browsers show it (`AB:CD:...`).
pub fn fingerprint(der: &[u8]) -> String {
    super::accounts::web::sha256(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// The names the generated certificate is for: `localhost`, `127.0.0.1`, `::1` and the
/// host's name.
fn subject_names() -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    if let Ok(h) = nix::unistd::gethostname() {
        let h = h.to_string_lossy().trim().to_ascii_lowercase();
        let valid = !h.is_empty()
            && h.len() <= 253
            && h.split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if valid && !names.contains(&h) {
            names.push(h);
        }
    }
    names
}

/// Makes a self-signed certificate and key in `dir` (key 0600, written atomically).
fn generate(dir: &Path, cert: &Path, key: &Path) -> Result<(), HttpsError> {
    crate::safefs::ensure_dir(dir, 0o700).map_err(io(format!("create {}", dir.display())))?;
    let bad = |e: rcgen::Error| HttpsError::Certificate(format!("cannot make a certificate: {e}"));
    let mut params = rcgen::CertificateParams::new(subject_names()).map_err(bad)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "vmctld (self-signed)");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = std::time::SystemTime::now();
    params.not_before = (now - Duration::from_secs(24 * 3600)).into();
    params.not_after = (now + Duration::from_secs(10 * 365 * 24 * 3600)).into();
    let key_pair = rcgen::KeyPair::generate().map_err(bad)?;
    let c = params.self_signed(&key_pair).map_err(bad)?;
    crate::safefs::write_atomic(key, key_pair.serialize_pem().as_bytes(), 0o600)
        .map_err(io(format!("write {}", key.display())))?;
    crate::safefs::write_atomic(cert, c.pem().as_bytes(), 0o644)
        .map_err(io(format!("write {}", cert.display())))?;
    Ok(())
}

/// Reads a PEM certificate chain and key.
fn read_pem(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), HttpsError> {
    let certs =
        CertificateDer::pem_file_iter(cert).and_then(|it| it.collect::<Result<Vec<_>, _>>()).map_err(
            |e| HttpsError::Certificate(format!("cannot read the certificate {}: {e}", cert.display())),
        )?;
    if certs.is_empty() {
        return Err(HttpsError::Certificate(format!(
            "{} holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----`)",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        HttpsError::Certificate(format!("cannot read the private key {}: {e}", key.display()))
    })?;
    Ok((certs, key))
}

/// The TLS side of the listener: the acceptor and the certificate's fingerprint.
pub struct Tls {
    /// Accepts TLS connections.
    pub acceptor: TlsAcceptor,
    /// SHA-256 fingerprint of the server certificate.
    pub fingerprint: String,
    /// Where the certificate is.
    pub cert_path: PathBuf,
}

/// Loads the configured certificate, or the generated one (made now if there is none).
pub fn load_tls(settings: &HttpsSettings, state_dir: &Path) -> Result<Tls, HttpsError> {
    let (cert, key) = match &settings.cert {
        Some((c, k)) => (c.clone(), k.clone()),
        None => {
            let dir = state_dir.join(GENERATED_DIR);
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !(c.exists() && k.exists()) {
                generate(&dir, &c, &k)?;
                tracing::info!("made a self-signed certificate for HTTPS in {}", c.display());
            }
            (c, k)
        }
    };
    let (certs, key_der) = read_pem(&cert, &key)?;
    let fingerprint = fingerprint(&certs[0]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpsError::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| {
            HttpsError::Certificate(format!(
                "{} and {} do not make a usable pair: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), fingerprint, cert_path: cert })
}

/// Time and count limits of the HTTPS connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time for a TLS handshake.
    pub handshake: Duration,
    /// Time for a request's headers, and most idle time between requests.
    pub headers: Duration,
    /// Most connections at once.
    pub connections: usize,
    /// Most connections from one address at once.
    pub per_address: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake: HANDSHAKE_TIMEOUT,
            headers: HEADER_TIMEOUT,
            connections: MAX_CONNECTIONS,
            per_address: MAX_PER_ADDRESS,
        }
    }
}

/// Counts open connections, in total and per address.
#[derive(Debug)]
struct Connections {
    limits: Limits,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; dropping it frees its place.
struct Admitted {
    table: Arc<Connections>,
    ip: IpAddr,
}

impl Connections {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut t = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = t.values().sum();
        let n = t.entry(ip).or_insert(0);
        if total >= self.limits.connections || *n >= self.limits.per_address {
            return None;
        }
        *n += 1;
        Some(Admitted { table: self.clone(), ip })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut t = self.table.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = t.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

/// Headers every HTTPS answer gets: no framing by other sites (clickjacking), no content
/// sniffing, no referrer sent on.
fn protect(h: &mut axum::http::HeaderMap) {
    use axum::http::HeaderValue;
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
}

/// Serves `app` (the secured router) over TLS on `listener` within `limits`, until the task
/// is dropped.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, app: Router, limits: Limits) {
    let table = Arc::new(Connections { limits, per_address: Mutex::new(HashMap::new()) });
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, most likely: wait instead of spinning.
                tracing::warn!("HTTPS accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(admitted) = table.admit(addr.ip()) else {
            tracing::warn!("HTTPS connection from {addr} closed: too many connections");
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {addr} failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake with {addr} timed out");
                    return;
                }
            };
            let service =
                hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(HttpsClient(addr));
                    let app = app.clone();
                    async move {
                        let mut resp = tower::ServiceExt::oneshot(app, req).await?;
                        protect(resp.headers_mut());
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.headers)
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!("HTTPS connection from {addr}: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<HttpsSettings, String> {
        HttpsSettings::parse(serde_json::from_str(json).map_err(|e| e.to_string())?)
    }

    #[test]
    fn settings_name_the_field() {
        let s = parse(r#"{"listen": "127.0.0.1:8443"}"#).unwrap();
        assert_eq!(s, HttpsSettings { listen: "127.0.0.1:8443".parse().unwrap(), cert: None });
        let s = parse(r#"{"listen": "[::1]:443", "cert": "/etc/c.pem", "key": "/etc/k.pem"}"#).unwrap();
        assert_eq!(s.cert, Some(("/etc/c.pem".into(), "/etc/k.pem".into())));
        for (json, want) in [
            (r#"{}"#, "https.listen: missing"),
            (r#"{"listen": "localhost"}"#, "https.listen: \"localhost\" is not an address and port"),
            (r#"{"listen": "127.0.0.1:1", "cert": "/c"}"#, "https.key: missing"),
            (r#"{"listen": "127.0.0.1:1", "key": "/k"}"#, "https.cert: missing"),
            (
                r#"{"listen": "127.0.0.1:1", "cert": "c.pem", "key": "/k"}"#,
                "https.cert: c.pem is not an absolute",
            ),
        ] {
            let e = parse(json).unwrap_err();
            assert!(e.starts_with(want), "{json}: {e}");
        }
        assert!(parse(r#"{"listen": "127.0.0.1:1", "port": 1}"#).unwrap_err().contains("port"));
    }

    /// Reads from `s` until the peer closes it (or 5 s pass): whether it was closed.
    async fn closed<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 256];
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
        false
    }

    #[tokio::test]
    async fn idle_and_excess_connections_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let s = HttpsSettings { listen: "127.0.0.1:0".parse().unwrap(), cert: None };
        let tls = load_tls(&s, dir.path()).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let limits = Limits {
            handshake: Duration::from_millis(1500),
            headers: Duration::from_millis(300),
            connections: 8,
            per_address: 2,
        };
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(serve(tcp, tls.acceptor, app, limits));

        // A client that never starts its handshake is dropped after the handshake time.
        let t = std::time::Instant::now();
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed(&mut idle).await);
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(1400) && waited < Duration::from_secs(4), "{waited:?}");

        // A finished handshake without a request: dropped after the header time.
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&tls.cert_path).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let cfg =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut quiet = connector.connect(name.clone(), tcp).await.unwrap();
        assert!(closed(&mut quiet).await);

        // Two connections from one address at most: a third is closed at once (well before
        // the handshake time).
        let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        let t = std::time::Instant::now();
        assert!(closed(&mut third).await);
        assert!(t.elapsed() < Duration::from_millis(1000), "{:?}", t.elapsed());
        drop((_a, _b));
        server.abort();
    }

    #[test]
    fn a_generated_certificate_is_made_once_and_its_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = HttpsSettings { listen: "127.0.0.1:0".parse().unwrap(), cert: None };
        let first = load_tls(&s, dir.path()).unwrap();
        let key = dir.path().join("tls/key.pem");
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        let pem = std::fs::read(&first.cert_path).unwrap();
        let again = load_tls(&s, dir.path()).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        assert_eq!(std::fs::read(&again.cert_path).unwrap(), pem);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        // The administrator's files, named in the configuration, are used as they are.
        let own = HttpsSettings { cert: Some((first.cert_path.clone(), key.clone())), ..s };
        assert_eq!(load_tls(&own, dir.path()).unwrap().fingerprint, first.fingerprint);
        let missing = HttpsSettings { cert: Some((dir.path().join("no.pem"), key)), ..own };
        let e = load_tls(&missing, dir.path()).err().unwrap().to_string();
        assert!(e.contains("cannot read the certificate") && e.contains("no.pem"), "{e}");
    }
}
