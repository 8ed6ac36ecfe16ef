//! The proxy's path normalisation on arbitrary request paths: no input may panic, and every normalised path is a
//! fixed point that starts with '/' and holds no `//`, `/./` or `/../` — also after a route's prefix is stripped.
#![no_main]

use hearth::proxy::path::{normalize, strip_prefix};
use libfuzzer_sys::fuzz_target;

fn check(n: &str) {
    assert!(n.starts_with('/'), "{n:?}");
    assert!(!n.contains("//") && !n.contains("/./") && !n.contains("/../"), "{n:?}");
    assert!(!n.ends_with("/.") && !n.ends_with("/.."), "{n:?}");
    assert!(n.is_ascii() && !n.contains('\\'), "{n:?}");
    assert_eq!(normalize(n).as_deref(), Ok(n), "not a fixed point");
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    // as sent, and as a request path (the proxy sees paths that start with '/')
    for raw in [raw.to_string(), format!("/{raw}")] {
        if let Ok(n) = normalize(&raw) {
            check(&n);
            for prefix in ["/", "/a", "/a/", "/api/v1"] {
                check(&strip_prefix(&n, prefix));
            }
        }
    }
});
