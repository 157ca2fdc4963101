//! Phase 3: the member of an endpoint group a request goes to — the key of a
//! consistent-hash group read off the request — and, once the request is done,
//! what its outcome tells the group's health.

use crate::config::health::HashOn;
use crate::config::Lb;
use crate::http::find_header;
use crate::proxy::error::ProxyError;
use crate::proxy::exchange::{Exchange, Outcome};
use crate::proxy::Dest;
use crate::upstream::health::Observed;
use crate::upstream::maglev::hash_key;
use crate::upstream::{Endpoint, Pick, UpstreamId};
use ringway_router::EndpointId;

/// The member a request was sent to: its group and its index there.
pub type Member = Option<(EndpointId, usize)>;

/// The upstream for `dest`, skipping members that are down (and those in `tried`
/// while another is up): 503 when the group has none up and refuses
/// (`all_down = "refuse"`), or no member at all.
pub fn pick(x: &Exchange<'_>, dest: Dest, tried: &[usize]) -> Result<(UpstreamId, Member), ProxyError> {
    let e = match dest {
        Dest::Upstream(u) => return Ok((u, None)),
        Dest::Endpoint(e) => e,
    };
    let snap = &x.view.snap;
    let key = x.hash_key;
    match x
        .view
        .balancer
        .pick(&snap.endpoints, e, snap.group_health(e), key, tried)
    {
        Pick::To { upstream, member } => Ok((upstream, member.map(|m| (e, m)))),
        Pick::AllDown => Err(ProxyError::all_down(e)),
        Pick::Nothing => Err(ProxyError::no_upstream()),
    }
}

/// The hash of the request's key, for a consistent-hash group: taken right after
/// the decision, while the shard's match scratch still holds this request's
/// captures (an await later, another request's may be there).
pub fn request_key(x: &Exchange<'_>, dest: Dest) -> Option<u64> {
    let Dest::Endpoint(e) = dest else { return None };
    match x.view.snap.endpoints.get(e.0 as usize) {
        Some(Endpoint::Group {
            lb: Lb::ConsistentHash,
            ..
        }) => hash_of(x, e),
        _ => None,
    }
}

/// The hash of the request's `hash_on` key. Without the key (no such header,
/// cookie, parameter or capture) the client's address stands in, as in Kong's
/// `hash_fallback`: the same client still lands on the same member.
fn hash_of(x: &Exchange<'_>, e: EndpointId) -> Option<u64> {
    let crate::config::EndpointDef::Group { policy, .. } = x.view.snap.config.endpoints.get(e.0 as usize)?
    else {
        return None;
    };
    let buf = &x.client.buf[..];
    let headers = x.fields.headers();
    let found: Option<u64> = match policy.hash_on.as_ref()? {
        HashOn::ClientIp => None,
        HashOn::Header(name) => find_header(buf, headers, name.as_bytes()).map(hash_key),
        HashOn::Cookie(name) => headers
            .iter()
            .filter(|h| h.name.slice(buf).eq_ignore_ascii_case(b"cookie"))
            .find_map(|h| cookie(h.value.slice(buf), name.as_bytes()))
            .map(hash_key),
        HashOn::Query(name) => x
            .head
            .query
            .and_then(|q| param(q.slice(buf), name.as_bytes()))
            .map(hash_key),
        HashOn::Capture(name) => {
            let route = x.route?;
            let scratch = x.shard.match_scratch.borrow();
            let index = name.parse::<usize>().ok().or_else(|| {
                x.view
                    .router
                    .group_names(route)
                    .find(|(n, _)| *n == name)
                    .map(|(_, i)| i)
            });
            index.and_then(|i| scratch.group(i)).map(hash_key)
        }
    };
    found.or_else(|| {
        let ip = x
            .client_addr
            .or_else(|| crate::proxy::policy::limits::client_address(x))?;
        Some(match ip {
            std::net::IpAddr::V4(a) => hash_key(&a.octets()),
            std::net::IpAddr::V6(a) => hash_key(&a.octets()),
        })
    })
}

/// The value of cookie `name` in a `Cookie` field value (`a=1; b=2`).
fn cookie<'v>(value: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
    value.split(|&b| b == b';').find_map(|pair| {
        let (n, v) = split_once(pair.trim_ascii(), b'=')?;
        (n == name).then_some(v)
    })
}

/// The (raw) value of query parameter `name`.
fn param<'q>(query: &'q [u8], name: &[u8]) -> Option<&'q [u8]> {
    query
        .split(|&b| b == b'&')
        .find_map(|pair| match split_once(pair, b'=') {
            Some((n, v)) if n == name => Some(v),
            None if pair == name => Some(&pair[pair.len()..]),
            _ => None,
        })
}

fn split_once(s: &[u8], at: u8) -> Option<(&[u8], &[u8])> {
    let i = memchr::memchr(at, s)?;
    Some((&s[..i], &s[i + 1..]))
}

/// Counts the request's outcome toward its member's health: a response of 500 or
/// more, a failure of the upstream's (no response), or a success. Failures of the
/// client's or ringway's own count for nothing.
pub fn observe(x: &Exchange<'_>, member: Member, result: Result<&Outcome, &ProxyError>) {
    let Some((e, i)) = member else { return };
    let Some(health) = x.view.snap.group_health(e) else {
        return;
    };
    let seen = match result {
        Ok(_) if x.sent.upstream_cut => Observed::Failure,
        Ok(o) if o.status >= 500 => Observed::Status5xx,
        Ok(_) => Observed::Ok,
        Err(err) if err.retried_status().is_some() => Observed::Status5xx,
        Err(err) if err.source() == crate::proxy::Source::Upstream => Observed::Failure,
        Err(_) => return,
    };
    health.record(i, seen);
}

#[cfg(test)]
mod tests {
    use super::{cookie, param};

    #[test]
    fn cookies_and_parameters_by_name() {
        assert_eq!(cookie(b"a=1; sid=xyz; b=2", b"sid"), Some(&b"xyz"[..]));
        assert_eq!(cookie(b"asid=1;sid=2", b"sid"), Some(&b"2"[..]));
        assert_eq!(cookie(b"a=1", b"sid"), None);
        assert_eq!(param(b"u=7&x=1", b"x"), Some(&b"1"[..]));
        assert_eq!(param(b"xx=1&x", b"x"), Some(&b""[..]));
        assert_eq!(param(b"u=7", b"x"), None);
    }
}
