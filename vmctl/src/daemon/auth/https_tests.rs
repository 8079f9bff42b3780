// SPDX-License-Identifier: Apache-2.0
//! Tests of the middleware for requests that came over HTTPS: tokens, sessions, CSRF, origin,
//! the role check and the audit log, in process.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::tests::{audit_lines, env, error_of, Env, DEF};
use super::*;

const FROM: &str = "127.0.0.1:40000";

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn https(e: &Env, method: Method, uri: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut b = Request::builder().method(method).uri(uri).header(header::HOST, "localhost:8443");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Body::from(body.to_string())).unwrap();
    req.extensions_mut().insert(HttpsClient(FROM.parse().unwrap()));
    let resp = e.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Answer { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

/// Adds a user as root over the socket.
async fn add_user(e: &Env, name: &str, role: AccountRole) {
    let req = serde_json::json!({"name": name, "role": role, "password": "correct horse"}).to_string();
    let mut r = Request::builder().method(Method::POST).uri("/v1/users").body(Body::from(req)).unwrap();
    r.extensions_mut().insert(ConnectInfo(PeerInfo(Some(Peer {
        uid: 0,
        gid: 0,
        pid: None,
        groups: vec![],
    }))));
    let resp = e.app.clone().oneshot(r).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

/// Logs in: the cookie header to send and the CSRF token.
async fn login(e: &Env, user: &str) -> (String, String) {
    let body = format!(r#"{{"user": "{user}", "password": "correct horse"}}"#);
    let a = https(e, Method::POST, "/v1/session", &[], &body).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let cookie = a.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_string();
    let info: crate::api::SessionInfo = serde_json::from_str(&a.body).unwrap();
    assert_eq!(info.user, user);
    (pair, info.csrf_token.unwrap())
}

#[tokio::test]
async fn https_requests_need_a_session_or_a_token() {
    let e = env();
    let a = https(&e, Method::GET, "/v1/vms", &[], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(error_of(&a.body).contains("POST /v1/session"), "{}", a.body);
    assert!(a.headers.contains_key(header::WWW_AUTHENTICATE));
    let a = https(&e, Method::GET, "/v1/vms", &[("cookie", "rvmm_session=00")], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(error_of(&a.body).contains("log in again"), "{}", a.body);
    let a = https(&e, Method::GET, "/v1/vms", &[("authorization", "Bearer rvmm_nope")], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = https(&e, Method::GET, "/v1/vms", &[("authorization", "Basic YTpi")], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = https(&e, Method::POST, "/v1/session", &[], r#"{"user": "x", "password": "yyyyyyyy"}"#).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&a.body), "Wrong user name or password.");
    let lines = audit_lines(&e);
    let last = lines.last().unwrap();
    assert_eq!(
        (last["via"].as_str(), last["from"].as_str(), last["user"].as_str()),
        (Some("https"), Some("127.0.0.1"), Some("x"))
    );
    assert_eq!(last["status"], 401);
}

#[tokio::test]
async fn sessions_need_the_csrf_token_and_the_same_origin() {
    let e = env();
    add_user(&e, "alice", AccountRole::Admin).await;
    let (cookie, csrf) = login(&e, "alice").await;
    let c = [("cookie", cookie.as_str())];
    assert_eq!(https(&e, Method::GET, "/v1/vms", &c, "").await.status, StatusCode::OK);
    let who = https(&e, Method::GET, "/v1/session", &c, "").await;
    let info: crate::api::SessionInfo = serde_json::from_str(&who.body).unwrap();
    assert_eq!((info.user.as_str(), info.role.as_str(), info.auth.as_str()), ("alice", "admin", "session"));
    assert_eq!(info.csrf_token.as_deref(), Some(csrf.as_str()));

    let a = https(&e, Method::POST, "/v1/vms", &c, DEF).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        error_of(&a.body).contains("X-CSRF-Token") && error_of(&a.body).contains("missing"),
        "{}",
        a.body
    );
    let wrong = [c[0], ("x-csrf-token", "0000")];
    assert!(error_of(&https(&e, Method::POST, "/v1/vms", &wrong, DEF).await.body).contains("wrong"));
    let ok = [c[0], ("x-csrf-token", csrf.as_str())];
    let evil = [c[0], ok[1], ("origin", "https://evil.example")];
    let a = https(&e, Method::POST, "/v1/vms", &evil, DEF).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(error_of(&a.body).contains("origin https://evil.example"), "{}", a.body);
    let cross = [c[0], ok[1], ("sec-fetch-site", "cross-site")];
    assert_eq!(https(&e, Method::POST, "/v1/vms", &cross, DEF).await.status, StatusCode::FORBIDDEN);
    let same = [c[0], ok[1], ("origin", "https://localhost:8443"), ("sec-fetch-site", "same-origin")];
    let a = https(&e, Method::POST, "/v1/vms", &same, DEF).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    // A login from another site is refused too.
    let a = https(&e, Method::POST, "/v1/session", &[("origin", "https://evil.example")], "{}").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    // Logging out needs the token; afterwards the cookie is worthless.
    assert_eq!(https(&e, Method::DELETE, "/v1/session", &c, "").await.status, StatusCode::FORBIDDEN);
    let a = https(&e, Method::DELETE, "/v1/session", &ok, "").await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(a.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(https(&e, Method::GET, "/v1/vms", &c, "").await.status, StatusCode::UNAUTHORIZED);

    let lines = audit_lines(&e);
    let created = lines.iter().find(|l| l["status"] == 201 && l["path"] == "/v1/vms").unwrap();
    assert_eq!((created["user"].as_str(), created["via"].as_str()), (Some("alice"), Some("https")));
    assert!(lines.iter().any(|l| l["method"] == "DELETE" && l["status"] == 204 && l["user"] == "alice"));
}

#[tokio::test]
async fn operators_and_tokens_go_through_the_same_role_check() {
    let e = env();
    add_user(&e, "bob", AccountRole::Operator).await;
    let (cookie, csrf) = login(&e, "bob").await;
    let ok = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let a = https(&e, Method::POST, "/v1/vms", &ok, DEF).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        error_of(&a.body),
        "The web user bob has the role operator, which may read, open consoles and start, shut down, \
         reboot, destroy, pause or resume VMs; POST /v1/vms needs the role admin."
    );
    // Nor secrets.
    let a = https(&e, Method::GET, "/v1/vms/web?security_info=true", &ok, "").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        error_of(&a.body).contains("may not read secrets") && error_of(&a.body).contains("role admin"),
        "{}",
        a.body
    );
    // Not the users: operators may not even list them.
    assert_eq!(https(&e, Method::GET, "/v1/users", &ok, "").await.status, StatusCode::FORBIDDEN);
    // A power operation passes the role check (there is no such VM: 404, not 403).
    assert_eq!(https(&e, Method::POST, "/v1/vms/web/start", &ok, "").await.status, StatusCode::NOT_FOUND);

    // Tokens: made over the socket by root.
    let mut r = Request::builder()
        .method(Method::POST)
        .uri("/v1/tokens")
        .body(Body::from(r#"{"name": "ci", "role": "operator"}"#))
        .unwrap();
    r.extensions_mut().insert(ConnectInfo(PeerInfo(Some(Peer {
        uid: 0,
        gid: 0,
        pid: None,
        groups: vec![],
    }))));
    let resp = e.app.clone().oneshot(r).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let t: crate::api::CreatedToken =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let bearer = format!("Bearer {}", t.secret);
    let auth = [("authorization", bearer.as_str())];
    assert_eq!(https(&e, Method::GET, "/v1/vms", &auth, "").await.status, StatusCode::OK);
    // No CSRF token needed (a token is not sent by browsers on their own).
    assert_eq!(https(&e, Method::POST, "/v1/vms/web/start", &auth, "").await.status, StatusCode::NOT_FOUND);
    let a = https(&e, Method::POST, "/v1/vms", &auth, DEF).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(error_of(&a.body).starts_with("The API token ci has the role operator"), "{}", a.body);
    let lines = audit_lines(&e);
    assert!(
        lines.iter().any(|l| l["token"] == "ci" && l["status"] == 403 && l["via"] == "https"),
        "{lines:?}"
    );
}
