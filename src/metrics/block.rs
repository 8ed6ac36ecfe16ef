//! The store's pure core: the block format (a series' points in one time window, each column compressed with
//! pcodec), roll-ups into coarser steps, and the retention plan under the disk cap. No IO, no clock.
//!
//! Format v1: `[version = 1][kind: 0 raw, 1 roll-up][n: u32 LE]` then the columns, each `[len: u32 LE][pco]`:
//! raw blocks carry `t` (ms) and `v`; roll-up blocks carry `t` (the time of each step's last sample), `min`, `max`,
//! `sum`, `count`, `last`. pcodec finds the delta order of the timestamps itself (a steady 10 s interval costs
//! about a bit per sample) and the common bits of the values; a block never mixes series.

use super::model::Point;

pub(crate) const FORMAT_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum BlockError {
    #[error("block format version {0} is newer than this hearth understands ({FORMAT_VERSION})")]
    TooNew(u8),
    #[error("corrupt block: {0}")]
    Corrupt(String),
}

fn config() -> pco::ChunkConfig {
    pco::ChunkConfig::default()
}

fn put_column<T: pco::data_types::Number>(out: &mut Vec<u8>, col: &[T]) {
    let bytes = pco::standalone::simple_compress(col, &config()).expect("pco accepts any numbers");
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&bytes);
}

fn take_column<T: pco::data_types::Number>(src: &mut &[u8], n: usize) -> Result<Vec<T>, BlockError> {
    let corrupt = |m: &str| BlockError::Corrupt(m.to_string());
    if src.len() < 4 {
        return Err(corrupt("truncated column header"));
    }
    let len = u32::from_le_bytes(src[..4].try_into().expect("4 bytes")) as usize;
    if src.len() < 4 + len {
        return Err(corrupt("truncated column"));
    }
    let col: Vec<T> =
        pco::standalone::simple_decompress(&src[4..4 + len]).map_err(|e| BlockError::Corrupt(e.to_string()))?;
    if col.len() != n {
        return Err(corrupt("column length differs from the header"));
    }
    *src = &src[4 + len..];
    Ok(col)
}

/// Encode raw samples (sorted by time).
pub(crate) fn encode_raw(points: &[(i64, f64)]) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION, 0];
    out.extend_from_slice(&(points.len() as u32).to_le_bytes());
    if points.is_empty() {
        return out;
    }
    let t: Vec<i64> = points.iter().map(|p| p.0).collect();
    let v: Vec<f64> = points.iter().map(|p| p.1).collect();
    put_column(&mut out, &t);
    put_column(&mut out, &v);
    out
}

/// Encode roll-up points (sorted by time).
pub(crate) fn encode_rollup(points: &[Point]) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION, 1];
    out.extend_from_slice(&(points.len() as u32).to_le_bytes());
    if points.is_empty() {
        return out;
    }
    put_column(&mut out, &points.iter().map(|p| p.t).collect::<Vec<i64>>());
    for f in [|p: &Point| p.min, |p: &Point| p.max, |p: &Point| p.sum, |p: &Point| p.count, |p: &Point| p.last] {
        put_column(&mut out, &points.iter().map(f).collect::<Vec<f64>>());
    }
    out
}

/// Decode either kind of block into points.
pub(crate) fn decode(block: &[u8]) -> Result<Vec<Point>, BlockError> {
    if block.len() < 6 {
        return Err(BlockError::Corrupt("shorter than its header".into()));
    }
    if block[0] > FORMAT_VERSION {
        return Err(BlockError::TooNew(block[0]));
    }
    if block[0] == 0 {
        return Err(BlockError::Corrupt("version 0".into()));
    }
    let n = u32::from_le_bytes(block[2..6].try_into().expect("4 bytes")) as usize;
    let mut src = &block[6..];
    if n == 0 {
        return Ok(vec![]);
    }
    match block[1] {
        0 => {
            let t: Vec<i64> = take_column(&mut src, n)?;
            let v: Vec<f64> = take_column(&mut src, n)?;
            Ok(t.into_iter().zip(v).map(|(t, v)| Point::raw(t, v)).collect())
        }
        1 => {
            let t: Vec<i64> = take_column(&mut src, n)?;
            let mut cols = Vec::with_capacity(5);
            for _ in 0..5 {
                cols.push(take_column::<f64>(&mut src, n)?);
            }
            Ok((0..n)
                .map(|i| Point {
                    t: t[i],
                    min: cols[0][i],
                    max: cols[1][i],
                    sum: cols[2][i],
                    count: cols[3][i],
                    last: cols[4][i],
                })
                .collect())
        }
        k => Err(BlockError::Corrupt(format!("unknown block kind {k}"))),
    }
}

