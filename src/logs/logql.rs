//! The LogQL subset (pure): a stream selector `{unit="nginx", level=~"err|warn"}`, line filters `|=`, `!=`, `|~`,
//! `!~`, the parsers `| json` and `| logfmt`, label filters (`| status >= 500`, `| method = "GET"`), and metric
//! queries `count_over_time`, `rate`, `bytes_over_time`, `bytes_rate` over `[range]`, under `sum`, `avg`, `min`,
//! `max`, `count` with `by`/`without` (before or after the argument), compared with a number (`… > 10`, as alert
//! rules use). Anything else is refused with an error naming it, the way Loki's parser does.

use std::collections::BTreeMap;

use super::model::{Labels, sanitize_name};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum LogqlError {
    #[error("parse error at column {col}: {msg}")]
    Parse { col: usize, msg: String },
    #[error("{0} is not supported by hearth's LogQL")]
    Unsupported(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Re,
    Nre,
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    re: Option<regex::Regex>,
}

impl Matcher {
    fn new(name: String, op: Op, value: String, col: usize) -> Result<Matcher, LogqlError> {
        let re = match op {
            Op::Re | Op::Nre => Some(
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| LogqlError::Parse { col, msg: format!("invalid regex {value:?}: {e}") })?,
            ),
            _ => None,
        };
        Ok(Matcher { name, op, value, re })
    }

    /// Whether a label value (empty when absent) passes.
    pub(crate) fn matches(&self, v: &str) -> bool {
        let num = || -> Option<(f64, f64)> { Some((v.parse().ok()?, self.value.parse().ok()?)) };
        match self.op {
            Op::Eq => v == self.value || num().is_some_and(|(a, b)| a == b),
            Op::Ne => v != self.value && !num().is_some_and(|(a, b)| a == b),
            Op::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            Op::Nre => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
            Op::Gt => num().is_some_and(|(a, b)| a > b),
            Op::Ge => num().is_some_and(|(a, b)| a >= b),
            Op::Lt => num().is_some_and(|(a, b)| a < b),
            Op::Le => num().is_some_and(|(a, b)| a <= b),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Stage {
    Contains(String),
    NotContains(String),
    Regex(regex::Regex),
    NotRegex(regex::Regex),
    Json,
    Logfmt,
    Label(Matcher),
}

/// A log query: a stream selector and its pipeline.
#[derive(Debug, Clone)]
pub(crate) struct LogQuery {
    pub selector: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RangeFn {
    CountOverTime,
    Rate,
    BytesOverTime,
    BytesRate,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

#[derive(Debug, Clone)]
pub(crate) struct MetricQuery {
    pub func: RangeFn,
    pub log: LogQuery,
    pub range_ns: i64,
    /// an aggregation over the range function's series, if any
    pub agg: Option<(String, Option<Grouping>)>,
    /// a comparison with a number that keeps only the points passing it (`… > 10`), as alert rules use
    pub cmp: Option<(Op, f64)>,
}

#[derive(Debug, Clone)]
pub(crate) enum Query {
    Log(LogQuery),
    Metric(MetricQuery),
}

impl LogQuery {
    /// Whether a stream's labels pass the selector.
    pub(crate) fn selects(&self, l: &Labels) -> bool {
        self.selector.iter().all(|m| m.matches(l.get(&m.name).unwrap_or("")))
    }

    /// The `|=` needles the store can use its index for (the leading ones, before any parser).
    pub(crate) fn needles(&self) -> Vec<String> {
        self.stages
            .iter()
            .map_while(|s| match s {
                Stage::Contains(n) => Some(Some(n.clone())),
                Stage::NotContains(_) | Stage::Regex(_) | Stage::NotRegex(_) => Some(None),
                _ => None,
            })
            .flatten()
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// Run the pipeline over one line of a stream: `None` when filtered out, else the line's labels (the stream's
    /// plus what a parser extracted; `None` for them when nothing was extracted, so the caller can reuse the
    /// stream's).
    pub(crate) fn run(&self, stream: &Labels, line: &str) -> Option<Option<Labels>> {
        let mut labels: Option<Labels> = None;
        for s in &self.stages {
            match s {
                Stage::Contains(n) => {
                    if !line.contains(n.as_str()) {
                        return None;
                    }
                }
                Stage::NotContains(n) => {
                    if line.contains(n.as_str()) {
                        return None;
                    }
                }
                Stage::Regex(r) => {
                    if !r.is_match(line) {
                        return None;
                    }
                }
                Stage::NotRegex(r) => {
                    if r.is_match(line) {
                        return None;
                    }
                }
                Stage::Json | Stage::Logfmt => {
                    let found = if matches!(s, Stage::Json) { json_fields(line) } else { logfmt_fields(line) };
                    let l = labels.get_or_insert_with(|| stream.clone());
                    match found {
                        Some(fields) => {
                            for (k, v) in fields {
                                // Loki: an extracted label that clashes with a stream label gets `_extracted`
                                let k = if stream.get(&k).is_some() { format!("{k}_extracted") } else { k };
                                l.set(&k, &v);
                            }
                        }
                        None => l.set(
                            "__error__",
                            if matches!(s, Stage::Json) { "JSONParserErr" } else { "LogfmtParserErr" },
                        ),
                    }
                }
                Stage::Label(m) => {
                    let l = labels.as_ref().unwrap_or(stream);
                    if !m.matches(l.get(&m.name).unwrap_or("")) {
                        return None;
                    }
                }
            }
        }
        Some(labels)
    }
}

/// Top-level fields of a JSON object, nested objects flattened with `_` (Loki's `| json`).
fn json_fields(line: &str) -> Option<Vec<(String, String)>> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let obj = v.as_object()?;
    let mut out = vec![];
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let name =
                        if prefix.is_empty() { sanitize_name(k) } else { format!("{prefix}_{}", sanitize_name(k)) };
                    walk(&name, v, out);
                }
            }
            serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
            serde_json::Value::Null => {}
            serde_json::Value::Array(_) => out.push((prefix.to_string(), v.to_string())),
            other => out.push((prefix.to_string(), other.to_string())),
        }
    }
    for (k, v) in obj {
        walk(&sanitize_name(k), v, &mut out);
    }
    Some(out)
}

/// `key=value key="quoted value"` pairs (Loki's `| logfmt`); a line with none is an error.
fn logfmt_fields(line: &str) -> Option<Vec<(String, String)>> {
    let mut out = vec![];
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        let key = &line[ks..i];
        if i >= b.len() || b[i] != b'=' {
            continue; // a bare word
        }
        i += 1;
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch = line[i..].chars().next().unwrap_or(' ');
                v.push(ch);
                i += ch.len_utf8();
            }
            i += 1;
            v
        } else {
            let vs = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            line[vs..i].to_string()
        };
        if !key.is_empty() {
            out.push((sanitize_name(key), value));
        }
    }
    (!out.is_empty()).then_some(out)
}

