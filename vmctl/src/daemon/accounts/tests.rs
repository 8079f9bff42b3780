// SPDX-License-Identifier: Apache-2.0
//! Tests of the users file, tokens and sessions.

use std::os::unix::fs::PermissionsExt;

use super::*;

const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn open(dir: &Path) -> Accounts {
    Accounts::open(dir).unwrap()
}

#[test]
fn names_and_passwords_are_checked_with_the_field_named() {
    for ok in ["alice", "_svc", "a", "web-admin_2", &"a".repeat(32)] {
        assert!(check_name("name", ok).is_ok(), "{ok}");
    }
    for bad in ["", "Alice", "1abc", "-x", "a b", "a/b", "ä", &"a".repeat(33)] {
        let e = check_name("name", bad).unwrap_err().to_string();
        assert!(e.starts_with("name: ") && e.contains("lower-case"), "{bad}: {e}");
    }
    let e = check_password("short").unwrap_err().to_string();
    assert_eq!(e, "password: it has 5 characters; choose one of at least 8");
    assert!(check_password("long enough").is_ok());
    assert!(check_password(&"x".repeat(MAX_PASSWORD + 1)).unwrap_err().to_string().starts_with("password:"));
}

#[tokio::test]
async fn users_are_kept_hashed_in_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let info = a.add_user("alice", AccountRole::Admin, "correct horse").await.unwrap();
    assert_eq!(info.name, "alice");
    assert!(matches!(
        a.add_user("alice", AccountRole::Operator, "another one").await,
        Err(DaemonError::Conflict(_))
    ));
    a.add_user("bob", AccountRole::Operator, "battery staple").await.unwrap();
    let path = dir.path().join(USERS_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("$argon2id$v=19$m=19456,t=2,p=1$"), "{text}");
    assert!(!text.contains("correct horse") && !text.contains("battery staple"));
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A new daemon reads them back, and a temporary file left by a crash is removed.
    std::fs::write(dir.path().join(".users.json.tmp-1-0"), "{half").unwrap();
    let b = open(dir.path());
    assert!(!dir.path().join(".users.json.tmp-1-0").exists());
    let names: Vec<(String, AccountRole)> = b.users().into_iter().map(|u| (u.name, u.role)).collect();
    assert_eq!(names, [("alice".into(), AccountRole::Admin), ("bob".into(), AccountRole::Operator)]);
    assert!(b.login("alice", "correct horse", IP).await.is_ok());

    b.delete_user("bob").unwrap();
    assert!(matches!(b.delete_user("bob"), Err(DaemonError::Missing(_))));
    assert_eq!(open(dir.path()).users().len(), 1);
}

#[tokio::test]
async fn a_failed_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    a.add_user("alice", AccountRole::Admin, "correct horse").await.unwrap();
    // The file's place is taken by a directory: the rename fails.
    let path = dir.path().join(USERS_FILE);
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("x"), "").unwrap();
    assert!(matches!(
        a.add_user("bob", AccountRole::Admin, "battery staple").await,
        Err(DaemonError::Internal(_))
    ));
    assert_eq!(a.users().len(), 1, "memory stays as the disk has it");
}

#[tokio::test]
async fn logins_open_sessions_that_end() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    a.add_user("alice", AccountRole::Operator, "correct horse").await.unwrap();
    assert!(matches!(a.login("alice", "wrong password", IP).await, Err(LoginError::Wrong)));
    assert!(matches!(a.login("nobody", "correct horse", IP).await, Err(LoginError::Wrong)));
    let l = a.login("alice", "correct horse", IP).await.unwrap();
    assert_eq!(l.id.len(), 64);
    assert_eq!(l.session.role, AccountRole::Operator);
    let s = a.session(&l.id).unwrap();
    assert_eq!(s, l.session);
    assert!(a.session("0".repeat(64).as_str()).is_none());
    a.logout(&s.key);
    assert!(a.session(&l.id).is_none());

    // A new password or deleting the user ends their sessions.
    let l = a.login("alice", "correct horse", IP).await.unwrap();
    a.set_password("alice", "new password").await.unwrap();
    assert!(a.session(&l.id).is_none());
    assert!(matches!(a.login("alice", "correct horse", IP).await, Err(LoginError::Wrong)));
    let l = a.login("alice", "new password", IP).await.unwrap();
    a.delete_user("alice").unwrap();
    assert!(a.session(&l.id).is_none());
}

#[tokio::test]
async fn the_sixth_quick_failure_is_limited() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    a.add_user("alice", AccountRole::Admin, "correct horse").await.unwrap();
    for _ in 0..limiter::FREE_PER_USER {
        assert!(matches!(a.login("alice", "wrong password", IP).await, Err(LoginError::Wrong)));
    }
    match a.login("alice", "correct horse", IP).await {
        Err(LoginError::Limited(wait)) => {
            assert!(wait <= limiter::BASE_WAIT && wait.as_secs() > 20, "{wait:?}")
        }
        other => panic!("not limited: {other:?}"),
    }
}

#[test]
fn tokens_are_kept_as_hashes_and_shown_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(dir.path());
    let t = a.add_token("ci", AccountRole::Operator).unwrap();
    assert!(t.secret.starts_with(TOKEN_PREFIX) && t.secret.len() == TOKEN_PREFIX.len() + 64);
    assert!(matches!(a.add_token("ci", AccountRole::Admin), Err(DaemonError::Conflict(_))));
    let text = std::fs::read_to_string(dir.path().join(USERS_FILE)).unwrap();
    assert!(!text.contains(&t.secret));
    assert!(text.contains(&web::hex(&web::sha256(t.secret.as_bytes()))));
    assert_eq!(a.token(&t.secret), Some(("ci".into(), AccountRole::Operator)));
    assert_eq!(a.token("rvmm_wrong"), None);
    assert_eq!(open(dir.path()).token(&t.secret), Some(("ci".into(), AccountRole::Operator)));
    a.delete_token("ci").unwrap();
    assert_eq!(a.token(&t.secret), None);
    assert!(matches!(a.delete_token("ci"), Err(DaemonError::Missing(_))));
}
