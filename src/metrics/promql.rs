//! The PromQL subset (parsed by `promql-parser`), evaluated over the store with Prometheus 2.x semantics:
//! selectors with label matchers and offsets, `rate`/`irate`/`increase`/`delta`/`idelta`/`changes`/`resets`,
//! `*_over_time`, math functions, `histogram_quantile`, `label_replace`, `absent`, aggregations (`sum`, `avg`,
//! `min`, `max`, `count`, `group`, `stddev`, `stdvar`, `topk`, `bottomk`, `quantile`) with `by`/`without`, and
//! arithmetic, comparison (with `bool`) and set operators between scalars and vectors, with `on`/`ignoring` and
//! `group_left`/`group_right`. Anything else is refused with an error naming it.
//!
//! The evaluator is pure over the points it is given: [`Query::selectors`] lists what to fetch, the shell fetches
//! it once for the whole range, then every step is evaluated from memory. On a roll-up tier, a selector reads each
//! step's last value, and `min_over_time`/`max_over_time`/`sum_over_time`/`count_over_time`/`avg_over_time` read
//! the step's min, max, sum and count, so they stay exact at every resolution.

use std::collections::HashMap;
use std::time::Duration;

use promql_parser::label::{MatchOp, Matchers};
use promql_parser::parser::{
    self, AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, VectorMatchCardinality, VectorSelector,
};

use super::model::{Labels, NAME, Point};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum QueryError {
    #[error("{0}")]
    Parse(String),
    #[error("{0} is not supported by hearth's PromQL")]
    Unsupported(String),
    #[error("{0}")]
    Execution(String),
}

/// Prometheus's default lookback for instant vectors.
pub(crate) const LOOKBACK_MS: i64 = 5 * 60_000;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Scalar(f64),
    String(String),
    Vector(Vec<(Labels, f64)>),
    /// a range selector at the top of an instant query
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
}

/// A selector to fetch: its matchers, and how far before and after the evaluation window it reaches.
pub(crate) struct Fetch {
    pub key: String,
    pub name: Option<String>,
    pub matchers: Matchers,
    /// milliseconds before the evaluation time (range or lookback, plus offset)
    pub before: i64,
    /// the offset (ms), subtracted from the evaluation time
    pub offset: i64,
}

impl Fetch {
    pub(crate) fn matches(&self, l: &Labels) -> bool {
        matches(&self.matchers, l)
    }
}

pub(crate) fn matches(m: &Matchers, l: &Labels) -> bool {
    let all = |ms: &[promql_parser::label::Matcher]| ms.iter().all(|m| m.is_match(l.get(&m.name).unwrap_or("")));
    if m.or_matchers.is_empty() { all(&m.matchers) } else { m.or_matchers.iter().any(|g| all(g)) }
}

/// One fetched series: its labels, the same without `__name__` (what most functions answer, computed once for
/// every step of a range query), and its points in time order.
pub(crate) struct Series {
    pub labels: Labels,
    pub bare: Labels,
    pub pts: Vec<Point>,
}

impl Series {
    pub(crate) fn new(labels: Labels, pts: Vec<Point>) -> Series {
        Series { bare: labels.without_name(), labels, pts }
    }
}

/// What the shell fetched, per selector key ([`Fetch::key`]).
pub(crate) type Data = HashMap<String, Vec<Series>>;

#[derive(Debug)]
pub(crate) struct Query {
    expr: Expr,
}

fn ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<parser::Offset>) -> i64 {
    match o {
        Some(parser::Offset::Pos(d)) => ms(d),
        Some(parser::Offset::Neg(d)) => -ms(d),
        None => 0,
    }
}

impl Query {
    pub(crate) fn parse(text: &str) -> Result<Query, QueryError> {
        let expr = parser::parse(text).map_err(QueryError::Parse)?;
        check(&expr)?;
        Ok(Query { expr })
    }

    pub(crate) fn is_range_vector(&self) -> bool {
        matches!(strip_parens(&self.expr), Expr::MatrixSelector(_))
    }

    pub(crate) fn is_string(&self) -> bool {
        matches!(strip_parens(&self.expr), Expr::StringLiteral(_))
    }

    /// The selectors in the expression, each with its reach (`lookback` for instant selectors).
    pub(crate) fn selectors(&self, lookback: i64) -> Vec<Fetch> {
        let mut out: Vec<Fetch> = vec![];
        walk(&self.expr, &mut |e| {
            let (vs, range) = match e {
                Expr::VectorSelector(vs) => (vs, lookback),
                Expr::MatrixSelector(m) => (&m.vs, ms(&m.range)),
                _ => return,
            };
            let key = selector_key(vs, range);
            if !out.iter().any(|f| f.key == key) {
                let offset = offset_ms(&vs.offset);
                out.push(Fetch { key, name: vs.name.clone(), matchers: vs.matchers.clone(), before: range, offset });
            }
        });
        out
    }

    /// Evaluate at `t` (ms) over fetched `data`.
    pub(crate) fn eval(&self, data: &Data, t: i64, lookback: i64) -> Result<Value, QueryError> {
        let (found, groups, sweeps) = (Found::default(), Groups::default(), Sweeps::default());
        Eval { data, t, lookback, found: &found, groups: &groups, sweeps: &sweeps, grid: None }.eval(&self.expr)
    }

