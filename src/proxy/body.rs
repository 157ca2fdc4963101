//! Moving a request body off the client connection: to the upstream, or read and
//! discarded before a local answer, always through the shared [`BodyFramer`].

use crate::http::{BodyFramer, BodyFraming};
use crate::io::{Conn, Input, ReadOutcome};
use crate::proxy::error::ProxyError;
use crate::proxy::exchange::ClientConn;
use std::time::Duration;

/// Read size while streaming a request body.
const BODY_READ: usize = 32 * 1024;

/// Why the request body could not be moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyError {
    /// The client closed or timed out.
    Client(&'static str),
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

/// Moves the request body, starting with the bytes at `c.buf[c.pos..]`, to `sink`.
/// Leaves `c.pos` after the body; bytes of a pipelined next request stay in `c.buf`.
/// Each read waits at most `read_timeout`.
pub async fn pump(
    c: &mut ClientConn,
    framing: BodyFraming,
    mut sink: Sink<'_>,
    read_timeout: Duration,
) -> Result<(), BodyError> {
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
        if let Sink::Upstream { conn, .. } = &sink {
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
        let (outcome, buf) = c.io.read_append(std::mem::take(&mut c.buf), read_timeout).await;
        c.buf = buf;
        match outcome {
            ReadOutcome::Data(_) => {}
            ReadOutcome::TimedOut => return Err(BodyError::Client("request body not received in time")),
            ReadOutcome::Eof => return Err(BodyError::Client("client closed the connection mid-body")),
            ReadOutcome::Failed => return Err(BodyError::Client("client connection failed mid-body")),
        }
    }
}
