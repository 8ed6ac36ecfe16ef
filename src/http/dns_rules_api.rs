//! My rules: hearth's own allow and block lists ("my allowlist", "my blocklist": files in `<data_dir>/rules/`,
//! registered in `dns.lists` the first time a rule is made). One-click rules from the query log, the list of
//! each domain with remove, a free-text editor with per-line validation, and "Check a domain" (AdGuard Home's
//! Check filtering, Pi-hole's Search lists), which names the list and rule that decide a name for a client.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{AdminAuth, DnsReadAuth};
use super::dns_api::{ListView, list_views};
use super::error::{ApiError, ApiJson, ErrorBody};
use super::{AppState, DnsApi};
use crate::dns::blocklist::{Line, ListKind, Rule, normalize_domain, parse_line};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_rules, add_rule, remove_rule))
        .routes(routes!(replace_rules))
        .routes(routes!(check))
}

/// The hearth-managed list for rules of this kind: its name and file.
fn managed_list(data_dir: &std::path::Path, kind: ListKind) -> (&'static str, std::path::PathBuf) {
    match kind {
        ListKind::Allow => ("my allowlist", data_dir.join("rules/allow.txt")),
        ListKind::Block => ("my blocklist", data_dir.join("rules/block.txt")),
    }
}

const HEADER: &str = "# Rules added from the hearth UI";

/// The domain a line of hearth's own list is about, when it is a plain domain rule (`||d^`, `@@||d^`, `d`).
fn domain_of(line: &str) -> Option<String> {
    match parse_line(line) {
        Line::Rule { rule: Rule::Domain(d), .. } => Some(d),
        _ => None,
    }
}

/// Read a managed list's file (empty when it does not exist yet).
async fn read_rules(file: std::path::PathBuf) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || match std::fs::read_to_string(&file) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ApiError::internal(format!("{}: {e}", file.display()))),
    })
    .await
    .map_err(ApiError::internal)?
}

/// Write a managed list's file (atomically) and put it in force: registered in `dns.lists` through the config
/// transaction the first time (which recompiles), else the lists are recompiled now.
async fn store(s: &DnsApi, kind: ListKind, text: String) -> Result<(), ApiError> {
    let cfg = s.config.current();
    let (name, file) = managed_list(&cfg.data_dir(), kind);
    let f = file.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        if let Some(dir) = f.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::util::write_atomic(&f, text.as_bytes(), Some(0o644))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let source = file.display().to_string();
    match cfg.dns.lists.iter().find(|l| l.name == name) {
        Some(l) if l.source == source && l.enabled => {
            let (dns, c, dir) = (s.dns.clone(), cfg.dns.clone(), cfg.data_dir().join("lists"));
            tokio::task::spawn_blocking(move || dns.reload_lists(&c, &dir)).await.map_err(ApiError::internal)?;
        }
        _ => {
            let generation = s.dns.list_generation();
            // registered inside the config transaction: a concurrent change of dns.lists is kept, not overwritten
            let list = crate::config::DnsList {
                name: name.to_string(),
                kind,
                source,
                enabled: true,
                update: crate::config::Duration::from_secs(86_400),
            };
            s.config
                .edit(move |cfg| {
                    cfg.dns.lists.retain(|l| l.name != list.name);
                    cfg.dns.lists.push(list);
                    Ok(())
                })
                .await?;
            // the DNS task recompiles on the change; wait (briefly) for that compilation, not an earlier one
            for _ in 0..100 {
                if s.dns.list_generation() > generation {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    Ok(())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RuleRequest {
    /// The name to allow or block (with its subdomains).
    domain: String,
    /// "allow" or "block".
    action: ListKind,
}

fn valid_domain(d: &str) -> Result<String, ApiError> {
    normalize_domain(d.trim()).ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "not a valid domain name").with_key("domain")
    })
}

/// Allow or block a name with one click (from a query log row): the rule goes into hearth's own list of that kind
/// (created in the data dir and added to `dns.lists` the first time), and the lists are recompiled at once.
#[utoipa::path(post, path = "/api/v1/dns/rules", tag = "dns", request_body = RuleRequest,
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = [ListView]), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn add_rule(
    auth: AdminAuth,
    State(s): State<DnsApi>,
    ApiJson(req): ApiJson<RuleRequest>,
) -> Result<Json<Vec<ListView>>, ApiError> {
    let domain = valid_domain(&req.domain)?;
    let (_, file) = managed_list(&s.config.current().data_dir(), req.action);
    let text = read_rules(file).await?;
    if !text.lines().any(|l| domain_of(l).as_deref() == Some(domain.as_str())) {
        let mut text = if text.is_empty() { format!("{HEADER}\n") } else { text };
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("||{domain}^\n"));
        store(&s, req.action, text).await?;
    }
    tracing::info!(by = %auth.principal, domain, action = ?req.action, "rule added");
    Ok(Json(list_views(&s)))
}

