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

use ringway::http::{parse_request_head, write_upstream_head, ForwardInfo, HeadLimits, HeadScratch};
use std::hint::black_box;

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

#[inline(never)]
fn run_codec(head: &[u8], n: usize) -> usize {
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
    let mut total = 0;
    for _ in 0..n {
        let buf = black_box(head);
        let Ok(Some(req)) = parse_request_head(buf, &limits, &mut scratch) else {
            return 0;
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
        total += black_box(out.len());
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
