//! Writing a changed configuration back to `hearth.toml` without losing the user's comments: only the keys whose
//! value changed are rewritten (with `toml_edit`), and the file is replaced atomically (write temp, fsync, rename).

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table};

use super::{Config, ConfigError};

/// Return `doc` updated so that it describes `new`, touching only the keys that differ from `old`.
pub(crate) fn update_document(doc: &mut DocumentMut, old: &Config, new: &Config) -> Result<(), ConfigError> {
    let old_v = toml::Value::try_from(old).map_err(|e| ConfigError::invalid("config", e.to_string()))?;
    let new_v = toml::Value::try_from(new).map_err(|e| ConfigError::invalid("config", e.to_string()))?;
    let mut changes = Vec::new();
    diff("", &old_v, &new_v, &mut changes);
    for (key, value) in changes {
        set_path(doc, &key, &value)?;
    }
    Ok(())
}

fn diff(prefix: &str, old: &toml::Value, new: &toml::Value, out: &mut Vec<(String, toml::Value)>) {
    match (old, new) {
        (toml::Value::Table(o), toml::Value::Table(n)) => {
            for (k, nv) in n {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match o.get(k) {
                    Some(ov) => diff(&key, ov, nv, out),
                    None => out.push((key, nv.clone())),
                }
            }
        }
        _ if old != new => out.push((prefix.to_string(), new.clone())),
        _ => {}
    }
}

fn set_path(doc: &mut DocumentMut, key: &str, value: &toml::Value) -> Result<(), ConfigError> {
    let parts: Vec<&str> = key.split('.').collect();
    let (last, sections) = parts.split_last().expect("non-empty key");
    let mut table: &mut Table = doc.as_table_mut();
    for s in sections {
        let entry = table.entry(s).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(false);
            Item::Table(t)
        });
        table = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::invalid(key, format!("[{s}] is not a table in the file")))?;
    }
    let mut new_item = to_item_for(key, value).map_err(|e| ConfigError::invalid(key, e))?;
    // the comment above `routes = []` (a key's decor) or above the first `[[proxy.routes]]` (the first table's)
    // stays above the first table written; left on the key it would be printed inside the `[[…]]` header
    if let Item::ArrayOfTables(aot) = &mut new_item
        && let Some(first) = aot.get_mut(0)
    {
        let key_comment =
            table.key(last).and_then(|k| k.leaf_decor().prefix()).and_then(|p| p.as_str()).map(String::from);
        let table_comment = table
            .get(last)
            .and_then(|i| i.as_array_of_tables())
            .and_then(|a| a.get(0))
            .and_then(|t| t.decor().prefix())
            .and_then(|p| p.as_str())
            .map(String::from);
        if let Some(c) = table_comment.or(key_comment) {
            first.decor_mut().set_prefix(c);
        }
        if let Some(mut k) = table.key_mut(last) {
            k.leaf_decor_mut().clear();
        }
    }
    match table.get_mut(last) {
        Some(existing) => {
            let decor = existing.as_value().map(|v| v.decor().clone());
            *existing = new_item;
            if let (Some(decor), Some(v)) = (decor, existing.as_value_mut()) {
                *v.decor_mut() = decor;
            }
        }
        None => {
            table.insert(last, new_item);
        }
    }
    Ok(())
}

/// Array elements that are tables keep only the keys that differ from these defaults (the file stays readable).
fn element_defaults(key: &str) -> Option<toml::Value> {
    match key {
        "proxy.routes" => toml::Value::try_from(super::ProxyRoute::default()).ok(),
        _ => None,
    }
}

fn to_item_for(key: &str, value: &toml::Value) -> Result<Item, String> {
    if let toml::Value::Array(items) = value
        && !items.is_empty()
        && items.iter().all(|v| v.is_table())
    {
        // an array of tables is written as [[section]] blocks, like people write them; tables inside an element
        // (a route's `headers`) are inline tables: a `[section.sub]` block made here would carry no position in
        // the document and could be printed anywhere in the file (once it was, under [server])
        let defaults = element_defaults(key);
        let mut aot = toml_edit::ArrayOfTables::new();
        for item in items {
            let mut t = item.as_table().cloned().unwrap_or_default();
            if let Some(toml::Value::Table(d)) = &defaults {
                t.retain(|k, v| d.get(k) != Some(v));
            }
            let mut out = Table::new();
            for (k, v) in &t {
                out.insert(k, Item::Value(to_value(v)?));
            }
            aot.push(out);
        }
        return Ok(Item::ArrayOfTables(aot));
    }
    Ok(Item::Value(to_value(value)?))
}

