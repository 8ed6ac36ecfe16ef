//! The embedding model: a BERT-family encoder ([`super::encoder`], candle tensors and gemm on the CPU), its
//! tokenizer, and the pooling that turns token states into one vector.
//!
//! The built-in model is all-MiniLM-L6-v2 (384 dimensions, mean pooling, 256 tokens). Its weights travel inside the
//! binary as F16 (`assets/models/all-MiniLM-L6-v2`, 45 MB; see the README there); the layers are widened to F32
//! when loaded (F32 is the fast path on CPUs without F16 arithmetic, Pi 4), the word embedding table stays F16. Other BERT-family models (bge-small,
//! e5-small) load from a directory laid out like a sentence-transformers model.
//!
//! Invariants: everything here is synchronous CPU work and must run on the memory thread pool, never on an async
//! worker; vectors come out in input order; inputs are packed, never padded, so pooling sees only
//! an input's own tokens.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};

use super::MemoryError;
use super::encoder::{Config as BertConfig, Encoder};

pub(crate) const BUILTIN: &str = "all-MiniLM-L6-v2";

mod builtin {
    pub(super) const CONFIG: &[u8] = include_bytes!("../../assets/models/all-MiniLM-L6-v2/config.json");
    pub(super) const TOKENIZER: &[u8] = include_bytes!("../../assets/models/all-MiniLM-L6-v2/tokenizer.json");
    pub(super) const POOLING: &[u8] = include_bytes!("../../assets/models/all-MiniLM-L6-v2/1_Pooling/config.json");
    pub(super) const SBERT: &[u8] = include_bytes!("../../assets/models/all-MiniLM-L6-v2/sentence_bert_config.json");
    pub(super) const WEIGHTS: &[u8] = include_bytes!("../../assets/models/all-MiniLM-L6-v2/model.f16.safetensors");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Pooling {
    Mean,
    Cls,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
}

#[derive(Deserialize)]
struct SbertConfig {
    max_seq_length: Option<usize>,
}

/// One tokenized input: its ids, and whether it was longer than the model takes.
#[derive(Debug, Clone)]
pub(crate) struct Tokens {
    pub ids: Vec<u32>,
    pub truncated: bool,
}

pub(crate) struct Embedder {
    model: Encoder,
    tokenizer: Tokenizer,
    pub name: String,
    pub pooling: Pooling,
    pub max_tokens: usize,
    pub dim: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("name", &self.name).field("dim", &self.dim).finish()
    }
}

fn load_err(what: &str, e: impl std::fmt::Display) -> MemoryError {
    MemoryError::Model(format!("{what}: {e}"))
}

