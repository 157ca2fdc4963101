//! One client connection: read a head, serve the request, repeat while keep-alive
//! holds. The phases of one request are in [`serve_request`]; proxying is in
//! [`crate::proxy`].

use crate::access_log::{RequestFields, ResponseFields};
use crate::http::{
    find_header, parse_request_head, BodyFraming, ChunkedTracker, HeadLimits, HeadScratch, RequestHead,
    Version,
};
use crate::io::{read_append, ReadOutcome};
use crate::local::{error_body, write_error, write_local, ConnHeader, LocalResponse};
use crate::shard::{RequestId, Shard};
use crate::snapshot::{ShardView, UpstreamId};
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use ringway_router::{Origin, RequestView, RouteId};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Initial read buffer of a connection; grows for large heads and bodies, and is
/// shrunk back after. Small so that idle keep-alive connections stay cheap.
const INITIAL_BUF: usize = 2 * 1024;
/// Read size while streaming a request body.
const BODY_READ: usize = 32 * 1024;
/// A request body up to this size is read and discarded when we answer locally, so
/// the connection can be kept; a larger one closes the connection instead.
const DISCARD_LIMIT: u64 = 1 << 20;

/// The client side of one connection.
#[derive(Debug)]
pub struct Client {
    pub io: TcpStream,
    /// Bytes read and not yet consumed start at `pos`.
    pub buf: Vec<u8>,
    pub pos: usize,
    pub peer_ip: Vec<u8>,
    /// What has been sent for the current request (reset when it starts).
    pub sent: Sent,
}

/// What was sent for the current request, as far as the access log needs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sent {
    /// Response body bytes written to the client.
    pub body_bytes: u64,
    /// When the upstream's (final) response head arrived.
    pub upstream_head: Option<Instant>,
}

/// The body bytes of a serialized response: what follows its head.
pub fn body_len(response: &[u8]) -> u64 {
    memchr::memmem::find(response, b"\r\n\r\n").map_or(0, |p| (response.len() - p - 4) as u64)
}

