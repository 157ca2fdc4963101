//! The routing semantics written out as plainly as possible, and generators of rule
//! sets and requests to hold the compiled router to them. Built only with the
//! `reference` feature (the differential test and the `router` fuzz target use it);
//! the gateway never links it.
//!
//! The reference is a linear scan in rule order, checking environment, method, host
//! and predicates by hand, and the path with the `regex-lite` crate (`^(?:…)$`, a
//! backtracker sharing no code with our automata) on the normalized path with the rule's context path stripped. Rules and
//! requests are drawn from a small alphabet of segments so that overlaps, shadowing
//! and near misses are common. Randomness comes from a [`Choose`]: a seeded [`Rng`]
//! in tests, the fuzzer's bytes in the fuzz target.

use crate::normalize::{normalize_path, PathError};
use crate::*;

/// A source of choices: every generator below asks it for numbers in `0..n`.
pub trait Choose {
    /// A number in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize;

    /// True with probability `num / den` (for a uniform source).
    fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
}

/// xorshift64*: deterministic randomness without a dependency.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

impl Choose for Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Choices read from a fuzzer's input, one byte each; zeros once it runs out, so
/// every generator ends (zero is always the shortest choice).
#[derive(Debug)]
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Choose for Bytes<'_> {
    fn below(&mut self, n: usize) -> usize {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                usize::from(b) % n
            }
            None => 0,
        }
    }
}

/// Segments rules and requests are built from.
const SEGS: [&str; 7] = ["a", "b", "ab", "v1", "1", "12", "c"];
const CONTEXTS: [Option<&str>; 5] = [None, None, Some("/c"), Some("/a"), Some("/a/b")];
const HOSTS: [&str; 3] = ["a.com", "*.a.com", "B.com"];
const REQUEST_HOSTS: [Option<&str>; 8] = [
    None,
    Some("a.com"),
    Some("A.COM:8080"),
    Some("x.a.com"),
    Some("a.com."),
    Some("b.com"),
    Some("ya.com"),
    Some("x.y.a.com"),
];
const METHOD_SETS: [&[&str]; 4] = [&[], &["GET"], &["GET", "POST"], &["PATCH"]];
const METHODS: [&str; 4] = ["GET", "POST", "PATCH", "DELETE"];
const QUERY_KEYS: [&str; 2] = ["q", "r"];
const HEADER_NAMES: [&str; 2] = ["X-H", "x-k"];
const REQUEST_QUERY_KEYS: [&str; 5] = ["q", "r", "Q", "%71", "s"];
const REQUEST_HEADER_NAMES: [&str; 4] = ["x-h", "X-H", "X-K", "y"];
const VALUES: [&str; 6] = ["1", "2", "12", "a", "", "1+2"];
/// Segments the normalizer must decode, refuse or rewrite.
const SPICE: [&str; 12] = [
    "%61", "%2F", "%2f", "a%2Fb", "\\", "a\\..", "%5C", "x;y=1", ";", "%00", "", "%2e%2E",
];

/// One regex segment: a literal or a pattern for one path segment. `groups` numbers
/// named groups so names stay unique within a regex.
fn regex_segment(rng: &mut impl Choose, names: &mut usize) -> String {
    match rng.below(16) {
        0..=3 => rng.pick(&SEGS).to_string(),
        4 if rng.below(2) == 0 => "[^/]+".into(),
        // `[^/]*` pieces (the segment trie's "any, even empty" edge).
        4 => "([^/]*)".into(),
        5 | 6 => "([^/]+)".into(),
        7 => {
            *names += 1;
            format!("(?<n{names}>[^/]+)")
        }
        8 => "([0-9]+)".into(),
        9 => "(a|b)".into(),
        10 => "v[0-9]+".into(),
        // Class segments of the segment trie: regexes that cannot match '/', bare or
        // as one group around the whole segment; and ones that are not (a group
        // inside the segment).
        11 => "(?i:AB?)".into(),
        12 => "(v?[0-9]*)".into(),
        13 => "[a-c][0-9]?".into(),
        14 => "v([0-9]+)".into(),
        _ => "(a)?(b)?".into(),
    }
}

