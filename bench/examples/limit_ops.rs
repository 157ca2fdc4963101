//! Instruction counts of the rate-limit policy's per-request work, for callgrind:
//! `N` requests admitted by a per-caller limit that never refuses (the compare.sh
//! limit-key scenario's), from the shard's lease, in `run_admits` — what
//! `policy::limits::admit` does per limit: the request's start on the limits'
//! clock, the caller's key (hashed once per snapshot), the lease.
//!
//! ```sh
//! cargo build --release -p ringway-bench --example limit_ops
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*run_admits*' \
//!     target/release/examples/limit_ops 100000
//! # Ir ÷ 100000 = instructions per admitted request
//! ```

use ringway::config::traffic::By;
use ringway::traffic::{self, Ident, ShardLimit, Verdict};
use ringway_bench::limits::{limit, shard};
use std::hint::black_box;

#[inline(never)]
fn run_admits(s: &mut ShardLimit, key: u64, n: usize) -> usize {
    let started = std::time::Instant::now(); // every request has its start already
    (0..n)
        .filter(|_| {
            let ident = Ident::Caller(black_box("mobile-app"));
            let now = traffic::clock(black_box(started));
            matches!(s.admit(black_box(key), &ident, now), Verdict::Allowed { .. })
        })
        .count()
}

fn warm(s: &mut ShardLimit, key: u64) {
    for _ in 0..10_000 {
        s.admit(key, &Ident::Caller("mobile-app"), traffic::now());
    }
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let node = limit(By::Key, 10_000_000, 1);
    let mut s = shard(&node);
    let key = Ident::Caller("mobile-app").key();
    // Warm (outside the count): the lease grows to its size first.
    warm(&mut s, key);
    let ok = run_admits(&mut s, key, n);
    assert_eq!(ok, n, "a limit of 10,000,000/s never refuses here");
    println!("{n} admitted");
}
