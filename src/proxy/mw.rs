//! Per-route middlewares' pure parts: basic-auth users, client address filters.

use std::net::IpAddr;

use crate::net::Cidr;

/// `"user:$argon2id$…"` (a PHC string from `hearth admin hash-password`) → (user, hash).
pub(crate) fn parse_basic_user(s: &str) -> Result<(String, String), String> {
    let (user, hash) = s.split_once(':').ok_or("must be \"user:<argon2 hash>\"")?;
    if user.is_empty() || user.contains(char::is_whitespace) {
        return Err("the user name must be set and have no spaces".into());
    }
    if !hash.starts_with("$argon2") {
        return Err("the password must be an argon2 hash (print one with `hearth admin hash-password`)".into());
    }
    argon2::PasswordHash::new(hash).map_err(|e| format!("not a valid argon2 hash: {e}"))?;
    Ok((user.to_string(), hash.to_string()))
}

/// The user and password of a `Basic` Authorization header.
pub(crate) fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, b64) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = data_encoding::BASE64.decode(b64.trim().as_bytes()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Deny beats allow; an empty allow list allows everyone not denied.
pub(crate) fn ip_allowed(ip: IpAddr, allow: &[Cidr], deny: &[Cidr]) -> bool {
    if deny.iter().any(|c| c.contains(ip)) {
        return false;
    }
    allow.is_empty() || allow.iter().any(|c| c.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_users_and_headers() {
        let hash = crate::auth::hash_password("correct horse").unwrap();
        let (u, h) = parse_basic_user(&format!("alice:{hash}")).unwrap();
        assert_eq!(u, "alice");
        assert!(crate::auth::verify_password("correct horse", &h));
        assert!(parse_basic_user("alice:plaintext").is_err());
        assert!(parse_basic_user("alice").is_err());
        assert_eq!(basic_credentials("Basic YWxpY2U6cHc6eA=="), Some(("alice".into(), "pw:x".into())));
        assert_eq!(basic_credentials("Bearer abc"), None);
    }

    #[test]
    fn deny_beats_allow() {
        let allow = vec![Cidr::parse("192.168.0.0/16").unwrap()];
        let deny = vec![Cidr::parse("192.168.1.66").unwrap()];
        assert!(ip_allowed("192.168.1.2".parse().unwrap(), &allow, &deny));
        assert!(!ip_allowed("192.168.1.66".parse().unwrap(), &allow, &deny));
        assert!(!ip_allowed("10.0.0.1".parse().unwrap(), &allow, &deny));
        assert!(ip_allowed("10.0.0.1".parse().unwrap(), &[], &deny));
    }
}