/// A regex of `min..=3` segments and a random tail.
fn random_regex(rng: &mut impl Choose, min: usize) -> String {
    let mut names = 0;
    let n = min + rng.below(4 - min);
    let mut p = String::new();
    for _ in 0..n {
        p.push('/');
        p.push_str(&regex_segment(rng, &mut names));
    }
    match rng.below(10) {
        0 => p.push_str("/?"),
        1 => p.push_str("(/.*)?"),
        2 => p.push_str(".*"),
        3 => p.push_str("/(.*)"),
        // Rest pieces of the segment trie: `.` excludes '\n'; other byte classes.
        8 => p.push_str(rng.pick(&["/.*", "/(.+)", "/(?s:.*)", "/([^c]*)", "/(.*?)"])),
        4 => {
            let alt = format!("/{}", regex_segment(rng, &mut names));
            p = format!("(?:{p}|{alt})");
        }
        _ if n == 0 => p.push('/'),
        _ => {}
    }
    p
}

fn random_literal_path(rng: &mut impl Choose, min: usize, max: usize) -> String {
    let n = min + rng.below(max + 1 - min);
    let mut p = String::new();
    for _ in 0..n {
        p.push('/');
        p.push_str(rng.pick(&SEGS));
    }
    if p.is_empty() || rng.chance(1, 8) {
        p.push('/');
    }
    p
}

fn random_predicate(rng: &mut impl Choose) -> PredicateSpec {
    let (source, name) = if rng.chance(1, 2) {
        (Source::Query, rng.pick(&QUERY_KEYS).to_string())
    } else {
        (Source::Header, rng.pick(&HEADER_NAMES).to_string())
    };
    let op = match rng.below(6) {
        0 => PredicateOp::Equals(rng.pick(&["1", "12", "1 2"]).to_string()),
        1 => PredicateOp::OneOf(vec!["1".into(), "2".into()]),
        2 => PredicateOp::Prefix("1".into()),
        3 => PredicateOp::Regex("[0-9]".into()),
        4 => PredicateOp::Present,
        _ => PredicateOp::Absent,
    };
    PredicateSpec { source, name, op }
}

/// A random rule; `regex_share` in tenths; paths have at least `min` segments.
pub fn random_rule(rng: &mut impl Choose, i: usize, regex_share: usize, min: usize) -> RuleSpec {
    let path = match rng.below(10) {
        k if k < regex_share => PathSpec::Regex(random_regex(rng, min)),
        k if k % 2 == 0 => PathSpec::Exact(random_literal_path(rng, min, 3)),
        _ => {
            let p = random_literal_path(rng, min, 2.max(min));
            PathSpec::Prefix(if p.len() > 1 {
                p.trim_end_matches('/').to_string()
            } else {
                p
            })
        }
    };
    let hosts = match rng.below(8) {
        0 => vec![rng.pick(&HOSTS).to_string()],
        1 => vec![HOSTS[0].to_string(), HOSTS[1].to_string()],
        _ => vec![],
    };
    let methods = if rng.chance(1, 3) {
        rng.pick(&METHOD_SETS).iter().map(|m| m.to_string()).collect()
    } else {
        vec![]
    };
    let predicates = if rng.chance(1, 3) {
        (0..1 + rng.below(2)).map(|_| random_predicate(rng)).collect()
    } else {
        vec![]
    };
    let environments = match rng.below(6) {
        0 => Some(vec!["e0".to_string()]),
        1 => Some(vec!["e1".to_string()]),
        2 => Some(vec!["e1".to_string(), "e0".to_string()]),
        _ => None,
    };
    RuleSpec {
        name: format!("r{i}"),
        group: "g".into(),
        hosts,
        methods,
        context_path: rng.pick(&CONTEXTS).map(str::to_string),
        path,
        predicates,
        environments,
        action: ActionSpec::Local,
    }
}

/// A request as owned data.
#[derive(Debug)]
pub struct Request {
    pub method: &'static str,
    pub host: Option<&'static str>,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(&'static str, &'static str)>,
    pub env: u8,
}