    /// Evaluate at every `step` from `start` to `end` (ms), handing each step's value to `each`. The selectors are
    /// looked up in `data` once for all steps.
    pub(crate) fn eval_range(
        &self,
        data: &Data,
        (start, end, step): (i64, i64, i64),
        lookback: i64,
        each: &mut dyn FnMut(i64, Value),
    ) -> Result<(), QueryError> {
        let (found, groups, sweeps) = (Found::default(), Groups::default(), Sweeps::default());
        let grid = Grid { start, step: step.max(1), len: ((end - start) / step.max(1) + 1).max(0) as usize };
        let mut t = start;
        while t <= end {
            let e = Eval { data, t, lookback, found: &found, groups: &groups, sweeps: &sweeps, grid: Some(grid) };
            each(t, e.eval(&self.expr)?);
            t += step;
        }
        Ok(())
    }
}

fn selector_key(vs: &VectorSelector, range: i64) -> String {
    format!("{vs}[{range}]")
}

fn strip_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip_parens(&p.expr),
        e => e,
    }
}

fn walk(e: &Expr, f: &mut dyn FnMut(&Expr)) {
    f(e);
    match e {
        Expr::Aggregate(a) => {
            walk(&a.expr, f);
            if let Some(p) = &a.param {
                walk(p, f);
            }
        }
        Expr::Unary(u) => walk(&u.expr, f),
        Expr::Binary(b) => {
            walk(&b.lhs, f);
            walk(&b.rhs, f);
        }
        Expr::Paren(p) => walk(&p.expr, f),
        Expr::Subquery(s) => walk(&s.expr, f),
        Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, f)),
        _ => {}
    }
}

const RANGE_FUNCS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "changes",
    "resets",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "present_over_time",
];
const INSTANT_FUNCS: &[&str] = &[
    "abs",
    "ceil",
    "floor",
    "round",
    "sqrt",
    "exp",
    "ln",
    "log2",
    "log10",
    "clamp",
    "clamp_min",
    "clamp_max",
    "histogram_quantile",
    "time",
    "vector",
    "scalar",
    "timestamp",
    "sort",
    "sort_desc",
    "absent",
    "label_replace",
];
const AGGREGATES: &[&str] =
    &["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile"];

/// Refuse what the evaluator does not do, naming it (before any data is read).
fn check(e: &Expr) -> Result<(), QueryError> {
    let mut err = None;
    walk(e, &mut |e| {
        if err.is_some() {
            return;
        }
        err = match e {
            Expr::Subquery(_) => Some("subqueries".to_string()),
            Expr::Extension(_) => Some("extensions".to_string()),
            Expr::VectorSelector(vs) if vs.at.is_some() => Some("the @ modifier".to_string()),
            Expr::MatrixSelector(m) if m.vs.at.is_some() => Some("the @ modifier".to_string()),
            Expr::Call(c) if !RANGE_FUNCS.contains(&c.func.name) && !INSTANT_FUNCS.contains(&c.func.name) => {
                Some(format!("the function {}()", c.func.name))
            }
            Expr::Aggregate(a) if !AGGREGATES.contains(&a.op.to_string().as_str()) => {
                Some(format!("the aggregation {}", a.op))
            }
            Expr::Binary(b) if b.op.to_string() == "atan2" => Some("the atan2 operator".to_string()),
            _ => None,
        };
    });
    err.map_or(Ok(()), |e| Err(QueryError::Unsupported(e)))
}

/// The fetched series of each selector node met so far (by the node's address and reach), so that the steps of
/// a range query do not format and hash the selector's key again.
type Found<'a> = std::cell::RefCell<HashMap<(usize, i64), &'a [Series]>>;

/// Each aggregation node's group of each input label set (by the node's and the label set's addresses).
type Groups = std::cell::RefCell<HashMap<(usize, usize), (Labels, Labels), foldhash::fast::RandomState>>;

/// The steps of a range query.
#[derive(Debug, Clone, Copy)]
struct Grid {
    start: i64,
    step: i64,
    len: usize,
}

/// Each range-function node's value at every step of a range query (by the node's address), computed in one sweep
/// over each series with two cursors that only move forward — instead of two binary searches per series per step;
/// each step takes its own vector out.
type Sweeps = std::cell::RefCell<HashMap<usize, Vec<Option<Vec<(Labels, f64)>>>>>;

/// Most (aggregation, label set) groups a query remembers; past it, groups are computed again at each step.
const MAX_CACHED_GROUPS: usize = 20_000;

struct Eval<'a, 'f> {
    data: &'a Data,
    t: i64,
    lookback: i64,
    found: &'f Found<'a>,
    groups: &'f Groups,
    sweeps: &'f Sweeps,
    /// the range query's steps (`None` for an instant query)
    grid: Option<Grid>,
}

fn exec(msg: impl Into<String>) -> QueryError {
    QueryError::Execution(msg.into())
}

