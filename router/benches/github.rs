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

#[path = "workloads/mod.rs"]
mod workloads;
use workloads::{expected_route, github_spec, read_lines, view};

fn bench(c: &mut Criterion) {
    let routes = read_lines("github-api-routes.txt");
    let lookups = read_lines("github-api-lookups.txt");
    assert_eq!(routes.len(), 124, "route count");
    assert_eq!(lookups.len(), 4, "lookup count");

    let ringway = CompiledRouter::build(&github_spec(&routes)).expect("github routes compile");
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
