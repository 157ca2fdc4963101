//! `JDCLOUD2-HMAC-SHA256`: JD Cloud's request signature, verified as JD's own
//! SDK signers (Go, Java, Node, C++, Rust, Python ≤ 1.6.94) produce it.
//!
//! ```text
//! canonical request = METHOD \n URI \n QUERY \n (name:value \n)* \n SIGNEDHEADERS \n PAYLOADHASH
//! string to sign    = JDCLOUD2-HMAC-SHA256 \n DATE \n yyyymmdd/region/service/jdcloud2_request \n hex(sha256(canonical))
//! signing key       = HMAC(HMAC(HMAC(HMAC("JDCLOUD2" + secret, yyyymmdd), region), service), "jdcloud2_request")
//! signature         = hex(HMAC(signing key, string to sign))
//! Authorization: JDCLOUD2-HMAC-SHA256 Credential=AK/yyyymmdd/region/service/jdcloud2_request, SignedHeaders=a;b, Signature=hex
//! ```
//!
//! The canonical form is rebuilt from the request **as the client sent it** (raw path
//! and query, before any normalization), so the SDKs' small differences do not
//! matter: the path and each query key and value are percent-decoded and re-encoded
//! with only `A-Za-z0-9-._~` (and `/` in the path) left bare — which is what the
//! SDKs put on the wire anyway; query pairs are sorted by key, then value; a header
//! value is trimmed, its runs of spaces collapsed, and repeated fields joined with
//! `,`. The headers are the ones the client listed in `SignedHeaders`, in its order;
//! `x-jdcloud-date` and `x-jdcloud-nonce` must be among them (else a replay could
//! carry a fresh date or nonce). The payload hash is `x-jdcloud-content-sha256` when
//! present — as JD's own validators do — and the body's SHA-256 must then equal it.

use super::{hex_lower, percent_canonical};
use ring::hmac;

pub const ALGORITHM: &[u8] = b"JDCLOUD2-HMAC-SHA256";
const TERMINATOR: &[u8] = b"jdcloud2_request";
/// SHA-256 of no bytes: the payload hash of a request without a body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Why a signed request is refused. Each has a stable `code` for the JSON answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    Malformed(&'static str),
    MissingDate,
    BadDate,
    /// The date is this many seconds from the gateway's clock (signed: ahead > 0).
    Skewed(i64),
    ScopeDate,
    MissingNonce,
    /// `x-jdcloud-date` or `x-jdcloud-nonce` is not in SignedHeaders.
    Unsigned(&'static str),
    MissingSignedHeader(String),
    BadContentSha256,
    BodyMismatch,
    Signature,
}

impl Reject {
    /// The stable code of the refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Reject::Malformed(_) => "malformed_authorization",
            Reject::MissingDate => "missing_date",
            Reject::BadDate => "malformed_date",
            Reject::Skewed(_) => "date_out_of_window",
            Reject::ScopeDate => "credential_date_mismatch",
            Reject::MissingNonce => "missing_nonce",
            Reject::Unsigned(_) => "header_not_signed",
            Reject::MissingSignedHeader(_) => "missing_signed_header",
            Reject::BadContentSha256 => "malformed_content_sha256",
            Reject::BodyMismatch => "content_sha256_mismatch",
            Reject::Signature => "signature_mismatch",
        }
    }

    /// What is wrong, for the caller (no secret material).
    pub fn message(&self, skew_secs: u64) -> String {
        match self {
            Reject::Malformed(why) => format!("Authorization header: {why}"),
            Reject::MissingDate => "x-jdcloud-date header is missing".into(),
            Reject::BadDate => "x-jdcloud-date is not of the form YYYYMMDDTHHMMSSZ".into(),
            Reject::Skewed(d) => format!(
                "x-jdcloud-date is {}s {} the gateway's clock; the window is ±{skew_secs}s",
                d.unsigned_abs(),
                if *d > 0 { "ahead of" } else { "behind" }
            ),
            Reject::ScopeDate => "the Credential's date is not the date of x-jdcloud-date".into(),
            Reject::MissingNonce => "x-jdcloud-nonce header is missing".into(),
            Reject::Unsigned(h) => format!("{h} must be listed in SignedHeaders"),
            Reject::MissingSignedHeader(h) => format!("header '{h}' is listed in SignedHeaders but not sent"),
            Reject::BadContentSha256 => "x-jdcloud-content-sha256 is not 64 hex digits".into(),
            Reject::BodyMismatch => "the body's SHA-256 is not x-jdcloud-content-sha256".into(),
            Reject::Signature => "the signature does not match the request".into(),
        }
    }
}

