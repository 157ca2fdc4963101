//! Relaying the upstream's response: read its head (forwarding interim 1xx
//! responses), write the client's head, then move the body through a
//! [`BodyFramer`] until it ends.
//!
//! Before the client has been sent anything, a bad response is an error (502); once
//! the head is out, a failure can only end the client connection, so that a
//! truncated body is never mistaken for a whole one.

use crate::http::{
    parse_response_head, write_downstream_head_with, BodyFramer, DownstreamHead, HeadLimits, HeadScratch,
    RespFraming, ResponseHead,
};
use crate::io::splice::{self, SpliceError};
use crate::io::{Conn, ReadOutcome};
use crate::proxy::error::ProxyError;
use crate::proxy::exchange::{BodyRead, Exchange, Outcome};
use crate::proxy::local::body_len;
use crate::proxy::retry;
use crate::proxy::tunnel;
use monoio::buf::IoBuf;
use std::time::{Duration, Instant};

/// Body bytes up to this size are copied behind the response head (one write).
const INLINE_BODY: usize = 8 * 1024;

/// A response relayed to the client.
#[derive(Clone, Copy, Debug)]
pub struct Relayed {
    pub outcome: Outcome,
    /// The upstream connection ended cleanly after the body and may be pooled.
    pub reusable: bool,
}

/// Reads the upstream's response to `x` from `conn` and relays it.
pub async fn response(x: &mut Exchange<'_>, conn: &mut Conn) -> Result<Relayed, ProxyError> {
    let mut ub = x.shard.take_buf();
    // The response has its own scratch: the request's field spans stay valid.
    let mut rs = x.shard.take_head_scratch();
    let result = match read_final_head(x, conn, &mut ub, &mut rs).await {
        Ok(resp) => {
            x.sent.upstream_head = Some(Instant::now());
            // This answer is the one: the retry budget is not held for its body (or
            // a tunnel's lifetime).
            retry::release_budget(x);
            if resp.status == 101 {
                Ok(Relayed {
                    outcome: tunnel::run(x, conn, &ub, &resp, &rs).await,
                    reusable: false,
                })
            } else {
                relay_body(x, conn, &mut ub, &resp, &rs).await
            }
        }
        Err(e) => Err(e),
    };
    x.shard.give_head_scratch(rs);
    x.shard.give_buf(ub);
    result
}

/// Reads response heads until a final one, forwarding interim 1xx responses to a
/// client that can take them.
async fn read_final_head(
    x: &mut Exchange<'_>,
    conn: &mut Conn,
    ub: &mut Vec<u8>,
    rs: &mut HeadScratch,
) -> Result<ResponseHead, ProxyError> {
    let config = &x.view.snap.config;
    // The upstream's heads have limits of their own (`[upstream]`).
    let limits = HeadLimits {
        max_header_bytes: config.upstream.max_response_header_bytes,
        max_headers: config.upstream.max_response_headers,
    };
    let timeout = config.upstream.response_timeout;
    loop {
        let resp = read_head(x, conn, ub, &limits, rs, timeout).await?;
        if resp.is_interim() {
            if !x.facts.http10 {
                let interim = ub[..resp.head_len].to_vec();
                let (r, _) = x.client.io.write_all(interim).await;
                r.map_err(|_| ProxyError::client_gone())?;
            }
            ub.drain(..resp.head_len);
            continue;
        }
        if resp.status == 101 {
            // Only to an upgrade that was forwarded, and only as it was asked.
            tunnel::check_switch(x, ub, rs)?;
        } else if retry::on_status(x, resp.status) {
            // The route retries this answer: dropped unread (the connection with it).
            return Err(ProxyError::status_dropped(resp.status));
        }
        return Ok(resp);
    }
}