impl Embedder {
    /// Load `model`: the built-in name, or a directory holding config.json, tokenizer.json and
    /// model.safetensors (optionally 1_Pooling/config.json and sentence_bert_config.json).
    pub(crate) fn load(model: &str, max_tokens: usize) -> Result<Self, MemoryError> {
        if model == BUILTIN {
            return Self::from_parts(
                BUILTIN,
                builtin::CONFIG,
                builtin::TOKENIZER,
                Some(builtin::POOLING),
                Some(builtin::SBERT),
                // the built-in weights live in the binary: their word table is read in place, never copied
                Weights::Static(builtin::WEIGHTS),
                max_tokens,
            );
        }
        let dir = Path::new(model);
        let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| load_err(&format!("{model}/{name}"), e));
        let optional = |name: &str| std::fs::read(dir.join(name)).ok();
        let config = read("config.json")?;
        serde_json::from_slice::<BertConfig>(&config).map_err(|e| load_err(&format!("{model}/config.json"), e))?;
        let tokenizer = read("tokenizer.json")?;
        let weights = match read("model.safetensors") {
            Ok(w) => w,
            Err(_) => read("model.f16.safetensors")?,
        };
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| model.to_string());
        Self::from_parts(
            &name,
            &config,
            &tokenizer,
            optional("1_Pooling/config.json").as_deref(),
            optional("sentence_bert_config.json").as_deref(),
            Weights::Loaded(&weights),
            max_tokens,
        )
    }

    fn from_parts(
        name: &str,
        config: &[u8],
        tokenizer: &[u8],
        pooling: Option<&[u8]>,
        sbert: Option<&[u8]>,
        weights: Weights<'_>,
        max_tokens: usize,
    ) -> Result<Self, MemoryError> {
        let (weights, static_words) = match weights {
            Weights::Static(w) => (w, static_word_table(w)),
            Weights::Loaded(w) => (w, None),
        };
        let cfg: BertConfig = serde_json::from_slice(config).map_err(|e| load_err("config.json", e))?;
        let pooling = match pooling {
            Some(p) => {
                let p: PoolingConfig = serde_json::from_slice(p).map_err(|e| load_err("1_Pooling/config.json", e))?;
                match (p.pooling_mode_mean_tokens, p.pooling_mode_cls_token) {
                    (true, _) => Pooling::Mean,
                    (false, true) => Pooling::Cls,
                    _ => return Err(load_err("1_Pooling/config.json", "only mean or CLS pooling is supported")),
                }
            }
            None => Pooling::Mean,
        };
        let model_max = match sbert {
            Some(s) => serde_json::from_slice::<SbertConfig>(s)
                .map_err(|e| load_err("sentence_bert_config.json", e))?
                .max_seq_length
                .unwrap_or(cfg.max_position_embeddings),
            None => cfg.max_position_embeddings,
        };
        let max_tokens = max_tokens.min(model_max).min(cfg.max_position_embeddings);
        let mut tokenizer = Tokenizer::from_bytes(tokenizer).map_err(|e| load_err("tokenizer.json", e))?;
        // the shipped tokenizer.json pads and truncates to 128: pad per batch ourselves, truncate at max_tokens
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_tokens, ..Default::default() }))
            .map_err(|e| load_err("tokenizer.json", e))?;
        let vb = VarBuilder::from_slice_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| load_err("model weights", e))?;
        let model = Encoder::load(vb, &cfg, static_words).map_err(|e| load_err("model weights", e))?;
        Ok(Embedder { model, tokenizer, name: name.to_string(), pooling, max_tokens, dim: cfg.hidden_size })
    }

    pub(crate) fn tokenize(&self, text: &str) -> Result<Tokens, MemoryError> {
        let enc = self.tokenizer.encode_fast(text, true).map_err(|e| MemoryError::Model(format!("tokenizer: {e}")))?;
        Ok(Tokens { truncated: !enc.get_overflowing().is_empty(), ids: enc.get_ids().to_vec() })
    }

    /// Embed one batch (packed, never padded). Returns un-normalised pooled vectors in input order.
    pub(crate) fn embed(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, MemoryError> {
        let hidden = self.model.forward(batch).map_err(|e| MemoryError::Model(format!("inference: {e}")))?;
        Ok((0..batch.len()).map(|i| pool(hidden.rows(i), self.dim, self.pooling)).collect())
    }
}

/// Safetensors bytes: ones that live as long as the program (the built-in model), or loaded from a file.
enum Weights<'a> {
    Static(&'static [u8]),
    Loaded(&'a [u8]),
}

/// The word embedding table inside program-long weights, as F16 bytes (None if stored otherwise: it is then copied
/// like any model's).
fn static_word_table(weights: &'static [u8]) -> Option<&'static [u8]> {
    let st = safetensors::SafeTensors::deserialize(weights).ok()?;
    let t = st.tensor("embeddings.word_embeddings.weight").ok()?;
    (t.dtype() == safetensors::Dtype::F16).then(|| t.data())
}

/// One vector from an input's token states (`tokens × dim`, row-major): their mean, or the first (CLS) row.
pub(crate) fn pool(rows: &[f32], dim: usize, pooling: Pooling) -> Vec<f32> {
    let n = rows.len() / dim;
    let mut out = vec![0f32; dim];
    if n == 0 {
        return out;
    }
    match pooling {
        Pooling::Cls => out.copy_from_slice(&rows[..dim]),
        Pooling::Mean => {
            for row in rows.chunks_exact(dim) {
                out.iter_mut().zip(row).for_each(|(o, x)| *o += x);
            }
            out.iter_mut().for_each(|o| *o /= n as f32);
        }
    }
    out
}

/// Scale `v` to unit length (a zero vector stays zero).
pub(crate) fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pooling_averages_rows_and_cls_takes_the_first() {
        let rows = [1.0, 2.0, 3.0, 6.0];
        assert_eq!(pool(&rows, 2, Pooling::Mean), vec![2.0, 4.0]);
        assert_eq!(pool(&rows, 2, Pooling::Cls), vec![1.0, 2.0]);
        assert_eq!(pool(&[], 2, Pooling::Mean), vec![0.0, 0.0]);
    }
}
