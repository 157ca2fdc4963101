//! Signed requests and the backend signature, end to end with the real binary:
//! requests signed by **JD Cloud's own Python SDK signer** (`jdcloud_sdk_core`
//! 1.3.3 from PyPI, `JDCLOUD2-HMAC-SHA256`) and then tampered with on the wire, one
//! part at a time; replays; the skew window; the authorization list; and a Python
//! backend that checks ringway's backend signature with the verifier copied out of
//! `docs/access.md`.
//!
//! The SDK comes from PyPI: `.ci/run` installs it into the venv and sets
//! `RINGWAY_PYTHON`. Without it the SDK tests say so and pass, except in CI
//! (`CI=true`), where a missing SDK fails them.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod access_support;
mod common;

use access_support::*;
use common::{Backend, Client, Gateway};

#[test]
fn requests_signed_by_jd_sdk_are_accepted_and_every_tamper_is_refused() {
    let Some(py) = python() else { return };
    let backend = Backend::echo("b");
    let gw = Gateway::start(&signature_config(&backend));
    let host = gw.addr.to_string();
    let base = format!("http://{host}");
    let signed_headers = |s: &Signed| -> Vec<(String, String)> { s.0.clone() };

    // GET with a query (the context path is part of what was signed: the raw path).
    let url = format!("{base}/api/v1/regions/cn-north-1/instances?pageSize=10&pageNumber=1");
    let s = jd_sign(&py, "GET", &url, "", AK, SK, None, None);
    let target = "/api/v1/regions/cn-north-1/instances?pageSize=10&pageNumber=1";
    let r = send(gw.addr, "GET", target, &host, &signed_headers(&s), "");
    assert_eq!(r.status, 200, "{}", r.text());
    let got = backend.only_request();
    // (A prefix route sends its target, with the query: `to` has no path placeholder.)
    assert_eq!(got.target, "/backend?pageSize=10&pageNumber=1");
    assert_eq!(got.header("authorization"), None, "the signature is consumed");
    assert!(
        got.header("x-jdcloud-nonce").is_some(),
        "x-jdcloud-* headers are forwarded"
    );
    // Replaying it exactly — on a new connection, possibly another shard — is refused.
    for _ in 0..3 {
        let r = send(gw.addr, "GET", target, &host, &signed_headers(&s), "");
        assert_eq!(outcome(&r), (401, "replayed_nonce".into()));
    }
    // The query in another order is the same request (a fresh signature, same query).
    let s = jd_sign(&py, "GET", &url, "", AK, SK, None, None);
    let r = send(
        gw.addr,
        "GET",
        "/api/v1/regions/cn-north-1/instances?pageNumber=1&pageSize=10",
        &host,
        &signed_headers(&s),
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // POST with a JSON body.
    let body = r#"{"name":"store 7","tags":["a","b"]}"#;
    let url = format!("{base}/api/v1/stores");
    let s = jd_sign(&py, "POST", &url, body, AK, SK, None, None);
    let r = send(
        gw.addr,
        "POST",
        "/api/v1/stores",
        &host,
        &signed_headers(&s),
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), body, "the body reached the backend whole");

    // Each tamper of a fresh, valid request, one at a time.
    type Tamper = Box<dyn Fn(&mut String, &mut String, &mut Vec<(String, String)>, &mut String)>;
    let set = |h: &mut Vec<(String, String)>, name: &str, v: &str| {
        for (k, val) in h.iter_mut() {
            if k.eq_ignore_ascii_case(name) {
                *val = v.to_string();
            }
        }
    };
    let tampers: Vec<(&str, Tamper, &str)> = vec![
        (
            "method",
            Box::new(|m, _, _, _| *m = "PUT".into()),
            "signature_mismatch",
        ),
        (
            "path",
            Box::new(|_, t, _, _| *t = t.replace("/stores", "/storez")),
            "signature_mismatch",
        ),
        (
            "query value",
            Box::new(|_, t, _, _| *t = t.replace("v=1", "v=2")),
            "signature_mismatch",
        ),
        (
            "query added",
            Box::new(|_, t, _, _| t.push_str("&admin=1")),
            "signature_mismatch",
        ),
        (
            "signed header",
            Box::new(move |_, _, h, _| set(h, "content-type", "text/plain")),
            "signature_mismatch",
        ),
        (
            "body",
            Box::new(|_, _, _, b| *b = b.replace("store 7", "store 8")),
            "content_sha256_mismatch",
        ),
        (
            "declared hash",
            Box::new(move |_, _, h, b| {
                // Body and declared hash changed together: the signed hash no longer matches.
                *b = b.replace("store 7", "store 8");
                let digest = sha256_hex(b.as_bytes());
                set(h, "x-jdcloud-content-sha256", &digest);
            }),
            "signature_mismatch",
        ),
        (
            "date",
            Box::new(move |_, _, h, _| {
                let d = h.iter().find(|(k, _)| k == "x-jdcloud-date").unwrap().1.clone();
                let later = format!("{}{}", &d[..13], if &d[13..15] == "00" { "01Z" } else { "00Z" });
                set(h, "x-jdcloud-date", &later);
            }),
            "signature_mismatch",
        ),
        (
            "nonce",
            Box::new(move |_, _, h, _| set(h, "x-jdcloud-nonce", "fresh-nonce")),
            "signature_mismatch",
        ),
        (
            "signed header removed",
            Box::new(|_, _, h, _| h.retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"))),
            "missing_signed_header",
        ),
        (
            "no date",
            Box::new(|_, _, h, _| h.retain(|(k, _)| k != "x-jdcloud-date")),
            "missing_date",
        ),
        (
            "no authorization",
            Box::new(|_, _, h, _| h.retain(|(k, _)| k != "Authorization")),
            "missing_credentials",
        ),
        (
            "access key",
            Box::new(move |_, _, h, _| {
                let a = h
                    .iter()
                    .find(|(k, _)| k == "Authorization")
                    .unwrap()
                    .1
                    .replace(AK, "AKIDUNKNOWN");
                set(h, "Authorization", &a);
            }),
            "unknown_access_key",
        ),
    ];
    let body = r#"{"name":"store 7"}"#;
    for (what, tamper, code) in &tampers {
        let url = format!("{base}/api/v1/stores?v=1&w=2");
        let s = jd_sign(&py, "POST", &url, body, AK, SK, None, None);
        let (mut m, mut t, mut h, mut b) = (
            "POST".to_string(),
            "/api/v1/stores?v=1&w=2".to_string(),
            signed_headers(&s),
            body.to_string(),
        );
        tamper(&mut m, &mut t, &mut h, &mut b);
        let r = send(gw.addr, &m, &t, &host, &h, &b);
        assert_eq!(outcome(&r), (401, code.to_string()), "tamper: {what}");
        // The untampered request is still good: the tamper burned no nonce.
        let r = send(
            gw.addr,
            "POST",
            "/api/v1/stores?v=1&w=2",
            &host,
            &signed_headers(&s),
            body,
        );
        assert_eq!(r.status, 200, "the original after tamper '{what}': {}", r.text());
    }
    // The wrong secret.
    let url = format!("{base}/api/v1/stores");
    let s = jd_sign(&py, "GET", &url, "", AK, "not-the-secret", None, None);
    assert_eq!(
        outcome(&send(gw.addr, "GET", "/api/v1/stores", &host, &s.0, "")),
        (401, "signature_mismatch".into())
    );

    // The skew window (60 s here), both ways, with a margin for the test's own time.
    for (offset, ok) in [(-50, true), (50, true), (-75, false), (75, false)] {
        let s = jd_sign(&py, "GET", &url, "", AK, SK, Some(now() + offset), None);
        let r = send(gw.addr, "GET", "/api/v1/stores", &host, &s.0, "");
        if ok {
            assert_eq!(r.status, 200, "offset {offset}: {}", r.text());
        } else {
            assert_eq!(outcome(&r), (401, "date_out_of_window".into()), "offset {offset}");
            assert!(json(&r)["message"].as_str().unwrap().contains("±60s"));
        }
    }

    // A valid pair, not authorized for this group: 403 (after the signature checks).
    let s = jd_sign(
        &py,
        "GET",
        &format!("{base}/api/v1/stores"),
        "",
        AK_ORDERS,
        "other-secret",
        None,
        None,
    );
    let r = send(gw.addr, "GET", "/api/v1/stores", &host, &s.0, "");
    assert_eq!(outcome(&r), (403, "not_authorized".into()));
    let s = jd_sign(
        &py,
        "GET",
        &format!("{base}/orders/1"),
        "",
        AK_ORDERS,
        "other-secret",
        None,
        None,
    );
    assert_eq!(send(gw.addr, "GET", "/orders/1", &host, &s.0, "").status, 200);
    // The 403's nonce was not recorded (authorization is checked before the nonce).
    let s = jd_sign(
        &py,
        "GET",
        &format!("{base}/orders/2"),
        "",
        AK_ORDERS,
        "other-secret",
        None,
        Some("n-403"),
    );
    let s2 = jd_sign(
        &py,
        "GET",
        &format!("{base}/api/v1/stores"),
        "",
        AK_ORDERS,
        "other-secret",
        None,
        Some("n-403"),
    );
    assert_eq!(
        outcome(&send(gw.addr, "GET", "/api/v1/stores", &host, &s2.0, "")).0,
        403
    );
    assert_eq!(send(gw.addr, "GET", "/orders/2", &host, &s.0, "").status, 200);
    // A body larger than max_signed_body: 413 before it is read.
    let mut h = jd_sign(&py, "POST", &url, "x", AK, SK, None, None).0;
    h.retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
    let mut c = Client::connect(gw.addr);
    let mut raw = format!("POST /api/v1/stores HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2000000\r\n");
    for (k, v) in &h {
        raw += &format!("{k}: {v}\r\n");
    }
    c.send(format!("{raw}\r\n").as_bytes());
    assert_eq!(outcome(&c.response()), (413, "signed_body_too_large".into()));

    // A forged signature with a declared body hash is refused before any of its
    // body is read: the answer comes at once, with the body never sent.
    let mut h = jd_sign(&py, "POST", &url, "x", AK, "not-the-secret", None, None).0;
    h.retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
    let mut raw = format!("POST /api/v1/stores HTTP/1.1\r\nHost: {host}\r\nContent-Length: 500000\r\n");
    for (k, v) in &h {
        raw += &format!("{k}: {v}\r\n");
    }
    let mut c = Client::connect(gw.addr);
    c.send(format!("{raw}\r\n").as_bytes());
    let r = c.response();
    assert_eq!(outcome(&r), (401, "signature_mismatch".into()));
    assert!(
        r.closes() && c.is_closed(),
        "a refused caller's body is not read: the connection closes"
    );

    // Nonces compare as the signature covers them: "a  b" is a replay of "a b".
    let s = jd_sign(&py, "GET", &url, "", AK, SK, None, Some("test nonce"));
    assert_eq!(
        send(gw.addr, "GET", "/api/v1/stores", &host, &s.0, "").status,
        200
    );
    let mut h = s.0.clone();
    for (k, v) in h.iter_mut() {
        if k == "x-jdcloud-nonce" {
            *v = "test  nonce".into();
        }
    }
    let r = send(gw.addr, "GET", "/api/v1/stores", &host, &h, "");
    assert_eq!(outcome(&r), (401, "replayed_nonce".into()));
}

#[test]
fn the_documented_verifier_accepts_ringway_backend_signatures() {
    let secret = "backend-signing-secret";
    let backend = verifying_backend(secret);
    let toml = format!(
        r#"[server]
listen = ["127.0.0.1:0"]
shards = 1

[[access.backend_keys]]
id = "gw-1"
secret = "{secret}"

[[access.backend_keys]]
id = "gw-wrong"
secret = "not-what-the-backend-has"
"#
    );
    let to = format!("{}/in", backend.url);
    let toml = toml
        + &group("signed", "backend_key = \"gw-1\"", "/s", &to)
        + &group("wrong", "backend_key = \"gw-wrong\"", "/w", &to)
        + &group("unsigned", "", "/u", &to);
    let gw = Gateway::start(&toml);
    let forged = vec![
        (
            "x-ringway-signature".to_string(),
            "RINGWAY1-HMAC-SHA256 key=gw-1, headers=, signature=00".to_string(),
        ),
        ("x-ringway-date".to_string(), "20000101T000000Z".to_string()),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    // GET, a small body (hashed), a 200 KiB body (streamed: UNSIGNED-PAYLOAD).
    let r = send(gw.addr, "GET", "/s/x?a=1&b=%20", "it.test", &forged, "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), format!("verified {}", sha256_hex(b"")));
    let body = r#"{"order":7}"#;
    let r = send(gw.addr, "POST", "/s/orders", "it.test", &forged, body);
    assert_eq!(r.text(), format!("verified {}", sha256_hex(body.as_bytes())));
    let big = "x".repeat(200 * 1024);
    let r = send(gw.addr, "PUT", "/s/blob", "it.test", &forged, &big);
    assert_eq!(r.text(), "verified UNSIGNED-PAYLOAD");
    // A wrong key, and no signature at all (the client's forged fields pass through
    // a group without a backend key, and the verifier refuses them).
    assert_eq!(send(gw.addr, "GET", "/w/x", "it.test", &[], "").status, 401);
    assert_eq!(send(gw.addr, "GET", "/u/x", "it.test", &forged, "").status, 401);
}
