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

#[path = "workloads/mod.rs"]
mod workloads;
use workloads::{scale_lookups as lookups, scale_spec as spec, view, LOOKUPS, SIZES};

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