/// Reads one response head into `ub` within `timeout`.
async fn read_head(
    x: &Exchange<'_>,
    conn: &mut Conn,
    ub: &mut Vec<u8>,
    limits: &HeadLimits,
    rs: &mut HeadScratch,
    timeout: Duration,
) -> Result<ResponseHead, ProxyError> {
    let deadline = Instant::now() + timeout;
    loop {
        if !ub.is_empty() {
            match parse_response_head(ub, x.facts.head_only, limits, rs) {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) if e.is_too_large() => {
                    return Err(ProxyError::bad_response_head(
                        "upstream response head is over upstream.max_response_header_bytes or max_response_headers",
                    ))
                }
                Err(e) => return Err(ProxyError::bad_response_head(e.reason())),
            }
        }
        if ub.capacity() - ub.len() < 1024 {
            ub.reserve(ub.len().max(4096));
        }
        let had = ub.len();
        let wait = deadline.saturating_duration_since(Instant::now());
        let (outcome, b) = conn.read_append(std::mem::take(ub), wait).await;
        *ub = b;
        match outcome {
            ReadOutcome::Data(_) => {}
            ReadOutcome::TimedOut => return Err(ProxyError::response_timeout()),
            ReadOutcome::Eof | ReadOutcome::Failed if had == 0 => {
                return Err(retry::closed_before_response(&x.facts))
            }
            ReadOutcome::Eof | ReadOutcome::Failed => {
                return Err(ProxyError::bad_response_head(
                    "upstream closed the connection mid-head",
                ))
            }
        }
    }
}

/// Writes the client's head and relays the body that follows `resp` in `ub`.
async fn relay_body(
    x: &mut Exchange<'_>,
    conn: &mut Conn,
    ub: &mut Vec<u8>,
    resp: &ResponseHead,
    rs: &HeadScratch,
) -> Result<Relayed, ProxyError> {
    let http10 = x.facts.http10;
    // An HTTP/1.0 client cannot read a chunked body: it gets the data bytes as they
    // come and the end of the body is the connection closing.
    let dechunk = http10 && resp.framing == RespFraming::Chunked;
    let client_keep = x.facts.keep_alive
        && !x.shard.draining.get()
        && x.body == BodyRead::Done
        && resp.downstream_keep_alive(true)
        && !dechunk;
    let timeout = x.view.snap.config.upstream.response_timeout;
    // Trailers are validated either way. A client that did not ask for them gets
    // none; one that did gets those a trailer may carry (see http::BodyFramer).
    let body = BodyFramer::for_response(resp.framing);
    let mut body = if x.facts.accepts_trailers {
        body.with_filtered_trailers()
    } else {
        body.without_trailers()
    };

    // The body bytes that came with the head.
    let first_len = ub.len() - resp.head_len;
    let first = if dechunk {
        body.decode_in_place(&mut ub[resp.head_len..])
    } else {
        body.keep_in_place(&mut ub[resp.head_len..])
    };
    let (first, take) =
        first.map_err(|_| ProxyError::bad_response_head("upstream sent a malformed chunked body"))?;
    let mut clean = first.consumed == first_len;
    let take = if first.done && !dechunk {
        splice_trailers(ub, resp.head_len, take, &mut body)
    } else {
        take
    };

    let mut out = x.shard.take_small();
    // The request id goes back to the client too (unless the upstream says one).
    let id = x.id.as_bytes();
    let has_id = rs
        .headers()
        .iter()
        .any(|h| h.name.slice(ub).eq_ignore_ascii_case(b"x-request-id"));
    let with_id = [(&b"x-request-id"[..], id), (b"connection", b"keep-alive")];
    let extra: &[(&[u8], &[u8])] = match (has_id, http10 && client_keep) {
        (false, true) => &with_id,
        (false, false) => &with_id[..1],
        (true, true) => &with_id[1..],
        (true, false) => &[],
    };
    // `[traffic] headers = "always"`: the limits that admitted the request say so.
    let limit_fields = crate::proxy::policy::limits::field_values(x, None);
    let with_limits: Vec<(&[u8], &[u8])>;
    let extra = match &limit_fields {
        None => extra,
        Some((policy, limit)) => {
            let mut v = extra.to_vec();
            v.push((b"ratelimit-policy", policy));
            v.push((b"ratelimit", limit));
            with_limits = v;
            &with_limits
        }
    };
    let opts = DownstreamHead {
        client_keep_alive: client_keep,
        dechunk,
        extra,
        upgrade: None,
    };
    write_downstream_head_with(&mut out, ub, resp, rs.headers(), &opts);
    // A small first body part goes out with the head in one write; a large one is
    // written straight from the read buffer instead of being copied.
    let at = resp.head_len;
    let inline = take <= INLINE_BODY;
    if inline {
        out.extend_from_slice(&ub[at..at + take]);
    }
    let (r, out) = x.client.io.write_all(out).await;
    if r.is_ok() {
        x.sent.body_bytes += body_len(&out);
    }
    x.shard.give_small(out);
    let broken = Ok(Relayed {
        outcome: Outcome::new(resp.status, false),
        reusable: false,
    });
    if r.is_err() {
        return broken;
    }
    if !inline {
        let (r, s) = x
            .client
            .io
            .write_all(std::mem::take(ub).slice(at..at + take))
            .await;
        *ub = s.into_inner();
        if r.is_err() {
            return broken;
        }
        x.sent.body_bytes += take as u64;
    }

    // A large `Content-Length` body between two plain sockets goes through a pipe,
    // never through this process's memory.
    if let Some(left) = body.remaining_length() {
        let min = x.view.snap.config.upstream.splice_min_bytes;
        if min > 0 && left >= min && !dechunk && x.shard.splice.get() {
            match splice_rest(x, conn, left, timeout).await {
                Some(Ok(())) => body.skip_length(left),
                Some(Err(e)) => {
                    x.sent.upstream_cut |= e == SpliceError::Source;
                    return broken;
                }
                None => {}
            }
        }
    }

    while !body.is_done() {
        ub.clear();
        let (outcome, b) = conn.read_append(std::mem::take(ub), timeout).await;
        *ub = b;
        let n = match outcome {
            ReadOutcome::Data(n) => n,
            ReadOutcome::Eof if body.ends_at_close() => break,
            // Timeout, error or close mid-body: the client sees a truncated response.
            _ => {
                x.sent.upstream_cut = true;
                return broken;
            }
        };
        let fed = if dechunk {
            body.decode_in_place(&mut ub[..n])
        } else {
            body.keep_in_place(&mut ub[..n])
        };
        // Bad framing mid-body: end the client connection, relaying none of it.
        let Ok((p, take)) = fed else {
            x.sent.upstream_cut = true;
            return broken;
        };
        clean &= p.consumed == n;
        let take = if p.done && !dechunk {
            splice_trailers(ub, 0, take, &mut body)
        } else {
            take
        };
        let (r, s) = x.client.io.write_all(std::mem::take(ub).slice(..take)).await;
        *ub = s.into_inner();
        if r.is_err() {
            return broken;
        }
        x.sent.body_bytes += take as u64;
    }
    let until_close = resp.framing == RespFraming::UntilClose;
    Ok(Relayed {
        outcome: Outcome::new(resp.status, client_keep && !until_close),
        // Not after a request whose body was cut short: the upstream has the rest of
        // it (or less) in its buffers.
        reusable: body.is_done() && clean && resp.keep_alive && !until_close && x.body == BodyRead::Done,
    })
}

