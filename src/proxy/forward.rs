//! Forwarding: the upstream request head written from the client's, then sent with
//! the request body streamed behind it.

use crate::http::write_upstream_head;
use crate::http::ForwardInfo;
use crate::io::Conn;
use crate::proxy::body::{pump, BodyError, BodyTiming, Sink};
use crate::proxy::error::ProxyError;
use crate::proxy::exchange::{BodyRead, Exchange};
use crate::proxy::retry;
use crate::upstream::UpstreamId;

/// Writes into `out` the head sent to `upstream` for `x`: `target` as the
/// request-target, the upstream's authority as Host (unless the config keeps the
/// client's), hop-by-hop fields dropped, forwarding fields and the request id added.
pub fn rewrite(x: &Exchange<'_>, target: &[u8], upstream: UpstreamId, out: &mut Vec<u8>) {
    let snap = &x.view.snap;
    let up = snap.upstream(upstream);
    write_upstream_head(
        out,
        &x.client.buf,
        &x.head,
        x.fields.headers(),
        target,
        up.authority.as_bytes(),
        &ForwardInfo {
            client_ip: &x.client.peer_ip,
            proto: if x.client.io.is_tls() { b"https" } else { b"http" },
            request_id: x.id.as_bytes(),
            keep_client_host: snap.config.server.keep_client_host,
            // We answer `100 Continue` ourselves once the upstream is connected (as
            // nginx does), so the upstream must not wait to send its own.
            drop_expect: x.facts.expect_continue,
            replace_request_id: x.replace_client_id,
            client_cert: x.client.client_cert.as_deref(),
        },
    );
}

/// How much of the request went upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// The head and the whole body.
    Whole,
    /// The head and part of the body: the upstream answered, closed or stopped
    /// reading before the end. Its response (if any) is the answer; the client
    /// connection closes after it, the upstream connection is not reused.
    Cut,
}

/// Sends `head` and then the request body (if any) to `conn`. When nothing could
/// be sent, the head is kept for another attempt (and the body is still unread);
/// with a body, the client is told `100 Continue` first when it waits for it.
pub async fn send(x: &mut Exchange<'_>, conn: &mut Conn, head: &mut Vec<u8>) -> Result<Sent, ProxyError> {
    if !x.facts.has_body() {
        let (r, h) = conn.write_all(std::mem::take(head)).await;
        *head = h;
        // A stale pooled connection fails here or at the response head.
        return match r {
            Ok(_) => Ok(Sent::Whole),
            Err(_) => Err(retry::unsent()),
        };
    }
    if x.facts.expect_continue && !x.continue_sent {
        let (r, _) = x.client.io.write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await;
        r.map_err(|_| ProxyError::client_gone())?;
        x.continue_sent = true;
    }
    x.body = BodyRead::Partial;
    let timing = BodyTiming::of(&x.view.snap.config.limits);
    let limit = crate::proxy::policy::body_limit(x);
    match pump(
        x.client,
        x.facts.framing,
        Sink::Upstream { conn, head, limit },
        timing,
    )
    .await
    {
        Ok(()) => {
            x.body = BodyRead::Done;
            Ok(Sent::Whole)
        }
        Err(BodyError::UpstreamUnsent) => {
            x.body = BodyRead::Unread;
            Err(retry::unsent())
        }
        Err(BodyError::Interrupted) => Ok(Sent::Cut),
        Err(e) => Err(e.into()),
    }
}