/// A write-ahead batch: `(series id, t, v)` triples in one record (`[version][n: u32]` then the three columns).
pub(crate) fn encode_batch(rows: &[(u32, i64, f64)]) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    if rows.is_empty() {
        return out;
    }
    put_column(&mut out, &rows.iter().map(|r| r.0).collect::<Vec<u32>>());
    put_column(&mut out, &rows.iter().map(|r| r.1).collect::<Vec<i64>>());
    put_column(&mut out, &rows.iter().map(|r| r.2).collect::<Vec<f64>>());
    out
}

pub(crate) fn decode_batch(rec: &[u8]) -> Result<Vec<(u32, i64, f64)>, BlockError> {
    if rec.len() < 5 {
        return Err(BlockError::Corrupt("shorter than its header".into()));
    }
    if rec[0] != FORMAT_VERSION {
        return Err(BlockError::TooNew(rec[0]));
    }
    let n = u32::from_le_bytes(rec[1..5].try_into().expect("4 bytes")) as usize;
    if n == 0 {
        return Ok(vec![]);
    }
    let mut src = &rec[5..];
    let ids: Vec<u32> = take_column(&mut src, n)?;
    let t: Vec<i64> = take_column(&mut src, n)?;
    let v: Vec<f64> = take_column(&mut src, n)?;
    Ok((0..n).map(|i| (ids[i], t[i], v[i])).collect())
}

/// Merge points (sorted by time) into steps of `step_ms` aligned to the epoch: min of mins, max of maxes, sums of
/// sums and counts, the last `last`, stamped with the time of the step's last point. NaN samples (Prometheus's
/// staleness markers, failed reads) are left out of min/max/sum/count but can still be a step's `last`.
pub(crate) fn rollup(points: &[Point], step_ms: i64) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::new();
    let mut cur: Option<(i64, Point)> = None;
    for p in points {
        let bucket = p.t.div_euclid(step_ms);
        match &mut cur {
            Some((b, acc)) if *b == bucket => {
                acc.t = p.t;
                acc.last = p.last;
                if !p.sum.is_nan() {
                    if acc.count == 0.0 {
                        (acc.min, acc.max, acc.sum) = (p.min, p.max, 0.0);
                    }
                    acc.min = acc.min.min(p.min);
                    acc.max = acc.max.max(p.max);
                    acc.sum += p.sum;
                    acc.count += p.count;
                }
            }
            _ => {
                if let Some((_, acc)) = cur.take() {
                    out.push(acc);
                }
                let mut acc = *p;
                if p.sum.is_nan() {
                    (acc.min, acc.max, acc.sum, acc.count) = (f64::NAN, f64::NAN, 0.0, 0.0);
                }
                cur = Some((bucket, acc));
            }
        }
    }
    if let Some((_, acc)) = cur {
        out.push(acc);
    }
    out
}

/// A tier: its step (0 = raw), the window one block covers, and how long it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tier {
    pub step_ms: i64,
    pub window_ms: i64,
    pub retention_ms: i64,
}

pub(crate) const HOUR: i64 = 3_600_000;
pub(crate) const DAY: i64 = 24 * HOUR;