/// Splices the `left` bytes of the body from `conn` to the client; `None` when one
/// side is TLS (or no pipe can be had): the caller copies.
async fn splice_rest(
    x: &mut Exchange<'_>,
    conn: &mut Conn,
    left: u64,
    timeout: Duration,
) -> Option<Result<(), SpliceError>> {
    let shard = x.shard;
    let (from, _, _) = conn.tcp_halves()?;
    let (_, to, send_timeout) = x.client.io.tcp_halves()?;
    let mut pipe = shard.pipes.take()?;
    let mut sent = 0;
    let r = splice::exact(from, to, &mut pipe, left, timeout, send_timeout, |k| sent += k).await;
    x.sent.body_bytes += sent;
    shard.stats.spliced_bytes.add(sent);
    if r.is_ok() {
        shard.pipes.give(pipe);
    } else {
        shard.pipes.lost();
    }
    Some(r)
}

/// Puts the trailers `body` kept for the client before the body's final CRLF, which
/// are the last two of the `take` bytes at `ub[at..]` (the body has just ended).
/// Returns the new length.
fn splice_trailers(ub: &mut Vec<u8>, at: usize, take: usize, body: &mut BodyFramer) -> usize {
    let trailers = body.take_trailers();
    if trailers.is_empty() || take < 2 {
        return take;
    }
    ub.truncate(at + take - 2);
    ub.extend_from_slice(&trailers);
    ub.extend_from_slice(b"\r\n");
    take + trailers.len()
}