/// The parts of `Authorization: JDCLOUD2-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key: &'a [u8],
    pub date: &'a [u8],
    pub region: &'a [u8],
    pub service: &'a [u8],
    /// `a;b;c`, lowercase.
    pub signed_headers: &'a [u8],
    pub signature: [u8; 32],
}

/// Whether an `Authorization` value claims this scheme (the caller meant a signature).
pub fn is_jdcloud2(v: &[u8]) -> bool {
    v.len() > ALGORITHM.len()
        && v[..ALGORITHM.len()].eq_ignore_ascii_case(ALGORITHM)
        && v[ALGORITHM.len()] == b' '
}

/// Parses an `Authorization` value of this scheme.
pub fn parse_authorization(v: &[u8]) -> Result<Authorization<'_>, Reject> {
    if !is_jdcloud2(v) {
        return Err(Reject::Malformed("not JDCLOUD2-HMAC-SHA256"));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in v[ALGORITHM.len() + 1..].split(|&b| b == b',') {
        let part = part.trim_ascii();
        let Some(eq) = part.iter().position(|&b| b == b'=') else {
            return Err(Reject::Malformed("a part is not name=value"));
        };
        let (name, value) = (&part[..eq], &part[eq + 1..]);
        let slot = match name {
            b"Credential" => &mut credential,
            b"SignedHeaders" => &mut signed,
            b"Signature" => &mut signature,
            _ => {
                return Err(Reject::Malformed(
                    "unknown part (expected Credential, SignedHeaders, Signature)",
                ))
            }
        };
        if slot.replace(value).is_some() {
            return Err(Reject::Malformed("a part is given twice"));
        }
    }
    let credential = credential.ok_or(Reject::Malformed("Credential is missing"))?;
    let signed_headers = signed.ok_or(Reject::Malformed("SignedHeaders is missing"))?;
    let signature = signature.ok_or(Reject::Malformed("Signature is missing"))?;
    let mut scope = credential.split(|&b| b == b'/');
    let mut next = || scope.next().filter(|s| !s.is_empty());
    let (Some(access_key), Some(date), Some(region), Some(service), Some(TERMINATOR), None) =
        (next(), next(), next(), next(), next(), next())
    else {
        return Err(Reject::Malformed(
            "Credential is not AK/yyyymmdd/region/service/jdcloud2_request",
        ));
    };
    if date.len() != 8 || !date.iter().all(u8::is_ascii_digit) {
        return Err(Reject::Malformed("the Credential's date is not yyyymmdd"));
    }
    if signed_headers.is_empty()
        || signed_headers
            .split(|&b| b == b';')
            .any(|h| h.is_empty() || h.iter().any(|b| b.is_ascii_uppercase() || !super::is_tchar(*b)))
    {
        return Err(Reject::Malformed(
            "SignedHeaders is not a ;-list of lowercase header names",
        ));
    }
    let signature = super::unhex32(signature).ok_or(Reject::Malformed("Signature is not 64 hex digits"))?;
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// Seconds since the Unix epoch of `YYYYMMDDTHHMMSSZ`.
pub fn parse_date(v: &[u8]) -> Option<i64> {
    if v.len() != 16 || v[8] != b'T' || v[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = &v[r];
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| s.iter().fold(0i64, |n, &b| n * 10 + i64::from(b - b'0')))
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let days_in = [
        31,
        if crate::civil::is_leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d < 1 || d > days_in[(mo - 1) as usize] || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(crate::civil::days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + s)
}

/// A field that must appear at most once appeared more often.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repeated;

/// A request as the client sent it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a [u8],
    /// The raw path, as sent.
    pub path: &'a [u8],
    /// The raw query, without `?`.
    pub query: Option<&'a [u8]>,
    /// Every header field, names in any case, in order.
    pub headers: &'a [(&'a [u8], &'a [u8])],
}

impl<'a> Request<'a> {
    /// Every value of the field `name` (lowercase).
    fn values<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The one value of `name`, if sent once (`Err` if more than once).
    pub fn one(&self, name: &[u8]) -> Result<Option<&'a [u8]>, Repeated> {
        let mut it = self.values(name);
        let first = it.next();
        if it.next().is_some() {
            return Err(Repeated);
        }
        Ok(first.map(<[u8]>::trim_ascii))
    }
}

