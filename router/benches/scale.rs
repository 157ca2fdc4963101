//! Question: how do match time and compile time grow with the number of rules?
//! Targets (issue 2): a match at 10,000 rules ≤ 1.5× a match at 10 rules; compiling
//! 10,000 rules ≤ 1 s.
//!
//! Rule sets of 10, 100, 1,000 and 10,000 rules are generated deterministically, mixed
//! like a real API gateway's: ≈ 40% literal exact paths, 40% `{param}`-style routes
//! written as `[^/]+` regex segments, 20% regexes with general captures
//! (`/v[0-9]+/res123/([0-9]+)/(.*)`), spread over many first segments (`/svcN/…`).
//! The lookup set (64 paths) hits rules uniformly across the whole set and reads
//! every capture; one `match/{n}` iteration is all 64 lookups. The compiled router's
//! heap size is printed per size.
//!
//! Run: `cargo bench -p ringway-router --bench scale`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringway_router::*;
use std::hint::black_box;

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
const LOOKUPS: usize = 64;
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

/// Rule `i` of a set of `n`: its path matcher and a path that it matches.
fn rule(i: usize, n: usize) -> (PathSpec, String) {
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

fn spec(n: usize) -> RouterSpec {
    RouterSpec {
        rules: (0..n)
            .map(|i| RuleSpec {
                name: format!("r{i}"),
                group: "scale".into(),
                hosts: vec![],
                methods: vec![],
                context_path: None,
                path: rule(i, n).0,
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

/// (path, rule it must hit), spread uniformly over the set.
fn lookups(n: usize) -> Vec<(String, usize)> {
    let mut rng = Rng(0x853c_49e6_748f_ea9b ^ n as u64);
    (0..LOOKUPS)
        .map(|k| {
            // One lookup per stripe of the rule list, at a random place in it.
            let lo = k * n / LOOKUPS;
            let hi = ((k + 1) * n / LOOKUPS).max(lo + 1);
            let i = lo + rng.below(hi - lo);
            (rule(i, n).1, i)
        })
        .collect()
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
    let mut routers = Vec::new();
    for n in SIZES {
        let t = std::time::Instant::now();
        let router = CompiledRouter::build(&spec(n)).expect("generated rules compile");
        let st = router.stats();
        eprintln!(
            "scale/{n}: built in {:?}; {} partitions ({} lazy); heap {} bytes ({:.1} KiB)",
            t.elapsed(),
            st.automaton_partitions,
            st.lazy_partitions,
            st.heap_bytes,
            st.heap_bytes as f64 / 1024.0
        );
        let lookups = lookups(n);
        let mut s = MatchScratch::default();
        for (path, want) in &lookups {
            let got = router.match_request(&view(path), NO_HEADERS, &mut s).unwrap();
            assert_eq!(got.map(RouteId::index), Some(*want), "{path} at {n} rules");
        }
        routers.push((n, router, lookups));
    }

    let mut g = c.benchmark_group("match");
    g.throughput(Throughput::Elements(LOOKUPS as u64));
    for (n, router, lookups) in &routers {
        g.bench_with_input(BenchmarkId::from_parameter(n), lookups, |b, lookups| {
            let mut s = MatchScratch::default();
            b.iter(|| {
                for (path, _) in lookups {
                    let route = router
                        .match_request(&view(black_box(path)), NO_HEADERS, &mut s)
                        .unwrap();
                    black_box(route);
                    for i in 0..s.group_count() {
                        black_box(s.group(i));
                    }
                }
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("compile");
    for n in SIZES {
        if n >= 10_000 {
            g.sample_size(10);
        }
        let spec = spec(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &spec, |b, spec| {
            b.iter(|| CompiledRouter::build(black_box(spec)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
