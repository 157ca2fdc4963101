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
use ringway::http::{parse_request_head, write_upstream_head, ForwardInfo, HeadLimits, HeadScratch};

const CURL: &[u8] = b"GET /api/v1/users/42?fields=name HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
\r\n";

const BROWSER: &[u8] = b"GET /app/dashboard?tab=overview&range=7d HTTP/1.1\r\n\
Host: www.example.com\r\n\
Connection: keep-alive\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Sec-Fetch-Site: same-origin\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: session=3f2a9c1e7b6d4a5f8e0c; theme=dark; _ga=GA1.2.1234567890.1700000000\r\n\
\r\n";

fn many_headers() -> Vec<u8> {
    let mut head = b"POST /ingest HTTP/1.1\r\nHost: ingest.example.com\r\nConnection: keep-alive, x-hop-31\r\nContent-Length: 0\r\n".to_vec();
    for i in 0..61 {
        head.extend_from_slice(format!("x-hop-{i}: value-{i}-abcdefghijklmnop\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

fn bench_head(c: &mut Criterion, name: &str, head: &[u8]) {
    let limits = HeadLimits {
        max_header_bytes: 16 * 1024,
        max_headers: 100,
    };
    let info = ForwardInfo {
        client_ip: b"203.0.113.7",
        proto: b"http",
        request_id: b"01HZX3J5Q8K2M4N6P8R0T2V4W6",
        keep_client_host: false,
        drop_expect: false,
        replace_request_id: false,
    };
    let mut scratch = HeadScratch::new();
    let mut out = Vec::with_capacity(4096);
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(head.len() as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            let buf = black_box(head);
            let parsed = parse_request_head(buf, &limits, &mut scratch);
            let Ok(Some(req)) = parsed else {
                panic!("bench head must parse: {parsed:?}");
            };
            out.clear();
            let pq = req.target.slice(buf);
            write_upstream_head(
                &mut out,
                buf,
                &req,
                scratch.headers(),
                pq,
                b"10.0.0.2:8080",
                &info,
            );
            black_box(out.len())
        })
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
