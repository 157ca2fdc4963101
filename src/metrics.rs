//! Per-shard counters, written only by their shard's thread and summed by the admin
//! side when scraped. Single writer: increments are a relaxed load and store, no
//! locked read-modify-write on the request path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Latency histogram bucket upper bounds, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 500_000, 1_000_000,
];

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1)
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn dec(&self) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(1), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed)
    }
}

/// One shard's counters.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Responses by status class: index 1..=5 for 1xx..5xx.
    pub responses: [Counter; 6],
    /// Requests that matched no rule.
    pub no_match: Counter,
    pub open_connections: Counter,
    pub accepted: Counter,
    pub upstream_connect_errors: Counter,
    pub upstream_timeouts: Counter,
    pub upstream_retries: Counter,
    /// Request latency histogram (cumulative buckets are computed on scrape).
    pub latency: [Counter; LATENCY_BUCKETS_US.len() + 1],
    pub latency_sum_us: Counter,
    /// The snapshot version this shard serves.
    pub version: Counter,
}

impl ShardStats {
    #[inline]
    pub fn response(&self, status: u16, micros: u64) {
        self.responses[(status / 100).min(5) as usize].inc();
        let b = LATENCY_BUCKETS_US
            .iter()
            .position(|&ub| micros <= ub)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency[b].inc();
        self.latency_sum_us.add(micros);
    }

    pub fn set_version(&self, v: u64) {
        self.version.set(v);
    }
}
