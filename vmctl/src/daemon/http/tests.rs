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
        host_sysfs: dir.path().join("sys"),
        host_procfs: dir.path().join("proc"),
        settings: crate::daemon::policy::Settings {
            pool_roots: vec![std::env::temp_dir()],
            ..crate::daemon::policy::Settings::defaults(dir.path())
        },
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
        "interfaces":[{"source":{"bridge":"vmctlnobr0"},"model":"e1000","mac":"52:54:00:00:00:07"}]}"#;
    assert_eq!(call(d, Method::POST, "/v1/vms", None, def).await.0, StatusCode::CREATED);
    let (s, body) = call(d, Method::POST, "/v1/vms/n/start", None, "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("interfaces[0].source.bridge: vmctlnobr0 is not a bridge"), "{body}");
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

fn vm_with_disk(path: &str) -> String {
    format!(
        r#"{{"name":"web","memory_mib":64,"vcpus":1,"disks":[{{"path":"{path}","format":"qcow2","bus":"ide"}}]}}"#
    )
}

#[tokio::test]
async fn pools_are_listed_defined_and_undefined() {
    let e = env();
    let d = &e.daemon;
    let (s, body) = call(d, Method::GET, "/v1/pools", None, "").await;
    assert_eq!(s, StatusCode::OK);
    let pools: Vec<crate::api::PoolInfo> = serde_json::from_str(&body).unwrap();
    assert_eq!(pools.len(), 1);
    assert_eq!(pools[0].name, "default");
    let images = std::fs::canonicalize(e._dir.path().join("images")).unwrap();
    assert_eq!(pools[0].path, images.display().to_string());
    assert!(pools[0].available.is_some());

    let other = tempfile::tempdir().unwrap();
    let def = format!(r#"{{"name":"extra","path":"{}"}}"#, other.path().display());
    let (s, body) = call(d, Method::POST, "/v1/pools", None, &def).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(call(d, Method::POST, "/v1/pools", None, &def).await.0, StatusCode::CONFLICT);
    let (s, body) = call(d, Method::POST, "/v1/pools", None, r#"{"name":"x"}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("path"), "{body}");
    let (s, body) = call(d, Method::GET, "/v1/pools", None, "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Vec<crate::api::PoolInfo>>(&body).unwrap().len(), 2);
    let vol = r#"{"name":"v","size":1048576}"#;
    assert_eq!(call(d, Method::POST, "/v1/pools/extra/volumes", None, vol).await.0, StatusCode::CREATED);
    assert!(other.path().join("v").exists());
    assert_eq!(call(d, Method::DELETE, "/v1/pools/extra", None, "").await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(d, Method::DELETE, "/v1/pools/extra", None, "").await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(d, Method::DELETE, "/v1/pools/default", None, "").await.0, StatusCode::CONFLICT);
    assert_eq!(call(d, Method::GET, "/v1/pools/extra/volumes", None, "").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn volume_create_errors_name_the_field() {
    let e = env();
    let d = &e.daemon;
    let url = "/v1/pools/default/volumes";
    let cases = [
        (r#"{"name":"a","size":"16X"}"#, "size"),
        (r#"{"name":"a","size":1000}"#, "size"),
        (r#"{"name":"a","size":-1}"#, "size"),
        (r#"{"name":"a","size":"1G","format":"vmdk"}"#, "vmdk"),
        (r#"{"name":"a","size":"1G","colour":"red"}"#, "colour"),
        (r#"{"name":"../a","size":"1G"}"#, "volume name"),
        (r#"{"name":".a","size":"1G"}"#, "volume name"),
        ("", "empty"),
    ];
    for (body, want) in cases {
        let (s, resp) = call(d, Method::POST, url, None, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {resp}");
        assert!(error_of(&resp).contains(want), "{body}: {resp}");
    }
    let images = e._dir.path().join("images");
    assert!(std::fs::read_dir(&images).unwrap().next().is_none(), "nothing was created");
    let (s, _) = call(d, Method::POST, "/v1/pools/nope/volumes", None, r#"{"name":"a","size":"1M"}"#).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn volume_lifecycle_with_clones_and_users() {
    let e = env();
    let d = &e.daemon;
    let vols = "/v1/pools/default/volumes";
    let (s, body) =
        call(d, Method::POST, vols, None, r#"{"name":"base.qcow2","size":"16M","format":"qcow2"}"#).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let base: crate::api::VolumeInfo = serde_json::from_str(&body).unwrap();
    assert_eq!((base.format, base.virtual_size), (crate::api::VolFormat::Qcow2, 16 << 20));
    let (s, _) = call(d, Method::POST, vols, None, r#"{"name":"base.qcow2","size":"1M"}"#).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // A VM names it: used_by, and delete needs force.
    let (s, body) = call(d, Method::POST, "/v1/vms", None, &vm_with_disk(&base.path)).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (_, body) = call(d, Method::GET, vols, None, "").await;
    let list: Vec<crate::api::VolumeInfo> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].used_by, ["web"]);
    let (s, body) = call(d, Method::DELETE, &format!("{vols}/base.qcow2"), None, "").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error_of(&body).contains("web"), "{body}");

    // Clone: an overlay; the base becomes a template the VM may not write.
    let (s, body) =
        call(d, Method::POST, &format!("{vols}/base.qcow2/clone"), None, r#"{"name":"web.qcow2"}"#).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let clone: crate::api::VolumeInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(clone.backing_file.as_deref(), Some("base.qcow2"));
    assert_eq!(clone.virtual_size, 16 << 20);
    let (_, body) = call(d, Method::GET, &format!("{vols}/base.qcow2"), None, "").await;
    let base: crate::api::VolumeInfo = serde_json::from_str(&body).unwrap();
    assert_eq!(base.overlays, ["web.qcow2"]);
    let (s, body) = call(d, Method::POST, "/v1/vms/web/start", None, "").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error_of(&body).contains("disks[0].path") && error_of(&body).contains("web.qcow2"), "{body}");

    // The VM moves to its clone and runs: its disk is busy.
    let (_, body) = call(d, Method::GET, "/v1/vms/web", None, "").await;
    let mut def = serde_json::from_str::<crate::api::VmDetail>(&body).unwrap().definition;
    def.disks[0].path = Some(clone.path.clone().into());
    assert_eq!(call(d, Method::PUT, "/v1/vms/web", None, &def.to_json().unwrap()).await.0, StatusCode::OK);
    let (s, body) = call(d, Method::POST, "/v1/vms/web/start", None, "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let resize = r#"{"size":"32M"}"#;
    let (s, body) = call(d, Method::POST, &format!("{vols}/web.qcow2/resize"), None, resize).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error_of(&body).contains("running"), "{body}");
    assert_eq!(
        call(d, Method::DELETE, &format!("{vols}/web.qcow2?force"), None, "").await.0,
        StatusCode::CONFLICT
    );
    let (s, body) = call(d, Method::DELETE, &format!("{vols}/base.qcow2?force=true"), None, "").await;
    assert_eq!(s, StatusCode::CONFLICT, "a running VM reads it through its clone");
    assert!(error_of(&body).contains("web"), "{body}");
    let (s, _) = call(d, Method::POST, &format!("{vols}/web.qcow2/clone"), None, r#"{"name":"c2"}"#).await;
    assert_eq!(s, StatusCode::CONFLICT, "a running VM's disk cannot become a template");
    assert_eq!(call(d, Method::POST, "/v1/vms/web/destroy", None, "").await.0, StatusCode::OK);

    // Stopped: the clone grows, never shrinks; the template does neither.
    let (s, body) = call(d, Method::POST, &format!("{vols}/web.qcow2/resize"), None, resize).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<crate::api::VolumeInfo>(&body).unwrap().virtual_size, 32 << 20);
    let (s, body) =
        call(d, Method::POST, &format!("{vols}/web.qcow2/resize"), None, r#"{"size":"1M"}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("size"), "{body}");
    let (s, body) = call(d, Method::POST, &format!("{vols}/base.qcow2/resize"), None, resize).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error_of(&body).contains("template"), "{body}");
    let (s, body) = call(d, Method::DELETE, &format!("{vols}/base.qcow2"), None, "").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error_of(&body).contains("web.qcow2"), "{body}");
    if let Some(info) = crate::pool::tests::qemu_img("lifecycle", &["info", &clone.path]) {
        assert!(info.contains("backing file: base.qcow2") && info.contains("32 MiB"), "{info}");
        crate::pool::tests::qemu_img("lifecycle", &["check", &clone.path]);
    }

    // Delete: the clone (named by a VM: force), then the freed template.
    assert_eq!(call(d, Method::DELETE, &format!("{vols}/web.qcow2"), None, "").await.0, StatusCode::CONFLICT);
    let (s, body) = call(d, Method::DELETE, &format!("{vols}/web.qcow2?force=maybe"), None, "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        call(d, Method::DELETE, &format!("{vols}/web.qcow2?force"), None, "").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(d, Method::DELETE, &format!("{vols}/base.qcow2"), None, "").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(d, Method::DELETE, &format!("{vols}/base.qcow2"), None, "").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(call(d, Method::POST, &format!("{vols}/x/fly"), None, "{}").await.0, StatusCode::NOT_FOUND);
}

/// A disk whose qcow2 header names a backing file outside every pool defines (the chain is
/// checked when it starts) but does not start: 400, naming the disk and the backing file.
#[tokio::test]
async fn a_disk_backed_by_a_file_outside_the_pools_does_not_start() {
    let e = env();
    let d = &e.daemon;
    let outside = e._dir.path().join("outside.raw");
    std::fs::write(&outside, vec![0u8; 1 << 20]).unwrap();
    let images = std::fs::canonicalize(e._dir.path().join("images")).unwrap();
    let disk = images.join("web.qcow2");
    block::create_qcow2(&disk, 1 << 20, Some((&outside, block::ImageFormat::Raw))).unwrap();
    let (s, body) = call(d, Method::POST, "/v1/vms", None, &vm_with_disk(disk.to_str().unwrap())).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = call(d, Method::POST, "/v1/vms/web/start", None, "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let msg = error_of(&body);
    for part in
        ["disks[0].path", disk.to_str().unwrap(), outside.to_str().unwrap(), "outside every storage pool"]
    {
        assert!(msg.contains(part), "{part} not in: {msg}");
    }
    let (_, body) = call(d, Method::GET, "/v1/vms/web", None, "").await;
    assert!(body.contains("shutoff"), "{body}");
}

const NET: &str =
    r#"{"name": "lan", "ipv4": "10.77.0.1/24", "dhcp": {"start": "10.77.0.100", "end": "10.77.0.199"}}"#;

#[tokio::test]
async fn networks_are_defined_listed_and_undefined() {
    let e = env();
    let (s, body) = call(&e.daemon, Method::POST, "/v1/networks", None, NET).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let info: crate::api::NetInfo = serde_json::from_str(&body).unwrap();
    assert!(
        info.bridge.starts_with("vmbr")
            && !info.active
            && info.dhcp.as_deref() == Some("10.77.0.100-10.77.0.199")
    );
    assert!(e.daemon.store().root().join("networks/lan.json").is_file());
    // XML, a second network on another subnet.
    let xml = "<network><name>r</name><forward mode='route'/><ip address='10.78.0.1' prefix='24'/></network>";
    let (s, body) = call(&e.daemon, Method::POST, "/v1/networks", Some("application/xml"), xml).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s, body) = call(&e.daemon, Method::GET, "/v1/networks", None, "").await;
    assert_eq!(s, StatusCode::OK);
    let list: Vec<crate::api::NetInfo> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["lan", "r"]);
    assert_ne!(list[0].bridge, list[1].bridge);
    // Detail, with the VMs using it.
    let vm = r#"{"name": "web", "memory_mib": 64, "vcpus": 1,
                 "interfaces": [{"source": {"network": "lan"}, "model": "e1000"}]}"#;
    assert_eq!(call(&e.daemon, Method::POST, "/v1/vms", None, vm).await.0, StatusCode::CREATED);
    let (s, body) = call(&e.daemon, Method::GET, "/v1/networks/lan", None, "").await;
    assert_eq!(s, StatusCode::OK);
    let d: crate::api::NetDetail = serde_json::from_str(&body).unwrap();
    assert_eq!(d.info.used_by, ["web"]);
    assert_eq!(d.definition.ipv4.to_string(), "10.77.0.1/24");
    // Starting the VM needs the network started.
    let (s, body) = call(&e.daemon, Method::POST, "/v1/vms/web/start", None, "").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(error_of(&body).contains("interfaces[0].source.network: network lan is not started"), "{body}");
    // Not started: stop is a conflict; leases are empty; autostart toggles.
    assert_eq!(
        call(&e.daemon, Method::POST, "/v1/networks/lan/stop", None, "").await.0,
        StatusCode::CONFLICT
    );
    let (s, body) = call(&e.daemon, Method::GET, "/v1/networks/lan/leases", None, "").await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "[]"));
    let (s, body) =
        call(&e.daemon, Method::POST, "/v1/networks/lan/autostart", None, r#"{"autostart": true}"#).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(serde_json::from_str::<crate::api::NetInfo>(&body).unwrap().autostart);
    let (s, _) = call(&e.daemon, Method::POST, "/v1/networks/lan/autostart", None, "yes").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        call(&e.daemon, Method::POST, "/v1/networks/lan/fly", None, "").await.0,
        StatusCode::NOT_FOUND
    );
    // Undefine.
    assert_eq!(call(&e.daemon, Method::DELETE, "/v1/networks/r", None, "").await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&e.daemon, Method::GET, "/v1/networks/r", None, "").await.0, StatusCode::NOT_FOUND);
    assert!(!e.daemon.store().root().join("networks/r.json").exists());
}

#[tokio::test]
async fn network_errors_name_the_field() {
    let e = env();
    assert_eq!(call(&e.daemon, Method::POST, "/v1/networks", None, NET).await.0, StatusCode::CREATED);
    let cases = [
        (
            r#"{"name": "b", "ipv4": "10.77.0.200/25"}"#,
            StatusCode::CONFLICT,
            "ipv4: 10.77.0.128/25 overlaps 10.77.0.0/24 of network lan",
        ),
        (
            r#"{"name": "b", "bridge": "vmbr-much-too-long", "ipv4": "10.9.0.1/24"}"#,
            StatusCode::BAD_REQUEST,
            "bridge:",
        ),
        (
            r#"{"name": "b", "ipv4": "10.9.0.1/24", "dhcp": {"start": "10.9.1.1", "end": "10.9.0.9"}}"#,
            StatusCode::BAD_REQUEST,
            "dhcp.start:",
        ),
        (r#"{"name": "b", "ipv4": "10.9.0.1"}"#, StatusCode::BAD_REQUEST, "ipv4"),
        (r#"{"name": "b/c", "ipv4": "10.9.0.1/24"}"#, StatusCode::BAD_REQUEST, "name:"),
    ];
    for (body, status, want) in cases {
        let (s, answer) = call(&e.daemon, Method::POST, "/v1/networks", None, body).await;
        assert_eq!(s, status, "{body}: {answer}");
        assert!(error_of(&answer).contains(want), "{body}: {answer}");
    }
    let (s, body) = call(
        &e.daemon,
        Method::POST,
        "/v1/networks",
        Some("application/xml"),
        "<network><name>x</name></network>",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("line 1"), "{body}");
    // A virtio NIC (the default model) on a network that does not exist: refused at start,
    // naming the field.
    let vm = r#"{"name": "v", "memory_mib": 64, "vcpus": 1,
                 "interfaces": [{"source": {"network": "nope"}, "model": "virtio"}]}"#;
    assert_eq!(call(&e.daemon, Method::POST, "/v1/vms", None, vm).await.0, StatusCode::CREATED);
    let (s, body) = call(&e.daemon, Method::POST, "/v1/vms/v/start", None, "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(error_of(&body).contains("interfaces[0].source.network: no network named nope"), "{body}");
}

/// A fake /sys under the daemon's state directory with one device, bound to `driver`, in IOMMU
/// group 7.
fn fake_hostdev(e: &Env, addr: &str, driver: &str) -> std::path::PathBuf {
    use std::os::unix::fs::symlink;
    let sys = e.daemon.cfg.host_sysfs.clone();
    let dev = sys.join("bus/pci/devices").join(addr);
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::create_dir_all(sys.join("kernel/iommu_groups/7/devices")).unwrap();
    symlink(sys.join("kernel/iommu_groups/7"), dev.join("iommu_group")).unwrap();
    let drv = sys.join("bus/pci/drivers").join(driver);
    std::fs::create_dir_all(&drv).unwrap();
    std::fs::create_dir_all(sys.join("bus/pci/drivers/vfio-pci")).unwrap();
    symlink(&drv, dev.join("driver")).unwrap();
    for f in [dev.join("driver_override"), drv.join("unbind"), sys.join("bus/pci/drivers_probe")] {
        std::fs::write(f, "").unwrap();
    }
    std::fs::create_dir_all(&e.daemon.cfg.host_procfs).unwrap();
    sys
}

/// Defines `pt` with the managed host device 0000:00:02.0, already on vfio-pci in the fake
/// sysfs; returns that sysfs.
async fn define_managed_pt(e: &Env) -> std::path::PathBuf {
    let sys = fake_hostdev(e, "0000:00:02.0", "vfio-pci");
    let def = r#"{"name": "pt", "memory_mib": 64, "vcpus": 1,
        "hostdevs": [{"address": "0000:00:02.0", "managed": true}]}"#;
    assert_eq!(call(&e.daemon, Method::POST, "/v1/vms", None, def).await.0, StatusCode::CREATED);
    sys
}

#[tokio::test]
async fn managed_hostdevs_go_back_to_the_host_after_the_vm_stops() {
    let e = env();
    let d = &e.daemon;
    // Already on vfio-pci (the fake kernel binds nothing): start leaves it; stop releases it.
    let sys = define_managed_pt(&e).await;
    let (s, body) = call(d, Method::POST, "/v1/vms/pt/start", None, "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let config = std::fs::read_to_string(d.run_paths(&"pt".parse().unwrap()).config).unwrap();
    assert!(config.contains(r#""vfio": "0000:00:02.0""#), "{config}");
    let unbind = sys.join("bus/pci/drivers/vfio-pci/unbind");
    assert_eq!(std::fs::read_to_string(&unbind).unwrap_or_default(), "", "bound while running");
    let (s, body) = call(d, Method::POST, "/v1/vms/pt/destroy", None, "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let dev = sys.join("bus/pci/devices/0000:00:02.0");
    assert_eq!(std::fs::read_to_string(unbind).unwrap(), "0000:00:02.0");
    assert_eq!(std::fs::read_to_string(dev.join("driver_override")).unwrap(), "\n");
    assert_eq!(std::fs::read_to_string(sys.join("bus/pci/drivers_probe")).unwrap(), "0000:00:02.0");
}

#[tokio::test]
async fn managed_hostdevs_of_a_vm_that_died_while_the_daemon_was_down_go_back() {
    let e = env();
    let d = &e.daemon;
    let sys = define_managed_pt(&e).await;
    // An earlier daemon recorded it running; its vmm has ended since.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let mut rt = vmdef::store::RuntimeState::shutoff();
    rt.state = vmdef::store::RunState::Running;
    rt.pid = Some(pid);
    d.store().save_runtime(&"pt".parse().unwrap(), &rt).unwrap();
    let unbind = sys.join("bus/pci/drivers/vfio-pci/unbind");
    assert_eq!(std::fs::read_to_string(&unbind).unwrap(), "");
    // The next daemon finds it gone and hands the device back to the host.
    let next = Daemon::open(d.cfg.clone()).unwrap();
    next.recover().await;
    assert_eq!(std::fs::read_to_string(&unbind).unwrap(), "0000:00:02.0");
    let (s, body) = call(&next, Method::GET, "/v1/vms/pt", None, "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(!body.contains("\"running\""), "{body}");
}

#[tokio::test]
async fn a_hostdev_in_use_by_another_vm_is_a_conflict() {
    use std::os::unix::fs::symlink;
    let e = env();
    let d = &e.daemon;
    fake_hostdev(&e, "0000:00:03.0", "e1000");
    let fd = d.cfg.host_procfs.join("999/fd");
    std::fs::create_dir_all(&fd).unwrap();
    std::fs::write(d.cfg.host_procfs.join("999/comm"), "vmm\n").unwrap();
    symlink("/dev/vfio/7", fd.join("12")).unwrap();
    let def = r#"{"name": "pt2", "memory_mib": 64, "vcpus": 1, "hostdevs": [{"address": "00:03.0"}]}"#;
    assert_eq!(call(d, Method::POST, "/v1/vms", None, def).await.0, StatusCode::CREATED);
    let (s, body) = call(d, Method::POST, "/v1/vms/pt2/start", None, "").await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let msg = error_of(&body);
    assert!(msg.contains("hostdevs[0] (0000:00:03.0)") && msg.contains("999 (vmm)"), "{msg}");
}

#[tokio::test]
async fn every_error_is_a_json_sentence() {
    let e = env();
    let d = &e.daemon;
    assert_eq!(call(d, Method::POST, "/v1/vms", None, JSON_DEF).await.0, StatusCode::CREATED);
    let big = "x".repeat(3 * 1024 * 1024);
    for (method, uri, body, want) in [
        (Method::GET, "/nope", "", StatusCode::NOT_FOUND),
        (Method::DELETE, "/v1/vms/web/xml", "", StatusCode::METHOD_NOT_ALLOWED),
        (Method::PATCH, "/v1/vms", "", StatusCode::METHOD_NOT_ALLOWED),
        (Method::POST, "/v1/vms/web/shutdown?timeout=soon", "", StatusCode::BAD_REQUEST),
        (Method::POST, "/v1/vms", big.as_str(), StatusCode::PAYLOAD_TOO_LARGE),
        (Method::POST, "/v1/vms/web/fly", "", StatusCode::NOT_FOUND),
    ] {
        let (s, body) = call(d, method.clone(), uri, None, body).await;
        assert_eq!(s, want, "{method} {uri}: {body}");
        let err = serde_json::from_str::<ErrorBody>(&body)
            .unwrap_or_else(|_| panic!("{method} {uri}: not JSON: {body}"))
            .error;
        assert!(!err.is_empty() && err.contains(' '), "{method} {uri}: {err}");
    }
    let (_, body) = call(d, Method::DELETE, "/v1/vms/web/xml", None, "").await;
    assert!(error_of(&body).contains("DELETE is not allowed on /v1/vms/web/xml"), "{body}");
    let (_, body) = call(d, Method::GET, "/nope", None, "").await;
    assert_eq!(error_of(&body), "There is no API path /nope; see /openapi.json.");
    let (_, body) = call(d, Method::POST, "/v1/vms/web/fly", None, "").await;
    assert!(error_of(&body).starts_with("There is no VM action fly;"), "{body}");
}

#[tokio::test]
async fn stats_give_current_counters_rates_and_history() {
    use crate::api::VmStatsReport;
    let e = env();
    let d = &e.daemon;
    call(d, Method::POST, "/v1/vms", None, JSON_DEF).await;
    // Shut off: the state only.
    let (s, body) = call(d, Method::GET, "/v1/vms/web/stats", None, "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let r: VmStatsReport = serde_json::from_str(&body).unwrap();
    assert_eq!(r.state, vmdef::store::RunState::Shutoff);
    assert!(r.current.is_none() && r.rates.is_none() && r.error.is_none());
    assert_eq!(call(d, Method::GET, "/v1/vms/nope/stats", None, "").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        call(d, Method::GET, "/v1/vms/web/stats?history=week", None, "").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(call(d, Method::POST, "/v1/vms/web/start", None, "").await.0, StatusCode::OK);
    // Two sampler rounds a little apart: a baseline, then rates.
    d.sample_stats().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.sample_stats().await;
    let (s, body) = call(d, Method::GET, "/v1/vms/web/stats?history=hour", None, "").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let r: VmStatsReport = serde_json::from_str(&body).unwrap();
    let current = r.current.expect("the fake vmm answers stats");
    assert_eq!(current.disks[0].id, "vda");
    assert!(current.disks[0].rd_bytes > 0 && current.cpu_time_ns > 0);
    assert_eq!((r.interval, r.history.len()), (Some(10), 1));
    let rates = r.rates.unwrap();
    // The fake vmm reads 1 MiB/s and uses 0.6 CPU.
    assert!(rates.rd_bytes_per_s > 500_000.0 && rates.rd_bytes_per_s < 2_000_000.0, "{rates:?}");
    assert!(rates.cpu_percent > 30.0 && rates.cpu_percent < 120.0, "{rates:?}");
    let (_, body) = call(d, Method::GET, "/v1/vms/web/stats?history=day", None, "").await;
    let r: VmStatsReport = serde_json::from_str(&body).unwrap();
    assert_eq!(r.interval, Some(60));
    let (_, body) = call(d, Method::GET, "/v1/vms/web/stats", None, "").await;
    assert!(!body.contains("history") && !body.contains("interval"), "{body}");
    // A restarted VMM starts its counters at zero: the next rate is not negative.
    call(d, Method::POST, "/v1/vms/web/destroy", None, "").await;
    call(d, Method::POST, "/v1/vms/web/start", None, "").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    d.sample_stats().await;
    let (_, body) = call(d, Method::GET, "/v1/vms/web/stats?history=hour", None, "").await;
    let r: VmStatsReport = serde_json::from_str(&body).unwrap();
    assert_eq!(r.history.len(), 2);
    let last = r.history[1];
    for v in
        [last.cpu_percent, last.rd_bytes_per_s, last.wr_bytes_per_s, last.rx_bytes_per_s, last.pkts_per_s]
    {
        assert!(v >= 0.0 && v.is_finite(), "{last:?}");
    }
    call(d, Method::POST, "/v1/vms/web/destroy", None, "").await;
    // An undefined VM's history goes at the next round.
    call(d, Method::DELETE, "/v1/vms/web", None, "").await;
    d.sample_stats().await;
    assert!(d.stats.vms_for_test().is_empty());
}
