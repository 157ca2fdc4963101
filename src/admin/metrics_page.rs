//! The `/metrics` page: every shard's counters summed, in the Prometheus text
//! format.

use super::prometheus::{Exposition, Kind};
use super::AdminState;
use crate::observe::metrics::{HistogramSum, ShardStats, TLS_FAILURE_REASONS};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// Status classes as labels, indexed like [`crate::observe::metrics::Histogram::responses`].
const CLASSES: [&str; 6] = ["", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Every shard's counters, summed.
#[derive(Default)]
struct Totals {
    all: HistogramSum,
    routes: BTreeMap<(String, String), HistogramSum>,
    /// connect errors, timeouts, retries, idle, closed idle, TLS verify failures,
    /// TLS handshake failures.
    upstreams: BTreeMap<String, [u64; 7]>,
    /// upstream address → requests by class and time to the response head.
    upstream_requests: BTreeMap<String, HistogramSum>,
    /// handshakes, resumed, alpn http/1.1, alpn none, then failures by reason.
    tls_listeners: BTreeMap<String, [u64; 4 + TLS_FAILURE_REASONS.len()]>,
    no_match: u64,
    open: u64,
    accepted: u64,
    access_log_errors: u64,
    /// (group, caller) → admitted requests.
    auth_allowed: BTreeMap<(String, String), u64>,
    /// (group, code) → denied requests.
    auth_denied: BTreeMap<(String, String), u64>,
    /// (limit, outcome) → requests.
    limits: BTreeMap<(String, String), u64>,
    /// (group, version, environment) → requests by class.
    versions: BTreeMap<(String, String, String), HistogramSum>,
    /// (group, route, method, status) → responses.
    codes: BTreeMap<(String, String, String, u16), u64>,
    nonce_store_full: u64,
    retry_budget_exhausted: u64,
    spliced_bytes: u64,
    tunnels_open: u64,
    parked: u64,
    tunnels_ended: [u64; 4],
    /// In (from clients), out (to clients).
    tunnel_bytes: [u64; 2],
}

fn totals(shards: &[Arc<ShardStats>]) -> Totals {
    let mut t = Totals::default();
    for s in shards {
        t.all.add(&s.all);
        s.for_each_route(|g, r, h| t.routes.entry((g.to_string(), r.to_string())).or_default().add(h));
        s.for_each_upstream(|a, u| {
            let e = t.upstreams.entry(a.to_string()).or_default();
            for (sum, c) in e.iter_mut().zip([
                &u.connect_errors,
                &u.timeouts,
                &u.retries,
                &u.idle,
                &u.closed_idle,
                &u.tls_verify_failures,
                &u.tls_handshake_failures,
            ]) {
                *sum = sum.wrapping_add(c.get());
            }
            t.upstream_requests
                .entry(a.to_string())
                .or_default()
                .add(&u.requests);
        });
        s.for_each_tls_listener(|a, l| {
            let e = t.tls_listeners.entry(a.to_string()).or_default();
            let counters = [&l.handshakes, &l.resumed, &l.alpn_http11, &l.alpn_none]
                .into_iter()
                .chain(l.failures.iter());
            for (sum, c) in e.iter_mut().zip(counters) {
                *sum += c.get();
            }
        });
        t.no_match += s.no_match.get();
        t.open = t.open.wrapping_add(s.open_connections.get());
        t.parked = t.parked.wrapping_add(s.parked_connections.get());
        t.accepted += s.accepted.get();
        t.access_log_errors += s.access_log_errors.get();
        t.nonce_store_full += s.nonce_store_full.get();
        t.retry_budget_exhausted += s.retry_budget_exhausted.get();
        t.spliced_bytes += s.spliced_bytes.get();
        t.tunnels_open = t.tunnels_open.wrapping_add(s.tunnels_open.get());
        for (sum, c) in t.tunnels_ended.iter_mut().zip(&s.tunnels_ended) {
            *sum += c.get();
        }
        t.tunnel_bytes[0] += s.tunnel_bytes_in.get();
        t.tunnel_bytes[1] += s.tunnel_bytes_out.get();
        s.for_each_route_code(|g, r, m, code, n| {
            *t.codes
                .entry((g.to_string(), r.to_string(), m.to_string(), code))
                .or_default() += n;
        });
        s.for_each_version(|g, v, env, h| {
            t.versions
                .entry((g.to_string(), v.to_string(), env.to_string()))
                .or_default()
                .add(h)
        });
        s.each_limit(|l, o, n| *t.limits.entry((l.to_string(), o.to_string())).or_default() += n);
        s.for_each_auth(|g, c, allowed, n| {
            let m = if allowed {
                &mut t.auth_allowed
            } else {
                &mut t.auth_denied
            };
            *m.entry((g.to_string(), c.to_string())).or_default() += n;
        });
    }
    t
}

/// The `/metrics` exposition.
pub(super) fn metrics(state: &AdminState) -> String {
    let t = totals(&state.shards);
    let mut e = Exposition::default();

    e.family(
        "ringway_requests_total",
        Kind::Counter,
        "Routed requests by group, route and response status class.",
    );
    for ((g, r), h) in &t.routes {
        for (class, &n) in CLASSES.iter().zip(&h.responses).skip(1) {
            if n > 0 {
                e.sample(
                    "ringway_requests_total",
                    &[("group", g), ("route", r), ("class", class)],
                    n,
                );
            }
        }
    }
    e.family(
        "ringway_response_body_bytes_total",
        Kind::Counter,
        "Response body bytes sent to clients, by group and route.",
    );
    for ((g, r), h) in &t.routes {
        e.sample(
            "ringway_response_body_bytes_total",
            &[("group", g), ("route", r)],
            h.body_bytes,
        );
    }
    e.family(
        "ringway_request_body_bytes_total",
        Kind::Counter,
        "Request body bytes received with a Content-Length, by group and route.",
    );
    for ((g, r), h) in &t.routes {
        e.sample(
            "ringway_request_body_bytes_total",
            &[("group", g), ("route", r)],
            h.request_bytes,
        );
    }
    e.family(
        "ringway_route_responses_total",
        Kind::Counter,
        "Routed responses by group, route, method (common ones by name, else OTHER) and status code.",
    );
    for ((g, r, m, code), n) in &t.codes {
        let code = code.to_string();
        e.sample(
            "ringway_route_responses_total",
            &[("group", g), ("route", r), ("method", m), ("code", &code)],
            n,
        );
    }
    e.family(
        "ringway_version_requests_total",
        Kind::Counter,
        "Requests of versioned groups by group, the version served, environment and status class.",
    );
    for ((g, v, env), h) in &t.versions {
        for (class, &n) in CLASSES.iter().zip(&h.responses).skip(1) {
            if n > 0 {
                e.sample(
                    "ringway_version_requests_total",
                    &[
                        ("group", g),
                        ("version", v),
                        ("environment", env),
                        ("class", class),
                    ],
                    n,
                );
            }
        }
    }
    e.family(
        "ringway_request_duration_seconds",
        Kind::Histogram,
        "Time from a routed request's head to the end of its response, by route.",
    );
    for ((g, r), h) in &t.routes {
        if h.buckets.iter().any(|&n| n > 0) {
            e.histogram(
                "ringway_request_duration_seconds",
                &[("group", g), ("route", r)],
                h,
            );
        }
    }
    e.family(
        "ringway_responses_total",
        Kind::Counter,
        "Every response by status class, routed or not (no match, bad requests).",
    );
    for (class, &n) in CLASSES.iter().zip(&t.all.responses).skip(1) {
        e.sample("ringway_responses_total", &[("class", class)], n);
    }
    e.family(
        "ringway_no_match_total",
        Kind::Counter,
        "Requests that matched no rule.",
    );
    e.sample("ringway_no_match_total", &[], t.no_match);

    let upstream_families = [
        (
            "ringway_upstream_connect_errors_total",
            Kind::Counter,
            "Failed connection attempts to an upstream (refused, failed or timed out).",
        ),
        (
            "ringway_upstream_timeouts_total",
            Kind::Counter,
            "Requests whose upstream response head did not arrive in time.",
        ),
        (
            "ringway_upstream_retries_total",
            Kind::Counter,
            "Retries after an attempt to this upstream failed: a pooled connection that turned out closed, or a route's retry policy.",
        ),
        (
            "ringway_upstream_idle_connections",
            Kind::Gauge,
            "Idle keep-alive connections pooled for an upstream, all shards together.",
        ),
        (
            "ringway_upstream_closed_idle_total",
            Kind::Counter,
            "Idle pooled connections the upstream closed, dropped before any request used them.",
        ),
        (
            "ringway_upstream_tls_verify_failures_total",
            Kind::Counter,
            "TLS handshakes to an upstream whose certificate did not verify (answered 502).",
        ),
        (
            "ringway_upstream_tls_handshake_failures_total",
            Kind::Counter,
            "TLS handshakes to an upstream that failed for another reason (answered 502).",
        ),
    ];
    for (i, (name, kind, help)) in upstream_families.iter().enumerate() {
        e.family(name, *kind, help);
        for (addr, v) in &t.upstreams {
            e.sample(name, &[("upstream", addr)], v[i]);
        }
    }

    // Which endpoints each address serves, from the current config.
    let snap = state.current();
    let mut names: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for e in &snap.config.endpoints {
        let (name, addrs): (&str, Vec<String>) = match e {
            crate::config::EndpointDef::Single { name, upstream } => (name, vec![upstream.addr.to_string()]),
            crate::config::EndpointDef::Group { name, members, .. } => {
                (name, members.iter().map(|(u, _)| u.addr.to_string()).collect())
            }
        };
        for a in addrs {
            let list = names.entry(a).or_default();
            if !list.contains(&name) {
                list.push(name);
            }
        }
    }
    health(&mut e, &snap);
    e.family(
        "ringway_upstream_info",
        Kind::Gauge,
        "Always 1: an upstream address and an endpoint (or endpoint group) it serves, one series per pair.",
    );
    for (addr, list) in &names {
        for name in list {
            e.sample(
                "ringway_upstream_info",
                &[("upstream", addr), ("endpoint", name)],
                1,
            );
        }
    }
    e.family(
        "ringway_upstream_requests_total",
        Kind::Counter,
        "Requests sent to an upstream, by the status class the client got (502/504 included).",
    );
    for (addr, h) in &t.upstream_requests {
        for (class, &n) in CLASSES.iter().zip(&h.responses).skip(1) {
            if n > 0 {
                e.sample(
                    "ringway_upstream_requests_total",
                    &[("upstream", addr), ("class", class)],
                    n,
                );
            }
        }
    }
    e.family(
        "ringway_upstream_response_seconds",
        Kind::Histogram,
        "Time from a request's head to its upstream's response head, by upstream.",
    );
    for (addr, h) in &t.upstream_requests {
        if h.buckets.iter().any(|&n| n > 0) {
            e.histogram("ringway_upstream_response_seconds", &[("upstream", addr)], h);
        }
    }

    let listener_families = [
        (
            "ringway_tls_handshakes_total",
            "Completed client TLS handshakes per TLS listener.",
        ),
        (
            "ringway_tls_resumed_total",
            "Client TLS handshakes that resumed a session (ticket or session id).",
        ),
    ];
    for (i, (name, help)) in listener_families.iter().enumerate() {
        e.family(name, Kind::Counter, help);
        for (addr, v) in &t.tls_listeners {
            e.sample(name, &[("listener", addr)], v[i]);
        }
    }
    e.family(
        "ringway_tls_alpn_total",
        Kind::Counter,
        "Completed client TLS handshakes by negotiated ALPN protocol (none: no ALPN).",
    );
    for (addr, v) in &t.tls_listeners {
        e.sample(
            "ringway_tls_alpn_total",
            &[("listener", addr), ("protocol", "http/1.1")],
            v[2],
        );
        e.sample(
            "ringway_tls_alpn_total",
            &[("listener", addr), ("protocol", "none")],
            v[3],
        );
    }
    e.family(
        "ringway_tls_handshake_failures_total",
        Kind::Counter,
        "Failed client TLS handshakes by reason (overload: over max_handshakes in flight).",
    );
    for (addr, v) in &t.tls_listeners {
        for (i, reason) in TLS_FAILURE_REASONS.iter().enumerate() {
            e.sample(
                "ringway_tls_handshake_failures_total",
                &[("listener", addr), ("reason", reason)],
                v[4 + i],
            );
        }
    }

    e.family(
        "ringway_open_connections",
        Kind::Gauge,
        "Open client connections.",
    );
    e.sample("ringway_open_connections", &[], t.open);
    e.family(
        "ringway_parked_connections",
        Kind::Gauge,
        "Idle keep-alive client connections parked: idle for a second, their read buffer and request state given back, waiting on a 64-byte read (plain TCP: with no timer of its own).",
    );
    e.sample("ringway_parked_connections", &[], t.parked);
    e.family(
        "ringway_spliced_bytes_total",
        Kind::Counter,
        "Response body bytes moved from upstream to client with splice(2), never copied through ringway (upstream.splice_min_bytes).",
    );
    e.sample("ringway_spliced_bytes_total", &[], t.spliced_bytes);
    e.family(
        "ringway_retry_budget_exhausted_total",
        Kind::Counter,
        "Retries a route's policy wanted that the shard's retry budget refused.",
    );
    e.sample(
        "ringway_retry_budget_exhausted_total",
        &[],
        t.retry_budget_exhausted,
    );
    e.family(
        "ringway_tunnels_open",
        Kind::Gauge,
        "Upgraded connections (WebSocket and other tunnels) open now.",
    );
    e.sample("ringway_tunnels_open", &[], t.tunnels_open);
    e.family(
        "ringway_tunnels_total",
        Kind::Counter,
        "Tunnels ended, by how: both sides closed, idle past upstream.upgrade_idle_timeout, a failed read or write, or still open when a drain's time was up.",
    );
    for (end, n) in crate::io::tunnel::End::ALL.iter().zip(t.tunnels_ended) {
        e.sample("ringway_tunnels_total", &[("end", end.as_str())], n);
    }
    e.family(
        "ringway_tunnel_bytes_total",
        Kind::Counter,
        "Bytes relayed through tunnels: in from clients, out to clients.",
    );
    e.sample(
        "ringway_tunnel_bytes_total",
        &[("direction", "in")],
        t.tunnel_bytes[0],
    );
    e.sample(
        "ringway_tunnel_bytes_total",
        &[("direction", "out")],
        t.tunnel_bytes[1],
    );
    e.family(
        "ringway_accepted_connections_total",
        Kind::Counter,
        "Client connections accepted.",
    );
    e.sample("ringway_accepted_connections_total", &[], t.accepted);
    e.family(
        "ringway_access_log_errors_total",
        Kind::Counter,
        "Access log writes or opens that failed (their lines are lost).",
    );
    e.sample("ringway_access_log_errors_total", &[], t.access_log_errors);
    e.family(
        "ringway_auth_allowed_total",
        Kind::Counter,
        "Requests admitted by a group's auth, by group and caller (subscription key id or access key).",
    );
    for ((g, c), n) in &t.auth_allowed {
        e.sample("ringway_auth_allowed_total", &[("group", g), ("caller", c)], n);
    }
    e.family(
        "ringway_auth_denied_total",
        Kind::Counter,
        "Requests refused by a group's auth, by group and code (the error body's code).",
    );
    for ((g, c), n) in &t.auth_denied {
        e.sample("ringway_auth_denied_total", &[("group", g), ("code", c)], n);
    }
    limit_families(&mut e, &t, state);
    e.family(
        "ringway_auth_nonce_store_full_total",
        Kind::Counter,
        "Signed requests refused with 503 because the nonce store had no room (raise access.nonce_capacity).",
    );
    e.sample("ringway_auth_nonce_store_full_total", &[], t.nonce_store_full);

    e.family(
        "ringway_config_reloads_total",
        Kind::Counter,
        "Config reloads by result: ok (installed) or failed (the running config stays).",
    );
    let ok = state.reloads_ok.load(Ordering::Relaxed);
    let failed = state.reloads_failed.load(Ordering::Relaxed);
    e.sample("ringway_config_reloads_total", &[("result", "ok")], ok);
    e.sample("ringway_config_reloads_total", &[("result", "failed")], failed);
    e.family(
        "ringway_config_version",
        Kind::Gauge,
        "The version of the current config snapshot (1 at startup, +1 per successful reload).",
    );
    e.sample("ringway_config_version", &[], state.current().version);
    e.family(
        "ringway_shard_config_version",
        Kind::Gauge,
        "The config snapshot version each shard serves.",
    );
    for (i, s) in state.shards.iter().enumerate() {
        e.sample(
            "ringway_shard_config_version",
            &[("shard", &i.to_string())],
            s.version.get(),
        );
    }
    e.family(
        "ringway_start_time_seconds",
        Kind::Gauge,
        "When the process started, in seconds since the Unix epoch.",
    );
    let start = state.started.duration_since(UNIX_EPOCH).unwrap_or_default();
    e.sample("ringway_start_time_seconds", &[], start.as_secs());
    e.family(
        "ringway_build_info",
        Kind::Gauge,
        "The binary: version, commit and build profile (always 1).",
    );
    e.sample(
        "ringway_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", env!("RINGWAY_COMMIT")),
            ("profile", env!("RINGWAY_PROFILE")),
        ],
        1,
    );
    e.finish()
}