/// Writes the canonical request of `req` under `auth` into `out`, with
/// `payload_hash` (lowercase hex) as its last line.
pub fn canonical_request(
    out: &mut Vec<u8>,
    req: &Request<'_>,
    auth: &Authorization<'_>,
    payload_hash: &[u8],
) -> Result<(), Reject> {
    canonical_request_with(out, req, auth, payload_hash, Plus::Bare)
}

/// [`canonical_request`] with a bare `+` in the query read as `plus` says.
pub fn canonical_request_with(
    out: &mut Vec<u8>,
    req: &Request<'_>,
    auth: &Authorization<'_>,
    payload_hash: &[u8],
    plus: Plus,
) -> Result<(), Reject> {
    out.clear();
    out.extend_from_slice(req.method);
    out.push(b'\n');
    if req.path.is_empty() {
        out.push(b'/');
    } else {
        percent_canonical(out, req.path, true);
    }
    out.push(b'\n');
    canonical_query(out, req.query.unwrap_or_default(), plus);
    out.push(b'\n');
    for name in auth.signed_headers.split(|&b| b == b';') {
        out.extend_from_slice(name);
        out.push(b':');
        let mut any = false;
        for v in req.values(name) {
            if any {
                out.push(b',');
            }
            any = true;
            collapse_into(out, v);
        }
        if !any {
            return Err(Reject::MissingSignedHeader(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(auth.signed_headers);
    out.push(b'\n');
    out.extend_from_slice(payload_hash);
    Ok(())
}

/// How a bare `+` in the query is canonicalized. JD's Go SDK sends a space as `+`
/// and signs the raw query, so `+` stays `+` ([`Plus::Bare`], tried first); the
/// Rust signer decodes it as a space and signs `%20` ([`Plus::Space`], tried when
/// the first fails and the query has a `+`). The Java, Node and Python signers
/// never put a bare `+` on the wire (a literal plus is `%2B`, a space `%20`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plus {
    Bare,
    Space,
}

/// Appends one query key or value, canonical under `plus`.
fn query_part(out: &mut Vec<u8>, raw: &[u8], plus: Plus) {
    for (i, piece) in raw.split(|&b| b == b'+').enumerate() {
        if i > 0 {
            out.extend_from_slice(match plus {
                Plus::Bare => b"+",
                Plus::Space => b"%20",
            });
        }
        percent_canonical(out, piece, false);
    }
}

/// `k=v&…`: each key and value percent-canonical, sorted by key then value; a
/// parameter without `=` is `k=`; empty parameters are dropped.
fn canonical_query(out: &mut Vec<u8>, query: &[u8], plus: Plus) {
    if query.is_empty() {
        return;
    }
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = query
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = match p.iter().position(|&b| b == b'=') {
                Some(i) => (&p[..i], &p[i + 1..]),
                None => (p, &b""[..]),
            };
            let (mut ck, mut cv) = (Vec::with_capacity(k.len()), Vec::with_capacity(v.len()));
            query_part(&mut ck, k, plus);
            query_part(&mut cv, v, plus);
            (ck, cv)
        })
        .collect();
    pairs.sort_unstable();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
    }
}

/// The signing key of `secret` for a credential scope.
pub fn signing_key(secret: &[u8], date: &[u8], region: &[u8], service: &[u8]) -> hmac::Key {
    let mut seed = Vec::with_capacity(8 + secret.len());
    seed.extend_from_slice(b"JDCLOUD2");
    seed.extend_from_slice(secret);
    let mut k = hmac::Key::new(hmac::HMAC_SHA256, &seed);
    for part in [date, region, service, TERMINATOR] {
        k = hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&k, part).as_ref());
    }
    k
}

