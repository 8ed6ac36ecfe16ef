//! Authentication (security-critical): admin users with argon2id password hashes, login sessions, API tokens, and
//! the login throttle. Everything here is synchronous over a `rusqlite::Connection` with the time passed in, so the
//! CLI and the HTTP shell share it and tests drive the clock — except two shells: `verifier.rs` (async: the
//! throttle behind a mutex and a semaphore bounding concurrent argon2 work, used by every login form) and
//! `setup_code.rs` (the one-time setup code file in the data dir).
//!
//! Invariants: no secret is stored in clear — passwords as argon2id PHC strings, session ids and API tokens as
//! SHA-256 of 256-bit random values; a secret is shown to its owner exactly once; setting a password ends that
//! user's sessions.
//!
//! Sessions have a kind: `admin` (the admin UI's login) or `forward` (the reverse proxy's forward-auth login form);
//! only admin sessions reach the admin API. API tokens carry scopes (`admin`, `memory`, `metrics`, `dns:read`).

pub(crate) mod cookie;
pub(crate) mod login;
pub(crate) mod setup_code;
pub(crate) mod throttle;
pub(crate) mod verifier;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::storage::{Migration, StorageError};
use crate::util::{random_secret, sha256_hex};

pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "users, sessions, api tokens",
        sql: "
        CREATE TABLE users (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE COLLATE NOCASE,
            password_hash TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL
        );
        CREATE TABLE sessions (
            id_hash TEXT PRIMARY KEY,
            user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            csrf_token TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            last_seen_at INTEGER NOT NULL,
            client TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX sessions_expires ON sessions(expires_at);
        CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            token_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            last_used_at INTEGER
        );
    ",
    },
    Migration {
        version: 2,
        name: "session kinds and user agents, token scopes",
        sql: "
        ALTER TABLE sessions ADD COLUMN kind TEXT NOT NULL DEFAULT 'admin';
        ALTER TABLE sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
        CREATE INDEX sessions_user ON sessions(user_id);
        ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'admin';
    ",
    },
    Migration { version: 3, name: "token expiry", sql: "ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;" },
];

