//! The admin port: health, readiness, the active config and Prometheus metrics, served
//! from its own OS thread with blocking std sockets, so a busy shard never delays it and
//! it never touches the data path.
//!
//! | path | answer |
//! |---|---|
//! | `/healthz` | 200 `ok` while the process runs |
//! | `/ready` | 200 when every shard serves the current snapshot version, else 503 naming the shards that lag |
//! | `/config` | JSON: version, hash, source, rules by group, per-shard versions, last reload error, reload counts |
//! | `/metrics` | Prometheus text format (see `docs/admin.md`) |
//!
//! Anything else is 404. One request per connection (`Connection: close`), each with a
//! 2 s deadline (to read the request and to write the answer) and an 8 KiB head
//! limit. Connections are served concurrently, each on its own thread, at most 32 at
//! once (more are answered 503): an idle or slow client never delays a health check.
//!
//! The shards keep their own counters ([`ShardStats`], single writer); a scrape sums
//! them. [`AdminState`] holds what only the control thread changes: the current
//! snapshot, the last reload error and the reload counts.
//!
//! ```no_run
//! # fn demo(snap: std::sync::Arc<ringway::snapshot::Snapshot>, shards: Vec<std::sync::Arc<ringway::observe::metrics::ShardStats>>) -> std::io::Result<()> {
//! use ringway::admin::{spawn, AdminState};
//! let state = std::sync::Arc::new(AdminState::new(snap, shards));
//! let addr = spawn("127.0.0.1:0".parse().unwrap(), state.clone())?;
//! println!("ringway admin on {addr}");
//! # Ok(()) }
//! ```
// The admin thread and the control thread share this state; no shard touches it.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod prometheus;

use crate::observe::metrics::{HistogramSum, ShardStats, TLS_FAILURE_REASONS};
use crate::snapshot::Snapshot;
use prometheus::{Exposition, Kind};
use ringway_router::{ActionSpec, PathSpec, PredicateOp, Source as PredicateSource};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one admin request may take to arrive and to be answered.
const DEADLINE: Duration = Duration::from_secs(2);
/// A larger request head is answered 431.
const MAX_HEAD: usize = 8 * 1024;
/// Header fields parsed in an admin request.
const MAX_HEADERS: usize = 32;

/// What the admin port reports, shared with the control thread.
#[derive(Debug)]
pub struct AdminState {
    shards: Vec<Arc<ShardStats>>,
    /// Written only by the control thread, when a reload succeeds.
    current: RwLock<Arc<Snapshot>>,
    /// The error of the last reload attempt, when it failed (`FILE:LINE:COL: …`).
    last_reload_error: Mutex<Option<String>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Settings the file changed that only a restart applies.
    restart_needed: Mutex<Vec<String>>,
    started: SystemTime,
    started_mono: Instant,
}

impl AdminState {
    /// The shards' counters, in shard order.
    pub fn shard_stats(&self) -> &[Arc<ShardStats>] {
        &self.shards
    }

    /// The state at startup: `snap` is being served by the shards with these counters.
    pub fn new(snap: Arc<Snapshot>, shards: Vec<Arc<ShardStats>>) -> AdminState {
        AdminState {
            shards,
            current: RwLock::new(snap),
            last_reload_error: Mutex::new(None),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            restart_needed: Mutex::new(Vec::new()),
            started: SystemTime::now(),
            started_mono: Instant::now(),
        }
    }

    /// A reload built `snap`, which is being sent to every shard.
    pub fn reload_succeeded(&self, snap: Arc<Snapshot>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = snap;
        *self.last_reload_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.reloads_ok.fetch_add(1, Ordering::Relaxed);
    }