impl<'a> Eval<'a, '_> {
    fn eval(&self, e: &Expr) -> Result<Value, QueryError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Value::Scalar(v) => Ok(Value::Scalar(-v)),
                Value::Vector(v) => Ok(Value::Vector(v.into_iter().map(|(l, x)| (l.without_name(), -x)).collect())),
                _ => Err(exec("unary minus needs a scalar or an instant vector")),
            },
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant(vs))),
            Expr::MatrixSelector(m) => {
                let windows = self.range(&m.vs, ms(&m.range));
                Ok(Value::Matrix(
                    windows
                        .into_iter()
                        .map(|(s, w)| (s.labels.clone(), w.iter().map(|p| (p.t, p.last)).collect()))
                        .collect(),
                ))
            }
            Expr::Call(c) => self.call(c),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Binary(b) => self.binary(b),
            Expr::Subquery(_) | Expr::Extension(_) => Err(QueryError::Unsupported("subqueries".into())),
        }
    }

    fn fetched(&self, vs: &VectorSelector, range: i64) -> &'a [Series] {
        let id = (vs as *const VectorSelector as usize, range);
        if let Some(s) = self.found.borrow().get(&id) {
            return s;
        }
        let s = self.data.get(&selector_key(vs, range)).map(|v| v.as_slice()).unwrap_or(&[]);
        self.found.borrow_mut().insert(id, s);
        s
    }

    fn instant(&self, vs: &VectorSelector) -> Vec<(Labels, f64)> {
        let at = self.t - offset_ms(&vs.offset);
        let mut out = vec![];
        for s in self.fetched(vs, self.lookback) {
            let i = s.pts.partition_point(|p| p.t <= at);
            if i > 0 {
                let p = &s.pts[i - 1];
                if p.t >= at - self.lookback && !p.last.is_nan() {
                    out.push((s.labels.clone(), p.last));
                }
            }
        }
        out
    }

    /// Each series' points in `[t - offset - range, t - offset]`, borrowed (series with none are left out).
    fn range(&self, vs: &VectorSelector, range: i64) -> Vec<(&'a Series, &'a [Point])> {
        let end = self.t - offset_ms(&vs.offset);
        let start = end - range;
        let mut out = vec![];
        for s in self.fetched(vs, range) {
            let a = s.pts.partition_point(|p| p.t < start);
            let b = a + s.pts[a..].partition_point(|p| p.t <= end);
            if b > a {
                out.push((s, &s.pts[a..b]));
            }
        }
        out
    }

    /// A range function's values at every step of `g`: per series, the window `[t - range, t]` of each step found by
    /// two cursors moving forward (the same windows [`Eval::range`] finds by binary search).
    fn sweep(&self, name: &str, m: &MatrixSelector, range: i64, g: Grid) -> Vec<Option<Vec<(Labels, f64)>>> {
        let offset = offset_ms(&m.vs.offset);
        let mut out: Vec<Vec<(Labels, f64)>> = (0..g.len).map(|_| Vec::new()).collect();
        for s in self.fetched(&m.vs, range) {
            let l = if name == "last_over_time" { &s.labels } else { &s.bare };
            let (mut a, mut b) = (0, 0);
            for (k, step_out) in out.iter_mut().enumerate() {
                let at = g.start + k as i64 * g.step - offset;
                while a < s.pts.len() && s.pts[a].t < at - range {
                    a += 1;
                }
                b = b.max(a);
                while b < s.pts.len() && s.pts[b].t <= at {
                    b += 1;
                }
                if b > a
                    && let Some(v) = range_value(name, &s.pts[a..b], at, range)
                {
                    step_out.push((l.clone(), v));
                }
            }
        }
        out.into_iter().map(Some).collect()
    }

    fn vector(&self, e: &Expr) -> Result<Vec<(Labels, f64)>, QueryError> {
        match self.eval(e)? {
            Value::Vector(v) => Ok(v),
            _ => Err(exec(format!("expected an instant vector: {e}"))),
        }
    }

    fn scalar(&self, e: &Expr) -> Result<f64, QueryError> {
        match self.eval(e)? {
            Value::Scalar(v) => Ok(v),
            _ => Err(exec(format!("expected a scalar: {e}"))),
        }
    }

    fn call(&self, c: &Call) -> Result<Value, QueryError> {
        let name = c.func.name;
        let args = &c.args.args;
        if RANGE_FUNCS.contains(&name) {
            let Some(Expr::MatrixSelector(m)) = args.first().map(|a| strip_parens(a)) else {
                return Err(exec(format!("{name}() needs a range vector selector")));
            };
            let range = ms(&m.range);
            if let Some(g) = self.grid.filter(|g| (self.t - g.start) % g.step == 0 && self.t >= g.start) {
                let k = ((self.t - g.start) / g.step) as usize;
                let key = c as *const Call as usize;
                let mut sweeps = self.sweeps.borrow_mut();
                let all = sweeps.entry(key).or_insert_with(|| self.sweep(name, m, range, g));
                // (a node met twice in one step would find its vector taken: it is computed below)
                if let Some(v) = all.get_mut(k).and_then(Option::take) {
                    return Ok(Value::Vector(v));
                }
            }
            let at = self.t - offset_ms(&m.vs.offset);
            let mut out = vec![];
            for (s, w) in self.range(&m.vs, range) {
                if let Some(v) = range_value(name, w, at, range) {
                    let l = if name == "last_over_time" { &s.labels } else { &s.bare };
                    out.push((l.clone(), v));
                }
            }
            return Ok(Value::Vector(out));
        }
        let map = |f: &dyn Fn(f64) -> f64| -> Result<Value, QueryError> {
            let v = self.vector(&args[0])?;
            Ok(Value::Vector(v.into_iter().map(|(l, x)| (l.without_name(), f(x))).collect()))
        };
        match name {
            "abs" => map(&f64::abs),
            "ceil" => map(&f64::ceil),
            "floor" => map(&f64::floor),
            "sqrt" => map(&f64::sqrt),
            "exp" => map(&f64::exp),
            "ln" => map(&f64::ln),
            "log2" => map(&f64::log2),
            "log10" => map(&f64::log10),
            "round" => {
                let to = if args.len() > 1 { self.scalar(&args[1])? } else { 1.0 };
                map(&|x| (x / to + 0.5).floor() * to)
            }
            "clamp" => {
                let (lo, hi) = (self.scalar(&args[1])?, self.scalar(&args[2])?);
                if lo > hi {
                    return Ok(Value::Vector(vec![]));
                }
                map(&|x| x.max(lo).min(hi))
            }
            "clamp_min" => {
                let lo = self.scalar(&args[1])?;
                map(&|x| x.max(lo))
            }
            "clamp_max" => {
                let hi = self.scalar(&args[1])?;
                map(&|x| x.min(hi))
            }
            "time" => Ok(Value::Scalar(self.t as f64 / 1000.0)),
            "vector" => Ok(Value::Vector(vec![(Labels::default(), self.scalar(&args[0])?)])),
            "scalar" => {
                let v = self.vector(&args[0])?;
                Ok(Value::Scalar(if v.len() == 1 { v[0].1 } else { f64::NAN }))
            }
            "timestamp" => {
                let Some(Expr::VectorSelector(vs)) = args.first().map(|a| strip_parens(a)) else {
                    let v = self.vector(&args[0])?;
                    let t = self.t as f64 / 1000.0;
                    return Ok(Value::Vector(v.into_iter().map(|(l, _)| (l.without_name(), t)).collect()));
                };
                let at = self.t - offset_ms(&vs.offset);
                let mut out = vec![];
                for s in self.fetched(vs, self.lookback) {
                    let i = s.pts.partition_point(|p| p.t <= at);
                    if i > 0 && s.pts[i - 1].t >= at - self.lookback {
                        out.push((s.bare.clone(), s.pts[i - 1].t as f64 / 1000.0));
                    }
                }
                Ok(Value::Vector(out))
            }
            "sort" | "sort_desc" => {
                let mut v = self.vector(&args[0])?;
                v.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
                if name == "sort_desc" {
                    v.reverse();
                }
                Ok(Value::Vector(v))
            }
            "absent" => {
                let v = self.vector(&args[0])?;
                if !v.is_empty() {
                    return Ok(Value::Vector(vec![]));
                }
                let mut labels = vec![];
                if let Some(Expr::VectorSelector(vs)) = args.first().map(|a| strip_parens(a)) {
                    for m in &vs.matchers.matchers {
                        if m.op == MatchOp::Equal && m.name != NAME {
                            labels.push((m.name.clone(), m.value.clone()));
                        }
                    }
                }
                Ok(Value::Vector(vec![(Labels::new(labels), 1.0)]))
            }
            "label_replace" => {
                let v = self.vector(&args[0])?;
                let s = |i: usize| match self.eval(&args[i]) {
                    Ok(Value::String(s)) => Ok(s),
                    _ => Err(exec("label_replace() takes strings after the vector")),
                };
                let (dst, repl, src, re) = (s(1)?, s(2)?, s(3)?, s(4)?);
                let re = regex::Regex::new(&format!("^(?:{re})$")).map_err(|e| exec(format!("invalid regex: {e}")))?;
                let mut out = vec![];
                for (mut l, x) in v {
                    let value = l.get(&src).unwrap_or("").to_string();
                    if let Some(caps) = re.captures(&value) {
                        let mut res = String::new();
                        caps.expand(&repl, &mut res);
                        l.set(&dst, &res);
                    }
                    out.push((l, x));
                }
                Ok(Value::Vector(out))
            }
            "histogram_quantile" => {
                let q = self.scalar(&args[0])?;
                let v = self.vector(&args[1])?;
                let mut groups: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
                for (l, x) in v {
                    let Some(le) = l.get("le").and_then(parse_le) else { continue };
                    let key = l.without_name().project(&["le".to_string()], false);
                    groups.entry(key).or_default().push((le, x));
                }
                let mut out: Vec<(Labels, f64)> =
                    groups.into_iter().map(|(l, mut b)| (l, bucket_quantile(q, &mut b))).collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(Value::Vector(out))
            }
            other => Err(QueryError::Unsupported(format!("the function {other}()"))),
        }
    }

    fn aggregate(&self, a: &AggregateExpr) -> Result<Value, QueryError> {
        let op = a.op.to_string();
        let v = self.vector(&a.expr)?;
        let param = match &a.param {
            Some(p) if op != "count_values" => Some(self.scalar(p)?),
            _ => None,
        };
        let project = |l: &Labels| -> Labels {
            match &a.modifier {
                Some(LabelModifier::Include(ls)) => l.project(&ls.labels, true),
                Some(LabelModifier::Exclude(ls)) => l.without_name().project(&ls.labels, false),
                None => Labels::default(),
            }
        };
        // a series' group is the same at every step of a range query: computed once per label set
        let node = a as *const AggregateExpr as usize;
        let group_of = |l: &Labels| -> Labels {
            let key = (node, l.addr());
            if let Some((_, g)) = self.groups.borrow().get(&key) {
                return g.clone();
            }
            let g = project(l);
            let mut cache = self.groups.borrow_mut();
            if cache.len() < MAX_CACHED_GROUPS {
                // the input is kept with its group, so its address is not reused by another label set meanwhile
                cache.insert(key, (l.clone(), g.clone()));
            }
            g
        };
        let mut index: HashMap<Labels, usize, foldhash::fast::RandomState> = HashMap::default();
        let mut grouped: Vec<(Labels, Vec<(Labels, f64)>)> = vec![];
        for (l, x) in v {
            let g = group_of(&l);
            let i = *index.entry(g.clone()).or_insert_with(|| {
                grouped.push((g, vec![]));
                grouped.len() - 1
            });
            grouped[i].1.push((l, x));
        }
        let mut out = vec![];
        for (g, members) in grouped {
            let members = &members;
            let xs: Vec<f64> = members.iter().map(|m| m.1).collect();
            let n = xs.len() as f64;
            let mean = xs.iter().sum::<f64>() / n;
            let var = || xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
            let value = match op.as_str() {
                "sum" => xs.iter().sum(),
                "avg" => mean,
                "count" => n,
                "group" => 1.0,
                "min" => xs.iter().copied().fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a }),
                "max" => xs.iter().copied().fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a }),
                "stddev" => var().sqrt(),
                "stdvar" => var(),
                "quantile" => quantile(param.unwrap_or(f64::NAN), &xs),
                "topk" | "bottomk" => {
                    let k = param.unwrap_or(0.0);
                    if k < 1.0 {
                        continue;
                    }
                    let mut m = members.clone();
                    let desc = op == "topk";
                    m.sort_by(|a, b| {
                        let o = a.1.partial_cmp(&b.1).unwrap_or_else(|| a.1.is_nan().cmp(&b.1.is_nan()).reverse());
                        if desc { o.reverse() } else { o }
                    });
                    out.extend(m.into_iter().take(k as usize));
                    continue;
                }
                other => return Err(QueryError::Unsupported(format!("the aggregation {other}"))),
            };
            out.push((g, value));
        }
        Ok(Value::Vector(out))
    }

    fn binary(&self, b: &BinaryExpr) -> Result<Value, QueryError> {
        let op = b.op.to_string();
        let op = op.as_str();
        let is_cmp = matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=");
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        match (lhs, rhs) {
            (Value::Scalar(x), Value::Scalar(y)) => {
                let v = arith(op, x, y).ok_or_else(|| exec(format!("operator {op} needs vectors")))?;
                Ok(Value::Scalar(v))
            }
            (Value::Vector(v), Value::Scalar(y)) => Ok(Value::Vector(scalar_op(op, v, y, false, is_cmp, return_bool)?)),
            (Value::Scalar(x), Value::Vector(v)) => Ok(Value::Vector(scalar_op(op, v, x, true, is_cmp, return_bool)?)),
            (Value::Vector(l), Value::Vector(r)) => self.vector_op(b, op, l, r, is_cmp, return_bool).map(Value::Vector),
            _ => Err(exec(format!("operator {op} needs scalars or instant vectors"))),
        }
    }

    fn vector_op(
        &self,
        b: &BinaryExpr,
        op: &str,
        lhs: Vec<(Labels, f64)>,
        rhs: Vec<(Labels, f64)>,
        is_cmp: bool,
        return_bool: bool,
    ) -> Result<Vec<(Labels, f64)>, QueryError> {
        let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
        let card = b.modifier.as_ref().map_or(VectorMatchCardinality::OneToOne, |m| m.card.clone());
        let sig = |l: &Labels| -> Labels {
            match &matching {
                Some(LabelModifier::Include(ls)) => l.project(&ls.labels, true),
                Some(LabelModifier::Exclude(ls)) => l.without_name().project(&ls.labels, false),
                None => l.without_name(),
            }
        };
        match op {
            "and" | "unless" => {
                let keys: std::collections::HashSet<Labels> = rhs.iter().map(|(l, _)| sig(l)).collect();
                let want = op == "and";
                return Ok(lhs.into_iter().filter(|(l, _)| keys.contains(&sig(l)) == want).collect());
            }
            "or" => {
                let keys: std::collections::HashSet<Labels> = lhs.iter().map(|(l, _)| sig(l)).collect();
                let mut out = lhs;
                out.extend(rhs.into_iter().filter(|(l, _)| !keys.contains(&sig(l))));
                return Ok(out);
            }
            _ => {}
        }
        // group_right: swap sides, evaluate as group_left, and swap the operands back in the arithmetic
        let (many, one, swapped, include) = match &card {
            VectorMatchCardinality::OneToMany(ls) => (rhs, lhs, true, ls.labels.clone()),
            VectorMatchCardinality::ManyToOne(ls) => (lhs, rhs, false, ls.labels.clone()),
            _ => (lhs, rhs, false, vec![]),
        };
        let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
        let mut index: HashMap<Labels, (Labels, f64)> = HashMap::new();
        for (l, x) in one {
            let s = sig(&l);
            if index.insert(s.clone(), (l, x)).is_some() {
                let side = if one_to_one || swapped { "left" } else { "right" };
                let side = if one_to_one { "right" } else { side };
                return Err(exec(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: \
                     many-to-many matching not allowed: matching labels must be unique on one side",
                    s.key()
                )));
            }
        }
        let mut out = vec![];
        let mut seen: HashMap<Labels, ()> = HashMap::new();
        for (l, x) in many {
            let s = sig(&l);
            let Some((ol, y)) = index.get(&s) else { continue };
            let (a, bv) = if swapped { (*y, x) } else { (x, *y) };
            let value = if is_cmp {
                let keep = compare(op, a, bv);
                if return_bool {
                    if keep { 1.0 } else { 0.0 }
                } else if keep {
                    a
                } else {
                    continue;
                }
            } else {
                arith(op, a, bv).ok_or_else(|| exec(format!("unknown operator {op}")))?
            };
            // the result's labels: the "many" side's, reduced to the matching labels when one-to-one
            let mut rl = if one_to_one {
                match &matching {
                    Some(LabelModifier::Include(ls)) => l.project(&ls.labels, true),
                    Some(LabelModifier::Exclude(ls)) => l.project(&ls.labels, false),
                    None => l.clone(),
                }
            } else {
                l.clone()
            };
            if !is_cmp || return_bool {
                rl = rl.without_name();
            }
            for name in &include {
                rl.set(name, ol.get(name).unwrap_or(""));
            }
            if one_to_one && seen.insert(rl.clone(), ()).is_some() {
                return Err(exec(format!(
                    "multiple matches for labels {}: many-to-one matching must be explicit (group_left/group_right)",
                    rl.key()
                )));
            }
            out.push((rl, value));
        }
        Ok(out)
    }
}