/// A random request. `spice` adds path spellings the normalizer must refuse or
/// rewrite: encoded bytes, `\\`, `;` parameters, empty segments.
pub fn random_request(rng: &mut impl Choose, spice: bool) -> Request {
    let mut path = String::new();
    if rng.chance(1, 4) {
        path.push_str(rng.pick(&["/c", "/a", "/a/b"]));
    }
    for _ in 0..rng.below(5) {
        path.push('/');
        path.push_str(match rng.below(11) {
            0 => "x",
            1 => "123",
            // '.' in a rest piece does not match a newline.
            10 if rng.chance(1, 3) => "a\nb",
            10 => "AB",
            2 if rng.chance(1, 4) => ".",
            3 if rng.chance(1, 4) => "..",
            4 | 5 if spice => rng.pick(&SPICE),
            _ => rng.pick(&SEGS),
        });
    }
    if path.is_empty() || rng.chance(1, 6) {
        path.push('/');
    }
    if rng.chance(1, 20) {
        path.insert(0, '/');
    }
    let query = rng.chance(1, 2).then(|| {
        (0..rng.below(4))
            .map(|_| {
                let k = rng.pick(&REQUEST_QUERY_KEYS);
                if rng.chance(1, 5) {
                    k.to_string()
                } else {
                    format!("{k}={}", rng.pick(&VALUES))
                }
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    let headers = (0..rng.below(3))
        .map(|_| (rng.pick(&REQUEST_HEADER_NAMES), rng.pick(&VALUES)))
        .collect();
    Request {
        method: rng.pick(&METHODS),
        host: rng.pick(&REQUEST_HOSTS),
        path,
        query,
        headers,
        env: rng.below(2) as u8,
    }
}

// ---------------------------------------------------------------------------------
// The reference router.

#[derive(Debug)]
enum RefPath {
    Exact(String),
    Prefix(String),
    Regex(regex_lite::Regex),
}

#[derive(Debug)]
struct RefRule {
    envs: Option<Vec<u8>>,
    methods: Vec<String>,
    hosts: Vec<String>,
    ctx: String,
    path: RefPath,
    predicates: Vec<(Source, String, RefOp)>,
}

#[derive(Debug)]
enum RefOp {
    Equals(Vec<u8>),
    OneOf(Vec<Vec<u8>>),
    Prefix(Vec<u8>),
    Regex(regex_lite::Regex),
    Present,
    Absent,
}

/// `pattern` anchored at both ends. regex-lite matches `&str` and folds case in
/// ASCII only; the generated paths and values are ASCII, where that is the same
/// as the router's `(?-u)` byte semantics.
fn whole(pattern: &str) -> regex_lite::Regex {
    regex_lite::Regex::new(&format!("^(?:{pattern})$")).unwrap()
}

fn reference_rules(spec: &RouterSpec) -> Vec<RefRule> {
    spec.rules
        .iter()
        .map(|r| RefRule {
            envs: r.environments.as_ref().map(|es| {
                es.iter()
                    .map(|e| spec.environments.iter().position(|x| x == e).unwrap() as u8)
                    .collect()
            }),
            methods: r.methods.clone(),
            hosts: r.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            ctx: r
                .context_path
                .as_deref()
                .unwrap_or("")
                .trim_end_matches('/')
                .to_string(),
            path: match &r.path {
                PathSpec::Exact(p) => RefPath::Exact(p.clone()),
                PathSpec::Prefix(p) => RefPath::Prefix(p.trim_end_matches('/').to_string()),
                PathSpec::Regex(p) => RefPath::Regex(whole(p)),
            },
            predicates: r
                .predicates
                .iter()
                .map(|p| {
                    let name = match p.source {
                        Source::Query => p.name.clone(),
                        Source::Header => p.name.to_ascii_lowercase(),
                    };
                    let op = match &p.op {
                        PredicateOp::Equals(v) => RefOp::Equals(v.as_bytes().to_vec()),
                        PredicateOp::OneOf(vs) => {
                            RefOp::OneOf(vs.iter().map(|v| v.as_bytes().to_vec()).collect())
                        }
                        PredicateOp::Prefix(v) => RefOp::Prefix(v.as_bytes().to_vec()),
                        PredicateOp::Regex(r) => RefOp::Regex(whole(r)),
                        PredicateOp::Present => RefOp::Present,
                        PredicateOp::Absent => RefOp::Absent,
                    };
                    (p.source, name, op)
                })
                .collect(),
        })
        .collect()
}

/// `+` is a space, `%XX` a byte, anything else (including a bad escape) itself.
pub fn form_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Lowercased host without port and trailing dot.
pub fn ref_host(h: &str) -> String {
    let h = h.split(':').next().unwrap();
    h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase()
}

/// The generators draw paths and values from ASCII alphabets (the SPICE segments
/// included: the only byte escapes they decode to are ASCII or refused).
fn ascii(b: &[u8]) -> &str {
    assert!(b.is_ascii(), "generated input is ASCII: {b:?}");
    std::str::from_utf8(b).expect("ASCII is UTF-8")
}

/// A router's answer: (rule index, captures of groups 1..) or no match.
pub type Answer = Option<(usize, Vec<Option<Vec<u8>>>)>;

fn reference_match(rules: &[RefRule], req: &Request, norm: &[u8]) -> Answer {
    let query: Vec<(Vec<u8>, Vec<u8>)> = req
        .query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k.as_bytes()), form_decode(v.as_bytes()))
        })
        .collect();
    let host = req.host.map(ref_host);
    'rules: for (i, r) in rules.iter().enumerate() {
        if let Some(envs) = &r.envs {
            if !envs.contains(&req.env) {
                continue;
            }
        }
        if !r.methods.is_empty() && !r.methods.iter().any(|m| m == req.method) {
            continue;
        }
        if !r.hosts.is_empty() {
            let Some(host) = &host else { continue };
            let ok = r.hosts.iter().any(|p| match p.strip_prefix('*') {
                Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
                None => p == host,
            });
            if !ok {
                continue;
            }
        }
        // Context path: stripped; the request being exactly it is "/".
        let stripped: &[u8] = if r.ctx.is_empty() {
            norm
        } else if norm == r.ctx.as_bytes() {
            b"/"
        } else if norm.starts_with(r.ctx.as_bytes()) && norm[r.ctx.len()] == b'/' {
            &norm[r.ctx.len()..]
        } else {
            continue;
        };
        let caps = match &r.path {
            RefPath::Exact(p) => {
                if stripped != p.as_bytes() {
                    continue;
                }
                vec![]
            }
            RefPath::Prefix(p) => {
                let p = p.as_bytes();
                let ok =
                    p.is_empty() || stripped == p || (stripped.starts_with(p) && stripped[p.len()] == b'/');
                if !ok {
                    continue;
                }
                vec![]
            }
            RefPath::Regex(re) => {
                let Some(c) = re.captures(ascii(stripped)) else {
                    continue;
                };
                (1..c.len())
                    .map(|g| c.get(g).map(|m| m.as_str().as_bytes().to_vec()))
                    .collect()
            }
        };
        for (source, name, op) in &r.predicates {
            let values: Vec<&[u8]> = match source {
                Source::Query => query
                    .iter()
                    .filter(|(k, _)| k == name.as_bytes())
                    .map(|(_, v)| v.as_slice())
                    .collect(),
                Source::Header => req
                    .headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_bytes())
                    .collect(),
            };
            let holds = match op {
                RefOp::Present => !values.is_empty(),
                RefOp::Absent => values.is_empty(),
                RefOp::Equals(x) => values.iter().any(|v| v == x),
                RefOp::OneOf(xs) => values.iter().any(|v| xs.iter().any(|x| v == x)),
                RefOp::Prefix(x) => values.iter().any(|v| v.starts_with(x)),
                RefOp::Regex(re) => values.iter().any(|v| re.is_match(ascii(v))),
            };
            if !holds {
                continue 'rules;
            }
        }
        return Some((i, caps));
    }
    None
}

