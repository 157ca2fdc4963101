//! Proxying one request: connect or check out → forward the head and body → read the
//! response head → relay head and body → return the connection to the pool.
//!
//! Failures map to statuses as a client of a production gateway expects: connect
//! refused or failed → 502, connect or response timeout → 504, upstream closed or
//! sent a malformed head → 502. A request that fails on a *reused* connection before
//! any response byte is retried once on a fresh connection when it is idempotent and
//! has no body; never otherwise.

use crate::conn::{is_idempotent, pump_body, respond_local, takes_interim, BodyError, Client};
use crate::http::{
    parse_response_head, write_downstream_head, write_upstream_head, BodyFraming, ChunkedTracker,
    ForwardInfo, HeadLimits, HeadScratch, RequestHead, RespFraming, ResponseHead,
};
use crate::io::{read_append, ReadOutcome};
use crate::local::{error_body, write_error, ConnHeader, LocalResponse};
use crate::pool::PoolKey;
use crate::shard::{RequestId, Shard};
use crate::snapshot::{ShardView, UpstreamId};
use monoio::buf::IoBuf;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use std::time::Duration;

/// A failure of one attempt, and where it came from.
#[derive(Debug)]
enum Failure {
    /// The upstream connection could not be made.
    Connect { status: u16, problem: &'static str },
    /// The upstream closed or failed before any response byte.
    Closed,
    /// No response head within `response_timeout`.
    Timeout,
    /// The response head was malformed.
    BadHead(&'static str),
    /// The client went away mid-request.
    Client,
    /// The request body's framing is malformed.
    BadBody(&'static str),
    /// Writing the request body to the upstream failed.
    UpstreamWrite,
}

/// Forwards the request to `upstream`. Returns (client keep-alive, status sent).
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    shard: &Shard,
    view: &ShardView,
    c: &mut Client,
    hs: &mut HeadScratch,
    head: &RequestHead,
    upstream: UpstreamId,
    target: &[u8],
    id: &RequestId,
) -> (bool, u16) {
    let snap = &view.snap;
    let up = &snap.upstreams[upstream as usize];
    let cfg = &snap.config.upstream;
    let key = PoolKey { addr: up.addr };
    let head_only = head.is_head(&c.buf);
    let has_body = head.framing != BodyFraming::None;
    let retryable = !has_body && is_idempotent(head.method.slice(&c.buf));
    let mut up_head = shard.take_small();
    write_upstream_head(
        &mut up_head,
        &c.buf,
        head,
        hs.headers(),
        target,
        up.authority.as_bytes(),
        &ForwardInfo {
            client_ip: &c.peer_ip,
            proto: b"http",
            request_id: id.as_bytes(),
            keep_client_host: snap.config.server.keep_client_host,
        },
    );
    if head.expect_continue {
        // We answer `100 Continue` ourselves once the upstream is connected (as
        // nginx does), so the upstream must not wait to send its own.
        remove_header(&mut up_head, b"expect");
    }
    c.pos = head.head_len;
    view.balancer.track(upstream, true);
    let mut body_sent = false;
    let mut result = Err(Failure::Closed);
    for attempt in 0..2 {
        let pooled = if attempt == 0 {
            shard.pool.borrow_mut().take(key, cfg.idle_timeout)
        } else {
            None
        };
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => match connect(up.addr, cfg.connect_timeout).await {
                Ok(conn) => conn,
                Err(f) => {
                    view.upstream_stats[upstream as usize].connect_errors.inc();
                    result = Err(f);
                    break;
                }
            },
        };
        result = exchange(
            shard,
            view,
            c,
            hs,
            head,
            &mut conn,
            &mut up_head,
            head_only,
            &mut body_sent,
        )
        .await;
        match &result {
            Err(Failure::Closed) if reused && retryable && attempt == 0 => {
                view.upstream_stats[upstream as usize].retries.inc();
                continue;
            }
            Ok((_, true)) => {
                let stats = &view.upstream_stats[upstream as usize];
                shard
                    .pool
                    .borrow_mut()
                    .put(key, conn, cfg.max_idle_per_endpoint, stats)
            }
            _ => {}
        }
        break;
    }
    view.balancer.track(upstream, false);
    shard.give_small(up_head);
    let (status, problem) = match result {
        Ok((done, _)) => return done,
        Err(Failure::Connect { status, problem }) => (status, problem),
        Err(Failure::Closed) => (502, "upstream closed the connection without a response"),
        Err(Failure::Timeout) => {
            view.upstream_stats[upstream as usize].timeouts.inc();
            (504, "upstream did not respond in time")
        }
        Err(Failure::BadHead(why)) => (502, why),
        // The body is half-read: framing is in doubt, close without an answer
        // the client could mistake for the end of a body.
        Err(Failure::Client) => return (false, 400),
        Err(Failure::BadBody(why)) => {
            let mut out = shard.take_small();
            write_error(&mut out, 400, why, id.as_bytes(), ConnHeader::Close);
            let (_, out) = c.io.write_all(out).await;
            shard.give_small(out);
            return (false, 400);
        }
        Err(Failure::UpstreamWrite) => (502, "upstream failed while receiving the request body"),
    };
    let body = error_body(problem, id.as_bytes());
    let resp = LocalResponse {
        status,
        headers: &[],
        body: &body,
    };
    if body_sent || !has_body {
        // Nothing of the request is left unread: answer and keep the connection.
        let local_head = RequestHead {
            framing: BodyFraming::None,
            head_len: c.pos,
            ..*head
        };
        respond_local(shard, c, &local_head, &resp, id).await
    } else {
        // The body was never sent upstream; respond_local discards it (or closes).
        c.pos = head.head_len;
        respond_local(shard, c, head, &resp, id).await
    }
}

/// Connects to `addr` within `timeout`.
///
/// The connect is started on a non-blocking socket and its completion awaited as a
/// poll for writability. On timeout the half-open connection is aborted, which
/// completes the poll: a dropped, still-pending operation would otherwise keep the
/// socket open (for minutes, against a blackholed upstream).
async fn connect(addr: std::net::SocketAddr, timeout: Duration) -> Result<TcpStream, Failure> {
    use socket2::{Domain, Socket, Type};
    let failed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Failure::Connect {
            status: 502,
            problem: "upstream refused the connection",
        },
        _ => Failure::Connect {
            status: 502,
            problem: "upstream connection failed",
        },
    };
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(failed)?;
    sock.set_nonblocking(true).map_err(failed)?;
    let _ = sock.set_nodelay(true);
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(115) /* EINPROGRESS */ => {}
        Err(e) => return Err(failed(e)),
    }
    // A second handle on the socket to read SO_ERROR once it is writable.
    let probe = sock.try_clone().map_err(failed)?;
    let conn = TcpStream::from_std(sock.into()).map_err(failed)?;
    match monoio::time::timeout(timeout, conn.writable(false)).await {
        Err(_) => {
            // Abort the half-open connection (shutdown on a SYN_SENT socket
            // disconnects it): the poll still in flight completes at once and lets
            // go of the socket, instead of holding it until the kernel gives up.
            let _ = probe.shutdown(std::net::Shutdown::Both);
            return Err(Failure::Connect {
                status: 504,
                problem: "upstream connect timed out",
            });
        }
        Ok(Err(e)) => return Err(failed(e)),
        Ok(Ok(())) => {}
    }
    match probe.take_error() {
        Ok(None) => Ok(conn),
        Ok(Some(e)) | Err(e) => Err(failed(e)),
    }
}

