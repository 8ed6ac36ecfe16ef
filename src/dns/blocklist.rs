//! The blocklist engine (pure core): parses list files (hosts, plain domains, adblock `||d^` / `@@||d^`, `*.d`
//! wildcards, `/regex/`) and compiles them into a compact immutable [`Engine`] that answers "is this name allowed,
//! blocked, or neither — and by which list and rule" for the lists enabled for a client.
//!
//! Layout: every domain rule becomes one `u64`: a 52-bit xxh3 hash of the domain in the high bits and the list id
//! (12 bits) in the low bits; the values of each rule kind are sorted, so a lookup is one binary search per suffix
//! of the query name. 1M domains take 8 MB; the domain strings are not kept (the matched rule is the query's own
//! suffix). The price is a false match when two names share 52 hash bits: ~2e-10 per suffix looked up at 1M rules.
//!
//! Invariants: parsing never fails on content — comments, blank and junk lines are counted and skipped; an
//! allow rule beats any block rule; a listed domain also covers its subdomains, `*.d` covers only subdomains.
//! No IO here: the shell hands in readers and runs `compile` off the async workers.

use std::io::BufRead;

use regex::RegexSet;
use xxhash_rust::xxh3::xxh3_64;

/// Lists are numbered 0..MAX_LISTS (the id lives in the low bits of each entry).
pub(crate) const MAX_LISTS: usize = 1 << LIST_BITS;
const LIST_BITS: u32 = 12;
const LIST_MASK: u64 = (1 << LIST_BITS) - 1;

pub use crate::config::ListKind;

/// What one line of a list file means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    Blank,
    Comment,
    /// A rule; `allow` for `@@` exceptions (and for every rule of an allow list).
    Rule {
        allow: bool,
        rule: Rule,
    },
    /// Several domains on one hosts line.
    Hosts(Vec<String>),
    /// A line that is neither: counted, skipped.
    Invalid(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rule {
    /// The domain and all its subdomains.
    Domain(String),
    /// Only the subdomains (`*.example.com`).
    Subdomains(String),
    /// A regular expression matched against the whole name (no trailing dot).
    Regex(String),
}

/// Lowercase, strip one trailing dot, and check the DNS name syntax (letters, digits, `-`, `_`; labels of 1–63
/// octets; at most 253 octets).
pub(crate) fn normalize_domain(s: &str) -> Option<String> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return None;
    }
    for label in s.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return None;
        }
    }
    Some(s.to_ascii_lowercase())
}

/// Host names in hosts files that are not blocking rules.
const HOSTS_IGNORE: &[&str] =
    &["localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost", "ip6-loopback", "0.0.0.0"];

