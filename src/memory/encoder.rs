//! A BERT encoder forward pass shaped for sentence embeddings on a small CPU.
//!
//! candle's own BERT pads every input of a batch to the longest one, runs a matmul per (input, head) pair one
//! after another, and makes a single-threaded pass over memory for every bias add, activation, scale and mask.
//! Measured on this project's benchmark that was 0.17× sentence-transformers at batch 32. Here:
//! - inputs are **packed**: the tokens of every input sit in one `tokens × hidden` matrix, so the four linear
//!   layers per block are four large matmuls (candle's gemm, multi-threaded) with no padding at all;
//! - query, key and value are **one** matmul against a fused weight;
//! - attention runs per (input, head) pair in parallel, over that input's own tokens only (no mask needed);
//! - bias + GELU and bias + residual + LayerNorm are **fused** single passes, parallel over rows;
//! - the matmuls call gemm (the kernel candle uses) directly, into three activation buffers allocated once per
//!   forward pass and reused by every layer: a fresh buffer per product cost ~28k page faults per batch of 32;
//! - the element-wise passes and attention are plain loops compiled once per instruction set and picked at run
//!   time by `pulp` (AVX-512, AVX2 or the baseline on x86_64; NEON on aarch64): the binary targets the
//!   baseline CPU, where they would otherwise vectorise four lanes wide.
//!
//! Numerics follow the reference (sentence-transformers/PyTorch, F32): exact-erf GELU (an erf with 1.5e-7
//! absolute error), LayerNorm with the config's epsilon. The word embedding table stays F16 (half of its 47 MB F32
//! size) and is widened per looked-up row; for weights that live as long as the program (the built-in model inside
//! the binary) it is not even copied: rows are read in place, so only the pages of tokens ever seen are resident.
//!
//! Invariants: pure CPU work — call it on the memory thread pool; rows of the output are the inputs' tokens in
//! input order; a token id outside the vocabulary or an input longer than the position table is an error, never
//! a panic.

use candle_core::{DType, Result, Tensor, bail};
use candle_nn::VarBuilder;
use half::f16;
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;
use serde::Deserialize;

/// The fields of a Hugging Face BERT `config.json` the forward pass needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default)]
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_type_vocab() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub(crate) enum Activation {
    /// `0.5·x·(1 + erf(x/√2))`, what BERT and MiniLM were trained with.
    #[default]
    #[serde(rename = "gelu")]
    Gelu,
    /// The tanh approximation some models were trained with.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_approximate")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
}

/// `x · w + b` with `w` stored `in × out` (transposed once at load, so every matmul reads it row-major).
struct Linear {
    w: Vec<f32>,
    b: Vec<f32>,
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

/// The word embedding table, F16: copied out of the weights, or read in place from bytes that outlive the model.
enum Words {
    Owned(Vec<f16>),
    /// little-endian F16, `vocab × hidden`
    Static(&'static [u8]),
}

impl Words {
    /// Widened row `id` of `h` values.
    fn row(&self, id: usize, h: usize) -> impl Iterator<Item = f32> + '_ {
        let (owned, bytes) = match self {
            Words::Owned(w) => (&w[id * h..][..h], &[][..]),
            Words::Static(b) => (&[][..], &b[id * h * 2..][..h * 2]),
        };
        owned.iter().map(|w| w.to_f32()).chain(bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()))
    }
}

