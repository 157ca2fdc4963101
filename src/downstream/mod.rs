//! One client connection: read a head, hand the request to the proxy phases,
//! repeat while keep-alive holds.
//!
//! This layer owns what is per connection and per protocol: the read buffer, the
//! head deadlines (`client_header_timeout` for a head in progress,
//! `keepalive_timeout` for an idle connection), rejection of a head that cannot be
//! parsed, and the in-flight count a drain waits on. What is per request is
//! [`crate::proxy::serve_request`]'s. The protocol is HTTP/1.1 over [`Conn`], plain
//! or TLS (`tls.rs`: the handshake, its deadline and the per-shard limit on
//! handshakes in flight); HTTP/2 (`h2.rs`, whose streams feed the same phases) joins
//! here.

mod tls;

pub use tls::serve_tls;

use crate::http::{parse_request_head, HeadLimits, HeadScratch, RequestHead};
use crate::io::{Conn, ReadOutcome};
use crate::observe::access_log::{RequestFields, ResponseFields};
use crate::proxy::local::{body_len, write_error, ConnHeader};
use crate::proxy::{serve_request, ClientConn, Exchange};
use crate::shard::Shard;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Initial read buffer of a connection; grows for large heads and bodies, and is
/// shrunk back after.
const INITIAL_BUF: usize = 2 * 1024;

/// A keep-alive connection that has been idle this long is parked: its read buffer
/// is given back and the read it waits on gets [`PARKED_BUF`] bytes, so that ten
/// thousand idle clients cost little more than their sockets. (nginx frees its
/// buffers when a connection goes idle and waits on epoll readiness; an io_uring
/// read needs its buffer while it waits, hence the small one.) A busy connection
/// never waits this long, so it never pays the second read a parked one does.
const PARK_AFTER: Duration = Duration::from_secs(1);

/// The read buffer of a parked connection: the first bytes of its next request
/// land here, then the buffer grows as for any head.
const PARKED_BUF: usize = 64;

/// Serves one client connection until it closes.
pub async fn serve(shard: Rc<Shard>, io: Conn, peer: SocketAddr) {
    serve_with(shard, io, peer, None).await
}

/// [`serve`], for a connection whose client presented a verified certificate
/// (`client_cert`: the `x-forwarded-client-cert` value).
pub(crate) async fn serve_with(shard: Rc<Shard>, io: Conn, peer: SocketAddr, client_cert: Option<Box<[u8]>>) {
    shard.stats.open_connections.inc();
    shard.stats.accepted.inc();
    let mut c = ClientConn {
        io,
        buf: Vec::with_capacity(INITIAL_BUF),
        pos: 0,
        peer_ip: peer.ip().to_string().into_bytes(),
        client_cert,
    };
    // A connection accepted but not yet past its first head counts as in flight, so a
    // drain answers it rather than closing it unanswered.
    shard.in_flight.set(shard.in_flight.get() + 1);
    // This future is what an idle connection's task holds, and its size is that of
    // its largest await: the busy part of the connection's life is boxed, so that
    // a parked connection holds only its small read. The box is made when the
    // connection opens and again each time it leaves the parking lot, never per
    // request.
    loop {
        let (conn, park) = Box::pin(serve_busy(shard.clone(), c)).await;
        c = conn;
        let Some(until) = park else {
            break;
        };
        // Idle for PARK_AFTER: the buffer goes back, and a small one waits for the
        // next request.
        c.buf = Vec::new();
        let small = Vec::with_capacity(PARKED_BUF);
        shard.stats.parked_connections.inc();
        let (outcome, buf) = c.io.read_parked(&shard.parked, small, until).await;
        shard.stats.parked_connections.dec();
        c.buf = buf;
        if !matches!(outcome, ReadOutcome::Data(_)) {
            break;
        }
        // A request has begun: it counts in flight until its head is whole, as a
        // new connection's first does, so that a drain answers it rather than
        // dropping it, and the rest of its head has client_header_timeout.
        shard.in_flight.set(shard.in_flight.get() + 1);
    }
    // TLS: a close_notify, so that a client reading to EOF sees a clean end.
    Box::pin(c.io.close()).await;
    shard.stats.open_connections.dec();
}

