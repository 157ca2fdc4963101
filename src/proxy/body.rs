//! Moving a request body off the client connection: to the upstream, or read and
//! discarded before a local answer, always through the shared [`BodyFramer`].

use crate::config::{LimitsConfig, BODY_RATE_GRACE};
use crate::http::{BodyFramer, BodyFraming};
use crate::io::{Conn, Input, ReadOutcome};
use crate::proxy::error::ProxyError;
use crate::proxy::exchange::ClientConn;
use std::time::{Duration, Instant};

/// Read size while streaming a request body.
const BODY_READ: usize = 32 * 1024;
/// A `Content-Length` body up to this size is read whole before an upstream
/// connection is taken ([`buffer`]).
pub const BUFFER_BODY: usize = 64 * 1024;

/// Why the request body could not be moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// The client closed or reset the connection.
    Client(&'static str),
    /// The body stopped arriving (`client_body_timeout`) or arrives too slowly
    /// (`client_body_min_rate`).
    TimedOut(&'static str),
    /// The body's chunked framing is malformed (or too large to discard).
    Framing(&'static str),
    /// The body is longer than the limit it is sent under (`max_body_bytes`; a
    /// chunked body's running total).
    TooLarge,
    /// The first write to the upstream (the head with the first body bytes) failed:
    /// nothing of the request reached it. The head buffer holds the head alone again
    /// and the client buffer still has the whole body's start: the request can be
    /// sent again on another connection.
    UpstreamUnsent,
    /// The upstream stopped taking the body: a write failed after the first, or it
    /// answered (or closed) while the body was still being sent. Its response, if
    /// any, is the answer (RFC 9112 §9.5).
    Interrupted,
}

impl From<BodyError> for ProxyError {
    fn from(e: BodyError) -> ProxyError {
        match e {
            BodyError::Client(_) => ProxyError::client_gone(),
            BodyError::TimedOut(why) => ProxyError::body_timeout(why),
            BodyError::Framing(why) => ProxyError::bad_request_body(why),
            BodyError::TooLarge => ProxyError::body_too_large(),
            BodyError::UpstreamUnsent | BodyError::Interrupted => ProxyError::body_write_failed(),
        }
    }
}

/// Where the body goes.
#[derive(Debug)]
pub enum Sink<'a> {
    /// To the upstream, after `head` (sent together with the first body bytes;
    /// cleared once sent); more than `limit` bytes of body is an error.
    Upstream {
        conn: &'a mut Conn,
        head: &'a mut Vec<u8>,
        limit: u64,
    },
    /// Read and dropped; more than `limit` bytes is an error.
    Discard { limit: u64 },
}

/// How long a request body may take: each read waits at most `timeout`; once the
/// body has been arriving for [`BODY_RATE_GRACE`], it must average `min_rate`
/// bytes a second (0: no minimum) — a client trickling a byte every few seconds
/// would otherwise hold its upstream connection for as long as it likes.
#[derive(Clone, Copy, Debug)]
pub struct BodyTiming {
    pub timeout: Duration,
    pub min_rate: u64,
}

impl BodyTiming {
    /// The timing `[limits]` sets.
    pub fn of(limits: &LimitsConfig) -> BodyTiming {
        BodyTiming {
            timeout: limits.client_body_timeout,
            min_rate: limits.client_body_min_rate,
        }
    }

    /// The error when `total` bytes took `since` until now, if that is too slow.
    fn too_slow(&self, started: Instant, total: u64) -> Option<BodyError> {
        let elapsed = started.elapsed();
        let slow = self.min_rate > 0
            && elapsed > BODY_RATE_GRACE
            && (total as f64) < self.min_rate as f64 * elapsed.as_secs_f64();
        slow.then_some(BodyError::TimedOut("request body arriving too slowly"))
    }
}

/// Reads into `c.buf` the rest of a small `Content-Length` body (at most
/// [`BUFFER_BODY`]), before an upstream connection is taken: a slow client then
/// holds no upstream connection while its body trickles in (nginx buffers request
/// bodies for the same reason). Larger and chunked bodies are streamed.
pub async fn buffer(c: &mut ClientConn, framing: BodyFraming, timing: BodyTiming) -> Result<(), BodyError> {
    read_whole(c, framing, timing, BUFFER_BODY as u64).await
}

/// As [`buffer`], up to `max` bytes: a signature group reads a signed body whole
/// to check its hash (`[access] max_signed_body`).
pub async fn read_whole(
    c: &mut ClientConn,
    framing: BodyFraming,
    timing: BodyTiming,
    max: u64,
) -> Result<(), BodyError> {
    let BodyFraming::Length(n) = framing else {
        return Ok(());
    };
    if n > max {
        return Ok(());
    }
    let want = c.pos + n as usize;
    let started = Instant::now();
    while c.buf.len() < want {
        if c.buf.capacity() < want {
            c.buf.reserve(want - c.buf.len());
        }
        let (outcome, buf) = c.io.read_append(std::mem::take(&mut c.buf), timing.timeout).await;
        c.buf = buf;
        match outcome {
            ReadOutcome::Data(_) => {}
            ReadOutcome::TimedOut => return Err(BodyError::TimedOut("request body not received in time")),
            ReadOutcome::Eof => return Err(BodyError::Client("client closed the connection mid-body")),
            ReadOutcome::Failed => return Err(BodyError::Client("client connection failed mid-body")),
        }
        if let Some(e) = timing.too_slow(started, (c.buf.len() - c.pos) as u64) {
            return Err(e);
        }
    }
    Ok(())
}

/// Moves the request body, starting with the bytes at `c.buf[c.pos..]`, to `sink`.
/// Leaves `c.pos` after the body; bytes of a pipelined next request stay in `c.buf`.
/// Reads are timed by `timing`.
pub async fn pump(
    c: &mut ClientConn,
    framing: BodyFraming,
    mut sink: Sink<'_>,
    timing: BodyTiming,
) -> Result<(), BodyError> {
    let started = Instant::now();
    // Request trailers are never forwarded (see http::BodyFramer): validated, then cut.
    let mut body = BodyFramer::for_request(framing).without_trailers();
    let mut total = 0u64;
    let mut first_write = true;
    let head_len = match &sink {
        Sink::Upstream { head, .. } => head.len(),
        Sink::Discard { .. } => 0,
    };
    loop {
        // Take what the buffer holds of the body; what is forwarded goes behind
        // whatever `head` holds (the request head, the first time).
        let avail = &c.buf[c.pos..];
        let fed = match &mut sink {
            Sink::Upstream { head, .. } => body.feed_kept(avail, |r| head.extend_from_slice(&avail[r])),
            Sink::Discard { .. } => body.feed(avail),
        };
        let p = fed.map_err(|e| BodyError::Framing(e.reason()))?;
        let take = p.consumed;
        total += take as u64;
        match &mut sink {
            Sink::Discard { limit } => {
                if total > *limit {
                    return Err(BodyError::Framing("request body too large to discard"));
                }
            }
            Sink::Upstream { limit, .. } if total > *limit => return Err(BodyError::TooLarge),
            Sink::Upstream { conn, head, .. } => {
                if !head.is_empty() {
                    let (r, out) = conn.write_all(std::mem::take(*head)).await;
                    **head = out;
                    if r.is_err() {
                        if first_write {
                            head.truncate(head_len);
                            return Err(BodyError::UpstreamUnsent);
                        }
                        return Err(BodyError::Interrupted);
                    }
                    head.clear();
                    first_write = false;
                }
            }
        }
        c.pos += take;
        if p.done {
            return Ok(());
        }
        // An upstream that answers (or closes) before the whole body is sent will
        // not read the rest: stop sending and relay its answer. One non-blocking
        // peek per body read, only while a body is being streamed.
        if let Sink::Upstream { conn, .. } = &mut sink {
            if matches!(conn.poll_input(), Input::Waiting | Input::Closed) {
                return Err(BodyError::Interrupted);
            }
        }
        // Everything buffered was body: read more.
        c.buf.clear();
        c.pos = 0;
        if c.buf.capacity() < BODY_READ {
            c.buf.reserve(BODY_READ);
        }
        let (outcome, buf) = c.io.read_append(std::mem::take(&mut c.buf), timing.timeout).await;
        c.buf = buf;
        if let Some(e) = timing.too_slow(started, total) {
            return Err(e);
        }
        match outcome {
            ReadOutcome::Data(_) => {}
            ReadOutcome::TimedOut => return Err(BodyError::TimedOut("request body not received in time")),
            ReadOutcome::Eof => return Err(BodyError::Client("client closed the connection mid-body")),
            ReadOutcome::Failed => return Err(BodyError::Client("client connection failed mid-body")),
        }
    }
}