struct Block {
    /// query, key and value side by side: `hidden × 3·hidden`
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

pub(crate) struct Encoder {
    /// `vocab × hidden`, F16
    word: Words,
    /// `positions × hidden`
    position: Vec<f32>,
    /// token type 0 (sentence embeddings never use a second segment)
    token_type: Vec<f32>,
    embed_norm: Norm,
    blocks: Vec<Block>,
    hidden: usize,
    heads: usize,
    intermediate: usize,
    vocab: usize,
    positions: usize,
    act: Activation,
    eps: f32,
}

/// The packed output of [`Encoder::forward`]: `tokens × hidden` states, and where each input's rows are.
pub(crate) struct Hidden {
    pub states: Vec<f32>,
    pub hidden: usize,
    /// per input: (first row, rows)
    pub spans: Vec<(usize, usize)>,
}

impl Hidden {
    /// The rows of input `i`.
    pub(crate) fn rows(&self, i: usize) -> &[f32] {
        let (start, len) = self.spans[i];
        &self.states[start * self.hidden..(start + len) * self.hidden]
    }
}

fn vec1(t: Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.to_vec1::<f32>()
}

fn linear(vb: &VarBuilder, names: &[&str], inputs: usize, outputs: usize) -> Result<Linear> {
    let mut ws = Vec::with_capacity(names.len());
    let mut b = Vec::with_capacity(outputs * names.len());
    for name in names {
        ws.push(vb.get((outputs, inputs), &format!("{name}.weight"))?.to_dtype(DType::F32)?.t()?);
        b.extend(vec1(vb.get(outputs, &format!("{name}.bias"))?)?);
    }
    let w = Tensor::cat(&ws, 1)?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    Ok(Linear { w, b })
}

fn norm(vb: &VarBuilder, name: &str, size: usize) -> Result<Norm> {
    // older checkpoints call them gamma/beta
    let get = |new: &str, old: &str| -> Result<Vec<f32>> {
        match vb.get(size, &format!("{name}.{new}")) {
            Ok(t) => vec1(t),
            Err(_) => vec1(vb.get(size, &format!("{name}.{old}"))?),
        }
    };
    Ok(Norm { gamma: get("weight", "gamma")?, beta: get("bias", "beta")? })
}

impl Encoder {
    /// Load the weights of a BERT checkpoint (`embeddings.*`, `encoder.layer.N.*`, optionally under `bert.`).
    /// `static_words`: the word embedding table as little-endian F16 bytes that outlive the program, read in place
    /// instead of copied (`vocab × hidden × 2` bytes, else an error).
    pub(crate) fn load(vb: VarBuilder, cfg: &Config, static_words: Option<&'static [u8]>) -> Result<Self> {
        if let Some(kind) = cfg.position_embedding_type.as_deref().filter(|k| *k != "absolute") {
            bail!("position_embedding_type {kind:?} is not supported (only \"absolute\")");
        }
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        if cfg.num_attention_heads == 0 || h % cfg.num_attention_heads != 0 {
            bail!("hidden_size {h} is not a multiple of num_attention_heads {}", cfg.num_attention_heads);
        }
        if i == 0 {
            bail!("intermediate_size is 0");
        }
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") { vb } else { vb.pp("bert") };
        let e = vb.pp("embeddings");
        let word = match static_words {
            Some(b) if b.len() == cfg.vocab_size * h * 2 => Words::Static(b),
            Some(b) => {
                bail!("the word table has {} bytes, not vocab × hidden × 2 = {}", b.len(), cfg.vocab_size * h * 2)
            }
            None => {
                // straight to F16: no transient F32 copy of the largest tensor
                let w = e.to_dtype(DType::F16).get((cfg.vocab_size, h), "word_embeddings.weight")?;
                Words::Owned(w.flatten_all()?.to_vec1::<f16>()?)
            }
        };
        let position = e.get((cfg.max_position_embeddings, h), "position_embeddings.weight")?;
        let position = vec1(position.flatten_all()?)?;
        let token_type = e.get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?;
        let token_type = vec1(token_type.get(0)?)?;
        let embed_norm = norm(&e, "LayerNorm", h)?;
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for n in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{n}"));
            blocks.push(Block {
                qkv: linear(&l, &["attention.self.query", "attention.self.key", "attention.self.value"], h, h)?,
                attn_out: linear(&l, &["attention.output.dense"], h, h)?,
                attn_norm: norm(&l, "attention.output.LayerNorm", h)?,
                up: linear(&l, &["intermediate.dense"], h, i)?,
                down: linear(&l, &["output.dense"], i, h)?,
                out_norm: norm(&l, "output.LayerNorm", h)?,
            });
        }
        Ok(Encoder {
            word,
            position,
            token_type,
            embed_norm,
            blocks,
            hidden: h,
            heads: cfg.num_attention_heads,
            intermediate: i,
            vocab: cfg.vocab_size,
            positions: cfg.max_position_embeddings,
            act: cfg.hidden_act,
            eps: cfg.layer_norm_eps as f32,
        })
    }

