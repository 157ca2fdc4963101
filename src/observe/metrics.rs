//! Counters, written only by their shard's thread and summed by the admin side when
//! scraped. Single writer: an increment is a relaxed load and store, no locked
//! read-modify-write on the request path.
//!
//! Per-route and per-upstream counters are looked up by name when a shard installs a
//! snapshot (the only time the registry's mutex is taken on a shard), so counters of
//! routes and upstreams that survive a reload keep counting.
// The registry's mutex is taken when a view is prepared (on the control thread, or
// once when a shard starts), never per request.
#![allow(clippy::disallowed_types)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Latency histogram bucket upper bounds, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 19] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    120_000_000,
    300_000_000,
];

/// A counter with a single writer.
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
        self.sub(1)
    }

    /// For gauges: takes `n` off.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed)
    }
}

/// Responses by status class and a latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Index 1..=5 for 1xx..5xx (0 unused).
    pub responses: [Counter; 6],
    pub buckets: [Counter; LATENCY_BUCKETS_US.len() + 1],
    pub sum_us: Counter,
    /// Response body bytes sent to clients.
    pub body_bytes: Counter,
    /// Request body bytes received (declared `Content-Length`s; chunked bodies as
    /// counted while they were read are not included).
    pub request_bytes: Counter,
}

impl Histogram {
    #[inline]
    pub fn record(&self, status: u16, micros: u64) {
        self.responses[(status / 100).min(5) as usize].inc();
        let b = LATENCY_BUCKETS_US
            .iter()
            .position(|&ub| micros <= ub)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[b].inc();
        self.sum_us.add(micros);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(Counter::get).sum()
    }
}

/// Counters of one upstream address.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    pub connect_errors: Counter,
    pub timeouts: Counter,
    pub retries: Counter,
    /// Idle pooled connections now.
    pub idle: Counter,
    /// Idle pooled connections found closed by the upstream (dropped, never used).
    pub closed_idle: Counter,
    /// TLS handshakes to the upstream whose certificate did not verify.
    pub tls_verify_failures: Counter,
    /// TLS handshakes to the upstream that failed otherwise.
    pub tls_handshake_failures: Counter,
    /// Requests sent to it, by the status the client got, and the time to the
    /// upstream's response head (the whole request when none came).
    pub requests: Histogram,
}

/// Why a client's TLS handshake failed, as labels (`reason`) of
/// `ringway_tls_handshake_failures_total`; indexes [`TlsListenerStats::failures`].
pub const TLS_FAILURE_REASONS: [&str; 7] = [
    "timeout",
    "closed",
    "certificate",
    "incompatible",
    "alert",
    "protocol",
    "overload",
];

/// One TLS listener's counters (per shard; summed on scrape).
#[derive(Debug, Default)]
pub struct TlsListenerStats {
    /// Handshakes completed.
    pub handshakes: Counter,
    /// Of those, resumed sessions (ticket or session id).
    pub resumed: Counter,
    /// Completed handshakes by negotiated ALPN protocol: `http/1.1`, none.
    pub alpn_http11: Counter,
    pub alpn_none: Counter,
    /// Failed handshakes, by [`TLS_FAILURE_REASONS`].
    pub failures: [Counter; 7],
}

impl TlsListenerStats {
    /// Counts a failure with reason `reason` (one of [`TLS_FAILURE_REASONS`]).
    pub fn failed(&self, reason: &str) {
        let i = TLS_FAILURE_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(TLS_FAILURE_REASONS.len() - 2);
        self.failures[i].inc();
    }
}

