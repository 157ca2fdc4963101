//! Traffic control: the rate limits covering the request's route, each from this
//! shard's lease (`traffic/`), all of which must admit it.
//!
//! Runs after authorization (a per-key limit counts the authenticated caller, and
//! a refused caller spends no budget) and before anything goes upstream. The first
//! limit to refuse answers — 429 with `Retry-After` and the `RateLimit` fields
//! naming it — and the tokens the limits before it took go back. Limits covering a
//! route are tried in config order.
//!
//! The client address is the TCP peer's, unless the peer is one of
//! `trusted_proxies`: then it is the last address in `X-Forwarded-For` (else
//! `Forwarded`) that is not itself a trusted proxy. Headers are never trusted by
//! default.

use crate::config::traffic::{canonical, By, Cidr, HeaderMode};
use crate::proxy::exchange::Exchange;
use crate::traffic::fields::{self, Applied};
use crate::traffic::{Ident, Limited, Nanos, Verdict};
use std::net::IpAddr;

/// Works out the client's address for the limits that count per address, while the
/// head's fields are still readable (a signature check may read the body).
pub fn prepare(x: &mut Exchange<'_>) {
    let Some(route) = x.route else { return };
    if !x.view.snap.limits_of(route).is_some_and(|l| l.by_client) {
        return;
    }
    x.client_addr = client_address(x);
}

/// The client's address: the peer's, or — behind a trusted proxy — the one its
/// forwarding fields name (see [`forwarded_client`]). Also what
/// `hash_on = "client_ip"` hashes.
pub fn client_address(x: &Exchange<'_>) -> Option<IpAddr> {
    let peer = std::str::from_utf8(&x.client.peer_ip)
        .ok()
        .and_then(|s| s.parse::<IpAddr>().ok())
        .map(canonical);
    let trusted = &x.view.snap.config.traffic.trusted_proxies;
    match peer {
        Some(p) if !trusted.is_empty() && trusted.iter().any(|c| c.contains(p)) => {
            let buf = &x.client.buf[..];
            let values = |name: &'static [u8]| {
                x.fields
                    .headers()
                    .iter()
                    .filter(move |h| h.name.slice(buf).eq_ignore_ascii_case(name))
                    .map(move |h| h.value.slice(buf))
            };
            Some(forwarded_client(
                p,
                trusted,
                values(b"x-forwarded-for"),
                values(b"forwarded"),
            ))
        }
        other => other,
    }
}

/// The client behind trusted proxy `peer`, from the `X-Forwarded-For` values when
/// there are any, else from the `for=` of `Forwarded` (never a mix: a proxy that
/// writes one header passes the other through from the client). Walking from the
/// right, trusted proxies are skipped and the first other address is the client.
/// A hop that cannot be read (`unknown`, an obfuscated name, garbage) ends the
/// walk: the nearest trusted proxy stands for whoever is behind it. All trusted:
/// the leftmost.
fn forwarded_client<'b>(
    peer: IpAddr,
    trusted: &[Cidr],
    xff: impl Iterator<Item = &'b [u8]>,
    forwarded: impl Iterator<Item = &'b [u8]>,
) -> IpAddr {
    let entries = |v: &'b [u8]| {
        v.split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .filter(|h| !h.is_empty())
    };
    let mut hops: Vec<Option<IpAddr>> = xff.flat_map(entries).map(parse_forwarded_for).collect();
    if hops.is_empty() {
        hops = forwarded
            .flat_map(|v| v.split(|&b| b == b',' || b == b';'))
            .filter_map(|p| {
                let p = p.trim_ascii();
                let (k, v) = p.split_at(p.iter().position(|&b| b == b'=')?);
                k.eq_ignore_ascii_case(b"for")
                    .then(|| parse_forwarded_for(&v[1..]))
            })
            .collect();
    }
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = *hop else { return client };
        client = ip;
        if !trusted.iter().any(|c| c.contains(ip)) {
            return ip;
        }
    }
    client
}

fn parse_ip(b: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(b).ok()?.parse::<IpAddr>().ok().map(canonical)
}