#[derive(Deserialize, IntoParams)]
struct RemoveParams {
    /// The domain whose rule goes.
    domain: String,
    /// From "allow" (my allowlist) or "block" (my blocklist).
    action: ListKind,
}

/// Remove a domain's rule from hearth's own allow or block list (the list's other lines stay as they are).
#[utoipa::path(delete, path = "/api/v1/dns/rules", tag = "dns", params(RemoveParams),
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = MyRules), (status = 401, body = ErrorBody),
        (status = 404, description = "`not_found`: the list has no rule for this domain", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn remove_rule(
    auth: AdminAuth,
    State(s): State<DnsApi>,
    Query(p): Query<RemoveParams>,
) -> Result<Json<MyRules>, ApiError> {
    let domain = valid_domain(&p.domain)?;
    let (_, file) = managed_list(&s.config.current().data_dir(), p.action);
    let text = read_rules(file).await?;
    let kept: Vec<&str> = text.lines().filter(|l| domain_of(l).as_deref() != Some(domain.as_str())).collect();
    if kept.len() == text.lines().count() {
        return Err(ApiError::not_found(format!("there is no rule for {domain} in this list")));
    }
    let mut new = kept.join("\n");
    new.push('\n');
    store(&s, p.action, new).await?;
    tracing::info!(by = %auth.principal, domain, action = ?p.action, "rule removed");
    Ok(Json(rules_view(&s).await?))
}

#[derive(Serialize, ToSchema)]
struct OwnList {
    /// The list's name in `dns.lists`.
    name: &'static str,
    /// The file, as it is (comments included): what the editor shows.
    text: String,
    /// The domains of its plain domain rules, in file order (what the page lists with a Remove button).
    domains: Vec<String>,
}

#[derive(Serialize, ToSchema)]
struct MyRules {
    allow: OwnList,
    block: OwnList,
}

async fn rules_view(s: &DnsApi) -> Result<MyRules, ApiError> {
    let dir = s.config.current().data_dir();
    let mut view = vec![];
    for kind in [ListKind::Allow, ListKind::Block] {
        let (name, file) = managed_list(&dir, kind);
        let text = read_rules(file).await?;
        let domains = text.lines().filter_map(domain_of).collect();
        view.push(OwnList { name, text, domains });
    }
    let block = view.pop().expect("two lists");
    let allow = view.pop().expect("two lists");
    Ok(MyRules { allow, block })
}

/// hearth's own allow and block lists: each domain, and the file's text for the editor.
#[utoipa::path(get, path = "/api/v1/dns/rules", tag = "dns",
    security(("session" = []), ("token" = ["dns:read"])),
    responses((status = 200, body = MyRules), (status = 401, body = ErrorBody)))]
