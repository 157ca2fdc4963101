//! Access authorization: who is calling, and may they call this group.
//!
//! A group with `auth = "subscription_key"` wants a known key in a header (or query
//! parameter) that lists the group; one with `auth = "signature"` wants a request
//! signed `JDCLOUD2-HMAC-SHA256` by a key pair that lists it, with a date inside
//! the skew window and a nonce not seen before on this node. The caller's identity
//! (never a secret) is recorded on the exchange for the log, metrics and limits.
//!
//! Order matters for cost and for what a stranger can learn: cheap syntax checks,
//! then the key lookup, then (for signatures) the body read and hashed, the
//! signature checked, and only then the group's authorization list (so an
//! unauthenticated caller cannot probe which key may call what) and the nonce
//! recorded (so a forged request cannot burn a real caller's nonce).

use crate::access::jdcloud::{self, Body, Reject, Request};
use crate::access::nonce::Admit;
use crate::config::access::{AccessConfig, Auth, GroupConfig};
use crate::http::BodyFraming;
use crate::proxy::body::{read_whole, BodyTiming};
use crate::proxy::error::ProxyError;
use crate::proxy::exchange::{Caller, Exchange};
use std::borrow::Cow;

/// A refusal: the status, a stable code and a message naming the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// `WWW-Authenticate` for a 401.
    pub challenge: Option<&'static str>,
}

impl Denial {
    fn new(status: u16, code: &'static str, message: impl Into<Cow<'static, str>>) -> Denial {
        Denial {
            status,
            code,
            message: message.into(),
            challenge: None,
        }
    }

    fn unauthenticated(
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
        scheme: &'static str,
    ) -> Denial {
        Denial {
            challenge: Some(scheme),
            ..Denial::new(401, code, message)
        }
    }
}

/// Why a request did not pass authorization.
#[derive(Debug)]
pub enum Refused {
    /// Answered with a JSON error.
    Denied(Denial),
    /// Reading the body failed (timeouts, a client gone): a proxy failure.
    Failed(ProxyError),
}

impl From<Denial> for Refused {
    fn from(d: Denial) -> Refused {
        Refused::Denied(d)
    }
}

const KEY_SCHEME: &str = "SubscriptionKey";
const SIGNATURE_SCHEME: &str = "JDCLOUD2-HMAC-SHA256";

/// The group the request's route belongs to, if it matched one.
pub fn group<'v>(x: &Exchange<'v>) -> Option<(usize, &'v GroupConfig)> {
    let config = &x.view.snap.config;
    let route = config.routes.get(x.route?.index())?;
    Some((route.group_index, config.groups.get(route.group_index)?))
}

/// Checks the caller of `x` against its group's `auth`.
pub async fn authorize(x: &mut Exchange<'_>) -> Result<(), Refused> {
    let Some((gi, group)) = group(x) else {
        return Ok(());
    };
    let access = &x.view.snap.config.access;
    match group.auth {
        Auth::None => Ok(()),
        Auth::SubscriptionKey => {
            let (i, pos) =
                subscription_key(x, access, gi, &group.name).inspect_err(|d| denied(x, group, d))?;
            x.caller = Some(Caller::Key(i));
            x.view.auth_stats.keys[i][pos].inc();
            Ok(())
        }
        Auth::Signature => {
            let (i, pos) = signature(x, access, gi, &group.name).await.inspect_err(|r| {
                if let Refused::Denied(d) = r {
                    denied(x, group, d);
                }
            })?;
            x.caller = Some(Caller::Pair(i));
            x.view.auth_stats.pairs[i][pos].inc();
            Ok(())
        }
    }
}

/// Counts a denial by group and code (the refusal path: a registry lookup).
fn denied(x: &Exchange<'_>, group: &GroupConfig, d: &Denial) {
    x.shard.stats.auth_denied(&group.name, d.code).inc();
}