/// A hop: `192.0.2.60`, `192.0.2.60:4711`, `2001:db8::1`, `[2001:db8::1]:4711`,
/// quoted or not (`Forwarded` quotes); obfuscated identifiers and `unknown` give
/// nothing.
fn parse_forwarded_for(v: &[u8]) -> Option<IpAddr> {
    let v = v.trim_ascii();
    let v = v
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v);
    if let Some(rest) = v.strip_prefix(b"[") {
        let end = rest.iter().position(|&b| b == b']')?;
        return parse_ip(&rest[..end]);
    }
    match v.iter().filter(|&&b| b == b':').count() {
        1 => parse_ip(&v[..v.iter().position(|&b| b == b':')?]),
        _ => parse_ip(v),
    }
}

/// Runs the route's limits; the first to refuse answers.
#[inline]
pub fn admit(x: &mut Exchange<'_>) -> Result<(), Limited> {
    let Some(route) = x.route else { return Ok(()) };
    let view = x.view;
    let Some(route_limits) = view.snap.limits_of(route) else {
        return Ok(());
    };
    let config = &view.snap.config;
    let caller = x.caller.map(|c| {
        let key = view.snap.caller_keys.get(c.index(&config.access)).copied();
        (c.id(&config.access), key.unwrap_or(0))
    });
    // The request's start (one clock read per request serves the log and this),
    // unless authorization read the body (a signed one): then now.
    let now = if x.facts.has_body() && x.body != crate::proxy::exchange::BodyRead::Unread {
        crate::traffic::now()
    } else {
        crate::traffic::clock(x.started)
    };
    let always = config.traffic.headers == HeaderMode::Always;
    let mut limits = view.limits.borrow_mut();
    let ids = &route_limits.limits;
    for (n, &i) in ids.iter().enumerate() {
        let i = usize::from(i);
        let Some(l) = limits.get_mut(i) else { continue };
        let Some((ident, key)) = ident_for(l.node.def.by, caller, x.client_addr) else {
            continue;
        };
        let refusal = match l.admit(key, &ident, now) {
            Verdict::Allowed { remaining, next_at } => {
                l.allowed.inc();
                if always {
                    let reset = if remaining == 0 {
                        next_at.saturating_sub(now)
                    } else {
                        0
                    };
                    x.limit_remaining.push((i as u16, remaining, reset));
                }
                continue;
            }
            Verdict::Refused { retry_at } => Limited::Over {
                limit: i,
                retry_at,
                now,
            },
            Verdict::Unavailable => Limited::Unavailable { limit: i },
        };
        l.refused.inc();
        // The limits before this one took a token each: back they go.
        for &j in &ids[..n] {
            let j = usize::from(j);
            if let Some((_, key)) = limits
                .get(j)
                .and_then(|p| ident_for(p.node.def.by, caller, x.client_addr))
            {
                limits[j].undo(key);
            }
        }
        x.limit_remaining.clear();
        x.limited = Some(refusal);
        return Err(refusal);
    }
    Ok(())
}

/// Who the request counts as for a limit counting `by`, and its bucket key (a
/// caller's was hashed with the snapshot); `None`: the limit does not apply (per
/// key, without an authenticated caller; per address, without one).
fn ident_for<'c>(by: By, caller: Option<(&'c str, u64)>, client: Option<IpAddr>) -> Option<(Ident<'c>, u64)> {
    match by {
        By::All => Some((Ident::All, 0)),
        By::Key => caller.map(|(id, key)| (Ident::Caller(id), key)),
        By::ClientIp => client.map(|ip| {
            let ident = Ident::Ip(ip);
            (ident, ident.key())
        }),
    }
}

