//! Request paths before routing (pure core): one normal form, so that a route's path prefix, its access rules and
//! the backend all see the same path, and `/%61dmin`, `//admin` or `/x/../admin` cannot slip past a rule about
//! `/admin`.
//!
//! [`normalize`] applies RFC 3986 §6.2.2 to the path of a request-target (without its query):
//!
//! - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, the others keep their escape
//!   with upper-case hex (`%2f` is never decoded: an escaped reserved character is not the same as the raw one);
//!   octets that may not appear raw in a path (space, `"`, `<`, `>`, non-ASCII, …) are escaped, so the result is
//!   ASCII and only `pchar`s, `/` and escapes;
//! - dot segments are removed (§5.2.4), also when written `%2e`/`%2E` (they are dots once decoded); a final `.`
//!   or `..` leaves a trailing slash (`/a/b/..` → `/a/`), as the RFC does;
//! - runs of `/` collapse to one (not in the RFC, but no backend we front gives `//` a meaning of its own, and
//!   rules about `/admin` must hold for `//admin`); a trailing slash is kept.
//!
//! What cannot be normalised safely is refused ([`PathError`]; the proxy answers 400, as nginx does): a path not
//! starting with `/`, an invalid escape, an encoded `/` (`%2F`: backends disagree whether it separates
//! segments), a `\` raw or encoded (`%5C`: some backends treat it as `/`), control characters raw or encoded
//! (`%00`–`%1F`, `%7F`), a `..` that would climb above the root (the RFC clamps it to the root; nginx refuses it,
//! and so do we: no legitimate client sends it), and a dot segment with a parameter (`/..;/`, `/.;/`): Tomcat and
//! other servlet containers read `..;` as `..`, which is the classic way past a proxy's path rule.
//!
//! [`strip_prefix`] removes a route's prefix from a normalised path for `strip_prefix` routes; what it returns
//! always starts with `/` and is again normalised.

/// Why a path was refused. The message is safe to show to the client.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("invalid percent-escape at byte {0} of the path")]
    BadEscape(usize),
    #[error("encoded '/' (%2F) in the path")]
    EncodedSlash,
    #[error("'\\' in the path (raw or as %5C)")]
    Backslash,
    #[error("control character {0:#04x} in the path (raw or encoded)")]
    ControlChar(u8),
    #[error("'..' in the path goes above the root")]
    AboveRoot,
    #[error("dot segment with a parameter ('.;' or '..;') in the path")]
    DotSegmentParam,
}

/// RFC 3986 `unreserved`.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// May appear raw in a path segment (`pchar` without the escapes): unreserved, sub-delims, `:` and `@`.
fn pchar(b: u8) -> bool {
    unreserved(b)
        || matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b':' | b'@')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// The octet a path may not hold, raw or encoded.
fn refused_octet(b: u8) -> Option<PathError> {
    match b {
        b'\\' => Some(PathError::Backslash),
        0..=0x1f | 0x7f => Some(PathError::ControlChar(b)),
        _ => None,
    }
}

/// The normal form of a request path (see the module documentation), or why it has none.
pub(crate) fn normalize(raw_path: &str) -> Result<String, PathError> {
    let bytes = raw_path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // 1. escapes: decode unreserved ones, upper-case the rest, escape what may not be raw
    let mut decoded = String::with_capacity(raw_path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
            else {
                return Err(PathError::BadEscape(i));
            };
            let octet = (hi << 4) | lo;
            if octet == b'/' {
                return Err(PathError::EncodedSlash);
            }
            if let Some(e) = refused_octet(octet) {
                return Err(e);
            }
            if unreserved(octet) {
                decoded.push(octet as char);
            } else {
                push_escaped(&mut decoded, octet);
            }
            i += 3;
        } else {
            if let Some(e) = refused_octet(b) {
                return Err(e);
            }
            if b == b'/' || pchar(b) {
                decoded.push(b as char);
            } else {
                push_escaped(&mut decoded, b);
            }
            i += 1;
        }
    }
    // 2. segments: drop empty ones and `.`, pop on `..`; a path ending in `/`, `.` or `..` keeps a trailing slash
    let mut out: Vec<&str> = Vec::new();
    let mut segments = decoded[1..].split('/').peekable();
    let mut trailing_slash = false;
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "" | "." => trailing_slash = last,
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = last;
            }
            _ => {
                if matches!(seg.split(';').next(), Some("." | "..")) {
                    return Err(PathError::DotSegmentParam);
                }
                out.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if out.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(path)
}

