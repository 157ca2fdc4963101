//! Question: on the classic GitHub API route set (124 routes, 4 lookups), is ringway's
//! match + capture read at least as fast as matchit, a radix-tree router that only
//! knows literal and `{param}` segments?
//!
//! Both routers are built from `shared/data/github-api-routes.txt`; ringway gets each
//! route as a regex (`{pN}` → `(?<pN>[^/]+)`, literal routes too: the router turns
//! them into exact-table entries itself). One iteration = the 4 lookups of
//! `github-api-lookups.txt`, each followed by reading every capture. Before measuring,
//! every lookup is checked to hit exactly the expected route in both routers.
//!
//! Run: `cargo bench -p ringway-router --bench github`.

use criterion::{criterion_group, criterion_main, Criterion};
use ringway_router::*;
use std::hint::black_box;
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

fn read_lines(name: &str) -> Vec<String> {
    let path = data_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "github bench: cannot read {} ({e}); it expects the shared data directory \
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
fn route_regex(route: &str) -> String {
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
fn expected_route(routes: &[String], lookup: &str) -> usize {
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

fn ringway_router(routes: &[String]) -> CompiledRouter {
    let spec = RouterSpec {
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
    };
    CompiledRouter::build(&spec).expect("github routes compile")
}

fn view(path: &str) -> RequestView<'_> {
    RequestView {
        method: b"GET",
        host: None,
        path: path.as_bytes(),
        query: None,
        env: EnvId(0),
    }
}

fn bench(c: &mut Criterion) {
    let routes = read_lines("github-api-routes.txt");
    let lookups = read_lines("github-api-lookups.txt");
    assert_eq!(routes.len(), 124, "route count");
    assert_eq!(lookups.len(), 4, "lookup count");

    let ringway = ringway_router(&routes);
    let mut matchit = matchit::Router::new();
    for (i, r) in routes.iter().enumerate() {
        matchit.insert(r.as_str(), i).expect("matchit accepts the route");
    }

    // Both must answer exactly the expected route, with the same parameters.
    let mut s = MatchScratch::default();
    for l in &lookups {
        let want = expected_route(&routes, l);
        let got = ringway
            .match_request(&view(l), NO_HEADERS, &mut s)
            .unwrap()
            .unwrap_or_else(|| panic!("ringway: no match for {l}"));
        assert_eq!(got.index(), want, "ringway on {l}");
        let m = matchit.at(l).unwrap_or_else(|e| panic!("matchit on {l}: {e}"));
        assert_eq!(*m.value, want, "matchit on {l}");
        let ringway_params: Vec<(&str, &[u8])> = ringway
            .group_names(got)
            .map(|(n, i)| (n, s.group(i).unwrap()))
            .collect();
        let matchit_params: Vec<(&str, &[u8])> = m.params.iter().map(|(k, v)| (k, v.as_bytes())).collect();
        assert_eq!(ringway_params, matchit_params, "params of {l}");
    }
    eprintln!("github: ringway {:?}", ringway.stats());

    let mut g = c.benchmark_group("github");
    g.bench_function("ringway", |b| {
        let mut s = MatchScratch::default();
        b.iter(|| {
            for l in &lookups {
                let route = ringway
                    .match_request(&view(black_box(l)), NO_HEADERS, &mut s)
                    .unwrap();
                black_box(route);
                for i in 0..s.group_count() {
                    black_box(s.group(i));
                }
            }
        })
    });
    g.bench_function("matchit", |b| {
        b.iter(|| {
            for l in &lookups {
                let m = matchit.at(black_box(l)).unwrap();
                black_box(m.value);
                for p in m.params.iter() {
                    black_box(p);
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