/// Writes the string to sign for `canonical` into `out`.
pub fn string_to_sign(out: &mut Vec<u8>, x_date: &[u8], auth: &Authorization<'_>, canonical: &[u8]) {
    out.clear();
    out.extend_from_slice(ALGORITHM);
    out.push(b'\n');
    out.extend_from_slice(x_date);
    out.push(b'\n');
    for (i, part) in [auth.date, auth.region, auth.service, TERMINATOR]
        .iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(part);
    }
    out.push(b'\n');
    hex_lower(
        out,
        ring::digest::digest(&ring::digest::SHA256, canonical).as_ref(),
    );
}

/// The signature of `string_to_sign` under `key`, lowercase hex.
pub fn sign(key: &hmac::Key, string_to_sign: &[u8]) -> String {
    let mut out = Vec::with_capacity(64);
    hex_lower(&mut out, hmac::sign(key, string_to_sign).as_ref());
    String::from_utf8(out).unwrap_or_default()
}

/// Signing keys derived per (key pair, credential scope), kept by a shard: the
/// four HMACs of [`signing_key`] run once per pair and day, not per request.
/// Bounded: cleared when it holds [`KeyCache::MAX`] scopes.
#[derive(Default)]
pub struct KeyCache {
    /// Pair index → the scopes derived for it (a pair signs with one or two scopes
    /// a day: a short list, compared in place, so a hit allocates nothing).
    map: std::cell::RefCell<std::collections::HashMap<usize, Vec<CachedKey>>>,
}

/// A signing key and the credential scope it was derived for.
struct CachedKey {
    date: Box<[u8]>,
    region: Box<[u8]>,
    service: Box<[u8]>,
    key: hmac::Key,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scopes: usize = self.map.borrow().values().map(Vec::len).sum();
        f.debug_struct("KeyCache").field("scopes", &scopes).finish()
    }
}

impl KeyCache {
    /// Scopes kept per pair before its list starts over.
    pub const MAX_PER_PAIR: usize = 8;

    /// The signing key of pair `pair` (whose secret is `secret`) for `auth`'s scope.
    pub fn get(&self, pair: usize, secret: &[u8], auth: &Authorization<'_>) -> hmac::Key {
        let mut map = self.map.borrow_mut();
        let list = map.entry(pair).or_default();
        let same = |c: &&CachedKey| {
            *c.date == *auth.date && *c.region == *auth.region && *c.service == *auth.service
        };
        if let Some(c) = list.iter().find(same) {
            return c.key.clone();
        }
        if list.len() >= Self::MAX_PER_PAIR {
            list.clear();
        }
        let key = signing_key(secret, auth.date, auth.region, auth.service);
        list.push(CachedKey {
            date: auth.date.into(),
            region: auth.region.into(),
            service: auth.service.into(),
            key: key.clone(),
        });
        key
    }
}

/// Scratch buffers for [`verify`], reused across requests.
#[derive(Debug, Default)]
pub struct Scratch {
    canonical: Vec<u8>,
    to_sign: Vec<u8>,
}

/// What a verified request carried, for the replay check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified<'a> {
    /// The nonce as the signature covers it: trimmed, runs of spaces and tabs
    /// collapsed to one space. `a b` and `a  b` sign the same, so they are the same
    /// nonce to the replay check.
    pub nonce: std::borrow::Cow<'a, [u8]>,
    /// Seconds since the epoch of `x-jdcloud-date`.
    pub date: i64,
}

/// What is known of the body when the signature is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// The request has none.
    Empty,
    /// Its SHA-256: `x-jdcloud-content-sha256`, if sent, must equal it.
    Sha256(&'a [u8; 32]),
    /// Not read yet: the signature is checked against the declared
    /// `x-jdcloud-content-sha256` (which must be sent), and the caller compares
    /// the body with [`declared_sha256`] once it has read it — so a forged request
    /// costs no body read.
    Declared,
}

/// The declared `x-jdcloud-content-sha256` of `req`, if it is well-formed.
pub fn declared_sha256(req: &Request<'_>) -> Option<[u8; 32]> {
    super::unhex32(req.one(b"x-jdcloud-content-sha256").ok()??)
}