/// Prefix of every API token, so that leaked tokens are recognisable by secret scanners.
pub(crate) const TOKEN_PREFIX: &str = "hth_";
/// Last-seen/last-used stamps are written at most this often (seconds), to spare the SD card.
const TOUCH_INTERVAL: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("invalid user name: {0}")]
    BadUsername(&'static str),
    #[error("invalid password: {0}")]
    BadPassword(&'static str),
    #[error("an admin account already exists")]
    AlreadySetUp,
    #[error("invalid token name: {0}")]
    BadTokenName(&'static str),
    #[error("a token named {0:?} already exists")]
    DuplicateToken(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

impl From<rusqlite::Error> for AuthError {
    fn from(e: rusqlite::Error) -> Self {
        AuthError::Storage(StorageError::Sqlite(e))
    }
}

fn hasher() -> Argon2<'static> {
    // OWASP (2023+) argon2id baseline: m = 19 MiB, t = 2, p = 1.
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(19 * 1024, 2, 1, None).expect("valid params"))
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Verify against a stored PHC string (parameters are read from the hash itself).
pub(crate) fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
}

/// A valid hash of a random password, verified against when the user does not exist so that timing does not
/// reveal which user names exist.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_secret(16)).expect("hashing works"))
}

pub(crate) fn validate_username(name: &str) -> Result<(), AuthError> {
    if name.is_empty() || name.len() > 64 {
        return Err(AuthError::BadUsername("must be 1 to 64 characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) {
        return Err(AuthError::BadUsername("use letters, digits and . _ - @ only"));
    }
    Ok(())
}

pub(crate) fn validate_password(pw: &str) -> Result<(), AuthError> {
    if pw.chars().count() < 8 {
        return Err(AuthError::BadPassword("must be at least 8 characters"));
    }
    if pw.len() > 1024 {
        return Err(AuthError::BadPassword("must be at most 1024 bytes"));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
}

pub(crate) fn user_count(c: &Connection) -> Result<i64, AuthError> {
    Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
}

/// First-run setup: create the admin, refusing when any user exists (checked inside the transaction).
pub(crate) fn create_first_admin(c: &mut Connection, username: &str, phc: &str, now: i64) -> Result<User, AuthError> {
    validate_username(username)?;
    let tx = c.transaction()?;
    let n: i64 = tx.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
    if n > 0 {
        return Err(AuthError::AlreadySetUp);
    }
    tx.execute(
        "INSERT INTO users (username, password_hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
        params![username, phc, now],
    )?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(User { id, username: username.into() })
}

/// Create the user or replace its password; ends all of that user's sessions. Returns whether it was created.
pub(crate) fn set_password(c: &mut Connection, username: &str, phc: &str, now: i64) -> Result<bool, AuthError> {
    validate_username(username)?;
    let tx = c.transaction()?;
    let existing: Option<i64> =
        tx.query_row("SELECT id FROM users WHERE username = ?1", [username], |r| r.get(0)).optional()?;
    let created = match existing {
        Some(id) => {
            tx.execute("UPDATE users SET password_hash = ?1, updated_at = ?2 WHERE id = ?3", params![phc, now, id])?;
            tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
            false
        }
        None => {
            tx.execute(
                "INSERT INTO users (username, password_hash, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
                params![username, phc, now],
            )?;
            true
        }
    };
    tx.commit()?;
    Ok(created)
}

/// The stored hash of a user, for verification.
pub fn find_user(c: &Connection, username: &str) -> Result<Option<(User, String)>, AuthError> {
    Ok(c.query_row("SELECT id, username, password_hash FROM users WHERE username = ?1", [username], |r| {
        Ok((User { id: r.get(0)?, username: r.get(1)? }, r.get(2)?))
    })
    .optional()?)
}

/// Which login made a session: the admin UI's (`POST /api/v1/auth/login`) or the reverse proxy's forward-auth form.
/// Only `Admin` sessions are accepted by the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    Admin,
    Forward,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Admin => "admin",
            SessionKind::Forward => "forward",
        }
    }

    fn from_db(s: &str) -> SessionKind {
        // anything unknown is the less privileged kind
        if s == "admin" { SessionKind::Admin } else { SessionKind::Forward }
    }
}

/// Longest user agent stored with a session (characters).
const USER_AGENT_MAX: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct NewSession {
    /// The cookie value (shown once; only its hash is stored).
    pub id: String,
    pub csrf_token: String,
    pub expires_at: i64,
    /// The session's public id (as listed by [`list_sessions`]).
    pub public_id: String,
}

/// The public id of a session: the first 16 hex digits of the stored SHA-256 of its secret (never the secret).
fn public_session_id(id_hash: &str) -> String {
    id_hash.chars().take(16).collect()
}

/// Create a session of `kind` for `user` (no user agent recorded; see [`create_session_with_agent`]).
pub fn create_session(
    c: &Connection,
    user: &User,
    ttl_secs: i64,
    client: &str,
    now: i64,
    kind: SessionKind,
) -> Result<NewSession, AuthError> {
    create_session_with_agent(c, user, ttl_secs, client, "", now, kind)
}

/// Create a session, recording the client's user agent (control characters dropped, at most 200 characters) for
/// the sessions list.
pub(crate) fn create_session_with_agent(
    c: &Connection,
    user: &User,
    ttl_secs: i64,
    client: &str,
    user_agent: &str,
    now: i64,
    kind: SessionKind,
) -> Result<NewSession, AuthError> {
    let id = random_secret(32);
    let csrf_token = random_secret(24);
    let expires_at = now + ttl_secs;
    let user_agent: String = user_agent.chars().filter(|c| !c.is_control()).take(USER_AGENT_MAX).collect();
    let hash = sha256_hex(&id);
    c.execute(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at, last_seen_at, client, kind, user_agent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6, ?7, ?8)",
        params![hash, user.id, csrf_token, now, expires_at, client, kind.as_str(), user_agent],
    )?;
    Ok(NewSession { id, csrf_token, expires_at, public_id: public_session_id(&hash) })
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SessionInfo {
    pub user: User,
    pub kind: SessionKind,
    /// The session's public id (as listed by [`list_sessions`]).
    pub public_id: String,
    pub csrf_token: String,
    pub expires_at: i64,
}

/// Look up a live session by its cookie value; expired sessions are deleted and not returned. Callers check
/// `kind`: the admin API accepts only [`SessionKind::Admin`].
pub(crate) fn lookup_session(c: &Connection, id: &str, now: i64) -> Result<Option<SessionInfo>, AuthError> {
    let hash = sha256_hex(id);
    let row = c
        .query_row(
            "SELECT s.user_id, u.username, s.csrf_token, s.expires_at, s.last_seen_at, s.kind
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?1",
            [&hash],
            |r| {
                Ok((
                    User { id: r.get(0)?, username: r.get(1)? },
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                ))
            },
        )
        .optional()?;
    let Some((user, csrf_token, expires_at, last_seen, kind)) = row else {
        return Ok(None);
    };
    if expires_at <= now {
        c.execute("DELETE FROM sessions WHERE id_hash = ?1", [&hash])?;
        return Ok(None);
    }
    if now - last_seen >= TOUCH_INTERVAL {
        c.execute("UPDATE sessions SET last_seen_at = ?1 WHERE id_hash = ?2", params![now, hash])?;
    }
    Ok(Some(SessionInfo {
        user,
        kind: SessionKind::from_db(&kind),
        public_id: public_session_id(&hash),
        csrf_token,
        expires_at,
    }))
}

pub(crate) fn delete_session(c: &Connection, id: &str) -> Result<bool, AuthError> {
    Ok(c.execute("DELETE FROM sessions WHERE id_hash = ?1", [sha256_hex(id)])? > 0)
}

pub(crate) fn prune_sessions(c: &Connection, now: i64) -> Result<usize, AuthError> {
    Ok(c.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?)
}

/// A live session as listed to admins (never its secret or CSRF token).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub(crate) struct SessionListing {
    /// Public id: the first 16 hex digits of the stored hash of the secret; use it to revoke the session.
    pub id: String,
    pub user: String,
    pub kind: SessionKind,
    pub created_at: i64,
    /// Stamped at most once a minute.
    pub last_seen_at: i64,
    pub expires_at: i64,
    /// The client address that logged in.
    pub client: String,
    pub user_agent: String,
    /// The session making this request.
    pub current: bool,
}