fn scalar_op(
    op: &str,
    v: Vec<(Labels, f64)>,
    s: f64,
    scalar_left: bool,
    is_cmp: bool,
    return_bool: bool,
) -> Result<Vec<(Labels, f64)>, QueryError> {
    let mut out = Vec::with_capacity(v.len());
    for (l, x) in v {
        let (a, b) = if scalar_left { (s, x) } else { (x, s) };
        if is_cmp {
            let keep = compare(op, a, b);
            if return_bool {
                out.push((l.without_name(), if keep { 1.0 } else { 0.0 }));
            } else if keep {
                out.push((l, x));
            }
        } else if matches!(op, "and" | "or" | "unless") {
            return Err(exec(format!("set operator {op} not allowed between a vector and a scalar")));
        } else {
            out.push((l.without_name(), arith(op, a, b).ok_or_else(|| exec(format!("unknown operator {op}")))?));
        }
    }
    Ok(out)
}

fn compare(op: &str, a: f64, b: f64) -> bool {
    match op {
        "==" => a == b,
        "!=" => a != b,
        ">" => a > b,
        "<" => a < b,
        ">=" => a >= b,
        "<=" => a <= b,
        _ => false,
    }
}

fn arith(op: &str, a: f64, b: f64) -> Option<f64> {
    Some(match op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => a / b,
        "%" => a % b,
        "^" => a.powf(b),
        "==" | "!=" | ">" | "<" | ">=" | "<=" => {
            if compare(op, a, b) {
                1.0
            } else {
                0.0
            }
        }
        _ => return None,
    })
}

