//! The table layout in Arrow terms: the schema a collection is created with and read back from (dimension, model,
//! filterable metadata columns, schema version), documents encoded as a record batch for lance, and result batches
//! decoded into strings, vectors and [`Hit`]s. Pure: no IO, no locks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, StringBuilder};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde_json::Value;

use super::super::MemoryError;
use super::super::filter::{self, Kind};
use super::{Doc, Hit, store_err};

pub(crate) const SCHEMA_VERSION: &str = "1";
const META_VERSION: &str = "hearth.schema_version";
const META_MODEL: &str = "hearth.model";

fn base_fields(dim: usize) -> Vec<Field> {
    vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, true),
        Field::new(
            "vector",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), dim as i32),
            false,
        ),
        Field::new("metadata", DataType::Utf8, true),
    ]
}

/// The schema of a new collection of `dim`-dimensional vectors: the base columns, this hearth's schema version and
/// the embedding model (if any) in the metadata.
pub(super) fn new_schema(dim: usize, model: Option<&str>) -> Schema {
    let mut meta = HashMap::from([(META_VERSION.to_string(), SCHEMA_VERSION.to_string())]);
    if let Some(m) = model {
        meta.insert(META_MODEL.to_string(), m.to_string());
    }
    Schema::new_with_metadata(base_fields(dim), meta)
}

/// The column type a filterable metadata key of this kind is stored in.
pub(super) fn kind_type(k: Kind) -> DataType {
    match k {
        Kind::String => DataType::Utf8,
        Kind::Number => DataType::Float64,
        Kind::Bool => DataType::Boolean,
    }
}

/// What a table's schema says: dimension, embedding model, filterable metadata keys.
pub(super) type Described = (usize, Option<String>, BTreeMap<String, Kind>);

/// Read a table's schema back; refuse schema versions this hearth does not know.
pub(super) fn describe(schema: &Schema) -> Result<Described, MemoryError> {
    let version = schema.metadata().get(META_VERSION).map(String::as_str).unwrap_or(SCHEMA_VERSION);
    if version != SCHEMA_VERSION {
        return Err(MemoryError::Store(format!(
            "collection schema version {version} is not understood by this hearth (it knows {SCHEMA_VERSION})"
        )));
    }
    let dim = match schema.field_with_name("vector").map(|f| f.data_type().clone()) {
        Ok(DataType::FixedSizeList(_, n)) => n as usize,
        _ => return Err(MemoryError::Store("table has no vector column".into())),
    };
    let mut kinds = BTreeMap::new();
    for f in schema.fields() {
        if let Some(key) = f.name().strip_prefix(filter::PREFIX) {
            let kind = match f.data_type() {
                DataType::Utf8 => Kind::String,
                DataType::Float64 => Kind::Number,
                DataType::Boolean => Kind::Bool,
                _ => continue,
            };
            kinds.insert(key.to_string(), kind);
        }
    }
    Ok((dim, schema.metadata().get(META_MODEL).cloned(), kinds))
}

