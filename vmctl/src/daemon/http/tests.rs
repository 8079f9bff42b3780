// SPDX-License-Identifier: Apache-2.0
//! Tests of the API handlers, in process (tower `oneshot`), with the fake VMM from
//! `examples/fake_vmm.rs` where a VM must run.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vmdef::validate::HostLimits;

use super::*;
use crate::api::VmInfo;
use crate::daemon::Config;

/// The fake VMM example, built by `cargo test` next to the test binaries.
pub(crate) fn fake_vmm() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join("fake_vmm")
}

struct Env {
    _dir: tempfile::TempDir,
    daemon: Arc<Daemon>,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        state_dir: dir.path().to_path_buf(),
        vmm: fake_vmm(),
        host: HostLimits { memory_mib: 4096, cpus: 4 },
        start_timeout: Duration::from_secs(10),
        stop_timeout: Duration::from_secs(5),
        extra_vmm_args: Vec::new(),
    };
    Env { daemon: Daemon::open(cfg).unwrap(), _dir: dir }
}

async fn call(
    d: &Arc<Daemon>,
    method: Method,
    uri: &str,
    ctype: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = ctype {
        req = req.header("content-type", ct);
    }
    let resp = router(d.clone()).oneshot(req.body(Body::from(body.to_string())).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

const JSON_DEF: &str = r#"{"name": "web", "memory_mib": 64, "vcpus": 1}"#;

fn error_of(body: &str) -> String {
    serde_json::from_str::<ErrorBody>(body).unwrap().error
}

#[tokio::test]
async fn define_list_get_and_undefine() {
    let e = env();
    let d = &e.daemon;
    let (s, body) = call(d, Method::POST, "/v1/vms", Some("application/json"), JSON_DEF).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let info: VmInfo = serde_json::from_str(&body).unwrap();
    assert_eq!((info.name.as_str(), info.state), ("web", vmdef::store::RunState::Shutoff));
    assert!(e.daemon.store().has_def(&"web".parse().unwrap()));

    let (s, body) = call(d, Method::GET, "/v1/vms", None, "").await;
    assert_eq!(s, StatusCode::OK);
    let list: Vec<VmInfo> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), 1);

    let (s, body) = call(d, Method::GET, "/v1/vms/web", None, "").await;
    assert_eq!(s, StatusCode::OK);
    let detail: crate::api::VmDetail = serde_json::from_str(&body).unwrap();
    assert_eq!(detail.definition.memory_mib, 64);

    let (s, xml) = call(d, Method::GET, "/v1/vms/web/xml", None, "").await;
    assert_eq!(s, StatusCode::OK);
    assert!(xml.contains("<name>web</name>"), "{xml}");

    let (s, _) = call(d, Method::DELETE, "/v1/vms/web", None, "").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = call(d, Method::GET, "/v1/vms/web", None, "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(error_of(&body).contains("web"));
    assert!(!e.daemon.store().has_def(&"web".parse().unwrap()));
}

#[tokio::test]
async fn define_from_xml_and_round_trip() {
    let e = env();
    let d = &e.daemon;
    call(d, Method::POST, "/v1/vms", None, JSON_DEF).await;
    let (_, xml) = call(d, Method::GET, "/v1/vms/web/xml", None, "").await;
    let (s, _) = call(d, Method::DELETE, "/v1/vms/web", None, "").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = call(d, Method::POST, "/v1/vms", Some("application/xml"), &xml).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (_, xml2) = call(d, Method::GET, "/v1/vms/web/xml", None, "").await;
    assert_eq!(xml, xml2);
}

#[tokio::test]
async fn bad_definitions_are_400_with_position_and_change_nothing() {
    let e = env();
    let d = &e.daemon;
    let (s, body) =
        call(d, Method::POST, "/v1/vms", None, "{\"name\": \"a\",\n \"memory_mib\": \"x\"}").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("line 2"), "{body}");
    let (s, body) =
        call(d, Method::POST, "/v1/vms", Some("text/xml"), "<domain type='kvm'><bogus/></domain>").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("line 1"), "{body}");
    let (s, _) = call(d, Method::POST, "/v1/vms", Some("text/plain"), JSON_DEF).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, body) = call(d, Method::POST, "/v1/vms", None, r#"{"name":"a","memory_mib":1,"vcpus":1}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("memory_mib"), "{body}");
    let (s, body) =
        call(d, Method::POST, "/v1/vms", None, r#"{"name":"a","memory_mib":999999,"vcpus":1}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(std::fs::read_dir(e.daemon.store().vms_dir()).unwrap().next().is_none());
    let (s, _) = call(d, Method::GET, "/v1/vms/..", None, "").await;
    assert!(s == StatusCode::BAD_REQUEST || s == StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn name_conflict_is_409_and_put_cannot_rename() {
    let e = env();
    let d = &e.daemon;
    assert_eq!(call(d, Method::POST, "/v1/vms", None, JSON_DEF).await.0, StatusCode::CREATED);
    // Same name, new UUID: another VM.
    let (s, body) = call(d, Method::POST, "/v1/vms", None, JSON_DEF).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    // Same name and UUID: a redefinition.
    let (_, body) = call(d, Method::GET, "/v1/vms/web", None, "").await;
    let mut def = serde_json::from_str::<crate::api::VmDetail>(&body).unwrap().definition;
    def.memory_mib = 128;
    let (s, body) = call(d, Method::PUT, "/v1/vms/web", None, &def.to_json().unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<VmInfo>(&body).unwrap().memory_mib, 128);
    def.name = "other".parse().unwrap();
    let (s, _) = call(d, Method::PUT, "/v1/vms/web", None, &def.to_json().unwrap()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(d, Method::PUT, "/v1/vms/other", None, &def.to_json().unwrap()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn actions_check_state() {
    let e = env();
    let d = &e.daemon;
    call(d, Method::POST, "/v1/vms", None, JSON_DEF).await;
    for action in ["shutdown", "destroy", "reset", "pause", "resume", "reboot"] {
        let (s, body) = call(d, Method::POST, &format!("/v1/vms/web/{action}"), None, "").await;
        assert_eq!(s, StatusCode::CONFLICT, "{action}: {body}");
    }
    assert_eq!(call(d, Method::POST, "/v1/vms/web/fly", None, "").await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(d, Method::POST, "/v1/vms/nope/start", None, "").await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(d, Method::GET, "/v1/nothing", None, "").await.0, StatusCode::NOT_FOUND);
    // The console needs the upgrade headers, and a running VM.
    assert_eq!(call(d, Method::GET, "/v1/vms/web/console", None, "").await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unsupported_devices_fail_start_naming_the_device() {
    let e = env();
    let d = &e.daemon;
    let def = r#"{"name":"n","memory_mib":64,"vcpus":1,
        "interfaces":[{"source":{"bridge":"br0"},"model":"e1000","mac":"52:54:00:00:00:07"}]}"#;
    assert_eq!(call(d, Method::POST, "/v1/vms", None, def).await.0, StatusCode::CREATED);
    let (s, body) = call(d, Method::POST, "/v1/vms/n/start", None, "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("interfaces[0] (52:54:00:00:00:07)"), "{body}");
}

#[tokio::test]
async fn start_pause_resume_reset_destroy_with_the_fake_vmm() {
    let e = env();
    let d = &e.daemon;
    call(d, Method::POST, "/v1/vms", None, JSON_DEF).await;
    let (s, body) = call(d, Method::POST, "/v1/vms/web/start", None, "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let info: VmInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(info.state, vmdef::store::RunState::Running);
    let pid = info.pid.unwrap();
    assert!(crate::process::is_alive(pid, None));
    assert_eq!(call(d, Method::POST, "/v1/vms/web/start", None, "").await.0, StatusCode::CONFLICT);
    assert_eq!(call(d, Method::DELETE, "/v1/vms/web", None, "").await.0, StatusCode::CONFLICT);
    let (_, body) = call(d, Method::POST, "/v1/vms/web/pause", None, "").await;
    assert_eq!(serde_json::from_str::<VmInfo>(&body).unwrap().state, vmdef::store::RunState::Paused);
    let (_, body) = call(d, Method::POST, "/v1/vms/web/resume", None, "").await;
    assert_eq!(serde_json::from_str::<VmInfo>(&body).unwrap().state, vmdef::store::RunState::Running);
    assert_eq!(call(d, Method::POST, "/v1/vms/web/reset", None, "").await.0, StatusCode::OK);
    let (s, body) = call(d, Method::POST, "/v1/vms/web/destroy", None, "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let info: VmInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(info.state, vmdef::store::RunState::Shutoff);
    assert!(info.exit_reason.unwrap().contains("stop"));
    assert!(!crate::process::is_alive(pid, None));
}

#[tokio::test]
async fn openapi_document_matches_docs_and_routes() {
    let e = env();
    let (s, body) = call(&e.daemon, Method::GET, "/openapi.json", None, "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, OPENAPI);
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    assert_eq!(
        std::fs::read_to_string(docs).unwrap(),
        OPENAPI,
        "docs/openapi.json differs from vmctl/src/openapi.json; copy it over"
    );
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = 0;
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            assert!(ROUTES.contains(&(method.as_str(), path.as_str())), "{method} {path} is not served");
            documented += 1;
        }
    }
    assert_eq!(documented, ROUTES.len(), "a route is not documented");
}