/// One shard's counters.
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Every response, routed or not.
    pub all: Histogram,
    /// Requests that matched no rule.
    pub no_match: Counter,
    pub open_connections: Counter,
    /// Of those, idle keep-alive connections parked (`downstream`: no read buffer,
    /// no timer of their own).
    pub parked_connections: Counter,
    pub accepted: Counter,
    /// The snapshot version this shard serves.
    pub version: Counter,
    /// Access log writes (or opens) that failed; their lines are lost.
    pub access_log_errors: Counter,
    /// Signed requests refused because the nonce store had no room.
    pub nonce_store_full: Counter,
    /// Response body bytes moved with splice(2) rather than copied.
    pub spliced_bytes: Counter,
    /// Retries a route's policy wanted that the retry budget refused.
    pub retry_budget_exhausted: Counter,
    /// Upgraded connections (tunnels) open now.
    pub tunnels_open: Counter,
    /// Tunnels ended, by how (`io::tunnel::End::ALL`: closed, idle_timeout, failed,
    /// drained).
    pub tunnels_ended: [Counter; 4],
    /// Bytes through tunnels: from clients (in), to clients (out).
    pub tunnel_bytes_in: Counter,
    pub tunnel_bytes_out: Counter,
    /// (group, caller) → requests admitted; (group, code) → requests denied.
    auth: Mutex<HashMap<(String, String, bool), Arc<Counter>>>,
    /// (group, version, environment) → requests of a versioned group.
    versions: Mutex<HashMap<(String, String, String), Arc<Histogram>>>,
    /// (limit, outcome) → requests a rate limit decided.
    limits: Mutex<HashMap<(String, &'static str), Arc<Counter>>>,
    /// (group, route, method, status) → responses. A shard keeps its handles
    /// (`Shard::code_counter`), so the lock is taken once per new combination.
    codes: Mutex<HashMap<CodeKey, Arc<Counter>>>,
    /// group → route → histogram. Two levels so lookups borrow their keys.
    routes: Mutex<HashMap<String, HashMap<String, Arc<Histogram>>>>,
    upstreams: Mutex<HashMap<String, Arc<UpstreamStats>>>,
    tls_listeners: Mutex<HashMap<String, Arc<TlsListenerStats>>>,
}

impl ShardStats {
    pub fn set_version(&self, v: u64) {
        self.version.set(v);
    }