// ---------------------------------------------------------------------------------

/// The reference router for one rule set.
#[derive(Debug)]
pub struct Reference {
    rules: Vec<RefRule>,
    normalize: NormalizeOptions,
}

impl Reference {
    pub fn new(spec: &RouterSpec) -> Reference {
        Reference {
            rules: reference_rules(spec),
            normalize: spec.normalize,
        }
    }

    /// The winner for `req`, or the path's refusal.
    pub fn answer(&self, req: &Request) -> Result<Answer, PathError> {
        let mut out = Vec::new();
        let norm = match normalize_path(req.path.as_bytes(), &self.normalize, &mut out)? {
            true => &out[..],
            false => req.path.as_bytes(),
        };
        Ok(reference_match(&self.rules, req, norm))
    }

    /// The winner for an already normalized path.
    pub fn answer_normalized(&self, req: &Request, norm: &[u8]) -> Answer {
        reference_match(&self.rules, req, norm)
    }
}

/// The compiled router's answer for `req`, in the reference's terms.
pub fn router_answer(
    router: &CompiledRouter,
    req: &Request,
    s: &mut MatchScratch,
) -> Result<Answer, PathError> {
    let view = RequestView {
        method: req.method.as_bytes(),
        host: req.host.map(str::as_bytes),
        path: req.path.as_bytes(),
        query: req.query.as_deref().map(str::as_bytes),
        env: EnvId(req.env),
    };
    let headers = req.headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
    let Some(route) = router.match_request(&view, headers, s)? else {
        return Ok(None);
    };
    let caps = (0..s.group_count())
        .map(|i| s.group(i).map(<[u8]>::to_vec))
        .collect();
    Ok(Some((route.index(), caps)))
}

