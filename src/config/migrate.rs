//! Config schema migrations: each step rewrites a `toml_edit` document from version N to N+1, keeping the user's
//! comments and layout. A file without `schema_version` is version 1 (the first released schema).
//!
//! Invariants: a migration never loses a key it does not understand (unknown keys are reported later by
//! deserialisation, naming the key); files from a newer hearth are refused, never downgraded.

use toml_edit::{DocumentMut, Item, Key, Table, value};

use super::{ConfigError, SCHEMA_VERSION};

/// One step: BEFORE = version `from`, AFTER = version `from + 1`.
pub(crate) struct Migration {
    pub from: i64,
    pub describe: &'static str,
    pub apply: fn(&mut DocumentMut) -> Result<(), ConfigError>,
}

/// The released migrations, in order. Version 1 is the first schema, so there are none yet; the next schema change
/// appends `Migration { from: 1, .. }` here with golden files under `tests/golden/config/`.
pub(crate) const MIGRATIONS: &[Migration] = &[];

/// Bring `doc` up to [`SCHEMA_VERSION`] in place; returns the version it started at.
pub(crate) fn migrate(doc: &mut DocumentMut) -> Result<i64, ConfigError> {
    migrate_with(doc, MIGRATIONS, SCHEMA_VERSION)
}

pub(crate) fn migrate_with(doc: &mut DocumentMut, steps: &[Migration], target: i64) -> Result<i64, ConfigError> {
    let start = match doc.get("schema_version") {
        None => 1,
        Some(item) => item.as_integer().ok_or_else(|| ConfigError::invalid("schema_version", "must be an integer"))?,
    };
    if start > target {
        return Err(ConfigError::invalid(
            "schema_version",
            format!("the file is for a newer hearth (schema {start}); this one understands up to {target}"),
        ));
    }
    if start < 1 {
        return Err(ConfigError::invalid("schema_version", "must be at least 1"));
    }
    let mut v = start;
    while v < target {
        let step = steps
            .iter()
            .find(|m| m.from == v)
            .ok_or_else(|| ConfigError::invalid("schema_version", format!("no migration from schema {v}")))?;
        (step.apply)(doc)?;
        tracing::info!(from = v, to = v + 1, change = step.describe, "migrated the configuration schema");
        v += 1;
        doc["schema_version"] = value(v);
    }
    Ok(start)
}

/// Rename `old` to `new` inside `table`, converting its value with `convert`, keeping the key's position, the
/// comments above it and the comment after its value. Returns whether the key was there.
#[allow(dead_code, reason = "for the next schema migration; exercised by the golden tests")]
pub(crate) fn rename_key(
    table: &mut Table,
    old: &str,
    new: &str,
    convert: impl FnOnce(&Item) -> Result<Item, ConfigError>,
) -> Result<bool, ConfigError> {
    if !table.contains_key(old) {
        return Ok(false);
    }
    let replacement = convert(&table[old])?;
    let keys: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
    let entries: Vec<(Key, Item)> = keys.iter().filter_map(|k| table.remove_entry(k)).collect();
    let mut replacement = Some(replacement);
    for (key, item) in entries {
        if key.get() == old {
            let mut new_key = Key::new(new);
            *new_key.leaf_decor_mut() = key.leaf_decor().clone();
            let mut new_item = replacement.take().expect("one key");
            if let (Some(nv), Some(ov)) = (new_item.as_value_mut(), item.as_value()) {
                *nv.decor_mut() = ov.decor().clone();
            }
            table.insert_formatted(&new_key, new_item);
        } else {
            table.insert_formatted(&key, item);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A test-only chain (1 → 2 → 3) exercising the framework with golden files; real migrations use the same
    // shape and the same golden-file check.

    /// BEFORE: `[server] listen = "a"` (a single string).  AFTER: `[server] http_listen = ["a"]`.
    fn v1_listen_to_list(doc: &mut DocumentMut) -> Result<(), ConfigError> {
        if let Some(server) = doc.get_mut("server").and_then(|s| s.as_table_mut()) {
            rename_key(server, "listen", "http_listen", |old| {
                let s = old.as_str().ok_or_else(|| ConfigError::invalid("server.listen", "must be a string"))?;
                let mut arr = toml_edit::Array::new();
                arr.push(s);
                Ok(value(arr))
            })?;
        }
        Ok(())
    }

    /// BEFORE: `[log] verbose = true`.  AFTER: `[log] level = "debug"` (false → "info").
    fn v2_verbose_to_level(doc: &mut DocumentMut) -> Result<(), ConfigError> {
        if let Some(log) = doc.get_mut("log").and_then(|s| s.as_table_mut()) {
            rename_key(log, "verbose", "level", |old| {
                let verbose = old.as_bool().ok_or_else(|| ConfigError::invalid("log.verbose", "must be a boolean"))?;
                Ok(value(if verbose { "debug" } else { "info" }))
            })?;
        }
        Ok(())
    }

    const CHAIN: &[Migration] = &[
        Migration { from: 1, describe: "server.listen → server.http_listen", apply: v1_listen_to_list },
        Migration { from: 2, describe: "log.verbose → log.level", apply: v2_verbose_to_level },
    ];

    fn golden(name: &str) -> String {
        let path = format!("{}/tests/golden/config/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The expected output is the checked-in `tests/golden/config/<case>.after.toml`, written and reviewed by a
    /// person; the test only reads it (there is deliberately no switch that lets a run rewrite it).
    #[test]
    fn golden_chain_keeps_comments() {
        for case in ["v1-full", "v2-partial"] {
            let before = golden(&format!("{case}.before.toml"));
            let expected = golden(&format!("{case}.after.toml"));
            assert_ne!(before, expected, "golden {case}: the expectation must show the migration's change");
            let mut doc: DocumentMut = before.parse().unwrap();
            migrate_with(&mut doc, CHAIN, 3).unwrap();
            assert_eq!(
                doc.to_string(),
                expected,
                "golden {case}: the migrated text differs from tests/golden/config/{case}.after.toml"
            );
            // migrating again is a no-op
            let again = doc.to_string();
            migrate_with(&mut doc, CHAIN, 3).unwrap();
            assert_eq!(doc.to_string(), again);
        }
    }

    #[test]
    fn current_files_pass_unchanged() {
        let mut doc: DocumentMut = crate::config::DEFAULT_TOML.parse().unwrap();
        assert_eq!(migrate(&mut doc).unwrap(), SCHEMA_VERSION);
        assert_eq!(doc.to_string(), crate::config::DEFAULT_TOML);
    }

    #[test]
    fn refuses_newer_and_bad_versions() {
        let mut doc: DocumentMut = "schema_version = 9\n".parse().unwrap();
        let e = migrate(&mut doc).unwrap_err();
        assert_eq!(e.key(), Some("schema_version"));
        assert!(e.to_string().contains("newer hearth"), "{e}");
        let mut doc: DocumentMut = "schema_version = \"1\"\n".parse().unwrap();
        assert_eq!(migrate(&mut doc).unwrap_err().key(), Some("schema_version"));
        let mut doc: DocumentMut = "schema_version = 0\n".parse().unwrap();
        assert!(migrate(&mut doc).is_err());
    }

    #[test]
    fn migration_errors_name_the_key() {
        let mut doc: DocumentMut = "[server]\nlisten = 5\n".parse().unwrap();
        assert_eq!(migrate_with(&mut doc, CHAIN, 3).unwrap_err().key(), Some("server.listen"));
    }
}