    /// The histograms of the routes `(group, name)`, in order, created on first use.
    /// Called by a shard when it installs a snapshot: one lock for all routes, and no
    /// allocation for routes that already have one.
    pub fn routes<'a>(&self, names: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<Arc<Histogram>> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        names
            .map(|(group, name)| {
                if let Some(h) = routes.get(group).and_then(|g| g.get(name)) {
                    return h.clone();
                }
                routes
                    .entry(group.to_string())
                    .or_default()
                    .entry(name.to_string())
                    .or_default()
                    .clone()
            })
            .collect()
    }

    /// The counters of upstream `addr` (created on first use).
    pub fn upstream(&self, addr: &str) -> Arc<UpstreamStats> {
        let mut ups = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        ups.entry(addr.to_string()).or_default().clone()
    }

    /// Visits every route histogram. The registry is copied (names and handles) under
    /// its lock and visited after, so a scrape never holds up a shard installing a
    /// snapshot.
    pub fn for_each_route(&self, mut f: impl FnMut(&str, &str, &Histogram)) {
        let copy: Vec<(String, String, Arc<Histogram>)> = {
            let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            routes
                .iter()
                .flat_map(|(g, rs)| rs.iter().map(move |(r, h)| (g.clone(), r.clone(), h.clone())))
                .collect()
        };
        for (g, r, h) in &copy {
            f(g, r, h);
        }
    }

    /// Requests of `group` admitted for `caller` (`allowed`) or denied with code
    /// `caller` (`!allowed`): created on first use. Admissions are looked up once
    /// per snapshot (the shard keeps the handles); denials per denial.
    pub fn auth(&self, group: &str, caller: &str, allowed: bool) -> Arc<Counter> {
        let mut m = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((group.to_string(), caller.to_string(), allowed))
            .or_default()
            .clone()
    }

    /// The counter of `limit`'s requests with `outcome` (`allowed`, `refused`):
    /// created on first use, looked up once per snapshot.
    pub fn limit(&self, limit: &str, outcome: &'static str) -> Arc<Counter> {
        let mut m = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((limit.to_string(), outcome)).or_default().clone()
    }

    /// Visits every limit counter: (limit, outcome, value).
    pub fn each_limit(&self, mut f: impl FnMut(&str, &str, u64)) {
        let m = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        for ((l, o), c) in m.iter() {
            f(l, o, c.get());
        }
    }

    /// The histogram of `group`'s `version` served in `env` (created on first use;
    /// looked up once per snapshot).
    pub fn version(&self, group: &str, version: &str, env: &str) -> Arc<Histogram> {
        let mut m = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((group.to_string(), version.to_string(), env.to_string()))
            .or_default()
            .clone()
    }

    /// The counter of `route`'s responses with `status` to `method` (created on
    /// first use).
    pub fn route_code(&self, group: &str, route: &str, method: &'static str, status: u16) -> Arc<Counter> {
        let mut m = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((group.to_string(), route.to_string(), method, status))
            .or_default()
            .clone()
    }

    /// Visits every (group, route, method, status) counter.
    pub fn for_each_route_code(&self, mut f: impl FnMut(&str, &str, &str, u16, u64)) {
        let m = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        for ((g, r, method, code), n) in m.iter() {
            f(g, r, method, *code, n.get());
        }
    }

    /// Visits every versioned group's histogram: (group, version, environment).
    pub fn for_each_version(&self, mut f: impl FnMut(&str, &str, &str, &Histogram)) {
        let copy: Vec<_> = {
            let m = self.versions.lock().unwrap_or_else(|e| e.into_inner());
            m.iter().map(|(k, h)| (k.clone(), h.clone())).collect()
        };
        for ((g, v, e), h) in &copy {
            f(g, v, e, h);
        }
    }

    /// The denial counter of `group` and `code`.
    pub fn auth_denied(&self, group: &str, code: &str) -> Arc<Counter> {
        self.auth(group, code, false)
    }

    /// Visits every auth counter: (group, caller or code, allowed, value).
    pub fn for_each_auth(&self, mut f: impl FnMut(&str, &str, bool, u64)) {
        let m = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        for ((g, c, a), n) in m.iter() {
            f(g, c, *a, n.get());
        }
    }

    /// The TLS counters of listener `addr` (created on first use).
    pub fn tls_listener(&self, addr: &str) -> Arc<TlsListenerStats> {
        let mut ls = self.tls_listeners.lock().unwrap_or_else(|e| e.into_inner());
        ls.entry(addr.to_string()).or_default().clone()
    }

    /// Visits every TLS listener's counters.
    pub fn for_each_tls_listener(&self, mut f: impl FnMut(&str, &TlsListenerStats)) {
        let ls = self.tls_listeners.lock().unwrap_or_else(|e| e.into_inner());
        for (a, l) in ls.iter() {
            f(a, l);
        }
    }

    /// Visits every upstream's counters.
    pub fn for_each_upstream(&self, mut f: impl FnMut(&str, &UpstreamStats)) {
        let ups = self.upstreams.lock().unwrap_or_else(|e| e.into_inner());
        for (a, u) in ups.iter() {
            f(a, u);
        }
    }
}

/// (group, route, method label, status) of a response counter.
type CodeKey = (String, String, &'static str, u16);

/// A method as a metrics label: the common ones by name, every other `OTHER`, so
/// a client cannot grow the label set.
pub fn method_label(method: &[u8]) -> &'static str {
    match method {
        b"GET" => "GET",
        b"HEAD" => "HEAD",
        b"POST" => "POST",
        b"PUT" => "PUT",
        b"DELETE" => "DELETE",
        b"PATCH" => "PATCH",
        b"OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

/// Sums of many histograms, for the scrape.
#[derive(Clone, Debug, Default)]
pub struct HistogramSum {
    pub responses: [u64; 6],
    pub buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    pub sum_us: u64,
    pub body_bytes: u64,
    pub request_bytes: u64,
}

impl HistogramSum {
    pub fn add(&mut self, h: &Histogram) {
        for (a, c) in self.responses.iter_mut().zip(&h.responses) {
            *a += c.get();
        }
        for (a, c) in self.buckets.iter_mut().zip(&h.buckets) {
            *a += c.get();
        }
        self.sum_us += h.sum_us.get();
        self.body_bytes += h.body_bytes.get();
        self.request_bytes += h.request_bytes.get();
    }
}