/// The key's index, and the group's position in its list (for its counter).
fn subscription_key(
    x: &Exchange<'_>,
    access: &AccessConfig,
    gi: usize,
    group: &str,
) -> Result<(usize, usize), Denial> {
    let buf = &x.client.buf[..];
    let name = access.key_header.as_bytes();
    let mut sent = x
        .fields
        .headers()
        .iter()
        .filter(|h| h.name.slice(buf).eq_ignore_ascii_case(name))
        .map(|h| h.value.slice(buf).trim_ascii());
    let header = sent.next();
    if sent.next().is_some() {
        return Err(Denial::unauthenticated(
            "ambiguous_credentials",
            format!("the {} header is sent more than once", access.key_header),
            KEY_SCHEME,
        ));
    }
    let from_query;
    let presented = match (header, &access.key_query) {
        (Some(v), _) => v,
        (None, Some(param)) => {
            from_query = x
                .head
                .query
                .and_then(|q| query_value(q.slice(buf), param.as_bytes()));
            from_query.as_deref().unwrap_or_default()
        }
        (None, None) => b"",
    };
    if presented.is_empty() {
        let where_ = match &access.key_query {
            Some(q) => format!("the {} header or the '{q}' query parameter", access.key_header),
            None => format!("the {} header", access.key_header),
        };
        return Err(Denial::unauthenticated(
            "missing_credentials",
            format!("this API needs a subscription key in {where_}"),
            KEY_SCHEME,
        ));
    }
    let Some(i) = access.subscription_key(presented) else {
        return Err(Denial::unauthenticated(
            "unknown_key",
            "the subscription key is not known",
            KEY_SCHEME,
        ));
    };
    let key = &access.subscription_keys[i];
    match key.groups.binary_search(&gi) {
        Ok(pos) => Ok((i, pos)),
        Err(_) => Err(Denial::new(
            403,
            "not_authorized",
            format!(
                "subscription key '{}' is not authorized for API group '{group}'",
                key.id
            ),
        )),
    }
}