/// Rate limits: decisions by limit and outcome, the node's per-client tables, and
/// the Redis agent of cluster limits.
fn limit_families(e: &mut Exposition, t: &Totals, state: &AdminState) {
    e.family(
        "ringway_limit_requests_total",
        Kind::Counter,
        "Requests a rate limit decided, by limit and outcome (allowed, refused).",
    );
    for ((l, o), n) in &t.limits {
        e.sample("ringway_limit_requests_total", &[("limit", l), ("outcome", o)], n);
    }
    let snap = state.current();
    e.family(
        "ringway_limit_tracked",
        Kind::Gauge,
        "Keys (callers, client addresses) a limit's node table tracks now.",
    );
    for l in &snap.limits {
        e.sample(
            "ringway_limit_tracked",
            &[("limit", &l.def.name)],
            l.tracked() as u64,
        );
    }
    e.family(
        "ringway_limit_untracked_total",
        Kind::Counter,
        "Leases of client_ip limits taken from the shared overflow bucket because the table was at max_clients.",
    );
    for l in &snap.limits {
        let n = l.untracked.load(Ordering::Relaxed);
        e.sample("ringway_limit_untracked_total", &[("limit", &l.def.name)], n);
    }
    let Some(agent) = snap.limits.iter().find_map(|l| l.agent()) else {
        return;
    };
    e.family(
        "ringway_limit_redis_up",
        Kind::Gauge,
        "1 while the last command to the cluster limits' Redis succeeded.",
    );
    e.sample("ringway_limit_redis_up", &[], u64::from(agent.is_up()));
    e.family(
        "ringway_limit_redis_commands_total",
        Kind::Counter,
        "Lease and return commands sent to Redis (one EVALSHA each).",
    );
    e.sample(
        "ringway_limit_redis_commands_total",
        &[],
        agent.commands.load(Ordering::Relaxed),
    );
    e.family(
        "ringway_limit_redis_errors_total",
        Kind::Counter,
        "Connections or commands to Redis that failed.",
    );
    e.sample(
        "ringway_limit_redis_errors_total",
        &[],
        agent.errors.load(Ordering::Relaxed),
    );
    e.family(
        "ringway_limit_redis_granted_tokens_total",
        Kind::Counter,
        "Tokens Redis granted this instance's leases.",
    );
    e.sample(
        "ringway_limit_redis_granted_tokens_total",
        &[],
        agent.granted.load(Ordering::Relaxed),
    );
}

