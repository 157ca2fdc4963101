//! Forwarding: the upstream request head written from the client's, then sent with
//! the request body streamed behind it.

use crate::access::backend::{sign_head, SigningKey};
use crate::config::access::Auth;
use crate::http::write_upstream_head;
use crate::http::{BodyFraming, ForwardInfo};
use crate::io::Conn;
use crate::proxy::body::{pump, BodyError, BodyTiming, Sink};
use crate::proxy::error::ProxyError;
use crate::proxy::exchange::{BodyRead, Exchange};
use crate::proxy::retry;
use crate::upstream::UpstreamId;

/// Writes into `out` the head sent to `upstream` for `x`: `target` as the
/// request-target, the upstream's authority as Host (unless the config keeps the
/// client's), hop-by-hop fields dropped, forwarding fields and the request id added.
/// The caller's credentials are consumed (unless the group forwards them), and a
/// group with a backend key has the head signed last, as it is sent.
/// Returns false when the head could not be signed (it must not be sent).
#[must_use]
pub fn rewrite(x: &Exchange<'_>, target: &[u8], upstream: UpstreamId, out: &mut Vec<u8>) -> bool {
    let snap = &x.view.snap;
    let up = snap.upstream(upstream);
    let access = &snap.config.access;
    let group = crate::proxy::policy::auth::group(x).map(|(_, g)| g);
    let consumed = group.filter(|g| !g.forward_credentials).map(|g| g.auth);
    let drop_credential: Option<&[u8]> = match consumed {
        Some(Auth::SubscriptionKey) => Some(access.key_header.as_bytes()),
        Some(Auth::Signature) => Some(b"authorization"),
        _ => None,
    };
    // A subscription key that came in the query leaves it too.
    let stripped;
    let target = match (consumed, &access.key_query) {
        (Some(Auth::SubscriptionKey), Some(param)) => {
            stripped = without_query_param(target, param.as_bytes());
            stripped.as_deref().unwrap_or(target)
        }
        _ => target,
    };
    let signing = group
        .and_then(|g| g.backend_key)
        .and_then(|k| access.backend_keys.get(k));
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
            drop_credential,
            drop_signature_fields: signing.is_some(),
            upgrade: x.upgrade.as_deref(),
        },
    );
    if let Some(key) = signing {
        let key = SigningKey {
            id: &key.id,
            secret: key.secret.expose(),
            headers: &key.signed_headers,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let body = body_in_memory(x).map(crate::config::access::sha256);
        let mut scratch = x.shard.take_small();
        let nonce = x.shard.backend_nonce();
        let signed = sign_head(out, &key, now, nonce, body.as_ref(), &mut scratch);
        x.shard.give_small(scratch);
        return signed;
    }
    true
}

/// The whole request body, if it is in the client buffer now (no body: empty).
fn body_in_memory<'b>(x: &'b Exchange<'_>) -> Option<&'b [u8]> {
    match (x.facts.framing, x.body) {
        (BodyFraming::None, _) => Some(&[]),
        (BodyFraming::Length(n), BodyRead::Unread) => {
            let start = x.client.pos;
            x.client
                .buf
                .get(start..start.checked_add(usize::try_from(n).ok()?)?)
        }
        _ => None,
    }
}

/// `target` without its query parameters named `name`; `None` if it has none.
fn without_query_param(target: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let q = memchr::memchr(b'?', target)?;
    let is_it = |p: &[u8]| p.strip_prefix(name).is_some_and(|r| r.is_empty() || r[0] == b'=');
    let params = target[q + 1..].split(|&b| b == b'&');
    if !params.clone().any(is_it) {
        return None;
    }
    let mut out = target[..q].to_vec();
    for p in params.filter(|p| !is_it(p)) {
        out.push(if out.len() == q { b'?' } else { b'&' });
        out.extend_from_slice(p);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::without_query_param;

    #[test]
    fn the_key_parameter_leaves_the_query() {
        let strip =
            |t: &str| without_query_param(t.as_bytes(), b"key").map(|v| String::from_utf8(v).unwrap());
        assert_eq!(strip("/a?key=1&b=2").as_deref(), Some("/a?b=2"));
        assert_eq!(strip("/a?b=2&key=1&c").as_deref(), Some("/a?b=2&c"));
        assert_eq!(strip("/a?key=1").as_deref(), Some("/a"));
        assert_eq!(strip("/a?keys=1"), None);
        assert_eq!(strip("/a"), None);
    }
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
