//! The rule sets and lookups of the `github` and `scale` benches, shared with
//! `examples/lookups.rs` (instruction counts under callgrind, peak memory of a build).
//! Included with `#[path]`; not every user needs every item.
#![allow(dead_code)]

use ringway_router::*;
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

pub fn read_lines(name: &str) -> Vec<String> {
    let path = data_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "github workload: cannot read {} ({e}); it expects the shared data directory \
             next to the workspace root",
            path.display()
        )
    });
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// `/repos/{p1}/{p2}` → `/repos/(?<p1>[^/]+)/(?<p2>[^/]+)`.
pub fn route_regex(route: &str) -> String {
    let mut out = String::new();
    let mut rest = route;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').expect("unclosed '{'");
        out.push_str(&regex::escape(&rest[..open]));
        out.push_str(&format!("(?<{}>[^/]+)", &rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    out.push_str(&regex::escape(rest));
    out
}

/// The one route a lookup must hit, by plain segment comparison.
pub fn expected_route(routes: &[String], lookup: &str) -> usize {
    let fits = |route: &str| {
        let (r, l): (Vec<&str>, Vec<&str>) = (route.split('/').collect(), lookup.split('/').collect());
        r.len() == l.len()
            && r.iter()
                .zip(&l)
                .all(|(r, l)| r == l || (r.starts_with('{') && !l.is_empty()))
    };
    let hits: Vec<usize> = (0..routes.len()).filter(|&i| fits(&routes[i])).collect();
    assert_eq!(hits.len(), 1, "{lookup} must fit exactly one route: {hits:?}");
    hits[0]
}

/// The GitHub routes as ringway regex rules.
pub fn github_spec(routes: &[String]) -> RouterSpec {
    RouterSpec {
        rules: routes
            .iter()
            .enumerate()
            .map(|(i, r)| RuleSpec {
                name: format!("r{i}"),
                group: "github".into(),
                hosts: vec![],
                methods: vec![],
                context_path: None,
                path: PathSpec::Regex(route_regex(r)),
                predicates: vec![],
                environments: None,
                action: ActionSpec::Local,
            })
            .collect(),
        ..Default::default()
    }
}

pub const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
pub const LOOKUPS: usize = 64;
/// Rules per first segment (`/svcN`), on average.
const RULES_PER_SERVICE: usize = 20;

/// xorshift64*, so the sets are the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

/// Rule `i` of a scale set of `n`: its path matcher and a path that it matches.
pub fn scale_rule(i: usize, n: usize) -> (PathSpec, String) {
    let services = (n / RULES_PER_SERVICE).max(2);
    let s = i % services;
    match i % 5 {
        0 => (
            PathSpec::Exact(format!("/svc{s}/res{i}")),
            format!("/svc{s}/res{i}"),
        ),
        1 => (
            PathSpec::Exact(format!("/svc{s}/v1/res{i}/list")),
            format!("/svc{s}/v1/res{i}/list"),
        ),
        2 => (
            PathSpec::Regex(format!("/svc{s}/res{i}/([^/]+)")),
            format!("/svc{s}/res{i}/abc123"),
        ),
        3 => (
            PathSpec::Regex(format!("/svc{s}/v1/res{i}/([^/]+)/items/([^/]+)")),
            format!("/svc{s}/v1/res{i}/user-7/items/42"),
        ),
        _ => (
            PathSpec::Regex(format!("/svc{s}/v[0-9]+/res{i}/([0-9]+)/(.*)")),
            format!("/svc{s}/v2/res{i}/123/some/tail.json"),
        ),
    }
}

/// The scale set of `n` rules.
pub fn scale_spec(n: usize) -> RouterSpec {
    RouterSpec {
        rules: (0..n)
            .map(|i| RuleSpec {
                name: format!("r{i}"),
                group: "scale".into(),
                hosts: vec![],
                methods: vec![],
                context_path: None,
                path: scale_rule(i, n).0,
                predicates: vec![],
                environments: None,
                action: ActionSpec::Proxy {
                    to: "http://backend/".into(),
                },
            })
            .collect(),
        ..Default::default()
    }
}

/// (path, rule it must hit), spread uniformly over the scale set of `n`.
pub fn scale_lookups(n: usize) -> Vec<(String, usize)> {
    let mut rng = Rng(0x853c_49e6_748f_ea9b ^ n as u64);
    (0..LOOKUPS)
        .map(|k| {
            // One lookup per stripe of the rule list, at a random place in it.
            let lo = k * n / LOOKUPS;
            let hi = ((k + 1) * n / LOOKUPS).max(lo + 1);
            let i = lo + rng.below(hi - lo);
            (scale_rule(i, n).1, i)
        })
        .collect()
}

pub fn view(path: &str) -> RequestView<'_> {
    RequestView {
        method: b"GET",
        host: None,
        path: path.as_bytes(),
        query: None,
        env: EnvId(0),
    }
}
