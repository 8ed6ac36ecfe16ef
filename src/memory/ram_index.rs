//! The in-memory vector index: a pure core (no IO, no clock, no locks) that answers plain vector queries of a large
//! collection without a trip through lance's query planner, whose fixed cost per query (~4 ms of CPU even on a
//! 10-row table) is more than the whole search budget.
//!
//! Layout: an inverted file (IVF) of `lists` k-means centroids over unit vectors; each list holds its rows' vectors as
//! 8-bit codes with a per-dimension scale (SQ8), contiguous so a probe is one sequential scan, and a second 8-bit
//! code per dimension for what the first one rounded away (the residual), read only to re-rank the best
//! `k × refine` candidates: together ~16 bits per dimension, half the f32 size, and close neighbours that the first
//! codes blur (recall@10 ≈ 0.90 on clustered data) come out in the right order. Each row also keeps its id, text and
//! metadata (as the JSON text stored in lance), so a hit needs no read. Scores are the cosine similarity of the query
//! against the decoded vector (asymmetric: the query stays f32).
//!
//! Invariants: every row is in exactly one list, at the position its entry records; `by_id` maps each live id to its
//! slot; a slot is either live or on the free list. Centroids and the quantizer are fixed after training: rows added
//! later go to their nearest centroid and are clamped to the trained range, so the owner retrains (rebuilds) once
//! the collection has grown well past `trained_rows`.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use super::encoder::dot;

/// What a hit carries besides its score.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub id: Box<str>,
    pub text: Option<Box<str>>,
    /// The metadata as stored (JSON text), parsed only for the hits a query returns.
    pub metadata: Option<Box<str>>,
}

#[derive(Clone)]
struct Entry {
    row: Row,
    list: u32,
    pos: u32,
}

#[derive(Default, Clone)]
struct List {
    slots: Vec<u32>,
    codes: Vec<u8>,
    /// residual codes: `x ≈ lo + step · (code + fine / 255 − ½)`
    fine: Vec<u8>,
}

#[derive(Clone)]
pub(crate) struct RamIndex {
    dim: usize,
    trained_rows: usize,
    lo: Vec<f32>,
    step: Vec<f32>,
    centroids: Vec<f32>,
    lists: Vec<List>,
    entries: Vec<Option<Entry>>,
    free: Vec<u32>,
    by_id: HashMap<Box<str>, u32>,
    /// The rows' own heap bytes (id twice: row and map key; text; metadata), kept as rows come and go so that
    /// [`RamIndex::bytes`] does not walk every row.
    row_bytes: usize,
}

fn row_bytes(r: &Row) -> usize {
    2 * r.id.len() + r.text.as_ref().map_or(0, |t| t.len()) + r.metadata.as_ref().map_or(0, |m| m.len())
}

/// A small deterministic generator (xorshift64*): training must not depend on a global RNG.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn unit(v: &[f32]) -> Vec<f32> {
    let mut u = v.to_vec();
    normalize(&mut u);
    u
}

/// Scale to unit length in place (the norm in f64: no overflow for large finite components); zero stays zero.
fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter_mut().for_each(|x| *x = (f64::from(*x) / norm) as f32);
    } else {
        v.iter_mut().for_each(|x| *x = 0.0);
    }
}

/// Dot product of an f32 vector with 8-bit codes; sixteen running sums so the compiler vectorises it.
fn dot_codes(w: &[f32], codes: &[u8]) -> f32 {
    let mut acc = [0f32; 16];
    let (wc, cc) = (w.chunks_exact(16), codes.chunks_exact(16));
    let (wr, cr) = (wc.remainder(), cc.remainder());
    for (w16, c16) in wc.zip(cc) {
        for i in 0..16 {
            acc[i] += w16[i] * c16[i] as f32;
        }
    }
    let tail: f32 = wr.iter().zip(cr).map(|(w, &c)| w * c as f32).sum();
    acc.iter().sum::<f32>() + tail
}