/// `v` trimmed, with runs of spaces and tabs as one space (how a signed header
/// value is canonicalized).
pub fn collapse(v: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let v = v.trim_ascii();
    let mut prev_space = false;
    let clean = v.iter().all(|&b| {
        let ok = b != b'\t' && !(b == b' ' && prev_space);
        prev_space = b == b' ';
        ok
    });
    if clean {
        return v.into();
    }
    let mut out = Vec::with_capacity(v.len());
    collapse_into(&mut out, v);
    out.into()
}

fn collapse_into(out: &mut Vec<u8>, v: &[u8]) {
    let mut space = false;
    for &b in v.trim_ascii() {
        if b == b' ' || b == b'\t' {
            space = true;
            continue;
        }
        if space {
            out.push(b' ');
            space = false;
        }
        out.push(b);
    }
}

/// Checks the signature of `req` (already parsed `auth`), given the SHA-256 of its
/// body (`None`: no body), the gateway's clock `now` (epoch seconds), the allowed
/// `skew` and the signing key for `auth`'s scope (see [`signing_key`]).
pub fn verify<'r>(
    req: &Request<'r>,
    auth: &Authorization<'_>,
    body: Body<'_>,
    now: i64,
    skew_secs: u64,
    key: &hmac::Key,
    scratch: &mut Scratch,
) -> Result<Verified<'r>, Reject> {
    let x_date = req
        .one(b"x-jdcloud-date")
        .map_err(|_| Reject::BadDate)?
        .ok_or(Reject::MissingDate)?;
    let date = parse_date(x_date).ok_or(Reject::BadDate)?;
    let ahead = date - now;
    if ahead.unsigned_abs() > skew_secs {
        return Err(Reject::Skewed(ahead));
    }
    if x_date[..8] != *auth.date {
        return Err(Reject::ScopeDate);
    }
    let nonce = req
        .one(b"x-jdcloud-nonce")
        .map_err(|_| Reject::Malformed("x-jdcloud-nonce is sent twice"))?
        .filter(|n| !n.is_empty())
        .ok_or(Reject::MissingNonce)?;
    for must in ["x-jdcloud-date", "x-jdcloud-nonce"] {
        if !auth
            .signed_headers
            .split(|&b| b == b';')
            .any(|h| h == must.as_bytes())
        {
            return Err(Reject::Unsigned(must));
        }
    }
    let mut hex_buf = Vec::with_capacity(64);
    let body_hex: &[u8] = match body {
        Body::Sha256(h) => {
            hex_lower(&mut hex_buf, h);
            &hex_buf
        }
        Body::Empty | Body::Declared => EMPTY_SHA256.as_bytes(),
    };
    let declared = req
        .one(b"x-jdcloud-content-sha256")
        .map_err(|_| Reject::BadContentSha256)?;
    let payload_hash = match (declared, body) {
        (Some(d), _) if d.len() != 64 || !d.iter().all(u8::is_ascii_hexdigit) => {
            return Err(Reject::BadContentSha256);
        }
        (Some(d), Body::Declared) => d,
        (Some(d), _) if !d.eq_ignore_ascii_case(body_hex) => return Err(Reject::BodyMismatch),
        (Some(d), _) => d,
        (None, Body::Declared) => return Err(Reject::BadContentSha256),
        (None, _) => body_hex,
    };
    canonical_request(&mut scratch.canonical, req, auth, payload_hash)?;
    string_to_sign(&mut scratch.to_sign, x_date, auth, &scratch.canonical);
    if hmac::verify(key, &scratch.to_sign, &auth.signature).is_err() {
        // The one other reading of a bare `+` (see [`Plus`]).
        let plus = req.query.is_some_and(|q| q.contains(&b'+'));
        if !plus {
            return Err(Reject::Signature);
        }
        canonical_request_with(&mut scratch.canonical, req, auth, payload_hash, Plus::Space)?;
        string_to_sign(&mut scratch.to_sign, x_date, auth, &scratch.canonical);
        hmac::verify(key, &scratch.to_sign, &auth.signature).map_err(|_| Reject::Signature)?;
    }
    Ok(Verified {
        nonce: collapse(nonce),
        date,
    })
}

#[cfg(test)]
mod tests;
