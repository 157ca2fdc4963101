//! The compiled router against a naive reference: random rule sets and requests, and
//! the two must agree on the winner and on every capture.
//!
//! The reference is the semantics written out as plainly as possible: a linear scan
//! in rule order, checking environment, method, host and predicates by hand, and the
//! path with the `regex` crate (`(?-u)^(?:…)$` over bytes) on the normalized path with
//! the rule's context path stripped. Rules and requests are drawn from a small
//! alphabet of segments so that overlaps, shadowing and near misses are common.

mod common;

use common::Rng;
use ringway_router::normalize::normalize_path;
use ringway_router::*;

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

/// One regex segment: a literal or a pattern for one path segment. `groups` numbers
/// named groups so names stay unique within a regex.
fn regex_segment(rng: &mut Rng, names: &mut usize) -> String {
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
fn random_regex(rng: &mut Rng, min: usize) -> String {
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

fn random_literal_path(rng: &mut Rng, min: usize, max: usize) -> String {
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

fn random_predicate(rng: &mut Rng) -> PredicateSpec {
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
fn random_rule(rng: &mut Rng, i: usize, regex_share: usize, min: usize) -> RuleSpec {
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
struct Request {
    method: &'static str,
    host: Option<&'static str>,
    path: String,
    query: Option<String>,
    headers: Vec<(&'static str, &'static str)>,
    env: u8,
}

fn random_request(rng: &mut Rng) -> Request {
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

enum RefPath {
    Exact(String),
    Prefix(String),
    Regex(regex::bytes::Regex),
}

struct RefRule {
    envs: Option<Vec<u8>>,
    methods: Vec<String>,
    hosts: Vec<String>,
    ctx: String,
    path: RefPath,
    predicates: Vec<(Source, String, RefOp)>,
}

enum RefOp {
    Equals(Vec<u8>),
    OneOf(Vec<Vec<u8>>),
    Prefix(Vec<u8>),
    Regex(regex::bytes::Regex),
    Present,
    Absent,
}

fn whole(pattern: &str) -> regex::bytes::Regex {
    regex::bytes::Regex::new(&format!("(?-u)^(?:{pattern})$")).unwrap()
}

fn reference(spec: &RouterSpec) -> Vec<RefRule> {
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
fn form_decode(s: &[u8]) -> Vec<u8> {
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
fn ref_host(h: &str) -> String {
    let h = h.split(':').next().unwrap();
    h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase()
}

/// The reference answer: (rule index, captures of groups 1..) or None.
type Answer = Option<(usize, Vec<Option<Vec<u8>>>)>;

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
                let Some(c) = re.captures(stripped) else {
                    continue;
                };
                (1..c.len())
                    .map(|g| c.get(g).map(|m| m.as_bytes().to_vec()))
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
                RefOp::Regex(re) => values.iter().any(|v| re.is_match(v)),
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

fn router_match(router: &CompiledRouter, req: &Request, s: &mut MatchScratch) -> Answer {
    let view = RequestView {
        method: req.method.as_bytes(),
        host: req.host.map(str::as_bytes),
        path: req.path.as_bytes(),
        query: req.query.as_deref().map(str::as_bytes),
        env: EnvId(req.env),
    };
    let headers = req.headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()));
    let route = router.match_request(&view, headers, s).unwrap()?;
    let caps = (0..s.group_count())
        .map(|i| s.group(i).map(<[u8]>::to_vec))
        .collect();
    Some((route.index(), caps))
}

fn normalized(spec: &RouterSpec, raw: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if normalize_path(raw.as_bytes(), &spec.normalize, &mut out).unwrap() {
        out
    } else {
        raw.as_bytes().to_vec()
    }
}

/// Checks `requests` random requests against one rule set; returns the winners.
fn check(spec: &RouterSpec, router: &CompiledRouter, rng: &mut Rng, requests: usize) -> Vec<usize> {
    let rules = reference(spec);
    let mut s = MatchScratch::default();
    let mut winners = Vec::new();
    for _ in 0..requests {
        let req = random_request(rng);
        let want = reference_match(&rules, &req, &normalized(spec, &req.path));
        let got = router_match(router, &req, &mut s);
        if got != want {
            let show = |a: &Answer| {
                a.as_ref().map(|(i, caps)| {
                    let caps: Vec<_> = caps
                        .iter()
                        .map(|c| c.as_ref().map(|c| String::from_utf8_lossy(c).into_owned()))
                        .collect();
                    (*i, format!("{:?}", spec.rules[*i]), caps)
                })
            };
            panic!(
                "disagreement on {req:?}\n  router:    {:?}\n  reference: {:?}\n  rules: {:#?}",
                show(&got),
                show(&want),
                spec.rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| format!("{i}: {:?} ctx={:?}", r.path, r.context_path))
                    .collect::<Vec<_>>()
            );
        }
        winners.extend(want.map(|(i, _)| i));
    }
    winners
}

fn random_spec(rng: &mut Rng, rules: usize, regex_share: usize, min: usize) -> RouterSpec {
    RouterSpec {
        rules: (0..rules)
            .map(|i| random_rule(rng, i, regex_share, min))
            .collect(),
        environments: vec!["e0".into(), "e1".into()],
        ..Default::default()
    }
}

#[test]
fn reference_helpers_behave() {
    assert_eq!(form_decode(b"a+b%20c%2x%41%"), b"a b c%2xA%");
    assert_eq!(ref_host("A.Com.:80"), "a.com");
    let req = Request {
        method: "GET",
        host: None,
        path: "/a/1".into(),
        query: None,
        headers: vec![],
        env: 0,
    };
    let spec = RouterSpec {
        rules: vec![RuleSpec {
            name: "x".into(),
            group: "g".into(),
            hosts: vec![],
            methods: vec![],
            context_path: Some("/a".into()),
            path: PathSpec::Regex("/([0-9])".into()),
            predicates: vec![],
            environments: None,
            action: ActionSpec::Local,
        }],
        ..Default::default()
    };
    let rules = reference(&spec);
    assert_eq!(
        reference_match(&rules, &req, b"/a/1"),
        Some((0, vec![Some(b"1".to_vec())]))
    );
    assert_eq!(reference_match(&rules, &req, b"/a1"), None);
}

#[test]
fn agrees_with_reference_on_random_rule_sets() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cases = 0;
    let mut matched = 0;
    for round in 0..250 {
        let n = 1 + rng.below(if round % 5 == 0 { 60 } else { 15 });
        let spec = random_spec(&mut rng, n, 5, 0);
        let router =
            CompiledRouter::build(&spec).unwrap_or_else(|e| panic!("round {round}: {e}\n{:#?}", spec.rules));
        matched += check(&spec, &router, &mut rng, 40).len();
        cases += 40;
    }
    // The generator must produce both outcomes in fair measure.
    assert!(
        matched > cases / 5 && matched < cases * 4 / 5,
        "{matched} of {cases} matched"
    );
}

/// 2,000 rules, mostly regexes, with an automaton limit small enough that the large
/// partitions are built as lazy DFAs. Paths have at least two segments, so there is
/// no catch-all near the top and winners come from the whole list.
#[test]
fn agrees_with_reference_at_scale_with_lazy_partitions() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let spec = random_spec(&mut rng, 2000, 7, 2);
    // The limit bounds a partition's NFA too: take the first that builds.
    let router = [64 << 10, 256 << 10]
        .into_iter()
        .find_map(|limit| {
            let mut spec = spec.clone();
            spec.limits.max_automaton_bytes = limit;
            CompiledRouter::build(&spec).ok()
        })
        .expect("some small limit builds");
    let st = router.stats();
    assert!(
        st.lazy_partitions > 0 && st.lazy_partitions < st.automaton_partitions,
        "{st:?}"
    );
    let winners = check(&spec, &router, &mut rng, 1500);
    let distinct: std::collections::BTreeSet<_> = winners.iter().collect();
    assert!(
        winners.len() > 300 && distinct.len() > 50 && winners.iter().any(|&w| w > 1000),
        "{} matched, {} distinct winners",
        winners.len(),
        distinct.len()
    );
}
