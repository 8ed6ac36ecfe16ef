//! The parameters of the Prometheus- and Loki-compatible query APIs: read from the query string and, for a POST,
//! from the `application/x-www-form-urlencoded` body, as both servers do.

/// The form: query-string pairs, plus the body's for a POST.
pub(super) fn form(query: Option<String>, body: &[u8]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    v.extend(form_urlencoded::parse(body).into_owned());
    v
}

/// The first value of `k`.
pub(super) fn get<'a>(f: &'a [(String, String)], k: &str) -> Option<&'a str> {
    f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}
