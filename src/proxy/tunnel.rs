//! Upgraded connections (WebSocket, and the other protocols a route lists): which
//! upgrades a request may forward, the checks on the upstream's `101`, and the
//! tunnel after it.
//!
//! An upgrade is forwarded only when the route allows its protocol (`upgrade`,
//! default `["websocket"]`); any other `Upgrade` is dropped as the hop-by-hop field
//! it is, and the request goes on as a plain one — so an `h2c` upgrade cannot carry
//! a connection past the rules (nginx#1472). An upgrade request with a body is
//! refused (Envoy #3301): the bytes after its head belong to the new protocol.
//! Nothing the client sends after the head reaches the upstream before the
//! upstream has switched: ringway does not read the client until the `101`, and
//! bytes that came with the head go first once it has.

use crate::http::{
    find_header, write_downstream_head_with, BodyFraming, DownstreamHead, HeadScratch, ResponseHead,
};
use crate::io::tunnel::{self, End};
use crate::io::Conn;
use crate::proxy::error::ProxyError;
use crate::proxy::exchange::{Exchange, Outcome};

/// The protocols of the request's `Upgrade` that its route allows, as the value
/// sent upstream (in the client's order); `None` when it asks for none of them.
pub fn allowed(x: &Exchange<'_>) -> Option<Vec<u8>> {
    let span = x.head.upgrade?;
    let route = x.route.and_then(|r| x.view.snap.config.routes.get(r.index()))?;
    let mut out = Vec::new();
    for p in span.slice(&x.client.buf).split(|&b| b == b',') {
        let p = p.trim_ascii();
        if !p.is_empty() && route.upgrade.iter().any(|a| names(a.as_bytes(), p)) {
            if !out.is_empty() {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(p);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether `listed` (lowercase, from the config) names `protocol` (as sent): the
/// same, or the same name when `listed` has no version (`websocket` names
/// `WebSocket/13`).
fn names(listed: &[u8], protocol: &[u8]) -> bool {
    let name = protocol.split(|&b| b == b'/').next().unwrap_or(protocol);
    listed.eq_ignore_ascii_case(protocol) || (!listed.contains(&b'/') && listed.eq_ignore_ascii_case(name))
}

/// The WebSocket GUID of RFC 6455 §1.3, appended to the key for the accept value.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether `protocol` (as `Upgrade` carries it) is WebSocket.
fn is_websocket(protocol: &[u8]) -> bool {
    protocol
        .split(|&b| b == b'/')
        .next()
        .is_some_and(|n| n.trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

/// Refuses an upgrade request that cannot be tunnelled: one with a body (its bytes
/// after the head belong to the new protocol; Envoy #3301), or a WebSocket one
/// without `Sec-WebSocket-Key` (its `101` could not be checked). Both 400 and close.
pub fn check_request(x: &Exchange<'_>) -> Result<(), ProxyError> {
    if !matches!(x.facts.framing, BodyFraming::None | BodyFraming::Length(0)) {
        return Err(ProxyError::bad_request_body(
            "an upgrade request cannot have a body",
        ));
    }
    let offered = x.upgrade.as_deref().unwrap_or_default();
    if offered.split(|&b| b == b',').any(is_websocket) && websocket_key(x).is_none() {
        return Err(ProxyError::bad_request_body(
            "a WebSocket upgrade needs a Sec-WebSocket-Key",
        ));
    }
    Ok(())
}

fn websocket_key<'b>(x: &'b Exchange<'_>) -> Option<&'b [u8]> {
    find_header(&x.client.buf, x.fields.headers(), b"sec-websocket-key")
        .map(<[u8]>::trim_ascii)
        .filter(|k| !k.is_empty())
}

/// Checks the upstream's `101` in `ub` against what was asked: an upgrade was
/// forwarded, the `Upgrade` answered is one of its protocols, and a WebSocket
/// switch carries the `Sec-WebSocket-Accept` that answers the request's key (RFC
/// 6455 §4.1: the client fails the connection otherwise). A server that answers
/// without reading the key is not speaking WebSocket, and the bytes the client sent
/// behind its head would reach it as something else: 502 instead.
pub fn check_switch(x: &Exchange<'_>, ub: &[u8], rs: &HeadScratch) -> Result<(), ProxyError> {
    let Some(asked) = x.upgrade.as_deref() else {
        return Err(ProxyError::switched_protocols());
    };
    let Some(to) = find_header(ub, rs.headers(), b"upgrade").map(<[u8]>::trim_ascii) else {
        return Err(ProxyError::bad_response_head(
            "upstream's 101 has no Upgrade field",
        ));
    };
    let asked_for = |p: &[u8]| {
        asked
            .split(|&b| b == b',')
            .any(|a| names(&a.trim_ascii().to_ascii_lowercase(), p))
    };
    if !asked_for(to) {
        return Err(ProxyError::bad_response_head(
            "upstream switched to a protocol the request did not ask for",
        ));
    }
    if !is_websocket(to) {
        return Ok(());
    }
    let Some(accept) = find_header(ub, rs.headers(), b"sec-websocket-accept").map(<[u8]>::trim_ascii) else {
        return Err(ProxyError::bad_response_head(
            "upstream's 101 to a WebSocket request has no Sec-WebSocket-Accept",
        ));
    };
    let key = websocket_key(x).unwrap_or_default();
    if accept != accept_for(key) {
        return Err(ProxyError::bad_response_head(
            "upstream's Sec-WebSocket-Accept does not answer the request's Sec-WebSocket-Key",
        ));
    }
    Ok(())
}

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key ‖ GUID)) (RFC 6455 §4.2.2).
fn accept_for(key: &[u8]) -> [u8; 28] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(WEBSOCKET_GUID);
    let digest = ctx.finish();
    base64_20(digest.as_ref())
}

/// Standard base64 (with padding) of a 20-byte digest: 28 characters.
fn base64_20(bytes: &[u8]) -> [u8; 28] {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = [b'='; 28];
    for (i, chunk) in bytes.chunks(3).take(7).enumerate() {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for j in 0..=chunk.len() {
            out[i * 4 + j] = ALPHABET[(n >> (18 - 6 * j) & 63) as usize];
        }
    }
    out
}

/// After a checked `101` in `ub`: sends it to the client (with the bytes that came
/// behind it), then the bytes the client sent behind its head to the upstream, and
/// relays both ways until the tunnel ends. The connection is not reused after.
pub async fn run(
    x: &mut Exchange<'_>,
    conn: &mut Conn,
    ub: &[u8],
    resp: &ResponseHead,
    rs: &HeadScratch,
) -> Outcome {
    let done = Outcome::new(101, false);
    let protocol = find_header(ub, rs.headers(), b"upgrade").unwrap_or_default();
    let has_id = find_header(ub, rs.headers(), b"x-request-id").is_some();
    let id = [(&b"x-request-id"[..], x.id.as_bytes())];
    let opts = DownstreamHead {
        client_keep_alive: false,
        dechunk: false,
        extra: if has_id { &[] } else { &id },
        upgrade: Some(protocol),
    };
    let mut out = x.shard.take_small();
    write_downstream_head_with(&mut out, ub, resp, rs.headers(), &opts);
    let early = &ub[resp.head_len..];
    out.extend_from_slice(early);
    let early = early.len() as u64;
    let shard = x.shard;
    let stats = &shard.stats;
    let ended = |x: &mut Exchange<'_>, bytes_in: u64, end: End| {
        stats.tunnels_ended[End::ALL.iter().position(|e| *e == end).unwrap_or(0)].inc();
        x.sent.tunnel = Some((bytes_in, end));
    };
    let (r, out) = x.client.io.write_all(out).await;
    shard.give_small(out);
    if r.is_err() {
        ended(x, 0, End::Failed);
        return done;
    }
    stats.tunnel_bytes_out.add(early);
    x.sent.body_bytes += early;
    // What the client sent behind its head was held back until now.
    let pending = x.client.buf.split_off(x.client.pos);
    let pending_len = pending.len() as u64;
    if !pending.is_empty() {
        let (r, _) = conn.write_all(pending).await;
        if r.is_err() {
            ended(x, 0, End::Failed);
            return done;
        }
        stats.tunnel_bytes_in.add(pending_len);
    }

    stats.tunnels_open.inc();
    let upstream = &x.view.snap.config.upstream;
    let timeouts = tunnel::Timeouts {
        idle: upstream.upgrade_idle_timeout,
        half_closed: upstream.upgrade_half_closed_timeout,
    };
    // Small buffers: a tunnel holds them for its whole life, mostly idle.
    let bufs = [Vec::with_capacity(TUNNEL_BUF), Vec::with_capacity(TUNNEL_BUF)];
    let count_in = |n| stats.tunnel_bytes_in.add(n);
    let count_out = |n| stats.tunnel_bytes_out.add(n);
    let counts: [&dyn Fn(u64); 2] = [&count_in, &count_out];
    let (relayed, _) = tunnel::relay(
        &mut x.client.io,
        conn,
        bufs,
        timeouts,
        &shard.tunnels_stop,
        counts,
    )
    .await;
    stats.tunnels_open.dec();
    x.sent.body_bytes += relayed.b_to_a;
    ended(x, pending_len + relayed.a_to_b, relayed.end);
    done
}

/// Each direction's read buffer of a tunnel.
const TUNNEL_BUF: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::{accept_for, names};

    #[test]
    fn the_accept_value_of_rfc_6455s_example() {
        assert_eq!(
            &accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn listed_protocols_name_their_versions() {
        assert!(names(b"websocket", b"WebSocket"));
        assert!(names(b"websocket", b"websocket/13"));
        assert!(names(b"foo/2", b"FOO/2"));
        assert!(!names(b"foo/2", b"foo/3"));
        assert!(!names(b"foo/2", b"foo"));
        assert!(!names(b"websocket", b"websockets"));
    }
}
