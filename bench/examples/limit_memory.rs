//! Memory per tracked client of a `by = "client_ip"` limit: `N` distinct addresses
//! admitted once each through one shard, the process's resident set read before
//! and after (`/proc/self/statm`). Both tables count: the node's bucket per client
//! and the shard's lease entry (forgotten a second after the client goes quiet).
//!
//! ```sh
//! cargo run --release -p ringway-bench --example limit_memory 100000
//! ```

use ringway::config::traffic::By;
use ringway::traffic::{self, Ident};
use ringway_bench::limits::{limit, shard};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let node = limit(By::ClientIp, 10, n as usize);
    let mut s = shard(&node);
    let before = rss_bytes();
    let now = traffic::now();
    for i in 0..n {
        let ident = Ident::Ip(std::net::IpAddr::V4((0x0a00_0000 + i).into()));
        s.admit(ident.key(), &ident, now);
    }
    let after = rss_bytes();
    let shard_keys = s.keys();
    let node_only = {
        // The shard's entries go once they are idle and forgotten.
        s.sweep(now + 2_000_000_000);
        rss_bytes()
    };
    println!(
        "{n} clients: {} tracked by the node, {} by the shard; {:.0} bytes each in all ({} KiB), the shard's entries then forgotten (RSS {} KiB: allocator keeps freed pages)",
        node.tracked(),
        shard_keys,
        (after - before) as f64 / f64::from(n),
        (after - before) / 1024,
        node_only / 1024
    );
}
