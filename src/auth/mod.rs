//! Authentication (security-critical): admin users with argon2id password hashes, login sessions, API tokens, and
//! the login throttle. Everything here is synchronous over a `rusqlite::Connection` with the time passed in, so the
//! CLI and the HTTP shell share it and tests drive the clock.
//!
//! Invariants: no secret is stored in clear — passwords as argon2id PHC strings, session ids and API tokens as
//! SHA-256 of 256-bit random values; a secret is shown to its owner exactly once; setting a password ends that
//! user's sessions.

pub mod throttle;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Params, Version};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::storage::{Migration, StorageError};
use crate::util::{random_secret, sha256_hex};

pub const MIGRATIONS: &[Migration] = &[Migration {
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
}];

/// Prefix of every API token, so that leaked tokens are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "hth_";
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
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
}

/// A valid hash of a random password, verified against when the user does not exist so that timing does not
/// reveal which user names exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_secret(16)).expect("hashing works"))
}

pub fn validate_username(name: &str) -> Result<(), AuthError> {
    if name.is_empty() || name.len() > 64 {
        return Err(AuthError::BadUsername("must be 1 to 64 characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) {
        return Err(AuthError::BadUsername("use letters, digits and . _ - @ only"));
    }
    Ok(())
}

pub fn validate_password(pw: &str) -> Result<(), AuthError> {
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

pub fn user_count(c: &Connection) -> Result<i64, AuthError> {
    Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
}

/// First-run setup: create the admin, refusing when any user exists (checked inside the transaction).
pub fn create_first_admin(c: &mut Connection, username: &str, phc: &str, now: i64) -> Result<User, AuthError> {
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
pub fn set_password(c: &mut Connection, username: &str, phc: &str, now: i64) -> Result<bool, AuthError> {
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

#[derive(Debug, Clone, Serialize)]
pub struct NewSession {
    /// The cookie value (shown once; only its hash is stored).
    pub id: String,
    pub csrf_token: String,
    pub expires_at: i64,
}

pub fn create_session(
    c: &Connection,
    user: &User,
    ttl_secs: i64,
    client: &str,
    now: i64,
) -> Result<NewSession, AuthError> {
    let id = random_secret(32);
    let csrf_token = random_secret(24);
    let expires_at = now + ttl_secs;
    c.execute(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at, last_seen_at, client)
         VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6)",
        params![sha256_hex(&id), user.id, csrf_token, now, expires_at, client],
    )?;
    Ok(NewSession { id, csrf_token, expires_at })
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub user: User,
    pub csrf_token: String,
    pub expires_at: i64,
}

/// Look up a live session by its cookie value; expired sessions are deleted and not returned.
pub fn lookup_session(c: &Connection, id: &str, now: i64) -> Result<Option<SessionInfo>, AuthError> {
    let hash = sha256_hex(id);
    let row = c
        .query_row(
            "SELECT s.user_id, u.username, s.csrf_token, s.expires_at, s.last_seen_at
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?1",
            [&hash],
            |r| {
                Ok((
                    User { id: r.get(0)?, username: r.get(1)? },
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((user, csrf_token, expires_at, last_seen)) = row else {
        return Ok(None);
    };
    if expires_at <= now {
        c.execute("DELETE FROM sessions WHERE id_hash = ?1", [&hash])?;
        return Ok(None);
    }
    if now - last_seen >= TOUCH_INTERVAL {
        c.execute("UPDATE sessions SET last_seen_at = ?1 WHERE id_hash = ?2", params![now, hash])?;
    }
    Ok(Some(SessionInfo { user, csrf_token, expires_at }))
}

pub fn delete_session(c: &Connection, id: &str) -> Result<bool, AuthError> {
    Ok(c.execute("DELETE FROM sessions WHERE id_hash = ?1", [sha256_hex(id)])? > 0)
}

pub fn prune_sessions(c: &Connection, now: i64) -> Result<usize, AuthError> {
    Ok(c.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])?)
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub created_by: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

pub fn validate_token_name(name: &str) -> Result<(), AuthError> {
    if name.trim().is_empty() || name.len() > 64 {
        return Err(AuthError::BadTokenName("must be 1 to 64 characters"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(AuthError::BadTokenName("must not contain control characters"));
    }
    Ok(())
}

/// Create an API token; returns the secret (shown once) and its record.
pub fn create_token(c: &Connection, name: &str, created_by: &str, now: i64) -> Result<(String, TokenInfo), AuthError> {
    validate_token_name(name)?;
    let secret = format!("{TOKEN_PREFIX}{}", random_secret(32));
    let prefix: String = secret.chars().take(TOKEN_PREFIX.len() + 6).collect();
    let res = c.execute(
        "INSERT INTO api_tokens (name, token_hash, prefix, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, sha256_hex(&secret), prefix, created_by, now],
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
        created_by: created_by.into(),
        created_at: now,
        last_used_at: None,
    };
    Ok((secret, info))
}

pub fn list_tokens(c: &Connection) -> Result<Vec<TokenInfo>, AuthError> {
    let mut st = c.prepare(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"))?;
    let rows = st.query_map([], token_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

const TOKEN_COLUMNS: &str = "id, name, prefix, created_by, created_at, last_used_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        created_by: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
    })
}

/// Revoke a token; returns whether it existed.
pub fn revoke_token(c: &Connection, id: i64) -> Result<bool, AuthError> {
    Ok(c.execute("DELETE FROM api_tokens WHERE id = ?1", [id])? > 0)
}

/// Resolve a bearer token to its record, stamping last use (at most once a minute).
pub fn check_token(c: &Connection, secret: &str, now: i64) -> Result<Option<TokenInfo>, AuthError> {
    if !secret.starts_with(TOKEN_PREFIX) || secret.len() > 128 {
        return Ok(None);
    }
    let hash = sha256_hex(secret);
    let info = c
        .query_row(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?1"), [&hash], token_row)
        .optional()?;
    if let Some(t) = &info
        && t.last_used_at.is_none_or(|l| now - l >= TOUCH_INTERVAL)
    {
        c.execute("UPDATE api_tokens SET last_used_at = ?1 WHERE id = ?2", params![now, t.id])?;
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;

    fn db() -> Db {
        Db::open_in_memory().unwrap()
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
            let s = create_session(c, &u, 3600, "127.0.0.1", 1000).unwrap();
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
            let a = create_session(c, &u, 3600, "", 0).unwrap();
            let b = create_session(c, &u, 3600, "", 0).unwrap();
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
            create_session(c, &u, 10, "", 0).unwrap();
            let keep = create_session(c, &u, 100, "", 0).unwrap();
            assert_eq!(prune_sessions(c, 50).unwrap(), 1);
            assert!(lookup_session(c, &keep.id, 50).unwrap().is_some());
        });
    }

    #[test]
    fn token_lifecycle_and_revocation() {
        let db = db();
        db.blocking(|c| {
            let (secret, info) = create_token(c, "backup", "admin", 100).unwrap();
            assert!(secret.starts_with("hth_") && secret.len() > 40);
            assert!(secret.starts_with(&info.prefix));
            assert!(matches!(create_token(c, "backup", "admin", 100), Err(AuthError::DuplicateToken(_))));
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
}