/// A TOML value as an inline `toml_edit` value (tables become inline tables).
fn to_value(value: &toml::Value) -> Result<toml_edit::Value, String> {
    Ok(match value {
        toml::Value::Table(t) => {
            let mut it = toml_edit::InlineTable::new();
            for (k, v) in t {
                it.insert(k, to_value(v)?);
            }
            toml_edit::Value::InlineTable(it)
        }
        toml::Value::Array(a) => {
            let mut arr = toml_edit::Array::new();
            for v in a {
                arr.push(to_value(v)?);
            }
            toml_edit::Value::Array(arr)
        }
        other => other.to_string().parse().map_err(|e: toml_edit::TomlError| e.to_string())?,
    })
}

/// The text of `doc`, checked to read back as exactly `expected`: a file that would not is never written.
pub(crate) fn render_checked(doc: &DocumentMut, expected: &Config) -> Result<String, ConfigError> {
    let text = doc.to_string();
    let back = Config::from_toml(&text, "hearth.toml").map_err(|e| ConfigError::Write {
        path: "hearth.toml".into(),
        reason: format!("refused to write a file that would not load again ({e})"),
    })?;
    if back != *expected {
        return Err(ConfigError::Write {
            path: "hearth.toml".into(),
            reason: "refused to write a file that would read back as a different configuration".into(),
        });
    }
    Ok(text)
}