// ---- parser ----

struct P<'a> {
    s: &'a str,
    at: usize,
}

fn err<T>(col: usize, msg: impl Into<String>) -> Result<T, LogqlError> {
    Err(LogqlError::Parse { col: col + 1, msg: msg.into() })
}

impl<'a> P<'a> {
    fn ws(&mut self) {
        while self.at < self.s.len() && self.s.as_bytes()[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }
    fn rest(&self) -> &'a str {
        &self.s[self.at..]
    }
    fn eat(&mut self, t: &str) -> bool {
        self.ws();
        if self.rest().starts_with(t) {
            self.at += t.len();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, t: &str) -> Result<(), LogqlError> {
        if self.eat(t) { Ok(()) } else { err(self.at, format!("expected {t:?}")) }
    }
    fn ident(&mut self) -> Result<String, LogqlError> {
        self.ws();
        let start = self.at;
        let b = self.s.as_bytes();
        while self.at < b.len() && (b[self.at].is_ascii_alphanumeric() || b[self.at] == b'_') {
            self.at += 1;
        }
        if start == self.at {
            return err(start, "expected a name");
        }
        Ok(self.s[start..self.at].to_string())
    }
    fn string(&mut self) -> Result<String, LogqlError> {
        self.ws();
        let col = self.at;
        let rest = self.rest();
        if let Some(r) = rest.strip_prefix('`') {
            let end = r.find('`').ok_or(LogqlError::Parse { col: col + 1, msg: "unterminated raw string".into() })?;
            self.at += end + 2;
            return Ok(r[..end].to_string());
        }
        if !rest.starts_with('"') {
            return err(col, "expected a string");
        }
        let mut out = String::new();
        let mut chars = rest[1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += i + 2;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, c)) => out.push(c),
                    None => break,
                },
                c => out.push(c),
            }
        }
        err(col, "unterminated string")
    }
    fn op(&mut self) -> Result<Op, LogqlError> {
        self.ws();
        for (t, op) in [
            ("=~", Op::Re),
            ("!~", Op::Nre),
            ("!=", Op::Ne),
            ("==", Op::Eq),
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("=", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
        ] {
            if self.eat(t) {
                return Ok(op);
            }
        }
        err(self.at, "expected a comparison (=, !=, =~, !~, >, >=, <, <=)")
    }
    fn duration(&mut self) -> Result<i64, LogqlError> {
        self.ws();
        let col = self.at;
        let b = self.s.as_bytes();
        let start = self.at;
        while self.at < b.len() && (b[self.at].is_ascii_alphanumeric()) {
            self.at += 1;
        }
        parse_duration(&self.s[start..self.at])
            .ok_or(LogqlError::Parse { col: col + 1, msg: "expected a duration like 5m".into() })
    }
}

