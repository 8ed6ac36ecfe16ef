//! Metadata: which top-level keys of a document's metadata are filterable (scalar values under a plain name), their
//! column types, and the translation of a Chroma-style `where` filter into a SQL predicate over those columns.
//! Pure: the store passes in the collection's known key types.
//!
//! Filter grammar (JSON): `{"key": value}` (equality), `{"key": {"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte": value}}`,
//! `{"key": {"$in"|"$nin": [values]}}`, `{"$and": [filters]}`, `{"$or": [filters]}`; several keys in one object
//! are and-ed. Values are strings, numbers or booleans. A key no document has matches nothing.

use std::collections::BTreeMap;

use serde_json::Value;

/// Column name prefix of filterable metadata keys (keeps them apart from id/text/vector).
pub(crate) const PREFIX: &str = "m_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    String,
    Number,
    Bool,
}

impl Kind {
    pub(crate) fn of(v: &Value) -> Option<Kind> {
        match v {
            Value::String(_) => Some(Kind::String),
            Value::Number(_) => Some(Kind::Number),
            Value::Bool(_) => Some(Kind::Bool),
            _ => None,
        }
    }
}

/// A key that can be a column: ASCII letters, digits and `_`, not starting with a digit, at most 60 bytes.
pub(crate) fn filterable_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 60
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The filterable (key, kind) pairs of one metadata object; errors on a key whose kind conflicts with `known`.
pub(crate) fn columns_of(meta: &Value, known: &BTreeMap<String, Kind>) -> Result<Vec<(String, Kind)>, String> {
    let Some(obj) = meta.as_object() else {
        return if meta.is_null() { Ok(vec![]) } else { Err("metadata must be an object".into()) };
    };
    let mut out = vec![];
    for (k, v) in obj {
        let Some(kind) = Kind::of(v) else { continue };
        if !filterable_key(k) {
            continue;
        }
        if let Some(&have) = known.get(k)
            && have != kind
        {
            return Err(format!(
                "metadata key {k:?} holds {} values in this collection, got a {}",
                kind_name(have),
                kind_name(kind)
            ));
        }
        out.push((k.clone(), kind));
    }
    out.sort();
    Ok(out)
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::String => "string",
        Kind::Number => "number",
        Kind::Bool => "boolean",
    }
}

/// A SQL string literal: single-quoted, quotes doubled.
pub(crate) fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn literal(v: &Value, key: &str, kind: Kind) -> Result<String, String> {
    let got = Kind::of(v).ok_or_else(|| format!("filter on {key:?}: values must be strings, numbers or booleans"))?;
    if got != kind {
        return Err(format!("filter on {key:?}: the key holds {} values, got a {}", kind_name(kind), kind_name(got)));
    }
    Ok(match v {
        Value::String(s) => sql_string(s),
        Value::Number(n) => {
            let f = n.as_f64().ok_or_else(|| format!("filter on {key:?}: number out of range"))?;
            if !f.is_finite() {
                return Err(format!("filter on {key:?}: number out of range"));
            }
            // a float literal, so that integer and float columns compare alike
            format!("CAST({f:?} AS DOUBLE)")
        }
        Value::Bool(b) => b.to_string(),
        _ => unreachable!("checked by Kind::of"),
    })
}

/// Translate a filter into SQL. `known` maps the collection's filterable keys to their kinds.
pub(crate) fn to_sql(filter: &Value, known: &BTreeMap<String, Kind>) -> Result<String, String> {
    to_sql_depth(filter, known, 0)
}