/// Documents as a record batch of the table's current `schema` (typed metadata columns filled from the JSON).
pub(super) fn to_batch(schema: &SchemaRef, docs: &[Doc], dim: usize) -> Result<RecordBatch, MemoryError> {
    let mut columns: Vec<ArrayRef> = vec![];
    for field in schema.fields() {
        let col: ArrayRef = match field.name().as_str() {
            "id" => Arc::new(StringArray::from_iter_values(docs.iter().map(|d| d.id.as_str()))),
            "text" => Arc::new(StringArray::from_iter(docs.iter().map(|d| d.text.as_deref()))),
            "metadata" => Arc::new(StringArray::from_iter(
                docs.iter().map(|d| (!d.metadata.is_null()).then(|| d.metadata.to_string())),
            )),
            "vector" => {
                let values = Float32Array::from_iter_values(docs.iter().flat_map(|d| d.vector.iter().copied()));
                let item = Arc::new(Field::new("item", DataType::Float32, true));
                Arc::new(FixedSizeListArray::try_new(item, dim as i32, Arc::new(values), None).map_err(store_err)?)
            }
            other => {
                let key = other.strip_prefix(filter::PREFIX).unwrap_or(other);
                let get = |d: &Doc| d.metadata.get(key).cloned().unwrap_or(Value::Null);
                match field.data_type() {
                    DataType::Utf8 => {
                        let mut b = StringBuilder::new();
                        docs.iter().for_each(|d| b.append_option(get(d).as_str()));
                        Arc::new(b.finish())
                    }
                    DataType::Float64 => {
                        let mut b = Float64Builder::new();
                        docs.iter().for_each(|d| b.append_option(get(d).as_f64()));
                        Arc::new(b.finish())
                    }
                    DataType::Boolean => {
                        let mut b = BooleanBuilder::new();
                        docs.iter().for_each(|d| b.append_option(get(d).as_bool()));
                        Arc::new(b.finish())
                    }
                    t => return Err(MemoryError::Store(format!("unexpected column {other} of type {t}"))),
                }
            }
        };
        columns.push(col);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(store_err)
}

/// The hits of a lance query's result batches, scored by `_relevance_score` (hybrid) or as cosine similarity
/// from `_distance`.
pub(super) fn hits_of(batches: &[RecordBatch], hybrid: bool) -> Result<Vec<Hit>, MemoryError> {
    let mut hits = vec![];
    for b in batches {
        let (ids, texts, metas) = (strings(b, "id")?, strings(b, "text")?, strings(b, "metadata")?);
        let name = if hybrid { "_relevance_score" } else { "_distance" };
        let score_col = b.column_by_name(name).ok_or_else(|| store_err(format!("no {name} column in results")))?;
        let scores =
            score_col.as_any().downcast_ref::<Float32Array>().ok_or_else(|| store_err("score is not float32"))?;
        for i in 0..b.num_rows() {
            let raw = scores.value(i);
            let score = if hybrid { raw } else { 1.0 - raw };
            hits.push(hit(ids[i].unwrap_or_default(), score, texts[i], metas[i]));
        }
    }
    Ok(hits)
}

/// A hit from a stored row (lance's columns or the in-memory index's copy of them).
pub(super) fn hit(id: &str, score: f32, text: Option<&str>, metadata: Option<&str>) -> Hit {
    Hit {
        id: id.to_string(),
        score,
        text: text.map(str::to_string),
        metadata: metadata.and_then(|m| serde_json::from_str(m).ok()).unwrap_or(Value::Null),
    }
}

/// A text column of a result batch as optional strings.
pub(super) fn strings<'a>(b: &'a RecordBatch, name: &str) -> Result<Vec<Option<&'a str>>, MemoryError> {
    let col = b.column_by_name(name).ok_or_else(|| store_err(format!("no {name} column in results")))?;
    let a = col.as_any().downcast_ref::<StringArray>().ok_or_else(|| store_err(format!("{name} is not utf8")))?;
    Ok(a.iter().collect())
}

/// The vector column of a result batch, row-major.
pub(super) fn vectors(b: &RecordBatch, dim: usize) -> Result<Vec<f32>, MemoryError> {
    let col = b.column_by_name("vector").ok_or_else(|| store_err("no vector column in results"))?;
    let list = col.as_any().downcast_ref::<FixedSizeListArray>().ok_or_else(|| store_err("vector is not a list"))?;
    let values =
        list.values().as_any().downcast_ref::<Float32Array>().ok_or_else(|| store_err("vector is not float32"))?;
    let start = list.offset() * dim;
    Ok(values.values()[start..start + list.len() * dim].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_describes_itself_and_refuses_future_versions() {
        let mut fields = base_fields(3);
        fields.push(Field::new("m_year", DataType::Float64, true));
        fields.push(Field::new("m_tag", DataType::Utf8, true));
        let meta = HashMap::from([(META_VERSION.to_string(), "1".to_string()), (META_MODEL.into(), "m".into())]);
        let (dim, model, kinds) = describe(&Schema::new_with_metadata(fields.clone(), meta)).unwrap();
        assert_eq!((dim, model.as_deref()), (3, Some("m")));
        assert_eq!(kinds.get("year"), Some(&Kind::Number));
        assert_eq!(kinds.get("tag"), Some(&Kind::String));
        let future = HashMap::from([(META_VERSION.to_string(), "2".to_string())]);
        assert!(describe(&Schema::new_with_metadata(fields, future)).is_err());
        // a new collection's schema reads back as created
        let (dim, model, kinds) = describe(&new_schema(4, Some("m"))).unwrap();
        assert_eq!((dim, model.as_deref(), kinds.len()), (4, Some("m"), 0));
        assert_eq!(describe(&new_schema(2, None)).unwrap().1, None);
    }
}