    /// Run the encoder over `inputs` (token ids, special tokens included) and return the last hidden states.
    pub(crate) fn forward(&self, inputs: &[&[u32]]) -> Result<Hidden> {
        let h = self.hidden;
        let mut spans = Vec::with_capacity(inputs.len());
        let mut tokens: Vec<(u32, u32)> = vec![];
        for ids in inputs {
            if ids.len() > self.positions {
                bail!("an input of {} tokens is longer than the model's {} positions", ids.len(), self.positions);
            }
            if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab) {
                bail!("token id {bad} is outside the vocabulary of {}", self.vocab);
            }
            spans.push((tokens.len(), ids.len()));
            tokens.extend(ids.iter().enumerate().map(|(p, &id)| (id, p as u32)));
        }
        let rows = tokens.len();
        if rows == 0 {
            return Ok(Hidden { states: vec![], hidden: h, spans });
        }
        let arch = Arch::new();
        let mut x = vec![0f32; rows * h];
        x.par_chunks_mut(h).zip(tokens.par_iter()).with_min_len(16).for_each(|(row, &(id, p))| {
            let pos = &self.position[p as usize * h..][..h];
            for ((o, w), (p, t)) in
                row.iter_mut().zip(self.word.row(id as usize, h)).zip(pos.iter().zip(&self.token_type))
            {
                *o = w + p + t;
            }
            arch.dispatch(Kernel::LayerNorm { row, norm: &self.embed_norm, eps: self.eps });
        });
        // every activation of every layer lives in these, allocated once per forward pass
        let mut s = Scratch {
            wide: vec![0f32; rows * (3 * h).max(self.intermediate)],
            a: vec![0f32; rows * h],
            b: vec![0f32; rows * h],
        };
        for block in &self.blocks {
            self.block(arch, block, &mut x, &mut s, &spans);
        }
        Ok(Hidden { states: x, hidden: h, spans })
    }

    /// One transformer layer, `x` (`rows × hidden`) in place.
    fn block(&self, arch: Arch, b: &Block, x: &mut [f32], s: &mut Scratch, spans: &[(usize, usize)]) {
        let (h, i) = (self.hidden, self.intermediate);
        let rows = x.len() / h;
        let (qkv, up) = (rows * 3 * h, rows * i);
        // wide: query-key-value; a: attention's output
        matmul(x, &b.qkv.w, &mut s.wide[..qkv], h);
        self.attention(arch, &s.wide[..qkv], &b.qkv.b, spans, &mut s.a);
        // b: projected back; a: the state between attention and feed-forward
        matmul(&s.a, &b.attn_out.w, &mut s.b, h);
        add_norm(arch, &s.b, &b.attn_out.b, x, &b.attn_norm, self.eps, &mut s.a);
        // wide: the intermediate activations; b: projected back
        matmul(&s.a, &b.up.w, &mut s.wide[..up], h);
        bias_activation(arch, &mut s.wide[..up], &b.up.b, self.act);
        matmul(&s.wide[..up], &b.down.w, &mut s.b, i);
        add_norm(arch, &s.b, &b.down.b, &s.a, &b.out_norm, self.eps, x);
    }

    /// Multi-head self-attention of every input over its own tokens, into `context` (`rows × hidden`). `qkv` is
    /// `rows × 3·hidden` before its bias.
    fn attention(&self, arch: Arch, qkv: &[f32], bias: &[f32], spans: &[(usize, usize)], context: &mut [f32]) {
        let (h, heads) = (self.hidden, self.heads);
        let d = h / heads;
        let tasks: Vec<(usize, usize)> = (0..spans.len()).flat_map(|s| (0..heads).map(move |hd| (s, hd))).collect();
        let parts: Vec<Vec<f32>> = tasks
            .par_iter()
            .map(|&(s, hd)| {
                let (start, len) = spans[s];
                let mut out = vec![0f32; len * d];
                let qkv = &qkv[start * 3 * h..][..len * 3 * h];
                arch.dispatch(Kernel::Attention { qkv, bias, h, off: hd * d, out: &mut out });
                out
            })
            .collect();
        for (&(s, hd), part) in tasks.iter().zip(&parts) {
            let start = spans[s].0;
            for (r, src) in part.chunks_exact(d).enumerate() {
                context[(start + r) * h + hd * d..][..d].copy_from_slice(src);
            }
        }
    }
}