/// A Prometheus-style duration (`90s`, `5m`, `1h30m`, `2d`, `1w`, `250ms`) in nanoseconds.
pub(crate) fn parse_duration(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !c.is_ascii_digit())?;
        if n_end == 0 {
            return None;
        }
        let n: i64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let mult: i64 = match &rest[..unit_end] {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "w" => 7 * 86_400_000_000_000,
            "y" => 365 * 86_400_000_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
        rest = &rest[unit_end..];
    }
    Some(total)
}

const RANGE_FNS: &[(&str, RangeFn)] = &[
    ("count_over_time", RangeFn::CountOverTime),
    ("bytes_over_time", RangeFn::BytesOverTime),
    ("bytes_rate", RangeFn::BytesRate),
    ("rate", RangeFn::Rate),
];
const AGGS: &[&str] = &["sum", "avg", "min", "max", "count"];
const UNSUPPORTED: &[&str] = &[
    "topk",
    "bottomk",
    "stddev",
    "stdvar",
    "quantile_over_time",
    "sum_over_time",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "absent_over_time",
    "first_over_time",
    "last_over_time",
    "rate_counter",
    "label_replace",
    "vector",
];

pub(crate) fn parse(text: &str) -> Result<Query, LogqlError> {
    let mut p = P { s: text, at: 0 };
    let q = query(&mut p)?;
    p.ws();
    if p.at < text.len() {
        let rest = p.rest();
        if let Some(after) = rest.strip_prefix('|') {
            let word: String =
                after.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !word.is_empty() {
                return Err(LogqlError::Unsupported(format!("the pipeline stage `{word}`")));
            }
        }
        return err(p.at, format!("unexpected {:?}", rest.chars().take(20).collect::<String>()));
    }
    Ok(q)
}

fn query(p: &mut P<'_>) -> Result<Query, LogqlError> {
    p.ws();
    if p.rest().starts_with('{') {
        return Ok(Query::Log(log_query(p)?));
    }
    let mut m = metric(p)?;
    p.ws();
    if p.rest().starts_with(['>', '<', '=', '!']) {
        let col = p.at;
        let op = p.op()?;
        if matches!(op, Op::Re | Op::Nre) {
            return err(col, "a metric query compares with >, >=, <, <=, == or !=");
        }
        p.ws();
        let start = p.at;
        let b = p.s.as_bytes();
        while p.at < b.len() && (b[p.at].is_ascii_alphanumeric() || b"+-.".contains(&b[p.at])) {
            p.at += 1;
        }
        let text = &p.s[start..p.at];
        if text == "bool" {
            return Err(LogqlError::Unsupported("the `bool` modifier".into()));
        }
        let n: f64 = text.parse().map_err(|_| LogqlError::Parse { col: start + 1, msg: "expected a number".into() })?;
        m.cmp = Some((op, n));
    }
    Ok(Query::Metric(m))
}

fn grouping(p: &mut P<'_>) -> Result<Option<Grouping>, LogqlError> {
    let by = if p.eat("by") {
        true
    } else if p.eat("without") {
        false
    } else {
        return Ok(None);
    };
    p.expect("(")?;
    let mut names = vec![];
    if !p.eat(")") {
        loop {
            names.push(p.ident()?);
            if p.eat(")") {
                break;
            }
            p.expect(",")?;
        }
    }
    Ok(Some(if by { Grouping::By(names) } else { Grouping::Without(names) }))
}