/// Parse one line of a list file, in any of the supported formats.
pub(crate) fn parse_line(line: &str) -> Line {
    let line = line.trim();
    if line.is_empty() {
        return Line::Blank;
    }
    if line.starts_with('#') || line.starts_with('!') || (line.starts_with('[') && line.ends_with(']')) {
        return Line::Comment;
    }
    if line.len() > 1 && line.starts_with('/') && line.ends_with('/') {
        let re = &line[1..line.len() - 1];
        return Line::Rule { allow: false, rule: Rule::Regex(re.to_string()) };
    }
    let (allow, body) = match line.strip_prefix("@@") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    if let Some(rest) = body.strip_prefix("||") {
        let (pattern, modifiers) = rest.split_once('$').unwrap_or((rest, ""));
        if !modifiers.is_empty() && modifiers != "important" {
            return Line::Invalid("unsupported adblock modifier");
        }
        let Some(domain) = pattern.strip_suffix('^').or_else(|| pattern.strip_suffix("^|")) else {
            return Line::Invalid("adblock rule is not of the form ||domain^");
        };
        if let Some(wild) = domain.strip_prefix("*.") {
            return match normalize_domain(wild) {
                Some(d) => Line::Rule { allow, rule: Rule::Subdomains(d) },
                None => Line::Invalid("invalid domain"),
            };
        }
        return match normalize_domain(domain) {
            Some(d) => Line::Rule { allow, rule: Rule::Domain(d) },
            None => Line::Invalid("invalid domain"),
        };
    }
    if allow {
        return Line::Invalid("@@ without ||domain^");
    }
    let mut fields = line.split_whitespace();
    let first = fields.next().unwrap_or("");
    if first.parse::<std::net::IpAddr>().is_ok() {
        // hosts format: ADDRESS NAME [NAME...] [# comment]
        let mut names = vec![];
        for f in fields {
            if f.starts_with('#') {
                break;
            }
            if HOSTS_IGNORE.contains(&f) {
                continue;
            }
            match normalize_domain(f) {
                Some(d) => names.push(d),
                None => return Line::Invalid("invalid domain in hosts line"),
            }
        }
        return if names.is_empty() { Line::Comment } else { Line::Hosts(names) };
    }
    // plain domain (optionally followed by a comment), or a *. wildcard
    let rest: Vec<&str> = fields.take_while(|f| !f.starts_with('#')).collect();
    if !rest.is_empty() {
        return Line::Invalid("unrecognised line");
    }
    let first = first.split('#').next().unwrap_or("");
    if let Some(wild) = first.strip_prefix("*.") {
        return match normalize_domain(wild) {
            Some(d) => Line::Rule { allow: false, rule: Rule::Subdomains(d) },
            None => Line::Invalid("invalid wildcard"),
        };
    }
    match normalize_domain(first) {
        Some(d) => Line::Rule { allow: false, rule: Rule::Domain(d) },
        None => Line::Invalid("unrecognised line"),
    }
}

/// Counts from parsing one list.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ListStats {
    pub rules: u64,
    pub comments: u64,
    pub invalid: u64,
    /// The first few invalid lines (line number, reason) to show in the UI.
    pub examples: Vec<(u64, &'static str)>,
}

/// A list to compile: its id (0..MAX_LISTS), its kind, and its text.
pub struct ListInput<R> {
    pub id: u16,
    pub kind: ListKind,
    pub reader: R,
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("list id {0} is out of range (at most {MAX_LISTS} lists)")]
    TooManyLists(u16),
    #[error("reading list {id}: {source}")]
    Read { id: u16, source: std::io::Error },
}

/// Who decided, for the query log and the UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub list: u16,
    /// The rule as written in adblock syntax: `||ads.example^`, `||*.example^`, `/re/`.
    pub rule: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No list says anything about the name.
    None,
    /// An allow rule matched (it beats any block rule).
    Allowed(Match),
    Blocked(Match),
}

/// Which lists apply to a client (its group's lists): a bitset over list ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSet([u64; MAX_LISTS / 64]);