/// A range function's value over one series' window `w` ending at `at`.
fn range_value(name: &str, w: &[Point], at: i64, range: i64) -> Option<f64> {
    let sum = |w: &[Point]| w.iter().map(|p| p.sum).sum::<f64>();
    let count = |w: &[Point]| w.iter().map(|p| p.count).sum::<f64>();
    match name {
        "rate" | "increase" | "delta" => extrapolated(w, at, range, name != "delta", name == "rate"),
        "irate" | "idelta" => instant_delta(w, name == "irate"),
        "changes" => Some(w.windows(2).filter(|x| x[1].last != x[0].last).count() as f64),
        "resets" => Some(w.windows(2).filter(|x| x[1].last < x[0].last).count() as f64),
        "min_over_time" => w.iter().map(|p| p.min).reduce(f64::min),
        "max_over_time" => w.iter().map(|p| p.max).reduce(f64::max),
        "sum_over_time" => Some(sum(w)),
        "count_over_time" => Some(count(w)),
        "avg_over_time" => Some(sum(w) / count(w)),
        "last_over_time" => w.last().map(|p| p.last),
        "present_over_time" => Some(1.0),
        _ => None,
    }
}

/// Prometheus's `extrapolatedRate` (2.x): the increase over the samples in the window, extrapolated to the
/// window's edges unless a sample is more than 1.1 average intervals away from one, never below zero for counters.
fn extrapolated(pts: &[Point], t: i64, range: i64, counter: bool, per_second: bool) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (first, last) = (pts[0], pts[pts.len() - 1]);
    let mut result = last.last - first.last;
    if counter {
        let mut prev = first.last;
        for p in &pts[1..] {
            if p.last < prev {
                result += prev;
            }
            prev = p.last;
        }
    }
    let range_start = t - range;
    let mut to_start = (first.t - range_start) as f64 / 1000.0;
    let to_end = (t - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg = sampled / (pts.len() - 1) as f64;
    if counter && result > 0.0 && first.last >= 0.0 {
        let to_zero = sampled * (first.last / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold { to_start } else { avg / 2.0 };
    interval += if to_end < threshold { to_end } else { avg / 2.0 };
    result *= interval / sampled;
    if per_second {
        result /= range as f64 / 1000.0;
    }
    Some(result)
}

fn instant_delta(pts: &[Point], rate: bool) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let (a, b) = (pts[pts.len() - 2], pts[pts.len() - 1]);
    let dv = if rate && b.last < a.last { b.last } else { b.last - a.last };
    if !rate {
        return Some(dv);
    }
    let dt = (b.t - a.t) as f64 / 1000.0;
    if dt == 0.0 { None } else { Some(dv / dt) }
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        _ => s.parse().ok(),
    }
}