/// The activations of one forward pass besides its state, reused by every layer (see [`Encoder::block`] for which
/// holds what when): 6 × hidden floats per token for MiniLM, where a buffer per product needed 10.
struct Scratch {
    /// `rows × max(3·hidden, intermediate)`
    wide: Vec<f32>,
    /// `rows × hidden`
    a: Vec<f32>,
    /// `rows × hidden`
    b: Vec<f32>,
}

/// `out = a · w` for row-major `a` (`rows × k`), `w` (`k × n`) and `out` (`rows × n`), with gemm — the kernel
/// candle's matmul calls, with the same arguments — on the current rayon pool's threads. Called directly so that
/// the output goes into a reused buffer: candle allocates a fresh one per product, and asks `/proc/cpuinfo` for the
/// core count on every call.
#[allow(unsafe_code)]
fn matmul(a: &[f32], w: &[f32], out: &mut [f32], k: usize) {
    assert!(k > 0, "matmul shapes");
    let (n, rows) = (w.len() / k, a.len() / k);
    assert!(n > 0 && a.len() == rows * k && w.len() == k * n && out.len() == rows * n, "matmul shapes");
    if rows == 0 {
        return;
    }
    // SAFETY: the assert proves every element gemm touches is in bounds: `a` is `rows × k` with row stride k and
    // column stride 1, `w` is `k × n` (stride n, 1), `out` is `rows × n` (stride n, 1). `out` is a unique borrow, so
    // it aliases neither input. With `read_dst = false` gemm only writes `out` (alpha is then unused).
    unsafe {
        gemm::gemm(
            rows,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            1,
            n as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    }
}

/// Self-attention of one head over one input. `qkv` is the input's `len × 3·hidden` rows before their bias; the
/// head's query, key and value are the `d` columns at `off` of each third; `out` (`len × d`) gets its output.
/// Scores and the weighted sum are both `x += c · row` loops (no horizontal sums), which vectorise.
#[inline(always)]
fn head_attention(qkv: &[f32], bias: &[f32], h: usize, off: usize, out: &mut [f32]) {
    let len = qkv.len() / (3 * h);
    let d = out.len() / len.max(1);
    if len == 0 {
        return;
    }
    let scale = 1.0 / (d as f32).sqrt();
    // queries pre-scaled (len × d), keys transposed (d × len), values (len × d); biases added
    let (mut q, mut kt, mut v) = (vec![0f32; len * d], vec![0f32; d * len], vec![0f32; len * d]);
    for (r, row) in qkv.chunks_exact(3 * h).enumerate() {
        let (qs, ks, vs) = (&row[off..][..d], &row[h + off..][..d], &row[2 * h + off..][..d]);
        let (qb, kb, vb) = (&bias[off..][..d], &bias[h + off..][..d], &bias[2 * h + off..][..d]);
        for t in 0..d {
            q[r * d + t] = (qs[t] + qb[t]) * scale;
            kt[t * len + r] = ks[t] + kb[t];
            v[r * d + t] = vs[t] + vb[t];
        }
    }
    let mut p = vec![0f32; len];
    for (qi, o) in q.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        p.fill(0.0);
        o.fill(0.0);
        for (&qt, krow) in qi.iter().zip(kt.chunks_exact(len)) {
            axpy(&mut p, qt, krow);
        }
        let max = p.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        for pj in p.iter_mut() {
            *pj = exp(*pj - max);
        }
        let inv = 1.0 / sum(&p);
        for (&pj, vj) in p.iter().zip(v.chunks_exact(d)) {
            axpy(o, pj * inv, vj);
        }
    }
}