/// The three tiers: raw in 2-hour blocks, 1-minute roll-ups in 1-day blocks, 1-hour roll-ups in 7-day blocks. A
/// coarser tier's open window is always rebuilt from the finer one, which is why `retention_raw` must exceed a
/// day and `retention_1m` a week (checked by the config).
pub(crate) fn tiers(raw_ms: i64, m1_ms: i64, h1_ms: i64) -> [Tier; 3] {
    [
        Tier { step_ms: 0, window_ms: 2 * HOUR, retention_ms: raw_ms },
        Tier { step_ms: 60_000, window_ms: DAY, retention_ms: m1_ms },
        Tier { step_ms: HOUR, window_ms: 7 * DAY, retention_ms: h1_ms },
    ]
}

/// What the store holds per tier: bytes and the oldest block's start.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct TierUsage {
    pub bytes: u64,
    pub oldest_ms: Option<i64>,
}

/// The retention plan: for each tier, the cut-off before which blocks are deleted. Age first; then, while the
/// total is over `max_bytes`, whole windows of the coarsest tier that still has more than its floor (one window
/// of the next finer tier's input) are dropped, estimating bytes per window from the tier's average. Returns the
/// cut-offs and whether the cap shortened any tier (the UI says so).
pub(crate) fn retention_plan(now: i64, tiers: &[Tier; 3], usage: &[TierUsage; 3], max_bytes: u64) -> ([i64; 3], bool) {
    let mut cut = [0i64; 3];
    for (i, t) in tiers.iter().enumerate() {
        cut[i] = now - t.retention_ms;
    }
    // bytes left after the age cut, assuming bytes spread evenly over each tier's span
    let span = |i: usize, c: i64| -> (f64, f64) {
        let Some(oldest) = usage[i].oldest_ms else { return (0.0, 0.0) };
        let total_span = (now - oldest).max(1) as f64;
        let kept_span = (now - c.max(oldest)).max(0) as f64;
        (usage[i].bytes as f64 * kept_span / total_span, usage[i].bytes as f64 / total_span)
    };
    let mut total: f64 = (0..3).map(|i| span(i, cut[i]).0).sum();
    let mut shortened = false;
    // floors: a tier is never cut below what the coarser tier's open window needs, nor below one window
    let floor = [tiers[1].window_ms + tiers[0].window_ms, tiers[2].window_ms + tiers[1].window_ms, tiers[2].window_ms];
    for i in (0..3).rev() {
        while total > max_bytes as f64 {
            let (kept, per_ms) = span(i, cut[i]);
            if kept <= 0.0 || now - cut[i] <= floor[i] {
                break;
            }
            let step = tiers[i].window_ms;
            let next = (cut[i] + step).min(now - floor[i]);
            if next <= cut[i] {
                break;
            }
            total -= per_ms * (next - cut[i]) as f64;
            cut[i] = next;
            shortened = true;
        }
    }
    (cut, shortened)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_steady_series_costs_about_a_byte_per_sample_or_less() {
        // 2 hours of a 10 s gauge with small jitter in time and a slowly moving value
        let pts: Vec<(i64, f64)> =
            (0..720).map(|i| (1_700_000_000_000 + i * 10_000 + (i % 3), 40.0 + ((i / 30) as f64) * 0.5)).collect();
        let b = encode_raw(&pts);
        assert!(b.len() < 720, "{} bytes", b.len());
        let back = decode(&b).unwrap();
        assert_eq!(back.len(), 720);
        assert_eq!(back[719], Point::raw(pts[719].0, pts[719].1));
    }

    #[test]
    fn versions_and_corruption_are_refused() {
        let mut b = encode_raw(&[(1, 1.0), (2, 2.0)]);
        assert!(decode(&b[..b.len() - 3]).is_err());
        b[0] = 2;
        assert_eq!(decode(&b), Err(BlockError::TooNew(2)));
        assert!(decode(&[1, 7, 1, 0, 0, 0]).is_err());
        assert_eq!(decode(&encode_raw(&[])).unwrap(), vec![]);
    }

    #[test]
    fn rollup_summarises_each_step() {
        let pts: Vec<Point> =
            [(0, 1.0), (10_000, 5.0), (59_999, 3.0), (60_000, 7.0), (130_000, f64::NAN), (170_000, 2.0)]
                .iter()
                .map(|&(t, v)| Point::raw(t, v))
                .collect();
        let r = rollup(&pts, 60_000);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0], Point { t: 59_999, min: 1.0, max: 5.0, sum: 9.0, count: 3.0, last: 3.0 });
        assert_eq!(r[1], Point { t: 60_000, min: 7.0, max: 7.0, sum: 7.0, count: 1.0, last: 7.0 });
        assert_eq!((r[2].t, r[2].min, r[2].count, r[2].last), (170_000, 2.0, 1.0, 2.0));
        // rolling up roll-ups equals rolling up the raw samples
        let hour = rollup(&r, HOUR);
        assert_eq!(hour, rollup(&pts, HOUR));
    }

    #[test]
    fn the_cap_shortens_the_coarsest_tier_first() {
        let t = tiers(48 * HOUR, 14 * DAY, 400 * DAY);
        let now = 1000 * DAY;
        let usage = [
            TierUsage { bytes: 10 << 20, oldest_ms: Some(now - 48 * HOUR) },
            TierUsage { bytes: 20 << 20, oldest_ms: Some(now - 14 * DAY) },
            TierUsage { bytes: 40 << 20, oldest_ms: Some(now - 400 * DAY) },
        ];
        let (cut, short) = retention_plan(now, &t, &usage, 100 << 20);
        assert!(!short);
        assert_eq!(cut, [now - 48 * HOUR, now - 14 * DAY, now - 400 * DAY]);
        let (cut, short) = retention_plan(now, &t, &usage, 50 << 20);
        assert!(short);
        assert!(cut[2] > now - 400 * DAY && cut[2] <= now - 150 * DAY, "{}", (now - cut[2]) / DAY);
        assert_eq!(cut[..2], [now - 48 * HOUR, now - 14 * DAY]);
        // a cap below everything still keeps each tier's floor
        let (cut, _) = retention_plan(now, &t, &usage, 1);
        assert_eq!(cut[2], now - 7 * DAY);
        assert_eq!(cut[1], now - 8 * DAY);
        assert_eq!(cut[0], now - 26 * HOUR);
    }

    proptest! {
        #[test]
        fn blocks_round_trip(pts in proptest::collection::vec((0i64..1_000_000_000_000, proptest::num::f64::ANY), 0..300)) {
            let mut pts = pts;
            pts.sort_by_key(|p| p.0);
            let back = decode(&encode_raw(&pts)).unwrap();
            prop_assert_eq!(back.len(), pts.len());
            for (a, b) in back.iter().zip(&pts) {
                prop_assert_eq!(a.t, b.0);
                prop_assert_eq!(a.last.to_bits(), b.1.to_bits());
            }
            let r = rollup(&back, 60_000);
            let back2 = decode(&encode_rollup(&r)).unwrap();
            prop_assert_eq!(back2.len(), r.len());
            for (a, b) in back2.iter().zip(&r) {
                prop_assert_eq!(a.sum.to_bits(), b.sum.to_bits());
                prop_assert_eq!(a.count, b.count);
            }
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn rollup_conserves_count_and_sum(vals in proptest::collection::vec(-1e6f64..1e6, 1..500)) {
            let pts: Vec<Point> = vals.iter().enumerate().map(|(i, v)| Point::raw(i as i64 * 7_000, *v)).collect();
            let r = rollup(&pts, 60_000);
            let count: f64 = r.iter().map(|p| p.count).sum();
            prop_assert_eq!(count, vals.len() as f64);
            let sum: f64 = r.iter().map(|p| p.sum).sum();
            let want: f64 = vals.iter().sum();
            prop_assert!((sum - want).abs() <= 1e-6 * want.abs().max(1.0));
            prop_assert_eq!(r.last().unwrap().last, *vals.last().unwrap());
        }
    }
}