/// `normalized` without the route's `prefix` (for routes with `strip_prefix`): `/app/x` without `/app` or `/app/`
/// is `/x`, `/app` without `/app` is `/`. The prefix is removed only at a segment boundary; a path that does not
/// start with it is returned as it is. The result starts with `/`, and is normalised when `normalized` is.
pub(crate) fn strip_prefix(normalized: &str, prefix: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    match normalized.strip_prefix(prefix) {
        Some("") => "/".to_string(),
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ if normalized.starts_with('/') => normalized.to_string(),
        _ => format!("/{normalized}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(raw: &str) -> String {
        normalize(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
    }

    #[test]
    fn the_bypasses_of_an_admin_rule_all_become_admin() {
        for raw in [
            "/admin/x",
            "/%61dmin/x",
            "/%61%64%6D%69%6e/x",
            "//admin/x",
            "///admin//x",
            "/x/../admin/x",
            "/./admin/x",
            "/a/b/../../admin/x",
            "/a/%2E%2E/admin/x",
            "/a/%2e%2e/admin/x",
            "/a/.%2e/admin/x",
            "/%2e/admin/x",
            "/admin/./x",
            "/admin/x/.",
        ] {
            let want = if raw.ends_with("/.") { "/admin/x/" } else { "/admin/x" };
            assert_eq!(ok(raw), want, "{raw:?}");
        }
        assert_eq!(ok("/a/%2E%2E/admin"), "/admin");
    }

    #[test]
    fn dot_segments_follow_rfc_3986() {
        // RFC 3986 §5.2.4 and §5.4's examples, on paths
        assert_eq!(ok("/a/b/c/./../../g"), "/a/g");
        assert_eq!(ok("/mid/content=5/../6"), "/mid/6");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/b/."), "/a/b/");
        assert_eq!(ok("/a/.."), "/");
        assert_eq!(ok("/."), "/");
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("//"), "/");
        assert_eq!(ok("/a/"), "/a/");
        assert_eq!(ok("/a//"), "/a/");
        assert_eq!(ok("/a"), "/a");
        // not dot segments
        assert_eq!(ok("/.../a"), "/.../a");
        assert_eq!(ok("/..a/.b/c."), "/..a/.b/c.");
        assert_eq!(ok("/a;b/c"), "/a;b/c");
    }

    #[test]
    fn escapes_are_normalised() {
        assert_eq!(ok("/%7euser/%41-%5f"), "/~user/A-_");
        assert_eq!(ok("/a%3fb"), "/a%3Fb", "reserved characters keep their escape, in upper case");
        assert_eq!(ok("/a%23b%25c%3Bd"), "/a%23b%25c%3Bd");
        assert_eq!(ok("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(ok("/café"), "/caf%C3%A9", "raw non-ASCII is escaped");
        assert_eq!(ok("/a b\"<>`{}|^"), "/a%20b%22%3C%3E%60%7B%7D%7C%5E");
        assert_eq!(ok("/a:b@c!$&'()*+,;="), "/a:b@c!$&'()*+,;=");
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let cases: &[(&str, PathError)] = &[
            ("", PathError::NotAbsolute),
            ("admin", PathError::NotAbsolute),
            ("%2Fadmin", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("/..", PathError::AboveRoot),
            ("/../admin", PathError::AboveRoot),
            ("/%2e%2e/admin", PathError::AboveRoot),
            ("/%2E%2E", PathError::AboveRoot),
            ("/a/../../admin", PathError::AboveRoot),
            ("/a/./b/../../..", PathError::AboveRoot),
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a%5cb", PathError::Backslash),
            ("/a%5Cb", PathError::Backslash),
            ("/a\\b", PathError::Backslash),
            ("/a\\..\\admin", PathError::Backslash),
            ("/a%00b", PathError::ControlChar(0)),
            ("/a\0b", PathError::ControlChar(0)),
            ("/a%0d%0aSet-Cookie:x", PathError::ControlChar(0x0d)),
            ("/a\nb", PathError::ControlChar(0x0a)),
            ("/a%1fb", PathError::ControlChar(0x1f)),
            ("/a%7Fb", PathError::ControlChar(0x7f)),
            ("/a\x7fb", PathError::ControlChar(0x7f)),
            ("/a%", PathError::BadEscape(2)),
            ("/a%4", PathError::BadEscape(2)),
            ("/a%g0", PathError::BadEscape(2)),
            ("/a%%41", PathError::BadEscape(2)),
            ("/a%+1", PathError::BadEscape(2)),
            ("/..;/admin", PathError::DotSegmentParam),
            ("/a/..;x/admin", PathError::DotSegmentParam),
            ("/a/.;/admin", PathError::DotSegmentParam),
            ("/a/%2e%2e;/admin", PathError::DotSegmentParam),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize(raw).as_ref(), Err(want), "{raw:?}");
            assert!(!want.to_string().is_empty());
        }
    }

    #[test]
    fn strip_prefix_never_leaves_the_root() {
        assert_eq!(strip_prefix("/app/x", "/app"), "/x");
        assert_eq!(strip_prefix("/app/x", "/app/"), "/x");
        assert_eq!(strip_prefix("/app/x/", "/app"), "/x/");
        assert_eq!(strip_prefix("/app", "/app"), "/");
        assert_eq!(strip_prefix("/app/", "/app"), "/");
        assert_eq!(strip_prefix("/app/", "/app/"), "/");
        assert_eq!(strip_prefix("/apple", "/app"), "/apple", "only at a segment boundary");
        assert_eq!(strip_prefix("/other", "/app"), "/other");
        assert_eq!(strip_prefix("/x", "/"), "/x");
        assert_eq!(strip_prefix("/", "/"), "/");
        assert_eq!(strip_prefix("/a/b/c", "/a/b"), "/c");
    }

    /// Raw paths built from the pieces that matter: separators, dots raw and encoded, escapes of every kind.
    fn raw_path() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("%2e".to_string()),
            Just("%2E".to_string()),
            Just(";".to_string()),
            "[a-zA-Z0-9_~-]{1,4}",
            "%[0-9a-fA-F]{2}",
            "[ -~]",
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(piece, 0..16).prop_map(|v| format!("/{}", v.concat()))
    }

    fn check_normal_form(n: &str) {
        assert!(n.starts_with('/'), "{n:?}");
        assert!(!n.contains("//") && !n.contains("/./") && !n.contains("/../"), "{n:?}");
        assert!(!n.ends_with("/.") && !n.ends_with("/.."), "{n:?}");
        assert!(n.is_ascii() && !n.contains('\\'), "{n:?}");
        assert_eq!(normalize(n).as_deref(), Ok(n), "a fixed point");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn the_normal_form_is_a_safe_fixed_point(raw in raw_path()) {
            if let Ok(n) = normalize(&raw) {
                check_normal_form(&n);
                for prefix in ["/", "/a", "/a/", "/a/b"] {
                    check_normal_form(&strip_prefix(&n, prefix));
                }
            }
        }

        #[test]
        fn arbitrary_strings_never_panic(raw in any::<String>()) {
            if let Ok(n) = normalize(&raw) {
                check_normal_form(&n);
            }
        }
    }
}
