// SPDX-License-Identifier: Apache-2.0
//! Tests of the role decision and of the middleware, in process.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

const GROUPS: &str = "root:x:0:\nvmctl-admin:x:990:alice\nvmctl:x:991:bob,carol\nstaff:x:50:\n";
const PASSWD: &str = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/:/bin/sh\nbob:x:1001:1001::/:/bin/sh\n\
                      dave:x:1003:991::/:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n";

fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
    Peer { uid, gid, pid: Some(1), groups: groups.to_vec() }
}

#[test]
fn roles_from_uid_and_groups() {
    assert_eq!(role_of(&peer(0, 0, &[]), Some("root"), GROUPS, 0), Role::Admin);
    // By the member list, by a supplementary group, by the primary group.
    assert_eq!(role_of(&peer(1000, 1000, &[]), Some("alice"), GROUPS, 0), Role::Admin);
    assert_eq!(role_of(&peer(1005, 1005, &[50, 990]), None, GROUPS, 0), Role::Admin);
    assert_eq!(role_of(&peer(1001, 1001, &[]), Some("bob"), GROUPS, 0), Role::Operator);
    assert_eq!(role_of(&peer(1003, 991, &[]), Some("dave"), GROUPS, 0), Role::Operator);
    assert_eq!(role_of(&peer(1004, 1004, &[991]), None, GROUPS, 0), Role::Operator);
    assert_eq!(role_of(&peer(65534, 65534, &[50]), Some("nobody"), GROUPS, 0), Role::None);
    // Without the groups, nobody but root.
    assert_eq!(role_of(&peer(1000, 1000, &[]), Some("alice"), "", 0), Role::None);
    assert_eq!(role_of(&peer(0, 0, &[]), None, "", 0), Role::Admin);
    // A daemon run by alice serves alice fully, and nobody else more than before.
    assert_eq!(role_of(&peer(1000, 1000, &[]), None, "", 1000), Role::Admin);
    assert_eq!(role_of(&peer(1001, 1001, &[]), Some("bob"), GROUPS, 1000), Role::Operator);
    assert_eq!(user_name(PASSWD, 1001).as_deref(), Some("bob"));
    assert_eq!(user_name(PASSWD, 4242), None);
}

#[test]
fn operators_read_use_consoles_and_power_only() {
    let op = Role::Operator;
    for (m, p) in [
        (Method::GET, "/v1/vms"),
        (Method::GET, "/v1/vms/web"),
        (Method::GET, "/v1/vms/web/console"),
        (Method::GET, "/v1/vms/web/stats"),
        (Method::GET, "/v1/vms/web/stats?history=day"),
        (Method::GET, "/v1/vms/web/vnc"),
        (Method::GET, "/v1/events"),
        (Method::GET, "/v1/pools/default/volumes"),
        (Method::POST, "/v1/vms/web/start"),
        (Method::POST, "/v1/vms/web/shutdown"),
        (Method::POST, "/v1/vms/web/reboot"),
        (Method::POST, "/v1/vms/web/destroy"),
        (Method::POST, "/v1/vms/web/pause"),
        (Method::POST, "/v1/vms/web/resume"),
        (Method::GET, "/v1/session"),
        (Method::POST, "/v1/session"),
        (Method::DELETE, "/v1/session"),
    ] {
        assert!(allowed(op, &m, p), "{m} {p}");
        assert!(allowed(Role::Admin, &m, p), "{m} {p}");
        assert!(!allowed(Role::None, &m, p), "{m} {p}");
    }
    for (m, p) in [
        (Method::POST, "/v1/vms"),
        (Method::PUT, "/v1/vms/web"),
        (Method::DELETE, "/v1/vms/web"),
        (Method::POST, "/v1/vms/web/reset"),
        (Method::POST, "/v1/pools"),
        (Method::POST, "/v1/pools/default/volumes"),
        (Method::DELETE, "/v1/pools/default/volumes/a.raw"),
        (Method::POST, "/v1/pools/default/volumes/a.raw/resize"),
        (Method::POST, "/v1/networks/lan/start"),
        (Method::POST, "/v1/vms/web/start/x"),
        (Method::POST, "/v1/vms//start"),
        (Method::GET, "/v1/users"),
        (Method::GET, "/v1/users/"),
        (Method::GET, "/v1/tokens"),
        (Method::POST, "/v1/users"),
        (Method::PUT, "/v1/users/bob/password"),
        (Method::DELETE, "/v1/users/bob"),
        (Method::POST, "/v1/tokens"),
        (Method::DELETE, "/v1/tokens/ci"),
        (Method::PUT, "/v1/session"),
    ] {
        assert!(!allowed(op, &m, p), "{m} {p}");
        assert!(allowed(Role::Admin, &m, p), "{m} {p}");
    }
}

pub(super) struct Env {
    pub(super) dir: tempfile::TempDir,
    pub(super) app: axum::Router,
}