fn to_sql_depth(filter: &Value, known: &BTreeMap<String, Kind>, depth: usize) -> Result<String, String> {
    if depth > 16 {
        return Err("filter is nested too deeply".into());
    }
    let obj = filter.as_object().ok_or("a filter must be an object")?;
    if obj.is_empty() {
        return Err("a filter must not be empty".into());
    }
    let mut parts = vec![];
    for (k, v) in obj {
        let part = match k.as_str() {
            "$and" | "$or" => {
                let list =
                    v.as_array().filter(|l| !l.is_empty()).ok_or_else(|| format!("{k} takes a list of filters"))?;
                let subs: Vec<String> =
                    list.iter().map(|f| to_sql_depth(f, known, depth + 1)).collect::<Result<_, _>>()?;
                let op = if k == "$and" { " AND " } else { " OR " };
                format!("({})", subs.join(op))
            }
            op if op.starts_with('$') => return Err(format!("unknown operator {op:?} at the top of a filter")),
            key => condition(key, v, known)?,
        };
        parts.push(part);
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { format!("({})", parts.join(" AND ")) })
}

/// A key's condition as (operator, operand): `{"$op": operand}`, or a bare value for `$eq`.
fn operator<'a>(key: &str, v: &'a Value) -> Result<(&'a str, &'a Value), String> {
    match v {
        Value::Object(o) if o.len() == 1 => {
            let (op, operand) = o.iter().next().expect("one entry");
            Ok((op.as_str(), operand))
        }
        Value::Object(_) => Err(format!("filter on {key:?}: use one operator per object")),
        other => Ok(("$eq", other)),
    }
}

fn condition(key: &str, v: &Value, known: &BTreeMap<String, Kind>) -> Result<String, String> {
    if !filterable_key(key) {
        return Err(format!("{key:?} is not a filterable metadata key (letters, digits and _ only)"));
    }
    let (op, operand) = operator(key, v)?;
    let Some(&kind) = known.get(key) else {
        // no document has this key: nothing matches (and for $ne/$nin, nothing has a value either)
        return Ok("FALSE".into());
    };
    let col = format!("{PREFIX}{key}");
    let cmp = |sql_op: &str| -> Result<String, String> {
        if matches!(kind, Kind::Bool) && !matches!(sql_op, "=" | "<>") {
            return Err(format!("filter on {key:?}: booleans compare with $eq or $ne only"));
        }
        Ok(format!("{col} {sql_op} {}", literal(operand, key, kind)?))
    };
    match op {
        "$eq" => cmp("="),
        "$ne" => cmp("<>"),
        "$gt" => cmp(">"),
        "$gte" => cmp(">="),
        "$lt" => cmp("<"),
        "$lte" => cmp("<="),
        "$in" | "$nin" => {
            let list = operand
                .as_array()
                .filter(|l| !l.is_empty() && l.len() <= 1000)
                .ok_or_else(|| format!("filter on {key:?}: {op} takes a list of 1 to 1000 values"))?;
            let lits: Vec<String> = list.iter().map(|x| literal(x, key, kind)).collect::<Result<_, _>>()?;
            let not = if op == "$nin" { "NOT " } else { "" };
            Ok(format!("{col} {not}IN ({})", lits.join(", ")))
        }
        other => Err(format!("filter on {key:?}: unknown operator {other:?}")),
    }
}