/// Replace `path` with `text` atomically ([`crate::util::write_atomic`]): an existing file keeps its permissions,
/// a new one is created 0600.
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<(), ConfigError> {
    crate::util::write_atomic(path, text.as_bytes(), None)
        .map_err(|e| ConfigError::Write { path: path.display().to_string(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Duration;

    #[test]
    fn changes_only_what_changed_and_keeps_comments() {
        let text = "# my hearth\nschema_version = 1\n\n[log]\n# how chatty\nlevel = \"info\" # was warn\n\n[server]\n# keep me\ndata_dir = \"/srv/h\"\n";
        let mut doc: DocumentMut = text.parse().unwrap();
        let old = Config::from_toml(text, "t").unwrap();
        let mut new = old.clone();
        new.log.level = "debug".into();
        new.auth.session_ttl = Duration::from_secs(3600);
        update_document(&mut doc, &old, &new).unwrap();
        let out = doc.to_string();
        assert!(out.contains("# my hearth"), "{out}");
        assert!(out.contains("# how chatty\nlevel = \"debug\" # was warn"), "{out}");
        assert!(out.contains("# keep me\ndata_dir = \"/srv/h\""), "{out}");
        assert!(out.contains("[auth]\nsession_ttl = \"1h\""), "{out}");
        assert_eq!(Config::from_toml(&out, "t").unwrap(), new);
    }

    #[test]
    fn default_template_round_trips() {
        let mut doc: DocumentMut = crate::config::DEFAULT_TOML.parse().unwrap();
        let old = Config::default();
        let mut new = old.clone();
        new.server.http_listen = vec![":8081".parse().unwrap(), "[::1]:8082".parse().unwrap()];
        update_document(&mut doc, &old, &new).unwrap();
        let out = doc.to_string();
        assert!(out.contains("http_listen = [\":8081\", \"[::1]:8082\"]"), "{out}");
        assert_eq!(Config::from_toml(&out, "t").unwrap(), new);
        // the rest of the commented template is intact
        assert_eq!(out.lines().count(), crate::config::DEFAULT_TOML.lines().count());
    }

    fn route(hosts: &[&str]) -> crate::config::ProxyRoute {
        crate::config::ProxyRoute {
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            upstreams: vec!["http://127.0.0.1:9".into()],
            ..Default::default()
        }
    }

    /// Every shape the API writes (arrays of tables with nested tables, inline tables, empty arrays), from files
    /// written in each style, reads back as the config that was applied, and the comments stay.
    #[test]
    fn every_shape_round_trips_through_the_file() {
        let files = [
            "# mine\nschema_version = 1\n[server]\n# keep\nadmin_hosts = []\n".to_string(),
            crate::config::DEFAULT_TOML.to_string(),
            "schema_version = 1\n[proxy]\n# my routes\nroutes = [{ hosts = [\"a.home.arpa\"], upstreams = [\"http://127.0.0.1:1\"], headers = { X-A = \"1\" } }]\n".into(),
            "schema_version = 1\n[[proxy.routes]]\nhosts = [\"a.home.arpa\"]\nupstreams = [\"http://127.0.0.1:1\"]\n[proxy.routes.headers]\nX-A = \"1\"\n\n[server]\n# keep\nadmin_hosts = []\n".into(),
        ];
        let mut with_headers = route(&["b.home.arpa"]);
        with_headers.headers.insert("X-Frame-Options".into(), String::new());
        with_headers.headers.insert("X-Robots-Tag".into(), "noindex".into());
        with_headers.basic_auth = vec![];
        let mut full = route(&["c.home.arpa", "*.c.home.arpa"]);
        full.forward_auth = true;
        full.allow = vec!["127.0.0.0/8".into()];
        full.path_prefix = "/app".into();
        full.strip_prefix = true;
        full.headers.insert("Cache-Control".into(), "no-store".into());
        type Change<'a> = Box<dyn Fn(&mut Config) + 'a>;
        let changes: Vec<Change> = vec![
            Box::new(|c| c.proxy.routes = vec![with_headers.clone()]),
            Box::new(|c| c.proxy.routes = vec![with_headers.clone(), full.clone(), route(&["d.home.arpa"])]),
            Box::new(|c| c.proxy.routes = vec![]),
            Box::new(|c| {
                c.dns.records = vec![crate::config::DnsRecord {
                    name: "nas.home.arpa".into(),
                    r#type: "A".into(),
                    value: "192.168.1.10".into(),
                    ttl: Duration::from_secs(60),
                }];
                c.dns.groups = vec![crate::config::DnsGroup {
                    name: "kids".into(),
                    clients: vec!["192.168.1.50".into()],
                    lists: vec![],
                }];
                c.server.admin_hosts = vec!["hearth.home.arpa".into()];
            }),
            Box::new(|c| {
                c.dns.records = vec![];
                c.proxy.trusted_proxies = vec!["10.0.0.1".into()];
                c.dns.rebinding_allow = vec!["fritz.box".into()];
            }),
        ];
        for file in &files {
            let mut text = file.clone();
            let mut cur = Config::from_toml(&text, "t").unwrap();
            for (i, change) in changes.iter().enumerate() {
                let mut doc: DocumentMut = text.parse().unwrap();
                let mut new = cur.clone();
                change(&mut new);
                update_document(&mut doc, &cur, &new).unwrap();
                text = render_checked(&doc, &new).unwrap_or_else(|e| panic!("change {i} on {file}: {e}\n{doc}"));
                assert_eq!(Config::from_toml(&text, "t").unwrap(), new, "change {i}:\n{text}");
                // the file loads in a second pass too (no duplicate keys, no misplaced tables)
                let _: toml::Value = toml::from_str(&text).unwrap();
                cur = new;
            }
            if file.contains("# keep") {
                assert!(text.contains("# keep"), "{text}");
            }
        }
    }

    #[test]
    fn a_file_that_would_not_read_back_is_refused() {
        let doc: DocumentMut = "schema_version = 1\n[log]\nlevel = \"debug\"\n".parse().unwrap();
        let e = render_checked(&doc, &Config::default()).unwrap_err();
        assert!(matches!(e, ConfigError::Write { .. }), "{e}");
    }

    #[test]
    fn atomic_write_replaces_and_keeps_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hearth.toml");
        write_atomic(&p, "a = 1\n").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, "a = 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a = 2\n");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp files left");
        let e = write_atomic(&dir.path().join("missing/x.toml"), "").unwrap_err();
        assert!(matches!(e, ConfigError::Write { .. }));
    }
}