impl ListSet {
    pub fn none() -> Self {
        ListSet([0; MAX_LISTS / 64])
    }
    pub fn all() -> Self {
        ListSet([u64::MAX; MAX_LISTS / 64])
    }
    pub fn with(mut self, id: u16) -> Self {
        self.insert(id);
        self
    }
    pub fn insert(&mut self, id: u16) {
        let i = id as usize % MAX_LISTS;
        self.0[i / 64] |= 1 << (i % 64);
    }
    pub fn contains(&self, id: u16) -> bool {
        let i = id as usize % MAX_LISTS;
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

/// Sorted `hash52 | list` entries of one rule kind, with an index on the top 16 bits: keys are uniform hashes,
/// so each bucket holds n/65536 entries and a lookup searches a few of them instead of the whole array.
#[derive(Debug, Default)]
struct HashSet52 {
    keys: Vec<u64>,
    /// `index[b]..index[b + 1]` is the range of keys whose top 16 bits are `b` (empty when there are no keys).
    index: Vec<u32>,
}

const INDEX_BITS: u32 = 16;

fn key(domain: &str) -> u64 {
    xxh3_64(domain.as_bytes()) & !LIST_MASK
}

impl HashSet52 {
    fn finish(mut v: Vec<u64>) -> Self {
        v.sort_unstable();
        v.dedup();
        v.shrink_to_fit();
        if v.is_empty() {
            return HashSet52::default();
        }
        let mut index = vec![0u32; (1 << INDEX_BITS) + 1];
        let mut pos = 0usize;
        for (b, slot) in index.iter_mut().enumerate() {
            while pos < v.len() && ((v[pos] >> (64 - INDEX_BITS)) as usize) < b {
                pos += 1;
            }
            *slot = pos as u32;
        }
        HashSet52 { keys: v, index }
    }

    /// The first enabled list holding `domain`, if any.
    fn find(&self, domain: &str, lists: &ListSet) -> Option<u16> {
        if self.keys.is_empty() {
            return None;
        }
        let k = key(domain);
        let b = (k >> (64 - INDEX_BITS)) as usize;
        let bucket = &self.keys[self.index[b] as usize..self.index[b + 1] as usize];
        let start = bucket.partition_point(|v| *v < k);
        bucket[start..]
            .iter()
            .take_while(|v| **v & !LIST_MASK == k)
            .map(|v| (*v & LIST_MASK) as u16)
            .find(|l| lists.contains(*l))
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn bytes(&self) -> usize {
        self.keys.capacity() * 8 + self.index.capacity() * 4
    }
}

#[derive(Debug, Default)]
struct Regexes {
    set: Option<RegexSet>,
    sources: Vec<(u16, String)>,
}

impl Regexes {
    fn build(sources: Vec<(u16, String)>) -> Self {
        if sources.is_empty() {
            return Regexes::default();
        }
        let set = RegexSet::new(sources.iter().map(|(_, s)| s.as_str())).ok();
        Regexes { set, sources }
    }

    fn find(&self, name: &str, lists: &ListSet) -> Option<Match> {
        let set = self.set.as_ref()?;
        set.matches(name)
            .iter()
            .map(|i| &self.sources[i])
            .find(|(l, _)| lists.contains(*l))
            .map(|(l, s)| Match { list: *l, rule: format!("/{s}/") })
    }
}

/// The compiled, immutable engine. Cheap to share behind an `Arc`, swapped whole when lists change.
#[derive(Debug, Default)]
pub struct Engine {
    block: HashSet52,
    block_sub: HashSet52,
    allow: HashSet52,
    allow_sub: HashSet52,
    block_re: Regexes,
    allow_re: Regexes,
}

/// Sizes, for metrics and the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EngineSize {
    pub block_rules: usize,
    pub allow_rules: usize,
    pub regex_rules: usize,
    pub bytes: usize,
}

impl Engine {
    /// Compile lists. Each list's lines are parsed in turn; returns the engine and per-list counts (in input order).
    pub fn compile<R: BufRead>(lists: Vec<ListInput<R>>) -> Result<(Engine, Vec<ListStats>), CompileError> {
        let (mut block, mut block_sub, mut allow, mut allow_sub) = (vec![], vec![], vec![], vec![]);
        let (mut block_re, mut allow_re) = (vec![], vec![]);
        let mut all_stats = vec![];
        for list in lists {
            if list.id as usize >= MAX_LISTS {
                return Err(CompileError::TooManyLists(list.id));
            }
            let id = list.id as u64;
            let mut stats = ListStats::default();
            let mut buf = String::new();
            let mut reader = list.reader;
            let mut lineno = 0u64;
            loop {
                buf.clear();
                // invalid UTF-8 lines are skipped like any junk line
                let n = match reader.read_line(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        lineno += 1;
                        stats.invalid += 1;
                        continue;
                    }
                    Err(e) => return Err(CompileError::Read { id: list.id, source: e }),
                };
                if n == 0 {
                    break;
                }
                lineno += 1;
                let parsed = parse_line(&buf);
                let mut add = |allow_rule: bool, rule: Rule| {
                    let allow_rule = allow_rule || list.kind == ListKind::Allow;
                    match rule {
                        Rule::Domain(d) => {
                            if allow_rule { &mut allow } else { &mut block }.push(key(&d) | id);
                        }
                        Rule::Subdomains(d) => {
                            if allow_rule { &mut allow_sub } else { &mut block_sub }.push(key(&d) | id);
                        }
                        Rule::Regex(r) => {
                            if allow_rule { &mut allow_re } else { &mut block_re }.push((list.id, r));
                        }
                    }
                };
                match parsed {
                    Line::Blank => {}
                    Line::Comment => stats.comments += 1,
                    Line::Rule { rule: Rule::Regex(r), .. } if !regex_compiles(&r) => {
                        stats.invalid += 1;
                        if stats.examples.len() < 5 {
                            stats.examples.push((lineno, "invalid regular expression"));
                        }
                    }
                    Line::Rule { allow: a, rule } => {
                        stats.rules += 1;
                        add(a, rule);
                    }
                    Line::Hosts(names) => {
                        stats.rules += names.len() as u64;
                        for d in names {
                            add(false, Rule::Domain(d));
                        }
                    }
                    Line::Invalid(why) => {
                        stats.invalid += 1;
                        if stats.examples.len() < 5 {
                            stats.examples.push((lineno, why));
                        }
                    }
                }
            }
            all_stats.push(stats);
        }
        let engine = Engine {
            block: HashSet52::finish(block),
            block_sub: HashSet52::finish(block_sub),
            allow: HashSet52::finish(allow),
            allow_sub: HashSet52::finish(allow_sub),
            block_re: Regexes::build(block_re),
            allow_re: Regexes::build(allow_re),
        };
        Ok((engine, all_stats))
    }

    /// Decide for `name` (any case, with or without the trailing dot) under the lists enabled in `lists`.
    pub fn check(&self, name: &str, lists: &ListSet) -> Verdict {
        let lower;
        let mut name = name.strip_suffix('.').unwrap_or(name);
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            name = &lower;
        }
        if let Some(m) = Self::find(&self.allow, &self.allow_sub, &self.allow_re, name, lists) {
            return Verdict::Allowed(m);
        }
        if let Some(m) = Self::find(&self.block, &self.block_sub, &self.block_re, name, lists) {
            return Verdict::Blocked(m);
        }
        Verdict::None
    }

