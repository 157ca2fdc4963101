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

mod metrics_page;
mod prometheus;

use crate::observe::metrics::ShardStats;
use crate::snapshot::Snapshot;
use ringway_router::{ActionSpec, PathSpec, PredicateOp, Source as PredicateSource};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

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
            body: metrics_page::metrics(state),
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
            crate::config::EndpointDef::Group { name, lb, members, .. } => json!({
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
