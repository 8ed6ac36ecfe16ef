//! The one login (security-critical): the admin API's `POST /api/v1/auth/login` and the reverse proxy's
//! forward-auth form both call [`login`], so both go through the same throttle, the same bound on concurrent
//! argon2 hashes ([`super::verifier::Verifier`]), the same constant work for unknown users, the same log line
//! and the same metric.

use std::net::IpAddr;
use std::time::Instant;

use super::verifier::Verifier;
use super::{AuthError, NewSession, SessionKind, User, create_session_with_agent, find_user, log_name};
use crate::storage::Db;

/// What a login attempt brings.
pub(crate) struct Attempt {
    pub username: String,
    pub password: String,
    pub client: IpAddr,
    pub user_agent: String,
    /// The session's lifetime in seconds.
    pub ttl_secs: i64,
    pub kind: SessionKind,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
    #[error("wrong user name or password")]
    Invalid,
    #[error("too many failed logins: try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Check the credentials (throttled; an unknown user costs the same hash as a known one) and open a session.
pub(crate) async fn login(db: &Db, verifier: &Verifier, a: Attempt) -> Result<(User, NewSession), LoginError> {
    let kind = a.kind.as_str();
    // no user name is longer than 64 characters: a longer one is cut for the lookup and the throttle's key
    let name: String = a.username.chars().take(65).collect();
    let n = name.clone();
    let found = db.call(move |c| find_user(c, &n)).await?;
    let (user, phc) = match found {
        Some((u, h)) => (Some(u), Some(h)),
        None => (None, None),
    };
    let ok = match verifier.verify(a.client, &name, a.password, phc, Instant::now()).await {
        Ok(ok) => ok,
        Err(t) => {
            metrics::counter!("hearth_login_attempts_total", "result" => "throttled", "kind" => kind).increment(1);
            return Err(LoginError::Throttled { retry_after_secs: t.retry_after_secs.max(1) });
        }
    };
    let Some(user) = user.filter(|_| ok) else {
        metrics::counter!("hearth_login_attempts_total", "result" => "failure", "kind" => kind).increment(1);
        tracing::warn!(user = %log_name(&a.username), client = %a.client, kind, "failed login");
        return Err(LoginError::Invalid);
    };
    metrics::counter!("hearth_login_attempts_total", "result" => "success", "kind" => kind).increment(1);
    let (u, client, agent, ttl, now) =
        (user.clone(), a.client.to_string(), a.user_agent, a.ttl_secs, crate::util::unix_now());
    let session = db.call(move |c| create_session_with_agent(c, &u, ttl, &client, &agent, now, a.kind)).await?;
    tracing::info!(user = %user.username, client = %a.client, kind, "login");
    Ok((user, session))
}