/// One attempt on `conn`: send the request, read the response head, relay the
/// response. Ok((client keep-alive and status, upstream reusable)).
#[allow(clippy::too_many_arguments)]
async fn exchange(
    shard: &Shard,
    view: &ShardView,
    c: &mut Client,
    hs: &mut HeadScratch,
    head: &RequestHead,
    conn: &mut TcpStream,
    up_head: &mut Vec<u8>,
    head_only: bool,
    body_sent: &mut bool,
) -> Result<((bool, u16), bool), Failure> {
    let snap = &view.snap;
    let limits = &snap.config.limits;
    // Send the head, and the body when there is one.
    if head.framing == BodyFraming::None {
        let (r, b) = conn.write_all(std::mem::take(up_head)).await;
        *up_head = b;
        r.map_err(|_| Failure::Closed)?;
    } else {
        if head.expect_continue {
            let (r, _) = c.io.write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await;
            r.map_err(|_| Failure::Client)?;
        }
        let out = std::mem::take(up_head);
        match pump_body(
            c,
            head.framing,
            Some(conn),
            out,
            limits.keepalive_timeout,
            u64::MAX,
        )
        .await
        {
            Ok(()) => *body_sent = true,
            Err(BodyError::Client(_)) => return Err(Failure::Client),
            Err(BodyError::Framing(why)) => return Err(Failure::BadBody(why)),
            Err(BodyError::Upstream) => return Err(Failure::UpstreamWrite),
        }
    }
    // Read the response head, forwarding interim 1xx responses.
    let head_limits = HeadLimits {
        max_header_bytes: limits.max_header_bytes,
        max_headers: limits.max_headers,
    };
    let mut ub = shard.take_buf();
    let resp = loop {
        match read_response_head(
            conn,
            &mut ub,
            head_only,
            &head_limits,
            hs,
            snap.config.upstream.response_timeout,
        )
        .await
        {
            Ok(resp) if resp.is_interim() => {
                if takes_interim(head) {
                    let interim = ub[..resp.head_len].to_vec();
                    let (r, _) = c.io.write_all(interim).await;
                    r.map_err(|_| Failure::Client)?;
                }
                ub.drain(..resp.head_len);
            }
            Ok(resp) if resp.status == 101 => {
                shard.give_buf(ub);
                return Err(Failure::BadHead(
                    "upstream switched protocols, which ringway does not support",
                ));
            }
            Ok(resp) => {
                c.sent.upstream_head = Some(std::time::Instant::now());
                break resp;
            }
            Err(f) => {
                shard.give_buf(ub);
                return Err(f);
            }
        }
    };
    let client_keep = head.keep_alive && !shard.draining.get() && *body_sent_or_none(head, body_sent);
    let http10 = !takes_interim(head);
    let r = relay(
        shard,
        c,
        conn,
        ub,
        &resp,
        hs,
        client_keep,
        http10,
        snap.config.upstream.response_timeout,
    )
    .await;
    Ok(((r.0, resp.status), r.1))
}