async fn my_rules(_auth: DnsReadAuth, State(s): State<DnsApi>) -> Result<Json<MyRules>, ApiError> {
    Ok(Json(rules_view(&s).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RulesText {
    /// The whole list, one rule per line, in any supported format (`||d^`, `@@||d^`, `d`, `*.d`, `/regex/`,
    /// hosts lines; `#` and `!` comments).
    text: String,
}

/// The 1-based numbers and reasons of the lines the list parser would skip.
fn invalid_lines(text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| match parse_line(l) {
            Line::Invalid(why) => Some(format!("line {}: {why} ({})", i + 1, l.trim())),
            _ => None,
        })
        .collect()
}

/// Replace hearth's own allow or block list with this text. A line the parser would skip is refused (422, `key`
/// `text`, each bad line named) and nothing changes.
#[utoipa::path(put, path = "/api/v1/dns/rules/{action}", tag = "dns", request_body = RulesText,
    params(("action" = String, Path, description = "\"allow\" or \"block\"")),
    security(("session" = []), ("token" = [])),
    responses((status = 200, body = MyRules), (status = 401, body = ErrorBody),
        (status = 422, description = "`invalid_input`: lines that are not rules, each named", body = ErrorBody)))]
async fn replace_rules(
    auth: AdminAuth,
    State(s): State<DnsApi>,
    Path(action): Path<ListKind>,
    ApiJson(body): ApiJson<RulesText>,
) -> Result<Json<MyRules>, ApiError> {
    let bad = invalid_lines(&body.text);
    if !bad.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            format!(
                "{} not a rule: {}",
                if bad.len() == 1 { "this line is" } else { "these lines are" },
                bad.join("; ")
            ),
        )
        .with_key("text"));
    }
    let mut text = body.text.replace("\r\n", "\n");
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    store(&s, action, text).await?;
    tracing::info!(by = %auth.principal, action = ?action, "own rules replaced");
    Ok(Json(rules_view(&s).await?))
}

#[derive(Deserialize, IntoParams)]
struct CheckParams {
    /// The name to check.
    name: String,
    /// Check as this client (its group's lists); default: a client in no group.
    client: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct CheckResult {
    name: String,
    /// "blocked", "allowed" (an allow rule matched, which beats any block rule) or "none" (no list has it).
    verdict: &'static str,
    /// The list whose rule decided, and the rule as written in adblock syntax.
    list: Option<String>,
    rule: Option<String>,
    /// The client's group, when it is in one (its lists apply instead of all of them).
    group: Option<String>,
    /// Blocking is paused: the name would not be blocked now, whatever the verdict.
    paused: bool,
}

/// Check a domain: which list and rule block or allow it, for a client (AdGuard Home's "Check filtering").
#[utoipa::path(get, path = "/api/v1/dns/check", tag = "dns", params(CheckParams),
    security(("session" = []), ("token" = ["dns:read"])),
    responses((status = 200, body = CheckResult), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn check(
    _auth: DnsReadAuth,
    State(s): State<DnsApi>,
    Query(p): Query<CheckParams>,
) -> Result<Json<CheckResult>, ApiError> {
    let name = normalize_domain(p.name.trim()).ok_or_else(|| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "not a valid domain name").with_key("name")
    })?;
    let client: Option<IpAddr> = match p.client.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(c.parse().map_err(|_| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", "not an IP address").with_key("client")
        })?),
    };
    let c = s.dns.check_name(&name, client);
    Ok(Json(CheckResult {
        name,
        verdict: c.verdict,
        list: c.list,
        rule: c.rule,
        group: c.group,
        paused: s.dns.blocking_paused_until().is_some(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_domain_rules_are_listed_and_bad_lines_are_named() {
        let text = "# mine\n||ads.example^\n@@||ok.example^\nplain.example\n*.sub.example\n/re/\n";
        let domains: Vec<String> = text.lines().filter_map(domain_of).collect();
        assert_eq!(domains, ["ads.example", "ok.example", "plain.example"]);
        assert!(invalid_lines(text).is_empty());
        let bad = invalid_lines("||fine.example^\nnot a rule at all\n");
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].starts_with("line 2: "), "{bad:?}");
    }
}
