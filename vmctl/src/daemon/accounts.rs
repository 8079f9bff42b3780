// SPDX-License-Identifier: Apache-2.0
//! Users, API tokens and login sessions of the HTTPS listener (see `docs/vmctl.md`, "HTTPS,
//! users and tokens").
//!
//! - Users and tokens are kept in `<state>/users.json` (mode 0600, replaced atomically at
//!   each change): a user's password as an argon2id PHC string, a token as the SHA-256 of
//!   its secret (the secret is 256 random bits, so a fast hash is enough; it is shown once).
//! - Sessions are in memory only: a daemon restart logs everybody out. A session's id (the
//!   cookie) is 256 random bits; the table is keyed by its SHA-256, so a lookup's timing
//!   says nothing about stored ids. A session ends [`SESSION_IDLE`] after its last request,
//!   [`SESSION_MAX`] after the login, or when its user is deleted or gets a new password.
//! - Logins are rate limited ([`limiter`]) and at most [`HASHING_AT_ONCE`] argon2 runs go
//!   at once (each takes 19 MiB).

pub mod limiter;
pub mod web;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

use super::DaemonError;
use crate::api::{AccountInfo, AccountRole, CreatedToken};
use limiter::{LimitKey, LoginLimiter};

/// The users file in the state directory.
pub const USERS_FILE: &str = "users.json";
/// Shortest password accepted (characters).
pub const MIN_PASSWORD: usize = 8;
/// Longest password accepted (bytes).
pub const MAX_PASSWORD: usize = 1024;
/// A session ends this long after its last request.
pub const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// A session ends this long after the login, however busy.
pub const SESSION_MAX: Duration = Duration::from_secs(24 * 3600);
/// Argon2 runs at once (logins and password changes); more wait.
pub const HASHING_AT_ONCE: usize = 2;
/// Most sessions at once (the oldest is ended beyond).
const MAX_SESSIONS: usize = 4096;
/// Most users plus tokens.
const MAX_ACCOUNTS: usize = 1000;
/// Largest users file read.
const MAX_FILE: u64 = 4 << 20;
/// Prefix of every API token, so that a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "rvmm_";

/// Checks a user or token name: `[a-z_][a-z0-9_-]{0,31}`; the error names `field`.
pub fn check_name(field: &str, name: &str) -> Result<(), DaemonError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok && name.len() <= 32 {
        return Ok(());
    }
    Err(DaemonError::BadInput(format!(
        "{field}: {name:?} is not a valid name; use 1 to 32 lower-case letters, digits, `_` or `-`, \
         starting with a letter or `_` (like a Unix user name)"
    )))
}

/// Checks a new password's length; the error names the field.
pub fn check_password(password: &str) -> Result<(), DaemonError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(DaemonError::BadInput(format!(
            "password: it has {n} characters; choose one of at least {MIN_PASSWORD}"
        )));
    }
    if password.len() > MAX_PASSWORD {
        return Err(DaemonError::BadInput(format!(
            "password: it is longer than {MAX_PASSWORD} bytes; choose a shorter one"
        )));
    }
    Ok(())
}

/// A user or token as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Account {
    name: String,
    role: AccountRole,
    /// argon2id PHC string (users) or hex SHA-256 of the secret (tokens).
    hash: String,
    created: u64,
}

impl Account {
    fn info(&self) -> AccountInfo {
        AccountInfo { name: self.name.clone(), role: self.role, created: self.created }
    }
}

/// `users.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    users: Vec<Account>,
    tokens: Vec<Account>,
}

/// One login session.
#[derive(Debug, Clone)]
struct Session {
    user: String,
    role: AccountRole,
    csrf: String,
    created: Instant,
    last: Instant,
}

/// A live session, as the API middleware sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// SHA-256 of the session id (its key).
    pub key: [u8; 32],
    /// The user.
    pub user: String,
    /// The user's role at login.
    pub role: AccountRole,
    /// The CSRF token.
    pub csrf: String,
}

/// Why a login failed.
#[derive(Debug)]
pub enum LoginError {
    /// Wrong user name or password.
    Wrong,
    /// Too many failures: try again after this long.
    Limited(Duration),
    /// The host failed.
    Internal(String),
}

/// A successful login: the cookie's value and the session.
#[derive(Debug)]
pub struct LoggedIn {
    /// The session id (the cookie's value).
    pub id: String,
    /// The session.
    pub session: SessionView,
}

/// Users, tokens and sessions.
#[derive(Debug)]
pub struct Accounts {
    path: PathBuf,
    file: Mutex<AccountsFile>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    limiter: Mutex<LoginLimiter>,
    hashing: tokio::sync::Semaphore,
}

fn internal(e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Internal(e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The argon2id hasher: the argon2 crate's defaults, OWASP's minimum (19 MiB, 2 passes, 1 lane).
fn argon2() -> Argon2<'static> {
    Argon2::default()
}

fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&web::random_bytes::<16>()?).map_err(|e| e.to_string())?;
    argon2().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash of a random password, checked against when the user does not exist, so that the