fn body_sent_or_none<'a>(head: &RequestHead, body_sent: &'a mut bool) -> &'a bool {
    if head.framing == BodyFraming::None {
        *body_sent = true;
    }
    body_sent
}

async fn read_response_head(
    conn: &mut TcpStream,
    ub: &mut Vec<u8>,
    head_only: bool,
    limits: &HeadLimits,
    hs: &mut HeadScratch,
    timeout: Duration,
) -> Result<ResponseHead, Failure> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if !ub.is_empty() {
            match parse_response_head(ub, head_only, limits, hs) {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) => return Err(Failure::BadHead(e.reason())),
            }
        }
        if ub.capacity() - ub.len() < 1024 {
            ub.reserve(ub.len().max(4096));
        }
        let had = ub.len();
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        let (outcome, b) = read_append(conn, std::mem::take(ub), wait).await;
        *ub = b;
        match outcome {
            ReadOutcome::Data(_) => {}
            ReadOutcome::TimedOut => return Err(Failure::Timeout),
            ReadOutcome::Eof | ReadOutcome::Failed if had == 0 => return Err(Failure::Closed),
            ReadOutcome::Eof | ReadOutcome::Failed => {
                return Err(Failure::BadHead("upstream closed the connection mid-head"))
            }
        }
    }
}

/// Body bytes up to this size are copied behind the response head (one write).
const INLINE_BODY: usize = 8 * 1024;