/// `y += a · x`
#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// A sum with sixteen independent partial sums, so that it vectorises.
#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = xs.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..16 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// A dot product the compiler vectorises (eight independent accumulators).
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn layer_norm(row: &mut [f32], n: &Norm, eps: f32) {
    let len = row.len() as f32;
    let mean = sum(row) / len;
    let mut sq = [0f32; 16];
    let chunks = row.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
    for c in chunks {
        for l in 0..16 {
            sq[l] += (c[l] - mean) * (c[l] - mean);
        }
    }
    let var = (sq.iter().sum::<f32>() + tail) / len;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(&n.gamma).zip(&n.beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// `out = LayerNorm(y + bias + residual)`, row by row.
fn add_norm(arch: Arch, y: &[f32], bias: &[f32], residual: &[f32], n: &Norm, eps: f32, out: &mut [f32]) {
    let h = bias.len();
    out.par_chunks_mut(h)
        .zip(y.par_chunks(h))
        .zip(residual.par_chunks(h))
        .with_min_len(16)
        .for_each(|((o, y), r)| arch.dispatch(Kernel::AddNorm { out: o, y, bias, residual: r, norm: n, eps }));
}

/// `y = act(y + bias)`, row by row.
fn bias_activation(arch: Arch, y: &mut [f32], bias: &[f32], act: Activation) {
    let w = bias.len();
    y.par_chunks_mut(w).with_min_len(8).for_each(|y| arch.dispatch(Kernel::Activation { y, bias, act }));
}

/// The row kernels, each compiled once per instruction set: `Arch::dispatch` runs `with_simd` inside a function
/// built for the best one this CPU has, and everything below it is `#[inline(always)]`, so that the compiler
/// vectorises the loops for that set. (Not closures: nothing makes the compiler inline a closure into pulp's
/// wrapper, and in this crate's release build it did not, so the loops ran as baseline SSE2 code.)
enum Kernel<'a> {
    LayerNorm {
        row: &'a mut [f32],
        norm: &'a Norm,
        eps: f32,
    },
    /// `out = LayerNorm(y + bias + residual)`
    AddNorm {
        out: &'a mut [f32],
        y: &'a [f32],
        bias: &'a [f32],
        residual: &'a [f32],
        norm: &'a Norm,
        eps: f32,
    },
    /// `y = act(y + bias)`
    Activation {
        y: &'a mut [f32],
        bias: &'a [f32],
        act: Activation,
    },
    /// [`head_attention`]
    Attention {
        qkv: &'a [f32],
        bias: &'a [f32],
        h: usize,
        off: usize,
        out: &'a mut [f32],
    },
}

impl WithSimd for Kernel<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        match self {
            Kernel::LayerNorm { row, norm, eps } => layer_norm(row, norm, eps),
            Kernel::AddNorm { out, y, bias, residual, norm, eps } => {
                for (((o, y), b), r) in out.iter_mut().zip(y).zip(bias).zip(residual) {
                    *o = y + b + r;
                }
                layer_norm(out, norm, eps);
            }
            Kernel::Activation { y, bias, act } => activation(y, bias, act),
            Kernel::Attention { qkv, bias, h, off, out } => head_attention(qkv, bias, h, off, out),
        }
    }
}

