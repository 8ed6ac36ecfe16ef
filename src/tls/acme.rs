//! ACME (IO shell over instant-acme, `ring` backend): certificates for routes with `tls = "acme"`.
//!
//! - The account is created once per directory URL and its credentials kept in `<data_dir>/acme/` (0600).
//! - Certificates and keys live in `<data_dir>/certs/<name>.{crt,key}` (0600); their state (validity, renewal
//!   time, failures, the CA's last error) in the `certificates` table. A valid certificate on disk is loaded at
//!   start and never re-ordered before its renewal time, so restart loops cannot burn the CA's rate limits.
//! - Renewal per [`super::renewal`]: ARI window when the CA offers one, else two thirds of the lifetime; failures
//!   back off 5 min → 6 h; the CA's own problem text is kept and shown.
//! - Challenges: HTTP-01 (answered by the plain-HTTP listener through [`Acme::http01_answer`]), TLS-ALPN-01
//!   (answered by the SNI resolver, [`super::Certs::set_challenge`]) and DNS-01 (a TXT record published by RFC 2136
//!   update, [`super::dns01`]; the only way to wildcard certificates), in `tls.acme_challenges` order.
//! - Local names (`*.home.arpa`, `*.local`, …, IP addresses) never go to a public CA: they get internal-CA
//!   certificates from the resolver.

use crate::util::Locked;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rusqlite::OptionalExtension;

use super::renewal::{self, Due};
use super::{Certs, certified_key, parse_chain, parse_key, write_private};
use crate::config::{Config, RouteTls};
use crate::storage::{Db, Migration};
use crate::util::unix_now;

pub(crate) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "certificates",
    sql: "
    CREATE TABLE certificates (
        name TEXT PRIMARY KEY,
        directory TEXT NOT NULL DEFAULT '',
        issuer TEXT NOT NULL DEFAULT '',
        not_before INTEGER,
        not_after INTEGER,
        renew_at INTEGER,
        failures INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER,
        last_attempt INTEGER,
        last_success INTEGER,
        last_error TEXT NOT NULL DEFAULT '',
        rate_limited INTEGER NOT NULL DEFAULT 0
    );",
}];

/// What the API and UI show about one ACME name.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CertStatus {
    pub name: String,
    /// "valid", "ordering", "failed", "pending" (not ordered yet) or "expired".
    pub status: String,
    pub issuer: String,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    pub renew_at: Option<i64>,
    pub next_attempt: Option<i64>,
    pub failures: i64,
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    /// The CA's own error text of the last failure.
    pub last_error: String,
    pub rate_limited: bool,
}

struct Failure {
    message: String,
    rate_limited: bool,
}

/// A failure worded for the user: what the CA answered ("the CA said: …", its problem type kept), or that it could
/// not be reached, with the cause (a refused connection, a name that does not resolve, a certificate it presents
/// that is not trusted) — never a bare "client error (Connect)".
fn describe(e: &instant_acme::Error) -> Failure {
    use instant_acme::Error as E;
    match e {
        E::Api(p) => Failure {
            message: format!("the CA said: {}", p.to_string().trim_start_matches("API error: ")),
            rate_limited: p.r#type.as_deref().is_some_and(|t| t.ends_with(":rateLimited")),
        },
        E::Hyper(_) | E::Http(_) | E::Other(_) => Failure {
            message: format!("the CA could not be reached: {}", crate::util::error_chain(e)),
            rate_limited: false,
        },
        other => Failure {
            message: format!("the CA's answer could not be used: {}", crate::util::error_chain(other)),
            rate_limited: false,
        },
    }
}

/// The names that want ACME certificates under `cfg`.
pub(crate) fn wanted_names(cfg: &Config) -> Vec<String> {
    let mut names = vec![];
    for r in cfg.proxy.routes.iter().filter(|r| r.tls == RouteTls::Acme) {
        for h in &r.hosts {
            let h = h.trim().trim_end_matches('.').to_ascii_lowercase();
            if !crate::net::is_local_name(&h, &cfg.dns.local_domains) && !names.contains(&h) {
                names.push(h);
            }
        }
    }
    names
}