/// Relays the response head and body to the client. Returns (client keep-alive,
/// upstream reusable).
#[allow(clippy::too_many_arguments)]
async fn relay(
    shard: &Shard,
    c: &mut Client,
    conn: &mut TcpStream,
    mut ub: Vec<u8>,
    resp: &ResponseHead,
    hs: &HeadScratch,
    client_keep: bool,
    http10: bool,
    timeout: Duration,
) -> (bool, bool) {
    // An HTTP/1.0 client cannot read a chunked body: it gets the bytes as they come
    // and the end of the body is the connection closing.
    let client_keep =
        client_keep && resp.downstream_keep_alive(true) && !(http10 && resp.framing == RespFraming::Chunked);
    let mut out = shard.take_small();
    let extra: &[(&[u8], &[u8])] = if http10 && client_keep {
        &[(b"connection", b"keep-alive")]
    } else {
        &[]
    };
    write_downstream_head(&mut out, &ub, resp, hs.headers(), client_keep, extra);
    let body = &ub[resp.head_len..];
    let mut tracker = ChunkedTracker::new();
    let mut remaining = 0u64;
    let (take, mut done) = match resp.framing {
        RespFraming::None => (0, true),
        RespFraming::Length(n) => {
            let k = n.min(body.len() as u64);
            remaining = n - k;
            (k as usize, remaining == 0)
        }
        RespFraming::Chunked => match tracker.feed(body) {
            Ok(p) => (p.consumed, p.done),
            Err(_) => (body.len(), false),
        },
        RespFraming::UntilClose => (body.len(), false),
    };
    let mut clean = take == body.len();
    let dechunk = http10 && resp.framing == RespFraming::Chunked;
    // A small first body part goes out with the head in one write; a large one is
    // written straight from the read buffer instead of being copied.
    let inline = dechunk || take <= INLINE_BODY;
    if dechunk {
        remove_header(&mut out, b"transfer-encoding");
        let mut t = ChunkedTracker::new();
        let _ = t.feed_with(&body[..take], |r| out.extend_from_slice(&body[r]));
    } else if inline {
        out.extend_from_slice(&body[..take]);
    }
    let (r, out) = c.io.write_all(out).await;
    if r.is_ok() {
        c.sent.body_bytes += crate::conn::body_len(&out);
    }
    shard.give_small(out);
    if r.is_err() {
        shard.give_buf(ub);
        return (false, false);
    }
    if !inline {
        let at = resp.head_len;
        let (r, s) = c.io.write_all(ub.slice(at..at + take)).await;
        ub = s.into_inner();
        if r.is_err() {
            shard.give_buf(ub);
            return (false, false);
        }
        c.sent.body_bytes += take as u64;
    }
    while !done {
        ub.clear();
        let (outcome, b) = read_append(conn, ub, timeout).await;
        ub = b;
        let n = match outcome {
            ReadOutcome::Data(n) => n,
            ReadOutcome::Eof if resp.framing == RespFraming::UntilClose => break,
            // Timeout, error or close mid-body: the client sees a truncated response.
            _ => {
                shard.give_buf(ub);
                return (false, false);
            }
        };
        let take = match resp.framing {
            RespFraming::Length(_) => {
                let k = remaining.min(n as u64);
                remaining -= k;
                done = remaining == 0;
                k as usize
            }
            RespFraming::Chunked if dechunk => {
                // Keep only the data bytes, compacted to the front of the buffer.
                let mut ranges = Vec::new();
                match tracker.feed_with(&ub[..n], |r| ranges.push(r)) {
                    Ok(p) => {
                        done = p.done;
                        clean &= p.consumed == n;
                        let mut w = 0;
                        for r in ranges {
                            let len = r.len();
                            ub.copy_within(r, w);
                            w += len;
                        }
                        w
                    }
                    Err(_) => {
                        shard.give_buf(ub);
                        return (false, false);
                    }
                }
            }
            RespFraming::Chunked => match tracker.feed(&ub[..n]) {
                Ok(p) => {
                    done = p.done;
                    p.consumed
                }
                Err(_) => {
                    shard.give_buf(ub);
                    return (false, false);
                }
            },
            _ => n,
        };
        clean &= dechunk || take == n;
        let (r, s) = c.io.write_all(ub.slice(..take)).await;
        ub = s.into_inner();
        if r.is_err() {
            shard.give_buf(ub);
            return (false, false);
        }
        c.sent.body_bytes += take as u64;
    }
    shard.give_buf(ub);
    let reusable = done && clean && resp.keep_alive && resp.framing != RespFraming::UntilClose;
    (client_keep && resp.framing != RespFraming::UntilClose, reusable)
}

/// Removes every field line named `name` (lowercase) from a serialized head.
fn remove_header(head: &mut Vec<u8>, name: &[u8]) {
    let mut i = match memchr::memmem::find(head, b"\r\n") {
        Some(p) => p + 2,
        None => return,
    };
    while i < head.len() {
        let end = memchr::memmem::find(&head[i..], b"\r\n").map_or(head.len(), |p| i + p + 2);
        let line = &head[i..end];
        let is_it = line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()] == b':';
        if is_it {
            head.drain(i..end);
        } else {
            i = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::remove_header;

    #[test]
    fn remove_header_drops_only_that_field() {
        let mut h = b"POST / HTTP/1.1\r\nhost: a\r\nExpect: 100-continue\r\nexpected: x\r\n\r\n".to_vec();
        remove_header(&mut h, b"expect");
        assert_eq!(h, b"POST / HTTP/1.1\r\nhost: a\r\nexpected: x\r\n\r\n");
    }
}