/// The percent-decoded value of the first `name` parameter of `query`.
fn query_value(query: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let pair = query.split(|&b| b == b'&').find(|p| {
        p.strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'=')
    })?;
    let raw = pair.get(name.len() + 1..).unwrap_or_default();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        match raw[i] {
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

fn reject(r: Reject, skew: u64) -> Denial {
    Denial::unauthenticated(r.code(), r.message(skew), SIGNATURE_SCHEME)
}

/// The pair's index, and the group's position in its list (for its counter).
async fn signature(
    x: &mut Exchange<'_>,
    access: &AccessConfig,
    gi: usize,
    group: &str,
) -> Result<(usize, usize), Refused> {
    let skew = access.skew.as_secs();
    // Syntax and the key first: a stranger's request costs no body read.
    let pair_index = {
        let buf = &x.client.buf[..];
        let mut values = x
            .fields
            .headers()
            .iter()
            .filter(|h| h.name.slice(buf).eq_ignore_ascii_case(b"authorization"))
            .map(|h| h.value.slice(buf));
        let value = values.next();
        if values.next().is_some() {
            return Err(Denial::unauthenticated(
                "ambiguous_credentials",
                "the Authorization header is sent more than once",
                SIGNATURE_SCHEME,
            )
            .into());
        }
        let Some(value) = value else {
            return Err(Denial::unauthenticated(
                "missing_credentials",
                "this API needs a JDCLOUD2-HMAC-SHA256 signed request (Authorization header)",
                SIGNATURE_SCHEME,
            )
            .into());
        };
        let auth = jdcloud::parse_authorization(value.trim_ascii()).map_err(|r| reject(r, skew))?;
        access.key_pair(auth.access_key).ok_or_else(|| {
            Denial::unauthenticated(
                "unknown_access_key",
                "the access key is not known",
                SIGNATURE_SCHEME,
            )
        })?
    };
    let pair = &access.key_pairs[pair_index];
    let len = match x.facts.framing {
        BodyFraming::None => 0,
        BodyFraming::Chunked => {
            return Err(Denial::new(
                411,
                "length_required",
                "a signed request's body needs a Content-Length",
            )
            .into());
        }
        BodyFraming::Length(n) if n > super::body_limit(x) => {
            return Err(Refused::Failed(ProxyError::body_too_large()));
        }
        BodyFraming::Length(n) if n > access.max_signed_body => {
            return Err(Denial::new(
                413,
                "signed_body_too_large",
                format!(
                    "a signed body is read whole to check its hash; this one is over the {} byte limit (max_signed_body)",
                    access.max_signed_body
                ),
            )
            .into());
        }
        BodyFraming::Length(n) => n,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    // With a declared body hash, the signature is checked before the body is read
    // (a forged request costs no body read), and the body against the hash after.
    let declared = len > 0 && has_field(x, b"x-jdcloud-content-sha256");
    let (date, nonce) = if declared {
        let checked = check(x, pair_index, Body::Declared, now, skew)?;
        let digest = read_body(x, len).await?;
        let matches = {
            let req = request_of(x);
            jdcloud::declared_sha256(&Request {
                headers: &req,
                ..request_parts(x)
            }) == Some(digest)
        };
        if !matches {
            return Err(reject(Reject::BodyMismatch, skew).into());
        }
        checked
    } else {
        let digest = if len > 0 {
            Some(read_body(x, len).await?)
        } else {
            None
        };
        let body = digest.as_ref().map_or(Body::Empty, Body::Sha256);
        check(x, pair_index, body, now, skew)?
    };
    let Ok(pos) = pair.groups.binary_search(&gi) else {
        return Err(Denial::new(
            403,
            "not_authorized",
            format!(
                "access key '{}' is not authorized for API group '{group}'",
                pair.access_key
            ),
        )
        .into());
    };
    // Remembered one second past the window the date check allows (date + skew).
    let expires = date.saturating_add(skew as i64 + 1);
    match x
        .shard
        .nonces
        .admit(pair.access_key.as_bytes(), &nonce, expires, now)
    {
        Admit::Fresh => Ok((pair_index, pos)),
        Admit::Replay => Err(Denial::unauthenticated(
            "replayed_nonce",
            "this x-jdcloud-nonce was already used within the signature window (replay)",
            SIGNATURE_SCHEME,
        )
        .into()),
        Admit::Full => {
            x.shard.stats.nonce_store_full.inc();
            Err(Denial::new(
                503,
                "nonce_store_full",
                "the gateway cannot record more nonces now; retry later",
            )
            .into())
        }
    }
}

/// Whether the request has a field `name`.
fn has_field(x: &Exchange<'_>, name: &[u8]) -> bool {
    let buf = &x.client.buf[..];
    x.fields
        .headers()
        .iter()
        .any(|h| h.name.slice(buf).eq_ignore_ascii_case(name))
}

/// A request's fields as (name, value) pairs.
type Fields<'b> = Vec<(&'b [u8], &'b [u8])>;

/// The request's fields, borrowed from the client buffer.
fn request_of<'b>(x: &'b Exchange<'_>) -> Fields<'b> {
    let buf = &x.client.buf[..];
    x.fields
        .headers()
        .iter()
        .map(|h| (h.name.slice(buf), h.value.slice(buf)))
        .collect()
}

/// The request line's parts as the client sent them (raw path and query).
fn request_parts<'b>(x: &'b Exchange<'_>) -> Request<'b> {
    let buf = &x.client.buf[..];
    Request {
        method: x.head.method.slice(buf),
        path: if x.head.path.is_empty() {
            b"/"
        } else {
            x.head.path.slice(buf)
        },
        query: x.head.query.map(|q| q.slice(buf)),
        headers: &[],
    }
}

/// Checks the signature of `x` (its `Authorization` parsed again: the buffer may
/// have moved since) with pair `pair_index`'s key; returns the date and the
/// canonical nonce.
fn check(
    x: &Exchange<'_>,
    pair_index: usize,
    body: Body<'_>,
    now: i64,
    skew: u64,
) -> Result<(i64, Vec<u8>), Denial> {
    let fields = request_of(x);
    let req = Request {
        headers: &fields,
        ..request_parts(x)
    };
    let value = req.one(b"authorization").ok().flatten().unwrap_or_default();
    let auth = jdcloud::parse_authorization(value).map_err(|r| reject(r, skew))?;
    let access = &x.view.snap.config.access;
    let secret = access.key_pairs[pair_index].secret.expose();
    let key = x.view.signing_keys.get(pair_index, secret, &auth);
    let mut scratch = x.shard.sig_scratch.borrow_mut();
    let v = jdcloud::verify(&req, &auth, body, now, skew, &key, &mut scratch).map_err(|r| reject(r, skew))?;
    Ok((v.date, v.nonce.into_owned()))
}

/// Reads the whole `len`-byte body into the client buffer (answering `100
/// Continue` first if the client waits for it) and returns its SHA-256.
async fn read_body(x: &mut Exchange<'_>, len: u64) -> Result<[u8; 32], Refused> {
    if x.facts.expect_continue && !x.continue_sent {
        let (r, _) = x.client.io.write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await;
        r.map_err(|_| Refused::Failed(ProxyError::client_gone()))?;
        x.continue_sent = true;
    }
    let timing = BodyTiming::of(&x.view.snap.config.limits);
    read_whole(x.client, x.facts.framing, timing, len)
        .await
        .map_err(|e| Refused::Failed(e.into()))?;
    let start = x.client.pos;
    let body = x
        .client
        .buf
        .get(start..start + len as usize)
        .ok_or(Refused::Failed(ProxyError::client_gone()))?;
    Ok(crate::config::access::sha256(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_found_whole_and_decoded() {
        assert_eq!(
            query_value(b"a=1&key=ab%2Fc&b=2", b"key").as_deref(),
            Some(&b"ab/c"[..])
        );
        assert_eq!(query_value(b"keys=1&key=2", b"key").as_deref(), Some(&b"2"[..]));
        assert_eq!(query_value(b"key", b"key").as_deref(), Some(&b""[..]));
        assert_eq!(query_value(b"a=1", b"key"), None);
        assert_eq!(query_value(b"key=%zz", b"key").as_deref(), Some(&b"%zz"[..]));
    }
}