/// `y = act(y + bias)`: one plain indexed loop per activation, the shape the compiler vectorises.
#[inline(always)]
fn activation(y: &mut [f32], bias: &[f32], act: Activation) {
    let bias = &bias[..y.len()];
    match act {
        Activation::Gelu => {
            for i in 0..y.len() {
                let x = y[i] + bias[i];
                y[i] = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
        Activation::GeluTanh => {
            for i in 0..y.len() {
                let x = y[i] + bias[i];
                // tanh(u) = 1 − 2/(e^{2u} + 1)
                let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
                y[i] = 0.5 * x * (2.0 - 2.0 / (exp(2.0 * u) + 1.0));
            }
        }
        Activation::Relu => {
            for i in 0..y.len() {
                y[i] = (y[i] + bias[i]).max(0.0);
            }
        }
    }
}

/// The error function, Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7). Branch-free, so loops over it
/// vectorise.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// `e^x` (relative error ≈ 2e-7 on [-87, 88]; inputs outside are clamped to it), written without
/// branches or library calls so the compiler vectorises loops over it — libm's `expf` is a call per element.
/// `x = n·ln2 + r` with |r| ≤ ln2/2; `e^r` by a degree-6 Taylor polynomial; `2^n` built in the exponent bits.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer, kept in the low mantissa bits
    let x = x.clamp(-87.0, 88.0);
    let k = x * std::f32::consts::LOG2_E + MAGIC;
    let n = k - MAGIC;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6; // ln2 in two parts (Cody–Waite)
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(k.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [(0.0, 0.0), (0.5, 0.520_499_9), (1.0, 0.842_700_8), (-1.0, -0.842_700_8), (2.5, 0.999_593)] {
            assert!((erf(x) - want).abs() < 2e-6, "erf({x}) = {} want {want}", erf(x));
        }
    }

    #[test]
    fn exp_is_close_to_the_library_exp() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x), x.exp());
            assert!((got - want).abs() <= want * 1e-6, "exp({x}) = {got} want {want}");
            x += 0.173;
        }
        assert!(exp(-1000.0) < 1e-37);
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn dot_handles_lengths_that_are_not_multiples_of_eight() {
        let a: Vec<f32> = (0..13).map(|i| i as f32).collect();
        let want: f32 = a.iter().map(|x| x * x).sum();
        assert_eq!(dot(&a, &a), want);
    }

    #[test]
    fn layer_norm_centres_and_scales() {
        let n = Norm { gamma: vec![1.0; 4], beta: vec![0.0; 4] };
        let mut row = [1.0, 2.0, 3.0, 4.0];
        layer_norm(&mut row, &n, 1e-12);
        assert!(row.iter().sum::<f32>().abs() < 1e-6);
        assert!((row.iter().map(|v| v * v).sum::<f32>() / 4.0 - 1.0).abs() < 1e-5);
    }

    fn numbers(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matmul_matches_the_textbook_product() {
        // 37 rows: not a multiple of any kernel's tile; large enough for gemm to split the work between the two
        // threads of the pool, as in the batcher
        let (rows, k, n) = (37, 384, 160);
        let (a, w) = (numbers(rows * k, 1), numbers(k * n, 2));
        let mut out = vec![f32::NAN; rows * n];
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap().install(|| matmul(&a, &w, &mut out, k));
        for r in 0..rows {
            for c in 0..n {
                let want: f64 = (0..k).map(|t| a[r * k + t] as f64 * w[t * n + c] as f64).sum();
                assert!((out[r * n + c] as f64 - want).abs() < 1e-3, "({r}, {c}): {} want {want}", out[r * n + c]);
            }
        }
        matmul(&[], &w, &mut [], k);
    }

    #[test]
    fn head_attention_matches_softmax_of_scaled_scores() {
        // 2 heads of 8, the second head's columns, biases added, against the formula in f64 with libm's exp; one
        // token, a few, and more than one vector's worth
        let (h, d, off) = (16, 8, 8);
        for len in [1, 5, 17] {
            let (qkv, bias) = (numbers(len * 3 * h, 3 + len as u32), numbers(3 * h, 4));
            let mut out = vec![f32::NAN; len * d];
            Arch::new().dispatch(Kernel::Attention { qkv: &qkv, bias: &bias, h, off, out: &mut out });
            let at = |r: usize, part: usize, t: usize| {
                (qkv[r * 3 * h + part * h + off + t] + bias[part * h + off + t]) as f64
            };
            for i in 0..len {
                let scores: Vec<f64> = (0..len)
                    .map(|j| (0..d).map(|t| at(i, 0, t) * at(j, 1, t)).sum::<f64>() / (d as f64).sqrt())
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let total: f64 = scores.iter().map(|s| (s - max).exp()).sum();
                for t in 0..d {
                    let want: f64 = (0..len).map(|j| (scores[j] - max).exp() / total * at(j, 2, t)).sum();
                    let got = out[i * d + t] as f64;
                    assert!((got - want).abs() < 1e-5, "len {len} row {i} col {t}: {got} want {want}");
                }
            }
        }
        // no tokens: nothing to do, no panic
        Arch::new().dispatch(Kernel::Attention { qkv: &[], bias: &numbers(3 * h, 4), h, off, out: &mut [] });
    }

    #[test]
    fn row_kernels_match_their_formulas() {
        // 40 columns: two 16-lane vectors and a remainder; each kernel against its formula in f64
        let n = Norm { gamma: numbers(40, 5), beta: numbers(40, 6) };
        let (y, bias, res) = (numbers(40, 7), numbers(40, 8), numbers(40, 9));
        let layer_norm_f64 = |v: &[f64]| -> Vec<f64> {
            let mean = v.iter().sum::<f64>() / 40.0;
            let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / 40.0;
            (0..40).map(|i| (v[i] - mean) / (var + 1e-12).sqrt() * n.gamma[i] as f64 + n.beta[i] as f64).collect()
        };
        let close = |got: &[f32], want: &[f64], what: &str| {
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert!((*g as f64 - w).abs() < 2e-5, "{what} [{i}]: {g} want {w}");
            }
        };
        let mut out = vec![f32::NAN; 40];
        Arch::new().dispatch(Kernel::AddNorm {
            out: &mut out,
            y: &y,
            bias: &bias,
            residual: &res,
            norm: &n,
            eps: 1e-12,
        });
        let sum: Vec<f64> = (0..40).map(|i| y[i] as f64 + bias[i] as f64 + res[i] as f64).collect();
        close(&out, &layer_norm_f64(&sum), "add + LayerNorm");
        let mut row = y.clone();
        Arch::new().dispatch(Kernel::LayerNorm { row: &mut row, norm: &n, eps: 1e-12 });
        close(&row, &layer_norm_f64(&y.iter().map(|&v| v as f64).collect::<Vec<_>>()), "LayerNorm");
        // GELU's exact form needs erf, which std lacks: check it against its definition's symmetry and a few
        // known values instead, and the tanh form and ReLU against their formulas
        let x: Vec<f64> = (0..40).map(|i| y[i] as f64 * 3.0 + bias[i] as f64).collect();
        let three_y: Vec<f32> = y.iter().map(|v| v * 3.0).collect();
        let mut tanh = three_y.clone();
        Arch::new().dispatch(Kernel::Activation { y: &mut tanh, bias: &bias, act: Activation::GeluTanh });
        let want: Vec<f64> = x
            .iter()
            .map(|x| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()))
            .collect();
        close(&tanh, &want, "GELU (tanh)");
        let mut relu = three_y.clone();
        Arch::new().dispatch(Kernel::Activation { y: &mut relu, bias: &bias, act: Activation::Relu });
        close(&relu, &x.iter().map(|x| x.max(0.0)).collect::<Vec<_>>(), "ReLU");
        let mut gelu = vec![-3.0f32, -1.0, 0.0, 0.5, 1.0, 3.0];
        Arch::new().dispatch(Kernel::Activation { y: &mut gelu, bias: &[0.0; 6], act: Activation::Gelu });
        // x·Φ(x), Φ from tables
        let want = [-0.004_049_6, -0.158_655_3, 0.0, 0.345_731_4, 0.841_344_7, 2.995_950_4];
        close(&gelu, &want, "GELU (erf)");
    }

    #[test]
    fn activations_parse_from_config_names() {
        for (name, want) in [("gelu", Activation::Gelu), ("gelu_new", Activation::GeluTanh), ("relu", Activation::Relu)]
        {
            assert_eq!(serde_json::from_str::<Activation>(&format!("{name:?}")).unwrap(), want);
        }
    }
}