/// Live sessions, newest first: of one user (`user_id`), or of everybody (`None`). `current` is the public id of
/// the caller's own session, to mark it.
pub(crate) fn list_sessions(
    c: &Connection,
    user_id: Option<i64>,
    current: Option<&str>,
    now: i64,
) -> Result<Vec<SessionListing>, AuthError> {
    let mut st = c.prepare(
        "SELECT s.id_hash, u.username, s.kind, s.created_at, s.last_seen_at, s.expires_at, s.client, s.user_agent
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.expires_at > ?1 AND (?2 IS NULL OR s.user_id = ?2)
         ORDER BY s.created_at DESC, s.id_hash",
    )?;
    let rows = st.query_map(params![now, user_id], |r| {
        let id = public_session_id(&r.get::<_, String>(0)?);
        Ok(SessionListing {
            current: current == Some(id.as_str()),
            id,
            user: r.get(1)?,
            kind: SessionKind::from_db(&r.get::<_, String>(2)?),
            created_at: r.get(3)?,
            last_seen_at: r.get(4)?,
            expires_at: r.get(5)?,
            client: r.get(6)?,
            user_agent: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// End a session by its public id (of one user when `user_id` is given); returns whether one ended.
pub(crate) fn revoke_session(c: &Connection, public_id: &str, user_id: Option<i64>) -> Result<bool, AuthError> {
    if public_id.len() != 16 || !public_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Ok(false);
    }
    Ok(c.execute(
        "DELETE FROM sessions WHERE substr(id_hash, 1, 16) = ?1 AND (?2 IS NULL OR user_id = ?2)",
        params![public_id, user_id],
    )? > 0)
}

/// What an API token may do. `Admin` is everything; the others open one area each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub(crate) enum Scope {
    /// The whole admin API.
    #[serde(rename = "admin")]
    Admin,
    /// Embeddings and collections: `/v1/*` (OpenAI shape), `/api/v1/embed`, `/api/v1/collections*`.
    #[serde(rename = "memory")]
    Memory,
    /// `GET /metrics` (and the details of `/readyz`).
    #[serde(rename = "metrics")]
    Metrics,
    /// The read-only DNS endpoints: query log, live tail, stats, lists, upstreams.
    #[serde(rename = "dns:read")]
    DnsRead,
    /// The log store's Loki-compatible API: push and query (`/loki/api/v1/*`).
    #[serde(rename = "logs")]
    Logs,
}

impl Scope {
    pub(crate) const ALL: [Scope; 5] = [Scope::Admin, Scope::Memory, Scope::Metrics, Scope::DnsRead, Scope::Logs];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Memory => "memory",
            Scope::Metrics => "metrics",
            Scope::DnsRead => "dns:read",
            Scope::Logs => "logs",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Scope> {
        let s = s.trim();
        Scope::ALL.into_iter().find(|x| x.as_str().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parse scope names (each may be a comma list, e.g. `["memory,metrics", "dns:read"]`); an unknown name is an
/// error naming it and the known ones. Duplicates are dropped; the order is [`Scope::ALL`]'s.
pub(crate) fn parse_scopes<S: AsRef<str>>(names: &[S]) -> Result<Vec<Scope>, String> {
    let mut out = vec![];
    for part in names.iter().flat_map(|n| n.as_ref().split(',')).filter(|p| !p.trim().is_empty()) {
        let s = Scope::parse(part).ok_or_else(|| {
            let known: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown scope {:?}; the scopes are {}", part.trim(), known.join(", "))
        })?;
        out.push(s);
    }
    Ok(normalize_scopes(&out))
}

fn normalize_scopes(scopes: &[Scope]) -> Vec<Scope> {
    let mut v = scopes.to_vec();
    v.sort();
    v.dedup();
    v
}

fn scopes_from_db(s: &str) -> Vec<Scope> {
    // a scope this version does not know (written by a newer one) grants nothing here
    normalize_scopes(&s.split(',').filter_map(Scope::parse).collect::<Vec<_>>())
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub(crate) struct TokenInfo {
    pub id: i64,
    pub name: String,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    /// What the token may do; `admin` is everything.
    pub scopes: Vec<Scope>,
    pub created_by: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// When the token stops working (Unix seconds); none: it works until revoked.
    pub expires_at: Option<i64>,
}

impl TokenInfo {
    /// Whether the token may use an endpoint that needs `scope` (`admin` tokens may use every endpoint).
    pub(crate) fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin) || self.scopes.contains(&scope)
    }
}

pub(crate) fn validate_token_name(name: &str) -> Result<(), AuthError> {
    if name.trim().is_empty() || name.len() > 64 {
        return Err(AuthError::BadTokenName("must be 1 to 64 characters"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(AuthError::BadTokenName("must not contain control characters"));
    }
    Ok(())
}

/// Create an API token with `scopes` (at least one); returns the secret (shown once) and its record.
pub(crate) fn create_token(
    c: &Connection,
    name: &str,
    scopes: &[Scope],
    created_by: &str,
    now: i64,
    expires_at: Option<i64>,
) -> Result<(String, TokenInfo), AuthError> {
    validate_token_name(name)?;
    let scopes = normalize_scopes(scopes);
    if scopes.is_empty() {
        return Err(AuthError::BadTokenName("a token needs at least one scope"));
    }
    let scope_text = scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
    let secret = format!("{TOKEN_PREFIX}{}", random_secret(32));
    let prefix: String = secret.chars().take(TOKEN_PREFIX.len() + 6).collect();
    let res = c.execute(
        "INSERT INTO api_tokens (name, token_hash, prefix, created_by, created_at, scopes, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![name, sha256_hex(&secret), prefix, created_by, now, scope_text, expires_at],
    );
    match res {
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            return Err(AuthError::DuplicateToken(name.into()));
        }
        other => {
            other?;
        }
    }
    let info = TokenInfo {
        id: c.last_insert_rowid(),
        name: name.into(),
        prefix,
        scopes,
        created_by: created_by.into(),
        created_at: now,
        last_used_at: None,
        expires_at,
    };
    Ok((secret, info))
}

pub(crate) fn list_tokens(c: &Connection) -> Result<Vec<TokenInfo>, AuthError> {
    let mut st = c.prepare(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"))?;
    let rows = st.query_map([], token_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

const TOKEN_COLUMNS: &str = "id, name, prefix, created_by, created_at, last_used_at, scopes, expires_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        created_by: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
        scopes: scopes_from_db(&r.get::<_, String>(6)?),
        expires_at: r.get(7)?,
    })
}

/// Revoke a token; returns whether it existed.
pub(crate) fn revoke_token(c: &Connection, id: i64) -> Result<bool, AuthError> {
    Ok(c.execute("DELETE FROM api_tokens WHERE id = ?1", [id])? > 0)
}

/// Revoke every token a user created (`created_by` is the user name); returns how many.
pub(crate) fn revoke_user_tokens(c: &Connection, username: &str) -> Result<usize, AuthError> {
    Ok(c.execute("DELETE FROM api_tokens WHERE created_by = ?1 COLLATE NOCASE", [username])?)
}

/// Resolve a bearer token to its record, stamping last use (at most once a minute).
pub(crate) fn check_token(c: &Connection, secret: &str, now: i64) -> Result<Option<TokenInfo>, AuthError> {
    if !secret.starts_with(TOKEN_PREFIX) || secret.len() > 128 {
        return Ok(None);
    }
    let hash = sha256_hex(secret);
    let info = c
        .query_row(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?1"), [&hash], token_row)
        .optional()?;
    // an expired token is no token (it stays listed, marked expired, until revoked)
    let info = info.filter(|t| t.expires_at.is_none_or(|e| now < e));
    if let Some(t) = &info
        && t.last_used_at.is_none_or(|l| now - l >= TOUCH_INTERVAL)
    {
        c.execute("UPDATE api_tokens SET last_used_at = ?1 WHERE id = ?2", params![now, t.id])?;
    }
    Ok(info)
}

/// A user name (or anything a client sent as one) made safe for a log line: at most 64 characters, control and
/// non-ASCII characters escaped, `…` when cut.
pub(crate) fn log_name(name: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = name.chars().take(MAX).flat_map(|c| c.escape_default()).collect();
    if name.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;

    fn db() -> Db {
        Db::open_in_memory(&[("auth", MIGRATIONS)]).unwrap()
    }

    #[test]
    fn an_expired_token_is_refused_and_stays_listed() {
        db().blocking(|c| {
            let (secret, info) = create_token(c, "short-lived", &[Scope::Metrics], "admin", 100, Some(200)).unwrap();
            assert_eq!(info.expires_at, Some(200));
            assert!(check_token(c, &secret, 199).unwrap().is_some(), "valid until its expiry");
            assert!(check_token(c, &secret, 200).unwrap().is_none(), "refused from then on");
            let listed = list_tokens(c).unwrap();
            assert_eq!((listed[0].name.as_str(), listed[0].expires_at), ("short-lived", Some(200)));
        });
    }

    #[test]
    fn argon2id_with_owasp_parameters() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
        assert!(!verify_password("x", dummy_hash()));
    }

    #[test]
    fn input_rules() {
        assert!(validate_username("admin").is_ok());
        assert!(validate_username("a b").is_err());
        assert!(validate_username("").is_err());
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
        assert!(validate_password(&"x".repeat(2000)).is_err());
        assert!(validate_token_name(" ").is_err());
        assert!(validate_token_name("backup\n").is_err());
    }

    #[test]
    fn setup_only_once() {
        let db = db();
        db.blocking(|c| {
            assert_eq!(user_count(c).unwrap(), 0);
            create_first_admin(c, "admin", "h", 1).unwrap();
            assert!(matches!(create_first_admin(c, "other", "h", 2), Err(AuthError::AlreadySetUp)));
            assert_eq!(user_count(c).unwrap(), 1);
            // names are case-insensitive
            assert_eq!(find_user(c, "ADMIN").unwrap().unwrap().0.username, "admin");
        });
    }

    #[test]
    fn session_expiry() {
        let db = db();
        db.blocking(|c| {
            let u = create_first_admin(c, "admin", "h", 0).unwrap();
            let s = create_session(c, &u, 3600, "127.0.0.1", 1000, SessionKind::Admin).unwrap();
            let live = lookup_session(c, &s.id, 1000 + 3599).unwrap().unwrap();
            assert_eq!(live.user, u);
            assert_eq!(live.csrf_token, s.csrf_token);
            assert_eq!(lookup_session(c, &s.id, 1000 + 3600).unwrap(), None, "expired at expires_at");
            assert_eq!(lookup_session(c, &s.id, 0).unwrap(), None, "expired sessions are deleted");
            assert_eq!(lookup_session(c, "forged", 1000).unwrap(), None);
            // the stored row holds a hash, not the cookie value
            let n: i64 =
                c.query_row("SELECT count(*) FROM sessions WHERE id_hash = ?1", [&s.id], |r| r.get(0)).unwrap();
            assert_eq!(n, 0);
        });
    }

    #[test]
    fn logout_and_password_change_end_sessions() {
        let db = db();
        db.blocking(|c| {
            let u = create_first_admin(c, "admin", "h", 0).unwrap();
            let a = create_session(c, &u, 3600, "", 0, SessionKind::Admin).unwrap();
            let b = create_session(c, &u, 3600, "", 0, SessionKind::Admin).unwrap();
            assert!(delete_session(c, &a.id).unwrap());
            assert!(lookup_session(c, &a.id, 1).unwrap().is_none());
            assert!(lookup_session(c, &b.id, 1).unwrap().is_some());
            assert!(!set_password(c, "admin", "h2", 2).unwrap());
            assert!(lookup_session(c, &b.id, 3).unwrap().is_none());
            assert!(set_password(c, "second", "h3", 2).unwrap());
            assert_eq!(user_count(c).unwrap(), 2);
        });
    }

    #[test]
    fn prune_removes_only_expired() {
        let db = db();
        db.blocking(|c| {
            let u = create_first_admin(c, "admin", "h", 0).unwrap();
            create_session(c, &u, 10, "", 0, SessionKind::Admin).unwrap();
            let keep = create_session(c, &u, 100, "", 0, SessionKind::Admin).unwrap();
            assert_eq!(prune_sessions(c, 50).unwrap(), 1);
            assert!(lookup_session(c, &keep.id, 50).unwrap().is_some());
        });
    }

    #[test]
    fn token_lifecycle_and_revocation() {
        let db = db();
        db.blocking(|c| {
            let (secret, info) = create_token(c, "backup", &[Scope::Admin], "admin", 100, None).unwrap();
            assert!(secret.starts_with("hth_") && secret.len() > 40);
            assert!(secret.starts_with(&info.prefix));
            assert!(matches!(
                create_token(c, "backup", &[Scope::Admin], "admin", 100, None),
                Err(AuthError::DuplicateToken(_))
            ));
            assert_eq!(check_token(c, &secret, 200).unwrap().unwrap().id, info.id);
            // last use is stamped (and shown in the list)
            assert_eq!(list_tokens(c).unwrap()[0].last_used_at, Some(200));
            check_token(c, &secret, 230).unwrap();
            assert_eq!(list_tokens(c).unwrap()[0].last_used_at, Some(200), "throttled stamp");
            assert!(check_token(c, "hth_wrong", 200).unwrap().is_none());
            assert!(check_token(c, "nope", 200).unwrap().is_none());
            assert!(revoke_token(c, info.id).unwrap());
            assert!(!revoke_token(c, info.id).unwrap());
            assert!(check_token(c, &secret, 300).unwrap().is_none(), "revoked tokens stop working");
            assert!(list_tokens(c).unwrap().is_empty());
        });
    }

    #[test]
    fn session_kinds_are_stored_and_returned() {
        let db = db();
        db.blocking(|c| {
            let u = create_first_admin(c, "admin", "h", 0).unwrap();
            let a = create_session_with_agent(c, &u, 3600, "10.0.0.1", "Firefox\n", 0, SessionKind::Admin).unwrap();
            let f = create_session(c, &u, 3600, "10.0.0.2", 0, SessionKind::Forward).unwrap();
            assert_eq!(lookup_session(c, &a.id, 1).unwrap().unwrap().kind, SessionKind::Admin);
            assert_eq!(lookup_session(c, &f.id, 1).unwrap().unwrap().kind, SessionKind::Forward);
            // unknown kinds (a newer hearth) are the less privileged one
            assert_eq!(SessionKind::from_db("superuser"), SessionKind::Forward);
        });
    }

    #[test]
    fn sessions_are_listed_without_secrets_and_revoked_by_public_id() {
        let db = db();
        db.blocking(|c| {
            let u = create_first_admin(c, "admin", "h", 0).unwrap();
            set_password(c, "bob", "h", 0).unwrap();
            let bob = find_user(c, "bob").unwrap().unwrap().0;
            let a = create_session_with_agent(c, &u, 3600, "10.0.0.1", "curl/8", 10, SessionKind::Admin).unwrap();
            let b = create_session(c, &bob, 3600, "10.0.0.2", 20, SessionKind::Forward).unwrap();
            create_session(c, &u, 5, "", 0, SessionKind::Admin).unwrap(); // expired by now
            let me = lookup_session(c, &a.id, 30).unwrap().unwrap();
            let all = list_sessions(c, None, Some(&me.public_id), 30).unwrap();
            assert_eq!(all.len(), 2, "{all:?}");
            assert_eq!((all[0].user.as_str(), all[0].kind, all[0].current), ("bob", SessionKind::Forward, false));
            assert_eq!((all[1].user.as_str(), all[1].current, all[1].user_agent.as_str()), ("admin", true, "curl/8"));
            assert_eq!(all[1].client, "10.0.0.1");
            assert_eq!(all[1].id, me.public_id);
            let text = format!("{all:?}");
            assert!(!text.contains(&a.id) && !text.contains(&a.csrf_token) && !text.contains(&sha256_hex(&a.id)));
            let mine = list_sessions(c, Some(u.id), None, 30).unwrap();
            assert_eq!(mine.len(), 1);
            // revocation: by public id, limited to a user when asked, junk ids match nothing
            let bob_id = &all[0].id;
            assert!(!revoke_session(c, bob_id, Some(u.id)).unwrap());
            assert!(!revoke_session(c, "%", None).unwrap());
            assert!(!revoke_session(c, &a.id, None).unwrap(), "the secret is not an id");
            assert!(revoke_session(c, bob_id, None).unwrap());
            assert!(lookup_session(c, &b.id, 31).unwrap().is_none());
            assert!(lookup_session(c, &a.id, 31).unwrap().is_some());
        });
    }

    #[test]
    fn token_scopes() {
        let db = db();
        db.blocking(|c| {
            let (_, m) =
                create_token(c, "m", &[Scope::Memory, Scope::Metrics, Scope::Memory], "admin", 1, None).unwrap();
            assert_eq!(m.scopes, [Scope::Memory, Scope::Metrics]);
            assert!(m.allows(Scope::Memory) && m.allows(Scope::Metrics));
            assert!(!m.allows(Scope::Admin) && !m.allows(Scope::DnsRead));
            let (secret, a) = create_token(c, "a", &[Scope::Admin], "admin", 1, None).unwrap();
            assert!(Scope::ALL.iter().all(|s| a.allows(*s)));
            assert_eq!(check_token(c, &secret, 2).unwrap().unwrap().scopes, [Scope::Admin]);
            assert!(matches!(create_token(c, "none", &[], "admin", 1, None), Err(AuthError::BadTokenName(_))));
            assert_eq!(list_tokens(c).unwrap()[0].scopes, [Scope::Memory, Scope::Metrics]);
            assert_eq!(
                parse_scopes(&["memory,dns:read", " METRICS "]).unwrap(),
                [Scope::Memory, Scope::Metrics, Scope::DnsRead]
            );
            assert!(parse_scopes(&["root"]).unwrap_err().contains("\"root\""));
            assert_eq!(serde_json::to_value(Scope::DnsRead).unwrap(), "dns:read");
        });
    }

    #[test]
    fn tokens_from_before_scopes_become_admin_and_sessions_admin() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::storage::configure(&c, std::time::Duration::from_secs(1)).unwrap();
        crate::storage::apply_migrations(&mut c, "auth", &MIGRATIONS[..1]).unwrap();
        c.execute(
            "INSERT INTO api_tokens (name, token_hash, prefix, created_by, created_at) VALUES ('old', ?1, 'hth_x', 'cli', 1)",
            [sha256_hex("hth_old")],
        )
        .unwrap();
        c.execute("INSERT INTO users (username, password_hash, created_at, updated_at) VALUES ('a', 'h', 0, 0)", [])
            .unwrap();
        c.execute(
            "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at, last_seen_at) VALUES (?1, 1, 'c', 0, 99, 0)",
            [sha256_hex("sid")],
        )
        .unwrap();
        crate::storage::apply_migrations(&mut c, "auth", MIGRATIONS).unwrap();
        assert_eq!(check_token(&c, "hth_old", 5).unwrap().unwrap().scopes, [Scope::Admin]);
        assert_eq!(lookup_session(&c, "sid", 5).unwrap().unwrap().kind, SessionKind::Admin);
    }

    #[test]
    fn password_change_can_revoke_the_users_tokens() {
        let db = db();
        db.blocking(|c| {
            create_first_admin(c, "admin", "h", 0).unwrap();
            create_token(c, "mine", &[Scope::Admin], "admin", 1, None).unwrap();
            create_token(c, "cli", &[Scope::Admin], "cli", 1, None).unwrap();
            assert_eq!(revoke_user_tokens(c, "ADMIN").unwrap(), 1);
            assert_eq!(list_tokens(c).unwrap()[0].name, "cli");
        });
    }

    #[test]
    fn log_names_are_capped_and_escaped() {
        assert_eq!(log_name("admin"), "admin");
        assert_eq!(log_name("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        let long = "x".repeat(500);
        assert_eq!(log_name(&long), format!("{}…", "x".repeat(64)));
        assert_eq!(log_name(&"x".repeat(64)), "x".repeat(64));
    }
}
