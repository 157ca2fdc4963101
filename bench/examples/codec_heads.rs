//! Instruction counts of the HTTP/1.1 codec per request head, for callgrind: the
//! same three heads as `benches/codec.rs` (curl 3 fields, browser 12 fields, 64
//! fields), each parsed with `parse_request_head` and written upstream with
//! `write_upstream_head`, `N` times in `run_codec`.
//!
//! ```sh
//! cargo build --release -p ringway-bench --example codec_heads
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*run_codec*' \
//!     target/release/examples/codec_heads curl 10000
//! # Ir ÷ 10000 = instructions per head
//! ```

use ringway::http::HeadScratch;
use std::hint::black_box;

use ringway_bench::codec_pass;
use ringway_bench::heads::{many_headers, BROWSER, CURL};

#[inline(never)]
fn run_codec(head: &[u8], n: usize) -> usize {
    let mut scratch = HeadScratch::new();
    let mut out = Vec::with_capacity(4096);
    let mut total = 0;
    for _ in 0..n {
        total += black_box(codec_pass(black_box(head), &mut scratch, &mut out));
    }
    total
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "curl".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let many = many_headers();
    let head: &[u8] = match which.as_str() {
        "curl" => CURL,
        "browser" => BROWSER,
        "many" => &many,
        other => {
            eprintln!("unknown head '{other}': curl | browser | many");
            std::process::exit(2);
        }
    };
    let bytes = run_codec(head, n);
    println!("{which}: {n} heads, {bytes} bytes written");
}