    fn find(exact: &HashSet52, sub: &HashSet52, re: &Regexes, name: &str, lists: &ListSet) -> Option<Match> {
        // the name itself, then each parent: a.b.c, b.c, c
        let mut suffix = name;
        let mut is_parent = false;
        loop {
            if let Some(l) = exact.find(suffix, lists) {
                return Some(Match { list: l, rule: format!("||{suffix}^") });
            }
            if is_parent && let Some(l) = sub.find(suffix, lists) {
                return Some(Match { list: l, rule: format!("||*.{suffix}^") });
            }
            match suffix.find('.') {
                Some(i) => {
                    suffix = &suffix[i + 1..];
                    is_parent = true;
                }
                None => break,
            }
        }
        re.find(name, lists)
    }

    pub fn size(&self) -> EngineSize {
        EngineSize {
            block_rules: self.block.len() + self.block_sub.len(),
            allow_rules: self.allow.len() + self.allow_sub.len(),
            regex_rules: self.block_re.sources.len() + self.allow_re.sources.len(),
            bytes: self.block.bytes() + self.block_sub.bytes() + self.allow.bytes() + self.allow_sub.bytes(),
        }
    }
}

/// A bad pattern is counted and skipped on its own, so that it cannot disable the list's other regexes.
fn regex_compiles(r: &str) -> bool {
    regex::RegexBuilder::new(r).size_limit(1 << 20).build().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(lists: &[(ListKind, &str)]) -> (Engine, Vec<ListStats>) {
        let inputs = lists
            .iter()
            .enumerate()
            .map(|(i, (kind, text))| ListInput { id: i as u16, kind: *kind, reader: text.as_bytes() })
            .collect();
        Engine::compile(inputs).unwrap()
    }

    fn blocked(e: &Engine, name: &str) -> Option<String> {
        match e.check(name, &ListSet::all()) {
            Verdict::Blocked(m) => Some(m.rule),
            _ => None,
        }
    }

    #[test]
    fn parses_every_format() {
        use super::Rule::{Domain, Regex, Subdomains};
        use Line::{Blank, Comment, Hosts, Invalid};
        let rule = |allow, rule| Line::Rule { allow, rule };
        let cases: Vec<(&str, Line)> = vec![
            ("", Blank),
            ("# comment", Comment),
            ("! adblock comment", Comment),
            ("[Adblock Plus 2.0]", Comment),
            ("0.0.0.0 ads.example.com", Hosts(vec!["ads.example.com".into()])),
            ("127.0.0.1  a.com b.com # two", Hosts(vec!["a.com".into(), "b.com".into()])),
            (":: ipv6.example", Hosts(vec!["ipv6.example".into()])),
            ("127.0.0.1 localhost", Comment),
            ("Ads.Example.COM.", rule(false, Domain("ads.example.com".into()))),
            ("tracker.example # why", rule(false, Domain("tracker.example".into()))),
            ("||ads.example^", rule(false, Domain("ads.example".into()))),
            ("||ads.example^$important", rule(false, Domain("ads.example".into()))),
            ("@@||good.example^", rule(true, Domain("good.example".into()))),
            ("||*.cdn.example^", rule(false, Subdomains("cdn.example".into()))),
            ("*.wild.example", rule(false, Subdomains("wild.example".into()))),
            ("/^ad[0-9]+\\./", rule(false, Regex("^ad[0-9]+\\.".into()))),
            ("||ads.example^$third-party", Invalid("unsupported adblock modifier")),
            ("||ads.example/path", Invalid("adblock rule is not of the form ||domain^")),
            ("example.com/banner.gif", Invalid("unrecognised line")),
            ("0.0.0.0 bad..name", Invalid("invalid domain in hosts line")),
            ("two words", Invalid("unrecognised line")),
            ("<html>", Invalid("unrecognised line")),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_line(line), expected, "{line:?}");
        }
    }

    #[test]
    fn subdomains_wildcards_and_regex() {
        let (e, stats) = engine(&[(
            ListKind::Block,
            "# list\n||ads.example^\n*.wild.example\n/^track[0-9]+\\./\n0.0.0.0 hosts.example\njunk line here\n",
        )]);
        assert_eq!(stats[0], ListStats { rules: 4, comments: 1, invalid: 1, examples: vec![(6, "unrecognised line")] });
        assert_eq!(blocked(&e, "ads.example").as_deref(), Some("||ads.example^"));
        assert_eq!(blocked(&e, "x.y.ADS.example.").as_deref(), Some("||ads.example^"));
        assert_eq!(blocked(&e, "notads.example"), None);
        assert_eq!(blocked(&e, "wild.example"), None, "*.d does not cover d itself");
        assert_eq!(blocked(&e, "a.wild.example").as_deref(), Some("||*.wild.example^"));
        assert_eq!(blocked(&e, "track42.example.org").as_deref(), Some("/^track[0-9]+\\./"));
        assert_eq!(blocked(&e, "hosts.example").as_deref(), Some("||hosts.example^"));
        assert_eq!(blocked(&e, "example"), None);
    }

    #[test]
    fn allow_beats_block_and_lists_are_per_client() {
        let (e, _) = engine(&[
            (ListKind::Block, "||example.com^\n@@||keep.example.com^\n"),
            (ListKind::Allow, "shop.example.com\n"),
            (ListKind::Block, "||kids.example^\n"),
        ]);
        let all = ListSet::all();
        assert!(matches!(e.check("ads.example.com", &all), Verdict::Blocked(Match { list: 0, .. })));
        assert!(matches!(e.check("keep.example.com", &all), Verdict::Allowed(Match { list: 0, .. })));
        assert!(matches!(e.check("a.shop.example.com", &all), Verdict::Allowed(Match { list: 1, .. })));
        // a client whose group only uses list 2
        let kids = ListSet::none().with(2);
        assert_eq!(e.check("ads.example.com", &kids), Verdict::None);
        assert!(matches!(e.check("kids.example", &kids), Verdict::Blocked(Match { list: 2, .. })));
        assert_eq!(e.check("kids.example", &ListSet::none().with(0)), Verdict::None);
    }

    #[test]
    fn same_domain_in_two_lists_keeps_both() {
        let (e, _) = engine(&[(ListKind::Block, "a.example\n"), (ListKind::Block, "a.example\na.example\n")]);
        assert_eq!(e.size().block_rules, 2, "deduplicated within a list, kept across lists");
        assert!(matches!(e.check("a.example", &ListSet::none().with(1)), Verdict::Blocked(Match { list: 1, .. })));
    }

    #[test]
    fn junk_never_fails_the_list() {
        let bytes: Vec<u8> = b"good.example\n\xff\xfe broken\n||ok.example^\n/[unclosed/\n".to_vec();
        let (e, stats) = Engine::compile(vec![ListInput { id: 0, kind: ListKind::Block, reader: &bytes[..] }]).unwrap();
        assert_eq!(stats[0].rules, 2);
        assert_eq!(stats[0].invalid, 2, "the binary line and the broken regex");
        assert!(blocked(&e, "good.example").is_some() && blocked(&e, "ok.example").is_some());
        assert_eq!(e.size().regex_rules, 0, "the broken regex is skipped, not fatal");
        assert!(matches!(
            Engine::compile(vec![ListInput { id: 5000, kind: ListKind::Block, reader: &b""[..] }]),
            Err(CompileError::TooManyLists(5000))
        ));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// The obvious matcher: rules as strings, checked one by one.
        fn reference(rules: &[(bool, bool, String)], name: &str) -> Option<bool> {
            let covers = |sub_only: bool, d: &str| {
                let parent = name.ends_with(&format!(".{d}"));
                if sub_only { parent } else { name == d || parent }
            };
            if rules.iter().any(|(allow, sub, d)| *allow && covers(*sub, d)) {
                return Some(true);
            }
            if rules.iter().any(|(allow, sub, d)| !*allow && covers(*sub, d)) {
                return Some(false);
            }
            None
        }

        fn label() -> impl Strategy<Value = String> {
            prop::sample::select(vec!["a", "b", "c", "ads", "x-1", "com", "net"]).prop_map(String::from)
        }

        fn domain() -> impl Strategy<Value = String> {
            prop::collection::vec(label(), 1..4).prop_map(|l| l.join("."))
        }

        proptest! {
            #[test]
            fn engine_agrees_with_reference(
                rules in prop::collection::vec((any::<bool>(), any::<bool>(), domain()), 0..30),
                names in prop::collection::vec(domain(), 1..30),
            ) {
                let text: String = rules.iter().map(|(allow, sub, d)| match (allow, sub) {
                    (false, false) => format!("||{d}^\n"),
                    (false, true) => format!("*.{d}\n"),
                    (true, false) => format!("@@||{d}^\n"),
                    (true, true) => format!("@@||*.{d}^\n"),
                }).collect();
                let (e, _) = engine(&[(ListKind::Block, &text)]);
                for n in &names {
                    let got = match e.check(n, &ListSet::all()) {
                        Verdict::None => None,
                        Verdict::Allowed(_) => Some(true),
                        Verdict::Blocked(_) => Some(false),
                    };
                    prop_assert_eq!(got, reference(&rules, n), "name {}", n);
                }
            }

            #[test]
            fn parser_never_panics(line in ".{0,200}") {
                let _ = parse_line(&line);
            }

            /// The stable twin of tests/fuzz/fuzz_targets/list_parser.rs: any bytes (invalid UTF-8 included) compile
            /// without a panic and the engine answers.
            #[test]
            fn compile_never_panics_on_arbitrary_bytes(block in prop::collection::vec(any::<u8>(), 0..2000),
                                                       allow in prop::collection::vec(any::<u8>(), 0..500)) {
                let lists = vec![
                    ListInput { id: 0, kind: ListKind::Block, reader: &block[..] },
                    ListInput { id: 1, kind: ListKind::Allow, reader: &allow[..] },
                ];
                if let Ok((e, stats)) = Engine::compile(lists) {
                    prop_assert_eq!(stats.len(), 2);
                    for n in ["example.com", "a.b", ""] {
                        let _ = e.check(n, &ListSet::all());
                    }
                }
            }
        }
    }
}