fn dns01_settings(cfg: &Config) -> Result<(std::net::SocketAddr, super::dns01::TsigKey), String> {
    let server = cfg.tls.dns01_server.parse().map_err(|_| "tls.dns01_server: must be ip:port".to_string())?;
    let key = super::dns01::TsigKey::parse(&cfg.tls.dns01_tsig_key).map_err(|e| format!("tls.dns01_tsig_key: {e}"))?;
    Ok((server, key))
}

fn file_stem(name: &str) -> String {
    name.replace('*', "_wildcard_")
}

/// Removes a pre-flight probe token when dropped.
pub(crate) struct ProbeGuard {
    acme: Arc<Acme>,
    token: String,
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        self.acme.http01.locked().remove(&self.token);
    }
}

pub(crate) struct Acme {
    db: Db,
    certs: Arc<Certs>,
    data_dir: PathBuf,
    http01: Mutex<HashMap<String, String>>,
    ordering: Mutex<HashSet<String>>,
    renew_now: Mutex<HashSet<String>>,
    wake: tokio::sync::Notify,
    account: tokio::sync::Mutex<Option<(String, Account)>>,
}

impl Acme {
    pub(crate) fn new(db: Db, certs: Arc<Certs>, data_dir: &Path) -> Acme {
        Acme {
            db,
            certs,
            data_dir: data_dir.to_path_buf(),
            http01: Mutex::default(),
            ordering: Mutex::default(),
            renew_now: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            account: tokio::sync::Mutex::new(None),
        }
    }

    async fn sql<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, crate::storage::StorageError> {
        self.db.call(move |c| f(c).map_err(crate::storage::StorageError::from)).await
    }

    /// The key authorization for an HTTP-01 token, while its challenge is pending.
    pub(crate) fn http01_answer(&self, token: &str) -> Option<String> {
        self.http01.locked().get(token).cloned()
    }

    /// Serve a probe token at `/.well-known/acme-challenge/<token>` while the guard lives (the pre-flight check's
    /// self-request over the name's public address); returns the token and what it answers.
    pub(crate) fn probe(self: &Arc<Self>) -> (ProbeGuard, String, String) {
        let token = format!("hearth-preflight-{}", crate::util::random_secret(16));
        let answer = format!("{token}.{}", crate::util::random_secret(16));
        self.http01.locked().insert(token.clone(), answer.clone());
        (ProbeGuard { acme: self.clone(), token: token.clone() }, token, answer)
    }

    /// Ask for a renewal of `name` now (the API's "renew now"); false when the name is not managed.
    pub(crate) fn renew(&self, cfg: &Config, name: &str) -> bool {
        if !wanted_names(cfg).iter().any(|n| n == name) {
            return false;
        }
        self.renew_now.locked().insert(name.to_string());
        self.db.blocking(|c| {
            c.execute("UPDATE certificates SET next_attempt = NULL WHERE name = ?1", [name]).ok();
        });
        self.wake.notify_one();
        true
    }

    fn paths(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.data_dir.join("certs");
        (dir.join(format!("{}.crt", file_stem(name))), dir.join(format!("{}.key", file_stem(name))))
    }

    /// Load a certificate from disk into the resolver; returns (not_before, not_after) when it is usable.
    fn load(&self, name: &str) -> Option<(i64, i64, String)> {
        let (crt, key) = self.paths(name);
        let pem = std::fs::read_to_string(&crt).ok()?;
        let key_pem = std::fs::read_to_string(&key).ok()?;
        let loaded = (|| {
            let chain = parse_chain(&pem, &crt)?;
            let info = super::cert_info(&chain[0])?;
            let ck = certified_key(chain, &parse_key(&key_pem, &key)?)?;
            Ok::<_, super::TlsError>((info, ck))
        })();
        match loaded {
            Ok((info, ck)) if info.not_after > unix_now() => {
                self.certs.set_acme(name, Arc::new(ck));
                metrics::gauge!("hearth_tls_certificate_expiry_timestamp_seconds", "name" => name.to_string())
                    .set(info.not_after as f64);
                Some((info.not_before, info.not_after, info.issuer))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(name, error = %e, "a stored certificate could not be loaded");
                None
            }
        }
    }