/// Index of the centroid nearest (largest dot product) to the unit vector `v`.
fn nearest(centroids: &[f32], dim: usize, v: &[f32]) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, c) in centroids.chunks_exact(dim).enumerate() {
        let s = dot(c, v);
        if s > best.1 {
            best = (i, s);
        }
    }
    best.0
}

/// A candidate in the top-k heap: the heap's top is the worst kept score.
struct Cand(f32, u32);

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        // reversed: BinaryHeap is a max-heap and the top must be the lowest score
        o.0.total_cmp(&self.0).then(self.1.cmp(&o.1))
    }
}

impl RamIndex {
    /// Train on `sample` (row-major, `dim` floats per vector, any length; normalised here, in place): the
    /// per-dimension range of the 8-bit codes and `lists` centroids by spherical k-means (`iterations` Lloyd rounds,
    /// seeded from `seed`). `rows` is the collection size this index is trained for.
    pub(crate) fn train(
        dim: usize,
        mut sample: Vec<f32>,
        lists: usize,
        iterations: usize,
        seed: u64,
        rows: usize,
    ) -> Self {
        assert!(dim > 0, "dimension 0");
        sample.chunks_exact_mut(dim).for_each(normalize);
        let points: Vec<&[f32]> = sample.chunks_exact(dim).collect();
        let lists = lists.clamp(1, points.len().max(1));
        let (mut lo, mut hi) = (vec![f32::INFINITY; dim], vec![f32::NEG_INFINITY; dim]);
        for p in &points {
            for (d, &x) in p.iter().enumerate() {
                lo[d] = lo[d].min(x);
                hi[d] = hi[d].max(x);
            }
        }
        let step: Vec<f32> = lo
            .iter_mut()
            .zip(&hi)
            .map(|(l, &h)| {
                if !l.is_finite() || !h.is_finite() {
                    // no sample: the full range of a unit vector's component
                    *l = -1.0;
                    return 2.0 / 255.0;
                }
                // a margin for rows that come later (the codes clamp beyond it), and a floor for dimensions that
                // barely vary in the sample, so a later row's value there is not clamped away
                let range = ((h - *l) * 1.1).max(0.02);
                *l = (*l + h) / 2.0 - range / 2.0;
                range / 255.0
            })
            .collect();

        let mut rng = Rng(seed | 1);
        let mut centroids: Vec<f32> = Vec::with_capacity(lists * dim);
        if points.is_empty() {
            centroids.resize(dim, 0.0);
        } else {
            // distinct starting points: a partial Fisher–Yates shuffle of the sample's indexes
            let mut order: Vec<usize> = (0..points.len()).collect();
            for i in 0..lists {
                let j = i + rng.below(order.len() - i);
                order.swap(i, j);
                centroids.extend_from_slice(points[order[i]]);
            }
            let mut assign = vec![0usize; points.len()];
            for _ in 0..iterations {
                for (a, p) in assign.iter_mut().zip(&points) {
                    *a = nearest(&centroids, dim, p);
                }
                let mut sums = vec![0f32; lists * dim];
                let mut counts = vec![0usize; lists];
                for (a, p) in assign.iter().zip(&points) {
                    counts[*a] += 1;
                    sums[a * dim..(a + 1) * dim].iter_mut().zip(p.iter()).for_each(|(s, x)| *s += x);
                }
                for (l, count) in counts.iter().enumerate() {
                    let c = if *count == 0 {
                        // an empty list restarts from a random sample point
                        points[rng.below(points.len())].to_vec()
                    } else {
                        unit(&sums[l * dim..(l + 1) * dim])
                    };
                    centroids[l * dim..(l + 1) * dim].copy_from_slice(&c);
                }
            }
        }
        let n = centroids.len() / dim;
        RamIndex {
            dim,
            trained_rows: rows,
            lo,
            step,
            centroids,
            lists: (0..n).map(|_| List::default()).collect(),
            entries: vec![],
            free: vec![],
            by_id: HashMap::new(),
            row_bytes: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The row stored under `id`.
    #[cfg(test)]
    pub(crate) fn row(&self, id: &str) -> Option<&Row> {
        let slot = *self.by_id.get(id)?;
        self.entries[slot as usize].as_ref().map(|e| &e.row)
    }

    /// The collection size the centroids were trained for.
    pub(crate) fn trained_rows(&self) -> usize {
        self.trained_rows
    }

    #[cfg(test)]
    pub(crate) fn lists(&self) -> usize {
        self.lists.len()
    }

    /// Approximate heap bytes held (codes, row texts, tables). O(lists), not O(rows).
    pub(crate) fn bytes(&self) -> usize {
        let lists: usize =
            self.lists.iter().map(|l| l.codes.capacity() + l.fine.capacity() + 4 * l.slots.capacity()).sum();
        self.row_bytes
            + lists
            + self.entries.capacity() * std::mem::size_of::<Option<Entry>>()
            + self.by_id.capacity() * (std::mem::size_of::<Box<str>>() + 8)
            + 4 * (self.centroids.len() + self.lo.len() + self.step.len())
    }

    /// Give back the slack of the growing arrays (after a bulk fill).
    pub(crate) fn shrink_to_fit(&mut self) {
        for l in &mut self.lists {
            l.slots.shrink_to_fit();
            l.codes.shrink_to_fit();
            l.fine.shrink_to_fit();
        }
        self.entries.shrink_to_fit();
        self.by_id.shrink_to_fit();
    }

    /// Append `v`'s codes and residual codes.
    fn encode(&self, v: &[f32], codes: &mut Vec<u8>, fine: &mut Vec<u8>) {
        let u = unit(v);
        for (x, (l, s)) in u.iter().zip(self.lo.iter().zip(&self.step)) {
            let c = ((x - l) / s).round().clamp(0.0, 255.0);
            let r = (x - l) / s - c; // in [-½, ½] unless clamped
            codes.push(c as u8);
            fine.push(((r + 0.5) * 255.0).round().clamp(0.0, 255.0) as u8);
        }
    }

    /// Insert a row, replacing the row with the same id. `vector` must have `dim` floats.
    pub(crate) fn upsert(&mut self, row: Row, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dim);
        self.remove(&row.id);
        self.row_bytes += row_bytes(&row);
        let list = nearest(&self.centroids, self.dim, &unit(vector));
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.entries.push(None);
                (self.entries.len() - 1) as u32
            }
        };
        let l = &mut self.lists[list];
        let pos = l.slots.len() as u32;
        l.slots.push(slot);
        let (mut codes, mut fine) = (std::mem::take(&mut l.codes), std::mem::take(&mut l.fine));
        self.encode(vector, &mut codes, &mut fine);
        (self.lists[list].codes, self.lists[list].fine) = (codes, fine);
        self.by_id.insert(row.id.clone(), slot);
        self.entries[slot as usize] = Some(Entry { row, list: list as u32, pos });
    }

    /// Remove the row with this id; whether there was one.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.by_id.remove(id) else { return false };
        let Some(e) = self.entries[slot as usize].take() else { return false };
        self.row_bytes -= row_bytes(&e.row);
        let (dim, l) = (self.dim, &mut self.lists[e.list as usize]);
        let pos = e.pos as usize;
        let last = l.slots.len() - 1;
        // the list's last row moves into the hole
        l.slots.swap_remove(pos);
        if pos != last {
            l.codes.copy_within(last * dim..(last + 1) * dim, pos * dim);
            l.fine.copy_within(last * dim..(last + 1) * dim, pos * dim);
            let moved = l.slots[pos] as usize;
            if let Some(m) = self.entries[moved].as_mut() {
                m.pos = pos as u32;
            }
        }
        l.codes.truncate(last * dim);
        l.fine.truncate(last * dim);
        self.free.push(slot);
        true
    }

    /// The `k` rows nearest to `query` by cosine similarity, best first, from the `probes` lists nearest to it: the
    /// best `k × refine` by the first codes, re-ranked with the residual codes (`refine` 0: no re-ranking).
    pub(crate) fn search(&self, query: &[f32], k: usize, probes: usize, refine: usize) -> Vec<(f32, &Row)> {
        debug_assert_eq!(query.len(), self.dim);
        let q = unit(query);
        let dim = self.dim;
        // nearest lists first
        let mut order: Vec<(f32, usize)> =
            self.centroids.chunks_exact(dim).enumerate().map(|(i, c)| (dot(c, &q), i)).collect();
        let probes = probes.clamp(1, order.len());
        order.select_nth_unstable_by(probes - 1, |a, b| b.0.total_cmp(&a.0));
        // score = Σ q·lo + Σ (q·step)·code
        let base: f32 = q.iter().zip(&self.lo).map(|(a, b)| a * b).sum();
        let w: Vec<f32> = q.iter().zip(&self.step).map(|(a, b)| a * b).collect();
        let keep = k.saturating_mul(refine.max(1));
        let mut heap: BinaryHeap<Cand> = BinaryHeap::with_capacity(keep + 1);
        for &(_, li) in &order[..probes] {
            let l = &self.lists[li];
            for (codes, &slot) in l.codes.chunks_exact(dim).zip(&l.slots) {
                let s = base + dot_codes(&w, codes);
                if heap.len() < keep {
                    heap.push(Cand(s, slot));
                } else if heap.peek().is_some_and(|worst| s > worst.0) {
                    heap.pop();
                    heap.push(Cand(s, slot));
                }
            }
        }
        // re-rank: + Σ (q·step)·fine/255 − ½ Σ q·step
        let w_fine: Vec<f32> = w.iter().map(|x| x / 255.0).collect();
        let half = 0.5 * w.iter().sum::<f32>();
        let mut out: Vec<(f32, &Row)> = heap
            .into_iter()
            .filter_map(|c| {
                let e = self.entries[c.1 as usize].as_ref()?;
                let mut s = c.0;
                if refine > 0 {
                    let fine = &self.lists[e.list as usize].fine[e.pos as usize * dim..][..dim];
                    s += dot_codes(&w_fine, fine) - half;
                }
                Some((s.clamp(-1.0, 1.0), &e.row))
            })
            .collect();
        out.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        out.truncate(k);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> Row {
        Row { id: id.into(), text: Some(format!("text of {id}").into()), metadata: Some("{\"a\":1}".into()) }
    }

    /// Unit vectors around 20 random directions.
    fn data(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = Rng(seed);
        let mut g = move || (rng.next() >> 11) as f32 / (1u64 << 53) as f32 - 0.5;
        let centers: Vec<Vec<f32>> = (0..20).map(|_| (0..dim).map(|_| g()).collect()).collect();
        (0..n).map(|i| unit(&centers[i % 20].iter().map(|c| c + 0.3 * g()).collect::<Vec<_>>())).collect()
    }

    fn exact(vs: &[Vec<f32>], q: &[f32], k: usize) -> Vec<usize> {
        let q = unit(q);
        let mut s: Vec<(f32, usize)> = vs.iter().enumerate().map(|(i, v)| (dot(v, &q), i)).collect();
        s.sort_by(|a, b| b.0.total_cmp(&a.0));
        s.into_iter().take(k).map(|x| x.1).collect()
    }

    fn build(vs: &[Vec<f32>], lists: usize) -> RamIndex {
        let flat: Vec<f32> = vs.iter().flatten().copied().collect();
        let mut ix = RamIndex::train(vs[0].len(), flat, lists, 8, 42, vs.len());
        for (i, v) in vs.iter().enumerate() {
            ix.upsert(row(&format!("r{i}")), v);
        }
        ix
    }

    #[test]
    fn finds_the_exact_neighbours_when_every_list_is_probed() {
        let vs = data(3000, 48, 1);
        let ix = build(&vs, 16);
        assert_eq!((ix.len(), ix.lists()), (3000, 16));
        let (mut found, mut total) = (0, 0);
        for q in data(50, 48, 2) {
            let want: Vec<String> = exact(&vs, &q, 10).into_iter().map(|i| format!("r{i}")).collect();
            let got = ix.search(&q, 10, 16, 10);
            assert_eq!(got.len(), 10);
            assert!(got.windows(2).all(|w| w[0].0 >= w[1].0), "best first");
            // the score is the cosine similarity, up to the codes' rounding (the residual codes leave little)
            let best = got[0].1.id.trim_start_matches('r').parse::<usize>().unwrap();
            assert!((got[0].0 - dot(&vs[best], &unit(&q))).abs() < 1e-3);
            total += 10;
            found += got.iter().filter(|(_, r)| want.iter().any(|w| **w == *r.id)).count();
        }
        assert!(found as f64 / total as f64 >= 0.99, "recall {found}/{total}");
    }

    #[test]
    fn probing_fewer_lists_still_finds_most_neighbours() {
        let vs = data(4000, 32, 3);
        let ix = build(&vs, 40);
        let (mut found, mut total) = (0, 0);
        for q in data(50, 32, 4) {
            let want: Vec<String> = exact(&vs, &q, 10).into_iter().map(|i| format!("r{i}")).collect();
            total += 10;
            found += ix.search(&q, 10, 8, 10).iter().filter(|(_, r)| want.iter().any(|w| **w == *r.id)).count();
        }
        assert!(found as f64 / total as f64 >= 0.9, "recall {found}/{total}");
    }

    #[test]
    fn upserts_replace_and_removals_keep_the_lists_consistent() {
        let vs = data(500, 16, 5);
        let mut ix = build(&vs, 8);
        // overwrite r0 with r1's vector: searching r1's vector finds both, r0 with its new text
        let mut r0 = row("r0");
        r0.text = Some("new".into());
        ix.upsert(r0, &vs[1]);
        assert_eq!(ix.len(), 500);
        let top: Vec<&str> = ix.search(&vs[1], 2, 8, 10).iter().map(|(_, r)| &*r.id).collect();
        assert!(top.contains(&"r0") && top.contains(&"r1"), "{top:?}");
        let hit = ix.search(&vs[1], 2, 8, 10).into_iter().find(|(_, r)| &*r.id == "r0").unwrap();
        assert_eq!(hit.1.text.as_deref(), Some("new"));
        // remove every other row; the rest stay findable by their own vectors
        for i in (0..500).step_by(2) {
            assert!(ix.remove(&format!("r{i}")));
        }
        assert!(!ix.remove("r0"), "already gone");
        assert_eq!(ix.len(), 250);
        for i in (1..500).step_by(2) {
            let got = ix.search(&vs[i], 1, 8, 10);
            assert_eq!(&*got[0].1.id, format!("r{i}"), "row {i}");
        }
        // freed slots are reused
        ix.upsert(row("new"), &vs[0]);
        assert_eq!(ix.entries.len(), 500);
        assert_eq!(&*ix.search(&vs[0], 1, 8, 10)[0].1.id, "new");
        // every list's codes match its slots
        for l in &ix.lists {
            assert_eq!(l.codes.len(), l.slots.len() * 16);
        }
        // the running byte count equals a walk over the rows that are left
        let walked: usize = ix.entries.iter().flatten().map(|e| row_bytes(&e.row)).sum();
        assert_eq!(ix.row_bytes, walked);
        assert!(ix.bytes() > walked);
    }

    #[test]
    fn degenerate_input_does_not_panic() {
        // no sample, one list; zero vectors; k larger than the index
        let mut ix = RamIndex::train(4, vec![], 10, 5, 1, 0);
        assert_eq!(ix.lists(), 1);
        ix.upsert(row("z"), &[0.0; 4]);
        ix.upsert(row("x"), &[1.0, 0.0, 0.0, 0.0]);
        let got = ix.search(&[1.0, 0.0, 0.0, 0.0], 10, 100, 0);
        assert_eq!(got.len(), 2);
        assert_eq!(&*got[0].1.id, "x");
        assert!((got[0].0 - 1.0).abs() < 0.01);
        assert_eq!(ix.search(&[0.0; 4], 1, 1, 3).len(), 1);
        // more lists asked than sample points
        let ix = RamIndex::train(2, vec![1.0, 0.0, 0.0, 1.0], 10, 3, 1, 2);
        assert_eq!(ix.lists(), 2);
        assert!(ix.bytes() > 0);
        let mut ix = ix;
        ix.shrink_to_fit();
        assert!(ix.bytes() > 0);
    }
}
