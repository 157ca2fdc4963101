//! Instruction counts of a signed request's verification, for callgrind: the same
//! typical GET as `benches/signature.rs` (five signed headers, a query, no body),
//! parsed and verified with a cached signing key `N` times in `run_verify`.
//!
//! ```sh
//! cargo build --release -p ringway-bench --example signature_ops
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*run_verify*' \
//!     target/release/examples/signature_ops 10000
//! # Ir ÷ 10000 = instructions per verification
//! ```

use ringway::access::jdcloud::{self, Scratch};
use ringway_bench::signed;
use std::hint::black_box;

#[inline(never)]
fn run_verify(value: &[u8], key: &ring::hmac::Key, n: usize) -> usize {
    let mut scratch = Scratch::default();
    (0..n)
        .filter(|_| signed::verify(black_box(value), key, &mut scratch))
        .count()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let value = signed::authorization();
    let auth = jdcloud::parse_authorization(value.as_bytes()).expect("parses");
    let key = jdcloud::signing_key(signed::SECRET, auth.date, auth.region, auth.service);
    let ok = run_verify(value.as_bytes(), &key, n);
    assert_eq!(ok, n, "every verification must pass");
    println!("{n} verifications");
}