    pub(crate) async fn status(&self, cfg: &Config) -> Vec<CertStatus> {
        let names = wanted_names(cfg);
        let ordering = self.ordering.locked().clone();
        let rows = self
            .sql(move |c| {
                let mut out = vec![];
                for n in names {
                    out.push(read_row(c, &n)?.unwrap_or(CertStatus { name: n, ..Default::default() }));
                }
                Ok::<_, rusqlite::Error>(out)
            })
            .await
            .unwrap_or_default();
        let now = unix_now();
        rows.into_iter()
            .map(|mut s| {
                s.status = if ordering.contains(&s.name) {
                    "ordering"
                } else if s.not_after.is_some_and(|t| t > now) {
                    if s.failures > 0 { "failed" } else { "valid" }
                } else if s.not_after.is_some() {
                    "expired"
                } else if s.failures > 0 {
                    "failed"
                } else {
                    "pending"
                }
                .into();
                s
            })
            .collect()
    }

    /// The `acme` subsystem: keeps every wanted name's certificate valid.
    pub(crate) async fn run(
        self: Arc<Self>,
        ctx: crate::supervisor::TaskCtx,
        live: Arc<crate::config::live::LiveConfig>,
    ) -> anyhow::Result<()> {
        let mut rx = live.subscribe();
        let mut loaded: HashSet<String> = HashSet::new();
        loop {
            let cfg = rx.borrow_and_update().clone();
            let names = wanted_names(&cfg);
            let now = unix_now();
            let mut next = now + 3600;
            let mut problems = vec![];
            for name in &names {
                if !loaded.contains(name) {
                    if let Some((nb, na, issuer)) = self.load(name) {
                        let (n, dir) = (name.clone(), cfg.tls.acme_directory.clone());
                        self.sql(move |c| {
                            c.execute(
                                "INSERT INTO certificates (name, directory, issuer, not_before, not_after, renew_at)
                                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                                     ON CONFLICT(name) DO UPDATE SET issuer = ?3, not_before = ?4, not_after = ?5,
                                       renew_at = COALESCE(renew_at, ?6)",
                                rusqlite::params![n, dir, issuer, nb, na, renewal::renew_at(nb, na, None, 0.0)],
                            )
                        })
                        .await?;
                    }
                    loaded.insert(name.clone());
                }
                let n = name.clone();
                let row = self.sql(move |c| read_row(c, &n)).await?;
                let forced = self.renew_now.locked().remove(name);
                let cert = row.as_ref().and_then(|r| Some((r.not_before?, r.not_after?, r.renew_at?)));
                let due = if forced {
                    Due::Order
                } else {
                    renewal::due(now, cert, row.as_ref().and_then(|r| r.next_attempt))
                };
                match due {
                    Due::Wait(t) => next = next.min(t),
                    Due::Order => {
                        ctx.ready(format!("ordering a certificate for {name}"));
                        self.ordering.locked().insert(name.clone());
                        let outcome = tokio::time::timeout(Duration::from_secs(300), self.order(&cfg, name)).await;
                        self.ordering.locked().remove(name);
                        let outcome = outcome.unwrap_or_else(|_| {
                            Err(Failure { message: "the order took longer than 5 minutes".into(), rate_limited: false })
                        });
                        match outcome {
                            Ok(renew_at) => {
                                metrics::counter!("hearth_acme_orders_total", "outcome" => "issued").increment(1);
                                next = next.min(renew_at);
                            }
                            Err(f) => {
                                metrics::counter!("hearth_acme_orders_total", "outcome" => "failed").increment(1);
                                let failures = row.as_ref().map(|r| r.failures).unwrap_or(0) + 1;
                                let wait = renewal::backoff(failures as u32, f.rate_limited, None);
                                tracing::warn!(name, error = %f.message, failures, retry_in_s = wait, "ACME order failed");
                                let (n, dir, msg, rl) =
                                    (name.clone(), cfg.tls.acme_directory.clone(), f.message.clone(), f.rate_limited);
                                let at = unix_now();
                                self.sql(move |c| {
                                        c.execute(
                                            "INSERT INTO certificates (name, directory, failures, next_attempt, last_attempt, last_error, rate_limited)
                                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                                             ON CONFLICT(name) DO UPDATE SET failures = ?3, next_attempt = ?4,
                                               last_attempt = ?5, last_error = ?6, rate_limited = ?7",
                                            rusqlite::params![n, dir, failures, at + wait, at, msg, rl],
                                        )
                                    })
                                    .await?;
                                next = next.min(at + wait);
                            }
                        }
                    }
                }
                let n = name.clone();
                if let Some(r) = self.sql(move |c| read_row(c, &n)).await?
                    && r.failures > 0
                {
                    problems.push(format!("{name}: {}", r.last_error));
                }
            }
            if names.is_empty() {
                ctx.ready("no routes use ACME");
            } else if problems.is_empty() {
                ctx.ready(format!("{} certificate(s) valid", names.len()));
            } else {
                ctx.degraded(problems.join("; "));
            }
            let wait = Duration::from_secs((next - unix_now()).clamp(1, 3600) as u64);
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                changed = rx.changed() => if changed.is_err() { return Ok(()) },
            }
        }
    }

    async fn account(&self, cfg: &Config) -> Result<Account, Failure> {
        let directory = cfg.tls.acme_directory.clone();
        let mut slot = self.account.lock().await;
        if let Some((d, a)) = &*slot
            && *d == directory
        {
            return Ok(a.clone());
        }
        let local = |m: String| Failure { message: m, rate_limited: false };
        let builder = if cfg.tls.acme_ca_roots.is_empty() {
            Account::builder()
        } else {
            Account::builder_with_root(&cfg.tls.acme_ca_roots)
        }
        .map_err(|e| local(format!("tls.acme_ca_roots: {e}")))?;
        let dir = self.data_dir.join("acme");
        crate::storage::ensure_private_dir(&dir).map_err(|e| local(e.to_string()))?;
        use sha2::Digest;
        let file = dir.join(format!(
            "account-{}.json",
            &data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(directory.as_bytes()))[..16]
        ));
        let account = match std::fs::read_to_string(&file) {
            Ok(json) => {
                let creds = serde_json::from_str(&json).map_err(|e| local(format!("{}: {e}", file.display())))?;
                builder.from_credentials(creds).await.map_err(|e| describe(&e))?
            }
            Err(_) => {
                let contact = format!("mailto:{}", cfg.tls.acme_email);
                let contacts: Vec<&str> = if cfg.tls.acme_email.is_empty() { vec![] } else { vec![contact.as_str()] };
                let (account, creds) = builder
                    .create(
                        &NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false },
                        directory.clone(),
                        None,
                    )
                    .await
                    .map_err(|e| describe(&e))?;
                let json = serde_json::to_string(&creds).map_err(|e| local(e.to_string()))?;
                write_private(&file, json.as_bytes()).map_err(|e| local(e.to_string()))?;
                tracing::info!(directory, account = account.id(), "created the ACME account");
                account
            }
        };
        *slot = Some((directory, account.clone()));
        Ok(account)
    }

    /// One order for `name`; on success the certificate is stored and served, and its renewal time returned.
    async fn order(&self, cfg: &Config, name: &str) -> Result<i64, Failure> {
        let account = self.account(cfg).await?;
        let local = |m: String| Failure { message: m, rate_limited: false };
        let ids = [Identifier::Dns(name.to_string())];
        let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(|e| describe(&e))?;
        let mut tokens = vec![];
        let mut alpn = false;
        let mut dns_records = vec![];
        {
            let mut auths = order.authorizations();
            while let Some(a) = auths.next().await {
                let mut a = a.map_err(|e| describe(&e))?;
                match a.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => return Err(local(format!("the authorization for {name} is {other:?}"))),
                }
                let offered: Vec<ChallengeType> = a.challenges.iter().map(|c| c.r#type.clone()).collect();
                let typ = cfg
                    .tls
                    .acme_challenges
                    .iter()
                    .map(|c| match c.as_str() {
                        "http-01" => ChallengeType::Http01,
                        "dns-01" => ChallengeType::Dns01,
                        _ => ChallengeType::TlsAlpn01,
                    })
                    .find(|t| offered.contains(t))
                    .ok_or_else(|| {
                        local(format!(
                            "the CA offers none of tls.acme_challenges ({}) for {name}; it offers {offered:?}",
                            cfg.tls.acme_challenges.join(", ")
                        ))
                    })?;
                let mut ch = a.challenge(typ.clone()).expect("offered");
                let ka = ch.key_authorization();
                if typ == ChallengeType::Http01 {
                    self.http01.locked().insert(ch.token.clone(), ka.as_str().into());
                    tokens.push(ch.token.clone());
                } else if typ == ChallengeType::Dns01 {
                    let (server, key) = dns01_settings(cfg).map_err(local)?;
                    let value = ka.dns_value();
                    super::dns01::publish(server, &key, name, &value).await.map_err(local)?;
                    dns_records.push((server, key, value));
                } else {
                    let mut params =
                        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| local(e.to_string()))?;
                    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(ka.digest().as_ref())];
                    let kp = rcgen::KeyPair::generate().map_err(|e| local(e.to_string()))?;
                    let cert = params.self_signed(&kp).map_err(|e| local(e.to_string()))?;
                    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(kp.serialize_der().into());
                    let ck = super::certified_key_unchecked(vec![cert.der().clone()], &key)
                        .map_err(|e| local(e.to_string()))?;
                    self.certs.set_challenge(name, Some(Arc::new(ck)));
                    alpn = true;
                }
                ch.set_ready().await.map_err(|e| describe(&e))?;
            }
        }
        let polled = order.poll_ready(&RetryPolicy::new().timeout(Duration::from_secs(120))).await;
        // challenges are answered only while an order is pending
        {
            let mut h = self.http01.locked();
            for t in &tokens {
                h.remove(t);
            }
        }
        if alpn {
            self.certs.set_challenge(name, None);
        }
        for (server, key, value) in &dns_records {
            super::dns01::withdraw(*server, key, name, value).await;
        }
        match polled {
            Ok(OrderStatus::Ready) => {}
            Ok(status) => return Err(self.why_invalid(&mut order, format!("the order is {status:?}")).await),
            Err(e) => {
                let f = describe(&e);
                return Err(self.why_invalid(&mut order, f.message).await);
            }
        }
        let key_pem = order.finalize().await.map_err(|e| describe(&e))?;
        let chain_pem = order
            .poll_certificate(&RetryPolicy::new().timeout(Duration::from_secs(120)))
            .await
            .map_err(|e| describe(&e))?;
        let (crt, key) = self.paths(name);
        let chain = parse_chain(&chain_pem, &crt).map_err(|e| local(e.to_string()))?;
        let info = super::cert_info(&chain[0]).map_err(|e| local(e.to_string()))?;
        let ck = certified_key(chain.clone(), &parse_key(&key_pem, &key).map_err(|e| local(e.to_string()))?)
            .map_err(|e| local(e.to_string()))?;
        crate::storage::ensure_private_dir(&self.data_dir.join("certs")).map_err(|e| local(e.to_string()))?;
        write_private(&key, key_pem.as_bytes()).map_err(|e| local(e.to_string()))?;
        write_private(&crt, chain_pem.as_bytes()).map_err(|e| local(e.to_string()))?;
        self.certs.set_acme(name, Arc::new(ck));
        metrics::gauge!("hearth_tls_certificate_expiry_timestamp_seconds", "name" => name.to_string())
            .set(info.not_after as f64);
        // ARI (RFC 9773) when the CA offers it, else two thirds of the lifetime
        let ari = match instant_acme::CertificateIdentifier::try_from(&chain[0]) {
            Ok(id) => match account.renewal_info(&id).await {
                Ok((ri, _)) => {
                    Some((ri.suggested_window.start.unix_timestamp(), ri.suggested_window.end.unix_timestamp()))
                }
                Err(_) => None,
            },
            Err(_) => None,
        };
        let renew_at = renewal::renew_at(info.not_before, info.not_after, ari, rand::random::<f64>());
        let (n, dir, issuer, now) = (name.to_string(), cfg.tls.acme_directory.clone(), info.issuer.clone(), unix_now());
        self.sql(move |c| {
            c.execute(
                "INSERT INTO certificates (name, directory, issuer, not_before, not_after, renew_at, failures,
                       next_attempt, last_attempt, last_success, last_error, rate_limited)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, NULL, ?7, ?7, '', 0)
                     ON CONFLICT(name) DO UPDATE SET directory = ?2, issuer = ?3, not_before = ?4, not_after = ?5,
                       renew_at = ?6, failures = 0, next_attempt = NULL, last_attempt = ?7, last_success = ?7,
                       last_error = '', rate_limited = 0",
                rusqlite::params![n, dir, issuer, info.not_before, info.not_after, renew_at, now],
            )
        })
        .await
        .map_err(|e| local(e.to_string()))?;
        tracing::info!(name, issuer = %info.issuer, not_after = info.not_after, renew_at, "ACME certificate issued");
        Ok(renew_at)
    }

    /// The CA's own explanation of a failed order: the challenge errors of its authorizations.
    async fn why_invalid(&self, order: &mut instant_acme::Order, fallback: String) -> Failure {
        let mut details = vec![];
        let mut rate_limited = false;
        let mut auths = order.authorizations();
        while let Some(Ok(mut a)) = auths.next().await {
            if let Ok(state) = a.refresh().await {
                for c in &state.challenges {
                    if let Some(p) = &c.error {
                        rate_limited |= p.r#type.as_deref().is_some_and(|t| t.ends_with(":rateLimited"));
                        details.push(p.to_string().trim_start_matches("API error: ").to_string());
                    }
                }
            }
        }
        if details.is_empty() {
            Failure { message: fallback, rate_limited }
        } else {
            Failure { message: details.join("; "), rate_limited }
        }
    }
}