/// Evaluate a filter (already accepted by [`to_sql`]) against one document's metadata, with SQL's semantics: a
/// missing key or a value of another type matches nothing, not even `$ne`/`$nin`. Hybrid search needs it: lance
/// applies the filter to the vector leg only, so fused results are filtered again here.
pub(crate) fn matches(filter: &Value, meta: &Value) -> bool {
    let Some(obj) = filter.as_object() else { return false };
    obj.iter().all(|(k, v)| match k.as_str() {
        "$and" => v.as_array().is_some_and(|l| l.iter().all(|f| matches(f, meta))),
        "$or" => v.as_array().is_some_and(|l| l.iter().any(|f| matches(f, meta))),
        key => {
            let Some(have) = meta.get(key).filter(|h| Kind::of(h).is_some()) else { return false };
            let Ok((op, operand)) = operator(key, v) else { return false };
            let cmp = |x: &Value| -> Option<std::cmp::Ordering> {
                match (have, x) {
                    (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
                    (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
                    (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
                    _ => None,
                }
            };
            use std::cmp::Ordering::*;
            match op {
                "$eq" => cmp(operand) == Some(Equal),
                "$ne" => matches!(cmp(operand), Some(Less | Greater)),
                "$gt" => cmp(operand) == Some(Greater),
                "$gte" => matches!(cmp(operand), Some(Greater | Equal)),
                "$lt" => cmp(operand) == Some(Less),
                "$lte" => matches!(cmp(operand), Some(Less | Equal)),
                "$in" => operand.as_array().is_some_and(|l| l.iter().any(|x| cmp(x) == Some(Equal))),
                "$nin" => operand.as_array().is_some_and(|l| l.iter().all(|x| matches!(cmp(x), Some(Less | Greater)))),
                _ => false,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn known() -> BTreeMap<String, Kind> {
        [("year", Kind::Number), ("tag", Kind::String), ("done", Kind::Bool)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    #[test]
    fn translates_the_grammar() {
        let k = known();
        assert_eq!(to_sql(&json!({"tag": "a'b"}), &k).unwrap(), "m_tag = 'a''b'");
        assert_eq!(to_sql(&json!({"year": {"$gte": 2020}}), &k).unwrap(), "m_year >= CAST(2020.0 AS DOUBLE)");
        assert_eq!(to_sql(&json!({"tag": {"$in": ["x", "y"]}}), &k).unwrap(), "m_tag IN ('x', 'y')");
        assert_eq!(to_sql(&json!({"tag": {"$nin": ["x"]}}), &k).unwrap(), "m_tag NOT IN ('x')");
        assert_eq!(
            to_sql(&json!({"$or": [{"done": true}, {"$and": [{"year": {"$lt": 1}}, {"tag": {"$ne": "z"}}]}]}), &k)
                .unwrap(),
            "(m_done = true OR (m_year < CAST(1.0 AS DOUBLE) AND m_tag <> 'z'))"
        );
        assert_eq!(to_sql(&json!({"missing": 1}), &k).unwrap(), "FALSE");
    }

    #[test]
    fn refuses_what_it_cannot_express() {
        let k = known();
        for bad in [
            json!([]),
            json!({}),
            json!({"$not": {}}),
            json!({"year": "2020"}),
            json!({"done": {"$gt": true}}),
            json!({"tag": {"$in": []}}),
            json!({"tag": {"$like": "x"}}),
            json!({"tag": {"$eq": "x", "$ne": "y"}}),
            json!({"bad key": 1}),
            json!({"$and": []}),
            json!({"tag": null}),
        ] {
            assert!(to_sql(&bad, &k).is_err(), "{bad}");
        }
    }

    #[test]
    fn evaluates_like_the_sql() {
        let m = json!({"year": 2024, "tag": "a", "done": true});
        for (f, want) in [
            (json!({"tag": "a"}), true),
            (json!({"year": {"$gte": 2024}}), true),
            (json!({"year": {"$lt": 2024}}), false),
            (json!({"tag": {"$in": ["b", "a"]}}), true),
            (json!({"tag": {"$nin": ["a"]}}), false),
            (json!({"missing": {"$ne": 1}}), false),
            (json!({"$or": [{"done": false}, {"$and": [{"tag": "a"}, {"year": 2024}]}]}), true),
            (json!({"tag": "a", "done": false}), false),
        ] {
            assert_eq!(matches(&f, &m), want, "{f}");
        }
    }

    #[test]
    fn metadata_columns_are_typed_and_checked() {
        let k = known();
        let cols = columns_of(&json!({"year": 1, "new": "x", "nested": {"a": 1}, "bad key": 1, "list": [1]}), &k);
        assert_eq!(cols.unwrap(), vec![("new".into(), Kind::String), ("year".into(), Kind::Number)]);
        assert!(columns_of(&json!({"year": "x"}), &k).unwrap_err().contains("year"));
        assert!(columns_of(&json!("x"), &k).is_err());
        assert!(columns_of(&Value::Null, &k).unwrap().is_empty());
    }
}
