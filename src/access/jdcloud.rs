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
    map: std::cell::RefCell<std::collections::HashMap<(usize, Vec<u8>), hmac::Key>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("scopes", &self.map.borrow().len())
            .finish()
    }
}

impl KeyCache {
    pub const MAX: usize = 4096;

    /// The signing key of pair `pair` (whose secret is `secret`) for `auth`'s scope.
    pub fn get(&self, pair: usize, secret: &[u8], auth: &Authorization<'_>) -> hmac::Key {
        let mut scope = Vec::with_capacity(auth.date.len() + auth.region.len() + auth.service.len() + 2);
        for (i, part) in [auth.date, auth.region, auth.service].iter().enumerate() {
            if i > 0 {
                scope.push(b'/');
            }
            scope.extend_from_slice(part);
        }
        let mut map = self.map.borrow_mut();
        if let Some(k) = map.get(&(pair, scope.clone())) {
            return k.clone();
        }
        if map.len() >= Self::MAX {
            map.clear();
        }
        let k = signing_key(secret, auth.date, auth.region, auth.service);
        map.insert((pair, scope), k.clone());
        k
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
mod tests {
    use super::*;

    /// Signs `req` as a JD SDK would (the Authorization value), with the same
    /// canonical form the verifier rebuilds.
    fn sign_request(
        req: &Request<'_>,
        ak: &str,
        sk: &str,
        region: &str,
        service: &str,
        signed: &str,
        body: &[u8],
    ) -> String {
        let date = req.one(b"x-jdcloud-date").unwrap().unwrap();
        let fake = format!(
            "JDCLOUD2-HMAC-SHA256 Credential={ak}/{}/{region}/{service}/jdcloud2_request, SignedHeaders={signed}, Signature={}",
            std::str::from_utf8(&date[..8]).unwrap(),
            "0".repeat(64)
        );
        let auth = parse_authorization(fake.as_bytes()).unwrap();
        let mut hash = Vec::new();
        hex_lower(
            &mut hash,
            ring::digest::digest(&ring::digest::SHA256, body).as_ref(),
        );
        let mut c = Vec::new();
        canonical_request(&mut c, req, &auth, &hash).unwrap();
        let mut s = Vec::new();
        string_to_sign(&mut s, date, &auth, &c);
        let key = signing_key(sk.as_bytes(), auth.date, auth.region, auth.service);
        fake.replace(&"0".repeat(64), &sign(&key, &s))
    }

    /// A published JD signer test vector: the request, the key pair and scope, the
    /// signed headers, the body and the expected signature.
    struct Vector {
        source: &'static str,
        method: &'static [u8],
        path: &'static [u8],
        query: Option<&'static [u8]>,
        headers: &'static [(&'static [u8], &'static [u8])],
        key: (&'static str, &'static str),
        scope: (&'static str, &'static str),
        signed: &'static str,
        body: &'static [u8],
        signature: &'static str,
    }

    const VECTORS: [Vector; 4] = [
        // A POST with a `:` in the path, an unsorted query with `%`, header values
        // with spaces.
        Vector {
            source: "jdcloud-sdk-nodejs-signer test/sign.test.js",
            method: b"POST",
            path: b"/v1/resource:action",
            query: Some(b"p1=p1&u=u&o=%25&p0=p0"),
            headers: &[
                (b"host", b"test.jdcloud-api.com"),
                (b"content-type", b"application/json"),
                (b"x-my-header", b"test  "),
                (b"x-my-header_blank", b"  blank"),
                (b"x-jdcloud-nonce", b"testnonce"),
                (b"x-jdcloud-date", b"20190214T104514Z"),
            ],
            key: ("TESTAK", "TESTSK"),
            scope: ("cn-north-1", "test"),
            signed: "x-jdcloud-date;x-jdcloud-nonce;x-my-header;x-my-header_blank",
            body: b"body data",
            signature: "2a98f83c074e7bee260bfc8ef64f009c07595bd93f7f0c3f4e156bf6479ed9bf",
        },
        // A GET of `/`.
        Vector {
            source: "jdcloud-sdk-cpp-signer src/tests/JdcloudSignerImplTest.cpp",
            method: b"GET",
            path: b"/",
            query: None,
            headers: &[
                (b"host", b"vm.cn-north-1.jdcloud.net"),
                (b"x-jdcloud-date", b"20090213T233130Z"),
                (b"x-jdcloud-nonce", b"uuid"),
            ],
            key: ("ak", "sk"),
            scope: ("cn-north-1", "vm"),
            signed: "host;x-jdcloud-date;x-jdcloud-nonce",
            body: b"",
            signature: "43a76892222031f847c00c56cac8d4d2dc179a4e75a37868d09a5300435f4054",
        },
        // No host signed.
        Vector {
            source: "jdcloud-sdk-rust-signer src/signer.rs",
            method: b"GET",
            path: b"/v1/regions/cn-north-1/instances",
            query: Some(b"pageNumber=2&pageSize=10"),
            headers: &[
                (b"host", b"www.jdcloud-api.com"),
                (b"content-type", b"application/json"),
                (b"x-jdcloud-date", b"20180405T010203Z"),
                (b"x-jdcloud-nonce", b"55f3919e-3a7d-4174-b117-f150ff25e274"),
            ],
            key: ("ak", "sk"),
            scope: ("cn-north-1", "service_name"),
            signed: "content-type;x-jdcloud-date;x-jdcloud-nonce",
            body: b"",
            signature: "cea138630c57ba3de51933926e3b1657c34b4d1b6f86d360511bf40a09f63729",
        },
        // A PATCH with a body, and a query of repeated-looking keys.
        Vector {
            source: "jdcloud-sdk-go-signer core/Signer_test.go",
            method: b"PATCH",
            path: b"/v1/region/cn-north-1/test",
            query: Some(b"filters.1.name=id&filters.1.values.1=v1&filters.1.values.2=v2"),
            headers: &[
                (b"host", b"test.cn-north-1.jdcloud-api.net"),
                (b"content-type", b"application/json"),
                (b"x-jdcloud-date", b"20190214T104514Z"),
                (b"x-jdcloud-nonce", b"test nonce"),
            ],
            key: ("access key", "secret key"),
            scope: ("cn-north-1", "test"),
            signed: "content-type;x-jdcloud-date;x-jdcloud-nonce",
            body: b"this is body",
            signature: "1912eba02012ce6eb482302bae29cfa8e721ad66c188c533f9070e69aad2c896",
        },
    ];

    /// JD's own signers' published test vectors: the canonical form rebuilt here
    /// gives their signatures, and `verify` accepts them at their dates.
    #[test]
    fn jd_published_signer_vectors() {
        for v in &VECTORS {
            let req = Request {
                method: v.method,
                path: v.path,
                query: v.query,
                headers: v.headers,
            };
            let got = sign_request(&req, v.key.0, v.key.1, v.scope.0, v.scope.1, v.signed, v.body);
            let want = format!("SignedHeaders={}, Signature={}", v.signed, v.signature);
            assert!(got.ends_with(&want), "{}: {got}", v.source);
            let auth = parse_authorization(got.as_bytes()).unwrap();
            let key = signing_key(v.key.1.as_bytes(), auth.date, auth.region, auth.service);
            let date = parse_date(req.one(b"x-jdcloud-date").unwrap().unwrap()).unwrap();
            let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, v.body)
                .as_ref()
                .try_into()
                .unwrap();
            let body = if v.body.is_empty() {
                Body::Empty
            } else {
                Body::Sha256(&digest)
            };
            let verified = verify(&req, &auth, body, date, 300, &key, &mut Scratch::default());
            assert!(verified.is_ok(), "{}: {verified:?}", v.source);
        }
    }

    type Fields = Vec<(&'static [u8], &'static [u8])>;

    fn signed_get() -> (Fields, String) {
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b"host", b"127.0.0.1:8080"),
            (b"content-type", b"application/json"),
            (b"x-jdcloud-date", b"20261201T120000Z"),
            (b"x-jdcloud-nonce", b"n-1"),
        ];
        let req = Request {
            method: b"GET",
            path: b"/v1/x",
            query: Some(b"b=2&a=1"),
            headers: &headers,
        };
        let auth = sign_request(
            &req,
            "AK",
            "SK",
            "cn-north-1",
            "apigw",
            "content-type;host;x-jdcloud-date;x-jdcloud-nonce",
            b"",
        );
        (headers, auth)
    }

    const NOON: i64 = 1_796_126_400; // 2026-12-01T12:00:00Z

    #[test]
    fn verify_accepts_the_signed_request_and_refuses_each_tamper() {
        let (headers, auth_value) = signed_get();
        let auth = parse_authorization(auth_value.as_bytes()).unwrap();
        let key = signing_key(b"SK", auth.date, auth.region, auth.service);
        let mut s = Scratch::default();
        let check = |method: &[u8],
                     path: &[u8],
                     query: &[u8],
                     headers: &[(&[u8], &[u8])],
                     now: i64,
                     key: &hmac::Key,
                     s: &mut Scratch| {
            let req = Request {
                method,
                path,
                query: Some(query),
                headers,
            };
            verify(&req, &auth, Body::Empty, now, 300, key, s).map(|v| v.nonce.to_vec())
        };
        assert_eq!(parse_date(b"20261201T120000Z"), Some(NOON));
        assert_eq!(
            check(b"GET", b"/v1/x", b"b=2&a=1", &headers, NOON, &key, &mut s),
            Ok(b"n-1".to_vec())
        );
        // Query order does not matter; encodings of the same bytes do not either.
        assert!(check(b"GET", b"/v1/%78", b"a=1&b=2", &headers, NOON, &key, &mut s).is_ok());
        assert_eq!(
            check(b"POST", b"/v1/x", b"b=2&a=1", &headers, NOON, &key, &mut s),
            Err(Reject::Signature)
        );
        assert_eq!(
            check(b"GET", b"/v1/y", b"b=2&a=1", &headers, NOON, &key, &mut s),
            Err(Reject::Signature)
        );
        assert_eq!(
            check(b"GET", b"/v1/x", b"b=3&a=1", &headers, NOON, &key, &mut s),
            Err(Reject::Signature)
        );
        assert_eq!(
            check(b"GET", b"/v1/x", b"b=2&a=1&c=3", &headers, NOON, &key, &mut s),
            Err(Reject::Signature)
        );
        let mut h = headers.clone();
        h[1].1 = b"text/plain";
        assert_eq!(
            check(b"GET", b"/v1/x", b"b=2&a=1", &h, NOON, &key, &mut s),
            Err(Reject::Signature)
        );
        let other = signing_key(b"SK2", auth.date, auth.region, auth.service);
        assert_eq!(
            check(b"GET", b"/v1/x", b"b=2&a=1", &headers, NOON, &other, &mut s),
            Err(Reject::Signature)
        );
        // The date window, to the second.
        assert!(check(b"GET", b"/v1/x", b"b=2&a=1", &headers, NOON + 300, &key, &mut s).is_ok());
        assert!(check(b"GET", b"/v1/x", b"b=2&a=1", &headers, NOON - 300, &key, &mut s).is_ok());
        assert_eq!(
            check(b"GET", b"/v1/x", b"b=2&a=1", &headers, NOON + 301, &key, &mut s),
            Err(Reject::Skewed(-301))
        );
        assert_eq!(
            check(b"GET", b"/v1/x", b"b=2&a=1", &headers, NOON - 301, &key, &mut s),
            Err(Reject::Skewed(301))
        );
        // A signed header that is not sent.
        let h: Vec<_> = headers
            .iter()
            .copied()
            .filter(|(n, _)| *n != b"content-type")
            .collect();
        assert_eq!(
            check(b"GET", b"/v1/x", b"b=2&a=1", &h, NOON, &key, &mut s),
            Err(Reject::MissingSignedHeader("content-type".into()))
        );
    }

    #[test]
    fn the_declared_body_hash_must_be_the_body() {
        let body = b"{\"a\":1}";
        let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, body)
            .as_ref()
            .try_into()
            .unwrap();
        let mut hex = Vec::new();
        hex_lower(&mut hex, &digest);
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b"host", b"h"),
            (b"x-jdcloud-date", b"20261201T120000Z"),
            (b"x-jdcloud-nonce", b"n"),
            (b"x-jdcloud-content-sha256", &hex),
        ];
        let req = Request {
            method: b"POST",
            path: b"/",
            query: None,
            headers: &headers,
        };
        let v = sign_request(
            &req,
            "AK",
            "SK",
            "r",
            "s",
            "host;x-jdcloud-date;x-jdcloud-nonce",
            body,
        );
        let auth = parse_authorization(v.as_bytes()).unwrap();
        let key = signing_key(b"SK", auth.date, auth.region, auth.service);
        let mut s = Scratch::default();
        assert!(verify(&req, &auth, Body::Sha256(&digest), NOON, 300, &key, &mut s).is_ok());
        let other = [7u8; 32];
        assert_eq!(
            verify(&req, &auth, Body::Sha256(&other), NOON, 300, &key, &mut s),
            Err(Reject::BodyMismatch)
        );
        // Without the header, the body's own hash is signed: another body fails.
        let req = Request {
            headers: &headers[..3],
            ..req
        };
        assert!(verify(&req, &auth, Body::Sha256(&digest), NOON, 300, &key, &mut s).is_ok());
        assert_eq!(
            verify(&req, &auth, Body::Sha256(&other), NOON, 300, &key, &mut s),
            Err(Reject::Signature)
        );
    }

    #[test]
    fn a_bare_plus_is_read_as_go_and_as_rust_sign_it() {
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b"host", b"h"),
            (b"x-jdcloud-date", b"20261201T120000Z"),
            (b"x-jdcloud-nonce", b"n"),
        ];
        let req = Request {
            method: b"GET",
            path: b"/v1/instances",
            query: Some(b"filters.1.values.1=my+vm"),
            headers: &headers,
        };
        let unsigned = format!(
            "JDCLOUD2-HMAC-SHA256 Credential=AK/20261201/r/s/jdcloud2_request, SignedHeaders=host;x-jdcloud-date;x-jdcloud-nonce, Signature={}",
            "0".repeat(64)
        );
        let auth = parse_authorization(unsigned.as_bytes()).unwrap();
        let key = signing_key(b"SK", auth.date, auth.region, auth.service);
        // Go signs the raw query ("my+vm"); Rust signs a decoded space ("my%20vm").
        for plus in [Plus::Bare, Plus::Space] {
            let (mut c, mut s) = (Vec::new(), Vec::new());
            canonical_request_with(&mut c, &req, &auth, EMPTY_SHA256.as_bytes(), plus).unwrap();
            let text = String::from_utf8(c.clone()).unwrap();
            assert!(
                text.contains(if plus == Plus::Bare { "=my+vm" } else { "=my%20vm" }),
                "{text}"
            );
            string_to_sign(&mut s, b"20261201T120000Z", &auth, &c);
            let value = unsigned.replace(&"0".repeat(64), &sign(&key, &s));
            let signed = parse_authorization(value.as_bytes()).unwrap();
            let v = verify(
                &req,
                &signed,
                Body::Empty,
                NOON,
                300,
                &key,
                &mut Scratch::default(),
            );
            assert!(v.is_ok(), "{plus:?}: {v:?}");
        }
    }

    #[test]
    fn the_nonce_is_canonical() {
        assert_eq!(&*collapse(b"  test \t  nonce "), b"test nonce");
        assert!(matches!(collapse(b"a b"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn date_and_nonce_must_be_signed() {
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b"host", b"h"),
            (b"x-jdcloud-date", b"20261201T120000Z"),
            (b"x-jdcloud-nonce", b"n"),
        ];
        let req = Request {
            method: b"GET",
            path: b"/",
            query: None,
            headers: &headers,
        };
        let v = sign_request(&req, "AK", "SK", "r", "s", "host;x-jdcloud-date", b"");
        let auth = parse_authorization(v.as_bytes()).unwrap();
        let key = signing_key(b"SK", auth.date, auth.region, auth.service);
        assert_eq!(
            verify(&req, &auth, Body::Empty, NOON, 300, &key, &mut Scratch::default()),
            Err(Reject::Unsigned("x-jdcloud-nonce"))
        );
    }

    #[test]
    fn malformed_authorizations_are_named() {
        for (v, why) in [
            (&b"Bearer x"[..], "not JDCLOUD2"),
            (b"JDCLOUD2-HMAC-SHA256 Credential=AK/20261201/r/s/jdcloud2_request, SignedHeaders=host", "Signature is missing"),
            (b"JDCLOUD2-HMAC-SHA256 Credential=AK/2026120/r/s/jdcloud2_request, SignedHeaders=host, Signature=00", "yyyymmdd"),
            (b"JDCLOUD2-HMAC-SHA256 Credential=AK/20261201/r/jdcloud2_request, SignedHeaders=host, Signature=00", "Credential is not"),
            (b"JDCLOUD2-HMAC-SHA256 Credential=AK/20261201/r/s/jdcloud2_request, SignedHeaders=Host, Signature=00", "lowercase"),
            (b"JDCLOUD2-HMAC-SHA256 Credential=AK/20261201/r/s/jdcloud2_request, SignedHeaders=host, Signature=zz", "64 hex"),
        ] {
            match parse_authorization(v) {
                Err(Reject::Malformed(m)) => assert!(m.contains(why), "{m} for {}", String::from_utf8_lossy(v)),
                other => panic!("{other:?} for {}", String::from_utf8_lossy(v)),
            }
        }
        assert_eq!(parse_date(b"20260230T000000Z"), None);
        assert_eq!(parse_date(b"20261201T240000Z"), None);
        assert_eq!(parse_date(b"2026-12-01T00:00"), None);
    }
}