fn read_row(c: &rusqlite::Connection, name: &str) -> Result<Option<CertStatus>, rusqlite::Error> {
    c.query_row(
        "SELECT name, issuer, not_before, not_after, renew_at, next_attempt, failures, last_attempt, last_success,
                last_error, rate_limited FROM certificates WHERE name = ?1",
        [name],
        |r| {
            Ok(CertStatus {
                name: r.get(0)?,
                status: String::new(),
                issuer: r.get(1)?,
                not_before: r.get(2)?,
                not_after: r.get(3)?,
                renew_at: r.get(4)?,
                next_attempt: r.get(5)?,
                failures: r.get(6)?,
                last_attempt: r.get(7)?,
                last_success: r.get(8)?,
                last_error: r.get(9)?,
                rate_limited: r.get(10)?,
            })
        },
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_names_stay_internal() {
        let mut cfg = Config::default();
        cfg.proxy.routes = vec![crate::config::ProxyRoute {
            hosts: vec!["app.example.com".into(), "nas.home.arpa".into(), "x.mylan".into(), "App.Example.com".into()],
            upstreams: vec!["http://127.0.0.1:1".into()],
            ..Default::default()
        }];
        cfg.dns.local_domains = vec!["mylan".into()];
        assert_eq!(wanted_names(&cfg), ["app.example.com"]);
    }

    #[test]
    fn migration_applies() {
        let db = crate::storage::Db::open_in_memory(&[("tls", MIGRATIONS), ("auth", crate::auth::MIGRATIONS)]).unwrap();
        let r = db.blocking(|c| {
            c.execute("INSERT INTO certificates (name, failures, last_error) VALUES ('a.example', 2, 'boom')", [])
                .unwrap();
            read_row(c, "a.example").unwrap().unwrap()
        });
        assert_eq!((r.failures, r.last_error.as_str(), r.not_after), (2, "boom", None));
    }
}