/// The `RateLimit-Policy` and `RateLimit` values for a refusal by `limited` (the
/// refusing limit alone), or for an admitted request with `x.limit_remaining`.
pub fn field_values(x: &Exchange<'_>, limited: Option<&Limited>) -> Option<(Vec<u8>, Vec<u8>)> {
    if limited.is_none() && x.limit_remaining.is_empty() {
        return None;
    }
    let snap = &x.view.snap;
    if snap.config.traffic.headers == HeaderMode::Never {
        return None;
    }
    let caller = x.caller.map(|c| c.id(&snap.config.access));
    let applied = |i: usize, remaining: u64, reset: Nanos| {
        let l = snap.limits.get(i)?;
        let (quota, burst) = l.quota_of(caller);
        Some(Applied {
            name: &l.def.name,
            quota,
            window_seconds: l.def.unit.seconds(),
            burst,
            remaining,
            reset,
        })
    };
    let list: Vec<Applied<'_>> = match limited {
        Some(Limited::Over { limit, retry_at, now }) => applied(*limit, 0, retry_at.saturating_sub(*now))
            .into_iter()
            .collect(),
        Some(Limited::Unavailable { .. }) => return None,
        None => x
            .limit_remaining
            .iter()
            .filter_map(|&(i, r, reset)| applied(usize::from(i), r, reset))
            .collect(),
    };
    if list.is_empty() {
        return None;
    }
    let (mut policy, mut limit) = (Vec::with_capacity(64), Vec::with_capacity(64));
    fields::policy_value(&mut policy, &list);
    fields::limit_value(&mut limit, &list);
    Some((policy, limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::traffic::parse_cidr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_last_untrusted_hop() {
        let trusted = [parse_cidr("10.0.0.0/8").unwrap(), parse_cidr("::1").unwrap()];
        let peer = ip("10.1.1.1");
        let none = || std::iter::empty::<&[u8]>();
        let xff = |v: &'static [&'static [u8]]| v.iter().copied();
        // A client can prepend anything: only what trusted proxies appended counts.
        assert_eq!(
            forwarded_client(
                peer,
                &trusted,
                xff(&[b"6.6.6.6, 203.0.113.7", b"10.2.2.2"]),
                none()
            ),
            ip("203.0.113.7")
        );
        assert_eq!(
            forwarded_client(peer, &trusted, xff(&[b"10.3.3.3, 10.2.2.2"]), none()),
            ip("10.3.3.3")
        );
        assert_eq!(forwarded_client(peer, &trusted, xff(&[b"garbage"]), none()), peer);
        // A hop with a port (Azure's Application Gateway writes them) still counts;
        // an unreadable one ends the walk at the proxy in front of it.
        assert_eq!(
            forwarded_client(
                peer,
                &trusted,
                xff(&[b"6.6.6.6, 203.0.113.7:5123, 10.2.2.2"]),
                none()
            ),
            ip("203.0.113.7")
        );
        assert_eq!(
            forwarded_client(peer, &trusted, xff(&[b"6.6.6.6, unknown, 10.2.2.2"]), none()),
            ip("10.2.2.2")
        );
        // X-Forwarded-For present (even unreadable): Forwarded, which the proxy may
        // pass through from the client, is not consulted.
        let fwd: &[&[u8]] = &[b"for=6.6.6.6"];
        assert_eq!(
            forwarded_client(peer, &trusted, xff(&[b"unknown"]), fwd.iter().copied()),
            peer
        );
        assert_eq!(
            forwarded_client(peer, &trusted, xff(&[b"::ffff:198.51.100.9"]), none()),
            ip("198.51.100.9")
        );
        // Forwarded (RFC 7239), when there is no X-Forwarded-For.
        let fwd: &[&[u8]] = &[
            b"for=192.0.2.60;proto=http;by=203.0.113.43",
            b"For=\"[2001:db8:cafe::17]:4711\"",
        ];
        assert_eq!(
            forwarded_client(peer, &trusted, none(), fwd.iter().copied()),
            ip("2001:db8:cafe::17")
        );
        let fwd: &[&[u8]] = &[b"for=\"192.0.2.61:80\", for=unknown"];
        assert_eq!(
            forwarded_client(peer, &trusted, none(), fwd.iter().copied()),
            peer,
            "the nearest hop is unknown: the proxy stands for it"
        );
        let fwd: &[&[u8]] = &[b"for=unknown, for=\"192.0.2.61:80\""];
        assert_eq!(
            forwarded_client(peer, &trusted, none(), fwd.iter().copied()),
            ip("192.0.2.61")
        );
    }
}