/// Prometheus's `bucketQuantile` (classic histograms), with its monotonicity fix.
fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // coalesce equal bounds, then make the counts non-decreasing
    let mut b: Vec<(f64, f64)> = vec![];
    for &(le, c) in buckets.iter() {
        match b.last_mut() {
            Some(last) if last.0 == le => last.1 += c,
            _ => b.push((le, c)),
        }
    }
    let mut max = f64::NEG_INFINITY;
    for x in b.iter_mut() {
        if x.1 > max {
            max = x.1;
        } else {
            x.1 = max;
        }
    }
    if b.len() < 2 {
        return f64::NAN;
    }
    let observations = b[b.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let i = b.partition_point(|x| x.1 < rank);
    if i == b.len() - 1 {
        return b[b.len() - 2].0;
    }
    if i == 0 && b[0].0 <= 0.0 {
        return b[0].0;
    }
    let (mut start, end, mut count) = (0.0, b[i].0, b[i].1);
    if i > 0 {
        start = b[i - 1].0;
        count -= b[i - 1].1;
        rank -= b[i - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Prometheus's `quantile` aggregation (linear interpolation between the closest ranks).
fn quantile(q: f64, xs: &[f64]) -> f64 {
    if xs.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len() as f64;
    let rank = q * (n - 1.0);
    let lo = rank.floor().max(0.0) as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let w = rank - rank.floor();
    v[lo] * (1.0 - w) + v[hi] * w
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fetch every selector from an in-memory table of series.
    fn data(q: &Query, series: &[(Labels, Vec<Point>)]) -> Data {
        q.selectors(LOOKBACK_MS)
            .into_iter()
            .map(|f| {
                let got = series
                    .iter()
                    .filter(|(l, _)| f.name.as_deref().is_none_or(|n| l.name() == n) && f.matches(l))
                    .map(|(l, p)| Series::new(l.clone(), p.clone()))
                    .collect();
                (f.key, got)
            })
            .collect()
    }

    fn counter(name: &str, labels: &[(&str, &str)], per_s: f64) -> (Labels, Vec<Point>) {
        let pts = (0..=60).map(|i| Point::raw(i * 15_000, per_s * 15.0 * i as f64)).collect();
        (Labels::from_pairs(name, labels), pts)
    }

    fn run(expr: &str, series: &[(Labels, Vec<Point>)], t: i64) -> Result<Value, QueryError> {
        let q = Query::parse(expr)?;
        q.eval(&data(&q, series), t, LOOKBACK_MS)
    }

    fn vector(expr: &str, series: &[(Labels, Vec<Point>)], t: i64) -> Vec<(String, f64)> {
        match run(expr, series, t).unwrap() {
            Value::Vector(v) => {
                let mut v: Vec<(String, f64)> = v.into_iter().map(|(l, x)| (l.key(), x)).collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            }
            other => panic!("{expr}: {other:?}"),
        }
    }

    fn fixture() -> Vec<(Labels, Vec<Point>)> {
        vec![
            counter("req_total", &[("job", "a"), ("code", "200")], 10.0),
            counter("req_total", &[("job", "a"), ("code", "500")], 1.0),
            counter("req_total", &[("job", "b"), ("code", "200")], 4.0),
            (
                Labels::from_pairs("temp", &[("zone", "0")]),
                (0..=60).map(|i| Point::raw(i * 15_000, 40.0 + (i % 4) as f64)).collect(),
            ),
            (Labels::from_pairs("limit", &[("job", "a")]), vec![Point::raw(0, 100.0), Point::raw(600_000, 100.0)]),
            (Labels::from_pairs("limit", &[("job", "b")]), vec![Point::raw(0, 3.0), Point::raw(600_000, 3.0)]),
        ]
    }

    #[test]
    fn rate_of_a_steady_counter_is_its_slope() {
        let f = fixture();
        let v = vector("rate(req_total[5m])", &f, 600_000);
        assert_eq!(v.len(), 3);
        assert!((v[0].1 - 10.0).abs() < 1e-9, "{v:?}");
        assert_eq!(v[0].0, r#"{code="200",job="a"}"#);
        let inc = vector(r#"increase(req_total{code="500"}[5m])"#, &f, 600_000);
        assert!((inc[0].1 - 300.0).abs() < 1e-9, "{inc:?}");
        let ir = vector(r#"irate(req_total{job="b"}[1m])"#, &f, 600_000);
        assert!((ir[0].1 - 4.0).abs() < 1e-9);
    }

    #[test]
    fn counter_resets_are_added_back() {
        let pts =
            vec![Point::raw(0, 10.0), Point::raw(15_000, 20.0), Point::raw(30_000, 5.0), Point::raw(45_000, 15.0)];
        let s = vec![(Labels::from_pairs("c_total", &[]), pts)];
        let v = vector("resets(c_total[1m])", &s, 45_000);
        assert_eq!(v[0].1, 1.0);
        // the raw increase is 10 + 5 + 10 = 25 over 45 s of samples, extrapolated toward the window's start
        let inc = vector("increase(c_total[1m])", &s, 45_000);
        assert!(inc[0].1 > 25.0 && inc[0].1 < 35.0, "{inc:?}");
    }

    #[test]
    fn aggregations_group_and_rank() {
        let f = fixture();
        let v = vector("sum by (job) (rate(req_total[5m]))", &f, 600_000);
        assert_eq!(v.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), [r#"{job="a"}"#, r#"{job="b"}"#]);
        assert!((v[0].1 - 11.0).abs() < 1e-9);
        let v = vector("count without (code) (req_total)", &f, 600_000);
        assert_eq!(v, [(r#"{job="a"}"#.to_string(), 2.0), (r#"{job="b"}"#.to_string(), 1.0)]);
        let v = vector("topk(1, req_total)", &f, 600_000);
        assert_eq!(v[0].0, r#"req_total{code="200",job="a"}"#);
        let v = vector("max(temp) - min(temp)", &f, 600_000);
        assert_eq!(v, [("{}".to_string(), 0.0)]);
        let v = vector("avg_over_time(temp[1m])", &f, 600_000);
        assert_eq!(v[0].1, (40.0 + 41.0 + 42.0 + 43.0 + 40.0) / 5.0);
        let v = vector("quantile(0.5, req_total)", &f, 600_000);
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn vector_matching_and_comparisons() {
        let f = fixture();
        // one-to-one on job: rate per job compared with its limit
        let v = vector("sum by (job) (rate(req_total[5m])) > on (job) limit", &f, 600_000);
        assert_eq!(v, [(r#"{job="b"}"#.to_string(), 4.0)]);
        let v = vector("sum by (job) (rate(req_total[5m])) > bool on (job) limit", &f, 600_000);
        assert_eq!(v.len(), 2);
        // many-to-one needs group_left
        let err = run("rate(req_total[5m]) / on (job) limit", &f, 600_000).unwrap_err();
        assert!(matches!(err, QueryError::Execution(_)), "{err}");
        let v = vector("rate(req_total[5m]) / on (job) group_left limit", &f, 600_000);
        assert_eq!(v.len(), 3);
        assert!((v.iter().find(|x| x.0 == r#"{code="500",job="a"}"#).unwrap().1 - 0.01).abs() < 1e-9);
        let v = vector(r#"req_total{job="a"} and on (code) req_total{job="b"}"#, &f, 600_000);
        assert_eq!(v.len(), 1);
        let v = vector("temp > 100 or vector(1)", &f, 600_000);
        assert_eq!(v, [("{}".to_string(), 1.0)]);
        let v = vector("temp * 2 + 1", &f, 600_000);
        assert_eq!(v, [(r#"{zone="0"}"#.to_string(), 81.0)]);
        assert_eq!(run("2 ^ 10 / 4", &f, 0).unwrap(), Value::Scalar(256.0));
    }

    #[test]
    fn histogram_quantile_interpolates_like_prometheus() {
        let mut b = vec![(0.1, 10.0), (0.5, 60.0), (1.0, 90.0), (f64::INFINITY, 100.0)];
        assert!((bucket_quantile(0.5, &mut b) - (0.1 + 0.4 * (40.0 / 50.0))).abs() < 1e-12);
        assert_eq!(bucket_quantile(0.99, &mut b), 1.0);
        assert!(bucket_quantile(0.5, &mut [(1.0, 3.0)]).is_nan());
        let s: Vec<(Labels, Vec<Point>)> = b
            .iter()
            .map(|(le, c)| {
                let le = if le.is_infinite() { "+Inf".to_string() } else { le.to_string() };
                (Labels::from_pairs("d_bucket", &[("le", &le)]), vec![Point::raw(0, *c)])
            })
            .collect();
        let v = vector("histogram_quantile(0.5, d_bucket)", &s, 1000);
        assert!((v[0].1 - 0.42).abs() < 1e-12);
    }

    #[test]
    fn lookback_offset_and_absent() {
        let f = fixture();
        assert!(vector("limit", &f, 600_000 + LOOKBACK_MS + 1).is_empty(), "older than 5 m is gone");
        assert_eq!(vector("limit", &f, 600_000 + LOOKBACK_MS).len(), 2);
        let v = vector("temp offset 15s", &f, 600_000);
        assert_eq!(v[0].1, 43.0, "the sample 15 s before");
        assert_eq!(vector(r#"absent(nope{job="x"})"#, &f, 0), [(r#"{job="x"}"#.to_string(), 1.0)]);
        assert!(vector("absent(temp)", &f, 0).is_empty());
        let v = vector(r#"label_replace(limit, "team", "t-$1", "job", "(.*)")"#, &f, 0);
        assert_eq!(v[0].0, r#"limit{job="a",team="t-a"}"#);
    }

    #[test]
    fn unsupported_features_are_named() {
        for (q, what) in [
            ("rate(x[5m])[30m:1m]", "subqueries"),
            ("x @ 100", "@ modifier"),
            ("predict_linear(x[5m], 60)", "predict_linear()"),
            ("count_values(\"v\", x)", "count_values"),
        ] {
            let e = Query::parse(q).err().unwrap_or_else(|| panic!("{q} parsed"));
            assert!(e.to_string().contains(what), "{q}: {e}");
        }
        assert!(matches!(Query::parse("sum(").unwrap_err(), QueryError::Parse(_)));
    }
}
