//! The rate-limit policy's per-request cost: a request admitted from the shard's
//! lease (the path every request of a limited route takes while it holds tokens),
//! for a limit over everything and for one per caller (with the caller's key
//! hashed, which the gateway does once per snapshot), and what a new client costs a per-address limit (a node lease).
//! The limits are 10⁹/s, so that criterion's tens of millions of iterations a
//! second are never refused. Instruction counts: `examples/limit_ops.rs` under
//! callgrind (docs/benchmarks.md).

use criterion::{criterion_group, criterion_main, Criterion};
use ringway::config::traffic::By;
use ringway::traffic::{self, Ident, Verdict};
use ringway_bench::limits::{limit, shard};
use std::hint::black_box;

fn admit(c: &mut Criterion) {
    let mut g = c.benchmark_group("limits");
    let node = limit(By::All, 1_000_000_000, 1);
    let mut s = shard(&node);
    g.bench_function("admit_all", |b| {
        b.iter(|| {
            let now = traffic::now();
            let v = s.admit(Ident::All.key(), &Ident::All, now);
            assert!(matches!(v, Verdict::Allowed { .. }));
        })
    });
    let node = limit(By::Key, 1_000_000_000, 1);
    let mut s = shard(&node);
    g.bench_function("admit_key", |b| {
        b.iter(|| {
            let now = traffic::now();
            let ident = Ident::Caller(black_box("mobile-app"));
            let v = s.admit(ident.key(), &ident, now);
            assert!(matches!(v, Verdict::Allowed { .. }));
        })
    });
    let node = limit(By::ClientIp, 10, 1 << 20);
    let mut s = shard(&node);
    let mut n: u32 = 0;
    g.bench_function("new_client_ip", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let ident = Ident::Ip(std::net::IpAddr::V4(n.into()));
            black_box(s.admit(ident.key(), &ident, traffic::now()));
        })
    });
    g.finish();
}

criterion_group!(benches, admit);
criterion_main!(benches);