fn metric(p: &mut P<'_>) -> Result<MetricQuery, LogqlError> {
    let col = p.at;
    let name = p.ident()?;
    if let Some(&(_, func)) = RANGE_FNS.iter().find(|(n, _)| *n == name) {
        p.expect("(")?;
        let log = log_query(p)?;
        p.expect("[")?;
        let range_ns = p.duration()?;
        p.expect("]")?;
        p.expect(")")?;
        return Ok(MetricQuery { func, log, range_ns, agg: None, cmp: None });
    }
    if AGGS.contains(&name.as_str()) {
        let mut group = grouping(p)?;
        p.expect("(")?;
        let mut inner = metric(p)?;
        p.expect(")")?;
        if group.is_none() {
            group = grouping(p)?;
        }
        if inner.agg.is_some() {
            return Err(LogqlError::Unsupported("nested aggregations".into()));
        }
        inner.agg = Some((name, group));
        return Ok(inner);
    }
    if UNSUPPORTED.contains(&name.as_str()) {
        return Err(LogqlError::Unsupported(format!("`{name}`")));
    }
    err(col, format!("unknown function {name:?}: expected a stream selector {{…}}, a range function or an aggregation"))
}

fn log_query(p: &mut P<'_>) -> Result<LogQuery, LogqlError> {
    p.expect("{")?;
    let mut selector = vec![];
    if !p.eat("}") {
        loop {
            let col = p.at;
            let name = p.ident()?;
            let op = p.op()?;
            if matches!(op, Op::Gt | Op::Ge | Op::Lt | Op::Le) {
                return err(col, "a stream selector compares with =, !=, =~ or !~");
            }
            let value = p.string()?;
            selector.push(Matcher::new(name, op, value, col)?);
            if p.eat("}") {
                break;
            }
            p.expect(",")?;
        }
    }
    if !selector.iter().any(|m| !m.matches("")) {
        return err(
            0,
            "queries require at least one matcher that does not match the empty value, like {source=\"hearth\"}",
        );
    }
    let mut stages = vec![];
    loop {
        p.ws();
        let col = p.at;
        let re = |p: &mut P<'_>| -> Result<regex::Regex, LogqlError> {
            let s = p.string()?;
            regex::Regex::new(&s)
                .map_err(|e| LogqlError::Parse { col: col + 1, msg: format!("invalid regex {s:?}: {e}") })
        };
        if p.eat("|=") {
            stages.push(Stage::Contains(p.string()?));
        } else if p.eat("!=") {
            stages.push(Stage::NotContains(p.string()?));
        } else if p.eat("|~") {
            stages.push(Stage::Regex(re(p)?));
        } else if p.eat("!~") {
            stages.push(Stage::NotRegex(re(p)?));
        } else if p.rest().starts_with('|') {
            let save = p.at;
            p.at += 1;
            let word = p.ident()?;
            match word.as_str() {
                "json" => stages.push(Stage::Json),
                "logfmt" => stages.push(Stage::Logfmt),
                "line_format" | "label_format" | "pattern" | "regexp" | "unpack" | "unwrap" | "decolorize" | "drop"
                | "keep" | "distinct" => return Err(LogqlError::Unsupported(format!("the pipeline stage `{word}`"))),
                _ => {
                    let op = p.op()?;
                    p.ws();
                    let value = if p.rest().starts_with(['"', '`']) {
                        p.string()?
                    } else {
                        let start = p.at;
                        let b = p.s.as_bytes();
                        while p.at < b.len() && (b[p.at].is_ascii_alphanumeric() || b[p.at] == b'.' || b[p.at] == b'-')
                        {
                            p.at += 1;
                        }
                        if start == p.at {
                            p.at = save;
                            return err(save, "expected a value after the comparison");
                        }
                        p.s[start..p.at].to_string()
                    };
                    stages.push(Stage::Label(Matcher::new(word, op, value, col)?));
                }
            }
        } else {
            break;
        }
    }
    Ok(LogQuery { selector, stages })
}

// ---- metric evaluation ----

/// The series of a metric query, from its matching lines given as (time ns, labels, bytes): evaluated at every
/// `step` from `start` to `end` (ns) over `(t - range, t]`. Returns labels → (t ns, value) points.
pub(crate) fn evaluate(
    q: &MetricQuery,
    events: &[(i64, Labels, usize)],
    start: i64,
    end: i64,
    step: i64,
) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    let mut series = aggregate(q, events, start, end, step);
    if let Some((op, n)) = q.cmp {
        let keep = |v: f64| match op {
            Op::Gt => v > n,
            Op::Ge => v >= n,
            Op::Lt => v < n,
            Op::Le => v <= n,
            Op::Eq => v == n,
            _ => v != n,
        };
        series.retain(|_, pts| {
            pts.retain(|&(_, v)| keep(v));
            !pts.is_empty()
        });
    }
    series
}