    /// A reload failed; the current snapshot stays. `error` names FILE:LINE:COL.
    pub fn reload_failed(&self, error: String) {
        *self.last_reload_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
        self.reloads_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// A reload found the file's bytes equal to the running version's: an earlier
    /// failure (a typo since undone) no longer describes the file.
    pub fn reload_unchanged(&self) {
        *self.last_reload_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The settings the installed file changes that only a restart applies.
    pub fn set_restart_needed(&self, list: Vec<String>) {
        *self.restart_needed.lock().unwrap_or_else(|e| e.into_inner()) = list;
    }

    /// The snapshot the shards are (or are being) switched to.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn last_reload_error(&self) -> Option<String> {
        self.last_reload_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Connections served at once; more are answered 503 and closed at once.
const MAX_CONNECTIONS: usize = 32;

/// Binds `listen` and serves the admin port from a new thread, each connection on a
/// thread of its own (at most [`MAX_CONNECTIONS`]), so that a load balancer's health
/// check is never queued behind an idle or slow client. Returns the bound address
/// (port 0 is resolved).
pub fn spawn(listen: SocketAddr, state: Arc<AdminState>) -> io::Result<SocketAddr> {
    let listener = bind(listen)?;
    let addr = listener.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("ringway-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(conn) => accept(conn, &state, &active),
                    // Out of file descriptors and the like: back off instead of spinning.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })?;
    Ok(addr)
}

/// Binds the admin port with SO_REUSEPORT, as the data ports are: during a binary
/// upgrade the old and the new process (same user, same config) both serve it, and
/// a scrape reaches one of them. A port held by anything else still fails the bind.
fn bind(listen: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(listen), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&listen.into())?;
    s.listen(128)?;
    Ok(s.into())
}

/// Serves `conn` on its own thread, or refuses it when [`MAX_CONNECTIONS`] are busy.
fn accept(mut conn: TcpStream, state: &Arc<AdminState>, active: &Arc<AtomicUsize>) {
    if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
        active.fetch_sub(1, Ordering::AcqRel);
        let _ = conn.set_write_timeout(Some(Duration::from_millis(100)));
        let _ = conn.write_all(&render(&Answer::text(503, "admin port busy\n"), false));
        return;
    }
    let (state, done) = (state.clone(), active.clone());
    let spawned = std::thread::Builder::new()
        .name("ringway-admin-conn".into())
        .spawn(move || {
            serve(conn, &state);
            done.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response of the admin port.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Answer {
    fn text(status: u16, body: impl Into<String>) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Answers one request on `conn`, then closes it. Errors only end the connection.
fn serve(mut conn: TcpStream, state: &AdminState) {
    let deadline = Instant::now() + DEADLINE;
    let _ = conn.set_write_timeout(Some(DEADLINE));
    let (answer, head_only) = match read_head(&mut conn, deadline) {
        Ok(Some(head)) => match parse(&head) {
            Ok((method, path)) => {
                let head_only = method == "HEAD";
                let answer = if method == "GET" || head_only {
                    route(&path, state)
                } else {
                    Answer::text(405, "only GET and HEAD\n")
                };
                (answer, head_only)
            }
            Err(answer) => (answer, false),
        },
        Ok(None) => (Answer::text(431, "request head too large\n"), false),
        Err(_) => return,
    };
    let _ = conn.write_all(&render(&answer, head_only));
}

/// Reads up to the end of the head. `Ok(None)` when it exceeds [`MAX_HEAD`].
fn read_head(conn: &mut TcpStream, deadline: Instant) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        conn.set_read_timeout(Some(left))?;
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if memchr::memmem::find(&head[from..], b"\r\n\r\n").is_some() {
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

/// The method and the path (without the query) of a complete head.
fn parse(head: &[u8]) -> Result<(String, String), Answer> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Answer::text(400, "incomplete request head\n")),
        Err(httparse::Error::TooManyHeaders) => return Err(Answer::text(431, "too many header fields\n")),
        Err(e) => return Err(Answer::text(400, format!("bad request: {e}\n"))),
    }
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default();
    let path = target.split(['?', '#']).next().unwrap_or_default().to_string();
    Ok((method, path))
}

fn route(path: &str, state: &AdminState) -> Answer {
    match path {
        "/healthz" => Answer::text(200, "ok\n"),
        "/ready" => ready(state),
        "/config" => Answer {
            status: 200,
            content_type: "application/json",
            body: config_json(state),
        },
        "/metrics" => Answer {
            status: 200,
            content_type: prometheus::CONTENT_TYPE,
            body: metrics(state),
        },
        _ => Answer::text(404, "not found: try /healthz, /ready, /config or /metrics\n"),
    }
}

fn render(a: &Answer, head_only: bool) -> Vec<u8> {
    let reason = match a.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n",
        a.status,
        a.content_type,
        a.body.len()
    );
    if a.status == 405 {
        out.push_str("allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(a.body.as_bytes());
    }
    out
}

/// 200 when every shard reports the current version; 503 naming those that lag.
fn ready(state: &AdminState) -> Answer {
    let version = state.current().version;
    let lagging: Vec<String> = state
        .shards
        .iter()
        .enumerate()
        .filter(|(_, s)| s.version.get() != version)
        .map(|(i, s)| format!("shard {i} on version {}", s.version.get()))
        .collect();
    if lagging.is_empty() {
        Answer::text(
            200,
            format!("ready: {} shard(s) on version {version}\n", state.shards.len()),
        )
    } else {
        Answer::text(
            503,
            format!("not ready: version {version} expected; {}\n", lagging.join(", ")),
        )
    }
}

/// The active config as JSON.
fn config_json(state: &AdminState) -> String {
    use serde_json::{json, Value};
    let snap = state.current();
    let config = &snap.config;
    let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
    for (rule, route) in config.router.rules.iter().zip(&config.routes) {
        let path = match &rule.path {
            PathSpec::Exact(p) => json!({"kind": "exact", "text": p}),
            PathSpec::Prefix(p) => json!({"kind": "prefix", "text": p}),
            PathSpec::Regex(p) => json!({"kind": "regex", "text": p}),
        };
        let action = match (&rule.action, &route.mock) {
            (ActionSpec::Proxy { to }, _) => json!({"kind": "proxy", "to": to}),
            (ActionSpec::Local, Some(m)) => json!({"kind": "mock", "status": m.status}),
            (ActionSpec::Local, None) => json!({"kind": "mock"}),
        };
        let predicates: Vec<Value> = rule
            .predicates
            .iter()
            .map(|p| {
                let (op, value) = match &p.op {
                    PredicateOp::Equals(v) => ("equals", json!(v)),
                    PredicateOp::OneOf(v) => ("one_of", json!(v)),
                    PredicateOp::Prefix(v) => ("prefix", json!(v)),
                    PredicateOp::Regex(v) => ("regex", json!(v)),
                    PredicateOp::Present => ("present", json!(true)),
                    PredicateOp::Absent => ("absent", json!(true)),
                };
                let source = match p.source {
                    PredicateSource::Query => "query",
                    PredicateSource::Header => "header",
                };
                json!({"source": source, "name": p.name, op: value})
            })
            .collect();
        // The effective routing: everything the rule matches on, as compiled.
        let r = json!({
            "name": route.name,
            "hosts": rule.hosts,
            "methods": rule.methods,
            "context_path": rule.context_path,
            "path": path,
            "predicates": predicates,
            "environments": rule.environments.as_ref().unwrap_or(&config.router.environments),
            "versions": route.versions.as_ref().map(|vs| {
                let list = config.groups.get(route.group_index).and_then(|g| g.versions.as_ref());
                vs.iter().filter_map(|&v| list.and_then(|l| l.list.get(v)).cloned()).collect::<Vec<_>>()
            }),
            "action": action,
        });
        match groups.last_mut() {
            Some((g, routes)) if *g == route.group => routes.push(r),
            _ => groups.push((route.group.clone(), vec![r])),
        }
    }
    let source = match &config.source {
        crate::config::ConfigSource::File { path, .. } => path.display().to_string(),
        crate::config::ConfigSource::Embedded { .. } => "embedded".to_string(),
    };
    let shards: Vec<Value> = state
        .shards
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"shard": i, "version": s.version.get()}))
        .collect();
    let v = json!({
        "version": snap.version,
        "hash": format!("{:016x}", snap.hash()),
        "source": source,
        "rules": config.routes.len(),
        "groups": groups
            .into_iter()
            .map(|(name, routes)| {
                let g = config.groups.iter().find(|g| g.name == name);
                json!({
                    "name": name,
                    "auth": g.map_or("none", |g| g.auth.as_str()),
                    "forward_credentials": g.is_some_and(|g| g.forward_credentials),
                    "backend_key": g.and_then(|g| g.backend_key).and_then(|k| config.access.backend_keys.get(k)).map(|k| &k.id),
                    "versions": g.and_then(|g| g.versions.as_ref()).map(|v| json!({
                        "list": v.list,
                        "published": v.published.iter().map(|(e, i)| (e.clone(), json!(v.list[*i]))).collect::<serde_json::Map<_, _>>(),
                    })),
                    "routes": routes,
                })
            })
            .collect::<Vec<_>>(),
        "access": access_json(config),
        "shards": shards,
        "last_reload_error": state.last_reload_error(),
        "restart_needed": state.restart_needed.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        "reloads": {
            "ok": state.reloads_ok.load(Ordering::Relaxed),
            "failed": state.reloads_failed.load(Ordering::Relaxed),
        },
        "uptime_seconds": state.started_mono.elapsed().as_secs(),
        "endpoints": config.endpoints.iter().map(|e| match e {
            crate::config::EndpointDef::Single { name, upstream } => json!({
                "name": name,
                "members": [{"url": format!("{}://{}", if upstream.tls.is_some() { "https" } else { "http" }, upstream.authority), "address": upstream.addr.to_string(), "weight": 1}],
            }),
            crate::config::EndpointDef::Group { name, lb, members } => json!({
                "name": name,
                "lb": lb.as_str(),
                "members": members.iter().map(|(u, w)| json!({
                    "url": format!("{}://{}", if u.tls.is_some() { "https" } else { "http" }, u.authority),
                    "address": u.addr.to_string(),
                    "weight": w,
                })).collect::<Vec<_>>(),
            }),
        }).collect::<Vec<_>>(),
        "tls": config.tls.as_ref().map(|t| json!({
            "listen": t.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "certificates": t.certificates.iter().map(|c| json!({
                "cert": c.cert_path.display().to_string(),
                "names": c.names,
                "not_after": crate::observe::access_log::rfc3339(c.not_after),
            })).collect::<Vec<_>>(),
        })),
    });
    let mut body = serde_json::to_string_pretty(&v).unwrap_or_default();
    body.push('\n');
    body
}

/// `[access]` without a single secret: key ids, access keys (public halves) and
/// the groups each may call.
fn access_json(config: &crate::config::Config) -> serde_json::Value {
    use serde_json::json;
    let a = &config.access;
    let names = |gs: &[usize]| -> Vec<&str> {
        gs.iter()
            .filter_map(|&g| config.groups.get(g).map(|g| g.name.as_str()))
            .collect()
    };
    json!({
        "subscription_key_header": a.key_header,
        "subscription_key_query": a.key_query,
        "signature_skew_seconds": a.skew.as_secs(),
        "nonce_capacity": a.nonce_capacity,
        "max_signed_body": a.max_signed_body,
        "subscription_keys": a.subscription_keys.iter().map(|k| json!({"id": k.id, "groups": names(&k.groups)})).collect::<Vec<_>>(),
        "key_pairs": a.key_pairs.iter().map(|k| json!({"access_key": k.access_key, "groups": names(&k.groups)})).collect::<Vec<_>>(),
        "backend_keys": a.backend_keys.iter().map(|k| json!({"id": k.id, "signed_headers": k.signed_headers})).collect::<Vec<_>>(),
    })
}

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
    /// (group, version, environment) → requests by class.
    versions: BTreeMap<(String, String, String), HistogramSum>,
    /// (group, route, method, status) → responses.
    codes: BTreeMap<(String, String, String, u16), u64>,
    nonce_store_full: u64,
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
        t.accepted += s.accepted.get();
        t.access_log_errors += s.access_log_errors.get();
        t.nonce_store_full += s.nonce_store_full.get();
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
fn metrics(state: &AdminState) -> String {
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
            "Requests retried on a fresh connection after a pooled one turned out closed.",
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