/// Checks `requests` random requests against one rule set (panicking on the first
/// disagreement, with both answers and the rules); returns the winners.
pub fn check(
    spec: &RouterSpec,
    router: &CompiledRouter,
    rng: &mut impl Choose,
    requests: usize,
    spice: bool,
) -> Vec<usize> {
    let reference = Reference::new(spec);
    let mut s = MatchScratch::default();
    let mut winners = Vec::new();
    for _ in 0..requests {
        let req = random_request(rng, spice);
        let want = reference.answer(&req);
        let got = router_answer(router, &req, &mut s);
        if got != want {
            disagreement(spec, &req, &got, &want);
        }
        if let Ok(Some((i, _))) = want {
            winners.push(i);
        }
    }
    winners
}

fn disagreement(
    spec: &RouterSpec,
    req: &Request,
    got: &Result<Answer, PathError>,
    want: &Result<Answer, PathError>,
) -> ! {
    let show = |a: &Result<Answer, PathError>| match a {
        Err(e) => format!("refused: {e:?}"),
        Ok(None) => "no match".to_string(),
        Ok(Some((i, caps))) => {
            let caps: Vec<_> = caps
                .iter()
                .map(|c| c.as_ref().map(|c| String::from_utf8_lossy(c).into_owned()))
                .collect();
            format!("{i}: {:?} captures {caps:?}", spec.rules[*i])
        }
    };
    panic!(
        "disagreement on {req:?}\n  router:    {}\n  reference: {}\n  normalize: {:?}\n  rules: {:#?}",
        show(got),
        show(want),
        spec.normalize,
        spec.rules
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{i}: {:?} ctx={:?}", r.path, r.context_path))
            .collect::<Vec<_>>()
    );
}

/// A random rule set of `rules` rules; `regex_share` in tenths; paths have at least
/// `min` segments.
pub fn random_spec(rng: &mut impl Choose, rules: usize, regex_share: usize, min: usize) -> RouterSpec {
    RouterSpec {
        rules: (0..rules)
            .map(|i| random_rule(rng, i, regex_share, min))
            .collect(),
        environments: vec!["e0".into(), "e1".into()],
        ..Default::default()
    }
}

/// Normalization options from one choice.
pub fn random_normalize(rng: &mut impl Choose) -> NormalizeOptions {
    let o = rng.below(64);
    NormalizeOptions {
        merge_slashes: o & 1 == 0,
        encoded_slash: [EncodedSlash::Reject, EncodedSlash::Keep, EncodedSlash::Decode][(o >> 1 & 3) % 3],
        backslash: [Backslash::Reject, Backslash::Slash][o >> 3 & 1],
        semicolon: [Semicolon::Reject, Semicolon::Strip, Semicolon::Keep][(o >> 4 & 3) % 3],
    }
}

/// The property of the `router` fuzz target (replayed from its corpus by
/// `tests/differential.rs`): a rule set of 1–8 rules and normalization options drawn
/// from the input compile, and for up to 16 requests drawn from the rest, the
/// compiled router and the reference agree on the winner, every capture and every
/// refusal.
#[doc(hidden)]
pub fn fuzz_differential(data: &[u8]) {
    let mut input = Bytes(data);
    let n = 1 + input.below(8);
    let regex_share = input.below(11);
    let mut spec = random_spec(&mut input, n, regex_share, 0);
    spec.normalize = random_normalize(&mut input);
    let router = CompiledRouter::build(&spec)
        .unwrap_or_else(|e| panic!("a generated rule set builds: {e}\n{:#?}", spec.rules));
    let reference = Reference::new(&spec);
    let mut s = MatchScratch::default();
    for _ in 0..16 {
        if input.is_empty() {
            break;
        }
        let req = random_request(&mut input, true);
        let want = reference.answer(&req);
        let got = router_answer(&router, &req, &mut s);
        if got != want {
            disagreement(&spec, &req, &got, &want);
        }
    }
}