/// Serves requests on `c` while it stays busy: hands it back to be parked until the
/// returned keep-alive deadline, or (`None`) to be closed. Its first head is the
/// connection's first or the first after parking: counted in flight by the caller,
/// and due within `client_header_timeout`.
async fn serve_busy(shard: Rc<Shard>, mut c: ClientConn) -> (ClientConn, Option<Instant>) {
    let mut first = true;
    loop {
        // Nothing per request is held while the connection waits idle: the head
        // scratch is taken when bytes arrive, the snapshot view when the head is whole.
        let mut hs = None;
        let head = read_head(&shard, &mut c, &mut hs, first).await;
        let hs = hs.unwrap_or_default();
        let view = shard.view();
        if first {
            shard.in_flight.set(shard.in_flight.get() - 1);
        }
        first = false;
        let keep = match head {
            HeadRead::Head(head) => {
                shard.in_flight.set(shard.in_flight.get() + 1);
                let mut x = Exchange::new(&shard, &view, &mut c, head, &hs);
                let outcome = serve_request(&mut x).await;
                shard.in_flight.set(shard.in_flight.get() - 1);
                outcome.keeps_alive()
            }
            HeadRead::Park(until) => {
                shard.give_head_scratch(hs);
                return (c, Some(until));
            }
            HeadRead::Closed => false,
            HeadRead::Reject(status, reason) => {
                reject(&shard, &mut c, status, reason).await;
                false
            }
        };
        shard.give_head_scratch(hs);
        if !keep || shard.draining.get() {
            return (c, None);
        }
        // Keep pipelined bytes; let a grown buffer go.
        c.buf.drain(..c.pos);
        c.pos = 0;
        if c.buf.capacity() > 4 * INITIAL_BUF && c.buf.len() <= INITIAL_BUF {
            c.buf.shrink_to(INITIAL_BUF);
        }
    }
}

/// What reading a request head came to.
enum HeadRead {
    Head(RequestHead),
    /// Idle for [`PARK_AFTER`] with nothing read: park until this keep-alive
    /// deadline.
    Park(Instant),
    Closed,
    /// The head cannot be served: answer `status` naming the reason, and close.
    Reject(u16, &'static str),
}

/// Answers a head that cannot be parsed, logs it, and leaves the connection to be
/// closed (its framing is unknown).
async fn reject(shard: &Shard, c: &mut ClientConn, status: u16, reason: &'static str) {
    let started = Instant::now();
    let id = shard.next_request_id();
    let mut out = Vec::with_capacity(256);
    write_error(&mut out, status, reason, id.as_bytes(), ConnHeader::Close);
    let (r, out) = c.io.write_all(out).await;
    shard
        .stats
        .all
        .record(status, started.elapsed().as_micros() as u64);
    let mut log = shard.access_log.borrow_mut();
    let req = RequestFields {
        id: id.as_bytes(),
        client: &c.peer_ip,
        method: None,
        path: None,
        query: None,
        host: None,
        protocol: None,
        user_agent: None,
        referer: None,
        request_bytes: None,
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
}

/// Reads until a whole request head is in `c.buf` (from `c.pos == 0`). The first
/// request of a connection must arrive within `client_header_timeout`; later ones may
/// wait `keepalive_timeout` for their first byte, then `client_header_timeout`; one
/// idle for [`PARK_AFTER`] is told to park for the rest of that wait.
async fn read_head(shard: &Shard, c: &mut ClientConn, hs: &mut Option<HeadScratch>, first: bool) -> HeadRead {
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
            None => limits.keepalive_timeout.min(PARK_AFTER),
        };
        if c.buf.capacity() - c.buf.len() < 1024 {
            c.buf.reserve(c.buf.len().max(INITIAL_BUF));
        }
        let had_bytes = !c.buf.is_empty();
        let (outcome, buf) = c.io.read_append(std::mem::take(&mut c.buf), wait).await;
        c.buf = buf;
        match outcome {
            ReadOutcome::Data(_) => {}
            ReadOutcome::TimedOut if had_bytes => {
                return HeadRead::Reject(408, "request head not received in time")
            }
            // Idle (nothing read: the wait began PARK_AFTER ago) with keep-alive left.
            ReadOutcome::TimedOut if deadline.is_none() && limits.keepalive_timeout > PARK_AFTER => {
                return HeadRead::Park(Instant::now() + (limits.keepalive_timeout - PARK_AFTER))
            }
            ReadOutcome::TimedOut | ReadOutcome::Eof | ReadOutcome::Failed => return HeadRead::Closed,
        }
    }
}