/// Why the request body could not be moved.
#[derive(Debug)]
pub enum BodyError {
    /// The client closed or timed out.
    Client(&'static str),
    /// The body's chunked framing is malformed (or too large to discard).
    Framing(&'static str),
    /// Writing to the upstream failed.
    Upstream,
}

/// Serves one client connection until it closes.
pub async fn serve(shard: Rc<Shard>, io: TcpStream, peer: SocketAddr) {
    let _ = io.set_nodelay(true);
    shard.stats.open_connections.inc();
    shard.stats.accepted.inc();
    let mut c = Client {
        io,
        buf: Vec::with_capacity(INITIAL_BUF),
        pos: 0,
        peer_ip: peer.ip().to_string().into_bytes(),
        sent: Sent::default(),
    };
    let mut first = true;
    // A connection accepted but not yet past its first head counts as in flight, so a
    // drain answers it rather than closing it unanswered.
    shard.in_flight.set(shard.in_flight.get() + 1);
    loop {
        // Nothing per request is held while the connection waits idle: the head
        // scratch is taken when bytes arrive, the snapshot view when the head is whole.
        let mut hs = None;
        let head = read_head(&shard, &mut c, &mut hs, first).await;
        let mut hs = hs.unwrap_or_default();
        let view = shard.view();
        if first {
            shard.in_flight.set(shard.in_flight.get() - 1);
        }
        first = false;
        let keep = match head {
            HeadRead::Head(head) => {
                shard.in_flight.set(shard.in_flight.get() + 1);
                let keep = serve_request(&shard, &view, &mut c, &mut hs, head).await;
                shard.in_flight.set(shard.in_flight.get() - 1);
                keep
            }
            HeadRead::Closed => false,
            HeadRead::Reject(status, reason) => {
                let id = shard.next_request_id();
                let mut out = Vec::with_capacity(256);
                write_error(&mut out, status, reason, id.as_bytes(), ConnHeader::Close);
                let (r, out) = c.io.write_all(out).await;
                shard.stats.all.record(status, 0);
                let mut log = shard.access_log.borrow_mut();
                let req = RequestFields {
                    id: id.as_bytes(),
                    client: &c.peer_ip,
                    method: None,
                    path: None,
                    query: None,
                };
                if let Some(line) = log.begin(&req) {
                    let bytes = if r.is_ok() { body_len(&out) } else { 0 };
                    log.finish(
                        line,
                        &ResponseFields {
                            status,
                            bytes,
                            ..Default::default()
                        },
                    );
                }
                false
            }
        };
        shard.give_head_scratch(hs);
        if !keep || shard.draining.get() {
            break;
        }
        // Keep pipelined bytes; let a grown buffer go.
        c.buf.drain(..c.pos);
        c.pos = 0;
        if c.buf.capacity() > 4 * INITIAL_BUF && c.buf.len() <= INITIAL_BUF {
            c.buf.shrink_to(INITIAL_BUF);
        }
    }
    shard.stats.open_connections.dec();
}

enum HeadRead {
    Head(RequestHead),
    Closed,
    Reject(u16, &'static str),
}

/// Reads until a whole request head is in `c.buf` (from `c.pos == 0`). The first
/// request of a connection must arrive within `client_header_timeout`; later ones may
/// wait `keepalive_timeout` for their first byte, then `client_header_timeout`.
async fn read_head(shard: &Shard, c: &mut Client, hs: &mut Option<HeadScratch>, first: bool) -> HeadRead {
    let limits = shard.view().snap.config.limits.clone();
    let head_limits = HeadLimits {
        max_header_bytes: limits.max_header_bytes,
        max_headers: limits.max_headers,
    };
    let mut deadline = first.then(|| Instant::now() + limits.client_header_timeout);
    loop {
        if !c.buf.is_empty() {
            let hs = hs.get_or_insert_with(|| shard.take_head_scratch());
            match parse_request_head(&c.buf, &head_limits, hs) {
                Ok(Some(h)) => return HeadRead::Head(h),
                Ok(None) => {}
                Err(e) => return HeadRead::Reject(e.status(), e.reason()),
            }
            deadline.get_or_insert_with(|| Instant::now() + limits.client_header_timeout);
        }
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => limits.keepalive_timeout,
        };
        if c.buf.capacity() - c.buf.len() < 1024 {
            c.buf.reserve(c.buf.len().max(INITIAL_BUF));
        }
        let had_bytes = !c.buf.is_empty();
        let (outcome, buf) = read_append(&mut c.io, std::mem::take(&mut c.buf), wait).await;
        c.buf = buf;
        match outcome {
            ReadOutcome::Data(_) => {}
            ReadOutcome::TimedOut if had_bytes => {
                return HeadRead::Reject(408, "request head not received in time")
            }
            ReadOutcome::TimedOut | ReadOutcome::Eof | ReadOutcome::Failed => return HeadRead::Closed,
        }
    }
}

/// What a request turned out to need, decided synchronously from the head.
enum Decision {
    /// Answer with the route's mock response.
    Mock { route: RouteId, status: u16 },
    /// Proxy to `upstream`; `target` is the rendered path and query.
    Proxy {
        route: RouteId,
        upstream: UpstreamId,
        target: Vec<u8>,
    },
    /// Answer an error: no route matched, the path or stage is bad, or the route has
    /// no upstream to go to. The body names the problem and the request id.
    Refuse {
        route: Option<RouteId>,
        status: u16,
        problem: Cow<'static, str>,
    },
}

impl Decision {
    fn route(&self) -> Option<RouteId> {
        match self {
            Decision::Mock { route, .. } | Decision::Proxy { route, .. } => Some(*route),
            Decision::Refuse { route, .. } => *route,
        }
    }
}

/// One request: route → (local answer | proxy). Returns whether the client
/// connection stays open.
async fn serve_request(
    shard: &Shard,
    view: &ShardView,
    c: &mut Client,
    hs: &mut HeadScratch,
    head: RequestHead,
) -> bool {
    let started = Instant::now();
    let id = shard.next_request_id();
    c.sent = Sent::default();
    // The head's bytes do not outlive a streamed body: the log line starts now.
    let log_line = shard.access_log.borrow_mut().begin(&RequestFields {
        id: id.as_bytes(),
        client: &c.peer_ip,
        method: Some(head.method.slice(&c.buf)),
        path: Some(head.path.slice(&c.buf)),
        query: head.query.map(|q| q.slice(&c.buf)),
    });
    let decision = route(shard, view, c, hs, &head);
    let routed = decision.route();
    let upstream = match &decision {
        Decision::Proxy { upstream, .. } => Some(*upstream),
        _ => None,
    };
    let (keep, status) = match decision {
        Decision::Proxy { upstream, target, .. } => {
            let r = crate::proxy::forward(shard, view, c, hs, &head, upstream, &target, &id).await;
            shard.give_small(target);
            r
        }
        Decision::Mock { route, status } => {
            let mock = view
                .snap
                .config
                .routes
                .get(route.index())
                .and_then(|r| r.mock.as_ref());
            let (headers, body): (&[(String, String)], &[u8]) = match mock {
                Some(m) => (&m.headers, &m.body),
                None => (&[], b""),
            };
            let resp = LocalResponse {
                status,
                headers,
                body,
            };
            respond_local(shard, c, &head, &resp, &id).await
        }
        Decision::Refuse { status, problem, .. } => {
            let body = error_body(&problem, id.as_bytes());
            let resp = LocalResponse {
                status,
                headers: &[],
                body: &body,
            };
            respond_local(shard, c, &head, &resp, &id).await
        }
    };
    let micros = started.elapsed().as_micros() as u64;
    shard.stats.all.record(status, micros);
    if let Some(h) = routed.and_then(|r| view.route_stats.get(r.index())) {
        h.record(status, micros);
    }
    if let Some(line) = log_line {
        let rule = routed.and_then(|r| view.snap.config.routes.get(r.index()));
        let upstream_us = c
            .sent
            .upstream_head
            .map(|t| t.saturating_duration_since(started).as_micros());
        shard.access_log.borrow_mut().finish(
            line,
            &ResponseFields {
                group: rule.map(|r| r.group.as_str()),
                route: rule.map(|r| r.name.as_str()),
                upstream: upstream
                    .and_then(|u| view.snap.upstreams.get(u as usize))
                    .map(|u| u.addr),
                status,
                bytes: c.sent.body_bytes,
                duration_us: micros,
                upstream_us: upstream_us.map(|us| us as u64),
            },
        );
    }
    keep
}

/// Routing: environment, router match, mock or target rendering and endpoint pick.
fn route(shard: &Shard, view: &ShardView, c: &Client, hs: &HeadScratch, head: &RequestHead) -> Decision {
    let snap = &view.snap;
    let buf = &c.buf[..];
    let env = match &snap.stage_header {
        Some(name) => match find_header(buf, hs.headers(), name) {
            Some(v) => match std::str::from_utf8(v).ok().and_then(|v| view.router.env_id(v)) {
                Some(e) => e,
                None => {
                    return Decision::Refuse {
                        route: None,
                        status: 400,
                        problem: "unknown stage (environment) requested".into(),
                    }
                }
            },
            None => snap.default_env,
        },
        None => snap.default_env,
    };
    let path = if head.path.is_empty() {
        &b"/"[..]
    } else {
        head.path.slice(buf)
    };
    let query = head.query.map(|q| q.slice(buf));
    let req = RequestView {
        method: head.method.slice(buf),
        host: head.host.map(|h| h.slice(buf)),
        path,
        query,
        env,
    };
    let mut ms = shard.match_scratch.borrow_mut();
    let headers = hs
        .headers()
        .iter()
        .map(|h| (h.name.slice(buf), h.value.slice(buf)));
    let route = match view.router.match_request(&req, headers, &mut ms) {
        Err(e) => {
            return Decision::Refuse {
                route: None,
                status: 400,
                problem: e.to_string().into(),
            }
        }
        Ok(None) => {
            shard.stats.no_match.inc();
            return Decision::Refuse {
                route: None,
                status: snap.config.server.no_match_status,
                problem: "no route matches this request".into(),
            };
        }
        Ok(Some(r)) => r,
    };
    if let Some(m) = snap
        .config
        .routes
        .get(route.index())
        .and_then(|r| r.mock.as_ref())
    {
        return Decision::Mock {
            route,
            status: m.status,
        };
    }
    let mut target = shard.take_small();
    let upstream = match view.router.render_target(route, &ms, query, &mut target) {
        Some(Origin::Endpoint(e)) => view.balancer.pick(snap, *e),
        Some(o) => snap.literal_upstream(o),
        None => None,
    };
    match upstream {
        Some(upstream) => Decision::Proxy {
            route,
            upstream,
            target,
        },
        None => {
            shard.give_small(target);
            Decision::Refuse {
                route: Some(route),
                status: 503,
                problem: "no upstream endpoint available for this route".into(),
            }
        }
    }
}

/// Answers locally. A request body is read and discarded first when it is small
/// enough; otherwise (or with `Expect: 100-continue`, where the client waits) the
/// connection is closed after the response.
pub async fn respond_local(
    shard: &Shard,
    c: &mut Client,
    head: &RequestHead,
    resp: &LocalResponse<'_>,
    id: &RequestId,
) -> (bool, u16) {
    c.pos = head.head_len;
    let mut keep = head.keep_alive && !shard.draining.get();
    let mut bad_body = None;
    match head.framing {
        BodyFraming::None => {}
        _ if head.expect_continue => keep = false,
        BodyFraming::Length(n) if n > DISCARD_LIMIT => keep = false,
        framing if keep => {
            let timeout = shard.view().snap.config.limits.keepalive_timeout;
            match pump_body(c, framing, None, Vec::new(), timeout, DISCARD_LIMIT).await {
                Ok(()) => {}
                Err(BodyError::Framing(why)) => bad_body = Some(why),
                Err(_) => return (false, resp.status),
            }
        }
        _ => {}
    }
    let mut out = shard.take_small();
    let head_only = head.is_head(&c.buf);
    let status = match bad_body {
        // The body is malformed: that is the answer, and the connection closes.
        Some(why) => {
            write_error(&mut out, 400, why, id.as_bytes(), ConnHeader::Close);
            keep = false;
            400
        }
        None => {
            let conn = match (keep, head.version) {
                (false, _) => ConnHeader::Close,
                (true, Version::Http10) => ConnHeader::KeepAlive,
                (true, Version::Http11) => ConnHeader::None,
            };
            write_local(&mut out, resp, id.as_bytes(), conn, head_only);
            resp.status
        }
    };
    let (r, out) = c.io.write_all(out).await;
    if r.is_ok() {
        c.sent.body_bytes += body_len(&out);
    }
    shard.give_small(out);
    (keep && r.is_ok(), status)
}

/// Moves the request body, starting with the bytes at `c.buf[c.pos..]`, to `sink`
/// (or discards it when `sink` is `None`), after first writing `out` (for example
/// the upstream request head) together with the first body bytes in one write.
/// Leaves `c.pos` after the body; bytes of a pipelined next request stay in `c.buf`.
pub async fn pump_body(
    c: &mut Client,
    framing: BodyFraming,
    mut sink: Option<&mut TcpStream>,
    mut out: Vec<u8>,
    read_timeout: Duration,
    limit: u64,
) -> Result<(), BodyError> {
    let mut remaining = match framing {
        BodyFraming::None => 0,
        BodyFraming::Length(n) => n,
        BodyFraming::Chunked => u64::MAX,
    };
    let mut tracker = ChunkedTracker::new();
    let mut total = 0u64;
    loop {
        // Take what the buffer holds of the body.
        let avail = &c.buf[c.pos..];
        let (take, done) = match framing {
            BodyFraming::None => (0, true),
            BodyFraming::Length(_) => {
                let k = remaining.min(avail.len() as u64) as usize;
                remaining -= k as u64;
                (k, remaining == 0)
            }
            BodyFraming::Chunked => {
                let p = tracker.feed(avail).map_err(|e| BodyError::Framing(e.reason()))?;
                (p.consumed, p.done)
            }
        };
        total += take as u64;
        if sink.is_none() && total > limit {
            return Err(BodyError::Framing("request body too large to discard"));
        }
        if let Some(up) = sink.as_deref_mut() {
            out.extend_from_slice(&c.buf[c.pos..c.pos + take]);
            if !out.is_empty() {
                let (r, o) = up.write_all(out).await;
                out = o;
                r.map_err(|_| BodyError::Upstream)?;
                out.clear();
            }
        }
        c.pos += take;
        if done {
            return Ok(());
        }
        // Everything buffered was body: read more.
        c.buf.clear();
        c.pos = 0;
        if c.buf.capacity() < BODY_READ {
            c.buf.reserve(BODY_READ);
        }
        let (outcome, buf) = read_append(&mut c.io, std::mem::take(&mut c.buf), read_timeout).await;
        c.buf = buf;
        match outcome {
            ReadOutcome::Data(_) => {}
            ReadOutcome::TimedOut => return Err(BodyError::Client("request body not received in time")),
            ReadOutcome::Eof => return Err(BodyError::Client("client closed the connection mid-body")),
            ReadOutcome::Failed => return Err(BodyError::Client("client connection failed mid-body")),
        }
    }
}

/// True for methods that may be retried on a fresh connection (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// HTTP/1.0 clients cannot take 1xx interim responses.
pub fn takes_interim(head: &RequestHead) -> bool {
    head.version == Version::Http11
}