fn aggregate(
    q: &MetricQuery,
    events: &[(i64, Labels, usize)],
    start: i64,
    end: i64,
    step: i64,
) -> BTreeMap<Labels, Vec<(i64, f64)>> {
    // per series: its events' times and sizes in time order
    let mut per: BTreeMap<Labels, Vec<(i64, usize)>> = BTreeMap::new();
    for (t, l, b) in events {
        per.entry(l.clone()).or_default().push((*t, *b));
    }
    let secs = q.range_ns as f64 / 1e9;
    let mut series: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    for (l, mut ev) in per {
        ev.sort_unstable_by_key(|e| e.0);
        let mut prefix = Vec::with_capacity(ev.len() + 1); // running byte sums
        prefix.push(0u64);
        for e in &ev {
            prefix.push(prefix.last().copied().unwrap_or(0) + e.1 as u64);
        }
        let mut pts = vec![];
        let mut t = start;
        while t <= end {
            let a = ev.partition_point(|e| e.0 <= t - q.range_ns);
            let b = ev.partition_point(|e| e.0 <= t);
            if b > a {
                let n = (b - a) as f64;
                let bytes = (prefix[b] - prefix[a]) as f64;
                let v = match q.func {
                    RangeFn::CountOverTime => n,
                    RangeFn::Rate => n / secs,
                    RangeFn::BytesOverTime => bytes,
                    RangeFn::BytesRate => bytes / secs,
                };
                pts.push((t, v));
            }
            t += step;
        }
        if !pts.is_empty() {
            series.insert(l, pts);
        }
    }
    let Some((agg, group)) = &q.agg else { return series };
    let key = |l: &Labels| -> Labels {
        match group {
            Some(Grouping::By(names)) => Labels::new(l.pairs().iter().filter(|(k, _)| names.contains(k)).cloned()),
            Some(Grouping::Without(names)) => {
                Labels::new(l.pairs().iter().filter(|(k, _)| !names.contains(k)).cloned())
            }
            None => Labels::default(),
        }
    };
    let mut groups: BTreeMap<Labels, BTreeMap<i64, Vec<f64>>> = BTreeMap::new();
    for (l, pts) in series {
        let g = groups.entry(key(&l)).or_default();
        for (t, v) in pts {
            g.entry(t).or_default().push(v);
        }
    }
    groups
        .into_iter()
        .map(|(l, by_t)| {
            let pts = by_t
                .into_iter()
                .map(|(t, xs)| {
                    let v = match agg.as_str() {
                        "sum" => xs.iter().sum(),
                        "avg" => xs.iter().sum::<f64>() / xs.len() as f64,
                        "min" => xs.iter().copied().fold(f64::INFINITY, f64::min),
                        "max" => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        _ => xs.len() as f64,
                    };
                    (t, v)
                })
                .collect();
            (l, pts)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(p: &[(&str, &str)]) -> Labels {
        Labels::new(p.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn log(q: &str) -> LogQuery {
        match parse(q).unwrap() {
            Query::Log(l) => l,
            _ => panic!("{q} is a metric query"),
        }
    }

    #[test]
    fn selectors_and_line_filters() {
        let q = log(r#"{unit="nginx", level=~"err|warn"} |= "GET" != "healthz" |~ "5\\d\\d""#);
        assert!(q.selects(&labels(&[("unit", "nginx"), ("level", "err")])));
        assert!(!q.selects(&labels(&[("unit", "nginx"), ("level", "info")])));
        assert!(!q.selects(&labels(&[("unit", "db"), ("level", "err")])));
        let s = labels(&[("unit", "nginx")]);
        assert!(q.run(&s, "GET /x 502").is_some());
        assert!(q.run(&s, "GET /healthz 502").is_none());
        assert!(q.run(&s, "GET /x 200").is_none());
        assert_eq!(q.needles(), vec!["GET".to_string()]);
        let q = log(r#"{source="hearth"} |= `raw \d` !~ "x""#);
        assert!(q.run(&s, r"a raw \d b").is_some());
    }

    #[test]
    fn json_and_logfmt_extract_labels_to_filter_on() {
        let q = log(r#"{source="push"} | json | status >= 500 | method = "GET""#);
        let s = labels(&[("source", "push")]);
        let out = q.run(&s, r#"{"status": 503, "method": "GET", "req": {"path": "/a"}}"#).unwrap().unwrap();
        assert_eq!(out.get("req_path"), Some("/a"));
        assert_eq!(out.get("status"), Some("503"));
        assert!(q.run(&s, r#"{"status": 200, "method": "GET"}"#).is_none());
        assert!(q.run(&s, "not json").is_none(), "a parse error fails the label filter");
        let q = log(r#"{source="push"} | logfmt | level="error" | duration > 2.5"#);
        let out = q.run(&s, r#"ts=1 level=error msg="a b \" c" duration=3.1"#).unwrap().unwrap();
        assert_eq!(out.get("msg"), Some("a b \" c"));
        assert!(q.run(&s, "level=error duration=1").is_none());
        // a clash with a stream label
        let q = log(r#"{source="push"} | json"#);
        let out = q.run(&s, r#"{"source": "app"}"#).unwrap().unwrap();
        assert_eq!((out.get("source"), out.get("source_extracted")), (Some("push"), Some("app")));
    }

    #[test]
    fn metric_queries_and_errors() {
        let Query::Metric(m) = parse(r#"sum by (unit) (rate({source="journal"} |= "error" [5m]))"#).unwrap() else {
            panic!()
        };
        assert_eq!((m.func, m.range_ns), (RangeFn::Rate, 300_000_000_000));
        assert_eq!(m.agg, Some(("sum".into(), Some(Grouping::By(vec!["unit".into()])))));
        let Query::Metric(m) = parse(r#"count(count_over_time({a="b"}[1m])) without (x)"#).unwrap() else { panic!() };
        assert_eq!(m.agg, Some(("count".into(), Some(Grouping::Without(vec!["x".into()])))));
        assert!(matches!(parse(r#"{a="b"} | line_format "{{.x}}""#), Err(LogqlError::Unsupported(_))));
        assert!(matches!(parse(r#"topk(3, rate({a="b"}[1m]))"#), Err(LogqlError::Unsupported(_))));
        assert!(matches!(parse(r#"{a=~".*"}"#), Err(LogqlError::Parse { .. })), "must narrow something");
        assert!(matches!(parse(r#"{a="b""#), Err(LogqlError::Parse { .. })));
        assert!(matches!(parse(r#"{a="b"} |= "x" garbage"#), Err(LogqlError::Parse { .. })));
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("5x"), None);
    }

    #[test]
    fn counting_over_windows_and_summing_by_label() {
        let Query::Metric(m) = parse(r#"sum by (unit) (count_over_time({source="j"}[10s]))"#).unwrap() else {
            panic!()
        };
        let s = 1_000_000_000;
        let a = labels(&[("unit", "a"), ("pid", "1")]);
        let b = labels(&[("unit", "a"), ("pid", "2")]);
        let c = labels(&[("unit", "c")]);
        let events = vec![(s, a.clone(), 10), (5 * s, b.clone(), 10), (12 * s, a.clone(), 10), (12 * s, c.clone(), 1)];
        let out = evaluate(&m, &events, 10 * s, 20 * s, 10 * s);
        assert_eq!(out[&labels(&[("unit", "a")])], vec![(10 * s, 2.0), (20 * s, 1.0)]);
        assert_eq!(out[&labels(&[("unit", "c")])], vec![(20 * s, 1.0)]);
        let Query::Metric(m) = parse(r#"bytes_rate({source="j"}[10s])"#).unwrap() else { panic!() };
        let out = evaluate(&m, &events, 10 * s, 10 * s, s);
        assert_eq!(out[&a], vec![(10 * s, 1.0)]);
        // a comparison keeps the points that pass it, as an alert rule reads it
        let Query::Metric(m) = parse(r#"sum by (unit) (count_over_time({source="j"}[10s])) >= 2"#).unwrap() else {
            panic!()
        };
        let out = evaluate(&m, &events, 10 * s, 20 * s, 10 * s);
        assert_eq!(out.len(), 1);
        assert_eq!(out[&labels(&[("unit", "a")])], vec![(10 * s, 2.0)]);
        assert!(matches!(parse(r#"count_over_time({a="b"}[1m]) > bool 1"#), Err(LogqlError::Unsupported(_))));
        assert!(matches!(parse(r#"count_over_time({a="b"}[1m]) =~ 1"#), Err(LogqlError::Parse { .. })));
        assert!(matches!(parse(r#"count_over_time({a="b"}[1m]) > x"#), Err(LogqlError::Parse { .. })));
    }
}