pub(super) fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(dir.path().join("group"), GROUPS).unwrap();
    std::fs::write(dir.path().join("passwd"), PASSWD).unwrap();
    let cfg = crate::daemon::Config {
        state_dir: state.clone(),
        vmm: "/nonexistent/vmm".into(),
        host: vmdef::validate::HostLimits { memory_mib: 4096, cpus: 4 },
        start_timeout: std::time::Duration::from_secs(1),
        stop_timeout: std::time::Duration::from_secs(1),
        extra_vmm_args: Vec::new(),
        host_sysfs: dir.path().join("sys"),
        host_procfs: dir.path().join("proc"),
        settings: crate::daemon::policy::Settings::defaults(&state),
    };
    let daemon = crate::daemon::Daemon::open(cfg).unwrap();
    let audit = Arc::new(Audit::with_databases(
        state.join("audit.log"),
        dir.path().join("group"),
        dir.path().join("passwd"),
    ));
    let accounts = daemon.accounts().clone();
    Env { app: secure(crate::daemon::http::router(daemon), audit, accounts), dir }
}

async fn call(e: &Env, who: Option<Peer>, method: Method, uri: &str, body: &str) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri).body(Body::from(body.to_string())).unwrap();
    req.extensions_mut().insert(ConnectInfo(PeerInfo(who)));
    let resp = e.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub(super) fn error_of(body: &str) -> String {
    serde_json::from_str::<ErrorBody>(body).unwrap_or_else(|_| panic!("not a JSON error: {body}")).error
}

pub(super) fn audit_lines(e: &Env) -> Vec<serde_json::Value> {
    std::fs::read_to_string(e.dir.path().join("state/audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub(super) const DEF: &str = r#"{"name": "web", "memory_mib": 64, "vcpus": 1}"#;

#[tokio::test]
async fn requests_are_authorized_by_peer_and_audited() {
    let e = env();
    let nobody = Some(peer(65534, 65534, &[]));
    let bob = Some(peer(1001, 1001, &[]));
    let root = Some(peer(0, 0, &[]));

    let (s, body) = call(&e, nobody.clone(), Method::GET, "/v1/vms", "").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let msg = error_of(&body);
    assert!(msg.starts_with("User nobody (uid 65534) may not use vmctld") && msg.ends_with('.'), "{msg}");
    let (s, _) = call(&e, None, Method::GET, "/v1/vms", "").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no credentials: refused");

    let (s, body) = call(&e, bob.clone(), Method::POST, "/v1/vms", DEF).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let msg = error_of(&body);
    assert!(
        msg.contains("group vmctl") && msg.contains("POST /v1/vms needs root or the group vmctl-admin"),
        "{msg}"
    );
    assert_eq!(call(&e, bob.clone(), Method::GET, "/v1/vms", "").await.0, StatusCode::OK);

    let (s, body) = call(&e, root.clone(), Method::POST, "/v1/vms", DEF).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    // Secrets (the VNC password: security_info) are for the admin role only.
    assert_eq!(call(&e, bob.clone(), Method::GET, "/v1/vms/web/xml", "").await.0, StatusCode::OK);
    let (s, body) = call(&e, bob.clone(), Method::GET, "/v1/vms/web/xml?security_info=true", "").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(error_of(&body).contains("may not read secrets"), "{body}");
    let (s, _) = call(&e, root.clone(), Method::GET, "/v1/vms/web?security_info=true", "").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        asks_for_secrets(Some("a=b&security_info=true")) && !asks_for_secrets(Some("security_info=false"))
    );
    // An operator may try to start it (the VMM does not exist: a 500, but not a 403) and
    // may not delete it.
    let (s, _) = call(&e, bob.clone(), Method::POST, "/v1/vms/web/start", "").await;
    assert_ne!(s, StatusCode::FORBIDDEN);
    assert_eq!(call(&e, bob.clone(), Method::DELETE, "/v1/vms/web", "").await.0, StatusCode::FORBIDDEN);
    let (s, _) = call(&e, Some(peer(1000, 1000, &[])), Method::DELETE, "/v1/vms/web", "").await;
    assert_eq!(s, StatusCode::NO_CONTENT, "alice is in vmctl-admin");

    let lines = audit_lines(&e);
    let seen: Vec<(String, String, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["user"].as_str().unwrap_or("-").to_string(),
                l["method"].as_str().unwrap().to_string() + " " + l["path"].as_str().unwrap(),
                l["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let want = [
        ("bob", "POST /v1/vms", 403),
        ("root", "POST /v1/vms", 201),
        ("bob", "DELETE /v1/vms/web", 403),
        ("alice", "DELETE /v1/vms/web", 204),
    ];
    for (u, what, status) in want {
        assert!(
            seen.contains(&(u.to_string(), what.to_string(), status)),
            "{u} {what} {status} not in {seen:?}"
        );
    }
    assert!(seen.iter().any(|(u, w, _)| u == "bob" && w == "POST /v1/vms/web/start"));
    assert!(!seen.iter().any(|(_, w, _)| w.starts_with("GET")), "reads are not audited: {seen:?}");
    assert!(lines.iter().all(|l| l["time"].as_u64().is_some() && l["uid"].is_u64()));
}

#[tokio::test]
async fn the_audit_log_is_never_written_through_a_symlink() {
    let e = env();
    let victim = e.dir.path().join("victim");
    std::fs::write(&victim, "keep\n").unwrap();
    std::os::unix::fs::symlink(&victim, e.dir.path().join("state/audit.log")).unwrap();
    let (s, _) = call(&e, Some(peer(0, 0, &[])), Method::POST, "/v1/vms", DEF).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
}