/// answer takes as long as for a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let pw = web::random_hex().unwrap_or_else(|_| "x".repeat(64));
        hash_password(&pw).unwrap_or_default()
    })
}

impl Accounts {
    /// Reads `<state_dir>/users.json` (none: no users), removing what an interrupted write
    /// left.
    pub fn open(state_dir: &Path) -> Result<Accounts, DaemonError> {
        let path = state_dir.join(USERS_FILE);
        for p in crate::safefs::remove_atomic_leftovers(state_dir, USERS_FILE) {
            tracing::warn!("removed {} left by an interrupted write", p.display());
        }
        let bytes = crate::safefs::read_small_file(&path, MAX_FILE)
            .map_err(|e| DaemonError::Internal(format!("cannot read {}: {e}", path.display())))?;
        let file = match bytes {
            None => AccountsFile::default(),
            Some(b) => serde_json::from_slice::<AccountsFile>(&b).map_err(|e| {
                DaemonError::Internal(format!(
                    "{} is not a valid users file: {e}; repair it or move it away (that removes every \
                     web user and token)",
                    path.display()
                ))
            })?,
        };
        Ok(Accounts {
            path,
            file: Mutex::new(file),
            sessions: Mutex::new(HashMap::new()),
            limiter: Mutex::new(LoginLimiter::new()),
            hashing: tokio::sync::Semaphore::new(HASHING_AT_ONCE),
        })
    }

    /// Writes `file` (the lock held by the caller).
    fn save(&self, file: &AccountsFile) -> Result<(), DaemonError> {
        let mut text = serde_json::to_vec_pretty(file).map_err(internal)?;
        text.push(b'\n');
        crate::safefs::write_atomic(&self.path, &text, 0o600)
            .map_err(|e| DaemonError::Internal(format!("cannot write {}: {e}", self.path.display())))
    }