/// The health of endpoint group members (`docs/upstreams.md`), from the process's
/// shared health state: one series per (group, member).
/// A member's labels.
fn member_labels<'a>(
    g: &'a crate::upstream::health::GroupHealth,
    m: &'a crate::upstream::health::MemberHealth,
) -> [(&'static str, &'a str); 2] {
    [("group", &g.name), ("member", &m.name)]
}

fn health(e: &mut Exposition, snap: &crate::snapshot::Snapshot) {
    use std::sync::atomic::Ordering::Relaxed;
    let now = crate::upstream::health::now_ns();
    let members = || {
        snap.health
            .iter()
            .flatten()
            .flat_map(|g| g.members.iter().map(move |m| (&**g, m)))
    };
    e.family(
        "ringway_upstream_member_up",
        Kind::Gauge,
        "1 while an endpoint group member may be picked; 0 while it is ejected or failing its health checks.",
    );
    for (g, m) in members() {
        let up = !m.is_down() && !m.is_ejected(now);
        e.sample("ringway_upstream_member_up", &member_labels(g, m), u64::from(up));
    }
    e.family(
        "ringway_upstream_ejections_total",
        Kind::Counter,
        "Times a member was ejected for consecutive failures (outlier detection).",
    );
    for (g, m) in members() {
        e.sample(
            "ringway_upstream_ejections_total",
            &member_labels(g, m),
            m.ejections_total.load(Relaxed),
        );
    }
    e.family(
        "ringway_upstream_health_checks_total",
        Kind::Counter,
        "Active health check probes of a member, by result.",
    );
    for (g, m) in members().filter(|(g, _)| g.policy.health_check.is_some()) {
        for (result, n) in [
            ("passed", &m.probes_passed_total),
            ("failed", &m.probes_failed_total),
        ] {
            let [group, member] = member_labels(g, m);
            e.sample(
                "ringway_upstream_health_checks_total",
                &[group, member, ("result", result)],
                n.load(Relaxed),
            );
        }
    }
}
