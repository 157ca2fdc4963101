//! HTTP/1.1 codec cost per request head, on the proxy's request path:
//! `parse_request_head` + `write_upstream_head` into a reused buffer.
//!
//! Each bench answers one question:
//!
//! - `codec/curl_3_headers`: what does the codec cost for the smallest
//!   realistic request (curl, 3 fields)? This is the floor of per-request
//!   overhead the proxy adds before any IO.
//! - `codec/browser_12_headers`: what does it cost for a typical browser
//!   request (~12 fields, cookies, ~700 bytes)? This is the common case.
//! - `codec/many_64_headers`: does the cost stay linear with many fields
//!   (64 fields, a Connection option naming one of them)? Hop-by-hop
//!   filtering must not go quadratic.
//!
//! Throughput is in head bytes, so the three can be compared per byte.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringway::http::HeadScratch;

use ringway_bench::codec_pass;
use ringway_bench::heads::{many_headers, BROWSER, CURL};

fn bench_head(c: &mut Criterion, name: &str, head: &[u8]) {
    let mut scratch = HeadScratch::new();
    let mut out = Vec::with_capacity(4096);
    assert!(
        codec_pass(head, &mut scratch, &mut out) > 0,
        "bench head must parse"
    );
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(head.len() as u64));
    group.bench_function(name, |b| {
        b.iter(|| black_box(codec_pass(black_box(head), &mut scratch, &mut out)))
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    bench_head(c, "curl_3_headers", CURL);
    bench_head(c, "browser_12_headers", BROWSER);
    bench_head(c, "many_64_headers", &many_headers());
}

criterion_group!(benches, codec);
criterion_main!(benches);