    /// Changes the file in memory and on disk; on a failed write memory stays as it was.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut AccountsFile) -> Result<T, DaemonError>,
    ) -> Result<T, DaemonError> {
        let mut file = lock(&self.file);
        let mut new = file.clone();
        let out = f(&mut new)?;
        self.save(&new)?;
        *file = new;
        Ok(out)
    }

    /// Runs an argon2 computation on a blocking thread, at most [`HASHING_AT_ONCE`] at once.
    async fn hashing<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
        let _permit = self.hashing.acquire().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(f).await.map_err(|e| e.to_string())
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<AccountInfo> {
        let mut v: Vec<AccountInfo> = lock(&self.file).users.iter().map(Account::info).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Every token, by name.
    pub fn tokens(&self) -> Vec<AccountInfo> {
        let mut v: Vec<AccountInfo> = lock(&self.file).tokens.iter().map(Account::info).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Adds a user.
    pub async fn add_user(
        &self,
        name: &str,
        role: AccountRole,
        password: &str,
    ) -> Result<AccountInfo, DaemonError> {
        check_name("name", name)?;
        check_password(password)?;
        if lock(&self.file).users.iter().any(|u| u.name == name) {
            return Err(exists(name));
        }
        let pw = password.to_string();
        let hash = self.hashing(move || hash_password(&pw)).await.map_err(internal)?.map_err(internal)?;
        let account = Account { name: name.to_string(), role, hash, created: super::now() };
        let info = account.info();
        self.change(|f| {
            if f.users.iter().any(|u| u.name == name) {
                return Err(exists(name));
            }
            if f.users.len() + f.tokens.len() >= MAX_ACCOUNTS {
                return Err(DaemonError::Conflict(format!(
                    "there are already {MAX_ACCOUNTS} users and tokens; delete some first"
                )));
            }
            f.users.push(account);
            Ok(())
        })?;
        tracing::info!("web user {name} added with the role {}", role.name());
        Ok(info)
    }

    /// Gives a user a new password; their sessions end.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), DaemonError> {
        check_name("name", name)?;
        check_password(password)?;
        if !lock(&self.file).users.iter().any(|u| u.name == name) {
            return Err(no_user(name));
        }
        let pw = password.to_string();
        let hash = self.hashing(move || hash_password(&pw)).await.map_err(internal)?.map_err(internal)?;
        self.change(|f| {
            let u = f.users.iter_mut().find(|u| u.name == name).ok_or_else(|| no_user(name))?;
            u.hash = hash;
            Ok(())
        })?;
        self.end_sessions_of(name);
        tracing::info!("web user {name} has a new password; their sessions ended");
        Ok(())
    }

    /// Deletes a user; their sessions end.
    pub fn delete_user(&self, name: &str) -> Result<(), DaemonError> {
        check_name("name", name)?;
        self.change(|f| {
            let before = f.users.len();
            f.users.retain(|u| u.name != name);
            if f.users.len() == before {
                return Err(no_user(name));
            }
            Ok(())
        })?;
        self.end_sessions_of(name);
        tracing::info!("web user {name} deleted; their sessions ended");
        Ok(())
    }

    /// Makes a token; the answer holds its secret, which is not kept.
    pub fn add_token(&self, name: &str, role: AccountRole) -> Result<CreatedToken, DaemonError> {
        check_name("name", name)?;
        let secret = format!("{TOKEN_PREFIX}{}", web::random_hex().map_err(internal)?);
        let account = Account {
            name: name.to_string(),
            role,
            hash: web::hex(&web::sha256(secret.as_bytes())),
            created: super::now(),
        };
        let info = account.info();
        self.change(|f| {
            if f.tokens.iter().any(|t| t.name == name) {
                return Err(DaemonError::Conflict(format!(
                    "a token named {name} exists; choose another name or delete it first (vmctl token del {name})"
                )));
            }
            if f.users.len() + f.tokens.len() >= MAX_ACCOUNTS {
                return Err(DaemonError::Conflict(format!(
                    "there are already {MAX_ACCOUNTS} users and tokens; delete some first"
                )));
            }
            f.tokens.push(account);
            Ok(())
        })?;
        tracing::info!("API token {name} added with the role {}", role.name());
        Ok(CreatedToken { info, secret })
    }

    /// Deletes a token.
    pub fn delete_token(&self, name: &str) -> Result<(), DaemonError> {
        check_name("name", name)?;
        self.change(|f| {
            let before = f.tokens.len();
            f.tokens.retain(|t| t.name != name);
            if f.tokens.len() == before {
                return Err(DaemonError::Missing(format!(
                    "there is no API token named {name}; see vmctl token list"
                )));
            }
            Ok(())
        })?;
        tracing::info!("API token {name} deleted");
        Ok(())
    }

    /// The token whose secret is `secret`: its name and role. Every stored hash is compared
    /// in constant time.
    pub fn token(&self, secret: &str) -> Option<(String, AccountRole)> {
        let want = web::hex(&web::sha256(secret.as_bytes()));
        let file = lock(&self.file);
        let mut found = None;
        for t in &file.tokens {
            if web::same_secret(t.hash.as_bytes(), want.as_bytes()) {
                found = Some((t.name.clone(), t.role));
            }
        }
        found
    }

    /// Checks `user`'s `password` (rate limited per `from` and per user name) and opens a
    /// session.
    pub async fn login(&self, user: &str, password: &str, from: IpAddr) -> Result<LoggedIn, LoginError> {
        let keys = [LimitKey::Address(from), LimitKey::User(user.chars().take(64).collect())];
        lock(&self.limiter).begin(&keys, Instant::now()).map_err(LoginError::Limited)?;
        let stored = lock(&self.file).users.iter().find(|u| u.name == user).map(|u| (u.hash.clone(), u.role));
        let pw = password.chars().take(MAX_PASSWORD).collect::<String>();
        let hash = stored.as_ref().map(|(h, _)| h.clone());
        let check = move || verify_password(&pw, hash.as_deref().unwrap_or_else(|| dummy_hash()));
        let ok = self.hashing(check).await.map_err(LoginError::Internal)?;
        let Some((_, role)) = stored.filter(|_| ok) else { return Err(LoginError::Wrong) };
        lock(&self.limiter).succeeded(&keys);
        let id = web::random_hex().map_err(LoginError::Internal)?;
        let csrf = web::random_hex().map_err(LoginError::Internal)?;
        let key = web::sha256(id.as_bytes());
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| live(s, now));
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| *k) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            key,
            Session { user: user.to_string(), role, csrf: csrf.clone(), created: now, last: now },
        );
        Ok(LoggedIn { id, session: SessionView { key, user: user.to_string(), role, csrf } })
    }

    /// The live session whose id is `id` (its idle time restarts), if any.
    pub fn session(&self, id: &str) -> Option<SessionView> {
        let key = web::sha256(id.as_bytes());
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        let s = sessions.get_mut(&key)?;
        if !live(s, now) {
            sessions.remove(&key);
            return None;
        }
        s.last = now;
        Some(SessionView { key, user: s.user.clone(), role: s.role, csrf: s.csrf.clone() })
    }

    /// Ends the session with key `key`.
    pub fn logout(&self, key: &[u8; 32]) {
        lock(&self.sessions).remove(key);
    }

    fn end_sessions_of(&self, user: &str) {
        lock(&self.sessions).retain(|_, s| s.user != user);
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.last) < SESSION_IDLE
        && now.saturating_duration_since(s.created) < SESSION_MAX
}

fn exists(name: &str) -> DaemonError {
    DaemonError::Conflict(format!(
        "a user named {name} exists; choose another name, or change the password with vmctl user passwd {name}"
    ))
}

fn no_user(name: &str) -> DaemonError {
    DaemonError::Missing(format!("there is no user named {name}; see vmctl user list"))
}

/// Shared by the router's handlers and the authorization middleware.
pub type SharedAccounts = Arc<Accounts>;

#[cfg(test)]
mod tests;
