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

use crate::http::{find_header, write_downstream_head_with, DownstreamHead, HeadScratch, ResponseHead};
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

/// Checks the upstream's `101` in `ub` against what was asked: an upgrade was
/// forwarded, the `Upgrade` answered is one of its protocols, and a WebSocket
/// switch carries `Sec-WebSocket-Accept` (RFC 6455 §4.1: the client fails the
/// connection without it, so relaying it would only hide the upstream's fault).
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
    let websocket = to
        .split(|&b| b == b'/')
        .next()
        .is_some_and(|n| n.eq_ignore_ascii_case(b"websocket"));
    let accept = find_header(ub, rs.headers(), b"sec-websocket-accept").is_some_and(|v| !v.is_empty());
    if websocket && !accept {
        return Err(ProxyError::bad_response_head(
            "upstream's 101 to a WebSocket request has no Sec-WebSocket-Accept",
        ));
    }
    Ok(())
}

/// After a checked `101` in `ub`: sends it to the client (with the bytes that came
/// behind it), then the bytes the client sent behind its head to the upstream, and
/// relays both ways until the tunnel ends. The connection is not reused after.
pub async fn run(
    x: &mut Exchange<'_>,
    conn: &mut Conn,
    ub: &mut Vec<u8>,
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
    let (r, out) = x.client.io.write_all(out).await;
    x.shard.give_small(out);
    if r.is_err() {
        return done;
    }
    let stats = &x.shard.stats;
    stats.tunnel_bytes_out.add(early);
    // What the client sent behind its head was held back until now.
    let pending = x.client.buf.split_off(x.client.pos);
    let pending_len = pending.len() as u64;
    if !pending.is_empty() {
        let (r, _) = conn.write_all(pending).await;
        if r.is_err() {
            return done;
        }
        stats.tunnel_bytes_in.add(pending_len);
    }

    stats.tunnels_open.inc();
    let idle = x.view.snap.config.upstream.upgrade_idle_timeout;
    let bufs = [x.shard.take_buf(), std::mem::take(ub)];
    let count_in = |n| stats.tunnel_bytes_in.add(n);
    let count_out = |n| stats.tunnel_bytes_out.add(n);
    let (ended, [a, b]) = tunnel::relay(&mut x.client.io, conn, bufs, idle, [&count_in, &count_out]).await;
    stats.tunnels_open.dec();
    stats.tunnels_ended[match ended.end {
        End::Closed => 0,
        End::Idle => 1,
        End::Failed => 2,
    }]
    .inc();
    x.shard.give_buf(a);
    *ub = b;
    x.sent.body_bytes += early + ended.b_to_a;
    x.sent.tunnel = Some((pending_len + ended.a_to_b, ended.end));
    done
}
